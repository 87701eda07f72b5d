"""Notifications: the outbox, the delivery worker and the real Discord/Telegram client libraries,
over real HTTP against fake servers on 127.0.0.1, with a real SQLite file."""
from __future__ import annotations

import logging
import subprocess
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from fakes.discord import WEBHOOK_TOKEN, Reply
from fakes.telegram import BOT_TOKEN, CHAT_ID
from procs import refused_port
from tracer.config import ConfigError, load_settings
from tracer.store import Store
from tracer.models import Order, PositionSide, Side, Trade
from tracer.notify import outbox
from tracer.notify.format import DISCORD_LIMIT, TELEGRAM_LIMIT, escape_discord, redact, split_text, utf16_len
from tracer.notify.messages import daily_summary_text
from tracer.notify.stats import day_stats
from tracer.notify.worker import Deliverer, OutboxWorker, flush, start_workers, stop_workers

LOG = logging.getLogger("test-notify")


def make_settings(tmp: Path, **env: str):
    base = {"TB_DB_PATH": str(tmp / "state" / "tracer.db"), "TB_LOG_DIR": str(tmp / "logs"),
            "TB_STATE_DIR": str(tmp / "state"), "TB_NOTIFY_BACKOFF_S": "0.01", "TB_NOTIFY_BACKOFF_MAX_S": "0.05",
            "TB_NOTIFY_POLL_S": "0.05", "TB_NOTIFY_TIMEOUT_S": "5", "TB_NOTIFY_CONSOLE": "false"}
    base.update(env)
    return load_settings(base, dotenv_path=None)


def dsettings(tmp, fake, **env):
    return make_settings(tmp, TB_DISCORD_WEBHOOK_URL=fake.url, **env)


def tsettings(tmp, fake, **env):
    return make_settings(tmp, TB_TELEGRAM_BOT_TOKEN=BOT_TOKEN, TB_TELEGRAM_CHAT_ID=str(CHAT_ID),
                         TB_TELEGRAM_BASE_URL=fake.base_url, **env)


def put(s, kind: str, text: str, agent: str | None = "hybrid") -> list[int]:
    st = Store(s.db_path)
    try:
        with st.transaction():
            return outbox.enqueue(st, s, kind, text, agent)
    finally:
        st.close()


def rows(s, channel: str | None = None):
    st = Store(s.db_path)
    try:
        q = "SELECT * FROM notifications" + (" WHERE channel=?" if channel else "") + " ORDER BY id"
        return [dict(r) for r in st.conn.execute(q, (channel,) if channel else ())]
    finally:
        st.close()


def deliver(s, channel: str) -> tuple[list, Deliverer]:
    st = Store(s.db_path)
    sender = outbox.make_sender(channel, s)
    try:
        d = Deliverer(st, sender, s, LOG)
        return d.drain(), d
    finally:
        sender.close()
        st.close()


# --- configuration -------------------------------------------------------------------------
def test_channels_are_off_by_default_and_on_by_their_settings(tmp_path):
    s = make_settings(tmp_path, TB_NOTIFY_CONSOLE="true")
    assert outbox.channels(s) == ["console"]
    s = make_settings(tmp_path, TB_DISCORD_WEBHOOK_URL="https://discord.example/api/webhooks/1/abcdefgh",
                      TB_TELEGRAM_BOT_TOKEN="1:abcdefgh", TB_TELEGRAM_CHAT_ID="99")
    assert outbox.channels(s) == ["discord", "telegram"]
    assert "abcdefgh" not in repr(s)
    with pytest.raises(ConfigError, match="TB_TELEGRAM_CHAT_ID is missing"):
        make_settings(tmp_path, TB_TELEGRAM_BOT_TOKEN="1:abcdefgh")
    with pytest.raises(ConfigError, match="TB_TELEGRAM_BOT_TOKEN is missing"):
        make_settings(tmp_path, TB_TELEGRAM_CHAT_ID="99")


