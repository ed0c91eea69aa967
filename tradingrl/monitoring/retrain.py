"""Starting retraining when the drift check calls for it.

``trigger`` (one of :data:`~tradingrl.monitoring.decision.TRIGGERS`):
``"auto"`` starts the training deployment pipelines.yaml declares when the
Prefect API knows it (``run_deployment(..., timeout=0)``: the run is queued
for ``tradingrl serve``, the check does not wait), else runs the training
flow as a subflow; ``"deployment"`` and ``"subflow"`` force one way;
``"none"`` starts nothing. prefect is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

TRAINING_ENTRYPOINT = "flows/training.py:training_flow"
TRAINING_FLOW_NAME = "training"  # training_flow's @flow name: deployments are "training/<name>"
DEPLOYMENT_TAG = "drift-triggered"


def training_deployment_name(root: str | Path, entrypoint: str = TRAINING_ENTRYPOINT,
                             flow_name: str = TRAINING_FLOW_NAME) -> str | None:
    """``<flow_name>/<name>`` of the deployment of ``entrypoint`` declared in
    ``root/pipelines.yaml`` (None: no such file or no such deployment)."""
    from tradingrl.orchestration import load_pipelines

    root = Path(root)
    path = root / "pipelines.yaml"
    if not path.is_file():
        return None
    for spec in load_pipelines(path, root).deployments:
        if spec.entrypoint == entrypoint:
            return f"{flow_name}/{spec.name}"
    return None


def deployment_exists(name: str) -> bool:
    """Whether the Prefect API knows a deployment ``<flow>/<deployment>``."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except ObjectNotFound:
            return False
    return True


def start_training(trigger: str, deployment: str | None,
                   run_subflow: Callable[[], Any]) -> tuple[dict[str, Any], Any]:
    """Start retraining the way ``trigger`` says (not ``"none"``).
    ``deployment``: the training deployment's name (None: none declared);
    ``run_subflow``: runs the training flow as a subflow and returns its final
    state. Returns (what was started, as DriftDecision.trigger holds it; the
    subflow's state, None for a deployment). ``"deployment"`` without a
    deployment the API knows is a ValueError."""
    from prefect.deployments import run_deployment

    if trigger not in ("auto", "subflow", "deployment"):
        raise ValueError(f"trigger {trigger!r} starts no training")
    wanted = deployment if trigger in ("auto", "deployment") else None
    exists = wanted is not None and deployment_exists(wanted)
    if trigger == "deployment" and not exists:
        raise ValueError(f"trigger 'deployment': no training deployment "
                         f"{wanted or '(none declared in pipelines.yaml)'} on the Prefect API "
                         "(serve it with `tradingrl serve`)")
    if exists:
        run = run_deployment(name=wanted, timeout=0, tags=[DEPLOYMENT_TAG])
        return {"mode": trigger, "action": "deployment", "deployment": wanted,
                "flow_run_id": str(run.id), "state": run.state_name}, None
    state = run_subflow()
    return {"mode": trigger, "action": "subflow", "deployment": None,
            "flow_run_id": str(state.state_details.flow_run_id), "state": state.name}, state
