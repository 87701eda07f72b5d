"""Money reconciles: funding booked from each venue's income history on the venue's own clock (once per
payment, on the position it was paid for, asked again after a failed lookup), and the venues' wallets compared
with the DB's ledger every cycle (a difference beyond fee rounding is recorded and alerted)."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from tracer.execution.broker import BarReport
from tracer.execution.venue import VenueError
from tracer.execution.venue_broker.calls import VenueCalls
from tracer.logs import kv
from tracer.models import OrderState, OrderType, Position


LEDGER_SPOT = "cash"        # a spot anchor's ledger counts the cost of the coins held (see ``ledger``)
# Binance and Bybit pay funding at 00/08/16 UTC (a symbol on a 4h or 1h interval pays at some of those too),
# and post it in the income history within minutes
FUNDING_EVERY = timedelta(hours=8)
FUNDING_GRACE = timedelta(minutes=15)


def funding_settled_by(closed: datetime) -> datetime:
    """When the funding owed to a position closed at ``closed`` is surely in the history: the first funding
    time after the close (a position closed between two pays nothing more), plus the grace."""
    day = closed.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + FUNDING_EVERY * ((closed - day) // FUNDING_EVERY + 1) + FUNDING_GRACE


class Money(VenueCalls):
    """Mixin of :class:`~tracer.execution.venue_broker.VenueBroker`: funding and the wallet."""
    _funding_refs: set[tuple[str, str]]
    _funding_since: dict[tuple[str, str], datetime]
    _wallet_seen: float | None
    _wallet_alerted: float | None
    _funding_checked_at: datetime | None
    _funding_owed: dict[str, tuple[str, str, datetime]]

    def _book_funding(self, rep: BarReport, now: datetime) -> None:
        """Funding payments from each venue's income history, on the venue's own clock, since the last one
        booked (or since the agent's money was first reconciled on that venue): each booked once (the venue's
        id), on the position open when it was paid. A lookup that fails is simply done again next cycle (the
        payment is booked late, never as 0)."""
        # once per cycle: sync runs several times in one (the settle rounds); funding is paid every 8 hours
        if not self.futures or self._funding_checked_at == now:
            return
        self._funding_checked_at = now
        keys = {(self._pos_venue.get(sym, self.order_of_venues[0]), sym) for sym in self._positions}
        for venue, sym in sorted(keys | {(v, s) for v, s, _ in self._funding_owed.values()}):
            self._lookup_funding(venue, sym, rep)

    def _owe_funding(self, venue: str, symbol: str, entry_order_id: str, rep: BarReport) -> None:
        """A position just closed: the funding paid on it up to now may not be in the history yet asked (paid
        between the cycle's lookup and the close, or the lookup failed). It is asked for once more after the
        close, and again every cycle (across restarts: the memo is written with the trade) until the history
        shows it (:func:`funding_settled_by`)."""
        if not self.futures:
            return
        self._funding_owed[entry_order_id] = (venue, symbol, self._now())
        rep.memos[self._owed_key()] = self._owed_memo()

    def _book_owed_funding(self, rep: BarReport) -> None:
        """The last lookup for positions closed in this sync (after their close, so nothing paid is missed)."""
        for venue, sym in sorted({(v, s) for v, s, _ in self._funding_owed.values()}):
            self._lookup_funding(venue, sym, rep)

    def _lookup_funding(self, venue: str, sym: str, rep: BarReport) -> None:
        if not self.venues[venue].usable(self._now()):
            return
        since = self._funding_since.get((venue, sym)) or self._money_since(venue)
        if since is None:
            return
        try:
            pays = self._call(venue, "funding", sym, since)
        except VenueError as e:
            self.log.warning(kv("funding_unavailable", venue=venue, symbol=sym, error=type(e).__name__,
                                action="asked again next cycle"))
            return
        owed = sorted((until, entry) for entry, (v, s, until) in self._funding_owed.items() if (v, s) == (venue, sym))
        open_here = sym in self._positions and self._pos_venue.get(sym, self.order_of_venues[0]) == venue
        for fp in sorted(pays, key=lambda f: f.ts):
            ref = fp.ref or f"{fp.ts.isoformat()}:{fp.amount}"
            self._funding_since[(venue, sym)] = max(self._funding_since.get((venue, sym), since),
                                                    fp.ts + timedelta(milliseconds=1))
            if (venue, ref) in self._funding_refs:
                continue
            self._funding_refs.add((venue, ref))
            fp = replace(fp, ref=ref)
            # paid while a closed position was open (up to when its close was seen), else on the open one;
            # a payment neither explains (a clock skew) goes to the last closed one: the money is never dropped
            closed = next((e for until, e in owed if fp.ts <= until), None)
            if closed is None and open_here:
                pos = self._positions[sym]
                self._positions[sym] = replace(pos, funding_paid=pos.funding_paid + fp.amount)
                read = self._margin_read_at.get(sym)
                if read is None or fp.ts > read:    # paid after the margin was read: not inside that figure
                    self._funding_unmargined[sym] = self._funding_unmargined.get(sym, 0.0) + fp.amount
                rep.funding.append((venue, fp, pos.entry_order_id))
                continue
            closed = closed or (owed[-1][1] if owed else None)
            self.realized_pnl -= fp.amount
            rep.funding.append((venue, fp, closed))
            if closed is not None:
                self._charge_closed_trade(rep, closed, fp.amount)
        # an answer without the payment may only lag (the history is not instantaneous): a closed position's
        # funding is asked again until the history shows a payment after its close, or until the first funding
        # time after it and a grace have passed (then everything owed to it would be in the history)
        latest = max((fp.ts for fp in pays), default=None)
        done = [e for until, e in owed
                if (latest is not None and latest > until) or self._now() >= funding_settled_by(until)]
        for entry in done:
            del self._funding_owed[entry]
        if done:
            rep.memos[self._owed_key()] = self._owed_memo()

    @staticmethod
    def _charge_closed_trade(rep: BarReport, entry_order_id: str, amount: float) -> None:
        """Funding found for a closed position: on its trade in this report, else on its trade in the DB."""
        for i in range(len(rep.trades) - 1, -1, -1):
            t = rep.trades[i]
            if t.entry_order_id == entry_order_id:
                rep.trades[i] = replace(t, funding=t.funding - amount, pnl=t.pnl - amount)
                return
        rep.late_funding.append((entry_order_id, amount))

    def _owed_key(self) -> str:
        return f"funding_owed:{self.agent}"

    def _owed_memo(self) -> str:
        return json.dumps({e: [v, s, u.isoformat()] for e, (v, s, u) in sorted(self._funding_owed.items())})

    def _restore_owed_funding(self) -> None:
        raw = self.store.notify_state(self._owed_key())
        try:
            owed = json.loads(raw) if raw else {}
            self._funding_owed = {e: (v, s, datetime.fromisoformat(u)) for e, (v, s, u) in owed.items()}
        except (ValueError, TypeError):
            self.log.warning(kv("funding_owed_unreadable", action="funding of closed positions not asked again"))

    # --- spot: the coins a fee leaves below the venue's step -------------------------------------------------
    # A spot position whose exit rounds down to the step leaves its rest (the fee Alpaca took in the coin) on the
    # venue; the trade books it as sold at the exit's price, though the cash never got it. The wallet check counts
    # it at that booked value while it lies there, and when the next position of the coin takes it in (the venue
    # holds one quantity per coin), at the difference between the new entry price and that value (``_dust_adj``).
    def _dust_key(self) -> str:
        return f"wallet_dust:{self.agent}"

    def _dust_memo(self) -> str:
        return json.dumps({"held": {s: [q, v] for s, (q, v) in sorted(self._dust_held.items())}, "adj": self._dust_adj})

    def _restore_dust(self) -> None:
        raw = self.store.notify_state(self._dust_key())
        try:
            d = json.loads(raw) if raw else {}
            self._dust_held = {s: (float(q), float(v)) for s, (q, v) in d.get("held", {}).items()}
            self._dust_adj = float(d.get("adj", 0.0))
        except (ValueError, TypeError, AttributeError):
            self.log.warning(kv("wallet_dust_unreadable", action="the spot wallet check is anchored again"))
            with self.store.transaction():
                self.store.set_notify_state(self._anchor_key(), "")

    def _leave_dust(self, symbol: str, qty: float, price: float, rep: BarReport) -> None:
        q, v = self._dust_held.get(symbol, (0.0, 0.0))
        self._dust_held[symbol] = (q + qty, v + qty * price)
        rep.memos[self._dust_key()] = self._dust_memo()

    def _take_in_dust(self, pos: Position, rep: BarReport) -> None:
        q, v = self._dust_held.pop(pos.symbol)
        self._dust_adj += q * pos.entry_price - v
        rep.memos[self._dust_key()] = self._dust_memo()
        self.log.info(kv("wallet_dust_taken_in", symbol=pos.symbol, qty=q, booked=round(v, 8),
                         at_entry=round(q * pos.entry_price, 8)))

    def _dust_booked(self) -> float:
        """What the wallet check adds to the ledger for the dust (0 on futures)."""
        return self._dust_adj - sum(v for _, v in self._dust_held.values())

    # --- fees paid in an asset the wallet balance does not count (Binance's BNB fee discount) ------------------
    # booked as fees (the P&L is right), but the USDT wallet never paid them: the wallet check adds them back,
    # counted since the anchor and kept with it
    def _elsewhere_key(self) -> str:
        return f"wallet_fees_elsewhere:{self.agent}"

    def _fee_elsewhere(self, amount: float) -> None:
        if amount:
            self._fees_elsewhere += amount
            self._elsewhere_changed = True

    def _restore_fees_elsewhere(self) -> None:
        raw = self.store.notify_state(self._elsewhere_key())
        try:
            self._fees_elsewhere = float(raw) if raw else 0.0
        except ValueError:
            self.log.warning(kv("wallet_fees_elsewhere_unreadable", action="the wallet check is anchored again"))
            with self.store.transaction():
                self.store.set_notify_state(self._anchor_key(), "")

    def _entry_unclear_now(self) -> bool:
        """An entry whose POST was unclear within ``unconfirmed_grace`` (its coins or margin may already be paid,
        its position not booked yet). Past the grace the anchor is made anyway: a venue down for hours must not
        keep the wallet check off."""
        now = self._now()
        for r in self.store.orders_in_state(self.agent, OrderState.NEW):
            if r["purpose"] == "entry" and r["venue"]:
                since = self._unclear_since(r["client_order_id"])
                if since is not None and now - since < self.unconfirmed_grace:
                    return True
        return False

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
        and closed parts, net of their fees and funding) less the open positions' entry fees and funding. A
        spot venue's wallet is its cash, which also paid for the coins held: less their cost too (price x
        quantity held; the fee Alpaca took in the coin is in ``entry_fee``, so the two make what was paid)."""
        held = sum(p.entry_price * p.qty for p in self._positions.values()) if not self.futures else 0.0
        return self.realized_pnl - held - sum(p.entry_fee + p.funding_paid for p in self._positions.values())

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
        if a is not None and not self.futures and a.get("ledger") != LEDGER_SPOT:
            a = None            # anchored before the spot ledger counted the coins' cost: anchored again
        if a is None or set(a.get("since_ms", {})) != set(self._balance):
            if any(o.type is OrderType.MARKET for o, _, _ in self._tracked.values()) or self._entry_unclear_now():
                return None     # an order in flight (or an entry whose POST was unclear): anchor once nothing is moving
            since = dict((a or {}).get("since_ms", {}))
            added = [v for v in self._balance if v not in since]
            for v in added:
                try:
                    since[v] = int(self._call(v, "server_time").timestamp() * 1000)
                except VenueError:
                    return None
            if a is None and not self.futures:
                # dust already lying there (from before this record) counts at its value now from here on
                for sym, seen in self._dust_seen.items():
                    if sym not in self._dust_held and sym not in self._positions:
                        self._dust_held[sym] = seen
            # a venue first seen now (a backup reached for the first time) brings its wallet into the comparison
            offset = wallet - self.ledger() - self._dust_booked() if a is None else \
                float(a["offset"]) + sum(self._balance[v].wallet for v in added)
            if a is None:
                self._fees_elsewhere = 0.0      # a new anchor's offset holds the fees paid elsewhere so far
                self._anchored_unsynced = not self._synced_once
            a = {"offset": offset, "since_ms": since, **({} if self.futures else {"ledger": LEDGER_SPOT})}
            try:
                with self.store.transaction():
                    self.store.set_notify_state(self._anchor_key(), json.dumps(a))
                    self.store.set_notify_state(self._elsewhere_key(), repr(self._fees_elsewhere))
                    if not self.futures:
                        self.store.set_notify_state(self._dust_key(), self._dust_memo())
            except Exception as e:
                self.log.warning(kv("wallet_anchor_not_saved", error=type(e).__name__))
                return None
            self._event(self.order_of_venues[0], "wallet_anchored", wallet=round(wallet, 8),
                        ledger=round(self.ledger(), 8))
        expected = float(a["offset"]) + self.ledger() + self._dust_booked() + self._fees_elsewhere
        diff = wallet - expected
        tol = 0.01 + 1e-6 * abs(wallet)
        if abs(diff) <= tol:
            self._wallet_seen = self._wallet_alerted = None
            return diff
        seen, self._wallet_seen = self._wallet_seen, diff
        if seen is not None and abs(seen - diff) <= tol and \
                (self._wallet_alerted is None or abs(self._wallet_alerted - diff) > tol):
            self._wallet_alerted = diff
            self._event(self.order_of_venues[0], "wallet_mismatch", alert=True, wallet=round(wallet, 8),
                        expected=round(expected, 8), difference=round(diff, 8),
                        message=f"venue wallet {wallet:.2f} vs the DB's trades, fees and funding "
                                f"{expected:.2f} (difference {diff:+.2f})")
        return diff
