"""``tracer study``: folds that never share a bar, a walk-forward that never leaks, benchmarks that match the
data, the deflated Sharpe ratio of the paper's worked example, a reproducible bootstrap, working off switches,
and the command end to end on a small slice of the bundled history (real backtests, real files)."""
from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tracer.study.folds import check_folds, rolling_folds

UTC = timezone.utc
D = timedelta(days=1)
H = timedelta(hours=1)
HISTORY = Path(__file__).resolve().parents[2] / "tracer" / "data" / "bundled" / "history"
HEADLINES = HISTORY.parent / "headlines.csv"
SYMS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
T0, T1 = "2022-01-01T00:00:00Z", "2022-01-28T00:00:00Z"


# --- folds (pure) ----------------------------------------------------------------------------------
@pytest.mark.parametrize("train,test,purge,n", [(10, 5, 60, None), (30, 7, 256, 4), (20, 10, 0, 2)])
def test_folds_never_share_a_bar_and_tile_the_end_of_the_data(train, test, purge, n):
    start, end = datetime(2021, 4, 12, tzinfo=UTC), datetime(2021, 9, 1, tzinfo=UTC)
    fl = rolling_folds(start, end, train * D, test * D, purge * H, n)
    check_folds(fl)
    assert fl[-1].test_end == end and fl[0].train_start >= start
    if n:
        assert len(fl) == n
    for f in fl:
        assert f.test_start - f.train_end == purge * H          # the purge gap between training and test
        assert f.train_end - f.train_start == train * D and f.test_end - f.test_start == test * D
    for a, b in zip(fl, fl[1:]):
        assert a.test_end == b.test_start                      # contiguous OOS, no bar scored twice
        assert b.train_start - a.train_start == test * D       # rolling, not anchored


def test_fold_errors_name_the_option():
    s, e = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 2, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="--train-days"):
        rolling_folds(s, e, 0 * D, D, H)
    with pytest.raises(ValueError, match="--test-days"):
        rolling_folds(s, e, D, -D, H)
    with pytest.raises(ValueError, match="--folds"):
        rolling_folds(s, e, D, D, H, 0)
    with pytest.raises(ValueError, match="shorter than one"):
        rolling_folds(s, e, 30 * D, 5 * D, H)


# --- uncertainty (pure) ----------------------------------------------------------------------------------
def test_deflated_sharpe_matches_the_papers_worked_example():
    """Bailey & López de Prado (2014), numerical example: annualised SR 2.5 over T = 1250 daily returns,
    N = 100 trials with annualised Sharpe variance 0.5, skewness -3, kurtosis 10: SR0 = 0.1132 (per day)
    and DSR = 0.9004."""
    from tracer.study.uncertainty import expected_max_sharpe, probabilistic_sharpe
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert probabilistic_sharpe(2.5 / math.sqrt(250), sr0, 1250, -3.0, 10.0) == pytest.approx(0.9004, abs=5e-5)
    assert expected_max_sharpe(1, 0.5) == 0.0                  # one trial: nothing to deflate


def test_deflated_sharpe_falls_with_more_trials_and_uses_the_return_moments():
    from tracer.study.uncertainty import deflated_sharpe, probabilistic_sharpe, sharpe
    r = np.random.default_rng(3).normal(0.0005, 0.01, 2000)
    one, many = deflated_sharpe(r, 1, 1e-4), deflated_sharpe(r, 500, 1e-4)
    assert many.dsr < one.dsr and many.sr0 > one.sr0 == 0.0
    assert one.sharpe == pytest.approx(sharpe(r))
    assert one.dsr == pytest.approx(probabilistic_sharpe(one.sharpe, 0.0, 2000, one.skew, one.kurtosis))


def test_bootstrap_is_reproducible_for_a_seed_and_brackets_the_estimate():
    from tracer.study.uncertainty import mean_interval, sharpe_difference_interval, sharpe_interval
    r = np.random.default_rng(1).normal(0.0002, 0.01, 3000)
    a = sharpe_interval(r, 8760, 168, 500, seed=11)
    b = sharpe_interval(r, 8760, 168, 500, seed=11)
    c = sharpe_interval(r, 8760, 168, 500, seed=12)
    assert a == b and a != c
    assert a.lo < a.point < a.hi
    m = mean_interval(r, 10, 500, seed=5)
    assert m.lo < r.mean() < m.hi and m == mean_interval(r, 10, 500, seed=5)
    same = sharpe_difference_interval(r, r, 8760, 168, 300, seed=1)
    assert same.lo == same.hi == same.point == 0.0             # paired: identical series differ by nothing
    with pytest.raises(ValueError, match="length"):
        sharpe_difference_interval(r, r[:-1], 8760, 168, 300)


