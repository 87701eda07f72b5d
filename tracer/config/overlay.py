"""The promoted parameters (``tracer params promote``) applied under the explicit variables."""
from __future__ import annotations

import json
from pathlib import Path

from tracer.config.errors import ConfigError


def active_overlay(path: str | Path) -> dict[str, str]:
    """The promoted parameters of every agent (``tracer params promote``, the file ``TB_ACTIVE_PARAMS_PATH``) as
    ``TB_NAME -> text``, applied by :func:`load_settings` under explicit variables. A file that cannot be read
    stops the configuration, as does a path that is not a file (a directory, a dangling link); a missing file is
    nothing promoted yet (``tracer params promote`` creates it, wherever the variable points)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text()) if p.exists() or p.is_symlink() else {}
        sets = {a: dict(v.get("params", {})) for a, v in (data.get("agents") or {}).items()}
    except (OSError, ValueError, AttributeError) as e:
        raise ConfigError([f"TB_ACTIVE_PARAMS_PATH={str(path)!r}: unreadable promoted parameter file ({e}); "
                           f"fix it or roll back (tracer params rollback)"]) from None
    out: dict[str, str] = {}
    for params in sets.values():
        for k, v in params.items():
            out[k] = str(v)
    return out
