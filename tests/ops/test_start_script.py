"""start_trading_system.sh, run for real: start, idempotent second start, status, stop, bad config; pid files
that name another program, --stop and --status without the setup step or with an invalid config, the launch
lock a stop holds, --foreground beside background agents, and a generated web token kept out of logs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from envs import process_env
from ops_standins import reap, sandbox, standin_agent, standin_script
from procs import wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "start_trading_system.sh"



def sh(tmp: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], env=process_env(tmp, db="t.db", **extra), capture_output=True, text=True,
                          timeout=300)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) is not alive
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return True


def test_start_twice_status_stop(tmp_path):
    r = sh(tmp_path, "--interval", "0.2")
    assert r.returncode == 0, r.stderr
    pids = {a: int((tmp_path / "state" / f"{a}.pid").read_text()) for a in ("hybrid", "futures")}
    assert all(alive(p) for p in pids.values())
    again = sh(tmp_path, "--interval", "0.2")
    assert again.returncode == 0
    assert "hybrid: already running" in again.stdout and "futures: already running" in again.stdout
    assert {a: int((tmp_path / "state" / f"{a}.pid").read_text()) for a in pids} == pids
    deadline = time.time() + 60
    log = tmp_path / "logs" / "futures.log"
    while time.time() < deadline and not (log.exists() and "event=cycle" in log.read_text()):
        time.sleep(0.2)
    st = sh(tmp_path, "--status")
    assert st.returncode == 0 and "hybrid: running" in st.stdout and "futures: running" in st.stdout
    stop = sh(tmp_path, "--stop")
    assert stop.returncode == 0 and "hybrid: stopped" in stop.stdout and "futures: stopped" in stop.stdout
    deadline = time.time() + 30
    while time.time() < deadline and any(alive(p) for p in pids.values()):
        time.sleep(0.2)
    assert not any(alive(p) for p in pids.values())
    assert not (tmp_path / "state" / "hybrid.pid").exists()
    for a in ("hybrid", "futures"):   # a graceful stop: the agent wrote its summary
        assert "event=summary" in (tmp_path / "logs" / f"{a}.log").read_text()


def test_a_restart_with_a_bad_config_leaves_the_running_agents_running(tmp_path):
    """Before, --restart stopped everything and only then found the typo in .env: the system was left down."""
    r = sh(tmp_path, "--interval", "0.2")
    assert r.returncode == 0, r.stderr
    # the hints work pasted from any folder: absolute, shell-quoted, and tail -F follows the log's rotation
    assert f"tail -F {tmp_path}/logs/hybrid.log" in r.stdout
    assert f"{ROOT}/start_trading_system.sh --stop" in r.stdout.replace("\\ ", " ")
    pids = {a: int((tmp_path / "state" / f"{a}.pid").read_text()) for a in ("hybrid", "futures")}
    try:
        bad = sh(tmp_path, "--restart", TB_FUTURES_MAX_LEVERAGE="500")
        assert bad.returncode == 2 and "TB_FUTURES_MAX_LEVERAGE" in bad.stderr and "nothing started" in bad.stderr
        assert all(alive(p) for p in pids.values())
        assert {a: int((tmp_path / "state" / f"{a}.pid").read_text()) for a in pids} == pids
    finally:
        assert sh(tmp_path, "--stop").returncode == 0
    wait_for(lambda: not any(alive(p) for p in pids.values()), 30, "the agents to stop")


def test_bounded_foreground_run(tmp_path):
    r = sh(tmp_path, "--foreground", "--cycles", "3", "--interval", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("event=cycle") == 6      # 3 cycles for each agent


def test_bad_config_starts_nothing(tmp_path):
    r = sh(tmp_path, TB_FUTURES_MAX_LEVERAGE="500")
    assert r.returncode == 2
    assert "TB_FUTURES_MAX_LEVERAGE" in r.stderr and "nothing started" in r.stderr
    assert not (tmp_path / "state" / "hybrid.pid").exists()


# --- pid files, paths and locks (no real agents: stand-ins whose command line names the agent's script) ------


def env_at(tmp: Path, **extra: str) -> dict[str, str]:
    """The start script's environment, HOME included (a developer's installed launchd jobs stay out)."""
    return process_env(tmp, db="t.db", **{"HOME": str(tmp / "home"), **extra})


def run_at(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=300)


def test_a_recycled_pid_is_neither_reported_running_nor_signalled(tmp_path):
    """After a reboot the pid in a pid file can belong to another program: --status must not call it running,
    --stop must not kill it (it used to: kill -0 was the only check)."""
    # a program whose name says "watchdog" (macOS's own /usr/libexec/watchdogd) is no agent either
    other = subprocess.Popen(["bash", "-c", 'exec -a /usr/libexec/watchdogd sleep 300'])
    try:
        state = tmp_path / "state"
        state.mkdir()
        for name in ("hybrid", "watchdog_hybrid", "telegram", "web"):
            (state / f"{name}.pid").write_text(f"{other.pid}\n")
        st = run_at(SCRIPT, env_at(tmp_path), "--status")
        assert "hybrid: not running" in st.stdout and "watchdog_hybrid: not running" in st.stdout, st.stdout
        assert f"pid {other.pid}" not in st.stdout
        stop = run_at(SCRIPT, env_at(tmp_path), "--stop")
        assert stop.returncode == 0, stop.stderr
        assert "hybrid: not running" in stop.stdout and "stopped" not in stop.stdout
        time.sleep(0.5)
        assert other.poll() is None                               # never signalled
        assert not list(state.glob("*.pid"))                      # the stale pid files are gone
    finally:
        reap(other)


def test_stop_and_status_work_without_the_venv_and_read_the_folders_from_env_file(tmp_path):
    """--stop and --status run no setup step (offline, or with a broken .venv, pip failed and the agent kept
    running), and find a custom TB_STATE_DIR in .env beside an invalid value, without Python."""
    repo = sandbox(tmp_path, venv="broken")
    state = tmp_path / "Application Support" / "state"
    state.mkdir(parents=True)
    (repo / ".env").write_text(f'# this Mac\nexport TB_STATE_DIR="{state}"   # quoted, with a space\n'
                               f"TB_LOG_DIR={tmp_path / 'logs'} # a comment\nTB_FUTURES_MAX_LEVERAGE=500\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    env["HOME"] = str(tmp_path / "home")
    agent = standin_agent(tmp_path)
    try:
        (state / "hybrid.pid").write_text(f"{agent.pid}\n")
        st = run_at(repo / "start_trading_system.sh", env, "--status")
        assert st.returncode == 0, st.stderr
        assert f"hybrid: running (pid {agent.pid})" in st.stdout and "scripts/bootstrap.sh" in st.stdout
        stop = run_at(repo / "start_trading_system.sh", env, "--stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "hybrid: stopped" in stop.stdout and "bootstrap" not in stop.stderr
        assert agent.wait(30) == 0                                # SIGTERM: a graceful stop
        assert not (state / "hybrid.pid").exists()
        assert (repo / ".venv" / "bin" / "python").is_symlink()   # no setup step ran
        assert not (repo / "state").exists()                      # nothing looked in the default folder
        # a value the shell cannot read safely: no guess, a clear refusal
        (repo / ".env").write_text('TB_STATE_DIR="${HOME}/state"\n')
        bad = run_at(repo / "start_trading_system.sh", env, "--stop")
        assert bad.returncode == 2 and "cannot tell where the pid files are" in bad.stderr
        assert "TB_STATE_DIR" in bad.stderr
    finally:
        reap(agent)


def test_stop_with_an_invalid_config_finds_the_configured_state_dir(tmp_path):
    """One bad value must not send --stop to the default state/ (it said "not running", exit 0, and the agent
    kept running): the salvaged settings keep TB_STATE_DIR; a TB_STATE_DIR that is itself invalid fails."""
    state = tmp_path / "my state"
    state.mkdir()
    agent = standin_agent(tmp_path)
    try:
        (state / "hybrid.pid").write_text(f"{agent.pid}\n")
        env = env_at(tmp_path, TB_STATE_DIR=str(state), TB_FUTURES_MAX_LEVERAGE="500")
        stop = run_at(SCRIPT, env, "--stop")
        assert stop.returncode == 0 and "hybrid: stopped" in stop.stdout, stop.stdout + stop.stderr
        assert agent.wait(30) == 0 and not (state / "hybrid.pid").exists()
        bad = run_at(SCRIPT, env_at(tmp_path, TB_STATE_DIR=""), "--stop")
        assert bad.returncode == 2 and "TB_STATE_DIR is invalid" in bad.stderr, bad.stderr
        assert run_at(SCRIPT, env_at(tmp_path, TB_STATE_DIR=""), "--status").returncode == 2
    finally:
        reap(agent)


FAKE_RESTART = """#!/bin/bash
# a watchdog pass in the middle of a restart: holds the agent's launch lock, stops the old agent and writes
# the new one's pid file, then lets go
state="$1"; lock="$state/hybrid.launch.lock"
mkdir "$lock" && echo $$ > "$lock/pid"
sleep 2
kill -TERM "$(cat "$state/hybrid.pid")"
"$2" "$3" </dev/null >/dev/null 2>&1 &
echo $! > "$state/hybrid.pid"; echo $! > "$state/new.pid"
rm -rf "$lock"
"""


def test_stop_waits_for_a_restart_in_progress_and_stops_the_new_agent(tmp_path):
    """A watchdog pass restarting the agent holds the launch lock: --stop waits for it, then stops the agent
    it started (it used to stop the old one and remove the pid file the restart then rewrote: the new agent
    ran on, unwatched)."""
    state = tmp_path / "state"
    state.mkdir()
    old = standin_agent(tmp_path)
    (state / "hybrid.pid").write_text(f"{old.pid}\n")
    fake = tmp_path / "watchdog_hybrid.sh"      # a lock owner's name: only those hold a launch lock
    fake.write_text(FAKE_RESTART)
    restart = subprocess.Popen(["bash", str(fake), str(state), sys.executable, str(standin_script(tmp_path))])
    new = 0
    try:
        wait_for(lambda: (state / "hybrid.launch.lock" / "pid").exists(), 30, "the fake restart's lock")
        stop = run_at(SCRIPT, env_at(tmp_path), "--stop")
        assert restart.wait(30) == 0
        new = int((state / "new.pid").read_text())
        assert stop.returncode == 0 and "hybrid: stopped" in stop.stdout, stop.stdout + stop.stderr
        wait_for(lambda: not alive(new), 30, "the agent the restart started to stop")
        assert not (state / "hybrid.pid").exists() and not (state / "hybrid.launch.lock").exists()
    finally:
        reap(old, restart)
        if new and alive(new):
            os.kill(new, 9)


def test_stop_keeps_a_pid_file_that_names_another_process_by_then(tmp_path):
    """Only the pid file of the process stopped is removed: one rewritten meanwhile stays, and the stop says so."""
    state = tmp_path / "state"
    state.mkdir()
    agent = standin_agent(tmp_path, on_term=state / "hybrid.pid")
    try:
        (state / "hybrid.pid").write_text(f"{agent.pid}\n")
        stop = run_at(SCRIPT, env_at(tmp_path), "--stop")
        assert stop.returncode == 1 and "started meanwhile" in stop.stderr, stop.stdout + stop.stderr
        assert (state / "hybrid.pid").read_text().strip() == str(os.getpid())
    finally:
        reap(agent)


def test_foreground_refuses_beside_a_background_agent_and_writes_its_own_pid_files(tmp_path):
    """Two copies on one DB: --foreground refuses while a background agent runs; its own agents get pid files
    (seen by --status and a second start), removed when it ends."""
    state = tmp_path / "state"
    state.mkdir()
    bg = standin_agent(tmp_path)
    try:
        (state / "hybrid.pid").write_text(f"{bg.pid}\n")
        r = run_at(SCRIPT, env_at(tmp_path), "--foreground", "--cycles", "1", "--interval", "0")
        assert r.returncode == 1 and "hybrid already runs in the background" in r.stderr, r.stdout + r.stderr
        assert bg.poll() is None and (state / "hybrid.pid").read_text().strip() == str(bg.pid)
    finally:
        reap(bg)
    (state / "hybrid.pid").unlink()
    out = (tmp_path / "fg.out").open("w")
    fg = subprocess.Popen(["bash", str(SCRIPT), "--foreground", "--cycles", "500", "--interval", "0.2"],
                          env=env_at(tmp_path), stdout=out, stderr=subprocess.STDOUT)
    try:
        pidf = {a: state / f"{a}.pid" for a in ("hybrid", "futures")}
        wait_for(lambda: all(p.exists() for p in pidf.values()), 120, "the foreground pid files")
        pids = {a: int(p.read_text()) for a, p in pidf.items()}
        st = run_at(SCRIPT, env_at(tmp_path), "--status")
        assert all(f"{a}: running (pid {pids[a]})" in st.stdout for a in pids), st.stdout
        again = run_at(SCRIPT, env_at(tmp_path), "--foreground", "--cycles", "1")
        assert again.returncode == 1 and "already runs" in again.stderr
        fg.send_signal(15)
        assert fg.wait(60) == 0
        assert not any(alive(p) for p in pids.values())
        assert not any(p.exists() for p in pidf.values())         # removed on exit
    finally:
        reap(fg)
        out.close()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_generated_web_token_is_never_written_into_a_log(tmp_path):
    """--web from cron or redirected into start.log: a newly generated TB_WEB_TOKEN is not printed (only where it is)."""
    repo = sandbox(tmp_path, venv="real")
    env = env_at(tmp_path, TB_WEB_PORT=str(_free_port()), TB_WATCHDOG_ENABLED="false")
    r = run_at(repo / "start_trading_system.sh", env, "--web", "--cycles", "1", "--interval", "0")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        token = next(ln.split("=", 1)[1] for ln in (repo / ".env").read_text().splitlines()
                     if ln.startswith("TB_WEB_TOKEN="))
        assert len(token) > 20 and token not in r.stdout + r.stderr
        assert "TB_WEB_TOKEN in .env (not printed here" in r.stdout
    finally:
        stop = run_at(repo / "start_trading_system.sh", env, "--stop")
    assert stop.returncode == 0 and "web cockpit: stopped" in stop.stdout, stop.stdout + stop.stderr
    for f in (tmp_path / "logs").glob("*"):
        assert token not in f.read_text(errors="replace")


def test_a_start_beside_an_agent_left_on_another_state_folder_says_it_exited(tmp_path):
    """TB_STATE_DIR changed under running agents: the start no longer finds them (their pid files are in the old
    folder), and the agents it launches refuse to run beside them on the same DB. It says so and exits 1, instead
    of reporting them started."""
    env = dict(TB_DB_PATH=str(tmp_path / "db" / "t.db"), TB_WATCHDOG_ENABLED="false")
    assert sh(tmp_path, "--interval", "0.2", **env).returncode == 0
    pids = {a: int((tmp_path / "state" / f"{a}.pid").read_text()) for a in ("hybrid", "futures")}
    try:
        r = sh(tmp_path, "--interval", "0.2", TB_STATE_DIR=str(tmp_path / "state2"), **env)
        assert r.returncode == 1, r.stdout + r.stderr
        for a in ("hybrid", "futures"):
            assert f"{a}: exited at once: {a}: refusing to start: another copy runs on TB_DB_PATH" in r.stderr
            assert not (tmp_path / "state2" / f"{a}.pid").exists()
        assert all(alive(p) for p in pids.values())
    finally:
        sh(tmp_path, "--stop", **env)
        deadline = time.time() + 30
        while time.time() < deadline and any(alive(p) for p in pids.values()):
            time.sleep(0.2)
