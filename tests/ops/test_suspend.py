"""A machine that sleeps (a Mac mini, a laptop) is not a hung agent: the watchdog and the health check judge
ages in awake time (tracer/ops/suspend.py).

The pure pieces (the gap between two readings, the suspended time after a moment, the awake age), the clock
reader (its Linux branch for real, the macOS one on stand-in clocks), the judge's record, the watchdog's and
the health check's judgements on a simulated machine that sleeps two hours, and the scripts for real with a
sleep recorded as if it had happened.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from envs import ops_env as env_for
from procs import db, wait_for
from tracer.ops import suspend
from tracer.ops.suspend import Gap, MachineClock, Reading, awake_age, gap_between, suspended_after

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_750_000_000.0          # an epoch second: the simulated machine's wall clock starts here
H = 3600.0


# --- the pure pieces ------------------------------------------------------------------------------------
def test_awake_age_takes_the_sleep_off_and_never_goes_below_zero():
    assert awake_age(7290.0, 7200.0) == 90.0
    assert awake_age(7200.0, 7200.0) == 0.0
    assert awake_age(600.0, 7200.0) == 0.0          # more sleep than age: 0, not negative
    assert awake_age(600.0, 0.0) == 600.0           # no sleep: the age as it was
    assert awake_age(600.0, -5.0) == 600.0          # a nonsense negative sleep grants nothing


def test_gap_between_two_readings():
    before = Reading(wall=T0, since_boot=1000.0, suspended=50.0)
    after_sleep = Reading(wall=T0 + 2 * H + 60, since_boot=1000.0 + 2 * H + 60, suspended=50.0 + 2 * H)
    assert gap_between(before, after_sleep) == Gap(after=T0, seen=T0 + 2 * H + 60, seconds=2 * H)
    assert gap_between(None, after_sleep) is None                                   # a first run knows nothing
    awake = Reading(wall=T0 + 60, since_boot=1060.0, suspended=50.2)
    assert gap_between(before, awake) is None                                      # below the noise floor
    rebooted = Reading(wall=T0 + 2 * H, since_boot=300.0, suspended=2 * H)
    assert gap_between(before, rebooted) is None                                   # a new boot: unknown
    wall_set = Reading(wall=T0 + 2 * H, since_boot=1060.0, suspended=2 * H)
    assert gap_between(before, wall_set) is None                                   # the wall clock jumped
    assert gap_between(after_sleep, before) is None                                # time going back
    # never more sleep than the wall time between the readings
    odd = Reading(wall=T0 + 100, since_boot=1100.0, suspended=50.0 + 500)
    assert gap_between(before, odd) == Gap(T0, T0 + 100, 100.0)


def test_suspended_after_a_moment():
    gaps = [Gap(after=T0, seen=T0 + 2 * H + 60, seconds=2 * H), Gap(after=T0 + 3 * H, seen=T0 + 4 * H, seconds=600)]
    assert suspended_after(T0 - 10, gaps) == 2 * H + 600             # both after it
    assert suspended_after(T0 + 30, gaps) == 2 * H + 600             # straddled: its wall part after T0+30 is more
    assert suspended_after(T0 + 2 * H, gaps) == 60 + 600             # straddled: at most the 60 s after it
    assert suspended_after(T0 + 2 * H + 60, gaps) == 600             # the first gap is over by then
    assert suspended_after(T0 + 5 * H, gaps) == 0.0
    assert suspended_after(T0, []) == 0.0


@given(hs.lists(hs.tuples(hs.floats(0, 1e6), hs.floats(0, 1e5), hs.floats(0, 1e5)), max_size=8),
       hs.floats(0, 2e6), hs.floats(0, 1e6))
def test_the_grace_never_exceeds_the_wall_time_since_the_moment(raw, since, age):
    """Whatever the record holds (gaps are built as gap_between builds them), the sleep credited after a moment
    is never more than the wall time since then, and the awake age stays within [0, age]."""
    gaps, t = [], 0.0
    for start_gap, wall_s, slept in raw:
        after = t + start_gap
        gaps.append(Gap(after, after + wall_s, min(slept, wall_s)))
        t = after + wall_s
    assert suspended_after(since, gaps) <= max(0.0, t - since) + 1e-6
    assert 0.0 <= awake_age(age, suspended_after(since, gaps)) <= age


# --- the clock reader -----------------------------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux clocks")
def test_the_linux_clocks_are_read_for_real():
    c = suspend.read_clock()
    assert isinstance(c.suspended, float) and c.suspended >= 0.0
    assert isinstance(c.since_boot, float) and c.since_boot > 0.0
    s = suspend.suspended_seconds()
    assert isinstance(s, float) and s >= 0.0
    # CLOCK_BOOTTIME - CLOCK_MONOTONIC, as the kernel keeps it
    assert abs(c.suspended - (time.clock_gettime(time.CLOCK_BOOTTIME) - time.clock_gettime(time.CLOCK_MONOTONIC))) < 1


def fake_time(clocks: dict[str, float], fail: bool = False) -> types.SimpleNamespace:
    ids = {name: i for i, name in enumerate(clocks, 1)}

    def clock_gettime(cid: int) -> float:
        if fail:
            raise OSError(22, "Invalid argument")
        return next(clocks[n] for n, i in ids.items() if i == cid)

    return types.SimpleNamespace(clock_gettime=clock_gettime, monotonic=lambda: 123.0, **ids)


def test_the_macos_clocks_sleep_counting_minus_uptime(monkeypatch):
    """On macOS: CLOCK_MONOTONIC_RAW (counts sleep) less CLOCK_UPTIME_RAW (does not); CLOCK_MONOTONIC when
    the raw one is missing."""
    monkeypatch.setattr(suspend, "sys", types.SimpleNamespace(platform="darwin"))
    monkeypatch.setattr(suspend, "time", fake_time({"CLOCK_MONOTONIC_RAW": 9000.0, "CLOCK_UPTIME_RAW": 1800.0,
                                                    "CLOCK_MONOTONIC": 5.0}))
    assert suspend.read_clock() == MachineClock(since_boot=9000.0, suspended=7200.0)
    monkeypatch.setattr(suspend, "time", fake_time({"CLOCK_MONOTONIC": 9000.0, "CLOCK_UPTIME_RAW": 8000.0}))
    assert suspend.read_clock() == MachineClock(since_boot=9000.0, suspended=1000.0)


@pytest.mark.parametrize("platform, clocks, fail", [
    ("linux", {"CLOCK_MONOTONIC": 10.0}, False),                       # no CLOCK_BOOTTIME
    ("darwin", {"CLOCK_MONOTONIC_RAW": 10.0}, False),                  # no CLOCK_UPTIME_RAW (macOS < 10.12)
    ("linux", {"CLOCK_BOOTTIME": 10.0, "CLOCK_MONOTONIC": 5.0}, True),  # clock_gettime fails
    ("win32", {"CLOCK_MONOTONIC": 10.0}, False),                       # a platform it cannot tell on
])
def test_a_missing_or_failing_clock_means_no_sleep_never_a_crash(monkeypatch, platform, clocks, fail):
    monkeypatch.setattr(suspend, "sys", types.SimpleNamespace(platform=platform))
    monkeypatch.setattr(suspend, "time", fake_time(clocks, fail))
    assert suspend.read_clock() == MachineClock(since_boot=123.0, suspended=0.0)
    assert suspend.suspended_seconds() == 0.0


def test_a_reading_that_runs_backwards_is_clamped(monkeypatch):
    monkeypatch.setattr(suspend, "sys", types.SimpleNamespace(platform="linux"))
    monkeypatch.setattr(suspend, "time", fake_time({"CLOCK_BOOTTIME": 10.0, "CLOCK_MONOTONIC": 10.000001}))
    assert suspend.suspended_seconds() == 0.0


# --- a simulated machine --------------------------------------------------------------------------------
class Machine:
    """Wall clock and the machine's clocks, driven by the test: it runs (awake) or sleeps."""

    def __init__(self) -> None:
        self.wall, self.boot, self.suspended = T0, 5000.0, 0.0

    def run(self, s: float) -> None:
        self.wall += s
        self.boot += s

    def sleep(self, s: float) -> None:
        self.run(s)
        self.suspended += s

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall, timezone.utc)

    def clock(self) -> MachineClock:
        return MachineClock(since_boot=self.boot, suspended=self.suspended)


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_record_keeps_a_sleep_for_every_later_run(tmp_path):
    m = Machine()
    assert suspend.record(tmp_path, "j", m.now(), m.clock) == ()              # first run: a baseline
    m.run(30)
    m.sleep(2 * H)
    m.run(60)
    gaps = suspend.record(tmp_path, "j", m.now(), m.clock)
    assert gaps == (Gap(T0, T0 + 30 + 2 * H + 60, 2 * H),)
    m.run(60)
    assert suspend.record(tmp_path, "j", m.now(), m.clock) == gaps            # still there a run later
    assert suspend.record(tmp_path, "other", m.now(), m.clock) == ()         # each judge its own record
    f = suspend.record_file(tmp_path, "j")
    assert f.stat().st_mode & 0o077 == 0                                      # user-only, like all state
    f.write_text("{not json")
    assert suspend.record(tmp_path, "j", m.now(), m.clock) == ()              # unreadable: start again
    for _ in range(suspend.MAX_GAPS + 5):
        m.sleep(10)
        m.run(1)
        gaps = suspend.record(tmp_path, "j", m.now(), m.clock)
    assert len(gaps) == suspend.MAX_GAPS and gaps[-1].seen == m.wall          # bounded, the newest kept
    assert json.loads(f.read_text())["last"]["suspended"] == m.suspended


