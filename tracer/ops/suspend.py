"""Time this machine spent asleep, so that the watchdog and the health check do not count it toward an age.

A Mac mini or a laptop sleeps: the agents stop with it, and on wake every heartbeat is as old as the sleep.
Judged on wall time, a healthy agent would look hung (the watchdog restarted it, the health check reported a
stale heartbeat). A *judge* (the watchdog of one agent, the health check) therefore judges an age of *awake*
time: the age less the time the machine was suspended since the heartbeat (or the pid file, during start-up),
never below 0.

How much was suspended: two clocks that differ only in counting sleep (Python's ``time`` module).

* Linux: ``CLOCK_BOOTTIME`` is ``CLOCK_MONOTONIC`` plus the time spent in suspend; their difference is the
  total suspended since boot (exact: both are slewed alike).
* macOS: ``CLOCK_MONOTONIC_RAW`` keeps counting while the system is asleep, ``CLOCK_UPTIME_RAW`` (what
  ``mach_absolute_time`` counts) does not (clock_gettime(3)); both are raw, unaffected by NTP's frequency
  adjustments, so their difference does not drift. Without ``CLOCK_MONOTONIC_RAW``: ``CLOCK_MONOTONIC``,
  which also counts sleep.
* anything else, or a clock missing or failing: suspended 0, i.e. no grace (the behaviour before).

That total is a counter since boot, so the share of a heartbeat's age that was sleep needs the counter as it
was when the heartbeat was written. The agents write their heartbeats (tracer/agents/loop.py), and the
operations layer does not change that path; so the judge keeps the record instead: each run reads the
counter and stores it in ``TB_STATE_DIR/suspend_<judge>.json`` with the wall time; when the counter grew
since the previous run, the machine slept that long somewhere between the two runs, and that *gap*
(after, seen, seconds) is kept (the last ``MAX_GAPS``). The suspended time after a moment T is the sum of the
gaps after T; for the one gap that straddles T, at most its wall-clock part after T (sleep takes wall time).
This errs on the generous side by at most one run's interval (a sleep just before T is granted as if it
followed T): a hang that starts right after a wake is caught at most one judge interval later, whereas the
other choice would bring back the false alarm whenever the judge's interval exceeds the age limit (the health
check runs every 15 minutes, the heartbeat limit is 10). The gaps stay, so a heartbeat written before a sleep
keeps its grace on every later run until the agent writes a new one.

A run whose clocks disagree with the previous one (the since-boot clock did not advance with the wall
clock: a reboot, or the wall clock was set) records no gap: no grace for that interval, as before. The first
run of a judge has nothing to compare with: no grace either.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tracer.logs import private_write_text
from tracer.ops.common import human_age

MAX_GAPS = 100
MIN_GAP_S = 1.0            # counter growth below this is reading noise, not a sleep
CLOCK_TOLERANCE_S = 60.0   # wall vs since-boot clock disagreement beyond this: a reboot or a clock step


@dataclass(frozen=True)
class MachineClock:
    """One reading of the machine's clocks."""
    since_boot: float   # seconds since boot, sleep included
    suspended: float    # seconds suspended since boot (0 when this platform cannot tell)


@dataclass(frozen=True)
class Reading:
    """A judge's reading: the wall time (epoch seconds) and the machine's clocks at that moment."""
    wall: float
    since_boot: float
    suspended: float


@dataclass(frozen=True)
class Gap:
    """The machine was suspended ``seconds`` in all, somewhere in the wall-time interval (after, seen]."""
    after: float
    seen: float
    seconds: float


SuspendClock = Callable[[], MachineClock]


# --- the clocks -------------------------------------------------------------------------------------------
def _clock_pair() -> tuple[int, int] | None:
    """(the clock that counts sleep, the one that does not) on this platform, or None."""
    if sys.platform.startswith("linux"):
        boot, mono = getattr(time, "CLOCK_BOOTTIME", None), getattr(time, "CLOCK_MONOTONIC", None)
        return (boot, mono) if boot is not None and mono is not None else None
    if sys.platform == "darwin":
        cont = getattr(time, "CLOCK_MONOTONIC_RAW", None)
        if cont is None:
            cont = getattr(time, "CLOCK_MONOTONIC", None)
        awake = getattr(time, "CLOCK_UPTIME_RAW", None)
        return (cont, awake) if cont is not None and awake is not None else None
    return None


