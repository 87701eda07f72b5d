"""The study: walk-forward search, out-of-sample runs, benchmarks, costs, ablations, uncertainty.

Imperative shell around pure parts: it reads the candle files once for the benchmarks, runs backtests
in-process (:func:`tracer.backtest.runner.run_backtest`) and keeps results in memory; :mod:`report` writes them.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from tracer.backtest.runner import BacktestResult, load_history, run_backtest
from tracer.config import masked_overrides
from tracer.data.gaps import usable_rows
from tracer.optimize import study as opt
from tracer.optimize.objective import ObjectiveConfig
from tracer.optimize.walkforward import Fold
from tracer.study import search
from tracer.study.benchmarks import Market, rules_for, simulate, window_rows
from tracer.study.components import cost_overrides, is_noop, switches
from tracer.study.folds import check_folds, rolling_folds
from tracer.study.metrics import Run, TradeRec, chain, study_metrics
from tracer.study.uncertainty import (deflated_sharpe, mean_interval, sharpe_difference_interval,
                                      sharpe_interval)
from tracer.models import AGENTS

Progress = Callable[[str, int, int], None]          # (phase, done, total)


def history_dir() -> Path:
    """The bundled 16-month hourly history (``tracer/data/bundled/history``), the study's default data."""
    from tracer.data.replay import bundled_dir
    return bundled_dir() / "history"


def default_headlines() -> Path:
    from tracer.data.replay import bundled_dir
    return bundled_dir() / "headlines.csv"


@dataclass(frozen=True)
class StudyConfig:
    agent: str
    out: Path
    data_dir: Path | None = None            # None: the bundled history
    headlines: Path | None = None           # None: TB_HEADLINES_PATH, headlines.csv of the data folder, bundled
    symbols: tuple[str, ...] = ()           # empty: the agent's symbols
    profile: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)    # --set / --params (TB_NAME -> text)
    env: Mapping[str, str] = field(default_factory=dict)          # the environment settings are read from
    env_file: str | None = ".env"
    start: datetime | None = None
    end: datetime | None = None
    train_days: float = 90.0
    test_days: float = 30.0
    purge_bars: int | None = None           # None: TB_LOOKBACK_BARS
    folds: int | None = None                # None: every fold that fits
    trials: int = 20                        # per fold; 0 = no search, the profile as given
    seed: int = 42
    costs: tuple[float, ...] = (0.0, 1.0, 2.0)
    ablate: bool = False
    jobs: int = 1
    storage: str = ""                       # empty: TB_OPTIMIZE_STORAGE, else SQLite file in the output folder
    prior_trials: int = 0                   # configurations tried before this study (counted in the DSR)
    proposal: ProposalOrigin | None = None  # --params was an optimizer proposal: its search and fit window
    block_bars: int = 168                   # bootstrap block: one week of hourly bars
    reps: int = 2000

    def __post_init__(self):
        if self.agent not in AGENTS:
            raise ValueError(f"--agent must be one of {', '.join(AGENTS)} (got {self.agent!r})")
        for name, v, lo in (("--trials", self.trials, 0), ("--jobs", self.jobs, 1), ("--prior-trials",
                            self.prior_trials, 0), ("--block-bars", self.block_bars, 1), ("--reps", self.reps, 100)):
            if v < lo:
                raise ValueError(f"{name} must be >= {lo} (got {v})")
        if 1.0 not in self.costs:
            raise ValueError(f"--costs must include 1 (the costs as configured); got {list(self.costs)}")


@dataclass(frozen=True)
class ProposalOrigin:
    """Where an optimizer proposal studied with ``--params`` came from: the configurations its search tried
    (trials per fold x folds) and the training window its parameters were fitted on."""
    trials: int
    fit_from: datetime
    fit_to: datetime

    def overlaps(self, lo: datetime, hi: datetime) -> bool:
        return self.fit_from < hi and lo < self.fit_to

    def warning(self) -> str:
        return (f"not a clean OOS number: the parameters were fitted on {self.fit_from:%Y-%m-%d %H:%M} .. "
                f"{self.fit_to:%Y-%m-%d %H:%M} UTC, inside this study's out-of-sample windows")


