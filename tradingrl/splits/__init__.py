"""Time splits: purged and embargoed train/test masks, walk-forward folds, CPCV.

The one place where time is cut for training and testing (numpy and pandas
only, no other tradingrl package): :mod:`~tradingrl.splits.purged` (one test
span, the chronological hold-out), :mod:`~tradingrl.splits.walk_forward` (the
folds the out-of-fold predictions, the agent and the evaluation share) and
:mod:`~tradingrl.splits.cpcv` (combinatorial purged CV groups, splits, paths).
"""
