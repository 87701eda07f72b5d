#!/usr/bin/env python3
"""All benchmarks, one command, one table: .venv/bin/python bench/run_all.py [--quick]

- cycle latency (median, p95) of the real hybrid cycle at 1, 9 and 50 symbols
- backtest bar-steps per second (hybrid over the bundled 9 x 7,296 hourly bars; one symbol of one-minute bars):
  in process (cold: files parsed, features and narratives computed; warm: those from the preparation cache;
  over a prepared history: what a study trial costs), and as a fresh ``tracer backtest`` process (imports,
  loading, scoring) with cold and with warm caches (headline scores, preparation); backtrader on the same
  candles for scale
- sentiment headlines per second: lexicon, trained model, and a FinBERT-sized BERT-base model with random
  weights (speed only: built locally from a BertConfig, no download) through our FinBERT scorer on the CPU
- a walk-forward study as users run it: a fresh ``tracer study`` process, 3 folds x 30 trials, 2 jobs
- SQLite decision writes per second (one signal row per insert, committed per 9-row cycle)
- resident memory of the live loop after 100 and after N cycles (N = 10,000; 1,000 with --quick), one symbol
  of one-minute bars (bench/data, 30,240 bars) so that 10,000 cycles fit in the data

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
from rich.markup import escape  # noqa: E402
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


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_backtest(rows: list, repeats: int = 3) -> None:
    """In process: make_scorer + run_backtest, cold (CSV loading, features, narratives, the replay), warm (the
    preparation cache) and over a prepared history, best of ``repeats``. Fresh process: the ``tracer
    backtest`` command end to end (interpreter, imports, loading, scoring, outputs), first with empty caches,
    then with the score and preparation caches it wrote."""
    import json
    import os
    import subprocess
    from datetime import timedelta

    from tracer.backtest.runner import run_backtest
    from tracer.config import load_settings
    from tracer.sentiment.factory import make_scorer

    from tracer.backtest.history import History
    with tempfile.TemporaryDirectory() as d:
        s = load_settings({"TB_STATE_DIR": str(Path(d) / "state")}, None)
        log = quiet("bench-bt")
        run_backtest(s, "hybrid", list(s.symbols), make_scorer(s, log))   # fills the score and preparation caches
        # cold: a fresh history without the preparation cache (the CSV files parsed, the features and the
        # narratives computed; the headline scores from their score file, as in any run after the first)
        dt, r = _best(lambda: run_backtest(s, "hybrid", list(s.symbols), make_scorer(s, log),
                                           history=History(None, timedelta(hours=1))), repeats)
        rows.append(("backtest hybrid, 9 symbols x 1h, in process, cold (CSV loading, features, narrative, replay)",
                     f"{r.bar_steps:,} bar-steps", f"{dt:.2f} s", f"{r.bar_steps / dt:,.0f} bar-steps/s"))
        # warm: as `tracer backtest` runs again over the same files and settings (tracer.backtest.prep_cache)
        dt, r = _best(lambda: run_backtest(s, "hybrid", list(s.symbols), make_scorer(s, log)), repeats)
        rows.append(("backtest hybrid, 9 symbols x 1h, in process, warm (candles, features, narratives from the "
                     "preparation cache; replay)", f"{r.bar_steps:,} bar-steps", f"{dt:.2f} s",
                     f"{r.bar_steps / dt:,.0f} bar-steps/s"))
        # what each backtest of a study or an optimisation costs: the files, features and narratives are
        # prepared once per process (tracer.backtest.history), the scores, decisions and fills every time
        hist = History(None, timedelta(hours=1))
        scorer = make_scorer(s, log)
        run_backtest(s, "hybrid", list(s.symbols), scorer, history=hist)
        dt, r = _best(lambda: run_backtest(s, "hybrid", list(s.symbols), scorer, history=hist), repeats)
        rows.append(("backtest hybrid, 9 symbols x 1h, in process over a prepared history (a study trial)",
                     f"{r.bar_steps:,} bar-steps", f"{dt:.2f} s", f"{r.bar_steps / dt:,.0f} bar-steps/s"))
        dt, r = _best(lambda: run_backtest(s, "hybrid", ["BTC/USD"], make_scorer(s, log),
                                           data_dir=Path(__file__).parent / "data", interval=timedelta(minutes=1)),
                      repeats)
        rows.append(("backtest hybrid, BTC 1m bars, in process (incl. loading)", f"{r.bar_steps:,} bar-steps",
                     f"{dt:.2f} s", f"{r.bar_steps / dt:,.0f} bar-steps/s"))

        env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
        env["TB_STATE_DIR"] = str(Path(d) / "fresh-state")
        cmd = [sys.executable, "-m", "tracer.cli", "--env-file", str(Path(d) / "none.env"), "backtest",
               "--agent", "hybrid", "--no-plot", "--out", str(Path(d) / "out")]
        root = Path(__file__).resolve().parent.parent

        def cli() -> None:
            subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True, timeout=600)
        cold, _ = _best(cli, 1)
        warm, _ = _best(cli, repeats)
        steps = json.loads((Path(d) / "out" / "metrics.json").read_text()).get("bar_steps", 0)
        r_steps = f"{steps:,} bar-steps" if steps else "-"
        rows.append(("backtest hybrid, 9 symbols x 1h, fresh `tracer backtest` process, cold caches",
                     r_steps, f"{cold:.2f} s", "interpreter + imports + loading + scoring 2,852 headlines"))
        rows.append(("backtest hybrid, 9 symbols x 1h, fresh `tracer backtest` process, warm caches",
                     r_steps, f"{warm:.2f} s", f"{steps / warm:,.0f} bar-steps/s end to end" if steps else ""))


def bench_peer(rows: list) -> None:
    """backtrader on the same 9 x 7,296 hourly candles (an EMA cross), for scale; needs the bench extra."""
    try:
        import peer_backtrader
    except ImportError:
        rows.append(("peer: backtrader EMA cross", "not installed", "-", "pip install -e '.[bench]'"))
        return
    n, dt = peer_backtrader.run()
    ratios = []
    for prefix, what in (("backtest hybrid, 9 symbols x 1h, in process, cold", "whole run cold"),
                         ("backtest hybrid, 9 symbols x 1h, in process, warm", "whole run warm"),
                         ("backtest hybrid, 9 symbols x 1h, in process over a prepared", "prepared history")):
        ours = next((r for r in rows if r[0].startswith(prefix)), None)
        if ours is not None:
            ratios.append(f"{what} {float(ours[3].split()[0].replace(',', '')) / (n / dt):.1f}x")
    ratio = f" (ours: {', '.join(ratios)})" if ratios else ""
    rows.append(("peer: backtrader EMA cross, 9 symbols x 1h", f"{n:,} candles", f"{dt:.2f} s",
                 f"{n / dt:,.0f} candles/s{ratio}"))


def bench_sentiment(rows: list) -> None:
    from tracer.data.replay import bundled_dir, load_headlines
    from tracer.sentiment.lexicon import VaderScorer
    from tracer.sentiment.trained import TrainedScorer
    titles = [h.title for h in load_headlines(bundled_dir() / "headlines.csv")]
    for name, sc in (("lexicon (VADER + crypto terms)", VaderScorer()), ("trained model (TF-IDF + LR)", TrainedScorer())):
        sc.score(titles[:8])                       # warm-up (the trained model loads on first use)
        dt, _ = _best(lambda: sc.score(titles), 3)
        rows.append((f"sentiment, {name}", f"{len(titles):,} headlines", f"{dt:.2f} s",
                     f"{len(titles) / dt:,.0f} headlines/s"))


def bench_finbert(rows: list, n: int, threads: int = 2) -> None:
    """A BERT-base-sized classifier (12 layers, hidden 768, FinBERT's labels) with RANDOM weights, built
    locally from a BertConfig (no download), scored through our FinBertScorer on the CPU: speed only."""
    label = f"sentiment, FinBERT-sized BERT-base, RANDOM weights (speed only), CPU {threads} threads, batch 32"
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        rows.append((label, "not installed", "-", "pip install -e '.[finbert]'"))
        return
    import warnings
    warnings.filterwarnings("ignore")
    import sentiment_throughput as st
    from transformers.utils import logging as hf_logging

    from tracer.sentiment.finbert import FinBertScorer
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    corpus = st.headlines()
    texts = corpus[1000:1000 + n]
    with tempfile.TemporaryDirectory() as d:
        model_dir = Path(d) / "bert-base-random"
        st.build_base_model(model_dir, corpus)
        scorer = FinBertScorer(str(model_dir), batch_size=32, threads=threads)
        scorer.score(corpus[:8])                   # warm-up
        dt, _ = _best(lambda: scorer.score(texts), 2)
    rows.append((label, f"{len(texts):,} headlines", f"{dt:.2f} s", f"{len(texts) / dt:,.1f} headlines/s"))


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
    from tracer.store import Store
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
    """Resident memory of the real hybrid loop (replay feed, paper broker, trained scorer, SQLite) after 100
    and after ``n_cycles`` cycles, over bench/data's 30,240 one-minute BTC bars (the bundled hourly data
    hold ~7,300 bars, too few for 10,000 cycles). The loop is wired as ``tracer.agents.hybrid.build`` does,
    with the feed at one-minute bars."""
    from datetime import timedelta

    from tracer.agents.hybrid import AGENT, HybridPolicy
    from tracer.agents.loop import AgentLoop
    from tracer.config import load_settings
    from tracer.data.replay import ReplayFeed, bundled_dir
    from tracer.store import Store
    from tracer.execution.paper import PaperSpotBroker
    from tracer.sentiment.factory import make_scorer
    data = Path(__file__).resolve().parent / "data"
    with tempfile.TemporaryDirectory() as d:
        s = load_settings({"TB_DB_PATH": str(Path(d) / "m.db"), "TB_LOG_DIR": str(Path(d) / "logs"),
                           "TB_STATE_DIR": str(Path(d) / "state"), "TB_SYMBOLS": "BTC/USD",
                           "TB_DATA_DIR": str(data), "TB_REPLAY_START": ""}, dotenv_path=None)
        log = quiet("bench-mem")
        # the bundled headlines end in 2022: the sentiment step sees none in March 2023
        feed = ReplayFeed(list(s.symbols), data_dir=data, headlines_path=bundled_dir() / "headlines.csv",
                          interval=timedelta(minutes=1), lookback=s.lookback_bars,
                          max_staleness=timedelta(minutes=s.max_staleness_min), min_bars=s.min_bars,
                          headline_lookback=timedelta(hours=s.headline_lookback_h))
        store = Store(s.db_path)
        broker = PaperSpotBroker(AGENT, s.hybrid_capital, s.fee_bps, s.slippage_bps, feed.interval)
        loop = AgentLoop(AGENT, s, feed, broker, store, make_scorer(s, log, store), HybridPolicy(s), log,
                         s.hybrid_capital)
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
    rows.append(("resident memory, live loop in a fresh process (1 symbol, 1m bars)",
                 f"after 100 cycles: {after_100:.0f} MB", f"after {done:,}: {end:.0f} MB",
                 f"growth {100 * (end / after_100 - 1):+.1f}% ({dt:.0f} s)"))


def bench_memory_fresh(rows: list, n_cycles: int) -> None:
    """:func:`bench_memory` in a process of its own, so that nothing the other rows loaded (torch, the
    backtests' data) is counted."""
    import json
    import subprocess
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-cycles", str(n_cycles)],
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        rows.append(("resident memory, live loop", "failed", "-", (r.stderr.strip().splitlines() or ["?"])[-1][:60]))
        return
    rows.append(tuple(json.loads(r.stdout.strip().splitlines()[-1])))


def bench_study(rows: list, folds: int = 3, trials: int = 30) -> None:
    """The whole ``tracer study`` command (hybrid, bundled history), ``folds`` x ``trials`` with 2 jobs."""
    import os
    import subprocess
    with tempfile.TemporaryDirectory() as d:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
        env["TB_STATE_DIR"] = str(Path(d) / "state")
        cmd = [sys.executable, "-m", "tracer.cli", "--env-file", str(Path(d) / "none.env"), "study", "--agent",
               "hybrid", "--folds", str(folds), "--trials", str(trials), "--jobs", "2", "--seed", "1", "--no-plot",
               "--out", str(Path(d) / "out")]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, env=env, check=True, capture_output=True,
                       timeout=1800)
        dt = time.perf_counter() - t0
    rows.append((f"study hybrid, fresh `tracer study` process, {folds} folds x {trials} trials, 2 jobs",
                 f"{folds * trials} backtests + tests", f"{dt:.1f} s", f"{dt / (folds * trials):.2f} s per trial"))