def test_a_state_folder_that_cannot_be_written_costs_the_grace_not_the_judgement(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    m = Machine()
    assert suspend.record(blocker / "state", "j", m.now(), m.clock) == ()
    assert suspend.record(tmp_path / "missing", "j", m.now(), m.clock) == ()
    assert not (tmp_path / "missing").exists()                                # never created by a judge


# --- the judges -----------------------------------------------------------------------------------------
@pytest.fixture
def judged(tmp_path, monkeypatch):
    """Settings under tmp_path, a live (stand-in) hybrid agent with pid 4242, and a way to write its heartbeat."""
    from tracer.config import load_settings
    from tracer.store import Store
    import tracer.ops.health
    import tracer.ops.heartbeat
    import tracer.ops.watchdog

    s = load_settings(environ=env_for(tmp_path), dotenv_path=None)
    for where in (tracer.ops.heartbeat, tracer.ops.watchdog, tracer.ops.health):
        monkeypatch.setattr(where, "agent_alive", lambda pid, agent: True)
    monkeypatch.setattr(tracer.ops.watchdog, "agent_confirmed", lambda pid, agent: True)   # before a signal
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "hybrid.pid").write_text("4242\n")
    Store(tmp_path / "state" / "t.db").close()

    def beat(at: datetime) -> None:
        with db(tmp_path) as c:
            c.execute("INSERT INTO heartbeats(agent, ts, clock, cycle, pid, status) VALUES ('hybrid',?,?,7,4242,"
                      "'running') ON CONFLICT(agent) DO UPDATE SET ts=excluded.ts", (iso(at), iso(at)))

    return s, beat


