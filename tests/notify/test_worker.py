"""The delivery worker's waits and order against the fake Discord on 127.0.0.1 (real HTTP, a real SQLite file): no
retry wait is longer than TB_NOTIFY_BACKOFF_MAX_S, and a channel's rows reach the chat in id order even when several
processes (the agents, the listener) each run a worker on the one DB."""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from fakes.discord import Reply
from test_notify import LOG, deliver, dsettings, put, rows
from tracer.notify import outbox
from tracer.notify.worker import Deliverer, OutboxWorker
from tracer.store import Store
import tracer.store.outbox as store_outbox
from tracer.store.outbox import CHANNEL_HELD
from tracer.store.codec import iso, utcnow

RATE_LIMITED = {"message": "You are being rate limited.", "global": False}


def drain_in_thread(s: Any, channel: str, wid: str) -> threading.Thread:
    """One process's worker pass (its own connection and sender), in a thread."""
    def run() -> None:
        st = Store(s.db_path)
        sender = outbox.make_sender(channel, s)
        try:
            Deliverer(st, sender, s, LOG, wid=wid).drain()
        finally:
            sender.close()
            st.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def deliver_within(s: Any, seconds: float) -> tuple[list, Deliverer]:
    """A Discord worker's pass, its retry waits cut after ``seconds`` (as stopping the worker does)."""
    st = Store(s.db_path)
    sender = outbox.make_sender("discord", s)
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    try:
        d = Deliverer(st, sender, s, LOG, stop)
        return d.drain(), d
    finally:
        timer.cancel()
        sender.close()
        st.close()


