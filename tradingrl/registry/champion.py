"""The registered models' names, their aliases, and the champion of ``trading-policy``.

Names are defined here once; the stages, the gate, the drift flow and the
tests import them:

- :data:`POLICY_MODEL` ``trading-policy``: the whole decision (features,
  scaler, CNN+LSTM, agent, risk layer) as one pyfunc (tasks/promote.py);
- :data:`TREND_MODEL` ``cnn-lstm`` (tasks/train_model.py) and
  :data:`AGENT_MODEL` ``rl-agent`` (tasks/train_agent.py);
- aliases :data:`CHALLENGER` (every new policy version) and :data:`CHAMPION`
  (the version that passed the promotion gate). Stages are never used.

:func:`load_champion` reads the version holding alias ``champion``, its tags
(``oos_sharpe``, ``folds_key``, ...) and, when asked, downloads its bundle:
what the promotion gate compares a challenger with and what the drift check
replays. mlflow is imported inside the functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POLICY_MODEL = "trading-policy"
TREND_MODEL = "cnn-lstm"
AGENT_MODEL = "rl-agent"
CHALLENGER = "challenger"
CHAMPION = "champion"
# The pyfunc artifact holding the bundle (tradingrl.registry.pyfunc logs it).
ARTIFACT_KEY = "bundle"


@dataclass(frozen=True)
class Champion:
    """The version of ``model`` holding alias ``champion``.

    version: the registry's version number, as a string.
    tags: the version's tags (all strings, as MLflow keeps them).
    oos_sharpe: tag ``oos_sharpe``, the walk-forward out-of-sample annualised
        Sharpe ratio after costs recorded at promotion; None when absent,
        ``None`` or not finite (the evaluation had no Sharpe ratio).
    folds_key: tag ``folds_key``, the hash of the evaluated folds' test spans
        (:func:`tradingrl.registry.gate.folds_key`); None when absent.
    bundle_dir: the downloaded bundle folder (``policy.json`` and the rest),
        None unless :func:`load_champion` was given ``download_to``.
    """

    model: str
    version: str
    tags: dict[str, str] = field(default_factory=dict)
    oos_sharpe: float | None = None
    folds_key: str | None = None
    bundle_dir: Path | None = None

    def gate_record(self) -> dict[str, Any]:
        """``{"version", "sharpe", "folds_key"}``: the previous champion as the
        decision record names it (its recorded figures, for people; the gate
        compares by replaying its bundle, :mod:`tradingrl.registry.comparison`)."""
        return {"version": self.version, "sharpe": self.oos_sharpe, "folds_key": self.folds_key}


def _sharpe_tag(model: str, version: str, value: str | None) -> float | None:
    if value in (None, "", "None"):
        return None
    try:
        sharpe = float(value)
    except ValueError:
        raise ValueError(f"{model} v{version}: tag oos_sharpe {value!r} is not a number") from None
    return sharpe if math.isfinite(sharpe) else None  # "nan": no Sharpe ratio was defined


def champion_version(client: Any, name: str = POLICY_MODEL) -> Any | None:
    """The MLflow ``ModelVersion`` of ``name`` holding alias :data:`CHAMPION`;
    None when ``name`` is not registered or no version holds the alias (every
    version was refused). Read from the model's aliases, not from a lookup's
    error message, whose wording differs between stores."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if CHAMPION not in aliases:
        return None
    return client.get_model_version(name, str(aliases[CHAMPION]))


def bundle_path(model_dir: str | Path) -> Path:
    """Where a downloaded ``trading-policy`` pyfunc keeps its bundle (the
    ``bundle`` artifact of its MLmodel file)."""
    import yaml


    model_dir = Path(model_dir)
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    artifacts = mlmodel["flavors"]["python_function"].get("artifacts") or {}
    if ARTIFACT_KEY not in artifacts:
        raise ValueError(f"{model_dir / 'MLmodel'} has no {ARTIFACT_KEY!r} artifact; "
                         f"not a {POLICY_MODEL} model")
    return model_dir / artifacts[ARTIFACT_KEY]["path"]


def load_champion(tracking_uri: str, *, download_to: str | Path | None = None,
                  name: str = POLICY_MODEL) -> Champion | None:
    """The champion of ``name`` in the store at ``tracking_uri`` (also its
    model registry), or None when there is none (see :func:`champion_version`).
    ``download_to``: a folder to download the model into; the result's
    ``bundle_dir`` is then the bundle inside it. A tag ``oos_sharpe`` that is
    not a number is a ValueError."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    version = champion_version(client, name)
    if version is None:
        return None
    number = str(version.version)  # an int from a SQL store, a string over REST
    tags = dict(version.tags or {})
    bundle = None
    if download_to is not None:
        import mlflow.artifacts

        # The storage URI from this client: a "models:/" URI would be resolved
        # against mlflow's global registry URI, whatever registry_uri says.
        source = client.get_model_version_download_uri(name, number)
        model_dir = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(download_to), tracking_uri=tracking_uri)
        bundle = bundle_path(model_dir)
    return Champion(model=name, version=number, tags=tags,
                    oos_sharpe=_sharpe_tag(name, number, tags.get("oos_sharpe")),
                    folds_key=tags.get("folds_key"), bundle_dir=bundle)
