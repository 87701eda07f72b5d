"""Parsing one variable's text into its typed value, ASCII only, with what is allowed when it does not parse."""
from __future__ import annotations

import math
import re
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from tracer.symbols import canonical  # a leaf: the configuration imports no other tracer module

# BASE, BASE/USD, BASE-USD, BASEUSDT ...: ASCII letters/digits, a USD-like quote if one is given.
_SYMBOL_RE = re.compile(r"[A-Za-z0-9]+(?:[/-](?:USD|USDT|USDC|BUSD))?", re.IGNORECASE | re.ASCII)
# ASCII numbers only: int()/float() would also take "1_000", Arabic-Indic digits, "infinity" ...
_INT_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
MAX_TEXT = 4096          # longest accepted text value (a key list, a URL, a path)

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


def _check_text(s: str) -> None:
    """Text values: no control characters (NUL, newlines, escapes: they break paths, HTTP headers and log
    lines) and at most ``MAX_TEXT`` characters."""
    if len(s) > MAX_TEXT:
        raise ValueError(f"too long ({len(s)} characters, at most {MAX_TEXT})")
    bad = next((c for c in s if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise ValueError(f"must not contain control characters (found U+{ord(bad):04X})")


def _check_url(s: str) -> str:
    """An http(s) URL with a host (``https://api.example.com``, ``http://127.0.0.1:8080/x``); empty is left
    to the caller (only optional URLs accept it)."""
    try:
        parts = urlsplit(s)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        raise ValueError("must be an http(s) URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or not port_ok \
            or any(c.isspace() for c in s) or not parts.hostname.isascii():
        raise ValueError("must be an http(s) URL with a host name")
    return s


def _parse(kind: str, raw: str) -> Any:  # noqa: C901
    s = raw.strip()
    if kind in ("str", "path", "url", "ids", "channels"):
        _check_text(s)
    if kind == "str":
        return s
    if kind == "url":
        return _check_url(s) if s else s
    if kind == "path":
        if not s:
            raise ValueError("must not be empty")
        return Path(s).expanduser()
    if kind == "int":
        if not _INT_RE.fullmatch(s):
            raise ValueError("must be an integer")
        return int(s)
    if kind == "float":
        if not _FLOAT_RE.fullmatch(s):
            raise ValueError("must be a number" if s.lower().lstrip("+-") not in ("nan", "inf", "infinity")
                             else "must be a finite number")
        try:
            v = float(s)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v
    if kind == "bool":
        low = s.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError("must be a boolean (true/false, 1/0, yes/no, on/off)")
    if kind == "choice":
        return s
    if kind == "channels":  # a comma list of notification channels, normalised to "console,telegram"
        items = [x.strip().lower() for x in s.split(",") if x.strip()]
        bad = [x for x in items if x not in ("console", "discord", "telegram")]
        if bad:
            raise ValueError(f"unknown channel(s) {', '.join(bad)}")
        return ",".join(dict.fromkeys(items))
    if kind == "ids":       # comma-separated integer ids (Telegram user ids), normalised to "1,2"
        items = [x.strip() for x in s.split(",") if x.strip()]
        if not all(_INT_RE.fullmatch(x) for x in items):
            raise ValueError("must be comma-separated integer ids")
        return ",".join(str(int(x)) for x in items)
    if kind == "market":        # one symbol, or none
        if s.strip().lower() == "none":
            return "none"
        if not _SYMBOL_RE.fullmatch(s.strip()) or "," in s:
            raise ValueError("must be one symbol like BTC/USD, or none")
        return canonical(s.strip())
    if kind == "symbols":
        items = [x.strip() for x in s.split(",") if x.strip()]
        if not items:
            raise ValueError("must list at least one symbol, e.g. BTC/USD,ETH/USD")
        for it in items:
            if not _SYMBOL_RE.fullmatch(it):
                raise ValueError(f"symbol {it!r} is not of the form BASE/USD")
        out = tuple(dict.fromkeys(canonical(x) for x in items))
        return out
    if kind == "datetime":
        if not s:
            return None
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return dt.astimezone(timezone.utc)
        except (ValueError, OverflowError):     # OverflowError: 9999-12-31T23:59:59-01:00 is after year 9999 UTC
            raise ValueError("must be an ISO 8601 time such as 2022-01-10T00:00:00Z") from None
    raise AssertionError(kind)


def _allowed(meta: Mapping[str, Any]) -> str:
    kind = meta["kind"]
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    rng = ""
    if meta["lo"] is not None or meta["hi"] is not None:
        rng = f" in [{meta['lo']}, {meta['hi']}]"
    return {"int": "an integer", "float": "a number", "bool": "true/false", "path": "a path",
            "str": "text", "url": "an http(s) URL",
            "symbols": "a comma list like BTC/USD,ETH/USD", "market": "a symbol like BTC/USD, or none",
            "ids": "comma-separated integers (empty: none)",
            "channels": "a comma list of console, discord, telegram (empty: none)",
            "datetime": "an ISO 8601 UTC time or empty"}[kind] + rng
