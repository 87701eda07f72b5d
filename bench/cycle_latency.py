#!/usr/bin/env python3
"""Benchmark: hybrid agent cycle latency (median, p95) for 1, 9 and 50 symbols.

Runs the real agent cycle (feed snapshot, paper broker, sentiment, evaluate, risk, one SQLite
transaction on a real file) over the bundled replay. 50 symbols = the 9 real series, each copied
under extra names (the copies have no matching headlines, so their sentiment step is cheaper).

Usage: .venv/bin/python bench/cycle_latency.py [--cycles N] [--warmup N]
"""
from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracer.agents.hybrid import build  # noqa: E402
from tracer.config import load_settings  # noqa: E402
from tracer.data.replay import bundled_dir  # noqa: E402

REAL = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "BNB", "LINK", "AVAX"]


def make_data(tmp: Path, n: int) -> list[str]:
    src = bundled_dir()
    shutil.copy(src / "headlines.csv", tmp / "headlines.csv")
    symbols = []
    for i in range(n):
        base = REAL[i % len(REAL)]
        name = base if i < len(REAL) else f"{base}{i // len(REAL)}X"
        shutil.copy(src / f"candles_1h_{base}USDT.csv", tmp / f"candles_1h_{name}USDT.csv")
        symbols.append(f"{name}/USD")
    return symbols


def bench(n: int, cycles: int, warmup: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        symbols = make_data(tmp, n)
        s = load_settings({"TB_DB_PATH": str(tmp / "b.db"), "TB_LOG_DIR": str(tmp / "logs"),
                           "TB_DATA_DIR": str(tmp), "TB_SYMBOLS": ",".join(symbols),
                           "TB_MAX_POSITIONS": "10"}, dotenv_path=None)
        log = logging.getLogger(f"bench{n}")
        log.addHandler(logging.NullHandler())
        log.propagate = False
        loop = build(s, log)
        now = loop.start()
        times = []
        for i in range(warmup + cycles):
            t0 = time.perf_counter()
            loop.run_cycle(now)
            dt = (time.perf_counter() - t0) * 1000
            if i >= warmup:
                times.append(dt)
            now = loop.feed.next_time(now)
        loop.store.close()
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return statistics.median(times), p95, statistics.mean(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    a = ap.parse_args()
    print(f"hybrid cycle latency over {a.cycles} cycles after {a.warmup} warm-up (ms)")
    print(f"{'symbols':>8} {'median':>9} {'p95':>9} {'mean':>9}")
    for n in (1, 9, 50):
        med, p95, mean = bench(n, a.cycles, a.warmup)
        print(f"{n:>8} {med:>9.2f} {p95:>9.2f} {mean:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
