"""Reading params.yaml: one section per stage, credentials refused.

Every caller (the stages, the flows, the CLI) reads params through
:func:`load_params`, so a credential-like key never reaches MLflow, git or DVC
from any route.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

# Keys that name credentials. Params are logged to MLflow and versioned by git
# and DVC, so a secret (a data vendor's API key) must come from the
# environment, never from params.yaml.
SECRET_KEY = re.compile(r"api[_-]?key|secret|token|passw|credential|private[_-]?key",
                        re.IGNORECASE)


def secret_keys(tree: Any, prefix: str = "") -> list[str]:
    """Dotted names of the keys in ``tree`` that look like credentials."""
    found: list[str] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            name = f"{prefix}{key}"
            if SECRET_KEY.search(str(key)):
                found.append(name)
            found += secret_keys(value, f"{name}.")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found += secret_keys(value, f"{prefix}{i}.")
    return found


def load_params(section: str, path: str | Path) -> dict[str, Any]:
    """The ``section`` of the params file at ``path``. A key that looks like a
    credential is refused (see :data:`SECRET_KEY`), a missing section is a KeyError."""
    with Path(path).open() as handle:
        params = yaml.safe_load(handle) or {}
    if section not in params:
        raise KeyError(f"{Path(path).name} has no {section!r} section")
    secrets = secret_keys(params[section], f"{section}.")
    if secrets:
        raise ValueError(f"params.yaml: {', '.join(secrets)} looks like a credential; params are "
                         "logged to MLflow and versioned, so secrets come from environment "
                         "variables only (docs/operations.md, Secrets)")
    return params[section]


def flat_params(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as MLflow's flat ``a.b.c`` keys."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = value
    return out
