"""Paper USD-M perpetual futures broker: isolated margin, leverage, fees, slippage, funding, liquidation.

- Market orders fill at the open of the first bar starting at or after their creation, moved against
  us by the slippage; the taker fee is paid on the notional from the wallet.
- Isolated margin: an entry moves ``notional / leverage`` from the wallet into the position. Funding
  every 8 hours (00/08/16 UTC) at ``funding_rate`` on the mark (the bar close) is taken from (or added
  to) the position's margin, which moves its liquidation price (recomputed each time).
- Liquidation: when a bar reaches the liquidation price the whole isolated margin is lost.
- Exits on every bar: liquidation, hard stop, trailing stop, take-profit, volatility stop (the bar's true
  range above ``vol_stop_mult`` x the entry ATR) and time stop. When several are possible within one bar,
  the one with the worst price for us happens; a bar that reaches the liquidation price always
  liquidates (a gap beyond it cannot cost more than the isolated margin).
- Exits are reduce-only: a closing order can never open or flip a position.

The broker holds no storage of its own; the agent rebuilds it from the DB (crash-only).
"""
from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Mapping

import numpy as np

from tracer.execution.paper_ledger import PaperLedger
from tracer.execution.broker import BarReport, Bracket, OrderUpdate, exit_order_id, target_level
from tracer.execution.exits import exit_possible, protective_stop, with_best_price
from tracer.execution.margin import (FUNDING_HOURS, funding_payment, funding_times, initial_margin,
                                     liquidation_price, stop_inside_liquidation)
from tracer.models import Bar, Fill, Order, OrderState, OrderType, Position, PositionSide, Side, Trade


def side_sign(p: Position) -> int:
    return 1 if p.side is PositionSide.LONG else -1


