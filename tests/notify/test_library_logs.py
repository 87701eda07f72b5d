"""The libraries' own log records (python-telegram-bot, urllib3 under ``requests``) reach the agent's stderr --
appended by the start script and the watchdog to ``logs/<agent>.err`` -- only through the root logger's redacting
handler (``tracer.logs.setup_logging``): no bot token, no webhook token in any file of the run."""
from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fakes.discord as fake_discord
from envs import agent_env
from fakes.discord import FakeDiscord, Reply
from fakes.telegram import BOT_TOKEN

ROOT = Path(__file__).resolve().parents[2]
HYBRID = ROOT / "scripts" / "hybrid_crypto_trader.py"
TOKEN = BOT_TOKEN     # the fakes' token, built from pieces: nothing token-shaped in the sources


def _run_agent(tmp_path: Path, **env: str) -> Path:
    """Three cycles of the hybrid agent with stderr appended to logs/hybrid.err, as the start script runs it."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / "hybrid.err", "ab") as err:
        r = subprocess.run([sys.executable, str(HYBRID), "--cycles", "3"], cwd=tmp_path,
                           env=agent_env(tmp_path, TB_SENTIMENT_SCORER="lexicon", TB_NOTIFY_HEARTBEAT_EVERY="1",
                                         TB_NOTIFY_POLL_S="0.1", **env),
                           stdout=subprocess.DEVNULL, stderr=err, timeout=240)
    assert r.returncode == 0
    return logs / "hybrid.err"


def _files_holding(root: Path, secret: str) -> dict[str, str]:
    """{file: its first line holding ``secret``} for every file under ``root``."""
    found = {}
    for p in [q for q in root.rglob("*") if q.is_file()]:
        text = p.read_bytes().decode("utf-8", "replace")
        if secret in text:
            found[str(p.relative_to(root))] = next(ln for ln in text.splitlines() if secret in ln)[:160]
    return found


class _ExpressLike(BaseHTTPRequestHandler):
    """A reverse proxy in front of the Bot API (what TB_TELEGRAM_BASE_URL is for) answering an unknown path with
    Express's default 404 page, which quotes the path: ``Cannot POST /bot<token>/sendMessage``."""

    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n</head>\n'
                f"<body>\n<pre>Cannot POST {self.path}</pre>\n</body>\n</html>\n").encode()
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_telegram_library_error_quoting_the_token_is_redacted_in_the_err_file(tmp_path):
    """python-telegram-bot logs a non-JSON body itself, at ERROR with a traceback (``BaseRequest``: ``Can not load
    invalid JSON data``); its loggers have no handler of their own. Logged once per attempt, token masked."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _ExpressLike)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        err = _run_agent(tmp_path, TB_TELEGRAM_BOT_TOKEN=TOKEN, TB_TELEGRAM_CHAT_ID="4242",
                         TB_TELEGRAM_BASE_URL=f"http://127.0.0.1:{srv.server_address[1]}/bot",
                         TB_TELEGRAM_POLL_TIMEOUT_S="1")
    finally:
        srv.shutdown()
        srv.server_close()
    leaked = _files_holding(tmp_path, TOKEN.split(":", 1)[1])
    assert not leaked, f"bot token written to {sorted(leaked)}: {leaked}"
    text = err.read_text()
    assert "ERROR telegram.request" in text and "Cannot POST /bot***/sendMessage" in text
    assert text.count("Can not load invalid JSON data") == text.count("Cannot POST /bot***/")   # each once


def test_urllib3_warning_quoting_the_webhook_url_is_redacted_in_the_err_file(tmp_path):
    """urllib3 logs ``Failed to parse headers (url=<webhook URL>)`` at WARNING for a malformed header line (a space
    before the colon, as real servers and proxies send: urllib3#1433); the message is still delivered."""
    with FakeDiscord() as dc:
        dc.script(*[Reply(200, None, headers={"Access-Control-Expose-Headers ": "X-RateLimit-Limit"})
                    for _ in range(50)])
        _run_agent(tmp_path, TB_DISCORD_WEBHOOK_URL=dc.url)
        assert dc.contents(), "the heartbeat was delivered"
    leaked = _files_holding(tmp_path / "logs", fake_discord.WEBHOOK_TOKEN)
    assert not leaked, f"Discord webhook token written to {sorted(leaked)}: {leaked}"
