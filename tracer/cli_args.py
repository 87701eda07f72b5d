"""Parsing of the command line's shared option kinds (a leaf: the CLIs of every package use it)."""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path


def parse_when(s: str | None, opt: str, prog: str) -> datetime | None:
    """An ISO 8601 date/time option as UTC (a naive one is UTC); otherwise a message naming the option on stderr
    and exit 2, as argparse exits on every other usage error."""
    if not s:
        return None
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        print(f"{prog}: {opt} {s!r} is not an ISO 8601 date/time", file=sys.stderr)
        raise SystemExit(2) from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def headlines_file(option: str | None, setting: str) -> Path | None:
    """The headlines CSV of a backtest, as the replay agent reads them: ``--headlines``, else the settings'
    ``TB_HEADLINES_PATH``, else None (the data folder's ``headlines.csv``, or price-only). ValueError when the named
    file does not exist (the agent refuses it: a typo must not turn into price-only)."""
    name = option or setting
    if not name:
        return None
    if not Path(name).is_file():
        raise ValueError(f"{'--headlines ' if option else 'TB_HEADLINES_PATH='}{name}: no such file (leave "
                         f"TB_HEADLINES_PATH empty for the data folder's headlines.csv, or price-only)")
    return Path(name)
