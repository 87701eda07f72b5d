"""``tracer download``: market data from a venue into the candle CSV files the replay, the backtest and the study
read (``candles_<interval>_<BASE>USDT.csv``: ``timestamp,open,high,low,close,volume``, the bar's open time in
UTC), so that any period can be replayed.

- **Sources**: the feed's own bar sources (:mod:`tracer.data.sources`): Binance spot klines, Binance USD-M
  klines, Alpaca crypto bars, each paginating its venue's endpoint. The range is fetched in chunks (a progress
  bar counts them), oldest first.
- **Resume**: a file that exists is continued after its last bar; nothing already written is fetched or written
  again, so an interrupted download (Ctrl-C, a network error, a closed Terminal, kill -9, a power cut) is simply
  run again. Each chunk is written in one write and synced to disk; a last line that an interruption left half
  written is cut off first (:func:`repair_tail`).
- **Closed bars only**: a bar is written once it has closed (``open + interval <= now``).
- **Validation**: every bar is checked (finite, positive prices, ``low <= open, close <= high``, volume >= 0, on
  the interval's grid, after the last one written). A bad bar is not written and is listed with its reason;
  the holes the venue has (maintenance, an outage) are left as holes, as the live data has them, and recorded.
  The gap policy (:mod:`tracer.data.gaps`) decides what the agents do with them.
- **Record**: ``download_manifest.json`` in the folder says, per file: venue, symbol, interval, first and last
  bar, rows, each hole and each rejected bar, and when it was updated.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd

from tracer.data.gaps import find_gaps
from tracer.data.replay import interval_label
from tracer.data.validation import fmt_ts, td_ns
from tracer.symbols import binance_symbol, canonical

VENUES = ("binance", "binance-futures", "alpaca")
MANIFEST = "download_manifest.json"


class BarFetcher(Protocol):
    name: str

    def fetch(self, symbol: str, interval: timedelta, start: datetime, end: datetime) -> pd.DataFrame: ...


@dataclass
class FileReport:
    """What one download did to one candle file."""
    symbol: str
    path: Path
    added: int = 0
    first: str | None = None
    last: str | None = None
    rows: int = 0
    gaps: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    resumed_after: str | None = None


def parse_interval(text: str) -> timedelta:
    """``"1h"`` -> one hour (``<n>m``, ``<n>h``, ``<n>d``); ValueError otherwise."""
    import re
    m = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if not m or int(m.group(1)) <= 0:
        raise ValueError("use <n>m, <n>h or <n>d, e.g. 1h")
    return timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]: int(m.group(1))})


def candle_path(out_dir: Path, symbol: str, interval: timedelta) -> Path:
    return out_dir / f"candles_{interval_label(interval)}_{binance_symbol(symbol)}.csv"


def bar_problem(ts_ns: int, o: float, h: float, lo: float, c: float, v: float, interval_ns: int) -> str | None:
    """Why one bar cannot be written (None: it can). Pure."""
    if not all(math.isfinite(x) for x in (o, h, lo, c, v)):
        return "a value is not a finite number"
    if min(o, h, lo, c) <= 0:
        return "a price is not positive"
    if v < 0:
        return "negative volume"
    if lo > min(o, c) or h < max(o, c) or lo > h:
        return f"inconsistent high/low (o={o:g} h={h:g} l={lo:g} c={c:g})"
    if ts_ns % interval_ns:
        return "open time not on the interval's grid"
    return None


def _fmt(x: float) -> str:
    """A price or volume as short as it is exact (no 1.0000000000000002 from the venue's text)."""
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


HEADER = "timestamp,open,high,low,close,volume"
# a torn tail is at most what the last write left half done (one chunk: 720 bars of ~60 bytes); damage reaching
# further back is not an interrupted download, and the file is left alone
MAX_TORN_BYTES = 1 << 20


class CandleFileError(ValueError):
    """A candle file the download cannot continue (not a torn tail): named with its line, left untouched."""


def _row_time(line: bytes) -> int | None:
    """The open time (ns) of a complete ``timestamp,open,high,low,close,volume`` row, None when it is not one."""
    parts = line.rstrip(b"\r").split(b",")
    if len(parts) != 6:
        return None
    try:
        t = pd.Timestamp(parts[0].decode("ascii"))
        for x in parts[1:]:
            float(x)
    except (ValueError, OverflowError):     # UnicodeDecodeError is a ValueError
        return None
    if t is pd.NaT:
        return None
    return int((t.tz_localize("UTC") if t.tzinfo is None else t).value)


def complete_end(path: Path) -> tuple[int, int | None]:
    """Where a candle file's last complete line ends (bytes) and that line's open time (ns; None: the header, or
    no complete line at all). A complete line ends with a newline and is a full row (or the header): what follows
    it is what an interrupted download (a closed Terminal, kill -9, a power cut) left half written.
    CandleFileError, naming the line, when that would cut more than :data:`MAX_TORN_BYTES` or the file's first
    line is neither (not a candle file)."""
    block = 65536
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        pos, buf, hi = size, b"", 0        # buf: the file from byte pos; lines ending before buf[hi] are left
        while True:
            j = buf.rfind(b"\n", 0, hi)                    # the end of the last line left
            i = buf.rfind(b"\n", 0, max(j, 0))             # the end of the line before it
            if i < 0 and pos > 0:                          # that line starts further back: read more
                if size - pos > MAX_TORN_BYTES:
                    bad = pos
                    break
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                buf = f.read(step) + buf
                hi += step
                continue
            if j < 0:                                      # no newline at all (pos is 0)
                if f"{HEADER}\n".encode().startswith(buf[:hi]):
                    return 0, None                         # a torn header (or an empty file)
                bad = 0
                break
            start, end = pos + i + 1, pos + j + 1
            line = buf[i + 1:j]
            t = _row_time(line)
            if t is not None or (start == 0 and line.rstrip(b"\r") == HEADER.encode()):
                if size - end > MAX_TORN_BYTES:
                    bad = end
                    break
                return end, t
            if start == 0 or size - end > MAX_TORN_BYTES:
                bad = start
                break
            hi = j                                         # a torn or bad line: look at the one before it
        f.seek(0)
        n = 1 + sum(f.read(min(block, bad - k)).count(b"\n") for k in range(0, bad, block))
    raise CandleFileError(f"{path}:{n}: not a complete {HEADER} row, and more than an interrupted download "
                          f"leaves half written: the download does not touch it (fix or move the file)")


def repair_tail(path: Path) -> int | None:
    """Cut a candle file back to its last complete line (the row or header an interrupted download left whole),
    so that a re-run appends whole rows after it; that row's open time (ns), None for a missing or empty one."""
    if not path.is_file():
        return None
    end, t = complete_end(path)
    if end < path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())
    return t


