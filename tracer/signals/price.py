"""Price score: momentum from RSI, MACD histogram and EMA spread, damped on weak volume.

Pure functions on numpy arrays; no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.signals import scoring
from tracer.signals.indicators import ema, macd, rsi, zscore_last


@dataclass(frozen=True, slots=True)
class PriceScore:
    score: float            # in [-1, 1]
    rsi: float
    rsi_component: float    # (RSI - 50) / 50
    macd_hist_z: float
    ema_spread_z: float
    volume_damping: float   # multiplier in [0.5, 1]


# Relative noise floor of the z-scores: the EMAs/MACD of a flat series are not exactly constant
# (floating-point rounding leaves ~1e-14 relative wiggles); z-scoring that noise would turn a
# flat tape into a spurious momentum reading of up to +-0.7.
_NOISE_REL = 1e-10


def _z_last(x: np.ndarray, window: int, scale: float) -> float:
    """``zscore_last(x, window)``, but 0 when the window's std is below ``_NOISE_REL * scale``."""
    w = np.asarray(x, dtype=float)[-window:]
    if len(w) < window or not np.isfinite(w).all() or not np.std(w) > _NOISE_REL * scale:
        return 0.0
    return zscore_last(x, window)


def volume_damping(volume_z: float) -> float:
    """1 when volume is normal or strong; down to 0.5 when it is weak.

    ``damp = clip(1 + 0.25 * min(volume_z, 0), 0.5, 1)``: a bar two standard deviations
    below the usual volume halves the momentum reading's weight (0.5), one below gives 0.75.
    """
    return float(scoring.volume_damping(volume_z))


def price_score(close: np.ndarray, volume_z: float, z_window: int = 50) -> PriceScore:
    """Momentum score in [-1, 1].

    ``raw = 0.30 * (RSI14 - 50)/50 + 0.35 * tanh(z(MACD hist)/2) + 0.35 * tanh(z(EMA12-EMA26 spread)/2)``
    where ``z(.)`` is the z-score of the last value against the last ``z_window`` values
    (default 50) and the EMA spread is ``(EMA12 - EMA26) / close``. Then
    ``score = clip(raw * volume_damping(volume_z), -1, 1)``.

    A z-score is 0 when its window's standard deviation is floating-point noise: below 1e-10
    of the mean |close| of the window for the MACD histogram (price units), below 1e-10 for the
    (dimensionless) spread. So a flat series scores exactly 0.
    """
    c = np.asarray(close, dtype=float)
    r = rsi(c, 14)
    rsi_last = float(r[-1]) if np.isfinite(r[-1]) else 50.0
    _, _, hist = macd(c, 12, 26, 9)
    spread = (ema(c, 12) - ema(c, 26)) / c
    scale = float(np.mean(np.abs(c[-z_window:]))) if len(c) else 0.0
    mz = _z_last(hist, z_window, scale)
    sz = _z_last(spread, z_window, 1.0)
    return price_from(rsi_last, mz, sz, volume_z)


def price_from(rsi_value: float, macd_hist_z: float, ema_spread_z: float, volume_z: float) -> PriceScore:
    """The price score from its parts (formula in :func:`price_score`; arithmetic in :mod:`scoring`)."""
    score, rc, damp = scoring.price_score(rsi_value, macd_hist_z, ema_spread_z, volume_z)
    return PriceScore(float(score), rsi_value, float(rc), macd_hist_z, ema_spread_z, float(damp))
