"""The decision step both drivers run: the live loop (a feed and a broker, every cycle written to the DB) and
the backtest (history in memory). Given the signals of one bar close, the step rolls the UTC day, builds the
risk book and asks the policy for a decision on every signal, best conviction first; the driver sends the
intents it returns (the live loop after writing them, the backtest at once). Nothing here does I/O: the
drivers pass in what they know (equity, positions, today's entries, recent trade returns) and keep the
state the step returns.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from tracer.agents.protocols import Decision, Policy
from tracer.models import Position, PositionSide, Signal, Trade
from tracer.risk.limits import Book

RECENT_RETURNS = 500         # closed-trade returns the risk rules see (Kelly's history)


@dataclass(frozen=True)
class Day:
    """The UTC day the daily caps count in, and the equity it started with."""
    day: str | None = None                  # YYYY-MM-DD
    start_equity: float | None = None

    def start(self) -> datetime:
        return datetime.strptime(self.day or "1970-01-01", "%Y-%m-%d").replace(tzinfo=timezone.utc)


def roll_day(current: Day, now: datetime, equity: float) -> Day:
    """A new UTC day starts once, at its first clock, with the equity then: never again for a day already
    seen, whatever the clock does (a restart at midnight, a clock going back over midnight)."""
    utc = now if now.tzinfo is timezone.utc else now.astimezone(timezone.utc)   # every bar of a backtest
    day = utc.date().isoformat()
    if current.day is None or day > current.day:
        return Day(day, equity)
    return current


def exposures(positions: Mapping[str, Position], last_price: Mapping[str, float]) -> dict[str, float]:
    """Signed notional per symbol at the last price seen (the entry price before any)."""
    return {s: p.qty * last_price.get(s, p.entry_price) * (1 if p.side is PositionSide.LONG else -1)
            for s, p in positions.items()}


def recent_returns(earlier: Sequence[float], new: Sequence[Trade] = ()) -> tuple[float, ...]:
    """The returns of the last :data:`RECENT_RETURNS` closed trades, oldest first."""
    return tuple((list(earlier) + [t.return_pct for t in new])[-RECENT_RETURNS:])


def notify_closed(policy: Policy, trades: Sequence[Trade]) -> None:
    """Tell the policy of the trades that closed (the futures agent's cooldown starts there)."""
    on_close = getattr(policy, "on_trade_closed", None)
    if on_close is not None:
        for t in trades:
            on_close(t.symbol, t.exit_ts)


def decide_all(policy: Policy, signals: Sequence[Signal], positions: dict[str, Position], book: Book,
               returns: dict[str, np.ndarray], paused: bool = False) -> list[tuple[Signal, Decision]]:
    """The policy's decision for every signal, best conviction first; the book is updated after each
    approved entry so that later entries of the same cycle see it."""
    decisions: list[tuple[Signal, Decision]] = []
    for sig in sorted(signals, key=lambda x: (-x.conviction, x.symbol)):
        d = policy.decide(sig, positions.get(sig.symbol), book, returns, pending_exit=False)
        if paused and d.decision == "enter":
            d = Decision("blocked", "agent paused by the operator: no new entries", risk_rule="paused",
                         risk_detail={"paused": True})
        decisions.append((sig, d))
        if d.intent is not None and d.decision == "enter":
            o = d.intent.order
            exp = dict(book.exposures)
            exp[o.symbol] = d.intent.price_est * o.qty * (1 if o.side.value == "buy" else -1)
            used = d.intent.cash_needed if d.intent.cash_needed is not None else d.intent.price_est * o.qty
            book = Book(equity=book.equity, cash=book.cash - used, day_start_equity=book.day_start_equity,
                        trades_today=book.trades_today + 1, exposures=exp, closed_returns=book.closed_returns)
    return decisions


class Step(NamedTuple):
    """What a step returns (a named tuple: the backtest makes one per bar, most of them without signals)."""
    day: Day
    decisions: list[tuple[Signal, Decision]]


class InFlight(NamedTuple):
    """An entry sent or written but not yet a position: what the risk book must count as if it were one."""
    notional: float          # signed, at its estimated price
    cash: float              # what it will take from the cash (the margin of a futures entry)


def step(policy: Policy, now: datetime, day: Day, equity: float, cash: float, positions: dict[str, Position],
         last_price: Mapping[str, float], signals: Sequence[Signal], returns: dict[str, np.ndarray],
         entries_today: Callable[[Day], int], closed_returns: Callable[[], tuple[float, ...]],
         paused: bool = False, in_flight: Mapping[str, InFlight] | None = None) -> Step:
    """One decision step at the bar close ``now``, after the broker has seen the bar: the day rolls, and when
    there are signals the book is built (``entries_today``: entries of that day the venue did not refuse;
    ``closed_returns``: :func:`recent_returns`; both asked only then) and every signal decided. ``in_flight``:
    the live loop's entries that are not positions yet (an entry the venue still works, or one written and not
    sent because the venue could not be reached): each counts as an open position of its symbol and its cash as
    spent, so that max positions, the exposure caps and the cash are never approved twice (the backtest fills
    every entry at once and has none)."""
    day = roll_day(day, now, equity)
    if not signals:
        return Step(day, [])
    exp = exposures(positions, last_price)
    pending = {s: f for s, f in (in_flight or {}).items() if s not in exp}
    exp.update({s: f.notional for s, f in pending.items()})
    book = Book(equity=equity, cash=cash - sum(f.cash for f in pending.values()),
                day_start_equity=day.start_equity or equity, trades_today=entries_today(day), exposures=exp,
                closed_returns=closed_returns())
    return Step(day, decide_all(policy, signals, positions, book, returns, paused))
