"""Settings for monitoring when the configuration is invalid.

The health check and the watchdogs must still find the DB, the pid files and the alert channels when a
typo breaks ``.env`` (an agent refuses to start on it, so it is itself a critical finding). This keeps every
variable that validates, drops the ones the :class:`~tracer.config.ConfigError` names, and falls back to the
defaults only for what cannot be salvaged. It is never used to trade.
"""
from __future__ import annotations

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
            merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        except (OSError, UnicodeDecodeError):
            pass                      # an unreadable .env: the environment alone
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
    from tracer.config.parse import _parse
    for name, got in (("TB_STATE_DIR", s.state_dir), ("TB_LOG_DIR", s.log_dir)):
        if name not in env:
            continue                                   # the default, as for the agents
        try:
            want = _parse("path", env[name])
        except ValueError as e:
            return f"{name} is invalid: {e}"
        if want != got:
            return f"{name} could not be kept from the invalid configuration"
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
