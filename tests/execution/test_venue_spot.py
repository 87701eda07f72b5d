"""The venue broker on a spot venue (the fake Alpaca, through alpaca-py over HTTP): the fee taken in the coin
leaves dust that is no position, an order read that lags its fill does not make the fill a second (adopted)
position, and an exit the venue refuses once is sent again under the position's next exit id."""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from tracer.execution.broker import Bracket, exit_order_id
from tracer.execution.venue import Ambiguous
from tracer.execution.venue_broker import VenueBroker
from tracer.execution.venues.alpaca import AlpacaSpotClient
from tracer.models import Bar, Order, OrderState, Position, Side

from venue_harness import ALPACA_KEYS, BTC, T0, Clock, spot_harness


@pytest.fixture
def hs(alpaca, tmp_path):
    return spot_harness(tmp_path, alpaca)


def exit_of(h, pos: Position, hours: int) -> Order:
    return h.send(Order(exit_order_id(pos.entry_order_id, pos.exit_seq), "futures", BTC, Side.SELL, pos.qty,
                        reduce_only=True, purpose="exit", reason="signal", created_at=T0 + timedelta(hours=hours)))


def test_the_dust_a_coin_fee_leaves_does_not_block_the_next_entry(hs, alpaca):
    hs.entry(qty=0.01)
    hs.settle()
    exit_of(hs, hs.broker.positions()[0], 5)
    trades = hs.settle(T0 + timedelta(hours=5))
    assert len(trades) == 1 and not hs.broker.positions()
    assert 0 < alpaca.holding(BTC) < 0.0001          # the fee's remainder, below the venue's minimum
    again = hs.entry(qty=0.01)
    assert hs.state(again.client_order_id) == "submitted"
    hs.settle(T0 + timedelta(hours=6))
    assert hs.state(again.client_order_id) == "filled" and hs.broker.positions()[0].entry_order_id == \
        again.client_order_id
    assert "entry_refused_position_on_venue" not in hs.events()


def test_a_fill_the_order_read_does_not_show_yet_is_not_adopted_as_a_second_position(hs, alpaca):
    alpaca.inject("GET /v2/orders:by_client_order_id", "stale")
    o = hs.entry(qty=0.01)
    hs.settle()                                        # the order reads "accepted"; the position is there
    assert "position_adopted" not in hs.events() and "adoption_deferred" not in hs.events()
    assert not hs.broker.positions()
    hs.settle(T0 + timedelta(hours=1))
    assert hs.state(o.client_order_id) == "filled"
    assert [p.entry_order_id for p in hs.broker.positions()] == [o.client_order_id]
    fills = hs.store.conn.execute("SELECT client_order_id FROM fills").fetchall()
    assert [f["client_order_id"] for f in fills] == [o.client_order_id]


def test_an_exit_refused_once_goes_again_under_the_next_exit_id(hs, alpaca):
    hs.entry(qty=0.01)
    hs.settle()
    pos = hs.broker.positions()[0]
    alpaca.inject("POST /v2/orders", "forbidden")
    first = exit_of(hs, pos, 5)
    assert hs.state(first.client_order_id) == "rejected" and "exit_refused" in hs.events()
    pos = hs.broker.positions()[0]
    assert pos.exit_seq == 1
    second = exit_of(hs, pos, 6)
    assert second.client_order_id != first.client_order_id
    trades = hs.settle(T0 + timedelta(hours=6))
    assert [t.exit_order_id for t in trades] == [second.client_order_id]
    assert not hs.broker.positions() and alpaca.holding(BTC) < 0.0001


