"""What a channel's sender is and how it fails: the contract between the outbox worker and Discord / Telegram
(a leaf, so the senders never import the outbox that builds them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class DeliveryError(Exception):
    """A failed send. ``transient``: worth retrying (after ``retry_after`` seconds when the server
    said so); otherwise the message is marked failed at once. ``message`` never holds a URL or token."""
    message: str
    transient: bool
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.message


class Sender(Protocol):
    """One remote channel: how a text is cut into parts, and how one part is sent."""
    channel: str

    def parts(self, text: str) -> list[str]: ...
    def send_part(self, part: str) -> None: ...   # raises DeliveryError
    def close(self) -> None: ...
