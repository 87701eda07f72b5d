"""Self-healing behind ``scripts/health_check.sh --heal`` (what the cron line and the launchd health job run).

It acts only on what the checks found, and only on processes someone started (a pid file exists; ``--stop``
removes them, so a stopped system stays stopped):

* a dead watchdog loop is started again (``scripts/watchdog_<agent>.sh --loop``);
* a dead Telegram listener is started again;
* an agent its watchdog gave up on (restart cap reached) is started once more with its recorded command
  line; the newer pid file makes the watchdog watch it again.

An agent's loop and the agent are started under the agent's launch lock (``TB_STATE_DIR/<agent>.launch.lock``,
the one ``scripts/watchdog.sh`` and ``start_trading_system.sh`` hold; a ``--stop`` holds it throughout), once the
need is confirmed again under it: nothing is started behind a stop.

Each process gets at most ``TB_HEAL_MAX_PER_DAY`` heal restarts in 24 h (counted in the monitoring record);
past that it only alerts (critical). Every action is printed, logged (``TB_LOG_DIR/heal.log``), recorded
(``monitor_events``, source ``heal``) and alerted (warning; the cap: critical).
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from tracer.ops.alerts import Level, send
from tracer.ops.records import Event, Source, count, record
from tracer.models import AGENTS
from tracer.ops.heartbeat import agent_state
from tracer.ops.processes import (AGENT_SCRIPTS, launch_lock_holder, launch_lock_release, read_pid,
                                  watchdog_loop_alive)
from tracer.ops.watchdog import _wd_load

ROOT = Path(__file__).resolve().parents[2]        # the checkout: scripts/ live there


@dataclass(frozen=True)
class Action:
    name: str        # the check it answers, e.g. watchdog[hybrid]
    done: bool       # False: not done (cap reached, or the start failed)
    message: str

    def line(self) -> str:
        return f"{'HEALED' if self.done else 'NOT HEALED':<11}{self.name:<20}{self.message}"


def _spawn(cmd: Sequence[str], err_log: Path) -> int:
    """Start ``cmd`` detached from this process (its own session: it outlives the health check)."""
    err_log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(err_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        p = subprocess.Popen(list(cmd), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=fd,
                             start_new_session=True)
    finally:
        os.close(fd)
    return p.pid


def _capped(settings: Any, name: str, now: datetime) -> bool:
    return count(settings, Source.HEAL, name, "heal", now - timedelta(hours=24)) >= settings.heal_max_per_day


def _write_pid(path: Path, pid: int) -> None:
    from tracer.logs import private_write_text
    private_write_text(path, f"{pid}\n")


def _agent_args(settings: Any, agent: str) -> list[str]:
    try:
        return [ln for ln in (Path(settings.state_dir) / f"{agent}.args").read_text().splitlines() if ln]
    except OSError:
        return []


def heal(settings: Any, checks: Sequence[Any], now: datetime | None = None) -> list[Action]:
    """Act on ``checks`` (see the module docstring); returns what was done or refused."""
    now = now or datetime.now(timezone.utc)
    bad = {c.name: c for c in checks if c.level > 0}
    state = Path(settings.state_dir)
    logs = Path(settings.log_dir)
    todo: list[tuple[str, str, Any]] = []          # (check name, what, how)
    # an agent's loop and the agent itself are started under its launch lock (held by start_trading_system.sh
    # for a whole --stop), and only when the need is still there once it is held: never behind a stop
    lock_of: dict[str, str] = {}
    still: dict[str, Any] = {}

    def agent_down(a: str) -> bool:
        st = agent_state(settings, a, now)
        return st.managed and not st.alive and not st.stopped_cleanly

    for a in AGENTS:
        if f"watchdog[{a}]" in bad:
            todo.append((f"watchdog[{a}]", f"the {a} watchdog loop",
                         lambda a=a: _spawn(["bash", str(ROOT / "scripts" / f"watchdog_{a}.sh"), "--loop"],
                                            logs / "watchdog.err")))
            lock_of[f"watchdog[{a}]"] = a
            still[f"watchdog[{a}]"] = (lambda a=a: (state / f"{a}.pid").exists()
                                       and not watchdog_loop_alive(read_pid(state / f"watchdog_{a}.pid"), a))
        if agent_down(a) and _wd_load(settings, a)["gave_up_at"] is not None:
            def start_agent(a: str = a) -> int:
                pid = _spawn([sys.executable, str(ROOT / "scripts" / AGENT_SCRIPTS[a]), *_agent_args(settings, a)],
                             logs / f"{a}.err")
                _write_pid(state / f"{a}.pid", pid)       # newer than the give-up: the watchdog watches it again
                return pid
            todo.append((f"process[{a}]", f"the {a} agent (its watchdog gave up after the restart cap)", start_agent))
            lock_of[f"process[{a}]"] = a
            still[f"process[{a}]"] = lambda a=a: agent_down(a)
    if "listener" in bad:
        def start_listener() -> int:
            pid = _spawn([sys.executable, str(ROOT / "scripts" / "telegram_listener.py")], logs / "telegram.err")
            _write_pid(state / "telegram.pid", pid)
            return pid
        todo.append(("listener", "the Telegram listener", start_listener))

    actions: list[Action] = []

    def logged(a: Action) -> Action:
        from tracer.logs import log_line
        try:
            log_line(settings, "heal", None, f"{'healed' if a.done else 'not_healed'} {a.name} {a.message}")
        except OSError:
            pass
        return a

    for name, what, how in todo:
        if _capped(settings, name, now):
            msg = (f"{what} is down and was already restarted {settings.heal_max_per_day} times by the health "
                   f"check in 24 h (TB_HEAL_MAX_PER_DAY): not again; look at {logs}")
            actions.append(logged(Action(name, False, msg)))
            record(settings, [Event(Source.HEAL, "heal_capped", name, 2, msg)], now)
            from tracer.ops.alerts import alert_once
            alert_once(settings, f"heal_capped:{name}", "heal_capped", f"🛑 heal: {msg}", now=now)
            continue
        agent = lock_of.get(name)
        holder = launch_lock_holder(state, agent) if agent else None
        if holder is not None:
            actions.append(logged(Action(name, False, f"not now: a start or stop of the {agent} agent is in "
                                                      f"progress (pid {holder or '?'})")))
            continue
        try:
            if name in still and not still[name]():
                actions.append(logged(Action(name, False, f"not now: {what} is no longer down or was stopped")))
                continue
            pid = how()
        except OSError as e:
            msg = f"could not start {what}: {type(e).__name__}: {e}"
            actions.append(logged(Action(name, False, msg)))
            record(settings, [Event(Source.HEAL, "heal_failed", name, 2, msg)], now)
            send(settings, Level.CRITICAL, "heal_failed", f"🛑 heal: {msg}")
            continue
        finally:
            if agent:
                launch_lock_release(state, agent)
        msg = f"started {what} again (pid {pid}) because: {bad[name].message if name in bad else 'gave up'}"
        actions.append(logged(Action(name, True, msg)))
        record(settings, [Event(Source.HEAL, "heal", name, 1, msg)], now)
        send(settings, Level.WARNING, "heal", f"🩹 heal: {msg}")
    return actions


__all__ = ["Action", "heal", "read_pid"]
