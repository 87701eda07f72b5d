"""Failover chain over bar sources: the first source whose bars pass validation wins.

For one symbol, :meth:`SourceChain.fetch` tries the sources in order:

1. a source whose circuit breaker is open is skipped (``circuit_open: ...``);
2. its bars opening in ``[c - lookback * interval, now)`` are fetched, ``c`` being the last
   interval boundary at or before ``now`` (epoch-aligned); an error is a failure;
3. bars still forming at ``now`` (``ts + interval > now``) are dropped, the last
   ``lookback`` kept, and :func:`tracer.data.validation.validate_bars` judges the rest:
   bad bars (``high_below_low``, ``gap``, ``stale`` ...) are a failure of the source (with
   ``max_gap_bars``, the gap policy of :mod:`tracer.data.gaps` judges holes);
4. a failure counts against the source's breaker; an :class:`UnsupportedSymbol` (or an
   empty answer: the venue does not list the symbol) does not.

The winner comes back as a :class:`BarSet` naming its source, with every attempt and
its outcome; when every source fails, :class:`ChainFailure` carries all the reasons, and the
closed bars of the refused answer whose newest bar is the latest (``bars``; None when no source
answered with any): a paper broker still checks a held position's exits on them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Sequence

import pandas as pd

from tracer.data.sources.base import (BarSet, BarSource, CircuitBreaker, SourceError, UnsupportedSymbol,
                                       utc_from_ns)
from tracer.data.validation import td_ns, to_ns, validate_bars
from tracer.logs import kv

__all__ = ["SourceChain", "ChainFailure", "trim_closed"]


class ChainFailure(Exception):
    """No source gave valid bars. ``attempts``: ``(source, reason)`` per source, in order; ``bars``: the
    refused closed bars with the latest newest bar (the first source's among equals), None when none came."""

    def __init__(self, symbol: str, attempts: Sequence[tuple[str, str]], bars: pd.DataFrame | None = None):
        self.symbol = symbol
        self.attempts = tuple(attempts)
        self.bars = bars
        detail = "; ".join(f"{s}: {r}" for s, r in self.attempts) or "no source configured"
        super().__init__(f"no_source: {detail}")

    @property
    def reason(self) -> str:
        return str(self)


def trim_closed(df: pd.DataFrame, now: datetime, interval: timedelta, lookback: int) -> pd.DataFrame:
    """Pure: the rows whose close time ``ts + interval`` is <= ``now``, the last ``lookback`` of them
    (row order kept)."""
    if df.empty:
        return df
    cutoff = to_ns(now) - td_ns(interval)
    ts = df.index.as_unit("ns").asi8
    return df[ts <= cutoff].iloc[-lookback:]


@dataclass
class SourceChain:
    """Ordered sources, one :class:`CircuitBreaker` each (built from ``threshold`` /
    ``cooldown_s`` / ``clock`` when not given)."""
    sources: Sequence[BarSource]
    threshold: int = 3
    cooldown_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    logger: logging.Logger | None = None

    def __post_init__(self) -> None:
        self.breakers: dict[str, CircuitBreaker] = {
            s.name: CircuitBreaker(self.threshold, self.cooldown_s, self.clock) for s in self.sources}

    def fetch(self, symbol: str, now: datetime, interval: timedelta, lookback: int, min_bars: int = 1,
              max_staleness: timedelta | None = None, max_gap_bars: int | None = None) -> BarSet:
        """Valid closed bars of ``symbol`` at ``now`` from the first source that has them.

        Raises :class:`ChainFailure` when none has."""
        iv_ns = td_ns(interval)
        now_ns = to_ns(now)
        last_close = now_ns - now_ns % iv_ns  # the newest bar close at or before now (UTC-aligned)
        start = utc_from_ns(last_close - lookback * iv_ns)
        attempts: list[tuple[str, str]] = []
        refused: pd.DataFrame | None = None
        for src in self.sources:
            br = self.breakers[src.name]
            if not br.allow():
                attempts.append((src.name, f"circuit_open: {br.remaining_s():.0f}s left ({br.last_reason})"))
                continue
            try:
                raw = src.fetch(symbol, interval, start, now)
                if raw.empty:  # the venue has nothing for this symbol: not a fault of the venue
                    raise UnsupportedSymbol(src.name, "no bars for this symbol")
                bars = trim_closed(raw, now, interval, lookback)
                reason = validate_bars(bars, now, interval, max_staleness, min_bars, max_gap_bars)
                if reason is not None:
                    if len(bars) and (refused is None or bars.index.max() > refused.index.max()):
                        refused = bars
                    raise SourceError(src.name, f"invalid: {reason}")
            except UnsupportedSymbol as e:
                attempts.append((src.name, f"unsupported: {e.reason}"))
                continue
            except SourceError as e:
                self._fail(br, src.name, symbol, e.reason, attempts)
                continue
            except Exception as e:  # a bug or an odd answer in one source must not stop the others
                self._fail(br, src.name, symbol, f"error: {type(e).__name__}", attempts)
                continue
            br.record_success()
            bars = bars.copy()
            bars.attrs["source"] = src.name
            return BarSet(symbol=symbol, source=src.name, bars=bars, attempts=tuple(attempts))
        raise ChainFailure(symbol, attempts, refused)

    def _fail(self, br: CircuitBreaker, name: str, symbol: str, reason: str,
              attempts: list[tuple[str, str]]) -> None:
        br.record_failure(reason)
        attempts.append((name, reason))
        if self.logger is not None:
            self.logger.warning(kv("source_failed", source=name, symbol=symbol, reason=reason,
                                   breaker=br.state, failures=br.failures))
