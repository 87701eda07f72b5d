"""The market filter (TB_MARKET_FILTER): the rule, the market's bar at the same time or unknown, no look-ahead
(altering every market bar after t changes no decision at or before t), and entries blocked but exits kept
by both agents."""
from __future__ import annotations

import dataclasses
import logging
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tracer.agents.futures import FuturesPolicy
from tracer.agents.hybrid import HybridPolicy
from tracer.backtest.data import load_series
from tracer.backtest.runner import _market_gaps, run_backtest
from tracer.config import load_settings
from tracer.data.gaps import usable_rows
from tracer.data.replay import bundled_dir, load_candles
from tracer.models import Action, PositionSide, Signal
from tracer.sentiment.factory import make_scorer
from tracer.signals.evaluate import EvalParams, evaluate, market_context
from tracer.signals.features import market_gap, trend_gap
from tracer.signals.gates import GateThresholds
from tracer.signals.scoring import market_blocked, score_table

from policy_inputs import BOOK, RET, held, signal

H = timedelta(hours=1)
NS = 1_000_000_000
P = EvalParams(gates=GateThresholds(min_quality=1.0, min_conviction=2.0), trend_window_h=480, market_window_h=480)


def quiet() -> logging.Logger:
    log = logging.getLogger("market-test")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def test_market_blocked_rule():
    d = np.array([1, 1, 1, -1, -1, -1, 0, 0])
    g = np.array([0.01, -0.01, np.nan, 0.01, -0.01, np.nan, np.nan, 0.01])
    assert market_blocked(d, g, True).tolist() == [False, True, True, True, False, True, False, False]
    assert market_blocked(d, g, False).tolist() == [False] * 8
    assert market_blocked(np.array([1]), np.array([0.0]), True).tolist() == [True]   # at the mean: not above


def test_market_gap_is_unknown_until_the_window_is_full():
    c = np.linspace(100, 120, 30)
    g = market_gap(c, 10)
    assert np.isnan(g[:9]).all() and np.allclose(g[9:], trend_gap(c, 10)[9:])
    assert np.isnan(market_gap(c[:5], 10)).all()


def test_the_gate_blocks_entries_but_leaves_the_action():
    """An opposite action is how a held position exits: the filter marks the entry, it does not remove it."""
    one = [0.0]
    t = score_table([50.0], one, one, one, np.zeros((1, 3)), [0.5], [1.0], one, [0], P, 1.0, [0.05], [-0.02])
    assert t.action[0] == 1 and bool(t.gates["market"][0])
    t = score_table([50.0], one, one, one, np.zeros((1, 3)), [0.5], [1.0], one, [0], P, 1.0, [0.05], [0.02])
    assert t.action[0] == 1 and not bool(t.gates["market"][0])


@pytest.fixture(scope="module")
def coins() -> dict[str, pd.DataFrame]:
    return {s: load_candles(bundled_dir() / f"candles_1h_{s}USDT.csv") for s in ("BTC", "ETH")}


def test_live_context_equals_the_backtest_gaps_and_a_missing_bar_is_unknown(coins):
    """The live path (the market's 600-bar window, read at the symbol's last bar) gives the backtest's number
    (the market's whole history); without the market's bar at that time the filter refuses any new entry."""
    btc, eth = coins["BTC"], coins["ETH"]
    series = [load_series(bundled_dir() / f"candles_1h_{s}USDT.csv", f"{s}/USD") for s in ("BTC", "ETH")]
    usable = {sr.symbol: usable_rows(sr.ts_ns, 3600 * NS, 600, 180, 3)[0].tolist() for sr in series}
    full = _market_gaps(series, usable, P, "BTC/USD")["ETH/USD"]
    eth_ns = eth.index.as_unit("ns").asi8
    now0 = datetime(2022, 1, 10, tzinfo=timezone.utc)
    checked = blocked = 0
    for k in range(0, 24 * 60, 13):
        now = now0 + k * H
        we, wb = eth[eth.index < now].iloc[-600:], btc[btc.index < now].iloc[-600:]
        sig = evaluate("ETH/USD", we, [], now, P, market_context(wb, P))
        j = int(np.searchsorted(eth_ns, we.index[-1].value))
        assert sig.inputs["market_gap"] == pytest.approx(full[j], rel=1e-9), now
        assert sig.market_ok == (sig.direction == 0 or (sig.direction > 0) == (full[j] > 0))
        # the market's bar at this time is missing: unknown, no new entry either way
        late = evaluate("ETH/USD", we, [], now, P, market_context(wb.iloc[:-1], P))
        assert late.inputs["market_gap"] is None and late.market_ok == (late.direction == 0)
        assert (late.action, late.direction) == (sig.action, sig.direction)
        assert evaluate("ETH/USD", we, [], now, P, None).market_ok == (sig.direction == 0)   # market refused
        checked += 1
        blocked += not sig.market_ok
    assert checked > 100 and 0 < blocked < checked


