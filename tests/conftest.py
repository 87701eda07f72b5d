"""Test-wide isolation, and the shared fixtures."""
from __future__ import annotations

import os
import sys
from pathlib import Path as _Path

# The tests mirror the package (tests/<package>/test_*.py, basenames unique) and share helpers across folders
# (tests/envs.py, tests/fakes, a scenario's harness reused by another): every folder is importable by name,
# whatever order the files are collected in.
_TESTS = _Path(__file__).resolve().parent
for _d in [_TESTS, *sorted(p for p in _TESTS.iterdir() if p.is_dir() and p.name not in ("fakes", "__pycache__"))]:
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))

import pytest
from hypothesis import settings as hypothesis_settings

# Property tests draw the same examples on every run (a fresh CI clone included), so a red run is a
# reproducible one. TB_HYPOTHESIS_PROFILE=explore draws new random examples each run, to look for more.
hypothesis_settings.register_profile("tracer", derandomize=True, database=None, deadline=None)
hypothesis_settings.register_profile("explore", derandomize=False, deadline=None)
hypothesis_settings.load_profile(os.environ.get("TB_HYPOTHESIS_PROFILE", "tracer"))


@pytest.fixture(autouse=True)
def _no_promoted_params_from_the_checkout(monkeypatch):
    """A parameter set promoted in this checkout (config/active_params.json) must not change what the
    tests see: only a path a test names itself (TB_ACTIVE_PARAMS_PATH) is read."""
    import tracer.optimize.params as params
    real = params.active_overlay

    def overlay(path):
        return {} if str(path) == "config/active_params.json" else real(path)

    monkeypatch.setattr(params, "active_overlay", overlay)


# --- the reliability suite (issue 10) --------------------------------------------------------------
# Long variants are marked ``@pytest.mark.long``: skipped unless ``--long`` or TB_LONG_TESTS=1 (.ci/run
# passes --long). Every reliability scenario records what it did through the ``reliability`` fixture; the
# report docs/RELIABILITY.md is written from those records by scripts/reliability_report.py.
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", default=False,
                     help="also run the long reliability variants (soak, 50+ crash trials, load)")


def pytest_configure(config):
    config.addinivalue_line("markers", "long: long reliability variant (run with --long or TB_LONG_TESTS=1)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--long") or os.environ.get("TB_LONG_TESTS") == "1":
        # the long variants first: they are the longest tests, and the workers share them out at the start
        # instead of one of them being handed a 7-minute soak at the end of the run
        items[:] = [i for i in items if "long" in i.keywords] + [i for i in items if "long" not in i.keywords]
        return
    skip = pytest.mark.skip(reason="long variant: run with --long or TB_LONG_TESTS=1")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


def reliability_dir() -> Path:
    return Path(os.environ.get("TB_RELIABILITY_DIR") or ROOT / "state" / "reliability")


class Recorder:
    """``record(scenario, trials=..., checked=..., ok=..., **figures)``: one JSON file per scenario."""

    def __init__(self, test_id: str):
        self.test_id = test_id

    def __call__(self, scenario: str, *, trials: int, checked: str, ok: bool, **figures) -> None:
        d = reliability_dir()
        d.mkdir(parents=True, exist_ok=True)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in scenario)
        (d / f"{safe}.json").write_text(json.dumps(
            {"scenario": scenario, "test": self.test_id, "trials": trials, "checked": checked, "ok": bool(ok),
             "figures": figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            indent=1, sort_keys=True, default=str))


@pytest.fixture
def reliability(request) -> Recorder:
    return Recorder(request.node.nodeid)


# --- the venue broker tests' fake Binance venue and harness (tests/venue_harness.py) ---------------------------
@pytest.fixture
def venue():
    from fakes.binance_futures_venue import FakeBinanceFutures
    from venue_harness import KEY, SECRET
    with FakeBinanceFutures(KEY, SECRET) as v:
        yield v


@pytest.fixture
def h(venue, tmp_path):
    from tracer.execution.venues.binance_futures import BinanceFuturesClient
    from venue_harness import KEY, SECRET, Harness
    return Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)])


@pytest.fixture
def clock():
    """The broker's clock, moved by the test (a module may start it elsewhere by its own ``clock``)."""
    from venue_harness import Clock
    return Clock()


@pytest.fixture
def hc(venue, tmp_path, clock):
    """``h`` on the test's clock."""
    from tracer.execution.venues.binance_futures import BinanceFuturesClient
    from venue_harness import KEY, SECRET, Harness
    return Harness(tmp_path, [BinanceFuturesClient(KEY, SECRET, venue.url, timeout_s=0.5)], clock=clock)


@pytest.fixture
def by():
    """The fake Bybit venue (the futures agent's backup)."""
    from fakes.bybit_venue import FakeBybit
    from venue_harness import KEY, SECRET
    with FakeBybit(KEY, SECRET) as fake:
        yield fake


@pytest.fixture
def hb(by, tmp_path):
    from tracer.execution.venues.bybit import BybitFuturesClient
    from venue_harness import KEY, SECRET, Harness
    return Harness(tmp_path, [BybitFuturesClient(KEY, SECRET, by.url, timeout_s=0.5)])


@pytest.fixture
def alpaca():
    """The fake Alpaca trading API (the hybrid agent's spot venue), BTC at 42,000."""
    from fakes.alpaca_trading import FakeAlpacaTrading
    from venue_harness import ALPACA_KEYS, BTC
    with FakeAlpacaTrading(keys=ALPACA_KEYS, cash=10_000.0) as v:
        v.set_price(BTC, 42000.0)
        yield v


# --- a throw-away PostgreSQL server (tracer study / optimize on an RDB storage: tests/study, tests/optimize) ---
import shutil
import socket
import subprocess
import tempfile

PG_BIN = Path(os.environ.get("TB_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    return ["runuser", "-u", "postgres", "--", *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throw-away server on 127.0.0.1 (trust auth: any password is accepted, none is needed); yields its URL.
    Started with ``initdb`` and ``pg_ctl`` (as the ``postgres`` user when the tests run as root, which PostgreSQL
    refuses), in a folder made outside pytest's temporary tree, which is private to the user running the tests;
    stopped at the end. Skipped without the server binaries (TB_PG_BIN) or the driver."""
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} (set TB_PG_BIN)")
    pytest.importorskip("psycopg", reason="psycopg[binary] (dev extra) is needed for PostgreSQL storage")
    root = Path(tempfile.mkdtemp(prefix="tb-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    run = lambda cmd, **kw: subprocess.run(_as_server_user(cmd), check=True, capture_output=True, text=True,  # noqa: E731
                                           timeout=120, **kw)
    run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
    port = _free_port()
    run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
         "-o", f"-h 127.0.0.1 -p {port} -k {sock} -c fsync=off", "start"])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
