"""Alerts and the operations logs: enqueue on the level's channels, deliver now, or fall back to a log file."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tracer.ops.common import _iso, _now


def log_line(settings: Any, name: str, agent: str | None, message: str) -> None:
    """Append ``<UTC time> <agent> <message>`` to ``TB_LOG_DIR/<name>.log``."""
    from tracer.logs import private_dir, private_open
    d = private_dir(Path(settings.log_dir))
    with private_open(d / f"{name}.log", "a") as fh:          # user-only, like every log and state file
        fh.write(f"{_iso(_now())} {agent or '-'} {message}\n")


def _deliver_now(settings: Any) -> None:
    """Send what is pending on Discord/Telegram now: the agents (whose worker threads normally deliver)
    may be the very thing that is down."""
    import logging

    from tracer.notify.outbox import remote_channels
    from tracer.notify.worker import flush
    if not remote_channels(settings):
        return
    log = logging.getLogger("alert")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False
    try:
        flush(settings, log, timeout_s=10.0)
    except Exception as e:  # noqa: BLE001 - delivery is retried by the workers later
        print(f"alert queued, immediate delivery failed ({type(e).__name__})", file=sys.stderr)


def alert(settings: Any, kind: str, message: str, agent: str | None = None, level: int = 1) -> list[int]:
    """Enqueue ``message`` on the channels of its level (``TB_ALERT_CHANNELS_<LEVEL>``; default warning).

    Never raises: when the DB cannot take it (missing, corrupt, locked), the alert goes to
    ``TB_LOG_DIR/alerts.log`` and to stderr instead, and ``[]`` is returned (tracer.monitor.alerts.send)."""
    from tracer.monitor.alerts import Level, send
    return send(settings, Level(level), kind, message, agent)