def test_the_coins_held_are_no_wallet_mismatch_and_a_real_loss_still_is(hs, alpaca):
    """Alpaca's wallet is its cash, which paid for the coins held: the ledger counts their cost. Before, every
    open spot position read as a loss of its whole notional (a false ``wallet_mismatch`` alert)."""
    hs.settle()                                          # anchors with nothing open
    assert hs.wallet_diff == pytest.approx(0.0, abs=1e-6)
    hs.entry(qty=0.01)
    hs.settle(T0 + timedelta(minutes=1))
    hs.settle(T0 + timedelta(minutes=2))
    assert hs.wallet_diff == pytest.approx(0.0, abs=0.01)
    assert "wallet_mismatch" not in hs.events()
    exit_of(hs, hs.broker.positions()[0], 5)             # the round trip's cash flows, fees in the coin and in USD
    hs.settle(T0 + timedelta(hours=5))
    assert not hs.broker.positions() and hs.wallet_diff == pytest.approx(0.0, abs=0.01)
    assert 0 < alpaca.holding(BTC) < 0.0001              # the coin fee's rest, below the step: still held
    hs.entry(qty=0.01)                                   # the next position takes it in, quietly
    hs.settle(T0 + timedelta(hours=6))
    hs.settle(T0 + timedelta(hours=7))
    assert hs.broker.positions()[0].qty == pytest.approx(alpaca.holding(BTC))
    assert "dust_taken_in" in hs.events() and "position_mismatch" not in hs.events()
    assert hs.wallet_diff == pytest.approx(0.0, abs=0.01)
    exit_of(hs, hs.broker.positions()[0], 8)
    hs.settle(T0 + timedelta(hours=8))
    assert hs.wallet_diff == pytest.approx(0.0, abs=0.01)
    alpaca.cash -= Decimal("25")                         # money gone that no trade explains: still found
    hs.settle(T0 + timedelta(hours=9))
    hs.settle(T0 + timedelta(hours=10))
    assert hs.wallet_diff == pytest.approx(-25.0, abs=0.01) and "wallet_mismatch" in hs.events()


def test_a_spot_anchor_made_before_the_ledger_counted_the_coins_is_made_again(hs, alpaca):
    import json
    hs.entry(qty=0.01)
    hs.settle()
    key = f"wallet_anchor:{hs.broker.agent}"
    with hs.store.transaction():        # an anchor as the old ledger wrote it, with a position open
        hs.store.set_notify_state(key, json.dumps({"offset": 12345.0, "since_ms": {"alpaca": 1}}))
    hs.settle(T0 + timedelta(hours=1))
    hs.settle(T0 + timedelta(hours=2))
    assert hs.wallet_diff == pytest.approx(0.0, abs=0.01) and "wallet_mismatch" not in hs.events()
    assert json.loads(hs.store.notify_state(key))["ledger"] == "cash"


def test_the_fee_dust_is_counted_exactly_across_prices_and_a_restart(hs, alpaca, tmp_path):
    """The dust a sold position leaves is booked as sold at its exit price and taken into the next position at
    that one's entry price: the wallet check counts both, so it stays exact while prices move, also after a
    restart (the dust's record is kept with the wallet anchor) and after an old anchor is made again."""
    import json
    hs.settle()
    hour = 0
    for k, (buy, sell) in enumerate([(42000, 43000), (41000, 45000), (40000, 44000)]):
        alpaca.set_price(BTC, buy)
        hs.broker.last_price[BTC] = buy
        hs.entry(qty=0.01)
        hour += 2
        hs.settle(T0 + timedelta(hours=hour))
        hs.settle(T0 + timedelta(hours=hour + 1))
        assert hs.wallet_diff == pytest.approx(0.0, abs=0.01)
        alpaca.set_price(BTC, sell)
        hs.broker.last_price[BTC] = sell
        exit_of(hs, hs.broker.positions()[0], hour + 2)
        hs.settle(T0 + timedelta(hours=hour + 2))
        hs.settle(T0 + timedelta(hours=hour + 3))
        hour += 3
        assert hs.wallet_diff == pytest.approx(0.0, abs=0.01), k
    assert 0 < alpaca.holding(BTC) < 0.0001 and "wallet_mismatch" not in hs.events()
    client = AlpacaSpotClient(*ALPACA_KEYS, alpaca.url, timeout_s=2)          # a restart: a new broker from the DB
    b = VenueBroker("futures", [client], hs.store, logging.getLogger("test.venue_spot"), futures=False,
                    backoff_s=0.0, sleep=hs.slept.append, alert=hs.alerts.append)
    b.restore([], [], hs.broker.realized_pnl, hs.broker.fees_paid, {BTC: 44000.0})
    hs.broker = b
    hs.settle(T0 + timedelta(hours=hour + 1))
    assert hs.wallet_diff == pytest.approx(0.0, abs=0.01)
    key = f"wallet_anchor:{hs.broker.agent}"
    with hs.store.transaction():         # an anchor as the old ledger wrote it: made again, dust and all
        hs.store.set_notify_state(key, json.dumps({"offset": 12345.0, "since_ms": {"alpaca": 1}}))
    hs.settle(T0 + timedelta(hours=hour + 2))
    hs.settle(T0 + timedelta(hours=hour + 3))
    assert hs.wallet_diff == pytest.approx(0.0, abs=0.01) and "wallet_mismatch" not in hs.events()


