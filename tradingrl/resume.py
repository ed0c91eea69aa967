"""Resumable work (checkpoints, finished folds) and the fingerprint that guards it.

A stage that can be killed keeps its partial work in a folder stamped with a
fingerprint of what produced it; a rerun with another fingerprint starts that
folder clean.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any


def file_md5(path: str | Path) -> str:
    """md5 of a file's bytes: fingerprints resumable work against its input."""
    digest = hashlib.md5()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(params: Any, data_hash: str) -> str:
    """A short hash of the params and input data a piece of resumable work used."""
    payload = json.dumps({"params": params, "data": data_hash}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def prepare_resumable(directory: Path, stamp_value: str) -> None:
    """Keep ``directory`` (checkpoints, finished folds) only when its
    ``fingerprint`` file says it belongs to the same params and data; otherwise
    empty it. Then stamp it with ``stamp_value``."""
    stamp = directory / "fingerprint"
    if directory.exists() and (not stamp.is_file() or stamp.read_text() != stamp_value):
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp.write_text(stamp_value)

