"""The cockpit's REST API on a real uvicorn (127.0.0.1) over a DB that real paper agents wrote: every endpoint
refuses a request without the token, every POST one without the CSRF header, and the answers are the DB's."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cockpit_env import TOKEN, free_port, web_settings
from envs import process_env
from tracer.store import Store
from tracer.web.auth import csrf_value, ensure_token

BEARER = {"Authorization": f"Bearer {TOKEN}"}
POST = {**BEARER, "X-CSRF-Token": csrf_value(TOKEN)}
PAGES = ["/", "/docs", "/symbol?symbol=BTC/USD", "/trade/1", "/signals", "/research", "/backtests", "/static/cockpit.js",
         "/static/cockpit.css"]


def client(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=20, follow_redirects=False)


def concrete(path: str) -> str:
    return path.replace("{agent}", "hybrid").replace("{order_id}", "1").replace("{run_id}", "1")


def test_every_endpoint_and_page_refuses_a_request_without_the_token(server):
    with client(server) as c:
        schema = c.get("/api/v1/openapi.json", headers=BEARER).json()
        ops = [(m.upper(), concrete(p)) for p, item in schema["paths"].items() for m in item]
        assert len(ops) >= 20
        for method, path in ops + [("GET", "/api/v1/openapi.json"), ("POST", "/logout"), ("POST", "/")]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                            {"Cookie": "tb_session=" + TOKEN}):
                r = c.request(method, path, headers=headers, json={"agent": "all", "symbol": "all"})
                assert r.status_code == 401, (method, path, headers, r.status_code)
                assert r.json() == {"detail": "missing or wrong token"}
        for path in PAGES:
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/login", path
        # another Host (DNS rebinding) is refused even with the token
        assert c.get("/api/v1/agents", headers={**BEARER, "Host": "evil.example:80"}).status_code == 400
        assert c.get("/login").status_code == 200 and "TB_WEB_TOKEN" in c.get("/login").text


def test_reads_answer_with_the_db_numbers(server):
    st = Store(server.settings.db_path)
    c_ = st.conn
    with client(server) as c:
        agents = {a["agent"]: a for a in c.get("/api/v1/agents", headers=BEARER).json()}
        assert set(agents) == {"hybrid", "futures"}
        for name, a in agents.items():
            run = st.last_run(name)
            n, pnl, _ = st.trade_stats(name)
            assert a["equity"] == pytest.approx(run["equity"]) and a["cycle"] == run["cycle"] == 40
            assert a["total_trades"] == n and a["total_pnl"] == pytest.approx(pnl)
            eq = c.get(f"/api/v1/agents/{name}/equity", headers=BEARER).json()["points"]
            assert len(eq) == 40 and eq[-1]["equity"] == pytest.approx(run["equity"])
        assert agents["hybrid"]["total_trades"] >= 1
        trades = c.get("/api/v1/trades", headers=BEARER).json()
        assert len(trades) == c_.execute("SELECT COUNT(*) FROM trades").fetchone()[0]
        sym = trades[0]["symbol"]
        only = c.get("/api/v1/trades", headers=BEARER, params={"agent": "hybrid", "symbol": sym, "limit": 2}).json()
        assert only and len(only) <= 2 and {(t["agent"], t["symbol"]) for t in only} == {("hybrid", sym)}
        assert c.get("/api/v1/trades", headers=BEARER, params={"since": "2030-01-01T00:00:00Z"}).json() == []
        assert c.get("/api/v1/trades", headers=BEARER, params={"limit": 0}).status_code == 422
        pos = c.get("/api/v1/positions", headers=BEARER).json()
        assert len(pos) == c_.execute("SELECT COUNT(*) FROM positions WHERE status='open'").fetchone()[0]
        sigs = c.get("/api/v1/signals", headers=BEARER, params={"agent": "futures", "limit": 5}).json()
        assert len(sigs) == 5 and all(s["agent"] == "futures" and "quality" in s for s in sigs)
        # one order's explanation: the same record as tracer explain
        t = trades[0]
        ex = c.get(f"/api/v1/orders/{t['entry_order_id']}", headers=BEARER).json()
        trail = st.order_trail(t["entry_order_id"])
        assert ex["signal"]["id"] == trail["signal"]["id"] and ex["signal"]["decision"] == "enter"
        assert ex["orders"][0]["order"]["client_order_id"] == t["entry_order_id"]
        assert ex["orders"][0]["fills"][0]["price"] == pytest.approx(trail["orders"][0]["fills"][0]["price"])
        assert ex["orders"][0]["trades"][0]["pnl"] == pytest.approx(t["pnl"]) and isinstance(ex["signal"]["gates"], dict)
        assert c.get("/api/v1/orders/nope", headers=BEARER).status_code == 404
        candles = c.get("/api/v1/candles", headers=BEARER, params={"symbol": sym, "limit": 100}).json()
        assert len(candles["bars"]) == 100 and candles["markers"]
        [entry] = [m for m in candles["markers"] if m["order_id"] == t["entry_order_id"]]
        assert entry["price"] == pytest.approx(trail["orders"][0]["fills"][0]["price"]) and entry["purpose"] == "entry"
        h = c.get("/api/v1/health", headers=BEARER).json()
        assert {"level", "status", "checks"} <= set(h) and any(ch["name"] == "db" or "process" in ch["name"]
                                                               for ch in h["checks"])
        bts = {b["name"]: b for b in c.get("/api/v1/backtests", headers=BEARER).json()}
        assert set(bts) == {"hybrid-jan", "futures-jan"} and "sharpe" in bts["hybrid-jan"]["metrics"]
        curve = c.get("/api/v1/backtests/equity", headers=BEARER, params={"name": "hybrid-jan"}).json()["points"]
        lines = (server.folder / "backtests" / "hybrid-jan" / "equity.csv").read_text().splitlines()
        assert curve[-1]["equity"] == pytest.approx(float(lines[-1].split(",")[1]))
        assert c.get("/api/v1/backtests/equity", headers=BEARER, params={"name": "../state"}).status_code == 404
        [scan] = c.get("/api/v1/research/universe-runs", headers=BEARER).json()
        assert scan["as_of"] == "2022-01-05T00:00:00Z" and scan["assets"] >= 5
        one = c.get(f"/api/v1/research/universe-runs/{scan['id']}", headers=BEARER).json()
        n_calls = c_.execute("SELECT COUNT(*) FROM research_calls WHERE universe_run_id=?", (scan["id"],)).fetchone()[0]
        assert len(one["calls"]) == n_calls > 0 and all(x["hit"] in (0, 1) for x in one["calls"])
        assert one["digest"] and one["calls"][0]["symbol"] in one["digest"]
        assert c.get("/api/v1/research/universe-runs/999", headers=BEARER).status_code == 404
        [ev] = c.get("/api/v1/research/evals", headers=BEARER).json()
        assert ev["evaluated"] == n_calls and isinstance(ev["summary"], dict)
        assert isinstance(c.get("/api/v1/alerts", headers=BEARER).json(), list)
        assert set(c.get("/api/v1/controls", headers=BEARER).json()) == {"agents", "requests"}
    st.close()


def test_posts_need_the_csrf_header_and_write_the_db_as_telegram_does(server):
    st = Store(server.settings.db_path)
    with client(server) as c:
        for headers in (BEARER, {**BEARER, "X-CSRF-Token": "wrong"}, {**POST, "Origin": "http://evil.example"}):
            r = c.post("/api/v1/controls/stop-entry", headers=headers, json={"agent": "hybrid"})
            assert r.status_code == 403, headers
        assert not st.is_paused("hybrid")
        r = c.post("/api/v1/controls/stop-entry", headers=POST, json={"agent": "hybrid"})
        assert r.status_code == 200 and r.json()["ok"] and "paused hybrid" in r.json()["message"]
        row = st.control_of("hybrid")
        assert row["paused"] == 1 and row["reason"] == "stopentry by web"
        assert "resumed" in c.post("/api/v1/controls/resume", headers=POST, json={"agent": "all"}).json()["message"]
        assert not st.is_paused("hybrid") and not st.is_paused("futures")
        assert c.post("/api/v1/controls/pause", headers=POST, json={"agent": "nobody"}).status_code == 422
        r = c.post("/api/v1/controls/reload", headers=POST, json={"agent": "futures"}).json()
        [req] = st.pending_requests("futures", "reload")
        assert r["request_ids"] == [req["id"]] and req["actor"] == "web"
        held = st.open_positions("hybrid")[0]
        r = c.post("/api/v1/controls/force-exit", headers=POST, json={"symbol": held.symbol, "agent": "hybrid"}).json()
        assert r["ok"] and r["agents"] == ["hybrid"]
        [req] = st.pending_requests("hybrid", "force_exit")
        assert req["target"] == held.symbol and req["actor"] == "web"
        r = c.post("/api/v1/controls/force-exit", headers=POST, json={"symbol": "ZZZ/USD"}).json()
        assert not r["ok"] and "no open position" in r["message"]
        assert c.post("/api/v1/controls/force-exit", headers=POST, json={"symbol": "<script>"}).status_code == 422
    st.close()


def test_login_sets_a_strict_httponly_session_and_the_cookie_needs_the_csrf_cookie_too(server):
    with client(server) as c:
        r = c.post("/login", data={"token": "wrong"})
        assert r.status_code == 401 and "wrong token" in r.text and "tb_session" not in r.headers.get("set-cookie", "")
        r = c.post("/login", data={"token": TOKEN})
        assert r.status_code == 303
        cookies = r.headers.get_list("set-cookie")
        session = next(x for x in cookies if x.startswith("tb_session="))
        assert "HttpOnly" in session and "SameSite=strict" in session.replace("Strict", "strict")
        assert TOKEN not in " ".join(cookies)                      # the cookie holds a derived value, never the token
        assert c.get("/").status_code == 200 and c.get("/api/v1/agents").status_code == 200
        csrf = c.get("/api/v1/session").json()["csrf_token"]
        assert c.post("/api/v1/controls/pause", json={"agent": "hybrid"}).status_code == 403
        ok = c.post("/api/v1/controls/pause", json={"agent": "hybrid"}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200
        c.cookies.delete("tb_csrf")
        assert c.post("/api/v1/controls/resume", json={"agent": "hybrid"},
                      headers={"X-CSRF-Token": csrf}).status_code == 403


def test_forced_exit_from_the_api_is_carried_out_by_the_agent(server):
    from tracer.agents.hybrid import build
    st = Store(server.settings.db_path)
    held = st.open_positions("hybrid")[0]
    with client(server) as c:
        assert c.post("/api/v1/controls/force-exit", headers=POST,
                      json={"symbol": held.symbol, "agent": "hybrid"}).json()["ok"]
    loop = build(web_settings(server.folder), __import__("logging").getLogger("test-web"))
    loop.run(cycles=2)
    loop.store.close()
    [t] = st.conn.execute("SELECT * FROM trades WHERE entry_order_id=?", (held.entry_order_id,)).fetchall()
    assert t["exit_reason"] == "force_exit"
    with client(server) as c:
        trades = c.get("/api/v1/trades", headers=BEARER, params={"symbol": held.symbol}).json()
        assert any(x["exit_reason"] == "force_exit" for x in trades)
        reqs = c.get("/api/v1/controls", headers=BEARER).json()["requests"]
        assert reqs[0]["status"] == "done" and reqs[0]["kind"] == "force_exit"
    st.close()


def test_ensure_token_writes_a_user_only_env_and_keeps_the_rest(tmp_path):
    env = tmp_path / ".env"
    env.write_text("TB_PROFILE=phase1c\nTB_WEB_TOKEN=\n")
    tok, new = ensure_token(env, "")
    assert new and len(tok) >= 40 and env.read_text() == f"TB_PROFILE=phase1c\nTB_WEB_TOKEN={tok}\n"
    assert ensure_token(env, tok) == (tok, False)
    fresh = tmp_path / "new.env"
    tok2, _ = ensure_token(fresh, "")
    assert fresh.read_text() == f"TB_WEB_TOKEN={tok2}\n" and (fresh.stat().st_mode & 0o777) == 0o600


def test_tracer_web_generates_its_token_and_serves_on_localhost_only(seeded, tmp_path):
    """Started with its output into a pipe (a log), the new token is written to .env and never printed."""
    port = free_port()
    env_file = tmp_path / ".env"
    env_file.write_text(f"TB_DB_PATH={seeded / 'state' / 'tracer.db'}\n")
    env = process_env(tmp_path)
    env.pop("TB_DB_PATH")
    tracer = Path(sys.executable).with_name("tracer")
    p = subprocess.Popen([str(tracer), "--env-file", str(env_file), "web", "--port", str(port)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        token = ""
        deadline = time.time() + 30
        while time.time() < deadline:
            got = dict(x.split("=", 1) for x in env_file.read_text().split())
            token = got.get("TB_WEB_TOKEN", "")
            if token:
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/api/v1/agents",
                                  headers={"Authorization": f"Bearer {token}"}, timeout=2)
                    if r.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        assert r.status_code == 200 and {a["agent"] for a in r.json()} == {"hybrid", "futures"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/agents", timeout=2).status_code == 401
        import psutil
        listening = {c.laddr.ip for c in psutil.Process(p.pid).net_connections() if c.status == "LISTEN"}
        assert listening == {"127.0.0.1"}
    finally:
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=20)
    assert token not in out and "written to" in out and f"grep ^TB_WEB_TOKEN= {env_file}" in out
    assert (env_file.stat().st_mode & 0o777) == 0o600
    for f in tmp_path.rglob("*.log"):
        assert token not in f.read_text()
    assert os.environ.get("TB_WEB_TOKEN") is None


def test_an_order_id_of_many_digits_is_a_404_not_a_server_error(tmp_path):
    """An all-digit id too large for SQLite's INTEGER (a venue's order id pasted in) is no row id: find_order used to
    bind int(id) and SQLite raised OverflowError (500); the same fault wedged Telegram's /explain."""
    from fastapi.testclient import TestClient

    from tracer.web.app import create_app
    s = web_settings(tmp_path)
    st = Store(s.db_path)
    assert st.find_order("99999999999999999999") is None and st.find_order(str(2**63 - 1)) is None
    assert st.find_order(str(2**63)) is None and st.find_order("²") is None      # not ASCII digits: no int()
    st.close()
    with TestClient(create_app(s, TOKEN), raise_server_exceptions=False) as c:
        assert c.get("/api/v1/orders/12345", headers=BEARER).status_code == 404
        for big in ("99999999999999999999", str(2**63)):
            r = c.get(f"/api/v1/orders/{big}", headers=BEARER)
            assert r.status_code == 404, (r.status_code, r.text[:200])
            assert c.get(f"/trade/{big}", headers=BEARER).status_code == 404


