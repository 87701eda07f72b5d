"""Per-bar market features, vectorised over a whole series (pure, numpy).

One implementation serves both paths:

- live: the agent computes :func:`feature_row`, the last row of :func:`feature_table` on its look-back window
  (rolling windows over the last bars only);
- backtest: :func:`feature_table` runs once over the whole history and the replay reads row ``i``.

Rolling windows (z-scores, regime slopes, volatility, participation, volume z) give the same numbers
on both paths. The recursive indicators (EMA, RSI, MACD, ATR) are seeded at the start of the series
they see, so the two paths differ by the decay of that seed: about 1e-8 relative after the 256-bar
default window. The parity test holds decisions identical and scores within 1e-6.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeAlias

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tracer.signals.indicators import atr, ema, macd, rsi, volume_z, volume_z_last
from tracer.signals.regime import HORIZONS

Z_WINDOW = 50           # bars in the MACD-histogram and EMA-spread z-scores
VOL_WINDOW = 24         # bars in the realised volatility
PART_SHORT, PART_LONG = 24, 168   # participation: recent vs longer-run mean volume
_NOISE_REL = 1e-10      # a z-score's window std below this (relative) is rounding noise -> z = 0


@dataclass(frozen=True, slots=True)
class FeatureRow:
    volume_z: float
    rsi: float
    macd_hist_z: float
    ema_spread_z: float
    atr: float
    horizon_scores: tuple[float, ...]
    annual_vol: float
    participation: float
    trend_gap: float = 0.0     # log(close / its mean over the trend window); 0 when off or short of history


class FeatureTable:
    """Column arrays (length n) with a cheap :meth:`row` accessor (``ndarray.item``: Python floats, without
    converting whole columns that a backtest reads at a few hundred rows)."""

    def __init__(self, volume_z: np.ndarray, rsi: np.ndarray, macd_hist_z: np.ndarray, ema_spread_z: np.ndarray,
                 atr: np.ndarray, horizons: list[np.ndarray], annual_vol: np.ndarray, participation: np.ndarray,
                 trend_gap: np.ndarray | None = None):
        self.volume_z, self.rsi, self.macd_hist_z, self.ema_spread_z = volume_z, rsi, macd_hist_z, ema_spread_z
        self.atr, self.horizons, self.annual_vol, self.participation = atr, horizons, annual_vol, participation
        self.trend_gap = np.zeros(len(volume_z)) if trend_gap is None else trend_gap
        self._items = [np.asarray(a, dtype=float).item for a in (volume_z, rsi, macd_hist_z, ema_spread_z, atr,
                                                                  annual_vol, participation, self.trend_gap)]
        self._h = [np.asarray(h, dtype=float).item for h in horizons]
        self.n = len(volume_z)

    def row(self, i: int) -> FeatureRow:
        vz, r, mz, sz, a, av, part, tg = self._items
        hs = tuple([x for x in [h(i) for h in self._h] if x == x])     # horizons with enough history (not NaN)
        return FeatureRow(vz(i), r(i), mz(i), sz(i), a(i), hs, av(i), part(i), tg(i))


def rolling_z_last(x: np.ndarray, window: int, scale: np.ndarray | float) -> np.ndarray:
    """At each i: z-score of x[i] against x[i-window+1 .. i] (population std); 0 when the window is
    incomplete, holds a NaN, or its std is below ``_NOISE_REL * scale`` (rounding noise)."""
    n = len(x)
    out = np.zeros(n)
    if n < window:
        return out
    w = sliding_window_view(x, window)
    sd = w.std(axis=1)
    mu = w.mean(axis=1)
    sc = scale[window - 1:] if isinstance(scale, np.ndarray) else scale
    ok = np.isfinite(sd) & (sd > _NOISE_REL * sc)
    z = np.zeros(len(sd))
    z[ok] = (x[window - 1:][ok] - mu[ok]) / sd[ok]
    out[window - 1:] = z
    return out


def rolling_trend(log_close: np.ndarray, h: int) -> np.ndarray:
    """:func:`tracer.signals.regime.horizon_trend` at every bar (NaN before ``h`` bars)."""
    n = len(log_close)
    out = np.full(n, np.nan)
    if n < max(3, h):
        return out
    xc = np.arange(h, dtype=float) - (h - 1) / 2.0
    slope = sliding_window_view(log_close, h) @ xc / float(xc @ xc)
    sigma = sliding_window_view(np.diff(log_close), h - 1).std(axis=1)
    t = np.zeros(len(slope))
    ok = sigma > 0
    t[ok] = np.tanh(slope[ok] * h / (sigma[ok] * np.sqrt(h)) / 2.0)
    out[h - 1:] = t
    return out


TrendWindows: TypeAlias = int | Sequence[int]     # one window, or several (the multi-horizon trend)


def trend_windows(window: TrendWindows) -> tuple[int, ...]:
    """The trend windows as a tuple (an int is one window; 0 or none = off)."""
    ws = (window,) if isinstance(window, (int, np.integer)) else tuple(window)
    return tuple(int(w) for w in ws if w > 0)


def trend_gap(close: np.ndarray, window: TrendWindows) -> np.ndarray:
    """At each i: ``log(close[i] / mean(close[i-window+1 .. i]))``, the distance from the higher-timeframe
    mean (a 480-bar window on hourly bars is the 20-day mean); 0 where fewer than ``window`` bars exist or
    ``window`` is 0 (off). A plain rolling mean, so the live window and the full history give the same
    number once the window holds ``window`` bars. Several windows (the multi-horizon trend,
    ``TB_TREND_ENSEMBLE``): the mean of their gaps, 0 until the longest window holds its bars."""
    c = np.asarray(close, dtype=float)
    ws = trend_windows(window)
    out = np.zeros(len(c))
    if not ws or len(c) < max(ws):
        return out
    start = max(ws) - 1         # (one window: 0 + gap, / 1, the same bits as the gap itself)
    for w in ws:
        out[start:] += np.log(c[start:] / sliding_window_view(c, w).mean(axis=1)[start - w + 1:])
    out[start:] /= len(ws)
    return out


def trend_gap_last(close: np.ndarray, window: TrendWindows) -> float:
    """:func:`trend_gap` at the last bar only (the live cycle)."""
    c = np.asarray(close, dtype=float)
    ws = trend_windows(window)
    if not ws or len(c) < max(ws):
        return 0.0
    return float(sum(np.log(c[-1] / c[-w:].mean()) for w in ws) / len(ws))


def market_gap(close: np.ndarray, window: int) -> np.ndarray:
    """:func:`trend_gap` of the market symbol for the market filter, but NaN (unknown: no new entries) where
    fewer than ``window`` bars exist, instead of 0 (which would read as "at the mean")."""
    g = trend_gap(close, window)
    if window > 0:
        g[:min(window - 1, len(g))] = np.nan
        if len(g) < window:
            g[:] = np.nan
    return g


def feature_table(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
                  bars_per_year: float, volume_z_window: int = 20, trend_window: TrendWindows = 0) -> FeatureTable:
    """Every feature the evaluation needs, for every bar of the series (oldest first); ``trend_window``
    bars in the higher-timeframe mean of :func:`trend_gap` (0 = off)."""
    c = np.asarray(close, dtype=float)
    hi = np.asarray(high, dtype=float)
    lo = np.asarray(low, dtype=float)
    v = np.asarray(volume, dtype=float)
    n = len(c)

    vz = np.nan_to_num(np.asarray(volume_z(v, volume_z_window), dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
    r = np.nan_to_num(np.asarray(rsi(c, 14), dtype=float), nan=50.0)
    _, _, hist = macd(c, 12, 26, 9)
    spread = (np.asarray(ema(c, 12)) - np.asarray(ema(c, 26))) / c
    abs_mean = np.zeros(n)
    if n >= Z_WINDOW:
        abs_mean[Z_WINDOW - 1:] = sliding_window_view(np.abs(c), Z_WINDOW).mean(axis=1)
    mz = rolling_z_last(np.asarray(hist, dtype=float), Z_WINDOW, abs_mean)
    sz = rolling_z_last(spread, Z_WINDOW, 1.0)
    a = np.asarray(atr(hi, lo, c, 14), dtype=float)

    lc = np.log(c)
    horizons = [rolling_trend(lc, h) for h in HORIZONS]
    rets = np.diff(lc)
    av = np.zeros(n)
    if n > VOL_WINDOW:
        av[VOL_WINDOW:] = sliding_window_view(rets, VOL_WINDOW).std(axis=1) * np.sqrt(bars_per_year)
    # volatility over the available returns while fewer than VOL_WINDOW exist (expanding window)
    head = min(n, VOL_WINDOW + 1)
    if head > 2:
        early = rets[:head - 1]
        k = np.arange(1, len(early) + 1)
        m1, m2 = np.cumsum(early) / k, np.cumsum(early * early) / k
        av[2:head] = np.sqrt(np.maximum(m2 - m1 * m1, 0.0))[1:] * np.sqrt(bars_per_year)
    short_mean, long_mean = _trailing_mean(v, PART_SHORT), _trailing_mean(v, PART_LONG)
    part = np.ones(n)
    pos = long_mean > 0
    part[pos] = short_mean[pos] / long_mean[pos]
    return FeatureTable(vz, r, mz, sz, a, horizons, av, part, trend_gap(c, trend_window))


def _trailing_mean(v: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values (fewer at the start of the series)."""
    n = len(v)
    out = np.empty(n)
    head = min(n, window - 1)
    out[:head] = np.cumsum(v[:head]) / np.arange(1, head + 1)
    if n >= window:
        out[window - 1:] = sliding_window_view(v, window).mean(axis=1)
    return out


