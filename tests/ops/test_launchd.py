"""launchd/*.plist parse (plistlib) and, once installed by scripts/install_launchd.sh --target DIR (no
launchctl needed), point at files that exist; the agent job's command really supervises the agent (starts it,
restarts it after kill -9, waits rather than exits beside another loop); and start_trading_system.sh loads,
reports, boots out and disables the installed jobs (a stand-in launchctl records what it is asked)."""
from __future__ import annotations

import os
import plistlib
import signal
import subprocess
import time
from pathlib import Path

from procs import alive, wait_for
from envs import process_env

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install_launchd.sh"
TEMPLATES = sorted((ROOT / "launchd").glob("*.plist"))
LABELS = {"com.tracerbullet.hybrid", "com.tracerbullet.futures", "com.tracerbullet.health",
          "com.tracerbullet.optimize"}


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    return process_env(tmp, db="t.db", **{"HOME": str(tmp / "home"), **extra})


def install(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(["bash", str(INSTALL), "--target", str(tmp / "LaunchAgents"), *args], env=env_for(tmp),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_templates_parse_and_declare_the_jobs():
    plists = {p.stem: plistlib.loads(p.read_bytes()) for p in TEMPLATES}
    assert set(plists) == LABELS
    for label, pl in plists.items():
        assert pl["Label"] == label
        assert pl["ProgramArguments"][0] == "/bin/bash" and pl["ProgramArguments"][1].startswith("__REPO__/scripts/")
        assert pl["WorkingDirectory"] == "__REPO__"
    for a in ("hybrid", "futures"):
        # one supervisor per agent: launchd keeps the watchdog loop alive (KeepAlive true, not "until exit 0"),
        # the loop keeps the agent alive; the agent outlives a restart of its loop
        job = plists[f"com.tracerbullet.{a}"]
        assert job["KeepAlive"] is True and job["RunAtLoad"] and job["AbandonProcessGroup"] is True
        assert job["ProgramArguments"][1:] == ["__REPO__/scripts/watchdog.sh", a, "--supervise"]
    assert plists["com.tracerbullet.health"]["StartInterval"] == 900
    assert plists["com.tracerbullet.health"]["ProgramArguments"][1] == "__REPO__/scripts/health_check.sh"


def test_install_fills_paths_that_exist_and_uninstall_removes(tmp_path):
    target = tmp_path / "LaunchAgents"
    dry = install(tmp_path, "--dry-run")
    assert "would write" in dry.stdout and not target.exists()
    r = install(tmp_path)
    assert r.stdout.count("installed ") == len(LABELS) and "nothing is loaded" in r.stdout
    files = sorted(target.glob("*.plist"))
    assert {f.stem for f in files} == LABELS
    for f in files:
        text = f.read_text()
        assert "__REPO__" not in text and "__LOG_DIR__" not in text and "__PATH__" not in text
        pl = plistlib.loads(f.read_bytes())
        prog = [Path(x) for x in pl["ProgramArguments"] if x.startswith("/")]
        assert prog and all(p.exists() for p in prog), prog
        assert os.access(prog[0], os.X_OK)
        assert Path(pl["ProgramArguments"][1]).parent == ROOT / "scripts"
        assert Path(pl["WorkingDirectory"]) == ROOT
        for key in ("StandardOutPath", "StandardErrorPath"):
            assert Path(pl[key]).parent.is_dir(), pl[key]
        assert Path(pl["StandardErrorPath"]).parent in (tmp_path / "logs", Path("/dev"))
    assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o700     # logs hold tracebacks: user-only
    again = install(tmp_path)                       # idempotent
    assert again.stdout.count("installed ") == len(LABELS)
    gone = install(tmp_path, "--uninstall")
    assert gone.stdout.count("removed ") == len(LABELS) and not list(target.glob("*.plist"))


def test_installed_agent_job_supervises_the_agent(tmp_path):
    install(tmp_path)
    pl = plistlib.loads((tmp_path / "LaunchAgents" / "com.tracerbullet.hybrid.plist").read_bytes())
    env = env_for(tmp_path, TB_WATCHDOG_INTERVAL_S="0.5")
    job = subprocess.Popen(pl["ProgramArguments"] + ["--interval", "30"], cwd=pl["WorkingDirectory"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = tmp_path / "state"
    try:
        wait_for(lambda: (state / "hybrid.pid").exists() and alive(int((state / "hybrid.pid").read_text())),
                 60, "the job to start the agent")
        first = int((state / "hybrid.pid").read_text())
        assert int((state / "watchdog_hybrid.pid").read_text()) == job.pid
        assert (state / "hybrid.args").read_text().split() == ["--interval", "30"]
        os.kill(first, signal.SIGKILL)                       # the loop restarts it
        wait_for(lambda: int((state / "hybrid.pid").read_text()) != first, 60, "the restart")
        second = int((state / "hybrid.pid").read_text())
        wait_for(lambda: alive(second), 30, "the new agent")
        # a second copy (launchd retrying, or a stray loop) waits for the lock instead of exiting
        other = subprocess.Popen(pl["ProgramArguments"], cwd=pl["WorkingDirectory"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(3)
        assert other.poll() is None
        other.terminate()
        other.wait(30)
        # --exec on a running agent is no "success" that would end a KeepAlive{SuccessfulExit:false}
        ex = subprocess.run(["bash", str(ROOT / "scripts" / "watchdog.sh"), "hybrid", "--exec"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
        assert ex.returncode == 75 and "already running" in ex.stdout
        # the job's loop ends (launchd bootout): the agent goes on (AbandonProcessGroup)
        job.terminate()
        job.wait(30)
        assert alive(second)
    finally:
        if job.poll() is None:
            job.kill()
        subprocess.run(["bash", str(ROOT / "start_trading_system.sh"), "--stop"], env=env, capture_output=True,
                       timeout=120)
    assert not alive(second)


FAKE_LAUNCHCTL = """#!/bin/bash
# stands in for macOS launchctl: records each call; print answers from the loaded state it keeps;
# FAKE_LAUNCHCTL_STUCK: bootout fails and the job stays loaded
echo "$*" >> "$FAKE_LAUNCHCTL_DIR/calls"
label() { basename "$1" .plist; }
case "$1" in
  print) [ -f "$FAKE_LAUNCHCTL_DIR/loaded.$(label "$2")" ] ;;
  bootstrap) touch "$FAKE_LAUNCHCTL_DIR/loaded.$(label "$3")" ;;
  bootout) [ -n "${FAKE_LAUNCHCTL_STUCK:-}" ] && exit 5; rm -f "$FAKE_LAUNCHCTL_DIR/loaded.$(label "$2")" ;;
  enable|disable) echo "$1" > "$FAKE_LAUNCHCTL_DIR/$1d.$(label "$2")"; rm -f "$FAKE_LAUNCHCTL_DIR/$([ "$1" = enable ] && echo disabled || echo enabled).$(label "$2")" ;;
esac
"""


def test_start_status_stop_manage_the_installed_launchd_jobs(tmp_path):
    home = tmp_path / "home"
    agents = home / "Library" / "LaunchAgents"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "launchctl").write_text(FAKE_LAUNCHCTL)
    (fake / "launchctl").chmod(0o755)
    env = env_for(tmp_path, PATH=f"{fake}:{os.environ['PATH']}", FAKE_LAUNCHCTL_DIR=str(fake))
    r = subprocess.run(["bash", str(INSTALL), "--target", str(agents)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    start = ROOT / "start_trading_system.sh"
    sh = (lambda *a: subprocess.run(["bash", str(start), *a], env=env, capture_output=True, text=True, timeout=240))
    uid = os.getuid()
    jobs = ("hybrid", "futures", "health")
    assert all((fake / f"loaded.com.tracerbullet.{j}").exists() for j in jobs)     # install loaded them
    for round_ in (1, 2):
        up = sh("--interval", "30")
        try:
            assert up.returncode == 0, up.stderr
            for job in jobs:
                # the first start finds the jobs the install loaded; after a --stop it loads them again
                want = "already loaded" if round_ == 1 else "loaded"
                assert f"launchd: com.tracerbullet.{job} {want}" in up.stdout, up.stdout
                assert (fake / f"loaded.com.tracerbullet.{job}").exists()
                assert (fake / f"enabled.com.tracerbullet.{job}").read_text().strip() == "enable"
            assert "watchdog_hybrid: started" not in up.stdout          # launchd runs the loops, not the script
            st = sh("--status")
            assert "launchd: com.tracerbullet.hybrid loaded" in st.stdout, st.stdout + st.stderr
        finally:
            down = sh("--stop")
        assert down.returncode == 0
        calls = (fake / "calls").read_text()
        for job in jobs:
            assert f"bootout gui/{uid}/com.tracerbullet.{job}" in calls
            # disabled, not only unloaded: it does not come back at the next login
            assert (fake / f"disabled.com.tracerbullet.{job}").read_text().strip() == "disable"
            assert not (fake / f"loaded.com.tracerbullet.{job}").exists()
        assert down.stdout.index("launchd: com.tracerbullet.hybrid unloaded") < down.stdout.index("hybrid: stopped")
        assert "installed, not loaded" in sh("--status").stdout
    assert (fake / "loaded.com.tracerbullet.optimize").exists()     # the weekly optimisation is not the agents'


def test_stop_aborts_when_a_job_stays_loaded_after_bootout(tmp_path):
    """A job still loaded after `launchctl bootout` would start the agents again (KeepAlive): --stop says so,
    exits non-zero and stops nothing (it used to print "unloaded" whatever launchctl answered)."""
    from ops_standins import reap, standin_agent
    agents = tmp_path / "home" / "Library" / "LaunchAgents"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "launchctl").write_text(FAKE_LAUNCHCTL)
    (fake / "launchctl").chmod(0o755)
    env = env_for(tmp_path, PATH=f"{fake}:{os.environ['PATH']}", FAKE_LAUNCHCTL_DIR=str(fake),
                  FAKE_LAUNCHCTL_STUCK="1")
    r = subprocess.run(["bash", str(INSTALL), "--target", str(agents)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    for job in ("hybrid", "futures", "health"):
        (fake / f"loaded.com.tracerbullet.{job}").touch()
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    agent = standin_agent(tmp_path)
    try:
        (state / "hybrid.pid").write_text(f"{agent.pid}\n")
        down = subprocess.run(["bash", str(ROOT / "start_trading_system.sh"), "--stop"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert down.returncode == 1, down.stdout + down.stderr
        assert "com.tracerbullet.hybrid is still loaded after launchctl bootout" in down.stderr
        assert "unloaded" not in down.stdout and "stopped" not in down.stdout
        assert agent.poll() is None and (state / "hybrid.pid").exists()       # nothing stopped
        assert not (fake / "disabled.com.tracerbullet.hybrid").exists()
        assert not list(state.glob("*.launch.lock"))                           # its locks released
    finally:
        reap(agent)


def fake_launchctl(tmp: Path) -> Path:
    fake = tmp / "bin"
    fake.mkdir()
    (fake / "launchctl").write_text(FAKE_LAUNCHCTL)
    (fake / "launchctl").chmod(0o755)
    return fake


def install_for(checkout: Path, agents: Path) -> None:
    """The job files scripts/install_launchd.sh writes when run from ``checkout`` (another folder than this one)."""
    agents.mkdir(parents=True, exist_ok=True)
    for tpl in TEMPLATES:
        text = tpl.read_text().replace("__REPO__", str(checkout)).replace("__LOG_DIR__", str(checkout / "logs"))
        (agents / tpl.name).write_text(text.replace("__PATH__", "/usr/bin:/bin"))


def test_a_start_leaves_alone_the_jobs_installed_from_another_checkout(tmp_path):
    """Jobs installed from an earlier checkout (this one moved, copied, or cloned anew) run THAT folder: loading
    them from here started its agents beside these, trading with the same keys. A start loads none of them, says
    so, and runs its own watchdog loops; --status flags them; --stop leaves them alone."""
    old = tmp_path / "Documents" / "tracer-bullet"
    (old / "scripts").mkdir(parents=True)
    fake = fake_launchctl(tmp_path)
    install_for(old, tmp_path / "home" / "Library" / "LaunchAgents")
    (fake / "loaded.com.tracerbullet.futures").touch()        # still loaded there: it supervises old's agents
    env = env_for(tmp_path, PATH=f"{fake}:{os.environ['PATH']}", FAKE_LAUNCHCTL_DIR=str(fake))
    sh = (lambda *a: subprocess.run(["bash", str(ROOT / "start_trading_system.sh"), *a], env=env,
                                    capture_output=True, text=True, timeout=240))
    up = sh("--interval", "30")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        calls = (fake / "calls").read_text()
        assert "bootstrap" not in calls and "enable" not in calls, calls
        assert not (fake / "loaded.com.tracerbullet.hybrid").exists()
        for a in ("hybrid", "futures"):
            assert f"watchdog_{a}: started" in up.stdout, up.stdout          # its own loops instead
        assert f"com.tracerbullet.hybrid is installed for another checkout ({old}), not this one" in up.stderr
        assert f"com.tracerbullet.futures is installed for another checkout ({old}) and loaded" in up.stderr
        assert "run scripts/install_launchd.sh from it" in up.stderr
        st = sh("--status")
        assert f"launchd: com.tracerbullet.health is installed for another checkout ({old})" in st.stdout, st.stdout
        assert "launchd: com.tracerbullet.health loaded" not in st.stdout
    finally:
        down = sh("--stop")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "bootout" not in (fake / "calls").read_text() and "disable" not in (fake / "calls").read_text()
    assert (fake / "loaded.com.tracerbullet.futures").exists()
    assert "watchdog_hybrid: stopped" in down.stdout and "hybrid: stopped" in down.stdout


def test_with_watchdogs_off_a_start_loads_the_health_job_and_unloads_the_agent_jobs(tmp_path):
    """TB_WATCHDOG_ENABLED=false: the agents' jobs (their watchdog loops) are booted out and disabled, while the
    health check still runs: a --stop disables it, and the next start must enable and load it again (it used
    to stay disabled for good: no health check, no alert)."""
    agents = tmp_path / "home" / "Library" / "LaunchAgents"
    fake = fake_launchctl(tmp_path)
    env = env_for(tmp_path, PATH=f"{fake}:{os.environ['PATH']}", FAKE_LAUNCHCTL_DIR=str(fake),
                  TB_WATCHDOG_ENABLED="false")
    r = subprocess.run(["bash", str(INSTALL), "--target", str(agents)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    sh = (lambda *a: subprocess.run(["bash", str(ROOT / "start_trading_system.sh"), *a], env=env,
                                    capture_output=True, text=True, timeout=240))
    try:
        for round_ in (1, 2):           # 1: the jobs the install loaded; 2: after a --stop disabled them all
            up = sh("--interval", "30")
            assert up.returncode == 0, up.stdout + up.stderr
            health = fake / "enabled.com.tracerbullet.health"
            assert (fake / "loaded.com.tracerbullet.health").exists() and health.exists() \
                and health.read_text().strip() == "enable", (f"start {round_}: the health job is not enabled and "
                                                             f"loaded", up.stdout)
            for a in ("hybrid", "futures"):
                assert not (fake / f"loaded.com.tracerbullet.{a}").exists(), (round_, up.stdout)
                assert (fake / f"disabled.com.tracerbullet.{a}").read_text().strip() == "disable"
                assert f"watchdog_{a}: started" not in up.stdout
            assert "watchdogs: disabled (TB_WATCHDOG_ENABLED=false)" in up.stdout
            down = sh("--stop")
            assert down.returncode == 0, down.stdout + down.stderr
            assert not (fake / "loaded.com.tracerbullet.health").exists()
            assert (fake / "disabled.com.tracerbullet.health").read_text().strip() == "disable"
    finally:
        sh("--stop")
