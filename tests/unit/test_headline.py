"""The DVC metrics files (tradingrl/headline.py): few keys, taken from the
detail reports unchanged, the same name for the same quantity."""

from __future__ import annotations

import json

from tradingrl import headline

MODEL = {"log_loss": 1.05, "balanced_accuracy": 0.41, "rank_ic": 0.07, "ece": 0.02,
         "accuracy": 0.5, "brier": 0.6}
REPORTS = {
    "validate": {"rows_in": 1200, "rows_valid": 1190, "rows_quarantined": 10, "passed": True,
                 "per_symbol": {"A": {"rows_in": 400}}},
    "features": {"rows_out": 840, "n_features": 85, "features": ["ret_1"] * 85},
    "train_model": {"metrics": {"cnn_lstm": MODEL, "baseline_prior": {**MODEL, "log_loss": 1.1}}},
    "predict_oof": {"metrics": {**MODEL, "log_loss": 1.07}, "folds": 4},
    "train_agent": {"val_mean_reward": {"mean": 0.004, "std": 0.003, "n_seeds": 3}},
    "evaluate": {
        "policy": {"overall": {"sharpe": 0.45, "max_drawdown": 0.12, "turnover": 230.0,
                               "cost_drag": 0.004, "sortino": 0.6},
                   "dsr": {"dsr": 0.53, "n_trials": 3}},
        "baselines": {"supervised": {"overall": {"sharpe": 0.45}},
                      "buy_and_hold": {"overall": {"sharpe": 0.2}}},
        "best_baseline": "supervised"},
    "promote": {"decision": "refused", "version": "4", "checks": [], "reasons": ["dsr"]},
}


def test_each_headline_holds_the_reports_own_values():
    rows = {stage: headline.STAGES[stage](report) for stage, report in REPORTS.items()}
    assert rows["validate"] == {"rows_in": 1200, "rows_valid": 1190, "rows_quarantined": 10}
    assert rows["features"] == {"rows_out": 840, "features": 85}
    assert rows["train_model"] == {"log_loss": 1.05, "bal_acc": 0.41, "rank_ic": 0.07,
                                   "ece": 0.02}
    assert rows["predict_oof"]["log_loss"] == 1.07
    assert rows["train_agent"] == {"val_reward": 0.004}
    assert rows["evaluate"] == {"sharpe": 0.45, "baseline": "supervised", "baseline_sharpe": 0.45,
                                "dsr": 0.53, "max_dd": 0.12, "turnover": 230.0,
                                "cost_drag": 0.004}
    assert rows["promote"] == {"decision": "refused", "version": "4"}


def test_all_headlines_together_fit_one_terminal_table():
    # dvc metrics show: one column per distinct key of all the files.
    rows = [headline.STAGES[stage](report) for stage, report in REPORTS.items()]
    columns = set().union(*rows)
    assert len(columns) <= headline.MAX_COLUMNS
    assert sum(len(r) for r in rows) > len(columns)  # the two model rows share their columns
    assert all(not isinstance(v, dict | list) for r in rows for v in r.values())


def test_no_best_baseline_leaves_its_sharpe_empty_and_write_makes_the_file(tmp_path):
    record = {**REPORTS["evaluate"], "best_baseline": None}
    written = headline.write(tmp_path, "evaluate", record)
    assert written["baseline"] is None and written["baseline_sharpe"] is None
    assert json.loads((tmp_path / "metrics" / "evaluate.json").read_text()) == written
