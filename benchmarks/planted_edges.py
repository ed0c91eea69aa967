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

Also the edge's standard error (its per-bar std / sqrt(pairs)). Printed as
means over the symbols, or per symbol for one span of sessions
(``--span FIRST LAST``, both inclusive: pairs of bars t, t+1 inside it). It
says what is there to find, not what the agent finds (bench_agent_ablation
does that)::

    python -m benchmarks.planted_edges --market-seeds 1 2
    python -m benchmarks.planted_edges --market-seeds 1 --span 2014-03-28 2014-08-04
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from benchmarks.bench_agent_ablation import market_bars

# The sign of the one-bar rule each lag-1 market implies.
RULE_SIGN = {"momentum": 1.0, "reversion": -1.0}


def market_edges(market: str, seed: int,
                 span: tuple[str, str] | None = None) -> dict[str, np.ndarray]:
    """Per symbol of one market (the ablation's bars, ``market_bars``):
    autocorrelation, sigma (bps), the one-bar rule's mean edge and its
    standard error (bps/bar), and the pairs of bars they are taken over
    (all, or those inside ``span``, session dates)."""
    bars = market_bars(market, seed)
    rows = []
    for _, group in bars.groupby("symbol"):
        close, open_ = np.log(group["close"].to_numpy()), np.log(group["open"].to_numpy())
        r = np.diff(close)  # r[i]: bar i+1's close-to-close return
        intraday = (close - open_)[1:]  # bar i+1's open -> close, aligned with r
        pairs = np.arange(len(r) - 1)  # (r[i], r[i+1]): a decision at bar i+1, filled at i+2
        if span is not None:
            days = group["timestamp"].dt.strftime("%Y-%m-%d").to_numpy()[1:]
            inside = (days >= span[0]) & (days <= span[1])
            pairs = pairs[inside[pairs] & inside[pairs + 1]]
        if len(pairs) < 3:
            raise ValueError(f"span {span} holds {len(pairs)} pairs of bars; need at least 3")
        rule = RULE_SIGN[market] * np.sign(r[pairs]) * intraday[pairs + 1]
        rows.append((float(np.corrcoef(r[pairs], r[pairs + 1])[0, 1]),
                     float(np.std(r[pairs])) * 1e4, float(np.mean(rule)) * 1e4,
                     float(np.std(rule, ddof=1) / np.sqrt(len(pairs))) * 1e4, len(pairs)))
    a = np.asarray(rows)
    return {"autocorrelation": a[:, 0], "sigma_bps": a[:, 1], "edge_bps": a[:, 2],
            "edge_se_bps": a[:, 3], "pairs": a[:, 4].astype(int)}


def _join(values: np.ndarray, spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--market-seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--span", nargs=2, default=None, metavar=("FIRST", "LAST"),
                        help="session dates (YYYY-MM-DD, inclusive): per symbol, inside them")
    args = parser.parse_args(argv)
    span = None if args.span is None else tuple(args.span)
    if span is not None:
        print(f"span {span[0]} .. {span[1]}, per symbol")
    print("| market | seed | pairs | lag-1 autocorrelation | sigma (bps) | "
          "one-bar rule edge (bps/bar) | its standard error (bps/bar) |")
    print("|---|---|---|---|---|---|---|")
    for market in RULE_SIGN:
        for seed in args.market_seeds:
            e = market_edges(market, seed, span=span)
            if span is None:  # means over the symbols
                cells = [f"{e['pairs'].min()}", f"{e['autocorrelation'].mean():+.3f}",
                         f"{e['sigma_bps'].mean():.0f}", f"{e['edge_bps'].mean():.1f}",
                         f"{e['edge_se_bps'].mean():.1f}"]
            else:
                cells = [_join(e["pairs"], "d"), _join(e["autocorrelation"], "+.3f"),
                         _join(e["sigma_bps"], ".0f"), _join(e["edge_bps"], "+.1f"),
                         _join(e["edge_se_bps"], ".1f")]
            print(f"| {market} | {seed} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
