"""How much each planted market offers a one-bar rule, before costs.

For every planted market of :mod:`benchmarks.bench_agent_ablation` (its
shape: 4 symbols x 1,600 bars) and market seed, per symbol:

- the lag-1 autocorrelation of close-to-close log returns (the planted
  coefficient, measured);
- the standard deviation of those returns (bps);
- the gross edge of the one-bar sign rule the regularity implies (momentum:
  hold sign(r_t), reversion: -sign(r_t)) from bar t+1's open to its close,
  the span a decision at t can reach under the next-open fill rule, in bps
  per bar, before costs.

Printed as means over the symbols. It says what is there to find, not what
the agent finds (bench_agent_ablation does that)::

    python -m benchmarks.planted_edges --market-seeds 1 2
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from benchmarks.bench_agent_ablation import PLANTED

# The sign of the one-bar rule each lag-1 market implies.
RULE_SIGN = {"momentum": 1.0, "reversion": -1.0}


def market_edges(market: str, seed: int, start: str = "2010-01-04") -> dict[str, float]:
    """Means over the symbols of one market: autocorrelation, sigma (bps), edge (bps/bar)."""
    from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market

    bars = generate_market(SyntheticMarketConfig(n_symbols=4, n_bars=1600, start=start,
                                                 **PLANTED[market], seed=seed))
    rows = []
    for _, group in bars.groupby("symbol"):
        close, open_ = np.log(group["close"].to_numpy()), np.log(group["open"].to_numpy())
        r = np.diff(close)
        intraday = (close - open_)[1:]  # bar t+1's open -> close, aligned with r
        autocorrelation = float(np.corrcoef(r[:-1], r[1:])[0, 1])
        edge = float(np.mean(RULE_SIGN[market] * np.sign(r[:-1]) * intraday[1:]))
        rows.append((autocorrelation, float(np.std(r)) * 1e4, edge * 1e4))
    a = np.asarray(rows).mean(axis=0)
    return {"autocorrelation": a[0], "sigma_bps": a[1], "edge_bps": a[2]}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--market-seeds", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    print("| market | seed | lag-1 autocorrelation | sigma (bps) | one-bar rule edge (bps/bar) |")
    print("|---|---|---|---|---|")
    for market in RULE_SIGN:
        for seed in args.market_seeds:
            e = market_edges(market, seed)
            print(f"| {market} | {seed} | {e['autocorrelation']:+.3f} | {e['sigma_bps']:.0f} | "
                  f"{e['edge_bps']:.1f} |")


if __name__ == "__main__":
    main()
