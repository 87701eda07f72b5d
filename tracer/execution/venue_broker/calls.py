"""The venue calls with the retry policy: reads retried with backoff, 429 / 418 / -1021 handled, and the one
place an order is POSTed (an entry never twice in one call; see ``_place``). Venue events are recorded
in their own transaction and alerted."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from tracer.store import Store
from tracer.execution.broker import Bracket, OrderUpdate, exit_order_id
from tracer.execution.venue import (Ambiguous, AuthError, DuplicateClientId, InsufficientMargin, IpBanned,
                                    OrderRejected, OrderSpec, RateLimited, TimestampDrift, VenueBalance, VenueClient,
                                    VenueError, VenueOrder, VenueOrderType, VenueUnavailable)
from tracer.execution.venue_broker.ids import ID_SPENT, TERMINAL
from tracer.logs import kv
from tracer.models import Order, OrderState, Position


UNCONFIRMED = "unconfirmed"      # a state reason: the order's POST was unclear (it may or may not be on the venue)


@dataclass
class VenueState:
    """Per-venue health, in memory only (a restart starts optimistic and learns again)."""
    client: VenueClient
    down_until: datetime | None = None      # unreachable / rate limited: skip until then
    banned_until: datetime | None = None    # 418
    last_error: str | None = None

    def usable(self, now: datetime) -> bool:
        return not ((self.down_until and now < self.down_until) or (self.banned_until and now < self.banned_until))


class VenueCalls:
    """Mixin of :class:`~tracer.execution.venue_broker.VenueBroker`: its calls to the venues."""
    agent: str
    venues: dict[str, VenueState]
    store: Store
    log: logging.Logger
    max_retries: int
    backoff_s: float
    max_wait_s: float
    exit_max_wait_s: float
    down_cooldown_s: float
    sleep: Callable[[float], None]
    clock: Callable[[], datetime]
    alert: Callable[[str], None] | None
    # the broker's state, set by VenueBroker.__init__ (declared once here for the mixins that share it)
    order_of_venues: list[str]
    futures: bool
    interval: timedelta
    stop_attempts: int
    adopt_stop_pct: float
    last_price: dict[str, float]
    realized_pnl: float
    fees_paid: float
    _positions: dict[str, Position]
    _pos_venue: dict[str, str]
    _tracked: dict[str, tuple[Order, Bracket | None, str]]
    _outbox: list[tuple[Order, Bracket | None]]
    _balance: dict[str, VenueBalance]
    _not_tries: set[str]
    _ended_stops: dict[str, tuple[str, str, float, str]]
    _venue_held: dict[tuple[str, str], float]
    _working_since: dict[str, datetime]
    _triggered_since: dict[str, datetime]
    _stuck: set[str]
    _cancel_asked: set[str]
    finish_grace: timedelta
    _unsettled: set[str]
    _found_in_flight: bool
    _unread_said: set[str]
    _unprotected_said: set[tuple[str, str]]
    _asked_now: set[str]
    _fees_elsewhere: float
    _synced_once: bool
    _anchored_unsynced: bool
    _elsewhere_changed: bool
    _funding_unmargined: dict[str, float]
    _margin_read_at: dict[str, datetime]
    _dust_seen: dict[str, tuple[float, float]]
    _dust_held: dict[str, tuple[float, float]]
    _dust_adj: float
    _elsewhere: set[tuple[str, str]]

    def _now(self) -> datetime:
        return self.clock()

    def _grace(self, since: dict[str, datetime], cid: str) -> tuple[bool, bool]:
        """(first seen now, still within ``unconfirmed_grace``) for a doubt about ``cid`` noted in ``since``
        (the caller forgets it once settled)."""
        t = self._now()
        first = since.setdefault(cid, t)
        return first == t, t - first < self.unconfirmed_grace

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

    def _refused(self, venue: str, order: Order, e: VenueError, what: str) -> OrderUpdate:
        kind = {AuthError: "auth_error", InsufficientMargin: "insufficient_margin"}.get(type(e), "order_rejected")
        self._event(venue, kind, symbol=order.symbol, cid=order.client_order_id,
                    alert=kind != "order_rejected" or e.code == "hedge_mode", message=str(e)[:200], code=e.code)
        if isinstance(e, (AuthError, InsufficientMargin, OrderRejected)):
            return OrderUpdate(order.client_order_id, OrderState.REJECTED, f"{what}: {type(e).__name__}: {str(e)[:160]}")
        return OrderUpdate(order.client_order_id, OrderState.NEW, f"not sent: {what} ({type(e).__name__})")

    def _place(self, venue: str, client: VenueClient, spec: OrderSpec) -> VenueOrder | OrderUpdate:
        """The one place an order is POSTed. An entry is POSTed at most once per call: after an unclear answer
        that the venue does not confirm, it stays ``new`` and the next cycle asks again before anything is sent
        (Binance's client ids are unique only among *open* orders, and a timed-out request can still be
        processed after a lookup said "does not exist": a second POST of a market entry would be a second
        position). A market exit neither: a first POST processed late may have filled only in part and expired,
        and Binance would take a second POST under the same id as a second order; the position's next exit id
        goes out instead (:meth:`submit`). A venue stop or target may go again: a first one processed late rests
        open, so the venue refuses the second as a duplicate id, and any refusal of that second POST is checked
        against the venue first. The order's venue is written before its first POST, so a lookup after a crash
        or during a ban asks the venue that may have it, never another one."""
        st = self.venues[venue]
        if not st.usable(self._now()):
            return OrderUpdate(spec.client_order_id, OrderState.NEW, f"not sent: {venue} unavailable")
        self._set_venue(spec.client_order_id, venue, None, sending=spec)
        out = self._post(venue, client, spec)
        if isinstance(out, OrderUpdate) and out.state is OrderState.NEW and not (out.reason or "").startswith(UNCONFIRMED):
            # refused before processing (418, 429, down, clock): no venue has it, so it may go to another one
            self._set_venue(spec.client_order_id, None, None)
        return out

    def _post(self, venue: str, client: VenueClient, spec: OrderSpec) -> VenueOrder | OrderUpdate:
        """The POST of :meth:`_place`, with its retries and what an unclear answer means."""
        resynced = False
        unclear = False        # an earlier POST of this call may still be processed by the venue
        # a reduce-only order is what protects a position: its market exit (on a spot venue the only stop) or its
        # venue stop or target. It waits out a rate-limit window of a minute or so (Binance's order-rate 429 has no
        # Retry-After: 60 s) in the cycle, where anything else leaves the venue alone until the next cycle
        wait_cap = self.exit_max_wait_s if spec.reduce_only else self.max_wait_s
        for attempt in range(1, self.max_retries + 1):
            try:
                return client.place_order(spec)
            except TimestampDrift as e:       # rejected before processing: safe to send again once
                if resynced:
                    return self._refused_unless_found(venue, spec, e, "clock drift after resync", unclear)
                try:
                    self._resync(venue, e)
                except VenueError:
                    return OrderUpdate(spec.client_order_id, OrderState.NEW, "not sent: clock resync failed")
                resynced = True
            except RateLimited as e:          # 429 is refused before processing: safe to send again
                self._event(venue, "rate_limited", symbol=spec.symbol, cid=spec.client_order_id,
                            retry_after_s=e.retry_after_s, used_weight=e.used_weight, call="place_order")
                if e.retry_after_s > wait_cap or attempt == self.max_retries:
                    self._mark_down(venue, e, e.retry_after_s)
                    return OrderUpdate(spec.client_order_id, OrderState.NEW, "not sent: rate limited")
                self.sleep(e.retry_after_s)
            except IpBanned as e:
                self._ban(venue, e)
                return OrderUpdate(spec.client_order_id, OrderState.NEW, "not sent: IP banned by the venue")
            except VenueUnavailable as e:
                self._mark_down(venue, e, self.down_cooldown_s)
                return OrderUpdate(spec.client_order_id, OrderState.NEW, f"not sent: {venue} unavailable")
            except DuplicateClientId as e:
                # the venue has an order under this id: ours (an earlier POST processed late), never a refusal
                self._event(venue, "duplicate_client_id", symbol=spec.symbol, cid=spec.client_order_id,
                            message=str(e)[:160])
                # a stop or target it cannot find ended there unseen: its id is spent (Bybit 110072 and Alpaca
                # 40010001 for ever), and a stop under it would be POSTed again every sync, refused every time. On
                # Binance (-4116: open orders only) the miss is a lagging read: the one resting is swept as a stray
                # once its successor rests (_cancel_orphans). An entry or market exit is only ever asked again
                return self._lookup_or_new(venue, spec.symbol, spec.client_order_id,
                                           spec.type is not VenueOrderType.MARKET, "the venue has an order under this id",
                                           spent=_protective(spec))
            except (AuthError, InsufficientMargin, OrderRejected) as e:
                return self._refused_unless_found(venue, spec, e, "refused by the venue", unclear)
            except VenueError as e:   # Ambiguous, or any unclassified venue error: the order may exist
                self._event(venue, "order_ambiguous", symbol=spec.symbol, cid=spec.client_order_id,
                            error=str(e)[:160], status=e.status)
                unclear = True
                try:
                    found = self._call(venue, "get_order", spec.symbol, spec.client_order_id,
                                       conditional=spec.type is not VenueOrderType.MARKET)
                except VenueError as e2:
                    # cannot confirm either way: never re-POST blind. The grace starts here too: a venue that
                    # answers a POST with a 5xx often fails the lookups after it, and the order may still be
                    # processed (an entry sent again, an exit taken as never sent). A venue stop is asked for
                    # again in this settle (Protection._settle_stops), anything else next cycle
                    self._event(venue, "order_unconfirmed", symbol=spec.symbol, cid=spec.client_order_id,
                                action="lookup failed; not sent again now; asked again " + _asked_again(spec),
                                error=type(e2).__name__)
                    return OrderUpdate(spec.client_order_id, OrderState.NEW,
                                       f"{UNCONFIRMED} after {type(e).__name__}: lookup failed ({type(e2).__name__})")
                if found is not None:
                    self._event(venue, "order_found_after_ambiguous", symbol=spec.symbol, cid=spec.client_order_id)
                    return found
                if not _protective(spec):
                    # "does not exist" right after a timeout is not proof: the next cycle asks again (and
                    # checks the venue's positions) before this id is ever sent again
                    self._event(venue, "order_unconfirmed", symbol=spec.symbol, cid=spec.client_order_id,
                                action="not sent again now; asked again next cycle")
                    return OrderUpdate(spec.client_order_id, OrderState.NEW,
                                       f"{UNCONFIRMED} after {type(e).__name__}: not known to the venue yet")
        if unclear:     # a stop or target whose every POST was unclear: any of them may still be processed
            self._event(venue, "order_unconfirmed", symbol=spec.symbol, cid=spec.client_order_id,
                        action="not known to the venue after every POST; asked again " + _asked_again(spec))
            return OrderUpdate(spec.client_order_id, OrderState.NEW,
                               f"{UNCONFIRMED} after unclear POSTs: not known to the venue yet")
        return OrderUpdate(spec.client_order_id, OrderState.NEW, "not sent: retries exhausted")

    def _unspent_exit_seq(self, pos: Position, seq: int) -> int:
        """``seq``, or the first one after it whose exit id has not ended (refused, cancelled, filled): every move
        of a position's exit id goes past the spent ones, which a restart before the book was written (it holds
        the position's ``exit_seq``) can leave ahead of it. An id is sent at most once."""
        while (row := self.store.order(exit_order_id(pos.entry_order_id, seq))) is not None and \
                OrderState(row["state"]) in TERMINAL:
            seq += 1
        return seq

    def _unclear_since(self, cid: str) -> datetime | None:
        """Since when the POST of ``cid`` has been unclear (None: it is not): an unclear answer, or a POST that
        began and whose outcome was never written (a crash mid-POST leaves the order ``new``, its venue set, and
        no reason or an unconfirmed one)."""
        since = self.store.last_venue_event_at(cid, "order_unconfirmed")
        if since is None:
            row = self.store.order(cid)
            # ``new`` with its venue set: a POST began and no outcome was written (a refusal before processing
            # clears the venue), whatever a later attempt that never reached the POST wrote as its reason (its
            # rules unreadable, the venue down)
            if row is not None and row["venue"] and (OrderState(row["state"]) is OrderState.NEW or
                                                     str(row["state_reason"] or UNCONFIRMED).startswith(UNCONFIRMED)):
                since = self.store.last_venue_event_at(cid, "order_sent")
        return since

    def _set_venue(self, cid: str, venue: str | None, venue_order_id: str | None,
                   sending: OrderSpec | None = None) -> None:
        try:
            with self.store.transaction():
                self.store.set_order_venue(cid, venue, venue_order_id or None)
                if sending is not None and venue is not None:
                    # when its POST began: a crash before its outcome is written leaves the order ``new`` with its
                    # venue set and no reason, and its grace (:meth:`_held_unconfirmed`) runs from here
                    self.store.insert_venue_event(self.agent, venue, "order_sent", symbol=sending.symbol,
                                                  client_order_id=cid, detail={}, ts=self._now())
        except Exception as e:
            self.log.error(kv("order_venue_not_recorded", client_order_id=cid, error=type(e).__name__))

    def _lookup_or_new(self, venue: str, symbol: str, cid: str, conditional: bool, why: str,
                       spent: bool = False) -> VenueOrder | OrderUpdate:
        """The venue's order under ``cid``, or NEW (asked again next cycle) when it cannot be read now; when it is
        not found, NEW too, or CANCELED as spent (``spent``: the venue refused the id as a duplicate)."""
        try:
            found = self._call(venue, "get_order", symbol, cid, conditional=conditional)
        except VenueError as e:
            return OrderUpdate(cid, OrderState.NEW, f"{UNCONFIRMED}: {why}; lookup failed ({type(e).__name__})")
        if found is None and spent:
            return OrderUpdate(cid, OrderState.CANCELED, f"{ID_SPENT}: {why}, and it is not found there")
        if found is None:
            return OrderUpdate(cid, OrderState.NEW, f"{UNCONFIRMED}: {why}; not found yet")
        self._event(venue, "order_found_after_ambiguous", symbol=symbol, cid=cid)
        return found

    def _refused_unless_found(self, venue: str, spec: OrderSpec, e: VenueError, what: str,
                              unclear: bool) -> VenueOrder | OrderUpdate:
        """A refusal; but after an unclear earlier POST of the same order, the refusal may be *because* that
        one was processed meanwhile (a reduce-only exit with nothing left to reduce): the venue is asked first."""
        if unclear:
            found = self._lookup_or_new(venue, spec.symbol, spec.client_order_id, spec.type is not VenueOrderType.MARKET,
                                        f"{what} after an unclear first POST")
            if not isinstance(found, OrderUpdate):
                return found
        return self._refused(venue, _as_order(spec, self.agent), e, what)


def _protective(spec: OrderSpec) -> bool:
    """A venue stop or target (conditional, reduce-only): unlike an entry or a market exit, it may be POSTed again
    under its id, the venue refusing a duplicate of one that rests open (Binance -4116, Bybit 110072)."""
    return spec.reduce_only and spec.type is not VenueOrderType.MARKET


def _asked_again(spec: OrderSpec) -> str:
    """When an unconfirmed order is asked for again: a position's venue stop in this settle, anything else next
    cycle (its reconciliation)."""
    return "in this settle" if spec.reduce_only and spec.type is VenueOrderType.STOP_MARKET else "next cycle"


def _as_order(spec: OrderSpec, agent: str) -> Order:
    return Order(spec.client_order_id, agent, spec.symbol, spec.side, spec.qty, reduce_only=spec.reduce_only)

