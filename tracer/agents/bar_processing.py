"""The bars of a cycle as the broker sees them (a mixin of :class:`~tracer.agents.loop.AgentLoop`): every bar
that closed since the last processed clock, in time order across symbols (after a gap too), the levels of a held
position that got no bar checked at the venue's price, and the equity at the midnight a gap spans (the new UTC
day's start, read by the daily loss limit)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Mapping

import numpy as np

from tracer.agents.kernel import Day, roll_day
from tracer.agents.protocols import TradingBroker
from tracer.data.feed import Feed, Snapshot
from tracer.execution.broker import BarReport
from tracer.models import Bar, PositionSide
from tracer.risk.correlation import aligned_returns


def cycle_returns(bars: Mapping[str, Any], now: datetime, interval: timedelta, lookback: int) -> dict[str, np.ndarray]:
    """The one-bar log returns the risk rules compare (correlation cap, VaR), by time: the ``lookback`` bar slots
    that end with the bar closing at ``now``, NaN where a symbol has a hole (the backtest builds the same from
    the same rows, :func:`tracer.backtest.runner.run_backtest`)."""
    end_ns, iv_ns = int((now - interval).timestamp() * 1e9), int(interval.total_seconds() * 1e9)
    return {sym: aligned_returns(b.index.asi8, b["close"].to_numpy(dtype=float), end_ns, iv_ns, lookback - 1)
            for sym, b in bars.items()}


class BarProcessing:
    broker: TradingBroker
    feed: Feed
    venue: bool
    day: str | None
    day_start_equity: float | None
    processed_until: datetime | None
    _midnight_equity: float | None = None
    _synced_prices: dict[str, float]       # set by every _process_bars before _equity_at reads it

    def _midnight_to_roll(self, now: datetime) -> datetime | None:
        """The midnight that starts ``now``'s UTC day when that day is yet to start here (None on the first day)."""
        day = roll_day(Day(self.day, self.day_start_equity), now, 0.0)
        if self.day is None or day.day == self.day:
            return None
        return day.start()

    def _process_bars(self, snap: Snapshot, now: datetime, after: datetime | None = None,
                      midnight: datetime | None = None) -> BarReport:
        """The broker sees the bars that closed after ``after`` (default: the last processed clock), in time order
        across symbols; with ``midnight``, the equity then is kept in ``_midnight_equity`` (the new day's start)."""
        # a venue broker first learns what happened on the venue (fills, stops, liquidations)
        total = self.broker.sync(now)
        self._synced_prices = dict(self.broker.last_price)     # a venue's prices now, which its equity is at
        interval = self.feed.interval
        after = self.processed_until if after is None else after
        todo: list[tuple[Any, int, str, int]] = []
        for k, (sym, bars) in enumerate(snap.bars.items()):
            ts_index = bars.index
            start = 0
            if after is not None:
                cutoff = after - interval   # bars with ts > cutoff are new
                start = int(np.searchsorted(ts_index.asi8, cutoff.timestamp() * 1e9, side="right"))
            else:
                start = len(bars) - 1
            todo += [(ts_index[i], k, sym, i) for i in range(max(start, 0), len(bars))]
        self._midnight_equity = None
        for ts, _, sym, i in sorted(todo, key=lambda t: (t[0], t[1])):
            if midnight is not None and self._midnight_equity is None and ts + interval > midnight:
                self._midnight_equity = self._equity_at(midnight, total)
            row = snap.bars[sym].iloc[i]
            bar = Bar(sym, ts.to_pydatetime(), float(row["open"]), float(row["high"]), float(row["low"]),
                      float(row["close"]), float(row["volume"]))
            self._add(total, self.broker.on_bar(bar))
        if midnight is not None and self._midnight_equity is None:
            self._midnight_equity = self._equity_at(midnight, total)
        if self.venue:
            # a position whose symbol got no bar this cycle (a coin adopted from the account outside the feed, a
            # symbol dropped from TB_SYMBOLS while held, a bar the gap policy refused) has its levels checked at
            # the venue's own price read by the sync: on a spot venue that check is the only stop there is
            for p in self.broker.positions():
                px = self.broker.last_price.get(p.symbol)
                if p.symbol not in snap.bars and px:
                    self._add(total, self.broker.on_bar(Bar(p.symbol, now - interval, px, px, px, px, 0.0)))
        return total

    def _equity_at(self, midnight: datetime, report: BarReport) -> float:
        """The equity at ``midnight``, read when the bars before it have been processed: the equity now less what
        the trades booked so far that closed after it made (a venue's sync books a stop that filled during the gap
        before any bar of it is seen). A paper broker's equity is marked by the bars; a venue's is its own, at its
        prices now: less each held position's move from its midnight close (the last price now) to those."""
        eq = self.broker.equity() - sum(t.pnl for t in report.trades if t.exit_ts >= midnight)
        if self.venue:
            for p in self.broker.positions():
                now_px = self._synced_prices.get(p.symbol)
                then_px = self.broker.last_price.get(p.symbol) if p.opened_at < midnight else p.entry_price
                if now_px and then_px:
                    eq -= (now_px - then_px) * p.qty * (1 if p.side is PositionSide.LONG else -1)
        return eq

    @staticmethod
    def _add(total: BarReport, rep: BarReport) -> None:
        total.fills += rep.fills
        total.updates += rep.updates
        total.trades += rep.trades
        total.exit_orders += rep.exit_orders
        total.closed += rep.closed
