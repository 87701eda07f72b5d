"""A prepared history (what the study and the optimiser share between backtests) changes no result."""
from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from tracer.backtest.history import History, _Memo
from tracer.backtest.runner import BacktestResult, run_backtest
from tracer.config import load_settings
from tracer.sentiment.factory import make_scorer

SYMBOLS = ["BTC/USD", "ETH/USD", "SOL/USD"]


def _settings(tmp: Path, **extra: str):
    env = {"TB_DB_PATH": str(tmp / "live.db"), "TB_LOG_DIR": str(tmp / "logs"), "TB_STATE_DIR": str(tmp / "state"),
           "TB_SYMBOLS": ",".join(SYMBOLS), "TB_FUTURES_SYMBOLS": ",".join(SYMBOLS)}
    env.update(extra)
    return load_settings(env, dotenv_path=None)


def _fingerprint(r: BacktestResult) -> tuple:
    return ([dataclasses.astuple(t) for t in r.trades], [(p.ts, p.equity, p.cash, p.exposure, p.positions)
                                                        for p in r.equity], r.fees_paid, r.entries, r.rejected,
            r.bar_steps)


def _utc(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc)


# settings that change features (trend window), the narrative (half-life), the gap policy (look-back) and
# the decisions, windows of different lengths, and a price-only run: one history serves them all in turn
RUNS = [
    ("hybrid", {}, None, None, False),
    ("hybrid", {"TB_TREND_WINDOW_H": "240"}, "2022-01-01", "2022-03-01", False),
    ("futures", {}, "2021-12-01", None, False),
    ("hybrid", {"TB_NARRATIVE_HALFLIFE_MIN": "30"}, "2021-11-01", "2022-02-01", False),
    ("futures", {"TB_PROFILE": "phase1c"}, "2022-03-01", "2022-04-01", False),
    ("hybrid", {}, "2022-01-01", "2022-03-01", True),
    ("hybrid", {"TB_LOOKBACK_BARS": "700"}, None, None, False),
    ("hybrid", {}, None, None, False),                     # again: every piece now comes from the history
]


def test_backtests_over_one_prepared_history_equal_fresh_ones(tmp_path):
    log = logging.getLogger("test-history")
    log.propagate = False
    empty = tmp_path / "no-headlines.csv"
    empty.write_text("published_at,source,title\n")
    history = History(None, timedelta(hours=1))
    scorer = make_scorer(_settings(tmp_path), log)           # one per process, as the study's
    trades = 0
    for agent, extra, start, end, price_only in RUNS:
        s = _settings(tmp_path, **extra)
        heads = empty if price_only else None
        when = (_utc(start) if start else None, _utc(end) if end else None)
        fresh = run_backtest(s, agent, SYMBOLS, scorer, *when, headlines_path=heads)
        shared = run_backtest(s, agent, SYMBOLS, scorer, *when, headlines_path=heads, history=history)
        assert _fingerprint(shared) == _fingerprint(fresh), (agent, extra, start, end, price_only)
        assert fresh.bar_steps > 0
        trades += len(fresh.trades)
    assert trades > 50


def test_a_history_of_another_folder_is_refused(tmp_path):
    s = _settings(tmp_path)
    history = History(tmp_path, timedelta(hours=1))
    with pytest.raises(ValueError, match="another folder or interval"):
        run_backtest(s, "hybrid", SYMBOLS, make_scorer(s, logging.getLogger("t")), history=history)
    with pytest.raises(ValueError, match="another folder or interval"):
        run_backtest(s, "hybrid", SYMBOLS, make_scorer(s, logging.getLogger("t")), data_dir=tmp_path,
                     interval=timedelta(minutes=1), history=history)


def test_the_memo_is_bounded_and_keeps_the_most_recently_used():
    made = []
    memo = _Memo(2)

    def make(k):
        made.append(k)
        return np.full(3, k)

    for k in (1, 2, 1, 3, 1, 2):
        memo.get(k, lambda k=k: make(k))
    assert made == [1, 2, 3, 2]        # 2 was the least recently used when 3 came, so it was made again