# --- components --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("agent", ["hybrid", "futures"])
def test_every_off_switch_is_a_valid_setting_that_changes_what_it_names(agent, tmp_path):
    from tracer.config import load_settings
    from tracer.study.components import Component, is_noop, switches
    base = {"TB_ACTIVE_PARAMS_PATH": str(tmp_path / "none.json")}
    s0 = load_settings(base, dotenv_path=None)
    sw = switches(agent)
    assert {x.component for x in sw} == set(Component)
    from tracer.study.engine import _current_text
    current = {k: str(v) for k, v in _current_text(s0).items()}
    for x in sw:
        s = load_settings({**base, **x.overrides}, dotenv_path=None)      # refused values would raise here
        changed = [k for k, v in x.overrides.items() if str(_current_text(s)[k]) != current[k]]
        assert x.price_only or changed or is_noop(x, current), x
    expl = next(x for x in sw if x.component is Component.EXPLORATION)
    assert is_noop(expl, current)                                       # off by default
    assert not is_noop(expl, {**current, "TB_EXPLORE_SHARE": "0.1"})
    mkt = next(x for x in sw if x.component is Component.MARKET_FILTER)
    assert not is_noop(mkt, current) and is_noop(mkt, {**current, "TB_MARKET_FILTER": "none"})   # on by default


def test_divergence_off_switch_never_triggers():
    from tracer.signals.scoring import divergence_trigger
    vz = np.linspace(-50, 50, 101)
    assert divergence_trigger(10.0, vz).min() > 2.0      # |narrative - price| <= 2 can never reach it


# --- a small slice of the real history ------------------------------------------------------------------
def _slice(dst: Path, alter_after: datetime | None = None, seed: int = 0) -> Path:
    """3 symbols x 27 days of the bundled history and their headlines; with ``alter_after``, every bar that
    closes after it is scaled by a random factor (OHLC together) and every later headline is reworded."""
    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for sym in SYMS:
        df = pd.read_csv(HISTORY / f"candles_1h_{sym}.csv", dtype={"timestamp": str})
        df = df[(df.timestamp >= T0) & (df.timestamp < T1)].reset_index(drop=True)
        if alter_after is not None:
            close_t = pd.to_datetime(df.timestamp, utc=True) + H
            late = (close_t > alter_after).to_numpy()
            k = np.where(late, rng.uniform(0.7, 1.3, len(df)), 1.0)
            for c in ("open", "high", "low", "close"):
                df[c] = df[c] * k
            df["volume"] = df["volume"] * np.where(late, rng.uniform(0.2, 5.0, len(df)), 1.0)
        df.to_csv(dst / f"candles_1h_{sym}.csv", index=False)
    with open(HEADLINES, newline="", encoding="utf-8") as fi, open(dst / "headlines.csv", "w", newline="",
                                                                    encoding="utf-8") as fo:
        rd, wr = csv.reader(fi), csv.writer(fo)
        wr.writerow(next(rd))
        for row in rd:
            if T0 <= row[0] < T1:
                if alter_after is not None and datetime.fromisoformat(row[0].replace("Z", "+00:00")) > alter_after:
                    row[2] = "Bitcoin crashes as Ethereum and Solana collapse" if rng.random() < 0.5 else \
                        "Bitcoin soars to record as Ethereum and Solana rally"
                wr.writerow(row)
    return dst


def _cfg(tmp_path: Path, data: Path, name: str, **kw):
    from tracer.study.engine import StudyConfig
    env = {"TB_ACTIVE_PARAMS_PATH": str(tmp_path / "none.json"), "TB_SENTIMENT_SCORER": "lexicon",
           "TB_STATE_DIR": str(tmp_path / "state"), "TB_MIN_BARS": "50", "TB_LOOKBACK_BARS": "60",
           "TB_PROFILE": "phase1c"}     # a 60-bar window on a small slice: the seed's hourly model
    args = dict(agent="hybrid", out=tmp_path / name, data_dir=data, env=env, env_file=None, train_days=8.0,
                test_days=4.0, folds=2, trials=3, seed=5, costs=(1.0,), reps=200)
    args.update(kw)
    return StudyConfig(**args)


