"""tracer backtest: equal to the live agent, honest accounting, deterministic, overrides, foreign data, errors."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from tracer.agents import futures as futures_agent
from tracer.agents import hybrid as hybrid_agent
from tracer.backtest.runner import run_backtest
from tracer.config import load_settings
from tracer.data.replay import bundled_dir, load_candles
from tracer.db import Store, parse_iso
from tracer.sentiment.factory import make_scorer
from tracer.sentiment.lexicon import VaderScorer
from tracer.sentiment.narrative import narrative_score
from tracer.sentiment.scorer import CachedScorer
from tracer.signals.evaluate import EvalParams, decide
from tracer.signals.features import feature_table

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2022, 1, 10, tzinfo=timezone.utc)
CYCLES = 300


def quiet() -> logging.Logger:
    log = logging.getLogger("bt-test")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def settings(tmp: Path, **extra: str):
    env = {"TB_DB_PATH": str(tmp / "live.db"), "TB_LOG_DIR": str(tmp / "logs")}
    env.update(extra)
    return load_settings(env, dotenv_path=None)


@pytest.mark.parametrize("agent", ["hybrid", "futures"])
def test_backtest_trades_equal_the_live_agent(tmp_path, agent):
    s = settings(tmp_path)
    build = hybrid_agent.build if agent == "hybrid" else futures_agent.build
    loop = build(s, quiet())
    loop.run(cycles=CYCLES)
    end = loop.clock
    rows = loop.store.conn.execute("SELECT * FROM trades WHERE agent=? ORDER BY exit_ts, entry_order_id",
                                   (agent,)).fetchall()
    loop.store.close()
    assert len(rows) >= 5
    symbols = list(s.symbols if agent == "hybrid" else s.futures_symbols)
    # the scorer the live agent used (the factory's choice), as `tracer backtest` does
    res = run_backtest(s, agent, symbols, make_scorer(s, quiet()), start=START, end=end, close_at_end=False)
    assert res.start == START and res.end == end and len(res.equity) == CYCLES
    bt = sorted(res.trades, key=lambda t: (t.exit_ts, t.entry_order_id))
    assert [(t.entry_order_id, t.exit_order_id, t.exit_reason, t.entry_ts, t.exit_ts) for t in bt] == \
           [(r["entry_order_id"], r["exit_order_id"], r["exit_reason"], parse_iso(r["entry_ts"]),
             parse_iso(r["exit_ts"])) for r in rows]
    for t, r in zip(bt, rows):
        assert t.qty == pytest.approx(r["qty"], rel=1e-6)
        assert t.entry_price == pytest.approx(r["entry_price"], rel=1e-9)
        assert t.exit_price == pytest.approx(r["exit_price"], rel=1e-9)
        assert t.pnl == pytest.approx(r["pnl"], rel=1e-6, abs=1e-6)


def test_vectorised_features_match_the_live_window_bar_by_bar():
    """The backtest's whole-history features give the same decisions as the live 256-bar window."""
    s = load_settings({}, None)
    p = EvalParams.from_settings(s)
    nar = narrative_score([], START)
    checked = 0
    for sym in ("BTCUSDT", "ETHUSDT", "DOGEUSDT"):
        df = load_candles(bundled_dir() / f"candles_1h_{sym}.csv")
        h, lo, c, v = (df[k].to_numpy(dtype=float) for k in ("high", "low", "close", "volume"))
        full = feature_table(h, lo, c, v, 365 * 24)
        for i in range(400, 2400, 7):
            w = slice(i - 255, i + 1)
            win = feature_table(h[w], lo[w], c[w], v[w], 365 * 24)
            a, b = full.row(i), win.row(255)
            # rolling-window features: the same numbers on both paths
            for name in ("volume_z", "annual_vol", "participation"):
                assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9, abs=1e-12), (sym, i, name)
            # z-scores of EMA/MACD: the EMA seed of the 256-bar window has decayed to ~1e-8, which a z-score of
            # a near-zero spread amplifies to ~1e-6
            for name in ("macd_hist_z", "ema_spread_z"):
                assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-4, abs=1e-6), (sym, i, name)
            assert a.rsi == pytest.approx(b.rsi, rel=1e-6) and a.atr == pytest.approx(b.atr, rel=1e-6)
            assert np.allclose(a.horizon_scores, b.horizon_scores, rtol=1e-9, atol=1e-12)
            sa, sb = decide(sym, START, c[i], a, nar, p), decide(sym, START, c[i], b, nar, p)
            assert (sa.action, sa.direction, sa.regime.label, sa.regime.volatility) == \
                   (sb.action, sb.direction, sb.regime.label, sb.regime.volatility), (sym, i)
            assert sa.quality == pytest.approx(sb.quality, abs=1e-5)
            assert sa.conviction == pytest.approx(sb.conviction, abs=1e-5)
            checked += 1
    assert checked > 800


