"""Every configuration tried on the same data: the deflated Sharpe ratio's trial history.

A DSR that counts only this run's trials lets anyone rerun with another
algorithm, reward, feature set or risk setting until the gate passes, each
time reporting N = the seeds of one run. Here each evaluate run is tagged in
MLflow with its *family* (the market data's hash and the fold plan: the same
bars judged the same way) and its *configuration* (what produced the policy:
the agent settings, the out-of-fold predictions it was given, the code), and
carries its trial count and its trials' per-period Sharpe ratios. A later run
of the same family counts every other configuration of its history
(:func:`trial_history`) on top of its own trials, and the variance of trial
Sharpe ratios comes from the same set. A new data hash or fold plan starts a
new count; rerunning the same configuration adds nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

FAMILY_TAG = "tradingrl.trial_family"
CONFIG_TAG = "tradingrl.trial_config"
N_TRIALS_TAG = "tradingrl.trial_count"
SHARPES_TAG = "tradingrl.trial_sharpes"  # JSON list: the run's trials' per-period Sharpe ratios


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trial_family(market_hash: str, folds: Sequence[Mapping[str, Any]]) -> str:
    """The family of evaluations whose trials count together: the market
    data (``market_hash``, e.g. the md5 of data/validated) and the fold plan
    (the folds as dicts)."""
    return _digest({"market": market_hash, "folds": list(folds)})


def trial_config(**parts: Any) -> str:
    """A configuration's identity from what produced the evaluated policy."""
    return _digest(parts)


def trial_tags(family: str, config: str, n_trials: int,
               sharpes_per_period: Sequence[float | None]) -> dict[str, str]:
    """The tags an evaluate run carries for later runs' trial counts."""
    return {FAMILY_TAG: family, CONFIG_TAG: config, N_TRIALS_TAG: str(int(n_trials)),
            SHARPES_TAG: json.dumps([None if s is None else float(s)
                                     for s in sharpes_per_period])}


def trial_history(client: Any, experiment_id: str, family: str,
                  config: str) -> list[dict[str, Any]]:
    """The other configurations of ``family`` that finished evaluate runs in
    ``experiment_id`` logged (``client``: an ``MlflowClient``), the newest run
    of each: ``config``, ``run_id``, ``n_trials`` and the trials'
    ``sharpe_per_period``. ``config`` itself (a rerun of this configuration)
    is left out, and so is a configuration whose trial Sharpe ratios repeat
    an earlier one's exactly (the same trials recorded twice)."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{FAMILY_TAG}` = '{family}'",
        run_view_type=1, order_by=["attributes.start_time DESC"], max_results=50_000)
    seen: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.info.status != "FINISHED":
            continue
        tags = run.data.tags
        other = tags.get(CONFIG_TAG)
        if other is None or other == config or other in seen:
            continue
        seen[other] = {"config": other, "run_id": run.info.run_id,
                       "n_trials": int(tags[N_TRIALS_TAG]),
                       "sharpe_per_period": json.loads(tags[SHARPES_TAG])}
    distinct, sharpe_sets = [], set()
    for entry in reversed(list(seen.values())):  # oldest first
        key = tuple(entry["sharpe_per_period"])
        if key in sharpe_sets:
            continue
        sharpe_sets.add(key)
        distinct.append(entry)
    return distinct
