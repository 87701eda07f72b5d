"""The Telegram client against a fake Bot API on 127.0.0.1, as Telegram behaves after a group is upgraded to a
supergroup: every sendMessage to the old chat id answers 400 with ``parameters.migrate_to_chat_id``
(python-telegram-bot raises ``ChatMigrated``), and the old id never works again."""
from __future__ import annotations

import logging

from fakes.telegram import BOT_TOKEN, CHAT_ID
from test_notify import deliver, put, rows, tsettings
from tracer.notify import outbox
from tracer.notify.commands import CommandListener
from tracer.notify.telegram import TelegramClient
from tracer.notify.worker import Deliverer
from tracer.store import Store

LOG = logging.getLogger("test-telegram-migration")
SUPERGROUP = -1001234567890
OPERATOR = 777


def test_a_group_upgraded_to_a_supergroup_still_gets_every_alert(tmp_path, telegram):
    s = tsettings(tmp_path, telegram)
    telegram.migrate(CHAT_ID, SUPERGROUP)
    put(s, "trade_opened", "📈 entry buy 0.1 BTC/USD ~65000")
    put(s, "kill_switch", "🛑 daily loss stop 2024-05-01")
    out, _ = deliver(s, "telegram")
    assert [o.status for o in out] == ["sent", "sent"], [r["last_error"] for r in rows(s)]
    assert [m["chat_id"] for m in telegram.sent] == [str(SUPERGROUP)] * 2
    # the old id was tried once: the sender keeps the new one
    assert [p["chat_id"] for m, p in telegram.calls if m == "sendMessage"] == [str(CHAT_ID)] + [str(SUPERGROUP)] * 2


def test_the_supergroup_id_is_kept_for_a_restart_and_the_listener_and_announced_once(tmp_path, telegram):
    s = tsettings(tmp_path, telegram, TB_TELEGRAM_ALLOWED_USER_IDS=str(OPERATOR))
    telegram.migrate(CHAT_ID, SUPERGROUP)
    st = Store(s.db_path)

    def drain() -> list[str]:             # a worker's pass: a fresh sender from the DB, as after a restart
        sender = outbox.make_sender("telegram", s, st)
        try:
            return [o.status for o in Deliverer(st, sender, s, LOG).drain()]
        finally:
            sender.close()

    put(s, "trade_opened", "📈 entry buy 0.1 BTC/USD ~65000")
    assert drain() == ["sent", "sent"]    # the alert, then the notice queued when the upgrade was met
    [notice] = [r for r in rows(s) if r["kind"] == "telegram_chat_migrated"]
    assert f"TB_TELEGRAM_CHAT_ID={SUPERGROUP}" in notice["message"] and notice["channel"] == "telegram"
    tried = len(telegram.calls)
    put(s, "heartbeat", "alive")
    assert drain() == ["sent"]
    assert [p["chat_id"] for m, p in telegram.calls[tried:]] == [str(SUPERGROUP)]     # straight to the supergroup
    assert len([r for r in rows(s) if r["kind"] == "telegram_chat_migrated"]) == 1
    # the command listener obeys the supergroup, though TB_TELEGRAM_CHAT_ID still names the old group
    client = TelegramClient(BOT_TOKEN, str(CHAT_ID), telegram.base_url, 5.0)
    try:
        telegram.push_message("/pause futures", chat_id=SUPERGROUP, user="op", user_id=OPERATOR)
        assert CommandListener(st, client, s, LOG).poll_once() == 1
    finally:
        client.close()
    assert st.is_paused("futures")
    st.close()