# --- pure text transforms ------------------------------------------------------------------
def test_split_fits_limits_keeps_all_text_and_never_cuts_an_escape():
    line = "**bold** _it_ `code` | spoiler > quote # [link](x) <@1> " * 3
    text = "\n".join(f"{i:04d} {line}" for i in range(60))
    parts = split_text(text, DISCORD_LIMIT, transform=escape_discord)
    assert len(parts) > 1
    assert all(utf16_len(p) <= DISCORD_LIMIT for p in parts)
    for p in parts:                                    # no dangling backslash at a cut
        body = p.split(") ", 1)[1]
        assert not (len(body) - len(body.rstrip("\\"))) % 2
    unescaped = "\n".join(p.split(") ", 1)[1] for p in parts)
    for ch in "\\*_~`|>#[]<":
        unescaped = unescaped.replace("\\" + ch, ch)
    assert unescaped.replace("\n", "") == text.replace("\n", "")
    assert parts[0].startswith(f"(1/{len(parts)}) ")


def test_split_counts_utf16_units_and_truncates_beyond_max_parts():
    emoji = "📈" * 3000                             # 6000 UTF-16 units, 3000 code points
    parts = split_text(emoji, TELEGRAM_LIMIT)
    assert len(parts) == 2 and all(utf16_len(p) <= TELEGRAM_LIMIT for p in parts)
    huge = "x" * (TELEGRAM_LIMIT * 20)
    parts = split_text(huge, TELEGRAM_LIMIT, max_parts=3)
    assert len(parts) == 3 and "truncated" in parts[-1]
    assert split_text("short", 10) == ["short"] and split_text("", 10) == []


def test_redact_removes_secrets_and_the_path_of_a_secret_url():
    url = "https://discord.com/api/webhooks/123/" + WEBHOOK_TOKEN
    err = f"HTTPSConnectionPool(host='discord.com'): Max retries exceeded with url: /api/webhooks/123/{WEBHOOK_TOKEN}?wait=True"
    out = redact(err + " " + BOT_TOKEN, [url, BOT_TOKEN])
    assert WEBHOOK_TOKEN not in out and BOT_TOKEN not in out and "***" in out


# --- the outbox --------------------------------------------------------------------------------
def test_enqueue_redacts_every_secret_before_it_reaches_the_db(tmp_path, discord, telegram):
    s = make_settings(tmp_path, TB_DISCORD_WEBHOOK_URL=discord.url, TB_TELEGRAM_BOT_TOKEN=BOT_TOKEN,
                      TB_TELEGRAM_CHAT_ID=str(CHAT_ID), TB_TELEGRAM_BASE_URL=telegram.base_url)
    put(s, "agent_error", f"boom calling {discord.url} with bot{BOT_TOKEN} token={WEBHOOK_TOKEN}")
    rs = rows(s)
    assert {r["channel"] for r in rs} == {"discord", "telegram"}
    for r in rs:
        assert WEBHOOK_TOKEN not in r["message"] and BOT_TOKEN not in r["message"] and "***" in r["message"]
    deliver(s, "discord")
    deliver(s, "telegram")
    assert all(WEBHOOK_TOKEN not in c and BOT_TOKEN not in c for c in discord.contents() + telegram.texts())


def test_kill_switch_is_queued_once_per_agent_and_day(tmp_path, discord):
    s = dsettings(tmp_path, discord)
    first = "🛑 daily loss stop 2022-01-12: no new entries until the next UTC day"
    assert put(s, "kill_switch", first + "\nday return -3.10%")
    assert put(s, "kill_switch", first + "\nday return -3.40%") == []
    assert put(s, "kill_switch", first + "\nsame day, other agent", agent="futures")
    assert put(s, "kill_switch", first.replace("12", "13") + "\nnext day")
    assert len(rows(s)) == 3


