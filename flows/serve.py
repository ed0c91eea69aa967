"""Serve every deployment of pipelines.yaml with ``prefect.serve``.

Each deployment's flow is loaded from its entrypoint and turned into a
RunnerDeployment with its cron schedule (in its time zone), parameters, tags
and description; ``prefect.serve`` registers them all with the Prefect API and
runs their scheduled runs in subprocesses of this process: no work pool or
worker needed. Runs start in the repository root (the folder of
pipelines.yaml), where the entrypoints' relative paths point.

    tradingrl serve                     # validates pipelines.yaml, then this
    python -m flows.serve [pipelines.yaml]

Set ``PREFECT_API_URL`` to a running server (``prefect server start``) to see
the runs in the Prefect UI; without it Prefect starts a temporary server that
lives as long as this process.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from tradingrl.orchestration import PipelinesConfig, PipelinesError, load_pipelines


def build_deployments(config: PipelinesConfig, repo_root: Path | None = None) -> list:
    """One ``RunnerDeployment`` per deployment of ``config``; entrypoints are
    loaded relative to ``repo_root`` (default: the config's). A flow file that
    fails to import raises :class:`PipelinesError` naming its deployment."""
    from prefect.exceptions import MissingFlowError, ScriptError
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    root = Path(repo_root if repo_root is not None else config.repo_root).resolve()
    deployments = []
    # Loading under the root makes Prefect record the entrypoint relative to it
    # (and puts the root on sys.path while the flow file is imported).
    with contextlib.chdir(root):
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


def serve(config_path: Path | str = "pipelines.yaml") -> None:
    """Validate ``config_path`` and serve all its deployments; blocks until
    interrupted (Ctrl-C), then Prefect pauses their schedules."""
    import prefect

    config = load_pipelines(config_path)
    if not config.deployments:
        raise PipelinesError(f"{config.path}: declares no deployments; nothing to serve")
    deployments = build_deployments(config)
    # Flow runs are subprocesses started in this process's working folder.
    os.chdir(config.repo_root)
    prefect.serve(*deployments)


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "pipelines.yaml")
