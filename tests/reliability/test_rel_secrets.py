"""Reliability (issue 10): no secret leaks, and state files are user-only.

A full run with a sentinel in EVERY secret variable (every ``Settings`` field with ``secret=True``): the
futures agent on the fake Binance USD-M venue with the fake Bybit as backup (an auth error, a 5xx, a
signature error and a 418 ban that fails entries over to Bybit), the hybrid agent on the fake Alpaca
venue (a 403, 500s and a lost answer), a forced crash with a traceback (the artifact folder is a file),
notifications on against the fake Discord and Telegram (500s and 429s on their side), the Telegram
listener serving commands (one from a foreign chat), a live cycle whose headlines come from the fake
Perplexity (first key 401) and the fake Alpaca news, and the operator commands ``tracer check-config``,
``tracer status``, ``tracer explain``, ``tracer notify --test`` and ``scripts/health_check.sh --json``.

Then every sentinel (the raw value, and every 8-character window of its distinctive part, so any 8+
character substring) is searched for in: every file under the run's folder (logs, the SQLite DB, WAL,
artifacts, pid/state files; raw bytes), every text value of every DB table, every request the fakes
received (URL, query, headers, body) except the auth fields each venue legitimately needs (Binance
``X-MBX-APIKEY``, Bybit ``X-BAPI-API-KEY``, Alpaca ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY``,
Perplexity ``Authorization``, the Telegram token and the Discord webhook token in their URL paths), every
notification payload Discord and Telegram received, and the stdout/stderr of every process. Zero
expected. Also: every file holding state is created user-only (``mode & 0o077 == 0``).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path


import fakes.discord as fake_discord
from fakes.discord import FakeDiscord
from fakes.alpaca_data import FakeAlpacaData
from fakes.alpaca_trading import FakeAlpacaTrading
from fakes.binance import FakeBinance
from fakes.binance_futures_venue import FakeBinanceFutures
from fakes.bybit_venue import FakeBybit
from fakes.perplexity import FakePerplexity
from fakes.telegram import FakeTelegram
from envs import agent_env
from procs import refused_port
from test_rel_crash import PriceFollower
from tracer.config import Settings

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
HYBRID = ROOT / "scripts" / "hybrid_crypto_trader.py"
FUTURES = ROOT / "scripts" / "high_risk_futures_agent.py"
CHAT_ID = 4242

# the distinctive part of every secret (what is searched for, with all its 8-character windows)
S = {
    "alp_key": "SENTINEL-alpkey-1c2d", "alp_sec": "SENTINEL-alpsec-3e4f",
    "bin_key": "SENTINEL-binkey-5a6b", "bin_sec": "SENTINEL-binsec-7f3a",
    "byb_key": "SENTINEL-bybkey-8c9d", "byb_sec": "SENTINEL-bybsec-0e1f",
    "pplx1": "SENTINEL-pplx1-aa11", "pplx2": "SENTINEL-pplx2-bb22",
    "db_pw": "SENTINEL-dbpw-4f4f", "discord": "SENTINEL-dchook-2b7e", "telegram": "SENTINEL-tgtok-9d1c",
    "web": "SENTINEL-webtok-6e5d",
}
TG_TOKEN = f"987654321:{S['telegram']}"
STORAGE = f"postgresql://tb:{S['db_pw']}@127.0.0.1:9/optuna"


def needles(raw_values: list[str]) -> list[str]:
    out = set(raw_values)
    for core in S.values():
        out.update(core[i:i + 8] for i in range(len(core) - 7))
    return sorted(out, key=len, reverse=True)


class Scanner:
    def __init__(self, raw_values: list[str]):
        self.needles = [n.encode() for n in needles(raw_values)]
        self.places = 0
        self.found: list[tuple[str, str]] = []

    def scan(self, where: str, data: bytes | str) -> None:
        self.places += 1
        b = data.encode("utf-8", "replace") if isinstance(data, str) else data
        for n in self.needles:
            if n in b:
                self.found.append((where, n.decode()))
                return


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return agent_env(tmp, TB_SENTIMENT_SCORER="lexicon", TB_NOTIFY_CONSOLE="true", TB_NOTIFY_POLL_S="0.1",
                     TB_NOTIFY_BACKOFF_S="0.1", TB_NOTIFY_BACKOFF_MAX_S="0.5", TB_NOTIFY_HEARTBEAT_EVERY="5",
                     TB_VENUE_TIMEOUT_S="2", TB_WRITE_ARTIFACTS="true",
                     TB_ARTIFACT_DIR=str(tmp / "state" / "artifacts"),
                     TB_PROFILE="phase1c",    # the seed's frequent orders reach every venue, the backup too
                     **extra)


def test_no_secret_leaks_anywhere_and_state_files_are_user_only(tmp_path, monkeypatch, reliability):
    monkeypatch.setattr(fake_discord, "WEBHOOK_TOKEN", S["discord"])
    procs: list[tuple[str, str, str]] = []      # (what, stdout, stderr)
    tmp = tmp_path
    (tmp / "state").mkdir()
    dbfile = tmp / "state" / "tracer.db"
    figures: dict = {}
    ok = False
    try:
        with FakeDiscord() as dc, FakeTelegram(TG_TOKEN) as tg, \
                FakeBinanceFutures(S["bin_key"], S["bin_sec"], prices={"BTCUSDT": 47000.0, "ETHUSDT": 3700.0,
                                                                        "SOLUSDT": 170.0}) as binance, \
                FakeBybit(S["byb_key"], S["byb_sec"]) as bybit, \
                FakeAlpacaTrading((S["alp_key"], S["alp_sec"]), cash=100_000.0) as alpaca:
            secrets_env = {
                "TB_ALPACA_API_KEY": S["alp_key"], "TB_ALPACA_SECRET_KEY": S["alp_sec"],
                "TB_BINANCE_API_KEY": S["bin_key"], "TB_BINANCE_API_SECRET": S["bin_sec"],
                "TB_BYBIT_API_KEY": S["byb_key"], "TB_BYBIT_API_SECRET": S["byb_sec"],
                "TB_PPLX_API_KEYS": f"{S['pplx1']},{S['pplx2']}", "TB_OPTIMIZE_STORAGE": STORAGE,
                "TB_DISCORD_WEBHOOK_URL": dc.url, "TB_TELEGRAM_BOT_TOKEN": TG_TOKEN, "TB_WEB_TOKEN": S["web"],
            }
            # every secret setting carries a sentinel (a new secret variable must be added here)
            secret_envs = {f.metadata["env"] for f in fields(Settings) if f.metadata["secret"]}
            assert secret_envs == set(secrets_env), secret_envs ^ set(secrets_env)
            raw_values = [v for k, v in secrets_env.items() if k != "TB_PPLX_API_KEYS"] + [S["pplx1"], S["pplx2"]]
            env = _env(tmp, **secrets_env, TB_TELEGRAM_CHAT_ID=str(CHAT_ID), TB_TELEGRAM_BASE_URL=tg.base_url,
                       TB_TELEGRAM_POLL_TIMEOUT_S="1",
                       TB_VENUE_FUTURES="binance", TB_BINANCE_FUTURES_URL=binance.url, TB_BYBIT_URL=bybit.url,
                       TB_FUTURES_BACKUP_VENUE="bybit", TB_FUTURES_SYMBOLS="BTC/USD,ETH/USD,SOL/USD",
                       TB_VENUE_HYBRID="alpaca", TB_ALPACA_TRADING_URL=alpaca.url,
                       TB_SYMBOLS="BTC/USD,ETH/USD,DOGE/USD")

            def run(what: str, cmd: list[str], e: dict[str, str] | None = None, cwd: Path = tmp,
                    ok_codes=(0,), timeout: float = 240) -> subprocess.CompletedProcess:
                t0 = time.monotonic()
                r = subprocess.run(cmd, cwd=cwd, env=e or env, capture_output=True, text=True, timeout=timeout)
                print(f"{what}: rc {r.returncode} in {time.monotonic() - t0:.1f} s")
                procs.append((what, r.stdout, r.stderr))
                assert r.returncode in ok_codes, (what, r.returncode, r.stderr[-3000:])
                return r

            # notification faults on the platforms' side
            dc.script(fake_discord.Reply(500, {"message": "oops"}), fake_discord.Reply(429, {"retry_after": 0.2}))
            tg.script("sendMessage", (500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}),
                      (429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                             "parameters": {"retry_after": 1}}))

            # 1. a forced crash with a traceback: the artifact folder is a file
            (tmp / "not-a-dir").write_text("x")
            r = run("hybrid crash", [PY, str(HYBRID), "--cycles", "3"],
                    {**env, "TB_ARTIFACT_DIR": str(tmp / "not-a-dir"), "TB_REPLAY_START": "2022-06-06T00:00:00Z"},
                    ok_codes=(1,))
            crash_log = (tmp / "logs" / "hybrid.log").read_text()
            assert "agent_error" in crash_log and "Traceback" in crash_log + r.stdout + r.stderr

            # 2. the Telegram listener serves commands (and delivers the outbox) while the agents run
            tg.push_message("/status")
            tg.push_message("/pause futures", chat_id=666, user="mallory")
            tg.push_message("/positions")
            listener = subprocess.Popen([PY, str(ROOT / "scripts" / "telegram_listener.py")], cwd=tmp, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

            # 3. the futures agent on Binance (an auth error, 5xx, a signature error), then banned (418): Bybit
            binance.inject("POST /fapi/v1/order", -2015)                  # auth error on the first order
            binance.inject("/fapi/v2/account", "5xx", times=2)
            binance.inject("/fapi/v2/positionRisk", -1022)                # signature error on a read
            bybit.fail_next("5xx")
            fol = [PriceFollower(binance, dbfile, ("BTC", "ETH", "SOL"), lambda b: b + "USDT"),
                   PriceFollower(bybit, dbfile, ("BTC", "ETH", "SOL"), lambda b: b + "USDT")]
            for f in fol:
                f.start()
            try:
                fenv = {**env, "TB_REPLAY_START": "2022-01-10T10:00:00Z"}
                run("futures on binance", [PY, str(FUTURES), "--cycles", "18"], fenv)
                binance.inject("*", 418, times=None, until_ms=binance.now_ms() + 3_600_000)
                run("futures on bybit", [PY, str(FUTURES), "--cycles", "18"], fenv)
            finally:
                for f in fol:
                    f.stop()
            # 4. the hybrid agent on Alpaca (faults)
            alpaca.inject("POST /v2/orders", "forbidden")
            alpaca.inject("POST /v2/orders", "lost")
            alpaca.inject("GET /v2/account", "500", times=2)
            af = PriceFollower(alpaca, dbfile, ("BTC", "ETH", "DOGE"), lambda b: b + "/USD")
            af.start()
            try:
                run("hybrid", [PY, str(HYBRID), "--cycles", "24"], {**env, "TB_REPLAY_START": "2022-06-06T00:00:00Z"})
            finally:
                af.stop()

            # 5. one live hybrid cycle: bars from the fake Binance spot, headlines from the fake Alpaca news and
            #    the fake Perplexity (the first key answers 401); its own DB (the replay's clock is in 2022)
            now_s = int(time.time())
            with FakeBinance(now_s) as spot, FakeAlpacaData(now_s, keys=(S["alp_key"], S["alp_sec"])) as news, \
                    FakePerplexity({S["pplx2"]: ["ok"], S["pplx1"]: [401]}, content=json.dumps([
                        {"title": "Bitcoin rallies", "source": "Reuters", "url": "",
                         "published_at": datetime.fromtimestamp(now_s - 1800, timezone.utc).isoformat()}])) as px:
                live_env = {**env, "TB_FEED": "live", "TB_BAR_SOURCES": "binance_spot", "TB_BINANCE_SPOT_URL": spot.url,
                            "TB_ALPACA_DATA_URL": news.url, "TB_PPLX_URL": px.url, "TB_SYMBOLS": "BTC/USD",
                            "TB_DB_PATH": str(tmp / "state" / "live.db"), "TB_LOG_DIR": str(tmp / "logs" / "live"),
                            "TB_VENUE_HYBRID": "paper"}
                run("hybrid live", [PY, str(HYBRID), "--once"], live_env)
                assert {k for k, _ in px.calls} == {S["pplx1"], S["pplx2"]}, px.calls

            # 6. the operator commands
            with sqlite3.connect(dbfile) as c:
                cid = c.execute("SELECT client_order_id FROM orders WHERE state='filled' ORDER BY id LIMIT 1").fetchone()[0]
            tracer = [PY, "-m", "tracer.cli"]
            run("check-config", tracer + ["check-config"], cwd=ROOT)
            run("status", tracer + ["status"], cwd=ROOT)
            run("explain", tracer + ["explain", cid], cwd=ROOT)
            run("notify --test", tracer + ["notify", "--test"], cwd=ROOT)
            # the web cockpit: served, asked with and without the token, a wrong one, a refused POST
            with socket.socket() as so:
                so.bind(("127.0.0.1", 0))
                web_port = so.getsockname()[1]
            web = subprocess.Popen(tracer + ["web", "--port", str(web_port)], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                import httpx
                base = f"http://127.0.0.1:{web_port}"
                for _ in range(200):
                    try:
                        httpx.get(base + "/login", timeout=2)
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                auth = {"Authorization": f"Bearer {S['web']}"}
                assert httpx.get(base + "/api/v1/agents", headers=auth).status_code == 200
                assert httpx.get(base + f"/api/v1/orders/{cid}", headers=auth).status_code == 200
                assert httpx.get(base + "/", headers=auth).status_code == 200
                assert httpx.get(base + "/api/v1/agents", headers={"Authorization": "Bearer nope"}).status_code == 401
                assert httpx.post(base + "/api/v1/controls/pause", headers=auth, json={}).status_code == 403
            finally:
                web.send_signal(signal.SIGINT)
                out, err = web.communicate(timeout=30)
                procs.append(("tracer web", out, err))
            # the listener got its commands; then stop it
            deadline = time.time() + 30
            while time.time() < deadline and not any(t.startswith("Open positions") for t in tg.texts()):
                time.sleep(0.1)
            # the DB's WAL and shared-memory files exist while a process holds the DB (the listener does): user-only
            wal_files = [p for p in (dbfile.with_name(dbfile.name + "-wal"), dbfile.with_name(dbfile.name + "-shm"))
                         if p.exists()]
            assert wal_files, "the listener holds the DB open: its WAL should exist"
            wal_loose = [f"{p.name} {oct(stat.S_IMODE(p.stat().st_mode))}" for p in wal_files
                         if stat.S_IMODE(p.stat().st_mode) & 0o077]
            listener.send_signal(signal.SIGTERM)
            out, err = listener.communicate(timeout=30)
            procs.append(("telegram listener", out, err))
            assert listener.returncode == 0, err[-2000:]

            # the platforms unreachable (connection refused): the error paths of both senders, URLs with secrets

            with refused_port() as port:
                dead = f"127.0.0.1:{port}"
                down_env = {**env, "TB_DISCORD_WEBHOOK_URL": dc.url.replace(dc.url.split("/")[2], dead),
                            "TB_TELEGRAM_BASE_URL": tg.base_url.replace(tg.base_url.split("/")[2], dead),
                            "TB_NOTIFY_MAX_ATTEMPTS": "2"}
                run("notify --test (platforms down)", tracer + ["notify", "--test"], down_env, cwd=ROOT,
                    ok_codes=(0, 1, 2))
            with sqlite3.connect(dbfile) as c:
                errors = [e for (e,) in c.execute("SELECT last_error FROM notifications WHERE last_error IS NOT NULL "
                                                  "AND last_error != ''")]
            assert any("connect" in e.lower() for e in errors), errors[-5:]
            hc = run("health_check --json", [str(ROOT / "scripts" / "health_check.sh"), "--json"], cwd=ROOT,
                     ok_codes=(0, 1, 2))
            json.loads(hc.stdout)

            # ---- the scan -----------------------------------------------------------------------------
            sc = Scanner(raw_values)
            control = Scanner(raw_values)      # the scanner finds what is there: the auth fields, unfiltered
            control.scan("binance auth header", json.dumps([dict(q.headers) for q in binance.requests]))
            control.scan("telegram path", tg.base_url + TG_TOKEN)
            control.scan("a fragment", f"...{S['bin_sec'][3:12]}...")
            assert len(control.found) == 3, control.found
            files = [p for p in tmp.rglob("*") if p.is_file() and ".git" not in p.parts]
            for p in files:
                sc.scan(f"file {p.relative_to(tmp)}", p.read_bytes())
            tables = 0
            for db in (dbfile, tmp / "state" / "live.db"):
                c = sqlite3.connect(db)
                for (t,) in c.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                    rows = c.execute(f'SELECT * FROM "{t}"').fetchall()
                    sc.scan(f"table {db.name}:{t}", "\n".join("\t".join(map(str, r)) for r in rows))
                    tables += 1
                c.close()
            requests = 0
            allowed_headers = {"x-mbx-apikey", "x-bapi-api-key", "x-bapi-sign", "apca-api-key-id",
                               "apca-api-secret-key", "authorization"}
            for name, fake in (("binance", binance), ("bybit", bybit), ("alpaca", alpaca), ("spot", spot),
                               ("alpaca-data", news), ("perplexity", px)):
                for q in fake.requests:
                    hdrs = {k: v for k, v in q.headers.items() if k.lower() not in allowed_headers}
                    query = {k: v for k, v in q.query.items() if k != "signature"}
                    sc.scan(f"request to {name} {q.method} {q.path}",
                            "\n".join([q.path, json.dumps(query), json.dumps(hdrs),
                                       getattr(q, "raw_query", "").split("&signature=")[0],
                                       q.body.decode("utf-8", "replace")]))
                    requests += 1
            # the legit auth fields carry the right venue's key only (never a secret key, never another venue's)
            for name, fake, hdr, own in (("binance", binance, "X-MBX-APIKEY", {S["bin_key"]}),
                                         ("bybit", bybit, "X-BAPI-API-KEY", {S["byb_key"]}),
                                         ("alpaca", alpaca, "APCA-API-KEY-ID", {S["alp_key"]})):
                seen = {q.headers.get(hdr) for q in fake.requests} - {None}
                assert seen <= own, (name, seen)
            for method, params in tg.calls:
                sc.scan(f"telegram {method}", json.dumps(params))
            for q in dc.requests:
                sc.scan("discord payload", json.dumps([q["query"], q["json"]]))
            for what, out, err in procs:
                sc.scan(f"stdout of {what}", out)
                sc.scan(f"stderr of {what}", err)
            payloads = len(tg.sent) + len(dc.requests)
            assert len(dc.contents()) >= 3 and len(tg.sent) >= 3, (len(dc.contents()), len(tg.sent))
            # the runs did what they should: trades on Binance and Bybit and Alpaca, errors alerted
            with sqlite3.connect(dbfile) as c:
                venues = {v for (v,) in c.execute("SELECT DISTINCT venue FROM orders WHERE state='filled'")}
                kinds = {k for (k,) in c.execute("SELECT kind FROM venue_events")}
            assert {"binance", "bybit", "alpaca"} <= venues, venues
            assert {"auth_error", "ip_banned", "failover"} <= kinds, kinds

            # ---- permissions: every file holding state is user-only --------------------------------------
            loose = []
            made_by_test = {tmp, tmp / "state", tmp / "not-a-dir"}
            for p in [tmp, *tmp.rglob("*")]:
                if p in made_by_test or ".git" in p.parts:
                    continue
                mode = stat.S_IMODE(p.stat().st_mode)
                if mode & 0o077:
                    loose.append(f"{p.relative_to(tmp)} {oct(mode)}")
            figures = dict(secrets=len(raw_values), secrets_found=len(sc.found), places_scanned=sc.places,
                           files=len(files), tables=tables, requests=requests, notification_payloads=payloads,
                           processes=len(procs), loose_permission_files=len(loose) + len(wal_loose))
            assert sc.found == [], sc.found[:20]
            assert loose == [] and wal_loose == [], (loose, wal_loose)
            ok = True
    finally:
        print(figures)
        reliability("secrets: no leak anywhere, state files user-only", trials=1,
                    checked="sentinels in every secret variable; full runs of both agents on fake venues with "
                            "faults, a forced crash, notifications, the Telegram listener, a live cycle with "
                            "Perplexity/Alpaca news, check-config/status/explain/notify/health_check; scanned: all "
                            "files (raw), every DB table, every fake-received request (bar the auth fields), "
                            "notification payloads, stdout/stderr; file modes & 0o077 == 0", ok=ok, **figures)





def test_start_script_state_files_are_user_only(tmp_path, reliability):
    """The start script's own files (pid files, .args, the agents' .err, the watchdog lock and log) are user-only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    env.update(TB_STATE_DIR=str(tmp_path / "state"), TB_LOG_DIR=str(tmp_path / "logs"),
               TB_DB_PATH=str(tmp_path / "state" / "t.db"), TB_SENTIMENT_SCORER="lexicon")
    script = str(ROOT / "start_trading_system.sh")
    loose: list[str] = []
    try:
        r = subprocess.run(["bash", script, "--cycles", "2", "--interval", "0"], env=env, capture_output=True,
                           text=True, timeout=240)
        assert r.returncode == 0, r.stderr[-2000:]
        for p in [tmp_path / "state", tmp_path / "logs", *(tmp_path / "state").rglob("*"),
                  *(tmp_path / "logs").rglob("*")]:
            mode = stat.S_IMODE(p.stat().st_mode)
            if mode & 0o077:
                loose.append(f"{p.relative_to(tmp_path)} {oct(mode)}")
    finally:
        subprocess.run(["bash", script, "--stop"], env=env, capture_output=True, text=True, timeout=120)
        reliability("permissions: start script state files user-only", trials=1,
                    checked="modes of the state and log folders and every file the start script, the watchdogs and "
                            "the agents create (mode & 0o077 == 0)", ok=not loose,
                    loose_permission_files=len(loose), loose=loose[:20])
    assert loose == [], loose
