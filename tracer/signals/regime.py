"""Market regime: trend (multi-horizon slope) x volatility x volume, with a data-derived confidence.

Pure functions on numpy arrays; no I/O.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tracer.models import Regime
from tracer.signals import scoring

HORIZONS = (24, 72, 168)          # bars; with hourly bars: a day, three days, a week
BULL, STRONG = scoring.BULL, scoring.STRONG      # label boundaries on the combined trend score
VOL_BANDS = scoring.VOL_BANDS     # annualised volatility: low < 35% <= normal < 80% <= high < 130% <= extreme
VOLUME_BANDS = scoring.VOLUME_BANDS   # participation: low < 0.8 <= normal <= 1.25 < high


def horizon_trend(log_close: np.ndarray, h: int) -> float:
    """Trend score of the last ``h`` bars in [-1, 1].

    OLS slope ``b`` of log price on bar index over the window, expressed as a t-like ratio of the
    fitted move to the noise: ``t = b * h / (sigma * sqrt(h))`` with ``sigma`` the standard deviation
    of one-bar log returns in the window; score ``= tanh(t / 2)``. 0 for a flat or too short window.
    """
    y = log_close[-h:]
    if len(y) < max(3, h):
        return 0.0
    x = np.arange(len(y), dtype=float)
    x -= x.mean()
    b = float(np.dot(x, y - y.mean()) / np.dot(x, x))
    sigma = float(np.std(np.diff(y)))
    if sigma <= 0:
        return 0.0
    return float(np.tanh(b * h / (sigma * np.sqrt(h)) / 2.0))


def trend_label(score: float) -> str:
    """strong_bull >= 0.5 > bull >= 0.15 > sideways > -0.15 >= bear > -0.5 >= strong_bear."""
    return scoring.TREND_LABELS[int(scoring.trend_code(score))]


def volatility_label(annual_vol: float) -> str:
    return scoring.VOL_LABELS[int(scoring.vol_code(annual_vol))]


def volume_label(participation: float) -> str:
    return scoring.VOLUME_LABELS[int(scoring.volume_code(participation))]


def regime_confidence(horizon_scores: Sequence[float], combined: float, vol_label: str) -> float:
    """Confidence in [0, 1] computed from the data:

    ``0.5 * agreement + 0.5 * margin``, where ``agreement = |mean(sign(horizon scores))|`` (1 when
    every horizon points the same way, 0 when they split evenly) and ``margin`` is the distance of the
    combined score from the nearest label boundary (+-0.15, +-0.5) divided by 0.15, clipped to [0, 1].
    Extreme volatility multiplies the result by 0.75 (labels flip more easily there).
    """
    h = np.asarray([list(horizon_scores)], dtype=float).reshape(1, -1)
    return float(scoring.regime_confidence(h, combined, scoring.VOL_LABELS.index(vol_label))[0])


def market_regime(close: np.ndarray, volume: np.ndarray, bars_per_year: float, vol_window: int = 24) -> Regime:
    """Classify the market from closes and volumes (oldest first).

    - trend: mean of :func:`horizon_trend` over ``HORIZONS`` (those the history covers) -> label
    - volatility: ``std(log returns of the last vol_window bars) * sqrt(bars_per_year)`` -> band
    - volume: ``mean(volume, last 24) / mean(volume, last 168)`` -> participation band
    """
    c = np.asarray(close, dtype=float)
    v = np.asarray(volume, dtype=float)
    lc = np.log(c)
    hs = tuple(horizon_trend(lc, h) for h in HORIZONS if len(lc) >= h)
    rets = np.diff(lc[-(vol_window + 1):])
    annual_vol = float(np.std(rets) * np.sqrt(bars_per_year)) if len(rets) > 1 else 0.0
    long_n = min(len(v), 168)
    long_mean = float(v[-long_n:].mean()) if long_n else 0.0
    participation = float(v[-24:].mean() / long_mean) if long_mean > 0 else 1.0
    return regime_from(hs, annual_vol, participation)


def regime_from(horizon_scores: tuple[float, ...], annual_vol: float, participation: float) -> Regime:
    """The regime from its measured parts (see :func:`market_regime`)."""
    h = np.asarray([list(horizon_scores)], dtype=float).reshape(1, -1)
    combined, _ = scoring.combined_trend(h)
    vc = scoring.vol_code(annual_vol)
    return Regime(label=scoring.TREND_LABELS[int(scoring.trend_code(combined[0]))], trend_score=float(combined[0]),
                  volatility=scoring.VOL_LABELS[int(vc)], annual_vol=annual_vol,
                  volume=scoring.VOLUME_LABELS[int(scoring.volume_code(participation))], participation=participation,
                  confidence=float(scoring.regime_confidence(h, combined, vc)[0]),
                  horizon_scores=tuple(float(x) for x in horizon_scores))
