"""Venue execution under real faults (partial exits, adoption, bans, refused stops, funding, money), each first
reproduced against the fake Binance USD-M venue through python-binance over HTTP, then fixed at its cause."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from tracer.store import Store
from tracer.execution.broker import Bracket, client_order_id, exit_order_id
from tracer.execution.venue import OrderSpec, VenueUnavailable
from tracer.execution.venue_broker import stop_order_id, target_order_id
from tracer.execution.venues.binance_errors import WeightThrottle
from tracer.execution.venues.binance_futures import BinanceFuturesClient
from tracer.models import Bar, Order, OrderState, OrderType, Position, PositionSide, Side

from venue_harness import BTC, KEY, SECRET, T0, Harness, assert_no_duplicates, booked

ETH = "ETH/USD"


def algo(venue, cid):
    return next(a for a in venue.algo_orders.values() if a["clientAlgoId"] == cid)


def venue_qty(venue, sym="BTCUSDT") -> float:
    p = venue.positions.get(sym)
    return float(p["amt"]) if p else 0.0


def exit_of(h, pos: Position, reason="signal") -> Order:
    return h.send(Order(exit_order_id(pos.entry_order_id, pos.exit_seq), "futures", pos.symbol,
                        Side.SELL if pos.side is PositionSide.LONG else Side.BUY, pos.qty, reduce_only=True,
                        purpose="exit", reason=reason, created_at=T0 + timedelta(hours=5)))


def db_open(h):
    return {p.symbol: p for p in h.store.open_positions("futures")}


# --- 1. a partially filled exit closes only what filled ------------------------------------------------
def test_partial_exit_books_what_filled_and_keeps_the_rest_protected_on_the_venue(h, venue):
    o = h.entry(qty=0.01)
    h.settle()
    pos = h.broker.positions()[0]
    venue.inject("POST /fapi/v1/order", "partial", fraction=0.4)
    venue.inject("POST /fapi/v1/order", "5xx", times=3)          # the follow-up exit cannot get through now
    exit_of(h, pos)
    h.settle()
    trades = h.store.conn.execute("SELECT qty, exit_order_id, exit_reason FROM trades").fetchall()
    assert [(t["qty"], t["exit_order_id"]) for t in trades] == [(pytest.approx(0.004),
                                                                 exit_order_id(o.client_order_id))]
    left = db_open(h)[BTC]
    assert left.qty == pytest.approx(0.006) == venue_qty(venue) and left.exit_seq >= 1
    # the rest is still protected: its stop and target rest on the venue
    assert algo(venue, stop_order_id(o.client_order_id))["algoStatus"] == "NEW"
    assert algo(venue, target_order_id(o.client_order_id))["algoStatus"] == "NEW"
    assert "partial_exit" in h.events()
    # the rest exits under a later id once the venue takes orders again (each unclear POST's id is left to
    # its lookup and never POSTed again); both closes add up to the position
    h.settle(T0 + timedelta(hours=6))
    assert venue_qty(venue) == 0 and db_open(h) == {}
    rows = h.store.conn.execute("SELECT qty, exit_order_id FROM trades ORDER BY id").fetchall()
    assert [r["qty"] for r in rows] == [pytest.approx(0.004), pytest.approx(0.006)]
    assert h.state(rows[1]["exit_order_id"]) == "filled"
    assert all(n == 1 for n in venue.post_counts.values())
    unclear = [exit_order_id(o.client_order_id, k) for k in range(1, 4) if h.store.order(exit_order_id(o.client_order_id, k))
               and exit_order_id(o.client_order_id, k) != rows[1]["exit_order_id"]]
    # still asked for within the grace (their lookup would book a late fill), then cancelled as superseded
    assert unclear and all(h.state(c) in ("new", "canceled") for c in unclear)
    assert algo(venue, stop_order_id(o.client_order_id))["algoStatus"] == "CANCELED"
    assert_no_duplicates(venue)
    assert h.wallet_diff == pytest.approx(0.0, abs=0.01)


def test_repeated_partial_exits_each_get_their_own_id_and_close_the_position(h, venue):
    o = h.entry(qty=0.01)
    h.settle()
    venue.inject("POST /fapi/v1/order", "partial", fraction=0.5, times=2)
    exit_of(h, h.broker.positions()[0])
    h.settle()
    ids = [r["exit_order_id"] for r in h.store.conn.execute("SELECT exit_order_id FROM trades ORDER BY id")]
    assert ids == [exit_order_id(o.client_order_id, k) for k in range(3)]
    assert venue_qty(venue) == 0 and db_open(h) == {} and h.broker.positions() == []
    assert sum(r[0] for r in h.store.conn.execute("SELECT qty FROM trades")) == pytest.approx(0.01)
    assert_no_duplicates(venue)


def test_a_stop_that_fills_only_in_part_exits_the_rest_at_once(h, venue):
    o = h.entry(qty=0.01)
    h.settle()
    venue.inject("trigger", "partial", fraction=0.3)
    venue.set_price("BTCUSDT", 40500.0)                         # through the stop (entry - 1000)
    h.broker.last_price[BTC] = 40500.0
    h.settle(T0 + timedelta(hours=2))
    rows = h.store.conn.execute("SELECT qty, exit_reason, exit_order_id FROM trades ORDER BY id").fetchall()
    assert [(r["qty"], r["exit_reason"]) for r in rows] == [(pytest.approx(0.003), "stop_loss"),
                                                            (pytest.approx(0.007), "stop_loss")]
    assert rows[0]["exit_order_id"] == stop_order_id(o.client_order_id)
    assert venue_qty(venue) == 0 and db_open(h) == {}
    assert_no_duplicates(venue)


def test_a_target_filled_in_part_and_the_rest_liquidated_in_one_sync_are_each_booked(h, venue):
    """Found by the long chaos run: the target's part fill was booked in a sync, then the closed-position check
    of the same sync asked the venue for that target again (its DB row not yet written) and booked its fill a
    second time as the rest's close; the trades table's unique exit id dropped that trade, so the rest (a
    liquidation) never reached the books and the DB's wallet drifted from the venue's by the lost margin."""
    o = h.entry(qty=0.01, bracket=Bracket(stop_distance=0.0, take_profit_distance=2000.0, trail_pct=0.0,
                                          max_hold_s=0.0))
    h.settle()
    liq = h.broker.positions()[0].liquidation_price
    venue.inject("trigger", "partial", fraction=0.4)
    venue.set_price("BTCUSDT", 44500.0)                          # through the target (entry + 2000): 40% fills
    assert algo(venue, target_order_id(o.client_order_id))["algoStatus"] != "NEW"
    venue.set_price("BTCUSDT", liq * 0.98)                       # then the rest is liquidated
    assert venue_qty(venue) == 0
    h.settle(T0 + timedelta(hours=2))
    rows = h.store.conn.execute("SELECT qty, exit_reason, exit_order_id FROM trades ORDER BY id").fetchall()
    assert [(r["qty"], r["exit_reason"]) for r in rows] == [(pytest.approx(0.004), "take_profit"),
                                                            (pytest.approx(0.006), "liquidation")]
    assert rows[0]["exit_order_id"] == target_order_id(o.client_order_id) != rows[1]["exit_order_id"]
    assert db_open(h) == {} and h.broker.positions() == []
    assert h.wallet_diff == pytest.approx(0.0, abs=0.05)
    # the exit queued for the rest after the target's part is not sent once the rest is known to be gone
    h.settle(T0 + timedelta(hours=3))
    assert rows[1]["exit_order_id"] not in booked(venue) and "order_rejected" not in h.events()
    assert_no_duplicates(venue)


def test_a_liquidation_after_a_refused_exit_is_booked_under_its_own_id(h, venue):
    """Found by the long chaos run (another seed): the position was liquidated on the venue, the agent's own exit
    then sent was refused (-2022, nothing to reduce), and the liquidation was booked under that refused exit's
    id, turning its row 'filled' with the exit's reason and the venue's refusal as its state reason. The
    liquidation gets the next exit id, its own row (reason 'liquidation'); the refused exit stays refused."""
    o = h.entry(qty=0.01, bracket=Bracket(stop_distance=0.0, take_profit_distance=0.0, trail_pct=0.0,
                                          max_hold_s=0.0))
    h.settle()
    pos = h.broker.positions()[0]
    venue.set_price("BTCUSDT", pos.liquidation_price * 0.98)         # liquidated on the venue
    assert venue_qty(venue) == 0
    x = exit_of(h, pos, reason="stop_loss")                           # the agent's own stop, a moment late
    assert h.state(x.client_order_id) == "rejected"
    h.settle(T0 + timedelta(hours=6))
    rows = h.store.conn.execute("SELECT qty, exit_reason, exit_order_id FROM trades").fetchall()
    assert [(r["qty"], r["exit_reason"]) for r in rows] == [(pytest.approx(0.01), "liquidation")]
    liq_id = rows[0]["exit_order_id"]
    assert liq_id == exit_order_id(o.client_order_id, 1) != x.client_order_id
    assert h.state(x.client_order_id) == "rejected"
    liq_row = h.store.order(liq_id)
    assert (liq_row["state"], liq_row["reason"]) == ("filled", "liquidation")
    assert db_open(h) == {} and h.broker.positions() == []
    assert h.wallet_diff == pytest.approx(0.0, abs=0.05)
    assert_no_duplicates(venue)


# --- 2 and 3. adoption in the cycle that closes the old row; adopted positions get a stop -------------------
def test_save_positions_closes_the_old_row_before_the_new_open_one_of_the_same_symbol(tmp_path):
    st = Store(tmp_path / "p.sqlite")
    old = Position("futures", BTC, PositionSide.LONG, 1.0, 100.0, T0, 0.1, 90.0, 120.0, 0.0, 100.0, 0.0, "tb-old-e")
    new = Position("futures", BTC, PositionSide.LONG, 2.0, 101.0, T0, 0.0, 0.0, 0.0, 0.0, 101.0, 0.0, "tb-adopt-1")
    with st.transaction():
        for cid in ("tb-old-e", "tb-adopt-1"):
            st.insert_order(Order(cid, "futures", BTC, Side.BUY, 1.0, created_at=T0), run_id=None, signal_id=None,
                            price_est=None)
        st.save_positions("futures", [old])
    with st.transaction():
        st.save_positions("futures", [new], [(old, T0 + timedelta(hours=1))])
    assert [p.entry_order_id for p in st.open_positions("futures")] == ["tb-adopt-1"]


def test_position_adopted_in_the_cycle_its_old_row_closes_then_gets_a_stop(h, venue):
    o = h.entry(qty=0.01)
    h.settle()
    venue.set_price("BTCUSDT", 40500.0)                         # the stop fills on the venue...
    client = h.broker.venues["binance"].client
    client.place_order(OrderSpec("manual-1", BTC, Side.BUY, 0.02))   # ...and someone opens BTC by hand
    h.broker.last_price[BTC] = 40500.0
    h.settle(T0 + timedelta(hours=2))                           # no IntegrityError: one open BTC row
    opened = db_open(h)
    assert list(opened) == [BTC] and opened[BTC].qty == pytest.approx(0.02)
    adopted = opened[BTC].entry_order_id
    assert adopted.startswith("tb-adopt-") and h.state(o.client_order_id) == "filled"
    assert "position_adopted" in h.events()
    # the agent's rules give it its levels (here: this cycle's signal gave a stop distance of 800)
    h.broker.set_brackets({BTC: Bracket(stop_distance=800.0, take_profit_distance=0.0, trail_pct=0.0, max_hold_s=0.0)})
    h.settle(T0 + timedelta(hours=3))
    pos = db_open(h)[BTC]
    assert pos.stop_loss == pytest.approx(pos.entry_price - 800.0, abs=0.1)
    a = algo(venue, stop_order_id(adopted))
    assert a["algoStatus"] == "NEW" and float(a["triggerPrice"]) == pytest.approx(pos.stop_loss, abs=0.1)


def test_adopted_position_without_a_signal_gets_the_fallback_stop(h, venue):
    h.broker.venues["binance"].client.place_order(OrderSpec("manual-2", ETH, Side.SELL, 0.05))
    h.broker.last_price[ETH] = 2500.0
    h.settle()
    h.broker.set_brackets({ETH: None})
    h.settle()
    pos = db_open(h)[ETH]
    assert pos.side is PositionSide.SHORT and pos.stop_loss == pytest.approx(pos.entry_price * 1.05)
    assert algo(venue, stop_order_id(pos.entry_order_id))["algoStatus"] == "NEW"


# --- 4. refused stops: retried under a new id (bounded), and the agent watches its own stop --------------------
def test_refused_stop_is_replaced_under_a_new_id_and_the_agent_watches_it_meanwhile(h, venue):
    venue.inject("POST /fapi/v1/algoOrder", -4045, times=2)     # refuses the stop and the target once each
    o = h.entry(qty=0.01)
    h.settle()
    assert h.state(stop_order_id(o.client_order_id)) == "rejected"
    assert "position_unprotected" in h.events()
    pos = h.broker.positions()[0]
    assert pos.stop_seq == 1
    # next cycle: a new stop, under a new id
    h.settle(T0 + timedelta(hours=2))
    assert algo(venue, stop_order_id(o.client_order_id, 1))["algoStatus"] == "NEW"
    assert venue.post_counts[stop_order_id(o.client_order_id)] == 1


def test_venue_refusing_every_stop_gets_a_bounded_number_and_the_agent_stops_out_itself(h, venue):
    venue.inject("POST /fapi/v1/algoOrder", -4045, times=None)
    o = h.entry(qty=0.01)
    for k in range(6):
        h.settle(T0 + timedelta(hours=1 + k))
    posts = [venue.post_counts.get(stop_order_id(o.client_order_id, k), 0) for k in range(5)]
    assert posts == [1, 1, 1, 0, 0]                             # three attempts, each id once
    pos = h.broker.positions()[0]
    # a bar through the stop: the agent's own stop exits (the venue holds none)
    rep = h.broker.on_bar(Bar(BTC, T0 + timedelta(hours=8), pos.entry_price, pos.entry_price + 10,
                              pos.stop_loss - 50, pos.stop_loss - 20, 5.0))
    assert [x.reason for x in rep.exit_orders] == ["stop_loss"]
    with h.store.transaction():
        h.store.insert_order(rep.exit_orders[0], run_id=None, signal_id=None, price_est=None)
    venue.set_price("BTCUSDT", pos.stop_loss - 20)
    trades = h.settle(T0 + timedelta(hours=9))
    assert [t.exit_reason for t in trades] == ["stop_loss"] and venue_qty(venue) == 0


def test_a_live_venue_stop_is_left_to_the_venue(h, venue):
    h.entry(qty=0.01)
    h.settle()
    pos = h.broker.positions()[0]
    rep = h.broker.on_bar(Bar(BTC, T0 + timedelta(hours=2), pos.entry_price, pos.entry_price + 10,
                              pos.stop_loss - 50, pos.stop_loss - 20, 5.0))
    assert rep.exit_orders == []                               # the venue's stop does it (booked by sync)


# --- 5. one position per symbol at the venue: no double entry after a ban ------------------------------------
def test_entry_left_new_by_a_ban_is_cancelled_not_sent_after_a_newer_decision(h, venue):
    venue.inject("POST /fapi/v1/order", 418, retry_after=3600)
    e1 = h.entry(qty=0.01)
    assert h.state(e1.client_order_id) == "new"
    h.broker.venues["binance"].banned_until = None             # the ban is over
    e2 = h.entry(qty=0.01)                                     # the next bar decided a fresh entry
    assert h.state(e2.client_order_id) == "submitted"
    assert h.state(e1.client_order_id) == "canceled" and e1.client_order_id not in booked(venue)
    # the restart reconciliation's path for the stale one: never sent
    upd = h.broker.submit(e1)
    assert upd.state is OrderState.CANCELED and venue.post_counts[e1.client_order_id] == 1   # the banned POST
    h.settle()
    assert venue_qty(venue) == pytest.approx(0.01) and len(db_open(h)) == 1


def test_older_new_entry_is_superseded_when_reconciled_after_a_newer_one(h, venue):
    venue.inject("POST /fapi/v1/order", 418, retry_after=3600)
    e1 = h.entry(qty=0.01)
    e2 = h.entry(qty=0.01)
    assert h.state(e1.client_order_id) == h.state(e2.client_order_id) == "new"
    h.broker.venues["binance"].banned_until = None
    first = h.broker.submit(e1)                                # reconciliation goes oldest first
    assert first.state is OrderState.CANCELED and "superseded" in first.reason
    assert h.broker.submit(e2).state is OrderState.SUBMITTED
    h.settle()
    assert venue_qty(venue) == pytest.approx(0.01) and e1.client_order_id not in booked(venue)


def test_no_entry_while_the_venue_already_holds_the_symbol(h, venue):
    h.broker.venues["binance"].client.place_order(OrderSpec("manual-3", ETH, Side.BUY, 0.05))
    e = h.entry(symbol=ETH, qty=0.05)
    assert h.state(e.client_order_id) == "rejected" and e.client_order_id not in venue.post_counts
    assert "entry_refused_position_on_venue" in h.events()


# --- 6. funding on the venue's clock, never booked as 0; money reconciles -----------------------------------
def test_funding_is_booked_from_the_venue_income_history_and_the_wallet_reconciles(h, venue):
    o = h.entry(qty=0.01)
    h.settle()                                                 # anchors the money (nothing in flight)
    assert "wallet_anchored" in h.events()
    paid = -(venue.apply_funding("BTCUSDT", 0.0001) + venue.apply_funding("BTCUSDT", 0.0002))
    venue.inject("/fapi/v1/income", "5xx", times=3)             # the lookup fails: nothing booked, not 0
    h.settle(T0 + timedelta(hours=8))
    assert h.store.funding_booked("futures") == [] and h.broker.positions()[0].funding_paid == 0
    h.settle(T0 + timedelta(hours=9))                          # asked again: booked, once each
    h.settle(T0 + timedelta(hours=10))
    rows = h.store.funding_booked("futures")
    assert len(rows) == 2 and sum(r["amount"] for r in rows) == pytest.approx(paid)
    assert {r["entry_order_id"] for r in rows} == {o.client_order_id}
    assert db_open(h)[BTC].funding_paid == pytest.approx(paid)
    assert h.wallet_diff == pytest.approx(0.0, abs=0.01)
    exit_of(h, h.broker.positions()[0])
    trades = h.settle(T0 + timedelta(hours=11))
    assert trades[0].funding == pytest.approx(-paid)
    assert h.wallet_diff == pytest.approx(0.0, abs=0.01)
    assert "wallet_mismatch" not in h.events()


def test_funding_paid_before_a_close_is_booked_on_its_trade_when_the_lookup_fails_that_cycle(h, venue):
    o = h.entry(qty=0.01)
    h.settle()
    pos = h.broker.positions()[0]
    paid = -venue.apply_funding("BTCUSDT", 0.0002)
    venue.inject("/fapi/v1/income", "5xx", times=20)            # every lookup of this cycle fails
    exit_of(h, pos)
    trades = h.settle(T0 + timedelta(hours=8))                  # the position closes; its funding is not known
    assert len(trades) == 1 and trades[0].funding == 0 and h.store.funding_booked("futures") == []
    venue.faults.clear()
    h.settle(T0 + timedelta(hours=9))                           # asked again although nothing is open: booked
    rows = h.store.funding_booked("futures")
    assert len(rows) == 1 and rows[0]["amount"] == pytest.approx(paid)
    assert rows[0]["entry_order_id"] == o.client_order_id
    t = h.store.conn.execute("SELECT funding, pnl, return_pct FROM trades").fetchone()
    assert t["funding"] == pytest.approx(-paid) and t["pnl"] == pytest.approx(trades[0].pnl - paid)
    assert t["return_pct"] == pytest.approx(replace(trades[0], pnl=trades[0].pnl - paid).return_pct)
    assert h.wallet_diff == pytest.approx(0.0, abs=0.01)
    h.settle(T0 + timedelta(hours=10))                          # answered: not asked, not booked again
    assert len(h.store.funding_booked("futures")) == 1


def test_funding_paid_between_the_lookup_and_the_close_is_on_the_trade_of_that_cycle(h, venue):
    h.entry(qty=0.01)
    h.settle()
    pos = h.broker.positions()[0]
    paid = -venue.apply_funding("BTCUSDT", 0.0001)
    venue.inject("/fapi/v1/income", "empty", times=1)          # not in the history at this cycle's first lookup
    exit_of(h, pos)
    assert paid > 0
    trades = h.settle(T0 + timedelta(hours=8))
    assert len(trades) == 1 and trades[0].funding == pytest.approx(-paid)
    assert h.wallet_diff == pytest.approx(0.0, abs=0.01)


def test_funding_still_owed_for_a_closed_position_survives_a_restart(tmp_path, venue):
    h = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)])
    o = h.entry(qty=0.01)
    h.settle()
    paid = -venue.apply_funding("BTCUSDT", 0.0003)
    venue.inject("/fapi/v1/income", "5xx", times=20)
    exit_of(h, h.broker.positions()[0])
    h.settle(T0 + timedelta(hours=8))
    assert h.store.funding_booked("futures") == []
    venue.faults.clear()
    h2 = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)])   # a new process
    h2.broker.restore(h2.store.open_positions("futures"), [], h.broker.realized_pnl, h.broker.fees_paid, {})
    h2.settle(T0 + timedelta(hours=9))
    rows = h2.store.funding_booked("futures")
    assert [r["entry_order_id"] for r in rows] == [o.client_order_id] and rows[0]["amount"] == pytest.approx(paid)
    assert h2.wallet_diff == pytest.approx(0.0, abs=0.01)


def test_a_wallet_difference_is_recorded_and_alerted_once(h, venue):
    h.settle()
    assert "wallet_anchored" in h.events()
    venue.balance -= 7.5                                       # money moved that the DB knows nothing of
    h.settle()
    assert "wallet_mismatch" not in h.events()                 # once could be a fill racing the check
    h.settle()
    h.settle()
    assert h.events("wallet_mismatch") == ["wallet_mismatch"]
    assert h.wallet_diff == pytest.approx(-7.5) and any("wallet" in a for a in h.alerts)


# --- 8. smaller: the right order service; the weight throttle -------------------------------------------------
def test_stop_and_target_status_checks_ask_only_the_algo_service(h, venue):
    o = h.entry(qty=0.01)
    h.settle()
    before = len(venue.requests)
    for k in range(3):
        h.settle(T0 + timedelta(hours=2 + k))
    asked = [r for r in venue.requests[before:] if r.path == "/fapi/v1/order" and r.method == "GET"]
    protective = (stop_order_id(o.client_order_id), target_order_id(o.client_order_id))
    assert not [r for r in asked if r.query.get("origClientOrderId") in protective]
    assert [r for r in venue.requests[before:] if r.path == "/fapi/v1/algoOrder" and r.method == "GET"]


def test_weight_throttle_logs_to_the_agent_log_and_a_stop_ends_its_wait(caplog):
    log = logging.getLogger("test.agent.futures")
    stop = threading.Event()
    t = WeightThrottle(limit=100, log=log, stop=stop)
    t.after_response("95", 120.0)
    stop.set()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="test.agent.futures"):
        with pytest.raises(VenueUnavailable):
            t.before_request(120.5)
    assert time.monotonic() - started < 1.0
    assert any("venue_weight_throttle" in r.getMessage() and r.name == "test.agent.futures" for r in caplog.records)


def test_client_built_by_the_factory_logs_through_the_agent_logger(venue):
    from tracer.config import load_settings
    from tracer.execution.venue_factory import make_client
    s = load_settings(environ={"TB_BINANCE_API_KEY": KEY, "TB_BINANCE_API_SECRET": SECRET,
                               "TB_BINANCE_FUTURES_URL": venue.url, "TB_VENUE_FUTURES": "binance",
                               "TB_FUTURES_BACKUP_VENUE": "none"}, dotenv_path=None)
    log = logging.getLogger("test.agent.factory")
    c = make_client(s, "binance", log)
    assert isinstance(c, BinanceFuturesClient) and c.throttle._log is log


def test_reduce_only_type_of_protective_orders_is_conditional():
    o = Order(client_order_id("futures", BTC, T0, "entry") + "-sl", "futures", BTC, Side.SELL, 1.0, OrderType.STOP,
              reduce_only=True, stop_price=1.0)
    from tracer.execution.venue_broker import conditional as _conditional
    assert _conditional(o) and not _conditional(Order("x", "futures", BTC, Side.SELL, 1.0))


def test_explain_shows_every_part_of_a_position_closed_in_parts_and_its_funding(h, venue):
    import io
    from rich.console import Console
    from tracer.cli import explain
    o = h.entry(qty=0.01)
    h.settle()
    venue.apply_funding("BTCUSDT", 0.0001)
    h.settle(T0 + timedelta(hours=8))
    venue.inject("POST /fapi/v1/order", "partial", fraction=0.5)
    exit_of(h, h.broker.positions()[0])
    h.settle(T0 + timedelta(hours=9))
    buf = io.StringIO()
    assert explain(h.store, Console(file=buf, width=250), order_id=o.client_order_id) == 0
    out = buf.getvalue()
    assert out.count("  trade: ") == 2 and "funding (venue income history): 1 payment(s)" in out


def test_a_backup_venue_first_reached_later_joins_the_wallet_check_without_a_false_alarm(venue, tmp_path):
    from fakes.bybit_venue import FakeBybit
    from tracer.execution.venues.bybit import BybitFuturesClient
    with FakeBybit("yk", "ys") as by:
        by.down()
        hb = Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5),
                                BybitFuturesClient("yk", "ys", by.url, timeout_s=0.5)], down_cooldown_s=0.0)
        hb.settle()
        assert "wallet_anchored" in hb.events() and hb.wallet_diff == pytest.approx(0.0, abs=0.01)
        by.up()                                                     # the backup answers from now on
        for k in range(3):
            hb.settle(T0 + timedelta(hours=1 + k))
        assert "wallet_mismatch" not in hb.events() and hb.wallet_diff == pytest.approx(0.0, abs=0.01)
        assert len(hb.broker._balance) == 2


def test_a_stop_refused_for_a_moment_is_tried_again_next_cycle_not_used_up_in_one(h, venue):
    """The cycle goes on sending only for exits queued while sending; a stop re-placed after a refusal waits for
    the next cycle, so a refusal of a moment (-4045, the account's stop-order limit) does not use all tries."""
    venue.inject("/fapi/v1/algoOrder", -4045, times=None)
    o = h.entry(qty=0.01)
    h.settle(T0)
    assert h.broker.positions()[0].stop_seq < h.broker.stop_attempts
    venue.clear_faults()
    h.settle(T0 + timedelta(hours=1))
    h.settle(T0 + timedelta(hours=2))
    assert any(a["clientAlgoId"].startswith(o.client_order_id + "-sl") and a["algoStatus"] == "NEW"
               for a in venue.algo_orders.values())
