#!/usr/bin/env python3
"""All benchmarks, one command, one table: .venv/bin/python bench/run_all.py [--quick]

- cycle latency (median, p95) of the real hybrid cycle at 1, 9 and 50 symbols
- backtest bar-steps per second (hybrid over the bundled 9 x 7,296 hourly bars; one symbol of one-minute bars)
- sentiment headlines per second (lexicon scorer)
- SQLite decision writes per second (one signal row per insert, committed per 9-row cycle)
- resident memory of the live loop after 100 and after N cycles (N = 10,000; 1,000 with --quick)

Numbers depend on the machine and its load; run it on an idle machine.
"""
from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:   # macOS: peak RSS
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def quiet(name: str) -> logging.Logger:
    log = logging.getLogger(name)
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def bench_backtest(rows: list) -> None:
    from tracer.backtest.runner import run_backtest
    from tracer.config import load_settings
    from tracer.sentiment.factory import make_scorer
    s = load_settings({}, None)
    t0 = time.perf_counter()
    r = run_backtest(s, "hybrid", list(s.symbols), make_scorer(s, quiet("bench-bt")), start=None)
    dt = time.perf_counter() - t0
    rows.append(("backtest hybrid, 9 symbols x 1h (incl. loading)", f"{r.bar_steps:,} bar-steps", f"{dt:.2f} s",
                 f"{r.bar_steps / dt:,.0f} bar-steps/s"))
    from datetime import timedelta
    t0 = time.perf_counter()
    r = run_backtest(s, "hybrid", ["BTC/USD"], make_scorer(s, quiet("bench-bt")), data_dir=Path(__file__).parent / "data",
                     interval=timedelta(minutes=1))
    dt = time.perf_counter() - t0
    rows.append(("backtest hybrid, BTC 1m bars (incl. loading)", f"{r.bar_steps:,} bar-steps", f"{dt:.2f} s",
                 f"{r.bar_steps / dt:,.0f} bar-steps/s"))


def bench_peer(rows: list) -> None:
    """backtrader on the same 9 x 7,296 hourly candles (an EMA cross), for scale; needs the bench extra."""
    try:
        import peer_backtrader
    except ImportError:
        rows.append(("peer: backtrader EMA cross", "not installed", "-", "pip install -e '.[bench]'"))
        return
    n, dt = peer_backtrader.run()
    ours = next((r for r in rows if r[0].startswith("backtest hybrid, 9")), None)
    ratio = ""
    if ours is not None:
        ours_rate = float(ours[3].split()[0].replace(",", ""))
        ratio = f" (ours {ours_rate / (n / dt):.1f}x)"
    rows.append(("peer: backtrader EMA cross, 9 symbols x 1h", f"{n:,} candles", f"{dt:.2f} s",
                 f"{n / dt:,.0f} candles/s{ratio}"))


def bench_sentiment(rows: list) -> None:
    from tracer.data.replay import bundled_dir, load_headlines
    from tracer.sentiment.lexicon import VaderScorer
    titles = [h.title for h in load_headlines(bundled_dir() / "headlines.csv")]
    sc = VaderScorer()
    t0 = time.perf_counter()
    sc.score(titles)
    dt = time.perf_counter() - t0
    rows.append(("sentiment, lexicon (VADER + crypto terms)", f"{len(titles):,} headlines", f"{dt:.2f} s",
                 f"{len(titles) / dt:,.0f} headlines/s"))


def bench_feed(rows: list) -> None:
    """Replay snapshot (9 symbols x 256 bars, validated) and one bar-window validation."""
    import timeit
    from datetime import timedelta
    from tracer.data.replay import ReplayFeed
    from tracer.data.validation import validate_bars
    feed = ReplayFeed(["BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD", "BNB/USD", "LINK/USD",
                       "AVAX/USD"])
    now = datetime(2022, 5, 10, 12, tzinfo=timezone.utc)
    snap = min(timeit.repeat(lambda: feed.snapshot(now), number=50, repeat=5)) / 50
    df = feed.snapshot(now).bars["BTC/USD"]
    val = min(timeit.repeat(lambda: validate_bars(df, now, timedelta(hours=1), None, 60), number=200,
                            repeat=5)) / 200
    rows.append(("replay snapshot, 9 symbols x 256 bars", "best of 5 x 50", f"{snap * 1e3:.2f} ms", ""))
    rows.append(("bar validation, 256 rows", "best of 5 x 200", f"{val * 1e6:.0f} us", ""))


