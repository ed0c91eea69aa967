"""The reference window a ``trading-policy`` bundle carries for the drift check.

:func:`build_reference_bundle` is the promote stage's bundle: the whole
decision (feature settings, scalers, CNN+LSTM, agent, risk layer) in one
folder with ``reference.parquet``, the bundle's own decisions over the last
sessions of its training data (:func:`reference_table`). Once the version is
champion, the drift check compares the newest window with it. It lives here,
not in :mod:`tradingrl.registry`, because the window is a replay of the
decisions (:mod:`tradingrl.monitoring.decisions`), and monitoring builds on
the registry, not the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd


def reference_table(bundle: str | Path, bars: pd.DataFrame, features: pd.DataFrame,
                    sessions: int) -> pd.DataFrame:
    """The bundle's decisions (features, predictions, targets) over the last
    ``sessions`` sessions of ``features`` (its feature table; ``bars``: the
    validated OHLCV it was built from), replayed with the bundle itself."""
    from tradingrl.monitoring.decisions import read_env_config, reference_window
    from tradingrl.registry.policy import TradingPolicy

    return reference_window(TradingPolicy.load(bundle), read_env_config(bundle), bars, features,
                            sessions=sessions)


def build_reference_bundle(cnn_lstm_dir: str | Path, agent_dir: str | Path,
                           features_params: Mapping[str, Any], out_dir: str | Path, *,
                           bars: pd.DataFrame, features: pd.DataFrame,
                           sessions: int) -> Path:
    """:func:`~tradingrl.registry.bundle.build_policy_bundle` into ``out_dir``
    (replaced) with its reference window over the last ``sessions`` sessions
    of ``features``; returns ``out_dir``."""
    from tradingrl.registry.bundle import build_policy_bundle

    pieces = (cnn_lstm_dir, agent_dir, features_params, out_dir)
    # The reference window is the bundle's own decisions: replayed with the
    # bundle built first, then added to it.
    bundle = build_policy_bundle(*pieces, overwrite=True)
    reference = reference_table(bundle, bars, features, int(sessions))
    return build_policy_bundle(*pieces, overwrite=True, reference=reference)
