"""Log a trained SB3 agent to MLflow as a pyfunc model and register it.

MLflow has no stable-baselines3 flavour, so :class:`AgentModel` is a
``mlflow.pyfunc.PythonModel`` whose artifacts are the SB3 zip and the env
config (JSON): input a batch of observations (float32, the env's flat
observation layout, one row each), output the deterministic actions the
policy takes for them. Everything around the observation (features, scaler,
trend model, risk layer) belongs to the ``trading-policy`` model; ``rl-agent``
is the decision network alone, as SB3 saved it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.pyfunc import PythonModel  # this module is imported by the stage only

# What loading the logged agent takes besides tradingrl (pinned to the installed versions).
AGENT_DISTRIBUTIONS = ("stable-baselines3", "gymnasium", "torch", "numpy", "mlflow", "cloudpickle")


class AgentModel(PythonModel):
    """pyfunc wrapper of an SB3 policy; artifacts: ``agent`` (zip), ``env_config`` (JSON)."""

    def load_context(self, context: Any) -> None:
        from tradingrl.agents.training import algorithm_classes

        config = json.loads(Path(context.artifacts["env_config"]).read_text())
        self.algorithm = config["algorithm"]
        self.obs_size = int(config["observation_size"])
        self.model = algorithm_classes()[self.algorithm].load(
            context.artifacts["agent"], device="cpu")

    def predict(self, context: Any, model_input: Any, params: Mapping[str, Any] | None = None
                ) -> np.ndarray:
        obs = np.asarray(model_input, dtype=np.float32)
        if obs.ndim == 1:
            obs = obs[None, :]
        if obs.ndim != 2 or obs.shape[1] != self.obs_size:
            raise ValueError(f"expected observations of shape (n, {self.obs_size}), "
                             f"got {obs.shape}")
        actions, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(actions, dtype=np.float32).reshape(len(obs), -1)


def log_and_register_agent(
    agent_zip: Path,
    env_config: Mapping[str, Any],
    example_obs: np.ndarray,
    *,
    name: str,
    tags: Mapping[str, str],
) -> str:
    """Log the agent in the active MLflow run (pyfunc with signature and
    input example), register a new version of ``name`` and tag it; returns
    the version number. ``env_config`` must hold ``algorithm`` and
    ``observation_size``."""
    import tempfile

    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from tradingrl.agents.training import algorithm_classes
    from tradingrl.tracking import pinned_requirements

    for key in ("algorithm", "observation_size"):
        if key not in env_config:
            raise ValueError(f"env_config lacks {key!r}")
    example = np.asarray(example_obs, dtype=np.float32).reshape(-1, env_config["observation_size"])
    policy = algorithm_classes()[env_config["algorithm"]].load(agent_zip, device="cpu")
    actions, _ = policy.predict(example, deterministic=True)
    actions = np.asarray(actions, dtype=np.float32).reshape(len(example), -1)
    with tempfile.TemporaryDirectory(prefix="tradingrl-agent-") as scratch:
        config_path = Path(scratch) / "env_config.json"
        config_path.write_text(json.dumps(dict(env_config), indent=2, default=str))
        info = mlflow.pyfunc.log_model(
            name="rl_agent", python_model=AgentModel(),
            artifacts={"agent": str(agent_zip), "env_config": str(config_path)},
            input_example=example, signature=infer_signature(example, actions),
            registered_model_name=name,
            pip_requirements=pinned_requirements(AGENT_DISTRIBUTIONS),
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
    return version
