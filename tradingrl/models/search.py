"""Optuna search of the CNN+LSTM's hyperparameters, scored on a purged hold-out or by CPCV.

:func:`search_hyperparameters` runs one TPE study (RDB storage, several
workers allowed); each trial is one fit scored on the datamodule's purged
chronological hold-out (``cv="holdout"``) or a whole combinatorial purged CV
(``cv="cpcv"``): then the trial's scorer is an object with an
``evaluate(settings, *, seed, max_epochs, trial)`` method, in practice
:class:`tradingrl.evaluation.cpcv_search.CPCVSearch`, which also trades the
supervised position on every backtest path. This module keeps the CPCV
layout (:class:`CPCVSettings`) and the records a CPCV trial leaves (user
attributes, report rows, MLflow metrics); it never imports the evaluation.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tradingrl.models.data import FeatureWindowDataModule
from tradingrl.models.fit import TrainSettings, fit_model
from tradingrl.parallel import map_parallel


class TrialScorer(Protocol):
    """What ``cv="cpcv"`` needs to score a trial (see the module docstring):
    returns (objective to minimise, JSON-safe summary of :func:`cpcv_summary`)."""

    def evaluate(self, settings: TrainSettings, *, seed: int, max_epochs: int | None = None,
                 trial: Any = None) -> tuple[float, dict[str, Any]]: ...


CV_MODES: tuple[str, ...] = ("holdout", "cpcv")
# Optuna user attributes a CPCV trial carries (JSON values; None for NaN).
USER_ATTRS: tuple[str, ...] = (
    "cpcv_n_paths", "cpcv_sharpe_mean", "cpcv_sharpe_std", "cpcv_sharpe_min",
    "cpcv_sharpe_max", "cpcv_path_sharpes", "cpcv_n_bars", "cpcv_test_log_loss",
)


def check_cv(cv: str) -> str:
    """``cv`` if it is a known scoring mode, else a one-line ValueError."""
    if cv not in CV_MODES:
        raise ValueError(f"cv must be one of {', '.join(CV_MODES)}; got {cv!r}")
    return cv


@dataclass(frozen=True)
class CPCVSettings:
    """CPCV layout: ``n_groups`` (N) contiguous timestamp groups,
    ``n_test_groups`` (k) tested per split (C(N, k) splits, C(N-1, k-1)
    paths), ``embargo_bars`` distinct timestamps after each test group kept out
    of training; ``bars_per_year`` annualises the path Sharpe ratios."""

    n_groups: int = 6
    n_test_groups: int = 2
    embargo_bars: int = 5
    bars_per_year: float = 252.0

    def __post_init__(self) -> None:
        for name in ("n_groups", "n_test_groups", "embargo_bars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                # A params error, reported like the range errors below.
                raise ValueError(f"cpcv.{name} must be an integer, got {value!r}")  # noqa: TRY004
        if self.n_groups < 2:
            raise ValueError(f"cpcv.n_groups must be >= 2, got {self.n_groups}")
        if not 1 <= self.n_test_groups < self.n_groups:
            raise ValueError(f"cpcv.n_test_groups must be >= 1 and < cpcv.n_groups "
                             f"({self.n_groups}), got {self.n_test_groups}")
        if self.embargo_bars < 0:
            raise ValueError(f"cpcv.embargo_bars must be >= 0, got {self.embargo_bars}")
        if not (math.isfinite(self.bars_per_year) and self.bars_per_year > 0):
            raise ValueError(f"cpcv.bars_per_year must be > 0, got {self.bars_per_year}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CPCVSettings:
        """From a params mapping; an unknown key is a one-line ValueError naming it."""
        if not isinstance(values, Mapping):
            raise ValueError(f"cpcv must be a mapping of n_groups, n_test_groups, "  # noqa: TRY004
                             f"embargo_bars; got {values!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"cpcv.{unknown[0]} is not a CPCV setting (known: "
                             f"{', '.join(sorted(known))})")
        return cls(**values)

    @property
    def n_splits(self) -> int:
        return math.comb(self.n_groups, self.n_test_groups)

    @property
    def n_paths(self) -> int:
        return math.comb(self.n_groups - 1, self.n_test_groups - 1)


STORAGE_ENV = "TRADINGRL_OPTUNA_STORAGE"


@dataclass(frozen=True)
class SearchSettings:
    """The ``train_model.search`` section: ``n_trials`` (0 = no search, the
    study's total over every worker), ``max_epochs`` per trial fit,
    ``timeout_s`` per worker, ``cv`` (holdout | cpcv) with its ``cpcv``
    layout, ``storage`` (the study's RDB URL from params, or None)."""

    n_trials: int = 0
    max_epochs: int = 3
    timeout_s: float | None = None
    cv: str = "holdout"
    cpcv: CPCVSettings | None = None
    storage: str | None = None

    @classmethod
    def from_params(cls, search: Mapping[str, Any]) -> SearchSettings:
        """From params; a bad value is a one-line ValueError naming its
        ``train_model.search`` key. ``cv`` defaults to holdout; the ``cpcv``
        layout is read only with cv cpcv. A storage URL holding a password
        is refused: params are logged to MLflow, the URL belongs in
        $TRADINGRL_OPTUNA_STORAGE (or the database's own password file)."""
        import re

        try:
            cv = check_cv(search.get("cv", "holdout"))
        except ValueError as error:
            raise ValueError(f"train_model.search.{error}") from None
        cpcv = None
        if cv == "cpcv":
            if "cpcv" not in search:
                raise ValueError("train_model.search.cpcv is missing (n_groups, n_test_groups, "
                                 "embargo_bars) while train_model.search.cv is cpcv")
            try:
                cpcv = CPCVSettings.from_dict(search["cpcv"])
            except ValueError as error:
                raise ValueError(f"train_model.search.{error}") from None
        storage = search.get("storage")
        if storage and re.search(r"://[^/@]*:[^/@]*@", str(storage)):
            raise ValueError(f"train_model.search.storage holds a password; params are logged to "
                             f"MLflow, so set the URL in ${STORAGE_ENV} (or use ~/.pgpass)")
        return cls(n_trials=int(search.get("n_trials", 0)),
                   max_epochs=int(search.get("max_epochs", 3)),
                   timeout_s=search.get("timeout_s"), cv=cv, cpcv=cpcv,
                   storage=storage or None)

    @property
    def uses_cpcv(self) -> bool:
        """True when trials run and are scored by CPCV."""
        return self.n_trials > 0 and self.cv == "cpcv"

    def storage_url(self, default_db: Path) -> str:
        """The study's RDB URL: $TRADINGRL_OPTUNA_STORAGE, else ``storage``,
        else ``sqlite:///<default_db>``."""
        return os.environ.get(STORAGE_ENV) or self.storage or f"sqlite:///{default_db}"


def _finite_or_none(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def cpcv_summary(objective: float, losses: Sequence[float], sharpes: Mapping[str, Any],
                 cpcv: CPCVSettings, splits: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """JSON-safe summary of one CPCV trial (NaN -> None): the layout, the
    objective, per-split test log loss, path Sharpe ratios (annualised) with
    their mean/std/min/max, and per-split fit details."""
    return {
        "cv": "cpcv",
        **{k: v for k, v in asdict(cpcv).items()},
        "n_splits": len(losses),
        "objective": _finite_or_none(objective),
        "test_log_loss": [_finite_or_none(v) for v in losses],
        "n_paths": int(sharpes["n_paths"]),
        "n_bars": int(sharpes["n_bars"]),
        "path_sharpes": [_finite_or_none(v) for v in sharpes["sharpe"]],
        "path_total_returns": [_finite_or_none(v) for v in sharpes["total_return"]],
        "sharpe_mean": _finite_or_none(sharpes["mean"]),
        "sharpe_std": _finite_or_none(sharpes["std"]),
        "sharpe_min": _finite_or_none(sharpes["min"]),
        "sharpe_max": _finite_or_none(sharpes["max"]),
        "splits": [dict(s) for s in splits],
    }


def user_attrs_of(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`USER_ATTRS` a trial stores from its :func:`cpcv_summary`."""
    return {
        "cpcv_n_paths": summary["n_paths"],
        "cpcv_sharpe_mean": summary["sharpe_mean"],
        "cpcv_sharpe_std": summary["sharpe_std"],
        "cpcv_sharpe_min": summary["sharpe_min"],
        "cpcv_sharpe_max": summary["sharpe_max"],
        "cpcv_path_sharpes": list(summary["path_sharpes"]),
        "cpcv_n_bars": summary["n_bars"],
        "cpcv_test_log_loss": list(summary["test_log_loss"]),
    }


def trial_cpcv_record(user_attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A trial's CPCV summary for the report, from its stored user attributes
    (so resumed trials report too): n_paths, path_sharpes, sharpe
    mean/std/min/max, n_bars, test_log_loss. None for a trial without them
    (hold-out, or pruned before its paths existed; a pruned trial keeps only
    ``test_log_loss``)."""
    if "cpcv_n_paths" not in user_attrs:
        if "cpcv_test_log_loss" in user_attrs:
            return {"test_log_loss": list(user_attrs["cpcv_test_log_loss"])}
        return None
    return {name.removeprefix("cpcv_"): user_attrs[name] for name in USER_ATTRS
            if name in user_attrs}


def log_cpcv_trial(client: Any, run_id: str, value: float, summary: Mapping[str, Any]) -> None:
    """A CPCV trial's numbers in its MLflow run (``client``: an MlflowClient):
    the objective, the path Sharpe summary (NaN ones left out), one
    ``cpcv.path_sharpe`` per path (step = path index), and the whole summary
    as cpcv.json."""
    client.log_metric(run_id, "cpcv.test_log_loss", value)
    for key in ("sharpe_mean", "sharpe_std", "sharpe_min", "sharpe_max", "n_paths"):
        if summary[key] is not None:
            client.log_metric(run_id, f"cpcv.{key}", summary[key])
    for path, sharpe in enumerate(summary["path_sharpes"]):
        if sharpe is not None:
            client.log_metric(run_id, "cpcv.path_sharpe", sharpe, step=path)
    client.log_dict(run_id, dict(summary), "cpcv.json")


def search_hyperparameters(
    datamodule: FeatureWindowDataModule,
    settings: TrainSettings,
    *,
    n_trials: int,
    storage: str,
    study_name: str,
    timeout_s: float | None = None,
    max_epochs: int = 3,
    on_trial: Callable[..., None] | None = None,
    cv: str = "holdout",
    cpcv: TrialScorer | None = None,
    worker: int = 0,
) -> tuple[dict[str, Any], Any]:
    """Optuna TPE search of the model's sizes and rates, minimising one of
    two scores (``cv``):

    - ``"holdout"``: val_loss of one fit on ``datamodule``'s purged
      chronological split, with median pruning through Lightning (per epoch);
      ``on_trial(trial, params, val_loss)`` after each completed trial.
    - ``"cpcv"``: mean test log loss over the combinatorial purged CV splits
      of ``cpcv`` (a :class:`TrialScorer`, e.g.
      :class:`tradingrl.evaluation.cpcv_search.CPCVSearch`; one
      fit per split, ``datamodule`` unused), median pruning on the running
      mean after each split. The path Sharpe ratios' mean/std/min/max, the
      paths' Sharpe ratios and n_paths are stored as the trial's user
      attributes (:data:`USER_ATTRS`), and
      ``on_trial(trial, params, value, summary)`` gets the whole CPCV summary.

    The study lives in ``storage`` (an RDB URL: SQLite by default,
    PostgreSQL for several workers) and is resumed when it exists. Several
    processes may run this on one study at once, each with its own ``worker``
    number: ``n_trials`` is the study's total (finished trials of every
    worker count; a worker stops when the total is reached, so the study may
    end up to one trial per worker over it), each worker's sampler draws from
    its own seed (``settings.seed`` + 7919 * worker: the same seed would
    propose the same first configurations in every worker), and every trial
    records its ``worker`` (number, host, pid) as a user attribute. Returns
    (best model kwargs merged over settings.model, study)."""
    import optuna

    check_cv(cv)
    if cv == "cpcv" and cpcv is None:
        raise ValueError("cv='cpcv' needs cpcv= (a tradingrl.evaluation.cpcv_search.CPCVSearch)")

    if isinstance(worker, bool) or not isinstance(worker, int) or worker < 0:
        raise ValueError(f"worker must be an int >= 0, got {worker!r}")
    worker_id = f"{worker}:{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker_id)
        params = {
            "conv_channels": trial.suggest_categorical("conv_channels", [16, 32, 64]),
            "conv_kernel_size": trial.suggest_categorical("conv_kernel_size", [3, 5, 7]),
            "lstm_hidden": trial.suggest_categorical("lstm_hidden", [32, 64, 128]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        }
        trial_settings = TrainSettings(**{**asdict(settings), "model": {**settings.model, **params}})
        if cv == "cpcv":
            return _cpcv_objective(trial, params, trial_settings, cpcv, settings.seed + trial.number,
                                   max_epochs, on_trial)
        from optuna_integration import PyTorchLightningPruningCallback

        _, val_loss, _ = fit_model(
            datamodule, trial_settings, seed=settings.seed + trial.number,
            callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_loss")],
            max_epochs=max_epochs, progress_bar=False,
        )
        if on_trial is not None:
            on_trial(trial, params, val_loss)
        return val_loss

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed + 7919 * worker),
        pruner=optuna.pruners.MedianPruner(n_warmup_steps=1),
        load_if_exists=True,
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                optuna.trial.TrialState.FAIL)
    done = len(study.get_trials(deepcopy=False, states=finished))
    if n_trials > done:
        study.optimize(objective, n_trials=n_trials - done, timeout=timeout_s,
                       callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=finished)])
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        return dict(settings.model), study
    return {**settings.model, **study.best_params}, study


def _cpcv_objective(trial: Any, params: dict[str, Any], settings: TrainSettings,
                    cpcv: TrialScorer,
                    seed: int, max_epochs: int,
                    on_trial: Callable[..., None] | None) -> float:
    value, summary = cpcv.evaluate(settings, seed=seed, max_epochs=max_epochs, trial=trial)
    for name, attr in user_attrs_of(summary).items():
        trial.set_user_attr(name, attr)
    if on_trial is not None:
        on_trial(trial, params, value, summary)
    return value


def search_summary(study: Any, cv: str = "holdout", cpcv: CPCVSettings | None = None) -> dict[str, Any]:
    """The "search" section of reports/model_metrics.json: n_trials, cv, the
    CPCV layout (``cpcv``: CPCVSettings, with cv "cpcv") and per trial its
    number, state, value and params, plus with CPCV its path Sharpe summary
    read back from the trial's user attributes
    (:func:`trial_cpcv_record`)."""
    check_cv(cv)
    trials = []
    for t in study.trials if study is not None else []:
        record = {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
        if cv == "cpcv":
            record["cpcv"] = trial_cpcv_record(t.user_attrs)
        trials.append(record)
    out: dict[str, Any] = {"n_trials": len(trials), "cv": cv}
    if cv == "cpcv" and cpcv is not None:
        out["cpcv"] = asdict(cpcv)
    out["trials"] = trials
    return out


@dataclass(frozen=True)
class MlflowTrialLogger:
    """``on_trial`` callback of :func:`search_hyperparameters`: one MLflow run
    per finished trial, a child of ``parent_run_id`` (through the
    ``mlflow.parentRunId`` tag, so it works from any process: a search worker
    on another machine or a Dask worker logs into the same parent run)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    tags: dict[str, str] = field(default_factory=dict)

    def __call__(self, trial: Any, params: dict[str, Any], value: float,
                 cpcv_summary: dict[str, Any] | None = None) -> None:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        run = client.create_run(self.experiment_id, run_name=f"trial-{trial.number}",
                                tags={**self.tags, "mlflow.parentRunId": self.parent_run_id,
                                      "optuna.worker": str(trial.user_attrs.get("worker", ""))})
        run_id = run.info.run_id
        try:
            for key, param in params.items():
                client.log_param(run_id, key, param)
            if cpcv_summary is None:
                client.log_metric(run_id, "val_loss", value)
            else:
                log_cpcv_trial(client, run_id, value, cpcv_summary)
        finally:
            client.set_terminated(run_id)


def search_in_parallel(search_kwargs: dict[str, Any], *, workers: int,
                       runner: Any | None) -> tuple[dict[str, Any], Any]:
    """:func:`search_hyperparameters` with ``workers`` worker processes on one
    study (``search_kwargs`` holds its arguments, without ``worker``): the
    study is created first (two processes creating a fresh database race on
    its schema), the workers run as pieces of :func:`tradingrl.parallel.map_parallel`
    on ``runner`` (on Dask: in parallel; otherwise one after another, each
    stopping at the study's ``n_trials``), then the study's best is returned
    as by :func:`search_hyperparameters`."""
    import optuna


    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    optuna.create_study(storage=search_kwargs["storage"], study_name=search_kwargs["study_name"],
                        direction="minimize", load_if_exists=True)
    map_parallel(search_worker, [{**search_kwargs, "worker": k} for k in range(workers)],
                 settings=runner, name="optuna-worker")
    return search_hyperparameters(**{**search_kwargs, "worker": 0})


def search_worker(**kwargs: Any) -> int:
    """One search worker (a piece for another process): runs
    :func:`search_hyperparameters` and returns how many trials the study has
    finished (the study object itself stays behind: it holds a database
    connection)."""
    _, study = search_hyperparameters(**kwargs)
    return len([t for t in study.trials if t.state.is_finished()])


def drop_study(storage: str, study_name: str) -> bool:
    """Delete ``study_name`` from ``storage`` when it is there (a clean start
    of a search must not read back an earlier run's trials). True when a
    study was deleted."""
    import optuna

    try:
        optuna.delete_study(study_name=study_name, storage=storage)
    except KeyError:  # optuna's answer for a study name the storage does not hold
        return False
    return True
