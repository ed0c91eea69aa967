"""What every stage module shares: the repository root, params, JSON output."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


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


def load_params(section: str, path: Path | None = None) -> dict[str, Any]:
    """The ``section`` of params.yaml (the repository's, unless ``path``).
    A key that looks like a credential is refused (see :data:`SECRET_KEY`)."""
    params_path = path or REPO_ROOT / "params.yaml"
    with params_path.open() as handle:
        params = yaml.safe_load(handle) or {}
    if section not in params:
        raise KeyError(f"params.yaml has no {section!r} section")
    secrets = secret_keys(params[section], f"{section}.")
    if secrets:
        raise ValueError(f"params.yaml: {', '.join(secrets)} looks like a credential; params are "
                         "logged to MLflow and versioned, so secrets come from environment "
                         "variables only (see README, Secrets)")
    return params[section]


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def file_md5(path: Path) -> str:
    """md5 of a file's bytes: fingerprints resumable work against its input."""
    import hashlib

    digest = hashlib.md5()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(params: Any, data_hash: str) -> str:
    """A short hash of the params and input data a piece of resumable work used."""
    import hashlib

    payload = json.dumps({"params": params, "data": data_hash}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def prepare_resumable(directory: Path, stamp_value: str) -> None:
    """Keep ``directory`` (checkpoints, finished folds) only when its
    ``fingerprint`` file says it belongs to the same params and data; otherwise
    empty it. Then stamp it with ``stamp_value``."""
    import shutil

    stamp = directory / "fingerprint"
    if directory.exists() and (not stamp.is_file() or stamp.read_text() != stamp_value):
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp.write_text(stamp_value)


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


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a data error ends it with one line and exit 1."""
    from tradingrl.data.errors import DataError

    try:
        main()
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
