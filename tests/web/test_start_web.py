"""./start_trading_system.sh --web, run for real: the cockpit starts beside the agents on 127.0.0.1 with the token
from the environment, answers only with it, shows in --status and stops with --stop."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from cockpit_env import TOKEN, free_port
from envs import process_env

ROOT = Path(__file__).resolve().parents[2]


def sh(tmp: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "start_trading_system.sh"), *args],
                          env=process_env(tmp, db="t.db", **extra), capture_output=True, text=True, timeout=300)


def _agents_with_token(port: int) -> httpx.Response:
    """The cockpit's agents endpoint with the token, once the server listens (up to 15 s)."""
    for _ in range(150):
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v1/agents", headers={"Authorization": f"Bearer {TOKEN}"})
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered on 127.0.0.1:{port}")


def test_start_script_web_flag_serves_the_cockpit_and_stop_stops_it(tmp_path):
    port = free_port()
    env = {"TB_WEB_TOKEN": TOKEN, "TB_WEB_PORT": str(port), "TB_WATCHDOG_ENABLED": "false"}
    r = sh(tmp_path, "--web", "--cycles", "3", "--interval", "0", **env)
    try:
        assert r.returncode == 0, r.stderr
        assert "web cockpit: started" in r.stdout and f"http://127.0.0.1:{port}/" in r.stdout
        assert TOKEN not in r.stdout + r.stderr                  # a token from the environment is never printed
        pid = int((tmp_path / "state" / "web.pid").read_text())
        assert _agents_with_token(port).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/agents").status_code == 401
        st = sh(tmp_path, "--status", **env)
        assert f"web cockpit: running (pid {pid})" in st.stdout
        # --restart brings a running cockpit back with the agents (it used to stop it for good)
        again = sh(tmp_path, "--restart", "--cycles", "3", "--interval", "0", **env)
        assert again.returncode == 0, again.stderr
        assert "web cockpit: stopped" in again.stdout and "web cockpit: started" in again.stdout
        new = int((tmp_path / "state" / "web.pid").read_text())
        assert new != pid
        assert _agents_with_token(port).status_code == 200
    finally:
        stop = sh(tmp_path, "--stop", **env)
    assert "web cockpit: stopped" in stop.stdout and not (tmp_path / "state" / "web.pid").exists()
    for f in (tmp_path / "logs").glob("*"):
        assert TOKEN not in f.read_text(errors="replace")


def test_without_web_flag_no_cockpit_starts(tmp_path):
    r = sh(tmp_path, "--cycles", "1", "--interval", "0", TB_WATCHDOG_ENABLED="false", TB_WEB_PORT=str(free_port()))
    try:
        assert r.returncode == 0, r.stderr
        assert "web cockpit" not in r.stdout and not (tmp_path / "state" / "web.pid").exists()
    finally:
        sh(tmp_path, "--stop")
