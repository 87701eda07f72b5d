"""Typed configuration: every ``TB_*`` setting in one place.

Settings are read from the process environment and from ``.env`` (python-dotenv;
the environment wins). Every variable is declared once below with its type,
default, allowed range and a one-line meaning; ``.env.example`` is generated from
these declarations (``tracer config-example``) and a test keeps it in sync.

Validation happens at start: a wrong type, a value out of range or a missing
required key raises :class:`ConfigError` naming the variable, the bad value and
what is allowed. Unknown ``TB_`` variables produce warnings (typo catcher).
Secrets are masked in ``repr`` and in every log line (see ``tracer.logs``).

Profiles (``TB_PROFILE``) set defaults for a group of variables; a variable set
explicitly always overrides its profile value.

The package by job: ``settings`` (the declarations), ``profiles``, ``parse`` (one value), ``loader``
(``load_settings``, ``.env.example``), ``checks`` (across variables), ``sources``, ``venues``, ``keys``,
``overlay`` (promoted parameters), ``errors``.
"""
from __future__ import annotations

from tracer.config.checks import feed_problems, venue_problems
from tracer.config.errors import ConfigError
from tracer.config.keys import pplx_keys_from
from tracer.config.loader import env_example, env_names, load_settings, masked_overrides
from tracer.config.overlay import active_overlay
from tracer.config.profiles import ALL_SYMBOLS, PROFILES
from tracer.config.settings import Settings, mask
from tracer.config.sources import BAR_SOURCES, NEWS_SOURCES, parse_weights, source_names
from tracer.config.venues import TEST_HOSTS, is_local_url, is_test_url

__all__ = ["ALL_SYMBOLS", "BAR_SOURCES", "NEWS_SOURCES", "PROFILES", "TEST_HOSTS", "ConfigError", "Settings",
           "active_overlay", "env_example", "env_names", "feed_problems", "is_local_url", "is_test_url",
           "load_settings", "mask", "masked_overrides", "parse_weights", "pplx_keys_from", "source_names",
           "venue_problems"]
