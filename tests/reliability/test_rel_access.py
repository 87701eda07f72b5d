"""Reliability (issue 10): Telegram commands from any chat but the configured one change nothing.

tests/test_telegram_commands.py proves the rule for two foreign chats. This is the reliability scenario:
a fuzz (hypothesis, seeded) over many foreign chat ids, near misses of the configured id included (its
negative, a supergroup form ``-100<id>``, a digit more or less, 0, 64-bit ids), senders that claim the
configured user's id from another chat, and hostile command texts (every command in odd spellings,
``@bot`` suffixes, control and bidi characters, very long texts). Each example goes through the real
code: python-telegram-bot's ``getUpdates`` against the fake Bot API, ``CommandListener.poll_once`` on a
real SQLite file, and the outbox delivery. Checked per example: the ``controls`` table is unchanged, no
notification row is queued, nothing is sent to any chat, the offset moves past the updates and each is
logged as ignored. At the end the configured chat still works (so the silence is not a dead listener).
Then the listener *process* (scripts/telegram_listener.py) gets a burst of hostile foreign commands and
one legit ``/status``: only that one is answered, only to the configured chat.

Seed: ``TB_REL_ACCESS_SEED`` (printed). Examples: 40 by default, 400 with ``--long``.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from fakes.telegram import BOT_TOKEN, CHAT_ID, FakeTelegram
from test_telegram_commands import controls, replies, settings_for
from tracer.store import Store
from tracer.notify import outbox
from tracer.notify.commands import CommandListener
from tracer.notify.telegram import TelegramClient
from tracer.notify.worker import Deliverer

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("TB_REL_ACCESS_SEED", "4242"))
LOG = logging.getLogger("test-rel-access")

NEAR_MISSES = [-CHAT_ID, int(f"-100{CHAT_ID}"), CHAT_ID * 10, CHAT_ID // 10, CHAT_ID + 1, CHAT_ID - 1, 0, 1, -1,
               2**63 - 1, -(2**63), int(f"{CHAT_ID}{CHAT_ID}")]
COMMANDS = ["pause", "resume", "status", "positions", "pnl", "help", "start"]

foreign_ids = st.one_of(st.sampled_from(NEAR_MISSES), st.integers(-(2**63), 2**63 - 1)).filter(lambda i: i != CHAT_ID)
command_texts = st.one_of(
    st.builds(lambda c, at, arg, case: (f"/{c}" if not case else f"/{c.upper()}") + at + arg,
              st.sampled_from(COMMANDS), st.sampled_from(["", "@tracer_test_bot", "@other_bot", "@"]),
              st.sampled_from(["", " all", " futures", " hybrid", " both", " ALL", " all; /resume", "  \t futures",
                               " " + "x" * 5000]),
              st.booleans()),
    st.builds(lambda pre, c, post: f"{pre}/{c}{post}", st.sampled_from(["", " ", "\n", "\u202e", "\u200b", "\x00"]),
              st.sampled_from(COMMANDS), st.sampled_from(["", "\x00", "\n/pause", " \u202e all"])),
    st.text(max_size=200),
)
message = st.tuples(foreign_ids, command_texts, st.booleans())   # (chat id, text, sender claims our user id)


def push(fake: FakeTelegram, chat_id: int, text: str, claims_our_user: bool) -> None:
    """An incoming message from ``chat_id`` (its sender may carry the configured chat's user id, as a member
    of a group the owner is in would)."""
    uid = fake.push_message(text, chat_id=chat_id, user="mallory")
    if claims_our_user:
        with fake._cond:
            for u in fake._updates:
                if u["update_id"] == uid:
                    u["message"]["from"]["id"] = CHAT_ID
                    u["message"]["from"]["username"] = "owner"


class Tally:
    examples = messages = obeyed = controls_changed = queued = sent = 0


def _fuzz(tmp_path: Path, max_examples: int, reliability, caplog) -> None:
    print(f"seed {SEED} (TB_REL_ACCESS_SEED to replay)")
    t = Tally()
    ok = False
    with FakeTelegram() as fake:
        s = settings_for(tmp_path, fake)
        store = Store(s.db_path)
        client = TelegramClient(BOT_TOKEN, str(CHAT_ID), fake.base_url, 5.0)
        listener = CommandListener(store, client, s, LOG)
        sender = outbox.make_sender("telegram", s)
        store.set_paused("futures", True, "set by the test")      # a state foreign /resume must not undo
        before = controls(store)

        @seed(SEED)
        @settings(max_examples=max_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(message, min_size=1, max_size=6))
        def example(msgs):
            sent_before = len(fake.sent)
            for chat_id, text, claims in msgs:
                push(fake, chat_id, text, claims)
            with caplog.at_level(logging.WARNING, logger="test-rel-access"):
                caplog.clear()
                n = listener.poll_once()
            t.examples += 1
            t.messages += n
            assert n == len(msgs)
            ignored = caplog.text.count("telegram_command_ignored")
            t.obeyed += n - ignored
            assert ignored == n, caplog.text[-2000:]
            now = controls(store)
            t.controls_changed += now != before
            assert now == before
            rows = store.conn.execute("SELECT COUNT(*) FROM notifications").fetchone()[0]
            t.queued += rows
            assert rows == 0 and replies(store) == []
            Deliverer(store, sender, s, LOG).drain()
            t.sent += len(fake.sent) - sent_before
            assert len(fake.sent) == sent_before
            assert listener.poll_once() == 0              # the offset moved past them: nothing comes back

        try:
            example()
            # the configured chat is still obeyed: the silence above was the rule, not a dead listener
            fake.push_message("/resume futures")
            assert listener.poll_once() == 1
            assert controls(store) == {"futures": 0} and len(replies(store)) == 1
            ok = True
        finally:
            sender.close()
            client.close()
            store.close()
            print(vars(t) | {})
            reliability(f"access: foreign Telegram chats{' (long)' if max_examples > 100 else ''}", trials=t.examples, inputs_fuzzed=t.examples,
                        checked="hypothesis fuzz of foreign chat ids (near misses, 64-bit, senders claiming the owner's "
                                "id) x hostile command texts through python-telegram-bot, CommandListener and the "
                                "outbox: controls unchanged, nothing queued, nothing sent, offset advanced, each "
                                "ignored update logged; the configured chat still obeyed", ok=ok, seed=SEED,
                        messages=t.messages, obeyed_from_foreign=t.obeyed, controls_changed=t.controls_changed,
                        notifications_queued=t.queued, messages_sent=t.sent)


def test_foreign_chats_change_nothing_fuzz(tmp_path, reliability, caplog):
    _fuzz(tmp_path, 40, reliability, caplog)


@pytest.mark.long
def test_foreign_chats_change_nothing_fuzz_long(tmp_path, reliability, caplog):
    _fuzz(tmp_path, 400, reliability, caplog)


def test_listener_process_ignores_a_burst_of_foreign_commands(tmp_path, reliability):
    """The real listener process: 60 hostile commands from foreign chats, then one /status from ours."""
    import random
    rng = random.Random(SEED)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    env.update(TB_DB_PATH=str(tmp_path / "state" / "tracer.db"), TB_LOG_DIR=str(tmp_path / "logs"),
               TB_STATE_DIR=str(tmp_path / "state"), TB_TELEGRAM_BOT_TOKEN=BOT_TOKEN,
               TB_TELEGRAM_CHAT_ID=str(CHAT_ID), TB_TELEGRAM_POLL_TIMEOUT_S="1", TB_NOTIFY_POLL_S="0.1")
    foreign = [c for c in NEAR_MISSES if c != CHAT_ID] + [rng.randrange(-(2**40), 2**40) for _ in range(20)]
    n = 60
    ok = False
    with FakeTelegram() as fake:
        env["TB_TELEGRAM_BASE_URL"] = fake.base_url
        for i in range(n):
            cmd = rng.choice(["/pause", "/pause all", "/resume", "/pause futures", "/status", "/help", "/pnl",
                              "/PAUSE@tracer_test_bot hybrid"])
            push(fake, rng.choice(foreign), cmd, claims_our_user=i % 3 == 0)
        fake.push_message("/status")
        p = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "telegram_listener.py")], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 60
            while time.time() < deadline and not fake.sent:
                time.sleep(0.05)
            time.sleep(0.5)                                  # anything else it would send, it sends now
        finally:
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=30)
        try:
            assert p.returncode == 0, err[-2000:]
            assert [m["chat_id"] for m in fake.sent] == [str(CHAT_ID)], fake.sent
            assert fake.sent[0]["text"].startswith("Status")
            st_ = Store(tmp_path / "state" / "tracer.db")
            assert st_.conn.execute("SELECT COUNT(*) FROM controls").fetchone()[0] == 0
            st_.close()
            log = (tmp_path / "logs" / "telegram.log").read_text()
            assert log.count("telegram_command_ignored") == n
            ok = True
        finally:
            reliability("access: listener process, burst of foreign commands", trials=n, inputs_fuzzed=n,
                        checked="scripts/telegram_listener.py with 60 pause/resume/status commands from foreign chats "
                                "(a third claiming the owner's user id) and one /status from the configured chat: "
                                "controls unchanged, one reply, to the configured chat only, 60 ignored lines logged",
                        ok=ok, seed=SEED, replies=len(fake.sent))