def test_walk_forward_never_leaks_altering_every_bar_after_a_folds_end_changes_nothing_in_it(tmp_path):
    from tracer.study.engine import run_study
    base = run_study(_cfg(tmp_path, _slice(tmp_path / "a"), "out_a"))
    f0 = base.doc["folds"][0]
    end0 = datetime.fromisoformat(f0["test_to"].replace("Z", "+00:00"))
    moved = run_study(_cfg(tmp_path, _slice(tmp_path / "b", alter_after=end0 - timedelta(microseconds=1)),
                           "out_b"))
    g0 = moved.doc["folds"][0]
    # fold 0: the same choice on its training window, the same out-of-sample equity, bar for bar
    assert g0["params"] == f0["params"] and g0["in_sample_objective"] == f0["in_sample_objective"]
    assert g0["in_sample"] == f0["in_sample"] and g0["oos"] == f0["oos"]
    a, b = base.fold_curves["agent"][0], moved.fold_curves["agent"][0]
    assert a.ts == b.ts and np.array_equal(a.equity, b.equity) and a.trades == b.trades
    # the control: fold 1 is scored after that end, so the altered bars do reach it
    a1, b1 = base.fold_curves["agent"][1], moved.fold_curves["agent"][1]
    assert not np.array_equal(a1.equity, b1.equity)


def test_study_reads_tb_headlines_path_like_the_replay(tmp_path):
    """The headlines a study runs on are the replay agent's: --headlines, else TB_HEADLINES_PATH, else the data
    folder's headlines.csv; a named file that does not exist is refused (not run price-only)."""
    from tracer.study.engine import _inputs
    data = _slice(tmp_path / "d")
    news, other = tmp_path / "news.csv", tmp_path / "other.csv"
    for p in (news, other):
        p.write_text((data / "headlines.csv").read_text())
    cfg = _cfg(tmp_path, data, "o")
    assert _inputs(cfg).heads == data / "headlines.csv"
    with_news = _cfg(tmp_path, data, "o", env={**cfg.env, "TB_HEADLINES_PATH": str(news)})
    assert _inputs(with_news).heads == news
    assert _inputs(_cfg(tmp_path, data, "o", env=with_news.env, headlines=other)).heads == other
    with pytest.raises(ValueError, match="TB_HEADLINES_PATH=.*no such file"):
        _inputs(_cfg(tmp_path, data, "o", env={**cfg.env, "TB_HEADLINES_PATH": str(tmp_path / "typo.csv")}))


def test_a_misspelt_variable_in_env_is_warned_about(tmp_path, capsys):
    """As the agents and the backtest: a variable of .env the settings do not know would run at its default."""
    from tracer.study.engine import _inputs
    data = _slice(tmp_path / "d")
    env_file = tmp_path / "study.env"
    env_file.write_text("TB_MAX_POSITON_PCT=0.02\n")
    _inputs(_cfg(tmp_path, data, "o", env_file=str(env_file)))
    err = capsys.readouterr().err
    assert "tracer study: warning:" in err and "TB_MAX_POSITON_PCT" in err, err


