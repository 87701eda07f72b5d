"""End to end: the real hybrid agent process on the bundled data, a real SQLite file, kill -9 and restart."""
from __future__ import annotations

import io
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from tracer.cli import explain
from tracer.store import Store
from envs import agent_env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "hybrid_crypto_trader.py"
CYCLES = 600
# the full run starts in February 2022: before it the default's market filter (BTC below its 20-day mean)
# refuses nearly every long, and 600 cycles from 2022-01-10 close no trade
FULL_START = "2022-02-01T00:00:00Z"



def run_agent(tmp: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp, env=env or agent_env(tmp),
                          capture_output=True, text=True, timeout=timeout)


def db(tmp: Path) -> sqlite3.Connection:
    c = sqlite3.connect(tmp / "state" / "tracer.db")
    c.row_factory = sqlite3.Row
    return c


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    r = run_agent(tmp, "--cycles", str(CYCLES), env=agent_env(tmp, TB_REPLAY_START=FULL_START))
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp, r


def test_600_cycles_trade_and_every_order_explains_itself(full_run):
    tmp, r = full_run
    c = db(tmp)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert c.execute("SELECT COUNT(*) FROM runs WHERE agent='hybrid'").fetchone()[0] == CYCLES
    n_orders = c.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    n_fills = c.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
    n_trades = c.execute("SELECT COUNT(*) FROM trades").fetchone()[0]
    assert n_orders >= 10 and n_fills >= 10 and n_trades >= 5, (n_orders, n_fills, n_trades)
    # exactly one signal row per symbol per cycle (9 symbols), each with a decision and a reason
    assert c.execute("SELECT COUNT(*) FROM signals").fetchone()[0] == CYCLES * 9
    assert c.execute("SELECT COUNT(*) FROM signals WHERE decision_reason='' OR reason=''").fetchone()[0] == 0
    # orders are never left dangling: every one is filled, rejected or canceled by the end (bar the last cycle's)
    last_run = c.execute("SELECT MAX(id) FROM runs").fetchone()[0]
    open_old = c.execute("SELECT COUNT(*) FROM orders WHERE state IN ('new','submitted') AND run_id<?",
                         (last_run,)).fetchone()[0]
    assert open_old == 0
    # cash is consistent with the fills: initial - buys - fees + sells
    flows = c.execute("SELECT COALESCE(SUM(CASE side WHEN 'buy' THEN -qty*price ELSE qty*price END - fee),0) "
                      "FROM fills").fetchone()[0]
    cash = c.execute("SELECT cash, initial_capital FROM accounts WHERE agent='hybrid'").fetchone()
    assert cash["cash"] == pytest.approx(cash["initial_capital"] + flows, rel=1e-9)
    # closed trades' P&L matches their fills
    for t in c.execute("SELECT * FROM trades"):
        fe = c.execute("SELECT price, qty, fee FROM fills WHERE client_order_id=?", (t["entry_order_id"],)).fetchone()
        fx = c.execute("SELECT price, qty, fee FROM fills WHERE client_order_id=?", (t["exit_order_id"],)).fetchone()
        assert t["pnl"] == pytest.approx((fx["price"] - fe["price"]) * fe["qty"] - fe["fee"] - fx["fee"], rel=1e-9)
    # every order explains itself from the DB: signal, scores, regime, gates, sizing (entries), fills, exit
    store = Store(tmp / "state" / "tracer.db")
    try:
        for o in c.execute("SELECT * FROM orders"):
            buf = io.StringIO()
            assert explain(store, Console(file=buf, width=200), o["client_order_id"]) == 0
            out = buf.getvalue()
            assert o["signal_id"] is not None, o["client_order_id"]
            for word in ("signal quality", "conviction", "regime", "gates", "decision", o["client_order_id"]):
                assert word in out, (word, o["client_order_id"])
            # the divergence is a score, printed as one (not 0.42395366781936444)
            assert re.search(r"divergence\W+[+-]\d+\.\d{3} \(trigger \d+\.\d{3}\)", out), out
            if o["purpose"] == "entry":
                assert '"var"' in out and "size_fraction" in out
            if o["state"] == "filled":
                assert "fill:" in out
    finally:
        store.close()
    # structured log lines with UTC ISO timestamps
    lines = (tmp / "logs" / "hybrid.log").read_text().splitlines()
    assert lines and all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR|DEBUG) hybrid event=", ln)
                         for ln in lines)
    assert "event=summary" in lines[-1]