# --- Discord through discord-webhook ----------------------------------------------------------
def test_discord_delivery_escapes_markdown_and_disables_mentions(tmp_path, discord):
    s = dsettings(tmp_path, discord)
    put(s, "trade_opened", "📈 entry buy 0.5 BTC/USD **@everyone** _x_ [click](http://evil)")
    out, _ = deliver(s, "discord")
    assert [o.status for o in out] == ["sent"]
    [req] = discord.requests
    assert req["json"]["content"] == "\\[hybrid\\] 📈 entry buy 0.5 BTC/USD \\*\\*@everyone\\*\\* \\_x\\_ \\[click\\](http://evil)"
    assert req["json"]["allowed_mentions"] == {"parse": []}
    r = rows(s)[0]
    assert r["status"] == "sent" and r["attempts"] == 1 and r["sent_at"] and r["last_error"] is None


def test_discord_empty_204_counts_as_delivered(tmp_path, discord):
    s = dsettings(tmp_path, discord)
    discord.script(Reply(204, raw=b""))
    put(s, "heartbeat", "alive")
    out, _ = deliver(s, "discord")
    assert [o.status for o in out] == ["sent"] and rows(s)[0]["status"] == "sent"


@pytest.mark.parametrize("reply, wait", [
    (Reply(429, {"message": "You are being rate limited.", "retry_after": 0.07, "global": False}), 0.07),
    (Reply(429, raw=b"", headers={"Retry-After": "0.08"}), 0.08),
])
def test_discord_429_waits_retry_after_then_delivers(tmp_path, discord, reply, wait):
    s = dsettings(tmp_path, discord, TB_NOTIFY_BACKOFF_MAX_S="1")        # a wait within the cap: in place
    discord.script(reply)
    put(s, "trade_closed", "✅ closed long BTC/USD")
    out, d = deliver(s, "discord")
    assert [o.status for o in out] == ["sent"]
    assert d.waits == [pytest.approx(wait)]
    assert len(discord.requests) == 2 and discord.contents()[0] == discord.contents()[1]
    r = rows(s)[0]
    assert r["status"] == "sent" and r["attempts"] == 2


def test_discord_permanent_failure_is_recorded_without_the_secret(tmp_path, discord, caplog):
    bad = discord.url.replace(WEBHOOK_TOKEN, WEBHOOK_TOKEN[::-1])      # a wrong token: 401
    s = make_settings(tmp_path, TB_DISCORD_WEBHOOK_URL=bad)
    put(s, "heartbeat", "alive")
    with caplog.at_level(logging.INFO, logger="test-notify"):
        out, d = deliver(s, "discord")
    assert [o.status for o in out] == ["failed"] and d.waits == []     # no retry of a 401
    r = rows(s)[0]
    assert r["status"] == "failed" and r["attempts"] == 1 and "HTTP 401" in r["last_error"]
    assert "Invalid Webhook Token" in r["last_error"]
    for secret in (WEBHOOK_TOKEN[::-1], bad):
        assert secret not in r["last_error"] and secret not in caplog.text


def test_discord_server_errors_back_off_then_fail_after_max_attempts(tmp_path, discord):
    s = dsettings(tmp_path, discord, TB_NOTIFY_MAX_ATTEMPTS="3")
    discord.script(*[Reply(503, {"message": "unavailable"})] * 3)
    put(s, "heartbeat", "alive")
    out, d = deliver(s, "discord")
    assert [o.status for o in out] == ["failed"]
    assert d.waits == [pytest.approx(0.01), pytest.approx(0.02)]          # exponential backoff
    r = rows(s)[0]
    assert r["attempts"] == 3 and "HTTP 503" in r["last_error"] and len(discord.requests) == 3


