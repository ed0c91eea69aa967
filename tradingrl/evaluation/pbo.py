"""Probability of backtest overfitting by combinatorially symmetric cross-validation.

Bailey, Borwein, Lopez de Prado and Zhu (2017), "The probability of backtest
overfitting". Given the per-bar returns of N trials (configurations tried) over
the same T bars:

1. split the rows, in time order, into S equal blocks (S even); the oldest
   T mod S rows are dropped so the blocks are equal;
2. for each of the C(S, S/2) choices of S/2 blocks as in-sample (IS), the other
   half is out-of-sample (OOS);
3. the trial with the best IS Sharpe ratio (the first if tied) is "selected";
   its OOS Sharpe ratio's rank among all N trials' OOS Sharpe ratios (1 =
   worst, N = best; ties share their average rank) gives
   omega = rank / (N + 1) and the logit lambda = ln(omega / (1 - omega));
4. PBO = the share of combinations with lambda <= 0: how often the IS winner
   is at or below the OOS median.

The performance measure is the per-period Sharpe ratio (ddof=1) of simple
returns ``expm1(log r)`` over the rows of the half. A trial whose returns are
constant over some half has no Sharpe ratio there: that is refused (drop such
trials), not replaced by a made-up value.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

MAX_SPLITS = 20  # C(20, 10) = 184,756 combinations


# Combinations per pass: the largest temporary is _CHUNK x S/2 x N float64
# (N = 1000 trials, S = 16: 33 MB).
_CHUNK = 512


def _block_moments(returns: np.ndarray, n_splits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block (S, N): sum and sum of squares of the returns centred on each
    trial's overall mean (centring keeps the variance from cancelling)."""
    t, n = returns.shape
    centred = (returns - returns.mean(axis=0)).reshape(n_splits, t // n_splits, n)
    return centred.sum(axis=1), (centred * centred).sum(axis=1)


def _trials_with_a_constant_half(returns: np.ndarray, n_splits: int) -> list[int]:
    """Trials whose returns are all equal over some S/2 blocks, i.e. over the
    IS or OOS half of some combination: S/2 blocks that are each constant,
    at one common value."""
    t, n = returns.shape
    blocks = returns.reshape(n_splits, t // n_splits, n)
    low, high = blocks.min(axis=1), blocks.max(axis=1)
    flat = low == high
    bad = []
    for j in np.flatnonzero(flat.sum(axis=0) >= n_splits // 2):
        _, same_value = np.unique(low[flat[:, j], j], return_counts=True)
        if same_value.max() >= n_splits // 2:
            bad.append(int(j))
    return bad


def probability_of_backtest_overfitting(
    trial_log_returns: Any, n_splits: int = 16
) -> dict[str, Any]:
    """PBO of choosing the best of N trials by in-sample Sharpe ratio.

    trial_log_returns: (T bars, N trials) per-bar log returns of net equity,
        every trial over the same bars in time order.
    n_splits: S, an even number of row blocks in [2, 20]; each block needs
        at least 2 rows.

    Returns {"pbo", "logits" (C,), "is_sharpe" and "oos_sharpe" (C,) of the
    selected trial (per period), "selected_trial" (C,), "prob_oos_loss"
    (share of combinations whose selected trial loses OOS, Sharpe < 0),
    "n_combinations", "n_splits", "n_trials", "rows_used", "rows_dropped"}.
    Combinations are in ``itertools.combinations(range(S), S // 2)`` order.
    """
    try:
        log_r = np.asarray(trial_log_returns, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"trial_log_returns must be numeric: {error}") from None
    if log_r.ndim != 2:
        raise ValueError(f"trial_log_returns must be (T bars, N trials), got shape {log_r.shape}")
    t_all, n_trials = log_r.shape
    if n_trials < 2:
        raise ValueError(f"PBO needs at least 2 trials to choose between, got {n_trials}")
    if not np.isfinite(log_r).all():
        raise ValueError("trial_log_returns has non-finite values")
    if isinstance(n_splits, bool) or int(n_splits) != n_splits:
        raise ValueError(f"n_splits must be an integer, got {n_splits}")
    n_splits = int(n_splits)
    if n_splits < 2 or n_splits % 2 or n_splits > MAX_SPLITS:
        raise ValueError(f"n_splits must be even and in [2, {MAX_SPLITS}], got {n_splits}")
    rows_per_block = t_all // n_splits
    if rows_per_block < 2:
        raise ValueError(
            f"{t_all} rows in {n_splits} blocks leave {rows_per_block} per block; need >= 2"
        )
    dropped = t_all - rows_per_block * n_splits
    returns = np.expm1(log_r[dropped:])

    bad = _trials_with_a_constant_half(returns, n_splits)
    if bad:
        raise ValueError(
            f"trials {bad[:10]} have constant returns over some half of the blocks: "
            "Sharpe ratio undefined there; drop them"
        )
    sums, squares = _block_moments(returns, n_splits)
    mean_all = returns.mean(axis=0)
    half_rows = float(rows_per_block * (n_splits // 2))

    def half_sharpe(blocks: np.ndarray) -> np.ndarray:
        """(C, N) Sharpe ratios over the blocks of each row of ``blocks``
        (C, S/2). Sums run block by block in the same order for every trial,
        so identical trials get identical (tied) Sharpe ratios."""
        total, total_sq = sums[blocks].sum(axis=1), squares[blocks].sum(axis=1)
        mean_centred = total / half_rows
        variance = (total_sq - total * mean_centred) / (half_rows - 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpe = (mean_centred + mean_all) / np.sqrt(variance)
        if not np.isfinite(sharpe).all():
            raise ValueError("a trial's variance over a half is numerically zero: Sharpe undefined")
        return sharpe

    chosen = list(combinations(range(n_splits), n_splits // 2))
    combos = np.array(chosen, dtype=np.int64)
    others = np.array([[b for b in range(n_splits) if b not in c] for c in chosen], np.int64)
    n_combos = combos.shape[0]
    logits = np.empty(n_combos)
    chosen_is, chosen_oos = np.empty(n_combos), np.empty(n_combos)
    selected = np.empty(n_combos, dtype=np.int64)
    for first in range(0, n_combos, _CHUNK):
        done = slice(first, min(first + _CHUNK, n_combos))
        is_sharpe, oos_sharpe = half_sharpe(combos[done]), half_sharpe(others[done])
        rows = np.arange(is_sharpe.shape[0])
        best = np.argmax(is_sharpe, axis=1)
        best_oos = oos_sharpe[rows, best]
        below = (oos_sharpe < best_oos[:, None]).sum(axis=1)
        tied = (oos_sharpe == best_oos[:, None]).sum(axis=1)  # includes the selected
        omega = (below + (tied + 1) / 2.0) / (n_trials + 1.0)
        logits[done] = np.log(omega / (1.0 - omega))
        chosen_is[done], chosen_oos[done], selected[done] = is_sharpe[rows, best], best_oos, best
    return {
        "pbo": float(np.mean(logits <= 0.0)),
        "logits": logits,
        "is_sharpe": chosen_is,
        "oos_sharpe": chosen_oos,
        "selected_trial": selected,
        "prob_oos_loss": float(np.mean(chosen_oos < 0.0)),
        "n_combinations": int(n_combos),
        "n_splits": n_splits,
        "n_trials": int(n_trials),
        "rows_used": int(returns.shape[0]),
        "rows_dropped": int(dropped),
    }
