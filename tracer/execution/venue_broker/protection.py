"""A venue broker's protection of its positions: the venue stop and take-profit of each position (re-placed
under a new client id when refused or ended, a bounded number of times), the agent's own checks on every bar
while no stop rests on the venue (and its trailing, time and volatility stops), and the levels of a position
adopted from the venue."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from enum import Enum
from typing import Callable

from tracer.store import row_to_order
from tracer.execution.broker import BarReport, Bracket, OrderUpdate, exit_order_id, target_level
from tracer.execution.exits import advance, check_exit
from tracer.execution.venue import RateLimited, VenueError
from tracer.execution.venue_broker.calls import UNCONFIRMED, VenueCalls
from tracer.execution.venue_broker.ids import (ENDED_WITH_POSITION, ID_SPENT, RESIZED, TERMINAL, round_to_tick,
                                                stop_order_id, target_order_id)
from tracer.models import Bar, Order, OrderState, OrderType, Position, PositionSide, Side


class StopUnsent(str, Enum):
    """Why a position's venue stop rests nowhere for sure (the cause of its ``position_unprotected``)."""
    IP_BANNED = "ip banned"
    RATE_LIMITED = "rate limited"
    VENUE_DOWN = "venue down"
    UNCONFIRMED = "unconfirmed"       # its POST was unclear and the venue cannot say yet
    NOT_SENT = "not sent"             # refused before processing for another reason (rules unreadable, clock)
    ID_SPENT = "id spent"             # the stop before it ended on the venue unseen, and this one is not placed