def test_discord_connection_refused_is_transient_and_redacted(tmp_path):
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}/api/webhooks/1/{WEBHOOK_TOKEN}"
        s = make_settings(tmp_path, TB_DISCORD_WEBHOOK_URL=url, TB_NOTIFY_MAX_ATTEMPTS="2")
        put(s, "heartbeat", "alive")
        out, d = deliver(s, "discord")
    r = rows(s)[0]
    assert out[0].status == "failed" and r["attempts"] == 2 and len(d.waits) == 1
    assert "connection failed" in r["last_error"] and WEBHOOK_TOKEN not in r["last_error"]


def test_discord_long_message_is_split_in_order(tmp_path, discord):
    s = dsettings(tmp_path, discord)
    text = "\n".join(f"line {i:03d} " + "x" * 90 for i in range(50))       # ~5000 characters
    put(s, "daily_summary", text)
    out, _ = deliver(s, "discord")
    assert out[0].status == "sent"
    got = discord.contents()
    assert len(got) == 3 and all(len(c) <= DISCORD_LIMIT for c in got)
    assert [c[:6] for c in got] == ["(1/3) ", "(2/3) ", "(3/3) "]
    joined = "".join(c[6:] for c in got).replace("\n", "")
    assert joined == ("\\[hybrid\\] " + text).replace("\n", "")
    assert rows(s)[0]["parts_sent"] == 3


def test_a_part_that_needed_a_retry_does_not_resend_the_parts_already_delivered(tmp_path, discord):
    s = dsettings(tmp_path, discord)
    put(s, "daily_summary", "y" * 4500)                   # 3 parts
    discord.script(Reply(200, {"id": "1"}), Reply(429, {"retry_after": 0.01}))
    out, _ = deliver(s, "discord")
    assert out[0].status == "sent"
    got = discord.contents()
    assert [c[:6] for c in got] == ["(1/3) ", "(2/3) ", "(2/3) ", "(3/3) "]
    assert rows(s)[0]["attempts"] == 4


# --- Telegram through python-telegram-bot -----------------------------------------------------
def test_telegram_delivery_is_plain_text_to_the_configured_chat(tmp_path, telegram):
    s = tsettings(tmp_path, telegram)
    hostile = "<b>bold</b> *md* _x_ [a](http://evil) & done"
    put(s, "risk_block", hostile, agent="futures")
    out, _ = deliver(s, "telegram")
    assert [o.status for o in out] == ["sent"]
    [m] = telegram.sent
    assert m["text"] == "[futures] " + hostile and m["chat_id"] == str(CHAT_ID) and "parse_mode" not in m
    assert rows(s)[0]["status"] == "sent"


def test_telegram_retry_after_is_honoured(tmp_path, telegram):
    s = tsettings(tmp_path, telegram, TB_NOTIFY_BACKOFF_MAX_S="1")      # a wait within the cap: in place
    telegram.script("sendMessage", (429, {"ok": False, "error_code": 429,
                                          "description": "Too Many Requests: retry after 1",
                                          "parameters": {"retry_after": 1}}))
    put(s, "heartbeat", "alive")
    out, d = deliver(s, "telegram")
    assert [o.status for o in out] == ["sent"] and d.waits == [1.0]
    assert telegram.methods() == ["sendMessage", "sendMessage"]
    r = rows(s)[0]
    assert r["attempts"] == 2 and r["status"] == "sent"


def test_telegram_bad_token_fails_permanently_without_leaking_it(tmp_path, telegram, caplog):
    s = make_settings(tmp_path, TB_TELEGRAM_BOT_TOKEN="987:WRONGwrongWRONGwrong", TB_TELEGRAM_CHAT_ID=str(CHAT_ID),
                      TB_TELEGRAM_BASE_URL=telegram.base_url)
    put(s, "heartbeat", "alive")
    with caplog.at_level(logging.DEBUG):
        out, d = deliver(s, "telegram")
    r = rows(s)[0]
    assert out[0].status == "failed" and r["status"] == "failed" and r["attempts"] == 1 and d.waits == []
    assert "InvalidToken" in r["last_error"] and "WRONGwrong" not in r["last_error"]
    assert "WRONGwrong" not in "".join(str(rec.msg) for rec in caplog.records if rec.name == "test-notify")


