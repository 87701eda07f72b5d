"""tracer backtest: equal to the live agent, honest accounting, deterministic, overrides, foreign data, errors."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from tracer.agents import futures as futures_agent
from tracer.agents import hybrid as hybrid_agent
from tracer.backtest.runner import run_backtest
from tracer.config import load_settings
from tracer.data.replay import bundled_dir, load_candles
from tracer.store import parse_iso
from tracer.sentiment.factory import make_scorer
from tracer.sentiment.lexicon import VaderScorer
from tracer.sentiment.narrative import narrative_score
from tracer.sentiment.scorer import CachedScorer
from tracer.signals.evaluate import EvalParams, decide
from tracer.signals.features import feature_table

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2022, 1, 10, tzinfo=timezone.utc)
CYCLES = 300


def quiet() -> logging.Logger:
    log = logging.getLogger("bt-test")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def settings(tmp: Path, **extra: str):
    env = {"TB_DB_PATH": str(tmp / "live.db"), "TB_LOG_DIR": str(tmp / "logs"), "TB_STATE_DIR": str(tmp / "state")}
    env.update(extra)
    return load_settings(env, dotenv_path=None)


# The trend profile holds for weeks and its market filter refuses most longs in January 2022: from February, with
# the seed's 2-ATR stops, 300 bars close enough trades to compare (the evaluation is still the trend model's).
_TREND = {"TB_REPLAY_START": "2022-02-01T00:00:00Z", "TB_STOP_ATR_MULT": "2", "TB_FUTURES_STOP_ATR_MULT": "2"}
# the trend profile with its market filter (BTC above its own mean), without it, and at a shorter market window
VARIANTS = {"trend": _TREND, "trend-nomarket": {**_TREND, "TB_MARKET_FILTER": "none"},
            "trend-market120": {**_TREND, "TB_MARKET_WINDOW_H": "120"},
            # from 10 February: BTC falls through its mean (and the band) on the 17th while both agents hold longs
            "trend-marketexit": {**_TREND, "TB_MARKET_EXIT": "true", "TB_REPLAY_START": "2022-02-10T00:00:00Z"},
            # the multi-horizon trend (10, 20 and 40-day means: a 1,000-bar look-back)
            "trend-ensemble": {**_TREND, "TB_TREND_ENSEMBLE": "true", "TB_LOOKBACK_BARS": "1000"},
            # the relative-strength filter: new longs only among the 5 strongest trends, shorts among the 5 weakest
            "trend-strength": {**_TREND, "TB_STRENGTH_TOP_K": "5", "TB_FUTURES_STRENGTH_TOP_K": "5"},
            # the hybrid's daily cadence: entries and signal exits only at the 00:00 UTC close (the futures agent
            # ignores it); from 15 January, with 2-ATR stops, the 300 bars hold enough closed trades
            "trend-daily": {**_TREND, "TB_DECISION_EVERY_H": "24"},
            "phase1c": {}}


@pytest.mark.parametrize("profile", list(VARIANTS))
@pytest.mark.parametrize("agent", ["hybrid", "futures"])
def test_backtest_trades_equal_the_live_agent(tmp_path, agent, profile):
    s = settings(tmp_path, TB_PROFILE=profile.split("-")[0], **VARIANTS[profile])
    assert (s.market_filter == "BTC/USD") == (profile.startswith("trend") and profile != "trend-nomarket")
    build = hybrid_agent.build if agent == "hybrid" else futures_agent.build
    loop = build(s, quiet())
    loop.run(cycles=CYCLES)
    end = loop.clock
    rows = loop.store.conn.execute("SELECT * FROM trades WHERE agent=? ORDER BY exit_ts, entry_order_id",
                                   (agent,)).fetchall()
    blocked = loop.store.conn.execute("SELECT COUNT(*) FROM risk_events WHERE agent=? AND rule='market_filter'",
                                      (agent,)).fetchone()[0]
    weak = loop.store.conn.execute("SELECT COUNT(*) FROM risk_events WHERE agent=? AND rule='strength_filter'",
                                   (agent,)).fetchone()[0]
    loop.store.close()
    assert (weak > 0) == (profile == "trend-strength")   # the filter refused entries (only when it is on)
    assert len(rows) >= 5
    daily = profile == "trend-daily" and agent == "hybrid"
    if daily:       # every entry and every signal exit at a 00:00 UTC close; the stops any time
        assert {parse_iso(r["entry_ts"]).hour for r in rows} == {0}
        assert {parse_iso(r["exit_ts"]).hour for r in rows if r["exit_reason"] == "signal"} <= {0}
        assert {parse_iso(r["exit_ts"]).hour for r in rows} != {0}
    else:           # the market filter refused entries in this span (only with it)
        assert (blocked > 0) == (s.market_filter != "none")
    # the market exit closed positions in this span (only with it)
    assert any(r["exit_reason"] == "market_exit" for r in rows) == (profile == "trend-marketexit")
    symbols = list(s.symbols if agent == "hybrid" else s.futures_symbols)
    # the scorer the live agent used (the factory's choice), as `tracer backtest` does
    start = s.replay_start
    res = run_backtest(s, agent, symbols, make_scorer(s, quiet()), start=start, end=end, close_at_end=False)
    assert res.start == start and res.end == end and len(res.equity) == CYCLES
    bt = sorted(res.trades, key=lambda t: (t.exit_ts, t.entry_order_id))
    assert [(t.entry_order_id, t.exit_order_id, t.exit_reason, t.entry_ts, t.exit_ts) for t in bt] == \
           [(r["entry_order_id"], r["exit_order_id"], r["exit_reason"], parse_iso(r["entry_ts"]),
             parse_iso(r["exit_ts"])) for r in rows]
    for t, r in zip(bt, rows):
        assert t.qty == pytest.approx(r["qty"], rel=1e-6)
        assert t.entry_price == pytest.approx(r["entry_price"], rel=1e-9)
        assert t.exit_price == pytest.approx(r["exit_price"], rel=1e-9)
        assert t.pnl == pytest.approx(r["pnl"], rel=1e-6, abs=1e-6)


def test_vectorised_features_match_the_live_window_bar_by_bar():
    """The backtest's whole-history features give the same decisions as the live 256-bar window."""
    s = load_settings({}, None)
    p = EvalParams.from_settings(s)
    nar = narrative_score([], START)
    checked = 0
    for sym in ("BTCUSDT", "ETHUSDT", "DOGEUSDT"):
        df = load_candles(bundled_dir() / f"candles_1h_{sym}.csv")
        h, lo, c, v = (df[k].to_numpy(dtype=float) for k in ("high", "low", "close", "volume"))
        full = feature_table(h, lo, c, v, 365 * 24)
        for i in range(400, 2400, 7):
            w = slice(i - 255, i + 1)
            win = feature_table(h[w], lo[w], c[w], v[w], 365 * 24)
            a, b = full.row(i), win.row(255)
            # rolling-window features: the same numbers on both paths
            for name in ("volume_z", "annual_vol", "participation"):
                assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9, abs=1e-12), (sym, i, name)
            # z-scores of EMA/MACD: the EMA seed of the 256-bar window has decayed to ~1e-8, which a z-score of
            # a near-zero spread amplifies to ~1e-6
            for name in ("macd_hist_z", "ema_spread_z"):
                assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-4, abs=1e-6), (sym, i, name)
            assert a.rsi == pytest.approx(b.rsi, rel=1e-6) and a.atr == pytest.approx(b.atr, rel=1e-6)
            assert np.allclose(a.horizon_scores, b.horizon_scores, rtol=1e-9, atol=1e-12)
            sa, sb = decide(sym, START, c[i], a, nar, p), decide(sym, START, c[i], b, nar, p)
            assert (sa.action, sa.direction, sa.regime.label, sa.regime.volatility) == \
                   (sb.action, sb.direction, sb.regime.label, sb.regime.volatility), (sym, i)
            assert sa.quality == pytest.approx(sb.quality, abs=1e-5)
            assert sa.conviction == pytest.approx(sb.conviction, abs=1e-5)
            checked += 1
    assert checked > 800


