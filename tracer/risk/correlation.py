"""Correlation cap against open positions (pure)."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

_ADD, _MAX, _MIN = np.add.reduce, np.maximum.reduce, np.minimum.reduce


def aligned_returns(ts_ns: np.ndarray, closes: np.ndarray, end_ns: int, interval_ns: int, n: int) -> np.ndarray:
    """The ``n`` one-bar log returns of the ``n + 1`` bar slots that end at ``end_ns`` (bar open times), NaN where
    a bar or the one before it is missing. Every symbol's returns then line up by time, position for position:
    a hole the gap policy accepts in one symbol would otherwise pair its returns with another's of other hours
    (the correlation cap and VaR compare them by position)."""
    t = np.asarray(ts_ns, dtype=np.int64)
    c = np.asarray(closes, dtype=float)
    if len(t) == n + 1 and int(t[-1]) == end_ns and int(t[-1] - t[0]) == n * interval_ns:
        return np.diff(np.log(c))          # no hole: the rows are the slots
    back = end_ns - t
    slot = n - back // interval_ns
    keep = (back >= 0) & (back % interval_ns == 0) & (slot >= 0)
    grid = np.full(n + 1, np.nan)
    grid[slot[keep]] = np.log(c[keep])
    return np.diff(grid)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two return series over their common (last, finite) part; 0 if undefined."""
    x, y = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    n = min(len(x), len(y))
    x, y = x[len(x) - n:], y[len(y) - n:]          # not [-n:]: that is the whole array when n == 0
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    sx, sy = float(np.sqrt(dx @ dx)), float(np.sqrt(dy @ dy))
    if _flat(sx, x) or _flat(sy, y):
        return 0.0
    return min(1.0, max(-1.0, float(dx @ dy) / (sx * sy)))


def _flat(norm: float, v: np.ndarray) -> bool:
    """Constant up to rounding: a constant series such as 0.01 repeated has a spread of ~1e-18, not 0,
    and would otherwise look perfectly correlated with another constant one."""
    return bool(norm <= 1e-12 * float(np.abs(v).max()) * np.sqrt(len(v)))


def _centred(v: np.ndarray) -> tuple[np.ndarray, float, bool] | None:
    """(deviations from the mean, their norm, flat?) of a series, as :func:`correlation` computes them, bit
    for bit, with fewer numpy calls (the risk check runs it for every open position at every entry); None
    when the series is not all finite (its sum is not finite then). ``v.mean()`` is ``add.reduce(v) / n``,
    numpy's and math's square roots are both correctly rounded, and the largest absolute value is the larger
    of ``max`` and ``-min``; it is read only when the spread could be rounding noise: it is at most
    ``sqrt(s**2 + n * mean**2)`` (the root of the sum of squares), so a spread above twice
    ``1e-12 * sqrt(n)`` times that cannot be flat."""
    n = len(v)
    total = float(_ADD(v))
    if not math.isfinite(total):
        return None
    mean = total / n
    d = v - mean
    s = math.sqrt(float(d @ d))
    if s > 2e-12 * math.sqrt(n) * math.sqrt(s * s + n * mean * mean):
        return d, s, False
    big = max(float(_MAX(v)), -float(_MIN(v)))
    return d, s, s <= 1e-12 * big * math.sqrt(n)


def most_correlated(candidate: np.ndarray, others: Mapping[str, np.ndarray]) -> tuple[str | None, float]:
    """The open symbol whose returns correlate most (in absolute value) with the candidate's.

    Each value is :func:`correlation`'s, bit for bit; when a series has the candidate's length and both
    are finite (the usual case: aligned look-back windows), the candidate's deviations are computed once."""
    best, rho = None, 0.0
    x = np.asarray(candidate, float).ravel()
    cx = _centred(x) if len(x) >= 3 else None
    for sym, r in others.items():
        y = np.asarray(r, float).ravel()
        cy = _centred(y) if cx is not None and len(y) == len(x) else None
        if cx is not None and cy is not None:
            dx, sx, fx = cx
            dy, sy, fy = cy
            c = 0.0 if fx or fy else min(1.0, max(-1.0, float(dx @ dy) / (sx * sy)))
        else:
            c = correlation(candidate, r)
        if best is None or abs(c) > abs(rho):
            best, rho = sym, c
    return best, rho
