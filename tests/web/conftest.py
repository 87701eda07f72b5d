"""The web cockpit's fixtures: a DB written by real paper agents (hybrid and futures on the phase1c profile, which
trade in the first cycles of the bundled replay), two real backtests on disk, and the cockpit served by a real
uvicorn on 127.0.0.1."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from cockpit_env import LOG, ROOT, TOKEN, Server, free_port, web_settings

@pytest.fixture(scope="session")
def seeded(tmp_path_factory) -> Path:
    """A folder with state/tracer.db (both agents, 40 cycles each) and backtests/{hybrid-jan,futures-jan}."""
    from tracer.agents import futures, hybrid
    from tracer.cli import main

    tmp = tmp_path_factory.mktemp("cockpit")
    s = web_settings(tmp)
    for build in (hybrid.build, futures.build):
        loop = build(s, LOG)
        loop.run(cycles=40)
        loop.store.close()
    (tmp / "empty.env").write_text("")
    # a universe scan and its evaluation, in the same DB (the research page and endpoints)
    import subprocess
    import sys

    from envs import process_env
    env = process_env(tmp, TB_RESEARCH_DIR=str(tmp / "research"))
    for cmd in (["universe", "--as-of", "2022-01-05T00:00:00Z"], ["eval", "--as-of", "2022-01-20T00:00:00Z"]):
        r = subprocess.run([sys.executable, "-m", "tracer.cli", "--env-file", str(tmp / "empty.env"), *cmd], env=env,
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
    for agent in ("hybrid", "futures"):
        rc = main(["--env-file", str(tmp / "empty.env"), "backtest", "--agent", agent, "--from", "2022-01-01",
                   "--to", "2022-01-20", "--symbols", "BTC/USD,ETH/USD", "--out", str(tmp / "backtests" / f"{agent}-jan"),
                   "--no-plot", "--set", "TB_PROFILE=phase1c", "--set", f"TB_DB_PATH={tmp / 'bt.db'}"])
        assert rc == 0
    return tmp


@pytest.fixture
def server(seeded, tmp_path) -> Iterator[Server]:
    """The cockpit on a copy of the seeded DB, served by uvicorn on 127.0.0.1 (a thread of this process)."""
    import shutil

    import uvicorn

    from tracer.web.app import create_app

    shutil.copytree(seeded / "state", tmp_path / "state", ignore=shutil.ignore_patterns("*.pid"))
    shutil.copytree(seeded / "backtests", tmp_path / "backtests")
    s = web_settings(tmp_path)
    port = free_port()
    addr = [f"127.0.0.1:{port}", f"localhost:{port}"]
    app = create_app(s, TOKEN, hosts=addr, origins=[f"http://{a}" for a in addr], refresh_ms=1000)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30          # a loaded machine starts it slowly
    while not srv.started and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started
    yield Server(f"http://127.0.0.1:{port}", s, tmp_path)
    srv.should_exit = True
    t.join(10)
