"""Per-call time of the risk layer (`tradingrl.risk.apply_risk`), 60-bar
return window, timeit best of 5 x 100,000 calls.

    python benchmarks/bench_risk.py
"""

from __future__ import annotations

import timeit

import numpy as np

from tradingrl.risk import RiskLimits, RiskState, apply_risk

CALLS = 100_000


def bench(name: str, n_assets: int, limits: RiskLimits, *, equity: float = 99.0) -> None:
    rng = np.random.default_rng(0)
    kwargs = {
        "limits": limits,
        "state": RiskState(peak_equity=100.0),
        "equity": equity,
        "recent_returns": rng.normal(0, 0.01, (60, n_assets)),
    }
    if limits.confidence_sizing:
        kwargs["confidence"] = np.full(n_assets, 0.9)
    if limits.kelly_fraction is not None:
        kwargs["expected_return"] = np.full(n_assets, 0.001)
    proposal = np.full(n_assets, 0.8)

    def call():
        return apply_risk(proposal, **kwargs)

    binding = call().binding
    seconds = min(timeit.repeat(call, number=CALLS, repeat=5)) / CALLS
    print(f"{name:48s} {seconds * 1e6:6.2f} us/call  binding={binding}")


def main() -> None:
    full = RiskLimits(vol_target=0.10, var_limit=0.01, kelly_fraction=0.5, confidence_sizing=True)
    bench("1 asset, every rule (confidence, Kelly, vol, VaR)", 1, full)
    bench("1 asset, defaults (vol, VaR, breaker)", 1, RiskLimits())
    bench("1 asset, hard limits + breaker only", 1, RiskLimits(vol_target=None, var_limit=None))
    bench("1 asset, breaker tripped (early exit)", 1, RiskLimits(), equity=70.0)
    bench("5 assets, every rule", 5, full)
    bench("20 assets, every rule", 20, full)


if __name__ == "__main__":
    main()
