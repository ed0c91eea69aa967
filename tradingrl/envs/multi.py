"""One single-asset agent, many symbols: each episode trades one market.

:class:`MultiMarketEnv` holds a :class:`SingleAssetTradingEnv` per market (all
with the same window, features and prediction columns, so one policy fits
all) and picks the market of each episode at reset: uniformly with the
environment's seeded generator, or ``reset(options={"market": i})``. Steps are
delegated unchanged, so timing, costs and the reward are exactly the single
env's; ``info["market"]`` and ``info["symbol"]`` say which market is traded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from tradingrl.envs.arrays import MarketArrays
from tradingrl.envs.single_asset import SingleAssetTradingEnv


class MultiMarketEnv(gym.Env):
    """Episodes over several markets with one single-asset env each.

    markets: one or more MarketArrays with the same feature and prediction names.
    env_kwargs: passed to every :class:`SingleAssetTradingEnv`.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, markets: Sequence[MarketArrays], **env_kwargs: Any) -> None:
        super().__init__()
        markets = list(markets)
        if not markets:
            raise ValueError("MultiMarketEnv needs at least one market")
        first = markets[0]
        for market in markets[1:]:
            if (market.feature_names != first.feature_names
                    or market.prediction_names != first.prediction_names):
                raise ValueError(f"market {market.symbol} has other feature or prediction "
                                 f"columns than {first.symbol}; one policy cannot trade both")
        self.envs = [SingleAssetTradingEnv(m, **env_kwargs) for m in markets]
        self.symbols = tuple(m.symbol for m in markets)
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self._current = 0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """options: {"market": i} forces the market; other options (start_bar)
        go to that market's env."""
        super().reset(seed=seed)
        options = dict(options or {})
        market = options.pop("market", None)
        if market is None:
            market = int(self.np_random.integers(len(self.envs)))
        elif not 0 <= int(market) < len(self.envs):
            raise ValueError(f"market must be in [0, {len(self.envs) - 1}], got {market}")
        self._current = int(market)
        # The chosen env's own generator (random start) is seeded from ours, so
        # a seeded MultiMarketEnv replays the same episodes.
        sub_seed = int(self.np_random.integers(2**31 - 1))
        obs, info = self.envs[self._current].reset(seed=sub_seed, options=options or None)
        return obs, self._tag(info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.envs[self._current].step(action)
        return obs, reward, terminated, truncated, self._tag(info)

    def _tag(self, info: dict[str, Any]) -> dict[str, Any]:
        info["market"] = self._current
        info["symbol"] = self.symbols[self._current]
        return info

    @property
    def current(self) -> SingleAssetTradingEnv:
        """The env of the episode in progress."""
        return self.envs[self._current]
