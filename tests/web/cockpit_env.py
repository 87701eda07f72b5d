"""The web cockpit tests' shared values: the token, the settings of a test folder, a free port on 127.0.0.1, the
running server's address (the fixtures are in tests/web/conftest.py)."""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer.config import load_settings

TOKEN = "test-web-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]
LOG = logging.getLogger("test-web")


def web_settings(tmp: Path, **extra: str) -> Any:
    env = {"TB_DB_PATH": str(tmp / "state" / "tracer.db"), "TB_LOG_DIR": str(tmp / "logs"),
           "TB_STATE_DIR": str(tmp / "state"), "TB_BACKTEST_DIR": str(tmp / "backtests"), "TB_PROFILE": "phase1c",
           "TB_REPLAY_INTERVAL_S": "0", "TB_NOTIFY_CONSOLE": "false", "TB_WEB_TOKEN": TOKEN, **extra}
    return load_settings(env, dotenv_path=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    settings: Any
    folder: Path