def _altered_copy(tmp: Path, cut: datetime) -> Path:
    """The bundled data with every BTC bar that opens at or after ``cut`` changed (price halved, then noise)."""
    d = tmp / "data"
    shutil.copytree(bundled_dir(), d)
    f = d / "candles_1h_BTCUSDT.csv"
    df = pd.read_csv(f)
    ts = pd.to_datetime(df["timestamp"], utc=True)
    after = (ts >= pd.Timestamp(cut)).to_numpy()
    rng = np.random.default_rng(3)
    k = 0.5 * np.exp(rng.normal(0, 0.01, after.sum()).cumsum())
    for col in ("open", "high", "low", "close"):
        df.loc[after, col] = df.loc[after, col] * k
    df.to_csv(f, index=False)
    return d


def test_no_look_ahead_altering_the_market_after_t_changes_nothing_before(tmp_path):
    cut = datetime(2022, 2, 1, tzinfo=timezone.utc)
    start, end = datetime(2022, 1, 10, tzinfo=timezone.utc), datetime(2022, 2, 20, tzinfo=timezone.utc)
    s = load_settings({"TB_STATE_DIR": str(tmp_path / "state"), "TB_SYMBOLS": "BTC/USD,ETH/USD,SOL/USD,DOGE/USD"},
                      dotenv_path=None)
    assert s.market_filter == "BTC/USD"
    syms = list(s.symbols)
    scorer = make_scorer(s, quiet())
    a = run_backtest(s, "hybrid", syms, scorer, start=start, end=end, close_at_end=False)
    b = run_backtest(s, "hybrid", syms, scorer, start=start, end=end, close_at_end=False,
                     data_dir=_altered_copy(tmp_path, cut))
    # the market gaps themselves: equal up to the cut, not after
    series = [load_series(bundled_dir() / f"candles_1h_{x}USDT.csv", f"{x}/USD") for x in ("BTC", "ETH")]
    alt = [load_series(tmp_path / "data" / f"candles_1h_{x}USDT.csv", f"{x}/USD") for x in ("BTC", "ETH")]
    ok = {sr.symbol: [True] * len(sr.ts_ns) for sr in series}
    p = EvalParams.from_settings(s, H, syms)
    ga, gb = _market_gaps(series, ok, p, "BTC/USD")["ETH/USD"], _market_gaps(alt, ok, p, "BTC/USD")["ETH/USD"]
    before = series[1].ts_ns < int(cut.timestamp()) * NS
    assert np.array_equal(ga[before], gb[before], equal_nan=True) and not np.allclose(ga[~before], gb[~before])
    # every decision at or before t: the same entries, the same equity
    cut_close = cut                      # the last step that reads no altered bar closes at the cut
    ea = [(t.entry_order_id, t.entry_ts, t.qty) for t in a.trades if t.entry_ts <= cut_close]
    eb = [(t.entry_order_id, t.entry_ts, t.qty) for t in b.trades if t.entry_ts <= cut_close]
    assert ea == eb
    assert [(p.ts, p.equity) for p in a.equity if p.ts <= cut_close] == \
           [(p.ts, p.equity) for p in b.equity if p.ts <= cut_close]
    # and the alteration does reach the decisions after it (the test can fail)
    assert [(t.entry_order_id, t.exit_ts) for t in a.trades] != [(t.entry_order_id, t.exit_ts) for t in b.trades]


def _sig(action: Action, direction: int, market_ok: bool) -> Signal:
    return signal(action, direction, market_ok=market_ok, inputs={"market_gap": -0.02})