class PaperFuturesBroker(PaperLedger):
    MIN_NOTIONAL = 5.0

    def __init__(self, agent: str, cash: float, fee_bps: float, slippage_bps: float, mmr: float,
                 funding_rate: float, max_leverage: float, guard_fraction: float, vol_stop_mult: float,
                 interval: timedelta = timedelta(hours=1), step_size: float = 1e-6):
        super().__init__(agent, cash, fee_bps, slippage_bps, interval, step_size)
        self.mmr = mmr
        self.funding_rate = funding_rate
        self.max_leverage = max_leverage
        self.guard_fraction = guard_fraction
        self.vol_stop_mult = vol_stop_mult

    def _reject_reason(self, o: Order) -> str | None:
        if not (1 <= o.leverage <= self.max_leverage):
            return f"leverage {o.leverage} outside [1, {self.max_leverage}]"
        held = self._positions.get(o.symbol)
        pending_same = [p for p, _ in self._pending.values() if p.symbol == o.symbol]
        if o.reduce_only:
            if held is None:
                return "reduce-only: no position to reduce"
            closing = Side.SELL if held.side is PositionSide.LONG else Side.BUY
            if o.side is not closing:
                return "reduce-only order on the wrong side"
            if o.qty > held.qty * (1 + 1e-9):
                return f"reduce-only {o.qty} exceeds position {held.qty}"
        elif held is not None or pending_same:
            return "a position or order is already open for this symbol"
        return None

    # --- simulation ---------------------------------------------------------------------
    def equity(self) -> float:
        eq = self.cash
        for s, p in self._positions.items():
            mark = self.last_price.get(s, p.entry_price)
            eq += p.margin + side_sign(p) * (mark - p.entry_price) * p.qty
        return eq

    def equity_path(self, marks: Mapping[str, np.ndarray], n: int) -> list[float]:
        eq: np.ndarray | float = self.cash
        for s, p in self._positions.items():     # equity()'s terms, in its order
            eq = eq + (p.margin + side_sign(p) * (marks[s] - p.entry_price) * p.qty)
        return eq.tolist() if isinstance(eq, np.ndarray) else [eq] * n

    def _event_bars(self, p: Position, o: np.ndarray, h: np.ndarray, l: np.ndarray, open_ns: np.ndarray,
                    close_ns: np.ndarray) -> np.ndarray:
        """The stops, the take-profit and the time stop (:func:`exit_possible`), and this broker's own: the
        liquidation price, the volatility stop and a funding time (a bar of over an hour: every bar)."""
        hit = exit_possible(p, o, h, l, close_ns)
        s = side_sign(p)
        adverse = l if s > 0 else h
        if p.liquidation_price is not None and p.liquidation_price > 0:
            hit |= s * (adverse - p.liquidation_price) <= 1e-9 * adverse
        if p.entry_atr and self.vol_stop_mult > 0:
            hit |= (h - l) > self.vol_stop_mult * p.entry_atr * (1 - 1e-9)
        if self.funding_rate != 0:
            hour = 3_600_000_000_000
            if self.interval > timedelta(hours=1):
                return np.ones(len(o), dtype=bool)
            k = close_ns // hour        # the one whole hour a bar of at most an hour can end in or after
            hit |= (k * hour > open_ns) & np.isin(k % 24, FUNDING_HOURS)
        return hit

    def on_bar(self, bar: Bar) -> BarReport:
        rep = BarReport()
        close_time = bar.ts + self.interval
        for cid, order, bracket in self._due(bar.symbol, bar.ts):
            pos = self._positions.get(order.symbol)
            if order.reduce_only:
                if pos is None:
                    self._finish(rep, OrderUpdate(cid, OrderState.CANCELED, "position already closed"))
                    continue
                px = bar.open * (1 - side_sign(pos) * self.slip)
                self._close(pos, px, bar.ts, order.reason or "signal", cid, rep)
            else:
                self._open(order, bracket, bar, rep)
        pos = self._positions.get(bar.symbol)
        if pos is not None:
            hit = self._worst_exit(pos, bar, close_time)
            if hit is not None:
                reason, level, at = hit
                cid = exit_order_id(pos.entry_order_id)
                side = Side.SELL if pos.side is PositionSide.LONG else Side.BUY
                rep.exit_orders.append(Order(cid, self.agent, pos.symbol, side, pos.qty, OrderType.MARKET,
                                             reduce_only=True, leverage=pos.leverage, purpose="exit", reason=reason,
                                             created_at=at))
                self._known[cid] = OrderUpdate(cid, OrderState.SUBMITTED)
                if reason == "liquidation":
                    self._liquidate(pos, level, at, cid, rep)
                else:
                    self._close(pos, level * (1 - side_sign(pos) * self.slip), at, reason, cid, rep)
            else:
                pos = self._apply_funding(pos, bar.ts, close_time, bar.close)
                best = max(pos.best_price, bar.high) if pos.side is PositionSide.LONG else min(pos.best_price, bar.low)
                self._positions[bar.symbol] = with_best_price(pos, best)    # replace(pos, best_price=best)
        self.last_price[bar.symbol] = bar.close
        return rep

    def _worst_exit(self, p: Position, bar: Bar, close_time: datetime) -> tuple[str, float, datetime] | None:
        """Every exit this bar makes possible; the worst price for us wins (a liquidation whenever the bar reaches
        its price: pessimistic, as the order within the bar is unknown), except a target the bar opens beyond: the
        open is the bar's first trade, and the profit is taken there before anything later in the bar."""
        s = side_sign(p)
        adverse = bar.low if s > 0 else bar.high        # the bar's worst price for the position
        favour = bar.high if s > 0 else bar.low
        if p.take_profit > 0 and s * (bar.open - p.take_profit) >= 0:
            return ("take_profit", bar.open, bar.ts)
        cands: list[tuple[str, float, datetime]] = []
        if p.liquidation_price is not None and p.liquidation_price > 0 and s * (adverse - p.liquidation_price) <= 0:
            # a gap through the liquidation price still liquidates there (the margin is gone either way)
            cands.append(("liquidation", p.liquidation_price, bar.ts))
        stop, stop_reason = protective_stop(p)
        if s * (bar.open - stop) <= 0:
            cands.append((stop_reason, bar.open, bar.ts))
        elif s * (adverse - stop) <= 0:
            cands.append((stop_reason, stop, bar.ts))
        if p.take_profit > 0 and s * (favour - p.take_profit) >= 0:
            cands.append(("take_profit", p.take_profit, bar.ts))
        atr = p.entry_atr
        if atr and self.vol_stop_mult > 0 and (bar.high - bar.low) > self.vol_stop_mult * atr:
            cands.append(("volatility_stop", bar.close, close_time))
        if p.max_hold_s > 0 and (close_time - p.opened_at).total_seconds() >= p.max_hold_s:
            cands.append(("time_stop", bar.close, close_time))
        if not cands:
            return None
        liq = [c for c in cands if c[0] == "liquidation"]
        if liq:
            # Reaching the liquidation price ends the position there, whatever else the bar makes possible:
            # any other exit priced beyond it (a stop filled at a gapped open, a time or volatility stop at a
            # close past it) cannot happen, since isolated margin never loses more than the margin.
            return liq[0]
        # worst for us: lowest price for a long, highest for a short
        return min(cands, key=lambda c: s * c[1])

    def _apply_funding(self, p: Position, bar_ts: datetime, close_time: datetime, mark: float) -> Position:
        times = [t for t in funding_times(bar_ts, close_time) if t > p.opened_at]
        if not times or self.funding_rate == 0:
            return p
        pay = sum(funding_payment(side_sign(p), p.qty, mark, self.funding_rate) for _ in times)
        margin = p.margin - pay
        liq = liquidation_price(side_sign(p), p.qty, p.entry_price, max(margin, 0.0), self.mmr)
        return replace(p, margin=margin, funding_paid=p.funding_paid + pay, liquidation_price=liq)

    def close_all(self, prices: dict[str, float], at: datetime, reason: str = "end_of_backtest") -> BarReport:
        """Close every position at ``prices`` (moved by slippage, with the fee); pending orders dropped."""
        rep = BarReport()
        self._pending.clear()
        for sym, pos in list(self._positions.items()):
            px = prices.get(sym, pos.entry_price)
            self._close(pos, px * (1 - side_sign(pos) * self.slip), at, reason, exit_order_id(pos.entry_order_id), rep)
        return rep

    def _open(self, order: Order, bracket: Bracket | None, bar: Bar, rep: BarReport) -> None:
        s = 1 if order.side is Side.BUY else -1
        px = bar.open * (1 + s * self.slip)
        qty = math.floor(order.qty / self.step + 1e-9) * self.step
        notional = qty * px
        margin = initial_margin(qty, px, order.leverage)
        fee = notional * self.fee
        b = bracket or Bracket(0.0, 0.0, 0.0, 0.0)
        liq = liquidation_price(s, qty, px, margin, self.mmr) if qty > 0 else 0.0
        stop = px - s * b.stop_distance
        reason = None
        if qty <= 0:
            reason = "quantity rounds to zero"
        elif margin + fee > self.cash:
            reason = f"insufficient margin: need {margin + fee:.2f}, have {self.cash:.2f}"
        elif b.stop_distance <= 0:
            reason = "no stop-loss: futures entries need one"
        else:
            ok, ratio = stop_inside_liquidation(s, px, stop, liq, self.guard_fraction)
            if not ok:
                reason = f"stop not safely inside liquidation at fill (ratio {ratio:.2f} > {self.guard_fraction})"
            elif s * (bar.open - stop) <= 0:
                # the slippage moved the fill so far from the market that the stop (and maybe the liquidation
                # price) is already reached: the venue would refuse a stop that triggers at once
                reason = f"stop {stop:.6g} already reached by the market {bar.open:.6g} at fill"
        if reason:
            self._finish(rep, OrderUpdate(order.client_order_id, OrderState.REJECTED, reason))
            return
        self.cash -= margin + fee
        self.fees_paid += fee
        self._positions[order.symbol] = Position(
            agent=self.agent, symbol=order.symbol, side=PositionSide.LONG if s > 0 else PositionSide.SHORT, qty=qty,
            entry_price=px, opened_at=bar.ts, entry_fee=fee, stop_loss=stop,
            take_profit=target_level(px, s, b.take_profit_distance), trail_pct=b.trail_pct,
            best_price=px, max_hold_s=b.max_hold_s, entry_order_id=order.client_order_id, signal_id=b.signal_id,
            leverage=order.leverage, margin=margin, liquidation_price=liq, funding_paid=0.0, entry_atr=b.entry_atr)
        rep.fills.append(Fill(order.client_order_id, order.symbol, order.side, qty, px, fee, bar.ts))
        self._finish(rep, OrderUpdate(order.client_order_id, OrderState.FILLED, None, qty, px))

    def _close(self, pos: Position, px: float, at: datetime, reason: str, cid: str, rep: BarReport) -> None:
        s = side_sign(pos)
        fee = pos.qty * px * self.fee
        gross = s * (px - pos.entry_price) * pos.qty
        self.cash += pos.margin + gross - fee
        self.fees_paid += fee
        pnl = gross - pos.entry_fee - fee - pos.funding_paid
        self._record(pos, px, at, reason, cid, fee, pnl, rep)

    def _liquidate(self, pos: Position, px: float, at: datetime, cid: str, rep: BarReport) -> None:
        """The isolated margin is lost whole: P&L = -(initial margin) - entry fee (funding already moved it)."""
        initial = pos.margin + pos.funding_paid
        pnl = -initial - pos.entry_fee
        self._record(pos, px, at, "liquidation", cid, 0.0, pnl, rep)

    def _record(self, pos: Position, px: float, at: datetime, reason: str, cid: str, fee: float, pnl: float,
                rep: BarReport) -> None:
        self.realized_pnl += pnl
        del self._positions[pos.symbol]
        rep.closed.append(pos)
        side = Side.SELL if pos.side is PositionSide.LONG else Side.BUY
        rep.fills.append(Fill(cid, pos.symbol, side, pos.qty, px, fee, at))
        rep.trades.append(Trade(agent=self.agent, symbol=pos.symbol, side=pos.side, qty=pos.qty,
                                entry_ts=pos.opened_at, entry_price=pos.entry_price, exit_ts=at, exit_price=px,
                                fees=pos.entry_fee + fee, funding=-pos.funding_paid, pnl=pnl, exit_reason=reason,
                                entry_order_id=pos.entry_order_id, exit_order_id=cid, leverage=pos.leverage,
                                signal_id=pos.signal_id))
        self._finish(rep, OrderUpdate(cid, OrderState.FILLED, None, pos.qty, px))
