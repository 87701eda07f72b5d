"""Walk-forward study of the decision model (issue 18 §2), price-only over the 16-month history.

A private research script, not a package module (the `tracer study` tool is the product's version):

- every configuration of the grid is backtested once over the whole history with the agents' own code
  (:func:`tracer.backtest.runner.run_backtest`); a decision at bar t reads bars <= t only, so the slice of
  that run inside a window is what the configuration did there;
- rolling folds: TRAIN_DAYS of training, then TEST_DAYS of test, rolled by TEST_DAYS (never a shared bar);
  in each fold the configuration with the best mean daily Sharpe of both agents on the *train* window is
  chosen (one choice for both agents: signal parity), and its *test* window is kept;
- the concatenated test windows are the out-of-sample (OOS) result; the benchmarks run on the same days
  with the same costs (fee + slippage per side on every change of position).

Usage: .venv/bin/python -m bench.edge_study [--grid NAME] [--out docs/study] [--offset-days D[,D...]]
       [--compare GRID] [--fees recorded|venue]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

# the bundled 16-month history (the same files as the data set's history/ folder); EDGE_STUDY_DATA for another
HISTORY = Path(os.environ.get("EDGE_STUDY_DATA", Path(__file__).resolve().parents[1] / "tracer" / "data" / "bundled"
                              / "history"))
TRAIN_DAYS, TEST_DAYS = 120, 60
FIRST_TRAIN = datetime(2021, 5, 15, tzinfo=timezone.utc)      # after the 30-day warm-up of the longest mean
TOTAL_TRIALS = 215      # configurations backtested up to round 18 (207 to 17, 191 to 16, 175 to 15, 143 to 14, 111 to 13, 95 to 12, 77 to 10) (docs/study/edge_trials.md)
SLIPPAGE_BPS = 5.0
# the fee per side each agent's backtests and benchmarks pay: "recorded" is what every round (0-17) was run with,
# "venue" the venues' own first-tier taker fees, the agents' defaults since (Alpaca spot 25, Binance USD-M 5)
FEES = {"recorded": {"hybrid": 10.0, "futures": 10.0}, "venue": {"hybrid": 25.0, "futures": 5.0}}
FEE_BPS = dict(FEES["recorded"])
COST_BPS = FEE_BPS["hybrid"] + SLIPPAGE_BPS                   # fee + slippage per side of the recorded rounds


@dataclass(frozen=True)
class Fold:
    train: tuple[pd.Timestamp, pd.Timestamp]
    test: tuple[pd.Timestamp, pd.Timestamp]


def folds(end: pd.Timestamp, offset_days: int = 0) -> list[Fold]:
    """``offset_days`` shifts every fold later (a check of how much the result owes to where the folds fall)."""
    out, t0 = [], pd.Timestamp(FIRST_TRAIN) + pd.Timedelta(days=offset_days)
    while True:
        tr_end = t0 + pd.Timedelta(days=TRAIN_DAYS)
        te_end = min(tr_end + pd.Timedelta(days=TEST_DAYS), end)
        if tr_end >= end or (te_end - tr_end) < pd.Timedelta(days=14):
            return out
        out.append(Fold((t0, tr_end), (tr_end, te_end)))
        t0 += pd.Timedelta(days=TEST_DAYS)


# --- metrics on a daily equity curve ---------------------------------------------------------------
def daily(equity: pd.Series) -> pd.Series:
    return equity.resample("1D").last().dropna()


def sharpe(r: pd.Series) -> float:
    sd = r.std(ddof=1)
    return float(r.mean() / sd * math.sqrt(365)) if len(r) > 2 and sd > 0 else 0.0


def max_dd(eq: pd.Series) -> float:
    return float((1 - eq / eq.cummax()).max()) if len(eq) else 0.0


def window_returns(eq_daily: pd.Series, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.Series:
    """Daily returns of the days that close inside [lo, hi) (the first one against the close before lo).

    A buy-and-hold benchmark (its curve carries ``hold_prices`` and ``hold_cost``, :func:`benchmark_equity`) is
    bought in equal parts at that first close and sold at the window's last one, paying the cost each way inside
    the window, as an agent pays for the trades it makes there."""
    keep = (eq_daily.index > lo) & (eq_daily.index <= hi)
    px = eq_daily.attrs.get("hold_prices")
    if px is None:
        r = eq_daily.pct_change()
        return r[keep].dropna()
    pos = np.flatnonzero(keep)
    if not len(pos) or pos[0] == 0:
        return pd.Series(dtype=float)
    seg = px.iloc[pos[0] - 1:pos[-1] + 1]
    c = float(eq_daily.attrs["hold_cost"])
    eq = (seg / seg.iloc[0]).mean(axis=1) * (1 - c)         # bought at the close before the window
    eq.iloc[0] = 1.0
    eq.iloc[-1] *= 1 - c                                     # sold at the window's last close
    return eq.pct_change().iloc[1:]


def summary(r: pd.Series) -> dict:
    eq = (1 + r).cumprod()
    return {"net_return": float(eq.iloc[-1] - 1) if len(eq) else 0.0, "sharpe": sharpe(r),
            "max_drawdown": max_dd(pd.concat([pd.Series([1.0]), eq])), "days": int(len(r))}


# --- uncertainty -----------------------------------------------------------------------------------
def block_bootstrap_sharpe(r: pd.Series, seed: int = 7, n_boot: int = 2000, block: int = 10) -> tuple[float, float]:
    """90% interval of the annualised daily Sharpe by a moving-block bootstrap (blocks of ``block`` days)."""
    x = r.to_numpy(float)
    n = len(x)
    rng = np.random.default_rng(seed)
    k = int(np.ceil(n / block))
    out = np.empty(n_boot)
    for b in range(n_boot):
        starts = rng.integers(0, n - block + 1, size=k)
        y = np.concatenate([x[s:s + block] for s in starts])[:n]
        sd = y.std(ddof=1)
        out[b] = y.mean() / sd * math.sqrt(365) if sd > 0 else 0.0
    return float(np.quantile(out, 0.05)), float(np.quantile(out, 0.95))


def deflated_sharpe(r: pd.Series, n_trials: int, trial_sharpes_daily: list[float]) -> float:
    """Bailey & Lopez de Prado (2014): P(true Sharpe > SR0), SR0 the expected best of ``n_trials`` unskilled
    trials with the variance of the trials' (daily, not annualised) Sharpe ratios."""
    from scipy.stats import kurtosis, norm, skew
    x = r.to_numpy(float)
    sr = x.mean() / x.std(ddof=1)
    g3, g4 = skew(x), kurtosis(x, fisher=False)
    v = float(np.var(trial_sharpes_daily, ddof=1)) if len(trial_sharpes_daily) > 1 else 0.0
    em = 0.5772156649
    sr0 = math.sqrt(v) * ((1 - em) * norm.ppf(1 - 1 / n_trials) + em * norm.ppf(1 - 1 / (n_trials * math.e)))
    z = (sr - sr0) * math.sqrt(len(x) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr * sr)
    return float(norm.cdf(z))


