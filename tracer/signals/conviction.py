"""Conviction score 1-10 (pure)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.models import Regime

_ALIGN_LONG = {"strong_bull": 1.0, "bull": 0.8, "sideways": 0.5, "bear": 0.2, "strong_bear": 0.0}
_VOL_SCORE = {"low": 0.7, "normal": 1.0, "high": 0.6, "extreme": 0.2}


@dataclass(frozen=True, slots=True)
class ConvictionBreakdown:
    total: float
    quality_part: float
    regime_alignment: float
    volatility_score: float
    confirmation: float


def regime_alignment(direction: int, regime: Regime) -> float:
    """How well the regime supports the trade's direction, in [0, 1].

    Raw: strong_bull 1.0, bull 0.8, sideways 0.5, bear 0.2, strong_bear 0.0 for a long (mirrored for a
    short; 0.5 with no direction), then pulled toward 0.5 by low confidence:
    ``0.5 + (raw - 0.5) * confidence``.
    """
    raw = _ALIGN_LONG[regime.label]
    if direction < 0:
        raw = 1.0 - raw
    elif direction == 0:
        raw = 0.5
    return float(0.5 + (raw - 0.5) * regime.confidence)


def volatility_score(regime: Regime) -> float:
    """normal 1.0, low 0.7, high 0.6, extreme 0.2."""
    return _VOL_SCORE[regime.volatility]


def confirmation(volume_z: float, narrative: float, price: float, headline_count: int) -> float:
    """0.5 for above-average volume (volume_z > 0) + 0.5 when news and price agree in sign."""
    vol = 0.5 if np.isfinite(volume_z) and volume_z > 0 else 0.0
    agree = 0.5 if headline_count > 0 and narrative * price > 0 else 0.0
    return vol + agree


def conviction_score(quality: float, direction: int, regime: Regime, volume_z: float, narrative: float,
                     price: float, headline_count: int) -> ConvictionBreakdown:
    """``clip(4 * quality/10 + 3 * regime_alignment + 2 * volatility_score + 1 * confirmation, 1, 10)``."""
    q = 4.0 * quality / 10.0
    a = regime_alignment(direction, regime)
    v = volatility_score(regime)
    c = confirmation(volume_z, narrative, price, headline_count)
    total = float(np.clip(q + 3.0 * a + 2.0 * v + 1.0 * c, 1.0, 10.0))
    return ConvictionBreakdown(total, q, a, v, c)
