"""USD-M futures: liquidation price, funding, the paper futures broker (P&L, exits, liquidation,
reduce-only, restore), leverage choice and the futures policy's limits (hypothesis).

Every number is hand-computed in the comments. Unless a test says otherwise the broker has a
10 000 wallet, a 10 bps taker fee, no slippage, MMR 0.4 %, no funding, max leverage 20, guard 0.99
and no volatility stop.
"""
from __future__ import annotations

import csv
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tracer.agents.futures import FuturesPolicy, futures_limits
from tracer.config import load_settings
from tracer.execution.broker import Bracket, exit_order_id
from tracer.execution.margin import (FUNDING_HOURS, funding_payment, funding_times, initial_margin,
                                     liquidation_price, stop_inside_liquidation, unrealized_pnl)
from tracer.execution.paper_futures import PaperFuturesBroker
from tracer.models import (Action, Bar, Order, OrderState, OrderType, Position, PositionSide, Regime, Side,
                           Signal)
from tracer.risk.leverage import choose_leverage, risk_notional
from tracer.risk.limits import Book

H = timedelta(hours=1)
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)          # a Monday, 00:00 UTC
SYM = "BTC/USD"
AGENT = "futures"
DATA = Path(__file__).resolve().parents[2] / "tracer" / "data" / "bundled" / "candles_1h_BTCUSDT.csv"


def approx(x: float):
    return pytest.approx(x, rel=1e-12, abs=1e-9)


def fbroker(cash: float = 10_000.0, fee_bps: float = 10.0, slip_bps: float = 0.0, mmr: float = 0.004,
            funding: float = 0.0, max_lev: float = 20.0, guard: float = 0.99, vol_mult: float = 0.0
            ) -> PaperFuturesBroker:
    return PaperFuturesBroker(AGENT, cash, fee_bps, slip_bps, mmr, funding, max_lev, guard, vol_mult, interval=H)


def bar(i: int, o: float, h: float, l: float, c: float, symbol: str = SYM) -> Bar:
    """The bar opening at T0 + i hours (it closes at T0 + (i+1) hours)."""
    return Bar(symbol, T0 + i * H, o, h, l, c, 1.0)


def flat(i: int, px: float, symbol: str = SYM) -> Bar:
    return bar(i, px, px, px, px, symbol)


def entry(cid: str, side: Side, qty: float, lev: float, i: int = 0, symbol: str = SYM) -> Order:
    return Order(cid, AGENT, symbol, side, qty, leverage=lev, created_at=T0 + i * H)


def exit_order(cid: str, side: Side, qty: float, i: int, lev: float = 1.0) -> Order:
    return Order(cid, AGENT, SYM, side, qty, reduce_only=True, leverage=lev, purpose="exit", reason="signal",
                 created_at=T0 + i * H)


def br(stop: float, tp: float = 0.0, trail: float = 0.0, hold_h: float = 0.0, atr: float = 0.0) -> Bracket:
    return Bracket(stop_distance=stop, take_profit_distance=tp, trail_pct=trail, max_hold_s=hold_h * 3600.0,
                   entry_atr=atr)


def opened(b: PaperFuturesBroker, side: Side, qty: float, lev: float, px: float, bracket: Bracket,
           i: int = 0, cid: str = "e1") -> Position:
    """Submit an entry created at bar i's open time and fill it on a flat bar at ``px``."""
    assert b.submit(entry(cid, side, qty, lev, i), bracket).state is OrderState.SUBMITTED
    rep = b.on_bar(flat(i, px))
    assert [u.state for u in rep.updates] == [OrderState.FILLED], rep.updates
    (p,) = b.positions()
    return p


def only_trade(rep):
    assert len(rep.trades) == 1, rep.trades
    return rep.trades[0]


# ================================================================ 1. liquidation price (pure)

def test_liquidation_price_hand_examples_long_and_short():
    # entry 100, qty 1, 10x: margin = 1 * 100 / 10 = 10; MMR 0.004, cum 0
    m = initial_margin(1.0, 100.0, 10.0)
    assert m == approx(10.0)
    # long:  LP = (WB - qty*entry) / (qty*MMR - qty) = (10 - 100) / (0.004 - 1) = -90 / -0.996 = 90.36144578...
    assert liquidation_price(1, 1.0, 100.0, m, 0.004) == approx(90 / 0.996)
    assert liquidation_price(1, 1.0, 100.0, m, 0.004) == pytest.approx(90.3614457831, abs=1e-9)
    # short: LP = (WB + qty*entry) / (qty*MMR + qty) = (10 + 100) / (0.004 + 1) = 110 / 1.004 = 109.56175298...
    assert liquidation_price(-1, 1.0, 100.0, m, 0.004) == approx(110 / 1.004)
    assert liquidation_price(-1, 1.0, 100.0, m, 0.004) == pytest.approx(109.5617529880, abs=1e-9)
    # the maintenance amount (cum) of a higher bracket adds to the wallet: long (10 + 5 - 100)/(-0.996)
    assert liquidation_price(1, 1.0, 100.0, m, 0.004, cum=5.0) == approx(85 / 0.996)


def test_one_x_long_can_never_be_liquidated_but_a_one_x_short_can():
    # 1x long: margin = notional = 100: LP = (100 - 100)/(0.004 - 1) = 0 -> 0 (never)
    assert liquidation_price(1, 1.0, 100.0, initial_margin(1.0, 100.0, 1.0), 0.004) == 0.0
    # with more than the notional as margin the formula goes negative: clipped to 0
    assert liquidation_price(1, 1.0, 100.0, 150.0, 0.004) == 0.0
    # 1x short: (100 + 100) / 1.004 = 199.2031...: the price must double
    assert liquidation_price(-1, 1.0, 100.0, 100.0, 0.004) == approx(200 / 1.004)


def test_realistic_btc_liquidation_matches_the_closed_form():
    # entry 40 000, qty 0.25 (notional 10 000), 5x: margin 2 000, MMR 0.004
    qty, entry_px, lev, mmr = 0.25, 40_000.0, 5.0, 0.004
    m = initial_margin(qty, entry_px, lev)
    assert m == approx(2_000.0)
    # long:  (2000 - 10000) / (0.25*0.004 - 0.25) = -8000 / -0.249 = 32 128.5140...
    long_lp = liquidation_price(1, qty, entry_px, m, mmr)
    assert long_lp == approx(8_000 / 0.249)
    assert long_lp == pytest.approx(entry_px * (1 - 1 / lev) / (1 - mmr), rel=1e-12)   # 40000*0.8/0.996
    # short: (2000 + 10000) / (0.25*0.004 + 0.25) = 12000 / 0.251 = 47 808.7649...
    short_lp = liquidation_price(-1, qty, entry_px, m, mmr)
    assert short_lp == approx(12_000 / 0.251)
    assert short_lp == pytest.approx(entry_px * (1 + 1 / lev) / (1 + mmr), rel=1e-12)
    with pytest.raises(ValueError):
        liquidation_price(1, 0.0, entry_px, m, mmr)


@settings(max_examples=200, deadline=None)
@given(entry_px=st.floats(0.01, 1e6), qty=st.floats(1e-4, 1e4), lev=st.floats(1, 125),
       mmr=st.floats(1e-4, 0.2), side=st.sampled_from([1, -1]))
def test_liquidation_price_closed_form_and_qty_independence(entry_px, qty, lev, mmr, side):
    lp = liquidation_price(side, qty, entry_px, initial_margin(qty, entry_px, lev), mmr)
    closed = entry_px * (1 - side / lev) / (1 - side * mmr)
    assert lp == pytest.approx(max(closed, 0.0), rel=1e-9, abs=1e-9 * entry_px)
    # at the liquidation price the remaining equity equals the maintenance margin
    if lp > 0:
        equity = initial_margin(qty, entry_px, lev) + unrealized_pnl(side, qty, entry_px, lp)
        assert equity == pytest.approx(qty * lp * mmr, rel=1e-6, abs=1e-9 * qty * entry_px)


