"""The loop's venue write path in a few lines, for the VenueBroker tests: write new, send, record; sync and
write what happened; reconcile the wallet."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import datetime, timedelta, timezone


from tracer.store import Store
from tracer.execution.broker import Bracket, client_order_id
from tracer.execution.venue_broker import VenueBroker
from tracer.models import Order, OrderState, Side

KEY, SECRET = "vb-key", "vb-secret-0123456789"
ALPACA_KEYS = ("PKTESTKEYID0001", "s3cr3t-value-never-shown")
BTC = "BTC/USD"
T0 = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
LOG = logging.getLogger("test.venue_broker")


class Clock:
    """The broker's clock, moved by the test (the grace before "the venue does not know it" is believed)."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


class Harness:
    """The loop's write path in a few lines: write new, send, record; sync and write what happened."""

    def __init__(self, tmp_path, clients, futures=True, **kw):
        self.store = Store(tmp_path / "tb.sqlite")
        self.slept: list[float] = []
        self.alerts: list[str] = []
        self.broker = VenueBroker("futures", clients, self.store, LOG, futures=futures, backoff_s=0.0,
                                  sleep=self.slept.append, alert=self.alerts.append, **kw)
        self.broker.last_price[BTC] = 42000.0
        self.n = 0

    def entry(self, side=Side.BUY, qty=0.01, lev=5, bracket=None, symbol=BTC) -> Order:
        self.n += 1
        agent = self.broker.agent
        o = Order(client_order_id(agent, symbol, T0 + timedelta(hours=self.n), "entry"), agent, symbol, side, qty,
                  leverage=lev, purpose="entry", created_at=T0 + timedelta(hours=self.n))
        return self.send(o, bracket or Bracket(stop_distance=1000.0, take_profit_distance=2000.0, trail_pct=0.0,
                                              max_hold_s=0.0))

    def send(self, o: Order, bracket=None) -> Order:
        with self.store.transaction():
            # the bracket is kept with the order, as the loop does: an order found later is booked with it
            self.store.insert_order(o, run_id=None, signal_id=None, price_est=o.stop_price,
                                    bracket=asdict(bracket) if bracket is not None else None)
        upd = self.broker.submit(o, bracket)
        with self.store.transaction():
            self.store.set_order_state(o.client_order_id, upd.state, upd.reason)
        return o

    def reconcile(self):
        """The loop's reconciliation of orders left ``new``: asked on the venue first, sent only if unknown."""
        from tracer.store import row_to_order
        for r in self.store.orders_in_state(self.broker.agent, OrderState.NEW):
            known = self.broker.get(r["client_order_id"])
            if known is not None and known.state is OrderState.NEW:
                continue
            br = json.loads(r["bracket_json"]) if r["bracket_json"] else None
            upd = known or self.broker.submit(row_to_order(r), Bracket(**br) if br else None)
            with self.store.transaction():
                self.store.set_order_state(r["client_order_id"], upd.state, upd.reason)

    def settle(self, now=T0):
        trades = []
        self.reconcile()
        for _ in range(4):
            for o, br in self.broker.take_outbox():
                self.send(o, br)
            rep = self.broker.sync(now)
            if not rep.any():
                more = self.broker.take_outbox()     # an exit queued while sending goes now, as in the loop
                self.broker.requeue(more)
                if not any(o.purpose == "exit" for o, _ in more):
                    break
            with self.store.transaction():
                for o in rep.exit_orders:
                    self.store.insert_order(o, run_id=None, signal_id=None, price_est=o.stop_price)
                for cid, v in rep.venues.items():
                    self.store.set_order_venue(cid, v)
                for f in rep.fills:
                    self.store.insert_fill(f, self.broker.agent)
                for u in rep.updates:
                    self.store.set_order_state(u.client_order_id, u.state, u.reason)
                for t in rep.trades:
                    self.store.insert_trade(t)
                for v, fp, entry in rep.funding:
                    self.store.insert_funding(self.broker.agent, v, fp.symbol, fp.ts, fp.amount, fp.ref, entry)
                for entry, amount in rep.late_funding:
                    self.store.add_trade_funding(self.broker.agent, entry, amount)
                for key, value in rep.memos.items():
                    self.store.set_notify_state(key, value)
                exits = {t.entry_order_id: t.exit_ts for t in rep.trades}
                self.store.save_positions(self.broker.agent, self.broker.positions(),
                                          [(p, exits[p.entry_order_id]) for p in rep.closed])
            trades += rep.trades
        with self.store.transaction():     # the cycle's book (the loop writes it in every cycle's transaction)
            self.store.save_positions(self.broker.agent, self.broker.positions())
        self.wallet_diff = self.broker.check_wallet()
        return trades

    def state(self, cid):
        return self.store.order(cid)["state"]

    def events(self, kind=None):
        return [r["kind"] for r in self.store.venue_events("futures", kind)]


def spot_harness(tmp_path, alpaca, clock=None, timeout_s=2.0) -> Harness:
    """The harness on the fake Alpaca (spot: the fee taken in the coin, the agent's own stops)."""
    from tracer.execution.venues.alpaca import AlpacaSpotClient
    return Harness(tmp_path, [AlpacaSpotClient(*ALPACA_KEYS, alpaca.url, timeout_s=timeout_s)], futures=False,
                   **({"clock": clock} if clock is not None else {}))


def booked(venue) -> dict[str, int]:
    """How many orders the venue booked per client id."""
    out: dict[str, int] = {}
    for o in list(venue.orders.values()) + list(venue.algo_orders.values()):
        cid = o.get("clientOrderId") or o.get("clientAlgoId")
        out[cid] = out.get(cid, 0) + 1
    return out


def assert_no_duplicates(venue):
    assert all(n == 1 for n in booked(venue).values()), booked(venue)