def test_telegram_bad_request_is_permanent(tmp_path, telegram):
    s = tsettings(tmp_path, telegram)
    telegram.script("sendMessage", (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}))
    put(s, "heartbeat", "alive")
    deliver(s, "telegram")
    r = rows(s)[0]
    assert r["status"] == "failed" and "Chat not found" in r["last_error"]


def test_telegram_long_message_is_split(tmp_path, telegram):
    s = tsettings(tmp_path, telegram)
    text = " ".join(f"word{i}" for i in range(2000))          # ~15000 characters
    put(s, "daily_summary", text)
    deliver(s, "telegram")
    got = telegram.texts()
    assert len(got) == 5 and all(utf16_len(t) <= TELEGRAM_LIMIT for t in got)
    assert " ".join(t.split(") ", 1)[1] for t in got).split() == ("[hybrid] " + text).split()


# --- the worker: restarts, two processes, the thread ---------------------------------------------
def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_restart_resends_what_was_pending_including_a_dead_process_claim(tmp_path, discord):
    import socket
    s = dsettings(tmp_path, discord)
    put(s, "trade_opened", "one")
    put(s, "trade_opened", "two")
    st = Store(s.db_path)
    dead = f"{socket.gethostname()}:{dead_pid()}:1:discord"       # a worker that died mid-send
    assert st.claim_notification("discord", dead, lease_s=3600)["message"] == "one"
    st.close()
    w = OutboxWorker("discord", s, LOG)
    w.start()
    try:
        for _ in range(200):
            if all(r["status"] == "sent" for r in rows(s)):
                break
            threading.Event().wait(0.05)
    finally:
        w.stop()
    assert [r["status"] for r in rows(s)] == ["sent", "sent"]
    assert sorted(discord.contents()) == ["\\[hybrid\\] one", "\\[hybrid\\] two"]


def test_a_live_claim_is_not_taken_by_another_worker(tmp_path, discord):
    s = dsettings(tmp_path, discord)
    put(s, "trade_opened", "one")
    st = Store(s.db_path)
    assert st.claim_notification("discord", "other-host:1:1:discord", lease_s=3600) is not None
    assert st.claim_notification("discord", "me", lease_s=3600) is None
    st.close()
    out, _ = deliver(s, "discord")
    assert out == [] and discord.requests == []


def test_two_workers_on_one_db_never_send_a_row_twice(tmp_path, discord):
    s = dsettings(tmp_path, discord)
    st = Store(s.db_path)
    with st.transaction():
        for i in range(40):
            outbox.enqueue(st, s, "fill", f"msg {i:02d}", "hybrid" if i % 2 else "futures")
    st.close()
    results: list = []

    def work(n: int) -> None:
        store = Store(s.db_path)
        sender = outbox.make_sender("discord", s)
        results.extend(Deliverer(store, sender, s, LOG, wid=f"w{n}").drain())
        store.close()

    ts = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    got = discord.contents()
    assert len(got) == 40 and len(set(got)) == 40
    assert len(results) == 40 and all(o.status == "sent" for o in results)
    assert all(r["status"] == "sent" for r in rows(s))