def test_benchmarks_match_the_data_and_pay_the_costs(tmp_path):
    from tracer.backtest.runner import load_history
    from tracer.study.benchmarks import Market, Rule, simulate, trend_states, window_rows
    data = _slice(tmp_path / "d")
    series = load_history(["BTC/USD", "ETH/USD", "SOL/USD"], data, H)
    m = Market.from_series(series, H)
    lo, hi = window_rows(m, datetime(2022, 1, 21, tzinfo=UTC), datetime(2022, 1, 27, 23, tzinfo=UTC))
    fee, slip = 10.0, 5.0
    btc = simulate(Rule.BUY_HOLD_BTC, m, lo, hi, 1000.0, fee, slip)
    # decided at the first close, filled at the next open (+slippage, +fee), closed at the last close
    buy = m.open[lo + 1, 0] * (1 + slip / 1e4)
    qty = 1000.0 / buy
    want = qty * m.close[hi, 0] * (1 - slip / 1e4) * (1 - fee / 1e4) - qty * buy * fee / 1e4
    assert btc.equity[-1] == pytest.approx(want, rel=1e-12)
    assert btc.equity[0] == 1000.0 and len(btc.trades) == 1 and btc.entries == 1
    free = simulate(Rule.BUY_HOLD_BTC, m, lo, hi, 1000.0, 0.0, 0.0)
    assert free.equity[-1] == pytest.approx(1000.0 * m.close[hi, 0] / m.open[lo + 1, 0], rel=1e-12)
    assert simulate(Rule.CASH, m, lo, hi, 1000.0, fee, slip).equity.tolist() == [1000.0] * (hi - lo + 1)
    # the trend rule, against an independent daily resample: last completed UTC day's close vs its 20-day mean
    st = trend_states(m, long_short=True)
    close_t = pd.to_datetime(m.close_ns, utc=True)
    for k in range(3):
        daily = pd.Series(m.close[:, k], index=close_t - pd.Timedelta(1, "ns")).resample("1D").last()
        sig = np.sign(daily - daily.rolling(20).mean()).fillna(0)
        for i in range(0, len(close_t), 7):
            day = (close_t[i] - pd.Timedelta(1, "D")).floor("D")
            assert st[i, k] == (int(sig.get(day, 0)) if day in sig.index else 0)
    ls = simulate(Rule.TREND_LONG_SHORT, m, lo, hi, 1000.0, fee, slip, funding_rate=0.001)
    lf = simulate(Rule.TREND_LONG_SHORT, m, lo, hi, 1000.0, fee, slip, funding_rate=0.0)
    assert ls.funding != 0.0 and lf.funding == 0.0
    assert ls.equity[-1] - lf.equity[-1] == pytest.approx(ls.funding, rel=1e-9)
    assert sum(t.pnl for t in ls.trades) == pytest.approx(ls.equity[-1] - 1000.0, rel=1e-9)


def test_trend_rule_never_reads_a_later_price(tmp_path):
    from tracer.backtest.runner import load_history
    from tracer.study.benchmarks import Market, trend_states
    cut = datetime(2022, 1, 22, 5, tzinfo=UTC)
    a = Market.from_series(load_history(["BTC/USD", "ETH/USD"], _slice(tmp_path / "a"), H), H)
    b = Market.from_series(load_history(["BTC/USD", "ETH/USD"], _slice(tmp_path / "b", alter_after=cut), H), H)
    n = int(np.searchsorted(a.close_ns, int(cut.timestamp() * 1e9), side="right"))
    sa, sb = trend_states(a, True), trend_states(b, True)
    assert np.array_equal(sa[:n], sb[:n]) and not np.array_equal(sa, sb)


