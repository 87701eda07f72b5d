"""API key rotation with cool-downs, persisted in the ``api_keys`` table.

A :class:`KeyRing` holds one provider's keys in their configured order and hands out
the first key that is not cooling down (sticky: the same key is used until it fails).
A key fails on:

* 401 / 403 (bad or revoked key): cooled for ``auth_cooldown_s`` (long: hours);
* 429 (rate limited): cooled for the ``Retry-After`` the server sent (seconds or an
  HTTP date), ``error_cooldown_s`` when it sent none;
* 5xx: cooled for ``error_cooldown_s * 2 ** (consecutive failures - 1)``, at most
  ``max_cooldown_s``.

A success resets the key's failure count. The state (failures, cool-down end, last
status, a short error) is written to ``api_keys`` under ``key_id`` = the first 16 hex
characters of sha256(key), so that a restarted process on the same DB skips a key that
is still cooling. The key itself is never stored, logged or put in a message: a key
is named by :func:`key_id` only.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Sequence

__all__ = ["KeyRing", "KeyState", "key_id", "parse_retry_after", "NoKeyAvailable"]


def key_id(key: str) -> str:
    """A stable, non-reversible name for a key: sha256(key)[:16]."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (epoch seconds): ``"7"`` -> 7.0, an HTTP date
    -> the seconds until it (>= 0); None when absent or unparsable."""
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    try:
        dt = parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return max(0.0, dt.timestamp() - now)


class NoKeyAvailable(Exception):
    """Every key is cooling down. ``wait_s``: seconds until the first one is usable again."""

    def __init__(self, provider: str, wait_s: float):
        self.provider = provider
        self.wait_s = wait_s
        super().__init__(f"{provider}: every key is cooling down ({wait_s:.0f}s until the next)")


@dataclass
class KeyState:
    kid: str
    failures: int = 0
    cooldown_until: float = 0.0     # epoch seconds
    last_status: int | None = None
    last_error: str = ""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(s: str | None) -> float:
    if not s:
        return 0.0
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class KeyRing:
    """Rotation state of one provider's keys.

    ``clock`` returns epoch seconds (wall time: a cool-down must survive a restart).
    ``store`` is a :class:`tracer.store.Store` (or None for an in-memory ring).
    """

    def __init__(self, provider: str, keys: Sequence[str], store=None, *, clock: Callable[[], float] = time.time,
                 auth_cooldown_s: float = 6 * 3600.0, error_cooldown_s: float = 60.0,
                 max_cooldown_s: float = 3600.0) -> None:
        self.provider = provider
        self._keys: list[str] = [k for k in dict.fromkeys(k.strip() for k in keys) if k]
        self.store = store
        self.clock = clock
        self.auth_cooldown_s = auth_cooldown_s
        self.error_cooldown_s = error_cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._state: dict[str, KeyState] = {key_id(k): KeyState(key_id(k)) for k in self._keys}
        self._load()

    def __repr__(self) -> str:  # never the keys
        return f"KeyRing({self.provider!r}, {len(self._keys)} keys)"

    def __len__(self) -> int:
        return len(self._keys)

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        if self.store is None or not self._state:
            return
        for r in self.store.api_key_states(self.provider):
            st = self._state.get(r["key_id"])
            if st is not None:
                st.failures = int(r["failures"])
                st.cooldown_until = _epoch(r["cooldown_until"])
                st.last_status = r["last_status"]
                st.last_error = r["last_error"] or ""

    def _save(self, st: KeyState) -> None:
        if self.store is None:
            return
        with self.store.transaction():
            self.store.save_api_key_state(self.provider, st.kid, st.failures,
                                          _iso(st.cooldown_until) if st.cooldown_until else None,
                                          st.last_status, st.last_error or None, _iso(self.clock()))

    # ------------------------------------------------------------------ use
    def state(self, key: str) -> KeyState:
        return self._state[key_id(key)]

    def available(self) -> list[str]:
        """Keys not cooling down now, in configured order."""
        now = self.clock()
        return [k for k in self._keys if self._state[key_id(k)].cooldown_until <= now]

    def current(self) -> str:
        """The first usable key; :class:`NoKeyAvailable` (with the wait) when all are cooling,
        ValueError when there is no key at all."""
        if not self._keys:
            raise ValueError(f"{self.provider}: no API key configured")
        avail = self.available()
        if avail:
            return avail[0]
        now = self.clock()
        raise NoKeyAvailable(self.provider, min(s.cooldown_until for s in self._state.values()) - now)

    def report_success(self, key: str, status: int = 200) -> None:
        st = self.state(key)
        changed = st.failures or st.cooldown_until or st.last_status != status
        st.failures, st.cooldown_until, st.last_status, st.last_error = 0, 0.0, status, ""
        if changed:
            self._save(st)

    def report_failure(self, key: str, status: int, retry_after: float | None = None, error: str = "") -> float:
        """Record a failed call with ``key``; returns the cool-down applied (seconds).

        ``error`` must be a short text free of secrets (e.g. ``http 401``)."""
        st = self.state(key)
        st.failures += 1
        if status in (401, 403):
            cool = self.auth_cooldown_s
        elif status == 429:
            cool = retry_after if retry_after is not None else self.error_cooldown_s
        else:
            cool = min(self.max_cooldown_s, self.error_cooldown_s * 2 ** (st.failures - 1))
        st.cooldown_until = self.clock() + cool
        st.last_status = status
        st.last_error = (error or f"http {status}")[:200]
        self._save(st)
        return cool
