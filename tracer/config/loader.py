"""Building validated settings from ``.env``, the environment, the profile and the promoted overlay; the text
of ``.env.example``."""
from __future__ import annotations

import io
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Mapping

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from tracer.config.checks import feed_problems, venue_problems
from tracer.config.errors import ConfigError
from tracer.config.keys import pplx_keys_from
from tracer.config.overlay import active_overlay
from tracer.config.parse import _allowed, _parse
from tracer.config.profiles import PROFILES
from tracer.config.settings import Settings, _render, mask


DEFAULT_ENV_FILE = ".env"     # the one dotenv file that may be absent


def env_names() -> set[str]:
    return {f.metadata["env"] for f in fields(Settings)}


def masked_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{TB_NAME: value}`` as a report, a proposal or a command line may show it: the value of every secret
    setting (keys, tokens, storage URLs) masked, the others as given."""
    secret = {f.metadata["env"] for f in fields(Settings) if f.metadata["secret"]}
    return {k: (mask(v) if k in secret else v) for k, v in overrides.items()}


def load_settings(environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env",  # noqa: C901
                  warn: Callable[[str], None] | None = None) -> Settings:
    """Build validated :class:`Settings` from ``.env`` overlaid by ``environ`` (default ``os.environ``).

    Raises :class:`ConfigError` listing every problem (a ``dotenv_path`` other than the default ``.env`` must
    exist); calls ``warn`` for unknown ``TB_`` names.
    """
    merged: dict[str, str] = {}
    if dotenv_path is not None and _dotenv_present(Path(dotenv_path), str(dotenv_path) == DEFAULT_ENV_FILE):
        merged.update(_dotenv(Path(dotenv_path)))
    merged.update(os.environ if environ is None else environ)
    # promoted parameters (tracer params promote): under the variables set in the environment or .env,
    # above the profile and the defaults; validated below like any other value
    for k, v in active_overlay(merged.get("TB_ACTIVE_PARAMS_PATH") or "config/active_params.json").items():
        merged.setdefault(k, v)

    known = env_names()
    for name in sorted(merged):
        if name.startswith("TB_") and name not in known and warn is not None:
            warn(f"unknown variable {name} (ignored; check the spelling against .env.example)")

    problems: list[str] = []
    values: dict[str, Any] = {}
    for f in fields(Settings):
        meta = f.metadata
        name = meta["env"]
        if name not in merged:
            continue
        raw = merged[name]
        shown = mask(raw) if meta["secret"] else repr(raw)
        try:
            v = _parse(meta["kind"], raw)
        except ValueError as e:
            problems.append(f"{name}={shown}: {e}; allowed: {_allowed(meta)}")
            continue
        if meta["choices"] and v not in meta["choices"]:
            problems.append(f"{name}={shown}: not allowed; allowed: {_allowed(meta)}")
            continue
        if meta["kind"] == "url" and not v and f.default:      # only an optional URL (default empty) may be empty
            problems.append(f"{name}={shown}: must not be empty; allowed: {_allowed(meta)}")
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if (meta["lo"] is not None and v < meta["lo"]) or (meta["hi"] is not None and v > meta["hi"]):
                problems.append(f"{name}={shown}: out of range; allowed: {_allowed(meta)}")
                continue
        values[f.name] = v

    pplx = pplx_keys_from(merged)
    if pplx:
        values["pplx_api_keys"] = ",".join(pplx)

    market_explicit = "market_filter" in values      # set by the user, not by the profile
    profile = values.get("profile", Settings.profile)
    if profile in PROFILES:
        for key, pv in PROFILES[profile].items():
            values.setdefault(key, pv)

    for f in fields(Settings):
        cond = f.metadata["required_if"]
        if cond:
            other, wanted = cond
            other_value = values.get(other, getattr(Settings, other, None))
            hit = bool(other_value) if wanted == "<set>" else other_value == wanted
            if hit and not values.get(f.name):
                other_env = next(g.metadata["env"] for g in fields(Settings) if g.name == other)
                when = f"{other_env} is set" if wanted == "<set>" else f"{other_env}={wanted}"
                problems.append(f"{f.metadata['env']} is missing: it is required when {when}")

    if "lookback_bars" in values and "universe_lookback_bars" not in values:
        # a universe scan sees as many 1h bars as the agents do, so its 1h signal equals theirs
        values["universe_lookback_bars"] = values["lookback_bars"]
    if "lookback_bars" in values:     # set by every profile
        mb = values.get("min_bars", Settings.min_bars)
        lb = values["lookback_bars"]
        if mb > lb:
            problems.append(f"TB_MIN_BARS={mb!r}: must not exceed TB_LOOKBACK_BARS={lb}")
    tw, lb = values.get("trend_window_h"), values.get("lookback_bars")
    if tw is not None and lb is not None and tw > lb:
        problems.append(f"TB_TREND_WINDOW_H={tw!r}: the trend mean needs that many hourly bars, more than "
                        f"TB_LOOKBACK_BARS={lb}")
    elif tw and lb is not None and values.get("trend_ensemble") and 2 * tw > lb:
        problems.append(f"TB_TREND_ENSEMBLE=true: its longest mean is twice TB_TREND_WINDOW_H={tw!r}, more hourly "
                        f"bars than TB_LOOKBACK_BARS={lb}")
    problems += _market_problems(values, market_explicit)
    rs, re_ = values.get("replay_start", Settings.replay_start), values.get("replay_end")
    if rs is not None and re_ is not None and re_ <= rs:
        problems.append(f"TB_REPLAY_END={_render(re_)!r}: must be after TB_REPLAY_START={_render(rs)}")

    if problems:
        raise ConfigError(problems)
    settings = Settings(**values)
    problems = feed_problems(settings) + venue_problems(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def _dotenv_present(path: Path, default: bool) -> bool:
    """Whether ``path`` is a file to read. Only the default ``.env`` may be absent (settings from the environment
    alone); a file named explicitly that is missing, or a ``.env`` that is not a file (a directory a container
    mount made, a link to a secrets volume that is not mounted), would run on the profile's defaults instead of
    the user's limits: a :class:`ConfigError` naming the path."""
    try:
        if path.is_file():
            return True
    except OSError as e:      # a folder on the way that cannot be searched
        raise _unreadable(path, e) from None
    if path.is_symlink():
        raise ConfigError([f"{path}: a link to {os.readlink(path)}, which does not exist; fix the link or remove it"])
    if path.exists():
        raise ConfigError([f"{path}: not a file (a directory?); remove it or put the settings in a file there"])
    if default:
        return False
    raise ConfigError([f"{path}: no such file (--env-file); check the name"])


