"""Runtime paths the agents cannot use (a folder as TB_DB_PATH, a file as TB_STATE_DIR or TB_LOG_DIR, a folder
that cannot be created): `tracer check-config` (the start script's gate), `tracer init-db` and the agents exit 2
naming the variable, never "configuration OK" and then a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envs import agent_env
from tracer.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "scripts" / "hybrid_crypto_trader.py"


def _run(tmp: Path, *cmd: str | Path, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in agent_env(tmp, **extra).items() if not k.startswith("PPLX_")}
    return subprocess.run([str(c) for c in cmd], cwd=tmp, env=env, capture_output=True, text=True, timeout=180)


def _problems(tmp: Path, **extra: str) -> list[str]:
    from tracer.config.paths import path_problems
    return path_problems(load_settings(agent_env(tmp, **extra), None))


@pytest.mark.parametrize("var,make", [
    ("TB_DB_PATH", lambda t: (t / "dbdir").mkdir() or str(t / "dbdir")),           # a folder, not a DB file
    ("TB_STATE_DIR", lambda t: (t / "afile").write_text("") or str(t / "afile")),  # a file, not a folder
    ("TB_LOG_DIR", lambda t: (t / "afile").write_text("") or str(t / "afile")),
])
def test_an_unusable_path_is_named_by_check_config_and_the_agent(tmp_path, var, make):
    value = make(tmp_path)
    r = _run(tmp_path, sys.executable, "-m", "tracer.cli", "check-config", **{var: value})
    assert r.returncode == 2 and f"{var}={value}" in r.stderr, (var, r.returncode, r.stdout[-80:], r.stderr[-300:])
    r = _run(tmp_path, sys.executable, AGENT, "--once", **{var: value})
    assert r.returncode == 2 and "Traceback" not in r.stderr and f"{var}={value}" in r.stderr, \
        (var, r.returncode, r.stderr[-400:])


def test_init_db_names_a_db_path_that_is_a_folder(tmp_path):
    (tmp_path / "dbdir").mkdir()
    r = _run(tmp_path, sys.executable, "-m", "tracer.cli", "init-db", TB_DB_PATH=str(tmp_path / "dbdir"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, (r.returncode, r.stderr[-300:])
    assert f"TB_DB_PATH={tmp_path / 'dbdir'}: a folder, not a database file" in r.stderr


def test_a_folder_under_a_file_cannot_be_created(tmp_path):
    (tmp_path / "afile").write_text("")
    assert _problems(tmp_path, TB_DB_PATH=str(tmp_path / "afile" / "db" / "t.db"),
                     TB_LOG_DIR=str(tmp_path / "afile" / "logs")) == [
        f"TB_DB_PATH={tmp_path / 'afile' / 'db' / 't.db'}: its folder cannot be created: {tmp_path / 'afile'} is a "
        "file",
        f"TB_LOG_DIR={tmp_path / 'afile' / 'logs'}: cannot be created: {tmp_path / 'afile'} is a file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_read_only_folder_is_named(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert _problems(tmp_path, TB_DB_PATH=str(ro / "t.db"), TB_STATE_DIR=str(ro / "state")) == [
            f"TB_DB_PATH={ro / 't.db'}: its folder is not writable",
            f"TB_STATE_DIR={ro / 'state'}: cannot be created: {ro} is not writable"]
    finally:
        ro.chmod(0o755)


def test_usable_paths_missing_or_present_pass(tmp_path):
    assert _problems(tmp_path) == []               # state/ and logs/ do not exist yet: created at start
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "tracer.db").write_text("")
    assert _problems(tmp_path) == []
