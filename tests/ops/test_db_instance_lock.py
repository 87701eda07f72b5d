"""One copy of an agent per DB, whatever its state folder: TB_DB_PATH does not follow TB_STATE_DIR, so after a change
of TB_STATE_DIR in .env, ``--restart`` no longer finds the running agent (its pid file is in the old folder) and
used to start a second one on the same DB: duplicate orders. The agent also holds ``<db>.<agent>.instance``."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from envs import agent_env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "hybrid_crypto_trader.py"


def _env(tmp: Path, state: str) -> dict[str, str]:
    # one DB outside both state folders (as when only TB_STATE_DIR is set in .env)
    return agent_env(tmp, TB_STATE_DIR=str(tmp / state), TB_DB_PATH=str(tmp / "db" / "tracer.db"),
                     TB_REPLAY_INTERVAL_S="0.05")


def _started(tmp: Path, env: dict[str, str]) -> subprocess.Popen:
    log = tmp / "logs" / "hybrid.log"
    seen = len(log.read_text()) if log.exists() else 0
    proc = subprocess.Popen([sys.executable, str(SCRIPT)], cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and "event=cycle" in log.read_text()[seen:]):
        time.sleep(0.1)
    assert proc.poll() is None, "the first agent did not start"
    return proc


def _once(tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--once"], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_second_copy_on_the_same_db_with_another_state_folder_refuses_to_start(tmp_path):
    proc = _started(tmp_path, _env(tmp_path, "state1"))
    try:
        r = _once(tmp_path, _env(tmp_path, "state2"))
        assert r.returncode == 2, r.stderr[-500:]
        assert (f"hybrid: refusing to start: another copy runs on TB_DB_PATH={tmp_path / 'db' / 'tracer.db'} "
                f"(pid {proc.pid})") in r.stderr, r.stderr
        assert proc.poll() is None
        lock = tmp_path / "db" / "tracer.db.hybrid.instance"
        assert lock.read_text() == str(proc.pid) and lock.stat().st_mode & 0o777 == 0o600
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert _once(tmp_path, _env(tmp_path, "state2")).returncode == 0      # the lock goes with its process


def test_the_db_lock_goes_with_a_killed_agent_and_the_other_agent_shares_the_db(tmp_path):
    proc = _started(tmp_path, _env(tmp_path, "state1"))
    try:
        # the futures agent on the same DB is no second copy: the lock is per agent
        futures = subprocess.run([sys.executable, str(ROOT / "scripts" / "high_risk_futures_agent.py"), "--once"],
                                 cwd=tmp_path, env=_env(tmp_path, "state2"), capture_output=True, text=True,
                                 timeout=300)
        assert futures.returncode == 0, futures.stderr[-500:]
    finally:
        proc.send_signal(signal.SIGKILL)        # kill -9: no clean-up of its own
        proc.wait(timeout=60)
    r = _once(tmp_path, _env(tmp_path, "state2"))
    assert r.returncode == 0, r.stderr[-500:]