def test_stop_inside_liquidation_cases():
    # long: entry 100, LP 90: liquidation distance 10
    assert stop_inside_liquidation(1, 100.0, 95.0, 90.0, 0.5) == (True, 0.5)      # 5 / 10 = 0.5 <= 0.5
    ok, r = stop_inside_liquidation(1, 100.0, 94.0, 90.0, 0.5)                    # 6 / 10 = 0.6 > 0.5
    assert not ok and r == approx(0.6)
    ok, r = stop_inside_liquidation(1, 100.0, 89.0, 90.0, 0.99)                   # beyond LP: 11/10
    assert not ok and r == approx(1.1)
    assert stop_inside_liquidation(1, 100.0, 101.0, 90.0, 0.99)[0] is False      # stop above a long's entry
    assert stop_inside_liquidation(1, 100.0, 100.0, 90.0, 0.99)[0] is False      # no distance at all
    # 1x long (LP 0): distance to LP = entry: a stop at 60 is 40 % of it
    assert stop_inside_liquidation(1, 100.0, 60.0, 0.0, 0.5) == (True, pytest.approx(0.4))
    # short: entry 100, LP 110
    assert stop_inside_liquidation(-1, 100.0, 104.0, 110.0, 0.5) == (True, pytest.approx(0.4))
    ok, r = stop_inside_liquidation(-1, 100.0, 111.0, 110.0, 0.99)
    assert not ok and r == approx(1.1)
    assert stop_inside_liquidation(-1, 100.0, 99.0, 110.0, 0.99)[0] is False     # stop below a short's entry
    # a liquidation price on the wrong side of entry (MMR above 1/L) can never be safe
    assert stop_inside_liquidation(1, 100.0, 99.0, 101.0, 0.99) == (False, float("inf"))


def test_funding_helpers():
    # positive rate: a long pays qty * mark * rate, a short receives it
    assert funding_payment(1, 2.0, 50.0, 0.001) == approx(0.1)
    assert funding_payment(-1, 2.0, 50.0, 0.001) == approx(-0.1)
    assert funding_payment(1, 2.0, 50.0, -0.001) == approx(-0.1)
    assert FUNDING_HOURS == (0, 8, 16)
    # instants t with start < t <= end
    assert funding_times(T0, T0 + 24 * H) == [T0 + 8 * H, T0 + 16 * H, T0 + 24 * H]
    assert funding_times(T0 + 7 * H, T0 + 8 * H) == [T0 + 8 * H]
    assert funding_times(T0 + 8 * H, T0 + 9 * H) == []
    assert funding_times(T0 + 7 * H + timedelta(minutes=30), T0 + 8 * H) == [T0 + 8 * H]
    # a non-UTC start is converted: 09:00 at UTC+2 is 07:00 UTC
    tz2 = timezone(timedelta(hours=2))
    assert funding_times(datetime(2024, 1, 1, 9, tzinfo=tz2), T0 + 8 * H) == [T0 + 8 * H]


# ================================================================ 2. P&L through the broker

def test_long_pnl_by_hand_with_fee_and_slippage():
    b = fbroker(fee_bps=10.0, slip_bps=5.0)
    assert b.submit(entry("e1", Side.BUY, 2.0, 5.0, 0), br(5.0, tp=10.0)).state is OrderState.SUBMITTED
    assert b.cash == 10_000.0 and b.positions() == []
    rep = b.on_bar(bar(0, 100.0, 100.0, 100.0, 100.0))
    # fill at open * (1 + 5 bps) = 100.05; notional 200.1; margin 200.1 / 5 = 40.02; fee 200.1 * 10 bps = 0.2001
    (f,) = rep.fills
    assert (f.price, f.qty, f.side, f.ts) == (approx(100.05), 2.0, Side.BUY, T0)
    assert f.fee == approx(0.2001)
    (p,) = b.positions()
    assert p.side is PositionSide.LONG and p.entry_price == approx(100.05) and p.leverage == 5.0
    assert p.margin == approx(40.02) and p.entry_fee == approx(0.2001)
    assert p.stop_loss == approx(95.05) and p.take_profit == approx(110.05)
    # LP = 100.05 * (1 - 1/5) / (1 - 0.004) = 80.36144...
    assert p.liquidation_price == pytest.approx(100.05 * 0.8 / 0.996, rel=1e-12)
    assert b.cash == approx(10_000 - 40.02 - 0.2001)                       # 9 959.7799
    assert b.fees_paid == approx(0.2001)

    b.on_bar(bar(1, 101.0, 103.0, 100.0, 102.0))                             # no exit
    # equity = cash + margin + unrealized = 9959.7799 + 40.02 + 2 * (102 - 100.05) = 10 003.6999
    assert b.equity() == approx(9_959.7799 + 40.02 + 3.9)

    rep = b.on_bar(bar(2, 104.0, 111.0, 103.0, 110.0))                       # high 111 >= TP 110.05
    t = only_trade(rep)
    # exit at the TP moved against us: 110.05 * (1 - 5 bps) = 109.994975; fee 2 * 109.994975 * 10 bps
    assert t.exit_reason == "take_profit" and t.exit_price == approx(109.994975) and t.exit_ts == T0 + 2 * H
    exit_fee = 2 * 109.994975 * 0.001                                        # 0.21998995
    gross = 1 * (109.994975 - 100.05) * 2                                    # 19.88995
    assert t.fees == approx(0.2001 + exit_fee) and t.funding == 0.0
    assert t.pnl == approx(gross - 0.2001 - exit_fee)                        # 19.46986005
    assert t.pnl == approx(19.46986005)
    assert b.cash == approx(10_000 + t.pnl) and b.realized_pnl == approx(t.pnl)
    assert b.fees_paid == approx(t.fees) and b.positions() == [] and b.equity() == approx(b.cash)
    assert t.exit_order_id == exit_order_id("e1") and rep.exit_orders[0].reduce_only


def test_short_pnl_by_hand_with_fee_and_slippage():
    b = fbroker(fee_bps=10.0, slip_bps=5.0)
    b.submit(entry("s1", Side.SELL, 2.0, 4.0, 0), br(3.0, tp=5.0))
    b.on_bar(bar(0, 100.0, 100.0, 100.0, 100.0))
    # short fills at open * (1 - 5 bps) = 99.95; notional 199.9; margin 199.9 / 4 = 49.975; fee 0.1999
    (p,) = b.positions()
    assert p.side is PositionSide.SHORT and p.entry_price == approx(99.95)
    assert p.margin == approx(49.975) and p.entry_fee == approx(0.1999)
    assert p.stop_loss == approx(102.95) and p.take_profit == approx(94.95)
    assert p.liquidation_price == pytest.approx(99.95 * 1.25 / 1.004, rel=1e-12)    # 124.4397...
    assert b.cash == approx(10_000 - 49.975 - 0.1999)
    b.on_bar(bar(1, 100.0, 101.0, 98.0, 98.5))
    # a short gains when the price falls: equity = cash + margin + (99.95 - 98.5) * 2
    assert b.equity() == approx(10_000 - 0.1999 + 2.9)

    rep = b.on_bar(bar(2, 100.0, 103.0, 99.0, 102.5))                        # high 103 >= stop 102.95
    t = only_trade(rep)
    # buy back at 102.95 * (1 + 5 bps) = 103.001475; fee 2 * 103.001475 * 10 bps = 0.20600295
    assert t.exit_reason == "stop_loss" and t.exit_price == approx(103.001475)
    gross = -1 * (103.001475 - 99.95) * 2                                    # -6.10295
    assert t.pnl == approx(gross - 0.1999 - 0.20600295)                      # -6.50885295
    assert t.pnl == approx(-6.50885295)
    assert t.side is PositionSide.SHORT and t.leverage == 4.0
    assert b.cash == approx(10_000 + t.pnl) and b.realized_pnl == approx(t.pnl)
    assert rep.exit_orders[0].side is Side.BUY and rep.exit_orders[0].reduce_only


def test_signal_exit_closes_at_next_open_against_us():
    b = fbroker(slip_bps=5.0)
    opened(b, Side.SELL, 1.0, 2.0, 100.0, br(10.0))                          # short at 99.95
    assert b.submit(exit_order("x1", Side.BUY, 1.0, 1)).state is OrderState.SUBMITTED
    rep = b.on_bar(bar(1, 90.0, 91.0, 89.0, 90.5))
    t = only_trade(rep)
    # buy back at 90 * 1.0005 = 90.045; gross (99.95 - 90.045) = 9.905; fees 0.09995 + 0.090045
    assert t.exit_reason == "signal" and t.exit_price == approx(90.045)
    assert t.pnl == approx(9.905 - 0.09995 - 0.090045)
    assert b.cash == approx(10_000 + t.pnl) and b.get("x1").state is OrderState.FILLED


# ================================================================ 3. funding

def _hold_long(rate: float, side: Side = Side.BUY, open_at: int = 5):
    """qty 1, 10x, entry 100 (margin 10), stop 5 away, held on flat bars at 100 except chosen closes."""
    b = fbroker(funding=rate)
    p = opened(b, side, 1.0, 10.0, 100.0, br(5.0), i=open_at)
    return b, p


