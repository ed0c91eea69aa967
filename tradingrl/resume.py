"""Resumable work (checkpoints, finished folds) and the fingerprint that guards it.

A stage that can be killed keeps its partial work in a folder stamped with a
fingerprint of what produced it: its params, its input data and its code
(:func:`code_hash`: the stage's code dependencies as dvc.yaml lists them). The
rules, for every resumable folder:

- a rerun with another fingerprint (other params, data or code) starts the
  folder clean;
- a rerun after the stage *finished* starts it clean too
  (:func:`finish_resumable` marks the folder at the stage's end): a stage that
  DVC runs again although nothing changed (``dvc repro -f``, ``--force``) is a
  request to recompute, and resuming is only for an interrupted run of the
  same code, params and data;
- inside an interrupted run, a unit of work that finished (a fold, a seed,
  also one that stopped early) is marked with :func:`mark_done` and is read
  back, never trained further.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

# The checkout whose code is running: tradingrl/ and tasks/ sit side by side
# with dvc.yaml (a stage runs from its repository, `python -m tasks.<stage>`).
CODE_ROOT = Path(__file__).resolve().parent.parent
STAMP_FILE = "fingerprint"
FINISHED_FILE = "stage-finished"
DONE_FILE = "done.json"
CODE_PREFIXES = ("tasks/", "tradingrl/")


def file_md5(path: str | Path) -> str:
    """md5 of a file's bytes: fingerprints resumable work against its input."""
    digest = hashlib.md5()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stage_code_paths(stage: str, code_root: Path = CODE_ROOT) -> list[str]:
    """The code deps of ``stage`` in ``code_root``/dvc.yaml: its deps under
    tasks/ and tradingrl/ (files, or package folders)."""
    import yaml

    dvc_file = code_root / "dvc.yaml"
    if not dvc_file.is_file():
        raise FileNotFoundError(f"{dvc_file} not found: a stage's resumable work is "
                                "fingerprinted with the code deps dvc.yaml lists")
    stages = yaml.safe_load(dvc_file.read_text())["stages"]
    if stage not in stages:
        raise KeyError(f"dvc.yaml has no stage {stage!r}")
    return sorted(str(dep) for dep in stages[stage].get("deps", [])
                  if str(dep).startswith(CODE_PREFIXES))


def code_hash(stage: str, code_root: Path = CODE_ROOT) -> str:
    """sha256 over the content of ``stage``'s code deps (:func:`stage_code_paths`;
    a folder counts as its .py files). Any change to a line of code the stage
    runs changes it; a file that is not a dep does not."""
    digest = hashlib.sha256()
    for dep in stage_code_paths(stage, code_root):
        path = code_root / dep
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"dvc.yaml lists {dep} as a code dep of {stage}; "
                                    f"{path} does not exist")
        for file in files:
            digest.update(file.relative_to(code_root).as_posix().encode())
            digest.update(b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(params: Any, data_hash: str, code: str = "") -> str:
    """A short hash of the params, input data and code (:func:`code_hash`) a
    piece of resumable work used."""
    payload = json.dumps({"params": params, "data": data_hash, "code": code},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def prepare_resumable(directory: Path, stamp_value: str) -> bool:
    """Keep ``directory`` only when its ``fingerprint`` file says it belongs to
    the same params, data and code and the stage that wrote it did not
    finish; otherwise empty it. Then stamp it with ``stamp_value``. Returns
    True when earlier work was kept (the run resumes)."""
    stamp = directory / STAMP_FILE
    kept = (directory.exists() and stamp.is_file() and stamp.read_text() == stamp_value
            and not (directory / FINISHED_FILE).exists())
    if directory.exists() and not kept:
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp.write_text(stamp_value)
    return kept


def finish_resumable(directory: Path) -> None:
    """Mark ``directory`` as the work of a stage that finished: the next run
    of the stage starts it clean (:func:`prepare_resumable`)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / FINISHED_FILE).write_text("finished\n")


def mark_done(directory: Path, record: dict[str, Any]) -> None:
    """Record a finished unit of work (written last, atomically: a kill
    leaves it absent, never half-written)."""
    tmp = directory / f".{DONE_FILE}.tmp"
    tmp.write_text(json.dumps(record, sort_keys=True, default=str))
    tmp.replace(directory / DONE_FILE)


def read_done(directory: Path) -> dict[str, Any] | None:
    """The record :func:`mark_done` wrote in ``directory``, or None."""
    path = directory / DONE_FILE
    return json.loads(path.read_text()) if path.is_file() else None