# --- benchmarks (daily, equal weight, same costs) ---------------------------------------------------
def closes() -> pd.DataFrame:
    cols = {}
    for f in sorted(HISTORY.glob("candles_1h_*USDT.csv")):
        d = pd.read_csv(f, usecols=["timestamp", "close"])
        # a bar's close is at open + 1 h
        idx = pd.to_datetime(d["timestamp"], utc=True) + pd.Timedelta(hours=1)
        cols[f.stem.split("_")[-1].replace("USDT", "")] = pd.Series(d["close"].to_numpy(float), index=idx)
    return pd.DataFrame(cols).sort_index().ffill()


def benchmark_equity(px_daily: pd.DataFrame, cost_bps: float | None = None) -> dict[str, pd.Series]:
    """Daily equity (start 1.0) of cash, BTC buy-and-hold, equal-weight buy-and-hold (bought once, never
    rebalanced), and the 20-day-mean trend rule long-only and long/short; a position decided at a day's close
    earns the next day. The buy-and-hold curves are before costs: :func:`window_returns` buys them at the start of
    each window it slices and sells them at its end, at ``cost_bps`` a side (a constant cost on the whole curve
    would cancel in every window's returns)."""
    r = px_daily.pct_change().fillna(0.0)
    c = (COST_BPS if cost_bps is None else cost_bps) / 1e4
    out = {"cash": pd.Series(1.0, index=px_daily.index)}
    for name, held in (("btc_hold", px_daily[["BTC"]]), ("ew_hold", px_daily)):
        out[name] = (held / held.iloc[0]).mean(axis=1)
        out[name].attrs.update(hold_prices=held, hold_cost=c)
    above = np.sign(px_daily - px_daily.rolling(20).mean()).fillna(0.0)
    for name, pos in (("trend_long", above.clip(lower=0)), ("trend_long_short", above)):
        held = pos.shift(1).fillna(0.0)
        turnover = held.diff().abs().fillna(held.abs())
        port = (held * r).mean(axis=1) - c * turnover.mean(axis=1)
        out[name] = (1 + port).cumprod()
    return out


