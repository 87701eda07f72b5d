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
from tracer.data.validation import to_ns
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
    _bars_seen: dict[str, int]             # symbol -> open time (ns) of its newest bar looked at; reset at start

    def _midnight_to_roll(self, now: datetime) -> datetime | None:
        """The midnight that starts ``now``'s UTC day when that day is yet to start here (None on the first day)."""
        day = roll_day(Day(self.day, self.day_start_equity), now, 0.0)
        if self.day is None or day.day == self.day:
            return None
        return day.start()

    def _process_bars(self, snap: Snapshot, now: datetime, after: datetime | None = None,
                      midnight: datetime | None = None) -> BarReport:
        """The broker sees the bars that closed after ``after`` (default: per symbol, the newest bar it already saw,
        else the last processed clock), in time order across symbols; with ``midnight``, the equity then is kept
        in ``_midnight_equity`` (the new day's start). A paper broker also gets the bars of a symbol the gap policy
        skips (``snap.exit_bars``) while it holds a position or an order there: the stops, targets and fills the
        backtest checks on every bar of a held symbol are checked here too (the decisions stay skipped)."""
        # a venue broker first learns what happened on the venue (fills, stops, liquidations)
        total = self.broker.sync(now)
        self._synced_prices = dict(self.broker.last_price)     # a venue's prices now, which its equity is at
        interval = self.feed.interval
        busy = set() if self.venue else \
            {p.symbol for p in self.broker.positions()} | {o.symbol for o in self.broker.open_orders()}
        frames = dict(snap.bars)
        frames.update({sym: b for sym, b in snap.exit_bars.items() if sym not in frames})
        order = {sym: k for k, sym in enumerate(self.feed.symbols)}      # ties: the feed's order, as the backtest
        seen = self._bars_seen if after is None else {}
        since = self.processed_until if after is None else after
        cutoff = None if since is None else to_ns(since - interval)     # bars with ts > cutoff are new
        todo: list[tuple[Any, int, str, int]] = []
        for sym, bars in frames.items():
            ts_index = bars.index
            if not len(bars):
                continue
            ts_ns = ts_index.as_unit("ns").asi8
            # per symbol: a bar that one symbol's source had late (after its close) is still new at the next cycle
            last = seen.get(sym, cutoff)
            start = len(bars) - 1 if last is None else int(np.searchsorted(ts_ns, last, side="right"))
            self._bars_seen[sym] = max(int(ts_ns[-1]), self._bars_seen.get(sym, int(ts_ns[-1])))
            if sym in snap.bars or sym in busy:
                todo += [(ts_index[i], order.get(sym, len(order)), sym, i) for i in range(max(start, 0), len(bars))]
        self._midnight_equity = None
        for ts, _, sym, i in sorted(todo, key=lambda t: (t[0], t[1])):
            if midnight is not None and self._midnight_equity is None and ts + interval > midnight:
                self._midnight_equity = self._equity_at(midnight, total, snap.bars)
            row = frames[sym].iloc[i]
            bar = Bar(sym, ts.to_pydatetime(), float(row["open"]), float(row["high"]), float(row["low"]),
                      float(row["close"]), float(row["volume"]))
            self._add(total, self.broker.on_bar(bar))
        if midnight is not None and self._midnight_equity is None:
            self._midnight_equity = self._equity_at(midnight, total, snap.bars)
        if self.venue:
            # a position whose symbol got no bar this cycle (a coin adopted from the account outside the feed, a
            # symbol dropped from TB_SYMBOLS while held, a bar the gap policy refused) has its levels checked at
            # the venue's own price read by the sync: on a spot venue that check is the only stop there is
            for p in self.broker.positions():
                px = self.broker.last_price.get(p.symbol)
                if p.symbol not in snap.bars and px:
                    self._add(total, self.broker.on_bar(Bar(p.symbol, now - interval, px, px, px, px, 0.0)))
        return total

    def _equity_at(self, midnight: datetime, report: BarReport, bars: Mapping[str, Any]) -> float:
        """The equity at ``midnight``, read when the bars before it have been processed. A paper broker's equity is
        marked by those bars. A venue's is its own, at its prices now: less what happened since midnight, which
        its sync may have booked before any bar of the gap is seen (a stop that filled in it): a trade closed
        since then counts its whole P&L when it opened after midnight, else only its part after midnight (its
        move from the midnight close, its exit fee, the funding paid since); a held position its move from the
        midnight close (from its entry, fee included, when it opened after midnight) and its funding since.
        The midnight close is that of the symbol's bar closing at midnight (:meth:`_midnight_price`)."""
        eq = self.broker.equity()
        if not self.venue:
            return eq
        funding_after: dict[str | None, float] = {}     # entry order id -> funding paid since midnight
        for _, fp, entry in report.funding:
            if fp.ts >= midnight:
                funding_after[entry] = funding_after.get(entry, 0.0) + fp.amount
        entry_fee = {p.entry_order_id: p.entry_fee for p in report.closed}
        for t in report.trades:
            if t.exit_ts < midnight:
                continue
            after = funding_after.pop(t.entry_order_id, 0.0)
            if t.entry_ts >= midnight:
                eq -= t.pnl
                continue
            s = 1 if t.side is PositionSide.LONG else -1
            mid = self._midnight_price(t.symbol, bars, midnight, s, t.entry_price, t.exit_price)
            # what it made up to midnight stays in the day before (an entry fee not known: taken as 0, which
            # leaves more of the trade's loss to the new day)
            before = (mid - t.entry_price) * t.qty * s - entry_fee.get(t.entry_order_id, 0.0) - (-t.funding - after)
            eq -= t.pnl - before
        for p in self.broker.positions():
            now_px = self._synced_prices.get(p.symbol)
            if not now_px:
                continue
            s = 1 if p.side is PositionSide.LONG else -1
            if p.opened_at < midnight:
                then_px = self._midnight_price(p.symbol, bars, midnight, s, p.entry_price, now_px)
            else:
                then_px = p.entry_price
                eq += p.entry_fee
            eq -= (now_px - then_px) * p.qty * s
        return eq + sum(funding_after.values())    # funding paid since midnight by positions held or closed before

    def _midnight_price(self, symbol: str, bars: Mapping[str, Any], midnight: datetime, side: int, entry: float,
                        later: float) -> float:
        """The price at ``midnight`` of a position of ``symbol`` on ``side`` (+1 long) that was open then and is
        worth ``later`` now (its exit price, or its price now): the close of the bar closing at midnight. When
        that bar is missing (a hole in the bars, a symbol outside the feed), the new day is never credited with a
        gain it may not have made: the more favourable to the position of the symbol's last close before
        midnight (its ``entry`` price when it has none) and ``later``."""
        b = bars.get(symbol)
        earlier = entry
        if b is not None and len(b):
            i = int(b.index.searchsorted(midnight, side="left")) - 1
            if i >= 0:
                close = float(b["close"].iloc[i])
                if b.index[i].to_pydatetime() + self.feed.interval == midnight:
                    return close
                earlier = close
        return max(earlier, later) if side > 0 else min(earlier, later)

    @staticmethod
    def _add(total: BarReport, rep: BarReport) -> None:
        total.fills += rep.fills
        total.updates += rep.updates
        total.trades += rep.trades
        total.exit_orders += rep.exit_orders
        total.closed += rep.closed
