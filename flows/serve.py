"""Serve every deployment of pipelines.yaml (:func:`tradingrl.serving.serve`).

    python -m flows.serve [pipelines.yaml]

``tradingrl serve`` does the same and first lists the deployments and their
next runs.
"""

from __future__ import annotations

import sys

from tradingrl.orchestration import PipelinesError, load_pipelines
from tradingrl.serving import serve

if __name__ == "__main__":
    try:
        serve(load_pipelines(sys.argv[1] if len(sys.argv) > 1 else "pipelines.yaml"))
    except PipelinesError as error:
        raise SystemExit(f"error: {error}") from None