def prior_total(cfg: StudyConfig) -> int:
    """Configurations tried before this study: ``--prior-trials`` plus the search that made a proposal."""
    return cfg.prior_trials + (cfg.proposal.trials if cfg.proposal else 0)


@dataclass
class Outcome:
    doc: dict[str, Any]                       # everything for study.json and report.md
    curves: dict[str, Run]                    # OOS curves for the plots (agent, benchmarks)
    fold_curves: dict[str, list[Run]]


class _Runner:
    """Backtests of the agent on a window with overrides, costs and price-only as asked."""

    def __init__(self, cfg: StudyConfig, job: opt.Job, ev: opt.Evaluator, no_headlines: Path):
        self.cfg, self.job, self.ev, self.no_headlines = cfg, job, ev, no_headlines
        self._atr: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def settings(self, overrides: Mapping[str, Any]):
        return self.ev.settings(dict(overrides))

    def run(self, overrides: Mapping[str, Any], fold: Fold, price_only: bool = False) -> tuple[Run, BacktestResult]:
        j = self.job
        s = self.settings(overrides)
        heads = self.no_headlines if price_only else (Path(j.headlines) if j.headlines else None)
        res = run_backtest(s, j.agent, j.symbols, self.ev.scorer, *fold.test_range(),
                           Path(j.data_dir) if j.data_dir else None, heads, timedelta(seconds=j.interval_s),
                           history=self.ev.history)
        return self._as_run(res, s), res

    def _atr_of(self, symbol: str, s) -> tuple[np.ndarray, np.ndarray]:
        if symbol not in self._atr:
            h = self.ev.history
            t = h.features(symbol, timedelta(days=365) / h.interval, s.volume_z_window, 0)
            self._atr[symbol] = (h.series(symbol).ts_ns + h.iv_ns, t.atr)
        return self._atr[symbol]

    def _r(self, t, s) -> float | None:
        """P&L over the risk at the initial stop: ``stop ATR multiple x ATR at the signal bar x qty``."""
        stamp = t.entry_order_id.split("-")
        try:
            sig = datetime.strptime(stamp[3], "%y%m%d%H%M").replace(tzinfo=timezone.utc)
        except (IndexError, ValueError):
            sig = t.entry_ts
        close_ns, atr = self._atr_of(t.symbol, s)
        i = int(np.searchsorted(close_ns, int(sig.timestamp() * 1e9)))
        if i >= len(close_ns) or close_ns[i] != int(sig.timestamp() * 1e9) or not np.isfinite(atr[i]):
            return None
        mult = s.futures_stop_atr_mult if self.job.agent == "futures" else s.stop_atr_mult
        risk = mult * atr[i] * t.qty
        return t.pnl / risk if risk > 0 else None

    def _as_run(self, res: BacktestResult, s) -> Run:
        trades = []
        for t in res.trades:
            basis = t.entry_price * t.qty / max(t.leverage, 1.0)
            trades.append(TradeRec(t.symbol, t.side.value == "long", t.entry_ts, t.exit_ts, t.entry_price * t.qty,
                                   t.pnl, t.fees, t.funding, t.pnl / basis if basis else 0.0, self._r(t, s)))
        return Run(self.job.agent, tuple(p.ts for p in res.equity), np.array([p.equity for p in res.equity]),
                   res.initial_capital, res.interval, tuple(trades), res.fees_paid, sum(t.funding for t in res.trades),
                   np.array([p.positions > 0 for p in res.equity]), res.entries)


def _blackout(series, lo_ns: int, hi_ns: int, lookback: int, iv_ns: int, min_bars: int, max_gap_bars: int) -> int:
    """Bars of [lo, hi] (close times) on which some symbol cannot be evaluated under the gap policy (a hole
    longer than ``max_gap_bars`` in its look-back window, or fewer than ``min_bars`` bars): the rule the
    backtest and the live agent apply (:func:`tracer.data.gaps.usable_rows`)."""
    common = series[0].ts_ns
    for sr in series[1:]:
        common = np.intersect1d(common, sr.ts_ns, assume_unique=True)
    bad = np.zeros(len(common), dtype=bool)
    for sr in series:
        ok, _ = usable_rows(sr.ts_ns, iv_ns, lookback, min_bars, max_gap_bars)
        bad |= ~ok[np.searchsorted(sr.ts_ns, common)]
    close = common + iv_ns
    sel = (close >= lo_ns) & (close <= hi_ns)
    return int(bad[sel].sum())


