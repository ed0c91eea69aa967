"""Past-only technical features for one symbol's bars, in a fixed order.

Every feature at bar t is computed from bars <= t (rolling and exponential
windows, positive shifts). Levels are made scale-free (ratios to the close,
log returns, oscillators) so one model can read many symbols. Indicators that
``ta`` computes with Python loops are taken from
:mod:`tradingrl.features.fast_indicators` (numba, checked against ``ta`` in
the tests); the rest come from ``ta`` itself, except KST, TRIX and Vortex (see
below). ``ta`` options that read the future are avoided: Ichimoku with
``visual=True`` and DPO fill their shifted values with the whole series' mean.

Windows are in bars. Warm-up: EMA-based indicators start from the first bar
but need ~3x their span to forget it; :data:`MIN_WARMUP_BARS` is the least a
caller should drop.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from tradingrl.features import fast_indicators as fast

# The longest plain window below is 100 bars (sma_ratio_100, rv_60 + ratio);
# KST needs 30 + 15. EMA spans go to 26 (x3 ~ 80 bars to forget the seed).
MIN_WARMUP_BARS = 100

FEATURE_COLUMNS: tuple[str, ...] = (
    # returns, volatility, bar shape
    "ret_1", "ret_2", "ret_5", "ret_10", "ret_20",
    "rv_5", "rv_10", "rv_20", "rv_60", "rv_ratio_5_60",
    "parkinson_vol_20", "garman_klass_vol_20",
    "range_hl", "body", "upper_shadow", "lower_shadow", "gap", "close_location",
    # volume
    "log_volume_z20", "volume_ratio_5_20", "volume_trend_20_60", "obv_flow_20",
    # trend
    "sma_ratio_10", "sma_ratio_20", "sma_ratio_50", "sma_ratio_100",
    "ema_ratio_12", "ema_ratio_26",
    "macd", "macd_signal", "macd_diff",
    "adx", "adx_pos", "adx_neg",
    "vortex_pos", "vortex_neg", "vortex_diff",
    "trix", "mass_index", "cci",
    "kst", "kst_signal", "kst_diff",
    "ichimoku_conversion", "ichimoku_base", "ichimoku_a", "ichimoku_b",
    "aroon_up", "aroon_down", "aroon_indicator",
    "stc", "psar_distance", "psar_uptrend",
    # momentum
    "rsi_14", "stoch_rsi", "stoch_rsi_k", "stoch_rsi_d", "tsi", "ultimate_oscillator",
    "stoch_k", "stoch_d", "williams_r", "awesome_oscillator", "kama_ratio", "roc_10",
    "ppo", "ppo_signal", "ppo_hist", "pvo", "pvo_signal", "pvo_hist",
    # volatility bands
    "atr_14", "bb_pband", "bb_wband", "bb_hband_indicator", "bb_lband_indicator",
    "kc_pband", "kc_wband", "dc_pband", "dc_wband", "ulcer_index",
    # volume-price
    "mfi_14", "cmf_20", "force_index_13", "vwap_ratio_14",
)


def _log_ratio(a: pd.Series, b: pd.Series) -> pd.Series:
    return np.log(a / b)


# ta 0.11's KST, TRIX and Vortex fill the first shifted value with the mean of
# the whole series (`shift(k, fill_value=series.mean())`), so early values
# depend on the future. These are the same formulas with the gap left empty;
# tests check they equal ta's once the filled value has left every window.


def kst(c: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Know Sure Thing (Pring) with ta's default windows; (kst, signal)."""
    def roc_sma(shift: int, window: int) -> pd.Series:
        return (c / c.shift(shift) - 1.0).rolling(window).mean()

    value = 100.0 * (
        roc_sma(10, 10) + 2.0 * roc_sma(15, 10) + 3.0 * roc_sma(20, 10) + 4.0 * roc_sma(30, 15)
    )
    return value, value.rolling(9).mean()


def trix(c: pd.Series, window: int = 15) -> pd.Series:
    """Percent change of a triple EMA (ta's spans and seeding)."""
    ema3 = c
    for _ in range(3):
        ema3 = ema3.ewm(span=window, min_periods=window, adjust=False).mean()
    return 100.0 * (ema3 / ema3.shift(1) - 1.0)


def vortex(h: pd.Series, low: pd.Series, c: pd.Series, window: int = 14) -> tuple[pd.Series, pd.Series]:
    """Vortex indicator (VI+, VI-); the first bar's true range is high - low."""
    prev = c.shift(1)
    true_range = np.fmax(h - low, np.fmax((h - prev).abs(), (low - prev).abs()))
    total = true_range.rolling(window).sum()
    plus = (h - low.shift(1)).abs().rolling(window).sum() / total
    minus = (low - h.shift(1)).abs().rolling(window).sum() / total
    return plus, minus


