"""Correlation cap against open positions (pure)."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

_ADD, _MAX, _MIN = np.add.reduce, np.maximum.reduce, np.minimum.reduce


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


def _centred(v: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """(deviations from the mean, their norm, flat?) of a finite series, as :func:`correlation` computes them,
    bit for bit, with fewer numpy calls (the risk check runs it for every open position at every entry):
    ``v.mean()`` is ``add.reduce(v) / n``, numpy's and math's square roots are both correctly rounded, and
    the largest absolute value is the larger of ``max`` and ``-min``."""
    n = len(v)
    d = v - float(_ADD(v)) / n
    s = math.sqrt(float(d @ d))
    big = max(float(_MAX(v)), -float(_MIN(v)))
    return d, s, s <= 1e-12 * big * math.sqrt(n)


def most_correlated(candidate: np.ndarray, others: Mapping[str, np.ndarray]) -> tuple[str | None, float]:
    """The open symbol whose returns correlate most (in absolute value) with the candidate's.

    Each value is :func:`correlation`'s, bit for bit; when a series has the candidate's length and both
    are finite (the usual case: aligned look-back windows), the candidate's deviations are computed once."""
    best, rho = None, 0.0
    x = np.asarray(candidate, float).ravel()
    x_ok = len(x) >= 3 and bool(np.isfinite(x).all())
    cx = None
    for sym, r in others.items():
        y = np.asarray(r, float).ravel()
        if x_ok and len(y) == len(x) and np.isfinite(y).all():
            if cx is None:
                cx = _centred(x)
            dx, sx, fx = cx
            dy, sy, fy = _centred(y)
            c = 0.0 if fx or fy else min(1.0, max(-1.0, float(dx @ dy) / (sx * sy)))
        else:
            c = correlation(candidate, r)
        if best is None or abs(c) > abs(rho):
            best, rho = sym, c
    return best, rho