@dataclass
class _Inputs:
    """What the study runs on: settings, data, symbols, the bar interval and the folds."""
    s: Any
    env: dict[str, str]
    data_dir: Path
    heads: Path | None
    symbols: list[str]
    interval: timedelta
    lo: datetime
    hi: datetime
    purge_bars: int
    folds: list[Fold]


def _inputs(cfg: StudyConfig) -> _Inputs:
    from tracer.backtest.data import discover
    from tracer.cli_args import headlines_file
    from tracer.config import load_settings
    from tracer.optimize.cli import data_window

    env = dict(cfg.env)
    if cfg.profile:
        env["TB_PROFILE"] = cfg.profile
    env.update(cfg.overrides)
    # a misspelt variable in .env would run at its default unsaid
    s = load_settings(env, dotenv_path=cfg.env_file, warn=lambda w: print(f"tracer study: warning: {w}", file=sys.stderr))
    data_dir = Path(cfg.data_dir) if cfg.data_dir else history_dir()
    # as the replay agent reads them: --headlines, else TB_HEADLINES_PATH, else the data folder's (or the bundled)
    heads = headlines_file(str(cfg.headlines) if cfg.headlines else None, s.headlines_path)
    if heads is None and (data_dir / "headlines.csv").is_file():
        heads = data_dir / "headlines.csv"
    elif heads is None and cfg.data_dir is None:
        heads = default_headlines()
    found = discover(data_dir)
    if cfg.symbols:
        symbols = list(cfg.symbols)
    elif cfg.data_dir is not None:        # a folder of its own: every symbol in it (as tracer backtest)
        symbols = sorted(found)
        if not symbols:
            raise ValueError(f"--data {data_dir}: no candles_<interval>_<SYMBOL>.csv file")
    else:
        symbols = list(s.symbols if cfg.agent == "hybrid" else s.futures_symbols)
    interval = timedelta(hours=1)
    ivs = {found[sym][0] for sym in symbols if sym in found}
    if len(ivs) == 1:
        interval = ivs.pop()
    lo, hi = data_window(s, symbols, data_dir, interval)
    hi = hi - timedelta(microseconds=1) + interval      # exclusive end on the bar grid: the folds' edges are whole bars
    lo = max(lo, cfg.start) if cfg.start else lo
    hi = min(hi, cfg.end) if cfg.end else hi
    purge_bars = s.lookback_bars if cfg.purge_bars is None else cfg.purge_bars
    folds = rolling_folds(lo, hi, timedelta(days=cfg.train_days), timedelta(days=cfg.test_days),
                          purge_bars * interval, cfg.folds)
    check_folds(folds)
    return _Inputs(s, env, data_dir, heads, symbols, interval, lo, hi, purge_bars, folds)


@dataclass
class _Search:
    """The in-fold search's outcome: each fold's parameters, and what the deflation needs."""
    params: list[dict[str, float]]
    choices: list[search.FoldChoice]
    n_configs: int              # distinct candidates of this study plus the prior trials
    var_sr: float               # spread of the candidates' Sharpe ratios per bar (0: not measured)


def pooled_within_fold_variance(groups: list[np.ndarray]) -> float:
    """Unbiased pooled variance of values around their own group's mean: the squared deviations over N - F
    (N values, F non-empty groups; one mean was estimated per group). With N <= F (one candidate per fold) the
    spread is not measured: 0, and the study then takes the null's variance (see :func:`run_study`)."""
    groups = [g for g in groups if len(g)]
    n, f = sum(len(g) for g in groups), len(groups)
    if n <= f:
        return 0.0
    return float(sum(((g - g.mean()) ** 2).sum() for g in groups) / (n - f))


