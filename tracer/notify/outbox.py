"""The notifications outbox: every message is written to the DB before any delivery is tried.

- :func:`enqueue` writes one ``pending`` row per enabled channel (console, discord, telegram),
  inside the caller's transaction, after removing every configured secret from the text.
- The console channel is delivered by the agent right after its cycle commits
  (:func:`deliver_console`: a log line, then the row is marked sent).
- Discord and Telegram rows are sent by :mod:`tracer.notify.worker` (a thread beside the trading
  loop, never in it), which claims rows atomically, retries with backoff and records the outcome.

Channels are switched on by their settings: ``TB_NOTIFY_CONSOLE``; ``TB_DISCORD_WEBHOOK_URL``;
``TB_TELEGRAM_BOT_TOKEN`` with ``TB_TELEGRAM_CHAT_ID`` (the config refuses one without the other).
"""
from __future__ import annotations

import logging
from datetime import timedelta, timezone
from typing import Any

from tracer.logs import kv, log_line
from tracer.notify.delivery import Sender
from tracer.notify.format import redact

REMOTE_CHANNELS = ("discord", "telegram")
ONCE_KINDS = ("kill_switch", "data_outage")


def remote_channels(settings: Any) -> list[str]:
    """The enabled remote channels (delivered by the worker)."""
    out = []
    if getattr(settings, "discord_webhook_url", ""):
        out.append("discord")
    if getattr(settings, "telegram_bot_token", "") and getattr(settings, "telegram_chat_id", ""):
        out.append("telegram")
    return out


def channels(settings: Any) -> list[str]:
    """The enabled channels."""
    return (["console"] if settings.notify_console else []) + remote_channels(settings)


def enqueue(store: Any, settings: Any, kind: str, message: str, agent: str | None = None) -> list[int]:
    """Write ``message`` to the outbox once per enabled channel (inside the caller's transaction).

    Every configured secret (``Settings.secret_values()``, and the path of a secret URL) is replaced
    by ``***`` first, so no secret can reach the DB or a chat. A kind in ``ONCE_KINDS`` (the kill
    switch) is written once per agent and first line of text (which names its day). Returns the new
    row ids."""
    text = redact(message, settings.secret_values())
    if kind in ONCE_KINDS:
        key = f"once:{agent}:{kind}:{text.splitlines()[0] if text else ''}"
        if store.notify_state(key) is not None:
            return []
        store.set_notify_state(key, kind)
    ids: list[int] = store.enqueue_notifications(channels(settings), kind, text, agent)
    return ids


def make_sender(channel: str, settings: Any, store: Any = None) -> Sender:
    """The sender of ``channel`` built from the settings (call it in the thread that will use it). With ``store``,
    Telegram sends to the supergroup the configured group became, and records such an upgrade when it meets one."""
    if channel == "discord":
        from tracer.notify.discord import DiscordSender      # built on demand: a channel not configured costs no import
        return DiscordSender(settings.discord_webhook_url, settings.notify_timeout_s)
    if channel == "telegram":
        from tracer.notify.telegram import TelegramClient
        if store is None:
            return TelegramClient(settings.telegram_bot_token, settings.telegram_chat_id, settings.telegram_base_url,
                                  settings.notify_timeout_s)
        return TelegramClient(settings.telegram_bot_token, telegram_chat_id(store, settings),
                              settings.telegram_base_url, settings.notify_timeout_s,
                              on_migrated=lambda old, new: record_chat_migration(store, settings, old, new))
    raise ValueError(f"unknown channel {channel!r}")


# A Telegram group upgraded to a supergroup gets a new chat id; the old one is refused from then on. The new id is
# kept in notify_state under the configured id, so every process (the agents' workers, the listener) uses it, also
# after a restart, until the operator sets TB_TELEGRAM_CHAT_ID to it.
def _migrated_key(chat_id: str) -> str:
    return f"telegram_chat_migrated:{chat_id.strip()}"


def telegram_chat_id(store: Any, settings: Any) -> str:
    """The chat Telegram messages go to: the configured one, or the supergroup it was upgraded to."""
    return str(store.notify_state(_migrated_key(settings.telegram_chat_id)) or settings.telegram_chat_id).strip()