def test_study_command_writes_a_reproducible_report(tmp_path, monkeypatch, capsys):
    from tracer.cli import main
    data = _slice(tmp_path / "d")
    for k, v in {"TB_ACTIVE_PARAMS_PATH": str(tmp_path / "none.json"), "TB_SENTIMENT_SCORER": "lexicon",
                 "TB_STATE_DIR": str(tmp_path / "state"), "TB_MIN_BARS": "50", "TB_LOOKBACK_BARS": "60",
                 "TB_PROFILE": "phase1c"}.items():     # a 60-bar window: the seed's hourly model
        monkeypatch.setenv(k, v)
    (tmp_path / "none.env").touch()        # an empty .env (a named one must exist)
    argv = ["--env-file", str(tmp_path / "none.env"), "study", "--agent", "futures", "--data", str(data),
            "--train-days", "8", "--test-days", "4", "--folds", "1", "--trials", "2", "--costs", "0,1,2",
            "--ablate", "--seed", "9", "--set", "TB_WEB_TOKEN=hunter2-web-token"]    # a secret that changes nothing
    docs = []
    for name in ("r1", "r2"):
        assert main(argv + ["--out", str(tmp_path / name)] + (["--no-plot"] if name == "r2" else [])) == 0
        docs.append(json.loads((tmp_path / name / "study.json").read_text()))
    out = capsys.readouterr().out
    assert "deflated Sharpe" in out and "trend_long_short" in out
    one, two = docs
    for d in docs:
        d.pop("created_at"), d["design"].pop("storage"), d.pop("command")
    assert one == two                                           # same seed, same numbers
    assert (tmp_path / "r1" / "equity.png").stat().st_size > 0 and not (tmp_path / "r2" / "equity.png").exists()
    md = (tmp_path / "r1" / "report.md").read_text()
    assert one["design"]["fees_bps"] == 5.0 and "Costs: fee 5 bps" in md     # the futures agent's own fee
    assert "hunter2" not in md + (tmp_path / "r1" / "study.json").read_text() + out     # a secret override
    from tracer.study.cli import _masked_argv
    assert _masked_argv(argv[2:]) == [*argv[2:-1], "TB_WEB_TOKEN=***"]      # the Reproduce line
    pg = ["--storage", "postgresql://tb:hunter2@db/x", "--set=TB_OPTIMIZE_STORAGE=postgresql://tb:hunter2@db/x",
          "--stor=postgresql://tb:hunter2@db/x"]                               # argparse's abbreviation too
    assert _masked_argv(pg) == ["--storage", "postgresql://***@db/x", "--set=TB_OPTIMIZE_STORAGE=***",
                                "--stor=postgresql://***@db/x"]
    from tracer.study.cli import reproduce_command
    line = reproduce_command(argv, "futures", one["design"]["fees_bps"], one["design"]["slippage_bps"])
    assert line is not None and line.startswith("TB_FUTURES_FEE_BPS=5 TB_SLIPPAGE_BPS=5 tracer study ")
    assert "hunter2" not in line and line.endswith("'TB_WEB_TOKEN=***'")     # shell-quoted
    for part in ("Out-of-sample result", "deflated Sharpe ratio", "Cost sensitivity", "Ablation", "x2 net return",
                 "long/short around the 20-day mean", "Configurations tried: **", "| `TB_FUTURES_STOP_ATR_MULT` |"):
        assert part in md
    assert one["configurations_tried"]["this_study"] == sum(f["distinct"] for f in one["folds"])
    ct = one["configurations_tried"]
    assert ct["sharpe_variance_per_bar_at_oos_length"] == pytest.approx(
        ct["sharpe_variance_per_bar"] * 8 * 24 / one["oos"]["bars"])           # 8 training days, rescaled
    assert one["deflated_sharpe"]["n_trials"] == ct["total"] == 2 and one["deflated_sharpe"]["dsr"] <= \
        one["probabilistic_sharpe"]["dsr"]
    assert {r["component"] for r in one["ablation"]} >= {"sentiment", "kelly", "var", "exploration"}
    c = one["costs"]
    assert c["x0"]["agent"]["fees_paid"] == 0.0 and c["x2"]["agent"]["fees_paid"] > 0
    assert c["x0"]["benchmarks"]["buy_hold_equal"]["total_return"] > c["x2"]["benchmarks"]["buy_hold_equal"][
        "total_return"]


@pytest.mark.parametrize("args,needle", [
    (["--costs", "0,2"], "--costs must include 1"),
    (["--costs", "zero"], "--costs"),
    (["--trials", "-1"], "--trials"),
    (["--jobs", "0"], "--jobs"),
    (["--set", "TB_NOPE=1"], "--set"),
    (["--params", "/nonexistent/params.json"], "--params"),
    (["--from", "yesterday"], "--from"),
    (["--test-days", "0"], "--test-days"),
])
def test_bad_options_get_a_clear_error_naming_them(args, needle, tmp_path, capsys, monkeypatch):
    from tracer.cli import main
    monkeypatch.setenv("TB_ACTIVE_PARAMS_PATH", str(tmp_path / "none.json"))
    (tmp_path / "none.env").touch()        # an empty .env (a named one must exist)
    rc = main(["--env-file", str(tmp_path / "none.env"), "study", "--out", str(tmp_path / "o"), *args])
    assert rc == 2 and needle in capsys.readouterr().err


def test_ablation_verdict_reads_the_interval_of_the_sharpe_change():
    from tracer.study.report import Verdict, verdict

    def row(lo, hi, point=None, noop=False, dret=0.01):
        return {"noop": noop, "delta_return": dret,
                "delta_sharpe": {"point": (lo + hi) / 2 if point is None else point, "lo": lo, "hi": hi}}
    assert verdict(row(-1.0, -0.1)) == Verdict.EARNS          # off is worse, even at the interval's top
    assert verdict(row(0.1, 1.0)) == Verdict.COSTS            # off is better, even at the bottom
    assert verdict(row(-0.5, 0.5)) == Verdict.UNCLEAR
    assert verdict(row(0.0, 0.0, 0.0, dret=0.0)) == Verdict.NONE
    assert verdict(row(-1.0, -0.1, noop=True)) == Verdict.NOOP



