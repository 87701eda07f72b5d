"""Regime-aware entry gates and the confidence-based size fraction (pure)."""
from __future__ import annotations


from dataclasses import dataclass

from tracer.signals import scoring

from tracer.models import Regime

SIZE_FLOOR = scoring.SIZE_FLOOR   # smallest fraction of the max position taken by a passing signal


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
    return bool(scoring.adverse(direction, scoring.TREND_LABELS.index(regime.label)))


def check_gates(quality: float, conviction: float, direction: int, regime: Regime, t: GateThresholds) -> GateResult:
    """Required quality = min_quality + adverse_regime_penalty (if the regime opposes the
    direction) + extreme_vol_penalty (if volatility is extreme); conviction >= min_conviction."""
    g = scoring.gates(quality, conviction, direction, scoring.TREND_LABELS.index(regime.label),
                      scoring.VOL_LABELS.index(regime.volatility), t.min_quality, t.min_conviction,
                      t.adverse_regime_penalty, t.extreme_vol_penalty)
    failed = tuple(name for name in ("no_direction", "quality", "conviction") if bool(g[name]))
    return GateResult(not failed, float(g["required_quality"]), t.min_conviction, failed)


def size_fraction(conviction: float, min_conviction: float, confidence_sizing: bool) -> float:
    """Fraction of the max position: ``0.2 + 0.8 * clip((conviction - min) / (10 - min), 0, 1)``
    with confidence sizing (20% at the lowest passing conviction, 100% at 10); 1.0 without it."""
    return float(scoring.size_fraction(conviction, min_conviction, confidence_sizing))
