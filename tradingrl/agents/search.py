"""Optuna search of the agent's settings on its validation span.

The search belongs to the recipe: the ``train_agent`` stage runs it on the
served agent's validation span, and the walk-forward evaluation runs it again
in every fold on that fold's validation span (never on a test block), so the
judged procedure is the served one. Each trial trains one agent
(:func:`tradingrl.agents.training.train_agent`, seed ``search.seed``) with
the trial's departures from the settings and scores it on the validation
span; the best trial's departures then train every seed. The trials count
in the deflated Sharpe ratio's N (:func:`tradingrl.evaluation.record.trial_count`).

Score of a trial: the paired t-statistic of its best checkpoint's
validation book over the untrained policy's (``improvement_t`` of
:func:`~tradingrl.agents.training.train_agent`'s done.json; the same book,
t undefined, scores 0), the statistic the t rule (``min_improvement_t``)
judges seeds by; with the rule off (None) the validation mean reward.

Only the learner's settings are searched (``learning_rate``,
``algorithm_kwargs.<key>``, ``policy_kwargs.<key>``): the env, costs and risk
layer are what the served policy trades with, and stay as params.yaml says.
A trial's folder holds a finished agent that a rerun reads back, so a killed
search resumes where it stopped, with the same trials (the sampler is seeded
and sequential).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEARCHABLE_PREFIXES = ("algorithm_kwargs.", "policy_kwargs.")
SEARCHABLE_FIELDS = ("learning_rate",)


@dataclass(frozen=True)
class AgentSearchSettings:
    """params.yaml's ``train_agent.search``.

    n_trials: trials (0: no search). timesteps: env steps per trial (None:
    the settings' total_timesteps). seed: the trials' agent seed and the TPE
    sampler's seed. space: setting -> ``{low, high, log}`` (a float) or
    ``{choices: [...]}``; a setting is ``learning_rate``,
    ``algorithm_kwargs.<key>`` or ``policy_kwargs.<key>``.
    """

    n_trials: int = 0
    timesteps: int | None = None
    seed: int = 0
    space: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.n_trials, int) or self.n_trials < 0:
            raise ValueError(f"train_agent.search.n_trials must be an int >= 0, got "
                             f"{self.n_trials!r}")
        if self.timesteps is not None and (not isinstance(self.timesteps, int)
                                           or self.timesteps < 1):
            raise ValueError(f"train_agent.search.timesteps must be a positive int or null, "
                             f"got {self.timesteps!r}")
        if self.n_trials and not self.space:
            raise ValueError("train_agent.search.space is empty: nothing to search")
        for name, spec in self.space.items():
            if name not in SEARCHABLE_FIELDS and not name.startswith(SEARCHABLE_PREFIXES):
                raise ValueError(
                    f"train_agent.search.space.{name}: only the learner's settings are searched "
                    f"({', '.join(SEARCHABLE_FIELDS)}, algorithm_kwargs.<key>, "
                    "policy_kwargs.<key>); the env, costs and risk are the served policy's")
            if "choices" in spec:
                if set(spec) != {"choices"} or not list(spec["choices"]):
                    raise ValueError(f"train_agent.search.space.{name}: choices takes a "
                                     "non-empty list and nothing else")
            elif not {"low", "high"} <= set(spec) <= {"low", "high", "log"} or not (
                    float(spec["low"]) < float(spec["high"])):
                raise ValueError(f"train_agent.search.space.{name}: give low < high (and "
                                 f"optionally log) or choices, got {dict(spec)}")

    @property
    def enabled(self) -> bool:
        return self.n_trials > 0

    def run(self, train_market: Any, val_market: Any, settings: Any, *, out_dir: Path,
            env_kwargs: Mapping[str, Any]) -> AgentSearch:
        """:func:`search_agent` with these settings (what ``train_seeds``
        calls: tradingrl.agents.training does not import this module, which
        imports it)."""
        return search_agent(train_market, val_market, settings, self, out_dir=out_dir,
                            env_kwargs=env_kwargs)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> AgentSearchSettings:
        """From ``train_agent.search`` (missing or null: no search)."""
        params = dict(params or {})
        return cls(n_trials=int(params.get("n_trials", 0)), timesteps=params.get("timesteps"),
                   seed=int(params.get("seed", 0)),
                   space={k: dict(v) for k, v in (params.get("space") or {}).items()})


def apply_departures(settings: Any, departures: Mapping[str, Any]) -> Any:
    """``settings`` (an AgentSettings) with ``departures`` (setting -> value,
    :class:`AgentSearchSettings`' names) applied."""
    changes: dict[str, Any] = {}
    algorithm_kwargs = dict(settings.algorithm_kwargs)
    policy_kwargs = dict(settings.policy_kwargs)
    for name, value in departures.items():
        if name in SEARCHABLE_FIELDS:
            changes[name] = value
        elif name.startswith("algorithm_kwargs."):
            algorithm_kwargs[name.split(".", 1)[1]] = value
        elif name.startswith("policy_kwargs."):
            policy_kwargs[name.split(".", 1)[1]] = value
        else:
            raise ValueError(f"{name} is not a searchable agent setting")
    return dataclasses.replace(settings, algorithm_kwargs=algorithm_kwargs,
                               policy_kwargs=policy_kwargs, **changes)


@dataclass(frozen=True)
class AgentSearch:
    """What :func:`search_agent` found: ``departures`` (the best trial's
    values, {} without a search), ``settings`` (the settings with them),
    ``trials`` (number, departures, score, timesteps, kept_untrained, in
    trial order) and ``n_trials``."""

    departures: dict[str, Any]
    settings: Any
    trials: list[dict[str, Any]]
    n_trials: int

    def to_json(self) -> dict[str, Any]:
        return {"n_trials": self.n_trials, "best": self.departures, "trials": self.trials}


def _suggest(trial: Any, name: str, spec: Mapping[str, Any]) -> Any:
    if "choices" in spec:
        return trial.suggest_categorical(name, list(spec["choices"]))
    return trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                               log=bool(spec.get("log", False)))


def search_agent(train_market: Any, val_market: Any, settings: Any,
                 search: AgentSearchSettings, *, out_dir: Path,
                 env_kwargs: Mapping[str, Any]) -> AgentSearch:
    """Run ``search`` (see the module docstring) with trial k in
    ``out_dir/trial_<k>``; without trials, ``settings`` unchanged."""
    if not search.enabled:
        return AgentSearch(departures={}, settings=settings, trials=[], n_trials=0)
    import optuna

    from tradingrl.agents.training import train_agent
    from tradingrl.resume import read_done

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    timesteps = search.timesteps or settings.total_timesteps
    records: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        departures = {name: _suggest(trial, name, spec) for name, spec in search.space.items()}
        trial_settings = dataclasses.replace(apply_departures(settings, departures),
                                             seeds=(search.seed,), total_timesteps=timesteps)
        folder = Path(out_dir) / f"trial_{trial.number}"
        agent = train_agent(train_market, val_market, trial_settings, seed=search.seed,
                            out_dir=folder, env_kwargs=env_kwargs)
        done = read_done(folder) or {}
        if settings.min_improvement_t is None:
            score = float(agent.best_val_mean_reward)
        else:
            t = done.get("improvement_t")
            score = 0.0 if t is None or not math.isfinite(float(t)) else float(t)
        records.append({"number": trial.number, "departures": departures, "score": score,
                        "timesteps": agent.timesteps,
                        "kept_untrained": done.get("kept_untrained")})
        return score

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=search.seed))
    study.optimize(objective, n_trials=search.n_trials)
    best = dict(study.best_trial.params)
    return AgentSearch(departures=best, settings=apply_departures(settings, best),
                       trials=records, n_trials=search.n_trials)
