"""Reliability (issue 10): the clock. UTC everywhere and DST-free; the system clock jumping back and
forward under a live feed; daily limits and the daily summary exactly once per UTC day."""
from __future__ import annotations

import ast
import logging
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from tracer import ops
from tracer.config import load_settings
from tracer.store import Store

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "hybrid_crypto_trader.py"
H = timedelta(hours=1)



def connect(path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    c.row_factory = sqlite3.Row
    return c


from procs import ListHandler  # noqa: E402
from envs import agent_env


def quiet_logger(name: str) -> tuple[logging.Logger, ListHandler]:
    log = logging.getLogger(name)
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    h = ListHandler()
    log.addHandler(h)
    return log, h


# --- UTC everywhere, DST-free --------------------------------------------------------------------------
# What a run decided, without wall-clock columns (started_at, updated_at, sent_at...): must not depend on TZ.
DECISIONS = {
    "runs": "SELECT agent, cycle, clock, symbols, skipped, orders, fills, round(cash, 6), round(equity, 6), status, "
            "note FROM runs ORDER BY id",
    "signals": "SELECT symbol, ts, action, decision, decision_reason, round(quality, 9), round(conviction, 9), "
               "regime, round(size_fraction, 9) FROM signals ORDER BY id",
    "orders": "SELECT client_order_id, symbol, side, round(qty, 10), purpose, state, created_at FROM orders ORDER BY id",
    "fills": "SELECT client_order_id, round(qty, 10), round(price, 8), round(fee, 8), ts FROM fills ORDER BY id",
    "trades": "SELECT entry_order_id, exit_order_id, entry_ts, exit_ts, exit_reason, round(pnl, 6) FROM trades ORDER BY id",
    "risk_events": "SELECT ts, symbol, rule, detail_json FROM risk_events ORDER BY id",
    "accounts": "SELECT agent, round(cash, 6), day, round(day_start_equity, 6) FROM accounts",
    "notifications": "SELECT kind, message FROM notifications WHERE kind IN ('daily_summary', 'trade_opened', "
                     "'trade_closed', 'fill') ORDER BY id",
}


def decisions(db: Path) -> dict[str, list[tuple]]:
    c = connect(db)
    try:
        return {k: [tuple(r) for r in c.execute(q)] for k, q in DECISIONS.items()}
    finally:
        c.close()


def run_in_tz(tmp: Path, tz: str, start: str, cycles: int) -> dict[str, list[tuple]]:
    tmp.mkdir(parents=True, exist_ok=True)
    env = agent_env(tmp, TZ=tz, TB_REPLAY_START=start, TB_PROFILE="phase1c")   # a profile that trades here
    r = subprocess.run([sys.executable, str(SCRIPT), "--cycles", str(cycles)], cwd=tmp, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return decisions(tmp / "state" / "tracer.db")


def _tz_runs(tmp_path, start: str, cycles: int, zones: tuple[str, ...]):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:     # the agents run as processes, two at a time
        got = dict(zip(("UTC",) + zones, pool.map(
            lambda tz: run_in_tz(tmp_path / tz.replace("/", "_"), tz, start, cycles), ("UTC",) + zones)))
    base = got["UTC"]
    assert len(base["runs"]) == cycles and base["orders"], "the window should trade"
    return base, {tz: [k for k in DECISIONS if got[tz][k] != base[k]] for tz in zones}


def test_same_decisions_in_every_timezone_across_dst_and_midnight(tmp_path, reliability):
    """26 cycles over the US DST change (2022-03-13 07:00Z) and a UTC midnight, run with TZ=UTC,
    America/New_York and Australia/Lord_Howe (+10:30/+11, a half-hour DST shift): the same DB."""
    zones = ("America/New_York", "Australia/Lord_Howe")
    base, diffs = _tz_runs(tmp_path, "2022-03-12T20:00:00Z", 26, zones)
    assert all(not d for d in diffs.values()), diffs
    clocks = [r[2] for r in base["runs"]]
    assert clocks[0] <= "2022-03-13T07:00:00Z" <= clocks[-1] and len({c[:10] for c in clocks}) >= 2
    reliability("clock: timezone and DST independence", trials=len(zones) + 1, ok=True,
                zones="UTC," + ",".join(zones), cycles=26, orders=len(base["orders"]), signals=len(base["signals"]),
                tables_compared=",".join(DECISIONS), differing_tables=0,
                checked="the hybrid agent over the US DST switch and a UTC midnight under TZ=UTC, America/New_York, "
                        "Australia/Lord_Howe: identical runs, signals, orders, fills, trades, risk events, account "
                        "day/day-start equity and daily summaries")


@pytest.mark.long
def test_same_decisions_in_every_timezone_long(tmp_path, reliability):
    """Long: 10 days over Lord Howe's DST end (2022-04-02 15:00Z), with more zones."""
    zones = ("America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Chatham")
    base, diffs = _tz_runs(tmp_path, "2022-03-28T00:00:00Z", 240, zones)
    assert all(not d for d in diffs.values()), diffs
    reliability("clock: timezone and DST independence (long)", trials=len(zones) + 1, ok=True, cycles=240,
                zones="UTC," + ",".join(zones), orders=len(base["orders"]), differing_tables=0,
                checked="240 cycles over Lord Howe's DST end under 5 zones: identical decisions")


# Calls that read the local time zone or give naive datetimes: none may appear in the cycle path.
LOCAL_TIME_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "fromtimestamp"),
                    ("datetime", "utcfromtimestamp"), ("date", "today"), ("datetime", "today"),
                    ("time", "localtime"), ("time", "mktime"), ("time", "strftime"), ("time", "ctime")}
