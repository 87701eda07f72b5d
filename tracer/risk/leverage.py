"""Leverage and stop-distance sizing for the futures agent (pure)."""
from __future__ import annotations

import math

import numpy as np

_VOL_FACTOR = {"low": 1.0, "normal": 0.8, "high": 0.4, "extreme": 0.1}


def choose_leverage(conviction: float, min_conviction: float, volatility: str, max_leverage: float) -> int:
    """Whole-number leverage in [1, max_leverage]:

    ``L = floor(1 + (max - 1) * c * v)`` with ``c = clip((conviction - min) / (10 - min), 0, 1)`` and the
    volatility factor ``v``: low 1.0, normal 0.8, high 0.4, extreme 0.1. Lower in high volatility and at
    low conviction; 1x at the minimum passing conviction.
    """
    c = float(np.clip((conviction - min_conviction) / max(10.0 - min_conviction, 1e-9), 0.0, 1.0))
    v = _VOL_FACTOR[volatility]
    lev = math.floor(1.0 + (max_leverage - 1.0) * c * v + 1e-9)
    return int(min(max(lev, 1), math.floor(max_leverage)))


def risk_notional(equity: float, risk_fraction: float, price: float, stop_distance: float) -> float:
    """Notional whose loss at the stop equals ``equity * risk_fraction``:
    ``qty = equity * risk_fraction / stop_distance``, notional ``= qty * price``."""
    if stop_distance <= 0 or price <= 0:
        return 0.0
    return equity * risk_fraction / stop_distance * price
