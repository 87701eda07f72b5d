"""The environments the tests start agents, scripts and commands with: the caller's environment without any TB_
variable (a developer's .env or shell never leaks in), state, logs and the DB under the test's folder."""
from __future__ import annotations

import os
from pathlib import Path


def process_env(tmp: Path, db: str = "tracer.db", **extra: str) -> dict[str, str]:
    """A process environment with its state, logs and DB (``state/<db>``) under ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    env.update(TB_STATE_DIR=str(tmp / "state"), TB_LOG_DIR=str(tmp / "logs"), TB_DB_PATH=str(tmp / "state" / db))
    env.update(extra)
    return env


def agent_env(tmp: Path, **extra: str) -> dict[str, str]:
    """An agent replaying as fast as it can (no wait between cycles)."""
    return process_env(tmp, **{"TB_REPLAY_INTERVAL_S": "0", **extra})


def ops_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The watchdog, health check and monitoring scripts: watchdogs off unless a test starts one, no disk alarm
    from the test machine's own disk, a short stop grace."""
    return process_env(tmp, db="t.db", **{"TB_WATCHDOG_ENABLED": "false", "TB_HEALTH_DISK_WARN_PCT": "0",
                                          "TB_HEALTH_DISK_CRITICAL_PCT": "0", "TB_WATCHDOG_STOP_GRACE_S": "10",
                                          **extra})