def test_accounting_and_determinism(tmp_path):
    out1, out2 = tmp_path / "a", tmp_path / "b"
    for out in (out1, out2):      # the first run scores the headlines, the second reads the score cache
        r = cli("backtest", "--agent", "hybrid", "--from", "2022-03-01", "--to", "2022-03-20", "--out", str(out),
                "--no-plot", TB_STATE_DIR=str(tmp_path / "state"))
        assert r.returncode == 0, r.stderr
    assert list((tmp_path / "state" / "score_cache").glob("tfidf-lr@*.json"))
    assert (out1 / "trades.csv").read_bytes() == (out2 / "trades.csv").read_bytes()
    assert (out1 / "metrics.json").read_bytes() == (out2 / "metrics.json").read_bytes()
    import csv
    import json
    m = json.loads((out1 / "metrics.json").read_text())
    trades = list(csv.DictReader(open(out1 / "trades.csv")))
    equity = list(csv.DictReader(open(out1 / "equity.csv")))
    assert m["trades"] == len(trades) > 0
    # spot: equity at every step = cash + marked positions
    for row in equity:
        assert float(row["equity"]) == pytest.approx(float(row["cash"]) + float(row["exposure"]), rel=1e-12)
    # every position closed at the end: sum of trade P&L (net of fees and funding) = equity change
    assert sum(float(t["pnl"]) for t in trades) == pytest.approx(float(equity[-1]["equity"]) - m["initial_capital"],
                                                               abs=1e-6)
    assert m["final_equity"] == pytest.approx(float(equity[-1]["equity"]))


