"""Where the drift check's default thresholds come from (README, "Drift checks").

The trained models of this checkout (``make run`` first: models/cnn_lstm,
models/agent, data/features, data/validated, reports/metrics.json) are
bundled with their reference window as ``promote`` builds it; then windows of
the synthetic market go through the drift check's library calls (features,
the champion's replayed decisions, Evidently drift, live performance, the
rules) with params.yaml's ``monitoring`` settings:

- ``same <seed>``: params.yaml's generator with another seed (the reference
  regime): no rule should fire;
- ``vol3+drift``: three times the volatility and a strong drift, ``vol2``:
  twice the volatility: the features should drift.

Each market has params.yaml's length, so its newest window sits where the
reference sits in the training data. The window is not validated here (the
synthetic source is clean; the flow validates).

    python benchmarks/drift_thresholds.py                  # seeds 11-20 and the shifted regimes
    python benchmarks/drift_thresholds.py --seeds 11,12    # fewer
    python benchmarks/drift_thresholds.py --window-bars 126  # a shorter window
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIFTED = {
    "vol3+drift": {"annual_vol": 0.75, "market_drift": 0.6, "trend_drift": 1.0},
    "vol2": {"annual_vol": 0.5},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout with trained models")
    parser.add_argument("--seeds", default="11,12,13,14,15,16,17,18,19,20",
                        help="comma-separated seeds of the reference regime")
    parser.add_argument("--shifted-seed", type=int, default=11,
                        help="seed of the shifted regimes")
    parser.add_argument("--window-bars", type=int, default=None,
                        help="sessions per window (default: params.yaml monitoring.window_bars)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import pandas as pd
    import torch
    import yaml

    from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
    from tradingrl.features.build import build_feature_table
    from tradingrl.features.labels import LabelSpec
    from tradingrl.monitoring import (
        CheckResults,
        RetrainThresholds,
        decide_retrain,
        feature_drift,
        history_bars,
        live_performance,
        model_features,
        prediction_drift,
        read_env_config,
        reference_window,
        replay_decisions,
    )
    from tradingrl.monitoring.decisions import backtest_env
    from tradingrl.registry.bundle import build_policy_bundle
    from tradingrl.registry.policy import TradingPolicy

    torch.set_num_threads(1)
    repo = args.repo.resolve()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    monitoring, features_params = params["monitoring"], params["features"]
    thresholds = RetrainThresholds(
        drift_share=monitoring["drift_share_threshold"],
        prediction_drift_share=monitoring["prediction_drift_threshold"],
        performance_decay=monitoring["performance_decay_threshold"],
        min_matured_bars=monitoring["min_matured_bars"])
    window_bars = int(monitoring["window_bars"] if args.window_bars is None else args.window_bars)
    oos = json.loads((repo / "reports" / "metrics.json").read_text())["policy"]["overall"]["sharpe"]

    out = Path(tempfile.mkdtemp(prefix="drift-thresholds-"))
    try:
        start = time.perf_counter()
        bundle = build_policy_bundle(repo / "models" / "cnn_lstm", repo / "models" / "agent",
                                     features_params, out / "bundle")
        policy, env_config = TradingPolicy.load(bundle), read_env_config(bundle)
        reference = reference_window(
            policy, env_config, pd.read_parquet(repo / "data" / "validated" / "ohlcv.parquet"),
            pd.read_parquet(repo / "data" / "features" / "features.parquet"),
            sessions=int(monitoring["reference_sessions"]))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(f"reference: {reference['timestamp'].nunique()} sessions x "
          f"{reference['symbol'].nunique()} symbols, {time.perf_counter() - start:.0f} s; "
          f"window {window_bars} sessions; out-of-sample Sharpe {oos:.2f}", flush=True)
    columns = model_features(policy.manifest)
    history = history_bars(policy.manifest)
    synthetic = params["ingest"]["synthetic"]
    label = LabelSpec(**features_params["label"])

    cases = [(f"same {seed}", {**synthetic, "seed": seed})
             for seed in (int(s) for s in args.seeds.split(",") if s)]
    cases += [(name, {**synthetic, "seed": args.shifted_seed, **change})
              for name, change in SHIFTED.items()]
    print("| case | features drifted | decision columns drifted (scores) | live Sharpe | decay "
          "| fired |\n|---|---|---|---|---|---|")
    for name, config in cases:
        bars = generate_market(SyntheticMarketConfig(**config))
        stamps = pd.DatetimeIndex(bars["timestamp"].unique()).sort_values()
        bars = bars[bars["timestamp"] >= stamps[-(window_bars + history)]].reset_index(drop=True)
        table, _ = build_feature_table(bars, label, warmup_bars=features_params["warmup_bars"])
        first = pd.DatetimeIndex(table["timestamp"].unique()).sort_values()[-window_bars]
        replayed = replay_decisions(policy, env_config, bars, table, start=first)
        current = replayed.rows
        feature = feature_drift(reference, current, columns, method=monitoring["drift_method"],
                                threshold=monitoring["column_threshold"])
        prediction = prediction_drift(reference, current, method=monitoring["drift_method"],
                                      threshold=monitoring["prediction_column_threshold"])
        performance = live_performance(current, replayed.markets,
                                       env=backtest_env(replayed.env), oos_sharpe=oos,
                                       bars_per_year=int(monitoring["bars_per_year"]))
        _, checks = decide_retrain(CheckResults(feature, prediction, performance), thresholds)
        scores = ", ".join(f"{c.column} {c.score:.2f}" for c in prediction.columns)
        fired = ", ".join(c.name for c in checks if c.fired) or "none"
        live = "n/a" if performance.live_sharpe is None else f"{performance.live_sharpe:.2f}"
        decay = "n/a" if performance.decay is None else f"{performance.decay:.2f}"
        print(f"| {name} | {feature.share:.0%} ({feature.count}) | {prediction.share:.0%} "
              f"({scores}) | {live} | {decay} | {fired} |", flush=True)
    print(f"thresholds: {thresholds}", file=sys.stderr)


if __name__ == "__main__":
    main()
