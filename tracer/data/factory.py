"""Builds the market-data feed an agent reads from, from the settings (one place for every source)."""
from __future__ import annotations

from datetime import timedelta
from typing import Sequence

from tracer.config import Settings
from tracer.data.feed import Feed


def make_feed(settings: Settings, symbols: Sequence[str], interval: timedelta = timedelta(hours=1)) -> Feed:
    s = settings
    if s.feed == "replay":
        from tracer.data.replay import ReplayFeed
        return ReplayFeed(symbols, data_dir=s.data_dir or None, headlines_path=s.headlines_path or None,
                          interval=interval, lookback=s.lookback_bars,
                          max_staleness=timedelta(minutes=s.max_staleness_min), min_bars=s.min_bars,
                          headline_lookback=timedelta(hours=s.headline_lookback_h))
    raise ValueError(f"TB_FEED={s.feed!r}: no such feed")