def test_a_sale_by_hand_of_all_that_can_be_sold_closes_the_position_and_leaves_dust(hs, alpaca):
    """The user sells in the app all the venue lets be sold (a step multiple): the rest of the coin fee stays, below
    the step. The position is closed (the rest is dust, as after the agent's own exit), not kept open for ever at a
    size no order can sell, blocking every later entry of the coin."""
    hs.settle()
    hs.entry(qty=0.01)
    hs.settle(T0 + timedelta(hours=1))
    hs.settle(T0 + timedelta(hours=2))
    held = alpaca.holdings[BTC]                      # 0.009975: the coin fee taken
    sold = Decimal("0.0099")
    alpaca.holdings[BTC] = held - sold
    alpaca.cash += sold * Decimal("42000") * Decimal("0.9975")
    assert 0 < alpaca.holding(BTC) < 0.0001
    trades = hs.settle(T0 + timedelta(hours=3))
    assert hs.broker.positions() == []
    assert [(t.exit_reason, t.qty) for t in trades] == [("closed_on_venue", pytest.approx(float(held)))]
    x = hs.store.order(trades[0].exit_order_id)
    assert x["filled_qty"] == pytest.approx(float(sold))          # what was sold; the rest is the dust
    again = hs.entry(qty=0.01)                                     # the coin can be traded again
    assert hs.state(again.client_order_id) == "submitted"
    hs.settle(T0 + timedelta(hours=4))
    (pos,) = hs.broker.positions()
    assert pos.entry_order_id == again.client_order_id
    exit_of(hs, pos, 5)
    assert [t.exit_reason for t in hs.settle(T0 + timedelta(hours=5))] == ["signal"]
    assert hs.broker.positions() == []


def test_a_working_unconfirmed_entry_is_tracked_never_cancelled_as_an_orphan(hs, alpaca):
    """An entry left ``new`` by an unclear POST, whose lookups failed, works on Alpaca (a market order it holds
    for a moment) and fills in part: it is ours in flight, tracked from the open orders, never cancelled as the
    orphan of a closed position, and its fill is its own position with its bracket."""
    fill = alpaca._fill
    alpaca._fill = lambda *a, **k: None                        # the market buy rests (status new) for now
    alpaca.inject("POST /v2/orders", "lost_504")                # booked, answered 504: unclear
    # its lookups fail for a while (POST-time lookup, the cycle's reconciliation, _entry_in_flight): 3 tries each
    alpaca.inject("GET /v2/orders:by_client_order_id", "503", times=9)
    br = Bracket(stop_distance=500.0, take_profit_distance=2000.0, trail_pct=0.0, max_hold_s=0.0)
    o = hs.entry(qty=0.01, bracket=br)
    cid = o.client_order_id
    alpaca._fill = fill
    assert hs.state(cid) == "new" and alpaca.order(cid)["status"] == "new"
    # Alpaca fills half of it; the order is still working (partially_filled)
    vo = alpaca.order(cid)
    with alpaca._lock:
        fill(vo, "BTC/USD", "buy", Decimal("0.005"), Decimal("42000"), vo["created_at"], complete=False)
    assert alpaca.order(cid)["status"] == "partially_filled"
    hs.settle(T0)
    assert alpaca.order(cid)["status"] != "canceled" and "orphan_cancelled" not in hs.events()
    assert hs.state(cid) in ("submitted", "partially_filled", "filled")
    assert all(p.entry_order_id == cid for p in hs.broker.positions())       # never adopted as another one