def test_params_file_takes_a_plain_set_or_a_proposal_and_names_unknown_settings(tmp_path):
    from tracer.study.cli import _param_file
    p = tmp_path / "proposal.json"
    p.write_text(json.dumps({"agent": "hybrid", "params": {"TB_MIN_SIGNAL_QUALITY": 3.5, "TB_MAX_TRADES_PER_DAY": 4}}))
    assert _param_file(str(p)) == {"TB_MIN_SIGNAL_QUALITY": "3.5", "TB_MAX_TRADES_PER_DAY": "4"}
    p.write_text(json.dumps({"TB_STOP_ATR_MULT": 2.5}))
    assert _param_file(str(p)) == {"TB_STOP_ATR_MULT": "2.5"}
    p.write_text(json.dumps({"TB_STOP_ATR_MUL": 2.5}))
    with pytest.raises(ValueError, match="TB_STOP_ATR_MUL"):
        _param_file(str(p))
    p.write_text("[1, 2]")
    with pytest.raises(ValueError, match="--params"):
        _param_file(str(p))


def test_the_blackout_count_follows_the_gap_policy():
    """The report's count of OOS bars on which some symbol could not be evaluated applies the gap policy as the
    backtest does: a short hole is accepted (nothing skipped), a long one blocks the symbol while it is inside
    the look-back window."""
    from types import SimpleNamespace

    from tracer.study.engine import _blackout
    iv = 3_600 * 10**9
    full = np.arange(200, dtype=np.int64) * iv
    short = np.delete(full, [100, 101])                  # a 2-bar hole: accepted with max_gap_bars 6
    long_ = np.delete(full, range(100, 110))             # a 10-bar hole: longer than 6
    lo, hi = int(full[0]), int(full[-1] + iv)
    a, b, c = (SimpleNamespace(ts_ns=t) for t in (full, short, long_))
    assert _blackout([a, b], lo, hi, 20, iv, 1, 6) == 0
    # the window is the last 20 hours: the hole (hours 100-109) is inside it, with the bar before it, for
    # the decisions on the bars of hours 110-118 (from hour 119 the window starts after the hole)
    assert _blackout([a, c], lo, hi, 20, iv, 1, 6) == 9
    assert _blackout([a, b], lo, hi, 20, iv, 1, 0) > 0       # every hole a long one


