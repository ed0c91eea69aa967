"""Serve the deployments of pipelines.yaml with ``prefect.serve``.

Each deployment's flow is loaded from its entrypoint (a path relative to the
config file's folder: the flows are repository code, not part of this
package) and turned into a RunnerDeployment with its cron schedule (in its
time zone), parameters, tags and description. ``prefect.serve`` registers
them all with the Prefect API and runs their scheduled runs in subprocesses
of the serving process: no work pool or worker needed. Runs start in the
config file's folder, where the entrypoints' relative paths point.

Set ``PREFECT_API_URL`` to a running server (``prefect server start``) to see
the runs in the Prefect UI; without it Prefect starts a temporary server that
lives as long as the serving process.

prefect is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import os

from tradingrl.orchestration import PipelinesConfig, PipelinesError


def build_deployments(config: PipelinesConfig) -> list:
    """One ``prefect.deployments.runner.RunnerDeployment`` per deployment of
    ``config``, its flow loaded from the entrypoint under ``config.repo_root``.
    A flow file that fails to import raises :class:`PipelinesError` naming the
    deployment and its line."""
    from prefect.exceptions import MissingFlowError, ScriptError
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    deployments = []
    # Loading under the root makes Prefect record the entrypoint relative to it
    # (and puts the root on sys.path while the flow file is imported).
    with contextlib.chdir(config.repo_root):
        for spec in config.deployments:
            try:
                # No placeholder flow: an import failure must be seen, not served.
                flow = load_flow_from_entrypoint(spec.entrypoint, use_placeholder_flow=False)
            except ScriptError as error:
                cause = error.user_exc
                raise PipelinesError(
                    f"{config.path} line {spec.line}: deployment {spec.name!r}: importing "
                    f"{spec.path} failed: {type(cause).__name__}: {cause}"
                ) from error
            except MissingFlowError as error:
                raise PipelinesError(f"{config.path} line {spec.line}: deployment "
                                     f"{spec.name!r}: {error}") from error
            deployments.append(flow.to_deployment(
                name=spec.name,
                schedule=Cron(spec.cron, timezone=spec.timezone),
                parameters=dict(spec.parameters),
                tags=list(spec.tags),
                description=spec.description,
            ))
    return deployments


def serve(config: PipelinesConfig) -> None:
    """Serve every deployment of ``config`` (from
    :func:`~tradingrl.orchestration.load_pipelines`) on its schedule; blocks
    until interrupted (Ctrl-C), after which Prefect pauses the schedules.

    Changes this process's working folder to ``config.repo_root``: the flow
    runs are subprocesses started there."""
    import prefect

    if not config.deployments:
        raise PipelinesError(f"{config.path}: declares no deployments; nothing to serve")
    deployments = build_deployments(config)
    os.chdir(config.repo_root)
    prefect.serve(*deployments)
