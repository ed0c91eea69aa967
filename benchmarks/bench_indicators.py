"""ta 0.11's loop indicators vs their numba versions on one 100k-bar series.

    python benchmarks/bench_indicators.py

Prints ta's time (one call) and ours (best of 20 after a first call that
loads numba's cache) and the largest absolute difference.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from tradingrl.features import fast_indicators as fast

N = 100_000


def series() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, N)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.004, N)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.004, N)))
    return {"high": high, "low": low, "close": close, "volume": rng.lognormal(12, 0.5, N)}


def best_of(fn, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    import ta

    s = series()
    h, low, c, v = (pd.Series(s[k]) for k in ("high", "low", "close", "volume"))
    cases = {
        "PSAR": (lambda: ta.trend.PSARIndicator(h, low, c).psar(),
                 lambda: fast.psar(s["high"], s["low"], s["close"]).psar),
        "ADX": (lambda: ta.trend.ADXIndicator(h, low, c).adx(),
                lambda: fast.adx(s["high"], s["low"], s["close"]).adx),
        "ATR": (lambda: ta.volatility.AverageTrueRange(h, low, c).average_true_range(),
                lambda: fast.average_true_range(s["high"], s["low"], s["close"])),
        "KAMA": (lambda: ta.momentum.KAMAIndicator(c).kama(), lambda: fast.kama(s["close"])),
        "Aroon": (lambda: ta.trend.AroonIndicator(h, low).aroon_up(),
                  lambda: fast.aroon(s["high"], s["low"]).aroon_up),
        "CCI": (lambda: ta.trend.CCIIndicator(h, low, c).cci(),
                lambda: fast.cci(s["high"], s["low"], s["close"])),
        "Ulcer": (lambda: ta.volatility.UlcerIndex(c).ulcer_index(), lambda: fast.ulcer_index(s["close"])),
        "MFI": (lambda: ta.volume.MFIIndicator(h, low, c, v).money_flow_index(),
                lambda: fast.money_flow_index(s["high"], s["low"], s["close"], s["volume"])),
        "NVI": (lambda: ta.volume.NegativeVolumeIndexIndicator(c, v).negative_volume_index(),
                lambda: fast.negative_volume_index(s["close"], s["volume"])),
        "WMA": (lambda: ta.trend.WMAIndicator(c).wma(), lambda: fast.wma(s["close"])),
    }
    print(f"{N:,} bars, one series")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (theirs, ours) in cases.items():
            start = time.perf_counter()
            reference = np.asarray(theirs(), dtype=float)
            ta_time = time.perf_counter() - start
            our_time = best_of(ours)
            mine = np.asarray(ours(), dtype=float)
            both = np.isfinite(reference) & np.isfinite(mine)
            diff = float(np.max(np.abs(reference[both] - mine[both]))) if both.any() else float("nan")
            print(f"{name:>6}: ta {ta_time * 1e3:8.1f} ms, numba {our_time * 1e3:6.2f} ms "
                  f"({ta_time / our_time:6.0f}x), max |diff| {diff:.1e} on {int(both.sum()):,} bars")


if __name__ == "__main__":
    main()
