"""What every paper broker keeps: cash, positions, pending orders, known order states (the Broker
interface's bookkeeping). The spot and futures paper brokers add their own fills and exits."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

import numpy as np

from tracer.execution.broker import BarReport, Bracket, OrderUpdate, VenueRules
from tracer.execution.exits import best_after
from tracer.models import Order, OrderState, OrderType, Position


class PaperLedger:
    """The bookkeeping every paper broker shares, and the venue-only parts of the one broker protocol
    (:class:`tracer.agents.loop.TradingBroker`) as no-ops: a paper broker fills its own orders on the bars, holds
    no venue stop, pays no venue funding and has no venue to reconcile with."""
    MIN_NOTIONAL = 1.0
    places_own_orders = False      # a venue broker sends orders and learns their fills from the venue

    def __init__(self, agent: str, cash: float, fee_bps: float, slippage_bps: float, interval: timedelta,
                 step_size: float):
        self.agent = agent
        self.cash = float(cash)
        self.fee = fee_bps / 1e4
        self.slip = slippage_bps / 1e4
        self.interval = interval
        self.step = step_size
        self._positions: dict[str, Position] = {}
        self._pending: dict[str, tuple[Order, Bracket | None]] = {}
        self._known: dict[str, OrderUpdate] = {}
        self.last_price: dict[str, float] = {}
        self.realized_pnl = 0.0
        self.fees_paid = 0.0

    # --- restore from the DB (crash-only: the broker holds nothing the DB does not) ----------
    def restore(self, positions: list[Position], pending: list[tuple[Order, Bracket | None]],
                realized_pnl: float, fees_paid: float, last_price: dict[str, float]) -> None:
        self._positions = {p.symbol: p for p in positions}
        for order, br in pending:
            self._pending[order.client_order_id] = (order, br)
            self._known[order.client_order_id] = OrderUpdate(order.client_order_id, OrderState.SUBMITTED)
        self.realized_pnl, self.fees_paid = realized_pnl, fees_paid
        self.last_price.update(last_price)

    # --- the venue-only parts of the broker protocol: nothing to do on paper ------------------------------
    def sync(self, now: datetime) -> BarReport:
        return BarReport()

    def take_outbox(self) -> list[tuple[Order, Bracket | None]]:
        return []

    def requeue(self, orders: Sequence[tuple[Order, Bracket | None]]) -> None:
        return None

    def ensure_protection(self) -> list[tuple[Order, Bracket | None]]:
        return []

    def set_brackets(self, brackets: dict[str, Bracket | None]) -> None:
        return None

    def check_wallet(self) -> float | None:
        return None

    def bind_stop(self, stop: Any) -> None:
        return None

    def starting_equity(self) -> float | None:
        return None

    def venue_for(self, order: Order) -> str:
        return "paper"

    def find(self, order: Order, bracket: Bracket | None = None) -> OrderUpdate | None:
        return self._known.get(order.client_order_id)

    # --- Broker interface ------------------------------------------------------------------
    def rules(self, symbol: str) -> VenueRules:
        return VenueRules(tick_size=1e-8, step_size=self.step, min_qty=self.step, min_notional=self.MIN_NOTIONAL)

    def balance(self) -> float:
        return self.cash

    def positions(self) -> list[Position]:
        return list(self._positions.values())

    def open_orders(self) -> list[Order]:
        return [o for o, _ in self._pending.values()]

    def get(self, client_order_id: str) -> OrderUpdate | None:
        return self._known.get(client_order_id)

    def submit(self, order: Order, bracket: Bracket | None = None) -> OrderUpdate:
        """Accept or reject; idempotent: a client order id already seen returns its state, never a second order."""
        if order.client_order_id in self._known:
            return self._known[order.client_order_id]
        reason = self._basic_reject(order) or self._reject_reason(order)
        upd = OrderUpdate(order.client_order_id, OrderState.REJECTED if reason else OrderState.SUBMITTED, reason)
        self._known[order.client_order_id] = upd
        if not reason:
            self._pending[order.client_order_id] = (order, bracket)
        return upd

    @staticmethod
    def _basic_reject(o: Order) -> str | None:
        if o.type is not OrderType.MARKET:
            return f"unsupported order type {o.type.value}"
        if not (math.isfinite(o.qty) and o.qty > 0):
            return f"invalid quantity {o.qty}"
        return None

    def _reject_reason(self, o: Order) -> str | None:     # venue-specific rules
        return None

    # --- quiet bars: what a backtest may pass over in one go ----------------------------------------------
    def quiet_bars(self, symbol: str, ohlc: np.ndarray, open_ns: np.ndarray) -> int:
        """How many of the next bars of ``symbol`` (``ohlc``: their open, high, low and close as the rows of a
        4 x n array, in order; ``open_ns``: their open times in int ns) ``on_bar`` would process without a fill,
        an exit or a funding payment, moving only the position's best price and the last price
        (:meth:`pass_quiet` does that at once). 0 with an order pending for the symbol or a price that is
        not finite and positive. Conservative: may answer fewer, never more."""
        n = ohlc.shape[1]
        if n == 0 or any(order.symbol == symbol for order, _ in self._pending.values()):
            return 0
        p = self._positions.get(symbol)
        if p is None:
            return n
        if not (np.isfinite(ohlc).all() and (ohlc > 0).all()):
            return 0
        o, h, l, _ = ohlc
        hit = self._event_bars(p, o, h, l, open_ns, open_ns + int(self.interval.total_seconds() * 1e9))
        return int(hit.argmax()) if hit.any() else n

    def _event_bars(self, p: Position, o: np.ndarray, h: np.ndarray, l: np.ndarray, open_ns: np.ndarray,
                    close_ns: np.ndarray) -> np.ndarray:
        """Per bar: could ``on_bar`` do more than move ``p``'s best price there? (conservative)"""
        raise NotImplementedError

    def pass_quiet(self, symbol: str, h: np.ndarray, l: np.ndarray, c: np.ndarray) -> None:
        """``on_bar`` over bars that :meth:`quiet_bars` found quiet: the best price and the last price move."""
        p = self._positions.get(symbol)
        if p is not None:
            self._positions[symbol] = best_after(p, h, l)
        if len(c):
            self.last_price[symbol] = float(c[-1])

    def equity_path(self, marks: Mapping[str, np.ndarray], n: int) -> list[float]:
        """:meth:`equity` at each of ``n`` bars with every position unchanged and marked at ``marks`` (one
        column per held symbol): the same arithmetic in the same order, so the same floats."""
        raise NotImplementedError

    def _finish(self, rep: BarReport, upd: OrderUpdate) -> None:
        self._known[upd.client_order_id] = upd
        rep.updates.append(upd)

    def _due(self, symbol: str, bar_ts: datetime) -> list[tuple[str, Order, Bracket | None]]:
        """Pending orders of ``symbol`` created at or before the bar's open, removed from the queue."""
        out = []
        if not self._pending:
            return out
        for cid, (order, bracket) in list(self._pending.items()):
            if order.symbol != symbol or (order.created_at is not None and order.created_at > bar_ts):
                continue
            del self._pending[cid]
            out.append((cid, order, bracket))
        return out
