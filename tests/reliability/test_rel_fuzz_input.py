"""Reliability (issue 10): bad input fuzzing -- market data, headlines, model answers, notification texts.

1. Bars: hypothesis-generated windows with NaN / inf / negative / zero prices and volumes, high < low,
   inconsistent OHLC, duplicate / out-of-order / misaligned / gapped timestamps, stale and future last bars,
   too few bars: :func:`tracer.data.validation.validate_bars` is compared with an independent, row-by-row
   oracle (bad <=> a reason with a documented prefix; never an exception). Then the same defects are written
   into a candles CSV of a temporary replay data directory and a real hybrid :class:`AgentLoop` runs on it
   cycle by cycle (BTC clean, ETH defective): the loop never crashes, every cycle whose ETH window the oracle
   calls bad has ``signals.decision='skipped'`` with ``bad_data: <reason>`` and no ``orders`` row for ETH, and
   every cycle it calls good is evaluated.
2. Headlines: Alpaca news items and Perplexity answers (non-JSON, wrong shapes, code fences, prose, nested
   junk, megabyte strings, None / empty / huge / control-character / bidi titles, wrong types, missing
   fields, naive / future / garbage / out-of-range times) through the parsers, and through the real
   :class:`PerplexityNews` client over HTTP against the fake Perplexity server inside a :class:`LiveFeed`:
   no exception, the good items kept, the bad ones dropped with ``news_items_dropped`` and its reasons
   logged, nothing published after ``now`` returned.
3. Notifications: hostile texts (very long, control characters, Markdown / HTML / Telegram markup,
   ``@everyone`` / ``@here`` / role and user mentions, bidi overrides, astral emoji) through
   :func:`tracer.notify.outbox.enqueue` and real delivery to the fake Discord and Telegram servers: every
   part within the platform limit (UTF-16 units), Discord mentions disabled (``allowed_mentions``) and every
   Markdown character escaped, Telegram plain text (no ``parse_mode``), the text delivered in order.

Hypothesis runs derandomized (the same examples every run; a failure prints its example).
"""
from __future__ import annotations

import csv
import json
import logging
import math
import re
import sqlite3
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tracer.data.validation import REASON_PREFIXES, validate_bars

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "tracer" / "data" / "bundled"
H = 3_600_000_000_000          # one hour in ns
T0 = pd.Timestamp("2022-01-03T00:00:00Z")
HS = dict(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
LONG = " long"

# =========================================================================== 1. bars

DEFECTS = ("nan_price", "inf_price", "neg_price", "zero_price", "nan_volume", "inf_volume", "neg_volume",
           "high_below_low", "high_below_close", "duplicate", "out_of_order", "gap", "misaligned", "empty_cell")


def oracle(ts: list[int], rows: list[list[float]], now_ns: int, stale_ns: int, min_bars: int,
           max_gap_bars: int | None = None) -> bool:
    """True when the window is fit to trade on: the rules of the README, checked row by row (independent of
    tracer.data.validation). ``max_gap_bars``: the gap policy (a hole of up to that many missing bars is
    fine, and the newest bar must be the last one closed before now); None: the strict rules."""
    if len(ts) < max(min_bars, 1):
        return False
    for o, h, lo, c, v in rows:
        if not all(math.isfinite(x) for x in (o, h, lo, c, v)):
            return False
        if min(o, h, lo, c) <= 0 or v < 0 or h < lo or h < max(o, c) or lo > min(o, c):
            return False
    for a, b in zip(ts, ts[1:]):
        if max_gap_bars is None and b - a != H:
            return False
        if max_gap_bars is not None and (b - a <= 0 or (b - a) % H or (b - a) // H - 1 > max_gap_bars):
            return False
    last_close = ts[-1] + H
    fresh = max_gap_bars is None or now_ns - last_close < H
    return last_close <= now_ns and now_ns - last_close <= stale_ns and fresh


def clean_rows(n: int, seed: int) -> tuple[list[int], list[list[float]]]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    rows = []
    for i in range(n):
        o = close[i - 1] if i else close[0]
        c = close[i]
        h = max(o, c) * (1 + abs(rng.normal(0, 0.003)))
        lo = min(o, c) * (1 - abs(rng.normal(0, 0.003)))
        rows.append([float(o), float(h), float(lo), float(c), float(abs(rng.normal(1000, 200)))])
    return [int(T0.value) + i * H for i in range(n)], rows


def inject(ts: list[int], rows: list[list[float]], defects: list[tuple[str, int, int]]) -> tuple[list, list]:
    """Apply ``(kind, row, column)`` defects (row taken modulo the length) to copies of ``ts``/``rows``."""
    ts, rows = list(ts), [list(r) for r in rows]
    for kind, i, col in defects:
        if not ts:
            break
        i %= len(ts)
        r = rows[i]
        if kind == "nan_price":
            r[col % 4] = float("nan")
        elif kind == "inf_price":
            r[col % 4] = float("inf") if col % 2 else float("-inf")
        elif kind == "neg_price":
            r[col % 4] = -abs(r[col % 4]) - 1
        elif kind == "zero_price":
            r[col % 4] = 0.0
        elif kind == "nan_volume":
            r[4] = float("nan")
        elif kind == "inf_volume":
            r[4] = float("inf")
        elif kind == "neg_volume":
            r[4] = -1.0 - col
        elif kind == "high_below_low":
            r[1], r[2] = min(r[1], r[2]), max(r[1], r[2]) + 0.5
        elif kind == "high_below_close":
            r[1] = min(r[0], r[3]) * 0.999
            r[2] = min(r[2], r[1])
        elif kind == "duplicate":
            ts.insert(i + 1, ts[i])
            rows.insert(i + 1, list(r))
        elif kind == "out_of_order" and i + 1 < len(ts):
            ts[i], ts[i + 1] = ts[i + 1], ts[i]
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
        elif kind == "gap":
            k = 1 + col % 3
            del ts[i:i + k]
            del rows[i:i + k]
        elif kind == "misaligned":
            ts[i] += H // 2
        elif kind == "empty_cell":
            r[col % 5] = float("nan")          # written as an empty CSV cell
    return ts, rows


def frame(ts: list[int], rows: list[list[float]]) -> pd.DataFrame:
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(ts, dtype=np.int64), unit="ns", utc=True)).as_unit("ns")
    return pd.DataFrame(np.asarray(rows, dtype=float).reshape(len(ts), 5), index=idx.rename("ts"),
                        columns=["open", "high", "low", "close", "volume"])


