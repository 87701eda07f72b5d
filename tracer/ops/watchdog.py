"""The watchdog's decision per pass (ok / absent / stopped / restart / capped) and its restart bookkeeping."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tracer.logs import log_line
from tracer.ops.alerts import alert
from tracer.ops.common import HOUR_S, _now, _parse_iso, human_age
from tracer.ops.heartbeat import agent_state
from tracer.ops.processes import agent_alive, agent_confirmed, pid_alive
from tracer.ops.suspend import SuspendClock, asleep_note, awake_age_at, record


# --- watchdog ----------------------------------------------------------------------------------------
@dataclass
class Verdict:
    action: str          # ok / absent / stopped / restart / capped
    pid: int | None      # the pid in the pid file
    reason: str
    alive: bool = False  # that pid is the live agent (a restart must stop it first)

    def line(self) -> str:
        """``<action> <pid|-> <alive|gone> <reason>`` (what scripts/watchdog.sh reads)."""
        return f"{self.action} {self.pid if self.pid else '-'} {'alive' if self.alive else 'gone'} {self.reason}"


def _wd_file(settings: Any, agent: str) -> Path:
    return Path(settings.state_dir) / f"watchdog_{agent}.json"


def _wd_load(settings: Any, agent: str) -> dict[str, Any]:
    try:
        d = json.loads(_wd_file(settings, agent).read_text())
        if isinstance(d, dict):
            return {"restarts": [float(x) for x in d.get("restarts", [])], "gave_up_at": d.get("gave_up_at")}
    except (FileNotFoundError, ValueError, TypeError):
        pass
    return {"restarts": [], "gave_up_at": None}


def _wd_save(settings: Any, agent: str, d: dict[str, Any]) -> None:
    p = _wd_file(settings, agent)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(f".tmp{os.getpid()}")
    from tracer.logs import private_write_text
    private_write_text(tmp, json.dumps(d))        # user-only state file
    os.replace(tmp, p)


def restarts_last_hour(settings: Any, agent: str, now: datetime | None = None) -> int:
    t = (now or _now()).timestamp()
    return sum(1 for x in _wd_load(settings, agent)["restarts"] if t - x < HOUR_S)


def watchdog_check(settings: Any, agent: str, now: datetime | None = None,
                   clock: SuspendClock | None = None) -> Verdict:
    """What the watchdog must do with ``agent`` now (see the module docstring for the rules).

    Ages are awake time: the time the machine slept is not counted (tracer/ops/suspend.py; ``clock`` reads the
    machine's clocks, default the real ones).
    When the restart cap is reached this records the "gave up" mark and enqueues the alert, once;
    it stays given up until the agent is started again by someone else (a newer pid file)."""
    now = now or _now()
    st = agent_state(settings, agent, now)
    gaps = record(settings.state_dir, f"watchdog_{agent}", now, clock)
    age = awake_age_at(st.age_s, now, gaps)
    asleep = asleep_note(st.age_s, age)
    limit_s = settings.watchdog_max_heartbeat_age_min * 60
    if not st.managed:
        return Verdict("absent", None, "no pid file: not started or stopped with --stop; nothing to do")
    if st.pid is None:
        down = "pid file unreadable"
    elif st.own_hb and st.hb_status == "stopped":
        if st.alive:
            return Verdict("ok", st.pid, "finishing (heartbeat says stopped)", alive=True)
        if st.stopped_by_signal:
            return Verdict("stopped", st.pid, f"stopped by a signal at cycle {st.hb_cycle}, pid file kept (a "
                                              f"shutdown, a logout or a kill; --stop removes it): the supervisor "
                                              f"starts it at its next load, a running loop does not")
        return Verdict("stopped", st.pid, f"stopped cleanly at cycle {st.hb_cycle} (end of data, --cycles or "
                                          f"SIGTERM): not restarting")
    elif not st.alive:
        down = f"pid {st.pid} is gone" if not pid_alive(st.pid) else f"pid {st.pid} no longer runs the agent"
    elif st.hb_error is not None:     # never restart a live agent on a heartbeat we could not read
        return Verdict("ok", st.pid, f"running; heartbeat unreadable ({st.hb_error})", alive=True)
    elif age is not None and age > limit_s:
        fault = storage_fault_of(settings, agent)
        last = _parse_iso(str(fault.get("last") or "")) if fault else None
        fault_age = None if last is None else awake_age_at((now - last).total_seconds(), now, gaps)
        if fault and fault.get("pid") == st.pid and fault_age is not None and fault_age <= limit_s:
            # the DB cannot take its heartbeat: the agent is retrying (and managing exits), not hung;
            # a restart would only lose that (the health check reports the fault as critical)
            return Verdict("ok", st.pid, f"running; storage fault since {fault.get('since')} "
                                         f"({fault.get('attempts')} attempts): heartbeat cannot be written", alive=True)
        what = "heartbeat" if st.own_hb else "no heartbeat since the start"
        down = f"hung: {what} {human_age(st.age_s)} ago{asleep} (limit {human_age(limit_s)})"
        if not agent_confirmed(st.pid, agent):
            # alive, but its command line cannot be read (ps failed or timed out): it may be a recycled pid of
            # another program (never signalled) or the agent itself (no second copy beside it)
            return Verdict("error", st.pid, f"{down}, but pid {st.pid}'s command line cannot be read: cannot tell "
                                            f"whether it is the {agent} agent; not signalled, not restarted")
    else:
        return Verdict("ok", st.pid, f"running, heartbeat {human_age(st.age_s)} old{asleep}", alive=True)

    book = _wd_load(settings, agent)
    t = now.timestamp()
    if book["gave_up_at"] is not None and st.started is not None and st.started > float(book["gave_up_at"]):
        book = {"restarts": [], "gave_up_at": None}          # started again by the operator: try again
        _wd_save(settings, agent, book)
    book["restarts"] = [x for x in book["restarts"] if t - x < HOUR_S]
    cap = settings.watchdog_max_restarts_per_hour
    if book["gave_up_at"] is not None:
        return Verdict("capped", st.pid, f"{down}; gave up after {cap} restarts within an hour: not restarting "
                                         f"(start it with ./start_trading_system.sh)")
    if len(book["restarts"]) >= cap:
        book["gave_up_at"] = t
        _wd_save(settings, agent, book)
        msg = (f"🛑 {agent} agent: watchdog gave up: {down}, and it was already restarted {len(book['restarts'])} "
               f"times in the last hour (cap TB_WATCHDOG_MAX_RESTARTS_PER_HOUR={cap}). Not restarting; "
               f"check {Path(settings.log_dir) / (agent + '.log')} and start it with ./start_trading_system.sh")
        log_line(settings, "watchdog", agent, f"gave_up reason=\"{down}\" restarts_last_hour={len(book['restarts'])}")
        alert(settings, "watchdog_gave_up", msg, agent, level=2)
        _record_watchdog(settings, agent, "gave_up", 2, msg)
        return Verdict("capped", st.pid, f"{down}; restart cap {cap}/h reached: alerted, not restarting")
    return Verdict("restart", st.pid, down, alive=st.alive)


def watchdog_restarted(settings: Any, agent: str, old_pid: int | None, new_pid: int | None, reason: str,
                       now: datetime | None = None) -> str:
    """Bookkeeping after a restart: timestamp, watchdog.log line and the 'agent restarted' alert."""
    now = now or _now()
    book = _wd_load(settings, agent)
    t = now.timestamp()
    book["restarts"] = [x for x in book["restarts"] if t - x < HOUR_S] + [t]
    _wd_save(settings, agent, book)
    n, cap = len(book["restarts"]), settings.watchdog_max_restarts_per_hour
    log_line(settings, "watchdog", agent, f"restarted old_pid={old_pid or '-'} new_pid={new_pid or '-'} "
                                          f"reason=\"{reason}\" restarts_last_hour={n}/{cap}")
    msg = (f"🔄 {agent} agent restarted by watchdog: {reason}; new pid {new_pid or '?'} "
           f"(restart {n}/{cap} this hour)")
    alert(settings, "watchdog_restart", msg, agent)
    _record_watchdog(settings, agent, "restart", 1, msg)
    return msg


def _record_watchdog(settings: Any, agent: str, kind: str, level: int, message: str) -> None:
    from tracer.ops.records import Event, Source, record
    record(settings, [Event(Source.WATCHDOG, kind, agent, level, message)])


def storage_fault_of(settings: Any, agent: str) -> dict[str, Any] | None:
    """The storage fault ``agent``'s live process is in (``TB_STATE_DIR/storage_fault_<agent>.json``,
    rewritten on every attempt), or None."""
    p = Path(settings.state_dir) / f"storage_fault_{agent}.json"
    try:
        f = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(f, dict) or not agent_alive(f.get("pid"), agent):
        return None
    return f
