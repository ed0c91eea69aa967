"""CPCV scoring of the Optuna search: a split's model learns only from its
train mask's labels (scaler included), test groups are predicted and traded
by the evaluation's supervised book, trials carry their path Sharpe ratios,
the hold-out mode is unchanged, and params errors name their key."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from tradingrl.data.synthetic import SyntheticMarketConfig, generate_market
from tradingrl.envs.costs import ExecutionCosts
from tradingrl.evaluation import cpcv_search
from tradingrl.evaluation.cpcv_search import (
    MARKET_PREDICTIONS,
    CPCVSearch,
    aligned_bars,
    fit_split_model,
    group_markets,
    prediction_rows,
)
from tradingrl.features.build import build_feature_table
from tradingrl.features.labels import LabelSpec
from tradingrl.models.fit import TrainSettings, build_datamodule
from tradingrl.models.search import (
    USER_ATTRS,
    CPCVSettings,
    SearchSettings,
    search_hyperparameters,
    search_summary,
)
from tradingrl.splits.cpcv import combinatorial_purged_splits, timestamp_groups

FEATURES = ["ret_1", "ret_5", "rv_20", "rsi_14", "macd_diff"]
SETTINGS = TrainSettings(
    window=8, val_fraction=0.25, batch_size=64, max_epochs=1, patience=1, seed=3,
    limit_train_batches=4, mc_samples=1,
    model={"conv_channels": 4, "conv_blocks": 1, "lstm_hidden": 8, "dropout": 0.1})
LAYOUT = CPCVSettings(n_groups=4, n_test_groups=2, embargo_bars=5)
MIDDLE_SPLIT = 3  # tests groups (1, 2): purge before, embargo after


@pytest.fixture(scope="module")
def market():
    bars = generate_market(SyntheticMarketConfig(n_symbols=3, n_bars=360, seed=4))
    table, _ = build_feature_table(bars, LabelSpec(horizon=5), warmup_bars=120)
    return table, bars


def splits_of(table):
    return combinatorial_purged_splits(
        table["timestamp"], table["t1"], n_groups=LAYOUT.n_groups,
        n_test_groups=LAYOUT.n_test_groups, embargo_bars=LAYOUT.embargo_bars)


def hand_train_rows(table, test_groups) -> np.ndarray:
    """Labelled rows outside the test groups, label interval meeting no test
    group, not among the embargo_bars distinct timestamps after one."""
    ts = pd.DatetimeIndex(table["timestamp"]).asi8
    t1 = pd.DatetimeIndex(table["t1"]).asi8
    labelled = table["t1"].notna().to_numpy()
    groups = np.array_split(np.unique(ts), LAYOUT.n_groups)
    distinct = np.unique(ts)
    keep = labelled.copy()
    for g in test_groups:
        start, end = groups[g][0], groups[g][-1]
        embargo = distinct[distinct > end][:LAYOUT.embargo_bars]
        keep &= ~((ts >= start) & (ts <= end))
        keep &= ~((ts <= end) & (t1 >= start))
        keep &= ~np.isin(ts, embargo)
    return keep


def capture_datamodules(monkeypatch) -> list:
    """Record every datamodule fit_model trains on (the real fit still runs)."""
    from tradingrl.models import fit

    seen, real = [], fit.fit_model

    def recording(datamodule, settings, **kwargs):
        seen.append(datamodule)
        return real(datamodule, settings, **kwargs)

    monkeypatch.setattr(fit, "fit_model", recording)
    return seen


def test_split_model_learns_only_the_train_mask_labels(market, monkeypatch):
    table, _ = market
    train, test, info = splits_of(table)[MIDDLE_SPLIT]
    assert info["test_groups"] == [1, 2]
    np.testing.assert_array_equal(train, hand_train_rows(table, (1, 2)))
    assert info["rows_purged_or_embargoed"] > 0

    seen = capture_datamodules(monkeypatch)
    trend, fit = fit_split_model(table, FEATURES, SETTINGS, train, seed=0, max_epochs=1)
    (datamodule,) = seen
    fitted, validated = datamodule.train_dataset, datamodule.val_dataset

    # The only labels inside the datamodule are exactly the split's train mask.
    labelled = fitted.targets != -100
    np.testing.assert_array_equal(labelled, train)
    assert np.isnan(fitted.returns[~train]).all()
    assert fitted.targets is validated.targets  # one labels array for both parts
    # Every window the model fits or early-stops on ends on a training row,
    # with that row's own label; none ends in a test group or its purge/embargo.
    for part in (fitted, validated):
        assert train[part.ends].all() and not test[part.ends].any()
        expected = table["label"].to_numpy()[part.ends].astype(int) + 1
        np.testing.assert_array_equal(part.targets[part.ends], expected)
    assert not np.intersect1d(fitted.ends, validated.ends).size

    # Validation part = last val_fraction of the training rows' distinct
    # timestamps; the scaler is fit on the earlier, purged rows only.
    ts = pd.DatetimeIndex(table["timestamp"]).asi8
    t1 = pd.DatetimeIndex(table["t1"]).asi8
    distinct = np.unique(ts[train])
    n_val = math.floor(SETTINGS.val_fraction * distinct.size + 0.5)
    cut = distinct[-n_val]
    fit_rows = train & (ts < cut) & (t1 < cut)
    assert (ts[validated.ends] >= cut).all() and fit_rows[fitted.ends].all()
    scaler = datamodule.scaler
    assert scaler.n_rows == fit_rows.sum() == fit["rows_scaler_fit"] < train.sum()
    values = table.loc[fit_rows, FEATURES].to_numpy(np.float64)
    np.testing.assert_allclose(scaler.mean, values.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scaler.std, values.std(axis=0), rtol=1e-10)
    assert trend.scaler is scaler and trend.mc_samples == 1


def test_labels_outside_the_train_mask_do_not_change_the_split_model(market):
    table, _ = market
    train, test, _ = splits_of(table)[MIDDLE_SPLIT]
    first, _ = fit_split_model(table, FEATURES, SETTINGS, train, seed=0, max_epochs=1)

    changed = table.copy()
    outside = ~train & changed["t1"].notna().to_numpy()
    rng = np.random.default_rng(0)
    changed.loc[outside, "label"] = pd.array(rng.choice([-1, 0, 1], outside.sum()), dtype="Int8")
    changed.loc[outside, "fwd_return"] = rng.normal(0, 0.05, outside.sum())
    second, _ = fit_split_model(changed, FEATURES, SETTINGS, train, seed=0, max_epochs=1)
    for a, b in zip(first.models[0].state_dict().values(), second.models[0].state_dict().values(),
                    strict=True):
        assert np.array_equal(a.numpy(), b.numpy())
    assert first.temperatures == second.temperatures
    rows = prediction_rows(pd.factorize(table["symbol"])[0], test)
    pd.testing.assert_frame_equal(first.predict(table, rows=rows), second.predict(table, rows=rows))


def test_prediction_rows_add_the_bar_before_each_test_run():
    codes = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    test = np.array([0, 1, 1, 0, 1, 1, 1, 0, 0], dtype=bool)
    # Symbol 0: rows 1-2 (bar before: 0) and 4 (bar before: 3); symbol 1
    # starts inside a test run at row 5: no earlier bar of its own.
    expected = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    np.testing.assert_array_equal(prediction_rows(codes, test), expected)


def test_group_book_fills_at_the_group_bars(market):
    """The supervised book of a test group fills at every bar of the group
    (group > 0: the first decision is the bar before it), and its sleeves are
    backtested with the given costs."""
    from tradingrl.evaluation.books import supervised_book

    table, bars = market
    codes = pd.factorize(table["symbol"])[0]
    groups = timestamp_groups(table["timestamp"], LAYOUT.n_groups)
    aligned = aligned_bars(table, bars)
    np.testing.assert_array_equal(aligned["close"].to_numpy(),
                                  table.merge(bars, on=["timestamp", "symbol"])["close"])
    predictions = np.tile(np.array([0.1, 0.2, 0.7, 0.0, 0.5], np.float32), (len(table), 1))
    predicted = np.ones(len(table), dtype=bool)
    predicted[np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1]] = False  # no window yet
    group_stamps = np.unique(table["timestamp"][groups == 2].dt.tz_localize(None))
    markets, firsts = group_markets(aligned, codes, table["symbol"].to_numpy(), groups == 2,
                                    predictions, predicted)
    assert len(markets) == 3 and firsts == [0, 0, 0]
    assert all(m.prediction_names == MARKET_PREDICTIONS for m in markets)
    book = supervised_book(markets, firsts, {"costs": ExecutionCosts()})
    np.testing.assert_array_equal(book.timestamps, group_stamps)
    assert np.allclose(book.position[5:], 0.6, atol=0.05)  # p_up - p_down, after the first fill
    free = supervised_book(markets, firsts, {"costs": ExecutionCosts.zero()})
    assert free.log_return.sum() > book.log_return.sum()  # costs were paid

    # Group 0: decisions start at each symbol's first bar with a window.
    markets, firsts = group_markets(aligned, codes, table["symbol"].to_numpy(), groups == 0,
                                    predictions, predicted)
    first_stamps = np.unique(table["timestamp"][groups == 0].dt.tz_localize(None))
    book = supervised_book(markets, firsts, {"costs": ExecutionCosts()})
    np.testing.assert_array_equal(book.timestamps, first_stamps[2:])


def test_tiny_cpcv_search_records_paths_and_sharpes(market, tmp_path):
    table, bars = market
    search = CPCVSearch(table, FEATURES, bars, LAYOUT, env={"costs": ExecutionCosts()})
    seen = []
    best, study = search_hyperparameters(
        build_datamodule(table, FEATURES, SETTINGS), SETTINGS, n_trials=2,
        storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="cpcv", max_epochs=1,
        cv="cpcv", cpcv=search, on_trial=lambda *args: seen.append(args))
    assert len(study.trials) == 2 and len(seen) == 2
    n_timestamps = table["timestamp"].nunique()
    for trial, (live, params, value, summary) in zip(study.trials, seen, strict=True):
        assert trial.state.name == "COMPLETE" and live.number == trial.number
        assert math.isfinite(trial.value) and trial.value == value
        assert set(USER_ATTRS) <= set(trial.user_attrs)
        attrs = trial.user_attrs
        assert attrs["cpcv_n_paths"] == 3 == len(attrs["cpcv_path_sharpes"])
        assert all(math.isfinite(s) for s in attrs["cpcv_path_sharpes"])
        sharpes = np.array(attrs["cpcv_path_sharpes"])
        assert attrs["cpcv_sharpe_mean"] == pytest.approx(sharpes.mean())
        assert attrs["cpcv_sharpe_std"] == pytest.approx(sharpes.std(ddof=1))
        assert attrs["cpcv_sharpe_min"] == sharpes.min() and attrs["cpcv_sharpe_max"] == sharpes.max()
        # Objective = mean test log loss over the C(4, 2) = 6 splits, each
        # reported as a running mean for the pruner.
        losses = attrs["cpcv_test_log_loss"]
        assert len(losses) == 6 and trial.value == pytest.approx(np.mean(losses))
        assert [trial.intermediate_values[s] for s in range(6)] == pytest.approx(
            np.cumsum(losses) / np.arange(1, 7))
        # Every path covers every group once: all bars after group 0's first window.
        assert summary["n_bars"] == n_timestamps - SETTINGS.window
        assert summary["path_sharpes"] == attrs["cpcv_path_sharpes"] and params == trial.params
        assert all(s["rows_scaler_fit"] < s["rows_train"] for s in summary["splits"])
    assert set(best) >= set(trial.params)

    report = json.loads(json.dumps(search_summary(study, "cpcv", LAYOUT)))
    assert report["cv"] == "cpcv" and report["n_trials"] == 2
    assert report["cpcv"] == asdict(LAYOUT)
    for entry in report["trials"]:
        assert entry["cpcv"]["n_paths"] == 3 and len(entry["cpcv"]["path_sharpes"]) == 3
        assert {"sharpe_mean", "sharpe_std", "sharpe_min", "sharpe_max"} <= set(entry["cpcv"])


def test_cpcv_reports_each_split_and_prunes_early(market, monkeypatch):
    import optuna

    table, bars = market
    search = CPCVSearch(table, FEATURES, bars, LAYOUT, env={"costs": ExecutionCosts()})
    fitted = []
    real = cpcv_search.fit_split_model
    monkeypatch.setattr(cpcv_search, "fit_split_model",
                        lambda *a, **k: fitted.append(1) or real(*a, **k))

    class PruneAfterFirstSplit:
        def __init__(self):
            self.reports, self.user_attrs = [], {}

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return True

        def set_user_attr(self, key, value):
            self.user_attrs[key] = value

    trial = PruneAfterFirstSplit()
    with pytest.raises(optuna.TrialPruned):
        search.evaluate(SETTINGS, seed=0, max_epochs=1, trial=trial)
    assert len(fitted) == 1 and [s for s, _ in trial.reports] == [0]
    assert trial.user_attrs["cpcv_test_log_loss"] == [trial.reports[0][1]]


def test_holdout_trial_value_is_the_fit_val_loss(market, tmp_path):
    """Hold-out mode scores a trial exactly as before: val_loss of one fit of
    the given datamodule with seed settings.seed + trial number."""
    from optuna_integration import PyTorchLightningPruningCallback

    from tradingrl.models.fit import fit_model

    table, _ = market
    datamodule = build_datamodule(table, FEATURES, SETTINGS)
    _, study = search_hyperparameters(
        datamodule, SETTINGS, n_trials=1, storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        study_name="holdout", max_epochs=1)
    (trial,) = study.trials
    assert list(trial.user_attrs) == ["worker"]  # hold-out adds nothing else
    settings = TrainSettings(**{**asdict(SETTINGS), "model": {**SETTINGS.model, **trial.params}})

    class Reporting:  # the pruning callback needs a trial to report to
        def report(self, value, step):
            pass

        def should_prune(self):
            return False

    _, val_loss, _ = fit_model(datamodule, settings, seed=SETTINGS.seed + 0, max_epochs=1,
                               progress_bar=False,
                               callbacks=[PyTorchLightningPruningCallback(Reporting(), "val_loss")])
    assert trial.value == val_loss
    report = search_summary(study)
    assert report["cv"] == "holdout" and "cpcv" not in report["trials"][0]


def test_params_errors_name_the_key():
    good = {"n_groups": 6, "n_test_groups": 2, "embargo_bars": 5}
    assert SearchSettings.from_params({"n_trials": 0}) == SearchSettings()
    assert SearchSettings.from_params({"cv": "cpcv", "cpcv": good}).cpcv == CPCVSettings(**good)
    cases = [
        ({"cv": "kfold"}, "train_model.search.cv"),
        ({"cv": "cpcv", "cpcv": {**good, "n_test_groups": 6}}, "train_model.search.cpcv.n_test_groups"),
        ({"cv": "cpcv", "cpcv": {**good, "n_test_groups": 7}}, "train_model.search.cpcv.n_test_groups"),
        ({"cv": "cpcv", "cpcv": {**good, "n_groups": 1}}, "train_model.search.cpcv.n_groups"),
        ({"cv": "cpcv", "cpcv": {**good, "embargo_bars": -1}}, "train_model.search.cpcv.embargo_bars"),
        ({"cv": "cpcv", "cpcv": {**good, "n_groups": 6.5}}, "train_model.search.cpcv.n_groups"),
        ({"cv": "cpcv", "cpcv": {**good, "n_grups": 6}}, "train_model.search.cpcv.n_grups"),
        ({"cv": "cpcv"}, "train_model.search.cpcv"),
    ]
    for search, key in cases:
        with pytest.raises(ValueError) as error:
            SearchSettings.from_params(search)
        message = str(error.value)
        assert message.startswith(key) and "\n" not in message, message
    with pytest.raises(ValueError, match="^cv must be one of holdout, cpcv"):
        search_hyperparameters(None, SETTINGS, n_trials=1, storage="sqlite://", study_name="x",
                               cv="kfold")


@pytest.mark.slow  # 14-40 s on the shared 2-core machine (MLflow, registry)
def test_stage_logs_cpcv_trials_to_mlflow_and_the_report(market, tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    from tasks.train_model import main

    table, bars = market
    features_dir, validated_dir = tmp_path / "data" / "features", tmp_path / "data" / "validated"
    features_dir.mkdir(parents=True)
    validated_dir.mkdir(parents=True)
    table.to_parquet(features_dir / "features.parquet", index=False)
    bars.to_parquet(validated_dir / "ohlcv.parquet", index=False)
    (features_dir / "feature_list.json").write_text(json.dumps({"features": FEATURES}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = {
        "experiment": "test-cpcv-search", "seed": 3, "window": SETTINGS.window,
        "val_fraction": 0.25, "batch_size": 64, "max_epochs": 1, "patience": 1,
        "limit_train_batches": 4, "progress_bar": False, "model": SETTINGS.model,
        "uncertainty": {"mc_samples": 2, "ensemble_size": 1, "temperature_scaling": True,
                        "min_calibration_windows": 20},  # a tiny market (default 200)
        "search": {"n_trials": 2, "max_epochs": 1, "timeout_s": 300, "cv": "cpcv",
                   "cpcv": {"n_groups": 4, "n_test_groups": 2, "embargo_bars": 5}},
        "baselines": {"logreg_max_rows": 5000},
    }
    report = main(params, repo_root=tmp_path,
                  walk_forward={"initial_fraction": 0.5, "n_folds": 2, "mode": "expanding",
                                "train_timestamps": None, "embargo_timestamps": 0},
                  costs={"commission_bps": 1.0, "spread_bps": 2.0, "impact_coef": 0.5,
                         "participation_limit": 0.1})
    written = json.loads((tmp_path / "reports" / "model_metrics.json").read_text())
    assert written["search"]["cv"] == "cpcv" and written["search"]["n_trials"] == 2
    for entry in written["search"]["trials"]:
        assert len(entry["cpcv"]["path_sharpes"]) == entry["cpcv"]["n_paths"] == 3
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[params["experiment"]],
                              filter_string=f"tags.mlflow.parentRunId = '{report['mlflow_run_id']}'")
    assert len(runs) == 2
    for run_id in runs["run_id"]:
        metrics = MlflowClient().get_run(run_id).data.metrics
        assert {"cpcv.test_log_loss", "cpcv.sharpe_mean", "cpcv.sharpe_std", "cpcv.sharpe_min",
                "cpcv.sharpe_max", "cpcv.n_paths"} <= set(metrics)
        assert len(MlflowClient().get_metric_history(run_id, "cpcv.path_sharpe")) == 3
