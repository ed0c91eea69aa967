"""CNN+LSTM figures: one-window inference latency, batch inference and training
throughput (default sizes, T=60, F=85, CPU), and peak memory of the data
module plus training steps on the 1.37M-row synthetic feature table.

    python benchmarks/bench_cnn_lstm.py [--symbols 137] [--bars 10000] [--train-batches 100]

The feature table is built in a child process (as the features stage would)
and read back, so the peak memory reported is the training side's alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BUILD_FEATURES = """
import json
from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.features.build import build_feature_table
from tradingrl.features.labels import LabelSpec
bars = generate_market(SyntheticMarketConfig(n_symbols={symbols}, n_bars={bars}, seed=7))
table, report = build_feature_table(bars, LabelSpec(), 120)
table.to_parquet(r"{path}", index=False)
print(json.dumps(report["features"]))
"""


def percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1e3
    return f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms"


def latency(fn, calls: int) -> list[float]:
    for _ in range(30):
        fn()
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def model_figures() -> None:
    import torch

    from tradingrl.models.cnn_lstm import CNNLSTM
    from tradingrl.models.uncertainty import mc_dropout_predict

    torch.manual_seed(0)
    model = CNNLSTM(85).eval()
    print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters (defaults), T=60, F=85")
    x1 = torch.randn(1, 60, 85)
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            plain = latency(lambda: model(x1), 500)
        mc = latency(lambda: mc_dropout_predict(model, x1, samples=20, seed=0), 100)
        print(f"  {threads} thread(s): one window {percentiles(plain)}; MC dropout x20 {percentiles(mc)}")
    torch.set_num_threads(default_threads)
    xb = torch.randn(1024, 60, 85)
    with torch.inference_mode():
        model(xb)
        start = time.perf_counter()
        for _ in range(5):
            model(xb)
    print(f"  batch inference: {5 * 1024 / (time.perf_counter() - start):,.0f} windows/s (batch 1024)")


def training_figures(symbols: int, bars: int, train_batches: int) -> None:
    import lightning as L
    import pandas as pd

    from tradingrl.models.cnn_lstm import CNNLSTM
    from tradingrl.models.data import FeatureWindowDataModule

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "features.parquet"
        code = BUILD_FEATURES.format(symbols=symbols, bars=bars, path=path)
        names = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                          capture_output=True, text=True).stdout)
        start = time.perf_counter()
        frame = pd.read_parquet(path)
    rows = len(frame)
    datamodule = FeatureWindowDataModule(frame, names, window=60, val_fraction=0.2, batch_size=256)
    datamodule.setup("fit")
    del frame
    setup_s = time.perf_counter() - start
    info = datamodule.split_info
    print(f"data: {rows:,} rows x {len(names)} features; read + setup {setup_s:.1f} s; "
          f"{info['windows_train']:,} training / {info['windows_val']:,} validation windows")
    model = CNNLSTM(len(names), class_weights=datamodule.class_weights())
    trainer = L.Trainer(max_epochs=1, limit_train_batches=train_batches, limit_val_batches=20,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    took = time.perf_counter() - start
    samples = train_batches * 256 + 20 * 256
    print(f"  Lightning fit, {train_batches} training + 20 validation batches of 256: {took:.1f} s "
          f"(~{train_batches * 256 / took:,.0f} training samples/s incl. validation)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"  peak memory of this process (data module + training): {peak:.2f} GiB; {samples:,} samples")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=137)
    parser.add_argument("--bars", type=int, default=10_000)
    parser.add_argument("--train-batches", type=int, default=100)
    args = parser.parse_args()
    model_figures()
    training_figures(args.symbols, args.bars, args.train_batches)


if __name__ == "__main__":
    main()