def test_prior_trials_deflate_a_study_that_searched_nothing(tmp_path):
    """--trials 0 measures no spread of candidate Sharpe ratios; the prior configurations must still deflate: the
    null's own estimation variance (1 / training length per bar), not zero."""
    from tracer.study.engine import run_study
    data = _slice(tmp_path / "d")
    alone = run_study(_cfg(tmp_path, data, "alone", trials=0, folds=1)).doc
    prior = run_study(_cfg(tmp_path, data, "prior", trials=0, folds=1, prior_trials=50)).doc
    ct = prior["configurations_tried"]
    assert ct["total"] == 51 and ct["sharpe_variance_source"] == "null"
    assert ct["sharpe_variance_per_bar"] == pytest.approx(1 / (8 * 24))
    assert ct["sharpe_variance_per_bar_at_oos_length"] == pytest.approx(1 / prior["oos"]["bars"])
    assert prior["deflated_sharpe"]["sr0"] > 0
    assert prior["deflated_sharpe"]["dsr"] < prior["probabilistic_sharpe"]["dsr"]
    # one configuration and nothing before it: nothing to deflate
    assert alone["configurations_tried"]["total"] == 1 and alone["deflated_sharpe"]["sr0"] == 0.0
    assert alone["deflated_sharpe"]["dsr"] == alone["probabilistic_sharpe"]["dsr"]
    from tracer.study.report import markdown
    assert "searched nothing" in markdown(prior) and "searched nothing" not in markdown(alone)


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_a_study_of_an_optimizer_proposal_counts_its_search_and_flags_its_fit_window(tmp_path, monkeypatch):
    """`tracer study --params <proposal>`: the optimizer's trials x folds are configurations tried before the
    study (deflated Sharpe), and a proposal fitted inside the study's test windows is not a clean OOS number."""
    from tracer.cli import main
    for k, v in {"TB_ACTIVE_PARAMS_PATH": str(tmp_path / "none.json"), "TB_SENTIMENT_SCORER": "lexicon",
                 "TB_STATE_DIR": str(tmp_path / "state"), "TB_MIN_BARS": "50", "TB_LOOKBACK_BARS": "60",
                 "TB_PROFILE": "phase1c"}.items():
        monkeypatch.setenv(k, v)
    data = _slice(tmp_path / "d")
    (tmp_path / "none.env").touch()        # an empty .env (a named one must exist)
    env_file = str(tmp_path / "none.env")
    proposal = tmp_path / "proposed_params.json"
    assert main(["--env-file", env_file, "optimize", "--agent", "hybrid", "--data", str(data), "--train-days", "8",
                 "--test-days", "4", "--folds", "2", "--trials", "4", "--seed", "3", "--no-plot",
                 "--out", str(tmp_path / "opt"), "--proposal", str(proposal)]) == 0
    prop = json.loads(proposal.read_text())
    searched = prop["optimiser"]["trials_per_fold"] * len(prop["folds"])
    assert main(["--env-file", env_file, "study", "--agent", "hybrid", "--data", str(data), "--params",
                 str(proposal), "--trials", "0", "--train-days", "8", "--test-days", "4", "--folds", "2",
                 "--no-plot", "--out", str(tmp_path / "st")]) == 0
    doc = json.loads((tmp_path / "st" / "study.json").read_text())
    fit_from, fit_to = _t(prop["data"]["train"]["from"]), _t(prop["data"]["train"]["to"])
    oos_from, oos_to = _t(doc["design"]["oos_from"]), _t(doc["design"]["oos_to"])
    assert fit_from < oos_to and oos_from < fit_to       # the proposal's training window lies inside the study's OOS
    ct = doc["configurations_tried"]
    assert ct["proposal"] == searched and ct["total"] == 1 + searched
    assert doc["deflated_sharpe"]["dsr"] < doc["probabilistic_sharpe"]["dsr"]
    assert doc["oos_warning"].startswith("not a clean OOS number: the parameters were fitted on "
                                         f"{fit_from:%Y-%m-%d %H:%M} .. {fit_to:%Y-%m-%d %H:%M}")
    report = (tmp_path / "st" / "report.md").read_text()
    assert "not a clean OOS number" in report and "chosen on each training window only" not in report


def test_candidate_sharpe_variance_is_the_unbiased_pooled_within_fold_variance(monkeypatch):
    """V[SR] of the deflated Sharpe ratio: each candidate's Sharpe minus its fold's mean, squared, over N - F
    (one mean removed per fold), not N - 1; with one candidate per fold nothing is measured (0: the null's)."""
    from types import SimpleNamespace

    from tracer.study import engine, search
    rng = np.random.default_rng(0)
    per_year = math.sqrt(365 * 24)
    folds = [rng.normal(mu, 0.5, 3) * per_year for mu in (-1.0, 0.0, 1.0, 2.0)]    # 4 folds x 3 candidates
    choices = [search.FoldChoice(k, {}, 0, 0.0, {}, 3, 3, list(map(float, sr))) for k, sr in enumerate(folds)]
    monkeypatch.setattr(search, "prepare", lambda *a, **k: None)
    monkeypatch.setattr(search, "run_workers", lambda *a, **k: None)
    monkeypatch.setattr(search, "choices", lambda job: choices)
    monkeypatch.setattr(engine.opt, "baseline", lambda *a, **k: {})
    cfg = SimpleNamespace(trials=3, jobs=1, agent="hybrid", prior_trials=0, proposal=None)
    inp = SimpleNamespace(folds=[None] * 4, interval=timedelta(hours=1))
    got = engine._search(cfg, None, SimpleNamespace(base=None), inp, lambda *a: None).var_sr
    per_bar = [np.asarray(f) / per_year for f in folds]
    pooled = sum(((x - x.mean()) ** 2).sum() for x in per_bar) / (12 - 4)
    assert got == pytest.approx(pooled, rel=1e-9), f"V[SR] {got:.5f} vs unbiased pooled {pooled:.5f}"
    assert engine.pooled_within_fold_variance([np.array([0.1]), np.array([0.3])]) == 0.0
