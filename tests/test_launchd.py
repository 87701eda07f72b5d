"""launchd/*.plist parse (plistlib) and, once installed by scripts/install_launchd.sh --target DIR (no
launchctl needed), point at files that exist; the agent job's command really runs the agent with its pid file."""
from __future__ import annotations

import os
import plistlib
import sqlite3
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "scripts" / "install_launchd.sh"
TEMPLATES = sorted((ROOT / "launchd").glob("*.plist"))
LABELS = {"com.tracerbullet.hybrid", "com.tracerbullet.futures", "com.tracerbullet.watchdog.hybrid",
          "com.tracerbullet.watchdog.futures", "com.tracerbullet.health", "com.tracerbullet.optimize"}


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    env.update(TB_STATE_DIR=str(tmp / "state"), TB_LOG_DIR=str(tmp / "logs"), TB_DB_PATH=str(tmp / "state" / "t.db"),
               HOME=str(tmp / "home"))
    env.update(extra)
    return env


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
        job = plists[f"com.tracerbullet.{a}"]
        assert job["KeepAlive"] and job["RunAtLoad"]
        assert job["ProgramArguments"][1:] == ["__REPO__/scripts/watchdog.sh", a, "--exec"]
        wd = plists[f"com.tracerbullet.watchdog.{a}"]
        assert wd["StartInterval"] == 60 and wd["AbandonProcessGroup"] is True
        assert wd["ProgramArguments"][1] == f"__REPO__/scripts/watchdog_{a}.sh"
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


def test_installed_agent_job_runs_the_agent_with_its_pid_file(tmp_path):
    install(tmp_path)
    pl = plistlib.loads((tmp_path / "LaunchAgents" / "com.tracerbullet.hybrid.plist").read_bytes())
    p = subprocess.Popen(pl["ProgramArguments"] + ["--cycles", "1", "--interval", "0"], cwd=pl["WorkingDirectory"],
                         env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=180)
    assert p.returncode == 0, err                   # a clean end: launchd's KeepAlive {SuccessfulExit: false} stops
    assert int((tmp_path / "state" / "hybrid.pid").read_text()) == p.pid     # exec kept the pid
    assert (tmp_path / "state" / "hybrid.args").read_text().split() == ["--cycles", "1", "--interval", "0"]
    c = sqlite3.connect(tmp_path / "state" / "t.db")
    try:
        hb = c.execute("SELECT pid, status, cycle FROM heartbeats WHERE agent='hybrid'").fetchone()
    finally:
        c.close()
    assert hb == (p.pid, "stopped", 1)
    # the watchdog job then finds it stopped cleanly and leaves it alone
    wd = plistlib.loads((tmp_path / "LaunchAgents" / "com.tracerbullet.watchdog.hybrid.plist").read_bytes())
    r = subprocess.run(wd["ProgramArguments"], cwd=wd["WorkingDirectory"], env=env_for(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "stopped cleanly" in r.stdout, r.stdout + r.stderr
