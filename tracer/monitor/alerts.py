"""Alerts that are not repeated within a window (``TB_HEALTH_ALERT_REPEAT_MIN``).

The last time each alert key was sent is kept in ``TB_STATE_DIR/alerts_sent.json`` (user-only), so a
problem that lasts (an invalid ``.env`` seen by every watchdog pass) alerts once per window, not once a
minute.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tracer.logs import private_write_text


def _book_path(settings: Any) -> Path:
    return Path(settings.state_dir) / "alerts_sent.json"


def _load(settings: Any) -> dict[str, float]:
    try:
        d = json.loads(_book_path(settings).read_text())
        return {str(k): float(v) for k, v in d.items()} if isinstance(d, dict) else {}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _save(settings: Any, book: dict[str, float]) -> None:
    p = _book_path(settings)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(f".tmp{os.getpid()}")
    private_write_text(tmp, json.dumps(book))
    os.replace(tmp, p)


def alert_once(settings: Any, key: str, kind: str, message: str, agent: str | None = None,
               now: datetime | None = None) -> bool:
    """Alert ``message`` unless ``key`` was alerted within ``TB_HEALTH_ALERT_REPEAT_MIN``; True when sent."""
    from tracer.ops import alert
    t = (now or datetime.now(timezone.utc)).timestamp()
    book = _load(settings)
    if t - book.get(key, float("-inf")) < settings.health_alert_repeat_min * 60:
        return False
    alert(settings, kind, message, agent)
    book[key] = t
    try:
        _save(settings, book)
    except OSError:
        pass           # the state folder is unwritable: the alert went out, it may repeat
    return True
