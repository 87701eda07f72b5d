"""Portfolio Value-at-Risk by historical simulation (pure)."""
from __future__ import annotations

import numpy as np


def horizon_returns(log_returns: np.ndarray, horizon: int) -> np.ndarray:
    """Overlapping ``horizon``-bar simple returns from one-bar log returns (along axis 0)."""
    lr = np.asarray(log_returns, dtype=float)
    if horizon <= 1:
        return np.expm1(lr)
    cs = np.cumsum(np.vstack([np.zeros((1,) + lr.shape[1:]), lr]), axis=0)
    return np.expm1(cs[horizon:] - cs[:-horizon])


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
    return float(max(0.0, -np.quantile(pnl, 1.0 - confidence)))
