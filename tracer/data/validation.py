"""Checks that a window of OHLCV bars is fit to trade on. Pure functions, no I/O.

``validate_bars`` returns ``None`` for a good window, otherwise ONE short,
machine-readable reason (the first problem found, in the order below). The reason
always starts with a stable prefix followed by ``:`` or `` at``; the prefixes are
written to the DB and tested, so do not rename them:

==================== ==========================================================
prefix               example
==================== ==========================================================
``nan_price``        ``nan_price: 3 rows`` (NaN or +/-inf in open/high/low/close)
``nan_volume``       ``nan_volume: 1 rows`` (NaN or +/-inf volume)
``non_positive_price`` ``non_positive_price at 2022-01-01T05:00:00Z``
``high_below_low``   ``high_below_low at 2022-01-01T05:00:00Z``
``ohlc_inconsistent`` ``ohlc_inconsistent at ...`` (high < max(open, close) or
                     low > min(open, close))
``negative_volume``  ``negative_volume at ...``
``duplicate_ts``     ``duplicate_ts at ...``
``out_of_order``     ``out_of_order at ...`` (the first ts lower than the one before)
``gap``              ``gap: 2022-01-01T05:00:00Z -> 2022-01-01T08:00:00Z (3 bars)``:
                     the open times of the missing bars run from the first time to
                     just before the second, i.e. the bar before the gap opened at
                     04:00 and the next one present opens at 08:00. Under the gap
                     policy (``max_gap_bars`` given) only a hole longer than the
                     limit is one: ``gap: ... (7 bars > 6 allowed)``
``misaligned``       ``misaligned at ... (step 30m, interval 1h)``: a step that is not
                     a whole number of intervals
``future_bar``       ``future_bar: last bar closes 2022-01-01T06:00:00Z, after now
                     2022-01-01T05:30:00Z`` (would be look-ahead)
``stale``            ``stale: last bar closes 2022-01-01T05:00:00Z, 4h before now``;
                     under the gap policy also ``stale: last bar closes ..., 1h before
                     now (the bar closing at ... is missing)``
``insufficient_bars`` ``insufficient_bars: 40 < 60`` (an empty window is always
                     ``insufficient_bars: 0 < N`` with N >= 1)
==================== ==========================================================

The gap policy (``max_gap_bars`` not None; live, replay and backtest all use it, see
:mod:`tracer.data.gaps`): a hole of at most ``max_gap_bars`` missing bars inside the window
is accepted (the indicators run on the bars that exist), a longer one is a ``gap``; and the
newest bar must be the one that closed last before ``now`` (a missing newest bar is
``stale`` for that clock, whatever ``max_staleness`` allows). ``max_gap_bars=None`` keeps the
strict rules (any hole is a ``gap``).

Times in reasons are ISO-8601 UTC with a ``Z`` suffix. A bar's ``ts`` is its open
time; it closes at ``ts + interval``.

The work is done by :func:`validate_arrays` on raw numpy arrays (int64 ns
timestamps, an ``(n, 5)`` float array) so a feed that already holds arrays can skip
the DataFrame round trip; :func:`validate_bars` is the DataFrame front end.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

__all__ = [
    "COLUMNS", "REASON_PREFIXES", "validate_bars", "validate_arrays", "sound_rows", "frame_arrays",
    "fmt_ts", "fmt_duration", "to_ns", "td_ns",
]

COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")

REASON_PREFIXES: tuple[str, ...] = (
    "nan_price", "nan_volume", "non_positive_price", "high_below_low", "ohlc_inconsistent",
    "negative_volume", "duplicate_ts", "out_of_order", "gap", "misaligned", "future_bar",
    "stale", "insufficient_bars",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_COLS_LIST = list(COLUMNS)


def to_ns(t: datetime) -> int:
    """A timezone-aware datetime (or pandas Timestamp) -> int nanoseconds since the epoch."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t!r}: times must be timezone-aware UTC")
    if isinstance(t, pd.Timestamp):
        return int(t.as_unit("ns").value)
    d = t - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000


