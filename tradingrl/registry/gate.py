"""The promotion gate: a challenger becomes ``champion`` only when every check passes.

Checks (thresholds from params; every one is reported with its value):

- ``dsr``: the deflated Sharpe ratio of the walk-forward out-of-sample
  returns is at least ``min_dsr`` (0.95: 95% probability that the true Sharpe
  ratio is above what the best of ``n_trials`` skill-free trials would show);
  undefined (a policy that never moved its book) fails.
- ``beats_baselines``: the out-of-sample annualised Sharpe ratio after costs
  exceeds the best baseline's by at least ``min_sharpe_margin``.
- ``max_drawdown``: the out-of-sample maximum drawdown is at most
  ``max_drawdown``.
- ``beats_champion``: at least as good a Sharpe ratio as the current champion
  recorded on the same folds (same test spans). With no champion the check
  passes ("no champion yet"); when the champion was evaluated on other folds
  (new data since), the two records are not like for like: the check then
  compares the recorded Sharpe ratios anyway and says so in its detail.

A failed gate changes no alias: the champion stays, the challenger keeps the
reasons as tags. Nothing is ever deleted or demoted by a failure (the aliases
are set by :func:`tradingrl.registry.promotion.promote`; their names live in
:mod:`tradingrl.registry.champion`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GateThresholds:
    """min_dsr: least deflated Sharpe ratio, a probability in [0, 1].
    min_sharpe_margin: annualised Sharpe ratio the policy must beat the best
    baseline's by. max_drawdown: largest out-of-sample drawdown, a fraction
    of equity in (0, 1]."""

    min_dsr: float = 0.95
    min_sharpe_margin: float = 0.1
    max_drawdown: float = 0.25

    @classmethod
    def from_params(cls, promote: Mapping[str, Any]) -> GateThresholds:
        """From params.yaml's ``promote`` section (its ``gate`` mapping)."""
        return cls(**promote["gate"])

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_dsr <= 1.0:
            raise ValueError(f"min_dsr must be in [0, 1], got {self.min_dsr}")
        if not math.isfinite(self.min_sharpe_margin):
            raise ValueError("min_sharpe_margin must be finite")
        if not 0.0 < self.max_drawdown <= 1.0:
            raise ValueError(f"max_drawdown must be in (0, 1], got {self.max_drawdown}")


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str


def folds_key(evaluation: Mapping[str, Any]) -> str:
    """A short hash of the evaluated folds' test spans: equal keys = same folds."""
    spans = [(f["test"]["start"], f["test"]["end"]) for f in evaluation["folds"]]
    return hashlib.sha256(json.dumps(spans).encode()).hexdigest()[:16]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def run_gate(evaluation: Mapping[str, Any], thresholds: GateThresholds,
             champion: Mapping[str, Any] | None) -> tuple[bool, list[GateCheck]]:
    """Every check of the module docstring on ``evaluation`` (reports/metrics.json).
    ``champion``: None, or {"version", "sharpe", "folds_key"} of the current champion."""
    overall = evaluation["policy"]["overall"]
    sharpe, drawdown = _number(overall.get("sharpe")), _number(overall.get("max_drawdown"))
    dsr = _number(evaluation["policy"]["dsr"].get("dsr"))
    checks = []
    n_trials = evaluation["policy"]["dsr"].get("n_trials")
    checks.append(GateCheck(
        "dsr", dsr is not None and dsr >= thresholds.min_dsr, dsr, thresholds.min_dsr,
        f"deflated Sharpe ratio {_fmt(dsr)} over {n_trials} trials, need >= {thresholds.min_dsr}"
        if dsr is not None else
        f"deflated Sharpe ratio undefined: {evaluation['policy']['dsr'].get('undefined')}"))

    best = evaluation.get("best_baseline")
    best_sharpe = _number(evaluation["baselines"][best]["overall"]["sharpe"]) if best else None
    if sharpe is None:
        checks.append(GateCheck("beats_baselines", False, None, None,
                                "out-of-sample Sharpe ratio undefined"))
    else:
        need = (best_sharpe if best_sharpe is not None else 0.0) + thresholds.min_sharpe_margin
        checks.append(GateCheck(
            "beats_baselines", sharpe >= need, sharpe, need,
            f"Sharpe {_fmt(sharpe)} vs best baseline {best} {_fmt(best_sharpe)} + margin "
            f"{thresholds.min_sharpe_margin}"))
    checks.append(GateCheck(
        "max_drawdown", drawdown is not None and drawdown <= thresholds.max_drawdown, drawdown,
        thresholds.max_drawdown,
        f"maximum drawdown {_fmt(drawdown)}, limit {thresholds.max_drawdown}"))

    if champion is None:
        checks.append(GateCheck("beats_champion", True, sharpe, None, "no champion yet"))
    else:
        theirs = _number(champion.get("sharpe"))
        same = champion.get("folds_key") == folds_key(evaluation)
        ok = sharpe is not None and (theirs is None or sharpe >= theirs)
        where = "on the same folds" if same else "on other folds (not like for like: new data)"
        checks.append(GateCheck(
            "beats_champion", ok, sharpe, theirs,
            f"Sharpe {_fmt(sharpe)} vs champion v{champion.get('version')} {_fmt(theirs)} {where}"))
    return all(c.passed for c in checks), checks


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def decision_record(passed: bool, checks: list[GateCheck], **extra: Any) -> dict[str, Any]:
    """The JSON-able decision: decision, reasons (the failed checks' details),
    checks, and whatever ``extra`` holds (versions, who, when)."""
    return {
        "decision": "promoted" if passed else "refused",
        "reasons": [c.detail for c in checks if not c.passed] or
                   ["every check passed: " + "; ".join(c.detail for c in checks)],
        "checks": [asdict(c) for c in checks],
        **extra,
    }
