"""A broker over real venues: the safety every venue client gets (tracer/execution/venue.py).

The agent cycle (tracer/agents/loop.py) drives it exactly like a paper broker, plus one call,
:meth:`VenueBroker.sync`, which asks the venue what happened:

- **Order safety.** Orders are written to the DB as ``new`` before they are sent. Quantities are
  rounded *down* to the venue's step; an order below the minimum quantity or notional is refused
  with a recorded reason and never sent. Client order ids are deterministic. An order POST is never
  blindly retried: after a timeout, a 5xx or a dropped connection (``Ambiguous``) the venue is
  queried by client order id, and the order is sent again only if the venue does not know it. When
  even the query cannot be answered, the order stays ``new`` and the next cycle (or a restart)
  reconciles it the same way.
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
import math
import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any, Callable, Sequence

from tracer.db import Store, parse_iso, utcnow
from tracer.execution.broker import BarReport, Bracket, OrderUpdate, VenueRules, numbered_id, exit_order_id
from tracer.execution.exits import advance, check_exit
from tracer.execution.venue import (Ambiguous, AuthError, InsufficientMargin, IpBanned, OrderRejected, OrderSpec,
                                    RateLimited, TimestampDrift, VenueBalance, VenueClient, VenueError, VenueFill, VenueOrder,
                                    VenueOrderType, VenuePosition, VenueUnavailable)
from tracer.logs import kv
from tracer.models import Bar, Fill, Order, OrderState, OrderType, Position, PositionSide, Side, Trade

TERMINAL = (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED)


def stop_order_id(entry_order_id: str, seq: int = 0) -> str:
    """The venue stop of a position; ``seq`` (:attr:`Position.stop_seq`) counts the stops of that position the
    venue refused or that filled only in part: a re-placed stop gets a new id."""
    return f"{entry_order_id[:33]}-sl" if seq <= 0 else numbered_id(entry_order_id, "sl", seq)


def target_order_id(entry_order_id: str, seq: int = 0) -> str:
    """The venue take-profit of a position (``seq`` as for the stop)."""
    return f"{entry_order_id[:33]}-tp" if seq <= 0 else numbered_id(entry_order_id, "tp", seq)


def round_to_step(qty: float, step: float) -> float:
    """``qty`` rounded down to a multiple of ``step``, in decimal arithmetic (no 0.30000000000000004)."""
    if step <= 0:
        return qty
    d = (Decimal(repr(qty)) / Decimal(repr(step))).to_integral_value(rounding=ROUND_DOWN) * Decimal(repr(step))
    return float(d)


def round_to_tick(price: float, tick: float, side_up: bool) -> float:
    """A trigger price on the tick grid, rounded away from the market (a stop never gets closer)."""
    if tick <= 0:
        return price
    q = Decimal(repr(price)) / Decimal(repr(tick))
    q = q.to_integral_value(rounding="ROUND_CEILING" if side_up else "ROUND_FLOOR")
    return float(q * Decimal(repr(tick)))


def rules_reject(qty: float, price: float, rules: VenueRules) -> str | None:
    """Why an order of ``qty`` at about ``price`` cannot be sent (None if it can)."""
    if qty <= 0:
        return f"quantity rounds to zero at step {rules.step_size:g}"
    if qty < rules.min_qty:
        return f"quantity {qty:g} below the venue minimum {rules.min_qty:g}"
    if price > 0 and qty * price < rules.min_notional:
        return f"notional {qty * price:.2f} below the venue minimum {rules.min_notional:g}"
    return None


@dataclass
class VenueState:
    """Per-venue health, in memory only (a restart starts optimistic and learns again)."""
    client: VenueClient
    down_until: datetime | None = None      # unreachable / rate limited: skip until then
    banned_until: datetime | None = None    # 418
    last_error: str | None = None

    def usable(self, now: datetime) -> bool:
        return not ((self.down_until and now < self.down_until) or (self.banned_until and now < self.banned_until))


class VenueBroker:
    """The agents' broker over one or more venues (the first is the main one, the others backups)."""
    places_own_orders = True

    def __init__(self, agent: str, clients: Sequence[VenueClient], store: Store, log: logging.Logger, *,
                 futures: bool, max_retries: int = 3, backoff_s: float = 0.5, max_wait_s: float = 30.0,
                 down_cooldown_s: float = 60.0, vol_stop_mult: float = 0.0,
                 interval: timedelta = timedelta(hours=1), sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], datetime] = utcnow, alert: Callable[[str], None] | None = None,
                 stop_attempts: int = 3, adopt_stop_pct: float = 0.05):
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
        self._funding_refs: set[tuple[str, str]] = set()    # (venue, ref) booked
        self._funding_since: dict[tuple[str, str], datetime] = {}   # (venue, symbol) -> next lookup, venue clock
        self._wallet_seen: float | None = None              # last wallet difference seen (alert once it repeats)
        self._wallet_alerted: float | None = None

    def bind_stop(self, stop: Any) -> None:
        """The agent's stop request (SIGTERM) also ends a client's wait for the venue's rate limit."""
        for st in self.venues.values():
            throttle = getattr(st.client, "throttle", None)
            if throttle is not None:
                throttle.stop = stop

    # --- restore (crash-only) --------------------------------------------------------------
    def restore(self, positions: list[Position], pending: list[tuple[Order, Bracket | None]], realized_pnl: float,
                fees_paid: float, last_price: dict[str, float]) -> None:
        self._positions = {p.symbol: p for p in positions}
        for p in positions:
            self._pos_venue[p.symbol] = self._venue_of(p.entry_order_id) or self.order_of_venues[0]
        for order, br in pending:
            self._tracked[order.client_order_id] = (order, br, self._venue_of(order.client_order_id)
                                                    or self.order_of_venues[0])
        self.realized_pnl, self.fees_paid = realized_pnl, fees_paid
        self.last_price.update(last_price)
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

    # --- balances ------------------------------------------------------------------------------
    def balance(self) -> float:
        return sum(b.available for b in self._balance.values()) if self._balance else self.cash

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

    # --- the venue calls, with the retry policy ------------------------------------------------
    def _now(self) -> datetime:
        return self.clock()

    def _event(self, venue: str, kind: str, *, symbol: str | None = None, cid: str | None = None,
               alert: bool = False, **detail: Any) -> None:
        """Record a venue event in its own transaction (the cycle's transaction is not open here)."""
        try:
            with self.store.transaction():
                self.store.insert_venue_event(self.agent, venue, kind, symbol=symbol, client_order_id=cid,
                                              detail=detail, ts=self._now())
        except Exception as e:   # the DB may be the thing that fails; the log still has it
            self.log.error(kv("venue_event_not_recorded", kind=kind, error=type(e).__name__))
        self.log.warning(kv("venue_" + kind, venue=venue, symbol=symbol, client_order_id=cid,
                            **{k: v for k, v in detail.items() if isinstance(v, (str, int, float, bool))}))
        if alert and self.alert is not None:
            self.alert(f"{self.agent} on {venue}: {kind.replace('_', ' ')}"
                       f"{' ' + symbol if symbol else ''}{': ' + str(detail.get('message', '')) if detail.get('message') else ''}")

    def _mark_down(self, venue: str, e: VenueError, seconds: float) -> None:
        st = self.venues[venue]
        st.down_until = self._now() + timedelta(seconds=seconds)
        st.last_error = type(e).__name__
        self._event(venue, "venue_down", alert=True, error=type(e).__name__, message=str(e)[:200],
                    until=st.down_until.isoformat())

    def _ban(self, venue: str, e: IpBanned) -> None:
        st = self.venues[venue]
        st.banned_until = e.until
        self._event(venue, "ip_banned", alert=True, until=e.until.isoformat(), message=str(e)[:200])

    def _call(self, venue: str, method: str, *args: Any, **kw: Any) -> Any:
        """A *read* (or an idempotent call) with retries: backoff on Ambiguous, Retry-After on 429 when
        short, one clock resync on -1021. Raises the last VenueError when it cannot be done."""
        st = self.venues[venue]
        if not st.usable(self._now()):
            raise VenueUnavailable(f"{venue} is {'banned' if st.banned_until else 'down'} until "
                                   f"{(st.banned_until or st.down_until).isoformat()}")   # type: ignore[union-attr]
        resynced = False
        delay = self.backoff_s
        for attempt in range(1, self.max_retries + 1):
            try:
                return getattr(st.client, method)(*args, **kw)
            except TimestampDrift as e:
                if resynced:
                    raise
                self._resync(venue, e)
                resynced = True
            except RateLimited as e:
                self._event(venue, "rate_limited", retry_after_s=e.retry_after_s, used_weight=e.used_weight,
                            call=method)
                if e.retry_after_s > self.max_wait_s or attempt == self.max_retries:
                    self._mark_down(venue, e, e.retry_after_s)
                    raise
                self.sleep(e.retry_after_s)
            except IpBanned as e:
                self._ban(venue, e)
                raise
            except Ambiguous:
                if attempt == self.max_retries:
                    raise
                self.sleep(delay * (1 + random.random() * 0.25))
                delay *= 2
            except VenueUnavailable as e:
                self._mark_down(venue, e, self.down_cooldown_s)
                raise
        raise AssertionError("unreachable")

    def _resync(self, venue: str, e: Exception) -> None:
        try:
            offset = self.venues[venue].client.sync_time()
        except VenueError as e2:
            self._event(venue, "clock_resync_failed", error=type(e2).__name__)
            raise e
        self._event(venue, "clock_resync", offset_ms=round(offset, 1), message=str(e)[:120])

    # --- submitting -------------------------------------------------------------------------------
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
        try:
            vo = self._call(venue, "get_order", row["symbol"], client_order_id,
                            conditional=row["type"] in (OrderType.STOP.value, OrderType.LIMIT.value))
        except VenueError as e:
            # cannot tell: report it as still unsent-or-unknown; never a blind resubmit
            return OrderUpdate(client_order_id, OrderState.NEW, f"unconfirmed: {type(e).__name__}")
        if vo is None:
            return None
        from tracer.db import row_to_order
        import json
        br = json.loads(row["bracket_json"]) if row["bracket_json"] else None
        self._tracked[client_order_id] = (row_to_order(row), Bracket(**br) if br else None, venue)
        self._set_venue(client_order_id, venue, vo.venue_order_id)
        return OrderUpdate(client_order_id, OrderState.SUBMITTED if vo.state is not OrderState.REJECTED
                           else OrderState.REJECTED, vo.reason)

    def _set_venue(self, cid: str, venue: str, venue_order_id: str | None) -> None:
        try:
            with self.store.transaction():
                self.store.set_order_venue(cid, venue, venue_order_id or None)
        except Exception as e:
            self.log.error(kv("order_venue_not_recorded", client_order_id=cid, error=type(e).__name__))

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
            vo = self._call(venue, "get_order", order.symbol, cid, conditional=_conditional(order))
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
            if vo.state is OrderState.REJECTED and order.purpose in ("stop", "target"):
                self._protection_refused(order, vo)
            elif vo.state is OrderState.REJECTED and order.reduce_only and pos is not None:
                # most often the venue's own stop or target closed it a moment earlier: sync books that;
                # if the venue still holds the position, say so loudly
                vp = self._venue_position(venue, order.symbol)
                if vp is not None:
                    self._event(venue, "exit_refused", symbol=order.symbol, cid=cid, alert=True,
                                message=vo.reason or "", venue_qty=vp.qty)
            return vo
        self._tracked[cid] = (replace(order, qty=qty), bracket, venue)
        self._set_venue(cid, venue, vo.venue_order_id)
        self.log.info(kv("venue_order", venue=venue, client_order_id=cid, symbol=order.symbol, side=order.side.value,
                         qty=qty, state=vo.state.value))
        if vo.state is OrderState.REJECTED:
            self._tracked.pop(cid, None)
            return OrderUpdate(cid, OrderState.REJECTED, vo.reason or "rejected by the venue")
        return OrderUpdate(cid, OrderState.SUBMITTED, None)

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
            try:
                vo = self._call(venue, "get_order", sym, r["client_order_id"], conditional=False)
            except VenueError as e:
                return self._refused(venue, order, e, f"an older {sym} entry ({r['client_order_id']}) "
                                                      f"cannot be confirmed")
            if vo is not None:      # it was sent after all: it is the symbol's entry, tracked from now on
                self.get(r["client_order_id"])
                return OrderUpdate(cid, OrderState.REJECTED,
                                   f"an older {sym} entry is on the venue ({r['client_order_id']})")
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
        if vp is not None:
            self._event(venue, "entry_refused_position_on_venue", symbol=sym, cid=cid, alert=True,
                        venue_qty=vp.qty, venue_side=vp.side.value)
            return OrderUpdate(cid, OrderState.REJECTED, f"the venue already holds a {sym} position "
                                                         f"({vp.side.value} {vp.qty:g}): not entered twice")
        return None

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
            retry = pos.stop_seq < self.stop_attempts
            self._event(venue, "position_unprotected", symbol=order.symbol, cid=order.client_order_id, alert=True,
                        message=upd.reason or "", attempt=pos.stop_seq,
                        action=("stop re-placed under a new id next cycle; " if retry else
                                f"no more stops sent after {pos.stop_seq} refusals; ") + "the agent watches it on every bar")
        else:   # a refused take-profit: the agent takes profit itself at the level (on_bar)
            self._event(venue, "target_refused", symbol=order.symbol, cid=order.client_order_id,
                        message=upd.reason or "", action="the agent watches the target on every bar")

    def _refused(self, venue: str, order: Order, e: VenueError, what: str) -> OrderUpdate:
        kind = {AuthError: "auth_error", InsufficientMargin: "insufficient_margin"}.get(type(e), "order_rejected")
        self._event(venue, kind, symbol=order.symbol, cid=order.client_order_id,
                    alert=kind != "order_rejected", message=str(e)[:200], code=e.code)
        if isinstance(e, (AuthError, InsufficientMargin, OrderRejected)):
            return OrderUpdate(order.client_order_id, OrderState.REJECTED, f"{what}: {type(e).__name__}: {str(e)[:160]}")
        return OrderUpdate(order.client_order_id, OrderState.NEW, f"not sent: {what} ({type(e).__name__})")

    def _place(self, venue: str, client: VenueClient, spec: OrderSpec) -> VenueOrder | OrderUpdate:
        """The one place an order is POSTed. Never two POSTs unless the venue said it never saw the first."""
        st = self.venues[venue]
        if not st.usable(self._now()):
            return OrderUpdate(spec.client_order_id, OrderState.NEW, f"not sent: {venue} unavailable")
        resynced = False
        for attempt in range(1, self.max_retries + 1):
            try:
                return client.place_order(spec)
            except TimestampDrift as e:       # rejected before processing: safe to send again once
                if resynced:
                    return self._refused(venue, _as_order(spec, self.agent), e, "clock drift after resync")
                try:
                    self._resync(venue, e)
                except VenueError:
                    return OrderUpdate(spec.client_order_id, OrderState.NEW, "not sent: clock resync failed")
                resynced = True
            except RateLimited as e:          # 429 is refused before processing: safe to send again
                self._event(venue, "rate_limited", symbol=spec.symbol, cid=spec.client_order_id,
                            retry_after_s=e.retry_after_s, used_weight=e.used_weight, call="place_order")
                if e.retry_after_s > self.max_wait_s or attempt == self.max_retries:
                    self._mark_down(venue, e, e.retry_after_s)
                    return OrderUpdate(spec.client_order_id, OrderState.NEW, "not sent: rate limited")
                self.sleep(e.retry_after_s)
            except IpBanned as e:
                self._ban(venue, e)
                return OrderUpdate(spec.client_order_id, OrderState.NEW, "not sent: IP banned by the venue")
            except VenueUnavailable as e:
                self._mark_down(venue, e, self.down_cooldown_s)
                return OrderUpdate(spec.client_order_id, OrderState.NEW, f"not sent: {venue} unavailable")
            except (AuthError, InsufficientMargin, OrderRejected) as e:
                return self._refused(venue, _as_order(spec, self.agent), e, "refused by the venue")
            except VenueError as e:   # Ambiguous, or any unclassified venue error: the order may exist
                self._event(venue, "order_ambiguous", symbol=spec.symbol, cid=spec.client_order_id,
                            error=str(e)[:160], status=e.status)
                try:
                    found = self._call(venue, "get_order", spec.symbol, spec.client_order_id,
                                       conditional=spec.type is not VenueOrderType.MARKET)
                except VenueError as e2:
                    # cannot confirm either way: leave it to the reconciliation, never re-POST blind
                    return OrderUpdate(spec.client_order_id, OrderState.NEW,
                                       f"unconfirmed after {type(e).__name__}: lookup failed ({type(e2).__name__})")
                if found is not None:
                    self._event(venue, "order_found_after_ambiguous", symbol=spec.symbol, cid=spec.client_order_id)
                    return found
                # the venue never saw it: sending again cannot duplicate it
        return OrderUpdate(spec.client_order_id, OrderState.NEW, "not sent: retries exhausted")

    def take_outbox(self) -> list[tuple[Order, Bracket | None]]:
        """Orders the broker itself needs sent (protective stops, agent exits), already in the DB as new."""
        out, self._outbox = self._outbox, []
        return out

    # --- bars: agent-managed exits ----------------------------------------------------------------
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
        if (reason == "stop_loss" and stop_order_id(pos.entry_order_id, pos.stop_seq) in self._tracked) or \
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

    # --- sync: what happened on the venue -------------------------------------------------------------
    def sync(self, now: datetime) -> BarReport:
        rep = BarReport()
        self._refresh_balances()
        self._book_funding(rep)        # first: a payment belongs to the position open when it was paid
        self._sync_orders(rep, now)
        self._sync_positions(rep, now)
        self._queue_protection()
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
        used = {self._entry_venue()} | set(self._pos_venue.values()) | {v for _, _, v in self._tracked.values()}
        return [v for v in self.order_of_venues if v in used]

    def _sync_orders(self, rep: BarReport, now: datetime) -> None:
        for cid, (order, bracket, venue) in list(self._tracked.items()):
            if cid not in self._tracked:      # cancelled with its position earlier in this pass
                continue
            try:
                vo = self._call(venue, "get_order", order.symbol, cid, conditional=_conditional(order))
            except VenueError:
                continue
            if vo is None:
                self._event(venue, "order_missing", symbol=order.symbol, cid=cid, alert=True,
                            message="an order the DB has as sent is unknown to the venue")
                self._tracked.pop(cid)
                rep.updates.append(OrderUpdate(cid, OrderState.REJECTED, "unknown to the venue"))
                continue
            if vo.state in (OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED) and order.type is not OrderType.MARKET:
                continue          # a resting stop / target: nothing to book yet
            if vo.state in (OrderState.SUBMITTED,) and vo.filled_qty <= 0:
                continue
            if vo.state is OrderState.PARTIALLY_FILLED:
                continue          # book once the venue says it is done
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
        s = 1 if pos.side is PositionSide.LONG else -1
        frac = fill.qty / pos.qty
        fee_part, fund_part = pos.entry_fee * frac, pos.funding_paid * frac
        pnl = s * (fill.price - pos.entry_price) * fill.qty - fee_part - fill.fee - fund_part
        self.fees_paid += fill.fee
        self.realized_pnl += pnl
        rep.fills.append(fill)
        rep.updates.append(OrderUpdate(fill.client_order_id, state, f"partially filled: {fill.qty:g} of "
                                       f"{order.qty:g}; {pos.qty - fill.qty:g} left open", fill.qty, fill.price))
        rep.trades.append(Trade(agent=self.agent, symbol=pos.symbol, side=pos.side, qty=fill.qty,
                                entry_ts=pos.opened_at, entry_price=pos.entry_price, exit_ts=fill.ts,
                                exit_price=fill.price, fees=fee_part + fill.fee, funding=-fund_part, pnl=pnl,
                                exit_reason=reason, entry_order_id=pos.entry_order_id,
                                exit_order_id=fill.client_order_id, leverage=pos.leverage, signal_id=pos.signal_id))
        cid = fill.client_order_id
        pos = replace(pos, qty=pos.qty - fill.qty, entry_fee=pos.entry_fee - fee_part,
                      funding_paid=pos.funding_paid - fund_part, margin=pos.margin * (1 - frac),
                      exit_seq=pos.exit_seq + (cid == exit_order_id(pos.entry_order_id, pos.exit_seq)),
                      stop_seq=pos.stop_seq + (cid == stop_order_id(pos.entry_order_id, pos.stop_seq)))
        self._positions[pos.symbol] = pos
        self._event(venue, "partial_exit", symbol=pos.symbol, cid=cid, alert=True, filled=fill.qty,
                    ordered=order.qty, left=pos.qty, action="the rest exits now under a new id")
        self._queue_exit(pos, reason, order.created_at)

    def _untradeable(self, venue: str, pos: Position, filled: float) -> bool:
        """What a fill leaves is below the venue's step or minimum quantity (e.g. an exit rounded down to the
        step after a spot fee taken in the coin): no order can close it, so the position is closed."""
        try:
            r = self._call(venue, "rules", pos.symbol)
        except VenueError:
            return False
        return pos.qty - filled < max(r.min_qty, r.step_size) - 1e-12

    def _exit_ended_unfilled(self, order: Order, vo: VenueOrder, venue: str) -> None:
        """A reduce-only order ended without a fill (a market exit expired, a stop expired or was cancelled on
        the venue, not by us): the position's next one gets a new id. A market exit is sent again now."""
        pos = self._positions.get(order.symbol)
        if pos is None:
            return
        cid = order.client_order_id
        if cid == exit_order_id(pos.entry_order_id, pos.exit_seq):
            pos = replace(pos, exit_seq=pos.exit_seq + 1)
            self._positions[pos.symbol] = pos
            self._event(venue, "exit_not_filled", symbol=pos.symbol, cid=cid, alert=True,
                        message=vo.reason or vo.state.value, action="sent again under a new id")
            self._queue_exit(pos, order.reason or "exit", order.created_at)
        elif cid == stop_order_id(pos.entry_order_id, pos.stop_seq):
            pos = replace(pos, stop_seq=pos.stop_seq + 1)
            self._positions[pos.symbol] = pos
            self._event(venue, "stop_ended_on_venue", symbol=pos.symbol, cid=cid, alert=True,
                        message=vo.reason or vo.state.value, action="a new stop is placed; the agent watches it")

    def _fill_of(self, venue: str, order: Order, vo: VenueOrder) -> Fill | None:
        try:
            fills: list[VenueFill] = self._call(venue, "fills", order.symbol, order.client_order_id,
                                                conditional=_conditional(order))
        except VenueError:
            return None         # its fees and prices cannot be read now: booked next cycle, never with fee 0
        qty = sum(f.qty for f in fills)
        if qty > 0:
            px = sum(f.qty * f.price for f in fills) / qty
            fee = sum(f.fee for f in fills)
            ts = max(f.ts for f in fills)
        elif vo.avg_price:
            qty, px, fee, ts = vo.filled_qty, vo.avg_price, 0.0, vo.updated_at or self._now()
        else:
            return None
        return Fill(order.client_order_id, order.symbol, order.side, qty, px, fee, ts)

    def _open(self, order: Order, bracket: Bracket | None, venue: str, fill: Fill, rep: BarReport) -> None:
        s = 1 if order.side is Side.BUY else -1
        b = bracket or Bracket(0.0, 0.0, 0.0, 0.0)
        vp = self._venue_position(venue, order.symbol)
        # spot venues take the buy fee in the coin: the position is what the venue holds, not what was bought
        qty = min(fill.qty, vp.qty) if (vp is not None and not self.futures) else fill.qty
        pos = Position(agent=self.agent, symbol=order.symbol, side=PositionSide.LONG if s > 0 else PositionSide.SHORT,
                       qty=qty, entry_price=fill.price, opened_at=fill.ts, entry_fee=fill.fee,
                       stop_loss=fill.price - s * b.stop_distance if b.stop_distance else 0.0,
                       take_profit=fill.price + s * b.take_profit_distance if b.take_profit_distance else 0.0,
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

    def _protect(self, pos: Position, venue: str, rep: BarReport, target: bool = True) -> None:
        """Queue the venue stop and target of a position (written to the DB as new, then sent)."""
        if not self.venues[venue].client.supports_venue_stops:
            return
        close_side = Side.SELL if pos.side is PositionSide.LONG else Side.BUY
        up = pos.side is PositionSide.SHORT     # a short's stop is above: round it up
        made = []
        if pos.stop_loss > 0 and pos.stop_seq < self.stop_attempts:
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

    def _venue_position(self, venue: str, symbol: str) -> VenuePosition | None:
        try:
            return next((p for p in self._call(venue, "positions") if p.symbol == symbol), None)
        except VenueError:
            return None

    def _close_by(self, symbol: str, fill: Fill, reason: str, venue: str, rep: BarReport,
                  liquidated: bool = False) -> None:
        pos = self._positions.pop(symbol, None)
        self._pos_venue.pop(symbol, None)
        rep.fills.append(fill)
        rep.updates.append(OrderUpdate(fill.client_order_id, OrderState.FILLED, None, fill.qty, fill.price))
        if pos is None:
            return
        s = 1 if pos.side is PositionSide.LONG else -1
        funding = pos.funding_paid      # booked from the venue's income history as it was paid (_book_funding)
        gross = s * (fill.price - pos.entry_price) * pos.qty
        # liquidated: the isolated margin (as the venue last reported it) is lost
        pnl = (-(pos.margin) - pos.entry_fee - funding) if liquidated else gross - pos.entry_fee - fill.fee - funding
        self.fees_paid += fill.fee
        self.realized_pnl += pnl
        rep.closed.append(pos)
        rep.trades.append(Trade(agent=self.agent, symbol=symbol, side=pos.side, qty=pos.qty, entry_ts=pos.opened_at,
                                entry_price=pos.entry_price, exit_ts=fill.ts, exit_price=fill.price,
                                fees=pos.entry_fee + fill.fee, funding=-funding, pnl=pnl,
                                exit_reason="liquidation" if liquidated else reason,
                                entry_order_id=pos.entry_order_id, exit_order_id=fill.client_order_id,
                                leverage=pos.leverage, signal_id=pos.signal_id))
        self._cancel_protection(pos, venue, rep, keep=fill.client_order_id)

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
            if self.store.order(cid) is not None:
                if vo is not None and vo.state is OrderState.FILLED:
                    continue
                rep.updates.append(OrderUpdate(cid, OrderState.CANCELED, "position closed"))

    def _sync_positions(self, rep: BarReport, now: datetime) -> None:
        for venue in self._active_venues():
            try:
                vps = {p.symbol: p for p in self._call(venue, "positions")}
            except VenueError:
                continue
            ours = {s: p for s, p in self._positions.items() if self._pos_venue.get(s) == venue}
            for sym, pos in ours.items():
                vp = vps.get(sym)
                pending_exit = any(o.symbol == sym and o.reduce_only for o, _, _ in self._tracked.values()
                                   if o.type is OrderType.MARKET)
                if vp is None and not pending_exit:
                    self._closed_on_venue(venue, pos, rep, now)
                elif vp is not None:
                    if abs(vp.qty - pos.qty) > 1e-9 * max(1.0, pos.qty) or (vp.side is not pos.side):
                        self._event(venue, "position_mismatch", symbol=sym, alert=True, db_qty=pos.qty,
                                    venue_qty=vp.qty, db_side=pos.side.value, venue_side=vp.side.value)
                        pos = replace(pos, qty=vp.qty, side=vp.side)
                    self._positions[sym] = replace(pos, liquidation_price=vp.liquidation_price or pos.liquidation_price,
                                                   margin=vp.margin or pos.margin)
                    if vp.mark_price:
                        self.last_price[sym] = vp.mark_price
            for sym, vp in vps.items():
                if sym not in self._positions and not self._dust(venue, vp):
                    self._adopt(venue, vp, rep, now)
            self._cancel_orphans(venue, rep)

    def _closed_on_venue(self, venue: str, pos: Position, rep: BarReport, now: datetime) -> None:
        """The venue no longer holds a position the DB has: its stop or target filled, or liquidation."""
        # our own orders of this position that may have closed it, the latest first
        ours = [(stop_order_id(pos.entry_order_id, pos.stop_seq), "stop_loss", OrderType.STOP),
                (target_order_id(pos.entry_order_id), "take_profit", OrderType.LIMIT),
                (exit_order_id(pos.entry_order_id, pos.exit_seq), "exit", OrderType.MARKET)]
        for cid, reason, typ in ours:
            row = self.store.order(cid)
            if row is not None and OrderState(row["state"]) in TERMINAL:
                continue        # booked already: not what closed the rest
            try:
                vo = self._call(venue, "get_order", pos.symbol, cid, conditional=typ is not OrderType.MARKET)
            except VenueError:
                return          # cannot tell now: next cycle
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
                self._tracked.pop(cid, None)
                self._exit_filled(o, fill, venue, rep, vo.state)
                if pos.symbol not in self._positions:
                    return
                pos = self._positions[pos.symbol]       # part of it: the rest closed outside the agent
                break
        # nothing of ours closed it: liquidated (futures) or closed by hand on the venue
        cid = exit_order_id(pos.entry_order_id)
        liq = self.futures and pos.liquidation_price
        px = pos.liquidation_price if liq else self.last_price.get(pos.symbol, pos.entry_price)
        o = Order(cid, self.agent, pos.symbol, Side.SELL if pos.side is PositionSide.LONG else Side.BUY, pos.qty,
                  OrderType.MARKET, reduce_only=True, purpose="exit",
                  reason="liquidation" if liq else "closed_on_venue", created_at=now)
        if self.store.order(cid) is None:
            rep.exit_orders.append(o)
        self._event(venue, "position_closed_on_venue", symbol=pos.symbol, alert=True,
                    assumed="liquidation" if liq else "closed outside the agent", price=px)
        self._close_by(pos.symbol, Fill(cid, pos.symbol, o.side, pos.qty, float(px), 0.0, now),
                       o.reason, venue, rep, liquidated=bool(liq))

    def _dust(self, venue: str, vp: VenuePosition) -> bool:
        """A remainder too small to trade (e.g. what a spot fee taken in the coin leaves): not a position."""
        try:
            r = self._call(venue, "rules", vp.symbol)
        except VenueError:
            return False
        px = vp.mark_price or self.last_price.get(vp.symbol, vp.entry_price)
        return vp.qty < r.min_qty or vp.qty * px < r.min_notional

    def _adopt(self, venue: str, vp: VenuePosition, rep: BarReport, now: datetime) -> None:
        """A venue position the DB does not know: adopt the venue's truth, record it, alert."""
        cid = f"tb-adopt-{vp.symbol.replace('/', '')[:8]}-{now:%y%m%d%H%M}"
        side = Side.BUY if vp.side is PositionSide.LONG else Side.SELL
        o = Order(cid, self.agent, vp.symbol, side, vp.qty, OrderType.MARKET, leverage=vp.leverage,
                  purpose="adopted", reason="position found on the venue", created_at=now)
        rep.exit_orders.append(o)
        fill = Fill(cid, vp.symbol, side, vp.qty, vp.entry_price, 0.0, now)
        rep.fills.append(fill)
        rep.updates.append(OrderUpdate(cid, OrderState.FILLED, "adopted from the venue", vp.qty, vp.entry_price))
        self._positions[vp.symbol] = Position(
            agent=self.agent, symbol=vp.symbol, side=vp.side, qty=vp.qty, entry_price=vp.entry_price, opened_at=now,
            entry_fee=0.0, stop_loss=0.0, take_profit=0.0, trail_pct=0.0, best_price=vp.entry_price, max_hold_s=0.0,
            entry_order_id=cid, leverage=vp.leverage, margin=vp.margin, liquidation_price=vp.liquidation_price)
        self._pos_venue[vp.symbol] = venue
        self._event(venue, "position_adopted", symbol=vp.symbol, cid=cid, alert=True, qty=vp.qty,
                    side=vp.side.value, entry_price=vp.entry_price)

    def _cancel_orphans(self, venue: str, rep: BarReport) -> None:
        """Our resting orders (client id ``tb-``) whose position is gone are cancelled."""
        try:
            open_ = self._call(venue, "open_orders")
        except VenueError:
            return
        for vo in open_:
            if not vo.client_order_id.startswith("tb-") or vo.client_order_id in self._tracked:
                continue
            pos = self._positions.get(vo.symbol)
            if pos is not None and vo.client_order_id in (stop_order_id(pos.entry_order_id),
                                                          target_order_id(pos.entry_order_id)):
                continue
            try:
                self._call(venue, "cancel_order", vo.symbol, vo.client_order_id)
            except VenueError:
                continue
            self._event(venue, "orphan_cancelled", symbol=vo.symbol, cid=vo.client_order_id, alert=True)
            if self.store.order(vo.client_order_id) is not None:
                rep.updates.append(OrderUpdate(vo.client_order_id, OrderState.CANCELED, "orphan: its position is closed"))

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
            if pos.stop_seq >= self.stop_attempts:
                continue
            sid = stop_order_id(pos.entry_order_id, pos.stop_seq)
            if sid in self._tracked or any(o.client_order_id == sid for o, _ in self._outbox):
                continue
            row = self.store.order(sid)
            if row is not None:
                if OrderState(row["state"]) in TERMINAL:      # ended before this process saw it (a restart)
                    self._positions[sym] = replace(pos, stop_seq=pos.stop_seq + 1)
                continue       # NEW: reconciliation sends it or finds it on the venue
            self._protect(pos, venue, rep, target=pos.stop_seq == 0)
        return [(o, None) for o in rep.exit_orders]

    def _queue_protection(self) -> None:
        """Every sync: the stops :meth:`ensure_protection` finds missing go to the outbox (sent this cycle)."""
        self.ensure_protection()

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
                          take_profit=pos.entry_price + s * b.take_profit_distance if b.take_profit_distance else 0.0,
                          trail_pct=b.trail_pct, max_hold_s=b.max_hold_s, entry_atr=b.entry_atr or pos.entry_atr)
            self._positions[sym] = pos
            self._event(self._pos_venue.get(sym, self.order_of_venues[0]), "position_protected", symbol=sym,
                        cid=pos.entry_order_id, stop_loss=round(pos.stop_loss, 8),
                        take_profit=round(pos.take_profit, 8), rule="signal" if brackets.get(sym) else "adopt_stop_pct")
        self._queue_protection()

    # --- money: funding and the wallet ----------------------------------------------------------------
    def _book_funding(self, rep: BarReport) -> None:
        """Funding payments from each venue's income history, on the venue's own clock, since the last one
        booked (or since the agent's money was first reconciled on that venue): each booked once (the venue's
        id), on the position open when it was paid. A lookup that fails is simply done again next cycle (the
        payment is booked late, never as 0)."""
        if not self.futures:
            return
        for sym, pos in list(self._positions.items()):
            venue = self._pos_venue.get(sym, self.order_of_venues[0])
            if not self.venues[venue].usable(self._now()):
                continue
            since = self._funding_since.get((venue, sym)) or self._money_since(venue)
            if since is None:
                continue
            try:
                pays = self._call(venue, "funding", sym, since)
            except VenueError as e:
                self.log.warning(kv("funding_unavailable", venue=venue, symbol=sym, error=type(e).__name__,
                                    action="asked again next cycle"))
                continue
            for fp in sorted(pays, key=lambda f: f.ts):
                ref = fp.ref or f"{fp.ts.isoformat()}:{fp.amount}"
                self._funding_since[(venue, sym)] = max(self._funding_since.get((venue, sym), since),
                                                        fp.ts + timedelta(milliseconds=1))
                if (venue, ref) in self._funding_refs:
                    continue
                self._funding_refs.add((venue, ref))
                pos = self._positions[sym]
                self._positions[sym] = replace(pos, funding_paid=pos.funding_paid + fp.amount)
                rep.funding.append((venue, replace(fp, ref=ref), pos.entry_order_id))

    def _anchor_key(self) -> str:
        return f"wallet_anchor:{self.agent}"

    def _anchor(self) -> dict[str, Any] | None:
        raw = self.store.notify_state(self._anchor_key())
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def _money_since(self, venue: str) -> datetime | None:
        """The venue time from which this agent's money is reconciled on ``venue`` (None before the first)."""
        a = self._anchor()
        ms = (a or {}).get("since_ms", {}).get(venue)
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms else None

    def ledger(self) -> float:
        """What the booked trades, fees and funding say the wallets changed by: realised P&L (closed trades
        and closed parts, net of their fees and funding) less the open positions' entry fees and funding."""
        return self.realized_pnl - sum(p.entry_fee + p.funding_paid for p in self._positions.values())

    def check_wallet(self) -> float | None:
        """Money reconciles: the venues' wallets against the DB's ledger, once per cycle (after the cycle's
        fills are booked). The first check, with nothing in flight, anchors the comparison (and the venue time
        from which funding is booked); after that a difference beyond fee rounding, seen twice in a row (not a
        fill racing the check), is a ``wallet_mismatch`` venue event and an alert, once per difference.
        Returns the difference (None when it cannot be checked now)."""
        if not self._balance:
            return None
        wallet = sum(b.wallet for b in self._balance.values())
        a = self._anchor()
        if a is None or set(a.get("since_ms", {})) != set(self._balance):
            if any(o.type is OrderType.MARKET for o, _, _ in self._tracked.values()):
                return None     # an order in flight: anchor once nothing is moving
            since = dict((a or {}).get("since_ms", {}))
            for v in self._balance:
                if v not in since:
                    try:
                        since[v] = int(self._call(v, "server_time").timestamp() * 1000)
                    except VenueError:
                        return None
            a = {"offset": wallet - self.ledger() if a is None else a["offset"], "since_ms": since}
            try:
                with self.store.transaction():
                    self.store.set_notify_state(self._anchor_key(), json.dumps(a))
            except Exception as e:
                self.log.warning(kv("wallet_anchor_not_saved", error=type(e).__name__))
                return None
            self._event(self.order_of_venues[0], "wallet_anchored", wallet=round(wallet, 8),
                        ledger=round(self.ledger(), 8))
        diff = wallet - (float(a["offset"]) + self.ledger())
        tol = 0.01 + 1e-6 * abs(wallet)
        if abs(diff) <= tol:
            self._wallet_seen = self._wallet_alerted = None
            return diff
        seen, self._wallet_seen = self._wallet_seen, diff
        if seen is not None and abs(seen - diff) <= tol and \
                (self._wallet_alerted is None or abs(self._wallet_alerted - diff) > tol):
            self._wallet_alerted = diff
            self._event(self.order_of_venues[0], "wallet_mismatch", alert=True, wallet=round(wallet, 8),
                        expected=round(float(a["offset"]) + self.ledger(), 8), difference=round(diff, 8),
                        message=f"venue wallet {wallet:.2f} vs the DB's trades, fees and funding "
                                f"{float(a['offset']) + self.ledger():.2f} (difference {diff:+.2f})")
        return diff


def _conditional(order: Order) -> bool:
    """A stop or a take-profit: on Binance, an order of the algo (conditional) service."""
    return order.type in (OrderType.STOP, OrderType.LIMIT)


def _as_order(spec: OrderSpec, agent: str) -> Order:
    return Order(spec.client_order_id, agent, spec.symbol, spec.side, spec.qty, reduce_only=spec.reduce_only)


__all__ = ["VenueBroker", "round_to_step", "round_to_tick", "rules_reject", "stop_order_id", "target_order_id"]