def test_futures_accounting(tmp_path):
    # the previous default (10-day mean, no market filter): in these 19 days of May 2022 it trades both sides
    s = settings(tmp_path, TB_MARKET_FILTER="none", TB_TREND_WINDOW_H="240")
    res = run_backtest(s, "futures", ["BTC/USD", "ETH/USD", "SOL/USD"], CachedScorer(VaderScorer()),
                       start=datetime(2022, 5, 1, tzinfo=timezone.utc), end=datetime(2022, 5, 20, tzinfo=timezone.utc))
    assert res.trades and {t.side.value for t in res.trades} == {"long", "short"}
    assert sum(t.pnl for t in res.trades) == pytest.approx(res.equity[-1].equity - res.initial_capital, abs=1e-6)
    assert res.equity[-1].positions == 0
    assert any(t.funding != 0 for t in res.trades)


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    e.update(env)
    return subprocess.run([sys.executable, "-m", "tracer.cli", *args], env=e, capture_output=True, text=True,
                          timeout=300)


def test_set_overrides_and_bad_set(tmp_path):
    r = cli("backtest", "--from", "2022-03-01", "--to", "2022-03-10", "--out", str(tmp_path), "--no-plot",
            "--set", "TB_MAX_POSITIONS=1")
    assert r.returncode == 0, r.stderr
    import csv
    assert max(int(row["positions"]) for row in csv.DictReader(open(tmp_path / "equity.csv"))) == 1
    bad = cli("backtest", "--set", "TB_MAX_POSITONS=1", "--out", str(tmp_path))
    assert bad.returncode == 2 and "TB_MAX_POSITONS" in bad.stderr
    worse = cli("backtest", "--set", "TB_MAX_POSITIONS=lots", "--out", str(tmp_path))
    assert worse.returncode == 2 and "TB_MAX_POSITIONS" in worse.stderr