def test_a_working_unconfirmed_exit_is_not_cancelled_as_an_orphan(hs, alpaca):
    """The same for a market exit of a position still open: tracked, never cancelled as an orphan."""
    hs.entry(qty=0.01)
    hs.settle(T0)
    pos = hs.broker.positions()[0]
    fill = alpaca._fill
    alpaca._fill = lambda *a, **k: None                        # the market sell rests (status new) for now
    alpaca.inject("POST /v2/orders", "lost_504")
    alpaca.inject("GET /v2/orders:by_client_order_id", "503", times=6)
    x0 = exit_order_id(pos.entry_order_id, pos.exit_seq)
    hs.send(Order(x0, "futures", BTC, Side.SELL, pos.qty, reduce_only=True, purpose="exit", reason="signal",
                  created_at=T0 + timedelta(hours=5)))
    alpaca._fill = fill
    for o, br in hs.broker.take_outbox():                      # the next exit id at once: no coins available
        hs.send(o, br)
    vo = alpaca.order(x0)
    with alpaca._lock:
        fill(vo, "BTC/USD", "sell", Decimal("0.005"), Decimal("43000"), vo["created_at"], complete=False)
    alpaca.set_price(BTC, 40000.0)
    hs.settle(T0 + timedelta(hours=5))
    row = hs.store.order(x0)
    assert alpaca.order(x0)["status"] != "canceled" and "orphan_cancelled" not in hs.events()
    assert row["state"] in ("submitted", "partially_filled", "filled"), (row["state"], row["state_reason"])


def test_an_unclear_exit_read_as_working_is_not_booked_as_a_close_outside(hs, alpaca):
    """The exit sold (all but the coin fee's rest) and its answer was lost; its lookups time out, then a read that
    lags shows it working: ours in flight, tracked and booked at its own fill, not a close by hand at the last price."""
    hs.settle()
    hs.entry(qty=0.01)
    hs.settle(T0 + timedelta(hours=1))
    hs.settle(T0 + timedelta(hours=2))
    pos = hs.broker.positions()[0]                  # 0.009975 (the buy fee taken in the coin)
    x0 = exit_order_id(pos.entry_order_id, 0)
    alpaca.set_price(BTC, 43000.0)                  # where the exit sells
    hs.broker.last_price[BTC] = 42500.0             # the agent's last bar close
    client = hs.broker.venues["alpaca"].client
    real_get, in_sync = client.get_order, [False]

    def get_order(symbol, cid, conditional=None):
        if cid == x0 and not in_sync[0]:
            raise Ambiguous("alpaca GET /v2/orders:by_client_order_id: timed out")   # the lookups time out
        vo = real_get(symbol, cid, conditional=conditional)
        if cid == x0 and vo is not None:            # a read that lags the book (the fake's "stale"): accepted
            vo = replace(vo, state=OrderState.SUBMITTED, filled_qty=0.0, avg_price=None)
        return vo

    client.get_order = get_order
    real_sync = hs.broker.sync

    def sync(now):
        in_sync[0] = True
        try:
            return real_sync(now)
        finally:
            in_sync[0] = False

    hs.broker.sync = sync
    # x0: Alpaca books it (sells 0.0099 at 43000) and the answer is lost (504); its lookup times out: unclear
    alpaca.inject("POST /v2/orders", "lost_504")
    hs.send(Order(x0, "futures", BTC, Side.SELL, pos.qty, reduce_only=True, purpose="exit", reason="signal",
                  created_at=T0 + timedelta(hours=3)))
    assert hs.state(x0) == "new" and 0 < alpaca.holding(BTC) < 0.0001
    trades = hs.settle(T0 + timedelta(hours=3))     # x1 refused (nothing left to sell); x0 read as accepted
    # the next cycle: the venue's reads are right again
    client.get_order, hs.broker.sync = real_get, real_sync
    trades += hs.settle(T0 + timedelta(hours=4))
    got = [(t.exit_order_id[-3:], t.exit_reason, t.exit_price, round(t.fees, 4)) for t in trades]
    assert [(t.exit_order_id, t.exit_reason) for t in trades] == [(x0, "signal")], got
    assert trades[0].exit_price == pytest.approx(43000.0), got
    assert abs(hs.wallet_diff or 0.0) < 0.01, (hs.wallet_diff, got)


