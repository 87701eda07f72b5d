"""Paper spot broker: simulated fills on the replayed (or live) bars, with fees and slippage.

Market orders fill at the open of the first bar that starts at or after the order was created,
moved against us by ``slippage_bps``, and pay ``fee_bps`` of the notional. Entries carry a
:class:`Bracket`; stop-loss, trailing stop, take-profit and time stop are checked on every bar's
high/low with :func:`tracer.execution.exits.check_exit` (stop first when both are inside a bar).
Spot is long-only: a sell only reduces a held position.

The broker holds no storage of its own: the agent rebuilds it from the DB on start
(:meth:`PaperSpotBroker.restore`), so a crash loses nothing the DB has committed.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Mapping

import numpy as np

from tracer.models import Bar
from tracer.execution.paper_ledger import PaperLedger
from tracer.execution.broker import BarReport, Bracket, OrderUpdate, exit_order_id, target_level
from tracer.execution.exits import advance, check_exit, exit_possible
from tracer.models import Fill, Order, OrderState, OrderType, Position, PositionSide, Side, Trade


class PaperSpotBroker(PaperLedger):
    def __init__(self, agent: str, cash: float, fee_bps: float, slippage_bps: float,
                 interval: timedelta = timedelta(hours=1), step_size: float = 1e-8):
        super().__init__(agent, cash, fee_bps, slippage_bps, interval, step_size)

    def _reject_reason(self, o: Order) -> str | None:
        held = self._positions.get(o.symbol)
        pending_same = [p for p, _ in self._pending.values() if p.symbol == o.symbol and p.side is o.side]
        if o.side is Side.BUY:
            if held is not None or pending_same:
                return "spot: a position or entry is already open for this symbol"
        else:
            if held is None:
                return "spot is long-only: nothing to sell"
            if o.qty > held.qty * (1 + 1e-9):
                return f"sell {o.qty} exceeds held {held.qty}"
            if pending_same:
                return "an exit is already pending"
        return None

    # --- the simulation --------------------------------------------------------------------
    def equity(self) -> float:
        return self.cash + sum(p.qty * self.last_price.get(s, p.entry_price) for s, p in self._positions.items())

    def equity_path(self, marks: Mapping[str, np.ndarray], n: int) -> list[float]:
        if not self._positions:
            return [self.cash + 0] * n
        acc: np.ndarray | int = 0      # sum() of the positions' values, in the same order, as equity() adds them
        for s, p in self._positions.items():
            acc = acc + p.qty * marks[s]
        return (self.cash + acc).tolist()

    def _event_bars(self, p: Position, o: np.ndarray, h: np.ndarray, l: np.ndarray, open_ns: np.ndarray,
                    close_ns: np.ndarray) -> np.ndarray:
        return exit_possible(p, o, h, l, close_ns)

    def on_bar(self, bar: Bar) -> BarReport:
        """Process one new bar of ``bar.symbol``: fill due orders at its open, then check exits."""
        rep = BarReport()
        for cid, order, bracket in (self._due(bar.symbol, bar.ts) if self._pending else ()):
            if order.side is Side.BUY:
                self._fill_entry(order, bracket, bar, rep)
            else:
                pos = self._positions.get(order.symbol)
                if pos is None:
                    self._finish(rep, OrderUpdate(cid, OrderState.CANCELED, "position already closed"))
                    continue
                self._close(pos, bar.open * (1 - self.slip), bar.ts, order.reason or "signal", cid, rep)
        pos = self._positions.get(bar.symbol)
        if pos is not None:
            close_time = bar.ts + self.interval
            hit = check_exit(pos, bar.open, bar.high, bar.low, bar.close, close_time)
            if hit is not None:
                cid = exit_order_id(pos.entry_order_id)
                # a queued (not yet due) exit with this id is this very exit: drop it, or it would
                # later be "canceled" and overwrite the id's FILLED state
                self._pending.pop(cid, None)
                at = close_time if hit.reason == "time_stop" else bar.ts
                exit_order = Order(cid, self.agent, pos.symbol, Side.SELL, pos.qty, OrderType.MARKET,
                                   reduce_only=True, purpose="exit", reason=hit.reason, created_at=at)
                rep.exit_orders.append(exit_order)
                self._known[cid] = OrderUpdate(cid, OrderState.SUBMITTED)
                self._close(pos, hit.price * (1 - self.slip), at, hit.reason, cid, rep)
            else:
                self._positions[bar.symbol] = advance(pos, bar.high, bar.low)
        self.last_price[bar.symbol] = bar.close
        return rep

    def close_all(self, prices: dict[str, float], at: datetime, reason: str = "end_of_backtest") -> BarReport:
        """Close every position at ``prices`` (moved by slippage, with the fee); pending orders dropped."""
        rep = BarReport()
        self._pending.clear()
        for sym, pos in list(self._positions.items()):
            px = prices.get(sym, pos.entry_price)
            self._close(pos, px * (1 - self.slip), at, reason, exit_order_id(pos.entry_order_id), rep)
        return rep

    def _fill_entry(self, order: Order, bracket: Bracket | None, bar: Bar, rep: BarReport) -> None:
        px = bar.open * (1 + self.slip)
        units = order.qty / self.step
        # floor to whole steps, tolerating the division's rounding: 0.043 / 0.001 is 42.99999999999999
        # in floating point, and a plain floor would silently drop a whole step from the order
        qty = math.floor(units + 1e-9 * max(1.0, units)) * self.step
        cost = qty * px
        fee = cost * self.fee
        if qty <= 0 or cost + fee > self.cash:
            self._finish(rep, OrderUpdate(order.client_order_id, OrderState.REJECTED,
                                          f"insufficient cash: need {cost + fee:.2f}, have {self.cash:.2f}"))
            return
        self.cash -= cost + fee
        self.fees_paid += fee
        b = bracket or Bracket(0.0, 0.0, 0.0, 0.0)
        self._positions[order.symbol] = Position(
            agent=self.agent, symbol=order.symbol, side=PositionSide.LONG, qty=qty, entry_price=px,
            opened_at=bar.ts, entry_fee=fee, stop_loss=px - b.stop_distance if b.stop_distance else 0.0,
            take_profit=target_level(px, 1, b.take_profit_distance), trail_pct=b.trail_pct,
            best_price=px, max_hold_s=b.max_hold_s, entry_order_id=order.client_order_id, signal_id=b.signal_id)
        rep.fills.append(Fill(order.client_order_id, order.symbol, Side.BUY, qty, px, fee, bar.ts))
        self._finish(rep, OrderUpdate(order.client_order_id, OrderState.FILLED, None, qty, px))

    def _close(self, pos: Position, px: float, at: datetime, reason: str, cid: str, rep: BarReport) -> None:
        proceeds = pos.qty * px
        fee = proceeds * self.fee
        self.cash += proceeds - fee
        self.fees_paid += fee
        pnl = (px - pos.entry_price) * pos.qty - pos.entry_fee - fee
        self.realized_pnl += pnl
        del self._positions[pos.symbol]
        rep.closed.append(pos)
        rep.fills.append(Fill(cid, pos.symbol, Side.SELL, pos.qty, px, fee, at))
        rep.trades.append(Trade(agent=self.agent, symbol=pos.symbol, side=pos.side, qty=pos.qty,
                                entry_ts=pos.opened_at, entry_price=pos.entry_price, exit_ts=at, exit_price=px,
                                fees=pos.entry_fee + fee, funding=0.0, pnl=pnl, exit_reason=reason,
                                entry_order_id=pos.entry_order_id, exit_order_id=cid, signal_id=pos.signal_id))
        self._finish(rep, OrderUpdate(cid, OrderState.FILLED, None, pos.qty, px))


__all__ = ["PaperSpotBroker"]