def test_accounting_and_determinism(tmp_path):
    out1, out2 = tmp_path / "a", tmp_path / "b"
    for out in (out1, out2):
        r = cli("backtest", "--agent", "hybrid", "--from", "2022-03-01", "--to", "2022-03-20", "--out", str(out),
                "--no-plot")
        assert r.returncode == 0, r.stderr
    assert (out1 / "trades.csv").read_bytes() == (out2 / "trades.csv").read_bytes()
    assert (out1 / "metrics.json").read_bytes() == (out2 / "metrics.json").read_bytes()
    import csv
    import json
    m = json.loads((out1 / "metrics.json").read_text())
    trades = list(csv.DictReader(open(out1 / "trades.csv")))
    equity = list(csv.DictReader(open(out1 / "equity.csv")))
    assert m["trades"] == len(trades) > 0
    # spot: equity at every step = cash + marked positions
    for row in equity:
        assert float(row["equity"]) == pytest.approx(float(row["cash"]) + float(row["exposure"]), rel=1e-12)
    # every position closed at the end: sum of trade P&L (net of fees and funding) = equity change
    assert sum(float(t["pnl"]) for t in trades) == pytest.approx(float(equity[-1]["equity"]) - m["initial_capital"],
                                                               abs=1e-6)
    assert m["final_equity"] == pytest.approx(float(equity[-1]["equity"]))


def test_futures_accounting(tmp_path):
    s = settings(tmp_path)
    res = run_backtest(s, "futures", ["BTC/USD", "ETH/USD", "SOL/USD"], CachedScorer(VaderScorer()),
                       start=datetime(2022, 5, 1, tzinfo=timezone.utc), end=datetime(2022, 5, 20, tzinfo=timezone.utc))
    assert res.trades and {t.side.value for t in res.trades} == {"long", "short"}
    assert sum(t.pnl for t in res.trades) == pytest.approx(res.equity[-1].equity - res.initial_capital, abs=1e-6)
    assert res.equity[-1].positions == 0
    assert any(t.funding != 0 for t in res.trades)


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    e.update(env)
    return subprocess.run([sys.executable, "-m", "tracer.cli", *args], env=e, capture_output=True, text=True,
                          timeout=300)


def test_set_overrides_and_bad_set(tmp_path):
    r = cli("backtest", "--from", "2022-03-01", "--to", "2022-03-10", "--out", str(tmp_path), "--no-plot",
            "--set", "TB_MAX_POSITIONS=1")
    assert r.returncode == 0, r.stderr
    import csv
    assert max(int(row["positions"]) for row in csv.DictReader(open(tmp_path / "equity.csv"))) == 1
    bad = cli("backtest", "--set", "TB_MAX_POSITONS=1", "--out", str(tmp_path))
    assert bad.returncode == 2 and "TB_MAX_POSITONS" in bad.stderr
    worse = cli("backtest", "--set", "TB_MAX_POSITIONS=lots", "--out", str(tmp_path))
    assert worse.returncode == 2 and "TB_MAX_POSITIONS" in worse.stderr


def test_foreign_data_folder_one_minute_bars(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    lines = (ROOT / "bench" / "data" / "candles_1m_BTCUSDT.csv").read_text().splitlines(keepends=True)
    (data / "candles_1m_BTCUSDT.csv").write_text("".join(lines[:3001]))
    r = cli("backtest", "--data", str(data), "--out", str(tmp_path / "out"), "--no-plot")
    assert r.returncode == 0, r.stderr
    import json
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["interval_s"] == 60 and m["symbols"] == ["BTC/USD"]
    assert m["bar_steps"] == 3000 - 180 + 1          # after the TB_MIN_BARS warm-up


@pytest.mark.parametrize("line,bad,problem", [
    (5, "2022-01-01T04:00:00Z,1,abc,1,1,1", "high 'abc' is not a finite number"),
    (3, "yesterday,1,1,1,1,1", "timestamp 'yesterday' is not an ISO 8601 time"),
    (4, "2022-01-01T00:30:00Z,1,1,1,1,1", "is not after the previous row"),
    (6, "2022-01-01T04:00:00Z,1,0.5,0.9,1,1", "high is below low"),
])
def test_malformed_csv_names_file_line_and_problem(tmp_path, line, bad, problem):
    rows = ["timestamp,open,high,low,close,volume"] + \
           [f"2022-01-01T{h:02d}:00:00Z,1,1.1,0.9,1,5" for h in range(10)]
    rows[line - 1] = bad
    (tmp_path / "candles_1h_BTCUSDT.csv").write_text("\n".join(rows) + "\n")
    r = cli("backtest", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--no-plot")
    assert r.returncode == 2
    assert f"candles_1h_BTCUSDT.csv:{line}: " in r.stderr and problem in r.stderr, r.stderr
