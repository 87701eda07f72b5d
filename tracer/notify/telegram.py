"""Telegram through python-telegram-bot's ``Bot`` (Bot API over ``TB_TELEGRAM_BASE_URL``).

:class:`TelegramClient` is a small synchronous wrapper: it owns a private asyncio event loop and
two ``HTTPXRequest`` objects, so a plain thread (the outbox worker, the command listener) can call
it. It is used from the thread that created it only.

- :meth:`TelegramClient.send_part` sends one plain-text message (no ``parse_mode``: Markdown or
  HTML in the text is shown literally; link previews off) to the configured chat. A group upgraded
  to a supergroup answers ``ChatMigrated`` with its new id (the old one never works again): the
  message is sent there, the client keeps that id and tells ``on_migrated(old, new)`` (the outbox
  persists it: :func:`tracer.notify.outbox.telegram_chat_id`). Errors are classified into
  :class:`~tracer.notify.delivery.DeliveryError`: ``RetryAfter`` -> transient with its
  ``retry_after``; ``TimedOut``/``NetworkError`` (5xx, connection) -> transient; ``BadRequest``,
  ``Forbidden``, ``InvalidToken`` (401/404) -> permanent.
- :meth:`TelegramClient.updates` long-polls ``getUpdates`` from an offset (the caller persists it);
  :meth:`TelegramClient.username` is the bot's own username (``getMe``, asked once).

The bot token is a secret: error texts built here never include it (the library's own messages
do not either, except ``Bot.initialize``, which is therefore not used).
"""
from __future__ import annotations

import asyncio
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from telegram import Bot, LinkPreviewOptions
from telegram.error import (BadRequest, ChatMigrated, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter,
                            TelegramError, TimedOut)
from telegram.request import HTTPXRequest

from tracer.notify.format import TELEGRAM_LIMIT, split_text
from tracer.notify.delivery import DeliveryError


@dataclass(frozen=True)
class Incoming:
    """One text message received by the bot."""
    update_id: int
    chat_id: int | None
    user: str
    text: str
    user_id: int | None = None      # the sender's Telegram user id (None: a channel post, no sender)
    forwarded: bool = False         # a forwarded message: its author is not the sender
    sent_at: datetime | None = None  # when Telegram received it (UTC)
    message_id: int | None = None   # unique within its chat: (chat_id, message_id) names one message


def retry_after_seconds(e: RetryAfter) -> float:
    """``RetryAfter.retry_after`` in seconds (an int, or a timedelta in newer releases)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra: Any = e.retry_after
    return ra.total_seconds() if isinstance(ra, timedelta) else float(ra)


class TelegramClient:
    channel = "telegram"

    def __init__(self, token: str, chat_id: str, base_url: str = "https://api.telegram.org/bot",
                 timeout_s: float = 10.0, on_migrated: Callable[[str, str], None] | None = None):
        if not token or not chat_id:
            raise ValueError("Telegram needs TB_TELEGRAM_BOT_TOKEN and TB_TELEGRAM_CHAT_ID together")
        self.chat_id = chat_id
        self.on_migrated = on_migrated
        self.timeout_s = timeout_s
        self._username: str | None = None
        self._loop = asyncio.new_event_loop()
        self._requests = (HTTPXRequest(read_timeout=timeout_s, write_timeout=timeout_s, connect_timeout=timeout_s,
                                       connection_pool_size=2),
                          HTTPXRequest(read_timeout=timeout_s, write_timeout=timeout_s, connect_timeout=timeout_s,
                                       connection_pool_size=2))
        self._bot = Bot(token, base_url=base_url, request=self._requests[0], get_updates_request=self._requests[1])
        self._run(self._each("initialize"))

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    async def _each(self, method: str) -> None:
        for r in self._requests:
            await getattr(r, method)()

    # --- outgoing ----------------------------------------------------------------------------
    def parts(self, text: str) -> list[str]:
        """Plain-text parts of ``text``, each within Telegram's 4096-character limit."""
        return split_text(text, TELEGRAM_LIMIT)

    def send_part(self, part: str) -> None:
        """Send one message to the chat (the supergroup it became, if so); raises :class:`DeliveryError`."""
        try:
            self._send(part)
        except ChatMigrated as e:
            old, self.chat_id = self.chat_id, str(e.new_chat_id)
            if self.on_migrated is not None:
                self.on_migrated(old, self.chat_id)
            try:
                self._send(part)
            except ChatMigrated as again:      # migrated twice in one breath: not ours to chase
                raise DeliveryError(f"telegram: ChatMigrated: {again.message}", transient=False) from None

    def _send(self, part: str) -> None:
        """One ``sendMessage`` to ``chat_id``; ``ChatMigrated`` passes through, the rest is classified."""
        try:
            self._run(self._bot.send_message(chat_id=self.chat_id, text=part,
                                             link_preview_options=LinkPreviewOptions(is_disabled=True)))
        except ChatMigrated:
            raise
        except RetryAfter as e:
            ra = retry_after_seconds(e)
            raise DeliveryError(f"telegram: rate limited (retry_after {ra:g})", transient=True,
                                retry_after=ra) from None
        except (BadRequest, Forbidden, InvalidToken) as e:
            raise DeliveryError(f"telegram: {type(e).__name__}: {e.message}", transient=False) from None
        except (TimedOut, NetworkError) as e:
            raise DeliveryError(f"telegram: {type(e).__name__}: {e.message}", transient=True) from None
        except TelegramError as e:
            raise DeliveryError(f"telegram: {type(e).__name__}: {e.message}", transient=False) from None

    # --- incoming ----------------------------------------------------------------------------
    def updates(self, offset: int | None, timeout_s: int = 0) -> list[Incoming]:
        """Text messages after ``offset`` (long poll up to ``timeout_s``). Raises ``Conflict`` when
        another process polls the same token, other ``TelegramError`` on failure."""
        ups = self._run(self._bot.get_updates(offset=offset, timeout=timeout_s, allowed_updates=["message"]))
        out = []
        for u in ups:
            msg = u.effective_message
            chat = u.effective_chat
            user = u.effective_user
            out.append(Incoming(u.update_id, chat.id if chat else None,
                                (user.username or str(user.id)) if user else "",
                                (msg.text or "") if msg else "",
                                user_id=user.id if user else None,
                                forwarded=bool(msg is not None and (msg.forward_origin is not None
                                                                    or msg.is_automatic_forward)),
                                sent_at=msg.date if msg is not None else None,
                                message_id=msg.message_id if msg is not None else None))
        return out

    def username(self) -> str:
        """The bot's own username (``getMe``, asked once): a command addressed ``/cmd@name`` to another bot is
        not ours."""
        if self._username is None:
            self._username = str(self._run(self._bot.get_me()).username or "")
        return self._username

    def close(self) -> None:
        """Close the HTTP clients and the event loop (idempotent)."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._each("shutdown"))
        finally:
            self._loop.close()


__all__ = ["TelegramClient", "Incoming", "Conflict", "retry_after_seconds"]
