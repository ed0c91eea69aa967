"""Past-only technical features for one symbol's bars, in a fixed order.

Every feature at bar t is computed from bars <= t (rolling and exponential
windows, positive shifts). Levels are made scale-free (ratios to the close,
log returns, oscillators) so one model can read many symbols. Indicators that
``ta`` computes with Python loops are taken from
:mod:`tradingrl.features.fast_indicators` (numba, checked against ``ta`` in
the tests); the rest come from ``ta`` itself. ``ta`` options that read the
future are avoided: Ichimoku with ``visual=True`` and DPO fill their shifted
values with the whole series' mean.

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


def compute_features(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> pd.DataFrame:
    """Features for one symbol's bars in time order (arrays of equal length).

    Returns float64 columns in :data:`FEATURE_COLUMNS` order with a RangeIndex;
    early rows hold NaN where a window is not yet full. Prices must be
    positive and volume non-negative (the validated contract).
    """
    import ta  # heavy-ish (pulls in the indicator modules); only the stage needs it

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
    f["log_volume_z20"] = (log_v - log_v.rolling(20).mean()) / log_v.rolling(20).std()
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
    vortex = ta.trend.VortexIndicator(h, low_, c, window=14)
    f["vortex_pos"] = vortex.vortex_indicator_pos()
    f["vortex_neg"] = vortex.vortex_indicator_neg()
    f["vortex_diff"] = vortex.vortex_indicator_diff()
    f["trix"] = ta.trend.TRIXIndicator(c, window=15).trix()
    f["mass_index"] = ta.trend.MassIndex(h, low_, window_fast=9, window_slow=25).mass_index()
    f["cci"] = fast.cci(high, low, close, window=20, constant=0.015)
    kst = ta.trend.KSTIndicator(c)
    f["kst"], f["kst_signal"], f["kst_diff"] = kst.kst(), kst.kst_sig(), kst.kst_diff()
    ichimoku = ta.trend.IchimokuIndicator(h, low_, window1=9, window2=26, window3=52, visual=False)
    f["ichimoku_conversion"] = c / ichimoku.ichimoku_conversion_line() - 1.0
    f["ichimoku_base"] = c / ichimoku.ichimoku_base_line() - 1.0
    f["ichimoku_a"] = c / ichimoku.ichimoku_a() - 1.0
    f["ichimoku_b"] = c / ichimoku.ichimoku_b() - 1.0
    aroon = fast.aroon(high, low, window=25)
    f["aroon_up"], f["aroon_down"] = aroon.aroon_up, aroon.aroon_down
    f["aroon_indicator"] = aroon.aroon_up - aroon.aroon_down
    with warnings.catch_warnings():  # STC divides 0/0 on flat stretches; NaN is dropped later
        warnings.simplefilter("ignore", RuntimeWarning)
        f["stc"] = ta.trend.STCIndicator(c, window_slow=50, window_fast=23, cycle=10).stc()
    psar = fast.psar(high, low, close, step=0.02, max_step=0.2)
    f["psar_distance"] = (c - psar.psar) / c
    f["psar_uptrend"] = psar.uptrend.astype("float64")

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

    f["atr_14"] = fast.atr(high, low, close, window=14) / close
    bb = ta.volatility.BollingerBands(c, window=20, window_dev=2)
    f["bb_pband"], f["bb_wband"] = bb.bollinger_pband(), bb.bollinger_wband()
    f["bb_hband_indicator"] = bb.bollinger_hband_indicator()
    f["bb_lband_indicator"] = bb.bollinger_lband_indicator()
    kc = ta.volatility.KeltnerChannel(h, low_, c, window=20, original_version=True)
    f["kc_pband"], f["kc_wband"] = kc.keltner_channel_pband(), kc.keltner_channel_wband()
    dc = ta.volatility.DonchianChannel(h, low_, c, window=20)
    f["dc_pband"], f["dc_wband"] = dc.donchian_channel_pband(), dc.donchian_channel_wband()
    f["ulcer_index"] = fast.ulcer_index(close, window=14)

    f["mfi_14"] = fast.mfi(high, low, close, volume, window=14)
    f["cmf_20"] = ta.volume.ChaikinMoneyFlowIndicator(h, low_, c, v, window=20).chaikin_money_flow()
    force = ta.volume.ForceIndexIndicator(c, v, window=13).force_index()
    f["force_index_13"] = force / (c * v20)
    vwap = ta.volume.VolumeWeightedAveragePrice(h, low_, c, v, window=14)
    f["vwap_ratio_14"] = c / vwap.volume_weighted_average_price() - 1.0

    frame = pd.DataFrame({name: np.asarray(f[name], dtype="float64") for name in FEATURE_COLUMNS})
    return frame.replace([np.inf, -np.inf], np.nan)