def test_exit_rules_and_risk_blocks_are_recorded(full_run):
    tmp, _ = full_run
    c = db(tmp)
    reasons = {r[0] for r in c.execute("SELECT DISTINCT exit_reason FROM trades")}
    assert reasons & {"stop_loss", "trailing_stop", "take_profit", "time_stop", "signal"}
    rules = {r[0] for r in c.execute("SELECT DISTINCT rule FROM risk_events")}
    assert rules, "600 cycles should hit at least one risk limit (the market filter among them)"
    for r in c.execute("SELECT * FROM risk_events"):
        assert r["signal_id"] is not None and r["detail_json"].startswith("{")
    # the daily trade cap holds per UTC day of the replay clock
    per_day = c.execute("SELECT substr(created_at,1,10) d, COUNT(*) n FROM orders WHERE purpose='entry' "
                        "AND state!='rejected' GROUP BY d").fetchall()
    assert max(r["n"] for r in per_day) <= 8


def test_kill_9_mid_run_and_restart_gives_the_same_orders(full_run, tmp_path):
    """Crash safety: SIGKILL at an arbitrary point, restart, and the result equals an uninterrupted run."""
    full_tmp, _ = full_run
    end_clock = db(full_tmp).execute("SELECT MAX(clock) FROM runs").fetchone()[0]
    env = agent_env(tmp_path, TB_REPLAY_START=FULL_START, TB_REPLAY_END=end_clock)
    proc = subprocess.Popen([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dbfile = tmp_path / "state" / "tracer.db"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline:
        time.sleep(0.2)
        if dbfile.exists():
            try:
                done = sqlite3.connect(dbfile, timeout=1).execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done >= 250:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 250 <= done < CYCLES, done
    r = run_agent(tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "event=resume" in (tmp_path / "logs" / "hybrid.log").read_text()

    a, b = db(full_tmp), db(tmp_path)
    assert b.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    q_orders = "SELECT client_order_id, side, qty, state FROM orders ORDER BY client_order_id"
    assert [tuple(x) for x in b.execute(q_orders)] == [tuple(x) for x in a.execute(q_orders)]
    q_trades = "SELECT entry_order_id, exit_order_id, exit_reason, round(pnl, 6) FROM trades ORDER BY entry_order_id"
    assert [tuple(x) for x in b.execute(q_trades)] == [tuple(x) for x in a.execute(q_trades)]
    assert b.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == CYCLES
    q_cash = "SELECT round(cash, 6) FROM accounts"
    assert b.execute(q_cash).fetchone()[0] == a.execute(q_cash).fetchone()[0]


def test_sigterm_finishes_the_cycle_and_exits_0(tmp_path):
    env = agent_env(tmp_path, TB_REPLAY_INTERVAL_S="0.05")
    proc = subprocess.Popen([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "logs" / "hybrid.log"
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and "event=cycle" in log.read_text()):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    text = log.read_text()
    assert "event=signal name=SIGTERM" in text and "event=summary" in text
    c = db(tmp_path)
    assert c.execute("SELECT status FROM heartbeats WHERE agent='hybrid'").fetchone()[0] == "stopped"
    assert c.execute("SELECT COUNT(*) FROM runs WHERE finished_at IS NULL").fetchone()[0] == 0


def _started(tmp_path, env, **kw):
    log = tmp_path / "logs" / "hybrid.log"
    seen = len(log.read_text()) if log.exists() else 0       # this process's own first cycle
    proc = subprocess.Popen([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kw)
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and "event=cycle" in log.read_text()[seen:]):
        time.sleep(0.1)
    return proc, log


def test_a_background_agent_outlives_the_terminals_ctrl_c_and_a_hang_up_stops_one_cleanly(tmp_path):
    """The start script starts its agents with ``nohup ... &``: SIGINT and SIGHUP ignored. They share the terminal's
    process group, so a Ctrl-C there (a ``tail`` after the start) reached them and they stopped "cleanly" with
    nothing to restart them; an ignored signal now stays ignored. Run in a terminal, a hang-up (the window closed)
    stops an agent like SIGTERM: the cycle finished, the heartbeat "stopped"."""
    env = agent_env(tmp_path, TB_REPLAY_INTERVAL_S="0.05")

    def background():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc, log = _started(tmp_path, env, preexec_fn=background)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert proc.poll() is None and "event=signal" not in log.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    proc, log = _started(tmp_path, env)                    # in a terminal
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 0
    assert "event=signal name=SIGHUP" in log.read_text()
    assert db(tmp_path).execute("SELECT status FROM heartbeats WHERE agent='hybrid'").fetchone()[0] == "stopped"


def test_a_second_copy_of_a_running_agent_refuses_to_start(tmp_path):
    """Before, a direct run beside the start script's agent wrote the same DB: a UNIQUE error in the live agent's
    log, or the live agent crashing on it."""
    proc, log = _started(tmp_path, agent_env(tmp_path, TB_REPLAY_INTERVAL_S="0.05"))
    try:
        before = log.read_text()
        r = run_agent(tmp_path, "--once")
        assert r.returncode == 2
        assert "another copy runs" in r.stderr and f"pid {proc.pid}" in r.stderr and "--stop" in r.stderr
        assert proc.poll() is None and "Traceback" not in log.read_text()[len(before):]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert run_agent(tmp_path, "--once").returncode == 0     # the lock goes with its process


def test_bad_config_refuses_to_start_naming_the_variable(tmp_path):
    r = run_agent(tmp_path, "--once", env=agent_env(tmp_path, TB_MAX_POSITIONS="five"))
    assert r.returncode == 2
    assert "TB_MAX_POSITIONS" in r.stderr and "'five'" in r.stderr and "allowed" in r.stderr
    assert not (tmp_path / "state" / "tracer.db").exists()


def _eth_with_a_hole(tmp_path: Path) -> Path:
    """BTC as bundled; ETH without the bars opening 2022-01-09 20:00-22:00 (a 3-bar hole); no headlines.csv."""
    data = tmp_path / "data"
    data.mkdir()
    bundled = ROOT / "tracer" / "data" / "bundled"
    (data / "candles_1h_BTCUSDT.csv").write_text((bundled / "candles_1h_BTCUSDT.csv").read_text())
    lines = (bundled / "candles_1h_ETHUSDT.csv").read_text().splitlines(keepends=True)
    gap_at = next(i for i, ln in enumerate(lines) if ln.startswith("2022-01-09T20:00:00Z"))
    (data / "candles_1h_ETHUSDT.csv").write_text("".join(lines[:gap_at] + lines[gap_at + 3:]))
    return data


def test_bad_market_data_is_skipped_with_a_reason(tmp_path):
    """A symbol with a hole longer than TB_MAX_GAP_BARS is never traded; the skip and its reason are in the
    DB, and the outage is alerted once."""
    data = _eth_with_a_hole(tmp_path)
    bundled = ROOT / "tracer" / "data" / "bundled"
    env = agent_env(tmp_path, TB_DATA_DIR=str(data), TB_HEADLINES_PATH=str(bundled / "headlines.csv"),
                    TB_SYMBOLS="BTC/USD,ETH/USD", TB_MAX_GAP_BARS="2")
    r = run_agent(tmp_path, "--cycles", "5", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    c = db(tmp_path)
    skips = c.execute("SELECT symbol, decision_reason FROM signals WHERE decision='skipped'").fetchall()
    assert len(skips) == 5 and all(
        s["symbol"] == "ETH/USD" and s["decision_reason"] ==
        "bad_data: gap: 2022-01-09T20:00:00Z -> 2022-01-09T23:00:00Z (3 bars > 2 allowed)" for s in skips)
    assert c.execute("SELECT COUNT(*) FROM orders WHERE symbol='ETH/USD'").fetchone()[0] == 0
    assert c.execute("SELECT COUNT(*) FROM signals WHERE symbol='BTC/USD' AND decision!='skipped'").fetchone()[0] == 5
    alerts = c.execute("SELECT message FROM notifications WHERE kind='data_outage'").fetchall()
    assert len(alerts) == 1 and "3 bars missing from 2022-01-09T20:00:00Z" in alerts[0]["message"]


def test_short_hole_and_no_headlines_replay_price_only(tmp_path):
    """The same 3-bar hole is within the default TB_MAX_GAP_BARS: ETH is evaluated on the bars that exist,
    the hole recorded; the folder has no headlines.csv, so the replay is price-only, with a logged note."""
    data = _eth_with_a_hole(tmp_path)
    r = run_agent(tmp_path, "--cycles", "5", env=agent_env(tmp_path, TB_DATA_DIR=str(data),
                                                           TB_SYMBOLS="BTC/USD,ETH/USD"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "event=headlines_missing" in r.stderr + "".join(p.read_text() for p in (tmp_path / "logs").glob("*"))
    c = db(tmp_path)
    rows = c.execute("SELECT symbol, decision, headline_count, inputs_json FROM signals").fetchall()
    assert len(rows) == 10 and all(x["decision"] != "skipped" and x["headline_count"] == 0 for x in rows)
    hole = "2022-01-09T20:00:00Z -> 2022-01-09T23:00:00Z (3 bars)"
    assert [json.loads(x["inputs_json"])["gaps"] for x in rows] == \
           [[hole] if x["symbol"] == "ETH/USD" else [] for x in rows]
    notes = [x["note"] for x in c.execute("SELECT note FROM runs")]
    assert notes == [f"gap accepted: {hole} in ETH/USD"] * 5
