"""Telegram commands through python-telegram-bot against a fake Bot API on 127.0.0.1, acting on a real
SQLite file: only the configured chat is obeyed, /pause and /resume drive the agents' controls."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fakes.telegram import BOT_TOKEN, CHAT_ID, FakeTelegram
from tracer.config import load_settings
from tracer.store import Store
from tracer.models import Order, Position, PositionSide, Side
from tracer.notify import outbox
from tracer.notify.commands import OFFSET_KEY, QUIET_AFTER, Command, CommandListener, parse_command, run_listener
from tracer.notify.telegram import Conflict, TelegramClient
from tracer.notify.worker import Deliverer

ROOT = Path(__file__).resolve().parents[2]
LOG = logging.getLogger("test-telegram")



def settings_for(tmp: Path, fake: FakeTelegram, **env: str):
    base = {"TB_DB_PATH": str(tmp / "state" / "tracer.db"), "TB_LOG_DIR": str(tmp / "logs"),
            "TB_STATE_DIR": str(tmp / "state"), "TB_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "TB_TELEGRAM_CHAT_ID": str(CHAT_ID), "TB_TELEGRAM_BASE_URL": fake.base_url,
            "TB_TELEGRAM_POLL_TIMEOUT_S": "1", "TB_NOTIFY_POLL_S": "0.05", "TB_NOTIFY_CONSOLE": "false",
            "TB_REPLAY_INTERVAL_S": "0"}
    base.update(env)
    return load_settings(base, dotenv_path=None)



def replies(store: Store) -> list[str]:
    return [r[0] for r in store.conn.execute(
        "SELECT message FROM notifications WHERE kind='command_reply' ORDER BY id")]


def controls(store: Store) -> dict[str, int]:
    return {r[0]: r[1] for r in store.conn.execute("SELECT agent, paused FROM controls")}


def test_parse_command():
    assert parse_command("/Pause@tracer_bot Futures") == Command("pause", ("futures",), "tracer_bot")
    assert parse_command("/pause futures") == Command("pause", ("futures",))
    assert parse_command("hello /pause").name == "" and parse_command("").name == ""


def test_pause_from_the_configured_chat_pauses_that_agent_and_replies(env, fake):
    s, store, listener = env
    fake.push_message("/pause futures")
    assert listener.poll_once() == 1
    assert controls(store) == {"futures": 1}
    assert store.is_paused("futures") and not store.is_paused("hybrid")
    [reply] = replies(store)
    assert "paused futures" in reply
    sender = outbox.make_sender("telegram", s)              # the reply goes out through the outbox
    out = Deliverer(store, sender, s, LOG).drain()
    sender.close()
    assert [o.status for o in out] == ["sent"]
    assert fake.sent[-1]["chat_id"] == str(CHAT_ID) and "paused futures" in fake.sent[-1]["text"]


def test_commands_from_another_chat_change_nothing_and_are_logged(env, fake, caplog):
    s, store, listener = env
    fake.push_message("/pause", chat_id=666, user="mallory")
    fake.push_message("/resume all", chat_id=-1001234, user="group")
    with caplog.at_level(logging.WARNING, logger="test-telegram"):
        assert listener.poll_once() == 2
    assert controls(store) == {} and replies(store) == []
    assert store.conn.execute("SELECT COUNT(*) FROM notifications").fetchone()[0] == 0
    assert "telegram_command_ignored" in caplog.text and "chat_id=666" in caplog.text and "mallory" in caplog.text
    assert listener.poll_once() == 0                       # the offset moved past them


def test_pause_all_then_resume_one(env, fake):
    s, store, listener = env
    fake.push_message("/pause")
    fake.push_message("/resume hybrid")
    fake.push_message("/pause nonsense")
    listener.poll_once()
    assert controls(store) == {"hybrid": 0, "futures": 1}
    r = replies(store)
    assert "paused futures, hybrid" in r[0] or "paused hybrid, futures" in r[0]
    assert "resumed hybrid" in r[1] and "unknown agent 'nonsense'" in r[2]


def test_offset_is_persisted_so_a_restarted_listener_does_not_repeat_a_command(env, fake):
    s, store, listener = env
    fake.push_message("/pause hybrid")
    listener.poll_once()
    with store.transaction():
        store.set_paused("hybrid", False, "operator resumed by hand")
    client2 = TelegramClient(BOT_TOKEN, str(CHAT_ID), fake.base_url, 5.0)
    store2 = Store(s.db_path)
    try:
        assert CommandListener(store2, client2, s, LOG).poll_once() == 0
    finally:
        client2.close()
        store2.close()
    assert not store.is_paused("hybrid")
    offsets = [int(p["offset"]) for m, p in fake.calls if m == "getUpdates" and p.get("offset")]
    assert offsets == [2]


def seed(store: Store) -> None:
    t = datetime(2022, 1, 12, 5, tzinfo=timezone.utc)
    with store.transaction():
        for agent, cap in (("hybrid", 100_000.0), ("futures", 10_000.0)):
            store.save_account(agent, initial_capital=cap, cash=cap - 500, realized_pnl=0, fees_paid=0,
                               day="2022-01-12", day_start_equity=cap)
            rid = store.insert_run(agent, 7, t, t)
            store.finish_run(rid, equity=cap + 123.45)
            store.heartbeat(agent, 7, t, "running")
        store.insert_order(Order("fut-e1", "futures", "ETH/USD", Side.SELL, 2.0, leverage=5, purpose="entry",
                                 created_at=t), run_id=None, signal_id=None, price_est=3000.0)
        store.save_positions("futures", [Position(
            agent="futures", symbol="ETH/USD", side=PositionSide.SHORT, qty=2.0, entry_price=3000.0, opened_at=t,
            entry_fee=1.0, stop_loss=3100.0, take_profit=2800.0, trail_pct=0.04, best_price=3000.0,
            max_hold_s=86400, entry_order_id="fut-e1", leverage=5, margin=1200.0, liquidation_price=3550.0)])


def test_status_positions_pnl_and_help_read_the_db(env, fake):
    s, store, listener = env
    seed(store)
    for cmd in ("/status", "/positions", "/pnl", "/help", "/frobnicate"):
        fake.push_message(cmd)
    listener.poll_once()
    status, positions, pnl, help_, unknown = replies(store)
    assert "futures: running, cycle 7, clock 2022-01-12 05:00 UTC, equity 10,123.45" in status
    assert "hybrid: running, cycle 7" in status and "open 1" in status
    assert "futures: short 5x 2 ETH/USD @ 3000, stop 3100, target 2800, liq 3550" in positions
    assert "hybrid: none" in positions
    assert "futures: total +0.00 on 0 trades, win rate n/a" in pnl
    assert "/pause" in help_ and "/resume" in help_ and "/positions" in help_
    assert unknown.startswith("unknown command /frobnicate")


def test_a_paused_agent_opens_nothing(env, fake, tmp_path):
    from tracer.agents.hybrid import build
    s, store, listener = env
    fake.push_message("/pause hybrid")
    listener.poll_once()
    # phase1c's first replay cycle would enter (the trend default holds cash in January 2022)
    loop = build(settings_for(tmp_path, fake, TB_PROFILE="phase1c"), LOG)
    loop.run(cycles=2)
    c = loop.store.conn
    assert c.execute("SELECT COUNT(*) FROM orders WHERE purpose='entry'").fetchone()[0] == 0
    assert c.execute("SELECT COUNT(*) FROM risk_events WHERE rule='paused'").fetchone()[0] >= 1
    loop.store.close()


def test_conflict_409_is_raised_to_the_listener(env, fake):
    s, store, listener = env
    fake.script("getUpdates", (409, {"ok": False, "error_code": 409,
                                     "description": "Conflict: terminated by other getUpdates request"}))
    with pytest.raises(Conflict):
        listener.poll_once()


def test_run_listener_survives_a_conflict_and_serves_commands(tmp_path, fake, caplog):
    s = settings_for(tmp_path, fake)
    Store(s.db_path).close()
    fake.script("getUpdates", (409, {"ok": False, "error_code": 409, "description": "Conflict"}))
    fake.push_message("/pause futures")
    stop = threading.Event()
    rc: list[int] = []
    t = threading.Thread(target=lambda: rc.append(run_listener(s, LOG, stop, conflict_backoff_s=0.05)))
    with caplog.at_level(logging.INFO, logger="test-telegram"):
        t.start()
        for _ in range(200):
            if any("paused futures" in x for x in fake.texts()):
                break
            time.sleep(0.05)
        stop.set()
        t.join(15)
    assert rc == [0] and "telegram_conflict" in caplog.text
    assert any("paused futures" in x for x in fake.texts())
    st = Store(s.db_path)
    assert st.is_paused("futures")
    st.close()


def test_listener_script_serves_commands_and_stops_on_sigterm(tmp_path, fake):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    env.update(TB_DB_PATH=str(tmp_path / "state" / "tracer.db"), TB_LOG_DIR=str(tmp_path / "logs"),
               TB_STATE_DIR=str(tmp_path / "state"), TB_TELEGRAM_BOT_TOKEN=BOT_TOKEN,
               TB_TELEGRAM_CHAT_ID=str(CHAT_ID), TB_TELEGRAM_BASE_URL=fake.base_url,
               TB_TELEGRAM_POLL_TIMEOUT_S="1", TB_NOTIFY_POLL_S="0.1")
    fake.push_message("/pause hybrid")
    fake.push_message("/pause", chat_id=31337)
    p = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "telegram_listener.py")], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            if any("paused hybrid" in x for x in fake.texts()):
                break
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err[-2000:]
    paused_replies = [x for x in fake.texts() if "paused" in x]
    assert len(paused_replies) == 1 and "paused hybrid" in paused_replies[0]     # none for the other chat
    st = Store(tmp_path / "state" / "tracer.db")
    assert st.is_paused("hybrid") and not st.is_paused("futures")
    st.close()
    log = (tmp_path / "logs" / "telegram.log").read_text()
    assert "telegram_command_ignored" in log and "chat_id=31337" in log and BOT_TOKEN not in log


def push_raw(fake: FakeTelegram, text: str, user_id: int, age_s: float = 0.0, chat_id: int = CHAT_ID,
             **message: object) -> None:
    """Queue an update the way the Bot API sends one (a group member, a forward, an old message)."""
    with fake._cond:
        uid = fake._next_update
        fake._next_update += 1
        fake._updates.append({"update_id": uid, "message": dict({
            "message_id": 900 + uid, "date": int(time.time() - age_s), "text": text,
            "chat": {"id": chat_id, "type": "group" if chat_id < 0 else "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": f"u{user_id}", "username": f"u{user_id}"}},
            **message)})
        fake._cond.notify_all()


def test_only_allowed_users_fresh_unforwarded_commands_are_obeyed(tmp_path, fake, caplog):
    group = -100777
    s = settings_for(tmp_path, fake, TB_TELEGRAM_CHAT_ID=str(group), TB_TELEGRAM_ALLOWED_USER_IDS="111, 222",
                     TB_TELEGRAM_COMMAND_MAX_AGE_S="60")
    store = Store(s.db_path)
    client = TelegramClient(BOT_TOKEN, str(group), fake.base_url, 5.0)
    try:
        listener = CommandListener(store, client, s, LOG)
        push_raw(fake, "/pause", 333, chat_id=group)                        # a member not on the list
        push_raw(fake, "/pause hybrid", 111, chat_id=group, forward_origin={   # a forward of an allowed user's text
            "type": "user", "date": int(time.time()) - 5,
            "sender_user": {"id": 111, "is_bot": False, "first_name": "u111"}})
        push_raw(fake, "/resume futures", 222, age_s=3600, chat_id=group)  # queued for an hour
        with caplog.at_level(logging.WARNING, logger="test-telegram"):
            assert listener.poll_once() == 3
        assert controls(store) == {} and replies(store) == []
        refused = [r for r in caplog.records if "telegram_command_refused" in r.getMessage()]
        assert len(refused) == 3
        text = caplog.text
        assert "user_id=333" in text and "TB_TELEGRAM_ALLOWED_USER_IDS" in text
        assert "forwarded" in text and "TB_TELEGRAM_COMMAND_MAX_AGE_S" in text
        push_raw(fake, "/pause futures", 222, age_s=5, chat_id=group)       # allowed, fresh, typed by the user
        assert listener.poll_once() == 1
        assert controls(store) == {"futures": 1} and "paused futures" in replies(store)[0]
    finally:
        client.close()
        store.close()


def test_without_a_list_only_the_private_chats_own_user_is_obeyed(env, fake):
    s, store, listener = env
    push_raw(fake, "/pause", 999)               # someone else in the configured chat: refused
    fake.push_message("/pause hybrid")          # the chat's own user (private chat: user id == chat id)
    assert listener.poll_once() == 2
    assert controls(store) == {"hybrid": 1}


def test_allowed_user_ids_are_validated():
    with pytest.raises(Exception) as e:
        load_settings({"TB_TELEGRAM_ALLOWED_USER_IDS": "alice,123"}, dotenv_path=None)
    assert "TB_TELEGRAM_ALLOWED_USER_IDS" in str(e.value)


def test_a_command_addressed_to_another_bot_is_ignored(tmp_path, fake, caplog):
    """In a group the operator may run another bot too: ``/startentry@freqtrade_bot`` is for that one (Telegram's
    own way to name the bot), only a suffix that is this bot's username (getMe), in any case, is obeyed."""
    group = -100777
    s = settings_for(tmp_path, fake, TB_TELEGRAM_CHAT_ID=str(group), TB_TELEGRAM_ALLOWED_USER_IDS="111")
    store = Store(s.db_path)
    client = TelegramClient(BOT_TOKEN, str(group), fake.base_url, 5.0)
    try:
        listener = CommandListener(store, client, s, LOG)
        push_raw(fake, "/pause@Tracer_Test_Bot", 111, chat_id=group)         # ours (getMe: tracer_test_bot)
        assert listener.poll_once() == 1
        assert controls(store) == {"hybrid": 1, "futures": 1}
        push_raw(fake, "/startentry@freqtrade_bot", 111, chat_id=group)
        with caplog.at_level(logging.INFO, logger="test-telegram"):
            assert listener.poll_once() == 1
        assert controls(store) == {"hybrid": 1, "futures": 1} and len(replies(store)) == 1
        assert "addressed to @freqtrade_bot" in caplog.text
        push_raw(fake, "/startentry", 111, chat_id=group)                    # no suffix: for every bot
        assert listener.poll_once() == 1
        assert controls(store) == {"hybrid": 0, "futures": 0}
        assert fake.methods().count("getMe") == 1                           # asked once
    finally:
        client.close()
        store.close()


