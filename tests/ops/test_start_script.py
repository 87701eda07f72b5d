"""start_trading_system.sh, run for real: start, idempotent second start, status, stop, bad config."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from envs import process_env

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


def test_bounded_foreground_run(tmp_path):
    r = sh(tmp_path, "--foreground", "--cycles", "3", "--interval", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("event=cycle") == 6      # 3 cycles for each agent


def test_bad_config_starts_nothing(tmp_path):
    r = sh(tmp_path, TB_FUTURES_MAX_LEVERAGE="500")
    assert r.returncode == 2
    assert "TB_FUTURES_MAX_LEVERAGE" in r.stderr and "nothing started" in r.stderr
    assert not (tmp_path / "state" / "hybrid.pid").exists()
