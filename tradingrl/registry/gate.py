"""The promotion gate: a challenger becomes ``champion`` only when every check passes.

Checks (thresholds from params; every one is reported with its value):

- ``dsr``: the deflated Sharpe ratio of the walk-forward out-of-sample
  returns is at least ``min_dsr`` (0.95: 95% probability that the true Sharpe
  ratio is above what the best of ``n_trials`` skill-free trials would show);
  undefined (a policy that never moved its book) fails.
- ``beats_baselines``: the out-of-sample annualised Sharpe ratio after costs
  exceeds the best baseline's by at least ``min_sharpe_margin``; the flat
  baseline (no trading) counts as Sharpe 0, so a policy must also beat doing
  nothing.
- ``max_drawdown``: the out-of-sample maximum drawdown is at most
  ``max_drawdown``.
- ``beats_champion``: like for like against the current champion
  (:mod:`tradingrl.registry.comparison`): the champion's bundle is replayed
  over the bars after its own training end with the challenger's costs and
  risk settings, and both books' annualised Sharpe ratios are taken on
  exactly the bars that are out of sample for both (the challenger's
  out-of-fold policy series of reports/evaluation/curves.parquet, the same
  symbols, the same cost model and end-of-block exit). The challenger passes
  when its Sharpe ratio is at least the champion's. An undefined (missing or
  NaN) Sharpe ratio on either side fails the check, never passes it.

- ``consistent_with_walk_forward`` (:mod:`tradingrl.registry.consistency`):
  the served trend model's predictions over the bundle's reference window
  agree with the out-of-fold predictions on the same bars (mean
  confidence, class shares, calibration; thresholds ``promote.consistency``).
  Too few common bars or a NaN figure fails.

Every check carries a ``status``: ``"passed"``, ``"failed"`` or, for
``beats_champion`` only, ``"not comparable"`` (:data:`NOT_COMPARABLE`). Not
comparable means fewer than ``min_comparable_bars`` bars are out of sample
for both (or the champion could not be replayed on the challenger's
symbols): the comparison says nothing either way, so it neither blocks nor
supports promotion and the absolute checks decide. Such a check records
``passed: true`` (it does not block) with ``status: "not comparable"`` and
the reason (bars found, the champion's training end); it is not logged as
the MLflow metric ``gate.beats_champion`` (that metric means "beat the
champion"), and the decision's reasons say that it was not comparable
instead of "every check passed". With no champion the check passes ("no
champion yet").

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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradingrl.registry.comparison import ChampionComparison

PASSED, FAILED, NOT_COMPARABLE = "passed", "failed", "not comparable"


@dataclass(frozen=True)
class GateThresholds:
    """min_dsr: least deflated Sharpe ratio, a probability in [0, 1].
    min_sharpe_margin: annualised Sharpe ratio the policy must beat the best
    baseline's by. max_drawdown: largest out-of-sample drawdown, a fraction
    of equity in (0, 1]. min_comparable_bars: least bars out of sample for
    both challenger and champion for ``beats_champion`` to compare them
    (fewer: not comparable)."""

    min_dsr: float = 0.95
    min_sharpe_margin: float = 0.1
    max_drawdown: float = 0.25
    min_comparable_bars: int = 126

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
        bars = self.min_comparable_bars
        if isinstance(bars, bool) or not isinstance(bars, int) or bars < 2:
            raise ValueError(f"min_comparable_bars must be an int >= 2, got {bars!r}")


@dataclass(frozen=True)
class GateCheck:
    """passed: the check does not block promotion; status: PASSED, FAILED or
    NOT_COMPARABLE (passed, but compared nothing: see the module docstring)."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str
    status: str = ""

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", PASSED if self.passed else FAILED)
        if self.status not in (PASSED, FAILED, NOT_COMPARABLE):
            raise ValueError(f"unknown check status {self.status!r}")
        if (self.status == FAILED) == self.passed:
            raise ValueError(f"check {self.name}: status {self.status!r} with passed "
                             f"{self.passed}")