def test_funding_only_at_00_08_16_utc_with_mark_at_bar_close():
    b, p = _hold_long(0.001)
    closes = {7: 101.0, 15: 99.0, 23: 100.0}                  # the bars closing at 08:00, 16:00, 00:00
    paid = []
    for i in range(6, 24):                                    # bars 06:00 .. 23:00 (close 07:00 .. 00:00)
        c = closes.get(i, 100.0)
        b.on_bar(bar(i, 100.0, max(100.0, c), min(100.0, c), c))
        paid.append(b.positions()[0].funding_paid)
    # bar i's close is T0 + (i+1) h: funding happens at the bars i = 7, 15, 23 only
    steps = np.diff([0.0] + paid)
    charged = {i + 6: s for i, s in enumerate(steps) if s != 0}
    # long pays qty * mark * rate: 1 * 101 * 0.001 = 0.101; 1 * 99 * 0.001 = 0.099; 1 * 100 * 0.001 = 0.1
    assert list(charged) == [7, 15, 23]
    assert [charged[7], charged[15], charged[23]] == [approx(0.101), approx(0.099), approx(0.1)]
    pos = b.positions()[0]
    assert pos.funding_paid == approx(0.3) and pos.margin == approx(10 - 0.3)
    # funding comes out of the isolated margin, not the wallet: the wallet still 10000 - 10 - 0.1 (fee)
    assert b.cash == approx(10_000 - 10 - 0.1)
    assert b.equity() == approx(10_000 - 0.1 - 0.3)
    # the liquidation price moved with the margin: (9.7 - 100) / (0.004 - 1) = 90.6626...
    assert pos.liquidation_price == approx(liquidation_price(1, 1.0, 100.0, 9.7, 0.004))
    assert pos.liquidation_price == approx(90.3 / 0.996)

    b.submit(exit_order("x1", Side.SELL, 1.0, 24))
    t = only_trade(b.on_bar(flat(24, 100.0)))
    # pnl = gross 0 - fees (0.1 + 0.1) - funding 0.3 = -0.5; trade.funding = -funding_paid
    assert t.funding == approx(-0.3) and t.fees == approx(0.2) and t.pnl == approx(-0.5)
    assert b.cash == approx(10_000 - 0.5) and b.realized_pnl == approx(-0.5)


@pytest.mark.parametrize("side,rate,sign", [(Side.BUY, 0.001, 1), (Side.SELL, 0.001, -1),
                                            (Side.BUY, -0.001, -1), (Side.SELL, -0.001, 1)])
def test_funding_sign(side, rate, sign):
    """Positive rate: long pays, short receives; negative rate: the reverse. ``sign`` = +1 pays."""
    b, p = _hold_long(rate, side, open_at=7)                  # opened at 07:00, the bar closes at 08:00
    pos = b.positions()[0]
    assert pos.funding_paid == approx(sign * 0.1)            # 1 * 100 * 0.001, charged on the opening bar
    assert pos.margin == approx(10 - sign * 0.1)
    s = 1 if side is Side.BUY else -1
    assert pos.liquidation_price == approx(liquidation_price(s, 1.0, 100.0, 10 - sign * 0.1, 0.004))
    # paying moves LP towards the price, receiving moves it away
    base = liquidation_price(s, 1.0, 100.0, 10.0, 0.004)
    assert s * (pos.liquidation_price - base) * sign > 0
    b.submit(exit_order("x1", Side.SELL if s > 0 else Side.BUY, 1.0, 8))
    t = only_trade(b.on_bar(flat(8, 100.0)))
    assert t.funding == approx(-sign * 0.1)
    assert t.pnl == approx(-0.2 - sign * 0.1)                 # fees 0.1 + 0.1, funding
    assert b.cash == approx(10_000 + t.pnl)


def test_no_funding_for_a_position_opened_after_the_funding_time():
    # order created 07:30 fills at the open of the 08:00 bar: the 08:00 funding is not its
    b = fbroker(funding=0.001)
    b.submit(Order("e1", AGENT, SYM, Side.BUY, 1.0, leverage=10.0, created_at=T0 + 7.5 * H), br(5.0))
    b.on_bar(flat(7, 100.0))
    assert b.positions() == []
    b.on_bar(flat(8, 100.0))
    assert b.positions()[0].opened_at == T0 + 8 * H
    for i in range(9, 15):                                    # up to the bar closing at 15:00
        b.on_bar(flat(i, 100.0))
    assert b.positions()[0].funding_paid == 0.0
    b.on_bar(flat(15, 100.0))                                 # closes at 16:00: charged once
    assert b.positions()[0].funding_paid == approx(0.1)


def test_no_funding_when_the_position_is_stopped_out_before_the_funding_time():
    b = fbroker(funding=0.001)
    opened(b, Side.BUY, 1.0, 10.0, 100.0, br(5.0), i=14)
    t = only_trade(b.on_bar(bar(15, 100.0, 100.0, 94.0, 96.0)))   # stopped at 95 inside the 15:00 bar
    assert t.exit_reason == "stop_loss" and t.funding == 0.0
    assert t.pnl == approx(-5.0 - 0.1 - 0.095)                # gross -5, fees 0.1 + 95 * 10 bps


def test_funding_moves_the_liquidation_price_into_a_liquidation():
    # 10x long at 100 (margin 10, LP 90.3614), stop 92 (ratio 8 / 9.6386 = 0.83 <= 0.99); funding 5 % per 8 h
    b = fbroker(funding=0.05)
    opened(b, Side.BUY, 1.0, 10.0, 100.0, br(8.0), i=7)
    pos = b.positions()[0]
    # 08:00 funding: 1 * 100 * 0.05 = 5 -> margin 5 -> LP = (5 - 100) / (0.004 - 1) = 95.3815...
    assert pos.margin == approx(5.0) and pos.liquidation_price == approx(95 / 0.996)
    # a bar with low 95 does not reach the stop (92) but reaches the new LP
    t = only_trade(b.on_bar(bar(8, 99.0, 99.0, 95.0, 96.0)))
    assert t.exit_reason == "liquidation" and t.exit_price == approx(95 / 0.996)
    # the whole initial margin (10) and the entry fee (0.1) are lost; 5 of it went as funding
    assert t.pnl == approx(-10.1) and t.funding == approx(-5.0)
    assert b.cash == approx(10_000 - 10.1) and b.realized_pnl == approx(-10.1)


# ================================================================ 4. liquidation and the worst exit

def test_long_liquidation_loses_the_initial_margin_and_entry_fee():
    b = fbroker()
    p = opened(b, Side.BUY, 1.0, 10.0, 100.0, br(9.0))       # stop 91, LP 90.3614 (ratio 9/9.6386 = 0.934)
    assert p.liquidation_price == approx(90 / 0.996)
    assert b.cash == approx(10_000 - 10 - 0.1)
    rep = b.on_bar(bar(1, 99.0, 99.5, 90.0, 92.0))            # low 90 reaches both the stop and LP
    t = only_trade(rep)
    assert t.exit_reason == "liquidation" and t.exit_price == approx(90 / 0.996)
    assert t.pnl == approx(-10.0 - 0.1)                        # -(initial margin) - entry fee
    assert t.fees == approx(0.1)                               # no exit fee on a liquidation
    assert b.cash == approx(10_000 - 10.1) and b.positions() == []
    assert rep.exit_orders[0].reason == "liquidation"


def test_low_exactly_at_the_liquidation_price_liquidates():
    b = fbroker()
    opened(b, Side.BUY, 1.0, 10.0, 100.0, br(9.0))
    lp = b.positions()[0].liquidation_price
    assert only_trade(b.on_bar(bar(1, 99.0, 99.0, lp, 95.0))).exit_reason == "liquidation"


def test_short_liquidation():
    b = fbroker()
    p = opened(b, Side.SELL, 1.0, 10.0, 100.0, br(9.0))      # stop 109, LP 109.5618
    assert p.liquidation_price == approx(110 / 1.004)
    t = only_trade(b.on_bar(bar(1, 101.0, 110.0, 100.0, 108.0)))
    assert t.exit_reason == "liquidation" and t.exit_price == approx(110 / 1.004)
    assert t.pnl == approx(-10.1) and b.cash == approx(10_000 - 10.1)


def test_gap_through_stop_and_liquidation_costs_only_the_margin():
    """A bar opening beyond the liquidation price (and the stop) liquidates: isolated margin never loses
    more than the margin (a stop filled at the gapped open 80 would have lost 20.18)."""
    b = fbroker()
    opened(b, Side.BUY, 1.0, 10.0, 100.0, br(9.0))
    t = only_trade(b.on_bar(bar(1, 80.0, 81.0, 79.0, 80.0)))
    assert t.exit_reason == "liquidation" and t.pnl == approx(-10.1)
    assert b.cash == approx(10_000 - 10.1)
    b = fbroker()
    opened(b, Side.SELL, 1.0, 10.0, 100.0, br(9.0))
    t = only_trade(b.on_bar(bar(1, 120.0, 121.0, 119.0, 120.0)))
    assert t.exit_reason == "liquidation" and t.pnl == approx(-10.1)