def _search(cfg: StudyConfig, job: opt.Job, ev: opt.Evaluator, inp: _Inputs, progress: Progress) -> _Search:
    """Training windows only: the best of ``cfg.trials`` candidates per fold (none searched with 0 trials)."""
    out = _Search([{} for _ in inp.folds], [], 1, 0.0)
    if cfg.trials > 0:
        total = len(inp.folds) * cfg.trials
        done = [0]

        def tick() -> None:
            done[0] += 1
            progress("search", min(done[0], total), total)
        progress("search", 0, total)
        search.prepare(job, opt.baseline(ev.base, cfg.agent))
        search.run_workers(job, cfg.jobs, ev, tick)
        out.choices = search.choices(job)
        out.params = [dict(c.params) for c in out.choices]
        out.n_configs = sum(c.distinct for c in out.choices)
        per_bar = math.sqrt(timedelta(days=365) / inp.interval)
        out.var_sr = pooled_within_fold_variance([np.asarray(c.sharpes, dtype=float) / per_bar
                                                  for c in out.choices])
    out.n_configs += prior_total(cfg)
    return out


@dataclass
class _OutOfSample:
    """Every test-window run: the chosen parameters, untuned, each other cost level and each ablation."""
    oos: list[Run]
    untuned: list[Run]
    costs: dict[float, list[Run]]
    ablations: dict[str, list[Run]]
    fold_rows: list[dict[str, Any]]


def _out_of_sample(cfg: StudyConfig, runner: _Runner, inp: _Inputs, found: _Search, sw: list[Any],
                   progress: Progress) -> _OutOfSample:
    s = inp.s
    extra_costs = [c for c in cfg.costs if c != 1.0]
    per_fold = 1 + (1 if cfg.trials > 0 else 0) + len(extra_costs) + len(sw)
    total = len(inp.folds) * per_fold
    k = 0
    res = _OutOfSample([], [], {c: [] for c in extra_costs}, {x.component.value: [] for x in sw}, [])

    def step() -> None:
        nonlocal k
        k += 1
        progress("out-of-sample", k, total)
    progress("out-of-sample", 0, total)
    for f, params in zip(inp.folds, found.params):
        run, _ = runner.run(params, f)
        res.oos.append(run)
        step()
        if cfg.trials > 0:
            res.untuned.append(runner.run({}, f)[0])
            step()
        for c in extra_costs:
            res.costs[c].append(runner.run({**params, **cost_overrides(c, _fee(s, cfg.agent), s.slippage_bps,
                                                                       cfg.agent)}, f)[0])
            step()
        for x in sw:
            res.ablations[x.component.value].append(runner.run({**params, **x.overrides}, f, x.price_only)[0])
            step()
        fm = study_metrics(run)
        res.fold_rows.append(dict(f.as_dict(), params=params, oos={k2: fm.get(k2) for k2 in
                                                                    ("total_return", "sharpe", "max_drawdown",
                                                                     "trades", "entries_per_day")}))
    for row, c in zip(res.fold_rows, found.choices):
        row.update(best_trial=c.best_trial, trials=c.trials, distinct=c.distinct,
                   in_sample_objective=c.in_sample_objective,
                   in_sample={k2: c.in_sample.get(k2) for k2 in ("total_return", "sharpe", "max_drawdown", "trades")})
    return res


def _benchmarks(cfg: StudyConfig, inp: _Inputs, market: Market, funding: float, capital: float
                ) -> dict[str, dict[float, list[Run]]]:
    """The agent's benchmark rules on the same test windows, at every cost level."""
    s = inp.s
    bench: dict[str, dict[float, list[Run]]] = {}
    for rule in rules_for(cfg.agent):
        bench[rule.value] = {}
        for c in cfg.costs:
            runs = []
            for f in inp.folds:
                r0, r1 = window_rows(market, *f.test_range())
                runs.append(simulate(rule, market, r0, r1, capital, _fee(s, cfg.agent) * c, s.slippage_bps * c,
                                     funding))
            bench[rule.value][c] = runs
    return bench


def _fee(s: Any, agent: str) -> float:
    """The agent's own taker fee (spot and futures venues charge differently)."""
    return float(s.futures_fee_bps if agent == "futures" else s.fee_bps)


