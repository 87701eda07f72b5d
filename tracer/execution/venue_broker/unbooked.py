"""What a venue holds that the DB has not booked: a position adopted, or awaited as an entry's fill; an order of
ours found working (tracked) or left by a closed position (cancelled as an orphan); a coin's rest below the step
(dust). Mixin of :class:`~tracer.execution.venue_broker.VenueBroker` (through ``Reconciliation``)."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tracer.execution.broker import BarReport, Bracket, OrderUpdate
from tracer.execution.venue import VenueError, VenueOrderType, VenuePosition
from tracer.execution.venue_broker.calls import VenueCalls
from tracer.execution.venue_broker.ids import ID_SPENT, of_position, stop_order_id, target_order_id
from tracer.models import Fill, Order, OrderState, OrderType, Position, PositionSide, Side
from tracer.store import row_to_order


BOOKED_FROM_POSITION = "booked from the venue's position"
TAKEN_AS_FILL = "the venue holds a position of its symbol, taken as its fill"   # in an entry's state reason


class Unbooked(VenueCalls):
    """Venue positions and orders the DB has not booked (see the module docstring)."""

    def _below_step(self, venue: str, symbol: str, qty: float) -> bool:
        try:
            r = self._call(venue, "rules", symbol)
        except VenueError:
            return False
        return qty < max(r.min_qty, r.step_size) - 1e-12

    def _dust(self, venue: str, vp: VenuePosition) -> bool:
        """A remainder too small to trade (e.g. what a spot fee taken in the coin leaves): not a position."""
        try:
            r = self._call(venue, "rules", vp.symbol)
        except VenueError:
            return False
        px = vp.mark_price or self.last_price.get(vp.symbol, vp.entry_price)
        return vp.qty < max(r.min_qty, r.step_size) - 1e-12 or vp.qty * px < r.min_notional

    def _adopt(self, venue: str, vp: VenuePosition, rep: BarReport, now: datetime) -> None:
        """A venue position the DB does not know: adopt the venue's truth, record it, alert."""
        cid = f"tb-adopt-{vp.symbol.replace('/', '')[:8]}-{now:%y%m%d%H%M}"
        side = Side.BUY if vp.side is PositionSide.LONG else Side.SELL
        o = Order(cid, self.agent, vp.symbol, side, vp.qty, OrderType.MARKET, leverage=vp.leverage,
                  purpose="adopted", reason="position found on the venue", created_at=now)
        rep.exit_orders.append(o)
        rep.venues[cid] = venue
        fill = Fill(cid, vp.symbol, side, vp.qty, vp.entry_price, 0.0, now)
        rep.fills.append(fill)
        rep.updates.append(OrderUpdate(cid, OrderState.FILLED, "adopted from the venue", vp.qty, vp.entry_price))
        self._positions[vp.symbol] = Position(
            agent=self.agent, symbol=vp.symbol, side=vp.side, qty=vp.qty, entry_price=vp.entry_price, opened_at=now,
            entry_fee=0.0, stop_loss=0.0, take_profit=0.0, trail_pct=0.0, best_price=vp.entry_price, max_hold_s=0.0,
            entry_order_id=cid, leverage=vp.leverage, margin=vp.margin, liquidation_price=vp.liquidation_price)
        self._pos_venue[vp.symbol] = venue
        if not self.futures and self._anchored_unsynced:
            # the spot ledger counts a held coin's cost as paid from the cash. A coin found at the first sync after
            # this process anchored the wallet check (before any sync: the start) was on the account then, and the
            # anchored cash never paid for it: its cost joins the anchor's offset. A coin bought later (by hand) was
            # paid from the cash, and the ledger's count of it is right as it is
            raw = rep.memos.get(self._anchor_key()) or self.store.notify_state(self._anchor_key())
            try:
                a = json.loads(raw) if raw else None
            except ValueError:
                a = None                # unreadable: check_wallet anchors again
            if a is not None:
                a["offset"] = float(a["offset"]) + vp.entry_price * vp.qty
                rep.memos[self._anchor_key()] = json.dumps(a)
        self._event(venue, "position_adopted", symbol=vp.symbol, cid=cid, alert=True, qty=vp.qty,
                    side=vp.side.value, entry_price=vp.entry_price)

    def _entry_in_flight(self, venue: str, symbol: str) -> str | None:
        """The id of an entry of ``symbol`` on its way (tracked and not booked yet, or left ``new`` after an
        unclear POST): a venue position of that symbol is most likely its fill, booked with its stop by the
        order's own lookup, not adopted as a second position. The DB's unconfirmed entries are asked for now."""
        cid = next((c for c, (o, _, v) in self._tracked.items()
                    if o.symbol == symbol and o.purpose == "entry" and not o.reduce_only and v == venue), None)
        if cid is not None:
            return cid
        for r in self.store.orders_in_state(self.agent, OrderState.NEW):
            # only one sent to this venue can have opened a position here (its venue is written before its POST)
            if r["symbol"] != symbol or r["purpose"] != "entry" or r["reduce_only"] or r["venue"] != venue:
                continue
            found = self.get(r["client_order_id"])      # tracked from now on when the venue has it
            self._found_in_flight |= found is not None
            if found is not None or self._unclear_since(r["client_order_id"]) is not None:
                self._event(venue, "adoption_deferred", symbol=symbol, cid=r["client_order_id"],
                            action="the entry's own lookup books this position")
                return str(r["client_order_id"])
        return None

    def _may_be_fill_of(self, venue: str, order: Order, vp: VenuePosition) -> bool:
        """``vp`` can be the fill of the entry ``order``: a position on the side it opens, with a price, not a
        coin's rest below the step (what :meth:`_await_entry` books; ``_sync_orders`` keeps the entry for it)."""
        side = PositionSide.LONG if order.side is Side.BUY else PositionSide.SHORT
        return vp.side is side and vp.entry_price > 0 and not self._dust(venue, vp)

    def _await_entry(self, venue: str, cid: str, vp: VenuePosition, rep: BarReport, now: datetime) -> None:
        """The venue holds a position of an entry of ours whose own lookup has not booked it (it fails, or misses
        the order): unprotected meanwhile, so said at once, and after ``unconfirmed_grace`` the entry is booked
        from the venue's position (its quantity and average price; its fee, unknown, as 0: the wallet check will
        show it) with its own bracket, and protected. The wait runs from the entry's unclear POST, or from when the
        position was first seen (recorded: a restart does not start it again); never while the venue reads the
        order as working (its own lookup books it), nor for a position on the other side (not its fill)."""
        row = self.store.order(cid)
        if row is None:
            return
        tracked = self._tracked.get(cid)
        order, bracket = (tracked[0], tracked[1]) if tracked else (row_to_order(row), None)
        if not self._may_be_fill_of(venue, order, vp):
            return
        try:        # the order itself, now: found, its own lookups book it (its fills, its fee)
            found = self._call(venue, "get_order", order.symbol, cid, conditional=False) is not None
        except VenueError:
            found = False
        if not found:
            try:    # or working on the venue's open orders (its lookup failing): booked when it ends, not now
                found = any(o.client_order_id == cid for o in self._call(venue, "open_orders", order.symbol))
            except VenueError:
                pass
        if found:
            if cid not in self._tracked:
                self._track(row, venue, row["venue_order_id"])
                rep.updates.append(OrderUpdate(cid, OrderState.SUBMITTED, None))
                self._found_in_flight = True
            return
        seen = self.store.last_venue_event_at(cid, "entry_fill_unread")
        if seen is None and cid not in self._unread_said:
            self._unread_said.add(cid)          # said once, also while the DB cannot record it
            self._event(venue, "entry_fill_unread", symbol=vp.symbol, cid=cid, alert=True, qty=vp.qty,
                        message=f"the venue holds {vp.side.value} {vp.qty:g} {vp.symbol}, the fill of {cid} whose "
                                f"lookup has not booked it: no stop on the venue until it does",
                        action=f"booked from the venue's position after {self.unconfirmed_grace}")
        clock = self._now()         # the wall clock the events are recorded by (``now`` is the cycle's time)
        since = min(t for t in (self._unclear_since(cid), seen, clock) if t is not None)
        if clock - since < self.unconfirmed_grace:
            return
        self._tracked.pop(cid, None)
        if bracket is None and row["bracket_json"]:
            bracket = Bracket(**json.loads(row["bracket_json"]))
        self._set_venue(cid, venue, row["venue_order_id"])
        # no more than it ordered: a position grown by hand is the venue's larger figure, compared (and its stop
        # resized) by the next sync
        qty = min(vp.qty, order.qty) if order.qty > 0 else vp.qty
        self._open(order, bracket, venue, Fill(cid, vp.symbol, order.side, qty, vp.entry_price, 0.0, now), rep)
        rep.updates.append(OrderUpdate(cid, OrderState.FILLED, f"{BOOKED_FROM_POSITION}: its lookup did not show the "
                                       f"fill within the grace; fee assumed 0", qty, vp.entry_price))
        self._event(venue, "entry_booked_from_position", symbol=vp.symbol, cid=cid, alert=True, qty=vp.qty,
                    price=vp.entry_price, message="its own lookup never showed the fill: booked at the venue's "
                                                  "average price, fee assumed 0, protected with its bracket")

    def _track(self, row: Any, venue: str, venue_order_id: str | None) -> None:
        """An order of the DB found on ``venue``: tracked from now on, its venue and venue id written."""
        br = json.loads(row["bracket_json"]) if row["bracket_json"] else None
        self._tracked[row["client_order_id"]] = (row_to_order(row), Bracket(**br) if br else None, venue)
        self._set_venue(row["client_order_id"], venue, venue_order_id)

    def _cancel_orphans(self, venue: str, rep: BarReport) -> None:
        """Our resting orders (client id ``tb-``) whose position is gone are cancelled."""
        try:
            open_ = self._call(venue, "open_orders")
        except VenueError:
            return
        booked_now = {u.client_order_id for u in rep.updates}     # this sync's: its DB row is not written yet
        for vo in open_:
            if not vo.client_order_id.startswith("tb-") or vo.client_order_id in self._tracked or \
                    vo.client_order_id in booked_now:
                continue
            pos = self._positions.get(vo.symbol)
            row = self.store.order(vo.client_order_id)
            if row is not None and OrderState(row["state"]) is OrderState.NEW and \
                    (not row["reduce_only"] or (pos is not None and of_position(vo.client_order_id, pos.entry_order_id))):
                # ours in flight: its POST was unclear and its lookups failed, and here it works on the venue. Tracked
                # from now on (its own lookups book its fills), never cancelled as the orphan of a closed position
                self._track(row, venue, vo.venue_order_id)
                rep.updates.append(OrderUpdate(vo.client_order_id, OrderState.SUBMITTED, None))
                self._event(venue, "order_found_working", symbol=vo.symbol, cid=vo.client_order_id)
                continue
            # a stop taken as spent on a lagging read (Binance -4116, then a lookup that missed it) rests after all:
            # a stray beside its successor, cancelled as below (the position's first stop included). A target has
            # no successor: it is kept, and cancelled with its position
            spent = vo.type is VenueOrderType.STOP_MARKET and row is not None and \
                str(row["state_reason"] or "").startswith(ID_SPENT)
            if pos is not None and not spent and vo.client_order_id in (stop_order_id(pos.entry_order_id),
                                                                        target_order_id(pos.entry_order_id)):
                continue
            if pos is not None and vo.type is VenueOrderType.STOP_MARKET and vo.reduce_only and \
                    vo.side is (Side.SELL if pos.side is PositionSide.LONG else Side.BUY) and \
                    stop_order_id(pos.entry_order_id, pos.stop_seq) not in self._tracked:
                continue     # an older stop still protects this position (adopted after a crash): kept until its own rests
            try:
                self._call(venue, "cancel_order", vo.symbol, vo.client_order_id)
            except VenueError:
                continue
            self._event(venue, "orphan_cancelled", symbol=vo.symbol, cid=vo.client_order_id, alert=True)
            if row is not None and not spent:      # a spent one's row is cancelled already
                rep.updates.append(OrderUpdate(vo.client_order_id, OrderState.CANCELED, "orphan: its position is closed"))