def test_foreign_data_folder_one_minute_bars(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    lines = (ROOT / "bench" / "data" / "candles_1m_BTCUSDT.csv").read_text().splitlines(keepends=True)
    (data / "candles_1m_BTCUSDT.csv").write_text("".join(lines[:3001]))
    r = cli("backtest", "--data", str(data), "--out", str(tmp_path / "out"), "--no-plot")
    assert r.returncode == 0, r.stderr
    import json
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["interval_s"] == 60 and m["symbols"] == ["BTC/USD"]
    assert m["bar_steps"] == 3000 - 180 + 1          # after the TB_MIN_BARS warm-up


def test_a_folder_without_the_market_symbol_says_the_filter_is_off(tmp_path):
    # the default profile's market filter reads BTC/USD from the agent's own feed: a folder without BTC runs
    # without the filter, and the run says so instead of trading differently in silence
    data = tmp_path / "data"
    data.mkdir()
    for sym in ("ETHUSDT", "BTCUSDT"):
        lines = (ROOT / "tracer" / "data" / "bundled" / f"candles_1h_{sym}.csv").read_text().splitlines(keepends=True)
        (data / f"candles_1h_{sym}.csv").write_text("".join(lines[:1200]))
    r = cli("backtest", "--symbols", "ETH/USD", "--data", str(data), "--out", str(tmp_path / "o1"), "--no-plot")
    assert r.returncode == 0, r.stderr
    assert "BTC/USD is not among the symbols (ETH/USD)" in r.stderr and "TB_MARKET_FILTER" in r.stderr
    r = cli("backtest", "--data", str(data), "--out", str(tmp_path / "o2"), "--no-plot")
    assert r.returncode == 0 and "market filter" not in r.stderr, r.stderr
    r = cli("backtest", "--agent", "futures", "--symbols", "ETH/USD", "--data", str(data), "--out",
            str(tmp_path / "o3"), "--no-plot", "--set", "TB_FUTURES_MARKET_FILTER=false")
    assert r.returncode == 0 and "market filter" not in r.stderr, r.stderr


@pytest.mark.parametrize("line,bad,problem", [
    (5, "2022-01-01T04:00:00Z,1,abc,1,1,1", "high 'abc' is not a finite number"),
    (3, "yesterday,1,1,1,1,1", "timestamp 'yesterday' is not an ISO 8601 time"),
    (4, "2022-01-01T00:30:00Z,1,1,1,1,1", "is not after the previous row"),
    (6, "2022-01-01T04:00:00Z,1,0.5,0.9,1,1", "high is below low"),
])
def test_malformed_csv_names_file_line_and_problem(tmp_path, line, bad, problem):
    rows = ["timestamp,open,high,low,close,volume"] + \
           [f"2022-01-01T{h:02d}:00:00Z,1,1.1,0.9,1,5" for h in range(10)]
    rows[line - 1] = bad
    (tmp_path / "candles_1h_BTCUSDT.csv").write_text("\n".join(rows) + "\n")
    r = cli("backtest", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--no-plot")
    assert r.returncode == 2
    assert f"candles_1h_BTCUSDT.csv:{line}: " in r.stderr and problem in r.stderr, r.stderr


# --- the speed-ups are exact: each is checked against the computation it replaces ----------------------------

def _bits(r) -> tuple:
    """A NarrativeResult as exact values (float.hex keeps the sign of zero and every bit)."""
    return tuple(x.hex() if isinstance(x, float) else x for x in
                 (r.score, r.count, r.effective_weight, r.scorer_id, r.latest_age_min, r.dispersion))


def _per_time(now_ns, t, values, ids, lookback_ns, halflife, trim, sw):
    """The narrative of one time as the backtest computed it before narrative_series (and as live does)."""
    from tracer.sentiment.narrative import narrative_from_arrays
    ns = 60 * 1_000_000_000
    hi = int(np.searchsorted(t, now_ns, side="right"))
    lo = int(np.searchsorted(t, now_ns - lookback_ns, side="right"))
    if hi <= lo:
        return narrative_score([], START)
    minutes = t / ns
    return narrative_from_arrays(np.asarray(values)[lo:hi], now_ns / ns - minutes[lo:hi],
                                 ",".join(sorted(set(ids[lo:hi]))), halflife, trim,
                                 None if sw is None else sw[lo:hi])


@pytest.mark.parametrize("seed", range(6))
def test_narrative_series_equals_the_per_time_narrative_bit_for_bit(seed):
    """Random headlines with ties at the trimming cuts, MAD outliers, several scorers, source weights
    (zero and negative too), every trim and half-life: each time's result is identical to the bit."""
    from tracer.sentiment.narrative import narrative_series
    rng = np.random.default_rng(seed)
    ns_h = 3_600 * 1_000_000_000
    t0 = 1_640_000_000 * 1_000_000_000
    n = int(rng.integers(50, 400))
    t = np.sort(t0 + rng.integers(0, 500 * ns_h, n)).astype(np.int64)
    t[10:14] = t[9]                                            # several headlines at one instant
    kind = seed % 3
    if kind == 0:
        values = np.round(rng.uniform(-1, 1, n), 1)            # many ties in value
    elif kind == 1:
        values = np.where(rng.random(n) < 0.1, rng.choice([-1.0, 1.0], n), rng.normal(0, 0.05, n).clip(-1, 1))
    else:
        values = rng.uniform(-1, 1, n)
    values[20:30] = 0.0
    ids = list(rng.choice(["tfidf-lr@abc", "vader-3.3.2+crypto1"], n, p=[0.9, 0.1]))
    sw = rng.choice([1.0, 0.8, 0.5, 0.0, -1.0, 1.5], n).tolist() if seed % 2 else None
    now = np.arange(t0, t0 + 520 * ns_h, ns_h // 2, dtype=np.int64)        # half-hour steps, also before any
    for lookback_h, halflife, trim in ((24, 90.0, 0.1), (6, 30.0, 0.3), (72, 600.0, 0.0), (12, 1.0, 0.45)):
        lb = lookback_h * ns_h
        got = narrative_series(now, t, values, ids, lb, halflife, trim, sw)
        want = [_per_time(int(x), t, values, ids, lb, halflife, trim, sw) for x in now]
        assert [_bits(g) for g in got] == [_bits(w) for w in want]
        assert sum(g.count >= 5 for g in got) > 50


def test_narrative_series_on_the_bundled_headlines(tmp_path):
    """The real data: BTC's relevant headlines, lexicon scores, every hourly bar, default settings."""
    from tracer.data.replay import load_headlines
    from tracer.sentiment.narrative import narrative_series, relevant
    s = load_settings({}, None)
    p = EvalParams.from_settings(s)
    rel = relevant("BTC/USD", load_headlines(bundled_dir() / "headlines.csv"))
    scores = VaderScorer().score([h.title for h in rel])
    t = np.array([int(h.published_at.timestamp() * 1e9) for h in rel], dtype=np.int64)
    values, ids = [x.value for x in scores], [x.scorer_id for x in scores]
    df = load_candles(bundled_dir() / "candles_1h_BTCUSDT.csv")
    now = df.index.asi8 + 3_600 * 1_000_000_000
    lb = int(s.headline_lookback_h * 3_600 * 1_000_000_000)
    got = narrative_series(now, t, values, ids, lb, p.halflife_min, p.sentiment_trim)
    want = [_per_time(int(x), t, values, ids, lb, p.halflife_min, p.sentiment_trim, None) for x in now]
    assert [_bits(g) for g in got] == [_bits(w) for w in want]
    assert sum(g.count > 0 for g in got) > 5000


def test_narrative_series_raises_on_look_ahead_and_bad_values():
    from tracer.sentiment.narrative import narrative_series
    t = np.array([0, 60_000_000_000], dtype=np.int64)
    with pytest.raises(ValueError, match="lie in"):
        narrative_series([120_000_000_000], t, [0.5, 1.5], ["x", "x"], 10**12)
    with pytest.raises(ValueError, match="halflife"):
        narrative_series([120_000_000_000], t, [0.5, 0.5], ["x", "x"], 10**12, halflife_min=0.0)
    assert narrative_series([-1], t, [0.5, 0.5], ["x", "x"], 10**12)[0].count == 0


def test_quantile_linear_is_numpys_bit_for_bit():
    from tracer.risk.var import quantile_linear
    rng = np.random.default_rng(7)
    for n in list(range(1, 40)) + [231, 232, 500]:
        for trial in range(40):
            x = [rng.normal(size=n), rng.integers(-3, 4, n).astype(float), np.round(rng.normal(size=n) * 0.01, 2),
                 rng.standard_cauchy(n)][trial % 4]
            for q in (0.05, 1 - 0.95, 1 - 0.99, 0.0, 1.0, 0.5, float(rng.random())):
                assert quantile_linear(x, q).hex() == float(np.quantile(x, q)).hex(), (n, q)
    assert np.isnan(quantile_linear(np.array([1.0, np.nan, 2.0]), 0.5))


def test_most_correlated_equals_the_pairwise_correlations():
    from tracer.risk.correlation import correlation, most_correlated
    rng = np.random.default_rng(11)
    for trial in range(400):
        n = int(rng.integers(0, 260))
        cand = rng.normal(size=n)
        if trial % 7 == 0 and n:
            cand[rng.integers(0, n)] = np.nan
        if trial % 11 == 0:
            cand = np.full(n, 0.01)
        others = {}
        for k in range(int(rng.integers(1, 6))):
            m = n if rng.random() < 0.7 else int(rng.integers(0, 260))
            y = 0.5 * cand[n - m:] + rng.normal(size=m) * 0.1 if m <= n else rng.normal(size=m)
            if rng.random() < 0.1 and m:
                y[rng.integers(0, m)] = np.inf
            others[f"S{k}"] = np.full(m, 0.02) if rng.random() < 0.1 else y
        best, rho = None, 0.0
        for sym, r in others.items():
            c = correlation(cand, r)
            if best is None or abs(c) > abs(rho):
                best, rho = sym, c
        got = most_correlated(cand, others)
        assert got[0] == best and (got[1].hex() == rho.hex() or (np.isnan(got[1]) and np.isnan(rho)))


class _CountingScorer:
    def __init__(self, inner):
        self.inner, self.scorer_id, self.texts = inner, inner.scorer_id, 0

    def score(self, texts):
        self.texts += len(texts)
        return self.inner.score(texts)


def test_score_cache_gives_the_same_backtest_and_skips_the_scorer(tmp_path):
    """Headlines are scored once per scorer and code version: a second run reads them back (the same floats),
    and an edited scorer source (another code fingerprint) scores again."""
    from tracer.sentiment import cache
    s = settings(tmp_path)
    start, end = datetime(2022, 2, 1, tzinfo=timezone.utc), datetime(2022, 2, 20, tzinfo=timezone.utc)
    runs = []
    for _ in range(2):
        sc = _CountingScorer(VaderScorer())
        res = run_backtest(s, "hybrid", ["BTC/USD", "ETH/USD"], sc, start=start, end=end)
        runs.append((sc.texts, [(t.entry_order_id, t.pnl.hex()) for t in res.trades],
                     [p.equity.hex() for p in res.equity]))
    assert runs[0][0] > 500 and runs[1][0] == 0
    assert runs[0][1:] == runs[1][1:] and runs[0][1]
    f = cache.ScoreFile(tmp_path / "state" / "score_cache")
    f.code = "another"
    sc = _CountingScorer(VaderScorer())
    assert [x.value for x in f.score(sc, ["Bitcoin surges", "Exchange hacked"])] == \
           [x.value for x in VaderScorer().score(["Bitcoin surges", "Exchange hacked"])]
    assert sc.texts == 2


def test_trained_model_is_not_loaded_until_a_text_needs_it():
    """Constructing the trained scorer (the factory does it for every run) neither imports scikit-learn nor
    unpickles the model while the metrics JSON vouches for the file; scoring loads it."""
    code = ("import sys\n"
            "from tracer.sentiment.trained import TrainedScorer\n"
            "s = TrainedScorer()\n"
            "print('sklearn' in sys.modules, s._pipe.loaded)\n"
            "v = s.score(['Bitcoin surges'])[0].value\n"
            "print('sklearn' in sys.modules, s._pipe.loaded, v > 0.3)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False", "True", "True", "True"]


def test_relevant_to_equals_relevant_per_symbol():
    """The substring pre-filter never drops a relevant title: the bundled headlines for every known asset and
    an unknown one, plus titles built to trip it (exclusions, case, non-ASCII letters that fold onto ASCII)."""
    from tracer.data.replay import load_headlines
    from tracer.models import Headline
    from tracer.sentiment.narrative import relevant, relevant_to
    from tracer.symbols import ASSETS
    hs = list(load_headlines(bundled_dir() / "headlines.csv"))
    when = datetime(2022, 1, 1, tzinfo=timezone.utc)
    tricky = ["Bitcoin Cash rallies", "bitcoin cash and BITCOIN", "BTC-USD", "xbtc", "Sol price", "SOL price",
              "solana's SOL", "ADA holders", "ada lovelace", "LINK up", "link", "Avalanche hits", "AVAX/USD",
              "Binance Coin", "binance  coin", "ETHEREUM CLASSIC", "Ethereum Classic and Ether", "\u212aLAY",
              "bitcoin\u017f", "D\u00f6ge", "dogecoin \u201cto the moon\u201d", "FOO token", "foo", "", "  ",
              "\u0130\u0131 ripple", "Ripple\u2019s XRP"]
    hs += [Headline(id=f"t{i}", source="test", title=t, published_at=when) for i, t in enumerate(tricky)]
    symbols = [f"{base}/USD" for base in ASSETS] + ["FOO/USD"]
    got = relevant_to(symbols, hs)
    for sym in symbols:
        assert got[sym] == relevant(sym, hs), sym
    assert sum(len(v) for v in got.values()) > 3000


@pytest.mark.parametrize("market_exit", ["false", "true"])
@pytest.mark.parametrize("explore", ["0", "0.3"])
def test_may_act_false_means_no_intent(tmp_path, explore, market_exit):
    """The backtest skips signals whose policy ``may_act`` is False: ``decide`` must answer each of those
    without an intent (flat, long, short; an empty book and a full one; the market filter for or against,
    the market above, below or unknown; with and without exploration and the market exit)."""
    from tracer.models import Action, Position, PositionSide
    from tracer.risk.limits import Book
    from tracer.sentiment.narrative import NarrativeResult

    s = settings(tmp_path, TB_EXPLORE_SHARE=explore, TB_PROFILE="phase1c",   # thousands of buy/sell signals
                 TB_MARKET_FILTER="BTC/USD", TB_MARKET_WINDOW_H="240", TB_MARKET_EXIT=market_exit)
    params = EvalParams.from_settings(s)
    nar = NarrativeResult(score=0.0, count=0, effective_weight=0.0, scorer_id="", latest_age_min=None)
    bars = load_candles(bundled_dir() / "candles_1h_BTCUSDT.csv").iloc[:1500]
    close, high, low, vol = (bars[c].to_numpy(float) for c in ("close", "high", "low", "volume"))
    table = feature_table(high, low, close, vol, timedelta(days=365) / timedelta(hours=1), s.volume_z_window)
    returns = {"BTC/USD": np.diff(np.log(close[-400:])), "ETH/USD": np.diff(np.log(close[-401:-1]))}
    now0 = datetime(2022, 1, 1, tzinfo=timezone.utc)
    checked = skipped = exits = 0
    for policy in (hybrid_agent.HybridPolicy(s), futures_agent.FuturesPolicy(s)):
        full = {f"X{k}/USD": 100.0 for k in range(policy.limits.max_positions)}
        for i in range(s.min_bars, len(close), 3):
            now = now0 + timedelta(hours=i)
            sig0 = decide("BTC/USD", now, float(close[i]), table.row(i), nar, params)
            act = {Action.BUY: 1, Action.SELL: -1}.get(sig0.action, 0)
            for sig, side in product([replace(sig0, market_ok=ok, market_side=m)
                                      for ok in (True, False) for m in (-1, 0, 1)],
                                     (None, PositionSide.LONG, PositionSide.SHORT)):
                if side is PositionSide.SHORT and policy.agent == "hybrid":
                    continue
                pos = None if side is None else Position(
                    agent=policy.agent, symbol="BTC/USD", side=side, qty=0.1, entry_price=sig.price,
                    opened_at=now - timedelta(hours=5), entry_fee=0.1, stop_loss=0.0, take_profit=0.0,
                    trail_pct=0.0, best_price=sig.price, max_hold_s=0.0, entry_order_id="e1")
                for exposures in ({}, full):
                    expo = dict(exposures, **({"BTC/USD": 1.0} if pos is not None else {}))
                    book = Book(equity=10_000.0, cash=5_000.0, day_start_equity=10_000.0, trades_today=0,
                                exposures=expo, closed_returns=())
                    checked += 1
                    d = policy.decide(sig, pos, book, returns, pending_exit=False)
                    exits += d.decision == "exit" and d.intent is not None and \
                        d.intent.order.reason == "market_exit"
                    if policy.may_act(act, sig.direction, pos, len(expo), sig.market_ok, sig.market_side):
                        continue
                    skipped += 1
                    assert d.intent is None, (policy.agent, sig.action, sig.direction, side, len(expo), d)
    assert skipped > 100 and checked > skipped
    assert (exits > 0) == (market_exit == "true")


def test_with_best_price_is_dataclasses_replace():
    """The brokers' per-bar best-price update (a positional constructor call) equals ``dataclasses.replace``."""
    from dataclasses import replace

    from tracer.execution.exits import with_best_price
    from tracer.models import Position, PositionSide

    p = Position(agent="futures", symbol="BTC/USD", side=PositionSide.SHORT, qty=1.5, entry_price=100.0,
                 opened_at=START, entry_fee=0.2, stop_loss=110.0, take_profit=90.0, trail_pct=0.02, best_price=99.0,
                 max_hold_s=3600.0, entry_order_id="x", signal_id=7, leverage=3.0, margin=50.0,
                 liquidation_price=130.0, funding_paid=0.3, entry_atr=2.5)
    q = with_best_price(p, 95.0)
    assert type(q) is Position and q == replace(p, best_price=95.0) and p.best_price == 99.0