def heartbeat_check(s, m: Machine):
    from tracer.ops.health import health
    return next(c for c in health(s, m.now(), m.clock) if c.name == "heartbeat[hybrid]")


# (seconds asleep, awake seconds after the wake, the watchdog's action, the health check's level): the heartbeat
# is written just before the sleep, the judge ran 30 s before that; the age limit is 10 minutes
SLEEPS = [
    (2 * H, 60, "ok", 0),             # two hours asleep, a minute awake: healthy
    (0, 2 * H + 60, "restart", 1),    # the same wall-clock age, all of it awake: hung
    (H, H + 60, "restart", 1),        # the sleep covers only half of the age: hung
    (2 * H, 11 * 60, "restart", 1),   # awake 11 minutes after the wake without a heartbeat: hung
]


@pytest.mark.parametrize("slept, awake, action, level", SLEEPS)
def test_the_watchdog_does_not_count_the_sleep(judged, slept, awake, action, level):
    from tracer.ops.watchdog import watchdog_check
    s, beat = judged
    m = Machine()
    assert watchdog_check(s, "hybrid", m.now(), m.clock).action == "ok"       # no heartbeat yet: start-up grace
    m.run(30)
    beat(m.now())
    m.sleep(slept)
    m.run(awake)
    v = watchdog_check(s, "hybrid", m.now(), m.clock)
    assert v.action == action, v.line()
    if action == "ok":
        assert v.reason == "running, heartbeat 2h01m old (2h00m asleep, not counted)"
        m.run(60)
        assert watchdog_check(s, "hybrid", m.now(), m.clock).action == "ok"   # and on the next pass too
    else:
        assert "hung: heartbeat" in v.reason


@pytest.mark.parametrize("slept, awake, action, level", SLEEPS)
def test_the_health_check_does_not_count_the_sleep(judged, slept, awake, action, level):
    s, beat = judged
    m = Machine()
    heartbeat_check(s, m)                                                     # the health check's earlier run
    m.run(30)
    beat(m.now())
    m.sleep(slept)
    m.run(awake)
    c = heartbeat_check(s, m)
    assert c.level == level, c.message
    assert ("STALE" in c.message) == bool(level)
    if slept and not level:
        assert "asleep, not counted" in c.message


def test_a_judge_that_did_not_run_before_the_sleep_cannot_tell(judged):
    """The judge learns of a sleep from its own earlier reading: without one, the age is wall time (as before)."""
    from tracer.ops.watchdog import watchdog_check
    s, beat = judged
    m = Machine()
    beat(m.now())
    m.sleep(2 * H)
    m.run(60)
    assert watchdog_check(s, "hybrid", m.now(), m.clock).action == "restart"


