"""Pids and locks that outlive their process (a power loss, a crash), run for real against the scripts:

* a pid recycled by macOS's watchdogd (emulated: ``exec -a /usr/libexec/watchdogd``) is neither this checkout's
  watchdog loop for the health check and its heal, nor the owner of a lock left behind;
* BusyBox's ps (no -p, no -ww; Alpine, small Linux boxes): a stale pid file naming an unrelated process is not
  "running" and is never signalled, and a live loop keeps its lock (the command line comes from /proc).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

from envs import ops_env
from ops_standins import reap
from procs import alive, db, wait_for

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "start_trading_system.sh"
HEALTH = ROOT / "scripts" / "health_check.sh"
WATCHDOG = ROOT / "scripts" / "watchdog_hybrid.sh"


def run(cmd: list[str], tmp: Path, env: dict[str, str] | None = None, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env or ops_env(tmp, HOME=str(tmp / "home"), **extra), capture_output=True,
                          text=True, timeout=240, cwd=ROOT)


def fake_watchdogd() -> subprocess.Popen:
    """A live process whose command line is macOS's watchdog daemon's."""
    p = subprocess.Popen(["bash", "-c", "exec -a /usr/libexec/watchdogd sleep 300"], start_new_session=True)
    wait_for(lambda: "watchdogd" in " ".join(psutil.Process(p.pid).cmdline()), 30, "the fake watchdogd")
    return p


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def stopped_cleanly(tmp: Path, agent: str = "hybrid") -> int:
    """The agent's pid file and a heartbeat saying it stopped cleanly: a watchdog pass has nothing to do."""
    ended = dead_pid()
    (tmp / "state" / f"{agent}.pid").write_text(f"{ended}\n")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with db(tmp) as c:
        c.execute("INSERT INTO heartbeats(agent, ts, clock, cycle, pid, status) VALUES (?,?,?,5,?,'stopped')",
                  (agent, now, now, ended))
    return ended


def test_watchdogd_on_a_recycled_pid_is_no_watchdog_loop_nor_lock_owner_for_the_health_check(tmp_path):
    """The loop's pid file and the agent's launch lock both name a pid that macOS's watchdogd now holds: the
    health check says the loop is DOWN (it said "loop running"), and --heal takes the stale lock over and
    starts the loop again (it healed nothing)."""
    extra = {"TB_WATCHDOG_INTERVAL_S": "300"}
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path, **extra).returncode == 0
    state = tmp_path / "state"
    stopped_cleanly(tmp_path)
    fake = fake_watchdogd()
    loop = 0
    try:
        (state / "watchdog_hybrid.pid").write_text(f"{fake.pid}\n")
        (state / "hybrid.launch.lock").mkdir()
        (state / "hybrid.launch.lock" / "pid").write_text(f"{fake.pid}\n")
        doc = json.loads(run(["bash", str(HEALTH), "--json", "--no-alert"], tmp_path, **extra).stdout)
        check = next(c for c in doc["checks"] if c["name"] == "watchdog[hybrid]")
        assert check["status"] == "warning" and "DOWN" in check["message"], check
        heal = run(["bash", str(HEALTH), "--heal", "--no-alert"], tmp_path, **extra)
        assert any(ln.startswith("HEALED") and "watchdog[hybrid]" in ln for ln in heal.stdout.splitlines()), \
            heal.stdout
        wait_for(lambda: (state / "watchdog_hybrid.pid").read_text().strip() not in ("", str(fake.pid)), 60,
                 "the new loop's pid file")
        loop = int((state / "watchdog_hybrid.pid").read_text())
        assert alive(loop) and "--loop" in psutil.Process(loop).cmdline()
        assert fake.poll() is None                                   # never signalled
        again = json.loads(run(["bash", str(HEALTH), "--json", "--no-alert"], tmp_path, **extra).stdout)
        assert next(c for c in again["checks"] if c["name"] == "watchdog[hybrid]")["status"] == "ok"
    finally:
        if loop and alive(loop):
            os.kill(loop, signal.SIGTERM)
            wait_for(lambda: not alive(loop), 30, "the loop to stop")
        reap(fake)


def test_locks_left_by_a_power_loss_whose_pid_watchdogd_holds_are_taken_over(tmp_path):
    """The loop's lock and an agent's launch lock name a pid that macOS's watchdogd holds after the reboot: a
    watchdog pass takes the loop's lock over (it exited: "another watchdog is running"), and --stop takes the
    launch lock at once (it waited 60 s, then went on without it)."""
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path).returncode == 0
    state = tmp_path / "state"
    fake = fake_watchdogd()
    try:
        for lock in ("watchdog_hybrid.lock", "futures.launch.lock"):
            (state / lock).mkdir()
            (state / lock / "pid").write_text(f"{fake.pid}\n")
        r = run(["bash", str(WATCHDOG)], tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "stale lock" in r.stdout and "another watchdog" not in r.stdout, r.stdout
        assert not (state / "watchdog_hybrid.lock").exists()
        t0 = time.monotonic()
        stop = run(["bash", str(START), "--stop"], tmp_path)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "still held" not in stop.stderr and time.monotonic() - t0 < 40, stop.stderr
        assert not (state / "futures.launch.lock").exists()
        assert fake.poll() is None                                   # never signalled
    finally:
        reap(fake)


def busybox_path(tmp: Path) -> str:
    bb = shutil.which("busybox")
    if bb is None:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    d = tmp / "busybox-bin"
    d.mkdir()
    (d / "ps").symlink_to(bb)
    assert subprocess.run([str(d / "ps"), "-ww", "-o", "command=", "-p", "1"], capture_output=True).returncode != 0
    return f"{d}:{os.environ['PATH']}"


def test_with_busybox_ps_a_stale_pid_file_is_not_running_and_a_live_loop_keeps_its_lock(tmp_path):
    path = busybox_path(tmp_path)
    env = ops_env(tmp_path, HOME=str(tmp_path / "home"), PATH=path, TB_WATCHDOG_INTERVAL_S="300")
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path, env).returncode == 0
    state = tmp_path / "state"
    other = subprocess.Popen(["sleep", "300"])            # a pid file's pid, recycled by an unrelated program
    loop = None
    try:
        (state / "hybrid.pid").write_text(f"{other.pid}\n")
        st = run(["bash", str(START), "--status"], tmp_path, env)
        assert "hybrid: not running" in st.stdout, st.stdout
        stop = run(["bash", str(START), "--stop"], tmp_path, env)
        assert "hybrid: not running" in stop.stdout and "hybrid: stopped" not in stop.stdout, stop.stdout
        time.sleep(0.5)
        assert other.poll() is None                                   # never signalled

        # a live --loop holds its lock; a cron pass beside it must leave it alone
        stopped_cleanly(tmp_path)
        lock = state / "watchdog_hybrid.lock"
        loop = subprocess.Popen(["bash", str(WATCHDOG), "--loop"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: (lock / "pid").exists() and (lock / "pid").read_text().strip() == str(loop.pid),
                 60, "the loop's lock")
        r = run(["bash", str(WATCHDOG)], tmp_path, env)
        assert f"another watchdog of hybrid is running (pid {loop.pid})" in r.stdout, r.stdout
        assert (lock / "pid").read_text().strip() == str(loop.pid)
        log = tmp_path / "logs" / "watchdog.log"
        assert "stale lock" not in (log.read_text() if log.exists() else "")
    finally:
        if loop is not None and loop.poll() is None:
            loop.terminate()
            loop.wait(30)
        reap(other)
