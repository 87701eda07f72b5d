"""Replay feed over stored CSV candles and headlines (the bundled data by default).

Files (see ``bundled/PROVENANCE.md``):

* candles ``candles_<interval>_<BASE>USDT.csv``: ``timestamp,open,high,low,close,volume``,
  ``timestamp`` = bar OPEN time, ISO-8601 UTC (``2021-10-01T00:00:00Z``);
* headlines ``headlines.csv``: ``published_at,source,title,symbols``.

Each file is read once into numpy arrays; ``ReplayFeed.snapshot(now)`` then finds the
visible window with ``searchsorted`` (O(log n)) and validates it, so stepping an agent
through the whole history costs the same per cycle at the start and at the end.

Holes in the candles follow the gap policy of :mod:`tracer.data.gaps` (as the live feed and
the backtest do). A folder without ``headlines.csv`` replays price-only (logged once).
"""
from __future__ import annotations

import csv
import hashlib
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tracer.cli_args import headlines_file
from tracer.data.feed import Snapshot
from tracer.data.gaps import DEFAULT_MAX_GAP_BARS, find_gaps, window_bounds
from tracer.data.validation import COLUMNS, sound_rows, td_ns, to_ns, validate_arrays
from tracer.logs import kv
from tracer.models import Headline
from tracer.symbols import binance_symbol, canonical

__all__ = [
    "bundled_dir", "candle_path", "interval_label", "load_candles", "load_headlines",
    "headline_id", "DataFileError", "ReplayFeed",
]

_COLS_INDEX = pd.Index(list(COLUMNS))


# --------------------------------------------------------------------------- paths

def bundled_dir() -> Path:
    """Folder of the data shipped with the package (``tracer/data/bundled``)."""
    try:
        from importlib.resources import files

        p = Path(str(files("tracer.data") / "bundled"))
        if p.is_dir():
            return p
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - odd installs
        pass
    return Path(__file__).resolve().parent / "bundled"


def interval_label(interval: timedelta | str) -> str:
    """``timedelta(hours=1)`` -> ``"1h"`` (``d``/``h``/``m``/``s``); a string is returned as is."""
    if isinstance(interval, str):
        return interval
    secs = td_ns(interval) // 1_000_000_000
    if secs <= 0 or td_ns(interval) % 1_000_000_000:
        raise ValueError(f"no file label for interval {interval!r}")
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if secs % size == 0:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def candle_path(data_dir: Path | str, symbol: str, interval: timedelta | str = "1h") -> Path:
    """``(dir, "BTC/USD", "1h")`` -> ``dir/candles_1h_BTCUSDT.csv``."""
    return Path(data_dir) / f"candles_{interval_label(interval)}_{binance_symbol(symbol)}.csv"


def replay_data_problems(s: Any, agents: Sequence[str] = ("hybrid", "futures")) -> list[str]:
    """With ``TB_FEED=replay``, what would keep ``agents`` from starting for want of data: a missing
    ``TB_DATA_DIR``, a ``TB_HEADLINES_PATH`` naming no file, or a traded symbol without its candle file, each naming
    its variable (checked before the agent
    starts, and by ``tracer check-config``, so that it is a message, not a traceback and a restart loop)."""
    if s.feed != "replay":
        return []
    d = Path(s.data_dir) if s.data_dir else bundled_dir()
    if not d.is_dir():
        return [f"TB_DATA_DIR={s.data_dir}: no such folder (leave it empty for the bundled candles)"]
    out = []
    try:        # as the agents read it (they refuse a named file that does not exist)
        headlines_file(None, s.headlines_path)
    except ValueError as e:
        out.append(str(e))
    for agent, var, symbols in (("hybrid", "TB_SYMBOLS", s.symbols), ("futures", "TB_FUTURES_SYMBOLS",
                                                                       s.futures_symbols)):
        missing = [sym for sym in symbols if not candle_path(d, sym).is_file()] if agent in agents else []
        if missing:
            out.append(f"{var}: no candle file for {', '.join(missing)} in {d} (TB_DATA_DIR; `tracer download` "
                       f"fetches candles, or leave the symbol out)")
    return out


