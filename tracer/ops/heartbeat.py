"""Each agent's heartbeat as the DB has it, read without the agent (which may be the thing that is down)."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tracer.ops.common import _now, _parse_iso
from tracer.ops.processes import _mtime, agent_alive, pid_file, read_pid


def connect_existing(db_path: Path | str) -> sqlite3.Connection | None:
    """Open the DB without creating it (None when the file does not exist)."""
    p = Path(db_path)
    if not p.is_file():
        return None
    conn = sqlite3.connect(p.resolve().as_uri() + "?mode=rw", uri=True, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _heartbeat_row(db_path: Path | str, agent: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the agent's heartbeat row or None, the error when the DB could not be read)."""
    try:
        conn = connect_existing(db_path)
        if conn is None:
            return None, None
        try:
            row = conn.execute("SELECT * FROM heartbeats WHERE agent=?", (agent,)).fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        return None, f"{type(e).__name__}: {e}"
    return (dict(row) if row is not None else None), None


# --- heartbeat -----------------------------------------------------------------------------------
@dataclass
class AgentState:
    agent: str
    pid: int | None            # from the pid file
    managed: bool              # the pid file exists
    alive: bool
    started: float | None      # pid file time (epoch)
    hb_status: str | None      # status of the heartbeat row, whoever wrote it
    hb_cycle: int | None
    hb_clock: str | None
    hb_pid: int | None
    hb_age_s: float | None     # age of the heartbeat row
    own_hb: bool               # the heartbeat was written by the pid in the pid file
    age_s: float | None        # liveness age: own heartbeat, else time since the pid file was written
    hb_error: str | None = None  # the DB could not be read (locked, corrupt): the heartbeat is unknown
    stopped_by: str | None = None  # a clean stop's cause: signal, end_of_data or cycles (None: unknown)

    @property
    def stopped_cleanly(self) -> bool:
        return self.hb_status == "stopped" and (self.own_hb or not self.managed)

    @property
    def stopped_by_signal(self) -> bool:
        """Stopped cleanly by a signal while its pid file stayed: not by --stop (which removes the file), so by a
        shutdown, a logout or a kill: the launchd job's next load starts it again."""
        return self.managed and self.stopped_cleanly and self.stopped_by == "signal"


def agent_state(settings: Any, agent: str, now: datetime | None = None) -> AgentState:
    now = now or _now()
    pf = pid_file(settings, agent)
    pid = read_pid(pf)
    started = _mtime(pf)
    hb, hb_error = _heartbeat_row(settings.db_path, agent)
    hb_ts = _parse_iso(hb["ts"]) if hb else None
    hb_age = (now - hb_ts).total_seconds() if hb_ts else None
    own = bool(hb and pid and hb["pid"] == pid)
    if own and hb_age is not None:
        age = hb_age
    elif started is not None:
        age = now.timestamp() - started
    else:
        age = hb_age
    return AgentState(agent=agent, pid=pid, managed=pf.exists(), alive=agent_alive(pid, agent), started=started,
                      hb_status=hb["status"] if hb else None, hb_cycle=hb["cycle"] if hb else None,
                      hb_clock=hb["clock"] if hb else None, hb_pid=hb["pid"] if hb else None,
                      hb_age_s=hb_age, own_hb=own, age_s=age, hb_error=hb_error, stopped_by=_stopped_by(hb))


def _stopped_by(hb: dict[str, Any] | None) -> str | None:
    import json
    try:
        v = json.loads((hb or {}).get("detail_json") or "{}").get("stopped_by")
    except (ValueError, AttributeError):
        return None
    return v if isinstance(v, str) else None
