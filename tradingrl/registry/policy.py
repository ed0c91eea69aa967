"""The whole trading decision as one object: OHLCV window in, target out.

:class:`TradingPolicy` loads a bundle (:mod:`tradingrl.registry.bundle`) and,
for each symbol of a long-format OHLCV window, decides at the symbol's LAST
bar t, through the pipeline's own code path:

1. features: :func:`tradingrl.features.build.build_feature_table` on the
   symbol's bars with the bundle's warm-up and label spec (the features
   stage's call; the first ``warmup_bars`` bars are dropped, so are bars with
   undefined features);
2. trend model: ``TrendModel.predict`` on the window of feature rows ending
   at t (alone: a symbol's prediction never depends on the other symbols of
   the request, even with MC dropout);
3. observation: :func:`tradingrl.envs.decision.observation_inputs` and
   :func:`~tradingrl.envs.decision.write_observation`, the functions the
   environment builds its observation with: the agent's features of the
   last ``window`` feature rows scaled with the agent's scaler, the
   prediction columns at t, both float32 clipped to ``obs_clip``, then the
   account's position, cash / equity, unrealised PnL / equity and drawdown
   (each clipped);
4. agent: the SB3 policy's deterministic action, clipped to [-1, 1], read
   by the bundle's action rule (the target itself, or an adjustment of the
   supervised position p_up - p_down: :func:`~tradingrl.envs.decision.requested_target`);
5. risk layer: the risk function of
   :func:`~tradingrl.envs.decision.risk_fn_from_config` (the bundle's risk
   section) applied by :func:`~tradingrl.envs.decision.allowed_target` to
   the environment's :func:`~tradingrl.envs.decision.risk_context`: the last
   ``risk_lookback`` log returns of the feature rows' closes, sigma over the
   window's closes, the account, the (float32, clipped) confidence and
   expected return at t, and the risk state carried in the account;
6. no-trade band (the action rule's ``no_trade_band`` > 0): a target less
   than the band away from the account's position returns that position
   (:func:`~tradingrl.envs.decision.banded_target`).

A portfolio bundle (the agent's ``env_kind`` "portfolio") makes one decision
over all its symbols instead, as :class:`~tradingrl.envs.portfolio.PortfolioTradingEnv`
does: the request must hold every symbol of the portfolio, with the same last
bar; steps 1 and 2 are per symbol as above, then the feature rows are aligned
on the timestamps every symbol has (the env steps over those), the
observation is the env's (each symbol's window, each symbol's predictions,
the book's weights, cash / equity, unrealised PnL / equity, drawdown), the
action becomes weights by the env's map
(:func:`~tradingrl.envs.portfolio.weights_from_action`), and the portfolio
risk layer checks them (:func:`~tradingrl.envs.portfolio.allowed_weights`)
with the book's account (:class:`~tradingrl.registry.inputs.PortfolioAccountState`).
Each row's ``target`` is then the symbol's weight, a signed fraction of the
book's equity (tests/unit/test_portfolio_policy.py).

Timing: the returned ``target`` is the signed fraction of equity to hold,
decided with bars <= t only, to be filled at bar t+1 (its open by default,
as in the environment and the backtest) after costs.

Exactness: given the same bars from the start of a symbol's history, the
observation, the agent's action and the risk-adjusted target equal the
environment's at that bar for the same account and risk state: the code is
the environment's, only the inputs come from the OHLCV window (the unit test
steps the env and compares bit for bit; the trend model's prediction at t
is made from t's window alone, which a batched prediction matches up to
float noise, ~1e-9, without MC dropout; with MC dropout a batch draws other
masks than a lone window, so batched and served predictions differ by the
MC noise, a few 1e-3 in the probabilities). With only the minimum history
(``min_bars``), the recursive indicators (EMAs, Wilder smoothing, STC) start
later than in the pipeline; their memory of the start has decayed after the
warm-up but is not zero: on the synthetic market the observation differed
from the full-history one by at most 1.9e-3 (scaled units) and the target by
at most 5.9e-4 (tests/unit/test_trading_policy.py). Send more history than
the minimum to come closer; all of it is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.models.predict import PREDICTION_COLUMNS
from tradingrl.registry.bundle import OUTPUT_COLUMNS, read_manifest
from tradingrl.registry.inputs import AccountState, check_ohlcv, parse_accounts


class TradingPolicy:
    """The bundled decision (features, trend model, agent, risk layer); see
    the module docstring. Load with :meth:`load`; decide with :meth:`decide`."""

    def __init__(self, manifest: dict[str, Any], trend_model: Any, agent: Any,
                 agent_scaler: Any) -> None:
        from tradingrl.features.labels import LabelSpec

        self.manifest = manifest
        self.trend_model = trend_model
        self.agent = agent
        self.agent_scaler = agent_scaler
        spec = manifest["agent"]
        self.warmup_bars = int(manifest["features"]["warmup_bars"])
        self.label_spec = LabelSpec(**manifest["features"]["label"])
        self.window = int(spec["window"])
        self.prediction_columns = list(spec["prediction_columns"])
        self.obs_clip = spec["obs_clip"]
        self.obs_size = int(spec["observation_size"])
        self.min_bars = int(manifest["min_history_bars"])
        self.min_feature_rows = int(manifest["input"]["history"]["min_feature_rows"])
        from tradingrl.envs.decision import (
            ActionRule,
            risk_columns,
            risk_fn_from_config,
            signal_columns,
        )

        self.kind = str(spec.get("env_kind", "single_asset"))
        self.risk_fn = risk_fn_from_config(spec["risk"], self.kind)
        self.action_rule = ActionRule.from_config(spec.get("action"))
        if self.kind == "portfolio":
            self.symbols = tuple(str(s) for s in spec["symbols"])
            self.allow_short = bool(spec["allow_short"])
            self.max_gross_leverage = float(spec["max_gross_leverage"])
        self._signal_columns = signal_columns(self.prediction_columns, self.action_rule)
        self.risk_lookback = int(spec["risk_lookback"])
        self._risk_columns = risk_columns(self.prediction_columns)
        if list(agent_scaler.feature_names) != list(spec["features"]):
            raise ValueError("the agent's scaler and the manifest disagree on the features")
        from tradingrl.features.technical import FEATURE_COLUMNS

        position = {name: j for j, name in enumerate(FEATURE_COLUMNS)}
        for who, names in (("trend model", trend_model.feature_names),
                           ("agent", agent_scaler.feature_names)):
            unknown = [n for n in names if n not in position]
            if unknown:
                raise ValueError(f"the {who} reads features this code does not compute: "
                                 f"{unknown[:5]}")
        self._trend_columns = np.array([position[n] for n in trend_model.feature_names])
        self._agent_columns = np.array([position[n] for n in agent_scaler.feature_names])

    @classmethod
    def load(cls, bundle_dir: str | Path, *, check_code: bool = True) -> TradingPolicy:
        """Load a bundle written by :func:`~tradingrl.registry.bundle.build_policy_bundle`
        (its files are checked against the manifest; ``check_code``: also refuse
        a bundle built with different decision code)."""
        from tradingrl.agents.training import algorithm_classes
        from tradingrl.models.data import FeatureScaler
        from tradingrl.models.predict import TrendModel

        bundle_dir = Path(bundle_dir)
        manifest = read_manifest(bundle_dir, check_code=check_code)
        trend = TrendModel.load(bundle_dir / manifest["trend_model"]["dir"])
        agent_dir = bundle_dir / manifest["agent"]["dir"]
        agent = algorithm_classes()[manifest["agent"]["algorithm"]].load(
            agent_dir / "agent.zip", device="cpu")
        observed = int(np.prod(agent.observation_space.shape))
        if observed != int(manifest["agent"]["observation_size"]):
            raise ValueError(f"agent.zip observes {agent.observation_space.shape}, the manifest "
                             f"says {manifest['agent']['observation_size']}")
        return cls(manifest, trend, agent, FeatureScaler.load(agent_dir / "scaler.json"))

    # ------------------------------------------------------------------ decisions
    def decide(self, ohlcv: pd.DataFrame,
               account: Mapping[str, AccountState | Mapping[str, Any]] | None = None
               ) -> pd.DataFrame:
        """One row per symbol (sorted by symbol) for the LAST bar of each
        symbol's window, columns :data:`~tradingrl.registry.bundle.OUTPUT_COLUMNS`:

        target: the risk-checked position, signed fraction of equity, to hold
            from bar t+1 (filled at its open); requested_target: the agent's
            action clipped to [-1, 1]; risk_binding: the risk rules that
            changed it, comma-joined in the order applied ("" if none);
        p_down, p_flat, p_up, expected_return (forward log return over the
            label horizon), confidence, entropy, direction_std: the trend
            model at t;
        risk_peak_equity, risk_breaker_active, risk_bars_since_trip: the
            risk layer's state after this decision (pass it back in the
            next AccountState).

        ``ohlcv``: long format (timestamp, symbol, open, high, low, close,
        volume), at least ``min_bars`` bars per symbol; see
        :func:`~tradingrl.registry.inputs.prepare_ohlcv`. ``account``: per
        symbol, an AccountState or a mapping of its fields; symbols left out
        trade a new flat account. A portfolio bundle takes one account for the
        book instead: a PortfolioAccountState or a mapping of its fields
        (None: all cash), and decides for exactly its symbols.
        """
        return self.decide_with_observations(ohlcv, account)[0]

    def decide_with_observations(
        self, ohlcv: pd.DataFrame,
        account: Mapping[str, AccountState | Mapping[str, Any]] | None = None,
    ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """:meth:`decide`, plus each symbol's observation (float32, the
        environment's layout) as the agent saw it; a portfolio bundle's one
        observation is under the key ``"portfolio"``."""
        bars = check_ohlcv(ohlcv)
        if self.kind == "portfolio":
            return self._decide_portfolio(bars, account)
        accounts = parse_accounts(account, [str(bars.symbol[a]) for a in bars.starts])
        rows, observations = [], {}
        for a, b in zip(bars.starts, bars.stops, strict=True):
            symbol = str(bars.symbol[a])
            row, obs = self._decide_symbol(
                symbol, {c: getattr(bars, c)[a:b] for c in ("open", "high", "low", "close",
                                                            "volume")},
                bars.timestamp(b - 1), accounts[symbol])
            rows.append(row)
            observations[symbol] = obs
        columns = {c: [row[c] for row in rows] for c in OUTPUT_COLUMNS}
        columns["timestamp"] = pd.DatetimeIndex(columns["timestamp"])
        return pd.DataFrame(columns), observations

    def _symbol_inputs(self, symbol: str, bars: dict[str, np.ndarray], stamp: pd.Timestamp
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """One symbol's feature rows (the features stage's rule), their
        positions among its bars, and the trend model's prediction at its
        last bar (from the symbol's own rows alone)."""
        from tradingrl.features.build import feature_block

        close = bars["close"]
        if len(close) < self.min_bars:
            history = self.manifest["input"]["history"]
            parts = ", ".join(f"{k} {v}" for k, v in history.items()
                              if k not in ("min_bars", "min_feature_rows", "warmup_bars"))
            raise ValueError(f"symbol {symbol}: {len(close)} bars, the policy needs at least "
                             f"{self.min_bars} (features warm-up {self.warmup_bars} + the "
                             f"largest of {parts})")
        # The feature table's rows for this symbol, by the features stage's rule.
        block = feature_block(bars["open"], bars["high"], bars["low"], close, bars["volume"],
                              warmup_bars=self.warmup_bars)
        if not block.kept[-1]:
            raise ValueError(f"symbol {symbol}: the last bar ({stamp.isoformat()}) has undefined "
                             "features (zero volume or a flat bar?); no decision for it")
        positions = np.flatnonzero(block.kept)
        if len(positions) < self.min_feature_rows:
            raise ValueError(f"symbol {symbol}: only {len(positions)} bars after the warm-up have "
                             f"defined features, the policy needs {self.min_feature_rows}")
        table = block.values[positions]

        trend = self.trend_model
        window = table[-trend.window:][:, self._trend_columns]
        predicted = {k: float(v[0]) for k, v in trend.predict_windows(window[None]).items()}

        return table, positions, predicted

    def _decide_symbol(self, symbol: str, bars: dict[str, np.ndarray], stamp: pd.Timestamp,
                       account: AccountState) -> tuple[dict[str, Any], np.ndarray]:
        from tradingrl.envs.arrays import log_returns, rolling_sigma
        from tradingrl.envs.decision import (
            allowed_target,
            banded_target,
            observation_bound,
            observation_inputs,
            requested_target,
            return_window,
            risk_context,
            write_observation,
        )
        from tradingrl.risk.limits import RiskState

        close = bars["close"]
        table, positions, predicted = self._symbol_inputs(symbol, bars, stamp)

        # The observation, by the environment's own functions (the same float32
        # casts and clips as on its MarketArrays).
        features, preds = observation_inputs(
            self.agent_scaler.transform(table[-self.window:][:, self._agent_columns]),
            np.asarray([predicted[c] for c in self.prediction_columns], dtype=np.float32),
            self.obs_clip)
        obs = np.empty(self.obs_size, dtype=np.float32)
        write_observation(obs, features.reshape(-1), preds, account.position,
                          account.cash_fraction, account.unrealised_pnl, account.drawdown,
                          observation_bound(self.obs_clip))

        action, _ = self.agent.predict(obs, deterministic=True)
        label = f"symbol {symbol}: "
        requested = requested_target(action, label, rule=self.action_rule, predictions=preds,
                                     columns=self._signal_columns)

        state = RiskState(float(account.peak_equity), bool(account.breaker_active),
                          int(account.bars_since_trip))
        target, binding = requested, ()
        if self.risk_fn is not None:
            # The environment's context at t: its market's rows are these
            # feature rows, so its returns are those between their closes.
            returns = log_returns(close[positions[-self.risk_lookback - 1:]])
            memory: dict[str, Any] = {"risk_state": state}
            context = risk_context(
                len(close) - 1, account.equity, account.equity / (1.0 - account.drawdown),
                account.drawdown, account.position,
                return_window(returns, len(returns) - 1, self.risk_lookback),
                # Over all the bars, as the pipeline takes it over the symbol's
                # whole history: pandas' rolling std is a running sum whose last
                # bits depend on where it started (~1e-17 from the last window).
                float(rolling_sigma(close)[-1]),
                preds, self._risk_columns, memory)
            target = allowed_target(self.risk_fn, requested, context, label)
            state, binding = memory["risk_state"], memory["binding"]
        if self.action_rule.no_trade_band > 0.0:
            target = banded_target(target, account.position, self.action_rule.no_trade_band)

        row = {
            "symbol": symbol,
            "timestamp": stamp,
            "target": target,
            "requested_target": requested,
            "risk_binding": ",".join(binding),
            **{c: predicted[c] for c in PREDICTION_COLUMNS},
            "risk_peak_equity": float(state.peak_equity),
            "risk_breaker_active": bool(state.breaker_active),
            "risk_bars_since_trip": int(state.bars_since_trip),
        }
        return row, obs

    def _decide_portfolio(self, bars: Any, account: Any
                          ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """A portfolio agent's one decision over all its symbols at their
        common last bar t: the observation, weights and risk layer of
        :class:`~tradingrl.envs.portfolio.PortfolioTradingEnv` at t, from the
        request's bars (the env steps over the feature rows every symbol
        has, so the rows are aligned on their timestamps first). Returns the
        rows (one per symbol, the portfolio's order) and ``{"portfolio": obs}``."""
        from tradingrl.envs.arrays import log_returns, rolling_sigma
        from tradingrl.envs.decision import (
            observation_bound,
            observation_inputs,
            supervised_signal,
        )
        from tradingrl.envs.portfolio import (
            allowed_weights,
            model_risk_inputs,
            portfolio_risk_context,
            residual_weights,
            weights_from_action,
            write_portfolio_account,
        )
        from tradingrl.registry.inputs import PortfolioAccountState
        from tradingrl.risk.limits import RiskState

        given = [str(bars.symbol[a]) for a in bars.starts]
        missing = [s for s in self.symbols if s not in given]
        extra = [s for s in given if s not in self.symbols]
        if missing or extra:
            raise ValueError(f"this portfolio policy decides for exactly its symbols "
                             f"{list(self.symbols)}; the window lacks {missing} and has "
                             f"{extra} besides")
        if account is None:
            account = PortfolioAccountState()
        elif not isinstance(account, PortfolioAccountState):
            account = PortfolioAccountState.from_mapping(account)
        held = account.weight_vector(self.symbols)

        at = {s: k for k, s in enumerate(given)}
        inputs, stamps = [], []
        for symbol in self.symbols:
            a, b = bars.starts[at[symbol]], bars.stops[at[symbol]]
            columns = {c: getattr(bars, c)[a:b] for c in ("open", "high", "low", "close",
                                                          "volume")}
            table, positions, predicted = self._symbol_inputs(symbol, columns,
                                                              bars.timestamp(b - 1))
            inputs.append((columns["close"], table, positions, predicted))
            stamps.append(bars.ns[a:b][positions])
        last = {s: int(ns[-1]) for s, ns in zip(self.symbols, stamps, strict=True)}
        if len(set(last.values())) > 1:
            shown = {s: pd.Timestamp(v, tz="UTC").isoformat() for s, v in last.items()}
            raise ValueError(f"the portfolio decides at one bar for all its symbols; their last "
                             f"bars differ: {shown}")
        common = stamps[0]
        for ns in stamps[1:]:
            common = np.intersect1d(common, ns, assume_unique=True)
        if len(common) < self.min_feature_rows:
            raise ValueError(f"the symbols share {len(common)} bars with defined features, the "
                             f"policy needs {self.min_feature_rows} (the environment steps over "
                             "the bars every symbol has)")
        rows = common[-max(self.window, self.risk_lookback + 1):]
        windows, preds, returns, sigma = [], [], [], []
        for (close, table, positions, predicted), ns in zip(inputs, stamps, strict=True):
            aligned = np.flatnonzero(np.isin(ns, rows, assume_unique=True))
            windows.append(self.agent_scaler.transform(
                table[aligned[-self.window:]][:, self._agent_columns]))
            preds.append([predicted[c] for c in self.prediction_columns])
            returns.append(log_returns(close[positions[aligned]])[1:])
            sigma.append(float(rolling_sigma(close)[-1]))
        features, predictions = observation_inputs(
            np.stack(windows), np.asarray(preds, dtype=np.float32), self.obs_clip)
        n = len(self.symbols)
        obs = np.empty(self.obs_size, dtype=np.float32)
        k = features.size + predictions.size
        obs[:features.size] = features.reshape(-1)
        obs[features.size:k] = predictions.reshape(-1)
        write_portfolio_account(obs, k, held, float(account.cash_fraction),
                                account.unrealised_pnl, account.drawdown,
                                observation_bound(self.obs_clip))

        action, _ = self.agent.predict(obs, deterministic=True)
        if self.action_rule.residual:
            up, down = self._signal_columns
            requested = residual_weights(
                action, supervised_signal(predictions[:, up], predictions[:, down]),
                self.action_rule.residual_scale, self.allow_short, self.max_gross_leverage)
        else:
            requested = weights_from_action(action, n, self.allow_short,
                                            self.max_gross_leverage)
        state = RiskState(float(account.peak_equity), bool(account.breaker_active),
                          int(account.bars_since_trip))
        target, binding = requested.copy(), ()
        if self.risk_fn is not None:
            memory: dict[str, Any] = {"risk_state": state}
            context = portfolio_risk_context(
                len(common) - 1, account.equity, account.equity / (1.0 - account.drawdown),
                account.drawdown, held, np.column_stack(returns)[-self.risk_lookback:],
                np.asarray(sigma), *model_risk_inputs(predictions, self.prediction_columns),
                self.symbols, memory)
            target = allowed_weights(self.risk_fn, requested, context, self.allow_short,
                                     self.max_gross_leverage)
            state, binding = memory["risk_state"], memory["binding"]

        stamp = pd.Timestamp(int(common[-1]), tz="UTC")
        out = []
        for i, (symbol, (_, _, _, predicted)) in enumerate(zip(self.symbols, inputs,
                                                               strict=True)):
            out.append({
                "symbol": symbol, "timestamp": stamp, "target": float(target[i]),
                "requested_target": float(requested[i]), "risk_binding": ",".join(binding),
                **{c: predicted[c] for c in PREDICTION_COLUMNS},
                "risk_peak_equity": float(state.peak_equity),
                "risk_breaker_active": bool(state.breaker_active),
                "risk_bars_since_trip": int(state.bars_since_trip),
            })
        columns = {c: [row[c] for row in out] for c in OUTPUT_COLUMNS}
        columns["timestamp"] = pd.DatetimeIndex(columns["timestamp"])
        return pd.DataFrame(columns), {"portfolio": obs}
