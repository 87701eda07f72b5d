"""The watchdogs, run for real: scripts/watchdog_<agent>.sh against agents started by start_trading_system.sh.

A killed agent is restarted with the same command line, a hung one (stale heartbeat) too; an agent that
stopped cleanly is left alone; a restart storm stops at the cap and alerts once; the lock keeps a second
watchdog out and a stale lock is taken over; and the whole system (agents + watchdog loops) starts,
reports and stops together.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
from procs import alive, db, wait_for
from envs import ops_env as env_for

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "start_trading_system.sh"
HEALTH = ROOT / "scripts" / "health_check.sh"



def run(cmd: list[str], tmp: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env_for(tmp, **extra), capture_output=True, text=True, timeout=240, cwd=ROOT)


def start(tmp: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    r = run(["bash", str(START), *args], tmp, **extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def watchdog(tmp: Path, agent: str = "hybrid", *args: str, **extra: str) -> subprocess.CompletedProcess:
    r = run(["bash", str(ROOT / "scripts" / f"watchdog_{agent}.sh"), *args], tmp, **extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return r




def pid_of(tmp: Path, name: str) -> int:
    return int((tmp / "state" / f"{name}.pid").read_text())


def heartbeat(tmp: Path, agent: str) -> sqlite3.Row | None:
    with db(tmp) as c:
        return c.execute("SELECT * FROM heartbeats WHERE agent=?", (agent,)).fetchone()


def own_heartbeat(tmp: Path, agent: str) -> bool:
    hb = heartbeat(tmp, agent)
    return hb is not None and hb["pid"] == pid_of(tmp, agent) and hb["status"] == "running"


def alerts(tmp: Path, kind: str) -> list[sqlite3.Row]:
    with db(tmp) as c:
        return c.execute("SELECT * FROM notifications WHERE kind=? ORDER BY id", (kind,)).fetchall()


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 30, f"pid {pid} to die")


def stop_all(tmp: Path) -> None:
    run(["bash", str(START), "--stop"], tmp)


def test_killed_agent_and_hung_agent_are_restarted_with_the_same_command_line(tmp_path):
    # cycles 10 minutes apart: between them a heartbeat a minute (the waits), so the aged row of
    # the hung case is not refreshed while the watchdog reads it
    start(tmp_path, "--interval", "600")
    try:
        # 1. kill -9 the hybrid agent: one pass restarts it
        old = pid_of(tmp_path, "hybrid")
        assert (tmp_path / "state" / "hybrid.args").read_text().split() == ["--interval", "600"]
        kill9(old)
        r = watchdog(tmp_path)
        assert f"pid {old} is gone" in r.stdout and "restarted" in r.stdout
        new = pid_of(tmp_path, "hybrid")
        assert new != old and alive(new)
        assert psutil.Process(new).cmdline()[-3:] == ["scripts/hybrid_crypto_trader.py", "--interval", "600"]
        log = (tmp_path / "logs" / "watchdog.log").read_text()
        assert f"restarted old_pid={old} new_pid={new}" in log
        sent = alerts(tmp_path, "watchdog_restart")
        assert len(sent) == 1 and sent[0]["agent"] == "hybrid" and "restarted by watchdog" in sent[0]["message"]

        # 2. a stale heartbeat of the (live) futures agent: hung, so SIGTERM and a restart
        hung = pid_of(tmp_path, "futures")
        wait_for(lambda: own_heartbeat(tmp_path, "futures"), what="the futures heartbeat")
        with db(tmp_path) as c:
            c.execute("UPDATE heartbeats SET ts='2020-01-01T00:00:00Z' WHERE agent='futures'")
        age = run([str(ROOT / ".venv/bin/tracer"), "heartbeat-age", "futures"], tmp_path)
        assert float(age.stdout.split()[0]) > 3600 * 24 * 300 and age.stdout.split()[1] == "running"
        r = watchdog(tmp_path, "futures")
        assert "hung: heartbeat" in r.stdout and "SIGTERM" in r.stdout and "restarted" in r.stdout
        fresh = pid_of(tmp_path, "futures")
        assert fresh != hung and alive(fresh) and not alive(hung)
        assert "event=summary" in (tmp_path / "logs" / "futures.log").read_text()   # it ended its run cleanly
        assert "hung: heartbeat" in alerts(tmp_path, "watchdog_restart")[-1]["message"]
        # start-up grace: until the new process writes its own heartbeat, the old stale row does not count
        assert watchdog(tmp_path, "futures").stdout.startswith("watchdog[futures]: ok:")
        assert pid_of(tmp_path, "futures") == fresh

        # 3. healthy agents are left alone
        wait_for(lambda: own_heartbeat(tmp_path, "hybrid"), what="the restarted agent's heartbeat")
        assert watchdog(tmp_path).stdout.startswith("watchdog[hybrid]: ok:")
        assert pid_of(tmp_path, "hybrid") == new and len(alerts(tmp_path, "watchdog_restart")) == 2
    finally:
        stop_all(tmp_path)


def test_cleanly_stopped_agent_is_left_alone(tmp_path):
    start(tmp_path, "--cycles", "2", "--interval", "0")
    pids = {a: pid_of(tmp_path, a) for a in ("hybrid", "futures")}
    for a, p in pids.items():
        wait_for(lambda: not alive(p), what=f"{a} to finish its 2 cycles")
        hb = heartbeat(tmp_path, a)
        assert hb["status"] == "stopped" and hb["cycle"] == 2 and hb["pid"] == p
    for a in pids:
        r = watchdog(tmp_path, a)
        assert r.stdout.startswith(f"watchdog[{a}]: stopped: stopped cleanly at cycle 2")
        assert pid_of(tmp_path, a) == pids[a]
    assert alerts(tmp_path, "watchdog_restart") == []
    # stopped with --stop: no pid file, nothing to watch
    stop_all(tmp_path)
    assert "absent" in watchdog(tmp_path).stdout


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_restart_storm_stops_at_the_cap_and_alerts_once(tmp_path):
    cap = {"TB_WATCHDOG_MAX_RESTARTS_PER_HOUR": "2"}
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path).returncode == 0
    state = tmp_path / "state"
    (state / "hybrid.args").write_text("--interval\n30\n")
    (state / "hybrid.pid").write_text(f"{dead_pid()}\n")        # an agent that crashed
    try:
        for i in range(2):                                        # it keeps dying right after each restart
            assert "restarted" in watchdog(tmp_path, **cap).stdout, f"restart {i + 1}"
            kill9(pid_of(tmp_path, "hybrid"))
        last = pid_of(tmp_path, "hybrid")
        r = watchdog(tmp_path, **cap)
        assert "capped" in r.stdout and "restarted" not in r.stdout
        assert pid_of(tmp_path, "hybrid") == last and not alive(last)
        gave_up = alerts(tmp_path, "watchdog_gave_up")
        assert len(gave_up) == 1 and "gave up" in gave_up[0]["message"]
        assert len(alerts(tmp_path, "watchdog_restart")) == 2
        r2 = watchdog(tmp_path, **cap)       # still given up, and no second alert
        assert "gave up" in r2.stdout and len(alerts(tmp_path, "watchdog_gave_up")) == 1
        assert "gave_up" in (tmp_path / "logs" / "watchdog.log").read_text()
        # the operator starts it again (a newer pid file; this one died too): the watchdog tries again
        time.sleep(1.1)
        (state / "hybrid.pid").write_text(f"{dead_pid()}\n")
        assert "restarted" in watchdog(tmp_path, **cap).stdout
        assert alive(pid_of(tmp_path, "hybrid"))
    finally:
        p = pid_of(tmp_path, "hybrid")
        if alive(p):
            kill9(p)


def test_lock_keeps_a_second_watchdog_out_and_a_stale_lock_is_taken_over(tmp_path):
    state = tmp_path / "state"
    state.mkdir(parents=True)
    lock = state / "watchdog_hybrid.lock"
    loop = subprocess.Popen(["bash", str(ROOT / "scripts" / "watchdog_hybrid.sh"), "--loop"],
                            env=env_for(tmp_path, TB_WATCHDOG_INTERVAL_S="300"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (lock / "pid").exists() and (lock / "pid").read_text().strip() == str(loop.pid),
                 what="the loop's lock")
        # its first pass (nothing to do yet) is over once it sleeps until the next one
        import psutil

        def sleeping() -> bool:
            try:
                return any(c.name() == "sleep" for c in psutil.Process(loop.pid).children())
            except psutil.NoSuchProcess:        # a short-lived child reaped between the listing and its name
                return False
        wait_for(sleeping, what="the loop's first pass to end")
        # an agent that is down: a pass that got the lock would restart it
        dead = dead_pid()
        (state / "hybrid.pid").write_text(f"{dead}\n")
        (state / "hybrid.args").write_text("--interval\n30\n")
        r = watchdog(tmp_path)
        assert f"another watchdog of hybrid is running (pid {loop.pid})" in r.stdout
        assert pid_of(tmp_path, "hybrid") == dead                # nothing was restarted
    finally:
        loop.terminate()
        rc = loop.wait(timeout=30)
    assert rc == 0, loop.stderr.read()
    assert not lock.exists()                                    # released on SIGTERM
    log = (tmp_path / "logs" / "watchdog.log").read_text()
    assert "loop started" in log and "loop stopped" in log

    # a stale lock (its owner is gone) is taken over
    lock.mkdir()
    (lock / "pid").write_text(f"{dead}\n")
    r = watchdog(tmp_path)
    assert "stale lock" in r.stdout and "restarted" in r.stdout
    new = pid_of(tmp_path, "hybrid")
    assert new != dead and alive(new) and not lock.exists()
    kill9(new)


def test_whole_system_start_status_health_stop(tmp_path):
    extra = {"TB_WATCHDOG_ENABLED": "true", "TB_WATCHDOG_INTERVAL_S": "2"}
    r = start(tmp_path, "--cycles", "500", "--interval", "1", **extra)
    for name in ("hybrid", "futures", "watchdog_hybrid", "watchdog_futures"):
        assert f"{name}: started" in r.stdout
    pids = {n: pid_of(tmp_path, n) for n in ("hybrid", "futures", "watchdog_hybrid", "watchdog_futures")}
    try:
        assert all(alive(p) for p in pids.values())
        for a in ("hybrid", "futures"):
            wait_for(lambda: own_heartbeat(tmp_path, a), what=f"{a} heartbeat")
        st = run(["bash", str(START), "--status"], tmp_path, **extra)
        assert st.returncode == 0
        for n in pids:
            assert f"{n}: running (pid {pids[n]})" in st.stdout
        assert "hybrid" in st.stdout and "futures" in st.stdout and "running" in st.stdout
        h = run(["bash", str(HEALTH)], tmp_path, **extra)
        assert h.returncode == 0, h.stdout + h.stderr
        assert "process[hybrid]" in h.stdout and "health: ok" in h.stdout
        again = start(tmp_path, "--cycles", "500", "--interval", "1", **extra)   # no second copies
        assert "watchdog_hybrid: already running" in again.stdout and "hybrid: already running" in again.stdout
    finally:
        stop = run(["bash", str(START), "--stop"], tmp_path, **extra)
    assert stop.returncode == 0
    out = stop.stdout
    assert out.index("watchdog_hybrid: stopped") < out.index("hybrid: stopped")   # watchdogs first
    assert "futures: stopped" in out and "watchdog_futures: stopped" in out
    for n, p in pids.items():
        wait_for(lambda: not alive(p), 30, f"{n} to end")
        assert not (tmp_path / "state" / f"{n}.pid").exists()
    assert not list((tmp_path / "state").glob("*.lock"))
    for a in ("hybrid", "futures"):
        assert "event=summary" in (tmp_path / "logs" / f"{a}.log").read_text()   # graceful
        assert heartbeat(tmp_path, a)["status"] == "stopped"
    log = (tmp_path / "logs" / "watchdog.log").read_text()
    assert "loop started" in log and "loop stopped" in log and "restarted" not in log
    st = run(["bash", str(START), "--status"], tmp_path, **extra)
    assert "watchdog_hybrid: not running" in st.stdout and "hybrid: not running" in st.stdout


def test_a_recycled_pid_is_never_signalled(tmp_path):
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path).returncode == 0
    state = tmp_path / "state"
    other = subprocess.Popen(["sleep", "120"])          # an unrelated process now owns the agent's old pid
    try:
        (state / "hybrid.pid").write_text(f"{other.pid}\n")
        (state / "hybrid.args").write_text("--interval\n30\n")
        r = watchdog(tmp_path)
        assert f"pid {other.pid} no longer runs the agent" in r.stdout and "SIGTERM" not in r.stdout
        new = pid_of(tmp_path, "hybrid")
        assert new != other.pid and alive(new) and other.poll() is None
        kill9(new)
    finally:
        other.kill()
        other.wait()


def test_watchdog_rules_without_processes(tmp_path, monkeypatch):
    """tracer.ops.watchdog_check, the decision behind every pass, on crafted states."""
    from tracer import ops
    from tracer.config import load_settings
    from tracer.store import Store

    s = load_settings(environ=env_for(tmp_path), dotenv_path=None)
    live = {"v": True}
    import tracer.ops.heartbeat
    import tracer.ops.watchdog
    for where in (tracer.ops.heartbeat, tracer.ops.watchdog):        # every module that asks
        monkeypatch.setattr(where, "agent_alive", lambda pid, agent: live["v"])
    monkeypatch.setattr(tracer.ops.watchdog, "agent_confirmed", lambda pid, agent: live["v"])   # before a signal
    assert ops.watchdog_check(s, "hybrid").action == "absent"            # no pid file: never touched
    pf = tmp_path / "state" / "hybrid.pid"
    pf.parent.mkdir(parents=True)
    pf.write_text("4242\n")
    db_path = tmp_path / "state" / "t.db"
    db_path.write_bytes(b"not a database" * 200)                          # unreadable: never restart a live agent
    v = ops.watchdog_check(s, "hybrid")
    assert v.action == "ok" and "unreadable" in v.reason
    assert v.line().startswith("ok 4242 alive ")                          # running: never printed as gone
    db_path.unlink()
    Store(db_path).close()

    def beat(pid: int, status: str, ts: str) -> None:
        with db(tmp_path) as c:
            c.execute("INSERT INTO heartbeats(agent, ts, clock, cycle, pid, status) VALUES ('hybrid',?,?,7,?,?) "
                      "ON CONFLICT(agent) DO UPDATE SET ts=excluded.ts, pid=excluded.pid, status=excluded.status",
                      (ts, ts, pid, status))

    beat(4242, "running", "2020-01-01T00:00:00Z")
    v = ops.watchdog_check(s, "hybrid")
    assert v.line().startswith("restart 4242 alive hung: heartbeat")
    # a storage fault: the DB cannot take the heartbeat, the agent retries (state file rewritten each attempt)
    fault = tmp_path / "state" / "storage_fault_hybrid.json"
    recent = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    fault.write_text(json.dumps({"pid": 4242, "since": "2020-01-01T00:00:00Z", "attempts": 40, "last": recent,
                                 "error": "OperationalError: database is locked"}))
    v = ops.watchdog_check(s, "hybrid")
    assert v.action == "ok" and "storage fault" in v.reason               # retrying, not hung: no restart
    assert v.line().startswith("ok 4242 alive ")
    fault.write_text(json.dumps({"pid": 4242, "since": "2020-01-01T00:00:00Z", "attempts": 40,
                                 "last": "2020-01-01T00:00:00Z", "error": "x"}))
    assert ops.watchdog_check(s, "hybrid").action == "restart"           # its attempts stopped too: hung
    fault.write_text(json.dumps({"pid": 999, "since": "2020-01-01T00:00:00Z", "attempts": 1, "last": recent}))
    assert ops.watchdog_check(s, "hybrid").action == "restart"           # another process's fault
    fault.unlink()
    beat(4242, "stopped", "2020-01-01T00:00:00Z")
    assert ops.watchdog_check(s, "hybrid").action == "ok"                # finishing its last cycle
    live["v"] = False
    v = ops.watchdog_check(s, "hybrid")
    assert v.action == "stopped" and "cycle 7" in v.reason              # a clean end is left alone
    beat(1111, "stopped", "2020-01-01T00:00:00Z")                        # a previous run's clean end ...
    assert ops.watchdog_check(s, "hybrid").line().startswith("restart 4242 gone")   # ... does not cover a crash
    live["v"] = True
    assert ops.watchdog_check(s, "hybrid").line().startswith("ok 4242 alive running")   # start-up grace
    old = time.time() - 3600
    os.utime(pf, (old, old))
    v = ops.watchdog_check(s, "hybrid")
    assert v.action == "restart" and "no heartbeat since the start" in v.reason


def test_paths_with_spaces_keep_supervision_working(tmp_path):
    """"Application Support" and "My Drive" are ordinary macOS folders: the pid files go into the folder as
    named (no stray tree split at the space) and the watchdog loop restarts a killed agent."""
    state, logs = tmp_path / "my state", tmp_path / "my logs"
    extra = {"TB_STATE_DIR": str(state), "TB_LOG_DIR": str(logs), "TB_DB_PATH": str(state / "t.db"),
             "TB_WATCHDOG_ENABLED": "true", "TB_WATCHDOG_INTERVAL_S": "0.5"}
    before = set(ROOT.iterdir())
    start(tmp_path, "--interval", "30", **extra)
    try:
        assert (state / "hybrid.pid").is_file() and (state / "watchdog_hybrid.pid").is_file()
        assert not (tmp_path / "my").exists() and set(ROOT.iterdir()) == before
        old = int((state / "hybrid.pid").read_text())
        kill9(old)
        wait_for(lambda: int((state / "hybrid.pid").read_text()) != old, 60, "the watchdog loop to restart hybrid")
        new = int((state / "hybrid.pid").read_text())
        assert alive(new)
        wait_for(lambda: f"restarted old_pid={old} new_pid={new}" in (logs / "watchdog.log").read_text(), 60,
                 "the restart to be recorded")
    finally:
        stop = run(["bash", str(START), "--stop"], tmp_path, **extra)
    assert stop.returncode == 0 and "hybrid: stopped" in stop.stdout
    assert not (state / "hybrid.pid").exists()


def test_a_state_dir_with_a_space_leaves_no_lock_behind(tmp_path):
    """The locks a pass holds were a space-separated list: "Application Support" split in two, the lock stayed
    after every pass, and the next one logged "stale lock taken over" (every minute from cron)."""
    state = tmp_path / "Application Support" / "state"
    extra = {"TB_STATE_DIR": str(state), "TB_DB_PATH": str(state / "t.db")}
    for _ in range(2):
        r = watchdog(tmp_path, **extra)
        assert "absent" in r.stdout and "stale lock" not in r.stdout, r.stdout
        assert not list(state.glob("*.lock"))
    log = tmp_path / "logs" / "watchdog.log"
    assert not log.exists() or "stale lock" not in log.read_text()


def test_sigterm_after_a_restart_pass_still_runs_the_loop_cleanup(tmp_path):
    """lock_acquire swaps the TERM handler out for a moment; bash 3.2 (macOS) could not restore it from
    $(trap -p TERM), so after a restart pass SIGTERM killed the loop without its cleanup: the lock stayed and
    "loop stopped" was never logged. (Also run with a state folder that has a space.)"""
    state = tmp_path / "my state"
    extra = {"TB_STATE_DIR": str(state), "TB_DB_PATH": str(state / "t.db"), "TB_WATCHDOG_INTERVAL_S": "300"}
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path, **extra).returncode == 0
    (state / "hybrid.pid").write_text(f"{dead_pid()}\n")           # crashed: the first pass restarts it
    (state / "hybrid.args").write_text("--cycles\n1\n--interval\n0\n")
    loop = subprocess.Popen(["bash", str(ROOT / "scripts" / "watchdog_hybrid.sh"), "--loop"],
                            env=env_for(tmp_path, **extra), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    new = 0
    try:
        log = tmp_path / "logs" / "watchdog.log"
        wait_for(lambda: log.exists() and "restarted old_pid" in log.read_text(), 60, "the restart pass")
        new = int((state / "hybrid.pid").read_text())

        def sleeping() -> bool:
            try:
                return any(c.name() == "sleep" for c in psutil.Process(loop.pid).children())
            except psutil.NoSuchProcess:
                return False
        wait_for(sleeping, what="the pass to end")
        loop.terminate()
        assert loop.wait(timeout=30) == 0, loop.stderr.read()
        assert "loop stopped (SIGTERM)" in log.read_text()
        assert not list(state.glob("*.lock"))
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait(30)
        if new:
            wait_for(lambda: not alive(new), 60, "the restarted agent's one cycle")


def test_supervise_leaves_a_cleanly_stopped_agent_alone(tmp_path):
    """The launchd job (--supervise) runs at every load and KeepAlive restart: an agent that stopped cleanly
    (end of data, --cycles) is not started again; the loop's passes then say "stopped"."""
    extra = {"TB_WATCHDOG_INTERVAL_S": "300"}
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path, **extra).returncode == 0
    ended = dead_pid()
    (tmp_path / "state" / "hybrid.pid").write_text(f"{ended}\n")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with db(tmp_path) as c:
        c.execute("INSERT INTO heartbeats(agent, ts, clock, cycle, pid, status) VALUES ('hybrid',?,?,5,?,'stopped')",
                  (now, now, ended))
    out = tmp_path / "supervise.out"
    with out.open("w") as fh:
        job = subprocess.Popen(["bash", str(ROOT / "scripts" / "watchdog.sh"), "hybrid", "--supervise"],
                               env=env_for(tmp_path, **extra), cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        try:
            log = tmp_path / "logs" / "watchdog.log"
            wait_for(lambda: log.exists() and "loop started" in log.read_text(), 60, "the loop")
            wait_for(lambda: "stopped: stopped cleanly" in out.read_text(), 60, "the first pass")
        finally:
            job.terminate()
            job.wait(30)
    text = out.read_text()
    assert "not started by the supervisor: stopped" in text, text
    assert pid_of(tmp_path, "hybrid") == ended and "started by the supervisor" not in log.read_text()


def test_supervise_starts_again_an_agent_a_shutdown_stopped(tmp_path):
    """A logout or shutdown sends SIGTERM to every process of the user: the agent stops cleanly and its pid file
    stays (only --stop removes it). The launchd job's next load (the next login) starts it again; the health check
    meanwhile warns, never "stopped cleanly, all is well"."""
    extra = {"TB_WATCHDOG_INTERVAL_S": "2", "TB_SYMBOLS": "BTC/USD", "TB_FUTURES_SYMBOLS": "BTC/USD"}
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path, **extra).returncode == 0
    sup = ["bash", str(ROOT / "scripts" / "watchdog.sh"), "hybrid", "--supervise"]
    pidf = tmp_path / "state" / "hybrid.pid"
    first = subprocess.Popen(sup, env=env_for(tmp_path, **extra), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT)
    second = new = None
    try:
        wait_for(lambda: pidf.exists() and own_heartbeat(tmp_path, "hybrid"), 120, "the agent's first cycle")
        agent = pid_of(tmp_path, "hybrid")
        first.terminate()                                   # the logout: every process of the user
        os.kill(agent, signal.SIGTERM)
        first.wait(30)
        wait_for(lambda: not alive(agent), 60, "the agent's clean stop")
        assert pidf.exists() and json.loads(heartbeat(tmp_path, "hybrid")["detail_json"])["stopped_by"] == "signal"
        hc = run(["bash", str(HEALTH), "--no-alert"], tmp_path, **extra)
        assert "stopped by a signal" in hc.stdout and "process[hybrid]" in hc.stdout, hc.stdout
        second = subprocess.Popen(sup, env=env_for(tmp_path, **extra), cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT)      # the next login loads the job again
        wait_for(lambda: pid_of(tmp_path, "hybrid") != agent, 120, "the supervisor's start")
        new = pid_of(tmp_path, "hybrid")
        wait_for(lambda: alive(new) and own_heartbeat(tmp_path, "hybrid"), 120, "the agent started again")
        assert "started by the supervisor" in (tmp_path / "logs" / "watchdog.log").read_text()
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(30)
        if new and alive(new):
            os.kill(new, signal.SIGTERM)
            wait_for(lambda: not alive(new), 60, "the agent's stop")