CYCLE_PATH = ["tracer/agents", "tracer/data/feed.py", "tracer/data/replay.py", "tracer/data/live.py",
              "tracer/data/validation.py", "tracer/db.py", "tracer/execution/paper.py",
              "tracer/execution/paper_futures.py", "tracer/execution/paper_ledger.py", "tracer/execution/exits.py",
              "tracer/execution/broker.py", "tracer/risk", "tracer/signals", "tracer/notify/outbox.py",
              "tracer/notify/messages.py", "tracer/notify/stats.py", "tracer/sentiment/narrative.py"]


def test_no_naive_or_local_time_in_the_cycle_path(reliability):
    bad, files = [], 0
    for entry in CYCLE_PATH:
        p = ROOT / entry
        for f in ([p] if p.is_file() else sorted(p.rglob("*.py"))):
            files += 1
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name)):
                    continue
                key = (node.func.value.id, node.func.attr)
                if key not in LOCAL_TIME_CALLS:
                    continue
                # datetime.now(timezone.utc) / fromtimestamp(x, tz=...) are fine: aware UTC
                has_tz = len(node.args) >= (1 if key[1] == "now" else 2) or any(k.arg == "tz" for k in node.keywords)
                if key[1] in ("now", "fromtimestamp") and has_tz:
                    continue
                bad.append(f"{f.relative_to(ROOT)}:{node.lineno}: {key[0]}.{key[1]}")
    assert not bad, bad
    reliability("clock: no local or naive time in the cycle path", trials=files, ok=True, files_scanned=files,
                findings=0, checked="AST scan of the cycle path for datetime.now() without tz, utcnow, fromtimestamp "
                                    "without tz, date.today, time.localtime/mktime/strftime/ctime")


# --- the system clock jumping back and forward (live feed) --------------------------------------
class FakeWall:
    """The system clock, with jumps. ``sleep`` advances it (the live feed waits for bar closes)."""

    def __init__(self, t: datetime):
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += timedelta(seconds=max(s, 0.0))


class BundledSource:
    """A bar source serving the bundled candles up to ``now`` (what a venue would answer)."""
    name = "bundled"

    def __init__(self, frames: dict[str, pd.DataFrame]):
        self.frames = frames

    def fetch(self, symbol, interval, start, end):
        df = self.frames[symbol]
        return df[(df.index >= pd.Timestamp(start)) & (df.index < pd.Timestamp(end))]


