#!/usr/bin/env python3
"""Tracer Bullet Telegram listener: serves the bot's commands from the one configured chat and
delivers the outbox (Discord and Telegram) while it runs, acting on the agents through the DB.

Only one process may poll a bot token, so the start script runs exactly one listener (pid file
``$TB_STATE_DIR/telegram.pid``), and only when TB_TELEGRAM_BOT_TOKEN and TB_TELEGRAM_CHAT_ID are set.

Usage: scripts/telegram_listener.py [--env-file .env]
"""
import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracer.config import ConfigError, load_settings  # noqa: E402
from tracer.logs import kv, setup_logging  # noqa: E402
from tracer.notify.commands import run_listener  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env-file", default=".env")
    a = p.parse_args(argv)
    try:
        s = load_settings(dotenv_path=a.env_file)
    except ConfigError as e:
        print(f"telegram listener: refusing to start: {e}", file=sys.stderr)
        return 2
    log = setup_logging("telegram", s.log_dir, s.log_level, s.secret_values(), max_mb=s.log_max_mb,
                        backups=s.log_backups)
    stop = threading.Event()

    def _stop(signum, _frame):
        log.info(kv("signal", name=signal.Signals(signum).name, action="stopping the listener"))
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return run_listener(s, log, stop)


if __name__ == "__main__":
    sys.exit(main())
