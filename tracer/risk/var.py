"""Portfolio Value-at-Risk by historical simulation (pure)."""
from __future__ import annotations

import math

import numpy as np


def horizon_returns(log_returns: np.ndarray, horizon: int) -> np.ndarray:
    """Overlapping ``horizon``-bar simple returns from one-bar log returns (along axis 0)."""
    lr = np.asarray(log_returns, dtype=float)
    if horizon <= 1:
        out: np.ndarray = np.expm1(lr)
        return out
    cs = np.cumsum(np.vstack([np.zeros((1,) + lr.shape[1:]), lr]), axis=0)
    out = np.expm1(cs[horizon:] - cs[:-horizon])
    return out


def historical_var(log_returns: np.ndarray, notionals: np.ndarray, confidence: float = 0.95,
                   horizon: int = 24) -> float:
    """VaR in currency: the loss not exceeded with probability ``confidence`` over ``horizon`` bars.

    ``log_returns`` is T x N (one column per position, aligned in time), ``notionals`` the signed
    exposure per column (negative for shorts). Each historical window gives a P&L
    ``sum_i notional_i * R_i`` with ``R`` the overlapping ``horizon``-bar simple return; VaR is
    ``-quantile(P&L, 1 - confidence)`` (linear interpolation), floored at 0. Rows with a NaN are dropped.
    """
    lr = np.atleast_2d(np.asarray(log_returns, dtype=float))
    if lr.shape[0] == 1 and lr.shape[1] != len(notionals):
        lr = lr.T
    lr = lr[np.all(np.isfinite(lr), axis=1)]
    w = np.asarray(notionals, dtype=float)
    if lr.shape[0] <= horizon:
        raise ValueError(f"VaR needs more than {horizon} aligned returns, got {lr.shape[0]}")
    pnl = horizon_returns(lr, horizon) @ w
    return float(max(0.0, -quantile_linear(pnl, 1.0 - confidence)))


def quantile_linear(x: np.ndarray, q: float) -> float:
    """``np.quantile(x, q)`` (method "linear") of a 1-d array, bit for bit, from a partial sort of the two
    neighbouring order statistics: about 10x cheaper than ``np.quantile`` on a few hundred values (which
    VaR computes for every candidate entry). Arrays with a NaN or an infinity go to ``np.quantile``."""
    x = np.asarray(x, dtype=float)
    n = x.shape[0] if x.ndim == 1 else 0
    if n == 0 or not (0.0 <= q <= 1.0) or not np.isfinite(x).all():
        return float(np.quantile(x, q))
    virtual = (n - 1) * q                       # numpy: (n - 1) * quantiles
    lo = -1 if virtual >= n - 1 else math.floor(virtual)     # numpy's _get_indexes: the last one at the top
    hi = -1 if lo == -1 else lo + 1
    part = np.partition(x, sorted({0, -1, lo, hi}))    # numpy's kth: the same layout (and signs of zeros)
    a, b = float(part[lo]), float(part[hi])
    gamma = virtual - lo
    diff = b - a                                # numpy's _lerp, both branches
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