def test_wall_clock_jumps_back_2h_and_forward_26h_under_a_live_feed(tmp_path, monkeypatch, reliability):
    from tracer.agents.hybrid import HybridPolicy
    from tracer.agents.loop import AgentLoop
    from tracer.data.live import LiveFeed
    from tracer.data.replay import ReplayFeed
    from tracer.data.sources.chain import SourceChain
    from tracer.execution.paper import PaperSpotBroker
    from tracer.sentiment.factory import make_scorer
    import tracer.agents.loop as loop_mod
    import tracer.store.trading as db_mod

    symbols = ["BTC/USD", "ETH/USD", "SOL/USD"]
    settings = load_settings(environ=agent_env(tmp_path, TB_SYMBOLS=",".join(symbols)), dotenv_path=None)
    replay = ReplayFeed(symbols)
    frames = {s: replay._series[s].frame for s in symbols}
    wall = FakeWall(datetime(2022, 2, 1, 20, 0, 5, tzinfo=timezone.utc))
    # the agent's own wall-clock stamps (heartbeats, started_at) follow the same fake system clock
    monkeypatch.setattr(db_mod, "utcnow", wall)        # heartbeats, runs
    monkeypatch.setattr(loop_mod, "utcnow", wall)
    feed = LiveFeed(symbols, SourceChain([BundledSource(frames)]), [], interval=H, lookback=settings.lookback_bars,
                    min_bars=settings.min_bars, clock=wall, sleep=wall.sleep, settle=timedelta(seconds=5))
    log, h = quiet_logger("rel_clock.live")
    store = Store(settings.db_path)
    broker = PaperSpotBroker("hybrid", settings.hybrid_capital, settings.fee_bps, settings.slippage_bps, H)
    bars_seen: dict[str, list[datetime]] = {s: [] for s in symbols}
    real_on_bar = broker.on_bar

    def on_bar(bar):
        bars_seen[bar.symbol].append(bar.ts)
        return real_on_bar(bar)
    broker.on_bar = on_bar
    loop = AgentLoop("hybrid", settings, feed, broker, store, make_scorer(settings, log, store),
                     HybridPolicy(settings), log, settings.hybrid_capital)
    loop.wait_heartbeat_s = 300.0        # fewer fsyncs in the test; the default is 60 s

    # jumps keyed on the cycles done: back 2 h after cycle 5 (across midnight), forward 26 h after cycle 12
    hb_ages: list[float] = []
    real_snapshot = feed.snapshot
    state = {"cycles": 0, "back": None, "fwd": None}

    def snapshot(now):
        row = store.conn.execute("SELECT ts FROM heartbeats WHERE agent='hybrid'").fetchone()
        if row is not None:
            hb_ages.append((wall() - ops._parse_iso(row[0])).total_seconds())
        state["cycles"] += 1
        return real_snapshot(now)
    feed.snapshot = snapshot

    def sleep(s):
        row = store.conn.execute("SELECT ts FROM heartbeats WHERE agent='hybrid'").fetchone()
        if row is not None:       # what the watchdog would see while the agent waits
            hb_ages.append((wall() - ops._parse_iso(row[0])).total_seconds())
        if state["cycles"] == 5 and state["back"] is None:
            state["back"] = wall()
            wall.t -= timedelta(hours=2)
        elif state["cycles"] == 12 and state["fwd"] is None:
            state["fwd"] = wall()
            wall.t += timedelta(hours=26)
            return                      # the jump happened while waiting: the feed looks at the clock again
        wall.sleep(s)
    feed.sleep = sleep
    try:
        summary = loop.run(cycles=20)
    finally:
        store.close()

    c = connect(Path(settings.db_path))
    runs = [dict(r) for r in c.execute("SELECT cycle, clock, note FROM runs ORDER BY id")]
    clocks = [datetime.fromisoformat(r["clock"].replace("Z", "+00:00")) for r in runs]
    assert summary["cycles"] == len(runs) == 20
    assert len(set(clocks)) == len(clocks) and clocks == sorted(clocks), "a cycle processed twice or out of order"
    steps = [b - a for a, b in zip(clocks, clocks[1:])]
    # the back jump cost no cycle and repeated none; the forward jump is the only gap, and it is recorded
    # the +26 h jump happens while the feed waits for the 13th close: that close is run at once, then the clock
    # goes to the latest close at the new wall time (25 h later: 24 bars never evaluated)
    assert steps.count(H) == len(steps) - 1 and steps[12] == 25 * H, " ".join(f"{c:%d/%H}+{s}" for c, s in zip(clocks[1:], steps))
    gap_notes = [r for r in runs if r["note"] and r["note"].startswith("clock_gap")]
    assert len(gap_notes) == 1 and gap_notes[0]["cycle"] == 14 and "24 bar(s)" in gap_notes[0]["note"], gap_notes
    assert sum("event=clock_gap" in ln for ln in h.lines) == 1
    # the broker saw every bar exactly once, the 25 never evaluated included (stops and fills on them)
    for sym, seen in bars_seen.items():
        assert len(seen) == len(set(seen)) and all(b - a == H for a, b in zip(seen, seen[1:])), sym
        assert seen[-1] == clocks[-1] - H
    # heartbeats: written every minute while the agent waits for the next close, so the age the watchdog sees
    # stays under a minute and change; when the clock went back it is negative (shown 0s, never "hung"); after
    # the forward jump the next cycle runs at once (no wait), so an old-looking heartbeat lasts one cycle only
    limit = settings.watchdog_max_heartbeat_age_min * 60
    assert min(hb_ages) < 0 and ops.human_age(min(hb_ages)) == "0s"
    over = [a for a in hb_ages if a > loop.wait_heartbeat_s + 2]
    assert len(over) == 1 and over[0] >= 26 * 3600, over
    assert max(a for a in hb_ages if a not in over) <= limit
    # daily resets: one per UTC day the clock reached, the skipped day included in the summaries
    days = sorted({t.strftime("%Y-%m-%d") for t in clocks})
    day_starts = [ln for ln in h.lines if "event=day_start" in ln]
    assert len(day_starts) == len(days), (day_starts, days)
    summaries = [r[0] for r in c.execute("SELECT message FROM notifications WHERE kind='daily_summary' AND "
                                          "channel='console' ORDER BY id")]
    first, last = clocks[0].date(), clocks[-1].date()
    assert len(summaries) == (last - first).days, summaries
    c.close()
    reliability("clock: system clock jumps (live feed)", trials=2, ok=True, faults_injected=2, recovered=True,
                cycles=len(runs), jump_back_h=2, jump_forward_h=26, bars_not_evaluated_recorded=24,
                duplicate_cycles=0, silent_gaps=0, min_heartbeat_age_s=round(min(hb_ages), 1),
                daily_summaries=len(summaries), day_starts=len(day_starts),
                checked="LiveFeed driven by a fake system clock jumping back 2 h across midnight and forward 26 h: "
                        "no clock processed twice or out of order, the forward gap recorded in runs.note and the "
                        "log, every bar given to the broker once, heartbeat age never negative-hung, one day reset "
                        "per UTC day and one summary per ended UTC day (the skipped one included)")


