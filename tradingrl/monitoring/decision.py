"""The drift check's settings, its checks, and its decision as one record.

- :class:`DriftSettings`: params.yaml ``monitoring`` read once (methods,
  column thresholds, the retraining rules' thresholds, the window length);
- :func:`run_checks`: the three checks of a replayed window against a
  champion's reference window (feature drift, prediction drift, live
  performance after costs);
- :class:`DriftDecision`: what the check decided and why. The rules
  (:func:`~tradingrl.monitoring.drift.decide_retrain`) produce it through
  :func:`decide_drift`; :func:`no_comparison` when there is nothing to
  compare. It knows its JSON (``decision.json``), its MLflow tags, metrics
  and params, and its markdown summary; the flow only writes it.

Pure: no MLflow, no files (:mod:`tradingrl.monitoring.record` logs it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from tradingrl.monitoring.drift import CheckResults, RetrainThresholds, RuleCheck, decide_retrain

DECISIONS: tuple[str, ...] = ("retrain", "no_retrain", "no_champion", "no_reference")
TRIGGERS: tuple[str, ...] = ("auto", "subflow", "deployment", "none")
_MONITORING_KEYS = ("experiment", "window_bars", "reference_sessions", "drift_method",
                    "column_threshold", "drift_share_threshold", "prediction_column_threshold",
                    "prediction_drift_threshold", "performance_decay_threshold",
                    "min_matured_bars", "bars_per_year")


@dataclass(frozen=True)
class DriftSettings:
    """params.yaml ``monitoring``. experiment: MLflow experiment of the
    checks' runs; window_bars: sessions checked (>= 2); reference_sessions:
    sessions of the reference window promotion saves; drift_method: the
    Evidently stattest per column; column_threshold /
    prediction_column_threshold: the score (reference standard deviations,
    for ``wasserstein``) at which a feature / decision column drifts;
    bars_per_year: annualisation of the live Sharpe ratio; retrain: the
    retraining rules' thresholds."""

    experiment: str
    window_bars: int
    reference_sessions: int
    drift_method: str
    column_threshold: float
    prediction_column_threshold: float
    bars_per_year: int
    retrain: RetrainThresholds

    def __post_init__(self) -> None:
        if isinstance(self.window_bars, bool) or not isinstance(self.window_bars, int) \
                or self.window_bars < 2:
            raise ValueError(f"window_bars must be an int >= 2, got {self.window_bars!r}")

    @classmethod
    def from_params(cls, monitoring: Mapping[str, Any],
                    window_bars: int | None = None) -> DriftSettings:
        """From the ``monitoring`` section; ``window_bars`` overrides its own.
        A missing key is a KeyError naming every one missing."""
        absent = [k for k in _MONITORING_KEYS if k not in monitoring]
        if absent:
            raise KeyError(f"params.yaml: monitoring lacks {', '.join(absent)}")
        return cls(experiment=str(monitoring["experiment"]),
                   window_bars=int(monitoring["window_bars"] if window_bars is None
                                   else window_bars),
                   reference_sessions=int(monitoring["reference_sessions"]),
                   drift_method=str(monitoring["drift_method"]),
                   column_threshold=monitoring["column_threshold"],
                   prediction_column_threshold=monitoring["prediction_column_threshold"],
                   bars_per_year=int(monitoring["bars_per_year"]),
                   retrain=RetrainThresholds.from_params(monitoring))

    def thresholds(self) -> dict[str, Any]:
        """The thresholds as decision.json records them: the rules' and the
        columns' (with the method)."""
        return asdict(self.retrain) | {"drift_method": self.drift_method,
                                       "column_threshold": self.column_threshold,
                                       "prediction_column_threshold":
                                           self.prediction_column_threshold}


def run_checks(reference: pd.DataFrame, manifest: Mapping[str, Any], replayed: Any,
               oos_sharpe: float | None, settings: DriftSettings) -> CheckResults:
    """The three checks of ``replayed`` (the champion's
    :class:`~tradingrl.monitoring.decisions.ReplayedDecisions` over the newest
    window) against ``reference`` (its reference window; ``manifest``: its
    bundle's policy.json). Prediction drift covers the decision columns the
    reference holds (None: it holds none); ``oos_sharpe``: the annualised
    out-of-sample Sharpe ratio recorded at promotion (None: not recorded)."""
    from tradingrl.monitoring.decisions import DECISION_COLUMNS, backtest_env, model_features
    from tradingrl.monitoring.drift import feature_drift, live_performance, prediction_drift

    current = replayed.rows
    feature = feature_drift(reference, current, model_features(manifest),
                            method=settings.drift_method, threshold=settings.column_threshold,
                            drift_share=settings.retrain.drift_share)
    columns = [c for c in DECISION_COLUMNS if c in reference.columns]
    prediction = None if not columns else prediction_drift(
        reference, current, columns, method=settings.drift_method,
        threshold=settings.prediction_column_threshold,
        drift_share=settings.retrain.prediction_drift_share)
    performance = live_performance(current, replayed.markets, env=backtest_env(replayed.env),
                                   oos_sharpe=oos_sharpe, bars_per_year=settings.bars_per_year)
    return CheckResults(feature, prediction, performance)


