"""``tracer web``'s start: the access token it generates is shown on a terminal only."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_generated_token_never_goes_into_a_log_or_a_pipe(tmp_path: Path):
    """Started from cron or with its output redirected to a log, the new token is written to .env (user-only) and
    the output says where it is, never the token itself."""
    env_file = tmp_path / ".env"
    env_file.write_text("TB_WEB_TOKEN=\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    env.update(TB_STATE_DIR=str(tmp_path / "state"), TB_DB_PATH=str(tmp_path / "state" / "t.db"))
    res = subprocess.run([sys.executable, "-m", "tracer.cli", "--env-file", str(env_file), "web", "--init-token"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr
    token = env_file.read_text().split("TB_WEB_TOKEN=", 1)[1].strip()
    assert len(token) >= 32 and oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert token not in res.stdout + res.stderr
    assert f"grep ^TB_WEB_TOKEN= {env_file}" in res.stdout