# --- the agents -----------------------------------------------------------------------------------
def run_agent(agent: str, overrides: dict[str, str]) -> pd.Series:
    from tracer.backtest.runner import run_backtest
    from tracer.config import load_settings
    from tracer.sentiment.factory import make_scorer
    from tracer.backtest.data import discover
    env = {"TB_STATE_DIR": "/tmp/edge/state", "TB_FEE_BPS": repr(FEE_BPS["hybrid"]),
           "TB_FUTURES_FEE_BPS": repr(FEE_BPS["futures"]), **overrides}
    s = load_settings(env, dotenv_path=None)
    log = logging.getLogger("edge")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    res = run_backtest(s, agent, sorted(discover(HISTORY)), make_scorer(s, log), data_dir=HISTORY)
    eq = pd.Series([p.equity for p in res.equity], index=pd.DatetimeIndex([p.ts for p in res.equity]))
    entries_day = res.entries / max((res.end - res.start).total_seconds() / 86400, 1e-9)
    eq.attrs.update(entries=res.entries, entries_per_day=entries_day, fees=res.fees_paid,
                    trades=[(t.entry_ts, t.exit_ts, t.pnl) for t in res.trades])
    return eq


GRIDS: dict[str, list[dict[str, str]]] = {}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", default="main")
    ap.add_argument("--out", default="docs/study")
    ap.add_argument("--only", help="comma list of config names")
    ap.add_argument("--agents", default="hybrid,futures", help="comma list (one agent: a quick look at a design)")
    ap.add_argument("--offset-days", default="0",
                    help="shift the folds later by this many days, or a comma list of shifts evaluated on the same "
                         "backtests (each output file gets an _o<days> suffix)")
    ap.add_argument("--compare", help="another grid evaluated on the same folds (its cells that are the same "
                                      "configurations reuse the backtests)")
    ap.add_argument("--fees", choices=sorted(FEES), default="recorded",
                    help="recorded: 10 bps a side for both agents, as every round was run; venue: each venue's own "
                         "first-tier taker fee (hybrid 25, futures 5), outputs suffixed _venuefees")
    args = ap.parse_args()
    FEE_BPS.update(FEES[args.fees])
    from bench.edge_grid import GRIDS as G
    grids = {args.grid: G[args.grid]}
    if args.compare:
        grids[args.compare] = G[args.compare]
    if args.only:
        grids = {g: {k: v for k, v in cells.items() if k in args.only.split(",")} for g, cells in grids.items()}
    agents = args.agents.split(",")
    memo: dict[tuple, pd.Series] = {}
    all_runs = {g: _run_grid(cells, agents, memo) for g, cells in grids.items()}
    if args.fees == "recorded":
        bench = benchmark_equity(daily(closes()))
    else:       # each agent's benchmarks pay that agent's costs
        bench = {f"{name} @{a}": eq for a in agents
                 for name, eq in benchmark_equity(daily(closes()), FEE_BPS[a] + SLIPPAGE_BPS).items()}
    tag = "" if args.fees == "recorded" else f"_{args.fees}fees"
    for offset in (int(o) for o in args.offset_days.split(",")):
        for g, runs in all_runs.items():
            _report(g + tag, len(grids[g]), runs, agents, bench, offset, Path(args.out))
    return 0


def _run_grid(grid: dict[str, dict[str, str]], agents: list[str],
              memo: dict[tuple, pd.Series]) -> dict[str, dict[str, pd.Series]]:
    runs: dict[str, dict[str, pd.Series]] = {}
    for name, ov in grid.items():
        runs[name] = {}
        for a in agents:
            key = (a, tuple(sorted(_effective(a, ov).items())))
            if key not in memo:       # the same backtest twice (e.g. a futures-only switch seen by the hybrid)
                memo[key] = run_agent(a, ov)
            runs[name][a] = memo[key]
        print(f"ran {name}", file=sys.stderr)
    return runs