def telegram_chat_ids(store: Any, settings: Any) -> set[str]:
    """The chats whose commands are obeyed: the configured one and, once upgraded, its supergroup."""
    return {str(settings.telegram_chat_id).strip(), telegram_chat_id(store, settings)}


def record_chat_migration(store: Any, settings: Any, old: str, new: str) -> None:
    """Keep ``new`` as the configured chat's id and, the first time, tell the operator (log and alert)."""
    key = _migrated_key(settings.telegram_chat_id)
    if store.notify_state(key) == new:
        return
    text = (f"⚠️ Telegram chat {old} was upgraded to a supergroup with id {new}: messages and commands now use "
            f"{new}. Set TB_TELEGRAM_CHAT_ID={new} in .env.")
    logging.getLogger("tracer.notify").warning(kv("telegram_chat_migrated", old=old, new=new,
                                                  action="set TB_TELEGRAM_CHAT_ID"))
    with store.transaction():
        store.set_notify_state(key, new)
        enqueue(store, settings, "telegram_chat_migrated", text)


def deliver_console(store: Any, log: logging.Logger) -> int:
    rows = store.pending_notifications("console")
    for r in rows:
        log.info(kv("notify", kind=r["kind"], message=r["message"]))
    if rows:
        with store.transaction():
            for r in rows:
                store.mark_notification(r["id"], "sent")
    return len(rows)


def _utc_day(t: Any) -> Any:
    return t.astimezone(timezone.utc).date()


def enqueue_periodic(store: Any, settings: Any, agent: str, cycle: int, clock: Any, prev_clock: Any,
                     equity: float, open_positions: int) -> list[int]:
    """After a committed cycle: a heartbeat every ``TB_NOTIFY_HEARTBEAT_EVERY`` cycles, and the daily
    summary of the UTC day that ended between ``prev_clock`` (the previous cycle's market clock) and
    ``clock`` (``TB_NOTIFY_DAILY_SUMMARY``). One transaction; returns the new row ids."""
    from tracer.notify.messages import daily_summary_text, heartbeat_text
    from tracer.notify.stats import day_stats

    msgs: list[tuple[str, str]] = []
    every = settings.notify_heartbeat_every
    if every and cycle % every == 0:
        msgs.append(("heartbeat", heartbeat_text(cycle, clock, equity, open_positions, store.is_paused(agent))))
    # once per UTC day: only when the clock moved forward into a later UTC day (never for a clock that went back)
    # (a clock that jumped over whole days, a restart after days: each ended day, the last 7 at most)
    if settings.notify_daily_summary and prev_clock is not None and clock is not None \
            and _utc_day(clock) > _utc_day(prev_clock):
        first, end = _utc_day(prev_clock), _utc_day(clock)
        n = (end - first).days
        for i in range(max(0, n - 7), n):
            day = first + timedelta(days=i)
            msgs.append(("daily_summary", daily_summary_text(day_stats(store, agent, day))))
    if not msgs:
        return []
    with store.transaction():
        return [i for kind, text in msgs for i in enqueue(store, settings, kind, text, agent)]


def alert_or_log(store: Any, settings: Any, kind: str, message: str, agent: str | None = None,
                 busy_timeout_s: float = 1.0) -> bool:
    """Enqueue an alert through ``store`` in its own transaction; when the DB cannot take it (locked,
    read-only, full), append it to ``TB_LOG_DIR/alerts.log`` instead, the same file and format as
    :func:`tracer.ops.alert` uses. Never raises. True when it went to the outbox.

    The DB is given only ``busy_timeout_s`` to take the row: an alert about a locked DB must not wait
    the agent's full busy timeout."""
    import sqlite3
    conn = getattr(store, "conn", None)
    try:
        if conn is not None:
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        try:
            with store.transaction():
                enqueue(store, settings, kind, message, agent)
            return True
        finally:
            if conn is not None:
                conn.execute(f"PRAGMA busy_timeout={int(getattr(store, 'busy_timeout_s', 30.0) * 1000)}")
    except (sqlite3.Error, OSError) as e:
        try:
            log_line(settings, "alerts", agent, f"kind={kind} not enqueued ({type(e).__name__}: {e}): {message}")
        except OSError:
            pass
        return False
