"""Signal quality 0-10 from points (pure)."""
from __future__ import annotations


from dataclasses import dataclass

from tracer.signals import scoring


@dataclass(frozen=True, slots=True)
class QualityBreakdown:
    total: float
    sentiment: float
    momentum: float
    volume: float
    rsi_extreme: float
    aligned_bonus: float
    contrarian_bonus: float


def signal_quality(narrative: float, headline_count: int, price: float, volume_z: float, rsi: float,
                   diverged: bool) -> QualityBreakdown:
    """Points, capped at 10:

    - sentiment strength: ``3 * |narrative|`` (0 when no relevant headline), max 3
    - momentum strength: ``3 * |price|``, max 3
    - volume confirmation: ``clip(volume_z, 0, 2)``, max 2
    - RSI extreme: 1.5 when RSI < 20 or > 80, 1 when RSI < 30 or > 70, else 0
    - aligned bonus: +1 when narrative and price agree in sign and both |.| >= 0.1
    - contrarian bonus: +1 when a divergence triggered and the RSI extreme points the way of the
      narrative (narrative bullish with RSI < 30, or bearish with RSI > 70)
    """
    q = scoring.quality_points(narrative, headline_count, price, volume_z, rsi, diverged)
    return QualityBreakdown(*(float(q[k]) for k in ("total", "sentiment", "momentum", "volume", "rsi_extreme",
                                                     "aligned", "contrarian")))