def test_gap_through_the_stop_only_fills_at_the_open():
    b = fbroker()
    opened(b, Side.BUY, 1.0, 5.0, 100.0, br(5.0))            # stop 95, LP 80.32
    t = only_trade(b.on_bar(bar(1, 93.0, 94.0, 92.0, 93.5)))
    # open 93 below the stop: filled at 93, pnl = -7 - 0.1 - 0.093
    assert t.exit_reason == "stop_loss" and t.exit_price == approx(93.0)
    assert t.pnl == approx(-7.0 - 0.1 - 0.093)
    b = fbroker()
    opened(b, Side.SELL, 1.0, 5.0, 100.0, br(5.0))           # stop 105
    t = only_trade(b.on_bar(bar(1, 107.0, 108.0, 106.0, 107.0)))
    assert t.exit_reason == "stop_loss" and t.exit_price == approx(107.0)


def test_gap_through_the_stop_then_down_to_liquidation_liquidates():
    b = fbroker()
    opened(b, Side.BUY, 1.0, 10.0, 100.0, br(9.0))           # stop 91, LP 90.36
    t = only_trade(b.on_bar(bar(1, 90.8, 90.9, 90.0, 90.5)))  # open between LP and stop, low below LP
    assert t.exit_reason == "liquidation" and t.pnl == approx(-10.1)


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_stop_and_take_profit_in_one_bar_the_stop_wins(side):
    s = 1 if side is Side.BUY else -1
    b = fbroker()
    opened(b, side, 1.0, 2.0, 100.0, br(5.0, tp=5.0))         # stop 100 - 5s, TP 100 + 5s
    t = only_trade(b.on_bar(bar(1, 100.0, 106.0, 94.0, 100.0)))
    assert t.exit_reason == "stop_loss" and t.exit_price == approx(100 - 5 * s)


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_time_stop_versus_stop_the_worse_price_wins(side):
    s = 1 if side is Side.BUY else -1
    # the bar beyond the stop (long: low 92 <= stop 95; short: high 108 >= stop 105) that also ends the hold
    hi, lo = (100.0, 92.0) if s > 0 else (108.0, 100.0)
    # close further away than the stop (93 / 107): the time stop at the close is the worse price
    b = fbroker()
    opened(b, side, 1.0, 2.0, 100.0, br(5.0, hold_h=2))       # stop 100 - 5s; time stop at T0 + 2h
    t = only_trade(b.on_bar(bar(1, 100.0, hi, lo, 100 - 7 * s)))   # closes at T0 + 2h
    assert t.exit_reason == "time_stop" and t.exit_price == approx(100 - 7 * s) and t.exit_ts == T0 + 2 * H
    assert t.pnl == approx(-7.0 - 0.1 - (100 - 7 * s) * 1e-3)
    # close back inside the stop (98 / 102): the stop level is the worse price
    b = fbroker()
    opened(b, side, 1.0, 2.0, 100.0, br(5.0, hold_h=2))
    t = only_trade(b.on_bar(bar(1, 100.0, hi, lo, 100 - 2 * s)))
    assert t.exit_reason == "stop_loss" and t.exit_price == approx(100 - 5 * s) and t.exit_ts == T0 + H
    # a quiet bar at the end of the hold: a plain time stop at the close
    b = fbroker()
    opened(b, side, 1.0, 2.0, 100.0, br(5.0, hold_h=2))
    t = only_trade(b.on_bar(flat(1, 101.0)))
    assert t.exit_reason == "time_stop" and t.exit_price == approx(101.0)


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_close_beyond_the_liquidation_price_with_a_time_stop_liquidates(side):
    s = 1 if side is Side.BUY else -1
    b = fbroker()
    opened(b, side, 1.0, 10.0, 100.0, br(8.0, hold_h=2))      # LP 90.36 / 109.56
    lo, hi = (85.0, 100.0) if s > 0 else (100.0, 115.0)
    t = only_trade(b.on_bar(bar(1, 100.0, hi, lo, 100 - 12 * s)))
    assert t.exit_reason == "liquidation" and t.pnl == approx(-10.1)


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_volatility_stop_versus_take_profit_the_close_is_worse(side):
    s = 1 if side is Side.BUY else -1
    b = fbroker(vol_mult=3.0)
    opened(b, side, 1.0, 2.0, 100.0, br(20.0, tp=5.0, atr=2.0))     # TP 100 + 5s; vol stop: range > 6
    # range 8 > 6 and the bar reaches the TP, but the close (101 for a long / 99 short) is worse than it
    lo, hi = (98.0, 106.0) if s > 0 else (94.0, 102.0)
    t = only_trade(b.on_bar(bar(1, 100.0, hi, lo, 100 + s)))
    assert t.exit_reason == "volatility_stop" and t.exit_price == approx(100 + s) and t.exit_ts == T0 + 2 * H
    # same bar closing beyond the TP: the TP level is now the worse price
    b = fbroker(vol_mult=3.0)
    opened(b, side, 1.0, 2.0, 100.0, br(20.0, tp=5.0, atr=2.0))
    t = only_trade(b.on_bar(bar(1, 100.0, hi, lo, 100 + 5.5 * s)))
    assert t.exit_reason == "take_profit" and t.exit_price == approx(100 + 5 * s)


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_trailing_stop_versus_volatility_stop(side):
    s = 1 if side is Side.BUY else -1
    b = fbroker(vol_mult=3.0)
    opened(b, side, 1.0, 2.0, 100.0, br(20.0, trail=0.05, atr=2.0))
    # trail level from best 100: 95 (long) / 105 (short); range 7 > 6; close 96 / 104 beats the trail level
    lo, hi = (94.0, 101.0) if s > 0 else (99.0, 106.0)
    t = only_trade(b.on_bar(bar(1, 100.0, hi, lo, 100 - 4 * s)))
    assert t.exit_reason == "trailing_stop" and t.exit_price == approx(100 - 5 * s)


# ================================================================ 5. each exit on a crafted bar

@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_stop_loss(side):
    s = 1 if side is Side.BUY else -1
    b = fbroker()
    opened(b, side, 1.0, 3.0, 100.0, br(4.0))                 # stop 96 / 104
    b.on_bar(bar(1, 100.0, 100 + 3.9 * (s < 0), 100 - 3.9 * (s > 0), 100.0))    # 3.9 away: no exit
    assert b.positions()
    t = only_trade(b.on_bar(bar(2, 100.0, 100 + 4 * (s < 0), 100 - 4 * (s > 0), 100.0)))
    assert t.exit_reason == "stop_loss" and t.exit_price == approx(100 - 4 * s)
    assert t.pnl == approx(-4.0 - 0.1 - (100 - 4 * s) * 1e-3)


def test_trailing_stop_long():
    b = fbroker()
    opened(b, Side.BUY, 1.0, 2.0, 100.0, br(20.0, trail=0.05))   # hard stop 80, LP 50.2; trail from best
    b.on_bar(bar(1, 101.0, 120.0, 115.0, 118.0))               # trail level before the bar: 95; best -> 120
    p = b.positions()[0]
    assert p.best_price == 120.0
    t = only_trade(b.on_bar(bar(2, 118.0, 119.0, 113.0, 116.0)))  # 120 * 0.95 = 114 >= low 113
    assert t.exit_reason == "trailing_stop" and t.exit_price == approx(114.0)
    assert t.pnl == approx(14.0 - 0.1 - 0.114)


def test_trailing_stop_short():
    b = fbroker()
    opened(b, Side.SELL, 1.0, 2.0, 100.0, br(20.0, trail=0.05))  # hard stop 120
    b.on_bar(bar(1, 99.0, 85.0, 80.0, 82.0))                    # best -> 80
    assert b.positions()[0].best_price == 80.0
    t = only_trade(b.on_bar(bar(2, 82.0, 84.5, 81.0, 84.0)))    # 80 * 1.05 = 84 <= high 84.5
    assert t.exit_reason == "trailing_stop" and t.exit_price == approx(84.0)
    assert t.pnl == approx(16.0 - 0.1 - 0.084)


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_take_profit(side):
    s = 1 if side is Side.BUY else -1
    b = fbroker()
    opened(b, side, 1.0, 3.0, 100.0, br(4.0, tp=6.0))        # TP 106 / 94
    t = only_trade(b.on_bar(bar(1, 100.0, 100 + 7 * (s > 0), 100 - 7 * (s < 0), 100.0)))
    assert t.exit_reason == "take_profit" and t.exit_price == approx(100 + 6 * s)
    assert t.pnl == approx(6.0 - 0.1 - (100 + 6 * s) * 1e-3)
    # a gap through the TP fills at the (better) open
    b = fbroker()
    opened(b, side, 1.0, 3.0, 100.0, br(4.0, tp=6.0))
    t = only_trade(b.on_bar(flat(1, 100 + 9 * s)))
    assert t.exit_reason == "take_profit" and t.exit_price == approx(100 + 9 * s)