def _unreadable(path: Path, e: OSError) -> ConfigError:
    return ConfigError([f"{path}: cannot be read ({e.strerror or e}); make it yours and user-only (chmod 600 {path}), "
                        "or on macOS give the Python Full Disk Access for a checkout in ~/Documents, ~/Desktop or "
                        "~/Downloads"])


_ASSIGNED = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=")


def _dotenv(path: Path) -> dict[str, str]:
    """The values ``path`` sets. python-dotenv skips a line it cannot parse (an unclosed quote) with a mere
    warning, and the profile's value then stands in for the user's (a looser risk limit, reported as valid); a
    file that is not UTF-8 raises a bare UnicodeDecodeError. Both are a :class:`ConfigError` here."""
    try:
        text = path.read_text(encoding="utf-8")       # universal newlines, as python-dotenv reads it
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise ConfigError([f"{path}: not UTF-8 (byte 0x{e.object[e.start]:02x} on line {line}); save it as "
                           "UTF-8"]) from None
    except OSError as e:     # EACCES (a root-owned file left by sudo), EPERM (macOS privacy protection)
        raise _unreadable(path, e) from None
    problems = []
    for b in parse_stream(io.StringIO(text)):
        if not b.error:
            continue
        # a binding starts with the blank lines before it; the value is not shown (it may be a secret)
        body = b.original.string.lstrip("\ufeff\r\n\t ")
        line = b.original.line + b.original.string[:len(b.original.string) - len(body)].count("\n")
        m = _ASSIGNED.match(body)
        where = f"{m.group(1)} ({path} line {line})" if m else f"{path} line {line}"
        problems.append(f"{where}: cannot be parsed (an unclosed quote?); fix or remove the line")
    if problems:
        raise ConfigError(problems)
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


def _market_problems(values: dict[str, Any], explicit: bool) -> list[str]:
    """The market filter's symbol is read from the agent's own feed (one code path live and in the backtest): an
    agent whose symbols lack it trades without the filter (:meth:`EvalParams.from_settings`), and a symbol set
    explicitly that no agent trades is an error. Its mean needs a window and that many bars."""
    sym = values.get("market_filter")
    if sym is None or sym == "none":
        return []
    out = []
    traded = set(values.get("symbols", Settings.symbols))
    if values.get("futures_market_filter", Settings.futures_market_filter):
        traded |= set(values.get("futures_symbols", Settings.futures_symbols))
    if explicit and sym not in traded:
        out.append(f"TB_MARKET_FILTER={sym!r}: the filter reads that symbol's bars from the agent's feed, so it must "
                   "be one of TB_SYMBOLS (or of TB_FUTURES_SYMBOLS)")
    mw, lb = values.get("market_window_h") or 0.0, values.get("lookback_bars")
    if not (mw or values.get("trend_window_h")):
        if not explicit:            # the profile's filter follows the trend window the user switched off
            values["market_filter"] = "none"
            return out
        out.append(f"TB_MARKET_WINDOW_H={mw!r}: the market filter needs a window (TB_TREND_WINDOW_H is 0 too)")
    elif mw and lb is not None and mw > lb:     # (the trend window's own check covers the default)
        out.append(f"TB_MARKET_WINDOW_H={mw!r}: the market filter's mean needs that many hourly bars, more than "
                   f"TB_LOOKBACK_BARS={lb}")
    return out


def env_example() -> str:
    """The text of ``.env.example``: every variable, its default and its meaning."""
    lines = ["# Tracer Bullet configuration. Copy to .env and edit; the environment overrides .env.",
             "# Every variable is optional: the offline replay runs with none set.",
             "# Profile-driven variables (empty default) take their value from TB_PROFILE unless set.", ""]
    for f in fields(Settings):
        meta = f.metadata
        default = f.default
        if meta["profile"]:
            per = ", ".join(f"{p}={_render(v[f.name])}" for p, v in PROFILES.items())
            lines.append(f"# {meta['help']}; allowed: {_allowed(meta)}; profile: {per}")
            lines.append(f"# {meta['env']}=")
        else:
            lines.append(f"# {meta['help']}; allowed: {_allowed(meta)}")
            unset = meta["secret"] or default is None       # no default: left unset, derived (see help)
            lines.append(f"{'# ' if unset else ''}{meta['env']}={'' if default is None else _render(default)}")
            if f.name == "pplx_api_keys":  # the other accepted spellings (see pplx_keys_from)
                lines += ["# PPLX_API_KEY_1=", "# PPLX_API_KEY_2=", "# PPLX_API_KEYS=", "# PPLX_API_KEY="]
        lines.append("")
    return "\n".join(lines)
