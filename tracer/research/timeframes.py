"""Timeframes: parse ``"4h"`` and build higher-timeframe bars from 1h bars (pure).

Only COMPLETE higher-timeframe bars are kept: a bin ``[start, start + tf)`` (aligned to the UTC
epoch: 4h bins open at 00, 04, 08 ... UTC; 1d bins at 00:00 UTC) is kept when it closed at or
before ``now`` and holds every one of its hourly bars. A bin still forming at ``now``, or one with
a missing hour, is dropped, so nothing after ``now`` and no partial bar ever reaches ``evaluate``.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

_TF = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_timeframe(label: str) -> timedelta:
    """``"1h"`` -> 1 hour, ``"4h"``, ``"1d"``, ``"15m"``, ``"1w"``. Raises ValueError otherwise."""
    m = _TF.match(str(label))
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"timeframe {label!r}: expected <n><m|h|d|w>, e.g. 1h, 4h, 1d")
    return int(m.group(1)) * _UNIT[m.group(2).lower()]


def label_of(tf: timedelta) -> str:
    secs = int(tf.total_seconds())
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if secs % size == 0:
            return f"{secs // size}{unit}"
    raise ValueError(f"timeframe {tf!r} is not a whole number of minutes")


def resample(bars: pd.DataFrame, base: timedelta, tf: timedelta, now: datetime) -> pd.DataFrame:
    """Complete ``tf`` bars (open, high, low, close, volume; index = bin open time, UTC) built from
    ``bars`` of interval ``base`` (index = bar open time), as of ``now``.

    ``tf`` must be a whole multiple of ``base``. Bins are aligned to the UTC epoch. A bin is kept only
    when it holds ``tf / base`` bars and closes at or before ``now``; bars that close after ``now``
    are ignored before anything else (look-ahead guard even when the caller passes more)."""
    if tf.total_seconds() % base.total_seconds():
        raise ValueError(f"timeframe {label_of(tf)} is not a multiple of the {label_of(base)} bars")
    k = int(tf / base)
    cols = ["open", "high", "low", "close", "volume"]
    now_ts = pd.Timestamp(now)
    visible = bars[bars.index + pd.Timedelta(base) <= now_ts]
    if k == 1:
        return visible[cols].copy()
    if visible.empty:
        return visible[cols].iloc[:0].copy()
    step = np.int64(pd.Timedelta(tf).value)
    ts = visible.index.asi8
    bins = (ts // step) * step
    g = visible.groupby(bins, sort=True)
    out = pd.DataFrame({"open": g["open"].first(), "high": g["high"].max(), "low": g["low"].min(),
                        "close": g["close"].last(), "volume": g["volume"].sum()})
    count = g.size()
    keep = (count.to_numpy() == k) & (out.index.to_numpy() + step <= np.int64(now_ts.value))
    out = out[keep]
    out.index = pd.DatetimeIndex(pd.to_datetime(out.index.to_numpy(), utc=True)).as_unit("ns").rename("ts")
    return out.astype("float64")