# --------------------------------------------------------------------------- loaders

class DataFileError(ValueError):
    """A candle or headlines file that cannot be read; the message names the file (and the line where known)."""


def load_candles(path: Path | str) -> pd.DataFrame:
    """Read a candle CSV as it is stored (row order kept, nothing dropped or filled).

    Returns a DataFrame indexed by ``ts`` (bar open time, ``datetime64[ns, UTC]``) with
    float64 columns open, high, low, close, volume. Empty cells become NaN.
    Raises ``FileNotFoundError`` for a missing file, :class:`DataFileError` (a ValueError naming the file) for
    one that does not parse, a bad header or an unparsable timestamp.
    """
    path = Path(path)
    try:        # pandas' messages do not name the file (ParserError and UnicodeDecodeError are ValueErrors)
        raw = pd.read_csv(path, dtype={c: "float64" for c in COLUMNS}, keep_default_na=True)
    except ValueError as e:
        raise DataFileError(f"{path}: cannot be read as a candle file: {str(e).strip()}") from None
    missing = [c for c in ("timestamp", *COLUMNS) if c not in raw.columns]
    if missing:
        raise DataFileError(f"{path}: missing columns {missing}")
    try:
        ts = pd.to_datetime(raw["timestamp"], utc=True, format="ISO8601")
    except ValueError as e:
        raise DataFileError(f"{path}: {str(e).strip()}") from None
    idx = pd.DatetimeIndex(ts).as_unit("ns").rename("ts")
    values = np.ascontiguousarray(raw[list(COLUMNS)].to_numpy(dtype=np.float64))
    return pd.DataFrame(values, index=idx, columns=_COLS_INDEX.copy())


def headline_id(source: str, title: str, published_at: datetime) -> str:
    """Stable id: first 16 hex chars of sha1 of ``f"{source}|{title}|{published_at.isoformat()}"``,
    with ``published_at`` in UTC (so ``...T15:53:00+00:00``)."""
    iso = published_at.astimezone(timezone.utc).isoformat()
    return hashlib.sha1(f"{source}|{title}|{iso}".encode("utf-8")).hexdigest()[:16]


def _parse_utc(s: str) -> datetime:
    t = datetime.fromisoformat(s.strip())
    if t.tzinfo is None:  # the bundled headlines are treated as UTC (PROVENANCE.md)
        return t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def load_headlines(path: Path | str) -> list[Headline]:
    """Read ``published_at,source,title[,symbols]`` rows into Headlines, oldest first.

    Ties keep file order; rows with an empty title are skipped and exact repeats (same
    id) are kept once. ``url`` is empty (not in the file).
    """
    out: list[Headline] = []
    seen: set[str] = set()
    parsed: dict[str, datetime] = {}  # many headlines share a minute
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [c.strip() for c in next(reader, [])]
        try:
            i_pub, i_src, i_title = (header.index(c) for c in ("published_at", "source", "title"))
        except ValueError:
            raise DataFileError(f"{path}: header must contain published_at, source, title; got {header}") from None
        for row in reader:
            if not row:
                continue
            try:
                title = row[i_title].strip()
                if not title:
                    continue
                source = row[i_src].strip()
                raw = row[i_pub]
                published = parsed.get(raw)
                if published is None:
                    published = parsed[raw] = _parse_utc(raw)
            except (IndexError, ValueError) as e:
                raise DataFileError(f"{path}:{reader.line_num}: {e}") from None
            hid = headline_id(source, title, published)
            if hid in seen:
                continue
            seen.add(hid)
            out.append(Headline(id=hid, published_at=published, source=source, title=title))
    out.sort(key=lambda h: h.published_at)  # stable
    return out


# --------------------------------------------------------------------------- feed

