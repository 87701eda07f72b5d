"""The daily loss limit's day-start equity when the clock jumps over UTC midnight (a restart after downtime under a
live feed, a stalled feed): the broker sees every bar of the gap, and the new day starts with the equity at its
midnight, not the equity after those bars, so the losses the day made before its first cycle are counted."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from envs import agent_env
from tracer.agents.hybrid import build
from tracer.config import load_settings
from tracer.models import Order, OrderState, Position, PositionSide, Side
from tracer.risk.limits import RiskLimits

H = timedelta(hours=1)
SYM = "ETH/USD"


def _log(name):
    """A quiet logger."""
    log = logging.getLogger(name)
    log.handlers.clear()
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def test_losses_before_the_first_cycle_of_the_utc_day_count_against_the_daily_loss_limit(tmp_path):
    env = agent_env(tmp_path, TB_REPLAY_START="2022-06-12T20:00:00Z", TB_SYMBOLS="BTC/USD,ETH/USD,SOL/USD")
    settings = load_settings(environ=env, dotenv_path=None)
    loop = build(settings, _log("day-gap.a"))
    loop.run(cycles=4)                                   # clocks 20:00 .. 23:00 of 2022-06-12, committed
    st = loop.store
    last = st.last_run("hybrid")
    assert last["clock"] == "2022-06-12T23:00:00Z"
    # the agent holds ETH (an entry filled at the 22:00 bar's open), with a wide 25 % stop
    frame = loop.feed._series[SYM].frame
    px = float(frame.loc["2022-06-12 22:00:00+00:00", "open"])
    acct = st.account("hybrid")
    qty = round(0.5 * acct["cash"] / px, 6)
    opened = datetime(2022, 6, 12, 22, tzinfo=timezone.utc)
    cid = "tb-hy-ETH-2206122200-e-0a0a0a"
    with st.transaction():
        st.insert_order(Order(cid, "hybrid", SYM, Side.BUY, qty, purpose="entry", created_at=opened),
                        run_id=None, signal_id=None, price_est=px)
        st.set_order_state(cid, OrderState.FILLED, filled_qty=qty, avg_price=px)
        st.save_positions("hybrid", [Position(agent="hybrid", symbol=SYM, side=PositionSide.LONG, qty=qty,
                                              entry_price=px, opened_at=opened, entry_fee=0.0,
                                              stop_loss=px * 0.75, take_profit=0.0, trail_pct=0.0, best_price=px,
                                              max_hold_s=0.0, entry_order_id=cid)])
        st.save_account("hybrid", initial_capital=acct["initial_capital"], cash=acct["cash"] - qty * px,
                        realized_pnl=acct["realized_pnl"], fees_paid=acct["fees_paid"], day=acct["day"],
                        day_start_equity=acct["day_start_equity"])
    st.close()

    # the agent is down from 23:00 on the 12th; it restarts and its live feed resumes at the latest close,
    # 10:00 on the 13th (AgentLoop.run_cycle: "the clock jumped (... a restart after a while): the broker still
    # sees every bar in between")
    loop = build(settings, _log("day-gap.b"))
    loop.start()
    cash = loop.broker.balance()
    # the equity when the UTC day 2022-06-13 began: cash + ETH at the close of the bar that closed at 00:00
    mid_close = float(frame.loc["2022-06-12 23:00:00+00:00", "close"])
    equity_at_midnight = cash + qty * mid_close
    now = datetime(2022, 6, 13, 10, tzinfo=timezone.utc)
    loop.run_cycle(now)
    equity_now = loop.broker.equity()
    loop.store.close()
    limit = RiskLimits.from_settings(settings).daily_loss_limit_pct
    true_day_return = equity_now / equity_at_midnight - 1
    assert loop.day == "2022-06-13"
    assert true_day_return <= -limit, "precondition: the day lost more than the daily loss limit"
    seen_day_return = equity_now / loop.day_start_equity - 1
    # the daily loss limit must see the day's loss (the agent must not open new entries today)
    assert seen_day_return <= -limit, (
        f"UTC day 2022-06-13 lost {true_day_return:.2%} (limit {-limit:.0%}) but the day-start equity was taken "
        f"after the gap: day_start_equity={loop.day_start_equity:.2f} vs equity at 00:00 {equity_at_midnight:.2f}; "
        f"the daily-loss check sees {seen_day_return:.2%}")