def folds_key(evaluation: Mapping[str, Any]) -> str:
    """A short hash of the evaluated folds' test spans: equal keys = same folds."""
    spans = [(f["test"]["start"], f["test"]["end"]) for f in evaluation["folds"]]
    return hashlib.sha256(json.dumps(spans).encode()).hexdigest()[:16]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def run_gate(evaluation: Mapping[str, Any], thresholds: GateThresholds,
             champion: ChampionComparison | None,
             consistency: Mapping[str, Any] | None = None) -> tuple[bool, list[GateCheck]]:
    """Every check of the module docstring on ``evaluation`` (reports/metrics.json).
    ``champion``: None (no champion yet), or the
    :class:`~tradingrl.registry.comparison.ChampionComparison` of the current
    champion with the challenger. ``consistency``: the record of
    :func:`tradingrl.registry.consistency.prediction_consistency` (the promote
    stage always gives it; None leaves the check out, for callers without
    out-of-fold predictions)."""
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
    # Doing nothing is a baseline too: the flat book has no Sharpe ratio (it
    # never moves), and counts as 0, so a losing policy never "beats" baselines
    # that all lost more.
    if best_sharpe is None or best_sharpe < 0.0:
        best, best_sharpe = "flat (no trading, Sharpe 0)", 0.0
    if sharpe is None:
        checks.append(GateCheck("beats_baselines", False, None, None,
                                "out-of-sample Sharpe ratio undefined"))
    else:
        need = best_sharpe + thresholds.min_sharpe_margin
        checks.append(GateCheck(
            "beats_baselines", sharpe >= need, sharpe, need,
            f"Sharpe {_fmt(sharpe)} vs best baseline {best} {_fmt(best_sharpe)} + margin "
            f"{thresholds.min_sharpe_margin}"))
    checks.append(GateCheck(
        "max_drawdown", drawdown is not None and drawdown <= thresholds.max_drawdown, drawdown,
        thresholds.max_drawdown,
        f"maximum drawdown {_fmt(drawdown)}, limit {thresholds.max_drawdown}"))
    checks.append(champion_check(champion))
    if consistency is not None:
        gaps = consistency.get("gaps") or {}
        checks.append(GateCheck(
            consistency["name"], bool(consistency["passed"]), _number(gaps.get("confidence")),
            consistency["thresholds"]["max_confidence_gap"], consistency["detail"]))
    return all(c.passed for c in checks), checks


def champion_check(champion: ChampionComparison | None) -> GateCheck:
    """The ``beats_champion`` check of ``champion`` (see the module docstring)."""
    name = "beats_champion"
    if champion is None:
        return GateCheck(name, True, None, None, "no champion yet")
    version = f"champion v{champion.version}"
    if not champion.comparable:
        return GateCheck(name, True, None, None,
                         f"not comparable with {version}: {champion.reason}; champion "
                         f"training end {champion.training_end}, {champion.n_bars} bars out of "
                         f"sample for both (need {champion.min_bars})", status=NOT_COMPARABLE)
    ours, theirs = _number(champion.challenger_sharpe), _number(champion.champion_sharpe)
    where = (f"on the same {champion.n_bars} bars {str(champion.first)[:10]}.."
             f"{str(champion.last)[:10]} after the champion's training end "
             f"{str(champion.training_end)[:10]}")
    if ours is None or theirs is None:
        undefined = " and ".join(side for side, value in (("challenger", ours), (version, theirs))
                                 if value is None)
        return GateCheck(name, False, ours, theirs,
                         f"Sharpe ratio of the {undefined} undefined {where}: fails")
    return GateCheck(name, ours >= theirs, ours, theirs,
                     f"Sharpe {_fmt(ours)} vs {version} {_fmt(theirs)} {where}, "
                     "the challenger's costs and risk settings")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def decision_record(passed: bool, checks: list[GateCheck], **extra: Any) -> dict[str, Any]:
    """The JSON-able decision: decision, reasons (the failed checks' details),
    checks, and whatever ``extra`` holds (versions, who, when)."""
    skipped = [c.name for c in checks if c.status == NOT_COMPARABLE]
    summary = ("every check passed: " if not skipped else
               f"no check failed ({', '.join(skipped)} not comparable): ")
    return {
        "decision": "promoted" if passed else "refused",
        "reasons": [c.detail for c in checks if not c.passed] or
                   [summary + "; ".join(c.detail for c in checks)],
        "checks": [asdict(c) for c in checks],
        **extra,
    }
