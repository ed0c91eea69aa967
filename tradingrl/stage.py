"""What every DVC stage module (``tasks/``) shares: JSON outputs and its exit rule."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """``payload`` as indented JSON (other values through ``str``), parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's ``main()``; a data error ends it with one line and exit 1."""
    from tradingrl.data.errors import DataError

    try:
        main()
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
