"""What happened on the venue, booked: pending orders looked up and their fills booked (a part-filled exit
closes only what filled), positions compared with the venue's (closed on the venue, adopted, mismatched), and
orphaned resting orders cancelled."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

from tracer.execution.broker import BarReport, Bracket, OrderUpdate, exit_order_id, target_level
from tracer.execution.venue import (WALLET_ASSETS, ForcedClose, VenueError, VenueFill, VenueOrder, VenuePosition)
from tracer.execution.venue_broker.ids import (ENDED_WITH_POSITION, RESIZED, TERMINAL, conditional, stop_order_id,
                                                target_order_id)
from tracer.execution.venue_broker.outside import OutsideCloses, forced_note
from tracer.execution.venue_broker.protection import Protection
from tracer.execution.venue_broker.unbooked import Unbooked
from tracer.logs import kv
from tracer.models import Fill, Order, OrderState, OrderType, Position, PositionSide, Side, Trade


class Reconciliation(Protection, OutsideCloses, Unbooked):
    """Mixin of :class:`~tracer.execution.venue_broker.VenueBroker`: the venue is the truth, booked in the DB."""

    def sync(self, now: datetime) -> BarReport:
        rep = BarReport()
        self._refresh_balances()
        self._book_funding(rep, now)        # first: a payment belongs to the position open when it was paid
        self._sync_orders(rep, now)
        self._found_in_flight = False
        self._sync_positions(rep, now)
        if self._found_in_flight:
            # an unconfirmed entry found on the venue is booked now, not next sync: the decisions that follow
            # this sync must count it (max positions, exposure, correlation)
            self._sync_orders(rep, now)
        self._judge_ended_stops(rep)
        self._book_owed_funding(rep)     # positions closed just now: what was paid up to their close
        if self._elsewhere_changed:        # written with the fills whose fees it counts
            self._elsewhere_changed = False
            rep.memos[self._elsewhere_key()] = repr(self._fees_elsewhere)
        self._settle_stops(rep)         # a stop left new (unclear, or refused before processing): again now
        self.ensure_protection()        # stops found missing go to the outbox (sent this cycle)
        self._synced_once, self._anchored_unsynced = True, False
        return rep

    def _refresh_balances(self) -> None:
        """Every configured venue's balance (the last known one while a venue is unreachable), so that equity
        never jumps when a backup venue starts or stops being used (the daily loss stop compares equities)."""
        now = self._now()
        for v in self.order_of_venues:
            if not self.venues[v].usable(now):
                continue
            try:
                b = self._call(v, "balance")
            except VenueError as e:
                self.log.warning(kv("balance_unavailable", venue=v, error=type(e).__name__))
                continue
            if b != self._balance.get(v):
                self._balance[v] = b
                try:       # kept so that a restart while this venue is unreachable still counts its money
                    with self.store.transaction():
                        self.store.set_notify_state(self._balance_key(v), json.dumps(
                            {"wallet": b.wallet, "available": b.available, "equity": b.equity}))
                except Exception as e:
                    self.log.warning(kv("balance_not_saved", venue=v, error=type(e).__name__))

    def _active_venues(self) -> list[str]:
        """The venues whose orders and positions a sync reads: every one in use, and every other one reachable
        now (a position there, from an entry whose POST was unclear or opened by hand, is seen: adopted or
        said, never left unwatched because new entries went back to the main venue)."""
        now = self._now()
        used = {self._entry_venue()} | set(self._pos_venue.values()) | {v for _, _, v in self._tracked.values()}
        return [v for v in self.order_of_venues if v in used or self.venues[v].usable(now)]

    def _sync_orders(self, rep: BarReport, now: datetime) -> None:
        # exits of ours that may have changed a venue position without being booked yet (part-filled, or not
        # readable now): a smaller venue position of their symbol is theirs, booked with them
        self._unsettled = set()
        for cid, (order, bracket, venue) in list(self._tracked.items()):
            if cid not in self._tracked:      # cancelled with its position earlier in this pass
                continue
            try:
                vo = self._call(venue, "get_order", order.symbol, cid, conditional=conditional(order))
            except VenueError:
                if order.reduce_only:
                    self._unsettled.add(cid)
                continue
            if order.reduce_only and (vo is None or vo.filled_qty > 0):
                self._unsettled.add(cid)        # until its fill is booked below
            if vo is None:
                # a lookup can miss an order that exists (a history that lags, a request processed late):
                # given up only when the venue still does not know it after the grace
                first_time, waiting = self._grace(self._missing_since, cid)
                if waiting:
                    if first_time:
                        self._event(venue, "order_not_visible", symbol=order.symbol, cid=cid,
                                    action="kept; asked again until the grace ends")
                    continue
                if not order.reduce_only and order.purpose == "entry" and order.symbol not in self._positions and \
                        (vp := self._venue_position(venue, order.symbol)) is not None and \
                        self._may_be_fill_of(venue, order, vp) and self.store.order(cid) is not None:
                    continue    # the venue holds a position it would have opened: awaited as its fill (_await_entry)
                self._missing_since.pop(cid, None)
                self._event(venue, "order_missing", symbol=order.symbol, cid=cid, alert=True,
                            message="an order the DB has as sent is unknown to the venue")
                self._tracked.pop(cid)
                rep.updates.append(OrderUpdate(cid, OrderState.REJECTED, "unknown to the venue"))
                pos = self._positions.get(order.symbol)
                if pos is not None and cid == exit_order_id(pos.entry_order_id, pos.exit_seq):
                    # its id is final now: the position's next exit must not be built under it (it would be
                    # refused by the DB, unsent, for ever)
                    self._positions[order.symbol] = replace(pos, exit_seq=self._unspent_exit_seq(pos, pos.exit_seq + 1))
                continue
            self._missing_since.pop(cid, None)
            if vo.ended_unread:
                vo = self._by_trades(venue, order, vo)
            if vo.state in (OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED) and order.type is not OrderType.MARKET:
                self._stuck_trigger(order, vo, venue)
                continue          # a resting stop / target: nothing to book yet
            self._triggered_since.pop(cid, None)
            if vo.state in (OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED):
                # still working, whatever it filled so far (Alpaca's pending_cancel can still fill): booked
                # once the venue says it is done
                self._overdue(order, vo, venue)
                continue
            self._working_since.pop(cid, None)
            self._tracked.pop(cid, None)
            if vo.filled_qty <= 0:
                rep.updates.append(OrderUpdate(cid, vo.state, vo.reason or vo.state.value))
                if order.reduce_only:
                    self._exit_ended_unfilled(order, vo, venue)
                continue
            fill = self._fill_of(venue, order, vo)
            if fill is None:
                self._tracked[cid] = (order, bracket, venue)     # fills not readable now: next cycle
                continue
            # times on the agent's clock: a venue fill stamped after the cycle's clock counts at the clock
            fill = replace(fill, ts=min(fill.ts, now))
            if order.purpose == "entry" and not order.reduce_only:
                self._open(order, bracket, venue, fill, rep)
            else:
                self._exit_filled(order, fill, venue, rep, vo.state)
                self._unsettled.discard(cid)

    def _by_trades(self, venue: str, order: Order, vo: VenueOrder) -> VenueOrder:
        """An order the venue says ended whose own order cannot be read (``ended_unread``): filled by what its
        trades say, when they show; otherwise left as it is (still triggered: judged stuck after ``finish_grace``,
        so that the agent's own stop check comes back, never left off for ever)."""
        try:
            fills: list[VenueFill] = self._call(venue, "fills", order.symbol, order.client_order_id,
                                                conditional=conditional(order))
        except VenueError:
            return vo
        qty = sum(f.qty for f in fills)
        if qty <= 0:
            return vo
        return replace(vo, state=OrderState.FILLED, filled_qty=qty, triggered=False, ended_unread=False,
                       avg_price=sum(f.qty * f.price for f in fills) / qty)

    def _stuck_trigger(self, order: Order, vo: VenueOrder, venue: str) -> None:
        """A stop or target triggered and not finished after ``finish_grace`` (its order never reached the
        book): it no longer counts as protection. Its level was crossed, so the exit it stands for goes out
        now as a reduce-only market order (were the stuck one to execute after all, reduce-only keeps the two
        from closing more than is held)."""
        cid = order.client_order_id
        if not vo.triggered:
            self._triggered_since.pop(cid, None)
            return
        since = self._triggered_since.setdefault(cid, self._now())
        pos = self._positions.get(order.symbol)
        if cid in self._stuck or self._now() - since < self.finish_grace or pos is None:
            return
        self._stuck.add(cid)
        self._event(venue, "stop_stuck_triggered", symbol=order.symbol, cid=cid, alert=True,
                    since=since.isoformat(), action="the exit goes out as a reduce-only market order")
        self._queue_exit(pos, order.reason or order.purpose, order.created_at)

    def _overdue(self, order: Order, vo: VenueOrder, venue: str) -> None:
        """A market order still working after ``finish_grace`` (a market order is IOC: it should be over in
        a second). It is cancelled once, with an alert; what it filled is booked when the venue ends it, and an
        exit that ends unfilled goes out again under a new id. No second order goes out while it may still
        fill (the agent's own stop waits for it too)."""
        cid = order.client_order_id
        since = self._working_since.setdefault(cid, self._now())
        if self._now() - since < self.finish_grace or cid in self._cancel_asked:
            return
        try:
            self._call(venue, "cancel_order", order.symbol, cid, conditional=False)
            self._cancel_asked.add(cid)
            action = "cancel requested; what it filled is booked when the venue ends it"
        except VenueError as e:
            action = f"cancel failed ({type(e).__name__}); asked again every cycle until it is taken"
        if cid not in self._stuck:          # said once
            self._stuck.add(cid)
            self._event(venue, "order_stuck", symbol=order.symbol, cid=cid, alert=True, state=vo.state.value,
                        filled=vo.filled_qty, since=since.isoformat(), action=action,
                        message=f"market {order.purpose} still working after {self.finish_grace}: {action}")

    def _exit_filled(self, order: Order, fill: Fill, venue: str, rep: BarReport,
                     state: OrderState = OrderState.FILLED) -> None:
        """A reduce-only order (exit, stop, target) filled: the whole position, or only part of it (a market
        exit that expired part-filled, a triggered stop or target that met a thin book). A part closes that
        part as a trade of its own; the rest stays open, protected, and its exit goes out again at once
        under the position's next exit id (the reason to exit still holds: the stop or target level was
        crossed, or the agent decided to leave)."""
        pos = self._positions.get(order.symbol)
        reason = order.reason or order.purpose
        if pos is None or fill.qty >= pos.qty - 1e-9 * max(1.0, pos.qty) or self._untradeable(venue, pos, fill.qty):
            self._close_by(order.symbol, fill, reason, venue, rep)
            return
        pos = self._book_part(pos, fill, reason, rep, state, f"partially filled: {fill.qty:g} of {order.qty:g}; "
                                                         f"{pos.qty - fill.qty:g} left open")
        cid = fill.client_order_id
        pos = replace(pos, exit_seq=self._unspent_exit_seq(pos, pos.exit_seq + 1)
                      if cid == exit_order_id(pos.entry_order_id, pos.exit_seq) else pos.exit_seq,
                      stop_seq=pos.stop_seq + (cid == stop_order_id(pos.entry_order_id, pos.stop_seq)))
        self._positions[pos.symbol] = pos
        self._event(venue, "partial_exit", symbol=pos.symbol, cid=cid, alert=True, filled=fill.qty,
                    ordered=order.qty, left=pos.qty, action="the rest exits now under a new id")
        self._queue_exit(pos, reason, order.created_at)

    def _untradeable(self, venue: str, pos: Position, filled: float) -> bool:
        """What a fill leaves is below the venue's step or minimum quantity (e.g. an exit rounded down to the
        step after a spot fee taken in the coin): no order can close it, so the position is closed."""
        return self._below_step(venue, pos.symbol, pos.qty - filled)

    def _exit_ended_unfilled(self, order: Order, vo: VenueOrder, venue: str) -> None:
        """A reduce-only order ended without a fill (a market exit expired, a stop expired or was cancelled on
        the venue, not by us): the position's next one gets a new id. A market exit is sent again now."""
        pos = self._positions.get(order.symbol)
        if pos is None:
            return
        cid = order.client_order_id
        if cid == exit_order_id(pos.entry_order_id, pos.exit_seq):
            pos = replace(pos, exit_seq=self._unspent_exit_seq(pos, pos.exit_seq + 1))
            self._positions[pos.symbol] = pos
            self._event(venue, "exit_not_filled", symbol=pos.symbol, cid=cid, alert=True,
                        message=vo.reason or vo.state.value, action="sent again under a new id")
            self._queue_exit(pos, order.reason or "exit", order.created_at)
        elif cid == stop_order_id(pos.entry_order_id, pos.stop_seq):
            self._positions[pos.symbol] = replace(pos, stop_seq=pos.stop_seq + 1)
            # judged after the positions are compared (_judge_ended_stops): the venue may have ended it with
            # the position it closed or reduced itself
            self._ended_stops[cid] = (pos.symbol, venue, pos.qty, vo.reason or vo.state.value)

    def _judge_ended_stops(self, rep: BarReport) -> None:
        """Stops that ended on the venue unfilled in this sync. One that went with the position (closed or
        reduced on the venue: ADL, liquidation, by hand; venues cancel reduce-only orders then) is no failed
        stop: recorded without an alert, and no stop try is spent (its row's reason says so, for restarts).
        Any other is alerted, saying truly whether a new stop goes out. The venue's own holding decides, not the
        booking of its cause (a forced close the history does not list yet is booked a sync or more later);
        when the venue's positions could not be read, the judgement waits for the next sync."""
        waiting: dict[str, tuple[str, str, float, str]] = {}
        for cid, (sym, venue, qty, why) in self._ended_stops.items():
            pos = self._positions.get(sym)
            if pos is not None and not cid.startswith(pos.entry_order_id[:33]):
                pos = None           # its position is gone (a new one of the symbol is not what it protected)
            held = self._venue_held.get((venue, sym))
            if pos is not None and held is None:
                waiting[cid] = (sym, venue, qty, why)
                continue
            eps = 1e-9 * max(1.0, qty)
            if pos is None or pos.qty < qty - eps or (held is not None and held < qty - eps):
                self._not_tries.add(cid)
                reason = f"{ENDED_WITH_POSITION}: {why}"
                ups = [i for i, u in enumerate(rep.updates) if u.client_order_id == cid]
                for i in ups:
                    rep.updates[i] = replace(rep.updates[i], reason=reason)
                if not ups:        # judged a sync later: its row is written again with the reason
                    rep.updates.append(OrderUpdate(cid, OrderState.CANCELED, reason))
                self._event(venue, "stop_ended_on_venue", symbol=sym, cid=cid, message=why,
                            action="ended with the part of the position the venue closed; "
                                   + ("a new stop covers the rest" if pos is not None else "nothing left to protect"))
                continue
            tries = self._stop_tries(pos)
            action = "a new stop is placed; the agent watches it" if tries < self.stop_attempts else \
                f"no more stops sent after {tries} that came to nothing; the agent watches it on every bar"
            self._event(venue, "stop_ended_on_venue", symbol=sym, cid=cid, alert=True, message=f"{why}; {action}",
                        attempt=tries, action=action)
        self._ended_stops = waiting

    def _fill_of(self, venue: str, order: Order, vo: VenueOrder) -> Fill | None:
        try:
            fills: list[VenueFill] = self._call(venue, "fills", order.symbol, order.client_order_id,
                                                conditional=conditional(order))
        except VenueError:
            return None         # its fees and prices cannot be read now: booked next cycle, never with fee 0
        qty = sum(f.qty for f in fills)
        cid = order.client_order_id
        if qty < vo.filled_qty * (1 - 1e-6):
            # the venue's trade history lags its order status: booked next cycle with its real fees and
            # prices; only after the grace from what the order says (the fees it lacks scaled in, or 0)
            if self._grace(self._fills_short_since, cid)[1] or not (vo.avg_price or qty > 0):
                return None
            self._event(venue, "fills_incomplete", symbol=order.symbol, cid=cid, alert=True,
                        order_filled=vo.filled_qty, fills_qty=qty, action="booked from the order's own figures")
            scale = vo.filled_qty / qty if qty > 0 else 0.0
            px = vo.avg_price or sum(f.qty * f.price for f in fills) / qty
            ts = max((f.ts for f in fills), default=vo.updated_at or self._now())
            qty = vo.filled_qty
        elif qty > 0:
            scale = 1.0
            px = sum(f.qty * f.price for f in fills) / qty
            ts = max(f.ts for f in fills)
        else:
            return None
        self._fills_short_since.pop(cid, None)
        self._fee_elsewhere(sum(f.fee for f in fills if f.fee_asset not in WALLET_ASSETS) * scale)
        return Fill(cid, order.symbol, order.side, qty, px, sum(f.fee for f in fills) * scale, ts)

    def _open(self, order: Order, bracket: Bracket | None, venue: str, fill: Fill, rep: BarReport) -> None:
        s = 1 if order.side is Side.BUY else -1
        b = bracket or Bracket(0.0, 0.0, 0.0, 0.0)
        vp = self._venue_position(venue, order.symbol)
        # spot venues take the buy fee in the coin: the position is what the venue holds, not what was bought
        qty = min(fill.qty, vp.qty) if (vp is not None and not self.futures) else fill.qty
        pos = Position(agent=self.agent, symbol=order.symbol, side=PositionSide.LONG if s > 0 else PositionSide.SHORT,
                       qty=qty, entry_price=fill.price, opened_at=fill.ts, entry_fee=fill.fee,
                       stop_loss=fill.price - s * b.stop_distance if b.stop_distance else 0.0,
                       take_profit=target_level(fill.price, s, b.take_profit_distance),
                       trail_pct=b.trail_pct, best_price=fill.price, max_hold_s=b.max_hold_s,
                       entry_order_id=order.client_order_id, signal_id=b.signal_id, leverage=order.leverage,
                       margin=(vp.margin if vp and vp.margin else fill.qty * fill.price / max(order.leverage, 1.0))
                       if self.futures else 0.0,
                       liquidation_price=vp.liquidation_price if vp else None, entry_atr=b.entry_atr)
        self._positions[order.symbol] = pos
        self._pos_venue[order.symbol] = venue
        self.fees_paid += fill.fee
        rep.fills.append(fill)
        rep.updates.append(OrderUpdate(order.client_order_id, OrderState.FILLED, None, fill.qty, fill.price))
        self._protect(pos, venue, rep)

    def _venue_position(self, venue: str, symbol: str) -> VenuePosition | None:
        try:
            return next((p for p in self._call(venue, "positions") if p.symbol == symbol), None)
        except VenueError:
            return None

    def _close_by(self, symbol: str, fill: Fill, reason: str, venue: str, rep: BarReport,
                  liquidated: bool = False, note: str | None = None) -> None:
        pos = self._positions.pop(symbol, None)
        self._pos_venue.pop(symbol, None)
        if pos is not None:         # its exits and stops not sent yet have nothing left to close
            self._outbox = [(q, b) for q, b in self._outbox
                            if not (q.reduce_only and q.client_order_id.startswith(pos.entry_order_id))]
        rep.fills.append(fill)
        rep.updates.append(OrderUpdate(fill.client_order_id, OrderState.FILLED, note, fill.qty, fill.price))
        if pos is None:
            return
        s = 1 if pos.side is PositionSide.LONG else -1
        funding = pos.funding_paid      # booked from the venue's income history as it was paid (_book_funding)
        gross = s * (fill.price - pos.entry_price) * pos.qty
        # funding paid after the margin was last read: inside that margin where the isolated wallet paid it
        unread = self._funding_unmargined.pop(symbol, 0.0) if self.venues[venue].client.funding_in_margin else 0.0
        # liquidated: the isolated margin (as the venue last reported it) is lost, and the fee to close it
        # where the venue reports one (Bybit: "initial margin + fee to close")
        pnl = (-(pos.margin) - pos.entry_fee - fill.fee - (funding - unread)) if liquidated else \
            gross - pos.entry_fee - fill.fee - funding
        self.fees_paid += fill.fee
        self.realized_pnl += pnl
        if not self.futures and fill.qty < pos.qty:
            self._leave_dust(symbol, pos.qty - fill.qty, fill.price, rep)
        rep.closed.append(pos)
        rep.trades.append(Trade(agent=self.agent, symbol=symbol, side=pos.side, qty=pos.qty, entry_ts=pos.opened_at,
                                entry_price=pos.entry_price, exit_ts=fill.ts, exit_price=fill.price,
                                fees=pos.entry_fee + fill.fee, funding=-funding, pnl=pnl,
                                exit_reason="liquidation" if liquidated else reason,
                                entry_order_id=pos.entry_order_id, exit_order_id=fill.client_order_id,
                                leverage=pos.leverage, signal_id=pos.signal_id))
        self._cancel_protection(pos, venue, rep, keep=fill.client_order_id)
        self._owe_funding(venue, symbol, pos.entry_order_id, rep)

    def _sync_positions(self, rep: BarReport, now: datetime) -> None:
        self._venue_held = {}
        for venue in self._active_venues():
            try:
                vps = {p.symbol: p for p in self._call(venue, "positions")}
            except VenueError:
                continue
            ours = {s: p for s, p in self._positions.items() if self._pos_venue.get(s) == venue}
            self._venue_held.update({(venue, s): vps[s].qty if s in vps else 0.0 for s in ours})
            for sym, pos in ours.items():
                vp = vps.get(sym)
                left = 0.0
                if vp is not None and not self.futures and vp.qty < pos.qty and self._below_step(venue, sym, vp.qty):
                    # spot: no order can sell what the venue still holds of the coin (a sale by hand of all that
                    # could be sold leaves the rest of the coin fee): the position is closed, that rest is dust
                    vp, left = None, vp.qty
                pending_exit = any(o.symbol == sym and o.reduce_only for o, _, _ in self._tracked.values()
                                   if o.type is OrderType.MARKET)
                if vp is None and not pending_exit:
                    self._closed_on_venue(venue, pos, rep, now, left)
                elif vp is not None:
                    self._compare_position(venue, pos, vp, pending_exit, rep, now)
            if not self.futures:
                self._dust_seen = {}
            self._elsewhere -= {(v, s) for v, s in self._elsewhere if v == venue and s not in vps}
            for sym, vp in vps.items():
                if sym in self._positions:
                    if self._pos_venue.get(sym) != venue and not self._dust(venue, vp) and \
                            (venue, sym) not in self._elsewhere:
                        # one position per symbol: a second one on another venue (an order of ours sent to
                        # both, or opened by hand) is not traded by the agent; it is said loudly, once
                        self._elsewhere.add((venue, sym))
                        self._event(venue, "position_on_second_venue", symbol=sym, alert=True, qty=vp.qty,
                                    side=vp.side.value, booked_on=self._pos_venue.get(sym),
                                    message=f"{vp.side.value} {vp.qty:g} here while the agent's {sym} position "
                                            f"is on {self._pos_venue.get(sym)}: close one by hand")
                    continue
                self._elsewhere.discard((venue, sym))
                if self._dust(venue, vp):
                    px = vp.mark_price or self.last_price.get(sym, vp.entry_price)
                    self._dust_seen[sym] = (vp.qty, vp.qty * px)
                elif (entry := self._entry_in_flight(venue, sym)) is None:
                    self._adopt(venue, vp, rep, now)
                else:
                    self._await_entry(venue, entry, vp, rep, now)
            self._cancel_orphans(venue, rep)

    def _compare_position(self, venue: str, pos: Position, vp: VenuePosition, pending_exit: bool, rep: BarReport,
                          now: datetime) -> None:
        """A DB position the venue holds too: a different size is explained (an exit of ours part-filled, a
        reduction outside the agent, a larger holding that needs a larger stop) and the venue's figure taken;
        the margin, liquidation and mark price are the venue's."""
        sym = pos.symbol
        if abs(vp.qty - pos.qty) > 1e-9 * max(1.0, pos.qty) or (vp.side is not pos.side):
            shrank = vp.side is pos.side and vp.qty < pos.qty
            if shrank and (pending_exit or any(self._tracked[c][0].symbol == sym
                                               for c in self._unsettled if c in self._tracked)):
                return      # an exit of ours filled in part: booked with that order, not here
            # spot: a new position takes in the coins an earlier one left below the step: no alarm
            dust_in = not self.futures and vp.side is pos.side and vp.qty > pos.qty and \
                self._below_step(venue, sym, vp.qty - pos.qty)
            self._event(venue, "dust_taken_in" if dust_in else "position_mismatch", symbol=sym,
                        alert=not dust_in, db_qty=pos.qty, venue_qty=vp.qty, db_side=pos.side.value,
                        venue_side=vp.side.value)
            if shrank and not self._untradeable(venue, pos, vp.qty) and not self._coin_fee(pos, vp.qty):
                reduced = self._reduced_on_venue(venue, pos, vp, rep, now)
                if reduced is None:
                    return          # cannot tell by what now: next cycle
                pos = reduced
            if vp.qty > pos.qty or vp.side is not pos.side:
                # its resting stop covers less than the venue holds: re-placed
                resized = self._resize_stop(venue, replace(pos, qty=vp.qty, side=vp.side), rep)
                if resized is None:
                    return          # the stop filled (in part) meanwhile: booked next sync, then compared
                pos = resized
            pos = replace(pos, qty=vp.qty, side=vp.side)
        self._positions[sym] = replace(pos, liquidation_price=vp.liquidation_price or pos.liquidation_price,
                                       margin=vp.margin or pos.margin)
        if vp.margin:      # it holds every payment made up to now (those the history shows later too)
            self._funding_unmargined.pop(sym, None)
            self._margin_read_at[sym] = self._now()
        if sym in self._dust_held:        # spot: the venue's holding of the coin now includes the dust
            self._take_in_dust(self._positions[sym], rep)
        if vp.mark_price:
            self.last_price[sym] = vp.mark_price

    def _closed_on_venue(self, venue: str, pos: Position, rep: BarReport, now: datetime, left: float = 0.0) -> None:
        """The venue no longer holds a position the DB has: its stop or target filled, or liquidation; on spot,
        ``left`` of the coin may remain, below the venue's step (dust)."""
        # our own orders of this position that may have closed it, the latest first
        ours = [(stop_order_id(pos.entry_order_id, pos.stop_seq), "stop_loss", OrderType.STOP),
                (target_order_id(pos.entry_order_id), "take_profit", OrderType.LIMIT),
                (exit_order_id(pos.entry_order_id, pos.exit_seq), "exit", OrderType.MARKET)]
        # and an earlier exit whose POST was unclear (still ``new``): the venue may have processed it late
        ours += [(cid, "exit", OrderType.MARKET) for k in range(pos.exit_seq - 1, -1, -1)
                 if (row := self.store.order(cid := exit_order_id(pos.entry_order_id, k))) is not None
                 and OrderState(row["state"]) is OrderState.NEW]
        # booked earlier in this sync (its DB row is written with the cycle): not what closed the rest either
        booked_now = {u.client_order_id for u in rep.updates}
        for cid, reason, typ in ours:
            row = self.store.order(cid)
            if cid in booked_now or (row is not None and OrderState(row["state"]) in TERMINAL):
                continue        # booked already: not what closed the rest
            try:
                vo = self._call(venue, "get_order", pos.symbol, cid, conditional=typ is not OrderType.MARKET)
            except VenueError:
                return          # cannot tell now: next cycle
            if self._maybe_ours(venue, cid, vo):
                return          # one of ours that may have closed it, not readable yet: decided next cycle
            if vo is not None and vo.state in TERMINAL and vo.filled_qty > 0:
                o = Order(cid, self.agent, pos.symbol, Side.SELL if pos.side is PositionSide.LONG else Side.BUY,
                          pos.qty, typ, reduce_only=True, purpose="exit", reason=reason,
                          created_at=pos.opened_at)
                fill = self._fill_of(venue, o, vo)
                if fill is None:
                    return
                fill = replace(fill, ts=min(fill.ts, now))
                if row is None:
                    rep.exit_orders.append(o)
                    rep.venues[cid] = venue
                self._tracked.pop(cid, None)
                self._exit_filled(o, fill, venue, rep, vo.state)
                if pos.symbol not in self._positions:
                    return
                pos = self._positions[pos.symbol]       # part of it: the rest closed outside the agent
                break
        # nothing of ours closed it: liquidated (futures) or closed by hand on the venue
        terms = self._outside_close_terms(venue, pos)
        if terms is None:
            return              # cannot tell now: next cycle
        reason, px, fee, forced_ids = terms
        liq = reason == ForcedClose.LIQUIDATION.value
        _, cid = self._free_exit_id(pos, rep)
        o = Order(cid, self.agent, pos.symbol, Side.SELL if pos.side is PositionSide.LONG else Side.BUY, pos.qty - left,
                  OrderType.MARKET, reduce_only=True, purpose="exit", reason=reason, created_at=now)
        rep.exit_orders.append(o)
        rep.venues[cid] = venue
        self._event(venue, "position_closed_on_venue", symbol=pos.symbol, cid=cid, alert=True,
                    assumed={"liquidation": "liquidation", "adl": "auto-deleveraging"}.get(reason, "closed outside the agent"),
                    price=px, forced_orders=forced_ids)
        # without the venue's own record (its forced closes or trades) the price and fee are the agent's guess: said
        # on the exit itself, where an explanation of the trade reads it
        note = forced_note(reason, forced_ids) if forced_ids else \
            f"{reason}; assumed: booked at {float(px):g} with fee 0 (the venue's record of it could not be read)"
        self._close_by(pos.symbol, Fill(cid, pos.symbol, o.side, pos.qty - left, float(px), fee, now),
                       o.reason, venue, rep, liquidated=bool(liq), note=note)

    def _maybe_ours(self, venue: str, cid: str, vo: VenueOrder | None) -> bool:
        """An order of ours that was sent, whose fill may be what closed the position but cannot be seen yet: a
        lookup that misses it (a history that lags, Bybit's cache after a restart) within ``unconfirmed_grace`` of
        the first miss, or a stop the venue says triggered whose own order is not readable yet (within
        ``finish_grace``), or an exit whose POST was unclear (``new``, not tracked) that the venue does not show
        yet, within ``unconfirmed_grace`` of that POST. Booking the close now would book it outside the agent, at
        the wrong price and fee (and its own fill again once its lookup shows it)."""
        now = self._now()
        if cid not in self._tracked:
            row = self.store.order(cid)
            if vo is not None and vo.state not in TERMINAL:
                if row is None or OrderState(row["state"]) is not OrderState.NEW:
                    return False
                # its POST was unclear and here the venue shows it working (or a stale read of it): ours in flight,
                # tracked from now on, its own lookups book its fills
                self._track(row, venue, vo.venue_order_id)
                return True
            since = self._unclear_since(cid) if vo is None else None
            return since is not None and now - since < self.unconfirmed_grace
        if vo is None:
            return now - self._missing_since.setdefault(cid, now) < self.unconfirmed_grace
        return vo.state not in TERMINAL and vo.triggered and \
            now - self._triggered_since.setdefault(cid, now) < self.finish_grace

    def _resize_stop(self, venue: str, pos: Position, rep: BarReport) -> Position | None:
        """The venue holds more than the position's resting stop covers: that stop is cancelled and the next
        one (under the next stop id, sent by :meth:`ensure_protection`) covers the whole position. None when
        the cancel was not taken: the stop filled, all or part, before it, or it triggered and its market order
        is in the book (a triggered algo order cannot be cancelled; it fills a moment later). It stays tracked,
        its fill is booked under its own id by the next sync's lookup, and the sizes are compared after that."""
        sid = stop_order_id(pos.entry_order_id, pos.stop_seq)
        if sid not in self._tracked:
            return pos
        try:
            vo = self._call(venue, "cancel_order", pos.symbol, sid, conditional=True)
        except VenueError as e:
            self._event(venue, "cancel_failed", symbol=pos.symbol, cid=sid, alert=True, error=type(e).__name__)
            return pos
        # an open, untriggered read is a cancel taken and not applied yet (Bybit's cancel is asynchronous)
        if vo is not None and (vo.filled_qty > 0 or vo.triggered or vo.state is OrderState.FILLED):
            return None
        self._tracked.pop(sid, None)
        self._not_tries.add(sid)
        rep.updates.append(OrderUpdate(sid, OrderState.CANCELED, f"{RESIZED}: the venue holds {pos.qty:g}"))
        self._event(venue, "stop_resized", symbol=pos.symbol, cid=sid, qty=pos.qty)
        return replace(pos, stop_seq=pos.stop_seq + 1)