def test_time_stop_after_24_hours():
    b = fbroker()
    opened(b, Side.BUY, 1.0, 2.0, 100.0, br(10.0, hold_h=24))  # opened at T0
    for i in range(1, 23):                                      # bars closing at T0+2h .. T0+23h
        assert b.on_bar(flat(i, 100.0 + i * 0.1)).trades == []
    t = only_trade(b.on_bar(bar(23, 102.0, 102.5, 101.5, 102.2)))   # closes at T0 + 24h
    assert t.exit_reason == "time_stop" and t.exit_price == approx(102.2) and t.exit_ts == T0 + 24 * H
    assert t.pnl == approx(2.2 - 0.1 - 0.1022)


def test_volatility_stop_when_the_range_exceeds_the_multiple_of_entry_atr():
    b = fbroker(vol_mult=3.0)
    opened(b, Side.SELL, 1.0, 2.0, 100.0, br(10.0, atr=2.0))
    assert b.on_bar(bar(1, 100.0, 103.0, 97.0, 99.0)).trades == []     # range 6 = 3 * 2: not above
    t = only_trade(b.on_bar(bar(2, 99.0, 102.0, 95.5, 98.0)))          # range 6.5 > 6
    assert t.exit_reason == "volatility_stop" and t.exit_price == approx(98.0) and t.exit_ts == T0 + 3 * H
    assert t.pnl == approx(2.0 - 0.1 - 0.098)
    # without an entry ATR (or with the multiple at 0) there is no volatility stop
    b = fbroker(vol_mult=3.0)
    opened(b, Side.SELL, 1.0, 2.0, 100.0, br(10.0))
    assert b.on_bar(bar(1, 100.0, 109.0, 91.0, 99.0)).trades == []


# ================================================================ 6. reduce-only and entry guards

def test_reduce_only_rejected_without_a_position_and_on_the_wrong_side_or_too_big():
    b = fbroker()
    upd = b.submit(exit_order("x0", Side.SELL, 1.0, 0))
    assert upd.state is OrderState.REJECTED and "no position" in upd.reason
    opened(b, Side.BUY, 1.0, 2.0, 100.0, br(5.0))
    upd = b.submit(exit_order("x1", Side.BUY, 1.0, 1))          # a buy would add to a long
    assert upd.state is OrderState.REJECTED and "wrong side" in upd.reason
    upd = b.submit(exit_order("x2", Side.SELL, 2.0, 1))         # would flip to a 1-unit short
    assert upd.state is OrderState.REJECTED and "exceeds" in upd.reason
    # a plain (not reduce-only) opposite order cannot flip either
    upd = b.submit(entry("e2", Side.SELL, 3.0, 2.0, 1))
    assert upd.state is OrderState.REJECTED and "already open" in upd.reason
    assert b.open_orders() == [] and len(b.positions()) == 1


def test_reduce_only_after_the_position_closed_is_canceled_and_opens_nothing():
    b = fbroker()
    opened(b, Side.BUY, 1.0, 2.0, 100.0, br(5.0))
    assert b.submit(exit_order("x1", Side.SELL, 1.0, 2)).state is OrderState.SUBMITTED   # fills at bar 2
    t = only_trade(b.on_bar(bar(1, 100.0, 100.0, 94.0, 96.0)))   # the stop closes it first
    assert t.exit_reason == "stop_loss"
    cash = b.cash
    rep = b.on_bar(flat(2, 96.0))
    assert rep.fills == [] and rep.trades == [] and b.positions() == [] and b.cash == cash
    assert b.get("x1").state is OrderState.CANCELED
    # an entry while an exit is pending is refused too (no flip through a queue)
    b2 = fbroker()
    opened(b2, Side.BUY, 1.0, 2.0, 100.0, br(5.0))
    b2.submit(exit_order("x1", Side.SELL, 1.0, 1))
    assert b2.submit(entry("e2", Side.SELL, 1.0, 2.0, 1)).state is OrderState.REJECTED


def test_leverage_outside_the_range_rejected_and_duplicates_deduped():
    b = fbroker(max_lev=20.0)
    for lev in (20.5, 0.5, float("nan")):
        upd = b.submit(entry(f"e{lev}", Side.BUY, 1.0, lev))
        assert upd.state is OrderState.REJECTED and "leverage" in upd.reason
    assert b.submit(entry("ok", Side.BUY, 1.0, 20.0), br(1.0)).state is OrderState.SUBMITTED
    assert b.submit(entry("ok", Side.BUY, 1.0, 20.0), br(1.0)).state is OrderState.SUBMITTED
    assert len(b.open_orders()) == 1
    for o in (Order("l1", AGENT, "ETH/USD", Side.BUY, 1.0, type=OrderType.LIMIT, limit_price=1.0),
              Order("q0", AGENT, "ETH/USD", Side.BUY, 0.0), Order("qn", AGENT, "ETH/USD", Side.BUY, float("inf"))):
        assert b.submit(o).state is OrderState.REJECTED


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_fill_whose_stop_is_beyond_liquidation_is_rejected(side):
    s = 1 if side is Side.BUY else -1
    # 10x at 100: LP 90.36 (long) / 109.56 (short). Stop 10 away is beyond it.
    b = fbroker(guard=0.99)
    assert b.submit(entry("e1", side, 1.0, 10.0), br(10.0)).state is OrderState.SUBMITTED
    rep = b.on_bar(flat(0, 100.0))
    (u,) = rep.updates
    assert u.state is OrderState.REJECTED and "liquidation" in u.reason
    assert b.positions() == [] and b.cash == 10_000.0 and rep.fills == []
    # inside LP but beyond the guard fraction (5 / 9.64 = 0.52 > 0.5) is rejected as well
    b = fbroker(guard=0.5)
    b.submit(entry("e1", side, 1.0, 10.0), br(5.0))
    (u,) = b.on_bar(flat(0, 100.0)).updates
    assert u.state is OrderState.REJECTED
    # 4.5 / 9.64 = 0.47 passes
    b = fbroker(guard=0.5)
    p = opened(b, side, 1.0, 10.0, 100.0, br(4.5))
    assert s * (p.stop_loss - p.liquidation_price) > 0


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_fill_whose_slippage_already_reaches_the_stop_is_rejected(side):
    # slippage 1 % on a 2x entry at 100: a long fills at 101, a stop 0.8 away (100.2) is already above the
    # market (100); a short fills at 99 with its stop at 99.8 < 100. Opening it would exit at once.
    b = fbroker(slip_bps=100.0)
    b.submit(entry("e1", side, 1.0, 2.0), br(0.8))
    (u,) = b.on_bar(flat(0, 100.0)).updates
    assert u.state is OrderState.REJECTED and "already reached" in u.reason
    assert b.positions() == [] and b.cash == 10_000.0
    # 1.2 away it is accepted: long stop 99.8 below the market, short 100.2 above it
    b = fbroker(slip_bps=100.0)
    p = opened(b, side, 1.0, 2.0, 100.0, br(1.2))
    assert p.stop_loss == approx(100 - (1 if side is Side.BUY else -1) * 0.2)


def test_entry_without_stop_or_margin_is_rejected():
    b = fbroker(cash=10.0)
    b.submit(entry("e1", Side.BUY, 1.0, 10.0), br(2.0))       # margin 10 + fee 0.1 > 10
    (u,) = b.on_bar(flat(0, 100.0)).updates
    assert u.state is OrderState.REJECTED and "insufficient margin" in u.reason
    b = fbroker()
    b.submit(entry("e1", Side.BUY, 1.0, 10.0))                 # no bracket
    (u,) = b.on_bar(flat(0, 100.0)).updates
    assert u.state is OrderState.REJECTED and "stop" in u.reason


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lev=st.integers(1, 20), stop_frac=st.floats(0.05, 0.9),
       side=st.sampled_from([Side.BUY, Side.SELL]), funding=st.sampled_from([0.0, 0.0001, -0.0005, 0.003]),
       vol=st.floats(0.002, 0.05))