def _z_of_last(x: np.ndarray, scale: float) -> float:
    """:func:`rolling_z_last` at the last element of a window-long ``x`` (0 when it holds a NaN or its std is
    rounding noise)."""
    sd = float(x.std())
    if not (np.isfinite(sd) and sd > _NOISE_REL * scale):
        return 0.0
    return float((x[-1] - x.mean()) / sd)


@lru_cache(maxsize=16)
def _centred_time(h: int) -> tuple[np.ndarray, float]:
    """``(xc, xc @ xc)`` with ``xc = arange(h) - (h - 1) / 2`` (read-only, cached: the live cycle asks for the
    same few horizons every cycle)."""
    xc = np.arange(h, dtype=float) - (h - 1) / 2.0
    xc.flags.writeable = False
    return xc, float(xc @ xc)


def _trend_of_last(log_close: np.ndarray, h: int) -> float:
    """:func:`rolling_trend` at the last bar of ``log_close`` (its last ``h`` values; NaN when fewer)."""
    if len(log_close) < max(3, h):
        return float("nan")
    xc, xx = _centred_time(h)
    slope = float(log_close @ xc / xx)
    sigma = float(np.diff(log_close).std())
    return float(np.tanh(slope * h / (sigma * np.sqrt(h)) / 2.0)) if sigma > 0 else 0.0


