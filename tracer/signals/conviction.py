"""Conviction score 1-10 (pure)."""
from __future__ import annotations


from dataclasses import dataclass

from tracer.signals import scoring

from tracer.models import Regime



@dataclass(frozen=True, slots=True)
class ConvictionBreakdown:
    total: float
    quality_part: float
    regime_alignment: float
    volatility_score: float
    confirmation: float


def _codes(regime: Regime) -> tuple[int, int]:
    return scoring.TREND_LABELS.index(regime.label), scoring.VOL_LABELS.index(regime.volatility)


def regime_alignment(direction: int, regime: Regime) -> float:
    """How well the regime supports the trade's direction, in [0, 1].

    Raw: strong_bull 1.0, bull 0.8, sideways 0.5, bear 0.2, strong_bear 0.0 for a long (mirrored for a
    short; 0.5 with no direction), then pulled toward 0.5 by low confidence:
    ``0.5 + (raw - 0.5) * confidence``.
    """
    return float(scoring.alignment(direction, _codes(regime)[0], regime.confidence))


def volatility_score(regime: Regime) -> float:
    """normal 1.0, low 0.7, high 0.6, extreme 0.2."""
    return float(scoring.volatility_score(_codes(regime)[1]))


def confirmation(volume_z: float, narrative: float, price: float, headline_count: int) -> float:
    """0.5 for above-average volume (volume_z > 0) + 0.5 when news and price agree in sign."""
    return float(scoring.confirmation(volume_z, narrative, price, headline_count))


def conviction_score(quality: float, direction: int, regime: Regime, volume_z: float, narrative: float,
                     price: float, headline_count: int) -> ConvictionBreakdown:
    """``clip(4 * quality/10 + 3 * regime_alignment + 2 * volatility_score + 1 * confirmation, 1, 10)``."""
    t, v = _codes(regime)
    c = scoring.conviction(quality, direction, t, regime.confidence, v, volume_z, narrative, price, headline_count)
    return ConvictionBreakdown(*(float(c[k]) for k in ("total", "quality", "alignment", "volatility", "confirmation")))
