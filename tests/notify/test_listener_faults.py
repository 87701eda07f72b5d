"""The Telegram listener when a command fails or is slow, against the fake Bot API (tests/fakes/telegram.py) over real
HTTP and a real SQLite file: a command that raises is answered and logged, rolled back, and confirmed (the offset
moves past it), so the commands behind it are obeyed; /health's network probes do not hold the DB write lock."""
from __future__ import annotations

import logging
import sqlite3
import threading
import time


from fakes.server import FakeServer
from fakes.telegram import BOT_TOKEN, CHAT_ID
from test_telegram_commands import replies, settings_for
from tracer.notify import commands, controls
from tracer.notify.commands import OFFSET_KEY, CommandListener, run_listener
from tracer.notify.telegram import TelegramClient
from tracer.store import Store

LOG = logging.getLogger("test-listener-faults")




def test_a_read_command_that_raises_is_answered_logged_and_confirmed(env, fake, caplog, monkeypatch):
    s, store, listener = env

    def boom(store, args):
        raise RuntimeError(f"cannot reach https://api.telegram.org/bot{BOT_TOKEN}/x")

    monkeypatch.setitem(commands._READ_ARGS, "explain", boom)
    fake.push_message("/explain abc")
    fake.push_message("/pause futures")
    with caplog.at_level(logging.INFO, logger="test-listener-faults"):
        assert listener.poll_once() == 2
    assert store.is_paused("futures") and not store.is_paused("hybrid")
    assert store.notify_state(OFFSET_KEY) == "3"
    err, ok = replies(store)
    assert "/explain failed (RuntimeError)" in err and "Traceback" not in err and BOT_TOKEN not in err
    assert "api.telegram.org" not in err and "paused futures" in ok
    assert "telegram_command_error" in caplog.text and BOT_TOKEN not in caplog.text
    assert listener.poll_once() == 0                      # confirmed: not fetched again


def test_a_state_changing_command_that_raises_is_rolled_back_and_still_confirmed(env, fake, caplog, monkeypatch):
    s, store, listener = env

    def half_done(store, targets, who):
        store.request_control("hybrid", "reload", None, who)     # a write ...
        raise ValueError("broken after the first write")          # ... then the failure

    monkeypatch.setattr(controls, "reload", half_done)
    fake.push_message("/reload hybrid")
    fake.push_message("/pause futures")
    with caplog.at_level(logging.INFO, logger="test-listener-faults"):
        assert listener.poll_once() == 2
    assert store.conn.execute("SELECT COUNT(*) FROM control_requests").fetchone()[0] == 0     # not half-applied
    assert store.is_paused("futures") and store.notify_state(OFFSET_KEY) == "3"
    err, ok = replies(store)
    assert "/reload failed (ValueError)" in err and "paused futures" in ok
    assert "telegram_command_error" in caplog.text
    assert listener.poll_once() == 0


def test_one_command_that_raises_does_not_wedge_the_commands_behind_it(tmp_path, fake, caplog):
    """An operator pastes a venue's long numeric order id into /explain, then sends /pause: find_order used to bind
    int('99999999999999999999') (OverflowError) and the rolled-back offset made the listener fetch and fail on the same
    update until it aged out, so /pause was not obeyed meanwhile."""
    s = settings_for(tmp_path, fake)
    Store(s.db_path).close()
    fake.push_message("/explain 99999999999999999999")
    fake.push_message("/pause all")
    stop = threading.Event()
    rc: list[int] = []
    t = threading.Thread(target=lambda: rc.append(run_listener(s, LOG, stop, error_backoff_s=0.2)))
    with caplog.at_level(logging.INFO, logger="test-listener-faults"):
        t.start()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not any("paused" in x for x in fake.texts()):
            time.sleep(0.05)
        stop.set()
        t.join(15)
    st = Store(s.db_path)
    try:
        paused = st.is_paused("hybrid") and st.is_paused("futures")
        offset = st.notify_state(OFFSET_KEY)
    finally:
        st.close()
    assert paused, f"/pause not obeyed (offset {offset}, replies {fake.texts()}, log {caplog.text[-500:]})"
    assert rc == [0] and offset == "3" and "telegram_poll_error" not in caplog.text
    assert any("no order" in x.lower() or "99999999999999999999" in x for x in fake.texts()), fake.texts()


def test_health_command_does_not_hold_the_db_write_lock_across_network_probes(tmp_path, fake):
    """/health probes every live bar source and venue over HTTP (5 s timeouts): the DB write lock (BEGIN IMMEDIATE)
    must not be held meanwhile, or the agents' writes wait (and fail after their busy timeout)."""
    def slow(req):                           # a bar source that answers slowly (an outage, a congested link)
        time.sleep(3.0)
        return 200, {}, {}

    with FakeServer(slow) as feed:
        s = settings_for(tmp_path, fake, TB_FEED="live", TB_BAR_SOURCES="binance_spot",
                         TB_BINANCE_SPOT_URL=feed.url, TB_NEWS_SOURCES="")
        Store(s.db_path).close()
        fake.push_message("/health")
        handled: list[int] = []

        def serve() -> None:                     # the listener's objects belong to its own thread
            store = Store(s.db_path)
            client = TelegramClient(BOT_TOKEN, str(CHAT_ID), fake.base_url, 5.0)
            try:
                handled.append(CommandListener(store, client, s, LOG).poll_once())
            finally:
                client.close()
                store.close()

        th = threading.Thread(target=serve)
        th.start()
        try:
            for _ in range(500):                 # the probe has reached the feed: the listener is inside health()
                if feed.requests:
                    break
                time.sleep(0.01)
            assert feed.requests, "the /health command never probed the feed"
            other = sqlite3.connect(s.db_path, timeout=1.0, isolation_level=None)   # another writer, e.g. an agent
            t0 = time.monotonic()
            err = None
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
            except sqlite3.OperationalError as e:
                err = e
            waited = time.monotonic() - t0
            other.close()
        finally:
            th.join(20)
    assert err is None, f"another writer could not write the DB for {waited:.1f} s while /health probed: {err}"
    assert handled == [1]
    st = Store(s.db_path)
    try:
        assert st.notify_state(OFFSET_KEY) == "2"          # the reply and the offset were written after the probes
        [reply] = replies(st)
        assert "binance_spot" in reply or "bar" in reply.lower(), reply
    finally:
        st.close()
