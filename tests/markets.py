"""Random-walk markets for the environment, portfolio and backtest tests.

``from tests.markets import random_market``; each test module sets its own
defaults (see the keyword arguments), and the draws are those each module
used to make on its own, so every test sees the same numbers as before.
"""

from __future__ import annotations

import numpy as np

from tradingrl.envs import DEFAULT_PREDICTION_COLUMNS, MarketArrays


def random_market(n: int = 300, seed: int = 0, symbol: str = "TEST", *,
                  n_features: int = 3, with_predictions: bool = True, thin_volume: bool = False,
                  timestamps_from: str | None = None,
                  **overrides: np.ndarray) -> MarketArrays:
    """A random walk of ``n`` bars (closes from 40, 2% per bar) whose opens gap
    from the previous close (1%), with volume of 5e5 .. 2e6 shares and
    ``n_features`` standard-normal float32 features named f0, f1, ....

    with_predictions: True adds the default prediction columns (probabilities
        from a Dirichlet, expected return ~ N(0, 0.01), confidence in [0, 1]);
        False leaves the MarketArrays' neutral ones.
    thin_volume: about 15% of bars get thin volume (1e3 .. 5e4, so a 10%
        volume cap binds on large orders) and 2% none at all.
    timestamps_from: a date, e.g. "2020-01-01": daily timestamps from it
        (None: no timestamps).
    overrides: arrays replacing the drawn ones (open, close, volume,
        features, predictions, timestamps, sigma, ...).
    """
    rng = np.random.default_rng(seed)
    close = 40.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    open_ = np.concatenate([[40.0], close[:-1]]) * np.exp(rng.normal(0.0, 0.01, n))
    volume = rng.uniform(5e5, 2e6, n)
    if thin_volume:
        thin = rng.random(n)
        volume[thin < 0.15] = rng.uniform(1e3, 5e4, int((thin < 0.15).sum()))
        volume[thin < 0.02] = 0.0
    arrays = {
        "open": open_, "high": np.maximum(open_, close) * 1.01,
        "low": np.minimum(open_, close) * 0.99, "close": close, "volume": volume,
        "features": rng.normal(size=(n, n_features)).astype(np.float32),
    }
    names = {"feature_names": tuple(f"f{j}" for j in range(n_features))}
    if with_predictions:
        arrays["predictions"] = np.column_stack([
            rng.dirichlet(np.ones(3), n), rng.normal(0, 0.01, n), rng.uniform(0, 1, n)])
        names["prediction_names"] = DEFAULT_PREDICTION_COLUMNS
    if timestamps_from is not None:
        arrays["timestamps"] = (np.datetime64(timestamps_from)
                                + np.arange(n).astype("timedelta64[D]"))
    arrays.update(overrides)
    return MarketArrays(symbol=symbol, **names, **arrays)