def test_worker_threads_deliver_and_stop_leaves_undelivered_rows_pending(tmp_path, discord, telegram):
    s = make_settings(tmp_path, TB_DISCORD_WEBHOOK_URL=discord.url, TB_TELEGRAM_BOT_TOKEN=BOT_TOKEN,
                      TB_TELEGRAM_CHAT_ID=str(CHAT_ID), TB_TELEGRAM_BASE_URL=telegram.base_url,
                      TB_NOTIFY_BACKOFF_S="30", TB_NOTIFY_BACKOFF_MAX_S="30")
    Store(s.db_path).close()
    workers = start_workers(s, LOG)
    assert sorted(w.channel for w in workers) == ["discord", "telegram"]
    put(s, "trade_opened", "hello")
    for _ in range(200):
        if all(r["status"] == "sent" for r in rows(s)):
            break
        threading.Event().wait(0.05)
    assert [r["status"] for r in rows(s)] == ["sent", "sent"]
    discord.script(Reply(500, {"message": "down"}), Reply(500, {"message": "down"}))
    put(s, "heartbeat", "retrying")
    for _ in range(200):                  # the discord worker is now in a 30 s retry wait; telegram has sent
        if any(r["attempts"] for r in rows(s, "discord")[1:]) and rows(s, "telegram")[1]["status"] == "sent":
            break
        threading.Event().wait(0.05)
    for w in workers:
        w.final_drain_s = 0.2
    stop_workers(workers, timeout=10)
    assert not any(w.is_alive() for w in workers)
    r = rows(s, "discord")[1]
    assert r["status"] == "pending" and r["claimed_by"] is None and r["attempts"] >= 1
    assert rows(s, "telegram")[1]["status"] == "sent"


def test_flush_delivers_pending_rows_in_the_calling_thread(tmp_path, discord):
    s = dsettings(tmp_path, discord)
    put(s, "agent_restarted", "🔄 restarted", agent="futures")
    out = flush(s, LOG, timeout_s=10)
    assert [o.status for o in out["discord"]] == ["sent"]
    assert discord.contents() == ["\\[futures\\] 🔄 restarted"]


# --- messages fed by the DB ------------------------------------------------------------------------
def test_daily_summary_counts_the_days_trades_and_equity(tmp_path):
    s = make_settings(tmp_path)
    st = Store(s.db_path)
    day = date(2022, 1, 12)
    t0 = datetime(2022, 1, 12, 3, tzinfo=timezone.utc)
    with st.transaction():
        st.save_account("hybrid", initial_capital=1000.0, cash=1000.0, realized_pnl=0, fees_paid=0, day=None,
                        day_start_equity=None)
        for i in (0, 1, 2, 9):
            st.insert_order(Order(f"e{i}", "hybrid", "BTC/USD", Side.BUY, 1.0, purpose="entry", created_at=t0),
                            run_id=None, signal_id=None, price_est=100.0)
        for i, pnl in enumerate([12.0, -5.0, 8.0]):
            st.insert_trade(Trade("hybrid", "BTC/USD", PositionSide.LONG, 1.0, t0, 100.0, t0 + timedelta(hours=i),
                                  100.0 + pnl, 0.1, 0.0, pnl, "take_profit", f"e{i}", f"x{i}"))
        st.insert_trade(Trade("hybrid", "BTC/USD", PositionSide.LONG, 1.0, t0, 100.0, t0 + timedelta(days=1),
                              90.0, 0.1, 0.0, -10.0, "stop_loss", "e9", "x9"))         # the next day
        for clock, eq in ((datetime(2022, 1, 11, 23, tzinfo=timezone.utc), 1000.0),
                          (datetime(2022, 1, 12, 23, tzinfo=timezone.utc), 1015.0)):
            rid = st.insert_run("hybrid", 1, clock, clock)
            st.finish_run(rid, equity=eq)
    ds = day_stats(st, "hybrid", day)
    assert (ds.trades, ds.wins, round(ds.pnl, 2), ds.start_equity, ds.end_equity) == (3, 2, 15.0, 1000.0, 1015.0)
    text = daily_summary_text(ds)
    assert "2022-01-12" in text and "win rate 67%" in text and "+15.00" in text and "+1.50%" in text
    st.close()


