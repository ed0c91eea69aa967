"""Reinforcement-learning agents (stable-baselines3) trained on the trading envs.

Importing this package does not import torch or stable-baselines3; the
functions that need them import them when called.
"""

from __future__ import annotations

from tradingrl.agents.training import (
    ALGORITHM_NAMES,
    ENV_KINDS,
    AgentSettings,
    SeedResults,
    TrainedAgent,
    algorithm_classes,
    build_env,
    evaluate_policy_on,
    latest_checkpoint,
    make_env_fn,
    make_vec_env_for,
    rollout_policy,
    summarise_rollout,
    train_agent,
    train_seeds,
    validation_env_fns,
    validation_env_kwargs,
)

__all__ = [
    "ALGORITHM_NAMES",
    "ENV_KINDS",
    "AgentSettings",
    "SeedResults",
    "TrainedAgent",
    "algorithm_classes",
    "build_env",
    "evaluate_policy_on",
    "latest_checkpoint",
    "make_env_fn",
    "make_vec_env_for",
    "rollout_policy",
    "summarise_rollout",
    "train_agent",
    "train_seeds",
    "validation_env_fns",
    "validation_env_kwargs",
]
