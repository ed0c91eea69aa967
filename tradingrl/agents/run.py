"""The ``train_agent`` stage's library call: the hybrid agent on the out-of-fold span.

:func:`train_hybrid_agent` splits the agent table's span (the bars that have
out-of-fold CNN+LSTM predictions) into training and validation sessions,
fits the agent's feature scaler on the training part only, trains one agent
per seed (:func:`tradingrl.agents.training.train_seeds`, resumable from its
run folder), chooses the seed with the best validation score and rolls it
out, with two reference policies, over every symbol's validation span.
:func:`write_agent_dir` writes models/agent. MLflow logging stays with the
caller (the stage).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradingrl.agents.data import agent_spans, fit_agent_scaler, history_lookback, span_markets
from tradingrl.agents.training import AgentSettings, SeedResults, TrainedAgent
from tradingrl.envs.decision import env_kwargs_from_config
from tradingrl.stage import write_json


def env_kwargs_from_params(params: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The env's keyword arguments from params.yaml's ``train_agent`` section
    (its ``env``, ``costs`` and ``risk``), for env ``kind``."""
    return env_kwargs_from_config(params["env"], params["costs"], params["risk"], kind)


@dataclass
class AgentRun:
    """What :func:`train_hybrid_agent` produced: the seeds' ``results`` and the
    ``chosen`` agent, the ``spans`` (train/val start and end), the fitted
    ``scaler``, the markets of both spans, the validation rollouts
    (``validation``: per policy, means over symbols and per symbol; empty for
    the portfolio env) and an observation of the validation env at reset."""

    results: SeedResults
    chosen: TrainedAgent
    spans: dict[str, pd.Timestamp]
    scaler: Any
    train_markets: list[Any]
    val_markets: list[Any]
    validation: dict[str, Any]
    observation_size: int
    action_shape: list[int]
    example_observation: np.ndarray


def train_hybrid_agent(
    table: pd.DataFrame,
    settings: AgentSettings,
    env_kwargs: Mapping[str, Any],
    *,
    feature_names: Sequence[str],
    prediction_names: Sequence[str],
    val_fraction: float,
    runs_dir: Path,
    logger_for_seed: Callable[[int], Any] | None = None,
    search: Any = None,
    runner: Any = None,
) -> AgentRun:
    """Train ``settings.seeds`` agents on ``table`` (:func:`tradingrl.agents.data.build_agent_table`)
    and choose one (see the module docstring): the last ``val_fraction`` of
    the span's sessions validate (early stopping, the choice of seed), the
    rest train; each seed works in ``runs_dir/seed_<s>``. ``search`` (an
    :class:`~tradingrl.agents.search.AgentSearchSettings`): the agent search
    on the same validation span first, in ``runs_dir/search``. ``runner``: the
    seeds' worker processes (:func:`~tradingrl.agents.training.train_seeds`)."""
    from tradingrl.agents.reference import ConstantPolicy
    from tradingrl.agents.training import (
        algorithm_classes,
        build_env,
        evaluate_policy_on,
        train_seeds,
    )

    spans = agent_spans(table, val_fraction)
    scaler = fit_agent_scaler(table, feature_names, spans["train_start"], spans["train_end"])
    train_markets = span_markets(table, scaler, list(prediction_names),
                                 start=spans["train_start"], end=spans["train_end"], lookback=0)
    # The bars before the validation span are its history (observation window,
    # risk returns), never traded: its first fill is at val_start.
    val_markets = span_markets(table, scaler, list(prediction_names), start=spans["val_start"],
                               end=spans["val_end"], lookback=history_lookback(env_kwargs))
    results = train_seeds(train_markets, val_markets, settings, out_dir=runs_dir,
                          env_kwargs=env_kwargs, logger_for_seed=logger_for_seed,
                          search=search, runner=runner)
    chosen = max(results.agents, key=lambda a: a.best_val_mean_reward)

    # Deterministic validation rollouts of the chosen agent and of two
    # reference policies over every symbol's validation span.
    policy = algorithm_classes()[settings.algorithm].load(chosen.best_model_path, device="cpu")
    validation: dict[str, Any] = {}
    if settings.env == "single_asset":
        # The reference policies' actions are targets whatever the agent's
        # action rule (a residual 0 would be the supervised position, not flat).
        targets = {**env_kwargs, "action_mode": "target", "no_trade_band": 0.0}
        for name, model, kwargs in (("agent", policy, env_kwargs),
                                    ("flat", ConstantPolicy(0.0), targets),
                                    ("buy_and_hold", ConstantPolicy(1.0), targets)):
            rows = [evaluate_policy_on(m, model, kwargs) for m in val_markets]
            validation[name] = {
                "mean_total_log_return": float(np.mean([r["total_log_return"] for r in rows])),
                "mean_turnover": float(np.mean([r["turnover"] for r in rows])),
                "mean_costs": float(np.mean([r["costs"] for r in rows])),
                "mean_max_drawdown": float(np.mean([r["max_drawdown"] for r in rows])),
                "per_symbol": {m.symbol: r for m, r in zip(val_markets, rows, strict=True)},
            }
    probe = build_env(val_markets, {**env_kwargs, "risk_fn": None}, kind=settings.env)
    example, _ = probe.reset(seed=0)
    return AgentRun(results=results, chosen=chosen, spans=spans, scaler=scaler,
                    train_markets=train_markets, val_markets=val_markets, validation=validation,
                    observation_size=int(probe.observation_space.shape[0]),
                    action_shape=list(probe.action_space.shape), example_observation=example)


def write_agent_dir(out_dir: Path, run: AgentRun, env_config: Mapping[str, Any]) -> None:
    """models/agent, emptied first: ``agent.zip`` (the chosen seed's best
    model), ``seed_<s>.zip`` for every seed, ``scaler.json`` and
    ``env_config.json`` (``env_config``)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    shutil.copy2(run.chosen.best_model_path, out_dir / "agent.zip")
    for agent in run.results.agents:
        shutil.copy2(agent.best_model_path, out_dir / f"seed_{agent.seed}.zip")
    run.scaler.save(out_dir / "scaler.json")
    write_json(out_dir / "env_config.json", dict(env_config))