DEFECT_LISTS = st.lists(st.tuples(st.sampled_from(DEFECTS), st.integers(0, 10 ** 6), st.integers(0, 7)),
                        max_size=3)


def _validation_fuzz(n_examples: int, reliability) -> None:
    stats = Counter()

    @settings(max_examples=n_examples, **HS)
    @given(n=st.integers(0, 80), seed=st.integers(0, 2 ** 16), defects=DEFECT_LISTS,
           age_min=st.sampled_from([0, 0, 0, 30, 59, 60, 61, 90, 91, 240, -1, -60]),
           min_bars=st.integers(1, 60), stale_min=st.sampled_from([60, 90, 180]),
           max_gap=st.sampled_from([None, None, 0, 1, 2, 6]))
    def one(n, seed, defects, age_min, min_bars, stale_min, max_gap):
        stats["windows"] += 1
        ts, rows = inject(*clean_rows(n, seed), defects)
        last_close = (ts[-1] + H) if ts else int(T0.value)
        now_ns = last_close + age_min * 60_000_000_000
        now = pd.Timestamp(now_ns, tz="UTC").to_pydatetime()
        expected_ok = oracle(ts, rows, now_ns, stale_min * 60_000_000_000, min_bars, max_gap)
        reason = validate_bars(frame(ts, rows), now, timedelta(hours=1), timedelta(minutes=stale_min), min_bars,
                               max_gap)
        assert (reason is None) == expected_ok, (reason, defects, age_min, min_bars, n, max_gap)
        if reason is not None:
            assert reason.split(":")[0].split(" at")[0] in REASON_PREFIXES, reason
            stats["bad"] += 1
            stats["reason:" + reason.split(":")[0].split(" at")[0]] += 1
        else:
            stats["good"] += 1

    one()
    # and every defect kind on its own, at a few places (hypothesis favours the simpler draws)
    for kind in DEFECTS:
        for k in range(4):
            for max_gap in (None, 2):      # the strict rules and the gap policy
                one.hypothesis.inner_test(n=70, seed=k, defects=[(kind, 30 + 9 * k, k)], age_min=0, min_bars=30,
                                          stale_min=90, max_gap=max_gap)
    reliability(f"fuzz: bar windows with bad values and times (validation){LONG if n_examples > 200 else ''}",
                trials=stats["windows"], ok=True, inputs_fuzzed=stats["windows"],
                checked="validate_bars agrees with a row-by-row oracle; every bad window has a documented reason",
                windows=stats["windows"], bad_windows=stats["bad"], good_windows=stats["good"], crashes=0,
                reasons=",".join(sorted(k[7:] for k in stats if k.startswith("reason:"))))


def test_bar_windows_validation_matches_oracle(reliability):
    _validation_fuzz(150, reliability)


@pytest.mark.long
def test_bar_windows_validation_matches_oracle_long(reliability):
    _validation_fuzz(1500, reliability)


# --- end to end: a real hybrid AgentLoop on a replay data dir with a defective ETH file --------------------

N_BARS = 130
MIN_BARS, LOOKBACK = 30, 60