def test_the_log_check_does_not_count_the_sleep(judged, monkeypatch):
    """log[<agent>] (TB_HEALTH_LOG_STALE_MIN, 90 minutes) on the real wall clock: a sleep recorded in the health
    check's record, as if its previous run was 2 hours ago."""
    import tracer.ops.checks
    from tracer.ops.checks import agent_logs_and_resources
    s, _ = judged
    monkeypatch.setattr(tracer.ops.checks, "agent_alive", lambda pid, agent: True)
    (Path(s.state_dir) / "hybrid.pid").write_text(f"{os.getpid()}\n")        # a process psutil can look at
    log = Path(s.log_dir) / "hybrid.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("x\n")
    now = time.time()
    os.utime(log, (now - 2 * H - 10, now - 2 * H - 10))                       # written 10 s before the sleep
    for slept, level in ((2 * H, 0), (0.0, 1)):
        suspend.save(suspend.record_file(s.state_dir, "health"),
                     Reading(wall=now - 2 * H - 30, since_boot=10_000.0 - 2 * H - 30, suspended=0.0), ())
        clock = (lambda slept=slept: MachineClock(since_boot=10_000.0 + time.time() - now, suspended=slept))
        c = next(c for c in agent_logs_and_resources(s, clock) if c.name == "log[hybrid]")
        assert c.level == level, c.message


# --- the scripts, for real --------------------------------------------------------------------------------
@pytest.mark.skipif(suspend._clock_pair() is None, reason="this platform cannot tell sleep from awake time")
def test_after_a_sleep_the_scripts_leave_a_healthy_agent_alone(tmp_path):
    """scripts/watchdog_futures.sh and scripts/health_check.sh on live agents whose heartbeats are two hours old,
    with the machine's real clocks: each judge's record says (as its previous run would have) that the machine
    slept those two hours. Nothing is restarted and the health check is ok; a heartbeat older than the sleep
    plus the limit is still hung."""
    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", *cmd], env=env_for(tmp_path), capture_output=True, text=True, timeout=240,
                              cwd=ROOT)

    def pid(agent: str) -> int:
        return int((tmp_path / "state" / f"{agent}.pid").read_text())

    def own_heartbeat(agent: str) -> bool:
        with db(tmp_path) as c:
            hb = c.execute("SELECT * FROM heartbeats WHERE agent=?", (agent,)).fetchone()
        return hb is not None and hb["pid"] == pid(agent) and hb["status"] == "running"

    def asleep(judge: str, hours: float) -> None:
        """Record, as of ``hours`` + 30 s ago, the reading a run of ``judge`` would have taken then."""
        c, t = suspend.read_clock(), time.time()
        ago = hours * H + 30
        suspend.save(suspend.record_file(tmp_path / "state", judge),
                     Reading(wall=t - ago, since_boot=c.since_boot - ago, suspended=c.suspended - hours * H), ())

    def heartbeats_at(age_s: float) -> None:
        with db(tmp_path) as c:
            c.execute("UPDATE heartbeats SET ts=?", (iso(datetime.now(timezone.utc) - timedelta(seconds=age_s)),))

    # cycles 10 minutes apart: no cycle refreshes the heartbeats the test ages
    r = run(str(ROOT / "start_trading_system.sh"), "--interval", "600")
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        for a in ("hybrid", "futures"):
            wait_for(lambda: own_heartbeat(a), what=f"{a} heartbeat")
        before = pid("futures")
        heartbeats_at(2 * H + 10)                  # written 10 s before a two-hour sleep
        asleep("watchdog_futures", 2)
        asleep("health", 2)
        r = run("scripts/watchdog_futures.sh")
        assert r.stdout.startswith("watchdog[futures]: ok: running, heartbeat 2h00m old (") and \
            "asleep, not counted)" in r.stdout, r.stdout
        assert run("scripts/watchdog_futures.sh").stdout.startswith("watchdog[futures]: ok:")   # the next pass too
        h = run("scripts/health_check.sh", "--no-alert")
        assert h.returncode == 0, h.stdout
        assert "asleep, not counted" in next(ln for ln in h.stdout.splitlines() if "heartbeat[hybrid]" in ln)
        assert pid("futures") == before

        heartbeats_at(2 * H + 11 * 60)             # 11 minutes before the sleep: hung before it slept
        h = run("scripts/health_check.sh", "--no-alert")
        assert h.returncode == 1 and "STALE" in h.stdout, h.stdout
        r = run("scripts/watchdog_futures.sh")
        assert "hung: heartbeat" in r.stdout and "restarted" in r.stdout, r.stdout
        assert pid("futures") != before
    finally:
        run(str(ROOT / "start_trading_system.sh"), "--stop")
