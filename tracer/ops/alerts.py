"""Levelled alerts (info / warning / critical), routed per level, with a repeat window per check and a
recovery message when a check turns green again.

- :func:`send` enqueues one alert on the channels ``TB_ALERT_CHANNELS_<LEVEL>`` names that are enabled
  (console, Discord, Telegram), delivers the remote ones at once (the agents, whose workers normally do it,
  may be what is down), records it in the monitoring record, and never raises: when the DB cannot take it
  (a full disk) the alert is posted straight to the remote channels, best effort and not stored, and noted
  in ``TB_LOG_DIR/alerts.log`` (when that can be written) and on stderr.
- :func:`health_alerts` decides per check: a failing check alerts when it first fails, when its level
  changes, and again once its repeat window (``TB_HEALTH_ALERT_REPEAT_MIN``, or its entry in
  ``TB_HEALTH_ALERT_REPEAT_BY_CHECK``) has passed; a check that was failing and is ok again gets one info
  "recovered" message. State: ``TB_STATE_DIR/health_alert_state.json`` (user-only), read, sent and saved
  under an exclusive lock (``health_alert_state.flock``): overlapping health checks alert once.
- :func:`alert_once` is the same window for an alert that is not a check (an invalid config seen by every
  watchdog pass), in ``TB_STATE_DIR/alerts_sent.json``; one lock per key (``alerts_sent.<key hash>.flock``):
  a slow send of one key never holds back another, and a key whose lock stays held is sent anyway (logged).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import IntEnum
from pathlib import Path
from typing import Any, Iterator, Sequence

from tracer.logs import log_line, private_write_text
from tracer.ops.records import Event, Source, record


class Level(IntEnum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True)
class Finding:
    """What a health check found (``tracer.ops.Check`` has the same fields)."""
    name: str
    level: int
    message: str


def _now() -> datetime:
    return datetime.now(timezone.utc)


def route(settings: Any, level: Level) -> list[str]:
    """The enabled channels ``level`` goes to."""
    from tracer.notify.outbox import channels
    wanted = {Level.INFO: settings.alert_channels_info, Level.WARNING: settings.alert_channels_warning,
              Level.CRITICAL: settings.alert_channels_critical}[Level(level)]
    names = [x for x in str(wanted).split(",") if x]
    return [ch for ch in channels(settings) if ch in names]


def send(settings: Any, level: Level, kind: str, message: str, agent: str | None = None) -> list[int]:
    """Enqueue ``message`` on ``level``'s channels (see the module docstring). Returns the outbox row ids."""
    from tracer.notify.format import redact
    ids: list[int] = []
    chans = route(settings, level)
    message = redact(message, settings.secret_values())      # nowhere, not even alerts.log, gets a secret
    stored = False
    try:
        if not Path(settings.db_path).is_file():
            raise FileNotFoundError(f"{settings.db_path} does not exist")
        from tracer.store import Store
        store = Store(settings.db_path)
        try:
            text = message
            with store.transaction():
                ids = store.enqueue_notifications(chans, kind, text, agent)
            stored = True
        finally:
            store.close()
        if any(ch != "console" for ch in chans):
            from tracer.notify.worker import deliver_now
            deliver_now(settings)
    except Exception as e:  # noqa: BLE001 - an alert must never take its caller down
        # a full disk (or a broken DB) must not keep the alert on this machine: straight to the remote
        # channels, best effort, and said that it was not stored (no retry, no record in the outbox)
        direct = [] if stored else _send_directly(settings, chans, message, agent)
        note = (f"not enqueued ({type(e).__name__}: {e}); sent directly, not stored: {'+'.join(direct)}" if direct
                else f"{'enqueued, delivery failed' if stored else 'not enqueued'} ({type(e).__name__}: {e})")
        print(f"alert {note}: {message}", file=sys.stderr)
        try:
            log_line(settings, "alerts", agent, f"kind={kind} level={Level(level).name.lower()} {note}: {message}")
        except OSError:
            pass
    record(settings, [Event(Source.ALERT, "alert", kind, int(level),
                            f"{'+'.join(chans) or 'no channel'}: {message}")])
    return ids


def _send_directly(settings: Any, chans: Sequence[str], message: str, agent: str | None) -> list[str]:
    """Post ``message`` on the remote channels of ``chans`` without the outbox; the channels that took it."""
    from tracer.notify.outbox import REMOTE_CHANNELS, make_sender
    from tracer.notify.worker import display_text
    done = []
    for ch in chans:
        if ch not in REMOTE_CHANNELS:
            continue
        try:
            sender = make_sender(ch, settings)
            try:
                for part in sender.parts(display_text(agent, message)):
                    sender.send_part(part)
            finally:
                sender.close()
            done.append(ch)
        except Exception as e:  # noqa: BLE001 - the other channel may still work
            print(f"alert: direct delivery on {ch} failed ({type(e).__name__})", file=sys.stderr)
    return done


# --- per-check repeat windows ------------------------------------------------------------------------------
def repeat_minutes(settings: Any, check: str) -> float:
    """``check``'s repeat window: its TB_HEALTH_ALERT_REPEAT_BY_CHECK entry (``disk=240``; ``heartbeat``
    also covers ``heartbeat[hybrid]``), else TB_HEALTH_ALERT_REPEAT_MIN."""
    base = check.split("[", 1)[0]
    for item in str(settings.health_alert_repeat_by_check).split(","):
        name, _, minutes = item.partition("=")
        if name.strip() in (check, base) and minutes.strip():
            try:
                return float(minutes)
            except ValueError:
                break            # a typo there must not silence alerts: the default window
    return float(settings.health_alert_repeat_min)


def _state_path(settings: Any, name: str) -> Path:
    return Path(settings.state_dir) / name