class Protection(VenueCalls):
    """Mixin of :class:`~tracer.execution.venue_broker.VenueBroker`: every open position stays protected."""
    get: Callable[[str], OrderUpdate | None]                         # VenueBroker's, by client order id
    submit: Callable[[Order], OrderUpdate]

    def _protection_refused(self, order: Order, upd: OrderUpdate) -> None:
        """A venue refused a stop or target. When the market is already through its level (Binance -2021
        "would immediately trigger"), the exit it protects is due now: a reduce-only market order.
        Otherwise the position is unprotected on the venue: recorded and alerted (the agent's own checks
        on every bar still apply)."""
        pos = self._positions.get(order.symbol)
        if pos is None:
            return
        mark = self.last_price.get(order.symbol, pos.entry_price)
        long = pos.side is PositionSide.LONG
        level = order.stop_price or 0.0
        crossed = (mark <= level if long else mark >= level) if order.purpose == "stop" else \
                  (mark >= level if long else mark <= level)
        if crossed or "immediately trigger" in (upd.reason or ""):
            self._queue_exit(pos, order.reason or order.purpose, order.created_at)
            return
        venue = self._pos_venue.get(order.symbol, self.order_of_venues[0])
        if order.purpose == "stop" and order.client_order_id == stop_order_id(pos.entry_order_id, pos.stop_seq):
            # the next stop goes out under a new client id (ensure_protection, next sync), a bounded number of
            # times; meanwhile, and after, the agent watches the stop itself on every bar (on_bar)
            pos = replace(pos, stop_seq=pos.stop_seq + 1)
            self._positions[pos.symbol] = pos
            retry = self._stop_tries(pos) < self.stop_attempts
            self._event(venue, "position_unprotected", symbol=order.symbol, cid=order.client_order_id, alert=True,
                        message=upd.reason or "", attempt=self._stop_tries(pos),
                        action=("stop re-placed under a new id next cycle; " if retry else
                                f"no more stops sent after {self._stop_tries(pos)} refusals; ") + "the agent watches it on every bar")
        else:   # a refused take-profit: the agent takes profit itself at the level (on_bar)
            self._event(venue, "target_refused", symbol=order.symbol, cid=order.client_order_id,
                        message=upd.reason or "", action="the agent watches the target on every bar")

    def _id_spent(self, order: Order, upd: OrderUpdate) -> None:
        """A stop or target whose id the venue refused as a duplicate and cannot find (``ID_SPENT``): it ended on
        the venue unseen, and its id can never be sent again. No failed try: the position's stop moves to its next
        id, queued now (sent in this settle); a target is watched by the agent on every bar."""
        self._not_tries.add(order.client_order_id)
        pos = self._positions.get(order.symbol)
        if pos is None:
            return
        venue = self._pos_venue.get(order.symbol, self.order_of_venues[0])
        stop = order.purpose == "stop" and order.client_order_id == stop_order_id(pos.entry_order_id, pos.stop_seq)
        if stop:
            self._positions[pos.symbol] = replace(pos, stop_seq=pos.stop_seq + 1)
            self.ensure_protection()
        self._event(venue, "order_id_spent", symbol=order.symbol, cid=order.client_order_id, message=upd.reason or "",
                    action="the stop goes out under its next id now" if stop else
                    "the agent watches the target on every bar" if order.purpose == "target" else "")

    def on_bar(self, bar: Bar) -> BarReport:
        rep = BarReport()
        self.last_price[bar.symbol] = bar.close
        pos = self._positions.get(bar.symbol)
        if pos is None or any(o.symbol == bar.symbol and o.reduce_only and o.type is OrderType.MARKET
                              for o, _, _ in self._tracked.values()):
            return rep
        close_time = bar.ts + self.interval
        hit = check_exit(pos, bar.open, bar.high, bar.low, bar.close, close_time)
        reason = hit.reason if hit else None
        # the venue's own stop / target does it (booked by sync) only while one rests there; otherwise (refused,
        # expired, a venue without them, not placed yet) the agent watches the level itself
        sid = stop_order_id(pos.entry_order_id, pos.stop_seq)
        if (reason == "stop_loss" and sid in self._tracked and sid not in self._stuck) or \
                (reason == "take_profit" and target_order_id(pos.entry_order_id) in self._tracked):
            reason = None
        if reason is None and self.vol_stop_mult > 0 and pos.entry_atr and \
                bar.high - bar.low > self.vol_stop_mult * pos.entry_atr:
            reason = "volatility_stop"
        if reason is None:
            self._positions[bar.symbol] = advance(pos, bar.high, bar.low)
            return rep
        rep.exit_orders.append(self._queue_exit(pos, reason, close_time))
        return rep

    def _queue_exit(self, pos: Position, reason: str, created_at: datetime | None) -> Order:
        """A reduce-only market exit of the whole position, under the position's current exit id."""
        o = Order(exit_order_id(pos.entry_order_id, pos.exit_seq), self.agent, pos.symbol,
                  Side.SELL if pos.side is PositionSide.LONG else Side.BUY, pos.qty, OrderType.MARKET,
                  reduce_only=True, leverage=pos.leverage, purpose="exit", reason=reason, created_at=created_at)
        if not any(q.client_order_id == o.client_order_id for q, _ in self._outbox):
            self._outbox.append((o, None))
        return o

    def _protect(self, pos: Position, venue: str, rep: BarReport, target: bool = True) -> None:
        """Queue the venue stop and target of a position (written to the DB as new, then sent)."""
        if not self.venues[venue].client.supports_venue_stops:
            return
        close_side = Side.SELL if pos.side is PositionSide.LONG else Side.BUY
        up = pos.side is PositionSide.SHORT     # a short's stop is above: round it up
        made = []
        if pos.stop_loss > 0 and self._stop_tries(pos) < self.stop_attempts:
            made.append(Order(stop_order_id(pos.entry_order_id, pos.stop_seq), self.agent, pos.symbol, close_side,
                              pos.qty, OrderType.STOP, reduce_only=True, stop_price=pos.stop_loss, leverage=pos.leverage,
                              purpose="stop", reason="stop_loss", created_at=pos.opened_at))
        if pos.take_profit > 0 and target and self.store.order(target_order_id(pos.entry_order_id)) is None:
            made.append(Order(target_order_id(pos.entry_order_id), self.agent, pos.symbol, close_side, pos.qty,
                              OrderType.LIMIT, reduce_only=True, stop_price=pos.take_profit, leverage=pos.leverage,
                              purpose="target", reason="take_profit", created_at=pos.opened_at))
        try:
            tick = self._call(venue, "rules", pos.symbol).tick_size
        except VenueError:
            tick = 0.0
        for o in made:
            px = round_to_tick(o.stop_price or 0.0, tick, up if o.purpose == "stop" else not up)
            o = replace(o, stop_price=px)
            rep.exit_orders.append(o)
            if not any(q.client_order_id == o.client_order_id for q, _ in self._outbox):
                self._outbox.append((o, None))

    def _cancel_protection(self, pos: Position, venue: str, rep: BarReport, keep: str | None = None) -> None:
        """Cancel the position's resting stop/target, so no orphan can ever open a position."""
        ids = [stop_order_id(pos.entry_order_id, k) for k in range(pos.stop_seq + 1)] + \
              [target_order_id(pos.entry_order_id)]
        for cid in ids:
            if cid == keep:
                continue
            self._tracked.pop(cid, None)
            row = self.store.order(cid)
            if cid not in (ids[0], ids[-1]) and (row is None or OrderState(row["state"]) in TERMINAL):
                continue       # a re-placed stop that was never sent, or is over: nothing rests on the venue
            try:
                vo = self._call(venue, "cancel_order", pos.symbol, cid, conditional=True)
            except VenueError as e:
                self._event(venue, "cancel_failed", symbol=pos.symbol, cid=cid, alert=True, error=type(e).__name__)
                continue
            if row is not None:
                over = OrderState(row["state"]) in TERMINAL or \
                    any(u.client_order_id == cid and u.state in TERMINAL for u in rep.updates)
                if (vo is not None and vo.state is OrderState.FILLED) or over:
                    continue       # over already (a stop that filled in part keeps what its row says)
                rep.updates.append(OrderUpdate(cid, OrderState.CANCELED, "position closed"))

    def _stop_tries(self, pos: Position) -> int:
        """The position's stops that came to nothing (refused, ended on the venue): its stop ids so far, less
        those we cancelled only to cover a larger position (:meth:`_resize_stop`) and those the venue cancelled
        with the part of the position it closed itself (:meth:`_judge_ended_stops`), and those whose id was spent on
        the venue (:meth:`_id_spent`): no failed try."""
        resized = sum(1 for k in range(pos.stop_seq)
                      if (sid := stop_order_id(pos.entry_order_id, k)) in self._not_tries or
                      ((row := self.store.order(sid)) is not None and OrderState(row["state"]) is OrderState.CANCELED
                       and str(row["state_reason"] or "").startswith((RESIZED, ENDED_WITH_POSITION, ID_SPENT))))
        return pos.stop_seq - resized

    def ensure_protection(self) -> list[tuple[Order, Bracket | None]]:
        """Stops the positions should have on the venue and do not (a crash right after a fill, a stop the venue
        refused, expired or that filled only in part, an adopted position that just got its levels): each goes
        out under the position's current stop id, at most ``stop_attempts`` stops per position. Beyond that, or
        on a venue without stops, the agent watches the stop on every bar (:meth:`on_bar`)."""
        rep = BarReport()
        for sym, pos in list(self._positions.items()):
            venue = self._pos_venue.get(sym, self.order_of_venues[0])
            if not self.venues[venue].client.supports_venue_stops or pos.stop_loss <= 0:
                continue
            if self._stop_tries(pos) >= self.stop_attempts:
                continue
            sid = stop_order_id(pos.entry_order_id, pos.stop_seq)
            if sid in self._tracked or any(o.client_order_id == sid for o, _ in self._outbox):
                continue
            row = self.store.order(sid)
            if row is not None:
                if OrderState(row["state"]) in TERMINAL:      # ended before this process saw it (a restart)
                    self._positions[sym] = replace(pos, stop_seq=pos.stop_seq + 1)
                continue       # NEW: found or sent again by _settle_stops (each sync) and the reconciliation
            self._protect(pos, venue, rep, target=pos.stop_seq == 0)
        return [(o, None) for o in rep.exit_orders]

    def _settle_stops(self, rep: BarReport) -> None:
        """A position's stop left ``new`` (its POST unclear and its lookup failed, or refused before processing:
        418, 429, the venue down) is not left to the next cycle's reconciliation, an hour with no stop on the venue:
        each sync, while the venue takes requests, it is asked for and, when the venue does not show it, sent again
        under the same id (safe for a stop: one processed late rests open, and the venue refuses a second under
        its id, Binance -4116, Bybit 110072, Alpaca 40010001, which is looked up and tracked). While it rests
        nowhere for sure, the position is said unprotected (:meth:`_stop_unsent`). A stop the loop's reconciliation
        asked for (and sent again) since the last settle is not asked for again now: each costs a dozen lookups."""
        now = self._now()
        booked_now = {u.client_order_id for u in rep.updates}
        asked = set(self._asked_now)
        for sym, pos in list(self._positions.items()):
            venue = self._pos_venue.get(sym, self.order_of_venues[0])
            sid = stop_order_id(pos.entry_order_id, pos.stop_seq)
            if not self.venues[venue].client.supports_venue_stops or sid in self._tracked or sid in booked_now or \
                    any(o.client_order_id == sid for o, _ in self._outbox):
                continue
            row = self.store.order(sid)
            if row is None or OrderState(row["state"]) is not OrderState.NEW:
                continue
            if not self.venues[venue].usable(now) or sid in asked:
                self._stop_unsent(pos, sid, venue, str(row["state_reason"] or ""))
                continue
            order = row_to_order(row)
            # its venue set: a POST began, so the venue is asked first (tracked from now on when it has it)
            upd = self.get(sid) if row["venue"] else None
            if upd is None:
                upd = self.submit(order)
            elif upd.state is OrderState.REJECTED:       # accepted, then rejected (Bybit answers ids first)
                self._protection_refused(order, upd)
            if upd.state is OrderState.NEW:
                self._stop_unsent(pos, sid, venue, upd.reason or "")
            else:
                rep.updates.append(upd)
        self._asked_now = set()

    def _stop_unsent(self, pos: Position, sid: str, venue: str, reason: str) -> None:
        """``position_unprotected``, recorded and alerted once per stop id and cause (each sync finds it again):
        which position has no stop on the venue, why, and until when the venue takes no requests."""
        st, now = self.venues[venue], self._now()
        until = None
        if st.banned_until is not None and now < st.banned_until:
            cause, until = StopUnsent.IP_BANNED, st.banned_until
        elif st.down_until is not None and now < st.down_until:
            cause = StopUnsent.RATE_LIMITED if st.last_error == RateLimited.__name__ else StopUnsent.VENUE_DOWN
            until = st.down_until
        elif (spent := self._spent_before(pos)) is not None:
            cause = StopUnsent.ID_SPENT
        else:
            cause = StopUnsent.UNCONFIRMED if reason.startswith(UNCONFIRMED) else StopUnsent.NOT_SENT
        if (sid, cause) in self._unprotected_said:
            return
        self._unprotected_said.add((sid, cause))
        if cause is StopUnsent.UNCONFIRMED:
            why, then = "its POST was unclear and the venue cannot say yet whether it has it", \
                "asked for again, and sent again under its id if the venue does not show it"
        elif cause is StopUnsent.ID_SPENT:
            why, then = f"the id of its stop {spent} is spent (the stop ended there unseen: refused as a duplicate, " \
                        f"not found) and the stop under its next id is not placed ({reason})", \
                "asked for again, and sent again under its id if the venue does not show it" \
                if reason.startswith(UNCONFIRMED) else f"sent again once {venue} takes it"
        else:
            why, then = f"{cause.value}{' until ' + until.isoformat() if until else ''} ({reason})", \
                f"sent again once {venue} takes requests"
        self._event(venue, "position_unprotected", symbol=pos.symbol, cid=sid, alert=True, cause=cause.value,
                    side=pos.side.value, qty=pos.qty, until=until.isoformat() if until else None,
                    message=f"{pos.side.value} {pos.qty:g} has no stop on {venue}: {why}; the stop is {then}; "
                            f"meanwhile the agent watches it on every bar"
                            + (f", but nothing reaches {venue} during the ban: a stop set by hand there is the "
                               f"only one" if cause is StopUnsent.IP_BANNED else ""))

    def _spent_before(self, pos: Position) -> str | None:
        """The position's previous stop id when it was spent on the venue (:meth:`_id_spent`), else None."""
        if pos.stop_seq <= 0:
            return None
        prev = stop_order_id(pos.entry_order_id, pos.stop_seq - 1)
        row = self.store.order(prev)
        spent = row is not None and str(row["state_reason"] or "").startswith(ID_SPENT)
        return prev if spent else None

    def set_brackets(self, brackets: dict[str, Bracket | None]) -> None:
        """Levels for positions that have none (adopted from the venue): the stop, target, trailing and time stop
        the agent's rules give a position of that symbol now (``brackets``, from this cycle's signals), or, for
        a symbol no signal covers, a stop ``adopt_stop_pct`` from the entry. The venue stop goes out with the
        cycle's other orders; until it rests there the agent watches it on every bar."""
        for sym, pos in list(self._positions.items()):
            if pos.stop_loss > 0:
                continue
            s = 1 if pos.side is PositionSide.LONG else -1
            b = brackets.get(sym)
            if b is None or not (b.stop_distance > 0):
                b = Bracket(stop_distance=pos.entry_price * self.adopt_stop_pct, take_profit_distance=0.0,
                            trail_pct=0.0, max_hold_s=0.0)
            pos = replace(pos, stop_loss=pos.entry_price - s * b.stop_distance,
                          take_profit=target_level(pos.entry_price, s, b.take_profit_distance),
                          trail_pct=b.trail_pct, max_hold_s=b.max_hold_s, entry_atr=b.entry_atr or pos.entry_atr)
            self._positions[sym] = pos
            self._event(self._pos_venue.get(sym, self.order_of_venues[0]), "position_protected", symbol=sym,
                        cid=pos.entry_order_id, stop_loss=round(pos.stop_loss, 8),
                        take_profit=round(pos.take_profit, 8), rule="signal" if brackets.get(sym) else "adopt_stop_pct")
        self.ensure_protection()