# what issue 17 asks of each row (on an idle 2-core machine)
TARGETS = {"cycle latency, 9 symbols": "median <= 10 ms", "cycle latency, 50 symbols": "median <= 100 ms",
           "backtest hybrid, 9 symbols x 1h, fresh `tracer backtest` process, warm caches": "<= 2 s",
           "peer: backtrader EMA cross, 9 symbols x 1h": "ours >= 20x", "study hybrid": "<= 60 s"}


def target_of(name: str) -> str:
    return next((t for k, t in TARGETS.items() if name.startswith(k)), "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer cycles and repeats (memory: 1,000 cycles; latency: 50; FinBERT: 64 headlines)")
    ap.add_argument("--memory-cycles", type=int, help=argparse.SUPPRESS)    # the memory row's own process
    ap.add_argument("--no-study", action="store_true", help="leave out the study row (about a minute)")
    a = ap.parse_args()
    if a.memory_cycles:
        import json
        mem: list = []
        bench_memory(mem, a.memory_cycles)
        print(json.dumps(mem[0]))
        return 0
    import cycle_latency
    rows: list = []
    n = 50 if a.quick else 200
    for k in (1, 9, 50):
        med, p95, mean = cycle_latency.bench(k, n, 10)
        rows.append((f"cycle latency, {k} symbol{'s' if k > 1 else ''}", f"median {med:.1f} ms", f"p95 {p95:.1f} ms",
                     f"mean {mean:.1f} ms"))
    bench_backtest(rows, 1 if a.quick else 3)
    bench_peer(rows)
    if not a.no_study:
        bench_study(rows)
    bench_sentiment(rows)
    bench_finbert(rows, 64 if a.quick else 256)
    bench_feed(rows)
    bench_sqlite(rows)
    bench_memory_fresh(rows, 1_000 if a.quick else 10_000)
    t = Table(title="Tracer Bullet benchmarks", title_justify="left")
    for col in ("benchmark", "size", "time", "rate", "target"):
        t.add_column(col)
    for r in rows:
        # plain text, not markup: an install hint such as '.[bench]' would otherwise vanish as a style tag
        t.add_row(*(escape(str(c)) for c in r), escape(target_of(r[0])))
    Console(width=160).print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
