"""Correlation cap against open positions (pure)."""
from __future__ import annotations

from typing import Mapping

import numpy as np


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
    return norm <= 1e-12 * float(np.abs(v).max()) * np.sqrt(len(v))


def most_correlated(candidate: np.ndarray, others: Mapping[str, np.ndarray]) -> tuple[str | None, float]:
    """The open symbol whose returns correlate most (in absolute value) with the candidate's."""
    best, rho = None, 0.0
    for sym, r in others.items():
        c = correlation(candidate, r)
        if best is None or abs(c) > abs(rho):
            best, rho = sym, c
    return best, rho