def test_isolated_margin_bounds_every_loss_and_the_wallet_reconciles(seed, lev, stop_frac, side, funding, vol):
    """On random walks with gaps: no trade loses more than its initial margin plus fees, the wallet always
    equals start + closed P&L - what open positions tie up, and cash never goes negative."""
    rng = np.random.default_rng(seed)
    b = fbroker(cash=1_000.0, slip_bps=5.0, funding=funding, max_lev=20.0, guard=0.9, vol_mult=0.0)
    px, trades = 100.0, []
    for i in range(80):
        if not b.positions() and not b.open_orders():
            liq_d = abs(100.0 - liquidation_price(1 if side is Side.BUY else -1, 1.0, 100.0, 100.0 / lev, 0.004))
            b.submit(entry(f"e{i}", side, round(500.0 * lev / px, 6), float(lev), i),
                     br(stop_frac * 0.9 * liq_d * px / 100.0, trail=0.0, hold_h=30))
        o = px * float(np.exp(rng.normal(0, vol * 3 if rng.random() < 0.1 else vol / 4)))   # some gaps
        c = o * float(np.exp(rng.normal(0, vol)))
        h, l = max(o, c) * (1 + abs(rng.normal(0, vol / 2))), min(o, c) * (1 - abs(rng.normal(0, vol / 2)))
        rep = b.on_bar(bar(i, o, h, l, c))
        for t in rep.trades:
            m0 = t.qty * t.entry_price / t.leverage
            assert t.pnl >= -(m0 + t.fees) - 1e-9, t
            if t.exit_reason == "liquidation":
                assert t.pnl == pytest.approx(-m0 - t.fees, rel=1e-9)
        trades += rep.trades
        tied = sum(p.margin + p.entry_fee + p.funding_paid for p in b.positions())
        assert b.cash == pytest.approx(1_000.0 + sum(t.pnl for t in trades) - tied, rel=1e-9, abs=1e-9)
        assert b.cash >= 0 and b.realized_pnl == pytest.approx(sum(t.pnl for t in trades), abs=1e-9)
        px = c


# ================================================================ 7. the policy under random settings

SYMS = ("BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD", "BNB/USD", "LINK/USD", "AVAX/USD")
LABELS = ("strong_bull", "bull", "sideways", "bear", "strong_bear")
VOLS = ("low", "normal", "high", "extreme")


def make_signal(symbol: str, ts: datetime, price: float, action: Action, quality: float, conviction: float,
                atr: float, label: str, vol: str, size_fraction: float) -> Signal:
    regime = Regime(label=label, trend_score=0.0, volatility=vol, annual_vol=0.5, volume="normal",
                    participation=1.0, confidence=0.5)
    direction = {Action.BUY: 1, Action.SELL: -1, Action.HOLD: 0}[action]
    return Signal(symbol=symbol, ts=ts, price=price, action=action, direction=direction, reason="test signal",
                  quality=quality, conviction=conviction, regime=regime, price_score=0.0, narrative=0.0,
                  divergence=0.0, divergence_trigger=0.5, volume_z=0.0, rsi=50.0, atr=atr,
                  size_fraction=size_fraction, headline_count=0, scorer_id="test")


def _num(lo, hi, typical=()):
    """A float in [lo, hi]: one of the typical values two times in three, anything in the range otherwise."""
    if not typical:
        return st.floats(lo, hi)
    return st.one_of(st.sampled_from(typical), st.sampled_from(typical), st.floats(lo, hi))


@st.composite
def futures_env(draw):
    env = {
        "TB_FUTURES_MAX_LEVERAGE": draw(_num(1, 125, (1.0, 3.0, 7.5, 10.0, 20.0, 125.0))),
        "TB_FUTURES_MAX_POSITIONS": draw(st.one_of(st.sampled_from([3, 5, 9]), st.integers(0, 6))),
        "TB_FUTURES_MAX_TRADES_PER_DAY": draw(st.one_of(st.sampled_from([4, 8, 20]), st.integers(0, 8))),
        "TB_FUTURES_RISK_PER_TRADE": draw(_num(0.0001, 0.2, (0.01, 0.05, 0.2))),
        "TB_FUTURES_MAX_NOTIONAL_USD": draw(_num(1, 1e9, (500.0, 20_000.0, 1e9))),
        "TB_FUTURES_MAX_NOTIONAL_PCT": draw(_num(0.001, 50, (0.5, 1.0, 5.0, 50.0))),
        "TB_FUTURES_DAILY_LOSS_LIMIT_PCT": draw(_num(0.001, 1, (0.2, 1.0))),
        "TB_FUTURES_VAR_LIMIT": draw(_num(0.0001, 10, (0.25, 10.0))),
        "TB_FUTURES_COUNTER_REGIME_QUALITY": draw(_num(0, 10, (0.0, 6.0))),
        "TB_FUTURES_MMR": draw(_num(0.0001, 0.5, (0.004, 0.01, 0.05))),
        "TB_FUTURES_LIQ_GUARD": draw(_num(0.01, 0.99, (0.5, 0.9, 0.99))),
        "TB_FUTURES_STOP_ATR_MULT": draw(_num(0.1, 50, (1.0, 2.0, 3.0))),
        "TB_FUTURES_TAKE_PROFIT_ATR_MULT": draw(st.floats(0.1, 100)),
        "TB_FUTURES_TRAIL_PCT": draw(st.floats(0, 0.9)),
        "TB_FUTURES_MAX_HOLD_H": draw(st.floats(0, 10000)),
        "TB_MIN_CONVICTION_SCORE": draw(st.floats(1, 10)),
        "TB_FUTURES_FEE_BPS": draw(_num(0, 500, (0.0, 4.0, 10.0))),
        "TB_SLIPPAGE_BPS": draw(_num(0, 1000, (0.0, 5.0))),
        "TB_MIN_TRADE_NOTIONAL_USD": draw(_num(0, 1e6, (0.0, 10.0))),
        "TB_MAX_CORRELATION": draw(_num(0, 1, (0.9, 1.0))),
    }
    return {k: repr(v) if isinstance(v, float) else str(v) for k, v in env.items()}


@st.composite
def cycle(draw):
    n = draw(st.integers(1, len(SYMS)))
    syms = draw(st.permutations(SYMS))[:n]
    held = draw(st.integers(0, 3))                             # symbols already held (not in the signals)
    sigs = []
    ts = T0 + draw(st.integers(0, 24 * 30)) * H
    for sym in syms[:n - min(held, n - 1)]:
        price = draw(_num(0.01, 1e5, (0.1, 1.0, 100.0, 40_000.0)))
        sigs.append(make_signal(
            sym, ts, price, draw(st.sampled_from([Action.BUY, Action.SELL] * 4 + [Action.HOLD])),
            draw(st.floats(0, 10)), draw(st.floats(1, 10)), price * draw(_num(1e-4, 0.2, (0.001, 0.003, 0.005, 0.01))),
            draw(st.sampled_from(LABELS)), draw(st.sampled_from(VOLS)), draw(st.floats(0.01, 1.0))))
    held_syms = [s for s in SYMS if s not in {x.symbol for x in sigs}][:held]
    equity = draw(_num(100, 1e7, (1_000.0, 10_000.0)))
    cash = equity * draw(st.floats(0.05, 1.0))
    book = Book(equity=equity, cash=cash, day_start_equity=equity * draw(_num(0.5, 2.0, (1.0, 1.01))),
                trades_today=draw(st.sampled_from([0, 0, 0, 1, 2, 5])),
                exposures={s: draw(st.floats(-equity, equity)) for s in held_syms})
    return sigs, book, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=futures_env(), cyc=cycle())
