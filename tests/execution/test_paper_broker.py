"""PaperSpotBroker fills, brackets, accounting, idempotency and restore; check_exit for longs and shorts.

Numbers are hand-computed in the comments. Default broker: cash 10 000, fee 10 bps, slippage 5 bps.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tracer.execution.broker import Bracket, exit_order_id
from tracer.execution.exits import ExitHit, advance, check_exit, protective_stop
from tracer.execution.paper import PaperSpotBroker
from tracer.models import Bar, Order, OrderState, OrderType, Position, PositionSide, Side

H = timedelta(hours=1)
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
SYM = "BTC/USD"
AGENT = "hybrid"


def approx(x: float):
    return pytest.approx(x, rel=1e-12, abs=1e-9)


def broker(cash: float = 10_000.0, fee_bps: float = 10.0, slip_bps: float = 5.0) -> PaperSpotBroker:
    return PaperSpotBroker(AGENT, cash, fee_bps, slip_bps, interval=H)


def bar(i: int, o: float, h: float, l: float, c: float, symbol: str = SYM) -> Bar:
    return Bar(symbol, T0 + i * H, o, h, l, c, 1.0)


def buy(cid: str = "e1", qty: float = 1.0, at: datetime | None = T0, symbol: str = SYM, **kw) -> Order:
    return Order(cid, AGENT, symbol, Side.BUY, qty, created_at=at, **kw)


def sell(cid: str, qty: float, at: datetime | None, reason: str = "signal") -> Order:
    return Order(cid, AGENT, SYM, Side.SELL, qty, purpose="exit", reason=reason, created_at=at)


# ------------------------------------------------------------------------------ market fills

def test_market_buy_fills_at_next_bar_open_with_slippage_and_fee():
    b = broker()
    upd = b.submit(buy("e1", 2.0, at=T0 + timedelta(minutes=30)))
    assert upd.state is OrderState.SUBMITTED and upd.reason is None
    assert [o.client_order_id for o in b.open_orders()] == ["e1"]

    # the bar starting at T0 began before the order was created: no fill
    rep = b.on_bar(bar(0, 100.0, 101.0, 99.0, 100.5))
    assert rep.fills == [] and b.positions() == [] and b.cash == 10_000.0
    assert b.get("e1").state is OrderState.SUBMITTED
    # a bar of another symbol does not fill it either
    assert b.on_bar(bar(1, 5.0, 5.0, 5.0, 5.0, symbol="ETH/USD")).fills == []

    # first bar with ts >= created_at: fill at open * (1 + 5 bps) = 101 * 1.0005 = 101.0505
    rep = b.on_bar(bar(1, 101.0, 102.0, 100.0, 101.5))
    (fill,) = rep.fills
    assert fill.price == approx(101.0505)
    assert fill.qty == 2.0 and fill.side is Side.BUY and fill.ts == T0 + H
    # fee = notional * 10 / 1e4 = 2 * 101.0505 * 0.001 = 0.202101
    assert fill.fee == approx(0.202101)
    # cash = 10000 - 202.101 - 0.202101 = 9797.696899
    assert b.cash == approx(9797.696899)
    assert b.fees_paid == approx(0.202101)
    st = b.get("e1")
    assert st.state is OrderState.FILLED and st.filled_qty == 2.0 and st.avg_price == approx(101.0505)
    assert b.open_orders() == []
    (pos,) = b.positions()
    assert pos.side is PositionSide.LONG and pos.qty == 2.0 and pos.entry_price == approx(101.0505)
    assert pos.opened_at == T0 + H and pos.entry_fee == approx(0.202101)
    # no bracket: no stop, no target, no trailing, no time stop
    assert (pos.stop_loss, pos.take_profit, pos.trail_pct, pos.max_hold_s) == (0.0, 0.0, 0.0, 0.0)
    # equity = cash + qty * last close = 9797.696899 + 2 * 101.5
    assert b.equity() == approx(9797.696899 + 203.0)


def test_order_created_exactly_at_bar_open_fills_on_that_bar():
    b = broker(slip_bps=0.0)
    b.submit(buy("e1", 1.0, at=T0 + 3 * H))
    assert b.on_bar(bar(2, 90.0, 91.0, 89.0, 90.0)).fills == []
    (fill,) = b.on_bar(bar(3, 95.0, 96.0, 94.0, 95.0)).fills
    assert fill.price == 95.0 and fill.ts == T0 + 3 * H


def test_quantity_floored_to_step_without_float_loss():
    # 0.043 / 0.001 = 42.99999999999999 in floating point: the fill must still be 43 steps
    b = PaperSpotBroker(AGENT, 10_000.0, 0.0, 0.0, interval=H, step_size=0.001)
    b.submit(buy("e1", 0.043))
    (fill,) = b.on_bar(bar(0, 100.0, 100.0, 100.0, 100.0)).fills
    assert fill.qty == pytest.approx(0.043, abs=1e-15)
    # a quantity between steps is floored: 0.0439 -> 0.043
    b2 = PaperSpotBroker(AGENT, 10_000.0, 0.0, 0.0, interval=H, step_size=0.001)
    b2.submit(buy("e1", 0.0439))
    assert b2.on_bar(bar(0, 100.0, 100.0, 100.0, 100.0)).fills[0].qty == pytest.approx(0.043, abs=1e-15)


# ------------------------------------------------------------------------------ brackets

ENTRY = 100.05          # open 100 * (1 + 0.0005)
ENTRY_FEE = 0.10005     # 100.05 * 1 * 0.001


def _opened(bracket: Bracket, **kw) -> PaperSpotBroker:
    """A broker holding 1 BTC bought at the open (100) of bar 0; bar 0 triggers no exit."""
    b = broker(**kw)
    b.submit(buy("e1", 1.0), bracket)
    rep = b.on_bar(bar(0, 100.0, 100.5, 99.5, 100.2))
    assert len(rep.fills) == 1 and rep.trades == []
    return b


def test_bracket_levels_from_fill_price():
    b = _opened(Bracket(stop_distance=2.0, take_profit_distance=4.0, trail_pct=0.0, max_hold_s=0.0, signal_id=7))
    (pos,) = b.positions()
    assert pos.entry_price == approx(ENTRY)
    assert pos.stop_loss == approx(98.05)       # 100.05 - 2
    assert pos.take_profit == approx(104.05)    # 100.05 + 4
    assert pos.signal_id == 7


BRACKET = Bracket(stop_distance=2.0, take_profit_distance=4.0, trail_pct=0.0, max_hold_s=0.0)


@pytest.mark.parametrize("ohlc, reason, level", [
    # low 97.9 crosses the stop 98.05 -> exit at the stop
    ((100.0, 100.8, 97.9, 98.5), "stop_loss", 98.05),
    # high 104.2 crosses the target 104.05 -> exit at the target
    ((100.5, 104.2, 100.1, 103.9), "take_profit", 104.05),
    # both inside one bar: the stop is assumed first (pessimistic)
    ((100.0, 105.0, 97.0, 101.0), "stop_loss", 98.05),
    # gap below the stop: exit at the open 97, not at the stop
    ((97.0, 97.5, 96.0, 97.2), "stop_loss", 97.0),
    # gap above the target: exit at the open 105
    ((105.0, 106.0, 104.5, 105.5), "take_profit", 105.0),
])
def test_bracket_exits(ohlc, reason, level):
    b = _opened(BRACKET)
    rep = b.on_bar(bar(1, *ohlc))
    (trade,) = rep.trades
    # exit price = level moved against us by 5 bps
    exit_px = level * (1 - 0.0005)
    exit_fee = exit_px * 1.0 * 0.001
    assert trade.exit_reason == reason
    assert trade.exit_price == approx(exit_px)
    assert trade.entry_price == approx(ENTRY)
    assert trade.exit_ts == T0 + H and trade.entry_ts == T0
    assert trade.fees == approx(ENTRY_FEE + exit_fee)
    # pnl = (exit - entry) * qty - both fees
    pnl = (exit_px - ENTRY) * 1.0 - ENTRY_FEE - exit_fee
    assert trade.pnl == approx(pnl)
    assert trade.exit_order_id == exit_order_id("e1") and trade.entry_order_id == "e1"
    assert b.realized_pnl == approx(pnl)
    assert b.fees_paid == approx(ENTRY_FEE + exit_fee)
    assert b.cash == approx(10_000.0 + pnl)
    assert b.positions() == [] and b.equity() == b.cash
    (xo,) = rep.exit_orders
    assert xo.side is Side.SELL and xo.reduce_only and xo.reason == reason
    assert b.get(exit_order_id("e1")).state is OrderState.FILLED


def test_stop_loss_hand_numbers():
    # exit = 98.05 * 0.9995 = 98.000975; exit fee = 0.098000975
    # pnl = (98.000975 - 100.05) - 0.10005 - 0.098000975 = -2.049025 - 0.198050975 = -2.247075975
    b = _opened(BRACKET)
    (trade,) = b.on_bar(bar(1, 100.0, 100.8, 97.9, 98.5)).trades
    assert trade.exit_price == approx(98.000975)
    assert trade.pnl == approx(-2.247075975)
    assert b.cash == approx(9997.752924025)


def test_no_exit_when_levels_untouched():
    b = _opened(BRACKET)
    assert b.on_bar(bar(1, 100.0, 104.0, 98.1, 101.0)).trades == []
    assert len(b.positions()) == 1


def test_trailing_stop_follows_best_price_without_intrabar_lookahead():
    b = broker(slip_bps=0.0)                   # fill at exactly 100
    b.submit(buy("e1", 1.0), Bracket(stop_distance=10.0, take_profit_distance=0.0, trail_pct=0.05, max_hold_s=0.0))
    # bar 0: best before the bar = entry 100 -> trail 95 (tighter than the hard stop 90);
    # low 99 > 95: no exit. (Had the bar's own high 110 been used first, the trail would be
    # 104.5 and the low 99 would wrongly stop us out.)
    rep = b.on_bar(bar(0, 100.0, 110.0, 99.0, 108.0))
    assert rep.trades == []
    (pos,) = b.positions()
    assert pos.best_price == 110.0 and pos.take_profit == 0.0
    # bar 1: trail = 110 * 0.95 = 104.5; low 104 crosses it -> exit at 104.5
    (trade,) = b.on_bar(bar(1, 108.0, 109.0, 104.0, 105.0)).trades
    assert trade.exit_reason == "trailing_stop"
    assert trade.exit_price == approx(104.5)
    # pnl = 4.5 - 0.1 (entry fee 100 * 0.001) - 0.1045 (exit fee 104.5 * 0.001) = 4.2955
    assert trade.pnl == approx(4.2955)
    assert b.realized_pnl == approx(4.2955) and b.fees_paid == approx(0.2045)


def test_trailing_ratchets_up_only():
    b = broker(slip_bps=0.0)
    b.submit(buy("e1", 1.0), Bracket(stop_distance=10.0, take_profit_distance=0.0, trail_pct=0.05, max_hold_s=0.0))
    b.on_bar(bar(0, 100.0, 110.0, 99.0, 108.0))      # best 110
    b.on_bar(bar(1, 108.0, 108.5, 105.0, 106.0))     # trail 104.5, low 105: survives; best stays 110
    assert b.positions()[0].best_price == 110.0
    assert protective_stop(b.positions()[0]) == (approx(104.5), "trailing_stop")


def test_time_stop_exits_at_close_when_hold_time_reached():
    b = broker(slip_bps=0.0)
    b.submit(buy("e1", 1.0), Bracket(stop_distance=50.0, take_profit_distance=0.0, trail_pct=0.0, max_hold_s=3 * 3600))
    assert b.on_bar(bar(0, 100.0, 101.0, 99.0, 100.5)).trades == []   # held 1h at close
    assert b.on_bar(bar(1, 100.5, 102.0, 99.5, 101.0)).trades == []   # held 2h
    (trade,) = b.on_bar(bar(2, 101.0, 102.0, 100.5, 101.5)).trades   # held 3h at the close: exit
    assert trade.exit_reason == "time_stop"
    assert trade.exit_price == 101.5 and trade.exit_ts == T0 + 3 * H
    # pnl = 1.5 - 0.1 - 0.1015 = 1.2985
    assert trade.pnl == approx(1.2985)


def test_realized_pnl_fees_and_equity_accumulate():
    b = broker()
    br = Bracket(stop_distance=2.0, take_profit_distance=4.0, trail_pct=0.0, max_hold_s=0.0)
    b.submit(buy("e1", 1.0, at=T0), br)
    b.on_bar(bar(0, 100.0, 100.5, 99.5, 100.2))
    (t1,) = b.on_bar(bar(1, 100.0, 100.8, 97.9, 98.5)).trades          # stop: -2.247075975
    b.submit(buy("e2", 2.0, at=T0 + 2 * H), br)
    b.on_bar(bar(2, 99.0, 99.5, 98.8, 99.2))
    # entry 2: 99 * 1.0005 = 99.0495, fee 2 * 99.0495 * 0.001 = 0.198099
    (pos,) = b.positions()
    assert pos.entry_price == approx(99.0495) and pos.entry_fee == approx(0.198099)
    cash_mid = 10_000.0 + t1.pnl - 2 * 99.0495 - 0.198099
    assert b.cash == approx(cash_mid)
    assert b.equity() == approx(cash_mid + 2 * 99.2)                   # qty * last close
    b.on_bar(bar(3, 99.3, 99.9, 99.0, 99.6))
    assert b.equity() == approx(cash_mid + 2 * 99.6)
    (t2,) = b.on_bar(bar(4, 100.0, 103.5, 99.9, 103.0)).trades          # target 103.0495
    # exit 103.0495 * 0.9995 = 102.99797525; fee 2 * that * 0.001 = 0.2059959505
    # pnl = (102.99797525 - 99.0495) * 2 - 0.198099 - 0.2059959505 = 7.8969505 - 0.4040949505 = 7.4928555495
    assert t2.exit_reason == "take_profit"
    assert t2.pnl == approx(7.4928555495)
    assert b.realized_pnl == approx(t1.pnl + t2.pnl)
    assert b.fees_paid == approx(t1.fees + t2.fees)
    assert b.cash == approx(10_000.0 + t1.pnl + t2.pnl) and b.equity() == b.cash


def test_signal_sell_fills_at_open_and_bracket_exit_supersedes_queued_exit():
    b = _opened(BRACKET)
    cid = exit_order_id("e1")
    assert b.submit(sell(cid, 1.0, T0 + H, reason="bearish")).state is OrderState.SUBMITTED
    (trade,) = b.on_bar(bar(1, 101.0, 101.5, 100.5, 101.2)).trades
    # sells at open 101 * 0.9995 = 100.9495
    assert trade.exit_reason == "bearish" and trade.exit_price == approx(100.9495)
    assert trade.exit_order_id == cid and trade.exit_ts == T0 + H

    # a sell queued for later whose position is stopped out first is canceled, not filled
    b = _opened(BRACKET)
    b.submit(sell(cid, 1.0, T0 + 2 * H))
    assert b.on_bar(bar(1, 100.0, 100.8, 97.9, 98.5)).trades[0].exit_reason == "stop_loss"
    # the stop used the position's one exit id too, so that id is now a FILLED exit: the queued sell
    # with the same id is that exit, and must neither fill again nor turn the id's state to CANCELED
    assert b.get(cid).state is OrderState.FILLED
    assert b.open_orders() == []
    rep = b.on_bar(bar(2, 98.0, 98.5, 97.5, 98.0))
    assert rep.trades == [] and rep.fills == [] and rep.updates == []
    assert b.get(cid).state is OrderState.FILLED and b.get(cid).avg_price == approx(98.000975)


def test_sell_queued_after_stop_gets_canceled():
    b = _opened(BRACKET)
    b.submit(sell("manual-x", 1.0, T0 + 2 * H))
    (t,) = b.on_bar(bar(1, 100.0, 100.8, 97.9, 98.5)).trades
    assert t.exit_reason == "stop_loss"
    rep = b.on_bar(bar(2, 98.0, 98.5, 97.5, 98.0))
    assert rep.fills == [] and rep.trades == []
    assert b.get("manual-x").state is OrderState.CANCELED
    assert b.open_orders() == []


# ------------------------------------------------------------------------------ idempotency & rules

def test_submit_is_idempotent_on_client_order_id():
    b = broker()
    first = b.submit(buy("e1", 1.0))
    again = b.submit(buy("e1", 1.0))
    other_qty = b.submit(buy("e1", 5.0))           # same id, different content: still the first order
    assert first == again == other_qty
    assert len(b.open_orders()) == 1 and b.open_orders()[0].qty == 1.0
    b.on_bar(bar(0, 100.0, 100.5, 99.5, 100.2))
    filled = b.submit(buy("e1", 1.0))
    assert filled.state is OrderState.FILLED       # the known state, no second order
    assert b.open_orders() == [] and len(b.positions()) == 1
    assert b.on_bar(bar(1, 100.0, 100.5, 99.5, 100.2)).fills == []
    assert b.positions()[0].qty == 1.0


def test_spot_is_long_only():
    b = broker()
    rej = b.submit(sell("s1", 1.0, T0))
    assert rej.state is OrderState.REJECTED and "long-only" in rej.reason
    assert b.get("s1") == rej and b.open_orders() == []
    # a rejected id stays rejected (idempotent), even once a position exists
    b.submit(buy("e1", 1.0))
    dup = b.submit(buy("e2", 1.0))                 # second entry while the first is pending
    assert dup.state is OrderState.REJECTED and "already open" in dup.reason
    b.on_bar(bar(0, 100.0, 100.5, 99.5, 100.2))
    again = b.submit(buy("e3", 1.0, at=T0 + H))    # second buy while holding
    assert again.state is OrderState.REJECTED and "already open" in again.reason
    assert b.submit(sell("s1", 1.0, T0 + H)) == rej
    too_much = b.submit(sell("s2", 1.5, T0 + H))
    assert too_much.state is OrderState.REJECTED and "exceeds" in too_much.reason
    assert b.submit(sell("s3", 1.0, T0 + H)).state is OrderState.SUBMITTED
    second_exit = b.submit(sell("s4", 1.0, T0 + H))
    assert second_exit.state is OrderState.REJECTED and "pending" in second_exit.reason


def test_invalid_orders_rejected():
    b = broker()
    assert b.submit(buy("q0", 0.0)).state is OrderState.REJECTED
    assert b.submit(buy("qn", float("nan"))).state is OrderState.REJECTED
    st = b.submit(Order("st", AGENT, SYM, Side.BUY, 1.0, OrderType.STOP, stop_price=90.0, created_at=T0))
    assert st.state is OrderState.REJECTED and "unsupported" in st.reason


def test_insufficient_cash_rejected_with_reason():
    b = broker(cash=1_000.0)
    assert b.submit(buy("e1", 20.0)).state is OrderState.SUBMITTED     # price unknown until the fill
    rep = b.on_bar(bar(0, 100.0, 100.5, 99.5, 100.2))
    # needs 20 * 100.05 = 2001 + fee 2.001 = 2003.001 > 1000
    assert rep.fills == [] and b.positions() == []
    (upd,) = rep.updates
    assert upd.state is OrderState.REJECTED and "insufficient cash" in upd.reason
    assert b.get("e1") == upd
    assert b.cash == 1_000.0 and b.fees_paid == 0.0 and b.open_orders() == []
    # exactly affordable: 9 * 100.05 = 900.45 + 0.90045 = 901.35045 <= 1000
    b.submit(buy("e2", 9.0, at=T0 + H))
    assert len(b.on_bar(bar(1, 100.0, 100.5, 99.5, 100.2)).fills) == 1
    assert b.cash == approx(1_000.0 - 901.35045)


# ------------------------------------------------------------------------------ restore

def _bars(n: int = 300, seed: int = 3) -> list[Bar]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.006, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.006, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.006, n))
    return [Bar(SYM, T0 + i * H, float(open_[i]), float(high[i]), float(low[i]), float(close[i]), 1.0)
            for i in range(n)]


BARS = _bars()


def _drive(b: PaperSpotBroker, start: int, stop: int, brackets: dict[str, Bracket]) -> list:
    """Agent-like loop: process a bar, then decide at its close (orders fill on the next bar)."""
    trades = []
    for i in range(start, stop):
        rep = b.on_bar(BARS[i])
        trades.extend(rep.trades)
        t = BARS[i].ts + H
        pos = b.positions()
        if not pos and not b.open_orders() and i % 5 == 0:
            cid = f"e{i}"
            br = Bracket(stop_distance=1.2 + (i % 4) * 0.3, take_profit_distance=2.5,
                         trail_pct=0.008 if i % 2 else 0.0, max_hold_s=(10 * 3600 if i % 3 == 0 else 0.0))
            brackets[cid] = br
            b.submit(Order(cid, AGENT, SYM, Side.BUY, 20.0 + (i % 3) * 5, created_at=t), br)
        elif pos and not b.open_orders() and i % 7 == 0:
            b.submit(Order(exit_order_id(pos[0].entry_order_id), AGENT, SYM, Side.SELL, pos[0].qty,
                           purpose="exit", reason="signal", created_at=t))
    return trades


def test_restore_then_continue_equals_uninterrupted_run():
    brackets: dict[str, Bracket] = {}
    full = broker()
    ref = _drive(full, 0, len(BARS), brackets)
    assert len(ref) >= 10
    assert {"stop_loss", "take_profit", "signal"} <= {t.exit_reason for t in ref}

    saw_pending = saw_trailing_position = 0
    for cut in range(15, len(BARS) - 5, 9):
        first = broker()
        before = _drive(first, 0, cut, brackets)
        # the snapshot the DB holds
        positions = first.positions()
        pending = [(o, brackets.get(o.client_order_id)) for o in first.open_orders()]
        snap = (first.cash, first.realized_pnl, first.fees_paid, dict(first.last_price))
        saw_pending += bool(pending)
        saw_trailing_position += any(p.trail_pct > 0 and p.best_price != p.entry_price for p in positions)

        second = broker(cash=snap[0])
        second.restore(positions, pending, snap[1], snap[2], snap[3])
        assert second.equity() == first.equity()
        after = _drive(second, cut, len(BARS), brackets)

        assert before + after == ref, cut
        assert second.cash == full.cash
        assert second.realized_pnl == full.realized_pnl
        assert second.fees_paid == full.fees_paid
        assert second.positions() == full.positions()
        assert second.equity() == full.equity()
    assert saw_pending and saw_trailing_position          # the cuts did interrupt live state


# ------------------------------------------------------------------------------ check_exit

def position(side: PositionSide, stop: float, tp: float, trail: float = 0.0, best: float = 100.0,
             max_hold_s: float = 0.0) -> Position:
    return Position(agent=AGENT, symbol=SYM, side=side, qty=1.0, entry_price=100.0, opened_at=T0, entry_fee=0.1,
                    stop_loss=stop, take_profit=tp, trail_pct=trail, best_price=best, max_hold_s=max_hold_s,
                    entry_order_id="e1")


CLOSE_1H = T0 + H
SHORT = position(PositionSide.SHORT, stop=105.0, tp=90.0)
LONG = position(PositionSide.LONG, stop=95.0, tp=110.0)


@pytest.mark.parametrize("ohlc, expected", [
    ((100.0, 104.0, 95.0, 101.0), None),                              # inside both levels
    ((100.0, 106.0, 97.0, 104.0), ExitHit("stop_loss", 105.0)),       # high crosses the stop above
    ((99.0, 103.0, 89.0, 91.0), ExitHit("take_profit", 90.0)),        # low crosses the target below
    ((100.0, 106.0, 89.0, 95.0), ExitHit("stop_loss", 105.0)),        # both: the worse one (stop) first
    ((107.0, 108.0, 101.0, 102.0), ExitHit("stop_loss", 107.0)),      # gap up through the stop: the open
    ((105.0, 105.5, 101.0, 102.0), ExitHit("stop_loss", 105.0)),      # opens exactly at the stop
    ((88.0, 92.0, 85.0, 91.0), ExitHit("take_profit", 88.0)),         # gap down through the target: the open
])
def test_check_exit_short(ohlc, expected):
    assert check_exit(SHORT, *ohlc, CLOSE_1H) == expected


@pytest.mark.parametrize("ohlc, expected", [
    ((100.0, 109.0, 96.0, 101.0), None),
    ((100.0, 101.0, 94.0, 96.0), ExitHit("stop_loss", 95.0)),
    ((101.0, 111.0, 99.0, 110.5), ExitHit("take_profit", 110.0)),
    ((100.0, 111.0, 94.0, 100.0), ExitHit("stop_loss", 95.0)),        # both: stop first
    ((93.0, 96.0, 92.0, 95.5), ExitHit("stop_loss", 93.0)),           # gap down
    ((112.0, 113.0, 111.0, 112.5), ExitHit("take_profit", 112.0)),    # gap up
])
def test_check_exit_long(ohlc, expected):
    assert check_exit(LONG, *ohlc, CLOSE_1H) == expected


def test_short_trailing_stop_uses_best_price_before_the_bar():
    # best (lowest) 95, trail 3% -> 95 * 1.03 = 97.85, tighter than the hard stop 105
    p = position(PositionSide.SHORT, stop=105.0, tp=0.0, trail=0.03, best=95.0)
    assert protective_stop(p) == (approx(97.85), "trailing_stop")
    hit = check_exit(p, 97.0, 98.0, 96.0, 97.5, CLOSE_1H)
    assert hit.reason == "trailing_stop" and hit.price == approx(97.85)
    # a bar making a new low 90 with high 97 survives (the new low only counts from the next bar)
    assert check_exit(p, 96.0, 97.0, 90.0, 91.0, CLOSE_1H) is None
    p2 = advance(p, 97.0, 90.0)
    assert p2.best_price == 90.0                                   # min(best, low) for a short
    assert protective_stop(p2) == (approx(92.7), "trailing_stop")  # 90 * 1.03
    assert advance(p2, 99.0, 93.0) is p2                           # no new low: unchanged
    # a trail looser than the hard stop leaves the hard stop active: 100 * 1.06 = 106 > 105
    assert protective_stop(position(PositionSide.SHORT, 105.0, 0.0, trail=0.06)) == (105.0, "stop_loss")


def test_time_stop_long_and_short():
    for side in (PositionSide.LONG, PositionSide.SHORT):
        p = position(side, stop=105.0 if side is PositionSide.SHORT else 95.0, tp=0.0, max_hold_s=7200)
        assert check_exit(p, 100.0, 101.0, 99.0, 100.7, T0 + H) is None
        assert check_exit(p, 100.0, 101.0, 99.0, 100.7, T0 + 2 * H) == ExitHit("time_stop", 100.7)
    # a stop inside the last bar still wins over the time stop
    p = position(PositionSide.SHORT, stop=105.0, tp=0.0, max_hold_s=7200)
    assert check_exit(p, 100.0, 106.0, 99.0, 100.7, T0 + 2 * H) == ExitHit("stop_loss", 105.0)


def test_stop_loss_zero_means_no_hard_stop_for_both_sides():
    # stop_loss 0.0 is what the broker writes for a bracket without a stop: it must not fire.
    short = position(PositionSide.SHORT, stop=0.0, tp=0.0)
    assert check_exit(short, 100.0, 150.0, 95.0, 120.0, CLOSE_1H) is None
    long = position(PositionSide.LONG, stop=0.0, tp=0.0)
    assert check_exit(long, 100.0, 101.0, 1.0, 50.0, CLOSE_1H) is None
    # with only a trailing stop, the trail is the stop
    short_trail = replace(short, trail_pct=0.05)
    assert check_exit(short_trail, 100.0, 106.0, 99.0, 101.0, CLOSE_1H) == ExitHit("trailing_stop", 105.0)
    long_trail = replace(long, trail_pct=0.05)
    assert check_exit(long_trail, 100.0, 101.0, 94.0, 99.0, CLOSE_1H) == ExitHit("trailing_stop", 95.0)


def test_check_exit_without_a_trailing_stop_uses_protective_stops_level():
    """check_exit's shortcut for a position without a trailing stop gives what protective_stop's level
    gives, for longs and shorts, with and without a hard stop, over random bars."""
    import random

    def reference(p, o, h, l, c):
        stop, why = protective_stop(p)
        long = p.side is PositionSide.LONG
        if (o <= stop) if long else (o >= stop):
            return ExitHit(why, o)
        if (l <= stop) if long else (h >= stop):
            return ExitHit(why, stop)
        return None

    rng = random.Random(3)
    t0 = datetime(2022, 1, 1, tzinfo=timezone.utc)
    hits = 0
    for _ in range(3000):
        side = rng.choice([PositionSide.LONG, PositionSide.SHORT])
        stop = rng.choice([0.0, rng.uniform(80, 120)])
        p = Position(agent="hybrid", symbol="BTC/USD", side=side, qty=1.0, entry_price=100.0, opened_at=t0,
                     entry_fee=0.0, stop_loss=stop, take_profit=0.0, trail_pct=0.0, best_price=100.0,
                     max_hold_s=0.0, entry_order_id="e1")
        o, c = rng.uniform(70, 130), rng.uniform(70, 130)
        h, l = max(o, c) + rng.uniform(0, 10), min(o, c) - rng.uniform(0, 10)
        got = check_exit(p, o, h, l, c, t0 + timedelta(hours=1))
        assert got == reference(p, o, h, l, c)
        hits += got is not None
    assert 300 < hits < 2700


# --- the order of the levels a bar reaches: its open first --------------------------------------------------------

def _futures_broker():
    from tracer.execution.paper_futures import PaperFuturesBroker
    # fee 5 bps, no slippage, MMR 0.4%, funding off, max leverage 20, guard 0.5, no volatility stop
    return PaperFuturesBroker("futures", 10_000.0, 5.0, 0.0, 0.004, 0.0, 20.0, 0.5, 0.0, interval=H)


@pytest.mark.parametrize("futures", [False, True])
def test_a_target_reached_at_the_open_is_not_replaced_by_a_stop_later_in_the_bar(futures):
    """The open is the bar's first trade: a bar that opens beyond the target takes the profit there, though it
    falls through the stop later; reached within the bar, both give the stop (the worse is assumed)."""
    b = _futures_broker() if futures else PaperSpotBroker("hybrid", 10_000.0, 10.0, 0.0, interval=H)
    agent = "futures" if futures else "hybrid"
    br = Bracket(stop_distance=5.0, take_profit_distance=5.0, trail_pct=0.0, max_hold_s=0.0)
    b.submit(Order("e1", agent, "BTC/USD", Side.BUY, 1.0, leverage=5.0, purpose="entry", created_at=T0), br)
    b.on_bar(Bar("BTC/USD", T0, 100.0, 101.0, 99.0, 104.0, 1.0))          # stop 95, target 105
    (t,) = b.on_bar(Bar("BTC/USD", T0 + H, 106.0, 106.5, 94.0, 95.5, 1.0)).trades
    assert (t.exit_reason, t.exit_price) == ("take_profit", 106.0)
    b.submit(Order("e2", agent, "BTC/USD", Side.BUY, 1.0, leverage=5.0, purpose="entry", created_at=T0 + H), br)
    b.on_bar(Bar("BTC/USD", T0 + 2 * H, 100.0, 101.0, 99.0, 104.0, 1.0))
    (t,) = b.on_bar(Bar("BTC/USD", T0 + 3 * H, 104.0, 106.5, 94.0, 95.5, 1.0)).trades
    assert (t.exit_reason, t.exit_price) == ("stop_loss", 95.0)


def test_a_shorts_target_that_no_price_can_reach_is_no_target():
    """A short's take-profit a wide ATR multiple below a cheap coin's price would be a negative price: no target (a
    venue refuses a trigger price that is not positive), not a level shown as -410."""
    from tracer.execution.broker import target_level
    assert target_level(100.0, 1, 30.0) == 130.0 and target_level(100.0, -1, 30.0) == 70.0
    assert target_level(100.0, -1, 100.0) == 0.0 and target_level(100.0, -1, 510.0) == 0.0
    assert target_level(100.0, 1, 0.0) == 0.0