def td_ns(d: timedelta) -> int:
    """A timedelta (or pandas Timedelta) -> int nanoseconds."""
    if isinstance(d, pd.Timedelta):
        return int(d.as_unit("ns").value)
    return (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000


def fmt_ts(ns: int) -> str:
    """int ns since the epoch -> ``2022-01-01T05:00:00Z`` (sub-second part only when present)."""
    ns = int(ns)
    s = (_EPOCH + timedelta(microseconds=ns // 1_000)).isoformat()
    return s.replace("+00:00", "Z")


def fmt_duration(ns: int) -> str:
    """int ns -> compact ``1d2h``, ``4h``, ``90s`` style (``0s`` for zero, ``-`` prefix if negative)."""
    ns = int(ns)
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    secs, rem = divmod(ns, 1_000_000_000)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        q, secs = divmod(secs, size)
        if q:
            parts.append(f"{q}{unit}")
    if rem:
        parts.append(f"{rem / 1e6:g}ms" if rem % 1_000_000 == 0 else f"{rem}ns")
    return sign + ("".join(parts) or "0s")


def validate_arrays(
    ts: np.ndarray,
    values: np.ndarray,
    now_ns: int,
    interval_ns: int,
    max_staleness_ns: int,
    min_bars: int,
    max_gap_bars: int | None = None,
) -> str | None:
    """Core of :func:`validate_bars` on arrays.

    ``ts``: int64 bar open times in ns since the epoch (UTC), in row order.
    ``values``: float array of shape ``(n, 5)``, columns open, high, low, close, volume.
    ``max_gap_bars``: None for the strict rules, else the gap policy's limit (module docstring).
    """
    n = len(ts)
    need = max(int(min_bars), 1)
    if n == 0:
        return f"insufficient_bars: 0 < {need}"

    # Fast path: a handful of whole-array reductions; the per-row detail (which row,
    # which rule) is only worked out once something has failed.
    px = values[:, :4]
    vol = values[:, 4]

    # --- values ------------------------------------------------------------------
    if not np.isfinite(values).all():
        fin = np.isfinite(px)
        if not fin.all():
            return f"nan_price: {int(np.count_nonzero(~fin.all(axis=1)))} rows"
        return f"nan_volume: {int(np.count_nonzero(~np.isfinite(vol)))} rows"

    if px.min() <= 0.0:
        return f"non_positive_price at {fmt_ts(ts[(px <= 0.0).any(axis=1).argmax()])}"
    o = values[:, 0]
    h = values[:, 1]
    lo = values[:, 2]
    c = values[:, 3]
    # high >= max(o, c) and low <= min(o, c) together imply high >= low, so one test
    # covers both rules on the good path.
    hi_ok = h >= np.maximum(o, c)
    lo_ok = lo <= np.minimum(o, c)
    if not (hi_ok.all() and lo_ok.all()):
        bad = h < lo
        if bad.any():
            return f"high_below_low at {fmt_ts(ts[bad.argmax()])}"
        return f"ohlc_inconsistent at {fmt_ts(ts[(~(hi_ok & lo_ok)).argmax()])}"
    if vol.min() < 0.0:
        return f"negative_volume at {fmt_ts(ts[(vol < 0.0).argmax()])}"

    # --- time axis ---------------------------------------------------------------
    if n > 1:
        step = np.diff(ts)
        if not (step == interval_ns).all():
            bad = step == 0
            if bad.any():
                return f"duplicate_ts at {fmt_ts(ts[bad.argmax() + 1])}"
            bad = step < 0
            if bad.any():
                return f"out_of_order at {fmt_ts(ts[bad.argmax() + 1])}"
            # the first step that is off the interval grid or a hole longer than the limit (the
            # gap policy accepts shorter holes; the strict rules none)
            limit = 0 if max_gap_bars is None else int(max_gap_bars)
            off = step % interval_ns != 0
            bad = off | (step > (limit + 1) * interval_ns)
            if bad.any():
                i = int(bad.argmax())
                d = int(step[i])
                if not off[i]:
                    missing = d // interval_ns - 1
                    return (f"gap: {fmt_ts(int(ts[i]) + interval_ns)} -> {fmt_ts(ts[i + 1])} ({missing} bars"
                            + (f" > {limit} allowed)" if max_gap_bars is not None else ")"))
                return (f"misaligned at {fmt_ts(ts[i + 1])} "
                        f"(step {fmt_duration(d)}, interval {fmt_duration(interval_ns)})")

    last_close = int(ts[-1]) + interval_ns
    if last_close > now_ns:
        return f"future_bar: last bar closes {fmt_ts(last_close)}, after now {fmt_ts(now_ns)}"
    age = now_ns - last_close
    if age > max_staleness_ns:
        return f"stale: last bar closes {fmt_ts(last_close)}, {fmt_duration(age)} before now"
    if max_gap_bars is not None and age >= interval_ns:
        # decisions are made on the bar that just closed, never again on an older one
        return (f"stale: last bar closes {fmt_ts(last_close)}, {fmt_duration(age)} before now "
                f"(the bar closing at {fmt_ts(last_close + interval_ns)} is missing)")

    if n < need:
        return f"insufficient_bars: {n} < {need}"
    return None


def sound_rows(ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row, whether the bar on its own is fit for a broker's fills and exit checks: finite, positive
    prices, ``low <= open, close <= high``, a volume >= 0, and an open time after every earlier row's (a
    duplicate or a row going back is dropped). The window rules (holes, staleness, length) do not apply:
    this is for the bars of a symbol the gap policy skips, whose held position still needs its stops."""
    ts = np.asarray(ts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if len(ts) == 0:
        return np.zeros(0, dtype=bool)
    o, h, lo, c, v = (values[:, k] for k in range(5))
    with np.errstate(invalid="ignore"):
        ok: np.ndarray = np.isfinite(values).all(axis=1) & (np.minimum(lo, np.minimum(o, c)) > 0.0) \
            & (h >= np.maximum(o, c)) & (lo <= np.minimum(o, c)) & (v >= 0.0)
    ok[1:] &= ts[1:] > np.maximum.accumulate(ts)[:-1]
    return ok


def frame_arrays(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ns open times, float64 ``(n, 5)`` values) of a bar frame, without copying when possible."""
    idx = df.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise TypeError(f"bars must be indexed by a DatetimeIndex, got {type(idx).__name__}")
    if idx.tz is None:
        raise TypeError("bars index must be timezone-aware (UTC)")
    ts = idx.asi8
    scale = _NS_PER_UNIT[idx.unit]
    if scale != 1:
        ts = ts * scale
    if list(df.columns) == _COLS_LIST:
        values = df.to_numpy(dtype=np.float64, copy=False)
    else:
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise KeyError(f"bars frame lacks columns {missing}")
        values = df[_COLS_LIST].to_numpy(dtype=np.float64, copy=False)
    return ts, values


def validate_bars(
    df: pd.DataFrame,
    now: datetime,
    interval: timedelta,
    max_staleness: timedelta | None = None,
    min_bars: int = 1,
    max_gap_bars: int | None = None,
) -> str | None:
    """Check a window of bars; ``None`` when good, else a short reason (see module docstring).

    ``df``: indexed by bar open time (tz-aware UTC ``DatetimeIndex``), float columns
    open, high, low, close, volume (extra columns are ignored).
    ``now``: the decision time; the last bar must have closed (``ts + interval <= now``)
    and not more than ``max_staleness`` (default: one interval) before it.
    ``min_bars``: fewest rows accepted.
    ``max_gap_bars``: None for the strict rules, else the gap policy's limit (module docstring).

    Raises ``TypeError`` / ``KeyError`` for a frame of the wrong shape (a programming
    error, not a data problem).
    """
    ts, values = frame_arrays(df)
    interval_ns = td_ns(interval)
    if interval_ns <= 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    stale_ns = interval_ns if max_staleness is None else td_ns(max_staleness)
    if max_gap_bars is not None and max_gap_bars < 0:
        raise ValueError(f"max_gap_bars must be >= 0, got {max_gap_bars!r}")
    return validate_arrays(ts, values, to_ns(now), interval_ns, stale_ns, min_bars, max_gap_bars)
