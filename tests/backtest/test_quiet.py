"""Runs of quiet bars, passed over in one go, change no result: the same backtests stepped bar by bar give the
same trades, equity points, fees and counts; the paper brokers' quiet-bar answers are conservative and their
one-go effects are those of ``on_bar`` bar by bar."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, strategies as st

from test_history import _fingerprint, _settings
from tracer.backtest.history import History
from tracer.backtest.quiet import next_true
from tracer.backtest.runner import run_backtest
from tracer.execution.paper import PaperSpotBroker
from tracer.execution.paper_futures import PaperFuturesBroker
from tracer.models import Bar, Position, PositionSide
from tracer.sentiment.factory import make_scorer

NS = 1_000_000_000


def test_next_true_finds_the_first_true_at_or_after_each_index():
    assert next_true(np.array([False, True, False, False, True])).tolist() == [1, 1, 4, 4, 4, 5]
    assert next_true(np.array([False, False])).tolist() == [2, 2, 2]
    assert next_true(np.array([], dtype=bool)).tolist() == [0]


# settings whose positions meet every exit (stops, trailing stops, take-profits, time stops, liquidation,
# volatility stops, funding), the market exit, exploration, and windows that start and end mid-history
# (and the least share of bar-steps that each passes over: busy settings leave short runs, the defaults long ones)
RUNS = [
    ("hybrid", {}, None, None, 0.5),
    ("futures", {}, None, None, 0.5),
    ("hybrid", {"TB_PROFILE": "phase1c", "TB_MAX_HOLD_H": "7"}, "2021-12-01", "2022-03-01", 0.0),
    ("futures", {"TB_PROFILE": "phase1c", "TB_FUTURES_MAX_HOLD_H": "7"}, "2021-12-01", "2022-03-01", 0.0),
    ("hybrid", {"TB_TRAIL_PCT": "0.02", "TB_MARKET_EXIT": "true"}, None, None, 0.1),
    ("futures", {"TB_FUTURES_TRAIL_PCT": "0.02", "TB_MARKET_EXIT": "true", "TB_FUTURES_MARKET_FILTER": "true",
                 "TB_FUTURES_MAX_LEVERAGE": "20"}, None, None, 0.1),
    ("hybrid", {"TB_EXPLORE_SHARE": "0.3", "TB_PROFILE": "conservative"}, "2022-02-03T05:00:00", "2022-06-01", 0.1),
    ("futures", {"TB_PROFILE": "conservative", "TB_FUTURES_FUNDING_RATE": "0.001"}, None, None, 0.1),
]


@pytest.mark.parametrize("agent,extra,start,end,share", RUNS)
def test_passing_over_quiet_bars_equals_stepping_every_bar(tmp_path, agent, extra, start, end, share):
    log = logging.getLogger("test-quiet")
    log.propagate = False
    s = _settings(tmp_path, **extra)
    history = History(None, timedelta(hours=1))
    scorer = make_scorer(s, log)
    t0 = None if start is None else datetime.fromisoformat(start).replace(tzinfo=timezone.utc)
    t1 = None if end is None else datetime.fromisoformat(end).replace(tzinfo=timezone.utc)
    runs = [run_backtest(s, agent, list(s.symbols if agent == "hybrid" else s.futures_symbols), scorer, t0, t1,
                         history=history, quiet_runs=q) for q in (True, False)]
    fast, slow = runs
    assert _fingerprint(fast) == _fingerprint(slow)
    assert slow.quiet_steps == 0
    assert len(fast.trades) > 10                         # positions were opened and closed
    assert fast.quiet_steps > share * fast.bar_steps     # and bars were passed over


# --- the brokers ------------------------------------------------------------------------------------------
T0 = datetime(2022, 3, 1, 5, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def _position(side: PositionSide, price: float, stop: float, tp: float, trail: float, hold_h: float,
              liq: float | None = None, atr: float = 0.0) -> Position:
    s = 1 if side is PositionSide.LONG else -1
    return Position(agent="t", symbol="BTC/USD", side=side, qty=0.5, entry_price=price, opened_at=T0, entry_fee=1.0,
                    stop_loss=price * (1 - s * stop) if stop else 0.0,
                    take_profit=price * (1 + s * tp) if tp else 0.0, trail_pct=trail, best_price=price,
                    max_hold_s=hold_h * 3600, entry_order_id="e1", leverage=3.0, margin=price * 0.5 / 3,
                    liquidation_price=liq, entry_atr=atr)


def _bars(price: float, moves: list[float], spread: list[float]) -> list[Bar]:
    out, px = [], price
    for k, (m, w) in enumerate(zip(moves, spread)):
        o, c = px, px * (1 + m)
        out.append(Bar("BTC/USD", T0 + (k + 1) * HOUR, o, max(o, c) * (1 + w), min(o, c) * (1 - w), c, 1.0))
        px = c
    return out


def _spot(p: Position) -> PaperSpotBroker:
    b = PaperSpotBroker("t", 50_000.0, 10, 5)
    b.restore([p], [], 0.0, 0.0, {"BTC/USD": p.entry_price})
    return b


def _futures(p: Position, funding: float) -> PaperFuturesBroker:
    b = PaperFuturesBroker("t", 50_000.0, 4, 5, mmr=0.005, funding_rate=funding, max_leverage=20,
                           guard_fraction=0.7, vol_stop_mult=3.0)
    b.restore([p], [], 0.0, 0.0, {"BTC/USD": p.entry_price})
    return b


def _ohlc(bars: list[Bar]) -> tuple[np.ndarray, np.ndarray]:
    """The bars as quiet_bars takes them: a 4 x n array of open, high, low, close, and the open times."""
    o, h, l, c, ts = _columns(bars)
    return np.array([o, h, l, c]), ts


def _columns(bars: list[Bar]) -> tuple[np.ndarray, ...]:
    return (np.array([b.open for b in bars]), np.array([b.high for b in bars]), np.array([b.low for b in bars]),
            np.array([b.close for b in bars]), np.array([int(b.ts.timestamp()) * NS for b in bars], dtype=np.int64))


@given(futures=st.booleans(), short=st.booleans(), stop=st.sampled_from([0.0, 0.01, 0.03]),
       tp=st.sampled_from([0.0, 0.02, 0.05]), trail=st.sampled_from([0.0, 0.01, 0.04]),
       hold_h=st.sampled_from([0.0, 5.0, 30.0]), funding=st.sampled_from([0.0, 0.0001]),
       liq=st.sampled_from([None, 0.04]), atr=st.sampled_from([0.0, 0.002]),
       moves=st.lists(st.floats(-0.02, 0.02), min_size=1, max_size=40), seed=st.integers(0, 2**16))
def test_quiet_bars_are_those_on_which_on_bar_only_moves_the_best_price(futures, short, stop, tp, trail, hold_h,
                                                                         funding, liq, atr, moves, seed):
    side = PositionSide.SHORT if (short and futures) else PositionSide.LONG
    s = 1 if side is PositionSide.LONG else -1
    price = 40_000.0
    if futures and not stop:
        stop = 0.05                                      # futures positions always carry a stop
    p = _position(side, price, stop, tp, trail, hold_h, None if liq is None or not futures else price * (1 - s * liq),
                  price * atr if futures else 0.0)
    spread = np.random.default_rng(seed).uniform(0, 0.004, len(moves)).tolist()
    bars = _bars(price, moves, spread)

    def make():
        return _futures(p, funding) if futures else _spot(p)
    fast, slow = make(), make()
    o, h, l, c, ts = _columns(bars)
    ohlc = np.array([o, h, l, c])
    n = fast.quiet_bars("BTC/USD", ohlc, ts)
    assert 0 <= n <= len(bars)
    equity = fast.equity_path({"BTC/USD": c[:n]}, n)
    fast.pass_quiet("BTC/USD", h[:n], l[:n], c[:n])
    for k in range(n):                                  # bar by bar, nothing but the marks may happen
        rep = slow.on_bar(bars[k])
        assert not (rep.fills or rep.updates or rep.trades or rep.exit_orders or rep.closed)
        assert slow.equity() == equity[k]
    assert slow.positions() == fast.positions()
    assert slow.last_price == fast.last_price and slow.cash == fast.cash
    if n < len(bars):                                   # a bar that ends the run: something could happen there
        assert fast.quiet_bars("BTC/USD", ohlc[:, n:], ts[n:]) == 0


def test_bars_far_from_every_level_are_quiet_and_a_pending_order_is_not():
    p = _position(PositionSide.LONG, 40_000.0, 0.2, 0.5, 0.0, 0.0)
    bars = _bars(40_000.0, [0.001, -0.001] * 10, [0.001] * 20)
    b = _spot(p)
    assert b.quiet_bars("BTC/USD", *_ohlc(bars)) == 20
    from tracer.models import Order, OrderType, Side
    b.submit(Order("x1", "t", "BTC/USD", Side.SELL, 0.5, OrderType.MARKET, reduce_only=True, purpose="exit",
                   created_at=T0))
    assert b.quiet_bars("BTC/USD", *_ohlc(bars)) == 0


def test_a_price_that_is_not_finite_makes_no_bar_quiet():
    p = _position(PositionSide.LONG, 40_000.0, 0.2, 0.0, 0.0, 0.0)
    o, h, l, c, ts = _columns(_bars(40_000.0, [0.001] * 5, [0.001] * 5))
    l[3] = np.nan
    assert _spot(p).quiet_bars("BTC/USD", np.array([o, h, l, c]), ts) == 0
