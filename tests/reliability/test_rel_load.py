"""Reliability: load (issue 10). A universe of 200 symbols and 10,000 headlines in every cycle's 24 h
window; each agent's cycle (snapshot, paper broker, relevance + sentiment scoring of every headline
for every symbol, evaluate, policy and risk, one SQLite transaction, notifications) must complete
well within its interval (1 h bars: the bar has to be processed within the hour). We assert the cycle
time < the interval and record the actual times, with where the time went.

Data (derived, nothing generated from scratch):
- candles: symbols SYM001..SYM200, each a copy of one of the 9 REAL bundled hourly series (SYM001 <- ADA,
  SYM002 <- AVAX, ... in turn) with its prices multiplied by a per-symbol factor (0.5x .. 2.1x; volumes
  unchanged), cut to the 300 bars before the first clock plus the bars the cycles need;
- headlines: the REAL bundled titles, in turn, each prefixed with the ticker of one synthetic symbol
  (``SYM042: <real title>``) so that the real relevance code (``tracer.sentiment.narrative.relevant_to``,
  whole-word alias match; an unknown asset's alias is its ticker) finds it, with its real source, and
  published every 8.64 s, so that every 24 h window holds exactly 10,000 of them. Each symbol has 50
  relevant headlines a cycle; every one goes through the real scorer (the trained model) and the
  decayed narrative.

Long variant: 200 symbols / 10,000 headlines, 3 cycles per agent; default: 20 symbols / 1,000 headlines,
2 cycles per agent.
"""
from __future__ import annotations

import csv
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest

import tracer.agents.loop as loop_mod
from tracer.config import load_settings
from tracer.data.replay import bundled_dir

REAL = ["ADA", "AVAX", "BNB", "BTC", "DOGE", "ETH", "LINK", "SOL", "XRP"]
CLOCK = datetime(2022, 5, 2, tzinfo=timezone.utc)     # the first cycle's clock (dense real news around it)
HISTORY = 300                                         # bars before the first clock (>= TB_LOOKBACK_BARS)
INTERVAL = timedelta(hours=1)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def tickers(n: int) -> list[str]:
    return [f"SYM{k:03d}" for k in range(1, n + 1)]


