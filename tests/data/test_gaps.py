"""The gap policy (tracer.data.gaps) on a real exchange hole: Binance published no bars opening
2021-08-13 02:00-05:00. Live (a real BinanceSource over HTTP), replay and backtest make the same
decisions around it; a hole longer than TB_MAX_GAP_BARS is skipped, recorded and alerted once, and
decisions resume when it has left the window; a candle folder without headlines.csv replays price-only."""
from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fakes.server import FakeServer, Request
from tracer.agents import hybrid
from tracer.backtest.runner import run_backtest
from tracer.config import load_settings
from tracer.data.gaps import find_gaps, ongoing_outages, outages, usable_rows, window_bounds
from tracer.data.replay import ReplayFeed, load_candles
from tracer.data.validation import frame_arrays, td_ns, validate_arrays, validate_bars
from tracer.sentiment.lexicon import VaderScorer

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "gap_2021_08_13"
HISTORY = ROOT.parent / "shared" / "data" / "history"
SYMBOLS = ("BTC/USD", "ETH/USD", "SOL/USD")
H = timedelta(hours=1)
HNS = td_ns(H)
LOOKBACK, MIN_BARS = 256, 180   # the defaults: the backtest equals the agent only on a long window
HOLE = "2021-08-13T02:00:00Z -> 2021-08-13T06:00:00Z (4 bars)"