def _load(settings: Any, name: str) -> dict[str, Any]:
    try:
        d = json.loads(_state_path(settings, name).read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(settings: Any, name: str, d: dict[str, Any]) -> None:
    p = _state_path(settings, name)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        private_write_text(tmp, json.dumps(d))
        os.replace(tmp, p)
    except OSError:
        pass         # an unwritable state folder: alerts may repeat, never stop


# Two health checks may overlap (cron beside launchd, a manual run, a slow webhook): each loads the state, sends
# (a blocking POST), then saves it, so without a lock both would alert the same finding. The lock is held from
# load to save; a second run waits for it up to LOCK_WAIT_S (then it sees what the first sent), and past that
# skips alerting with a log line (the run holding the lock alerts; the next run catches up).
LOCK_WAIT_S = 60.0


@contextmanager
def _locked(settings: Any, name: str, wait_s: float = LOCK_WAIT_S) -> Iterator[bool]:
    """Hold ``TB_STATE_DIR/<name>.flock`` (flock, released by the OS if the process dies); yields False when
    another process held it all ``wait_s``. A lock file that cannot be made (read-only or full disk) is no
    lock: True, as before (alerts may repeat, never stop)."""
    try:
        p = _state_path(settings, f"{name}.flock")   # not *.lock: those are the mkdir locks
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield True
        return
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.2)
        yield True
    finally:
        os.close(fd)          # releases the flock


def health_alerts(settings: Any, checks: Sequence[Any], now: datetime | None = None) -> list[str]:
    """Alert the failing checks that are due and the recoveries; returns the alert kinds sent."""
    with _locked(settings, "health_alert_state") as held:
        if not held:
            msg = (f"another health check held {_state_path(settings, 'health_alert_state.flock')} for "
                   f"{LOCK_WAIT_S:g} s: no alert from this run (that one alerts)")
            print(f"health: {msg}", file=sys.stderr)
            try:
                log_line(settings, "alerts", None, msg)
            except OSError:
                pass
            return []
        return _health_alerts(settings, checks, now)


def _health_alerts(settings: Any, checks: Sequence[Any], now: datetime | None) -> list[str]:
    now = now or _now()
    t = now.timestamp()
    state = _load(settings, "health_alert_state.json")
    due, recovered = [], []
    for c in checks:
        prev = state.get(c.name)
        if c.level > 0:
            fresh = not isinstance(prev, dict) or prev.get("level") != c.level
            if fresh or t - float(prev.get("alerted", 0)) >= repeat_minutes(settings, c.name) * 60:
                due.append(c)
                state[c.name] = {"level": c.level, "since": prev.get("since", t) if not fresh else t, "alerted": t}
        elif isinstance(prev, dict):
            recovered.append((c, prev))
            del state[c.name]
    sent = []
    if due:
        worst = Level(max(c.level for c in due))
        icon = "🚨" if worst == Level.CRITICAL else "⚠️"
        kind = f"health_{worst.name.lower()}"
        send(settings, worst, kind, f"{icon} health {worst.name.lower()}: "
                                    + "; ".join(f"{c.name}: {c.message}" for c in due))
        sent.append(kind)
    if recovered:
        from tracer.ops.common import human_age
        send(settings, Level.INFO, "health_recovered", "✅ recovered: " + "; ".join(
            f"{c.name} ({['ok', 'warning', 'critical'][int(p.get('level', 1))]} for "
            f"{human_age(t - float(p.get('since', t)))}): {c.message}" for c, p in recovered))
        sent.append("health_recovered")
    _save(settings, "health_alert_state.json", state)
    return sent


def alert_once(settings: Any, key: str, kind: str, message: str, agent: str | None = None,
               now: datetime | None = None, level: Level = Level.CRITICAL) -> bool:
    """Alert ``message`` unless ``key`` was alerted within ``TB_HEALTH_ALERT_REPEAT_MIN``; True when sent.

    Each key has its own lock (two watchdog passes at once: one alert), held across its send: a send of another
    key that hangs (a locked DB, a slow webhook) never holds this one back. When even this key's lock stays held
    over the wait, the alert is sent anyway, unlocked (it may repeat; it is never lost), and that is logged."""
    tag = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:16]
    with _locked(settings, f"alerts_sent.{tag}") as held:
        if not held:
            note = f"alert_once: the lock of key {key} was held over {LOCK_WAIT_S:.0f} s: sending {kind} anyway"
            print(note, file=sys.stderr)
            try:
                log_line(settings, "alerts", agent, note)
            except OSError:
                pass
        return _alert_once(settings, key, kind, message, agent, now, level)


def _alert_once(settings: Any, key: str, kind: str, message: str, agent: str | None, now: datetime | None,
                level: Level) -> bool:
    t = (now or _now()).timestamp()
    book = _load(settings, "alerts_sent.json")
    try:
        last = float(book.get(key, float("-inf")))
    except (TypeError, ValueError):
        last = float("-inf")
    if t - last < settings.health_alert_repeat_min * 60:
        return False
    send(settings, level, kind, message, agent)
    # the book is shared by every key: read again and written under its own short lock (never held across a send)
    with _locked(settings, "alerts_sent_book"):
        book = _load(settings, "alerts_sent.json")
        book[key] = t
        _save(settings, "alerts_sent.json", book)
    return True


def alert(settings: Any, kind: str, message: str, agent: str | None = None, level: int = 1) -> list[int]:
    """Enqueue ``message`` on the channels of its level (``TB_ALERT_CHANNELS_<LEVEL>``; default warning).

    Never raises: when the DB cannot take it (missing, corrupt, locked), the alert goes to
    ``TB_LOG_DIR/alerts.log`` and to stderr instead, and ``[]`` is returned (:func:`send`)."""
    return send(settings, Level(level), kind, message, agent)
