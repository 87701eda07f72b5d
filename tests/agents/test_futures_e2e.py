"""End to end: the real futures agent process on the bundled data; signal parity with the hybrid agent."""
from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from tracer.agents import futures, hybrid
from tracer.explain import explain
from tracer.config import load_settings
from tracer.store import Store

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_hybrid_e2e import agent_env, db  # noqa: E402

CYCLES = 1500


@pytest.fixture(scope="module")
def futures_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("futures")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "high_risk_futures_agent.py"), "--cycles", str(CYCLES)],
                       cwd=tmp, env=agent_env(tmp, TB_PROFILE="phase1c"),   # every exit rule needs the seed's
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp


def test_1500_cycles_long_and_short_every_exit_rule(futures_run):
    c = db(futures_run)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    sides = {r[0] for r in c.execute("SELECT DISTINCT side FROM trades WHERE agent='futures'")}
    assert sides == {"long", "short"}
    reasons = {r[0] for r in c.execute("SELECT DISTINCT exit_reason FROM trades WHERE agent='futures'")}
    assert {"stop_loss", "trailing_stop", "take_profit", "time_stop", "volatility_stop", "signal"} <= reasons, reasons
    # limits held: leverage, positions, trades per UTC day, notional cap, stop inside liquidation
    s = load_settings({"TB_PROFILE": "phase1c"}, None)
    for o in c.execute("SELECT * FROM orders WHERE agent='futures' AND purpose='entry'"):
        assert 1 <= o["leverage"] <= s.futures_max_leverage
        assert o["notional_est"] <= s.futures_max_notional + 1e-6
    per_day = c.execute("SELECT substr(created_at,1,10), COUNT(*) FROM orders WHERE agent='futures' "
                        "AND purpose='entry' AND state!='rejected' GROUP BY 1").fetchall()
    assert max(n for _, n in per_day) <= s.futures_max_trades_per_day
    for p in c.execute("SELECT * FROM positions WHERE agent='futures'"):
        sign = 1 if p["side"] == "long" else -1
        assert sign * (p["entry_price"] - p["stop_loss"]) > 0
        assert sign * (p["stop_loss"] - p["liquidation_price"]) > 0      # the stop sits inside liquidation
    # funding was charged and recorded
    assert c.execute("SELECT COUNT(*) FROM trades WHERE agent='futures' AND funding != 0").fetchone()[0] > 0
    # cash reconciles: wallet = capital + sum(trade pnl) - margin and entry fee of open positions
    acct = c.execute("SELECT * FROM accounts WHERE agent='futures'").fetchone()
    pnl = c.execute("SELECT COALESCE(SUM(pnl),0) FROM trades WHERE agent='futures'").fetchone()[0]
    tied = c.execute("SELECT COALESCE(SUM(margin + entry_fee + funding_paid),0) FROM positions "
                     "WHERE agent='futures' AND status='open'").fetchone()[0]
    assert acct["cash"] == pytest.approx(acct["initial_capital"] + pnl - tied, rel=1e-9)


def test_every_futures_order_explains_itself(futures_run):
    store = Store(futures_run / "state" / "tracer.db")
    try:
        rows = store.conn.execute("SELECT * FROM orders WHERE agent='futures'").fetchall()
        assert rows
        for o in rows:
            buf = io.StringIO()
            assert explain(store, Console(file=buf, width=220), o["client_order_id"]) == 0
            out = buf.getvalue()
            assert o["signal_id"] is not None
            for word in ("signal quality", "conviction", "regime", "leverage", o["client_order_id"]):
                assert word in out, (word, o["client_order_id"])
            if o["purpose"] == "entry" and o["state"] == "filled":
                assert "liquidation price" in out and "isolated margin" in out and "funding paid" in out
                assert "side long" in out or "side short" in out
    finally:
        store.close()


def test_signal_parity_between_agents(tmp_path):
    """Same bars and headlines: both agents compute identical quality, regime and conviction."""
    s = load_settings({"TB_DB_PATH": str(tmp_path / "p.db"), "TB_LOG_DIR": str(tmp_path / "logs")}, dotenv_path=None)
    log = logging.getLogger("parity")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    store = Store(s.db_path)
    loops = [hybrid.build(s, log, store), futures.build(s, log, store)]
    for loop in loops:
        loop.run(cycles=60)
    cols = ("quality", "conviction", "regime", "regime_confidence", "trend_score", "volatility", "annual_vol",
            "volume_regime", "price_score", "narrative", "divergence", "volume_z", "rsi", "atr", "action",
            "headline_count", "scorer_id", "size_fraction")
    q = f"SELECT symbol, ts, {', '.join(cols)} FROM signals WHERE agent=? ORDER BY ts, symbol"
    h = [tuple(r) for r in store.conn.execute(q, ("hybrid",))]
    f = [tuple(r) for r in store.conn.execute(q, ("futures",))]
    store.close()
    assert len(h) == 60 * 9 and h == f
