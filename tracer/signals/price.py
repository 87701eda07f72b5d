"""Price score: momentum from RSI, MACD histogram and EMA spread, damped on weak volume.

Pure functions on numpy arrays; no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracer.signals.indicators import ema, macd, rsi, zscore_last


@dataclass(frozen=True, slots=True)
class PriceScore:
    score: float            # in [-1, 1]
    rsi: float
    rsi_component: float    # (RSI - 50) / 50
    macd_hist_z: float
    ema_spread_z: float
    volume_damping: float   # multiplier in [0.5, 1]


def volume_damping(volume_z: float) -> float:
    """1 when volume is normal or strong; down to 0.5 when it is weak.

    ``damp = clip(1 + 0.25 * min(volume_z, 0), 0.5, 1)``: a bar two standard deviations
    below the usual volume halves the momentum reading's weight (0.5), one below gives 0.75.
    """
    if not np.isfinite(volume_z):
        return 1.0
    return float(np.clip(1.0 + 0.25 * min(volume_z, 0.0), 0.5, 1.0))


def price_score(close: np.ndarray, volume_z: float, z_window: int = 50) -> PriceScore:
    """Momentum score in [-1, 1].

    ``raw = 0.30 * (RSI14 - 50)/50 + 0.35 * tanh(z(MACD hist)/2) + 0.35 * tanh(z(EMA12-EMA26 spread)/2)``
    where ``z(.)`` is the z-score of the last value against the last ``z_window`` values
    (default 50) and the EMA spread is ``(EMA12 - EMA26) / close``. Then
    ``score = clip(raw * volume_damping(volume_z), -1, 1)``.
    """
    c = np.asarray(close, dtype=float)
    r = rsi(c, 14)
    rsi_last = float(r[-1]) if np.isfinite(r[-1]) else 50.0
    _, _, hist = macd(c, 12, 26, 9)
    spread = (ema(c, 12) - ema(c, 26)) / c
    mz = zscore_last(hist, z_window)
    sz = zscore_last(spread, z_window)
    rc = (rsi_last - 50.0) / 50.0
    raw = 0.30 * rc + 0.35 * np.tanh(mz / 2.0) + 0.35 * np.tanh(sz / 2.0)
    damp = volume_damping(volume_z)
    return PriceScore(float(np.clip(raw * damp, -1.0, 1.0)), rsi_last, rc, mz, sz, damp)
