"""``trading-policy`` as an MLflow pyfunc: the bundle behind one predict().

:class:`TradingPolicyModel` wraps :class:`~tradingrl.registry.policy.TradingPolicy`
(its artifact ``bundle`` is the bundle folder). Input: long-format OHLCV rows
(timestamp as an ISO-8601 string, symbol, open, high, low, close, volume),
at least the bundle's ``min_bars`` per symbol; output: one row per symbol
(:data:`~tradingrl.registry.bundle.OUTPUT_COLUMNS`) with the timestamp as an
ISO-8601 UTC string, so in-process calls and ``mlflow models serve`` (JSON
``dataframe_split``) answer the same. Accounts travel in the one string
parameter ``account``: a JSON object ``{"<symbol>": {<AccountState fields>}}``
(missing symbols and fields: a new flat account); "" = every account flat.
A portfolio bundle's account is the book's: ``{"weights": {"<symbol>": w},
<PortfolioAccountState's other fields>}``; "" = all cash.

The model logs the tradingrl package as code (``code_paths``), so a fresh
serving process runs the decision code the bundle was built with, and pins
the versions of the libraries on the decision path.

This module imports mlflow at import time (the class derives from
``PythonModel``); :mod:`tradingrl.registry` imports it only when asked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from tradingrl.registry.bundle import INPUT_COLUMNS, runtime_versions
from tradingrl.registry.champion import ARTIFACT_KEY, POLICY_MODEL
from tradingrl.registry.inputs import prepare_ohlcv
from tradingrl.registry.policy import TradingPolicy

ACCOUNT_PARAM = "account"
DEFAULT_MODEL_CONFIG: dict[str, Any] = {"check_code": True, "torch_threads": None}
LOGGED_MODEL_NAME = "trading_policy"


def parse_account_param(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``account`` parameter (a JSON object string, "" or absent) as a
    mapping symbol -> account fields, or None for all-flat accounts."""
    if not params:
        return None
    unknown = sorted(set(params) - {ACCOUNT_PARAM})
    if unknown:
        raise ValueError(f"unknown params {unknown}; the policy takes only {ACCOUNT_PARAM!r}")
    raw = params.get(ACCOUNT_PARAM)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise TypeError(f"params[{ACCOUNT_PARAM!r}] must be a JSON object string, got "
                        f"{type(raw).__name__}")
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"params[{ACCOUNT_PARAM!r}] is not valid JSON: {err.msg}") from err
    if not isinstance(parsed, dict):
        raise TypeError(f"params[{ACCOUNT_PARAM!r}] must be a JSON object of symbol -> account")
    return parsed


def serving_input(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """An OHLCV window as the served model takes it: the input columns in
    order, timestamps as ISO-8601 UTC strings (checked like any input)."""
    frame = prepare_ohlcv(ohlcv)[list(INPUT_COLUMNS)]
    return frame.assign(timestamp=[t.isoformat() for t in frame["timestamp"]])


def serving_output(decisions: pd.DataFrame) -> pd.DataFrame:
    """Decisions with the timestamp as an ISO-8601 UTC string."""
    return decisions.assign(timestamp=[t.isoformat() for t in decisions["timestamp"]])


class TradingPolicyModel(PythonModel):
    """pyfunc of a trading-policy bundle; see the module docstring.

    ``model_config`` (logged as :data:`DEFAULT_MODEL_CONFIG`; override at
    load time with ``mlflow.pyfunc.load_model(uri, model_config=...)``, or for
    ``mlflow models serve`` with the environment variable
    ``MLFLOW_PYFUNC_INFERENCE_CONFIG='{"torch_threads": 1}'``; MLflow ignores,
    with a warning, keys the logged config lacks): ``check_code`` False
    serves a bundle whose decision code differs from the loaded library's
    (knowingly); ``torch_threads`` n
    sets torch's intra-op threads for the whole process (a process deciding
    one window at a time is steadier with 1: on a busy 2-core machine, 2
    OpenMP threads stalled the trend model's small forward passes by ~200 ms).
    """

    def load_context(self, context: Any) -> None:
        config = dict(context.model_config or {})
        check_code = config.get("check_code", True)
        if not isinstance(check_code, bool):
            raise TypeError(f"model_config check_code must be a bool, got {check_code!r}")
        threads = config.get("torch_threads")
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise ValueError(f"model_config torch_threads must be an int >= 1, got {threads!r}")
            import torch

            torch.set_num_threads(threads)
        self.policy = TradingPolicy.load(context.artifacts[ARTIFACT_KEY], check_code=check_code)

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        return serving_output(self.policy.decide(model_input, parse_account_param(params)))


def pip_requirements() -> list[str]:
    """Pinned requirements of the decision path (tradingrl itself travels as code)."""
    return [f"{name}=={version}" for name, version in runtime_versions().items()
            if name not in ("python", "tradingrl")]


def log_trading_policy(
    bundle_dir: str | Path,
    example_ohlcv: pd.DataFrame,
    *,
    name: str = POLICY_MODEL,
    tags: Mapping[str, str] | None = None,
    bundle_code: bool = True,
) -> str:
    """Log the bundle as a pyfunc model (signature with the ``account``
    parameter, input example ``example_ohlcv`` with string timestamps) and
    register it as a new version of ``name``, tagged with ``tags`` and the
    bundle's input contract; returns the version. No alias is set (promotion
    does that). The model belongs to the active run when there is one (MLflow
    3 also logs models outside runs).

    ``example_ohlcv`` must be a window the policy can decide on (at least
    ``min_bars`` per symbol): it is decided on here, and its output is the
    signature's output example. ``bundle_code``: log the tradingrl package
    as the model's code (see the module docstring).
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    import tradingrl

    bundle_dir = Path(bundle_dir)
    policy = TradingPolicy.load(bundle_dir)
    example = serving_input(example_ohlcv)
    output = serving_output(policy.decide(example))
    signature = infer_signature(example, output, params={ACCOUNT_PARAM: ""})
    manifest = policy.manifest
    info = mlflow.pyfunc.log_model(
        name=LOGGED_MODEL_NAME,
        python_model=TradingPolicyModel(),
        artifacts={ARTIFACT_KEY: str(bundle_dir)},
        signature=signature,
        input_example=example,
        registered_model_name=name,
        pip_requirements=pip_requirements(),
        model_config=dict(DEFAULT_MODEL_CONFIG),
        code_paths=[str(Path(tradingrl.__file__).parent)] if bundle_code else None,
    )
    version = str(info.registered_model_version)
    version_tags = {
        "min_bars": str(manifest["min_history_bars"]),
        "algorithm": manifest["agent"]["algorithm"],
        "trend_window": str(manifest["trend_model"]["window"]),
        "agent_window": str(manifest["agent"]["window"]),
        "risk_enabled": str(bool(manifest["agent"]["risk"].get("enabled"))).lower(),
        **{k: str(v) for k, v in (tags or {}).items()},
    }
    client = MlflowClient()
    for key, value in version_tags.items():
        client.set_model_version_tag(name, version, key, value)
    return version
