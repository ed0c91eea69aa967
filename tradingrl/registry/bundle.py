"""The ``trading-policy`` bundle: one folder holding everything a decision needs.

Layout (written by :func:`build_policy_bundle`)::

    policy.json          the manifest (below)
    cnn_lstm/            config.json, scaler.json, feature_list.json, model-<k>.pt
                         (the trend model as ``TrendModel.load`` reads it)
    agent/               agent.zip (SB3), env_config.json, scaler.json (the
                         agent's feature scaler, fitted on its training span)
    reference.parquet    optional: the reference window the drift check compares
                         new data with (the models' features, predictions and
                         decisions over the last sessions of the training data;
                         :func:`tradingrl.monitoring.decisions.reference_window`)

The manifest records the feature settings (warm-up, label spec), the trend
model's and the agent's shapes, the training end (``training``: the last bar
any piece learnt from,
:func:`~tradingrl.registry.comparison.training_section`; the promotion gate compares
a later challenger with this bundle only on bars after it), the risk parameters, the input contract (the
least history per symbol, :func:`required_history`), the package versions,
the SHA-256 of every bundled file and of the library source files on the
decision's code path. :class:`~tradingrl.registry.policy.TradingPolicy`
refuses a bundle whose files changed, and by default one whose code path
differs from the code that loads it: what was evaluated is what is served.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import platform
import re
import shutil
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.models.predict import PREDICTION_COLUMNS

MANIFEST = "policy.json"
FORMAT_VERSION = 1
TREND_DIR = "cnn_lstm"
AGENT_DIR = "agent"
REFERENCE_FILE = "reference.parquet"
INPUT_COLUMNS: tuple[str, ...] = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
# One row per symbol: the decision at its last bar (see TradingPolicy.decide).
OUTPUT_COLUMNS: tuple[str, ...] = (
    "symbol", "timestamp", "target", "requested_target", "risk_binding",
    *PREDICTION_COLUMNS,
    "risk_peak_equity", "risk_breaker_active", "risk_bars_since_trip",
)

# Library files whose code decides what a bundle outputs, relative to the
# tradingrl package: the feature path, the trend model's inference, the
# observation / risk-context / risk-function code shared with the
# environment, the risk layer and its hook, and the policy itself.
CODE_PATH_FILES: tuple[str, ...] = (
    "features/build.py",
    "features/technical.py",
    "features/fast_indicators.py",
    "features/fast_features.py",
    "features/labels.py",
    "models/predict.py",
    "models/data.py",
    "models/cnn_lstm.py",
    "models/uncertainty.py",
    "models/classes.py",
    "envs/arrays.py",
    "envs/decision.py",
    "envs/risk_hook.py",
    "envs/portfolio.py",
    "risk/layer.py",
    "risk/limits.py",
    "registry/bundle.py",
    "registry/inputs.py",
    "registry/policy.py",
)

# Distributions whose versions are recorded in the manifest (and pinned for
# the MLflow model's environment).
RUNTIME_DISTRIBUTIONS: tuple[str, ...] = (
    "tradingrl", "numpy", "pandas", "numba", "ta", "torch", "lightning", "torchmetrics",
    "scipy", "stable-baselines3", "gymnasium", "pandera", "mlflow", "cloudpickle",
)

_TREND_FILES = ("config.json", "scaler.json", "feature_list.json")
_AGENT_FILES = ("agent.zip", "env_config.json", "scaler.json")


def required_history(
    warmup_bars: int, trend_window: int, agent_window: int, risk_lookback: int | None
) -> dict[str, int]:
    """Least bars per symbol for a decision at its last bar, and why.

    The first ``warmup_bars`` bars only warm the features up (the pipeline
    drops them). After them, feature rows are needed for: the trend model's
    window (``trend_window`` rows ending at t), the agent's observation
    (``agent_window`` rows) and, with the risk layer on, its return window
    (``risk_lookback`` one-bar log returns, so ``risk_lookback + 1`` closes
    of feature rows, as the environment takes them from its rows). The rows
    overlap (all end at t), so the bars needed are ``warmup_bars`` plus the
    largest of these.
    """
    for name, value in (("warmup_bars", warmup_bars), ("trend_window", trend_window),
                        ("agent_window", agent_window)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    terms = {"trend_window": trend_window, "agent_window": agent_window}
    if risk_lookback is not None:
        if not isinstance(risk_lookback, int) or risk_lookback < 1:
            raise ValueError(f"risk_lookback must be an int >= 1, got {risk_lookback!r}")
        terms["risk_closes"] = risk_lookback + 1
    rows = max(terms.values())
    return {"min_bars": warmup_bars + rows, "min_feature_rows": rows,
            "warmup_bars": warmup_bars, **terms}


def env_default(name: str) -> Any:
    """The single-asset environment's default for keyword ``name`` (used for
    settings the agent's env_config does not spell out, e.g. ``obs_clip``)."""
    from tradingrl.envs.single_asset import SingleAssetTradingEnv

    return inspect.signature(SingleAssetTradingEnv.__init__).parameters[name].default


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_fingerprint() -> dict[str, str]:
    """SHA-256 of each :data:`CODE_PATH_FILES` file of the imported tradingrl."""
    import tradingrl

    root = Path(tradingrl.__file__).parent
    return {name: file_sha256(root / name) for name in CODE_PATH_FILES}