def run_study(cfg: StudyConfig, progress: Progress = lambda *_: None) -> Outcome:
    from tracer.optimize.params import code_version

    inp = _inputs(cfg)
    s, symbols, folds, interval, data_dir, heads = inp.s, inp.symbols, inp.folds, inp.interval, inp.data_dir, inp.heads
    lo, hi, purge_bars = inp.lo, inp.hi, inp.purge_bars

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # as tracer optimize: --storage, else TB_OPTIMIZE_STORAGE (a password stays in .env, off the command line)
    storage = cfg.storage or s.optimize_storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    code = code_version()
    trials = max(cfg.trials, 1)
    ocfg = ObjectiveConfig.from_settings(s)
    name = "study-" + opt.default_study_name(cfg.agent, symbols, folds, trials, cfg.seed, dict(cfg.overrides),
                                             code, ocfg)
    job = opt.Job(agent=cfg.agent, symbols=symbols, folds=folds, trials=trials, seed=cfg.seed, storage=storage,
                  study=name, base_env=inp.env, env_file=cfg.env_file, data_dir=str(data_dir),
                  headlines=str(heads) if heads else str(out / "no-headlines.csv"),
                  interval_s=int(interval.total_seconds()), objective=ocfg, overrides=dict(cfg.overrides),
                  profile=s.profile)
    no_heads = out / "no-headlines.csv"
    no_heads.write_text("published_at,source,title,symbols\n")
    ev = opt.Evaluator(job)
    runner = _Runner(cfg, job, ev, no_heads)

    found = _search(cfg, job, ev, inp, progress)
    n_configs, var_sr = found.n_configs, found.var_sr
    sw = switches(cfg.agent) if cfg.ablate else []
    current = {k: str(v) for k, v in _current_text(s).items()}
    runs_oos = _out_of_sample(cfg, runner, inp, found, sw, progress)
    oos, untuned, costs, ablations, fold_rows = (runs_oos.oos, runs_oos.untuned, runs_oos.costs, runs_oos.ablations,
                                                 runs_oos.fold_rows)

    series = load_history(symbols, data_dir, interval)
    funding = s.futures_funding_rate if cfg.agent == "futures" else 0.0
    capital = s.futures_capital if cfg.agent == "futures" else s.hybrid_capital
    bench = _benchmarks(cfg, inp, Market.from_series(series, interval), funding, capital)

    # --- numbers -------------------------------------------------------------------------------------
    ppy = timedelta(days=365) / interval
    agent_run = chain(cfg.agent, oos)
    seed = cfg.seed

    def summary(run: Run, with_ci: bool = True) -> dict[str, Any]:
        m = study_metrics(run)
        if with_ci:
            m["sharpe_ci"] = sharpe_interval(run.returns(), ppy, cfg.block_bars, cfg.reps, seed).as_dict()
            rets = [t.ret for t in sorted(run.trades, key=lambda t: t.entry_ts)]
            m["trade_return_ci"] = mean_interval(np.array(rets), max(1, round(len(rets) ** (1 / 3))), cfg.reps,
                                                 seed).as_dict()
        return m

    agent_m = summary(agent_run)
    # The trials' Sharpe ratios were measured on training windows; under the null of no skill their spread is
    # estimation noise, whose variance falls as 1/length: rescale it to the length of the OOS series tested.
    train_bars = cfg.train_days * timedelta(days=1) / interval
    # With no more candidates than folds (no search: --trials 0) their spread cannot be measured, yet the
    # prior trials still count: take the null's own estimation variance, 1/length per bar (as if the trials were
    # independent: conservative), rather than no spread, which would deflate nothing.
    var_source = "candidates"
    if var_sr <= 0 and n_configs > 1:
        var_sr, var_source = 1.0 / train_bars, "null"
    var_oos = var_sr * train_bars / max(len(agent_run.equity), 1)
    dsr = deflated_sharpe(agent_run.returns(), n_configs, var_oos)
    psr = deflated_sharpe(agent_run.returns(), 1, 0.0)
    doc: dict[str, Any] = {
        "agent": cfg.agent, "profile": s.profile, "overrides": masked_overrides(cfg.overrides), "symbols": symbols,
        "data_dir": _shown(data_dir), "headlines": _shown(heads) if heads else None, "code_version": code,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "seed": cfg.seed,
        "interval_s": int(interval.total_seconds()),
        "design": {"train_days": cfg.train_days, "test_days": cfg.test_days, "purge_bars": purge_bars,
                   "folds": len(folds), "trials_per_fold": cfg.trials, "jobs": cfg.jobs,
                   "storage": opt.storage_shown(storage), "study": name, "objective": vars(ocfg),
                   "block_bars": cfg.block_bars, "reps": cfg.reps, "costs": list(cfg.costs),
                   "data_from": lo.isoformat(), "data_to": (hi - interval).isoformat(),
                   "oos_from": folds[0].test_start.isoformat(), "oos_to": folds[-1].test_end.isoformat(),
                   "fees_bps": _fee(s, cfg.agent), "slippage_bps": s.slippage_bps, "funding_rate_8h": funding,
                   "decision_blackout_bars": _blackout(series, int(folds[0].test_start.timestamp() * 1e9),
                                                       int(folds[-1].test_end.timestamp() * 1e9),
                                                       s.lookback_bars, int(interval.total_seconds() * 1e9),
                                                       s.min_bars, s.max_gap_bars),
                   "max_gap_bars": s.max_gap_bars},
        "configurations_tried": {"this_study": n_configs - prior_total(cfg), "prior": prior_total(cfg),
                                 "proposal": cfg.proposal.trials if cfg.proposal else 0, "total": n_configs, "sharpe_variance_per_bar": var_sr,
                                 "sharpe_variance_per_bar_at_oos_length": var_oos,
                                 "sharpe_variance_source": var_source},
        "folds": fold_rows,
        "oos": agent_m,
        "deflated_sharpe": dsr.as_dict(),
        "probabilistic_sharpe": psr.as_dict(),
        "benchmarks": {name_: summary(chain(name_, runs[1.0])) for name_, runs in bench.items()},
    }
    if cfg.proposal is not None:
        p = cfg.proposal
        doc["params_fitted_on"] = {"from": p.fit_from.isoformat(), "to": p.fit_to.isoformat(),
                                   "overlaps_oos": p.overlaps(folds[0].test_start, folds[-1].test_end)}
        if doc["params_fitted_on"]["overlaps_oos"]:
            doc["oos_warning"] = p.warning()
    if untuned:
        u = chain("untuned", untuned)
        doc["untuned"] = summary(u)
        doc["untuned"]["delta_sharpe_ci"] = sharpe_difference_interval(
            agent_run.returns(), u.returns(), ppy, cfg.block_bars, cfg.reps, seed).as_dict()
    doc["costs"] = {}
    for c in cfg.costs:
        a = agent_run if c == 1.0 else chain(cfg.agent, costs[c])
        doc["costs"][_ck(c)] = {"agent": summary(a, with_ci=False),
                                "benchmarks": {n_: study_metrics(chain(n_, r[c])) for n_, r in bench.items()}}
    doc["ablation"] = []
    for x in sw:
        a = chain(x.component.value, ablations[x.component.value])
        m = study_metrics(a)
        d = sharpe_difference_interval(a.returns(), agent_run.returns(), ppy, cfg.block_bars, cfg.reps, seed)
        doc["ablation"].append({"component": x.component.value, "how": x.how, "noop": is_noop(x, current),
                                "total_return": m["total_return"], "sharpe": m["sharpe"],
                                "max_drawdown": m["max_drawdown"], "entries_per_day": m["entries_per_day"],
                                "delta_return": m["total_return"] - agent_m["total_return"],
                                "delta_sharpe": d.as_dict()})
    curves = {cfg.agent: agent_run, **{n_: chain(n_, r[1.0]) for n_, r in bench.items()}}
    if untuned:
        curves["untuned"] = chain("untuned", untuned)
    return Outcome(doc, curves, {"agent": oos})


def _shown(p: Path) -> str:
    """A path as the report shows it: relative to the package for the bundled data (no home folder in a report)."""
    from tracer.data.replay import bundled_dir
    try:
        return "tracer/data/bundled/" + str(Path(p).resolve().relative_to(bundled_dir().resolve()))
    except ValueError:
        return str(p)


def _ck(c: float) -> str:
    return f"x{c:g}"


def _current_text(s) -> dict[str, Any]:
    from dataclasses import fields
    from tracer.config import Settings
    out = {}
    for f in fields(Settings):
        v = getattr(s, f.name)
        out[f.metadata["env"]] = ("true" if v else "false") if isinstance(v, bool) else v
    return out