def test_a_429_of_the_unversioned_webhook_url_does_not_stall_the_channel(tmp_path, discord):
    """The URL Discord hands out (/api/webhooks/ID/TOKEN) is API v6, whose 429 body gives retry_after in
    milliseconds; the headers give the same 1.5 s in seconds. The kill-switch alert must go out seconds later."""
    s = dsettings(tmp_path, discord, TB_NOTIFY_BACKOFF_MAX_S="1")
    discord.script(Reply(429, dict(RATE_LIMITED, retry_after=1500),
                         headers={"Retry-After": "2", "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                                  "X-RateLimit-Reset-After": "1.500", "X-RateLimit-Bucket": "abcd1234"}))
    put(s, "kill_switch", "🛑 daily loss stop 2024-05-01: no new entries until the next UTC day")
    w = OutboxWorker("discord", s, LOG, final_drain_s=0)
    w.start()
    try:
        deadline = time.monotonic() + 6.0              # 4x Discord's window
        while time.monotonic() < deadline and rows(s)[0]["status"] != "sent":
            time.sleep(0.05)
    finally:
        w.stop()
    r = rows(s)[0]
    assert (r["status"], r["attempts"], len(discord.requests)) == ("sent", 2, 2), r


def test_a_wait_longer_than_the_max_backoff_releases_the_row_and_is_bounded_by_the_attempts(tmp_path, discord):
    s = dsettings(tmp_path, discord, TB_NOTIFY_MAX_ATTEMPTS="2")         # TB_NOTIFY_BACKOFF_MAX_S=0.05
    discord.script(*[Reply(429, RATE_LIMITED, headers={"Retry-After": "3600"})] * 2)
    put(s, "kill_switch", "🛑 daily loss stop 2024-05-01")
    put(s, "heartbeat", "alive")
    out, d = deliver_within(s, 5.0)
    assert d.waits == []                               # no sleep at all
    r = rows(s)[0]
    # given back, holding the channel for its rate limit (no worker's claim)
    assert [o.status for o in out] == ["released"] and r["status"] == "pending" and r["claimed_by"] == CHANNEL_HELD
    assert r["claim_until"] > iso(utcnow())            # not claimable again at once (no hammering) ...
    assert rows(s)[1]["attempts"] == 0                 # ... and the row behind it waits its turn
    st = Store(s.db_path)
    with st.transaction():                             # TB_NOTIFY_BACKOFF_MAX_S later
        st.conn.execute("UPDATE notifications SET claim_until='2000-01-01T00:00:00Z' WHERE id=?", (r["id"],))
    st.close()
    out, d = deliver_within(s, 5.0)                    # rate limited again: its last attempt, so failed
    assert [o.status for o in out] == ["failed", "sent"] and d.waits == []
    assert [x["status"] for x in rows(s)] == ["failed", "sent"] and rows(s)[0]["attempts"] == 2


def test_rows_reach_the_chat_in_id_order_when_two_processes_share_the_outbox(tmp_path, discord):
    """A transient 503 on the first alert (trade opened) must not let another process post the second (trade
    closed) before it."""
    s = dsettings(tmp_path, discord, TB_NOTIFY_BACKOFF_S="0.5", TB_NOTIFY_BACKOFF_MAX_S="0.5")
    put(s, "trade_opened", "📈 entry buy 0.1 BTC/USD ~65000")
    put(s, "trade_closed", "🔻 closed long 0.1 BTC/USD: stop_loss, P&L -120.00")
    discord.script(Reply(503, {"message": "upstream"}))
    t1 = drain_in_thread(s, "discord", "host:1:1:discord")      # agent 1's worker takes row 1, gets 503, waits
    time.sleep(0.2)
    t2 = drain_in_thread(s, "discord", "host:2:1:discord")      # agent 2's worker polls meanwhile
    t1.join(10)
    t2.join(10)
    shown = list(dict.fromkeys(discord.contents()[1:]))         # what the chat shows (the 503'd POST first)
    assert [("entry" in c) for c in shown] == [True, False], f"the chat shows: {shown}"
    assert [r["status"] for r in rows(s)] == ["sent", "sent"]


def test_a_row_that_fails_for_good_does_not_hold_back_the_rows_behind_it(tmp_path, discord):
    s = dsettings(tmp_path, discord)
    discord.script(Reply(400, {"message": "Cannot send an empty message", "code": 50006}))
    put(s, "trade_opened", "one")
    put(s, "trade_opened", "two")
    out, _ = deliver(s, "discord")
    assert [o.status for o in out] == ["failed", "sent"]
    assert discord.contents()[-1] == "\\[hybrid\\] two"

class _BrokenOnFunding:
    """The real Discord sender, but one message hits an unexpected library error (not a DeliveryError)."""

    def __init__(self, real):
        self.real = real
        self.channel = real.channel

    def parts(self, text):
        return self.real.parts(text)

    def send_part(self, part):
        if "funding" in part:
            raise RuntimeError("unexpected library error")
        self.real.send_part(part)

    def close(self):
        self.real.close()


def _worker_pass(s, wid, now=None, monkeypatch=None):
    if now is not None:
        monkeypatch.setattr(store_outbox, "utcnow", lambda: now)
    st = Store(s.db_path)
    sender = _BrokenOnFunding(outbox.make_sender("discord", s))
    try:
        return [o.status for o in Deliverer(st, sender, s, LOG, wid=wid).drain()]
    finally:
        sender.close()
        st.close()


def test_an_unexpected_error_on_one_row_does_not_hold_back_the_kill_switch_alert(tmp_path, discord, monkeypatch):
    s = dsettings(tmp_path, discord)
    put(s, "info", "funding paid 0.01 USDT")                        # the row whose send hits a bug
    put(s, "kill_switch", "🛑 daily loss stop: no new entries until the next UTC day")
    t0 = utcnow()
    blocked = 0
    # each pass: one process's worker (agents, listener) polling every few seconds
    for k in range(0, 600, 5):
        now = t0 + timedelta(seconds=k)
        _worker_pass(s, f"host:{k}:1:discord", now, monkeypatch)
        if rows(s)[1]["status"] != "sent":
            blocked = k + 5
        else:
            break
    assert rows(s)[1]["status"] == "sent"
    # a row given back after an unexpected error never holds the rows behind it for long
    assert blocked <= 10, f"the kill-switch alert was held back {blocked}s behind an unrelated row ({rows(s)[0]})"
