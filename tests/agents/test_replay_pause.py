"""The replay's pause between cycles (TB_REPLAY_INTERVAL_S / --interval) writes heartbeats as a live feed's wait
does: a pause longer than the watchdog's heartbeat limit must not make a healthy waiting agent look hung."""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time

from envs import agent_env
from tracer.agents.hybrid import build
from tracer.config import load_settings
from tracer.store import parse_iso


def test_the_pause_between_replay_cycles_keeps_the_heartbeat_fresh(tmp_path):
    s = load_settings(agent_env(tmp_path, TB_SYMBOLS="BTC/USD,ETH/USD"), dotenv_path=None)
    done: dict[str, object] = {}

    def agent() -> None:        # built in its own thread: its SQLite connection belongs to that thread
        loop = build(s, logging.getLogger("replay-pause"))
        loop.wait_heartbeat_s = 0.3
        done.update(loop.run(cycles=2, interval_s=2.5))

    run = threading.Thread(target=agent)
    run.start()
    db: sqlite3.Connection | None = None
    seen: list[tuple[str, int, str]] = []
    try:
        deadline = time.monotonic() + 120
        while run.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
            if db is None:
                if not s.db_path.exists():
                    continue
                db = sqlite3.connect(s.db_path, timeout=30)
            try:
                row = db.execute("SELECT ts, cycle, status, detail_json FROM heartbeats "
                                 "WHERE agent='hybrid'").fetchone()
            except sqlite3.OperationalError:        # the schema not created yet
                continue
            if row is not None and (not seen or seen[-1][0] != row[0]):
                seen.append((row[0], row[1], json.loads(row[3] or "{}").get("waiting", "")))
    finally:
        run.join(180)
        if db is not None:
            db.close()
    waiting = [t for t, cycle, w in seen if cycle == 1 and w]
    assert len(waiting) >= 4, seen           # about every 0.3 s of the 2.5 s pause after cycle 1
    gaps = [(parse_iso(b) - parse_iso(a)).total_seconds() for a, b in zip(waiting, waiting[1:])]
    assert max(gaps) < 1.5, gaps
    assert done["cycles_this_run"] == 2