def _quiet_week(store: Store, fake: FakeTelegram, next_id: int) -> None:
    """No update for a week: the stored offset is 7 days old, and Telegram picks the next update id at random."""
    with store.transaction():
        store.conn.execute("UPDATE notify_state SET updated_at=? WHERE key=?",
                           ((datetime.now(timezone.utc) - timedelta(days=7)).isoformat(), OFFSET_KEY))
    with fake._cond:
        fake._next_update = next_id


def test_a_command_after_a_quiet_week_is_obeyed_though_its_update_id_is_below_the_offset(env, fake):
    s, store, listener = env
    with fake._cond:
        fake._next_update = 734_000_000
    fake.push_message("/status")
    assert listener.poll_once() == 1
    assert store.notify_state(OFFSET_KEY) == "734000001"
    assert listener.poll_once() == 0                      # the running listener's next poll confirms it
    _quiet_week(store, fake, 215_000_000)
    fake.push_message("/pause")
    assert listener.poll_once() == 1
    assert store.is_paused("hybrid") and store.is_paused("futures")
    assert store.notify_state(OFFSET_KEY) == "215000001"
    fake.push_message("/resume hybrid")                   # from here the ids are sequential again: polled from the offset
    assert listener.poll_once() == 1 and not store.is_paused("hybrid")
    assert [p.get("offset") for m, p in fake.calls if m == "getUpdates"][-2:] == [None, "215000001"]
    assert QUIET_AFTER < timedelta(days=7)


def test_a_message_returned_again_by_a_poll_without_offset_is_not_obeyed_twice(env, fake):
    """The listener handled /pause and stopped before its next getUpdates confirmed it; a week later it polls
    without an offset and Telegram (here: the fake, which keeps unconfirmed updates) returns it again."""
    s, store, listener = env
    fake.push_message("/pause hybrid")
    assert listener.poll_once() == 1
    with store.transaction():
        store.set_paused("hybrid", False, "operator resumed by hand")
    _quiet_week(store, fake, 900)
    assert listener.poll_once() == 1                      # the same update, not obeyed again
    assert not store.is_paused("hybrid") and len(replies(store)) == 1
