"""Live feed: bars from the failover chain, headlines from the news providers, deduped.

:class:`LiveFeed` implements :class:`tracer.data.feed.Feed` for wall-clock trading:

* bars: for each symbol, :meth:`tracer.data.sources.chain.SourceChain.fetch` at ``now``
  (closed bars only, validated; the bar set names its source in ``bars.attrs["source"]``
  and in :attr:`LiveFeed.last_sources`); a symbol no source could serve goes to
  ``rejected`` with ``no_source: <source>: <reason>; ...``, and the sound bars of the refused answer
  to ``exit_bars`` (a held position's exits);
* headlines: every provider is asked for ``(now - headline_lookback, now]``, the answers
  go into one :class:`tracer.news.dedupe.HeadlineBook` (one story once, across providers
  and cycles) and the snapshot holds the book's headlines in that window, oldest first.

Holes in the bars follow the gap policy of :mod:`tracer.data.gaps` (``max_gap_bars``), as in
the replay and the backtest: a venue that misses the bar closing at ``now`` fails over to the
next; an accepted hole is named in ``Snapshot.notes``.

No look-ahead, whatever the providers send: a bar closing after ``now`` (the one still
forming) and a headline published after ``now`` are never returned.

Clock: the agent loop steps with :meth:`first_time` / :meth:`next_time`; here they follow
the wall clock (``clock``/``sleep`` injectable): ``next_time(after)`` is the first bar
close after ``after`` (never one before the latest close at the wall clock), reached by
sleeping until it has passed plus ``settle`` (venues publish a closed bar a moment after
its close).
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Sequence

import pandas as pd

from tracer.data.feed import Snapshot
from tracer.data.gaps import DEFAULT_MAX_GAP_BARS, find_gaps
from tracer.data.sources.chain import ChainFailure, SourceChain
from tracer.data.validation import frame_arrays, sound_rows, td_ns, to_ns
from tracer.logs import kv
from tracer.models import Headline
from tracer.news.dedupe import HeadlineBook
from tracer.news.source import HeadlineSource
from tracer.symbols import canonical

__all__ = ["LiveFeed"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _wall() -> datetime:
    return datetime.now(timezone.utc)


class LiveFeed:
    def __init__(
        self,
        symbols: Sequence[str],
        chain: SourceChain,
        news: Sequence[HeadlineSource] = (),
        interval: timedelta = timedelta(hours=1),
        lookback: int = 256,
        min_bars: int = 60,
        max_staleness: timedelta | None = None,
        headline_lookback: timedelta = timedelta(hours=24),
        book: HeadlineBook | None = None,
        clock: Callable[[], datetime] = _wall,
        sleep: Callable[[float], None] = time.sleep,
        settle: timedelta = timedelta(seconds=5),
        logger: logging.Logger | None = None,
        max_gap_bars: int = DEFAULT_MAX_GAP_BARS,
    ) -> None:
        self.symbols: list[str] = list(dict.fromkeys(canonical(s) for s in symbols))
        if not self.symbols:
            raise ValueError("LiveFeed needs at least one symbol")
        if td_ns(interval) <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        if min_bars > lookback:
            raise ValueError(f"min_bars ({min_bars}) > lookback ({lookback}): every symbol would be rejected")
        if int(max_gap_bars) < 0:
            raise ValueError(f"max_gap_bars must be >= 0, got {max_gap_bars!r}")
        self.max_gap_bars = int(max_gap_bars)
        self.interval: timedelta = interval
        self.chain = chain
        self.news = list(news)
        self.lookback = int(lookback)
        self.min_bars = int(min_bars)
        self.max_staleness = interval if max_staleness is None else max_staleness
        self.headline_lookback = headline_lookback
        self.book = book if book is not None else HeadlineBook(retention=max(headline_lookback * 2, timedelta(hours=1)))
        self.clock = clock
        self.sleep = sleep
        self.settle = settle
        self.log = logger or logging.getLogger("tracer.feed")
        self.last_sources: dict[str, str] = {}

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, now: datetime) -> Snapshot:
        if now.tzinfo is None:
            raise ValueError(f"naive datetime {now!r}: times must be timezone-aware UTC")
        now_ns = to_ns(now)
        iv_ns = td_ns(self.interval)
        bars: dict[str, pd.DataFrame] = {}
        rejected: dict[str, str] = {}
        notes: dict[str, str] = {}
        exit_bars: dict[str, pd.DataFrame] = {}
        for sym in self.symbols:
            try:
                got = self.chain.fetch(sym, now, self.interval, self.lookback, self.min_bars, self.max_staleness,
                                       self.max_gap_bars)
            except ChainFailure as e:
                rejected[sym] = e.reason
                self.log.warning(kv("bars_rejected", symbol=sym, reason=e.reason))
                if e.bars is not None:     # a held position's exits are still checked on them (paper broker)
                    ok = sound_rows(*frame_arrays(e.bars))
                    if ok.any():
                        exit_bars[sym] = e.bars[ok]
                continue
            df = got.bars
            # belt and braces: the chain already drops bars still forming at now
            if len(df) and int(df.index.as_unit("ns").asi8[-1]) + iv_ns > now_ns:
                rejected[sym] = "future_bar: source returned a bar closing after now"
                continue
            bars[sym] = df
            self.last_sources[sym] = got.source
            gaps = find_gaps(df.index.as_unit("ns").asi8, iv_ns)
            if gaps:
                notes[sym] = "gap accepted: " + ", ".join(map(str, gaps))
        return Snapshot(now=now, bars=bars, headlines=self.headlines(now), rejected=rejected, notes=notes,
                        exit_bars=exit_bars)

    def headlines(self, now: datetime) -> list[Headline]:
        """Ask every provider, merge into the book, return the window ``(now - lookback, now]``."""
        start = now - self.headline_lookback
        for src in self.news:
            try:
                got = src.fetch(self.symbols, start, now)
            except Exception as e:  # a provider must never stop the cycle
                self.log.warning(kv("news_failed", source=getattr(src, "name", "?"), error=type(e).__name__))
                continue
            fresh = [h for h in got if h.published_at <= now]
            if len(fresh) < len(got):
                self.log.info(kv("news_future_dropped", source=src.name, count=len(got) - len(fresh)))
            self.book.add(fresh, now)
        return self.book.window(start, now)

    # ------------------------------------------------------------------ clock
    def _boundary_at_or_before(self, t: datetime) -> datetime:
        iv = td_ns(self.interval)
        ns = to_ns(t)
        return _EPOCH + timedelta(microseconds=(ns - ns % iv) // 1_000)

    def first_time(self, min_history: int | None = None) -> datetime:
        """The last bar close at or before the wall clock (history comes from the venues)."""
        return self._boundary_at_or_before(self.clock())

    def latest_time(self) -> datetime:
        """The latest bar close the venues have published by now (``settle`` after it; no wait)."""
        return self._boundary_at_or_before(self.clock() - self.settle)

    def next_time(self, after: datetime) -> datetime:
        """The first bar close after ``after``, sleeping until the wall clock is past it (+ settle).

        A live feed does not step through the past: when ``after`` is more than one interval
        behind the wall clock (a restart, or a replay start date), the latest close at or before
        the wall clock is returned instead, at once."""
        nxt = self._boundary_at_or_before(after) + self.interval
        nxt = max(nxt, self._boundary_at_or_before(self.clock()))
        while True:
            wait = (nxt + self.settle - self.clock()).total_seconds()
            if wait <= 0:
                return nxt
            self.sleep(wait)

    def last_time(self) -> datetime | None:
        """None: a live feed has no end."""
        return None