# --- daily limits and summary: exactly once per UTC day ------------------------------------------
def in_process(tmp: Path, name: str, start: str):
    from tracer.agents.hybrid import build
    settings = load_settings(environ=agent_env(tmp, TB_REPLAY_START=start), dotenv_path=None)
    log, h = quiet_logger(name)
    return build(settings, log), h, settings


def test_daily_reset_and_summary_once_per_utc_day_across_restarts_at_midnight(tmp_path, reliability):
    start, total = "2022-01-11T20:00:00Z", 56          # 20:00 on the 11th to 03:00 on the 14th: 4 UTC days
    a_tmp, b_tmp = tmp_path / "straight", tmp_path / "restarts"
    loop, ha, _ = in_process(a_tmp, "rel_clock.a", start)
    try:
        loop.run(cycles=total)
    finally:
        loop.store.close()
    # the same cycles with restarts: after 23:00 (next cycle is midnight), after 00:00 (the midnight cycle
    # was the last one committed), after the next 00:00, and one more later
    segments, lines = [4, 1, 24, 14, total - 43], []
    for i, n in enumerate(segments):
        loop, hb, _ = in_process(b_tmp, f"rel_clock.b{i}", start)
        try:
            loop.run(cycles=n)
        finally:
            loop.store.close()
        lines += hb.lines
    a, b = connect(a_tmp / "state" / "tracer.db"), connect(b_tmp / "state" / "tracer.db")
    try:
        clocks = [r[0] for r in b.execute("SELECT clock FROM runs ORDER BY clock")]
        assert [r[0] for r in a.execute("SELECT clock FROM runs ORDER BY clock")] == clocks
        assert clocks[3] == "2022-01-11T23:00:00Z" and clocks[4] == "2022-01-12T00:00:00Z"
        days = sorted({c[:10] for c in clocks})
        assert len(days) == 4
        resets_a = [ln for ln in ha.lines if "event=day_start" in ln]
        resets_b = [ln for ln in lines if "event=day_start" in ln]
        assert len(resets_a) == len(resets_b) == len(days), (resets_a, resets_b)
        q_sum = "SELECT message FROM notifications WHERE kind='daily_summary' AND channel='console' ORDER BY id"
        sums_a, sums_b = [r[0] for r in a.execute(q_sum)], [r[0] for r in b.execute(q_sum)]
        assert sums_a == sums_b and len(sums_b) == len(days) - 1
        for d in days[:-1]:
            assert sum(d in s for s in sums_b) == 1, d
        # the limits behave the same: same day-start equity, same entries per day (within the cap), same orders
        q_acct = "SELECT day, round(day_start_equity, 6), round(cash, 6) FROM accounts"
        assert tuple(a.execute(q_acct).fetchone()) == tuple(b.execute(q_acct).fetchone())
        q_ord = "SELECT client_order_id, state FROM orders ORDER BY client_order_id"
        assert [tuple(r) for r in a.execute(q_ord)] == [tuple(r) for r in b.execute(q_ord)]
        per_day = b.execute("SELECT substr(created_at,1,10) d, COUNT(*) FROM orders WHERE purpose='entry' AND "
                            "state!='rejected' GROUP BY d").fetchall()
        settings = load_settings(environ=agent_env(b_tmp), dotenv_path=None)
        assert all(n <= settings.max_trades_per_day for _, n in per_day)
        n_orders = len(b.execute(q_ord).fetchall())
    finally:
        a.close()
        b.close()
    reliability("clock: daily reset once per UTC day (restarts at midnight)", trials=len(segments), ok=True,
                days=len(days), day_resets=len(resets_b), daily_summaries=len(sums_b), restarts=len(segments) - 1,
                orders=n_orders,
                checked="56 replay cycles over 4 UTC days, straight and with restarts after 23:00 and after 00:00: "
                        "day resets = 4, summaries = 3 (one per ended day) in both, same day-start equity, cash and "
                        "orders; entries per UTC day within the cap")


