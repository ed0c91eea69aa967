"""Risk terms an environment may add to its raw log-return reward."""

from __future__ import annotations


def differential_sharpe(r: float, a: float, b: float, eta: float) -> tuple[float, float, float]:
    """Moody & Saffell's differential Sharpe ratio for return ``r``.

    a, b: exponential moving estimates of the first and second moments of the
    returns before this one (start both at 0); eta: their adaptation rate per
    step, in (0, 1). Returns (D_t, a_t, b_t) with

        D_t = (b dA - a dB / 2) / (b - a^2)^(3/2),  dA = r - a,  dB = r^2 - b,
        a_t = a + eta dA,  b_t = b + eta dB,

    and D_t = 0 while the variance estimate b - a^2 is 0 (the first step). D_t is
    the first-order change of the moving Sharpe ratio per unit eta; it is large
    in the first steps, while the variance estimate rests on few returns.
    """
    variance = b - a * a
    d_a = r - a
    d_b = r * r - b
    d = (b * d_a - 0.5 * a * d_b) / variance**1.5 if variance > 1e-18 else 0.0
    return d, a + eta * d_a, b + eta * d_b


def drawdown_increase_penalty(old_drawdown: float, new_drawdown: float, lam: float) -> float:
    """``-lam * max(new - old, 0)``: only deepening a drawdown is penalised."""
    return -lam * max(new_drawdown - old_drawdown, 0.0)
