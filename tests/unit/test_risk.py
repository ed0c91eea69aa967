"""Risk layer: invariants for any input, each rule binding by construction,
the breaker's trip and release, purity, and the single-asset fast path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tradingrl.risk import RULE_ORDER, RiskLimits, RiskState, apply_risk
from tradingrl.risk.layer import _apply_book, advance_breaker

BPY = 252
NO_RULES = {"vol_target": None, "var_limit": None, "drawdown_limit": None}


# ---------------------------------------------------------------- references
# Written independently of the implementation: numpy's own cov and quantile.


def usable_rows(window: np.ndarray) -> np.ndarray:
    return window[np.isfinite(window).all(axis=1)]


def ex_ante_vol(w: np.ndarray, window: np.ndarray, bars_per_year: int = BPY) -> float:
    cov = np.atleast_2d(np.cov(usable_rows(window), rowvar=False, ddof=1))
    return math.sqrt(max(float(w @ cov @ w), 0.0) * bars_per_year)


def var95(w: np.ndarray, window: np.ndarray) -> float:
    return float(np.quantile(-(usable_rows(window) @ w), 0.95))


def sanitised(proposed: np.ndarray, allow_short: bool) -> np.ndarray:
    w = np.where(np.isfinite(proposed), proposed, 0.0)
    return np.clip(w, -1.0 if allow_short else 0.0, 1.0)


def normal_window(rows: int, n_assets: int, sigma: float = 0.01, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sigma, (rows, n_assets))


def decide(proposed, limits, *, equity=100.0, state=None, window=None, **kw):
    proposed = np.asarray(proposed, dtype=float)
    if window is None:
        window = normal_window(60, proposed.shape[0])
    return apply_risk(
        proposed, limits=limits, state=state or RiskState(peak_equity=100.0), equity=equity,
        recent_returns=window, **kw,
    )


# ---------------------------------------------------------------- strategies

# Mostly ordinary values, so the rules behind the forced-flat ones get exercised.
weird_float = st.one_of(
    st.floats(-1.0, 1.0),
    st.floats(-3.0, 3.0),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, -0.0, 1.0, -1.0]),
)
return_value = st.one_of(
    st.floats(-0.03, 0.03),
    st.floats(-0.2, 0.2),
    st.floats(-0.03, 0.03),
    st.sampled_from([0.0, 0.01, math.nan, math.inf, -math.inf]),
)


@st.composite
def limits_strategy(draw) -> RiskLimits:
    drawdown_limit = draw(st.none() | st.floats(0.01, 0.9))
    reset = None
    if drawdown_limit is not None and draw(st.booleans()):
        reset = drawdown_limit * draw(st.floats(0.05, 1.0))
    return RiskLimits(
        max_position=draw(st.floats(0.01, 1.0)),
        max_gross_leverage=draw(st.floats(0.01, 3.0)),
        allow_short=draw(st.booleans()),
        vol_target=draw(st.none() | st.floats(0.01, 1.0)),
        bars_per_year=draw(st.sampled_from([1, 52, 252, 252 * 78])),
        var_limit=draw(st.none() | st.floats(0.001, 0.2)),
        kelly_fraction=draw(st.none() | st.floats(0.05, 1.0)),
        confidence_sizing=draw(st.booleans()),
        min_history=draw(st.integers(2, 30)),
        drawdown_limit=drawdown_limit,
        cooldown_bars=draw(st.integers(1, 10)),
        drawdown_reset=reset,
    )


@st.composite
def case(draw, n_assets: int | None = None):
    n = draw(st.integers(1, 4)) if n_assets is None else n_assets
    rows = draw(st.integers(0, 70))
    kind = draw(st.sampled_from(["random", "constant", "zeros"]))
    if kind == "random":
        window = draw(hnp.arrays(np.float64, (rows, n), elements=return_value))
    else:
        level = 0.0 if kind == "zeros" else draw(st.floats(-0.05, 0.05))
        window = np.full((rows, n), level)
    conf_el = st.one_of(st.floats(0.0, 1.0), st.floats(0.5, 1.0), st.sampled_from([math.nan, 1.5]))
    mu_el = st.one_of(st.floats(-0.01, 0.01), st.floats(0.0, 0.01), st.just(math.nan))
    if draw(st.integers(0, 9)):
        equity = draw(st.floats(1.0, 1000.0))
    else:
        equity = draw(st.sampled_from([math.nan, math.inf, 0.0, -5.0]))
    # Peak as a multiple of equity, so drawdowns of every size come up.
    peak = draw(st.just(0.0) | st.floats(0.5, 2.5).map(lambda k: k * abs(equity) + 1.0))
    active = draw(st.sampled_from([False, False, False, True]))
    return {
        "proposed": draw(hnp.arrays(np.float64, n, elements=weird_float, fill=st.nothing())),
        "limits": draw(limits_strategy()),
        "state": RiskState(
            peak_equity=peak if math.isfinite(peak) else 0.0,
            breaker_active=active,
            bars_since_trip=draw(st.integers(0, 12)) if active else 0,
        ),
        "equity": equity,
        "recent_returns": window,
        "confidence": draw(hnp.arrays(np.float64, n, elements=conf_el, fill=st.nothing())),
        "expected_return": draw(hnp.arrays(np.float64, n, elements=mu_el, fill=st.nothing())),
    }


def run(c: dict):
    return apply_risk(
        c["proposed"], limits=c["limits"], state=c["state"], equity=c["equity"],
        recent_returns=c["recent_returns"], confidence=c["confidence"],
        expected_return=c["expected_return"],
    )


# ---------------------------------------------------------------- properties


@settings(max_examples=400, deadline=None)
@given(case())
def test_invariants_hold_for_any_input(c):
    limits, proposed, window = c["limits"], c["proposed"], c["recent_returns"]
    out = run(c)
    t = out.target
    assert t.shape == proposed.shape and t.dtype == np.float64
    assert np.isfinite(t).all()
    assert np.all(np.abs(t) <= limits.max_position + 1e-12)
    assert np.abs(t).sum() <= limits.max_gross_leverage + 1e-12
    if not limits.allow_short:
        assert np.all(t >= 0.0)
    # Never larger than the (sanitised) proposal, never the other way round.
    s = sanitised(proposed, limits.allow_short)
    assert np.all(np.abs(t) <= np.abs(s) + 1e-15)
    assert np.all(t * s >= 0.0)
    assert set(out.binding) <= set(RULE_ORDER)
    assert list(out.binding) == sorted(out.binding, key=RULE_ORDER.index)

    enough = usable_rows(window).shape[0] >= limits.min_history
    if limits.needs_history and not enough:
        assert not t.any()  # the conservative choice: cannot estimate -> flat
    if t.any() and limits.vol_target is not None:
        assert ex_ante_vol(t, window, limits.bars_per_year) <= limits.vol_target * (1 + 1e-9)
    if t.any() and limits.var_limit is not None:
        assert var95(t, window) <= limits.var_limit * (1 + 1e-9) + 1e-15


@settings(max_examples=300, deadline=None)
@given(case())
def test_breaker_forces_flat_past_the_drawdown_limit(c):
    limits, state, equity = c["limits"], c["state"], c["equity"]
    out = run(c)
    if not (math.isfinite(equity) and equity > 0.0):
        assert not out.target.any()
        return
    if limits.drawdown_limit is None:
        return
    peak = max(state.peak_equity, equity)
    # Strictly past the limit (a margin keeps float ties out of the claim).
    past = equity / peak - 1.0 < -limits.drawdown_limit - 1e-9
    if past and not state.breaker_active:
        assert not out.target.any()
        assert out.state.breaker_active and out.state.bars_since_trip == 0
    if state.breaker_active and state.bars_since_trip + 1 < limits.cooldown_bars:
        assert not out.target.any()
        assert out.state.breaker_active


@settings(max_examples=200, deadline=None)
@given(case())
def test_pure_inputs_unchanged_and_repeatable(c):
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in c.items()}
    first, second = run(c), run(c)
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(c[key], value)
        else:
            assert c[key] == value or (math.isnan(value) and math.isnan(c[key]))
    np.testing.assert_array_equal(first.target, second.target)
    assert first.state == second.state and first.binding == second.binding
    assert first.target is not c["proposed"]


@settings(max_examples=300, deadline=None)
@given(case(n_assets=1))
@example({"proposed": np.array([1.0]), "equity": 1.0, "state": RiskState(),
          "limits": RiskLimits(allow_short=False, vol_target=None, bars_per_year=1,
                               var_limit=None, kelly_fraction=0.5, min_history=2,
                               drawdown_limit=None, cooldown_bars=1),
          "recent_returns": np.zeros((2, 1)), "confidence": np.array([0.0]),
          "expected_return": np.array([5e-324])})  # found by a run: kelly x edge underflows
def test_single_asset_fast_path_matches_general_path(c):
    fast = run(c)
    next_state, flat_reason = advance_breaker(c["limits"], c["state"], c["equity"])
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        general = _apply_book(
            c["proposed"], c["limits"], next_state, flat_reason,
            c["recent_returns"] if c["recent_returns"].size else np.empty((0, 0)),
            c["confidence"], c["expected_return"],
        )
    np.testing.assert_allclose(fast.target, general.target, rtol=1e-9, atol=1e-15)
    assert fast.binding == general.binding
    assert fast.state == general.state


# ---------------------------------------------------------------- each rule binds


def test_sanitise_zeroes_non_finite_and_clips_to_the_action_box():
    out = decide([math.nan, math.inf, 5.0, -0.2], RiskLimits(max_gross_leverage=4.0, **NO_RULES))
    np.testing.assert_array_equal(out.target, [0.0, 0.0, 1.0, -0.2])
    assert out.binding == ("sanitise",)


def test_no_short_zeroes_negative_weights():
    out = decide([-0.3, 0.4], RiskLimits(allow_short=False, **NO_RULES))
    np.testing.assert_array_equal(out.target, [0.0, 0.4])
    assert out.binding == ("no_short",)


def test_position_limit_clips_each_asset():
    out = decide([0.9, -0.7, 0.1], RiskLimits(max_position=0.5, max_gross_leverage=3.0, **NO_RULES))
    np.testing.assert_array_equal(out.target, [0.5, -0.5, 0.1])
    assert out.binding == ("position_limit",)


def test_gross_leverage_scales_the_book_uniformly():
    out = decide([0.6, -0.6, 0.3], RiskLimits(max_gross_leverage=1.0, **NO_RULES))
    np.testing.assert_allclose(out.target, np.array([0.6, -0.6, 0.3]) / 1.5)
    assert out.binding == ("gross_leverage",)


def test_vol_target_scales_to_exactly_the_target():
    window = normal_window(60, 2, sigma=0.02)  # ~32% annualised per asset
    limits = RiskLimits(vol_target=0.10, var_limit=None, drawdown_limit=None, max_gross_leverage=2.0)
    out = decide([0.8, 0.8], limits, window=window)
    assert out.binding == ("vol_target",)
    assert ex_ante_vol(out.target, window) == pytest.approx(0.10, rel=1e-9)
    assert out.target[0] == pytest.approx(out.target[1])  # uniform scaling


def test_clipping_a_hedge_leg_cannot_break_the_vol_target():
    # Three near-identical assets, a hedged proposal: clipping the long leg
    # *after* vol targeting would leave the book net short and far above the
    # target, which is why the per-asset clip comes first.
    noise = normal_window(60, 3, sigma=0.001, seed=2)
    window = normal_window(60, 1, sigma=0.02, seed=3) + noise
    proposed = np.array([1.0, -0.5, -0.5])
    assert ex_ante_vol(proposed, window) > 0.018  # only the noise is left
    limits = RiskLimits(max_position=0.7, max_gross_leverage=3.0, vol_target=0.018,
                        var_limit=None, drawdown_limit=None)
    out = decide(proposed, limits, window=window)
    assert out.binding == ("position_limit", "vol_target")
    assert ex_ante_vol(out.target, window) == pytest.approx(0.018, rel=1e-9)


def test_vol_target_never_scales_up():
    window = normal_window(60, 1, sigma=0.0005)  # ~0.8% annualised
    limits = RiskLimits(vol_target=0.15, var_limit=None, drawdown_limit=None)
    out = decide([0.2], limits, window=window)
    np.testing.assert_array_equal(out.target, [0.2])
    assert out.binding == ()
    assert ex_ante_vol(out.target, window) < 0.15


def test_var_limit_scales_to_exactly_the_limit():
    window = normal_window(60, 2, sigma=0.02)
    limits = RiskLimits(vol_target=None, var_limit=0.01, drawdown_limit=None)
    before = var95(np.array([0.5, 0.5]), window)
    assert before > 0.01
    out = decide([0.5, 0.5], limits, window=window)
    assert out.binding == ("var_limit",)
    assert var95(out.target, window) == pytest.approx(0.01, rel=1e-9)
    np.testing.assert_allclose(out.target, np.array([0.5, 0.5]) * 0.01 / before)


def test_var_limit_single_asset_short_uses_the_upper_tail():
    window = np.linspace(-0.05, 0.05, 21).reshape(-1, 1)  # losses of a short: +r
    limits = RiskLimits(vol_target=None, var_limit=0.02, drawdown_limit=None)
    out = decide([-1.0], limits, window=window)
    # quantile(r, 0.95) of the grid is 0.045, so the short is scaled by 0.02/0.045
    np.testing.assert_allclose(out.target, [-0.02 / 0.045])
    assert out.binding == ("var_limit",)


def test_confidence_scales_and_zero_confidence_is_flat():
    limits = RiskLimits(confidence_sizing=True, max_gross_leverage=2.0, **NO_RULES)
    out = decide([0.8, -0.4], limits, confidence=np.array([0.5, 1.0]))
    np.testing.assert_allclose(out.target, [0.4, -0.4])
    assert out.binding == ("confidence",)
    flat = decide([0.8, -0.4], limits, confidence=np.array([0.0, math.nan]))
    np.testing.assert_array_equal(flat.target, [0.0, 0.0])
    assert flat.binding == ("confidence",)
    one = decide([0.8], limits, confidence=np.array([0.0]))
    np.testing.assert_array_equal(one.target, [0.0])
    # Out-of-range confidence is clipped to [0, 1]: it never scales up.
    for proposed in ([0.5], [0.5, -0.5]):
        above = decide(proposed, limits, confidence=np.full(len(proposed), 1.7))
        np.testing.assert_array_equal(above.target, proposed)
        assert above.binding == ()


def test_kelly_caps_at_the_fractional_kelly_size():
    window = normal_window(60, 1, sigma=0.02)
    var = float(np.var(window[:, 0], ddof=1))
    mu = 0.0002
    limits = RiskLimits(kelly_fraction=0.5, **NO_RULES)
    out = decide([1.0], limits, window=window, expected_return=np.array([mu]))
    assert 0.5 * mu / var < 1.0  # so the cap binds
    np.testing.assert_allclose(out.target, [0.5 * mu / var])
    assert out.binding == ("kelly",)


def test_kelly_against_the_forecast_or_without_one_is_flat():
    limits = RiskLimits(kelly_fraction=0.5, max_gross_leverage=2.0, **NO_RULES)
    out = decide([0.5, -0.5], limits, expected_return=np.array([-0.001, math.nan]))
    np.testing.assert_array_equal(out.target, [0.0, 0.0])
    assert out.binding == ("kelly",)
    # A short with a negative forecast is in the forecast's direction.
    short = decide([-0.5], limits, expected_return=np.array([-0.01]))
    assert short.target[0] < 0.0
    against = decide([0.5], limits, expected_return=np.array([-0.01]))
    assert against.target[0] == 0.0 and against.binding == ("kelly",)


def test_insufficient_history_goes_flat_but_hard_limits_alone_do_not_need_it():
    short_window = normal_window(5, 1)
    out = decide([0.5], RiskLimits(min_history=20), window=short_window)
    np.testing.assert_array_equal(out.target, [0.0])
    assert out.binding == ("insufficient_history",)
    empty = decide([0.5, 0.5], RiskLimits(), window=np.empty((0, 2)))
    assert empty.binding == ("insufficient_history",) and not empty.target.any()
    hard_only = decide([0.5], RiskLimits(**NO_RULES), window=np.empty((0, 1)))
    np.testing.assert_array_equal(hard_only.target, [0.5])


def test_nan_rows_are_dropped_whole():
    window = normal_window(40, 2, sigma=0.02)
    dirty = window.copy()
    dirty[[3, 17], [0, 1]] = math.nan
    dirty[25, 0] = math.inf
    limits = RiskLimits(vol_target=0.1, var_limit=0.005, kelly_fraction=0.5, min_history=30)
    kw = {"expected_return": np.array([0.002, 0.002])}
    got = decide([0.6, 0.3], limits, window=dirty, **kw)
    want = decide([0.6, 0.3], limits, window=np.delete(window, [3, 17, 25], axis=0), **kw)
    np.testing.assert_array_equal(got.target, want.target)
    # 37 usable rows; with min_history=38 there are too few
    too_few = decide([0.6, 0.3], RiskLimits(min_history=38), window=dirty)
    assert too_few.binding == ("insufficient_history",)


def test_zero_variance_window_leaves_hard_limits_only():
    window = np.zeros((60, 2))
    limits = RiskLimits(kelly_fraction=0.5, max_position=0.7)
    out = decide([0.9, 0.2], limits, window=window, expected_return=np.array([0.001, 0.001]))
    np.testing.assert_array_equal(out.target, [0.7, 0.2])
    assert out.binding == ("position_limit",)


def test_invalid_equity_goes_flat_and_nan_keeps_the_state():
    state = RiskState(peak_equity=100.0)
    for equity in (0.0, -5.0, math.nan, math.inf):
        out = decide([0.5], RiskLimits(drawdown_limit=None), equity=equity, state=state)
        np.testing.assert_array_equal(out.target, [0.0])
        assert out.binding == ("invalid_equity",)
    assert decide([0.5], RiskLimits(), equity=math.nan, state=state).state is state


def test_rules_report_in_order():
    window = normal_window(60, 3, sigma=0.03)
    limits = RiskLimits(max_position=0.6, max_gross_leverage=1.0, vol_target=0.2, var_limit=0.004)
    out = decide([math.nan, 0.9, 0.8], limits, window=window)
    assert out.binding == ("sanitise", "position_limit", "gross_leverage", "vol_target", "var_limit")


# ---------------------------------------------------------------- breaker


def walk(limits: RiskLimits, equities, proposed=(0.5,)):
    """Feed a path of equities; return (targets, states)."""
    state, targets, states = RiskState(), [], []
    window = normal_window(60, len(proposed))
    for equity in equities:
        out = apply_risk(np.array(proposed), limits=limits, state=state, equity=equity,
                         recent_returns=window)
        state = out.state
        targets.append(float(out.target[0]))
        states.append(state)
    return targets, states


def test_breaker_trips_at_the_limit_and_releases_after_the_cooldown():
    limits = RiskLimits(drawdown_limit=0.2, cooldown_bars=3, vol_target=None, var_limit=None)
    equities = [100.0, 110.0, 90.0, 88.0, 70.0, 70.0, 70.0, 70.0, 60.0, 50.0]
    targets, states = walk(limits, equities)
    # 88 = (1 - 0.2) * 110: trips exactly at the limit, at decision 3
    assert targets[:3] == [0.5, 0.5, 0.5]
    assert targets[3:6] == [0.0, 0.0, 0.0]  # cooldown_bars = 3 flat decisions
    assert [s.bars_since_trip for s in states[3:6]] == [0, 1, 2]
    # Released at decision 6; the peak is re-based to the equity then (70)
    assert targets[6] == 0.5 and not states[6].breaker_active
    assert states[6].peak_equity == 70.0
    # 60 > 56 = 0.8 * 70 keeps trading; 50 <= 56 trips again
    assert targets[7:9] == [0.5, 0.5]
    assert targets[9] == 0.0 and states[9].breaker_active


def test_breaker_with_reset_waits_for_recovery_as_well():
    limits = RiskLimits(drawdown_limit=0.2, cooldown_bars=2, drawdown_reset=0.1,
                        vol_target=None, var_limit=None)
    equities = [100.0, 79.0, 79.0, 85.0, 90.0, 90.5, 95.0]
    targets, states = walk(limits, equities)
    assert targets[0] == 0.5
    assert targets[1:5] == [0.0] * 4  # cooldown over at 3, but 85 and 90 <= 0.9 * 100
    assert targets[5] == 0.5 and not states[5].breaker_active  # 90.5 > 90
    assert states[5].peak_equity == 100.0  # kept, not re-based


def test_breaker_names_itself_and_state_is_carried_not_mutated():
    state = RiskState(peak_equity=100.0)
    out = decide([0.5], RiskLimits(), equity=79.0, state=state)
    assert out.binding == ("drawdown_breaker",)
    assert out.state == RiskState(100.0, True, 0)
    assert state == RiskState(100.0, False, 0)
    # A new high moves the peak; an unchanged state is returned as is.
    assert decide([0.5], RiskLimits(), equity=120.0, state=state).state.peak_equity == 120.0
    assert decide([0.5], RiskLimits(), equity=95.0, state=state).state is state


# ---------------------------------------------------------------- contract


def test_missing_model_inputs_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="confidence"):
        decide([0.5], RiskLimits(confidence_sizing=True))
    with pytest.raises(ValueError, match="expected_return"):
        decide([0.5], RiskLimits(kelly_fraction=0.5))
    with pytest.raises(ValueError, match="recent_returns"):
        decide([0.5, 0.5], RiskLimits(), window=normal_window(60, 3))
    with pytest.raises(ValueError, match="proposed"):
        decide([[0.5]], RiskLimits(), window=normal_window(60, 1))


@pytest.mark.parametrize(
    "bad",
    [
        {"max_position": 0.0}, {"max_position": 1.5}, {"max_gross_leverage": math.nan},
        {"vol_target": -0.1}, {"var_limit": 0.0}, {"kelly_fraction": 0.0},
        {"min_history": 1}, {"drawdown_limit": 1.0}, {"cooldown_bars": 0},
        {"drawdown_reset": 0.3}, {"drawdown_limit": None, "drawdown_reset": 0.1},
    ],
)
def test_limits_reject_nonsense(bad):
    with pytest.raises(ValueError):
        RiskLimits(**bad)


def test_state_rejects_a_nan_peak_that_would_disable_the_breaker():
    with pytest.raises(ValueError, match="peak_equity"):
        RiskState(peak_equity=math.nan)
