"""Parsing of the command line's shared option kinds (a leaf: the CLIs of every package use it)."""
from __future__ import annotations

from datetime import datetime, timezone


def parse_when(s: str | None, opt: str, prog: str) -> datetime | None:
    """An ISO 8601 date/time option as UTC (a naive one is UTC); a clear exit naming the option otherwise."""
    if not s:
        return None
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"{prog}: {opt} {s!r} is not an ISO 8601 date/time") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
