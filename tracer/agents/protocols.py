"""The types of the agent cycle: an order the policy wants (:class:`Intent`), its :class:`Decision`, the
:class:`Policy` protocol (the agent-specific, pure part), the one :class:`TradingBroker` protocol every broker
speaks, and a cycle's :class:`CycleResult`."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, Sequence

import numpy as np

from tracer.execution.broker import BarReport, Bracket, OrderUpdate
from tracer.models import Bar, Order, Position, Signal
from tracer.risk.limits import Book


@dataclass(slots=True)
class Intent:
    """An order the policy wants, with everything needed to explain it later."""
    order: Order
    signal_symbol: str
    price_est: float
    bracket: Bracket | None = None
    sizing: dict[str, Any] | None = None
    cash_needed: float | None = None     # cash the entry ties up (spot: notional; futures: margin)


@dataclass(slots=True)
class Decision:
    decision: str                  # enter / exit / blocked / none / hold_position
    reason: str
    intent: Intent | None = None
    risk_rule: str | None = None
    risk_detail: dict[str, Any] | None = None


MARKET_EXIT = "market_exit"    # an exit order's reason (and its trade's exit_reason) when TB_MARKET_EXIT closed it


def market_blocked(sig: Signal, market: str, exploration: dict | None = None) -> Decision:
    """The decision of an entry the market filter refuses (``sig.market_ok`` False): both agents' words."""
    side = "long" if sig.direction > 0 else "short"
    inputs = sig.inputs or {}
    gap = inputs.get("market_gap")
    if "market_gap" not in inputs:       # a backtest signal records no inputs
        state = "against it or unknown"
    elif gap is None:
        state = "unknown (no bar at this time, or too short a history)"
    else:
        state = f"{'below' if sig.direction > 0 else 'above'} its mean (gap {gap:+.4f})"
    detail: dict[str, Any] = {"market": market, "direction": sig.direction, "market_gap": gap}
    if exploration is not None:
        detail["exploration"] = exploration
    return Decision("blocked", f"market filter: no new {side} while {market} is {state}; {sig.reason}",
                    risk_rule="market_filter", risk_detail=detail)


def between_decisions(ts: datetime, every_h: int) -> bool:
    """True when a bar closing at ``ts`` is not a decision bar of the cadence TB_DECISION_EVERY_H = ``every_h``
    (decisions only on bars that close at a multiple of ``every_h`` hours UTC; 0 = every bar is one). A missing
    decision bar (an exchange gap) means no decision that period: the next one comes at the next multiple."""
    if every_h <= 0:
        return False
    sec = (ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)).timestamp()
    return sec % (every_h * 3600) != 0


def strength_blocked(sig: Signal, top_k: int, direction: int, exploration: dict | None = None) -> Decision | None:
    """The relative-strength filter (TB_STRENGTH_TOP_K / TB_FUTURES_STRENGTH_TOP_K = ``top_k``; 0 = off): a new long
    only for a symbol among the ``top_k`` highest trend gaps of the symbols evaluated at its bar, a new short only
    among the ``top_k`` lowest; an unknown rank (no trend gap) refuses both. None when it lets the entry through."""
    if top_k <= 0:
        return None
    ahead = sig.stronger if direction > 0 else sig.weaker
    if 0 <= ahead < top_k:
        return None
    side, way = ("long", "stronger") if direction > 0 else ("short", "weaker")
    where = "unknown (no trend gap)" if ahead < 0 else f"{ahead} symbol(s) {way} at this bar"
    detail: dict[str, Any] = {"top_k": top_k, "direction": direction, "stronger": sig.stronger, "weaker": sig.weaker}
    if exploration is not None:
        detail["exploration"] = exploration
    return Decision("blocked", f"relative strength: no new {side} outside the top {top_k} by trend ({where}); "
                               f"{sig.reason}", risk_rule="strength_filter", risk_detail=detail)


class Policy(Protocol):
    """The agent-specific part: direction rules, risk and sizing. Pure given its inputs."""
    agent: str

    def decide(self, sig: Signal, position: Position | None, book: Book, returns: dict[str, np.ndarray],
               pending_exit: bool) -> Decision: ...


class TradingBroker(Protocol):
    """The one broker protocol the cycle drives: paper brokers (tracer/execution/paper*.py) and the venue broker
    (tracer/execution/venue_broker/). The venue-only parts (sync, outbox, protection, the wallet) are no-ops on
    paper, so the cycle has one path."""
    places_own_orders: bool            # True: a venue broker (sends its orders, learns fills from the venue)
    realized_pnl: float
    fees_paid: float
    cash: float
    last_price: dict[str, float]

    def submit(self, order: Order, bracket: Bracket | None = None) -> OrderUpdate: ...
    def get(self, client_order_id: str) -> OrderUpdate | None: ...
    def find(self, order: Order, bracket: Bracket | None = None) -> OrderUpdate | None: ...
    def positions(self) -> list[Position]: ...
    def open_orders(self) -> list[Order]: ...
    def on_bar(self, bar: Bar) -> BarReport: ...
    def equity(self) -> float: ...
    def balance(self) -> float: ...
    def restore(self, positions: list[Position], pending: list[tuple[Order, Bracket | None]], realized_pnl: float,
                fees_paid: float, last_price: dict[str, float]) -> None: ...
    def sync(self, now: datetime) -> BarReport: ...
    def take_outbox(self) -> list[tuple[Order, Bracket | None]]: ...
    def requeue(self, orders: Sequence[tuple[Order, Bracket | None]]) -> None: ...
    def ensure_protection(self) -> list[tuple[Order, Bracket | None]]: ...
    def set_brackets(self, brackets: dict[str, Bracket | None]) -> None: ...
    def check_wallet(self) -> float | None: ...
    def bind_stop(self, stop: Any) -> None: ...
    def starting_equity(self) -> float | None: ...
    def venue_for(self, order: Order) -> str: ...


@dataclass(slots=True)
class CycleResult:
    run_id: int
    clock: datetime
    signals: int = 0
    skipped: int = 0
    orders: list[str] = field(default_factory=list)
    fills: int = 0
    trades: int = 0
    equity: float = 0.0