def test_an_invalid_state_dir_stops_the_watchdog_before_it_looks_anywhere(tmp_path):
    """TB_STATE_DIR (or TB_LOG_DIR) that is itself invalid: the salvaged settings would put the default state/
    in its place, and the watchdog would look for the pid files there (restart an agent that runs elsewhere: a
    duplicate trading process; or take a live one for dead). Every mode exits 2 naming the variable, touches no
    state/ and starts nothing; the line also goes to the log folder's alerts.log when that folder is known. (An
    invalid value elsewhere still runs the passes: test_health_check's invalid .env test.)"""
    from ops_standins import sandbox
    repo = sandbox(tmp_path, venv="real")
    for name in ("watchdog.sh", "watchdog_hybrid.sh"):
        assert (repo / "scripts" / name).resolve() == ROOT / "scripts" / name     # the real scripts
    logs = tmp_path / "logs"
    logs.mkdir()

    def wd(*args: str, **extra: str) -> subprocess.CompletedProcess:
        env = env_for(tmp_path, HOME=str(tmp_path / "home"), TB_WATCHDOG_INTERVAL_S="300", **extra)
        return subprocess.run(["bash", str(repo / "scripts" / "watchdog.sh"), "hybrid", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)

    for mode in ([], ["--loop"], ["--supervise", "--interval", "30"], ["--exec", "--interval", "30"]):
        r = wd(*mode, TB_STATE_DIR="")
        assert r.returncode == 2, (mode, r.stdout, r.stderr)
        assert "TB_STATE_DIR is invalid" in r.stderr and "nothing done" in r.stderr, (mode, r.stderr)
        assert "restarted" not in r.stdout and "started" not in r.stdout, (mode, r.stdout)
    assert not (repo / "state").exists() and not (tmp_path / "state").exists()     # no guess at state/
    assert not list(tmp_path.rglob("*.pid")) and not list(tmp_path.rglob("*.args"))  # nothing started
    assert not list(tmp_path.rglob("*.lock"))
    alerted = (logs / "alerts.log").read_text().splitlines()
    assert len(alerted) == 4 and all("TB_STATE_DIR is invalid" in a for a in alerted), alerted
    assert "TB_STATE_DIR is invalid" in (logs / "watchdog.log").read_text()

    # TB_LOG_DIR invalid in .env, TB_STATE_DIR fine: the same refusal, nothing written in either folder
    state = tmp_path / "my state"
    state.mkdir()
    (repo / ".env").write_text("TB_LOG_DIR=\n")
    env = env_for(tmp_path, HOME=str(tmp_path / "home"), TB_STATE_DIR=str(state))
    del env["TB_LOG_DIR"]
    r = subprocess.run(["bash", str(repo / "scripts" / "watchdog_hybrid.sh")], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "TB_LOG_DIR is invalid" in r.stderr, r.stdout + r.stderr
    assert list(state.iterdir()) == [] and not (repo / "logs").exists() and not (repo / "state").exists()
