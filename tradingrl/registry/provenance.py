"""Was the evaluation produced from what the bundle holds? The inputs both record.

The walk-forward evaluation (reports/metrics.json) does not judge the
deployed agent itself: it judges the *procedure* (it trains its own agent
per fold from the out-of-fold predictions, and never reads models/agent), so
no hash of agent.zip can be in its record, and the evaluate stage does not
depend on models/agent. "The evaluation was produced from the agent and
models the bundle holds" can therefore only mean: every piece came from the
same inputs and settings. That is checked here, as strictly as a normal
``dvc repro`` (every stage run from the same inputs) allows:

- reports/metrics.json ``inputs`` (:func:`evaluation_inputs`, written by
  tasks/evaluate.py) records the md5 of the files the evaluated policy came
  from (:data:`EVALUATION_FILES`: out-of-fold predictions, features,
  validated bars) and the md5 of train_agent's settings (the whole section
  and each key the agent's env_config records, :data:`AGENT_CONFIG_KEYS`);
- the bundled agent's env_config.json ``inputs_md5`` (tasks/train_agent.py)
  must name the same out-of-fold predictions and features, and its recorded
  algorithm, env kind, state columns, env, costs and risk settings must
  hash to the evaluation's;
- the bundled trend model's config.json ``inputs_md5`` (tasks/train_model.py)
  must name the same features (the out-of-fold predictions the evaluation
  traded are fitted by the same recipe on the same features);
- the data files promote itself reads (validated bars, features: the
  reference window, the input example, the champion replay) must be the
  ones the evaluation read.

Left out, because no record can hold them on a normal run: agent.zip's own
hash (the evaluation never saw it) and the train_agent keys the env_config
does not record (learning rate, timesteps, seeds: the whole section's hash
in metrics.json is kept for people and for a later check). Any mismatch is
a :class:`ProvenanceError` (a :class:`~tradingrl.data.errors.DataError`: the
stage ends with its one line and exit 1) naming the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradingrl.data.errors import DataError

OOF_FILE = "data/predictions/oof.parquet"
FEATURES_FILE = "data/features/features.parquet"
VALIDATED_FILE = "data/validated/ohlcv.parquet"
EVALUATION_FILES: tuple[str, ...] = (OOF_FILE, FEATURES_FILE, VALIDATED_FILE)
# What the agent was trained from (tasks/train_agent.py writes them).
AGENT_FILES: tuple[str, ...] = (OOF_FILE, FEATURES_FILE)
# What the trend model was trained from (tasks/train_model.py writes it).
TREND_FILES: tuple[str, ...] = (FEATURES_FILE,)
# train_agent keys whose values the agent's env_config.json records as given
# (env_config key -> params key).
AGENT_CONFIG_KEYS: dict[str, str] = {
    "algorithm": "algorithm", "env_kind": "env_kind", "features": "features",
    "prediction_columns": "prediction_columns", "env": "env", "costs": "costs", "risk": "risk",
}
INPUTS_KEY = "inputs_md5"


class ProvenanceError(DataError):
    """The evaluation and the bundle's pieces came from different inputs."""


def value_md5(value: Any) -> str:
    """md5 of a JSON-able value (sorted keys): equal settings, equal hash,
    whether read from params.yaml or from a JSON record."""
    return hashlib.md5(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def files_md5(repo_root: str | Path, names: tuple[str, ...]) -> dict[str, str]:
    """``{name: md5}`` of each repository-relative file ``name``."""
    from tradingrl.resume import file_md5

    return {name: file_md5(Path(repo_root) / name) for name in names}


def evaluation_inputs(repo_root: str | Path, agent_params: Mapping[str, Any]) -> dict[str, Any]:
    """reports/metrics.json's ``inputs``: ``files_md5`` of
    :data:`EVALUATION_FILES` under ``repo_root`` and ``train_agent_md5`` of
    ``agent_params`` (params.yaml's train_agent section): ``section`` for the
    whole of it, and each :data:`AGENT_CONFIG_KEYS` key."""
    hashes = {"section": value_md5(dict(agent_params))}
    hashes.update({key: value_md5(agent_params[param])
                   for key, param in AGENT_CONFIG_KEYS.items()})
    return {"files_md5": files_md5(repo_root, EVALUATION_FILES), "train_agent_md5": hashes}


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ProvenanceError(f"{path} is missing")
    return json.loads(path.read_text())


def _recorded(record: Mapping[str, Any], where: str) -> dict[str, str]:
    found = record.get(INPUTS_KEY)
    if not isinstance(found, Mapping):
        raise ProvenanceError(f"{where} records no {INPUTS_KEY} (trained by older code): cannot "
                              "tell what it was trained on; rerun its stage")
    return dict(found)


def check_provenance(evaluation: Mapping[str, Any], cnn_lstm_dir: str | Path,
                     agent_dir: str | Path, data_files: Mapping[str, str | Path], *,
                     names: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ProvenanceError` (one line naming the file) unless
    ``evaluation`` (reports/metrics.json) and the pieces were produced from
    the same inputs (see the module docstring).

    cnn_lstm_dir / agent_dir: the trend model's and the agent's folders (the
    bundle's copies or models/); data_files: ``{name: path}`` of the
    :data:`EVALUATION_FILES` the caller reads now, each checked against the
    evaluation's record (validated bars and features at least); names: how
    to name ``"metrics"``, ``"config"`` and ``"env_config"`` in messages."""
    names = {"metrics": "reports/metrics.json", **(names or {})}
    cnn_lstm_dir, agent_dir = Path(cnn_lstm_dir), Path(agent_dir)
    config_path, env_path = cnn_lstm_dir / "config.json", agent_dir / "env_config.json"
    config_name = names.get("config", str(config_path))
    env_name = names.get("env_config", str(env_path))
    inputs = evaluation.get("inputs")
    if not isinstance(inputs, Mapping) or "files_md5" not in inputs:
        raise ProvenanceError(f"{names['metrics']} records no inputs (evaluated by older code): "
                              "cannot tell what the evaluated policy came from; rerun evaluate")
    evaluated = dict(inputs["files_md5"])
    settings = dict(inputs.get("train_agent_md5") or {})

    def same(name: str, digest: str | None, where: str, what: str) -> None:
        if evaluated.get(name) != digest:
            raise ProvenanceError(f"{where}: {what} {name} md5 {digest}, but {names['metrics']} "
                                  f"was evaluated on md5 {evaluated.get(name)}")

    required = {VALIDATED_FILE, FEATURES_FILE}
    if not required <= set(data_files):
        raise ValueError(f"data_files must hold {sorted(required)}, got {sorted(data_files)}")
    from tradingrl.resume import file_md5

    for name, path in data_files.items():
        same(name, file_md5(path), str(path), "the data promote reads now is")
    env_config = _read(env_path)
    agent_inputs = _recorded(env_config, env_name)
    for name in AGENT_FILES:
        same(name, agent_inputs.get(name), env_name, "the agent was trained on")
    for key, param in AGENT_CONFIG_KEYS.items():
        if key not in env_config:
            raise ProvenanceError(f"{env_name} lacks {key!r}")
        if settings.get(key) != value_md5(env_config[key]):
            raise ProvenanceError(f"{env_name}: the agent's train_agent.{param} "
                                  f"differs from the one {names['metrics']} was evaluated with")
    trend_inputs = _recorded(_read(config_path), config_name)
    for name in TREND_FILES:
        same(name, trend_inputs.get(name), config_name, "the trend model was trained on")