def bench_sqlite(rows: list) -> None:
    from tracer.db import Store
    from tracer.models import Action, Regime, Signal
    reg = Regime("bull", 0.3, "normal", 0.6, "normal", 1.0, 0.7, (0.2, 0.3, 0.4))
    sig = Signal("BTC/USD", datetime(2022, 1, 1, tzinfo=timezone.utc), 40000.0, Action.HOLD, 0, "hold: test", 2.0,
                 3.0, reg, 0.1, 0.0, -0.1, 0.5, 0.1, 50.0, 300.0, 0.0, 0, "", {"passed": False},
                 {"bars": 256, "composite": 0.06})
    with tempfile.TemporaryDirectory() as d:
        st = Store(Path(d) / "b.db")
        n, cycles = 0, 300
        t0 = time.perf_counter()
        for c in range(cycles):
            with st.transaction():
                run = st.insert_run("bench", c + 1, datetime(2022, 1, 1, tzinfo=timezone.utc).replace(
                    hour=c % 24, day=1 + c // 24), datetime.now(timezone.utc))
                for _ in range(9):
                    st.insert_signal(run, "bench", sig, "none", "hold: test")
                    n += 1
        dt = time.perf_counter() - t0
        st.close()
    rows.append(("SQLite decision writes (9 per transaction, WAL, synchronous=FULL)", f"{n:,} signals",
                 f"{dt:.2f} s", f"{n / dt:,.0f} writes/s"))


def bench_memory(rows: list, n_cycles: int) -> None:
    from tracer.agents.hybrid import build
    from tracer.config import load_settings
    with tempfile.TemporaryDirectory() as d:
        s = load_settings({"TB_DB_PATH": str(Path(d) / "m.db"), "TB_LOG_DIR": str(Path(d) / "logs"),
                           "TB_SYMBOLS": "BTC/USD", "TB_REPLAY_START": "2021-10-09T00:00:00Z"}, dotenv_path=None)
        loop = build(s, quiet("bench-mem"))
        now = loop.start()
        after_100 = None
        t0 = time.perf_counter()
        done = 0
        while now is not None and done < n_cycles:
            loop.run_cycle(now)
            done += 1
            if done == 100:
                after_100 = rss_mb()
            now = loop.feed.next_time(now)
        dt = time.perf_counter() - t0
        end = rss_mb()
        loop.store.close()
    rows.append(("resident memory, live loop (1 symbol)", f"after 100 cycles: {after_100:.0f} MB",
                 f"after {done:,}: {end:.0f} MB", f"growth {100 * (end / after_100 - 1):+.1f}% ({dt:.0f} s)"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer cycles (memory: 1,000; latency: 50)")
    a = ap.parse_args()
    import cycle_latency
    rows: list = []
    n = 50 if a.quick else 200
    for k in (1, 9, 50):
        med, p95, mean = cycle_latency.bench(k, n, 10)
        rows.append((f"cycle latency, {k} symbol{'s' if k > 1 else ''}", f"median {med:.1f} ms", f"p95 {p95:.1f} ms",
                     f"mean {mean:.1f} ms"))
    bench_backtest(rows)
    bench_peer(rows)
    bench_sentiment(rows)
    bench_feed(rows)
    bench_sqlite(rows)
    bench_memory(rows, 1_000 if a.quick else 10_000)
    t = Table(title="Tracer Bullet benchmarks", title_justify="left")
    for col in ("benchmark", "size", "time", "rate"):
        t.add_column(col)
    for r in rows:
        t.add_row(*r)
    Console(width=140).print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
