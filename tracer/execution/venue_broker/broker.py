"""The venue broker: a broker over real venues: the safety every venue client gets (tracer/execution/venue.py).

The agent cycle (tracer/agents/loop.py) drives it exactly like a paper broker, plus one call,
:meth:`VenueBroker.sync`, which asks the venue what happened:

- **Order safety.** Orders are written to the DB as ``new`` before they are sent. Quantities are
  rounded *down* to the venue's step; an order below the minimum quantity or notional is refused
  with a recorded reason and never sent. Client order ids are deterministic. An order POST is never
  blindly retried: after a timeout, a 5xx or a dropped connection (``Ambiguous``) the venue is
  queried by client order id; an entry the venue does not know yet is not sent again before
  ``unconfirmed_grace`` (see ``VenueCalls._place``). When even the query cannot be answered, the order
  stays ``new`` and the next cycle (or a restart) reconciles it the same way.
- **Rate limits and bans.** 429: wait ``Retry-After`` in the cycle when it is short
  (``TB_VENUE_MAX_WAIT_S``), otherwise leave the venue alone until then. 418: no request to the
  venue until the ban ends, alert. -1021: resync the clock offset and retry once. Signature,
  permission and margin errors: no retry, a record and an alert.
- **Stops on the venue.** After an entry fills, a reduce-only stop (and take-profit) rest on the
  venue where it supports them, so a dead agent still has its stops; they are cancelled when their
  position closes, so no orphaned stop can open a position. Trailing, time and volatility stops are
  the agent's (on bars), sent as reduce-only market orders.
- **Reconciliation** every cycle (and at start): pending orders are looked up, their fills booked;
  DB positions are compared with the venue's; a position closed on the venue (its stop or target
  filled, or liquidated) is booked as such; a venue position the DB does not know is adopted; every
  discrepancy goes to ``venue_events`` and to the alerts.
- **Failover** (futures): entries go to the first venue of ``clients`` that is up and not banned; a
  position stays on the venue that opened it (``orders.venue``) for its exits.

It keeps no state the DB does not have: it is rebuilt from the DB at every start.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

from tracer.store import Store, parse_iso, utcnow
from tracer.execution.broker import Bracket, OrderUpdate, VenueRules, exit_order_id
from tracer.execution.venue import OrderRejected, OrderSpec, VenueBalance, VenueClient, VenueError, VenueOrderType
from tracer.execution.venue_broker.calls import UNCONFIRMED, VenueState
from tracer.execution.venue_broker.ids import (TERMINAL, conditional, of_position, round_to_step, rules_reject,
                                              stop_order_id, target_order_id)
from tracer.execution.venue_broker.reconcile import Reconciliation
from tracer.execution.venue_broker.unbooked import TAKEN_AS_FILL
from tracer.logs import kv
from tracer.models import Order, OrderState, OrderType, Position, PositionSide, Side


class VenueBroker(Reconciliation):
    """The agents' broker over one or more venues (the first is the main one, the others backups)."""
    places_own_orders = True

    def __init__(self, agent: str, clients: Sequence[VenueClient], store: Store, log: logging.Logger, *,
                 futures: bool, max_retries: int = 3, backoff_s: float = 0.5, max_wait_s: float = 30.0,
                 exit_max_wait_s: float = 90.0, down_cooldown_s: float = 60.0, vol_stop_mult: float = 0.0,
                 interval: timedelta = timedelta(hours=1), sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], datetime] = utcnow, alert: Callable[[str], None] | None = None,
                 stop_attempts: int = 3, adopt_stop_pct: float = 0.05,
                 unconfirmed_grace: timedelta = timedelta(minutes=15),
                 finish_grace: timedelta = timedelta(minutes=2)):
        if not clients:
            raise ValueError("VenueBroker needs at least one venue client")
        self.agent = agent
        self.venues = {c.name: VenueState(c) for c in clients}
        self.order_of_venues = [c.name for c in clients]
        self.store = store
        self.log = log
        self.futures = futures
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.exit_max_wait_s = max(exit_max_wait_s, max_wait_s)
        self.down_cooldown_s = down_cooldown_s
        self.vol_stop_mult = vol_stop_mult
        self.interval = interval
        self.sleep = sleep
        self.clock = clock
        self.alert = alert
        self._positions: dict[str, Position] = {}
        self._pos_venue: dict[str, str] = {}                       # symbol -> venue holding the position
        self._tracked: dict[str, tuple[Order, Bracket | None, str]] = {}   # cid -> (order, bracket, venue)
        self._outbox: list[tuple[Order, Bracket | None]] = []
        self._balance: dict[str, Any] = {}
        self._entry_now: str | None = None
        self.last_price: dict[str, float] = {}
        self.realized_pnl = 0.0
        self.fees_paid = 0.0
        self.cash = 0.0
        self.stop_attempts = max(1, int(stop_attempts))   # stops sent per position before the agent only watches
        self.adopt_stop_pct = adopt_stop_pct                # an adopted position no signal covers: stop this far
        # how long "the venue does not know this order" is not believed: right after a timed-out POST, or for an
        # order it acknowledged, a lookup can miss an order that exists (a timed-out request processed late, a
        # history that lags); an entry is not sent again, and a sent order not given up, before this has passed
        self.unconfirmed_grace = unconfirmed_grace
        self._missing_since: dict[str, datetime] = {}       # cid -> first lookup that did not find it
        # how long an order that a venue finishes at once may stay working: a triggered stop (normally
        # milliseconds; Binance's algo service has been seen stuck in TRIGGERING for a day), a market order
        # (IOC; Alpaca can hold one in pending_cancel for minutes). Past it the stop no longer counts as
        # protection, and the market order is cancelled, with an alert either way
        self.finish_grace = finish_grace
        self._triggered_since: dict[str, datetime] = {}     # cid -> first lookup that found it triggered
        self._working_since: dict[str, datetime] = {}       # cid -> first lookup that found a market order working
        self._stuck: set[str] = set()                       # given up as stuck (alerted once)
        self._cancel_asked: set[str] = set()                # stuck market orders whose cancel the venue took
        self._fills_short_since: dict[str, datetime] = {}   # cid -> first time its fills did not add up
        self._forced_unknown_since: dict[str, datetime] = {}   # entry id -> first time forced closes unreadable
        self._shrunk_since: dict[str, datetime] = {}   # entry id -> first time the venue held less, unexplained
        # stop ids that ended for no fault of the stop (not a failed try): cancelled to cover a larger position,
        # or cancelled by the venue with the position it closed or reduced itself (ADL, liquidation, by hand)
        self._not_tries: set[str] = set()
        self._ended_stops: dict[str, tuple[str, str, float, str]] = {}   # to judge: cid -> (symbol, venue, qty, why)
        self._venue_held: dict[tuple[str, str], float] = {}   # this sync: (venue, symbol) -> quantity the venue holds
        # funding booked on an open position since the venue last reported its margin: where that margin is the
        # isolated wallet that pays the funding, a liquidation loses it inside the margin read before
        self._funding_unmargined: dict[str, float] = {}
        self._margin_read_at: dict[str, datetime] = {}      # symbol -> when the venue last reported its margin
        self._fees_elsewhere = 0.0          # fees paid outside the wallet's asset since the anchor (Money)
        self._elsewhere_changed = False
        self._found_in_flight = False       # this sync tracked an unconfirmed entry found on the venue
        self._unread_said: set[str] = set()   # entries whose unbooked venue position was said (entry_fill_unread)
        self._unprotected_said: set[tuple[str, str]] = set()   # (stop id, cause) said as position_unprotected
        # orders asked for by :meth:`get` (the loop's reconciliation, sent again by it when unknown) since the last
        # :meth:`_settle_stops`, which does not ask the venue for a stop of these again in the same sync
        self._asked_now: set[str] = set()
        self._synced_once = False           # a sync has run in this process
        self._anchored_unsynced = False     # the wallet check was anchored before this process's first sync
        self._unsettled: set[str] = set()   # exits that may have filled, not booked yet (this sync's lookups)
        # spot: coins held below the venue's step in no position (a coin fee's rest), symbol -> (qty, value now)
        self._dust_seen: dict[str, tuple[float, float]] = {}
        # spot: that dust as the books have it (kept with the wallet anchor), symbol -> (qty, value booked as
        # sold with its position); and what taking it into a new position changed (see Money._take_in_dust)
        self._dust_held: dict[str, tuple[float, float]] = {}
        self._dust_adj = 0.0
        self._elsewhere: set[tuple[str, str]] = set()     # (venue, symbol) held there while booked on another
        self._funding_refs: set[tuple[str, str]] = set()    # (venue, ref) booked
        self._funding_since: dict[tuple[str, str], datetime] = {}   # (venue, symbol) -> next lookup, venue clock
        self._wallet_seen: float | None = None              # last wallet difference seen (alert once it repeats)
        self._wallet_alerted: float | None = None
        self._funding_checked_at: datetime | None = None   # the cycle whose funding was last looked up
        # positions closed whose last funding lookup is still to be answered: entry id -> (venue, symbol, seen)
        self._funding_owed: dict[str, tuple[str, str, datetime]] = {}

    def bind_stop(self, stop: Any) -> None:
        """The agent's stop request (SIGTERM) also ends a client's wait for the venue's rate limit, and the broker's
        own waits (a 429's window, up to TB_VENUE_EXIT_MAX_WAIT_S for an exit, a venue stop or target: longer than
        the grace a stop request gets before SIGKILL)."""
        if self.sleep is time.sleep:
            def sleep(seconds: float) -> None:
                stop.wait(seconds)
            self.sleep = sleep
        for st in self.venues.values():
            throttle = getattr(st.client, "throttle", None)
            if throttle is not None:
                throttle.stop = stop

    def restore(self, positions: list[Position], pending: list[tuple[Order, Bracket | None]], realized_pnl: float,
                fees_paid: float, last_price: dict[str, float]) -> None:
        # an exit refused or handed over just before a restart moved ``exit_seq`` in memory only (the book is
        # written with the next cycle): an id is sent at most once, so the restored one moves past the spent ones
        self._positions = {p.symbol: replace(p, exit_seq=self._unspent_exit_seq(p, p.exit_seq)) for p in positions}
        for p in positions:
            # an adopted position's row had no venue before 2026-12-07: its stop's row says where it rests
            self._pos_venue[p.symbol] = next(
                (v for cid in (p.entry_order_id, *(stop_order_id(p.entry_order_id, k) for k in range(p.stop_seq + 1)),
                               target_order_id(p.entry_order_id)) if (v := self._venue_of(cid))),
                self.order_of_venues[0])
        for order, br in pending:
            self._tracked[order.client_order_id] = (order, br, self._venue_of(order.client_order_id)
                                                    or self.order_of_venues[0])
        self.realized_pnl, self.fees_paid = realized_pnl, fees_paid
        self.last_price.update(last_price)
        self._restore_owed_funding()
        self._restore_dust()
        self._restore_fees_elsewhere()
        for r in self.store.funding_booked(self.agent):
            self._funding_refs.add((r["venue"], r["venue_ref"]))
            key = (r["venue"], r["symbol"])
            nxt = parse_iso(r["ts"]) + timedelta(milliseconds=1)
            self._funding_since[key] = max(self._funding_since.get(key, nxt), nxt)
        for v in self.order_of_venues:      # last known balances: a venue banned or down at start still counts
            raw = self.store.notify_state(self._balance_key(v))
            if raw and v not in self._balance:
                try:
                    d = json.loads(raw)
                    self._balance[v] = VenueBalance(float(d["wallet"]), float(d["available"]), float(d["equity"]))
                except (ValueError, KeyError, TypeError):
                    pass

    def _balance_key(self, venue: str) -> str:
        return f"venue_balance:{self.agent}:{venue}"

    def _venue_of(self, cid: str) -> str | None:
        row = self.store.order(cid)
        v = row["venue"] if row is not None else None
        return v if v in self.venues else None

    def balance(self) -> float:
        """The free money of the venue new entries go to: the pre-trade margin cap's cash. An entry can use only
        the margin of the venue it is sent to, never the other venue's (equity, for the loss limits, counts all)."""
        if not self._balance:
            return self.cash
        b = self._balance.get(self._entry_venue())
        return b.available if b is not None else 0.0

    def equity(self) -> float:
        if not self._balance:
            return self.cash
        return sum(b.equity for b in self._balance.values())

    def positions(self) -> list[Position]:
        return list(self._positions.values())

    def starting_equity(self) -> float | None:
        """The venues' equity now (every configured venue), for the account's initial capital at a first start."""
        self._refresh_balances()
        if self._balance:
            self.check_wallet()     # anchors the money before the first order: every later payment is booked
        return self.equity() if self._balance else None

    def open_orders(self) -> list[Order]:
        return [o for o, _, _ in self._tracked.values()]

    def rules(self, symbol: str) -> VenueRules:
        return self._call(self._entry_venue(), "rules", symbol)

    def _entry_venue(self) -> str:
        """The first usable venue, main first. Switching to a backup (or back) is recorded and alerted."""
        now = self._now()
        chosen = next((v for v in self.order_of_venues if self.venues[v].usable(now)), self.order_of_venues[0])
        main = self.order_of_venues[0]
        if chosen != (self._entry_now or main):
            self._event(chosen, "failover" if chosen != main else "failback", alert=True,
                        message=f"new entries go to {chosen}" + (f" ({main} unavailable)" if chosen != main else ""),
                        previous=self._entry_now or main)
        self._entry_now = chosen
        return chosen

    def get(self, client_order_id: str) -> OrderUpdate | None:
        """What the venue knows of an order (restart reconciliation). Starts tracking it when found."""
        row = self.store.order(client_order_id)
        if row is None:
            return None
        venue = row["venue"] if row["venue"] in self.venues else self._entry_venue()
        self._asked_now.add(client_order_id)
        try:
            vo = self._call(venue, "get_order", row["symbol"], client_order_id,
                            conditional=row["type"] in (OrderType.STOP.value, OrderType.LIMIT.value))
        except VenueError as e:
            # cannot tell: report it as still unsent-or-unknown; never a blind resubmit
            return OrderUpdate(client_order_id, OrderState.NEW, f"unconfirmed: {type(e).__name__}")
        if vo is None:
            return None
        self._track(row, venue, vo.venue_order_id)
        return OrderUpdate(client_order_id, OrderState.SUBMITTED if vo.state is not OrderState.REJECTED
                           else OrderState.REJECTED, vo.reason)

    def venue_for(self, order: Order) -> str:
        """Where :meth:`submit` sends ``order``: a closing order to the venue holding its position, anything
        else to the entry venue (the main one, or the backup while the main one is down or banned)."""
        pos = self._positions.get(order.symbol)
        venue = self._pos_venue.get(order.symbol) if (order.reduce_only and pos is not None) else None
        return venue or self._entry_venue()

    def find(self, order: Order, bracket: Bracket | None = None) -> OrderUpdate | None:
        """What the venue knows of ``order`` by its client id, without the DB (an order sent while the DB
        could not record it): None when the venue never saw it, NEW when it cannot say now; when found,
        the broker tracks it (its fills are booked by the next :meth:`sync`)."""
        cid = order.client_order_id
        if cid in self._tracked:
            return OrderUpdate(cid, OrderState.SUBMITTED)
        venue = self.venue_for(order)
        try:
            vo = self._call(venue, "get_order", order.symbol, cid, conditional=conditional(order))
        except VenueError as e:
            return OrderUpdate(cid, OrderState.NEW, f"unconfirmed: {type(e).__name__}")
        if vo is None:
            return None
        if vo.state is OrderState.REJECTED:
            return OrderUpdate(cid, OrderState.REJECTED, vo.reason)
        self._tracked[cid] = (order, bracket, venue)
        return OrderUpdate(cid, OrderState.SUBMITTED)

    def requeue(self, orders: Sequence[tuple[Order, Bracket | None]]) -> None:
        """Put orders taken with :meth:`take_outbox` but not sent (a storage fault stopped the sending) back
        at the front of the outbox."""
        self._outbox[:0] = list(orders)

    def submit(self, order: Order, bracket: Bracket | None = None) -> OrderUpdate:
        """Send one order safely. Returns SUBMITTED when the venue has it (its fills are booked by the
        next :meth:`sync`), REJECTED with the reason, or NEW when it could not be sent or confirmed
        (it is reconciled, never blindly re-sent)."""
        cid = order.client_order_id
        if cid in self._tracked:
            return OrderUpdate(cid, OrderState.SUBMITTED)
        row = self.store.order(cid)
        if row is not None and OrderState(row["state"]) in TERMINAL:
            # a client id is sent at most once: a refused exit is not re-sent under the same id
            return OrderUpdate(cid, OrderState(row["state"]), row["state_reason"])
        pos = self._positions.get(order.symbol)
        # an unclear exit (its reason says so: also a row written before POSTs were recorded as ``order_sent``)
        if order.reduce_only and order.type is OrderType.MARKET and row is not None and \
                (str(row["state_reason"] or "").startswith(UNCONFIRMED) or self._unclear_since(cid) is not None):
            return self._unclear_exit(order, pos)
        if order.reduce_only and order.purpose in ("exit", "stop", "target") and \
                (pos is None or not of_position(cid, pos.entry_order_id)):
            # an order of a position that is gone (closed on the venue, by hand, while this order waited unsent):
            # a spot venue's "reduce-only" sells what the account holds of the coin, which may be the next
            # position's; a futures one would reduce or protect a position it was never meant for
            return OrderUpdate(cid, OrderState.CANCELED, "its position is closed; never sent")
        venue = self.venue_for(order)
        client = self.venues[venue].client
        try:
            rules = self._call(venue, "rules", order.symbol)
        except OrderRejected as e:      # e.g. the venue does not list the symbol: definitive
            self._event(venue, "order_refused", symbol=order.symbol, cid=cid, reason=str(e)[:200])
            return OrderUpdate(cid, OrderState.REJECTED, f"{venue} has no rules for {order.symbol}: {str(e)[:160]}")
        except VenueError as e:
            return OrderUpdate(cid, OrderState.NEW, f"not sent: {venue} rules unavailable ({type(e).__name__})")
        qty = round_to_step(order.qty, rules.step_size)
        if order.reduce_only and pos is not None:
            qty = min(qty, round_to_step(pos.qty, rules.step_size)) or qty
        price = order.stop_price or self.last_price.get(order.symbol, 0.0)
        why = rules_reject(qty, price, rules)
        if why and not (order.reduce_only and qty > 0):   # a closing order is never refused for its notional
            self._event(venue, "order_refused", symbol=order.symbol, cid=cid, reason=why)
            return OrderUpdate(cid, OrderState.REJECTED, why)
        if not order.reduce_only and order.purpose == "entry":
            held = self._held_unconfirmed(order, bracket, venue)
            if held is not None:
                return held
            blocked = self._entry_blocked(order, venue)
            if blocked is not None:
                return blocked
        if self.futures and not order.reduce_only and order.purpose == "entry":
            try:
                self._call(venue, "prepare_symbol", order.symbol, int(order.leverage))
            except VenueError as e:
                return self._refused(venue, order, e, "leverage/margin type not set")
        vtype = {OrderType.MARKET: VenueOrderType.MARKET, OrderType.STOP: VenueOrderType.STOP_MARKET,
                 OrderType.LIMIT: VenueOrderType.TAKE_PROFIT_MARKET}[order.type]
        spec = OrderSpec(cid, order.symbol, order.side, qty, vtype, order.reduce_only, order.stop_price)
        vo = self._place(venue, client, spec)
        if isinstance(vo, OrderUpdate):
            self._not_placed(order, vo, pos, venue)
            return vo
        self._tracked[cid] = (replace(order, qty=qty), bracket, venue)
        self._set_venue(cid, venue, vo.venue_order_id)
        self.log.info(kv("venue_order", venue=venue, client_order_id=cid, symbol=order.symbol, side=order.side.value,
                         qty=qty, state=vo.state.value))
        if vo.state is OrderState.REJECTED:
            self._tracked.pop(cid, None)
            upd = OrderUpdate(cid, OrderState.REJECTED, vo.reason or "rejected by the venue")
            if order.purpose in ("stop", "target"):     # accepted, then rejected (Bybit answers ids first)
                self._protection_refused(order, upd)
            return upd
        return OrderUpdate(cid, OrderState.SUBMITTED, None)

    def _unclear_exit(self, order: Order, pos: Position | None) -> OrderUpdate:
        """A market exit whose POST was unclear is never POSTed again under its id (Binance ids are unique only
        among open orders: a first POST processed late and ended, then a second, are two orders). The position's
        next exit id takes over (also after a restart, which forgets that it had); the old id is asked for
        until ``unconfirmed_grace`` has passed (its lookup books a late fill), then cancelled as superseded."""
        cid = order.client_order_id
        if pos is not None and cid == exit_order_id(pos.entry_order_id, pos.exit_seq):
            self._next_exit(pos, order)
        since = self._unclear_since(cid)
        if since is not None and self._now() - since < self.unconfirmed_grace:
            return OrderUpdate(cid, OrderState.NEW, f"{UNCONFIRMED}: not sent again; the next exit id went out")
        return OrderUpdate(cid, OrderState.CANCELED, "superseded by the position's next exit id; never sent again")

    def _next_exit(self, pos: Position, order: Order) -> None:
        """The position moves to its next exit id not spent yet, and the exit goes out under it now."""
        pos = replace(pos, exit_seq=self._unspent_exit_seq(pos, pos.exit_seq + 1))
        self._positions[order.symbol] = pos
        self._queue_exit(pos, order.reason or "exit", order.created_at)

    def _not_placed(self, order: Order, vo: OrderUpdate, pos: Position | None, venue: str) -> None:
        """What an order the venue did not take (refused, or its POST unclear) means for its position."""
        cid = order.client_order_id
        if vo.state is OrderState.NEW and (vo.reason or "").startswith(UNCONFIRMED) and pos is not None and \
                order.reduce_only and cid == exit_order_id(pos.entry_order_id, pos.exit_seq):
            # the exit may or may not be on the venue: it is asked for by its id next cycle, and the rest of
            # the position goes out now under the next exit id (reduce-only: together they close no more
            # than the position)
            prev = self.store.order(exit_order_id(pos.entry_order_id, pos.exit_seq - 1)) if pos.exit_seq else None
            again = prev is not None and str(prev["state_reason"] or "").startswith(UNCONFIRMED)
            self._next_exit(pos, order)
            self._event(venue, "exit_unconfirmed", symbol=order.symbol, cid=cid, alert=not again,
                        message=vo.reason or "", action="the next exit id goes out now")
        elif vo.state is OrderState.REJECTED and order.purpose in ("stop", "target"):
            self._protection_refused(order, vo)
        elif vo.state is OrderState.CANCELED and order.purpose in ("stop", "target"):
            self._id_spent(order, vo)
        elif vo.state is OrderState.REJECTED and order.reduce_only and pos is not None:
            # most often the venue's own stop or target closed it a moment earlier: sync books that. Whatever
            # the venue holds, or even when its positions cannot be read now, the position's next exit goes out
            # under a new id (a refused id is never sent again): without it, every later exit of this position
            # would be refused by the DB, unsent
            nxt = cid == exit_order_id(pos.entry_order_id, pos.exit_seq)
            if nxt:
                self._positions[order.symbol] = replace(pos, exit_seq=self._unspent_exit_seq(pos, pos.exit_seq + 1))
            try:
                vp = next((p for p in self._call(venue, "positions") if p.symbol == order.symbol), None)
                unread = False
            except VenueError:
                vp, unread = None, True
            if vp is not None or unread:        # still held, or maybe: said loudly
                self._event(venue, "exit_refused", symbol=order.symbol, cid=cid, alert=True,
                            message=vo.reason or "", venue_qty=vp.qty if vp is not None else None,
                            action=("the next exit goes out under a new id" if nxt else "")
                            + ("; the venue's positions could not be read" if unread else ""))

    def _held_unconfirmed(self, order: Order, bracket: Bracket | None, venue: str) -> OrderUpdate | None:
        """An entry left unconfirmed after an unclear POST is not sent again within ``unconfirmed_grace``:
        the venue is asked for it instead (a lookup right after a timeout can miss an order processed late)."""
        cid = order.client_order_id
        since = self._unclear_since(cid)
        if since is None or self._now() - since >= self.unconfirmed_grace:
            return None
        vo = self._lookup_or_new(venue, order.symbol, cid, False,
                                 f"not sent again before {(since + self.unconfirmed_grace).isoformat()}")
        if isinstance(vo, OrderUpdate):
            return vo
        self._tracked[cid] = (order, bracket, venue)
        self._set_venue(cid, venue, vo.venue_order_id)
        return OrderUpdate(cid, OrderState.SUBMITTED)

    def _entry_blocked(self, order: Order, venue: str) -> OrderUpdate | None:
        """One position per symbol per agent, at the venue. An entry is sent only when no position and no
        other entry of its symbol is open or in flight: an older entry the DB still has as ``new`` (never sent,
        e.g. during a ban) is cancelled once the venue confirms it never saw it, and an entry is never sent
        after a newer decision for its symbol. When the venue cannot say, nothing is sent (NEW: asked again)."""
        cid, sym = order.client_order_id, order.symbol
        if sym in self._positions:
            return OrderUpdate(cid, OrderState.REJECTED, f"a {sym} position is already open")
        other = next((c for c, (o, _, _) in self._tracked.items()
                      if o.symbol == sym and o.purpose == "entry" and not o.reduce_only and c != cid), None)
        if other is not None:
            return OrderUpdate(cid, OrderState.REJECTED, f"an entry for {sym} is already on the venue ({other})")
        mine = self.store.order(cid)
        created = parse_iso(mine["created_at"]) if mine is not None else order.created_at
        for r in self.store.orders_in_state(self.agent, OrderState.NEW):
            if r["symbol"] != sym or r["purpose"] != "entry" or r["reduce_only"] or r["client_order_id"] == cid:
                continue
            if created is not None and parse_iso(r["created_at"]) > created:
                return OrderUpdate(cid, OrderState.CANCELED,
                                   f"superseded by a newer entry decision ({r['client_order_id']}); never sent")
            # asked where it was sent (its venue is written before its POST): during a ban of the main venue
            # the backup has never heard of it, and that is no proof it was never sent
            there = r["venue"] if r["venue"] in self.venues else venue
            try:
                vo = self._call(there, "get_order", sym, r["client_order_id"], conditional=False)
            except VenueError as e:
                return self._refused(venue, order, e, f"an older {sym} entry ({r['client_order_id']}) "
                                                      f"cannot be confirmed")
            if vo is not None:      # it was sent after all: it is the symbol's entry, tracked from now on
                self.get(r["client_order_id"])
                return OrderUpdate(cid, OrderState.REJECTED,
                                   f"an older {sym} entry is on the venue ({r['client_order_id']})")
            since = self._unclear_since(r["client_order_id"])
            if since is not None and self._now() - since < self.unconfirmed_grace:
                # its POST was unclear: one lookup that misses it is no proof it was never processed (the same
                # grace that keeps it from being sent twice keeps a second entry of its symbol from going out)
                return OrderUpdate(cid, OrderState.REJECTED,
                                   f"an older {sym} entry ({r['client_order_id']}) may be on {there}: its POST was "
                                   f"unclear, asked for until {(since + self.unconfirmed_grace).isoformat()}")
            try:
                with self.store.transaction():
                    self.store.set_order_state(r["client_order_id"], OrderState.CANCELED,
                                               f"stale: superseded by {cid} before it was ever sent")
            except Exception as e:   # not recorded: send nothing now, the next attempt cancels it
                self.log.error(kv("stale_entry_not_cancelled", client_order_id=r["client_order_id"],
                                  error=type(e).__name__))
                return OrderUpdate(cid, OrderState.NEW, "not sent: an older entry could not be cancelled")
            self._event(venue, "stale_entry_cancelled", symbol=sym, cid=r["client_order_id"], superseded_by=cid)
        try:
            vp = next((p for p in self._call(venue, "positions") if p.symbol == sym), None)
        except VenueError as e:
            return self._refused(venue, order, e, f"{venue} positions unavailable")
        if vp is not None and not self._dust(venue, vp) and self._unclear_since(cid) is not None and \
                vp.side is (PositionSide.LONG if order.side is Side.BUY else PositionSide.SHORT):
            # this entry's own POST was unclear and its lookup still misses it: the venue's position is most likely
            # its fill, booked from that position with its bracket (:meth:`_await_entry`), never entered twice
            return OrderUpdate(cid, OrderState.NEW, f"{UNCONFIRMED}: {TAKEN_AS_FILL} ({vp.qty:g})")
        if mine is not None and TAKEN_AS_FILL in str(mine["state_reason"] or ""):
            # the position it was taken as the fill of is gone before it was booked (closed by hand): that was its
            # fill, so it is never sent again
            self._event(venue, "entry_fill_gone", symbol=sym, cid=cid, alert=True,
                        message="the position taken as its fill closed before it was booked: not sent again")
            return OrderUpdate(cid, OrderState.CANCELED, f"{TAKEN_AS_FILL}, which closed before it was booked; "
                                                         f"never sent again")
        if vp is not None and not self._dust(venue, vp):   # a spot fee's remainder is no position
            self._event(venue, "entry_refused_position_on_venue", symbol=sym, cid=cid, alert=True,
                        venue_qty=vp.qty, venue_side=vp.side.value)
            return OrderUpdate(cid, OrderState.REJECTED, f"the venue already holds a {sym} position "
                                                         f"({vp.side.value} {vp.qty:g}): not entered twice")
        return None

    def take_outbox(self) -> list[tuple[Order, Bracket | None]]:
        """Orders the broker itself needs sent (protective stops, agent exits), already in the DB as new."""
        out, self._outbox = self._outbox, []
        return out
