"""Settings for monitoring when the configuration is invalid.

The health check and the watchdogs must still find the DB, the pid files and the alert channels when a
typo breaks ``.env`` (an agent refuses to start on it, so it is itself a critical finding). This keeps every
variable that validates, drops the ones the :class:`~tracer.config.ConfigError` names, and falls back to the
defaults only for what cannot be salvaged. It is never used to trade.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from dotenv import dotenv_values

from tracer.config import ConfigError, Settings, load_settings

_NAME = re.compile(r"\b((?:TB|PPLX)_[A-Z0-9_]+)")
# what monitoring needs most: where things are, and how to alert
_ESSENTIAL = ("TB_DB_PATH", "TB_STATE_DIR", "TB_LOG_DIR", "TB_DISCORD_WEBHOOK_URL", "TB_TELEGRAM_BOT_TOKEN",
              "TB_TELEGRAM_CHAT_ID", "TB_TELEGRAM_BASE_URL", "TB_NOTIFY_CONSOLE", "TB_NOTIFY_TIMEOUT_S")


@dataclass(frozen=True)
class Loaded:
    settings: Settings
    problems: tuple[str, ...]       # empty: the configuration is valid

    @property
    def valid(self) -> bool:
        return not self.problems


def _merged(environ: Mapping[str, str] | None, dotenv_path: str | Path | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        try:
            values = dotenv_values(dotenv_path)
        except UnicodeDecodeError:    # not UTF-8 (the agents refuse it): its lines still say where and whom to alert
            values = dotenv_values(stream=io.StringIO(Path(dotenv_path).read_bytes().decode("utf-8", "replace")))
        except OSError:
            values = {}               # an unreadable .env: the environment alone
        merged.update({k: v for k, v in values.items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return merged


def load_for_monitoring(environ: Mapping[str, str] | None = None,
                        dotenv_path: str | Path | None = ".env") -> Loaded:
    """The valid settings (``problems`` empty), or the best salvage of an invalid configuration with the
    problems that make it invalid. Never raises :class:`ConfigError`."""
    try:
        return Loaded(load_settings(environ, dotenv_path), ())
    except ConfigError as e:
        problems = tuple(e.problems)
    except (OSError, UnicodeDecodeError) as e:       # .env unreadable (permissions, binary garbage)
        problems = (f"{dotenv_path}: cannot be read ({type(e).__name__}: {e})",)
    env = _merged(environ, dotenv_path)
    found = list(problems)
    # drop what each round names (a second round can reveal checks that ran only once the first passed)
    for _ in range(4):
        named = {m.group(1) for p in problems if (m := _NAME.match(p))} & set(env)
        named = named or {n for p in problems for n in _NAME.findall(p)} & set(env)
        if not named:
            # nothing the problems name is set here: a problem of the file itself (a line python-dotenv cannot
            # parse, which its lenient read here has dropped): the rest of the file still holds the alert channels
            try:
                return Loaded(load_settings(env, None), tuple(found))
            except ConfigError:
                break
        env = {k: v for k, v in env.items() if k not in named}
        try:
            return Loaded(load_settings(env, None), tuple(found))
        except ConfigError as e:
            problems = tuple(e.problems)
            found += [p for p in problems if p not in found]
    for keep in (_ESSENTIAL[:3], ()):
        try:
            return Loaded(load_settings({k: v for k, v in env.items() if k in keep}, None), tuple(found))
        except ConfigError:
            continue
    return Loaded(Settings(), tuple(found))


def _folder_problem(name: str, got: Path, env: Mapping[str, str]) -> str | None:
    """Why the folder ``name`` configures is not ``got`` (the salvaged settings' value), or None when it is
    (or ``name`` is not set: the default, as for the agents)."""
    if name not in env:
        return None
    from tracer.config.parse import _parse
    try:
        want = _parse("path", env[name])
    except ValueError as e:
        return f"{name} is invalid: {e}"
    if want != got:
        return f"{name} could not be kept from the invalid configuration"
    return None


def script_paths(environ: Mapping[str, str] | None = None,
                 dotenv_path: str | Path | None = ".env") -> tuple[Path, Path] | str:
    """``(state_dir, log_dir)`` for the start script's stop and status, or why they cannot be told.

    An invalid configuration still gives them when its salvage kept the configured ``TB_STATE_DIR`` and
    ``TB_LOG_DIR``; a default substituted for a configured folder would let ``--stop`` look in the wrong place,
    say "not running" and leave the agents running."""
    loaded = load_for_monitoring(environ, dotenv_path)
    s = loaded.settings
    if loaded.valid:
        return s.state_dir, s.log_dir
    env = _merged(environ, dotenv_path)
    if dotenv_path is not None and Path(dotenv_path).is_file():
        try:
            dotenv_values(dotenv_path)
        except (OSError, UnicodeDecodeError) as e:
            if not {"TB_STATE_DIR", "TB_LOG_DIR"} <= set(env):
                return f"{dotenv_path} cannot be read ({type(e).__name__})"
    for name, got in (("TB_STATE_DIR", s.state_dir), ("TB_LOG_DIR", s.log_dir)):
        problem = _folder_problem(name, got, env)
        if problem:
            return problem
    return s.state_dir, s.log_dir


def print_script_paths() -> int:
    """The state and log folders, one per line (for the start script); exit 3 with the reason on stderr."""
    import sys
    got = script_paths()
    if isinstance(got, str):
        print(f"start_trading_system.sh: {got}", file=sys.stderr)
        return 3
    print(got[0])
    print(got[1])
    return 0


def print_watchdog_config(agent: str, environ: Mapping[str, str] | None = None,
                          dotenv_path: str | Path | None = ".env") -> int:
    """For scripts/watchdog.sh: the state folder, the log folder, the pass interval and the stop grace in 0.2 s
    steps, one per line (exit 0), as the salvaged settings give them when ``.env`` is invalid elsewhere (each pass
    then reports and alerts that). When the folders cannot be told (:func:`script_paths`: ``TB_STATE_DIR`` or
    ``TB_LOG_DIR`` is itself invalid), exit 3 saying why on stderr; beside a bad ``TB_STATE_DIR`` the same line
    also goes to ``TB_LOG_DIR/alerts.log`` and ``watchdog.log`` when the log folder is valid and exists. No folder
    is created, and the default ``state/`` is never used (its pid files may not be the running agents')."""
    import sys
    got = script_paths(environ, dotenv_path)
    loaded = load_for_monitoring(environ, dotenv_path)
    s = loaded.settings
    if not isinstance(got, str):
        for line in (got[0], got[1], s.watchdog_interval_s, int(s.watchdog_stop_grace_s * 5) + 1):
            print(line)
        return 0
    message = (f"cannot tell where the pid files are (TB_STATE_DIR, TB_LOG_DIR): {got}; nothing done (no pass, "
               f"no restart). Fix .env (.venv/bin/tracer check-config) or set them in the environment")
    print(f"watchdog[{agent}]: {message}", file=sys.stderr)
    log_dir = Path(s.log_dir)
    # only beside a bad TB_STATE_DIR: the log folder checked as script_paths checks it (never a guess)
    if got.startswith("TB_STATE_DIR") and _folder_problem("TB_LOG_DIR", log_dir, _merged(environ, dotenv_path)) \
            is None and log_dir.is_dir():
        from tracer.logs import log_line
        for name, line in (("alerts", f"kind=watchdog_paths_invalid level=critical not enqueued: {message}"),
                           ("watchdog", f"error: {message}")):
            try:
                log_line(s, name, agent, line)
            except OSError as e:
                print(f"watchdog[{agent}]: cannot append to {log_dir / (name + '.log')} ({e})", file=sys.stderr)
    return 3
