"""Closes the DB did not order, booked as what they were: what the venue closed itself (a liquidation, an
auto-deleveraging, a settlement: its forced closes), or a close by hand (at the price and fee of the venue's own
trades), of all of a position or of a part of it; and the booking of a part as a trade of its own."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from tracer.execution.broker import BarReport, OrderUpdate, exit_order_id
from tracer.execution.venue import WALLET_ASSETS, ForcedClose, VenueError, VenueOrder, VenuePosition
from tracer.execution.venue_broker.ids import TERMINAL, stop_order_id, target_order_id
from tracer.execution.venue_broker.money import Money
from tracer.models import Fill, Order, OrderState, OrderType, Position, PositionSide, Side, Trade

FORCED_MARK = "forced orders:"      # in a booked exit's state reason: the venue ids of the closes it books


def forced_note(reason: str, forced_ids: str) -> str:
    return f"{reason}; {FORCED_MARK} {forced_ids}" if forced_ids else reason



def main_reason(parts: list[tuple[str, float]]) -> str:
    """The reason of a close made of parts (reason, quantity): a liquidation if any part is one (its margin is
    lost), else the reason of most of the quantity."""
    qty: dict[str, float] = {}
    for r, q in parts:
        qty[r] = qty.get(r, 0.0) + q
    return ForcedClose.LIQUIDATION.value if ForcedClose.LIQUIDATION.value in qty else max(qty, key=lambda r: qty[r])

class OutsideCloses(Money):
    """Mixin of :class:`~tracer.execution.venue_broker.VenueBroker`: closes the DB did not order."""

    def _book_part(self, pos: Position, fill: Fill, reason: str, rep: BarReport, state: OrderState,
                   note: str) -> Position:
        """Part of ``pos`` closed by ``fill``: booked as a trade of its own (its share of the entry fee and of the
        funding with it); returns what is left open."""
        s = 1 if pos.side is PositionSide.LONG else -1
        frac = fill.qty / pos.qty
        fee_part, fund_part = pos.entry_fee * frac, pos.funding_paid * frac
        pnl = s * (fill.price - pos.entry_price) * fill.qty - fee_part - fill.fee - fund_part
        self.fees_paid += fill.fee
        self.realized_pnl += pnl
        rep.fills.append(fill)
        rep.updates.append(OrderUpdate(fill.client_order_id, state, note, fill.qty, fill.price))
        rep.trades.append(Trade(agent=self.agent, symbol=pos.symbol, side=pos.side, qty=fill.qty,
                                entry_ts=pos.opened_at, entry_price=pos.entry_price, exit_ts=fill.ts,
                                exit_price=fill.price, fees=fee_part + fill.fee, funding=-fund_part, pnl=pnl,
                                exit_reason=reason, entry_order_id=pos.entry_order_id,
                                exit_order_id=fill.client_order_id, leverage=pos.leverage, signal_id=pos.signal_id))
        return replace(pos, qty=pos.qty - fill.qty, entry_fee=pos.entry_fee - fee_part,
                       funding_paid=pos.funding_paid - fund_part, margin=pos.margin * (1 - frac))

    def _reduced_on_venue(self, venue: str, pos: Position, vp: VenuePosition, rep: BarReport,
                          now: datetime) -> Position | None:
        """The venue holds less than the DB and no order of ours is known to have done it. The missing part is
        booked as a trade of its own under the position's next free exit id: at once when the venue's own
        closes (a partial liquidation, an auto-deleveraging) account for all of it; otherwise (closed by hand,
        or the venue cannot say) only after ``unconfirmed_grace`` during which none of our orders of the
        position shows a fill or is still unconfirmed, since such an order books its own fill (None: not now)."""
        missing = pos.qty - vp.qty
        forced: list[VenueOrder] | None = None
        if self._reports_forced(venue):
            try:
                forced = self._new_forced(venue, pos)
            except VenueError:
                forced = None
        if forced and sum(f.filled_qty for f in forced) >= missing * (1 - 1e-6):
            terms = self._forced_terms(venue, pos, forced, missing)
            self._shrunk_since.pop(pos.entry_order_id, None)
        else:
            if self._own_order_may_explain(venue, pos, rep):
                return None
            first_time, waiting = self._grace(self._shrunk_since, pos.entry_order_id)
            if waiting:
                if first_time:
                    self._event(venue, "position_reduced_unexplained", symbol=pos.symbol, qty=missing,
                                action="booked after the grace unless an order of ours turns out to have done it")
                return None
            self._shrunk_since.pop(pos.entry_order_id, None)
            terms = self._assumed_terms(venue, pos, missing)
        reason, px, fee, forced_ids = terms
        seq, cid = self._free_exit_id(pos, rep)
        o = Order(cid, self.agent, pos.symbol, Side.SELL if pos.side is PositionSide.LONG else Side.BUY, missing,
                  OrderType.MARKET, reduce_only=True, purpose="exit", reason=reason, created_at=now)
        rep.exit_orders.append(o)
        rep.venues[cid] = venue
        pos = self._book_part(pos, Fill(cid, pos.symbol, o.side, missing, px, fee, now), reason, rep,
                              OrderState.FILLED, f"{missing:g} closed on the venue; {vp.qty:g} left open; "
                                                 + forced_note(reason, forced_ids))
        self._event(venue, "position_reduced_on_venue", symbol=pos.symbol, cid=cid, alert=True, qty=missing,
                    left=vp.qty, price=px, reason=reason, forced_orders=forced_ids)
        return replace(pos, exit_seq=seq + 1)

    def _own_order_may_explain(self, venue: str, pos: Position, rep: BarReport) -> bool:
        """An order of ours of this position may have reduced it without being booked yet: one the DB still has
        as unconfirmed (``new``), or its stop, target or current exit showing a fill on the venue (a fill that
        came after this cycle's lookups; booked by that order's own lookup next cycle). Unreadable: yes."""
        queued = {o.client_order_id for o, _ in self._outbox}        # not sent yet: cannot have filled
        for r in self.store.orders_in_state(self.agent, OrderState.NEW):
            if r["symbol"] == pos.symbol and r["reduce_only"] and r["client_order_id"] not in queued:
                return True
        ours = [(stop_order_id(pos.entry_order_id, pos.stop_seq), True), (target_order_id(pos.entry_order_id), True),
                (exit_order_id(pos.entry_order_id, pos.exit_seq), False)]
        booked_now = {u.client_order_id for u in rep.updates}
        for cid, cond in ours:
            row = self.store.order(cid)
            if row is None or cid in booked_now or OrderState(row["state"]) in TERMINAL:
                continue
            try:
                vo = self._call(venue, "get_order", pos.symbol, cid, conditional=cond)
            except VenueError:
                return True
            if vo is not None and vo.filled_qty > 0:
                return True
        return False

    def _outside_close_terms(self, venue: str, pos: Position) -> tuple[str, float, float, str] | None:
        """(reason, price, fee, venue ids booked) of a close the DB did not order, from the venue's own closes
        where it reports them (a liquidation loses the margin; an auto-deleveraging, a settlement or a close by
        hand does not). None while the venue cannot say; after ``unconfirmed_grace`` of that, the venue's
        trades or the price decide, alerted."""
        if not self._reports_forced(venue):
            return self._assumed_terms(venue, pos, pos.qty)
        try:
            forced = self._new_forced(venue, pos)
        except VenueError as e:
            first_time, waiting = self._grace(self._forced_unknown_since, pos.entry_order_id)
            if waiting:
                if first_time:
                    self._event(venue, "forced_closes_unreadable", symbol=pos.symbol, error=type(e).__name__,
                                action="asked again until the grace ends")
                return None
            self._forced_unknown_since.pop(pos.entry_order_id, None)
            self._event(venue, "forced_closes_unreadable", symbol=pos.symbol, alert=True, error=type(e).__name__,
                        message="the venue does not say what closed it: judged from its trades or the last price")
            return self._assumed_terms(venue, pos, pos.qty)
        self._forced_unknown_since.pop(pos.entry_order_id, None)
        return self._forced_terms(venue, pos, forced, pos.qty)

    def _reports_forced(self, venue: str) -> bool:
        """The venue lists its own closes (futures venues: liquidations, auto-deleveraging)."""
        return self.futures and hasattr(self.venues[venue].client, "forced_closes")

    def _assumed_terms(self, venue: str, pos: Position, qty: float) -> tuple[str, float, float, str]:
        """No forced close of the venue's explains ``qty`` of ``pos`` gone: the venue's trades of the symbol that
        are not ours (:meth:`_outside_fill_terms`); where it cannot say, a liquidation when the last price is
        through the liquidation price, else a close by hand at the last price with fee 0."""
        terms = self._outside_fill_terms(venue, pos, qty)
        if terms is not None:
            return terms
        last = float(self.last_price.get(pos.symbol, pos.entry_price))
        liq = pos.liquidation_price if self.futures else None
        if liq and (last <= liq if pos.side is PositionSide.LONG else last >= liq):
            return ForcedClose.LIQUIDATION.value, float(liq), 0.0, ""
        return "closed_on_venue", last, 0.0, ""

    def _outside_fill_terms(self, venue: str, pos: Position, qty: float) -> tuple[str, float, float, str] | None:
        """The venue's own trades of what closed ``qty`` outside the agent (a close by hand, a settlement, a
        liquidation not listed yet): their quantity-weighted price and their commission, and their trade ids
        (``t<id>``, and the order ids of the venue's own orders) to be booked once. None: the venue cannot say."""
        if not self.futures or not hasattr(self.venues[venue].client, "outside_fills"):
            return None
        ours = {pos.entry_order_id: False, target_order_id(pos.entry_order_id): True,
                **{stop_order_id(pos.entry_order_id, k): True for k in range(pos.stop_seq + 1)},
                **{exit_order_id(pos.entry_order_id, k): False for k in range(pos.exit_seq + 1)}}
        try:
            fills = self._call(venue, "outside_fills", pos.symbol, pos.opened_at, ours)
        except VenueError as e:
            self._event(venue, "outside_fills_unreadable", symbol=pos.symbol, error=type(e).__name__,
                        message="the venue's trades cannot be read: booked at the last price with fee 0")
            return None
        booked = self._booked_ids(pos)
        close = Side.SELL if pos.side is PositionSide.LONG else Side.BUY
        fills = [f for f in fills if f.side is close and f"t{f.trade_id}" not in booked and f.order_id not in booked]
        got = sum(f.qty for f in fills)
        if got <= 0:
            self._event(venue, "outside_fills_none", symbol=pos.symbol, qty=qty,
                        message="no trade of the venue's explains it: booked at the last price with fee 0")
            return None
        if got < qty * (1 - 1e-6):
            self._event(venue, "outside_fills_incomplete", symbol=pos.symbol, alert=True, qty=qty, found=got,
                        action="booked at the price found, the fees it lacks scaled in")
        px = sum(f.qty * f.price for f in fills) / got
        fee = sum(f.fee for f in fills) * qty / got        # scaled to what is booked: found more, or less
        self._fee_elsewhere(sum(f.fee for f in fills if f.fee_asset not in WALLET_ASSETS) * qty / got)
        reason = main_reason([(f.reason or "closed_on_venue", f.qty) for f in fills])
        ids = [f"t{f.trade_id}" for f in fills] + sorted({f.order_id for f in fills if f.reason and f.order_id})
        return reason, px, fee, ",".join(ids)

    def _booked_ids(self, pos: Position) -> set[str]:
        """The venue ids of the venue's closes of ``pos``'s symbol booked already, on this position or an earlier
        one: in the exit order rows, written in the same transaction as their trades (a crash between the two
        cannot mark one booked). An earlier position's liquidation a moment before this one opened falls in the
        window asked for (:meth:`_new_forced`) and is never this position's."""
        booked: set[str] = set()
        for reason in self.store.order_reasons_containing(self.agent, pos.symbol, FORCED_MARK):
            booked.update(filter(None, reason.split(FORCED_MARK, 1)[1].split(";")[0].strip().split(",")))
        return booked

    def _new_forced(self, venue: str, pos: Position) -> list[VenueOrder]:
        """The venue's own closes (liquidation, auto-deleveraging, settlement) of ``pos``'s symbol since it
        opened and not booked yet. Raises VenueError."""
        booked = self._booked_ids(pos)
        return [f for f in self._call(venue, "forced_closes", pos.symbol, pos.opened_at - timedelta(minutes=1))
                if f.filled_qty > 0 and not (f.venue_order_id and f.venue_order_id in booked)]

    def _forced_terms(self, venue: str, pos: Position, forced: list[VenueOrder],
                      qty: float) -> tuple[str, float, float, str]:
        """(reason, price, fee, the forced orders' venue ids) of a close the DB did not order: the venue's forced
        closes at their average price (a liquidation if any of them is one, else the reason of most of it);
        with none listed (yet), the venue's trades or the price decide (:meth:`_assumed_terms`)."""
        if not forced:
            return self._assumed_terms(venue, pos, qty)
        total = sum(f.filled_qty for f in forced)
        px = sum(f.filled_qty * (f.avg_price or pos.liquidation_price or pos.entry_price) for f in forced) / total
        reason = main_reason([(f.reason or ForcedClose.LIQUIDATION.value, f.filled_qty) for f in forced])
        self._fee_elsewhere(sum(f.fee or 0.0 for f in forced if f.fee_asset not in WALLET_ASSETS))
        return reason, px, sum(f.fee or 0.0 for f in forced), ",".join(f.venue_order_id for f in forced)

    def _free_exit_id(self, pos: Position, rep: BarReport) -> tuple[int, str]:
        """The position's current exit id, or the next one not taken: an earlier part's exit id is taken in the
        trades (a second trade under it would be dropped as a duplicate), and an exit of ours under it that came
        to nothing (refused: nothing left to reduce; cancelled) keeps its own story."""
        seq = pos.exit_seq
        cid = exit_order_id(pos.entry_order_id, seq)
        taken = {u.client_order_id for u in rep.updates} | {q.client_order_id for q in rep.exit_orders} | \
            {q.client_order_id for q, _ in self._outbox} | set(self._tracked)     # queued or in flight: theirs
        while cid in taken or self.store.order(cid) is not None:
            seq += 1
            cid = exit_order_id(pos.entry_order_id, seq)
        return seq, cid

    def _coin_fee(self, pos: Position, venue_qty: float) -> bool:
        """Spot: the venue holds less by about the entry fee, which it took in the coin (booked already in
        ``entry_fee``, in USD): a quantity to correct, not a trade."""
        if self.futures or pos.entry_price <= 0:
            return False
        return pos.qty - venue_qty <= (pos.entry_fee / pos.entry_price) * 1.05 + 1e-12
