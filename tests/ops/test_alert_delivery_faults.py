"""Alerts that must leave the machine, run for real against scripts/health_check.sh and fake Discord / Telegram
endpoints on 127.0.0.1: two overlapping health checks alert once; a disk that takes no write (the outbox
insert fails) still gets the alert out; a .venv whose Python is gone alerts by curl, at most once an hour,
without a secret in any output; and the README's cron lines work as typed on a fresh clone."""
from __future__ import annotations

import http.server
import os
import re
import shlex
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from envs import ops_env
from fakes.discord import FakeDiscord
from fakes.telegram import CHAT_ID, FakeTelegram
from ops_standins import sandbox

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "scripts" / "health_check.sh"


def init_db(tmp: Path) -> None:
    assert subprocess.run([str(ROOT / ".venv/bin/tracer"), "init-db"], env=ops_env(tmp), capture_output=True,
                          timeout=120, cwd=ROOT).returncode == 0


class SlowWebhook:
    """A Discord webhook that takes ``delay`` seconds to answer (Discord under load, a flaky uplink)."""

    def __init__(self, delay: float) -> None:
        self.posts: list[str] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.posts.append(body.decode("utf-8", "replace"))
                time.sleep(delay)
                self.send_response(204)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/webhooks/1/abcdefgh"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_two_overlapping_health_checks_alert_once(tmp_path):
    """The second run loaded the alert state before the first (blocked in its webhook POST) saved it, and
    alerted the same finding again; now it waits for the first run's lock and finds it alerted."""
    init_db(tmp_path)
    hook = SlowWebhook(delay=6)
    try:
        env = ops_env(tmp_path, TB_DISCORD_WEBHOOK_URL=hook.url)         # agents never started: a warning
        cmd = ["bash", str(HEALTH)]
        a = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        b = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
        assert a.wait(180) == 1
        _, err = b.communicate(timeout=180)
        assert b.returncode == 1, err
    finally:
        hook.close()
    warnings = [p for p in hook.posts if "health warning" in p]
    assert len(warnings) == 1, hook.posts


def test_an_alert_the_outbox_cannot_store_is_sent_directly(tmp_path):
    """A full disk: no write to any file succeeds (emulated with the file size limit, ulimit -f 0, which makes
    every write that grows a file fail as a full disk does), so the outbox INSERT fails. The alert still
    reaches Discord, and stderr says it was sent directly and not stored."""
    init_db(tmp_path)
    with FakeDiscord() as discord:
        env = ops_env(tmp_path, TB_DISCORD_WEBHOOK_URL=discord.url)
        r = subprocess.run(["bash", "-c", 'ulimit -f 0 && exec bash "$0"', str(HEALTH)], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode in (1, 2), r.stdout + r.stderr
        assert any("health" in c for c in discord.contents()), r.stderr
        assert "not enqueued" in r.stderr and "sent directly, not stored: discord" in r.stderr, r.stderr
        assert discord.url not in r.stdout + r.stderr


def test_a_venv_whose_python_vanished_alerts_by_curl_at_most_once_an_hour(tmp_path):
    repo = sandbox(tmp_path, venv="broken")                 # the real scripts/, a .venv whose Python is gone
    state = tmp_path / "state"
    with FakeDiscord() as discord, FakeTelegram() as tg:
        (repo / ".env").write_text(f"TB_STATE_DIR={state}\nTB_DISCORD_WEBHOOK_URL='{discord.url}'\n"
                                   f"export TB_TELEGRAM_BOT_TOKEN={tg.token}   # the bot\n"
                                   f"TB_TELEGRAM_CHAT_ID={CHAT_ID}\nTB_TELEGRAM_BASE_URL={tg.base_url}\n")
        (repo / ".env").chmod(0o600)
        cron = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}          # cron's bare environment

        def health(*args: str) -> subprocess.CompletedProcess:
            r = subprocess.run(["/bin/bash", str(repo / "scripts" / "health_check.sh"), *args], env=cron,
                               cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert r.returncode == 2 and "Python is gone" in r.stdout, r.stdout + r.stderr
            for secret in (discord.url.rsplit("/", 1)[1], tg.token):
                assert secret not in r.stdout + r.stderr
            return r

        health("--heal")
        assert len(discord.contents()) == 1 and len(tg.texts()) == 1, (discord.requests, tg.calls)
        for text in (discord.contents()[0], tg.texts()[0]):
            assert "setup" in text and "Python is gone" in text and "bootstrap.sh" in text, text
        marker = state / "setup_alert.sent"
        assert marker.exists()
        health("--json")                                     # within the hour: no second message
        health("--no-alert")
        assert len(discord.contents()) == 1 and len(tg.texts()) == 1
        old = time.time() - 3700
        os.utime(marker, (old, old))
        health()                                             # an hour later: a reminder
        assert len(discord.contents()) == 2 and len(tg.texts()) == 2
    for f in tmp_path.rglob("*"):
        if f.is_file() and not f.is_symlink() and f.name != ".env":
            assert discord.url.rsplit("/", 1)[1] not in f.read_text(errors="replace"), f


def test_the_readme_cron_lines_work_as_typed_on_a_fresh_clone(tmp_path):
    """A fresh clone has no logs/ (gitignored), and with TB_LOG_DIR elsewhere nothing creates it: /bin/sh
    failed the redirection and never ran the command. Under cron's umask 022 the folder and the logs the
    redirections create are user-only all the same (they were 0755 and 0644, readable by every account)."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("**Linux (cron)**"):]
    block = block[block.index("```cron\n") + 8:]
    lines = [ln for ln in block[:block.index("```")].splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 4
    # the weekly optimisation's line (section "Adaptive strategy") gets the same treatment
    opt = re.search(r"`(0 3 \* \* 0 .*weekly_optimize\.sh >> logs/optimize\.log 2>&1)`", readme)
    assert opt is not None
    assert re.search(r"umask 077 && .*mkdir -p logs && .*weekly_optimize", opt.group(1)), opt.group(1)
    repo = sandbox(tmp_path, venv="real")
    (repo / ".env").write_text(f"TB_LOG_DIR={tmp_path / 'var-log'}\nTB_STATE_DIR={tmp_path / 'state'}\n"
                               f"TB_DB_PATH={tmp_path / 'state' / 't.db'}\nTB_HEALTH_DISK_WARN_PCT=0\n"
                               f"TB_HEALTH_DISK_CRITICAL_PCT=0\n")
    (repo / ".env").chmod(0o600)
    assert not (repo / "logs").exists()
    for ln in lines:
        cmd = re.sub(r"^(@reboot|(\S+\s+){5})\s*", "", ln).replace("/path/to/tracer-bullet", shlex.quote(str(repo)))
        # the @reboot start would set up and start the agents: its --status shows the same line at work
        cmd = cmd.replace("./start_trading_system.sh ", "./start_trading_system.sh --status ")
        r = subprocess.run(["/bin/sh", "-c", cmd], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                           cwd=tmp_path, capture_output=True, text=True, timeout=240,
                           preexec_fn=lambda: os.umask(0o022))              # cron's umask
        assert "nonexistent" not in r.stderr and "No such file" not in r.stderr, (cmd, r.stderr)
    assert "hybrid: not running" in (repo / "logs" / "start.log").read_text()
    assert (repo / "logs" / "watchdog.err").exists()
    assert "health:" in (repo / "logs" / "health.log").read_text()
    logs = repo / "logs"
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700, oct(logs.stat().st_mode)
    for f in logs.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, (f, oct(f.stat().st_mode))