def test_last_alerts_list_each_message_once_with_its_channels_delivery(server):
    """Console, Discord and Telegram on: one alert is one outbox row per channel; /api/v1/alerts and the overview's
    'Last alerts' list it once, with each channel's delivery."""
    from tracer.config import load_settings
    from tracer.notify import outbox
    s = load_settings({"TB_DB_PATH": str(server.settings.db_path), "TB_LOG_DIR": str(server.folder / "logs"),
                       "TB_STATE_DIR": str(server.folder / "state"), "TB_NOTIFY_CONSOLE": "true",
                       "TB_DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/abcdefghijklmnopqrstuvwxyz",
                       "TB_TELEGRAM_BOT_TOKEN": "1:abcdefghijklmnop", "TB_TELEGRAM_CHAT_ID": "99"},
                      dotenv_path=None)
    st = Store(s.db_path)
    with st.transaction():
        outbox.enqueue(st, s, "kill_switch", "🛑 daily loss stop 2022-01-02: no new entries", "hybrid")
        outbox.enqueue(st, s, "agent_error", "🚨 agent error: RuntimeError: boom", "futures")
        outbox.enqueue(st, s, "agent_error", "🚨 agent error: RuntimeError: boom", "futures")    # again, later
    st.close()
    with client(server) as c:
        got = c.get("/api/v1/alerts?limit=10", headers=BEARER).json()
        page = c.get("/", headers=BEARER).text
    assert [a["kind"] for a in got] == ["agent_error", "agent_error", "kill_switch"], got
    assert sorted(got[0]["delivery"].split()) == ["console:pending", "discord:pending", "telegram:pending"]
    assert page.count("daily loss stop 2022-01-02") == 1
