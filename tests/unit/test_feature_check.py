"""tradingrl check-features (tradingrl/feature_check.py): no false alarm on
the 85 built-in features or on past-only custom ones, and every deliberately
leaky feature caught with the first bar where it read the future."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradingrl.feature_check import check_bars, check_function, load_function
from tradingrl.features.technical import FEATURE_COLUMNS

REPO = Path(__file__).resolve().parents[2]


def leaky(bars: pd.DataFrame) -> pd.DataFrame:
    """The look-ahead mistakes people make, one per column."""
    r = np.log(bars["close"]).diff()
    return pd.DataFrame({
        "centred": r.rolling(5, center=True).mean(),
        "bfilled": r.rolling(20).mean().bfill(),
        "next_bar": r.shift(-1),
        "whole_series_zscore": (r - r.mean()) / r.std(),
        "mean_filled_shift": r.shift(3).fillna(r.mean()),
    })


def honest(bars: pd.DataFrame) -> pd.DataFrame:
    """Past-only features of three warm-up kinds."""
    r = np.log(bars["close"]).diff()
    return pd.DataFrame({
        "sma_10": r.rolling(10).mean(),                 # a finite window
        "ema_20": r.ewm(span=20, adjust=False).mean(),  # recursive, seeded at bar 1
        "expanding_mean": r.expanding().mean(),         # never forgets the start
        "volume_z": (bars["volume"] - bars["volume"].rolling(20).mean())
        / bars["volume"].rolling(20).std(),
    })


@pytest.fixture(scope="module")
def bars():
    return check_bars()


def test_no_built_in_feature_is_flagged(bars):
    from tradingrl.feature_check import builtin_features

    checks = {c.name: c for c in check_function(builtin_features, *bars)}
    assert list(checks) == list(FEATURE_COLUMNS)
    assert [name for name, c in checks.items() if not c.past_only] == []
    assert (checks["ret_1"].defined_from, checks["ret_1"].start_independent_after) == (1, 1)
    assert checks["ret_20"].exact_window and checks["ret_20"].start_independent_after == 20
    assert checks["sma_ratio_100"].defined_from == 99
    # EMA-seeded indicators take longer than their window to forget the start.
    assert checks["ema_ratio_26"].start_independent_after > 120
    assert all(c.start_independent_after is not None for c in checks.values())


def test_every_leaky_feature_is_caught_at_its_first_leaking_bar(bars):
    checks = {c.name: c for c in check_function(leaky, *bars)}
    assert {name: (c.leak_bar, c.leak_cut) for name, c in checks.items()} == {
        "centred": (4, 5),           # bar 4's window reaches bar 6
        "bfilled": (0, 0),           # bars 0-18 hold bar 19's mean
        "next_bar": (0, 0),
        "whole_series_zscore": (1, 5),  # bar 0 is NaN (no return yet)
        "mean_filled_shift": (0, 0),  # the fill is the whole series' mean
    }
    assert checks["next_bar"].line().startswith(
        "LEAK  next_bar: reads the future: its value at bar 0 changed when the bars after bar 0")


def test_past_only_custom_features_pass_with_their_warm_up(bars):
    checks = {c.name: c for c in check_function(honest, *bars)}
    assert all(c.past_only for c in checks.values())
    sma, ema, expanding = checks["sma_10"], checks["ema_20"], checks["expanding_mean"]
    assert (sma.defined_from, sma.start_independent_after, sma.exact_window) == (10, 10, True)
    assert ema.defined_from == 1 and not ema.exact_window
    assert 60 < ema.start_independent_after < 200
    assert ema.line(warmup_bars=50).startswith("warn  ema_20: past-only")
    assert ema.line(warmup_bars=500).startswith("ok    ema_20: past-only; defined from bar 1; recursive")
    assert expanding.start_independent_after is None
    assert "still depends on where the series starts" in expanding.line(120)


def test_a_function_must_return_one_row_per_bar(bars):
    with pytest.raises(ValueError, match="one row per bar: 699 rows for 700 bars"):
        check_function(lambda b: honest(b).iloc[1:], *bars)
    with pytest.raises(ValueError, match="package.module:function"):
        load_function("no_colon")
    with pytest.raises(ValueError, match="has no missing"):
        load_function("tests.unit.test_feature_check:missing")


def test_the_command_prints_a_verdict_per_feature_and_fails_on_a_leak():
    tradingrl = Path(sys.executable).parent / "tradingrl"
    leaking = subprocess.run(
        [str(tradingrl), "check-features", "--no-builtin", "--custom",
         "tests.unit.test_feature_check:leaky", "--custom", "tests.unit.test_feature_check:honest"],
        cwd=REPO, capture_output=True, text=True, check=False)
    assert leaking.returncode == 1, leaking.stderr
    lines = leaking.stdout.splitlines()
    assert sum(line.startswith("LEAK  ") for line in lines) == 5
    assert any(line.startswith("ok    sma_10: past-only") for line in lines)
    assert lines[-1] == "5 feature(s) read the future"
    clean = subprocess.run([str(tradingrl), "check-features"], cwd=REPO, capture_output=True,
                           text=True, check=False)
    assert clean.returncode == 0 and clean.stdout.splitlines()[-1] == "no feature reads the future"
    assert sum(line.startswith(("ok    ", "warn  ")) for line in clean.stdout.splitlines()) == 85
