"""Which process holds a pid file or a lock, run for real against the scripts (the second ops review):

* ``watchdog.sh AGENT --exec`` never exits 0 when it does not run the agent (launchd's KeepAlive
  {SuccessfulExit: false} would take a 0 as "done" for good), and counts another ``--exec`` wrapper as the agent;
* the start script's watchdog pid files are per agent and see launchd's ``--supervise`` loop;
* a live pid whose command line cannot be read is never signalled, nor has a second copy started beside it;
* a lock left by a power loss whose pid is recycled by the web cockpit or the other agent's loop is stale;
* ``alert_once`` never drops the alert of one key while another key's send is slow;
* the health check's curl alert finds its hourly marker and follows TB_ALERT_CHANNELS_CRITICAL; a crash of the
  checker alerts, truthfully, in every mode.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil

from envs import ops_env
from ops_standins import reap, sandbox, standin_agent
from procs import db, wait_for

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "start_trading_system.sh"
WATCHDOG = ROOT / "scripts" / "watchdog.sh"
HEALTH = ROOT / "scripts" / "health_check.sh"
TRACER = ROOT / ".venv" / "bin" / "tracer"


def run(cmd: list[str], tmp: Path, timeout: float = 240, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env=ops_env(tmp, HOME=str(tmp / "home"), **extra),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def init_db(tmp: Path) -> None:
    assert run([TRACER, "init-db"], tmp).returncode == 0


def lookalike(tmp: Path, script: str, *args: str) -> subprocess.Popen:
    """A live ``/bin/bash <tmp>/My Bot/scripts/<script> ARGS`` that only sleeps: the command line of one of our
    scripts (a checkout path with a space, like launchd's), without its doings. Stopped by SIGTERM."""
    d = tmp / "My Bot" / "scripts"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / script).exists():       # never rewritten under a running copy: bash reads its script as it runs
        (d / script).write_text("while :; do sleep 1; done\n")
    p = subprocess.Popen(["/bin/bash", str(d / script), *args], start_new_session=True)
    wait_for(lambda: script in " ".join(psutil.Process(p.pid).cmdline()), 30, f"the {script} look-alike")
    return p


def renamed(argv0: str) -> subprocess.Popen:
    """A live process whose command line starts with ``argv0`` (e.g. the web cockpit's)."""
    p = subprocess.Popen(["bash", "-c", f'exec -a "{argv0}" sleep 300'], start_new_session=True)
    wait_for(lambda: argv0.split()[-1] in " ".join(psutil.Process(p.pid).cmdline()), 30, argv0)
    return p


def hold_lock(state: Path, name: str, pid: int) -> None:
    (state / name).mkdir(parents=True)
    (state / name / "pid").write_text(f"{pid}\n")


# --- 3. --exec and a held launch lock ----------------------------------------------------------------------
def test_exec_exits_75_never_0_while_the_launch_lock_is_held(tmp_path):
    init_db(tmp_path)
    state = tmp_path / "state"
    holder = lookalike(tmp_path, "watchdog.sh", "hybrid", "--loop")      # a loop in the middle of a restart
    try:
        hold_lock(state, "hybrid.launch.lock", holder.pid)
        r = run(["bash", WATCHDOG, "hybrid", "--exec", "--cycles", "1"], tmp_path, timeout=120)
        assert r.returncode == 75, (r.returncode, r.stdout, r.stderr)
        assert "try again" in r.stdout and not (state / "hybrid.pid").exists(), r.stdout
        assert holder.poll() is None
    finally:
        reap(holder)


# --- 4. --exec counts another --exec wrapper as the agent ------------------------------------------------------
def test_exec_beside_another_exec_wrapper_exits_75_and_keeps_its_pid_file(tmp_path):
    init_db(tmp_path)
    state = tmp_path / "state"
    first = lookalike(tmp_path, "watchdog.sh", "hybrid", "--exec")     # wrote hybrid.pid, about to exec the agent
    try:
        (state / "hybrid.pid").write_text(f"{first.pid}\n")
        r = run(["bash", WATCHDOG, "hybrid", "--exec", "--cycles", "1"], tmp_path, timeout=120,
                TB_REPLAY_INTERVAL_S="0")
        assert r.returncode == 75, (r.returncode, r.stdout, r.stderr)
        assert f"already running (pid {first.pid})" in r.stdout, r.stdout
        assert (state / "hybrid.pid").read_text().strip() == str(first.pid)
    finally:
        reap(first)


