"""Size-capped rotation of the operations logs that no logging handler rotates.

An agent's own ``<agent>.log`` rotates in its handler (``tracer.logs.PrivateRotatingFileHandler``, at
``TB_LOG_MAX_MB``, keeping ``TB_LOG_BACKUPS``). The files written by shell redirections and launchd (``health.log``,
``start.log``, ``*.err``) and the ``log_line`` files (``watchdog.log``, ``heal.log``, ``alerts.log``) grew without
end; the health check (every 15 minutes from cron or launchd) rotates them at the same size into ``NAME.1`` ...
``NAME.<backups>``, the same names the handler uses.

Copy, then truncate in place: their writers (cron's ``>>``, launchd's StandardOutPath, an agent's ``2>>``) keep the
file open in append mode and go on at its new end; a rename would leave them writing into ``NAME.1``. A line
written between the copy and the truncation is lost: a few bytes, once per rotation.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

OPS_LOGS = ("health.log", "watchdog.log", "heal.log", "alerts.log", "start.log")


def rotate(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` when it reached ``max_bytes`` (0: never); True when it did."""
    try:
        if max_bytes <= 0 or path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    fd = os.open(path.with_name(f"{path.name}.1"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # user-only
    with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.truncate(path, 0)
    return True


def rotate_ops_logs(settings: Any) -> list[str]:
    """Rotate the operations logs of ``TB_LOG_DIR`` that reached ``TB_LOG_MAX_MB``; the names rotated.
    Never raises on a file it cannot handle (the health check must still report)."""
    d = Path(settings.log_dir)
    max_bytes = int(settings.log_max_mb * 1024 * 1024)
    names = (list(OPS_LOGS) + sorted(p.name for p in d.glob("*.err"))) if d.is_dir() else []
    done = []
    for name in names:
        try:
            if rotate(d / name, max_bytes, settings.log_backups):
                done.append(name)
        except OSError:
            continue
    return done