def runtime_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError as err:
            raise RuntimeError(f"{name} is not installed; the policy needs it") from err
    return found


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ValueError(f"{path} is missing")
    return json.loads(path.read_text())


def _check_features(params: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    from tradingrl.features.labels import LabelSpec
    from tradingrl.features.technical import MIN_WARMUP_BARS

    if not isinstance(params, Mapping) or "warmup_bars" not in params or "label" not in params:
        raise ValueError("features_params must hold warmup_bars and label (params.yaml 'features')")
    warmup = params["warmup_bars"]
    if not isinstance(warmup, int) or warmup < MIN_WARMUP_BARS:
        raise ValueError(f"features warmup_bars must be an int >= {MIN_WARMUP_BARS}, "
                         f"got {warmup!r}")
    label = dict(params["label"])
    LabelSpec(**label)  # raises on unknown keys or bad values
    return warmup, label


def _agent_section(env_config: Mapping[str, Any], scaler_names: list[str]) -> dict[str, Any]:
    from tradingrl.agents.training import ALGORITHM_NAMES
    from tradingrl.envs.arrays import check_state_columns
    from tradingrl.envs.decision import (
        ACCOUNT_STATE_NAMES,
        ACTION_KEYS,
        ENV_KINDS,
        ActionRule,
        observation_size,
        risk_fn_from_config,
        signal_columns,
    )
    from tradingrl.envs.portfolio import portfolio_observation_size
    from tradingrl.features.technical import FEATURE_COLUMNS
    from tradingrl.models.predict import PREDICTION_COLUMNS

    for key in ("algorithm", "env_kind", "observation_size", "features", "prediction_columns",
                "env", "risk"):
        if key not in env_config:
            raise ValueError(f"agent env_config.json lacks {key!r}")
    kind = env_config["env_kind"]
    if kind not in ENV_KINDS:
        raise ValueError(f"agent env_kind must be one of {ENV_KINDS}, got {kind!r}")
    if env_config["algorithm"] not in ALGORITHM_NAMES:
        raise ValueError(f"agent algorithm must be one of {ALGORITHM_NAMES}, "
                         f"got {env_config['algorithm']!r}")
    features = list(check_state_columns(env_config["features"], "feature"))
    predictions = list(check_state_columns(env_config["prediction_columns"], "prediction"))
    unknown = [f for f in features if f not in FEATURE_COLUMNS]
    unknown += [p for p in predictions if p not in PREDICTION_COLUMNS]
    if unknown:
        raise ValueError(f"agent state columns {unknown} are not produced by the feature code "
                         "or the trend model")
    if scaler_names != features:
        raise ValueError("the agent's scaler.json and env_config.json disagree on the features")
    env = dict(env_config["env"])
    window = int(env.get("window", env_default("window")))
    obs_clip = env.get("obs_clip", env_default("obs_clip"))
    portfolio: dict[str, Any] = {}
    if kind == "portfolio":
        portfolio = _portfolio_section(env_config, env)
        n = len(portfolio["symbols"])
        expected = portfolio_observation_size(n, window, len(features), len(predictions))
        shape = (f"{n} symbols x (window {window} x {len(features)} features + "
                 f"{len(predictions)} predictions + a weight) + 3 account entries")
    else:
        expected = observation_size(window, len(features), len(predictions))
        shape = (f"window {window} x {len(features)} features + {len(predictions)} "
                 f"predictions + {len(ACCOUNT_STATE_NAMES)} account entries")
    if int(env_config["observation_size"]) != expected:
        raise ValueError(f"agent observation_size {env_config['observation_size']} != "
                         f"{shape} = {expected}")
    risk = dict(env_config["risk"])
    if "enabled" not in risk:
        raise ValueError("agent env_config.json's risk section lacks 'enabled'")
    if risk["enabled"] and "forecast_horizon_bars" not in risk:
        raise ValueError("agent env_config.json's risk section lacks 'forecast_horizon_bars'")
    risk_fn_from_config(risk, kind)  # the policy's own build: bad limits raise now, not at load
    action = {k: env.get(k, env_default(k)) for k in ACTION_KEYS}
    signal_columns(predictions, ActionRule.from_config(action))  # residual needs p_up, p_down
    return {
        "dir": AGENT_DIR,
        "algorithm": env_config["algorithm"],
        "env_kind": kind,
        **portfolio,
        "window": window,
        "observation_size": expected,
        "features": features,
        "prediction_columns": predictions,
        "obs_clip": None if obs_clip is None else float(obs_clip),
        "risk_lookback": int(env.get("risk_lookback", env_default("risk_lookback"))),
        "risk": risk,
        "action": action,
    }


def _portfolio_section(env_config: Mapping[str, Any], env: Mapping[str, Any]) -> dict[str, Any]:
    """A portfolio agent's own manifest entries: its symbols (the order of
    its weights and observation blocks), the action's shorting and gross
    leverage (the portfolio env's defaults: train_agent does not pass these
    keys). The portfolio env has no no-trade band
    (:class:`~tradingrl.envs.portfolio.PortfolioTradingEnv`)."""
    from tradingrl.data.columns import SYMBOL_PATTERN
    from tradingrl.envs.portfolio import PortfolioTradingEnv, action_size

    symbols = env_config.get("symbols")
    if not isinstance(symbols, list) or not symbols:
        raise ValueError("a portfolio agent's env_config.json must list its symbols (the order "
                         "of its weights); retrain it with this version's train_agent")
    bad = [s for s in symbols if not isinstance(s, str) or not re.match(SYMBOL_PATTERN, s)]
    if bad or len(set(symbols)) != len(symbols):
        raise ValueError(f"portfolio symbols must be distinct safe names, got {symbols}")
    # train_agent builds the env from ENV_PARAM_KEYS only, so the agent traded
    # with the env's defaults; a key in the env section would claim otherwise.
    claimed = sorted(k for k in ("allow_short", "max_gross_leverage") if k in env)
    if claimed:
        raise ValueError(f"train_agent.env sets {claimed}, which train_agent does not pass to "
                         "the portfolio env (it trains with the env's defaults)")
    defaults = inspect.signature(PortfolioTradingEnv.__init__).parameters
    allow_short = bool(defaults["allow_short"].default)
    leverage = float(defaults["max_gross_leverage"].default)
    if float(env.get("no_trade_band", 0.0)):
        raise ValueError("a portfolio agent has no no-trade band (no_trade_band 0)")
    residual = env.get("action_mode", "target") == "residual"
    shape = env_config.get("action_shape")
    if shape is not None and list(shape) != [action_size(len(symbols), allow_short, residual)]:
        raise ValueError(f"agent action_shape {shape} does not match {len(symbols)} symbols "
                         f"({'residual' if residual else 'target'} action, "
                         f"{'with' if allow_short else 'without'} shorting)")
    return {"symbols": list(symbols), "allow_short": allow_short, "max_gross_leverage": leverage}


def _check_reference(reference: Any, features: list[str]) -> pd.DataFrame:
    """The reference table, checked: a frame with timestamp, symbol and every
    feature the models read (finite), one row per (symbol, timestamp)."""
    if not isinstance(reference, pd.DataFrame):
        raise TypeError(f"reference must be a pandas DataFrame, got {type(reference).__name__}")
    missing = [c for c in ("timestamp", "symbol", *features) if c not in reference.columns]
    if missing:
        raise ValueError(f"the reference window lacks column(s) {missing[:5]}")
    if reference.empty:
        raise ValueError("the reference window has no rows")
    values = reference[features].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("the reference window has non-finite feature values")
    if reference.duplicated(["symbol", "timestamp"]).any():
        raise ValueError("the reference window has duplicate (symbol, timestamp) rows")
    return reference.reset_index(drop=True)


def build_policy_bundle(
    cnn_lstm_dir: str | Path,
    agent_dir: str | Path,
    features_params: Mapping[str, Any],
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    reference: pd.DataFrame | None = None,
    data_end: Any = None,
) -> Path:
    """Copy what the policy needs into ``out_dir`` (created; it must not
    exist or be empty, unless ``overwrite``, which deletes it first once the
    pieces have been checked) and write the ``policy.json`` manifest; returns
    ``out_dir``. ``manifest["min_history_bars"]`` is the least number of bars
    per symbol a decision needs (:func:`required_history`).

    cnn_lstm_dir: models/cnn_lstm (train_model's layout). agent_dir:
    models/agent (train_agent's layout, single-asset agents only).
    features_params: params.yaml's ``features`` section (warmup_bars, label),
    the settings the feature table the models learnt from was built with.
    reference: optional reference window for the drift check (a frame with
    timestamp, symbol, every feature the models read and, optionally,
    prediction and decision columns), written as ``reference.parquet`` and
    summarised in ``manifest["reference"]``. data_end: optional, the last
    bar (label ends included) of the data the pieces were trained on; with
    the pieces' own spans it makes ``manifest["training"]``
    (:func:`~tradingrl.registry.comparison.training_section`).
    Raises ValueError when a piece is missing or the pieces disagree
    (feature lists, observation size, risk limits).
    """
    from tradingrl.features.technical import FEATURE_COLUMNS
    from tradingrl.registry.comparison import training_section

    cnn_lstm_dir, agent_dir, out_dir = Path(cnn_lstm_dir), Path(agent_dir), Path(out_dir)
    warmup, label = _check_features(features_params)

    config = _read_json(cnn_lstm_dir / "config.json")
    trend_features = _read_json(cnn_lstm_dir / "feature_list.json")["features"]
    trend_scaler = _read_json(cnn_lstm_dir / "scaler.json")
    unknown = [f for f in trend_features if f not in FEATURE_COLUMNS]
    if unknown:
        raise ValueError(f"trend model features {unknown[:5]} are not produced by the feature code")
    if list(trend_scaler["feature_names"]) != list(trend_features):
        raise ValueError("the trend model's scaler.json and feature_list.json disagree")
    n_members = int(config["ensemble_size"])
    members = [f"model-{k}.pt" for k in range(n_members)]
    for name in (*_TREND_FILES, *members):
        if not (cnn_lstm_dir / name).is_file():
            raise ValueError(f"{cnn_lstm_dir / name} is missing")
    env_config = _read_json(agent_dir / "env_config.json")
    agent_scaler = _read_json(agent_dir / "scaler.json")
    for name in _AGENT_FILES:
        if not (agent_dir / name).is_file():
            raise ValueError(f"{agent_dir / name} is missing")
    agent = _agent_section(env_config, list(agent_scaler["feature_names"]))

    trend_window = int(config["window"])
    risk_on = bool(agent["risk"].get("enabled"))
    history = required_history(warmup, trend_window, agent["window"],
                               agent["risk_lookback"] if risk_on else None)
    if reference is not None:
        used = set(trend_features) | set(agent["features"])
        reference = _check_reference(reference, [f for f in FEATURE_COLUMNS if f in used])

    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise ValueError(f"{out_dir} exists and is not empty (overwrite=True replaces it)")
        shutil.rmtree(out_dir)
    (out_dir / TREND_DIR).mkdir(parents=True, exist_ok=True)
    (out_dir / AGENT_DIR).mkdir(parents=True, exist_ok=True)
    for name in (*_TREND_FILES, *members):
        shutil.copy2(cnn_lstm_dir / name, out_dir / TREND_DIR / name)
    for name in _AGENT_FILES:
        shutil.copy2(agent_dir / name, out_dir / AGENT_DIR / name)
    if reference is not None:
        reference.to_parquet(out_dir / REFERENCE_FILE, index=False)
    files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())

    manifest = {
        "format_version": FORMAT_VERSION,
        "min_history_bars": history["min_bars"],
        "features": {"warmup_bars": warmup, "label": label, "columns": list(FEATURE_COLUMNS)},
        "trend_model": {
            "dir": TREND_DIR,
            "window": trend_window,
            "ensemble_size": n_members,
            "mc_samples": int(config["mc_samples"]),
            "temperatures": list(config["temperatures"]),
            "features": list(trend_features),
        },
        "agent": agent,
        "training": training_section(config, env_config, data_end),
        "input": {
            "columns": list(INPUT_COLUMNS),
            "history": history,
            "timestamps": "ISO-8601 or datetime; naive times are UTC; strictly increasing "
                          "per symbol",
        },
        "output": {"columns": list(OUTPUT_COLUMNS)},
        "versions": runtime_versions(),
        "code_sha256": code_fingerprint(),
        "files_sha256": {name: file_sha256(out_dir / name) for name in files},
    }
    if agent["env_kind"] == "portfolio":
        # One decision over all the agent's symbols: every request holds each of them.
        manifest["input"]["symbols"] = list(agent["symbols"])
    if reference is not None:
        stamps = reference["timestamp"]
        manifest["reference"] = {
            "file": REFERENCE_FILE, "rows": len(reference),
            "symbols": int(reference["symbol"].nunique()), "sessions": int(stamps.nunique()),
            "first": pd.Timestamp(stamps.min()).isoformat(),
            "last": pd.Timestamp(stamps.max()).isoformat(),
            "columns": [str(c) for c in reference.columns],
        }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out_dir


def read_manifest(bundle_dir: str | Path, *, check_code: bool = True) -> dict[str, Any]:
    """The bundle's manifest after checking its files (and, with
    ``check_code``, that the library's decision code is the one the bundle
    was built with). Raises ValueError naming what differs."""
    bundle_dir = Path(bundle_dir)
    manifest = _read_json(bundle_dir / MANIFEST)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{bundle_dir / MANIFEST}: format_version "
                         f"{manifest.get('format_version')!r}, this code reads {FORMAT_VERSION}")
    changed = [name for name, digest in manifest["files_sha256"].items()
               if not (bundle_dir / name).is_file() or file_sha256(bundle_dir / name) != digest]
    if changed:
        raise ValueError(f"bundle files changed or missing since it was built: {changed}")
    if check_code:
        current = code_fingerprint()
        differs = [name for name, digest in manifest["code_sha256"].items()
                   if current.get(name) != digest]
        if differs:
            raise ValueError(f"the decision code differs from the code the bundle was built "
                             f"with in {differs}; rebuild the bundle (or load with "
                             "check_code=False to serve it with this code knowingly)")
    return manifest