def _report(grid_name: str, n_cells: int, runs: dict[str, dict[str, pd.Series]], agents: list[str],
            bench: dict[str, pd.Series], offset_days: int, out: Path) -> None:
    end = min(daily(runs[n][a]).index[-1] for n in runs for a in runs[n])
    fl = folds(end, offset_days)
    chosen = []
    oos: dict[str, list[pd.Series]] = {a: [] for a in agents}
    for f in fl:
        score = {}
        for name in runs:
            score[name] = np.mean([sharpe(window_returns(daily(runs[name][a]), *f.train)) for a in runs[name]])
        best = max(score, key=lambda k: (score[k], k))
        chosen.append((f, best, score[best]))
        for a in oos:
            oos[a].append(window_returns(daily(runs[best][a]), *f.test))
    lo, hi = fl[0].test[0], fl[-1].test[1]
    report = {"folds": [{"train": [str(f.train[0].date()), str(f.train[1].date())],
                         "test": [str(f.test[0].date()), str(f.test[1].date())], "chosen": b,
                         "train_mean_sharpe": round(sc, 3)} for f, b, sc in chosen],
              "configs_tried": n_cells, "grid": grid_name, "offset_days": offset_days,
              "oos_window": [str(lo.date()), str(hi.date())]}
    table = {}
    for a in oos:
        r = pd.concat(oos[a])
        m = summary(r)
        m["sharpe_90ci"] = block_bootstrap_sharpe(r)
        # every configuration of this grid on the same OOS days: the spread the deflation uses
        trial_sr = [float(window_returns(daily(runs[n][a]), lo, hi).pipe(lambda x: x.mean() / x.std(ddof=1)))
                    for n in runs]
        m["deflated_sharpe_p"] = {str(k): deflated_sharpe(r, k, trial_sr) for k in (n_cells, TOTAL_TRIALS)}
        table[f"walk-forward {a}"] = m
    # design choices (not the per-fold pick) are compared on the mean train-window Sharpe over the folds
    train_mean = {name: float(np.mean([sharpe(window_returns(daily(runs[name][a]), *f.train))
                                       for f in fl for a in runs[name]])) for name in runs}
    report["train_mean_sharpe"] = train_mean
    print(f"=== grid {grid_name}, folds offset {offset_days} days")
    for name in runs:
        print(f"train {name:24s} mean Sharpe {train_mean[name]:+.3f}  " + "  ".join(
            f"{a} {np.mean([sharpe(window_returns(daily(runs[name][a]), *f.train)) for f in fl]):+.2f}"
            for a in runs[name]))
    for name in runs:
        for a in runs[name]:
            m = summary(window_returns(daily(runs[name][a]), lo, hi))
            m["entries_per_day"] = _entries_per_day(runs[name][a], lo, hi)
            table[f"{name} {a}"] = m
    for name, eq in bench.items():
        table[f"bench {name}"] = summary(window_returns(eq, lo, hi))
    report["table"] = table
    out.mkdir(parents=True, exist_ok=True)
    suffix = f"_o{offset_days}" if offset_days else ""
    (out / f"edge_{grid_name}{suffix}.json").write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report["folds"], indent=1))
    print(f"OOS {lo.date()} -> {hi.date()}")
    for k, m in table.items():
        print(f"{k:34s} ret {m['net_return']:+8.2%}  sharpe {m['sharpe']:+5.2f}  maxdd {m['max_drawdown']:6.2%}"
              + (f"  entries/day {m['entries_per_day']:.2f}" if "entries_per_day" in m else "")
              + (f"  90% CI {m['sharpe_90ci'][0]:+.2f}..{m['sharpe_90ci'][1]:+.2f}  DSR p {m['deflated_sharpe_p']}"
                 if "sharpe_90ci" in m else ""))


def _effective(agent: str, ov: dict[str, str]) -> dict[str, str]:
    """The overrides that can change ``agent``'s backtest: the futures agent's market-filter switch means
    nothing to the hybrid, and a futures agent told to ignore the filter trades as without it."""
    out = dict(ov)
    if agent == "futures":
        out.pop("TB_RISK_PER_TRADE", None)       # the hybrid's entry size
    if agent == "hybrid":
        out.pop("TB_FUTURES_MARKET_FILTER", None)
    elif out.get("TB_FUTURES_MARKET_FILTER") == "false":
        # "none", not unset: since round 12 the trend profile itself sets the filter
        out.pop("TB_FUTURES_MARKET_FILTER")
        out["TB_MARKET_FILTER"] = "none"
        out.pop("TB_MARKET_WINDOW_H", None)
    return out


def _entries_per_day(eq: pd.Series, lo: pd.Timestamp, hi: pd.Timestamp) -> float:
    n = sum(1 for e, _, _ in eq.attrs["trades"] if lo <= pd.Timestamp(e) < hi)
    return n / max((hi - lo).total_seconds() / 86400, 1e-9)


if __name__ == "__main__":
    sys.exit(main())