# --- 2. the start script's watchdog pid files ------------------------------------------------------------------
def test_status_and_stop_see_launchds_supervise_loop_and_never_the_other_agents_loop(tmp_path):
    state = tmp_path / "state"
    state.mkdir(parents=True)
    sup = lookalike(tmp_path, "watchdog.sh", "hybrid", "--supervise")   # launchd's ProgramArguments
    floop = lookalike(tmp_path, "watchdog.sh", "futures", "--loop")
    try:
        # each pid file names the OTHER agent's loop: neither is this agent's, neither is signalled
        (state / "watchdog_hybrid.pid").write_text(f"{floop.pid}\n")
        (state / "watchdog_futures.pid").write_text(f"{sup.pid}\n")
        st = run(["bash", START, "--status"], tmp_path)
        assert "watchdog_hybrid: not running" in st.stdout and "watchdog_futures: not running" in st.stdout, \
            st.stdout
        stop = run(["bash", START, "--stop"], tmp_path)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        time.sleep(0.5)
        assert sup.poll() is None and floop.poll() is None

        (state / "watchdog_hybrid.pid").write_text(f"{sup.pid}\n")
        st = run(["bash", START, "--status"], tmp_path)
        assert f"watchdog_hybrid: running (pid {sup.pid})" in st.stdout, st.stdout
        stop = run(["bash", START, "--stop"], tmp_path)
        assert "watchdog_hybrid: stopped" in stop.stdout, stop.stdout + stop.stderr
        wait_for(lambda: sup.poll() is not None, 30, "the --supervise loop to stop")
        assert not (state / "watchdog_hybrid.pid").exists()
        assert floop.poll() is None
    finally:
        reap(sup, floop)