def test_clock_going_back_over_midnight_does_not_reset_again(tmp_path, reliability):
    """The loop never runs an older clock (a live feed waits for the next close), but the day roll and the
    summary must not depend on that: fed a clock back over midnight they do nothing."""
    from tracer.notify.outbox import channels, enqueue_periodic
    loop, h, settings = in_process(tmp_path, "rel_clock.back", "2022-01-11T22:00:00Z")
    try:
        loop.run(cycles=4)                                  # 22:00, 23:00, 00:00 (new day), 01:00
        day, dse = loop.day, loop.day_start_equity
        assert day == "2022-01-12"
        loop._roll_day(datetime(2022, 1, 11, 23, 30, tzinfo=timezone.utc))        # back over midnight
        assert (loop.day, loop.day_start_equity) == (day, dse)
        loop._roll_day(datetime(2022, 1, 12, 2, 0, tzinfo=timezone.utc).astimezone(  # same instant, other zone
            timezone(timedelta(hours=-5))))
        assert (loop.day, loop.day_start_equity) == (day, dse)
        store = loop.store
        ids = enqueue_periodic(store, settings, "hybrid", 7, datetime(2022, 1, 11, 23, 0, tzinfo=timezone.utc),
                               datetime(2022, 1, 12, 1, 0, tzinfo=timezone.utc), 1.0, 0)
        assert ids == []
        before = store.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        n_summaries = store.conn.execute("SELECT COUNT(*) FROM notifications WHERE kind='daily_summary'").fetchone()[0]
    finally:
        loop.store.close()
    assert before == 4 and n_summaries == len(channels(settings))      # the one for 2022-01-11, per channel
    assert sum("event=day_start" in ln for ln in h.lines) == 2
    reliability("clock: going back over midnight", trials=3, ok=True, day_resets=2, extra_resets=0,
                extra_summaries=0,
                checked="after a run into a new UTC day, the day roll fed 23:30 of the previous day and the same "
                        "instant in UTC-5 keeps the day and day-start equity; the periodic enqueue with a clock "
                        "before the previous one queues no summary")