def compute_features(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> pd.DataFrame:
    """Features for one symbol's bars in time order (arrays of equal length).

    Returns float64 columns in :data:`FEATURE_COLUMNS` order with a RangeIndex;
    early rows hold NaN where a window is not yet full. Prices must be
    positive and volume non-negative (the validated contract).
    """
    # Zero volume or flat bars give 0/0 or log(0) in a few ratios: those rows
    # become NaN/inf here and are dropped (and counted) by the table builder.
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = _compute(open_, high, low, close, volume)
    values[~np.isfinite(values)] = np.nan
    return pd.DataFrame(values, columns=list(FEATURE_COLUMNS), copy=False)


def _compute(open_, high, low, close, volume) -> np.ndarray:
    import ta  # pulls in all indicator modules; only the feature stage needs it

    o = pd.Series(open_, dtype="float64")
    h = pd.Series(high, dtype="float64")
    low_ = pd.Series(low, dtype="float64")
    c = pd.Series(close, dtype="float64")
    v = pd.Series(volume, dtype="float64")
    f: dict[str, pd.Series | np.ndarray] = {}

    r1 = _log_ratio(c, c.shift(1))
    f["ret_1"] = r1
    for k in (2, 5, 10, 20):
        f[f"ret_{k}"] = _log_ratio(c, c.shift(k))
    for k in (5, 10, 20, 60):
        f[f"rv_{k}"] = r1.rolling(k).std()
    f["rv_ratio_5_60"] = f["rv_5"] / f["rv_60"]
    hl = _log_ratio(h, low_)
    co = _log_ratio(c, o)
    f["parkinson_vol_20"] = np.sqrt((hl**2).rolling(20).mean() / (4.0 * np.log(2.0)))
    gk = 0.5 * hl**2 - (2.0 * np.log(2.0) - 1.0) * co**2
    f["garman_klass_vol_20"] = np.sqrt(gk.rolling(20).mean().clip(lower=0.0))
    f["range_hl"] = hl
    f["body"] = co
    f["upper_shadow"] = _log_ratio(h, np.maximum(o, c))
    f["lower_shadow"] = _log_ratio(np.minimum(o, c), low_)
    f["gap"] = _log_ratio(o, c.shift(1))
    span = h - low_
    f["close_location"] = ((c - low_) / span).where(span > 0, 0.5)

    log_v = np.log1p(v)
    spread = log_v.rolling(20).std()
    # Constant volume (some exports repeat one figure) has no spread: the bar
    # sits exactly at its mean, z = 0, rather than an undefined 0/0.
    f["log_volume_z20"] = ((log_v - log_v.rolling(20).mean()) / spread).where(spread != 0, 0.0)
    v20 = v.rolling(20).mean()
    f["volume_ratio_5_20"] = v.rolling(5).mean() / v20
    f["volume_trend_20_60"] = np.log(v20 / v.rolling(60).mean())
    signed = np.sign(c.diff()) * v
    f["obv_flow_20"] = signed.rolling(20).sum() / v.rolling(20).sum()

    for k in (10, 20, 50, 100):
        f[f"sma_ratio_{k}"] = c / c.rolling(k).mean() - 1.0
    for k in (12, 26):
        f[f"ema_ratio_{k}"] = c / ta.trend.EMAIndicator(c, window=k).ema_indicator() - 1.0
    macd = ta.trend.MACD(c)
    f["macd"] = macd.macd() / c
    f["macd_signal"] = macd.macd_signal() / c
    f["macd_diff"] = macd.macd_diff() / c
    adx = fast.adx(high, low, close, window=14)
    f["adx"], f["adx_pos"], f["adx_neg"] = adx.adx, adx.adx_pos, adx.adx_neg
    f["vortex_pos"], f["vortex_neg"] = vortex(h, low_, c, window=14)
    f["vortex_diff"] = f["vortex_pos"] - f["vortex_neg"]
    f["trix"] = trix(c, window=15)
    f["mass_index"] = ta.trend.MassIndex(h, low_, window_fast=9, window_slow=25).mass_index()
    f["cci"] = fast.cci(high, low, close, window=20, constant=0.015)
    f["kst"], f["kst_signal"] = kst(c)
    f["kst_diff"] = f["kst"] - f["kst_signal"]
    ichimoku = ta.trend.IchimokuIndicator(h, low_, window1=9, window2=26, window3=52, visual=False)
    f["ichimoku_conversion"] = c / ichimoku.ichimoku_conversion_line() - 1.0
    f["ichimoku_base"] = c / ichimoku.ichimoku_base_line() - 1.0
    f["ichimoku_a"] = c / ichimoku.ichimoku_a() - 1.0
    f["ichimoku_b"] = c / ichimoku.ichimoku_b() - 1.0
    aroon = fast.aroon(high, low, window=25)
    f["aroon_up"], f["aroon_down"] = aroon.aroon_up, aroon.aroon_down
    f["aroon_indicator"] = aroon.aroon_indicator
    f["stc"] = ta.trend.STCIndicator(c, window_slow=50, window_fast=23, cycle=10).stc()
    psar = fast.psar(high, low, close, step=0.02, max_step=0.2)
    f["psar_distance"] = (c - psar.psar) / c
    f["psar_uptrend"] = np.where(np.isnan(psar.psar_up), 0.0, 1.0)

    f["rsi_14"] = ta.momentum.RSIIndicator(c, window=14).rsi()
    stoch_rsi = ta.momentum.StochRSIIndicator(c, window=14, smooth1=3, smooth2=3)
    f["stoch_rsi"] = stoch_rsi.stochrsi()
    f["stoch_rsi_k"] = stoch_rsi.stochrsi_k()
    f["stoch_rsi_d"] = stoch_rsi.stochrsi_d()
    f["tsi"] = ta.momentum.TSIIndicator(c, window_slow=25, window_fast=13).tsi()
    f["ultimate_oscillator"] = ta.momentum.UltimateOscillator(h, low_, c).ultimate_oscillator()
    stoch = ta.momentum.StochasticOscillator(h, low_, c, window=14, smooth_window=3)
    f["stoch_k"], f["stoch_d"] = stoch.stoch(), stoch.stoch_signal()
    f["williams_r"] = ta.momentum.WilliamsRIndicator(h, low_, c, lbp=14).williams_r()
    f["awesome_oscillator"] = ta.momentum.AwesomeOscillatorIndicator(h, low_).awesome_oscillator() / c
    f["kama_ratio"] = c / fast.kama(close, window=10, pow1=2, pow2=30) - 1.0
    f["roc_10"] = ta.momentum.ROCIndicator(c, window=10).roc()
    ppo = ta.momentum.PercentagePriceOscillator(c)
    f["ppo"], f["ppo_signal"], f["ppo_hist"] = ppo.ppo(), ppo.ppo_signal(), ppo.ppo_hist()
    pvo = ta.momentum.PercentageVolumeOscillator(v)
    f["pvo"], f["pvo_signal"], f["pvo_hist"] = pvo.pvo(), pvo.pvo_signal(), pvo.pvo_hist()

    f["atr_14"] = fast.average_true_range(high, low, close, window=14) / close
    bb = ta.volatility.BollingerBands(c, window=20, window_dev=2)
    f["bb_pband"], f["bb_wband"] = bb.bollinger_pband(), bb.bollinger_wband()
    f["bb_hband_indicator"] = bb.bollinger_hband_indicator()
    f["bb_lband_indicator"] = bb.bollinger_lband_indicator()
    kc = ta.volatility.KeltnerChannel(h, low_, c, window=20, original_version=True)
    f["kc_pband"], f["kc_wband"] = kc.keltner_channel_pband(), kc.keltner_channel_wband()
    dc = ta.volatility.DonchianChannel(h, low_, c, window=20)
    f["dc_pband"], f["dc_wband"] = dc.donchian_channel_pband(), dc.donchian_channel_wband()
    f["ulcer_index"] = fast.ulcer_index(close, window=14)

    f["mfi_14"] = fast.money_flow_index(high, low, close, volume, window=14)
    f["cmf_20"] = ta.volume.ChaikinMoneyFlowIndicator(h, low_, c, v, window=20).chaikin_money_flow()
    force = ta.volume.ForceIndexIndicator(c, v, window=13).force_index()
    f["force_index_13"] = force / (c * v20)
    vwap = ta.volume.VolumeWeightedAveragePrice(h, low_, c, v, window=14)
    f["vwap_ratio_14"] = c / vwap.volume_weighted_average_price() - 1.0

    out = np.empty((len(c), len(FEATURE_COLUMNS)))
    for j, name in enumerate(FEATURE_COLUMNS):
        out[:, j] = f[name]
    return out