# --- 5. a command line that cannot be read ---------------------------------------------------------------------
def test_a_hung_looking_pid_whose_command_line_cannot_be_read_is_not_signalled(tmp_path, monkeypatch):
    """tracer's side: ``ps`` failed (macOS): agent_alive may not turn "cannot tell" into "restart, alive" (the
    watchdog would SIGTERM, then SIGKILL, an unrelated program on the agent's recycled pid)."""
    for k, v in ops_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    init_db(tmp_path)
    from tracer.config import load_settings
    import tracer.ops.processes as P
    from tracer.ops.watchdog import watchdog_check
    other = subprocess.Popen(["sleep", "300"])
    try:
        (tmp_path / "state" / "hybrid.pid").write_text(f"{other.pid}\n")
        old = (datetime.now(timezone.utc) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        with db(tmp_path) as c:
            c.execute("INSERT INTO heartbeats(agent, ts, clock, cycle, pid, status) VALUES ('hybrid',?,?,5,?,"
                      "'running')", (old, old, other.pid))
        s = load_settings()
        assert watchdog_check(s, "hybrid").line().startswith(f"restart {other.pid} gone ")   # readable: not it
        monkeypatch.setattr(P, "_cmdline", lambda pid: None)
        v = watchdog_check(s, "hybrid")
        assert v.action != "restart" and not v.alive, v.line()
        assert "cannot be read" in v.reason
        assert P.runs_what(other.pid, "sleep") is None and P.runs(other.pid, "sleep")
        assert P.agent_alive(other.pid, "hybrid") and not P.agent_confirmed(other.pid, "hybrid")
    finally:
        reap(other)


def unreadable_cmdlines(tmp: Path) -> str:
    """A PATH on which the shell cannot read command lines: its ``tr`` fails on /proc's NUL separators (what
    ``ps`` failing is on macOS)."""
    d = tmp / "fakebin"
    d.mkdir()
    (d / "tr").write_text('#!/bin/sh\n[ "$1" = "\\\\0" ] && exit 1\nexec /usr/bin/tr "$@"\n')
    (d / "tr").chmod(0o755)
    return f"{d}:{os.environ['PATH']}"


def test_the_start_script_starts_no_second_copy_beside_a_pid_it_cannot_tell(tmp_path):
    state = tmp_path / "state"
    agent = standin_agent(tmp_path)
    path = unreadable_cmdlines(tmp_path)
    try:
        init_db(tmp_path)
        (state / "hybrid.pid").write_text(f"{agent.pid}\n")
        st = run(["bash", START, "--status"], tmp_path, PATH=path)
        assert f"hybrid: cannot tell (pid {agent.pid}" in st.stdout, st.stdout
        fg = run(["bash", START, "--foreground", "--cycles", "1"], tmp_path, PATH=path, TB_REPLAY_INTERVAL_S="0")
        assert fg.returncode == 1 and "may run" in fg.stderr and "cannot be read" in fg.stderr, fg.stdout + fg.stderr
        assert (state / "hybrid.pid").read_text().strip() == str(agent.pid)
        stop = run(["bash", START, "--stop"], tmp_path, PATH=path)
        assert "not signalled" in stop.stderr, stop.stdout + stop.stderr
        assert agent.poll() is None
    finally:
        reap(agent)


# --- 1. lock owners ---------------------------------------------------------------------------------------------
def test_a_lock_whose_pid_the_web_cockpit_or_the_other_agents_loop_holds_is_stale(tmp_path, monkeypatch):
    init_db(tmp_path)
    state = tmp_path / "state"
    web = renamed(f"{ROOT}/.venv/bin/python -m tracer.cli web")
    floop = lookalike(tmp_path, "watchdog.sh", "futures", "--loop")
    heal = renamed(f"{ROOT}/.venv/bin/python -m tracer.cli health --heal --no-alert")
    try:
        # the shell: a watchdog pass of hybrid takes over its loop lock held by the futures loop's pid
        hold_lock(state, "watchdog_hybrid.lock", floop.pid)
        r = run(["bash", ROOT / "scripts" / "watchdog_hybrid.sh"], tmp_path)
        assert "stale lock" in r.stdout and "another watchdog" not in r.stdout, r.stdout
        # ... and --stop takes the launch locks held by the cockpit's pid and the futures loop's at once
        hold_lock(state, "hybrid.launch.lock", floop.pid)
        hold_lock(state, "futures.launch.lock", web.pid)
        t0 = time.monotonic()
        stop = run(["bash", START, "--stop"], tmp_path)
        assert "still held" not in stop.stderr and time.monotonic() - t0 < 40, stop.stderr
        # tracer's side (the health check's heal)
        from tracer.ops.processes import launch_lock_holder, launch_lock_release
        for owner in (web, floop):
            shutil_rm(state / "hybrid.launch.lock")
            hold_lock(state, "hybrid.launch.lock", owner.pid)
            assert launch_lock_holder(state, "hybrid") is None        # taken over
            launch_lock_release(state, "hybrid")
        # a real lock taker still holds it: the heal, the futures loop for futures
        shutil_rm(state / "hybrid.launch.lock")
        hold_lock(state, "hybrid.launch.lock", heal.pid)
        assert launch_lock_holder(state, "hybrid") == heal.pid
        shutil_rm(state / "futures.launch.lock")
        hold_lock(state, "futures.launch.lock", floop.pid)
        assert launch_lock_holder(state, "futures") == floop.pid
        for p in (web, floop, heal):
            assert p.poll() is None                                     # never signalled
    finally:
        reap(web, floop, heal)


def shutil_rm(d: Path) -> None:
    import shutil
    shutil.rmtree(d, ignore_errors=True)


# --- 6. alert_once and a slow send of another key ---------------------------------------------------------------
HOLDER = """
import sys, time
import tracer.ops.alerts as A
from tracer.config import load_settings
def slow(*a, **k):
    open(sys.argv[1], "w").close()
    time.sleep(120)
A.send = slow
A.alert_once(load_settings(), "watchdog_error_hybrid", "watchdog_error", "slow one", "hybrid")
"""


def test_alert_once_of_one_key_is_not_lost_while_another_keys_send_hangs(tmp_path):
    init_db(tmp_path)
    sending = tmp_path / "sending"
    holder = subprocess.Popen([ROOT / ".venv" / "bin" / "python", "-c", HOLDER, str(sending)],
                              env=ops_env(tmp_path), cwd=ROOT, start_new_session=True)
    try:
        wait_for(sending.exists, 60, "the slow send")
        t0 = time.monotonic()
        r = run([TRACER, "alert", "watchdog_error", "watchdog of futures: the check itself failed", "--agent",
                 "futures", "--repeat-key", "watchdog_error_futures"], tmp_path, timeout=40)
        assert r.returncode == 0 and "alert enqueued" in r.stdout, r.stdout + r.stderr
        assert time.monotonic() - t0 < 30
        book = json.loads((tmp_path / "state" / "alerts_sent.json").read_text())
        assert "watchdog_error_futures" in book
        with db(tmp_path) as c:
            n = c.execute("SELECT count(*) FROM monitor_events WHERE source='alert'").fetchone()[0]
        assert n >= 1
        # the same key again within the window: not repeated, and saying so is true
        again = run([TRACER, "alert", "watchdog_error", "again", "--repeat-key", "watchdog_error_futures"],
                    tmp_path, timeout=40)
        assert "not repeated" in again.stdout, again.stdout
    finally:
        reap(holder)


# --- 7. the curl alert of the health check without Python ------------------------------------------------------
def fake_curl(tmp: Path) -> tuple[str, Path]:
    d = tmp / "curlbin"
    d.mkdir()
    log = tmp / "curl.log"
    log.write_text("")
    (d / "curl").write_text(f"#!/bin/sh\n{{ printf 'ARGV:'; for a in \"$@\"; do printf ' [%s]' \"$a\"; done; "
                            f"printf '\\n'; printf 'STDIN: %s\\n' \"$(cat)\"; }} >> '{log}'\nexit 0\n")
    (d / "curl").chmod(0o755)
    return str(d), log


def posts(log: Path) -> list[str]:
    lines = log.read_text().splitlines()
    return [f"{a}\n{b}" for a, b in zip(lines[::2], lines[1::2])]


def test_setup_alert_without_python_finds_its_marker_and_follows_the_critical_routing(tmp_path):
    repo = sandbox(tmp_path, venv="broken")
    curlbin, log = fake_curl(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    hook = "https://discord.com/api/webhooks/1/SECRETHOOK"
    cron = {"HOME": str(home), "PATH": f"{curlbin}:/usr/bin:/bin"}

    def health_runs(env_text: str, n: int = 3) -> list[str]:
        log.write_text("")
        (repo / ".env").write_text(env_text)
        (repo / ".env").chmod(0o600)
        for _ in range(n):
            r = subprocess.run(["/bin/bash", str(repo / "scripts" / "health_check.sh")], env=cron, cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 2 and "setup" in r.stdout, r.stdout + r.stderr
        return posts(log)

    # TB_STATE_DIR only python-dotenv can read: the marker goes to the checkout's state/, one post an hour
    sent = health_runs("TB_STATE_DIR=${HOME}/tb-state\nTB_DISCORD_WEBHOOK_URL=" + hook + "\n")
    assert len(sent) == 1, sent
    assert "SECRETHOOK" not in sent[0].split("\n")[0]                # never on curl's command line
    # Discord not routed for critical alerts: no post to it
    shutil_rm(repo / "state")
    sent = health_runs(f"TB_ALERT_CHANNELS_CRITICAL=console,telegram\nTB_DISCORD_WEBHOOK_URL={hook}\n", n=1)
    assert not [p for p in sent if "discord.com" in p], sent


# --- 8. a crash of the checker ----------------------------------------------------------------------------------
def test_a_crash_of_the_checker_alerts_truthfully_in_every_mode_once_an_hour(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "if sys.argv and sys.argv[0] == '-m':\n"
        "    import tracer.ops.checks as c\n"
        "    def boom(*a, **k): raise RuntimeError('checker bug')\n"
        "    c.coverage = boom\n")
    curlbin, log = fake_curl(tmp_path)
    extra = {"PATH": f"{curlbin}:{os.environ['PATH']}", "PYTHONPATH": str(site),
             "TB_DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/SECRETHOOK"}
    init_db(tmp_path)
    r = run(["bash", HEALTH], tmp_path, **extra)                     # cron's and launchd's mode: no --json
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "crashed" in r.stdout, r.stdout
    sent = posts(log)
    assert len(sent) == 1 and "crashed" in sent[0] and "without Python" not in sent[0], sent
    j = run(["bash", HEALTH, "--json"], tmp_path, **extra)
    assert j.returncode == 2 and json.loads(j.stdout)["status"] == "critical", j.stdout
    assert len(posts(log)) == 1                                      # within the hour: once