def utc(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def env(tmp: Path, **extra: str) -> dict[str, str]:
    e = {"TB_DB_PATH": str(tmp / "t.db"), "TB_LOG_DIR": str(tmp / "logs"), "TB_STATE_DIR": str(tmp / "state"),
         "TB_DATA_DIR": str(FIXTURE), "TB_SYMBOLS": ",".join(SYMBOLS), "TB_REPLAY_START": "",
         "TB_LOOKBACK_BARS": str(LOOKBACK), "TB_MIN_BARS": str(MIN_BARS), "TB_SENTIMENT_SCORER": "lexicon",
         "TB_ACTIVE_PARAMS_PATH": str(tmp / "none.json"), "TB_NOTIFY_HEARTBEAT_EVERY": "0",
         # permissive gates so that the agent trades around the hole (decisions worth comparing); the seed's
         # hourly model (phase1c) trades within the two days around it, the trend model's 10-day mean does not
         "TB_PROFILE": "phase1c",
         "TB_MIN_SIGNAL_QUALITY": "0", "TB_MIN_CONVICTION_SCORE": "1", "TB_MAX_TRADES_PER_DAY": "1000",
         "TB_MAX_POSITIONS": "3", "TB_MAX_CORRELATION": "1", "TB_PORTFOLIO_VAR_LIMIT": "1"}
    e.update(extra)
    return e


def quiet() -> logging.Logger:
    log = logging.getLogger("gaps-test")
    log.propagate = False
    log.addHandler(logging.NullHandler())
    return log


def run_agent(s) -> dict:
    """Run the hybrid agent to the end of its feed (replay) or for ``cycles`` (live); the DB rows back."""
    loop = hybrid.build(s, quiet())
    try:
        loop.run()
    finally:
        loop.store.close()
    return read_db(s.db_path)


def read_db(path: Path) -> dict:
    c = sqlite3.connect(path)
    c.row_factory = sqlite3.Row
    try:
        q = lambda sql: [dict(r) for r in c.execute(sql)]  # noqa: E731
        return {"runs": q("SELECT id, clock, note, status FROM runs ORDER BY id"),
                "signals": q("SELECT r.clock, s.symbol, s.action, s.decision, s.decision_reason, s.quality, "
                             "s.conviction, s.headline_count, s.inputs_json FROM signals s JOIN runs r "
                             "ON r.id = s.run_id ORDER BY r.clock, s.symbol"),
                "orders": q("SELECT client_order_id, symbol, side, purpose, qty, created_at FROM orders "
                            "ORDER BY client_order_id"),
                "trades": q("SELECT entry_order_id, exit_order_id, exit_reason, entry_ts, exit_ts, qty, entry_price, "
                            "exit_price, pnl FROM trades ORDER BY exit_ts, entry_order_id"),
                "alerts": q("SELECT channel, kind, message FROM notifications WHERE kind='data_outage'")}
    finally:
        c.close()


# --- the fixture is the real history -----------------------------------------------------------------------

@pytest.mark.skipif(not HISTORY.is_dir(), reason="shared/data/history not beside the clone")
def test_fixture_is_an_unchanged_cut_of_the_real_history():
    for f in sorted(FIXTURE.glob("candles_*.csv")):
        cut = pd.read_csv(f, dtype=str)
        full = pd.read_csv(HISTORY / f.name, dtype=str).set_index("timestamp")
        assert full.loc[cut["timestamp"]].reset_index().equals(cut), f.name
        # and the hole is the exchange's: the history has no row there either
        assert not full.index.isin([f"2021-08-13T0{h}:00:00Z" for h in range(2, 6)]).any()


# --- one window: validate_arrays -------------------------------------------------------------------------

def test_one_window_under_the_policy():
    df = load_candles(FIXTURE / "candles_1h_BTCUSDT.csv")
    ts, values = frame_arrays(df)
    assert [str(g) for g in find_gaps(ts, HNS)] == [HOLE]
    now = utc("2021-08-13T10:00:00Z")
    lo, hi = window_bounds(ts, int(pd.Timestamp(now).value), HNS, LOOKBACK)
    win = df.iloc[lo:hi]
    assert len(win) == LOOKBACK - 4 and win.index[-1] == pd.Timestamp("2021-08-13T09:00:00Z")
    # strict rules (no policy): any hole is a gap; the policy accepts up to the limit
    assert validate_bars(win, now, H, None, 50) == f"gap: {HOLE}"
    assert validate_bars(win, now, H, None, 50, max_gap_bars=4) is None
    assert validate_bars(win, now, H, None, 50, max_gap_bars=3) == \
        "gap: 2021-08-13T02:00:00Z -> 2021-08-13T06:00:00Z (4 bars > 3 allowed)"
    # min_bars counts the bars that exist
    assert validate_bars(win, now, H, None, LOOKBACK - 3, max_gap_bars=6) == \
        f"insufficient_bars: {LOOKBACK - 4} < {LOOKBACK - 3}"
    # at a clock whose bar is missing (03:00: the bar opening 02:00) the newest bar is not the new one:
    # skipped at that clock only, even where TB_MAX_STALENESS_MIN would let a stale bar through
    before = df[df.index <= pd.Timestamp("2021-08-13T01:00:00Z")].iloc[-50:]
    assert validate_bars(before, utc("2021-08-13T02:00:00Z"), H, timedelta(minutes=90), 50, 6) is None
    assert validate_bars(before, utc("2021-08-13T03:00:00Z"), H, timedelta(minutes=90), 50, 6) == \
        "stale: last bar closes 2021-08-13T02:00:00Z, 1h before now (the bar closing at 2021-08-13T03:00:00Z " \
        "is missing)"
    assert validate_bars(before, utc("2021-08-13T03:00:00Z"), H, timedelta(minutes=90), 50) is None  # strict
    with pytest.raises(ValueError, match="max_gap_bars"):
        validate_bars(win, now, H, None, 50, max_gap_bars=-1)


def _history_files() -> list[Path]:
    if HISTORY.is_dir():   # all four real holes (2, 3, 4 and 2 bars), 16 months
        return [HISTORY / "candles_1h_BTCUSDT.csv"]
    return [FIXTURE / "candles_1h_BTCUSDT.csv"]


@pytest.mark.parametrize("limit", [0, 2, 3, 6])
def test_backtest_rows_equal_the_feed_windows_bar_by_bar(limit):
    """usable_rows (the backtest, all bars at once) == validate_arrays on the replay feed's window at
    each bar close (live and replay): the same rule, bar by bar, on the real holes."""
    for path in _history_files():
        df = load_candles(path)
        ts, values = frame_arrays(df)
        ok, lo = usable_rows(ts, HNS, LOOKBACK, MIN_BARS, limit)
        for j in range(len(ts)):
            now_ns = int(ts[j]) + HNS
            wlo, whi = window_bounds(ts, now_ns, HNS, LOOKBACK)
            assert (wlo, whi) == (lo[j], j + 1)
            reason = validate_arrays(ts[wlo:whi], values[wlo:whi], now_ns, HNS, HNS, MIN_BARS, limit)
            assert ok[j] == (reason is None), (path.name, j, reason)
        # the holes cost what the policy says: nothing below the limit, one window per hole above it
        n_holes = sum(1 for g in find_gaps(ts, HNS) if g.missing > limit)
        warmup = MIN_BARS - 1
        assert (~ok[warmup:]).sum() <= n_holes * LOOKBACK
        if n_holes == 0:
            assert ok[warmup:].all()


# --- live == replay == backtest around the hole ------------------------------------------------------------

def _binance_klines(frames: dict[str, pd.DataFrame]):
    """Binance spot /api/v3/klines over the real candles (as Binance serves them: a range of open times,
    missing bars simply absent)."""
    raw = {sym: pd.read_csv(FIXTURE / f"candles_1h_{sym}.csv", dtype=str) for sym in frames}
    opens = {sym: pd.DatetimeIndex(pd.to_datetime(r["timestamp"], utc=True)).as_unit("ms").asi8
             for sym, r in raw.items()}

    def handle(req: Request):
        if req.path != "/api/v3/klines":
            return 404, {}, {"code": -1, "msg": "not found"}
        sym = req.query["symbol"]
        if sym not in raw:
            return 400, {}, {"code": -1121, "msg": "Invalid symbol."}
        start, end = int(req.query["startTime"]), int(req.query["endTime"])
        limit = int(req.query.get("limit", 500))
        o = opens[sym]
        rows = []
        for i in np.flatnonzero((o >= start) & (o <= end))[:limit]:
            r = raw[sym].iloc[i]
            rows.append([int(o[i]), r["open"], r["high"], r["low"], r["close"], r["volume"],
                         int(o[i]) + 3_600_000 - 1, "0", 1, "0", "0", "0"])
        return 200, {}, rows
    return handle


def _run_live(tmp: Path, s_env: dict[str, str], first: datetime, last: datetime, klines=_binance_klines) -> dict:
    """The hybrid agent on TB_FEED=live: a real BinanceSource against the klines above (or ``klines``'s), a wall
    clock that the feed's sleep moves to the next bar close, from ``first`` to ``last``."""
    return _run_live_on(tmp, s_env, first, last, [first], klines({f"{b}USDT": None for b in ("BTC", "ETH", "SOL")}),
                        must_reach_last=True)


def _decisions(db: dict) -> list[tuple]:
    return [(r["clock"], r["symbol"], r["action"], r["decision"], r["decision_reason"], r["quality"],
             r["conviction"]) for r in db["signals"] if r["decision"] != "skipped"]


def test_live_replay_and_backtest_make_the_same_decisions_around_the_real_hole(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="tracer.feed")
    # replay (the fixture folder has no headlines.csv: price-only, with a logged note)
    # two and a half days around the hole (the agent warms up on the history before)
    window = {"TB_REPLAY_START": "2021-08-12T00:00:00Z", "TB_REPLAY_END": "2021-08-14T12:00:00Z"}
    s = load_settings(env(tmp_path / "replay", **window), None)
    replay = run_agent(s)
    assert any("event=headlines_missing" in r.getMessage() and "price-only" in r.getMessage()
               for r in caplog.records)
    sig = replay["signals"]
    assert sig and all(r["headline_count"] == 0 for r in sig)
    clocks = [r["clock"] for r in replay["runs"]]
    # the replay steps from the 01:00 bar's close to the 06:00 bar's: the hole's closes have no cycle
    i = clocks.index("2021-08-13T02:00:00Z")
    assert clocks[i + 1] == "2021-08-13T07:00:00Z"
    assert "clock_gap: 4 bar(s) not evaluated" in replay["runs"][i + 1]["note"]
    # nothing skipped: every symbol evaluated at every clock, right after the hole too, the hole recorded
    assert [r for r in sig if r["decision"] == "skipped"] == []
    assert len(sig) == 3 * len(clocks)
    assert [json.loads(r["inputs_json"])["gaps"] for r in sig] == \
           [[HOLE] if r["clock"] >= "2021-08-13T07:00:00Z" else [] for r in sig]
    assert f"gap accepted: {HOLE} in BTC/USD,ETH/USD,SOL/USD" in replay["runs"][i + 1]["note"]
    assert replay["alerts"] == []
    # the agent traded right after the hole: the comparison below is about real decisions
    assert [o for o in replay["orders"] if o["purpose"] == "entry" and o["created_at"] >= "2021-08-13T07"]
    assert len(replay["trades"]) >= 1, replay["orders"]

    # live: the same decisions at the same clocks; its extra clocks (the hole's closes) skip every symbol
    live = _run_live(tmp_path / "live", env(tmp_path / "live", **window), utc(clocks[0]), utc(clocks[-1]))
    assert _decisions(live) == _decisions(replay)
    extra = [r for r in live["signals"] if r["clock"] not in set(clocks)]
    assert sorted({r["clock"] for r in extra}) == [f"2021-08-13T0{h}:00:00Z" for h in (3, 4, 5, 6)]
    assert all(r["decision"] == "skipped" and "stale: last bar closes 2021-08-13T02:00:00Z" in r["decision_reason"]
               for r in extra)
    # at 03:00 the newest bar is 1 h old, which TB_MAX_STALENESS_MIN (90) allows: skipped as the new bar is missing
    assert all("1h before now (the bar closing at 2021-08-13T03:00:00Z is missing)" in r["decision_reason"]
               for r in extra if r["clock"] == "2021-08-13T03:00:00Z")
    assert [(o["client_order_id"], o["side"], o["purpose"]) for o in live["orders"]] == \
           [(o["client_order_id"], o["side"], o["purpose"]) for o in replay["orders"]]
    assert [tuple(t.values()) for t in live["trades"]] == [tuple(t.values()) for t in replay["trades"]]

    # backtest: the same trades
    res = run_backtest(s, "hybrid", list(SYMBOLS), VaderScorer(), start=utc(clocks[0]), end=utc(clocks[-1]),
                       data_dir=FIXTURE, close_at_end=False)
    assert res.start == utc(clocks[0]) and res.end == utc(clocks[-1]) and len(res.equity) == len(clocks)
    bt = sorted(res.trades, key=lambda t: (t.exit_ts, t.entry_order_id))
    assert [(t.entry_order_id, t.exit_order_id, t.exit_reason, t.entry_ts, t.exit_ts) for t in bt] == \
           [(t["entry_order_id"], t["exit_order_id"], t["exit_reason"], utc(t["entry_ts"]), utc(t["exit_ts"]))
            for t in replay["trades"]]
    for t, r in zip(bt, replay["trades"]):   # the tolerances of tests/test_backtest.py (EMA seeds, ~1e-8)
        assert t.qty == pytest.approx(r["qty"], rel=1e-6) and t.pnl == pytest.approx(r["pnl"], rel=1e-6, abs=1e-6)
        assert t.entry_price == pytest.approx(r["entry_price"], rel=1e-9)
        assert t.exit_price == pytest.approx(r["exit_price"], rel=1e-9)


def test_a_hole_longer_than_the_limit_is_skipped_alerted_once_and_decisions_resume(tmp_path):
    s = load_settings(env(tmp_path, TB_MAX_GAP_BARS="3", TB_REPLAY_START="2021-08-13T00:00:00Z"), None)
    db = run_agent(s)
    reason = "bad_data: gap: 2021-08-13T02:00:00Z -> 2021-08-13T06:00:00Z (4 bars > 3 allowed)"
    skipped = [r for r in db["signals"] if r["decision"] == "skipped"]
    # every symbol skipped, with the reason, from the first clock after the hole until it leaves the window
    clocks = sorted({r["clock"] for r in skipped})
    assert clocks[0] == "2021-08-13T07:00:00Z" and clocks[-1] == "2021-08-23T17:00:00Z"
    assert len(clocks) == 251 and len(skipped) == 3 * 251
    assert all(r["decision_reason"] == reason for r in skipped)
    # decisions resume at the first clock whose window is whole again
    resumed = [r for r in db["signals"] if r["clock"] == "2021-08-23T18:00:00Z"]
    assert len(resumed) == 3 and all(r["decision"] != "skipped" for r in resumed)
    assert all(json.loads(r["inputs_json"])["gaps"] == [] for r in resumed)
    assert not [o for o in db["orders"] if o["purpose"] == "entry" and
                "2021-08-13T07:00:00Z" <= o["created_at"] < "2021-08-23T18:00:00Z"]
    # one alert for the hole (per channel), not one per cycle
    assert [a["channel"] for a in db["alerts"]] == ["console"]
    msg = db["alerts"][0]["message"]
    assert "4 bars missing from 2021-08-13T02:00:00Z to before 2021-08-13T06:00:00Z" in msg
    assert "TB_MAX_GAP_BARS=3" in msg and "BTC/USD, ETH/USD, SOL/USD" in msg

    # the backtest skips the same bars: the same trades
    res = run_backtest(s, "hybrid", list(SYMBOLS), VaderScorer(), start=s.replay_start, data_dir=FIXTURE,
                       close_at_end=False)
    bt = sorted(res.trades, key=lambda t: (t.exit_ts, t.entry_order_id))
    assert len(db["trades"]) >= 1      # it trades once the window is whole again
    assert [(t.entry_order_id, t.exit_ts) for t in bt] == \
           [(t["entry_order_id"], utc(t["exit_ts"])) for t in db["trades"]]


def test_outages_parse_replay_and_live_reasons():
    rejected = {
        "ETH/USD": "gap: 2021-08-13T02:00:00Z -> 2021-08-13T06:00:00Z (4 bars > 3 allowed)",
        "BTC/USD": "no_source: binance_spot: invalid: gap: 2021-08-13T02:00:00Z -> 2021-08-13T06:00:00Z "
                   "(4 bars > 3 allowed); yahoo: unsupported: no bars",
        "SOL/USD": "stale: last bar closes 2021-08-13T02:00:00Z, 1h before now",
        "XRP/USD": "gap: 2021-08-13T02:00:00Z -> 2021-08-13T06:00:00Z (4 bars)",     # strict rules: no limit named
    }
    (o,) = outages(rejected)
    assert (o.first_missing, o.next_bar, o.missing, o.limit, o.symbols) == \
           ("2021-08-13T02:00:00Z", "2021-08-13T06:00:00Z", 4, 3, ("BTC/USD", "ETH/USD"))


# --- a held position through a long hole; an outage still going on ---------------------------------------------

def _cut(tmp: Path, src: Path, cut: list[str]) -> Path:
    """A copy of ``src``'s candle files without the bars opening at ``cut`` (every symbol: a venue outage)."""
    d = tmp / "data"
    d.mkdir()
    for f in src.glob("candles_*.csv"):
        df = pd.read_csv(f, dtype=str)
        df[~df["timestamp"].isin(cut)].to_csv(d / f.name, index=False)
    return d


def _trades_of_backtest(s, symbols, data: Path, end: datetime | None = None) -> list[tuple]:
    res = run_backtest(s, "hybrid", list(symbols), VaderScorer(), start=s.replay_start, end=end or s.replay_end,
                       data_dir=data, close_at_end=False)
    return [(t.entry_order_id, t.exit_reason, t.exit_ts.strftime("%Y-%m-%dT%H:%M:%SZ"))
            for t in sorted(res.trades, key=lambda t: (t.exit_ts, t.entry_order_id))]


def test_positions_held_through_a_hole_longer_than_the_limit_exit_as_in_the_backtest(tmp_path):
    """7 bars (> TB_MAX_GAP_BARS=6) cut while the replay holds BTC, ETH and SOL: every symbol is skipped for
    decisions until the hole leaves the window, but the broker still sees each held symbol's bars (the stop-loss,
    trailing and time stops the backtest takes on 2021-08-14/15)."""
    data = _cut(tmp_path, FIXTURE, [f"2021-08-14T0{h}:00:00Z" for h in range(7)])
    s = load_settings(env(tmp_path, TB_DATA_DIR=str(data), TB_REPLAY_START="2021-08-12T00:00:00Z",
                          TB_REPLAY_END="2021-08-16T00:00:00Z"), None)
    db = run_agent(s)
    replay = [(t["entry_order_id"], t["exit_reason"], t["exit_ts"]) for t in db["trades"]]
    bt = _trades_of_backtest(s, SYMBOLS, data)
    assert {r for _, r, _ in bt} >= {"stop_loss", "time_stop", "trailing_stop"}     # precondition
    assert replay == bt
    assert {r["clock"] for r in db["signals"] if r["decision"] == "skipped"} >= {"2021-08-15T07:00:00Z"}


@pytest.mark.skipif(not HISTORY.is_dir(), reason="shared/data/history not beside the clone")
def test_a_long_held_through_the_real_2021_04_25_hole_under_a_limit_of_2_exits_as_in_the_backtest(tmp_path):
    """The real 3-bar hole (2021-04-25 05:00-07:00 in every file) under TB_MAX_GAP_BARS=2: every symbol is skipped
    for 256 cycles, and the BTC long the backtest stops out at 2021-04-25T20:00 is stopped out in the replay too."""
    s = load_settings({"TB_DB_PATH": str(tmp_path / "t.db"), "TB_LOG_DIR": str(tmp_path / "l"),
                       "TB_STATE_DIR": str(tmp_path / "s"), "TB_DATA_DIR": str(HISTORY), "TB_PROFILE": "phase1c",
                       "TB_REPLAY_START": "2021-04-15T00:00:00Z", "TB_SENTIMENT_SCORER": "lexicon",
                       "TB_ACTIVE_PARAMS_PATH": str(tmp_path / "n.json"), "TB_NOTIFY_HEARTBEAT_EVERY": "0",
                       "TB_MAX_GAP_BARS": "2"}, None)
    loop = hybrid.build(s, quiet())
    try:
        loop.run(cycles=400)
        end = loop.clock
        rows = loop.store.conn.execute("SELECT entry_order_id, exit_reason, exit_ts FROM trades ORDER BY exit_ts, "
                                       "entry_order_id").fetchall()
    finally:
        loop.store.close()
    bt = _trades_of_backtest(s, s.symbols, HISTORY, end)
    assert any(r == "stop_loss" and t == "2021-04-25T20:00:00Z" for _, r, t in bt)     # precondition
    assert [tuple(r) for r in rows] == bt


FREEZE, RESUME = utc("2021-08-10T00:00:00Z"), utc("2021-08-10T04:00:00Z")


def _maintenance_klines(frames: dict[str, pd.DataFrame]):
    """Binance in maintenance from FREEZE to RESUME: no kline opening then, ever (the hole stays after it)."""
    handle = _binance_klines(frames)
    lo, hi = int(FREEZE.timestamp() * 1000), int(RESUME.timestamp() * 1000)

    def h(req: Request):
        status, headers, rows = handle(req)
        return status, headers, [r for r in rows if not lo <= r[0] < hi] if status == 200 else rows
    return h


def test_an_outage_still_going_on_is_alerted_once_and_its_cycles_are_not_ok(tmp_path):
    """Live, no source has a bar after 2021-08-09T23:00 for four hours: each cycle skips every symbol as ``stale``
    (no ``gap`` yet). Once more than TB_MAX_GAP_BARS=2 bars are missing it is alerted (once), every cycle without
    a decision while it goes on (past the limit) is recorded not ok (the health check counts them), and the hole's
    own alert follows when the bars are back."""
    db = _run_live(tmp_path, env(tmp_path, TB_REPLAY_START="", TB_REPLAY_END="", TB_MAX_GAP_BARS="2"), FREEZE,
                   RESUME + H, klines=_maintenance_klines)
    status = {r["clock"]: r["status"] for r in db["runs"]}
    # two bars missing are within the limit: those cycles are ok; past it, not ok until the bars are back
    assert status == {**{f"2021-08-10T0{h}:00:00Z": "ok" for h in range(0, 3)},
                      **{f"2021-08-10T0{h}:00:00Z": "no_data" for h in range(3, 6)}}
    # stale (no gap yet), then the source's breaker opens (TB_BREAKER_FAILURES): no bar from it at all
    assert {r["decision_reason"][:len("bad_data: no_source: binance_spot: invalid: stale")] for r in db["signals"]
            if r["clock"] == "2021-08-10T01:00:00Z"} == {"bad_data: no_source: binance_spot: invalid: stale"}
    going_on, hole = db["alerts"]
    assert going_on["message"].splitlines()[0] == ("⚠️ hybrid agent: market data outage going on, no bar from "
                                                   "2021-08-10T00:00:00Z on (more than TB_MAX_GAP_BARS=2 missing)")
    assert "3 bars missing at 2021-08-10T03:00:00Z" in going_on["message"]
    assert "BTC/USD, ETH/USD, SOL/USD" in going_on["message"]
    assert "4 bars missing from 2021-08-10T00:00:00Z to before 2021-08-10T04:00:00Z" in hole["message"]


def test_ongoing_outages_are_the_skipped_symbols_more_than_the_limit_behind():
    ns = lambda t: int(utc(t).timestamp()) * 10**9  # noqa: E731
    newest = {"BTC/USD": ns("2021-08-09T23:00:00Z"), "ETH/USD": ns("2021-08-09T23:00:00Z"),
              "SOL/USD": ns("2021-08-10T01:00:00Z"), "XRP/USD": ns("2021-08-09T20:00:00Z")}
    now = ns("2021-08-10T03:00:00Z")
    # SOL: 1 bar missing (02:00); BTC, ETH: 3 (00:00-02:00); XRP: 6; DOGE never seen; XRP not skipped
    got = ongoing_outages(newest, ["ETH/USD", "BTC/USD", "SOL/USD", "DOGE/USD"], now, HNS, 2)
    assert [(o.first_missing, o.now, o.missing, o.limit, o.symbols) for o in got] == \
           [("2021-08-10T00:00:00Z", "2021-08-10T03:00:00Z", 3, 2, ("BTC/USD", "ETH/USD"))]
    assert ongoing_outages(newest, ["BTC/USD"], now, HNS, 3) == []


def test_headlines_path_named_but_missing_is_refused_naming_the_variable(tmp_path):
    from tracer.data.factory import make_feed
    s = load_settings(env(tmp_path, TB_HEADLINES_PATH=str(tmp_path / "nope.csv")), None)
    with pytest.raises(FileNotFoundError, match="TB_HEADLINES_PATH"):
        make_feed(s, SYMBOLS)
    with pytest.raises(FileNotFoundError, match="no headlines file"):
        ReplayFeed(SYMBOLS, data_dir=FIXTURE, headlines_path=tmp_path / "nope.csv")
    # an empty folder of headlines next to the candles is fine: price-only
    d = tmp_path / "data"
    shutil.copytree(FIXTURE, d)
    assert ReplayFeed(SYMBOLS, data_dir=d).headlines == []


def _run_live_on(tmp: Path, s_env: dict[str, str], first: datetime, last: datetime, clock: list[datetime],
                 handler, must_reach_last: bool = False) -> dict:
    """:func:`_run_live` with the wall clock ``clock`` shared with the fake's ``handler``."""
    with FakeServer(handler) as bn:
        s = load_settings(dict(s_env, TB_FEED="live", TB_BAR_SOURCES="binance_spot", TB_BINANCE_SPOT_URL=bn.url,
                               TB_NEWS_SOURCES=""), None)
        loop = hybrid.build(s, quiet())
        clock[0] = first
        feed = loop.feed
        feed.clock, feed.settle = (lambda: clock[0]), timedelta(0)

        def sleep(_seconds: float) -> None:   # the wall clock reaches the next bar close
            clock[0] = feed._boundary_at_or_before(clock[0]) + H
        feed.sleep = sleep
        for br in feed.chain.breakers.values():   # the breakers' cooldown runs on the same clock
            br.clock = lambda: clock[0].timestamp()
        loop.wait_heartbeat_s = 1e9
        try:
            loop.run(cycles=int((last - first) / H) + 1)
        finally:
            loop.store.close()
        if must_reach_last:
            assert loop.clock == last
    return read_db(s.db_path)


def test_an_outage_a_restart_falls_into_is_still_alerted_and_its_cycles_are_not_ok(tmp_path):
    """No source answers at all (503) after 00:00, and the agent is restarted at 02:00 (launchd, a reboot): it has
    seen no bar since its start, yet the outage is alerted and its cycles past the limit are no_data, as without
    the restart (the newest bar is taken as the last committed cycle's)."""
    e = env(tmp_path, TB_REPLAY_START="", TB_REPLAY_END="", TB_MAX_GAP_BARS="2")
    clock = [FREEZE]
    ok = _binance_klines({f"{b}USDT": None for b in ("BTC", "ETH", "SOL")})

    def down(req: Request):
        return (503, {}, {"code": -1, "msg": "Service Unavailable"}) if FREEZE < clock[0] <= RESUME else ok(req)
    _run_live_on(tmp_path, e, FREEZE, FREEZE + H, clock, down)
    db = _run_live_on(tmp_path, e, FREEZE + 2 * H, RESUME, clock, down)
    status = {r["clock"]: r["status"] for r in db["runs"]}
    assert status["2021-08-10T03:00:00Z"] == "no_data" and status["2021-08-10T04:00:00Z"] == "no_data", status
    assert any("outage going on" in a["message"] for a in db["alerts"]), db["alerts"]
