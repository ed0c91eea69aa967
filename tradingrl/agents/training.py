"""Train stable-baselines3 agents on :class:`~tradingrl.envs.SingleAssetTradingEnv`.

The pure pieces of the ``train_agent`` stage: settings, a picklable environment
factory (what ``SubprocVecEnv`` needs), one training run with validation-based
early stopping, checkpoints and resume, a deterministic evaluation over a whole
span, and a loop over seeds.

Steps and frequencies are counted in environment steps (bars traded) summed
over all parallel environments, as ``total_timesteps`` is in SB3; they are
divided by ``n_envs`` before they reach SB3's callbacks, which count calls.

Resume: :class:`~stable_baselines3.common.callbacks.CheckpointCallback` writes
``<out_dir>/checkpoints/agent_<steps>_steps.zip`` (and, for SAC/TD3, the replay
buffer next to it). When :func:`train_agent` finds a checkpoint there it loads
the one with the most steps with ``ALGORITHMS[name].load(zip, env=...)``, loads
its replay buffer if present (SB3 saves it before the checkpoint step's own
transition is stored, so one transition is lost per resume), and continues with
``learn(total_timesteps - model.num_timesteps, reset_num_timesteps=False)``: the
step counter, the learning-rate schedule and the logs go on from where they
stopped instead of restarting. The validation history in
``<out_dir>/evaluations.npz`` is carried over, and the saved best model is
validated again, so it is only replaced by a better one. Every model file is
written to a temporary name and renamed (:func:`save_atomically`): a kill
never leaves a half-written best model.

Heavy imports (torch, stable-baselines3) happen inside the functions.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradingrl.envs.arrays import MarketArrays
from tradingrl.envs.decision import ENV_KINDS
from tradingrl.envs.single_asset import SingleAssetTradingEnv
from tradingrl.resume import mark_done, read_done

ALGORITHM_NAMES: tuple[str, ...] = ("ppo", "sac", "td3")
VEC_ENVS: tuple[str, ...] = ("dummy", "subproc")
BEST_MODEL_NAME = "best_model"  # EvalCallback's file name: <out_dir>/best_model.zip
FINAL_MODEL_NAME = "final_model"  # the model as training left it, saved once it finished
INITIAL_MODEL_NAME = "initial_model"  # the untrained policy (action 0), saved before training
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "agent"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}_(\d+)_steps\.zip$")


def algorithm_classes() -> dict[str, type]:
    """{"ppo": PPO, "sac": SAC, "td3": TD3} (imported here: SB3 pulls in torch)."""
    from stable_baselines3 import PPO, SAC, TD3

    return {"ppo": PPO, "sac": SAC, "td3": TD3}


@dataclass(frozen=True)
class AgentSettings:
    """How to train one agent.

    algorithm: "ppo", "sac" or "td3" (SAC/TD3 need the env's continuous Box action).
    total_timesteps: environment steps to train for (all envs together).
    n_envs: parallel training environments, stepped as one batch.
    vec_env: "dummy" (``DummyVecEnv``: the envs in this process, one after
        another; the policy's forward pass is batched over them) or
        "subproc" (``SubprocVecEnv``: one process each). One env is always
        in-process.
    seeds: the seeds :func:`train_seeds` runs; their count is the number of
        trials a deflated Sharpe ratio must account for.
    learning_rate: the optimiser's step size.
    policy_kwargs: passed to the policy (e.g. ``{"net_arch": [64, 64]}``).
    algorithm_kwargs: further constructor arguments of the algorithm
        (``n_steps``, ``batch_size``, ``gamma``, ``buffer_size``...).
    eval_freq: validate every this many environment steps.
    n_eval_episodes: validation episodes per evaluation (the validation env is
        deterministic from the start of its span, so 1 is enough for a
        deterministic policy).
    patience: stop after this many validations without a new best mean
        reward (None: never stop early).
    min_evals: validations before early stopping may act.
    checkpoint_freq: save a checkpoint every this many environment steps.
    policy: SB3 policy name.
    device: torch device for the model ("cpu" by default: small MLPs on a
        GPU are slower).
    env: "single_asset" (one symbol per episode; validation trades every
        symbol) or "portfolio" (weights over all symbols), see :func:`build_env`.
    min_improvement_t: the trained model replaces the untrained policy only
        when its validation book beats the untrained one's by at least this
        paired t-statistic (:func:`validation_improvement`); None: the best
        validation model is kept whatever its margin.
    """

    algorithm: str = "ppo"
    total_timesteps: int = 100_000
    n_envs: int = 1
    vec_env: str = "dummy"
    seeds: tuple[int, ...] = (0, 1, 2)
    learning_rate: float = 3e-4
    policy_kwargs: Mapping[str, Any] = field(default_factory=dict)
    algorithm_kwargs: Mapping[str, Any] = field(default_factory=dict)
    eval_freq: int = 10_000
    n_eval_episodes: int = 1
    patience: int | None = 5
    min_evals: int = 1
    checkpoint_freq: int = 10_000
    policy: str = "MlpPolicy"
    device: str = "cpu"
    env: str = "single_asset"
    min_improvement_t: float | None = 2.0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHM_NAMES:
            raise ValueError(f"algorithm must be one of {ALGORITHM_NAMES}, got {self.algorithm!r}")
        for name in ("total_timesteps", "n_envs", "eval_freq", "n_eval_episodes",
                     "checkpoint_freq"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if self.min_evals < 0:
            raise ValueError(f"min_evals must be >= 0, got {self.min_evals}")
        seeds = tuple(int(s) for s in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty tuple of distinct ints, got {self.seeds}")
        object.__setattr__(self, "seeds", seeds)
        if self.vec_env not in VEC_ENVS:
            raise ValueError(f"vec_env must be one of {VEC_ENVS}, got {self.vec_env!r}")
        if self.env not in ENV_KINDS:
            raise ValueError(f"env must be one of {ENV_KINDS}, got {self.env!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.min_improvement_t is not None and not math.isfinite(self.min_improvement_t):
            raise ValueError(f"min_improvement_t must be finite or None, got "
                             f"{self.min_improvement_t}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AgentSettings:
        """From params.yaml's ``train_agent`` section (``algorithm_kwargs`` of
        the chosen algorithm only; a ``policy_kwargs`` entry there is merged
        over the section's ``policy_kwargs``, for what one algorithm's policy
        takes and another's refuses, e.g. PPO's ``log_std_init``)."""
        algorithm_kwargs = dict((params.get("algorithm_kwargs") or {}).get(params["algorithm"],
                                                                           {}))
        policy_kwargs = {**dict(params.get("policy_kwargs") or {}),
                         **dict(algorithm_kwargs.pop("policy_kwargs", None) or {})}
        return cls(
            algorithm=params["algorithm"],
            env=params["env_kind"],
            total_timesteps=params["total_timesteps"],
            n_envs=params["n_envs"],
            vec_env=params["vec_env"],
            seeds=tuple(params["seeds"]),
            learning_rate=params["learning_rate"],
            policy_kwargs=policy_kwargs,
            algorithm_kwargs=algorithm_kwargs,
            eval_freq=params["eval_freq"],
            patience=params["patience"],
            min_evals=params["min_evals"],
            checkpoint_freq=params["checkpoint_freq"],
            min_improvement_t=params["min_improvement_t"],
        )


@dataclass(frozen=True)
class TrainedAgent:
    """The result of one :func:`train_agent` run.

    model: the SB3 model as it was when training stopped (not necessarily the best).
    best_val_mean_reward: best mean validation episode reward (sum of the env's
        rewards over the validation span, deterministic actions).
    best_model_path: the zip of the model that reached it.
    timesteps: environment steps trained in total (including resumed ones).
    seed: the run's seed.
    resumed_from: the checkpoint it continued from, or None.
    reused: True when ``out_dir`` held this run finished (a rerun of an
        interrupted stage): it was read back, not trained further.
    """

    model: Any
    best_val_mean_reward: float
    best_model_path: Path
    timesteps: int
    seed: int
    resumed_from: Path | None = None
    reused: bool = False


Markets = MarketArrays | Sequence[MarketArrays]


def _market_list(markets: Markets) -> list[MarketArrays]:
    if isinstance(markets, MarketArrays):
        return [markets]
    found = list(markets)
    if not found or not all(isinstance(m, MarketArrays) for m in found):
        raise TypeError("markets must be a MarketArrays or a non-empty sequence of them")
    return found


def build_env(markets: Markets, env_kwargs: Mapping[str, Any] | None = None, *,
              kind: str = "single_asset") -> Any:
    """The trading env of ``kind`` on ``markets`` (not wrapped):

    single_asset: a :class:`SingleAssetTradingEnv` for one market, a
        :class:`~tradingrl.envs.multi.MultiMarketEnv` (one market per episode)
        for several.
    portfolio: a :class:`~tradingrl.envs.portfolio.PortfolioTradingEnv` over all.
    """
    found = _market_list(markets)
    kwargs = dict(env_kwargs or {})
    if kind == "portfolio":
        from tradingrl.envs.portfolio import PortfolioTradingEnv

        return PortfolioTradingEnv(found, **kwargs)
    if kind != "single_asset":
        raise ValueError(f"env kind must be one of {ENV_KINDS}, got {kind!r}")
    if len(found) == 1:
        return SingleAssetTradingEnv(found[0], **kwargs)
    from tradingrl.envs.multi import MultiMarketEnv

    return MultiMarketEnv(found, **kwargs)


def _build_env(markets: Markets, env_kwargs: Mapping[str, Any], kind: str) -> Any:
    """Module-level so ``functools.partial`` of it pickles (SubprocVecEnv)."""
    from stable_baselines3.common.monitor import Monitor

    return Monitor(build_env(markets, env_kwargs, kind=kind))


def make_env_fn(markets: Markets, *, kind: str = "single_asset",
                **env_kwargs: Any) -> functools.partial[Any]:
    """A picklable zero-argument factory of a ``Monitor``-wrapped env of
    ``kind`` on ``markets`` (see :func:`build_env`; env_kwargs: window, costs,
    start_bar, random_start, ...)."""
    if kind not in ENV_KINDS:
        raise ValueError(f"env kind must be one of {ENV_KINDS}, got {kind!r}")
    return functools.partial(_build_env, markets, dict(env_kwargs), kind)


def make_vec_env_for(markets: Markets, env_kwargs: Mapping[str, Any], *, n_envs: int,
                     seed: int, kind: str = "single_asset", vec_env: str = "dummy") -> Any:
    """``n_envs`` environments on ``markets``: ``SubprocVecEnv`` when n_envs > 1
    and ``vec_env`` is "subproc", else ``DummyVecEnv`` (env i is seeded
    ``seed + i`` by ``make_vec_env``)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if vec_env not in VEC_ENVS:
        raise ValueError(f"vec_env must be one of {VEC_ENVS}, got {vec_env!r}")
    subproc = n_envs > 1 and vec_env == "subproc"
    return make_vec_env(make_env_fn(markets, kind=kind, **env_kwargs), n_envs=n_envs, seed=seed,
                        vec_env_cls=SubprocVecEnv if subproc else DummyVecEnv)


def validation_env_fns(markets: Markets, env_kwargs: Mapping[str, Any], *,
                       kind: str = "single_asset") -> list[functools.partial[Any]]:
    """Factories of the validation envs: one per market for single-asset
    agents (each traded over its whole span), one portfolio env otherwise."""
    kwargs = validation_env_kwargs(env_kwargs)
    if kind == "portfolio":
        return [make_env_fn(markets, kind=kind, **kwargs)]
    return [make_env_fn(m, kind=kind, **kwargs) for m in _market_list(markets)]


def validation_env_kwargs(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The training kwargs for the validation env: every episode starts at the
    first decision bar of the span and runs to its end (so a span of any
    length with one decision is enough: ``min_episode_steps`` is 1)."""
    return {**env_kwargs, "random_start": False, "max_steps": None, "min_episode_steps": 1}


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The complete checkpoint zip with the most steps in
    ``<out_dir>/checkpoints``, or None. A zip cut short (the process was
    killed while writing it: no central directory at its end) is skipped
    with a warning, and the one before it is used."""
    directory = Path(out_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in directory.iterdir()
                    if (m := _CHECKPOINT_RE.match(p.name))), reverse=True)
    for _, path in found:
        if zipfile.is_zipfile(path):
            return path
        logging.getLogger(__name__).warning("checkpoint %s is incomplete (killed while being "
                                            "written?); resuming from an earlier one", path)
    return None


def _replay_buffer_path(checkpoint: Path) -> Path:
    steps = _CHECKPOINT_RE.match(checkpoint.name).group(1)  # type: ignore[union-attr]
    return checkpoint.with_name(f"{CHECKPOINT_PREFIX}_replay_buffer_{steps}_steps.pkl")


def save_atomically(model: Any, path: Path) -> None:
    """``model.save`` to a temporary file beside ``path``, then renamed over
    it: readers (and a resumed run) see the old file or the new one, never
    half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(tmp)
    os.replace(tmp, path)


def _save_best_callback(path: Path) -> Any:
    """An SB3 callback for ``EvalCallback(callback_on_new_best=...)`` that saves
    the model that just reached a new best with :func:`save_atomically`."""
    from stable_baselines3.common.callbacks import BaseCallback

    class SaveBest(BaseCallback):
        def _on_step(self) -> bool:
            save_atomically(self.model, path)
            return True

    return SaveBest()


def train_agent(
    train_market: Markets,
    val_market: Markets,
    settings: AgentSettings,
    *,
    seed: int,
    out_dir: str | Path,
    env_kwargs: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    sb3_logger: Any = None,
) -> TrainedAgent:
    """Train (or resume) one agent and keep the best model on validation.

    Training envs run on ``train_market`` (one market or several, see
    :func:`build_env`) with ``env_kwargs``; the validation envs
    (:func:`validation_env_fns`) run on ``val_market`` with
    :func:`validation_env_kwargs`, deterministic actions; the validation score
    is the mean episode reward over them. ``EvalCallback`` saves ``<out_dir>/best_model.zip`` and
    ``<out_dir>/evaluations.npz``; ``StopTrainingOnNoModelImprovement`` stops
    after ``settings.patience`` validations without improvement;
    ``CheckpointCallback`` writes ``<out_dir>/checkpoints``. A resumed run
    continues from the latest checkpoint (see the module docstring). After
    ``learn`` the final model is validated once more and kept as the best model
    if it beats every earlier validation, so a best model always exists.
    A finished run (also one that stopped early) is recorded in
    ``<out_dir>/done.json`` with a key of its settings, seed and env; called
    again on that folder it is read back and never trained further (another
    key is a ``ValueError``: a finished folder is not extended).
    ``callbacks``: further SB3 callbacks. ``sb3_logger``: an SB3 ``Logger``
    for the training log (e.g. :func:`tradingrl.agents.curves.mlflow_logger`).
    """
    from stable_baselines3.common.callbacks import (
        CallbackList,
        CheckpointCallback,
        EvalCallback,
        StopTrainingOnNoModelImprovement,
    )
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    from tradingrl.agents.curves import trading_stats_callback

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env_kwargs = dict(env_kwargs or {})
    algorithm = algorithm_classes()[settings.algorithm]
    off_policy = settings.algorithm in ("sac", "td3")
    best_path = out / f"{BEST_MODEL_NAME}.zip"
    key = run_key(settings, seed, env_kwargs)
    done = read_done(out)
    if done is not None:
        if done["key"] != key:
            raise ValueError(f"{out} holds an agent that finished with other settings, seed or "
                             "env; train in a clean folder")
        return TrainedAgent(
            model=algorithm.load(out / f"{FINAL_MODEL_NAME}.zip", device=settings.device),
            best_val_mean_reward=float(done["best_val_mean_reward"]), best_model_path=best_path,
            timesteps=int(done["timesteps"]), seed=int(seed), resumed_from=None, reused=True)

    kind = settings.env
    train_env = make_vec_env_for(train_market, env_kwargs, n_envs=settings.n_envs, seed=seed,
                                 kind=kind, vec_env=settings.vec_env)
    eval_fns = validation_env_fns(val_market, env_kwargs, kind=kind)
    eval_env = DummyVecEnv(eval_fns)
    eval_env.seed(seed)
    # evaluate_policy spreads episodes evenly over the envs: each validation
    # market is traded n_eval_episodes times.
    n_eval = settings.n_eval_episodes * len(eval_fns)
    try:
        checkpoint = latest_checkpoint(out)
        if checkpoint is not None:
            model = algorithm.load(checkpoint, env=train_env, device=settings.device)
            buffer = _replay_buffer_path(checkpoint)
            if off_policy and buffer.exists():
                model.load_replay_buffer(buffer)
        else:
            model = algorithm(
                settings.policy, train_env, learning_rate=settings.learning_rate,
                policy_kwargs=dict(settings.policy_kwargs) or None, seed=seed,
                device=settings.device, verbose=0, **dict(settings.algorithm_kwargs))
            zero_action_mean(model)

        if sb3_logger is not None:
            model.set_logger(sb3_logger)
        per_env = settings.n_envs
        stopper = (None if settings.patience is None else StopTrainingOnNoModelImprovement(
            max_no_improvement_evals=settings.patience, min_evals=settings.min_evals, verbose=0))
        # The best model is written by this callback (to a temporary file,
        # then renamed), not by EvalCallback itself: a process killed while
        # writing it leaves the previous best model whole.
        evaluator = EvalCallback(
            eval_env, callback_after_eval=stopper, n_eval_episodes=n_eval,
            eval_freq=max(settings.eval_freq // per_env, 1), log_path=str(out),
            best_model_save_path=None, deterministic=True, verbose=0,
            callback_on_new_best=_save_best_callback(best_path))
        history = out / "evaluations.npz"
        if checkpoint is not None and history.exists() and not zipfile.is_zipfile(history):
            logging.getLogger(__name__).warning(
                "%s is incomplete (killed while being written?); the validation history "
                "restarts here", history)
        elif checkpoint is not None and history.exists():
            # Carry the earlier validations over so EvalCallback does not
            # overwrite the history with the new part only.
            with np.load(history) as old:
                evaluator.evaluations_timesteps = [int(t) for t in old["timesteps"]]
                evaluator.evaluations_results = [list(r) for r in old["results"]]
                evaluator.evaluations_length = [list(r) for r in old["ep_lengths"]]
        if checkpoint is None:
            # The untrained policy is the first candidate: its deterministic
            # action is 0 (zero_action_mean), the supervised position in the
            # residual mode and flat in the target mode. Training replaces it
            # only with a model that validates better, so the seed's best
            # model is never worse than its start on the validation span.
            rewards, lengths = evaluate_policy(model, eval_env, n_eval_episodes=n_eval,
                                               deterministic=True, return_episode_rewards=True)
            evaluator.best_mean_reward = float(np.mean(rewards))
            evaluator.evaluations_timesteps = [0]
            evaluator.evaluations_results = [[float(r) for r in rewards]]
            evaluator.evaluations_length = [[int(n) for n in lengths]]
            save_atomically(model, best_path)
            save_atomically(model, out / f"{INITIAL_MODEL_NAME}.zip")
        elif best_path.exists():
            # The score to beat is the saved best model's own, validated again
            # (deterministic), not the history's maximum: a kill between the
            # history's write and the model's can leave them disagreeing.
            saved_best = algorithm.load(best_path, device=settings.device)
            rewards, _ = evaluate_policy(saved_best, eval_env, n_eval_episodes=n_eval,
                                         deterministic=True, return_episode_rewards=True)
            evaluator.best_mean_reward = float(np.mean(rewards))
        checkpointer = CheckpointCallback(
            save_freq=max(settings.checkpoint_freq // per_env, 1),
            save_path=str(out / CHECKPOINT_DIR), name_prefix=CHECKPOINT_PREFIX,
            save_replay_buffer=off_policy, verbose=0)

        remaining = settings.total_timesteps - model.num_timesteps
        if remaining > 0:
            model.learn(total_timesteps=remaining,
                        callback=CallbackList([evaluator, checkpointer,
                                               trading_stats_callback(evaluator.eval_freq),
                                               *callbacks]),
                        reset_num_timesteps=checkpoint is None)

        best = float(evaluator.best_mean_reward)
        final_rewards, _ = evaluate_policy(model, eval_env, n_eval_episodes=n_eval,
                                           deterministic=True, return_episode_rewards=True)
        final_mean = float(np.mean(final_rewards))
        if not best_path.exists() or final_mean > best:
            save_atomically(model, best_path)
            best = final_mean
        improvement_t, kept_untrained = _keep_untrained_unless_better(
            algorithm, out, settings, val_market, env_kwargs, eval_env, n_eval)
        if kept_untrained is True:
            best = improvement_t[1]
        save_atomically(model, out / f"{FINAL_MODEL_NAME}.zip")
        mark_done(out, {"key": key, "best_val_mean_reward": best,
                        "timesteps": int(model.num_timesteps),
                        "improvement_t": improvement_t[0], "kept_untrained": kept_untrained})
        return TrainedAgent(model=model, best_val_mean_reward=best, best_model_path=best_path,
                            timesteps=int(model.num_timesteps), seed=int(seed),
                            resumed_from=checkpoint)
    finally:
        train_env.close()
        eval_env.close()


def _keep_untrained_unless_better(algorithm: type, out: Path, settings: AgentSettings,
                                  val_market: Markets, env_kwargs: Mapping[str, Any],
                                  eval_env: Any, n_eval: int
                                  ) -> tuple[tuple[float | None, float], bool | None]:
    """The seed's last step: the best validation model stays only when it
    beats the untrained policy (``initial_model.zip``) by
    ``settings.min_improvement_t`` (:func:`validation_improvement`);
    otherwise the untrained policy is copied over ``best_model.zip``.
    Returns ((t-statistic or None, the untrained policy's validation mean
    reward), kept_untrained), kept_untrained None where the rule is off."""
    from stable_baselines3.common.evaluation import evaluate_policy

    best_path = out / f"{BEST_MODEL_NAME}.zip"
    initial_path = out / f"{INITIAL_MODEL_NAME}.zip"
    if settings.min_improvement_t is None:
        return (None, math.nan), None
    if not initial_path.exists():
        raise FileNotFoundError(f"{initial_path} is missing: the folder was not started by "
                                "this code; train in a clean folder")
    initial = algorithm.load(initial_path, device=settings.device)
    t = validation_improvement(algorithm.load(best_path, device=settings.device), initial,
                               _market_list(val_market), env_kwargs, kind=settings.env)
    rewards, _ = evaluate_policy(initial, eval_env, n_eval_episodes=n_eval, deterministic=True,
                                 return_episode_rewards=True)
    initial_mean = float(np.mean(rewards))
    if t >= settings.min_improvement_t:  # NaN (the same book) keeps the untrained policy
        return (t, initial_mean), False
    tmp = best_path.with_name(f".{best_path.stem}.tmp.zip")
    tmp.write_bytes(initial_path.read_bytes())
    os.replace(tmp, best_path)
    return (None if math.isnan(t) else t, initial_mean), True


def validation_improvement(model: Any, baseline: Any, markets: Sequence[MarketArrays],
                           env_kwargs: Mapping[str, Any], *, kind: str = "single_asset"
                           ) -> float:
    """How much better ``model`` trades the validation markets than
    ``baseline``: both are rolled out deterministically over every market
    (:func:`rollout_policy`); the per-bar differences of their log returns
    are averaged over the symbols trading at each timestamp (an equal-weight
    book's difference, which needs no common calendar), and the result is
    the one-sample t-statistic of that series' mean (mean / (std / sqrt(n))).
    NaN when the two books never differ. The validation span is also the one
    the best checkpoint was picked on, so the statistic is optimistic; the
    threshold it is held to is a guard, not a test level. A portfolio agent
    (``kind`` "portfolio") trades one book over all markets: the series is
    that book's per-bar difference."""
    import pandas as pd

    if kind == "portfolio":
        a, b = (_portfolio_log_returns(m, markets, env_kwargs) for m in (model, baseline))
        return _mean_t(a - b)
    parts = []
    for market in markets:
        a = rollout_policy(market, model, env_kwargs)
        b = rollout_policy(market, baseline, env_kwargs)
        bars = a["bar"].astype(np.int64)
        stamps = market.timestamps[bars] if market.timestamps is not None else bars
        parts.append(pd.Series(a["log_return"] - b["log_return"], index=stamps))
    return _mean_t(pd.concat(parts).groupby(level=0).mean().to_numpy())


def _mean_t(diff: np.ndarray) -> float:
    """The one-sample t-statistic of ``diff``'s mean; NaN without spread."""
    sd = float(diff.std(ddof=1)) if diff.size > 1 else 0.0
    if sd == 0.0 or not math.isfinite(sd):
        return math.nan
    return float(diff.mean() / (sd / math.sqrt(diff.size)))


def _portfolio_log_returns(model: Any, markets: Sequence[MarketArrays],
                           env_kwargs: Mapping[str, Any]) -> np.ndarray:
    """Per-step log returns of one deterministic episode of ``model`` in the
    portfolio env over the whole span of ``markets``."""
    env = build_env(list(markets), validation_env_kwargs(env_kwargs), kind="portfolio")
    obs, _ = env.reset()
    out, done = [], False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        out.append(float(info["log_return"]))
        done = terminated or truncated
    return np.asarray(out)


def zero_action_mean(model: Any) -> None:
    """Zero the weights and bias of the layer that outputs ``model``'s action
    mean (PPO's ``action_net``, SAC's ``actor.mu``, the last linear layer of
    TD3's actor and its target), so the untrained policy's deterministic
    action is exactly 0 and its first updates start from there (the layers
    below still get gradients once these weights move). ValueError for a
    policy without such a layer (TypeError when it is not linear)."""
    import torch

    policy = model.policy
    if hasattr(policy, "action_net"):  # on-policy ActorCriticPolicy (PPO)
        head = policy.action_net
    elif hasattr(policy, "actor"):  # SAC: Linear mu; TD3: mu = Sequential(..., Linear, Tanh)
        mu = policy.actor.mu
        linear = [m for m in mu.modules() if isinstance(m, torch.nn.Linear)]
        if not linear:
            raise ValueError("the actor has no linear output layer to zero")
        head = linear[-1]
    else:
        raise ValueError(f"no action head on a {type(policy).__name__}")
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"the action head is a {type(head).__name__}, not a Linear layer")
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    target = getattr(policy, "actor_target", None)
    if target is not None:  # TD3: the target actor starts as the actor
        target.load_state_dict(policy.actor.state_dict())


def run_key(settings: AgentSettings, seed: int, env_kwargs: Mapping[str, Any]) -> str:
    """What a finished run in a folder was trained with: the settings (less the
    other seeds), its seed, the env (:func:`describe`)."""
    payload = json.dumps(describe({"settings": {**asdict(settings), "seeds": None},
                                   "seed": int(seed), "env": dict(env_kwargs)}), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def describe(value: Any) -> Any:
    """``value`` as JSON-able content that is the same in every process:
    dataclasses by their fields, functions by name and the values they
    close over (the env's risk hook), never by memory address."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, type):
        return {"type": f"{value.__module__}.{value.__qualname__}"}
    if isinstance(value, Mapping):
        return {str(k): describe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [describe(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {type(value).__qualname__: describe(asdict(value))}
    if isinstance(value, functools.partial):
        return {"partial": describe(value.func), "args": describe(value.args),
                "keywords": describe(value.keywords)}
    if hasattr(value, "__code__"):
        return {"function": f"{value.__module__}.{value.__qualname__}",
                "closure": [describe(c.cell_contents) for c in value.__closure__ or ()]}
    if hasattr(value, "__dict__"):
        return {type(value).__qualname__: describe(vars(value))}
    raise TypeError(f"cannot describe a {type(value).__qualname__} for a run key")


ROLLOUT_KEYS_SINGLE: tuple[str, ...] = (
    "bar", "fill_price", "traded_shares", "cost", "commission", "spread_cost", "impact_cost",
    "requested_target", "target", "position", "equity", "drawdown", "log_return", "risk_term",
    "capped", "unfilled_shares", "unfilled_notional",
)


def rollout_policy(market: MarketArrays, model: Any,
                   env_kwargs: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """One deterministic episode of ``model`` (anything with SB3's
    ``predict(obs, deterministic=True)``) over the whole span of one market
    (from its first decision bar; ``random_start`` and ``max_steps`` are off).

    Returns float64 arrays, one entry per step, of the env's info
    (:data:`ROLLOUT_KEYS_SINGLE`: ``bar`` is the fill bar, ``position`` the
    executed position at its close, ``equity`` after the step), plus
    ``decision_bar`` (the bar the action was chosen at, fill bar - 1),
    ``equity_before`` and ``action`` (the policy's raw output)."""
    env = SingleAssetTradingEnv(market, **validation_env_kwargs(env_kwargs or {}))
    obs, info = env.reset()
    equity_before = float(info["equity"])
    rows: dict[str, list[float]] = {k: [] for k in ROLLOUT_KEYS_SINGLE}
    rows["equity_before"], rows["action"] = [], []
    done = False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        for key in ROLLOUT_KEYS_SINGLE:
            rows[key].append(float(info[key]))
        rows["equity_before"].append(equity_before)
        rows["action"].append(float(np.asarray(action, dtype=np.float64).reshape(-1)[0]))
        equity_before = float(info["equity"])
    out = {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}
    out["decision_bar"] = out["bar"] - 1.0
    return out


def summarise_rollout(rollout: Mapping[str, np.ndarray]) -> dict[str, float]:
    """total_log_return (sum of log returns = log final / initial equity),
    final_equity_ratio, n_trades (steps with shares traded), turnover (sum of
    |traded shares| * fill price / equity before the step), costs (sum of
    costs / equity before the step), max_drawdown (largest drawdown from peak
    equity) and n_steps."""
    traded = rollout["traded_shares"] != 0.0
    equity_before = rollout["equity_before"]
    initial = equity_before[0] if equity_before.size else float("nan")
    final = rollout["equity"][-1] if rollout["equity"].size else float("nan")
    return {
        "total_log_return": float(rollout["log_return"].sum()),
        "final_equity_ratio": float(final / initial),
        "n_trades": float(traded.sum()),
        "turnover": float(np.sum(np.abs(rollout["traded_shares"]) * rollout["fill_price"]
                                 / equity_before)),
        "costs": float(np.sum(rollout["cost"] / equity_before)),
        "max_drawdown": float(rollout["drawdown"].max(initial=0.0)),
        "n_steps": float(rollout["log_return"].size),
    }


def evaluate_policy_on(market: MarketArrays, model: Any,
                       env_kwargs: Mapping[str, Any] | None = None) -> dict[str, float]:
    """:func:`summarise_rollout` of :func:`rollout_policy`: one deterministic
    episode of ``model`` over the whole span of ``market``."""
    return summarise_rollout(rollout_policy(market, model, env_kwargs))


@dataclass(frozen=True)
class SeedResults:
    """:func:`train_seeds`' result: one :class:`TrainedAgent` per seed, and the
    mean and std (ddof=1; 0 for one seed) of their best validation mean reward.
    ``n_trials`` (the number of seeds) is the trial count for a deflated Sharpe ratio."""

    agents: tuple[TrainedAgent, ...]
    val_mean: float
    val_std: float
    n_trials: int
    search: Any = None  # the AgentSearch whose best settings trained the seeds, or None


def seed_dir(out_dir: str | Path, seed: int) -> Path:
    """Where :func:`train_seeds` trains seed ``seed``: ``<out_dir>/seed_<seed>``."""
    return Path(out_dir) / f"seed_{int(seed)}"


def searched_settings(train_market: Markets, val_market: Markets, settings: AgentSettings, *,
                      out_dir: str | Path, env_kwargs: Mapping[str, Any] | None = None,
                      search: Any = None) -> tuple[AgentSettings, Any]:
    """The settings :func:`train_seeds` trains the seeds of ``out_dir`` with,
    and the search that chose them: ``(settings, None)`` without a search;
    with one (an :class:`~tradingrl.agents.search.AgentSearchSettings` with
    trials) its best settings and its ``AgentSearch``, run in
    ``<out_dir>/search`` (read back when its trials finished there)."""
    if search is None or not search.enabled:
        return settings, None
    found = search.run(train_market, val_market, settings, out_dir=Path(out_dir) / "search",
                       env_kwargs=env_kwargs or {})
    return found.settings, found


def train_seed_job(train_market: Markets, val_market: Markets, settings: AgentSettings,
                   seed: int, out_dir: str | Path, env_kwargs: Mapping[str, Any] | None,
                   logger_for_seed: Any, torch_threads: int) -> tuple[str | None, bool]:
    """One seed of :func:`train_seeds` as a piece of work for another process:
    :func:`train_agent` in its :func:`seed_dir` with ``torch_threads`` intra-op
    threads. Returns what the worker's run was: the checkpoint it resumed
    from (or None) and whether it found the seed finished."""
    import torch

    torch.set_num_threads(int(torch_threads))
    agent = train_agent(train_market, val_market, settings, seed=seed,
                        out_dir=seed_dir(out_dir, seed), env_kwargs=env_kwargs,
                        sb3_logger=None if logger_for_seed is None else logger_for_seed(seed))
    return (None if agent.resumed_from is None else str(agent.resumed_from)), agent.reused


def train_seeds(
    train_market: Markets,
    val_market: Markets,
    settings: AgentSettings,
    *,
    out_dir: str | Path,
    env_kwargs: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    logger_for_seed: Any = None,
    search: Any = None,
    runner: Any = None,
) -> SeedResults:
    """:func:`train_agent` for each of ``settings.seeds``, each in
    :func:`seed_dir`; ``logger_for_seed(seed)`` gives its SB3 logger. A seed
    that already finished there (e.g. trained by another process) is read back.
    ``search`` (an :class:`~tradingrl.agents.search.AgentSearchSettings` with
    trials): :func:`~tradingrl.agents.search.search_agent` first, in
    ``<out_dir>/search``; its best settings train the seeds. ``runner`` (a
    :class:`~tradingrl.orchestration.TaskRunnerSettings`): the seeds train in
    its worker processes (:func:`tradingrl.parallel.map_parallel`) with this
    process's torch thread count, then are read back, so the result is the
    serial one; the logger must then pickle (e.g.
    :func:`tradingrl.agents.curves.file_logger`), and ``callbacks``, which
    would run in the workers, keep the training serial."""
    import torch

    from tradingrl.parallel import map_parallel, worker_count

    settings, found = searched_settings(train_market, val_market, settings, out_dir=out_dir,
                                        env_kwargs=env_kwargs, search=search)
    agents = []
    if not callbacks and worker_count(runner, len(settings.seeds)) > 1:
        common = {"train_market": train_market, "val_market": val_market,
                  "settings": settings, "out_dir": out_dir, "env_kwargs": env_kwargs,
                  "logger_for_seed": logger_for_seed, "torch_threads": torch.get_num_threads()}
        runs = map_parallel(train_seed_job, [{**common, "seed": seed} for seed in settings.seeds],
                            settings=runner, name="agent-seed")
        for seed, (resumed_from, reused) in zip(settings.seeds, runs, strict=True):
            # Read back here; reported as the worker's run was.
            agent = train_agent(train_market, val_market, settings, seed=seed,
                                out_dir=seed_dir(out_dir, seed), env_kwargs=env_kwargs)
            agents.append(dataclasses.replace(
                agent, reused=reused,
                resumed_from=None if resumed_from is None else Path(resumed_from)))
    else:
        agents = [train_agent(train_market, val_market, settings, seed=seed,
                              out_dir=seed_dir(out_dir, seed), env_kwargs=env_kwargs,
                              callbacks=callbacks,
                              sb3_logger=None if logger_for_seed is None
                              else logger_for_seed(seed))
                  for seed in settings.seeds]
    values = np.array([a.best_val_mean_reward for a in agents])
    return SeedResults(agents=tuple(agents), val_mean=float(values.mean()),
                       val_std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                       n_trials=len(agents), search=found)