def _bundled(symbol_file: str, n: int) -> tuple[list[int], list[list[float]]]:
    df = pd.read_csv(BUNDLED / symbol_file, nrows=2000)
    df = df[df["timestamp"] >= "2021-10-05T00:00:00Z"].head(n)
    ts = [int(pd.Timestamp(t).value) for t in df["timestamp"]]
    return ts, df[["open", "high", "low", "close", "volume"]].astype(float).values.tolist()


def _write_candles(path: Path, ts: list[int], rows: list[list[float]], empty_cells: set[tuple[int, int]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "open", "high", "low", "close", "volume"])
        for i, (t, r) in enumerate(zip(ts, rows)):
            cells = ["" if (i, j) in empty_cells else repr(x) for j, x in enumerate(r)]
            w.writerow([pd.Timestamp(t, tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"), *cells])


HOSTILE_TITLES = [
    "ETH " + "to the moon " * 400, "ETH\x00 surges\x1b[2J as \u202eexploit\u202c hits", "ETH: **@everyone** <b>x</b>",
    "Ethereum rallies\r\nevent=fake_order symbol=ETH/USD", "ETH 💥" * 300, "   ", "ETH \u200b\u200b\u200b jumps",
]


def _write_headlines(path: Path, t_first: int) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["published_at", "source", "title", "symbols"])
        for k, title in enumerate(HOSTILE_TITLES * 3):
            t = pd.Timestamp(t_first + (k * 5 + 31) * H, tz="UTC")
            w.writerow([t.strftime("%Y-%m-%dT%H:%M:%SZ"), "Fuzz\tWire", title, "ETH"])
        for k in range(40):   # ordinary headlines, so the narrative has something
            t = pd.Timestamp(t_first + (k * 3 + 30) * H, tz="UTC")
            w.writerow([t.strftime("%Y-%m-%dT%H:%M:%SZ"), "Wire", ("Bitcoin jumps" if k % 2 else
                                                                  "Ethereum gains as buyers return"), ""])


def _run_agent_on(tmp: Path, eth_ts, eth_rows, empty: set[tuple[int, int]], cycles: int) -> dict:
    from tracer.agents.hybrid import build
    from tracer.config import load_settings

    data = tmp / "data"
    data.mkdir()
    btc_ts, btc_rows = _bundled("candles_1h_BTCUSDT.csv", N_BARS)
    _write_candles(data / "candles_1h_BTCUSDT.csv", btc_ts, btc_rows, set())
    _write_candles(data / "candles_1h_ETHUSDT.csv", eth_ts, eth_rows, empty)
    _write_headlines(data / "headlines.csv", btc_ts[0])
    s = load_settings({
        "TB_DATA_DIR": str(data), "TB_SYMBOLS": "BTC/USD,ETH/USD", "TB_DB_PATH": str(tmp / "t.db"),
        "TB_LOG_DIR": str(tmp / "logs"), "TB_STATE_DIR": str(tmp / "state"), "TB_REPLAY_START": "",
        "TB_MIN_BARS": str(MIN_BARS), "TB_LOOKBACK_BARS": str(LOOKBACK), "TB_SENTIMENT_SCORER": "lexicon",
        "TB_NOTIFY_CONSOLE": "false", "TB_MIN_SIGNAL_QUALITY": "0", "TB_MIN_CONVICTION_SCORE": "1",
        "TB_MAX_TRADES_PER_DAY": "1000", "TB_MAX_POSITIONS": "10", "TB_MAX_CORRELATION": "1",
        "TB_PORTFOLIO_VAR_LIMIT": "1", "TB_ACTIVE_PARAMS_PATH": str(tmp / "none.json"),
        "TB_NOTIFY_HEARTBEAT_EVERY": "0",
        "TB_PROFILE": "phase1c"}, None)    # a 60-bar window: the seed's hourly model (trend needs 240 bars)
    log = logging.getLogger("fuzz-input-agent")
    loop = build(s, log)
    try:
        summary = loop.run(cycles=cycles, interval_s=0)
    finally:
        loop.store.close()
    c = sqlite3.connect(tmp / "t.db")
    c.row_factory = sqlite3.Row
    try:
        runs = [dict(r) for r in c.execute("SELECT id, clock FROM runs WHERE agent='hybrid' ORDER BY id")]
        sigs = [dict(r) for r in c.execute("SELECT run_id, symbol, decision, decision_reason FROM signals")]
        orders = [dict(r) for r in c.execute("SELECT run_id, symbol, signal_id, purpose FROM orders")]
    finally:
        c.close()
    return {"summary": summary, "runs": runs, "signals": sigs, "orders": orders}


def _agent_fuzz(n_examples: int, reliability) -> None:
    stats = Counter()
    problems: list[str] = []

    @settings(max_examples=n_examples, **HS)
    @given(defects=st.lists(st.tuples(st.sampled_from(DEFECTS), st.integers(MIN_BARS, N_BARS - 1),
                                      st.integers(0, 7)), min_size=1, max_size=4),
           tail_cut=st.sampled_from([0, 0, 0, 5]))
    @example(defects=[("gap", 70, 1), ("neg_volume", 40, 0), ("inf_price", 100, 1)], tail_cut=0)
    @example(defects=[("out_of_order", 45, 0), ("high_below_low", 90, 0), ("zero_price", 115, 3)], tail_cut=5)
    @example(defects=[("duplicate", 50, 0), ("misaligned", 80, 0), ("empty_cell", 60, 4),
                      ("high_below_close", 100, 0), ("nan_volume", 110, 0)], tail_cut=0)
    def one(defects, tail_cut):
        stats["examples"] += 1
        eth_ts, eth_rows = _bundled("candles_1h_ETHUSDT.csv", N_BARS)
        empty = {(i % N_BARS, col % 5) for k, i, col in defects if k == "empty_cell"}
        ts, rows = inject(eth_ts, eth_rows, [d for d in defects if d[0] != "empty_cell"])
        for i, col in empty:
            if i < len(rows):
                rows[i][col] = float("nan")
        if tail_cut:                       # ETH stops early: stale or missing at the end
            ts, rows = ts[:-tail_cut], rows[:-tail_cut]
        stats["inputs_fuzzed"] += len(defects)
        with tempfile.TemporaryDirectory() as d:
            try:
                out = _run_agent_on(Path(d), ts, rows, {(i, c) for i, c in empty if i < len(rows)}, cycles=200)
            except Exception as e:  # noqa: BLE001 - the loop must never crash on bad data
                stats["crashes"] += 1
                problems.append(f"crash {type(e).__name__}: {e} for {defects}")
                return
        by_run = {r["id"]: pd.Timestamp(r["clock"]) for r in out["runs"]}
        eth = {s_["run_id"]: s_ for s_ in out["signals"] if s_["symbol"] == "ETH/USD"}
        # entries: a bad window decides nothing; a held position's stop or target may still fill on a sound bar of
        # it (the paper broker checks them on every bar, as the backtest does)
        eth_orders = {o["run_id"] for o in out["orders"]
                      if o["symbol"] == "ETH/USD" and o["run_id"] is not None and o["purpose"] == "entry"}
        stats["orders_total"] += len(out["orders"])
        for run_id, clock in by_run.items():
            now_ns = int(clock.value)
            cutoff = now_ns - H
            # the bars that opened in the last LOOKBACK hours, judged by the gap policy (TB_MAX_GAP_BARS=6)
            visible = [k for k, t in enumerate(ts) if now_ns - (LOOKBACK + 1) * H < t <= cutoff]
            ok = oracle([ts[k] for k in visible], [rows[k] for k in visible], now_ns, 90 * 60_000_000_000,
                        MIN_BARS, 6)
            row = eth.get(run_id)
            stats["cycles"] += 1
            if row is None:
                problems.append(f"run {run_id}: no ETH signal row (neither evaluated nor skipped)")
                continue
            if not ok:
                stats["bad_cycles"] += 1
                if row["decision"] != "skipped" or not row["decision_reason"].startswith("bad_data: "):
                    problems.append(f"run {run_id} {clock}: bad ETH window not skipped: {row} ({defects})")
                elif row["decision_reason"][10:].split(":")[0].split(" at")[0] not in REASON_PREFIXES:
                    problems.append(f"run {run_id}: undocumented reason {row['decision_reason']}")
                else:
                    stats["skipped_with_reason"] += 1
                if run_id in eth_orders:
                    stats["orders_from_bad_data"] += 1
                    problems.append(f"run {run_id} {clock}: ETH order from a bad window ({defects})")
            else:
                stats["good_cycles"] += 1
                if row["decision"] == "skipped":
                    problems.append(f"run {run_id} {clock}: good ETH window skipped: {row['decision_reason']}")
                stats["orders_from_good_eth"] += run_id in eth_orders

    one()
    ok = not problems
    reliability(f"fuzz: bad bars through the replay feed and the agent cycle{LONG if n_examples > 1 else ''}",
                trials=stats["examples"], ok=ok,
                checked="no crash of the loop; no order from bad data; every bad window skipped with a recorded "
                        "reason; good windows evaluated",
                inputs_fuzzed=stats["inputs_fuzzed"], cycles=stats["cycles"], bad_cycles=stats["bad_cycles"],
                skipped_with_reason=stats["skipped_with_reason"], good_cycles=stats["good_cycles"],
                crashes=stats["crashes"], orders_from_bad_data=stats["orders_from_bad_data"],
                orders_total=stats["orders_total"], orders_from_good_eth=stats["orders_from_good_eth"])
    assert ok, "\n".join(problems[:15])
    assert stats["bad_cycles"] > 0 and stats["orders_total"] > 0, stats


def test_bad_bars_through_the_agent_cycle(reliability):
    _agent_fuzz(1, reliability)          # + the 3 explicit examples


@pytest.mark.long
def test_bad_bars_through_the_agent_cycle_long(reliability):
    _agent_fuzz(12, reliability)


# =========================================================================== 2. headlines

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
GOOD = [{"title": f"Bitcoin good headline {k}", "source": "Reuters", "url": f"https://x/{k}",
         "published_at": (NOW - timedelta(hours=k + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")} for k in range(3)]

_JUNK = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30), st.floats(allow_nan=True),
              st.text(max_size=20),
              st.sampled_from(["", "   ", "\x00", "\u202e", "9999-12-31T23:59:59-01:00", "yesterday",
                               "2024-13-40T99:00:00Z", "2024-05-01T11:00:00", "2999-01-01T00:00:00Z"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
_TITLES = st.one_of(st.none(), st.just(""), st.just("   "), st.integers(), st.lists(st.text(max_size=3), max_size=2),
                    st.text(max_size=40), st.integers(1000, 200_000).map(lambda n: "B" * n),
                    st.sampled_from(["BTC\x00\x1b[31m\r\n", "\u202eBTC\u202c up", "**@everyone** <script>"]))
_TIMES = st.one_of(_JUNK, st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
                   .map(lambda d: d.isoformat()),
                   st.datetimes(timezones=st.just(timezone(timedelta(hours=-5))),
                                min_value=datetime(9999, 12, 31, 18)).map(lambda d: d.isoformat()))


def _bad_item() -> st.SearchStrategy:
    return st.one_of(
        _JUNK,
        st.fixed_dictionaries({"title": _TITLES, "published_at": _TIMES}, optional={"source": _JUNK, "url": _JUNK}),
        st.fixed_dictionaries({"headline": _TITLES, "created_at": _TIMES}, optional={"source": _JUNK, "url": _JUNK}),
    )


def _valid_headline(h, end: datetime) -> None:
    assert isinstance(h.title, str) and h.title.strip() and h.title == " ".join(h.title.split())
    assert h.published_at.tzinfo is not None and h.published_at.utcoffset() == timedelta(0)
    assert isinstance(h.source, str) and isinstance(h.url, str) and len(h.id) == 16


def _answer_text(bad: list, wrapper: int, pad: str) -> str:
    items = GOOD[:2] + bad + GOOD[2:]
    body = json.dumps(items, default=str)
    return [body, f"```json\n{body}\n```", f"Here you go:\n{body}\nHope it helps.",
            json.dumps({"headlines": items}, default=str), pad + body + pad,
            body[: len(body) // 2]][wrapper]


def _headline_parsers_fuzz(n_examples: int, reliability) -> None:
    from tracer.news.alpaca_news import parse_alpaca_news
    from tracer.news.perplexity import parse_headlines

    stats = Counter()

    @settings(max_examples=n_examples, **HS)
    @given(bad=st.lists(_bad_item(), max_size=5), wrapper=st.integers(0, 5),
           pad=st.sampled_from(["", "[" * 50, "{" * 3000, "x" * 1_000_000, "[1," * 2000, "```" * 500]),
           raw=st.one_of(st.text(max_size=200), st.binary(max_size=50).map(lambda b: b.decode("latin-1"))))
    def one(bad, wrapper, pad, raw):
        stats["examples"] += 1
        stats["inputs_fuzzed"] += len(bad) + 1
        # Perplexity: an answer with 3 good items around the bad ones (wrapper 5 cuts the array in half)
        drops: Counter = Counter()
        got = parse_headlines(_answer_text(bad, wrapper, pad), NOW, drops=drops)
        for h in got:
            _valid_headline(h, NOW)
        titles = {h.title for h in got}
        if wrapper != 5:
            assert {g["title"] for g in GOOD} <= titles, (wrapper, titles)
            stats["good_kept"] += 3
        kept_bad = len(got) - len({g["title"] for g in GOOD} & titles)
        stats["bad_dropped"] += max(0, len(bad) - kept_bad) if wrapper != 5 else 0
        # free text / binary junk never raises
        for h in parse_headlines(raw, NOW):
            _valid_headline(h, NOW)
        # Alpaca news items: the same junk in Alpaca's shape
        items = [{"headline": g["title"], "created_at": g["published_at"], "source": "benzinga"} for g in GOOD] + bad
        d2: Counter = Counter()
        got2 = parse_alpaca_news(items, d2)
        for h in got2:
            _valid_headline(h, NOW)
            assert h.source.startswith("alpaca")
        assert {g["title"] for g in GOOD} <= {h.title for h in got2}
        if len(got2) < len(items):
            assert sum(d2.values()) == len(items) - len(got2), (d2, len(items), len(got2))
        stats["alpaca_dropped_with_reason"] += sum(d2.values())
        parse_alpaca_news(bad)          # not a list of objects at all / junk
        parse_alpaca_news({"news": bad})

    one()
    reliability(f"fuzz: malformed headlines and model answers (parsers){LONG if n_examples > 100 else ''}",
                trials=stats["examples"], ok=True,
                checked="no exception; good items kept; bad items dropped with a counted reason",
                inputs_fuzzed=stats["inputs_fuzzed"], good_kept=stats["good_kept"],
                bad_dropped=stats["bad_dropped"], alpaca_dropped_with_reason=stats["alpaca_dropped_with_reason"],
                crashes=0)


def test_malformed_headlines_and_answers_parsers(reliability):
    _headline_parsers_fuzz(40, reliability)


@pytest.mark.long
def test_malformed_headlines_and_answers_parsers_long(reliability):
    _headline_parsers_fuzz(400, reliability)


def _perplexity_http_fuzz(n_examples: int, reliability, caplog) -> None:
    from fakes.perplexity import FakePerplexity
    from tracer.data.feed import Snapshot  # noqa: F401  (the feed's contract type)
    from tracer.data.live import LiveFeed
    from tracer.data.sources.chain import SourceChain
    from tracer.news.keys import KeyRing
    from tracer.news.perplexity import PerplexityNews

    stats = Counter()
    caplog.set_level(logging.INFO, logger="fuzz-pplx")
    with FakePerplexity({"k1": ["ok"]}) as fake:
        ring = KeyRing("perplexity", ("k1",), None)

        @settings(max_examples=n_examples, **HS)
        @given(bad=st.lists(_bad_item(), max_size=4), wrapper=st.integers(0, 5),
               pad=st.sampled_from(["", "x" * 1_000_000, "{" * 2000]),
               mode=st.sampled_from(["ok", "ok", "ok", "not_json", "raw"]),
               raw=st.text(max_size=100),
               future=st.sampled_from([0, 0, 1, 2]))
        @example(bad=[None, {"title": 5}], wrapper=0, pad="", mode="not_json", raw="", future=0)
        @example(bad=[], wrapper=0, pad="", mode="raw", raw="Sorry, I cannot find any news.", future=0)
        @example(bad=[{"title": "Bitcoin naive", "published_at": "2024-05-01T11:00:00"}], wrapper=1, pad="{" * 2000,
                 mode="ok", raw="", future=2)
        def one(bad, wrapper, pad, mode, raw, future):
            stats["examples"] += 1
            caplog.clear()
            extra = [{"title": f"Bitcoin from the future {k}", "source": "Wire",
                      "published_at": (NOW + timedelta(hours=k + 1)).isoformat()} for k in range(future)]
            fake.content = raw if mode == "raw" else _answer_text(bad + extra, wrapper, pad)
            fake.script["k1"] = ["not_json" if mode == "not_json" else "ok"]
            client = PerplexityNews(ring, base_url=fake.url, timeout_s=10, sleep=lambda s: None,
                                    logger=logging.getLogger("fuzz-pplx"))
            feed = LiveFeed(["BTC/USD"], SourceChain([]), [client], clock=lambda: NOW,
                            logger=logging.getLogger("fuzz-pplx"))
            got = feed.headlines(NOW)
            assert all(NOW - timedelta(hours=24) < h.published_at <= NOW for h in got)
            for h in got:
                _valid_headline(h, NOW)
            stats["future_dropped"] += future if mode == "ok" and wrapper != 5 else 0
            if mode == "ok" and wrapper != 5:
                assert {g["title"] for g in GOOD} <= {h.title for h in got}
                stats["good_kept"] += 3
            logs = caplog.text
            if mode == "not_json":
                assert "news_failed" in logs and "malformed body" in logs
                stats["malformed_bodies_logged"] += 1
            kept_bad = [h for h in got if h.title not in {g["title"] for g in GOOD}]
            if mode == "ok" and wrapper != 5 and len(kept_bad) + future < len(bad) + future:
                assert "news_items_dropped" in logs and "reasons=" in logs, logs[-500:]
                stats["drops_logged"] += 1

        one()
    reliability(f"fuzz: malformed Perplexity answers over HTTP (fake server){LONG if n_examples > 30 else ''}",
                trials=stats["examples"], ok=True, inputs_fuzzed=stats["examples"],
                checked="no crash; good headlines kept; bad items dropped with news_items_dropped reasons logged; "
                        "nothing after now returned",
                answers=stats["examples"], good_kept=stats["good_kept"], drops_logged=stats["drops_logged"],
                malformed_bodies_logged=stats["malformed_bodies_logged"],
                future_items=stats["future_dropped"], crashes=0)


def test_malformed_perplexity_answers_over_http(reliability, caplog):
    _perplexity_http_fuzz(20, reliability, caplog)


@pytest.mark.long
def test_malformed_perplexity_answers_over_http_long(reliability, caplog):
    _perplexity_http_fuzz(150, reliability, caplog)


# =========================================================================== 3. notifications

HOSTILE = st.sampled_from([
    "@everyone", "@here", "<@222222222222222222>", "<@&333333333333333333>", "<#111>", "**bold**", "__u__",
    "`code`", "```\nblock\n```", "||spoiler||", "> quote\n", "# heading\n", "-# small\n", "[link](http://evil.x)",
    "<b>html</b>", "<a href='javascript:x'>y</a>", "*tg bold* _tg it_ [x](tg://user?id=1)", "\u202eevil\u202c",
    "\x00", "\x1b[2J", "\r\n", "\t", "💥", "\u200b", "\\", "\\*", "&amp;", "~~s~~", "🇺🇸" * 5, "\U0001F9D1\u200d\U0001F680",
])
TEXTS = st.one_of(
    st.lists(st.one_of(HOSTILE, st.text(max_size=30)), max_size=40).map("".join),
    st.tuples(st.lists(HOSTILE, min_size=1, max_size=5).map("".join), st.integers(1000, 60000))
    .map(lambda t: (t[0] + " ") * (t[1] // (len(t[0]) + 1) + 1)),
    st.integers(2000, 30000).map(lambda n: "😀" * n),
)
_SPECIAL = set("\\*_~`|>#[]<")
_PREFIX = re.compile(r"^\((\d+)/(\d+)\) ")


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s, flags=re.DOTALL)


def _all_escaped(s: str) -> bool:
    i = 0
    while i < len(s):
        if s[i] == "\\":
            if i + 1 >= len(s) or s[i + 1] not in _SPECIAL:
                return False
            i += 2
            continue
        if s[i] in _SPECIAL:
            return False
        i += 1
    return True


def _notify_fuzz(n_examples: int, reliability, tmp_path) -> None:
    from fakes.discord import FakeDiscord
    from fakes.telegram import FakeTelegram
    from test_notify import deliver, dsettings, put, tsettings
    from tracer.notify.format import DISCORD_LIMIT, MAX_PARTS, TELEGRAM_LIMIT, utf16_len
    from tracer.notify.messages import agent_error_text

    stats = Counter()
    counter = iter(range(10 ** 6))
    with FakeDiscord() as discord, FakeTelegram() as telegram:
        @settings(max_examples=n_examples, **HS)
        @given(text=TEXTS, as_error=st.booleans())
        def one(text, as_error):
            stats["messages"] += 1
            d = tmp_path / f"n{next(counter)}"
            d.mkdir()
            msg = agent_error_text("Boom<@&1>", text) if as_error else text
            if not msg.strip():
                return
            n_d, n_t = len(discord.requests), len(telegram.sent)
            sd = dsettings(d, discord)
            put(sd, "agent_error", msg)
            out, _ = deliver(sd, "discord")
            assert [o.status for o in out] == ["sent"], out
            parts = discord.requests[n_d:]
            assert 1 <= len(parts) <= MAX_PARTS
            joined = []
            for k, req in enumerate(parts, 1):
                p = req["json"]
                c = p["content"]
                assert utf16_len(c) <= DISCORD_LIMIT, utf16_len(c)
                assert p["allowed_mentions"] == {"parse": []}, p
                assert "parse_mode" not in p and "embeds" not in p or not p.get("embeds")
                m = _PREFIX.match(c) if len(parts) > 1 else None
                if len(parts) > 1:
                    assert m and int(m.group(1)) == k and int(m.group(2)) == len(parts), c[:20]
                    c = c[m.end():]
                assert _all_escaped(c), c[:200]
                joined.append(_unescape(c))
                stats["discord_parts"] += 1
            whole = "".join(joined).replace("\n", "")
            expect = ("[hybrid] " + msg).replace("\n", "")
            if "truncated:" not in whole:
                assert whole.replace(" ", "") == expect.strip().replace(" ", ""), (whole[:100], expect[:100])
            st_ = tsettings(d, telegram)
            put(st_, "agent_error", msg)
            out, _ = deliver(st_, "telegram")
            assert [o.status for o in out] == ["sent"], out
            tparts = telegram.sent[n_t:]
            assert 1 <= len(tparts) <= MAX_PARTS
            for m in tparts:
                assert utf16_len(m["text"]) <= TELEGRAM_LIMIT and "parse_mode" not in m
                assert "entities" not in m
                stats["telegram_parts"] += 1
            stats["mentions_present"] += any(x in msg for x in ("@everyone", "@here", "<@"))
            stats["delivered"] += 1

        one()
    reliability(f"fuzz: hostile notification texts to Discord and Telegram{LONG if n_examples > 30 else ''}",
                trials=stats["messages"], ok=True, inputs_fuzzed=stats["messages"],
                checked="every part within the limit; no mention pings (allowed_mentions parse []); every Discord "
                        "Markdown character escaped; Telegram plain text; no crash",
                messages=stats["messages"], delivered=stats["delivered"], discord_parts=stats["discord_parts"],
                telegram_parts=stats["telegram_parts"], with_mentions=stats["mentions_present"], crashes=0,
                mention_pings_allowed=0)


def test_hostile_notification_texts(reliability, tmp_path):
    _notify_fuzz(15, reliability, tmp_path)


@pytest.mark.long
def test_hostile_notification_texts_long(reliability, tmp_path):
    _notify_fuzz(60, reliability, tmp_path)


# =========================================================================== 1b. live bar sources

def _sources_fuzz(n_examples: int, reliability) -> None:
    """Malformed answers of the live bar sources (Alpaca data, Binance spot/USD-M, Yahoo, CoinGecko fakes):
    a source raises only ``SourceError``; the failover chain raises only ``ChainFailure`` (each reason
    recorded) or returns bars that pass validation."""
    from fakes.alpaca_data import FakeAlpacaData
    from fakes.binance import FakeBinance
    from fakes.coingecko import FakeCoinGecko
    from fakes.yahoo import FakeYahoo
    from test_rel_fuzz_venue import MUTATIONS, Malformer, Mutation
    from tracer.data.sources.alpaca import AlpacaSource
    from tracer.data.sources.base import SourceError
    from tracer.data.sources.binance import BinanceSource
    from tracer.data.sources.chain import ChainFailure, SourceChain
    from tracer.data.sources.coingecko import CoinGeckoSource
    from tracer.data.sources.yahoo import YahooSource

    now = datetime(2024, 3, 1, 12, 20, tzinfo=timezone.utc)
    now_s = int(now.timestamp())
    h = timedelta(hours=1)
    specs = [(FakeAlpacaData, lambda u: AlpacaSource("k", "s", base_url=u), "GET /v1beta3/crypto/us/bars"),
             (FakeBinance, lambda u: BinanceSource("spot", u), "GET /api/v3/klines"),
             (FakeBinance, lambda u: BinanceSource("usdm", u), "GET /fapi/v1/klines"),
             (FakeYahoo, lambda u: YahooSource(u), "GET /v8/finance/chart/BTC-USD"),
             (FakeCoinGecko, lambda u: CoinGeckoSource(u), "GET /api/v3/coins/bitcoin/market_chart/range")]
    stats = Counter()
    problems: list[str] = []
    for fake_cls, make, target in specs:
        with fake_cls(now_s) as fake:
            mal = Malformer(fake)
            src = make(fake.url)
            chain = SourceChain([src], threshold=10 ** 6)

            @settings(max_examples=n_examples, **HS)
            @given(m=MUTATIONS)
            def one(m: Mutation) -> None:
                stats["answers"] += 1
                mal.target, mal.mutation = target, m
                try:
                    try:
                        src.fetch("BTC/USD", h, now - 30 * h, now)
                        stats["frames"] += 1
                    except SourceError as e:
                        stats["source_errors"] += 1
                        assert e.reason, e
                    except Exception as e:  # noqa: BLE001
                        problems.append(f"{src.name} {m.short()}: untyped {type(e).__name__}: {e}"[:300])
                    try:
                        got = chain.fetch("BTC/USD", now, h, 24, 12)
                        assert validate_bars(got.bars, now, h, None, 12) is None
                        stats["chain_ok"] += 1
                    except ChainFailure as e:
                        stats["chain_failures_with_reason"] += bool(e.attempts and e.attempts[0][1])
                    except Exception as e:  # noqa: BLE001
                        problems.append(f"chain {src.name} {m.short()}: {type(e).__name__}: {e}"[:300])
                finally:
                    mal.mutation = None

            one()
            stats["malformed_answers_served"] += mal.hits
    # Alpaca news over the same fake: only headlines or nothing, never an exception, never an endless loop
    from tracer.news.alpaca_news import AlpacaNews
    with FakeAlpacaData(now_s) as fake:
        mal = Malformer(fake)
        news = AlpacaNews("k", "s", base_url=fake.url, logger=logging.getLogger("fuzz-news"))

        @settings(max_examples=n_examples, **HS)
        @given(m=MUTATIONS)
        def one_news(m: Mutation) -> None:
            stats["news_answers"] += 1
            mal.target, mal.mutation = "GET /v1beta1/news", m
            try:
                for hl in news.fetch(["BTC/USD"], now - 24 * h, now):
                    _valid_headline(hl, now)
            except Exception as e:  # noqa: BLE001
                problems.append(f"alpaca news {m.short()}: {type(e).__name__}: {e}"[:300])
            finally:
                mal.mutation = None

        one_news()
    ok = not problems
    reliability(f"fuzz: malformed live bar source answers{LONG if n_examples > 15 else ''}", trials=stats["answers"],
                inputs_fuzzed=stats["answers"], ok=ok, checked="a source raises only SourceError; the chain only ChainFailure with reasons, or "
                               "validated bars", sources=len(specs), **stats, untyped_errors=len(problems))
    assert ok, "\n".join(problems[:15])


def test_malformed_bar_source_answers(reliability):
    _sources_fuzz(12, reliability)


@pytest.mark.long
def test_malformed_bar_source_answers_long(reliability):
    _sources_fuzz(60, reliability)