def champion_summary(version: str, oos_sharpe: float | None,
                     manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The champion as decision.json records it: version, out-of-sample
    Sharpe ratio and its reference window's span, sessions and rows."""
    reference = manifest.get("reference") or {}
    return {"version": version, "oos_sharpe": oos_sharpe,
            "reference_first": reference.get("first"), "reference_last": reference.get("last"),
            "reference_sessions": reference.get("sessions"),
            "reference_rows": reference.get("rows")}


@dataclass(frozen=True)
class DriftDecision:
    """One drift check's decision (what decision.json holds).

    decision: one of :data:`DECISIONS`; retrain_due: whether a rule fired;
    reasons: the fired rules' details (every rule's when none fired, the
    missing piece's when nothing was compared); checks: every rule with its
    value and threshold (empty when nothing was compared).
    checked_at: ISO-8601 UTC time of the check (seconds); report_dir: where
    its files are; experiment: MLflow experiment of its run; thresholds:
    :meth:`DriftSettings.thresholds`; window: what was fetched (window_bars,
    source, overrides, the fetch's summary and, when checked, the decided
    span: first / last decision time, sessions, symbols); champion:
    :func:`champion_summary` (None: no champion); notes: remarks such as a
    warm-up that differs from the champion's.
    feature_drift / prediction_drift / performance: the checks' summaries
    (absent from the JSON when nothing was compared; prediction_drift None
    when the reference holds no decision columns).
    trigger: {"mode": one of :data:`TRIGGERS`, "action": "none" | "deployment"
    | "subflow", and for a started run its deployment, flow_run_id, state};
    mlflow_run_id: the check's MLflow run (None until logged).
    """

    decision: str
    retrain_due: bool
    reasons: tuple[str, ...]
    checks: tuple[RuleCheck, ...]
    checked_at: str
    report_dir: str
    experiment: str
    thresholds: dict[str, Any]
    window: dict[str, Any]
    champion: dict[str, Any] | None
    notes: tuple[str, ...] = ()
    feature_drift: dict[str, Any] | None = None
    prediction_drift: dict[str, Any] | None = None
    performance: dict[str, Any] | None = None
    trigger: dict[str, Any] = field(default_factory=lambda: {"mode": "auto", "action": "none"})
    mlflow_run_id: str | None = None

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")
        if self.trigger.get("mode") not in TRIGGERS:
            raise ValueError(f"trigger mode must be one of {TRIGGERS}, got {self.trigger!r}")

    @property
    def compared(self) -> bool:
        """Whether the window was compared with a reference (the rules ran)."""
        return self.decision in ("retrain", "no_retrain")

    @property
    def fired(self) -> list[str]:
        return [c.name for c in self.checks if c.fired]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (timestamps and other values through ``str`` in :meth:`to_json`)."""
        out: dict[str, Any] = {
            "checked_at": self.checked_at, "report_dir": self.report_dir,
            "experiment": self.experiment, "thresholds": dict(self.thresholds),
            "window": dict(self.window), "trigger": dict(self.trigger),
            "notes": list(self.notes), "champion": self.champion, "decision": self.decision,
            "retrain_due": self.retrain_due, "reasons": list(self.reasons),
            "fired": self.fired, "checks": [asdict(c) for c in self.checks]}
        if self.compared:
            out.update(feature_drift=self.feature_drift, prediction_drift=self.prediction_drift,
                       performance=self.performance)
        out["mlflow_run_id"] = self.mlflow_run_id
        return out

    def to_json(self) -> str:
        """decision.json's text: indented, other values through ``str``."""
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    def tags(self) -> dict[str, str]:
        """The MLflow run's tags: decision, whether retraining is due, the
        fired rules, the reasons (cut to MLflow's 5000 characters), the
        champion's version and the trigger mode."""
        return {"drift.decision": self.decision,
                "drift.retrain_due": str(self.retrain_due).lower(),
                "drift.fired": ",".join(self.fired) or "none",
                "drift.reasons": " | ".join(self.reasons)[:5000],
                "drift.champion_version": str((self.champion or {}).get("version")),
                "drift.trigger": self.trigger["mode"]}

    def metrics(self) -> dict[str, float]:
        """The MLflow run's metrics: drifted share (0..1) and count of each
        drift check, and the performance check's numbers (Sharpe ratios
        annualised, log return, matured bars)."""
        out: dict[str, float] = {}
        for key, result in (("feature_drift", self.feature_drift),
                            ("prediction_drift", self.prediction_drift)):
            if result:
                out[f"{key}.share"] = result["share"]
                out[f"{key}.count"] = result["count"]
        for key, value in (self.performance or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[f"performance.{key}"] = float(value)
        return out

    def params(self) -> dict[str, Any]:
        """The MLflow run's params: window length, trigger mode, thresholds."""
        return {"window_bars": self.window.get("window_bars"), "trigger": self.trigger["mode"],
                **{f"threshold.{k}": v for k, v in self.thresholds.items()}}

    def training_tags(self) -> dict[str, str]:
        """Tags recording the retraining started (after a trigger)."""
        out = {"drift.training_action": str(self.trigger["action"])}
        if self.trigger.get("flow_run_id"):
            out["drift.training_flow_run_id"] = str(self.trigger["flow_run_id"])
        return out

    def summary_markdown(self) -> str:
        """The Prefect artifact: decision, rules, window, where the reports are."""
        from tradingrl.registry.champion import POLICY_MODEL

        lines = ["# Drift check", "", f"**{self.decision}**"]
        lines += [f"- {reason}" for reason in self.reasons]
        if self.checks:
            lines += ["", "| rule | checked | value | threshold | fired |",
                      "|---|---|---|---|---|"]
            for check in self.checks:
                value = "n/a" if check.value is None else f"{check.value:.3f}"
                lines.append(f"| {check.name} | {check.checked} | {value} | "
                             f"{check.threshold:.3f} | {check.fired} |")
        window = self.window
        if window.get("first_decision"):
            lines += ["", (f"Window: {window['first_decision']} .. {window['last_decision']}, "
                           f"{window['sessions']} sessions x {window['symbols']} symbols from "
                           f"{window['source']}.")]
        if self.champion:
            lines.append(f"Champion: {POLICY_MODEL} v{self.champion['version']} "
                         f"(reference {self.champion.get('reference_first') or 'none'} .. "
                         f"{self.champion.get('reference_last') or ''}).")
        trigger = self.trigger
        lines += ["", f"Trigger {trigger['mode']}: {trigger['action']}"
                      + (f" ({trigger['deployment']})" if trigger.get("deployment") else "")
                      + (f", flow run `{trigger['flow_run_id']}`" if trigger.get("flow_run_id")
                         else "") + "."]
        lines.append(f"Reports: `{self.report_dir}`; MLflow run `{self.mlflow_run_id}`.")
        return "\n".join(lines) + "\n"


def _context(settings: DriftSettings, window: Mapping[str, Any], trigger: str) -> dict[str, Any]:
    return {"experiment": settings.experiment, "thresholds": settings.thresholds(),
            "window": {"window_bars": settings.window_bars, **window},
            "trigger": {"mode": trigger, "action": "none"}}


def no_comparison(settings: DriftSettings, *, champion: dict[str, Any] | None,
                  checked_at: str, report_dir: str, window: Mapping[str, Any],
                  trigger: str = "auto", notes: tuple[str, ...] = ()) -> DriftDecision:
    """The decision when there is nothing to compare: no champion
    (``champion`` None: ``no_champion``) or a champion whose bundle carries no
    reference window (``no_reference``). Retraining is not due."""
    if champion is None:
        decision, why = "no_champion", "no champion: nothing to compare"
    else:
        decision = "no_reference"
        why = (f"champion v{champion['version']} carries no reference window (bundled before "
               "reference windows): nothing to compare")
    return DriftDecision(decision=decision, retrain_due=False, reasons=(why,), checks=(),
                         checked_at=checked_at, report_dir=report_dir, champion=champion,
                         notes=tuple(notes), **_context(settings, window, trigger))


def decide_drift(results: CheckResults, settings: DriftSettings, *, rows: pd.DataFrame,
                 champion: dict[str, Any], checked_at: str, report_dir: str,
                 window: Mapping[str, Any], trigger: str = "auto",
                 notes: tuple[str, ...] = ()) -> DriftDecision:
    """The retraining rules (:func:`~tradingrl.monitoring.drift.decide_retrain`)
    on ``results`` as a decision. ``rows``: the replayed decisions (their span
    is added to ``window``); ``champion``: :func:`champion_summary`; ``window``:
    the source and the fetch's summary."""
    due, checks = decide_retrain(results, settings.retrain)
    span = {"first_decision": rows["timestamp"].min().isoformat(),
            "last_decision": rows["timestamp"].max().isoformat(),
            "sessions": int(rows["timestamp"].nunique()),
            "symbols": int(rows["symbol"].nunique())}
    prediction = results.prediction
    return DriftDecision(
        decision="retrain" if due else "no_retrain", retrain_due=due,
        reasons=tuple(c.detail for c in checks if c.fired or not due), checks=tuple(checks),
        checked_at=checked_at, report_dir=report_dir, champion=champion, notes=tuple(notes),
        feature_drift=results.feature.to_dict(),
        prediction_drift=None if prediction is None else prediction.to_dict(),
        performance=None if results.performance is None else results.performance.to_dict(),
        **_context(settings, {**window, **span}, trigger))
