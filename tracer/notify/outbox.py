"""The notifications outbox: every message is written to the DB before any delivery is tried.

Today the console channel is delivered by the agent right after its cycle commits (a log line,
then the row is marked sent). Discord and Telegram delivery arrive with the operations issue.
"""
from __future__ import annotations

import logging
from typing import Any

from tracer.logs import kv


def channels(settings: Any) -> list[str]:
    """The enabled channels."""
    return ["console"] if settings.notify_console else []


def enqueue(store: Any, settings: Any, kind: str, message: str, agent: str | None = None) -> list[int]:
    """Write ``message`` to the outbox once per enabled channel (inside the caller's transaction)."""
    return [store.enqueue_notification(ch, kind, message, agent) for ch in channels(settings)]


def deliver_console(store: Any, log: logging.Logger) -> int:
    rows = store.pending_notifications("console")
    for r in rows:
        log.info(kv("notify", kind=r["kind"], message=r["message"]))
    if rows:
        with store.transaction():
            for r in rows:
                store.mark_notification(r["id"], "sent")
    return len(rows)
