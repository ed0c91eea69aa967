"""What every stage module shares: the repository root, params, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_params(section: str, path: Path | None = None) -> dict[str, Any]:
    """The ``section`` of params.yaml (the repository's, unless ``path``)."""
    params_path = path or REPO_ROOT / "params.yaml"
    with params_path.open() as handle:
        params = yaml.safe_load(handle) or {}
    if section not in params:
        raise KeyError(f"params.yaml has no {section!r} section")
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


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a data error ends it with one line and exit 1."""
    from tradingrl.data.errors import DataError

    try:
        main()
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
