"""History for backtests: strict candle loading (errors name the file, line and problem)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from tracer.symbols import binance_symbol, canonical

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
_NAME = re.compile(r"^candles_(\d+)([mhd])_([A-Za-z0-9]+)\.csv$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class DataError(ValueError):
    """A history file that cannot be used; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Series:
    symbol: str
    path: Path
    ts_ns: np.ndarray          # bar open times, int64 ns UTC, strictly increasing
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def discover(data_dir: Path) -> dict[str, tuple[timedelta, Path]]:
    """``candles_<n><m|h|d>_<SYMBOL>.csv`` files in ``data_dir``: canonical symbol -> (interval, path)."""
    out: dict[str, tuple[timedelta, Path]] = {}
    for p in sorted(Path(data_dir).glob("candles_*.csv")):
        m = _NAME.match(p.name)
        if m:
            out[canonical(m.group(3))] = (timedelta(**{_UNITS[m.group(2)]: int(m.group(1))}), p)
    return out


def candle_file(data_dir: Path, symbol: str, interval: timedelta) -> Path:
    secs = int(interval.total_seconds())
    label = f"{secs // 86400}d" if secs % 86400 == 0 else f"{secs // 3600}h" if secs % 3600 == 0 else f"{secs // 60}m"
    return Path(data_dir) / f"candles_{label}_{binance_symbol(symbol)}.csv"


def load_series(path: Path, symbol: str) -> Series:
    """Read one candle file, refusing anything malformed with ``file:line: problem``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (needed for {symbol})")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot parse as CSV: {e}") from None
    if tuple(df.columns) != COLUMNS:
        raise DataError(f"{path}:1: header is {','.join(df.columns)!r}, expected {','.join(COLUMNS)!r}")
    if df.empty:
        raise DataError(f"{path}: no rows")
    ts = pd.to_datetime(df["timestamp"], utc=True, errors="coerce", format="ISO8601")
    bad = ts.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}:{i + 2}: timestamp {df['timestamp'].iloc[i]!r} is not an ISO 8601 time")
    cols = {}
    for c in COLUMNS[1:]:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(v)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{path}:{i + 2}: {c} {df[c].iloc[i]!r} is not a finite number")
        cols[c] = v
    ts_ns = ts.dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
    step = np.diff(ts_ns)
    if (step <= 0).any():
        i = int(np.argmax(step <= 0)) + 1
        raise DataError(f"{path}:{i + 2}: timestamp {df['timestamp'].iloc[i]} is not after the previous row's")
    o, h, lo, c, v = (cols[k] for k in COLUMNS[1:])
    problems = [((o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0), "a price is not positive"),
                (h < lo, "high is below low"), (v < 0, "volume is negative"),
                ((h < np.maximum(o, c)) | (lo > np.minimum(o, c)), "open/close outside the high-low range")]
    for mask, what in problems:
        if mask.any():
            i = int(np.argmax(mask))
            raise DataError(f"{path}:{i + 2}: {what}")
    return Series(symbol, path, ts_ns, o, h, lo, c, v)
