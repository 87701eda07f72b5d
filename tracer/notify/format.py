"""Text transforms for outgoing messages (pure): secret redaction, Discord escaping, splitting.

- :func:`redact` removes every secret (and the parts of a secret URL that show up in error texts,
  such as a webhook's path) from a text.
- :func:`escape_discord` backslash-escapes the Markdown characters Discord renders, so hostile text
  (a headline, an exception message) shows literally. Telegram messages are sent as plain text (no
  ``parse_mode``) and need no escaping.
- :func:`split_text` cuts a text into parts that each fit a platform limit, measured in UTF-16 code
  units (how both platforms count; never fewer than Python's code points), preferring line breaks,
  then spaces, and never cutting inside a character or an escape sequence.
"""
from __future__ import annotations

from typing import Callable, Iterable
from urllib.parse import urlsplit

DISCORD_LIMIT = 2000        # characters of a webhook message's content
TELEGRAM_LIMIT = 4096       # characters of a sendMessage text
MAX_PARTS = 10              # a longer message is truncated (with a note) rather than flooding the chat

_DISCORD_SPECIAL = set("\\*_~`|>#[]<")


def utf16_len(s: str) -> int:
    """Length in UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(s.encode("utf-16-le")) // 2


def secret_fragments(secrets: Iterable[str]) -> list[str]:
    """Every secret, plus for a URL secret its password and its path and long path segments (a Discord
    webhook's token appears without the host in ``requests`` errors), longest first. Fragments shorter than 8
    characters are left out (they would redact ordinary words)."""
    out: set[str] = set()
    for s in secrets:
        if not s:
            continue
        out.add(s)
        if "://" in s:
            parts = urlsplit(s)
            try:
                if parts.password:                 # postgresql://user:PASSWORD@host/db
                    out.add(parts.password)
            except ValueError:
                pass
            if len(parts.path) >= 8:
                out.add(parts.path)
            out.update(seg for seg in parts.path.split("/") if len(seg) >= 16)
    return sorted((f for f in out if len(f) >= 8 or f in secrets), key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret fragment replaced by ``***``."""
    for f in secret_fragments(secrets):
        text = text.replace(f, "***")
    return text


def escape_discord(text: str) -> str:
    """Backslash-escape Discord Markdown (bold, italics, code, spoilers, quotes, headings, links, mentions)."""
    return "".join("\\" + c if c in _DISCORD_SPECIAL else c for c in text)


def split_text(text: str, limit: int, *, transform: Callable[[str], str] = lambda s: s,
               measure: Callable[[str], int] = utf16_len, max_parts: int = MAX_PARTS) -> list[str]:
    """Split ``text`` into parts whose ``transform`` (e.g. escaping) fits ``limit``; returns the
    transformed parts. A single part is returned as is; several get a ``(i/n)`` prefix. More than
    ``max_parts`` parts: the rest is dropped and the last part says so. Empty text -> ``[]``."""
    if not text:
        return []
    whole = transform(text)
    if measure(whole) <= limit:
        return [whole]
    reserve = len(f"({max_parts}/{max_parts}) ") + 2
    budget = limit - reserve
    note_reserve = 40
    chunks: list[str] = []
    rest = text
    while rest and len(chunks) < max_parts:
        room = budget - (note_reserve if len(chunks) == max_parts - 1 else 0)
        cut = _cut(rest, room, transform, measure)
        chunks.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        chunks[-1] = chunks[-1] + f"\n… (truncated: {len(rest)} more characters)"
    n = len(chunks)
    return [f"({i}/{n}) " + transform(c.strip("\n")) for i, c in enumerate(chunks, 1)]


def _cut(text: str, room: int, transform: Callable[[str], str], measure: Callable[[str], int]) -> int:
    """The largest prefix length of ``text`` whose transform fits ``room``, moved back to the last
    line break (or else space) in its second half when there is one."""
    if measure(transform(text)) <= room:
        return len(text)
    used, n = 0, 0
    for ch in text:                         # transform is per character for our escapes: add up
        w = measure(transform(ch))
        if used + w > room:
            break
        used += w
        n += 1
    n = max(n, 1)
    for sep in ("\n", " "):
        k = text.rfind(sep, 0, n)
        if k >= n // 2:
            return k + 1
    return n
