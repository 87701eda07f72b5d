"""Operations behind the watchdog, health-check and dashboard scripts (the health checks themselves:
``health`` and ``checks`` below).

The shell scripts (``scripts/watchdog.sh``, ``scripts/health_check.sh``, ``scripts/monitoring_status.sh``)
only manage processes and locks; every decision that needs the DB, the clock or bookkeeping is here and
is reached through ``tracer`` subcommands (``watchdog-check``, ``watchdog-restarted``, ``health``,
``alert``, ``heartbeat-age``, ``dashboard``).

Files in ``TB_STATE_DIR``: ``<agent>.pid`` (written by whoever starts the agent), ``<agent>.args`` (the
agent's command-line options, one per line, so a restart uses the same command line),
``watchdog_<agent>.json`` (restart timestamps of the last hour and the "gave up" mark),
``health_alert_state.json`` (each failing check and when it was last alerted: tracer/ops/alerts.py),
``suspend_<judge>.json`` (each judge's last clock reading and the sleeps it saw: tracer/ops/suspend.py).
``TB_LOG_DIR/watchdog.log`` gets one line per watchdog action.

Definitions (documented in the README, tested in tests/monitor/test_watchdog.py and tests/monitor/test_health_check.py):

* An agent is *managed* when its pid file exists (started by the start script, the watchdog or launchd;
  ``--stop`` removes it). A watchdog never starts an agent without a pid file.
* A managed agent is *down* when its pid is gone, or *hung* when its heartbeat is older than
  ``TB_WATCHDOG_MAX_HEARTBEAT_AGE_MIN``. The heartbeat counts only when it was written by the pid in the
  pid file; before the new process wrote one, the age runs from the pid file's time (start-up grace).
  Ages are judged in awake time: the time the machine slept is not counted (``suspend``).
* An agent whose own heartbeat says ``stopped`` ended cleanly (end of the replay data, ``--cycles``,
  SIGTERM): it is not restarted.
* Health levels: 0 ok, 1 warning (stale heartbeat, notification backlog, errors in recent cycles, low
  disk, agent never started), 2 critical (agent down: pid gone without a clean stop; DB missing, not a
  database or failing ``PRAGMA quick_check``; disk nearly full).

The package by job: ``common`` (levels, UTC times), ``processes`` (pid files), ``heartbeat`` (the DB's view of an
agent), ``alerts`` (levelled alerts, recovery messages), ``health`` and ``checks``, ``heal``,
``records`` (the monitoring record), ``suspend`` (time asleep, not counted in ages),
``view``, ``fallback`` (settings when .env is invalid), ``watchdog``, ``dashboard``, ``commands`` (the subcommands).
"""
from __future__ import annotations

from tracer.models import AGENTS
from tracer.logs import log_line
from tracer.notify.worker import deliver_now as _deliver_now
from tracer.ops.alerts import alert
from tracer.ops.commands import COMMANDS, add_parsers, dispatch
from tracer.ops.common import HOUR_S, LEVELS, _iso, _now, _parse_iso, human_age
from tracer.ops.dashboard import dashboard, dashboard_rows
from tracer.ops.heartbeat import AgentState, agent_state, connect_existing
from tracer.ops.processes import AGENT_SCRIPTS, _cmdline, agent_alive, pid_alive, pid_file, read_pid
from tracer.ops.watchdog import Verdict, _wd_load, restarts_last_hour, storage_fault_of, watchdog_check, watchdog_restarted

__all__ = ["AGENTS", "AGENT_SCRIPTS", "COMMANDS", "HOUR_S", "LEVELS", "AgentState", "Verdict", "_cmdline",
           "_deliver_now", "_iso", "_now", "_parse_iso", "_wd_load", "add_parsers", "agent_alive", "agent_state",
           "alert", "connect_existing", "dashboard", "dashboard_rows", "dispatch", "human_age", "log_line",
           "pid_alive", "pid_file", "read_pid", "restarts_last_hour", "storage_fault_of", "watchdog_check",
           "watchdog_restarted"]
