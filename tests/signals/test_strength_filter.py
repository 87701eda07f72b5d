"""The relative-strength filter (TB_STRENGTH_TOP_K / TB_FUTURES_STRENGTH_TOP_K): the cross-section counts, one bar
per comparison, and both policies refusing a new entry outside the top K while keeping exits."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from tracer.agents.futures import FuturesPolicy
from tracer.agents.hybrid import HybridPolicy
from tracer.config import ConfigError, load_settings
from tracer.models import Action, PositionSide, Signal
from tracer.optimize import exploration as ex
from tracer.signals.evaluate import EvalParams, decide_many, prepare
from tracer.signals.gates import GateThresholds
from tracer.signals.scoring import strength_counts

from policy_inputs import BOOK, RET, T0, held, signal


def test_counts_are_strict_and_skip_unknown_cells():
    # gaps of one bar: 0.03 ties 0.03; NaN is neither stronger nor weaker than anything
    up, down = strength_counts([[0.01, 0.03, np.nan, 0.03, -0.02]])
    assert up[0, [0, 1, 3, 4]].tolist() == [2, 0, 0, 3] and np.isnan(up[0, 2])
    assert down[0, [0, 1, 3, 4]].tolist() == [1, 2, 2, 0] and np.isnan(down[0, 2])
    # rows are separate bars: a row is never compared with another
    up, down = strength_counts([[0.1, 0.2], [0.5, -0.5]])
    assert up.tolist() == [[1, 0], [0, 1]] and down.tolist() == [[0, 1], [1, 0]]


def _bars(drift: float, end: datetime, n: int = 700) -> pd.DataFrame:
    idx = pd.date_range(end=end, periods=n, freq="1h", tz="UTC")
    rng = np.random.default_rng(int(drift * 1e6) % 2**32)
    close = 100 * np.exp(np.cumsum(drift + rng.normal(0, 0.002, n)))
    return pd.DataFrame({"open": close, "high": close * 1.002, "low": close * 0.998, "close": close,
                         "volume": np.full(n, 1000.0)}, index=idx)


def test_the_signals_carry_their_rank_among_the_symbols_of_the_same_bar():
    p = EvalParams(gates=GateThresholds(min_quality=1.0, min_conviction=2.0), trend_window_h=480)
    now = T0 + timedelta(hours=1)
    items = [prepare(sym, _bars(d, T0), [], now, p) for sym, d in (("A/USD", 0.0004), ("B/USD", 0.0001),
                                                                  ("C/USD", -0.0003))]
    sigs = decide_many(items, p)
    assert [(s.stronger, s.weaker) for s in sigs] == [(0, 2), (1, 1), (2, 0)]
    assert sigs[1].gates["stronger"] == 1 and sigs[1].gates["weaker"] == 1
    # a symbol whose last bar is an hour older is not part of that cross-section
    late = prepare("D/USD", _bars(0.001, T0 - timedelta(hours=1)), [], now, p)
    sigs = decide_many([*items, late], p)
    assert [(s.stronger, s.weaker) for s in sigs] == [(0, 2), (1, 1), (2, 0), (0, 0)]


def _sig(action: Action, direction: int, stronger: int, weaker: int, ts: datetime = T0) -> Signal:
    if action is Action.HOLD:    # a near miss of the quality gate: what exploration takes
        return signal(action, direction, stronger=stronger, weaker=weaker, ts=ts, quality=0.8,
                      reason="hold: quality 0.80 < 1.00")
    return signal(action, direction, stronger=stronger, weaker=weaker, ts=ts)


def _settings(**env: str):
    return load_settings({"TB_ACTIVE_PARAMS_PATH": "/nonexistent.json", "TB_MARKET_FILTER": "none", **env},
                         dotenv_path=None)


def test_off_by_default_and_a_named_variable_when_out_of_range():
    s = _settings()
    assert s.hybrid.strength_top_k == 0 and s.futures.strength_top_k == 0
    assert HybridPolicy(s).decide(_sig(Action.BUY, 1, 8, 0), None, BOOK, RET).decision == "enter"
    with pytest.raises(ConfigError, match="TB_STRENGTH_TOP_K"):
        _settings(TB_STRENGTH_TOP_K="-1")


def test_hybrid_buys_only_among_the_strongest_and_keeps_its_exits():
    pol = HybridPolicy(_settings(TB_STRENGTH_TOP_K="3"))
    assert pol.decide(_sig(Action.BUY, 1, 2, 6), None, BOOK, RET).decision == "enter"      # third strongest
    d = pol.decide(_sig(Action.BUY, 1, 3, 5), None, BOOK, RET)                            # fourth
    assert (d.decision, d.risk_rule, d.intent) == ("blocked", "strength_filter", None)
    assert "top 3" in d.reason and d.risk_detail == {"top_k": 3, "direction": 1, "stronger": 3, "weaker": 5}
    unknown = pol.decide(_sig(Action.BUY, 1, -1, -1), None, BOOK, RET)
    assert unknown.risk_rule == "strength_filter" and "unknown" in unknown.reason
    # a held long is sold on a sell signal wherever it ranks
    assert pol.decide(_sig(Action.SELL, -1, 8, 0), held(PositionSide.LONG), BOOK, RET).decision == "exit"


def test_exploration_is_filtered_too():
    s = _settings(TB_STRENGTH_TOP_K="3", TB_EXPLORE_SHARE="0.5")
    ts = next(T0 + timedelta(hours=k) for k in range(200) if ex.draw("hybrid", "ETH/USD", T0 + timedelta(hours=k)) < 0.5)
    assert HybridPolicy(s).decide(_sig(Action.HOLD, 1, 0, 8, ts), None, BOOK, RET).decision == "enter"
    d = HybridPolicy(s).decide(_sig(Action.HOLD, 1, 5, 3, ts), None, BOOK, RET)
    assert d.risk_rule == "strength_filter" and d.risk_detail["exploration"]["missed"] == ["quality"]


def test_futures_shorts_only_among_the_weakest():
    s = _settings(TB_FUTURES_STRENGTH_TOP_K="2")
    pol = FuturesPolicy(s)
    book = dataclasses.replace(BOOK, equity=10_000.0, cash=10_000.0, day_start_equity=10_000.0)
    assert pol.decide(_sig(Action.SELL, -1, 7, 1), None, book, RET).decision == "enter"     # second weakest
    d = pol.decide(_sig(Action.SELL, -1, 1, 7), None, book, RET)                            # second strongest
    assert d.risk_rule == "strength_filter" and "no new short" in d.reason
    assert pol.decide(_sig(Action.BUY, 1, 1, 7), None, book, RET).decision == "enter"
    assert pol.decide(_sig(Action.BUY, 1, 2, 6), None, book, RET).risk_rule == "strength_filter"
    # the hybrid's variable does not reach the futures agent
    assert FuturesPolicy(_settings(TB_STRENGTH_TOP_K="1")).decide(
        _sig(Action.SELL, -1, 7, 1), None, book, RET).decision == "enter"
    assert pol.decide(_sig(Action.BUY, 1, 8, 0), held(PositionSide.SHORT), book, RET).decision == "exit"
