"""The monitoring record: ``monitor_events`` rows (schema v10), kept ``TB_MONITOR_RETENTION_DAYS``.

Sources: ``health`` (one row per check per run), ``watchdog`` (a restart, a give-up), ``heal`` (what
``health_check.sh --heal`` did), ``alert`` (each alert sent and each recovery message). Writing never
raises: the record must not take monitoring down with it (a missing or locked DB only loses the row).
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Sequence


class Source(str, Enum):
    HEALTH = "health"
    WATCHDOG = "watchdog"
    HEAL = "heal"
    ALERT = "alert"


@dataclass(frozen=True)
class Event:
    source: Source
    kind: str           # check / restart / gave_up / heal / alert / recovery
    name: str           # the check, agent or process it is about
    level: int          # 0 ok/info, 1 warning, 2 critical
    message: str


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open(settings: Any) -> sqlite3.Connection | None:
    """The existing DB, migrated (never created here: a missing DB is the health check's finding)."""
    if not Path(settings.db_path).is_file():
        return None
    from tracer.store import Store
    return Store(settings.db_path, busy_timeout_s=10.0).conn


def record(settings: Any, events: Iterable[Event], now: datetime | None = None) -> bool:
    """Append ``events`` and prune rows past the retention; True when written."""
    from tracer.notify.format import redact
    now = now or datetime.now(timezone.utc)
    secrets = settings.secret_values()          # a message may quote a URL or a key: never into the DB
    rows = [(_iso(now), e.source.value, e.kind, e.name, int(e.level), redact(e.message, secrets)[:2000])
            for e in events]
    try:
        conn = _open(settings)
        if conn is None:
            return False
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO monitor_events(ts, source, kind, name, level, message) "
                                 "VALUES (?,?,?,?,?,?)", rows)
                conn.execute("DELETE FROM monitor_events WHERE ts < ?",
                             (_iso(now - timedelta(days=settings.monitor_retention_days)),))
        finally:
            conn.close()
        return True
    except (sqlite3.Error, OSError, RuntimeError):
        return False


def recent(settings: Any, limit: int = 30, sources: Sequence[str] = ("watchdog", "heal", "alert")) -> list[dict]:
    """The newest events of ``sources``, newest first (what the dashboard shows)."""
    return _query(settings, f"SELECT * FROM monitor_events WHERE source IN ({','.join('?' * len(sources))}) "
                            "ORDER BY id DESC LIMIT ?", (*sources, limit))


def history(settings: Any, hours: float = 24.0, now: datetime | None = None) -> list[dict]:
    """Per check over the last ``hours``: runs, how many were warning/critical, the last level and message."""
    since = _iso((now or datetime.now(timezone.utc)) - timedelta(hours=hours))
    return _query(settings, """
        SELECT name, COUNT(*) AS runs, SUM(level = 1) AS warnings, SUM(level = 2) AS criticals,
               (SELECT level FROM monitor_events e2 WHERE e2.source='health' AND e2.name=e.name
                ORDER BY id DESC LIMIT 1) AS last_level,
               (SELECT message FROM monitor_events e2 WHERE e2.source='health' AND e2.name=e.name
                ORDER BY id DESC LIMIT 1) AS last_message,
               MAX(ts) AS last_ts
        FROM monitor_events e WHERE source='health' AND ts >= ? GROUP BY name ORDER BY name""", (since,))


def count(settings: Any, source: Source, name: str, kind: str, since: datetime) -> int:
    rows = _query(settings, "SELECT COUNT(*) AS n FROM monitor_events WHERE source=? AND name=? AND kind=? AND ts>=?",
                  (source.value, name, kind, _iso(since)))
    return int(rows[0]["n"]) if rows else 0


def _query(settings: Any, sql: str, params: Sequence[Any]) -> list[dict]:
    p = Path(settings.db_path)
    if not p.is_file():
        return []
    try:
        conn = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True, timeout=10.0)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql, params)]
        finally:
            conn.close()
    except sqlite3.Error:
        return []       # an old DB without the table, or an unreadable one: nothing recorded to show