def test_agent_run_queues_heartbeats_and_a_daily_summary(tmp_path):
    from tracer.agents.hybrid import build
    s = make_settings(tmp_path, TB_NOTIFY_HEARTBEAT_EVERY="5", TB_REPLAY_START="2022-01-10T20:00:00Z",
                      TB_REPLAY_INTERVAL_S="0", TB_NOTIFY_CONSOLE="true")
    loop = build(s, LOG)
    loop.run(cycles=12)
    kinds = [r["kind"] for r in rows(s)]
    loop.store.close()
    assert kinds.count("heartbeat") == 2
    assert kinds.count("daily_summary") == 1
    summary = next(r for r in rows(s) if r["kind"] == "daily_summary")
    assert summary["message"].startswith("📊 daily summary 2022-01-10") and summary["agent"] == "hybrid"


def test_agent_error_is_queued_by_the_runner(tmp_path, monkeypatch):
    from tracer.agents import runner
    s = make_settings(tmp_path, TB_NOTIFY_CONSOLE="true")
    for k, v in {"TB_DB_PATH": str(s.db_path), "TB_LOG_DIR": str(s.log_dir), "TB_NOTIFY_CONSOLE": "true"}.items():
        monkeypatch.setenv(k, v)

    class Boom:
        def __init__(self, settings, log):
            self.store = Store(settings.db_path)
            self.stop_event = threading.Event()

        def run(self, cycles=None, interval_s=0.0):
            raise RuntimeError("exchange exploded")

    (tmp_path / "none.env").touch()        # an empty .env (a named one must exist)
    assert runner.run_agent("hybrid", Boom, ["--once", "--env-file", str(tmp_path / "none.env")]) == 1
    [r] = rows(s)
    assert r["kind"] == "agent_error" and "RuntimeError: exchange exploded" in r["message"]


