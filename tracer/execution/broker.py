"""The broker interface every venue implements (paper, Alpaca, Binance, Bybit)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tracer.models import Fill, Order, OrderState, Position, Trade
from tracer.symbols import base_of


@dataclass(frozen=True, slots=True)
class Bracket:
    """Protective exits attached to an entry, as distances from the fill price."""
    stop_distance: float
    take_profit_distance: float
    trail_pct: float
    max_hold_s: float
    signal_id: int | None = None
    entry_atr: float = 0.0


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    client_order_id: str
    state: OrderState
    reason: str | None = None
    filled_qty: float = 0.0
    avg_price: float | None = None


@dataclass(frozen=True, slots=True)
class VenueRules:
    tick_size: float
    step_size: float
    min_qty: float
    min_notional: float


@dataclass(slots=True)
class BarReport:
    """What happened at the broker while a bar was processed."""
    fills: list[Fill] = field(default_factory=list)
    updates: list[OrderUpdate] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    exit_orders: list[Order] = field(default_factory=list)   # orders the broker created itself (stops, targets)
    closed: list[Position] = field(default_factory=list)     # positions as they were when they closed
    # venue brokers: funding payments booked from the venue's income history, (venue, payment, entry order id)
    funding: list[tuple[str, Any, str | None]] = field(default_factory=list)
    # funding found after its trade was written: (entry order id, amount paid), added to that trade's row
    late_funding: list[tuple[str, float]] = field(default_factory=list)
    # broker state written with the report, in the same transaction (notify_state key -> value)
    memos: dict[str, str] = field(default_factory=dict)
    # the venue of orders booked without being sent (an adopted position, a close seen on the venue), written
    # with their rows: a restart must find the position on the venue that holds it, not on the main one
    venues: dict[str, str] = field(default_factory=dict)

    def any(self) -> bool:
        """Anything to write."""
        return bool(self.fills or self.updates or self.trades or self.exit_orders or self.funding
                    or self.late_funding or self.memos)


class Broker(Protocol):
    def submit(self, order: Order, bracket: Bracket | None = None) -> OrderUpdate: ...
    def get(self, client_order_id: str) -> OrderUpdate | None: ...
    def open_orders(self) -> list[Order]: ...
    def positions(self) -> list[Position]: ...
    def balance(self) -> float: ...
    def rules(self, symbol: str) -> VenueRules: ...


def client_order_id(agent: str, symbol: str, signal_ts: datetime, purpose: str) -> str:
    """Deterministic id from agent, symbol, signal time and purpose, e.g. ``tb-hy-BTC-2201100500-e-1a2b3c``.

    The same decision always maps to the same id, so a restarted agent that re-evaluates a bar can
    never place a second order for it (``orders.client_order_id`` is UNIQUE; venues dedupe on it too).
    At most 36 characters of ``[A-Za-z0-9-]`` (Binance's newClientOrderId limit).
    """
    stamp = signal_ts.strftime("%y%m%d%H%M")
    digest = hashlib.sha1(f"{agent}|{symbol}|{signal_ts.isoformat()}|{purpose}".encode()).hexdigest()[:6]
    cid = f"tb-{agent[:2]}-{base_of(symbol)[:6]}-{stamp}-{purpose[0]}-{digest}"
    assert len(cid) <= 36, cid
    return cid


def numbered_id(entry_order_id: str, tag: str, seq: int) -> str:
    """``entry-tag`` for the first of its kind, ``entry-tag2``, ``entry-tag3``... after; at most 36 characters."""
    suffix = f"-{tag}" if seq <= 0 else f"-{tag}{seq + 1}"
    return entry_order_id[:36 - len(suffix)] + suffix


def target_level(price: float, side: int, distance: float) -> float:
    """A take-profit ``distance`` from ``price`` on the side ``side`` (+1 long, -1 short) favours; 0 (none) without
    a distance, and for a short whose distance reaches zero or below (a wide ATR multiple on a cheap coin): no
    price can reach it, and a venue refuses a trigger price that is not positive."""
    level = price + side * distance
    return level if distance and level > 0 else 0.0


def exit_order_id(entry_order_id: str, seq: int = 0) -> str:
    """The exit id of a position. ``seq`` counts the exits of that position that ended without closing it
    (a venue's partial or refused exit, :attr:`Position.exit_seq`): each exit attempt has its own id, and
    one id is sent at most once."""
    return f"{entry_order_id[:34]}-x" if seq <= 0 else numbered_id(entry_order_id, "x", seq)