def read_clock() -> MachineClock:
    """The machine's clocks now; never raises (suspended 0 and the process's monotonic clock when unknown)."""
    pair = _clock_pair()
    if pair is not None:
        try:
            awake = time.clock_gettime(pair[1])
            with_sleep = time.clock_gettime(pair[0])    # read second: jitter can only add, never go negative
            return MachineClock(since_boot=with_sleep, suspended=max(0.0, with_sleep - awake))
        except (OSError, ValueError, OverflowError):
            pass
    return MachineClock(since_boot=time.monotonic(), suspended=0.0)


def suspended_seconds() -> float:
    """Seconds this machine has been suspended since boot (0.0 when the platform cannot tell)."""
    return read_clock().suspended


# --- the pure judgement -----------------------------------------------------------------------------------
def gap_between(prev: Reading | None, cur: Reading) -> Gap | None:
    """The suspension between two readings of one judge, or None (none, below noise, or unknowable: a first
    reading, a reboot, a wall clock that was set)."""
    if prev is None:
        return None
    wall_s, boot_s = cur.wall - prev.wall, cur.since_boot - prev.since_boot
    if wall_s <= 0 or boot_s < 0 or abs(wall_s - boot_s) > CLOCK_TOLERANCE_S + 0.001 * wall_s:
        return None
    slept = cur.suspended - prev.suspended
    if slept < MIN_GAP_S:
        return None
    return Gap(after=prev.wall, seen=cur.wall, seconds=min(slept, wall_s))


def suspended_after(since: float, gaps: Iterable[Gap]) -> float:
    """Seconds suspended after wall time ``since`` (epoch), as far as ``gaps`` tell: every gap after it, and of
    the gap that straddles it at most its wall-clock part after ``since``."""
    total = 0.0
    for g in gaps:
        if g.seen <= since:
            continue
        total += g.seconds if g.after >= since else min(g.seconds, g.seen - since)
    return total


def awake_age(age_s: float, suspended_s: float) -> float:
    """An age less the time the machine was suspended within it, never below 0."""
    return max(0.0, age_s - max(0.0, suspended_s))


def awake_age_at(age_s: float | None, now: datetime, gaps: Sequence[Gap]) -> float | None:
    """``age_s`` (ending at ``now``) less the suspended time within it; None stays None."""
    if age_s is None:
        return None
    return awake_age(age_s, suspended_after(now.timestamp() - age_s, gaps))


# --- the judge's record -----------------------------------------------------------------------------------
def record_file(state_dir: Path | str, judge: str) -> Path:
    return Path(state_dir) / f"suspend_{judge}.json"


def load(path: Path) -> tuple[Reading | None, tuple[Gap, ...]]:
    """(the previous reading, the gaps seen); nothing when the file is missing or unreadable."""
    try:
        d = json.loads(path.read_text())
        last = d.get("last")
        prev = Reading(float(last["wall"]), float(last["since_boot"]), float(last["suspended"])) if last else None
        gaps = tuple(Gap(float(a), float(b), float(c)) for a, b, c in d.get("gaps", []))
        return prev, gaps
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None, ()


def save(path: Path, last: Reading, gaps: Sequence[Gap]) -> None:
    """Write the record atomically, user-only; a state folder that is missing (never created here: a judge run
    from elsewhere must not leave one behind) or cannot take it costs the grace, never the judgement."""
    doc = {"last": {"wall": last.wall, "since_boot": last.since_boot, "suspended": last.suspended},
           "gaps": [[g.after, g.seen, g.seconds] for g in gaps[-MAX_GAPS:]]}
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        private_write_text(tmp, json.dumps(doc))
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def record(state_dir: Path | str, judge: str, now: datetime, clock: SuspendClock | None = None) -> tuple[Gap, ...]:
    """This run of ``judge``: read the clocks (``clock``, default :func:`read_clock`), keep the reading and any
    new gap in the judge's record, and return every gap it holds (to pass to :func:`awake_age_at`)."""
    c = (clock or read_clock)()
    cur = Reading(wall=now.timestamp(), since_boot=c.since_boot, suspended=c.suspended)
    path = record_file(state_dir, judge)
    prev, gaps = load(path)
    gap = gap_between(prev, cur)
    if gap is not None:
        gaps = (*gaps, gap)[-MAX_GAPS:]
    save(path, cur, gaps)
    return gaps


def asleep_note(age_s: float | None, awake_s: float | None) -> str:
    """`` (1h58m asleep, not counted)`` when part of an age was sleep, else ``""``."""
    if age_s is None or awake_s is None or age_s - awake_s < MIN_GAP_S:
        return ""
    return f" ({human_age(age_s - awake_s)} asleep, not counted)"