@pytest.mark.parametrize("agent", ["hybrid", "futures"])
def test_policies_block_entries_and_keep_exits(agent):
    s = load_settings({"TB_ACTIVE_PARAMS_PATH": "/nonexistent.json"}, dotenv_path=None)
    pol = HybridPolicy(s) if agent == "hybrid" else FuturesPolicy(s)
    d = pol.decide(_sig(Action.BUY, 1, False), None, BOOK, RET)
    assert (d.decision, d.risk_rule, d.intent) == ("blocked", "market_filter", None)
    assert "no new long while BTC/USD is below its mean" in d.reason
    assert pol.decide(_sig(Action.BUY, 1, True), None, BOOK, RET).decision == "enter"
    # a held long still exits on a sell the filter marks (the market is against a new short / unknown)
    ex = pol.decide(_sig(Action.SELL, -1, False), held(PositionSide.LONG), BOOK, RET)
    assert ex.decision == "exit" and ex.intent is not None
    if agent == "futures":
        assert pol.decide(_sig(Action.SELL, -1, False), None, BOOK, RET).risk_rule == "market_filter"
        ex = pol.decide(_sig(Action.BUY, 1, False), held(PositionSide.SHORT), BOOK, RET)
        assert ex.decision == "exit"
        # TB_FUTURES_MARKET_FILTER=false: the futures agent ignores the filter
        off = FuturesPolicy(dataclasses.replace(s, futures_market_filter=False))
        assert off.decide(_sig(Action.BUY, 1, False), None, BOOK, RET).decision == "enter"


def test_the_filter_is_on_only_for_a_feed_that_holds_the_market():
    s = load_settings({}, dotenv_path=None)
    assert EvalParams.from_settings(s, H, ["BTC/USD", "ETH/USD"]).market_bars == 480
    assert EvalParams.from_settings(s, H, ["ETH/USD"]).market_bars == 0          # no BTC bars to read
    assert EvalParams.from_settings(s, H).market_bars == 0                       # single-asset research
    off = load_settings({"TB_MARKET_FILTER": "none"}, dotenv_path=None)
    assert EvalParams.from_settings(off, H, ["BTC/USD"]).market_bars == 0


@pytest.mark.parametrize("agent", ["hybrid", "futures"])
def test_the_market_exit_closes_a_position_the_market_turned_against(agent):
    """TB_MARKET_EXIT: a held long is sold (a short bought back) at the first close of the market symbol below
    (above) its mean, whatever the coin's own signal; an unknown market exits nothing; off by default."""
    base = load_settings({"TB_ACTIVE_PARAMS_PATH": "/nonexistent.json"}, dotenv_path=None)
    assert base.market_exit is False
    on = dataclasses.replace(base, market_exit=True)
    make = HybridPolicy if agent == "hybrid" else FuturesPolicy
    hold = _sig(Action.HOLD, 1, True)
    sides = [PositionSide.LONG] if agent == "hybrid" else [PositionSide.LONG, PositionSide.SHORT]
    for side in sides:
        against = -1 if side is PositionSide.LONG else 1
        for m in (-1, 0, 1):
            sig = dataclasses.replace(hold, market_side=m)
            assert make(base).decide(sig, held(side), BOOK, RET).decision == "hold_position"
            d = make(on).decide(sig, held(side), BOOK, RET)
            if m == against:
                assert d.decision == "exit" and d.intent is not None and d.intent.order.reason == "market_exit"
                assert d.intent.order.reduce_only and d.intent.order.qty == 1.0
                assert d.intent.order.side.value == ("sell" if side is PositionSide.LONG else "buy")
                assert "market exit: BTC/USD closed" in d.reason
                # an exit already on its way is not sent twice
                assert make(on).decide(sig, held(side), BOOK, RET, pending_exit=True).intent is None
            else:
                assert d.decision == "hold_position" and d.intent is None
    if agent == "futures":       # the futures agent out of the filter is out of its exit too
        off = FuturesPolicy(dataclasses.replace(on, futures_market_filter=False))
        d = off.decide(dataclasses.replace(hold, market_side=-1), held(PositionSide.LONG), BOOK, RET)
        assert d.decision == "hold_position"


def test_the_market_side_reads_the_market_like_a_coin_with_its_band():
    """+1 / -1 only beyond the band around the mean (TB_MIN_DIRECTION_SCORE on the trend score: about 1% at
    0.1), 0 inside it, where the market is unknown, or with the filter off."""
    gaps = np.array([0.02, -0.02, 0.005, -0.005, 0.0, np.nan])
    n = len(gaps)
    z = np.zeros(n)

    def side(p: EvalParams) -> list[int]:
        return score_table(np.full(n, 50.0), z, z, z, np.zeros((n, 3)), np.full(n, 0.5), np.ones(n), z,
                           np.zeros(n, int), p, trend_gap=np.full(n, 0.05), market_gap=gaps).market_side.tolist()
    assert side(dataclasses.replace(P, min_direction_score=0.1)) == [1, -1, 0, 0, 0, 0]
    assert side(dataclasses.replace(P, min_direction_score=0.0)) == [1, -1, 1, -1, 0, 0]
    assert side(dataclasses.replace(P, market_window_h=0.0)) == [0] * n