def test_policy_approvals_respect_every_limit_and_fill_inside_liquidation(env, cyc):
    s = load_settings(env, None)
    sigs, book, seed = cyc
    rng = np.random.default_rng(seed)
    returns = {sym: rng.normal(0, 0.01, 300) for sym in SYMS}
    policy = FuturesPolicy(s)
    lim = futures_limits(s)
    assert lim.max_trade_notional == s.futures_max_notional and lim.max_position_pct == s.futures_max_notional_pct
    start_positions, start_trades, start_cash = len(book.exposures), book.trades_today, book.cash
    fee, slip = s.futures_fee_bps / 1e4, s.slippage_bps / 1e4
    approved = []
    # the agent: highest conviction first, the book updated after each approval
    for sig in sorted(sigs, key=lambda x: (-x.conviction, x.symbol)):
        d = policy.decide(sig, None, book, returns)
        if d.decision != "enter":
            assert d.intent is None
            event(f"decision {d.decision} {d.risk_rule or ''}".strip())
            continue
        o, bk = d.intent.order, d.intent.bracket
        direction = 1 if o.side is Side.BUY else -1
        assert direction == sig.direction and not o.reduce_only and o.purpose == "entry"
        # leverage: a whole number in [1, max]
        assert 1 <= o.leverage <= s.futures_max_leverage and o.leverage == int(o.leverage)
        assert o.leverage == choose_leverage(sig.conviction, s.min_conviction_score, sig.regime.volatility,
                                             s.futures_max_leverage)
        notional = o.qty * sig.price
        assert o.qty > 0
        assert notional <= s.futures_max_notional * (1 + 1e-9)
        assert notional <= book.equity * s.futures_max_notional_pct * (1 + 1e-9)
        assert notional >= 0 and notional <= risk_notional(book.equity, s.futures_risk_per_trade, sig.price,
                                                           bk.stop_distance) * (1 + 1e-9)
        # margin + entry fee (at the fill price the slippage allows) fit in the free cash of the book
        margin = notional / o.leverage
        # margin plus the fee and slippage reserve (in and out)
        reserve = o.qty * sig.price * 2 * (s.futures_fee_bps + s.slippage_bps) / 1e4
        assert d.intent.cash_needed == pytest.approx(margin + reserve, rel=1e-9)
        assert margin + notional * fee <= book.cash * (1 + 1e-9)
        assert (notional * (1 + slip)) * (1 / o.leverage + fee) <= book.cash * (1 + 1e-9)
        # the stop lies strictly inside the liquidation price (recomputed here), within the guard
        assert bk.stop_distance == pytest.approx(s.futures_stop_atr_mult * sig.atr)
        stop = sig.price - direction * bk.stop_distance
        lp = liquidation_price(direction, o.qty, sig.price, initial_margin(o.qty, sig.price, o.leverage),
                               s.futures_mmr)
        assert direction * (stop - lp) > 0, (stop, lp)
        assert direction * (sig.price - stop) <= s.futures_liq_guard * direction * (sig.price - lp) * (1 + 1e-9)
        # a counter-regime entry needs the extra quality
        if (direction > 0 and sig.regime.label in ("bear", "strong_bear")) or \
                (direction < 0 and sig.regime.label in ("bull", "strong_bull")):
            assert sig.quality >= s.futures_counter_regime_quality
        approved.append((sig, d.intent))
        exp = dict(book.exposures)
        exp[o.symbol] = direction * notional
        book = Book(equity=book.equity, cash=book.cash - d.intent.cash_needed,
                    day_start_equity=book.day_start_equity, trades_today=book.trades_today + 1,
                    exposures=exp, closed_returns=book.closed_returns)
    event(f"approved {min(len(approved), 3)}{'+' if len(approved) > 3 else ''}")
    assert start_positions + len(approved) <= max(s.futures_max_positions, start_positions)
    assert start_trades + len(approved) <= max(s.futures_max_trades_per_day, start_trades)
    if not approved:
        return
    assert start_positions + len(approved) <= s.futures_max_positions
    assert start_trades + len(approved) <= s.futures_max_trades_per_day

    # through the paper broker: every resulting position has its stop strictly inside its LP
    b = PaperFuturesBroker(AGENT, start_cash, s.futures_fee_bps, s.slippage_bps, s.futures_mmr, s.futures_funding_rate,
                           s.futures_max_leverage, s.futures_liq_guard, s.futures_vol_stop_mult, interval=H)
    filled = 0
    for sig, it in approved:
        assert b.submit(it.order, it.bracket).state is OrderState.SUBMITTED
        rep = b.on_bar(Bar(sig.symbol, sig.ts, sig.price, sig.price, sig.price, sig.price, 1.0))
        (u,) = [u for u in rep.updates if u.client_order_id == it.order.client_order_id]
        if u.state is OrderState.REJECTED:
            event("fill rejected: " + ("margin" if "margin" in u.reason else
                                       "stop reached" if "already reached" in u.reason else "guard"))
            if "insufficient margin" in u.reason:
                # the book the agent passes on only deducts the margin of earlier approvals, not their
                # fees (see test_same_cycle_entries_fit_the_wallet_together): only a later entry can miss
                assert filled > 0, u.reason
            elif "already reached" in u.reason:
                # the slippage alone carried the fill past the stop distance
                assert it.bracket.stop_distance <= sig.price * slip * (1 + 1e-9), u.reason
            else:
                # the guard at the slipped fill price: a short fills lower, which brings its LP closer
                assert "liquidation" in u.reason and it.order.side is Side.SELL and slip > 0, u.reason
            continue
        filled += 1
        assert u.state is OrderState.FILLED
        direction = 1 if it.order.side is Side.BUY else -1
        px = u.avg_price
        stop = px - direction * it.bracket.stop_distance
        lp = liquidation_price(direction, u.filled_qty, px, u.filled_qty * px / it.order.leverage, s.futures_mmr)
        assert direction * (stop - lp) > 0
        for t in rep.trades:
            # a flat bar at the signal price only ends a hold of at most an hour, or trips a trailing stop
            # whose distance is within the slippage (it trails from the slipped fill price)
            if t.exit_reason == "time_stop":
                assert 0 < s.futures_max_hold_h <= 1, t
            else:
                assert t.exit_reason == "trailing_stop", t
                d = 1 if it.order.side is Side.BUY else -1
                assert d * (u.avg_price * (1 - d * s.futures_trail_pct) - sig.price) >= 0, t
        for p in b.positions():
            if p.entry_order_id == it.order.client_order_id:
                sp = 1 if p.side is PositionSide.LONG else -1
                # (a fill bar closing at a funding time has already moved the margin, and the LP with it)
                assert p.stop_loss == pytest.approx(stop) and p.margin == pytest.approx(
                    u.filled_qty * px / it.order.leverage - p.funding_paid)
                assert p.liquidation_price == pytest.approx(
                    liquidation_price(sp, p.qty, p.entry_price, p.margin, s.futures_mmr), rel=1e-12, abs=1e-12 * px)
                assert sp * (p.stop_loss - p.liquidation_price) > 0
    assert b.cash >= -1e-9


def test_same_cycle_entries_fit_the_wallet_together():
    """Two entries approved in one cycle must fit in the wallet together (margins and entry fees).

    10x, futures fee 10 bps (the spot fee set apart, 25), slippage 5 bps (reserve k = 2 * 15 bps = 0.003), wallet 1 000, no other caps:
    the first entry is capped by the margin: N1 = 1000 / (1/10 + 0.003) = 9 708.74, margin 970.87; the
    book passed on has 1000 - 970.87 = 29.13 free, so N2 = 29.13 / 0.103 = 282.8 (margin + fee 28.58 at
    the fill), but the wallet holds 1000 - 9708.74 * 1.0005 * (0.1 + 0.001) = 18.9 after the first fill.
    """
    s = load_settings({"TB_PROFILE": "phase1c", "TB_FUTURES_MAX_NOTIONAL_USD": "1e9", "TB_FUTURES_MAX_NOTIONAL_PCT": "50",
                       "TB_FUTURES_RISK_PER_TRADE": "0.2", "TB_FUTURES_VAR_LIMIT": "10",
                       "TB_MAX_CORRELATION": "1", "TB_FUTURES_FEE_BPS": "10", "TB_FEE_BPS": "25"}, None)
    policy = FuturesPolicy(s)
    rng = np.random.default_rng(3)
    returns = {sym: rng.normal(0, 0.001, 300) for sym in SYMS}
    book = Book(equity=1_000.0, cash=1_000.0, day_start_equity=1_000.0, trades_today=0, exposures={})
    used = 0.0
    for sym in ("BTC/USD", "ETH/USD"):
        sig = make_signal(sym, T0, 100.0, Action.BUY, 7.0, 10.0, 0.05, "bull", "low", 1.0)
        d = policy.decide(sig, None, book, returns)
        if sym == "ETH/USD" and d.decision != "enter":
            # the first entry's margin and fee reserve left too little for a second one
            assert d.risk_rule == "below_min_notional"
            break
        assert d.decision == "enter" and d.intent.order.leverage == 10.0
        if sym == "BTC/USD":      # the margin cap with the futures fee's reserve (not the spot fee's)
            assert d.intent.order.qty * 100.0 == pytest.approx(9708.74, abs=0.01)
        n = d.intent.order.qty * 100.0 * (1 + s.slippage_bps / 1e4)      # notional at the slipped fill
        used += n / 10.0 + n * s.futures_fee_bps / 1e4
        book = Book(equity=book.equity, cash=book.cash - d.intent.cash_needed, day_start_equity=1_000.0,
                    trades_today=book.trades_today + 1,
                    exposures={**book.exposures, sym: d.intent.order.qty * 100.0})
    assert used <= 1_000.0