def make_load_data(out: Path, n_symbols: int, n_headlines: int, cycles: int) -> dict:
    """Candles for ``n_symbols`` synthetic tickers and headlines such that each cycle's 24 h window holds
    exactly ``n_headlines``. See the module docstring."""
    src = bundled_dir()
    lo, hi = CLOCK - (HISTORY + 1) * INTERVAL, CLOCK + (cycles + 1) * INTERVAL
    series: dict[str, tuple[list[str], list[list[str]]]] = {}
    for base in REAL:
        with open(src / f"candles_1h_{base}USDT.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        series[base] = (rows[0], [r for r in rows[1:] if lo <= _parse(r[0]) < hi])
    for k, tk in enumerate(tickers(n_symbols)):
        header, rows = series[REAL[k % len(REAL)]]
        f = 0.5 + (k % 17) * 0.1
        with open(out / f"candles_1h_{tk}USDT.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for r in rows:
                w.writerow([r[0]] + [repr(round(float(x) * f, 8)) for x in r[1:5]] + [r[5]])
    with open(src / "headlines.csv", newline="", encoding="utf-8") as fh:
        hrows = [r for r in list(csv.reader(fh))[1:] if r and r[2].strip()]
    window = timedelta(hours=24)
    step = window / n_headlines
    total = int(((window + (cycles + 1) * INTERVAL) / step))
    start = CLOCK - window
    tks = tickers(n_symbols)
    with open(out / "headlines.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["published_at", "source", "title", "symbols"])
        for j in range(total):
            pub, source, title = hrows[j % len(hrows)][:3]
            tk = tks[j % n_symbols]
            w.writerow([_fmt(start + (j + 1) * step), source, f"{tk}: {title}", tk])
    return {"symbols": n_symbols, "headlines_written": total,
            "data": (f"{n_symbols} synthetic tickers, each one of the 9 real bundled 1h series with prices scaled "
                     f"0.5x-2.1x; real bundled titles prefixed with one ticker each, {n_headlines:,} in every "
                     f"24 h window")}


class Timer:
    """Accumulates the wall time spent in a wrapped function (per cycle)."""

    def __init__(self, fn):
        self.fn, self.total, self.calls = fn, 0.0, 0

    def __call__(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return self.fn(*a, **kw)
        finally:
            self.total += time.perf_counter() - t0
            self.calls += 1


def load_run(tmp: Path, agent: str, n_symbols: int, n_headlines: int, cycles: int, monkeypatch) -> dict:
    data = tmp / "data"
    data.mkdir()
    info = make_load_data(data, n_symbols, n_headlines, cycles)
    syms = ",".join(f"{t}/USD" for t in tickers(n_symbols))
    s = load_settings({"TB_DB_PATH": str(tmp / "load.db"), "TB_LOG_DIR": str(tmp / "logs"),
                       "TB_STATE_DIR": str(tmp / "state"), "TB_ARTIFACT_DIR": str(tmp / "artifacts"),
                       "TB_DATA_DIR": str(data), "TB_SYMBOLS": syms, "TB_FUTURES_SYMBOLS": syms,
                       "TB_REPLAY_START": CLOCK.strftime("%Y-%m-%dT%H:%M:%SZ")}, dotenv_path=None)
    import logging
    log = logging.getLogger(f"rel-load-{agent}")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    if agent == "hybrid":
        from tracer.agents.hybrid import build
    else:
        from tracer.agents.futures import build
    t0 = time.perf_counter()
    loop = build(s, log)
    build_s = time.perf_counter() - t0
    phases = {"snapshot": Timer(loop.feed.snapshot), "relevance": Timer(loop_mod.relevant_to),
              "scoring": Timer(loop.scorer.score), "evaluate": Timer(loop_mod.prepare),
              "decide": Timer(loop_mod.decide_many), "persist": Timer(loop._persist)}
    loop.feed.snapshot = phases["snapshot"]
    loop.scorer.score = phases["scoring"]
    loop._persist = phases["persist"]
    monkeypatch.setattr(loop_mod, "relevant_to", phases["relevance"])
    monkeypatch.setattr(loop_mod, "prepare", phases["evaluate"])       # features and narrative, per symbol
    monkeypatch.setattr(loop_mod, "decide_many", phases["decide"])     # the scores of every symbol at once
    real_cycle, real_snapshot = loop.run_cycle, phases["snapshot"]
    per_cycle: list[dict] = []
    seen: list[int] = []

    def snapshot(now):
        snap = real_snapshot(now)
        seen.append(len(snap.headlines))
        return snap

    loop.feed.snapshot = snapshot

    def timed_cycle(now):
        before = {k: t.total for k, t in phases.items()}
        t1 = time.perf_counter()
        res = real_cycle(now)
        dt = time.perf_counter() - t1
        per_cycle.append({"s": round(dt, 3), "signals": res.signals,
                          **{k: round(t.total - before[k], 3) for k, t in phases.items()}})
        return res

    loop.run_cycle = timed_cycle
    try:
        summary = loop.run(cycles=cycles, interval_s=0)
        scored = loop.store.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(headline_count), 0), COALESCE(SUM(headline_count > 0), 0) "
            "FROM signals WHERE agent=?", (agent,)).fetchone()
    finally:
        loop.store.close()
    times = [c["s"] for c in per_cycle]
    return {"agent": agent, "symbols": n_symbols, "headlines_per_cycle": seen, "cycles": len(per_cycle),
            "interval_s": INTERVAL.total_seconds(), "cycle_s": times, "cycle_s_max": max(times),
            "cycle_s_median": round(statistics.median(times), 3),
            "cycle_pct_of_interval_max": round(100 * max(times) / INTERVAL.total_seconds(), 3),
            "phases_s_per_cycle": per_cycle, "build_s": round(build_s, 2),
            "signals_written": scored[0], "relevant_headlines_evaluated": scored[1],
            "signals_with_headlines": scored[2],
            "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
            "db_mb": round(sum(p.stat().st_size for p in tmp.glob("load.db*")) / 2**20, 1),
            "orders": summary["orders"], "data": info["data"]}


def _run(tmp_path, reliability, monkeypatch, agent: str, n_symbols: int, n_headlines: int, cycles: int,
         label: str) -> None:
    f = load_run(tmp_path, agent, n_symbols, n_headlines, cycles, monkeypatch)
    bad = []
    if f["cycles"] != cycles:
        bad.append(f"ran {f['cycles']} cycles, not {cycles}")
    if any(n != n_headlines for n in f["headlines_per_cycle"]):
        bad.append(f"headlines per cycle {f['headlines_per_cycle']}, not {n_headlines}")
    if f["signals_written"] != n_symbols * cycles:
        bad.append(f"{f['signals_written']} signals written, not {n_symbols * cycles}")
    # every headline names exactly one symbol: all of them reach that symbol's evaluation
    if f["relevant_headlines_evaluated"] != n_headlines * cycles:
        bad.append(f"{f['relevant_headlines_evaluated']} relevant headlines evaluated, not {n_headlines * cycles}")
    if f["cycle_s_max"] >= f["interval_s"]:
        bad.append(f"a cycle took {f['cycle_s_max']} s >= the {f['interval_s']:.0f} s interval")
    reliability(
        f"load: {agent} agent, {n_symbols} symbols x {n_headlines:,} headlines{label}", trials=f["cycles"],
        checked=(f"{cycles} cycles with {n_symbols} symbols and {n_headlines:,} headlines in each cycle's window, "
                 f"every headline through the real relevance + scoring path: each cycle completes within its "
                 f"1 h interval; every symbol evaluated, every headline reaches its symbol"),
        ok=not bad, problems="; ".join(bad) or None, **f)
    assert not bad, f"{bad}\n{ {k: v for k, v in f.items() if k != 'phases_s_per_cycle'} }"


@pytest.mark.parametrize("agent", ["hybrid", "futures"])
def test_load_short(tmp_path, reliability, monkeypatch, agent):
    _run(tmp_path, reliability, monkeypatch, agent, 20, 1_000, 2, " (short)")


@pytest.mark.long
@pytest.mark.parametrize("agent", ["hybrid", "futures"])
def test_load_long(tmp_path, reliability, monkeypatch, agent):
    _run(tmp_path, reliability, monkeypatch, agent, 200, 10_000, 3, "")


def test_load_data_windows_hold_exactly_n_headlines(tmp_path):
    from tracer.data.replay import ReplayFeed
    make_load_data(tmp_path, 12, 500, 3)
    feed = ReplayFeed([f"{t}/USD" for t in tickers(12)], data_dir=tmp_path, min_bars=180)
    for h in range(4):
        snap = feed.snapshot(CLOCK + h * INTERVAL)
        assert len(snap.headlines) == 500
        assert len(snap.bars) == 12 and not snap.rejected
    from tracer.sentiment.narrative import relevant
    snap = feed.snapshot(CLOCK)
    assert sum(len(relevant(f"{t}/USD", snap.headlines)) for t in tickers(12)) == 500
    btc = feed.snapshot(CLOCK).bars["SYM004/USD"]       # SYM004 <- BTC x 0.8
    real = ReplayFeed(["BTC/USD"]).snapshot(CLOCK).bars["BTC/USD"]
    assert (abs(btc["close"].to_numpy() / real["close"].to_numpy() - 0.8) < 1e-9).all()