@pytest.mark.parametrize("status", ["done_for_day", "calculated"])
def test_an_exit_alpaca_ends_for_the_day_goes_again_and_the_stop_is_not_held_off(alpaca, tmp_path, status):
    """A market exit Alpaca reports ``done_for_day`` or ``calculated`` (not open: it holds no coins) has ended: the
    exit goes again under the next id, instead of holding off the agent's own stop, the only one on spot."""
    clock = Clock(T0)
    h = spot_harness(tmp_path, alpaca, clock)
    h.entry(qty=0.01, bracket=Bracket(stop_distance=500.0, take_profit_distance=0.0, trail_pct=0.0, max_hold_s=0.0))
    h.settle(clock.now)
    pos = h.broker.positions()[0]
    assert pos.stop_loss == pytest.approx(41500.0)
    # a bar through the stop: the agent's exit goes out; Alpaca does not execute it and reports it as `status`
    alpaca.set_price(BTC, 41400.0)
    rep = h.broker.on_bar(Bar(BTC, clock.now, 42000.0, 42000.0, 41400.0, 41400.0, 1.0))
    assert rep.exit_orders
    fill = alpaca._fill
    alpaca._fill = lambda *a, **k: None
    for o, br in h.broker.take_outbox():
        h.send(o, br)
    alpaca._fill = fill
    ex = rep.exit_orders[0].client_order_id
    with alpaca._lock:
        alpaca.order(ex)["status"] = status         # not open on Alpaca: it holds no coins (qty_available full)
    h.alerts.clear()
    for k in range(24):                              # a day of hourly bars, the price falling
        clock.advance(hours=1)
        px = 41000.0 - 200.0 * k
        alpaca.set_price(BTC, px)
        rep = h.broker.on_bar(Bar(BTC, clock.now - timedelta(hours=1), px + 100, px + 100, px, px, 1.0))
        for o, br in h.broker.take_outbox():
            h.send(o, br)
        h.settle(clock.now)
        if alpaca.holding(BTC) < 0.0001:
            break
    assert alpaca.holding(BTC) < 0.0001 and k <= 1, f"{k + 1} h after its stop at 41,500 the coin is still held " \
                                                      f"at {px} (exit {status} on Alpaca)"
    assert h.broker.positions() == []


def test_an_entry_unknown_to_the_venue_is_given_up_while_dust_of_its_coin_is_held(alpaca, tmp_path):
    """The coin fee's rest (below the step) is no position an entry opened: an entry the venue never knew is given
    up after the grace, not awaited for ever as that rest's entry (which would block the coin)."""
    clock = Clock(T0)
    h = spot_harness(tmp_path, alpaca, clock)
    # a normal spot round trip: the coin fee's rest stays on the venue as dust
    h.entry(qty=0.01)
    h.settle(clock.now)
    pos = h.broker.positions()[0]
    h.send(Order(exit_order_id(pos.entry_order_id, pos.exit_seq), "futures", BTC, Side.SELL, pos.qty,
                 reduce_only=True, purpose="exit", reason="signal", created_at=T0 + timedelta(hours=5)))
    h.settle(clock.now)
    assert not h.broker.positions() and 0 < alpaca.holding(BTC) < 0.0001
    # the next entry is taken (SUBMITTED) but the venue loses it: it never executes, its lookup says 404
    fill = alpaca._fill
    alpaca._fill = lambda *a, **k: None
    o = h.entry(qty=0.01)
    alpaca._fill = fill
    cid = o.client_order_id
    assert h.state(cid) == "submitted"
    with alpaca._lock:
        alpaca.orders.pop(alpaca.by_cid.pop(cid))
    h.settle(clock.now)
    clock.advance(minutes=16)                   # past unconfirmed_grace (15 min)
    h.settle(clock.now)
    clock.advance(minutes=16)
    h.settle(clock.now)
    # given up as unknown to the venue (the dust is no position it opened): the coin free for the next entry
    assert h.state(cid) == "rejected", (h.state(cid), list(h.broker._tracked))
    again = h.entry(qty=0.01)
    assert h.state(again.client_order_id) == "submitted", h.store.order(again.client_order_id)["state_reason"]
