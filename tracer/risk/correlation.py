"""Correlation cap against open positions (pure)."""
from __future__ import annotations

from typing import Mapping

import numpy as np


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two return series over their common (last, finite) part; 0 if undefined."""
    n = min(len(a), len(b))
    x, y = np.asarray(a, float)[-n:], np.asarray(b, float)[-n:]
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def most_correlated(candidate: np.ndarray, others: Mapping[str, np.ndarray]) -> tuple[str | None, float]:
    """The open symbol whose returns correlate most (in absolute value) with the candidate's."""
    best, rho = None, 0.0
    for sym, r in others.items():
        c = correlation(candidate, r)
        if best is None or abs(c) > abs(rho):
            best, rho = sym, c
    return best, rho
