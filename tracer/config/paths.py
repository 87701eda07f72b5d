"""Whether the runtime paths (``TB_DB_PATH``, ``TB_STATE_DIR``, ``TB_LOG_DIR``) can be used, checked on the disk
before anything is created: by ``tracer check-config`` (the start script's gate), ``tracer init-db`` and each agent
at start, so that a folder given as the DB or a file given as a folder is a message naming the variable (exit 2),
not a traceback and a restart loop."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def path_problems(s: Any) -> list[str]:
    """What keeps the settings' DB, state and log paths from being used, each naming its variable."""
    out = []
    db = Path(s.db_path)
    if db.is_dir():
        out.append(f"TB_DB_PATH={db}: a folder, not a database file; name a file (e.g. {db / 'tracer.db'})")
    elif problem := _folder_problem(db.parent, writable=True):
        out.append(f"TB_DB_PATH={db}: its folder {problem}")
    for var, folder in (("TB_STATE_DIR", Path(s.state_dir)), ("TB_LOG_DIR", Path(s.log_dir))):
        if problem := _folder_problem(folder, writable=False):
            out.append(f"{var}={folder}: {problem}")
    return out


def _folder_problem(folder: Path, writable: bool) -> str | None:
    """Why ``folder`` is not a folder that exists or can be created (and, with ``writable``, written in: SQLite
    writes its journal beside the DB). An existing state or log folder is not required to be writable: a
    read-only disk at start is a storage fault the agent rides out (see ``runner._one_copy``)."""
    if folder.is_symlink() and not folder.exists():
        return f"is a link to {os.readlink(folder)}, which does not exist"
    if folder.exists():
        if not folder.is_dir():
            return "is a file, not a folder"
        if writable and not os.access(folder, os.W_OK | os.X_OK):
            return "is not writable"
        return None
    above = folder.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        return f"cannot be created: {above} is a file"
    if not os.access(above, os.W_OK | os.X_OK):
        return f"cannot be created: {above} is not writable"
    return None
