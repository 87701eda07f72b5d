"""Signal quality 0-10 from points (pure)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    sent = 3.0 * min(abs(narrative), 1.0) if headline_count > 0 else 0.0
    mom = 3.0 * min(abs(price), 1.0)
    vol = float(np.clip(volume_z, 0.0, 2.0)) if np.isfinite(volume_z) else 0.0
    if rsi < 20 or rsi > 80:
        ext = 1.5
    elif rsi < 30 or rsi > 70:
        ext = 1.0
    else:
        ext = 0.0
    aligned = 1.0 if (headline_count > 0 and abs(narrative) >= 0.1 and abs(price) >= 0.1
                      and np.sign(narrative) == np.sign(price)) else 0.0
    contrarian = 1.0 if diverged and ((narrative > 0 and rsi < 30) or (narrative < 0 and rsi > 70)) else 0.0
    total = min(10.0, sent + mom + vol + ext + aligned + contrarian)
    return QualityBreakdown(round(total, 10), sent, mom, vol, ext, aligned, contrarian)
