"""The backtester against the trading environment it must reproduce, hand-computed
paths, cost-free holding, no look-ahead, ruin, the risk-function path, the
equal-weight book and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.markets import random_market as random_walk_market
from tradingrl.backtest import backtest_equal_weight, backtest_positions
from tradingrl.envs import ExecutionCosts, MarketArrays, SingleAssetTradingEnv, risk_layer_hook

CASH = 1_000_000.0
FIELDS_VS_INFO = {
    "targets": "target", "traded_shares": "traded_shares", "fill_price": "fill_price",
    "commission": "commission", "spread_cost": "spread_cost", "impact_cost": "impact_cost",
    "costs": "cost", "shares": "shares", "cash": "cash", "equity": "equity",
    "log_returns": "log_return", "positions": "position",
    "unfilled_shares": "unfilled_shares", "unfilled_notional": "unfilled_notional",
}


def random_market(n: int = 400, seed: int = 0, symbol: str = "TEST",
                  **kwargs: object) -> MarketArrays:
    """:func:`tests.markets.random_market` with 2 features, neutral predictions
    and thin volume: about 15% of bars thin (the 10% cap binds on large
    orders) and 2% without volume."""
    return random_walk_market(n, seed, symbol, n_features=2, with_predictions=False,
                              thin_volume=True, **kwargs)


def tiny_market(open_: list[float], close: list[float], volume: float | list[float] = 1e9,
                sigma: float = 0.01) -> MarketArrays:
    """A hand-checkable market with a constant, known sigma."""
    n = len(close)
    return MarketArrays(
        symbol="HAND", open=open_, high=np.maximum(open_, close), low=np.minimum(open_, close),
        close=close, volume=np.broadcast_to(np.asarray(volume, dtype=float), (n,)),
        features=np.zeros((n, 1), np.float32), feature_names=("f",), sigma=np.full(n, sigma))


def random_targets(n: int, seed: int) -> np.ndarray:
    """Long/short flips, held stretches, and values outside [-1, 1] (clipped)."""
    rng = np.random.default_rng(seed)
    targets = rng.uniform(-1.3, 1.3, n)
    held = rng.random(n) < 0.3
    for k in np.flatnonzero(held):
        if k > 0:
            targets[k] = targets[k - 1]
    return targets


def step_env(market: MarketArrays, targets: np.ndarray, start_bar: int,
             **env_kwargs: object) -> list[dict]:
    env = SingleAssetTradingEnv(market, window=1, start_bar=start_bar,
                                end_bar=start_bar + len(targets) + 1, **env_kwargs)
    env.reset(options={"start_bar": start_bar})
    infos = []
    for target in targets:
        *_, terminated, truncated, info = env.step(np.array([target]))
        infos.append(info)
        if terminated or truncated:
            break
    return infos


def assert_matches_env(result, infos: list[dict]) -> None:
    assert result.n_steps == len(infos)
    np.testing.assert_array_equal(result.bars, [i["bar"] for i in infos])
    np.testing.assert_array_equal(result.capped, [i["capped"] for i in infos])
    for field, key in FIELDS_VS_INFO.items():
        expected = np.array([i[key] for i in infos])
        scale = max(float(np.abs(expected).max()), 1e-300)
        np.testing.assert_allclose(getattr(result, field), expected, rtol=1e-10,
                                   atol=1e-12 * scale, err_msg=field)


# ------------------------------------------------------------------ equality with the env
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fill", ["next_open", "next_close"])
@pytest.mark.parametrize("costs", [None, ExecutionCosts(3.0, 10.0, 1.0, 0.02)])
def test_backtest_equals_stepping_the_env(seed: int, fill: str, costs) -> None:
    market = random_market(seed=seed)
    targets = random_targets(300, seed + 100)
    start = 40 + seed
    result = backtest_positions(market, targets, start_bar=start, costs=costs, fill=fill,
                                initial_cash=CASH)
    infos = step_env(market, targets, start, costs=costs, fill=fill, initial_cash=CASH)
    assert_matches_env(result, infos)
    # The cases the test is meant to cover do occur: capped fills, a zero-volume
    # bar that fills nothing, sign flips, and no ruin.
    assert 0 < result.capped.sum() < result.n_steps
    assert np.any(result.capped & (result.traded_shares == 0.0))
    assert np.any(np.sign(result.positions[1:]) * np.sign(result.positions[:-1]) < 0)
    assert not result.ruined and result.n_steps == len(targets)
    assert result.total_costs > 0


def test_kernel_and_env_replay_paths_agree() -> None:
    """risk_fn halving the target through the env replay == the kernel on halved targets."""
    market = random_market(seed=5)
    targets = np.random.default_rng(5).uniform(-1.0, 1.0, 200)
    via_env = backtest_positions(market, targets, start_bar=30,
                                 risk_fn=lambda target, context: 0.5 * target)
    via_kernel = backtest_positions(market, 0.5 * targets, start_bar=30)
    for field in FIELDS_VS_INFO:
        np.testing.assert_allclose(getattr(via_env, field), getattr(via_kernel, field),
                                   rtol=1e-10, atol=1e-12 * CASH, err_msg=field)
    np.testing.assert_array_equal(via_env.capped, via_kernel.capped)


def test_risk_layer_path_equals_the_env_with_the_same_hook() -> None:
    from tradingrl.risk import RiskLimits

    limits = RiskLimits(max_position=0.3, vol_target=0.10, var_limit=0.02, drawdown_limit=0.2)
    market = random_market(seed=7)
    targets = np.random.default_rng(7).choice([-1.0, 1.0], 250)
    result = backtest_positions(market, targets, start_bar=70, risk_fn=risk_layer_hook(limits),
                                risk_lookback=60)
    # The env with a different observation window: decision bars still line up.
    env = SingleAssetTradingEnv(market, window=10, risk_fn=risk_layer_hook(limits),
                                risk_lookback=60)
    env.reset(options={"start_bar": 70})
    infos = [env.step(np.array([a]))[-1] for a in targets]
    assert_matches_env(result, infos)
    assert np.abs(result.targets).max() <= 0.3 + 1e-12  # the layer bound the +-1 requests
    assert np.abs(result.targets).max() > 0.05


@pytest.mark.parametrize("with_risk_fn", [False, True])
def test_close_at_end_equals_the_env_and_ends_flat_uncapped(with_risk_fn: bool) -> None:
    """The last step targets flat whatever its target, and the volume cap does
    not cut that fill (it pays the square-root impact of its whole size)."""
    volume = np.full(400, 1.0e6)
    volume[:300] = 2.0e4  # thin: the cap binds on every large order, the exit too without the rule
    market = random_market(seed=8, volume=volume)
    targets = np.random.default_rng(8).choice([-1.0, 1.0], 120)
    targets[-1] = 1.0
    risk_fn = (lambda target, context: 0.9 * target) if with_risk_fn else None
    result = backtest_positions(market, targets, start_bar=60, risk_fn=risk_fn,
                                close_at_end=True)
    infos = step_env(market, targets, 60, risk_fn=risk_fn, close_at_end=True)
    assert_matches_env(result, infos)
    assert result.targets[-1] == 0.0 and result.shares[-1] == 0.0
    assert result.positions[-1] == 0.0 and not result.capped[-1]
    assert abs(result.traded_shares[-1]) > 0.1 * 2.0e4  # beyond the cap
    assert result.n_capped > 0
    open_end = backtest_positions(market, targets, start_bar=60, risk_fn=risk_fn)
    np.testing.assert_array_equal(result.equity[:-1], open_end.equity[:-1])
    assert result.costs[-1] > 0.0 and open_end.shares[-1] != 0.0


def test_cap_uses_the_volume_known_at_decision_time_and_counts_the_unfilled() -> None:
    """Bar t+1's own volume is unknown at t: a thin fill bar caps nothing; a
    thin past caps at 10% of the mean volume of bars t-19 .. t. Unfilled
    shares are dropped and counted."""
    thin_fill = tiny_market([10.0, 11.0], [10.0, 12.0], volume=[10_000.0, 500.0])
    result = backtest_positions(thin_fill, [1.0], start_bar=0, initial_cash=1000.0,
                                costs=ExecutionCosts(1.0, 2.0, 0.5, 0.1))
    assert not result.capped[0] and result.traded_shares[0] == 100.0
    assert result.impact_cost[0] == pytest.approx(0.5 * 0.01 * math.sqrt(0.01) * 1100.0, rel=1e-12)
    assert result.n_capped == 0 and result.unfilled_fraction == 0.0
    # Known volume at bar 1: mean(300, 700) = 500 -> cap 50 of the 1100/12 wanted.
    thin_past = tiny_market([10.0, 10.0, 12.0], [10.0, 12.0, 12.0],
                            volume=[300.0, 700.0, 1e9])
    result = backtest_positions(thin_past, [0.0, 1.0], start_bar=0, initial_cash=1000.0,
                                costs=ExecutionCosts(0.0, 0.0, 0.0, 0.1))
    wanted = 1000.0 / 12.0
    assert result.capped.tolist() == [False, True] and result.traded_shares[1] == 50.0
    assert result.unfilled_shares[1] == pytest.approx(wanted - 50.0, rel=1e-12)
    assert result.unfilled_notional[1] == pytest.approx((wanted - 50.0) * 12.0, rel=1e-12)
    assert result.n_capped == 1
    assert result.unfilled_fraction == pytest.approx((wanted - 50.0) / wanted, rel=1e-12)
    # A longer window averages further back; volume_window=1 is the decision bar's own.
    own = backtest_positions(thin_past, [0.0, 1.0], start_bar=0, initial_cash=1000.0,
                             costs=ExecutionCosts(0.0, 0.0, 0.0, 0.1, volume_window=1))
    assert own.traded_shares[1] == pytest.approx(70.0)


# ------------------------------------------------------------------ by hand
def test_target_one_next_close_by_hand() -> None:
    """Sized at close_t, filled at close_{t+1}: 100 shares (1000/10) bought at 12
    (cash -200), marked at 12 -> 1000; sell 100 - 1000/12 = 50/3 at 11 (cash -50/3),
    mark 250/3 shares at 11 -> 900; sell 250/3 - 900/11 = 50/33 at 13 (cash 100/33),
    mark 900/11 shares at 13 -> 35200/33."""
    market = tiny_market([10.0, 11.0, 12.0, 12.0], [10.0, 12.0, 11.0, 13.0])
    result = backtest_positions(market, np.ones(3), start_bar=0, costs=ExecutionCosts.zero(),
                                initial_cash=1000.0, fill="next_close")
    np.testing.assert_allclose(result.traded_shares, [100.0, -50 / 3, -50 / 33], rtol=1e-12)
    np.testing.assert_allclose(result.fill_price, [12.0, 11.0, 13.0])
    np.testing.assert_allclose(result.cash, [-200.0, -50 / 3, 100 / 33], rtol=1e-12)
    np.testing.assert_allclose(result.equity, [1000.0, 900.0, 35200 / 33], rtol=1e-12)
    np.testing.assert_allclose(result.log_returns, np.log([1.0, 0.9, 35200 / 33 / 900]),
                               atol=1e-14)
    np.testing.assert_allclose(result.positions, [1.2, 2750 / 2700, 35100 / 35200],
                               rtol=1e-12)
    np.testing.assert_array_equal(result.bars, [1, 2, 3])
    assert result.n_trades == 3


def test_target_one_next_open_rebalances_by_hand() -> None:
    """Decide at close 10 with 1000: buy 100 at the next open 11 (cash -100), mark
    at 12 -> 1100; then 1100/12 = 91.67 shares wanted: sell 8.33 at 12 (cash 0),
    mark at 11 -> 1008.33; then 1008.33/11 = 91.67 already held: no trade."""
    market = tiny_market([10.0, 11.0, 12.0, 12.0], [10.0, 12.0, 11.0, 13.0])
    result = backtest_positions(market, np.ones(3), start_bar=0, costs=ExecutionCosts.zero(),
                                initial_cash=1000.0)
    held = 1100.0 / 12.0
    np.testing.assert_allclose(result.traded_shares, [100.0, held - 100.0, 0.0], rtol=1e-12)
    assert result.traded_shares[2] == 0.0
    np.testing.assert_allclose(result.fill_price, [11.0, 12.0, 12.0])
    np.testing.assert_allclose(result.equity, [1100.0, held * 11.0, held * 13.0], rtol=1e-12)
    np.testing.assert_allclose(result.cash, [-100.0, 0.0, 0.0], atol=1e-10)
    np.testing.assert_allclose(result.positions, [1200.0 / 1100.0, 1.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(result.turnover, [1.1, (100.0 - held) * 12.0 / 1100.0, 0.0],
                               rtol=1e-12)
    assert result.log_returns.sum() == pytest.approx(math.log(held * 13.0 / 1000.0), rel=1e-12)


def test_costs_of_one_fill_by_hand() -> None:
    """100 shares at 11: notional 1100; commission 1 bps = 0.11, half of 2 bps
    spread = 0.11, impact 0.5 * sigma 0.01 * sqrt(100 / 10000) * 1100 = 0.55."""
    market = tiny_market([10.0, 11.0], [10.0, 12.0], volume=10_000.0)
    result = backtest_positions(market, [1.0], start_bar=0, initial_cash=1000.0,
                                costs=ExecutionCosts(1.0, 2.0, 0.5, 0.1))
    assert result.commission[0] == pytest.approx(0.11, rel=1e-12)
    assert result.spread_cost[0] == pytest.approx(0.11, rel=1e-12)
    assert result.impact_cost[0] == pytest.approx(0.55, rel=1e-12)
    assert result.costs[0] == pytest.approx(0.77, rel=1e-12)
    assert result.cash[0] == pytest.approx(1000.0 - 1100.0 - 0.77, rel=1e-12)
    assert result.equity[0] == pytest.approx(1099.23, rel=1e-12)
    assert not result.capped[0]


def test_volume_cap_by_hand() -> None:
    """Volume 500 at 10%: 50 of the 100 shares fill; impact uses sqrt(50 / 500)."""
    market = tiny_market([10.0, 11.0], [10.0, 12.0], volume=500.0)
    result = backtest_positions(market, [1.0], start_bar=0, initial_cash=1000.0,
                                costs=ExecutionCosts(1.0, 2.0, 0.5, 0.1))
    impact = 0.5 * 0.01 * math.sqrt(0.1) * 550.0
    assert result.capped[0] and result.traded_shares[0] == 50.0
    assert result.costs[0] == pytest.approx(0.055 + 0.055 + impact, rel=1e-12)
    equity = 1000.0 - 550.0 - (0.11 + impact) + 600.0
    assert result.equity[0] == pytest.approx(equity, rel=1e-12)
    assert result.positions[0] == pytest.approx(600.0 / equity, rel=1e-12)
    assert result.turnover[0] == pytest.approx(0.55, rel=1e-12)


# ------------------------------------------------------------------ holding, look-ahead
@pytest.mark.parametrize("as_float32", [False, True])
def test_holding_the_executed_position_costs_exactly_zero(as_float32: bool) -> None:
    market = random_market(seed=3, volume=np.full(400, 1e7))
    targets = [0.7]
    for _ in range(15):  # each next target is the position executed so far
        position = backtest_positions(market, targets, start_bar=50).positions[-1]
        targets.append(float(np.float32(position)) if as_float32 else position)
    result = backtest_positions(market, targets, start_bar=50)
    assert result.traded_shares[0] > 0 and result.costs[0] > 0
    np.testing.assert_array_equal(result.traded_shares[1:], 0.0)
    np.testing.assert_array_equal(result.costs[1:], 0.0)
    np.testing.assert_array_equal(result.shares, result.shares[0])


def test_changing_targets_after_step_k_leaves_steps_up_to_k_unchanged() -> None:
    market = random_market(seed=4)
    base = random_targets(200, 4)
    altered = base.copy()
    altered[120:] = -altered[120:] + 0.1
    a = backtest_positions(market, base, start_bar=40)
    b = backtest_positions(market, altered, start_bar=40)
    for field in (*FIELDS_VS_INFO, "capped"):
        np.testing.assert_array_equal(getattr(a, field)[:120], getattr(b, field)[:120])
    assert a.traded_shares[120] != b.traded_shares[120]


def test_market_data_after_the_fill_bar_does_not_change_that_step() -> None:
    """Steps filled at bars <= 160 only see bars <= 160."""
    market = random_market(seed=6)
    rng = np.random.default_rng(60)
    later = np.arange(400) > 160
    shock = np.where(later, rng.uniform(0.5, 2.0, 400), 1.0)
    changed = MarketArrays(
        symbol="TEST", open=market.open * shock, high=market.high * shock,
        low=market.low * shock, close=market.close * shock,
        volume=np.where(later, 1e3, market.volume), features=market.features,
        feature_names=market.feature_names, sigma=np.where(later, 0.5, market.sigma))
    targets = random_targets(300, 6)
    a = backtest_positions(market, targets, start_bar=40)
    b = backtest_positions(changed, targets, start_bar=40)
    done = int(np.searchsorted(a.bars, 160, side="right"))  # steps filled at bar <= 160
    assert done == 120
    for field in (*FIELDS_VS_INFO, "capped"):
        np.testing.assert_array_equal(getattr(a, field)[:done], getattr(b, field)[:done])
    assert a.equity[done] != b.equity[done]


# ------------------------------------------------------------------ ruin
def test_ruin_ends_the_run_like_the_env() -> None:
    """Short all at 10; bar 21 opens at 10 and closes at 25: equity -500."""
    close = np.full(40, 10.0)
    close[21:] = 25.0
    open_ = np.concatenate([[10.0], close[:-1]])
    market = random_market(40, open=open_, close=close, high=close * 1.01, low=open_ * 0.99,
                           volume=np.full(40, 1e9))
    targets = np.full(10, -1.0)
    result = backtest_positions(market, targets, start_bar=18, costs=ExecutionCosts.zero(),
                                initial_cash=1000.0)
    infos = step_env(market, targets, 18, costs=ExecutionCosts.zero(), initial_cash=1000.0)
    assert_matches_env(result, infos)
    assert result.ruined and result.n_steps == 3 and result.bars[-1] == 21
    assert result.equity[-1] == pytest.approx(-500.0)
    assert result.positions[-1] == 0.0
    assert result.log_returns[-1] == pytest.approx(math.log(1e-12 * 1000.0 / 1000.0))


# ------------------------------------------------------------------ equal-weight book
def test_equal_weight_book_sums_independent_sleeves() -> None:
    markets = [random_market(seed=s, symbol=f"S{s}", timestamps_from="2024-01-01") for s in (1, 2)]
    targets = {"S1": random_targets(150, 1), "S2": random_targets(150, 2)}
    book = backtest_equal_weight(markets, targets, start_bar=30, initial_cash=CASH)
    alone = [backtest_positions(m, targets[m.symbol], start_bar=30, initial_cash=CASH / 2)
             for m in markets]
    for sleeve, single in zip(book.results, alone, strict=True):
        np.testing.assert_array_equal(sleeve.equity, single.equity)
    np.testing.assert_allclose(book.equity, alone[0].equity + alone[1].equity, rtol=1e-15)
    previous = np.concatenate([[CASH], book.equity[:-1]])
    np.testing.assert_allclose(book.log_returns, np.log(book.equity / previous), rtol=1e-12)
    assert book.log_returns.sum() == pytest.approx(math.log(book.final_equity / CASH), rel=1e-9)
    np.testing.assert_array_equal(book.timestamps, markets[0].timestamps[31:181])
    assert book.result("S2") is book.results[1] and not book.ruined


def test_equal_weight_book_keeps_a_ruined_sleeves_loss() -> None:
    close = np.full(60, 10.0)
    close[21:] = 25.0
    open_ = np.concatenate([[10.0], close[:-1]])
    crash = random_market(60, symbol="CRASH", open=open_, close=close, high=close * 1.01,
                          low=open_ * 0.99, volume=np.full(60, 1e9))
    calm = random_market(60, seed=9, symbol="CALM", volume=np.full(60, 1e9))
    book = backtest_equal_weight([crash, calm], [np.full(10, -1.0), np.full(10, 0.5)],
                                 start_bar=18, costs=ExecutionCosts.zero(), initial_cash=2000.0)
    ruined, other = book.results
    assert ruined.ruined and ruined.n_steps == 3 and ruined.equity[-1] == pytest.approx(-500.0)
    assert other.n_steps == 10 and book.n_steps == 10 and not book.ruined
    np.testing.assert_allclose(book.equity[3:], other.equity[3:] - 500.0, rtol=1e-14)


def test_equal_weight_refuses_misaligned_markets() -> None:
    a = random_market(seed=1, symbol="A", timestamps_from="2024-01-01")
    b = random_market(seed=2, symbol="B", timestamps_from="2024-01-01")
    targets = [np.zeros(20), np.zeros(20)]
    with pytest.raises(ValueError, match="not aligned"):
        backtest_equal_weight([a, b], targets, start_bar=[30, 31])
    book = backtest_equal_weight([a, b], targets, start_bar=[30, 30])
    assert book.final_equity == CASH  # never traded
    with pytest.raises(ValueError, match="same length"):
        backtest_equal_weight([a, b], [np.zeros(20), np.zeros(21)], start_bar=30)
    with pytest.raises(ValueError, match="keyed by"):
        backtest_equal_weight([a, b], {"A": np.zeros(20), "C": np.zeros(20)}, start_bar=30)
    with pytest.raises(ValueError, match="duplicate"):
        backtest_equal_weight([a, a], targets, start_bar=30)
    with pytest.raises(ValueError, match="1-D"):
        backtest_equal_weight([a, b], [np.zeros(20), 0.5], start_bar=30)
    with pytest.raises(ValueError, match="start bars"):
        backtest_equal_weight([a, b], targets, start_bar=[30])
    with pytest.raises(ValueError, match="target series for"):
        backtest_equal_weight([a, b], targets[:1], start_bar=30)
    with pytest.raises(TypeError, match="non-empty sequence"):
        backtest_equal_weight(a, targets, start_bar=30)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"targets": [0.1, np.nan, 0.2]}, ValueError, r"targets\[1\] is nan"),
    ({"targets": [0.1, np.inf]}, ValueError, "finite"),
    ({"targets": np.zeros((3, 2))}, ValueError, "1-D"),
    ({"targets": []}, ValueError, "non-empty"),
    ({"targets": ["a", "b"]}, TypeError, "numeric"),
    ({"targets": np.ones(3, dtype=bool)}, TypeError, "numeric"),
    ({"targets": np.zeros(98)}, ValueError, "98 targets need at least 101 bars"),
    ({"start_bar": 1}, ValueError, r"start_bar in \[2, 94\]"),
    ({"start_bar": 95}, ValueError, r"start_bar in \[2, 94\]"),
    ({"start_bar": 3.0}, TypeError, "start_bar must be an int"),
    ({"fill": "open"}, ValueError, "fill must be"),
    ({"initial_cash": 0.0}, ValueError, "initial_cash"),
    ({"min_trade_fraction": -1e-6}, ValueError, "min_trade_fraction"),
    ({"costs": {"commission_bps": 1.0}}, TypeError, "costs must be"),
    ({"risk_fn": 3}, TypeError, "risk_fn must be callable"),
])
def test_invalid_inputs_raise(kwargs: dict, error: type, match: str) -> None:
    market = random_market(100)  # rolling sigma: known from bar 2
    arguments = {"targets": np.zeros(5), "start_bar": 10, **kwargs}
    with pytest.raises(error, match=match):
        backtest_positions(market, **arguments)


def test_market_must_be_market_arrays() -> None:
    with pytest.raises(TypeError, match="MarketArrays"):
        backtest_positions({"close": [1.0, 2.0]}, [0.5], start_bar=0)


@pytest.mark.parametrize("field", ["equity", "traded_shares", "fill_price", "bars", "costs",
                                   "shares", "cash", "positions", "capped"])
def test_results_are_read_only(field: str) -> None:
    result = backtest_positions(random_market(100), np.full(5, 0.5), start_bar=10)
    with pytest.raises(ValueError, match="read-only"):
        getattr(result, field)[0] = 0