def test_cli_notify_test_sends_through_every_enabled_channel(tmp_path, discord, telegram):
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    env.update(TB_DB_PATH=str(tmp_path / "state" / "tracer.db"), TB_LOG_DIR=str(tmp_path / "logs"),
               TB_DISCORD_WEBHOOK_URL=discord.url, TB_TELEGRAM_BOT_TOKEN=BOT_TOKEN,
               TB_TELEGRAM_CHAT_ID=str(CHAT_ID), TB_TELEGRAM_BASE_URL=telegram.base_url)
    r = subprocess.run([sys.executable, "-m", "tracer.cli", "notify", "--test"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "discord: sent 1, failed 0" in r.stdout and "telegram: sent 1, failed 0" in r.stdout
    assert "test message" in discord.contents()[0] and "test message" in telegram.texts()[0]
    assert WEBHOOK_TOKEN not in r.stdout + r.stderr and BOT_TOKEN not in r.stdout + r.stderr


def test_cycle_messages_cover_entries_exits_risk_blocks_and_the_kill_switch():
    from types import SimpleNamespace as NS

    from tracer.notify.messages import cycle_messages
    ts = datetime(2022, 1, 12, 5, tzinfo=timezone.utc)
    sig = lambda sym: NS(symbol=sym, price=3000.0, quality=6.5, conviction=7.2, regime=NS(label="bull"),  # noqa: E731
                         size_fraction=0.6, ts=ts)
    entry = NS(decision="enter", intent=NS(order=Order("c1", "futures", "ETH/USD", Side.SELL, 2.0, leverage=5)),
               risk_rule=None)
    kill = NS(decision="blocked", intent=None, risk_rule="daily_loss_limit", reason="risk rule daily_loss_limit",
              risk_detail={"day_return": -0.031, "limit": -0.03})
    var = NS(decision="blocked", intent=None, risk_rule="portfolio_var", reason="", risk_detail={})
    corr = NS(decision="blocked", intent=None, risk_rule="correlation", reason="", risk_detail={})
    routine = NS(decision="blocked", intent=None, risk_rule="position_open", reason="", risk_detail={})
    trade = Trade("futures", "BTC/USD", PositionSide.LONG, 0.1, ts, 40000.0, ts, 36000.0, 3.0, 0.0, -400.0,
                  "liquidation", "e1", "x1", leverage=10)
    report = NS(fills=[], trades=[trade])
    msgs = cycle_messages(report, [(sig("ETH/USD"), entry), (sig("BTC/USD"), kill), (sig("SOL/USD"), kill),
                                   (sig("ADA/USD"), var), (sig("XRP/USD"), corr), (sig("BNB/USD"), routine)])
    by = {}
    for k, t in msgs:
        by.setdefault(k, []).append(t)
    assert by["trade_opened"] == ["📉 entry sell 5x 2 ETH/USD ~3000: quality 6.5, conviction 7.2, regime bull, "
                                  "size 60% of max"]
    assert by["trade_closed"][0].startswith("💥 closed long 10x 0.1 BTC/USD: liquidation, P&L -400.00")
    assert len(by["kill_switch"]) == 1 and by["kill_switch"][0].startswith("🛑 daily loss stop 2022-01-12")
    assert "day return -3.10%, limit -3.00%" in by["kill_switch"][0]
    assert by["risk_block"] == ["⛔ risk blocked 2 entries: ADA/USD (portfolio_var), XRP/USD (correlation)"]


def test_telegram_connection_refused_is_transient_and_redacted(tmp_path):
    with refused_port() as port:
        s = make_settings(tmp_path, TB_TELEGRAM_BOT_TOKEN=BOT_TOKEN, TB_TELEGRAM_CHAT_ID=str(CHAT_ID),
                          TB_TELEGRAM_BASE_URL=f"http://127.0.0.1:{port}/bot", TB_NOTIFY_MAX_ATTEMPTS="2")
        put(s, "heartbeat", "alive")
        out, d = deliver(s, "telegram")
    r = rows(s)[0]
    assert out[0].status == "failed" and r["attempts"] == 2 and len(d.waits) == 1
    assert "NetworkError" in r["last_error"] and BOT_TOKEN not in r["last_error"]


def test_an_unexpected_sender_error_neither_loses_the_row_nor_spins(tmp_path):
    s = make_settings(tmp_path, TB_DISCORD_WEBHOOK_URL="http://127.0.0.1:9/api/webhooks/1/x" + WEBHOOK_TOKEN,
                      TB_NOTIFY_MAX_ATTEMPTS="2")
    put(s, "heartbeat", "alive")

    class Broken:
        channel = "discord"
        calls = 0

        def parts(self, text):
            return [text]

        def send_part(self, part):
            Broken.calls += 1
            raise KeyError("bug in " + s.discord_webhook_url)

        def close(self):
            pass

    st = Store(s.db_path)
    out = Deliverer(st, Broken(), s, LOG).drain()
    # given back to wait its backoff (not re-claimed in a loop; the rows behind it may go meanwhile)
    assert [o.status for o in out] == ["released"] and Broken.calls == 1
    r = rows(s)[0]
    assert r["status"] == "pending" and r["attempts"] == 1 and WEBHOOK_TOKEN not in r["last_error"]
    with st.transaction():      # its backoff ran out: the next pass tries again, and the last try fails it
        st.conn.execute("UPDATE notifications SET claim_until='2000-01-01T00:00:00Z'")
    out = Deliverer(st, Broken(), s, LOG).drain()
    st.close()
    assert [o.status for o in out] == ["failed"] and rows(s)[0]["status"] == "failed"


def test_alert_command_delivers_at_once_while_the_agents_are_down(tmp_path, discord):
    """A watchdog/health alert reaches Discord even though no agent worker thread is running."""
    from tracer import ops
    s = dsettings(tmp_path, discord)
    Store(s.db_path).close()
    ids = ops.alert(s, "watchdog_restart", "hybrid restarted by watchdog", agent="hybrid")
    assert ids
    assert any("hybrid restarted by watchdog" in c for c in discord.contents())
    st = Store(s.db_path)
    try:
        rows = st.conn.execute("SELECT channel, status FROM notifications").fetchall()
    finally:
        st.close()
    assert ("discord", "sent") in [tuple(r) for r in rows]