class _Series:
    """One symbol's candles held as arrays, plus a full frame to slice from."""
    __slots__ = ("ts", "values", "frame", "ordered")

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.ts = frame.index.asi8  # int64 ns (load_candles guarantees the unit)
        self.values = frame.to_numpy(dtype=np.float64, copy=False)
        # searchsorted needs a non-decreasing axis; a file that goes backwards falls
        # back to a linear scan (still look-ahead safe) and gets rejected by validation
        # whenever the disorder is inside the visible window.
        self.ordered = bool(len(self.ts) < 2 or (np.diff(self.ts) >= 0).all())


def _utc_dt(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(ns) // 1_000)


class ReplayFeed:
    """:class:`tracer.data.feed.Feed` over stored CSVs.

    ``snapshot(now)`` gives, per symbol, the bars that opened in the last ``lookback`` intervals
    and closed by ``now`` (``ts + interval <= now``; ``lookback`` rows when nothing is missing),
    validated with ``validate_bars(max_staleness, min_bars, max_gap_bars)`` (failures go to
    ``rejected``; an accepted window with a hole gets a ``notes`` entry), and the headlines with
    ``now - headline_lookback < published_at <= now``. ``headlines_path`` None: the folder's
    ``headlines.csv``, or none at all (price-only, logged) when the folder has none.

    Clock: ``timeline()`` lists the bar close times every symbol has; an agent starts at
    ``first_time(min_history)`` and steps with ``next_time(now)`` until it returns None.
    """

    def __init__(
        self,
        symbols: list[str] | tuple[str, ...],
        data_dir: Path | str | None = None,
        headlines_path: Path | str | None = None,
        interval: timedelta = timedelta(hours=1),
        lookback: int = 256,
        max_staleness: timedelta | None = None,
        min_bars: int = 60,
        headline_lookback: timedelta = timedelta(hours=24),
        max_gap_bars: int = DEFAULT_MAX_GAP_BARS,
        logger: logging.Logger | None = None,
    ) -> None:
        self.symbols: list[str] = list(dict.fromkeys(canonical(s) for s in symbols))
        if not self.symbols:
            raise ValueError("ReplayFeed needs at least one symbol")
        self.interval: timedelta = interval
        self._interval_ns = td_ns(interval)
        if self._interval_ns <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        if lookback < 1:
            raise ValueError(f"lookback must be >= 1, got {lookback}")
        if min_bars > lookback:
            raise ValueError(f"min_bars ({min_bars}) > lookback ({lookback}): every symbol would be rejected")
        self.lookback = int(lookback)
        self.min_bars = int(min_bars)
        self.max_staleness: timedelta = interval if max_staleness is None else max_staleness
        self._stale_ns = td_ns(self.max_staleness)
        self.headline_lookback = headline_lookback
        self._hl_ns = td_ns(headline_lookback)
        if int(max_gap_bars) < 0:
            raise ValueError(f"max_gap_bars must be >= 0, got {max_gap_bars!r}")
        self.max_gap_bars = int(max_gap_bars)
        log = logger or logging.getLogger("tracer.feed")

        self.data_dir = Path(data_dir) if data_dir is not None else bundled_dir()
        self._series: dict[str, _Series] = {}
        for sym in self.symbols:
            path = candle_path(self.data_dir, sym, interval)
            if not path.is_file():
                raise FileNotFoundError(f"no candle file for {sym}: {path}")
            self._series[sym] = _Series(load_candles(path))

        self.headlines_path: Path | None = (Path(headlines_path) if headlines_path is not None
                                            else self.data_dir / "headlines.csv")
        self._headlines: list[Headline] = []
        if self.headlines_path.is_file():
            self._headlines = load_headlines(self.headlines_path)
        elif headlines_path is not None:     # asked for by name: a typo must not turn into price-only
            raise FileNotFoundError(f"no headlines file: {self.headlines_path}")
        else:
            log.warning(kv("headlines_missing", path=str(self.headlines_path), mode="price-only",
                           note="no headlines.csv in the candle folder: every decision is price-only"))
            self.headlines_path = None
        self._h_ns = np.fromiter((to_ns(h.published_at) for h in self._headlines),
                                 dtype=np.int64, count=len(self._headlines))

        common: np.ndarray | None = None
        for s in self._series.values():
            closes = np.unique(s.ts) + self._interval_ns
            common = closes if common is None else np.intersect1d(common, closes, assume_unique=True)
        self._timeline_ns: np.ndarray = common if common is not None else np.empty(0, np.int64)
        self._timeline_dt: list[datetime] | None = None

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, now: datetime) -> Snapshot:
        now_ns = to_ns(now)
        cutoff = now_ns - self._interval_ns  # visible bars have ts <= cutoff
        bars: dict[str, pd.DataFrame] = {}
        rejected: dict[str, str] = {}
        notes: dict[str, str] = {}
        exit_bars: dict[str, pd.DataFrame] = {}
        lookback, iv = self.lookback, self._interval_ns
        for sym, s in self._series.items():
            if s.ordered:
                lo, hi = window_bounds(s.ts, now_ns, iv, lookback)
                ts, vals = s.ts[lo:hi], s.values[lo:hi]
                take: slice | np.ndarray = slice(lo, hi)
            else:
                take = np.flatnonzero((s.ts <= cutoff) & (s.ts > now_ns - (lookback + 1) * iv))
                ts, vals = s.ts[take], s.values[take]
            reason = validate_arrays(ts, vals, now_ns, iv, self._stale_ns, self.min_bars, self.max_gap_bars)
            if reason is None:
                # iloc on the full frame: cheap, and copy-on-write keeps the feed's own
                # data safe from a caller that edits its slice.
                bars[sym] = s.frame.iloc[take]
                gaps = find_gaps(ts, iv)
                if gaps:
                    notes[sym] = "gap accepted: " + ", ".join(map(str, gaps))
            else:
                rejected[sym] = reason
                rows = np.arange(lo, hi) if isinstance(take, slice) else take
                sound = rows[sound_rows(ts, vals)]
                if len(sound):
                    exit_bars[sym] = s.frame.iloc[sound]
        h_lo = int(np.searchsorted(self._h_ns, now_ns - self._hl_ns, side="right"))
        h_hi = int(np.searchsorted(self._h_ns, now_ns, side="right"))
        return Snapshot(now=now, bars=bars, headlines=self._headlines[h_lo:h_hi], rejected=rejected, notes=notes,
                        exit_bars=exit_bars)

    # ------------------------------------------------------------------ clock
    def timeline(self) -> list[datetime]:
        """Bar close times (UTC) present for every symbol, ascending."""
        if self._timeline_dt is None:
            self._timeline_dt = [_utc_dt(x) for x in self._timeline_ns]
        return list(self._timeline_dt)

    def timeline_ns(self) -> np.ndarray:
        """``timeline()`` as int64 ns since the epoch (read-only view)."""
        v = self._timeline_ns.view()
        v.flags.writeable = False
        return v

    def first_time(self, min_history: int | None = None) -> datetime:
        """Close time of the common bar at index ``min_history - 1`` (default ``min_bars``):
        the first ``now`` at which every symbol has ``min_history`` closed bars."""
        k = self.min_bars if min_history is None else int(min_history)
        if k < 1:
            raise ValueError(f"min_history must be >= 1, got {k}")
        if k > len(self._timeline_ns):
            raise ValueError(f"min_history {k} > {len(self._timeline_ns)} common bars")
        return _utc_dt(self._timeline_ns[k - 1])

    def next_time(self, after: datetime) -> datetime | None:
        """The first common close time strictly after ``after``; None at the end of the data."""
        i = int(np.searchsorted(self._timeline_ns, to_ns(after), side="right"))
        if i >= len(self._timeline_ns):
            return None
        return _utc_dt(self._timeline_ns[i])

    def last_time(self) -> datetime | None:
        """The last common close time (None when the symbols share no bar)."""
        return _utc_dt(self._timeline_ns[-1]) if len(self._timeline_ns) else None

    @property
    def headlines(self) -> list[Headline]:
        """All loaded headlines, oldest first (a copy of the list)."""
        return list(self._headlines)