def download_symbol(source: BarFetcher, symbol: str, interval: timedelta, start: datetime, end: datetime | None,
                    out_dir: Path, *, now: datetime | None = None, chunk_bars: int = 720,
                    step: Callable[[int], None] | None = None) -> FileReport:
    """Fetch ``symbol``'s bars in ``[start, end)`` (``end`` None: up to the last closed bar) into its candle file,
    resuming after the file's last bar. ``step(n)`` is told how many of the range's bars each chunk covered."""
    now = now or datetime.now(timezone.utc)
    iv = td_ns(interval)
    path = candle_path(out_dir, symbol, interval)
    rep = FileReport(canonical(symbol), path)
    start_ns = -(-int(pd.Timestamp(start).value) // iv) * iv          # the first open time on the grid
    stop_ns = min(int(pd.Timestamp(end).value) if end else 2 ** 62, int(pd.Timestamp(now).value) - iv + 1)
    done = repair_tail(path)
    if done is not None:
        rep.resumed_after = fmt_ts(done)
        start_ns = max(start_ns, done + iv)
    out_dir.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists() or path.stat().st_size == 0
    prev = done
    with open(path, "ab") as f:
        if new_file:
            f.write(f"{HEADER}\n".encode())
        a = start_ns
        while a < stop_ns:
            b = min(stop_ns, a + chunk_bars * iv)
            df = source.fetch(rep.symbol, interval, _dt(a), _dt(b - 1))
            ts = df.index.as_unit("ns").asi8 if len(df) else np.array([], dtype=np.int64)
            vals = df[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float) if len(df) else None
            rows: list[str] = []
            for i in np.argsort(ts, kind="stable"):
                t = int(ts[i])
                if t < a or t >= b:
                    continue            # outside the chunk (a venue answering more than asked)
                if prev is not None and t <= prev:
                    rep.rejected.append(f"{fmt_ts(t)}: duplicate or out of order")
                    continue
                o, h, lo, c, v = (float(x) for x in vals[i])    # type: ignore[index]
                why = bar_problem(t, o, h, lo, c, v, iv)
                if why:
                    rep.rejected.append(f"{fmt_ts(t)}: {why}")
                    continue
                rows.append(f"{pd.Timestamp(t, tz='UTC').strftime('%Y-%m-%dT%H:%M:%SZ')},{_fmt(o)},{_fmt(h)},"
                            f"{_fmt(lo)},{_fmt(c)},{_fmt(v)}\n")
                rep.added += 1
                prev = t
            # the chunk in one write, so that a kill leaves whole rows, and on disk before the next (a power cut
            # can then only tear this chunk's tail, which the next run cuts off: repair_tail)
            f.write("".join(rows).encode())
            f.flush()
            os.fsync(f.fileno())
            if step is not None:
                step((b - a) // iv)
            a = b
    _summarise(rep, path, iv)
    return rep


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def _summarise(rep: FileReport, path: Path, iv: int) -> None:
    df = pd.read_csv(path, usecols=["timestamp"])
    ts = pd.DatetimeIndex(pd.to_datetime(df["timestamp"], utc=True)).as_unit("ns").asi8 if len(df) \
        else np.array([], np.int64)
    rep.rows = len(ts)
    if len(ts):
        rep.first, rep.last = fmt_ts(int(ts[0])), fmt_ts(int(ts[-1]))
    rep.gaps = [str(g) for g in find_gaps(ts, iv)]


def write_manifest(out_dir: Path, venue: str, interval: timedelta, reports: list[FileReport]) -> Path:
    """Merge this download's reports into the folder's ``download_manifest.json``."""
    p = out_dir / MANIFEST
    try:
        data: dict[str, Any] = json.loads(p.read_text()) if p.is_file() else {}
    except ValueError:
        data = {}
    files = data.setdefault("files", {})
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for r in reports:
        old = files.get(r.path.name, {})
        files[r.path.name] = {"venue": venue, "symbol": r.symbol, "interval": interval_label(interval),
                              "first": r.first, "last": r.last, "rows": r.rows, "gaps": r.gaps,
                              "rejected": list(dict.fromkeys(old.get("rejected", []) + r.rejected))[-1000:],
                              "updated_at": now}
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(p)
    return p


def make_source(venue: str, s: Any) -> BarFetcher:
    """The bar source a venue name stands for, configured from the settings (its URLs and keys)."""
    from tracer.data.factory import make_bar_source
    name = {"binance": "binance_spot", "binance-futures": "binance_usdm", "alpaca": "alpaca"}.get(venue)
    if name is None:
        raise ValueError(f"--venue {venue!r}: one of {', '.join(VENUES)}")
    src: BarFetcher = make_bar_source(name, s)
    return src
