"""Regime-aware entry gates and the confidence-based size fraction (pure)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.models import Regime

SIZE_FLOOR = 0.2   # smallest fraction of the max position taken by a passing signal


@dataclass(frozen=True, slots=True)
class GateThresholds:
    min_quality: float
    min_conviction: float
    adverse_regime_penalty: float = 1.0     # extra quality when the regime opposes the direction
    extreme_vol_penalty: float = 2.0        # extra quality in extreme volatility
    confidence_sizing: bool = True


@dataclass(frozen=True, slots=True)
class GateResult:
    passed: bool
    required_quality: float
    required_conviction: float
    failed: tuple[str, ...]


def adverse(direction: int, regime: Regime) -> bool:
    """A long in a bear/strong_bear market, or a short in a bull/strong_bull one."""
    return (direction > 0 and regime.label in ("bear", "strong_bear")) or \
           (direction < 0 and regime.label in ("bull", "strong_bull"))


def check_gates(quality: float, conviction: float, direction: int, regime: Regime, t: GateThresholds) -> GateResult:
    """Required quality = min_quality + adverse_regime_penalty (if the regime opposes the
    direction) + extreme_vol_penalty (if volatility is extreme); conviction >= min_conviction."""
    req_q = t.min_quality
    if adverse(direction, regime):
        req_q += t.adverse_regime_penalty
    if regime.volatility == "extreme":
        req_q += t.extreme_vol_penalty
    failed = []
    if direction == 0:
        failed.append("no_direction")
    if quality < req_q:
        failed.append("quality")
    if conviction < t.min_conviction:
        failed.append("conviction")
    return GateResult(not failed, req_q, t.min_conviction, tuple(failed))


def size_fraction(conviction: float, min_conviction: float, confidence_sizing: bool) -> float:
    """Fraction of the max position: ``0.2 + 0.8 * clip((conviction - min) / (10 - min), 0, 1)``
    with confidence sizing (20% at the lowest passing conviction, 100% at 10); 1.0 without it."""
    if not confidence_sizing:
        return 1.0
    span = max(10.0 - min_conviction, 1e-9)
    return float(SIZE_FLOOR + (1.0 - SIZE_FLOOR) * np.clip((conviction - min_conviction) / span, 0.0, 1.0))