def test_policy_smoke_default_settings_long_short_and_guards():
    s = load_settings({"TB_PROFILE": "phase1c"}, None)     # the seed's settings: 10x leverage, 2-ATR stops
    policy = FuturesPolicy(s)
    rng = np.random.default_rng(1)
    returns = {sym: rng.normal(0, 0.01, 300) for sym in SYMS}
    book = Book(equity=10_000.0, cash=10_000.0, day_start_equity=10_000.0, trades_today=0, exposures={})
    sig = make_signal(SYM, T0, 40_000.0, Action.BUY, 7.0, 10.0, 400.0, "bull", "low", 1.0)
    d = policy.decide(sig, None, book, returns)
    assert d.decision == "enter" and d.intent.order.leverage == 10.0
    # risk: loss at the stop (2 ATR = 800) = 1 % of 10 000 -> qty 0.125, notional 5 000
    assert d.intent.order.qty == pytest.approx(0.125) and d.intent.bracket.stop_distance == 800.0
    short = make_signal(SYM, T0, 40_000.0, Action.SELL, 7.0, 10.0, 400.0, "bear", "normal", 1.0)
    d = policy.decide(short, None, book, returns)
    assert d.decision == "enter" and d.intent.order.side is Side.SELL and d.intent.order.leverage == 8.0
    # counter-regime with low quality: no trade
    assert policy.decide(replace(short, quality=3.0, regime=sig.regime), None, book, returns).decision == "none"
    # a stop wider than the guard allows: 10x long LP 36 144.6; 2 ATR = 5 000 > 0.5 * 3 855
    wide = replace(sig, atr=2_500.0)
    d = policy.decide(wide, None, book, returns)
    assert d.decision == "blocked" and d.risk_rule == "liquidation_guard"


# ================================================================ 8. choose_leverage

def test_choose_leverage_examples():
    # 1x at the minimum passing conviction, whatever the volatility
    for vol in VOLS:
        assert choose_leverage(2.0, 2.0, vol, 10.0) == 1
    # conviction 10, low volatility: floor(1 + 9 * 1 * 1) = 10 (the max)
    assert choose_leverage(10.0, 2.0, "low", 10.0) == 10
    assert choose_leverage(10.0, 2.0, "normal", 10.0) == 8       # floor(1 + 9 * 0.8) = floor(8.2)
    assert choose_leverage(10.0, 2.0, "high", 10.0) == 4         # floor(1 + 9 * 0.4) = floor(4.6)
    assert choose_leverage(10.0, 2.0, "extreme", 10.0) == 1      # floor(1 + 0.9)
    # halfway conviction: c = (6 - 2) / 8 = 0.5: low floor(5.5) = 5
    assert choose_leverage(6.0, 2.0, "low", 10.0) == 5
    assert choose_leverage(10.0, 2.0, "low", 7.5) == 7           # never above floor(max)
    assert choose_leverage(1.0, 2.0, "low", 10.0) == 1           # below the minimum conviction
    assert choose_leverage(10.0, 10.0, "low", 10.0) == 1          # min conviction 10: no room
    assert choose_leverage(10.0, 2.0, "low", 1.0) == 1


@settings(max_examples=200, deadline=None)
@given(conv=st.floats(0, 12), min_conv=st.floats(1, 10), max_lev=st.floats(1, 125), vol=st.sampled_from(VOLS))
def test_choose_leverage_properties(conv, min_conv, max_lev, vol):
    lev = choose_leverage(conv, min_conv, vol, max_lev)
    assert isinstance(lev, int) and 1 <= lev <= max_lev
    # more volatility never raises leverage; more conviction never lowers it
    order = [choose_leverage(conv, min_conv, v, max_lev) for v in VOLS]
    assert order == sorted(order, reverse=True)
    assert choose_leverage(min(conv + 1, 12), min_conv, vol, max_lev) >= lev


# ================================================================ 9. restore from a snapshot

def _real_bars(n: int = 300, start: int = 2000) -> list[Bar]:
    with DATA.open() as f:
        rows = list(csv.DictReader(f))[start:start + n]
    return [Bar(SYM, datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")), float(r["open"]),
                float(r["high"]), float(r["low"]), float(r["close"]), float(r["volume"])) for r in rows]


def _drive(b: PaperFuturesBroker, bars: list[Bar], i0: int, i1: int, brackets: dict, trades: list) -> None:
    """Deterministic driver, like the agent: after bar i closes, every 7 bars when flat and nothing is
    pending, place an entry for the next open (alternating long / short, leverage 1..5); every 11 bars
    close an open position by a reduce-only signal exit at the next open."""
    for i in range(i0, i1):
        bb = bars[i]
        trades.extend(b.on_bar(bb).trades)
        nxt = bb.ts + H
        if i % 7 == 0 and not b.positions() and not b.open_orders():
            window = bars[max(0, i - 14):i + 1]
            atr = float(np.mean([x.high - x.low for x in window]))
            side = Side.BUY if (i // 7) % 2 == 0 else Side.SELL
            o = Order(f"e{i}", AGENT, SYM, side, round(2_000.0 / bb.close, 6), leverage=float(1 + i % 5),
                      created_at=nxt)
            brackets[o.client_order_id] = Bracket(2 * atr, 3 * atr, 0.01, 24 * 3600.0, entry_atr=atr)
            b.submit(o, brackets[o.client_order_id])
        elif i % 11 == 0 and b.positions() and not b.open_orders():
            p = b.positions()[0]
            b.submit(Order(exit_order_id(p.entry_order_id), AGENT, SYM,
                           Side.SELL if p.side is PositionSide.LONG else Side.BUY, p.qty, reduce_only=True,
                           leverage=p.leverage, purpose="exit", reason="signal", created_at=nxt))


def _snapshot_restore(b: PaperFuturesBroker, brackets: dict) -> PaperFuturesBroker:
    fresh = fbroker(cash=b.cash, fee_bps=10.0, slip_bps=5.0, funding=0.0001, max_lev=10.0, guard=0.9, vol_mult=3.0)
    fresh.restore(list(b.positions()), [(o, brackets.get(o.client_order_id)) for o in b.open_orders()],
                  b.realized_pnl, b.fees_paid, dict(b.last_price))
    return fresh


def test_restore_mid_run_matches_the_uninterrupted_run():
    bars = _real_bars()
    assert len(bars) == 300 and all(b2.ts - b1.ts == H for b1, b2 in zip(bars, bars[1:]))

    def make():
        return fbroker(fee_bps=10.0, slip_bps=5.0, funding=0.0001, max_lev=10.0, guard=0.9, vol_mult=3.0)

    ref, ref_trades, ref_brackets = make(), [], {}
    _drive(ref, bars, 0, len(bars), ref_brackets, ref_trades)
    assert len(ref_trades) >= 8
    assert {t.side for t in ref_trades} == {PositionSide.LONG, PositionSide.SHORT}
    assert any(t.funding != 0 for t in ref_trades)

    # snapshots after bar cut-1: with an entry pending (cut-1 = 49, 140), an exit pending (99 when a
    # position is open), an open position, and plain moments
    cuts = [37, 50, 91, 100, 141, 142, 200, 232, 263]
    b, trades, brackets = make(), [], {}
    state_seen = {"position": False, "pending": False}
    prev = 0
    for cut in cuts + [len(bars)]:
        _drive(b, bars, prev, cut, brackets, trades)
        prev = cut
        if cut < len(bars):
            state_seen["position"] |= bool(b.positions())
            state_seen["pending"] |= bool(b.open_orders())
            before = (b.cash, b.equity(), b.realized_pnl, b.fees_paid)
            b = _snapshot_restore(b, brackets)
            assert (b.cash, b.equity(), b.realized_pnl, b.fees_paid) == before
    assert state_seen["position"], "no snapshot was taken with an open position"
    assert state_seen["pending"], "no snapshot was taken with a pending order"
    assert {t.exit_reason for t in ref_trades} >= {"signal"}
    assert trades == ref_trades
    assert (b.cash, b.realized_pnl, b.fees_paid, b.equity()) == (ref.cash, ref.realized_pnl, ref.fees_paid,
                                                                 ref.equity())
    assert b.positions() == ref.positions()
    # the wallet reconciles with the trades: cash = start + sum(pnl) - what the open position ties up
    tied = sum(p.margin + p.entry_fee + p.funding_paid for p in ref.positions())
    assert ref.cash == pytest.approx(10_000 + sum(t.pnl for t in ref_trades) - tied, rel=1e-12)


def test_restore_with_a_pending_order_fills_it_and_dedupes_a_resubmission():
    bars = _real_bars(20)
    b = fbroker(slip_bps=5.0)
    o = Order("e1", AGENT, SYM, Side.BUY, 0.05, leverage=3.0, created_at=bars[1].ts)
    bk = Bracket(2_000.0, 3_000.0, 0.0, 0.0)
    b.submit(o, bk)
    b.on_bar(bars[0])
    fresh = _snapshot_restore(b, {"e1": bk})
    assert fresh.get("e1").state is OrderState.SUBMITTED
    assert fresh.submit(o, bk).state is OrderState.SUBMITTED and len(fresh.open_orders()) == 1
    rep_a, rep_b = b.on_bar(bars[1]), fresh.on_bar(bars[1])
    assert rep_a.fills == rep_b.fills and len(rep_a.fills) == 1
    assert fresh.positions() == b.positions() and fresh.cash == b.cash