def feature_row(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
                bars_per_year: float, volume_z_window: int = 20, trend_window: TrendWindows = 0) -> FeatureRow:
    """The last row of :func:`feature_table`, what the live cycle reads: the recursive indicators (EMA, RSI,
    MACD, ATR) still run over the whole series, but every rolling window is taken over the last bars only, so
    a 600-bar look-back costs one window per feature instead of 600. The same numbers up to float rounding
    (tests/signals/test_features.py compares them with the table's last row)."""
    c = np.asarray(close, dtype=float)
    hi = np.asarray(high, dtype=float)
    lo = np.asarray(low, dtype=float)
    v = np.asarray(volume, dtype=float)
    n = len(c)
    if n <= max(VOL_WINDOW + 1, Z_WINDOW, volume_z_window + 1):      # a short series: the table is cheap
        return feature_table(hi, lo, c, v, bars_per_year, volume_z_window, trend_window).row(n - 1)

    vz_last = volume_z_last(v, volume_z_window)
    vz = vz_last if np.isfinite(vz_last) else 0.0
    r_last = float(np.asarray(rsi(c, 14), dtype=float)[-1])
    r = r_last if r_last == r_last else 50.0
    _, _, hist = macd(c, 12, 26, 9)
    spread = (np.asarray(ema(c, 12)) - np.asarray(ema(c, 26))) / c
    mz = _z_of_last(np.asarray(hist, dtype=float)[-Z_WINDOW:], float(np.abs(c[-Z_WINDOW:]).mean()))
    sz = _z_of_last(spread[-Z_WINDOW:], 1.0)
    a = float(np.asarray(atr(hi, lo, c, 14), dtype=float)[-1])

    lc = np.log(c)
    hs = tuple(t for t in (_trend_of_last(lc[-h:], h) for h in HORIZONS) if t == t)
    av = float(np.diff(lc[-(VOL_WINDOW + 1):]).std() * np.sqrt(bars_per_year))
    short_mean = float(v[-PART_SHORT:].mean())
    long_mean = float(v[-PART_LONG:].mean())          # fewer than PART_LONG bars: the mean of all (as the table)
    part = short_mean / long_mean if long_mean > 0 else 1.0
    tg = trend_gap_last(c, trend_window)
    return FeatureRow(vz, r, mz, sz, a, hs, av, part, tg)
