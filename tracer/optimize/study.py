"""Walk-forward optimisation with Optuna over the backtest (:func:`tracer.backtest.runner.run_backtest`).

For every walk-forward fold (:mod:`tracer.optimize.walkforward`) one Optuna study maximises the objective
(:mod:`tracer.optimize.objective`) of backtests on the fold's training window; the best parameters are then
run on the fold's unseen scoring window, next to the parameters in force now. The proposal is the best set
of the most recent fold, with its in-sample and out-of-sample metrics and the current set's on the same
scoring window (the guard rails compare those).

Scale-out: a trial is one backtest in one process. ``jobs`` processes (this one included) share one Optuna
RDB storage (SQLite file locally, a PostgreSQL URL for several machines) and pull trials from the same
studies until each fold has its ``trials`` trials; trial numbers are assigned by the storage, a worker that
draws a number beyond the budget stops without running it, and a parameter set already scored in the study
is not backtested again. Other machines join with ``tracer optimize --worker`` and the same ``--storage``,
``--study`` and window options. With one process the same seed gives the same proposal.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from tracer.config import masked_overrides
from tracer.optimize.objective import ObjectiveConfig, objective
from tracer.optimize.params import space
from tracer.optimize.walkforward import Fold

KEEP = ("total_return", "sharpe", "sortino", "max_drawdown", "trades", "win_rate", "profit_factor", "exposure",
        "fees_paid", "funding", "net_pnl", "final_equity", "initial_capital", "entries", "bars", "start", "end")
BAD = -1e9      # the value of a trial whose backtest could not run (kept COMPLETE so the budget is exact)


@dataclass
class Job:
    """Everything a worker process needs (picklable)."""
    agent: str
    symbols: list[str]
    folds: list[Fold]
    trials: int
    seed: int
    storage: str
    study: str
    base_env: dict[str, str] = field(default_factory=dict)    # environment the settings are read from
    env_file: str | None = ".env"
    data_dir: str | None = None
    headlines: str | None = None
    interval_s: int = 3600
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    overrides: dict[str, str] = field(default_factory=dict)   # the --set ones (recorded in the proposal)
    profile: str | None = None         # TB_PROFILE of the settings (None: read from base_env): the search space

    def fold_study(self, f: Fold) -> str:
        return f"{self.study}.fold{f.index}"

    def space_profile(self) -> str:
        """The profile whose search space the study draws from: the one its settings run."""
        if self.profile is None:
            from tracer.config import load_settings
            self.profile = load_settings(self.base_env, dotenv_path=self.env_file).profile
        return self.profile


def default_study_name(agent: str, symbols: Sequence[str], folds: Sequence[Fold], trials: int, seed: int,
                       overrides: Mapping[str, str], code: str, cfg: ObjectiveConfig) -> str:
    """Same inputs, same name: a rerun resumes (or reuses) its study instead of starting another."""
    key = json.dumps([agent, list(symbols), [f.as_dict() for f in folds], trials, seed, sorted(overrides.items()),
                      code, asdict(cfg)], sort_keys=True)
    return f"{agent}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def storage_url(url: str, state_dir: Path) -> str:
    if url:
        return url
    state_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(state_dir / 'optuna.db').resolve()}"


def storage_shown(url: str) -> str:
    """The storage URL as a report, a proposal or a command line may show it: without its user and password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def open_storage(url: str):
    import optuna
    kw: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kw["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    # a worker that dies mid-trial: its trial is marked failed after the grace period
    try:
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120, **kw)
    except ImportError as e:      # e.g. postgresql:// without its driver: say what to install, not a traceback
        scheme = url.split(":", 1)[0]
        raise SystemExit(f"tracer optimize: the storage driver for {scheme!r} is not installed "
                         f"({type(e).__name__}: {e.name or e}); for PostgreSQL: pip install 'psycopg[binary]' "
                         f"(SQLAlchemy 2.1's driver for postgresql://)") from None
    if url.startswith("sqlite"):
        _serialise_sqlite(storage.engine)
    return storage


def _serialise_sqlite(engine) -> None:
    """Every transaction on a SQLite storage takes the write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna hands an enqueued trial to a worker by reading that it is WAITING and writing RUNNING in one
    transaction ``SELECT ... FOR UPDATE``, which SQLite ignores: under its default deferred transactions
    two workers can both read WAITING, both run the trial, and the second one's result is refused ("Cannot
    tell a COMPLETE trial", optuna/optuna#4002, #4621), which stopped a 2-job study. PostgreSQL locks the
    row. SQLAlchemy's documented recipe for pysqlite: let the driver emit no BEGIN, and emit our own."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()        # connections opened before the listeners: closed, new ones get them


def _quiet() -> None:
    import warnings
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def baseline(s, agent: str) -> dict[str, float]:
    """The parameters in force, clipped into the search space (enqueued as each study's first trial)."""
    from tracer.optimize.params import current_values
    sp = space(agent, s.profile)
    return {k: min(max(v, sp[k].lo), sp[k].hi) for k, v in current_values(s, agent).items()}


class Evaluator:
    """Backtests with ``--set``-style overrides, as ``tracer backtest`` runs them (one scorer per process)."""

    def __init__(self, job: Job):
        from tracer.config import load_settings
        from tracer.sentiment.factory import make_scorer
        self.job = job
        self.base = load_settings(job.base_env, dotenv_path=job.env_file)
        log = logging.getLogger("optimize")
        log.addHandler(logging.NullHandler())
        log.propagate = False
        self.scorer = make_scorer(self.base, log)
        # the files read, the features and narratives computed once for every backtest of this process
        from tracer.backtest.history import History
        self.history = History(Path(job.data_dir) if job.data_dir else None, timedelta(seconds=job.interval_s))

    def settings(self, overrides: Mapping[str, Any] | None):
        from tracer.config import load_settings
        if not overrides:
            return self.base
        env = dict(self.job.base_env)
        env.update({k: str(v) for k, v in overrides.items()})
        return load_settings(env, dotenv_path=self.job.env_file)

    def run(self, overrides: Mapping[str, Any] | None, start: datetime, end: datetime):
        from tracer.backtest.report import metrics_of
        from tracer.backtest.runner import run_backtest
        j = self.job
        res = run_backtest(self.settings(overrides), j.agent, j.symbols, self.scorer, start, end,
                           Path(j.data_dir) if j.data_dir else None, Path(j.headlines) if j.headlines else None,
                           timedelta(seconds=j.interval_s), history=self.history)
        m = metrics_of(res)
        return {k: m.get(k) for k in KEEP}, res


def suggest(trial, agent: str, profile: str | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for env, p in space(agent, profile).items():
        if p.kind == "int":
            out[env] = trial.suggest_int(env, int(p.lo), int(p.hi), step=int(p.step))
        else:
            out[env] = round(trial.suggest_float(env, p.lo, p.hi, step=p.step), 10)
    return out


def _trial_objective(job: Job, ev: Evaluator, fold: Fold, worker: int = 0):
    import optuna

    def fn(trial) -> float:
        if trial.number >= job.trials:          # over the budget (another worker took the last one)
            trial.study.stop()
            raise optuna.TrialPruned("over the trial budget")
        trial.set_user_attr("worker", worker)
        params = suggest(trial, job.agent, job.space_profile())
        for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.params == trial.params:       # already scored by this or another worker: no second backtest
                trial.set_user_attr("duplicate_of", t.number)
                trial.set_user_attr("metrics", t.user_attrs.get("metrics"))
                return float(t.value)
        try:
            m, _ = ev.run(params, *fold.train_range())
        except Exception as e:                   # noqa: BLE001 - a parameter set that cannot run scores worst
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            return BAD
        value = objective(m, fold.train_days, job.objective)
        trial.set_user_attr("metrics", m)
        return value
    return fn


def work(job: Job, worker: int = 0, ev: Evaluator | None = None) -> int:
    """One worker: pull trials of every fold's study until each has its budget. Returns trials it ran."""
    import optuna
    _quiet()
    ev = ev or Evaluator(job)
    storage = _retry(lambda: open_storage(job.storage))
    ran = 0
    for f in job.folds:
        sampler = optuna.samplers.TPESampler(seed=job.seed + 1000 * f.index + worker)
        study = _retry(lambda: optuna.create_study(study_name=job.fold_study(f), storage=storage,
                                                   direction="maximize", sampler=sampler, load_if_exists=True))
        done = len(study.get_trials(deepcopy=False))
        if done >= job.trials:
            continue
        if worker == 0 and done == 0:   # the parameters in force now are always one of the candidates
            study.enqueue_trial(baseline(ev.base, job.agent), user_attrs={"baseline": True})
        study.optimize(_trial_objective(job, ev, f, worker), n_trials=job.trials, gc_after_trial=False,
                       callbacks=[optuna.study.MaxTrialsCallback(
                           job.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING,
                                               optuna.trial.TrialState.PRUNED))])
        ran += sum(1 for t in study.get_trials(deepcopy=False)
                   if t.user_attrs.get("worker") == worker and t.state is optuna.trial.TrialState.COMPLETE)
    return ran


def _retry(fn, attempts: int = 8, wait_s: float = 0.5):
    """Workers that start together race to create the storage's tables and the study: retry the loser."""
    from sqlalchemy.exc import SQLAlchemyError
    for k in range(attempts):
        try:
            return fn()
        except (SQLAlchemyError, RuntimeError):
            if k == attempts - 1:
                raise
            time.sleep(wait_s * (k + 1))


def _spawned(job: Job, worker: int) -> None:
    work(job, worker)


def run_workers(job: Job, jobs: int, base: int = 0, ev: Evaluator | None = None) -> int:
    """``jobs`` workers on this machine: this process plus ``jobs - 1`` spawned ones (seeds base, base+1, ...)."""
    procs = []
    if jobs > 1:
        ctx = mp.get_context("spawn")
        for w in range(1, jobs):
            p = ctx.Process(target=_spawned, args=(job, base + w), daemon=False)
            p.start()
            procs.append(p)
    try:
        n = work(job, base, ev)
    finally:
        for p in procs:
            p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} optimisation worker(s) failed (exit codes {bad})")
    return n


def _wait_complete(study, n: int, timeout_s: float) -> list:
    """The study's finished trials once ``n`` are complete and none is running (other workers, other machines)."""
    import optuna
    TS = optuna.trial.TrialState
    t0 = time.monotonic()
    while True:
        optuna.storages.fail_stale_trials(study)      # a worker that died: its trial fails after the grace period
        trials = [t for t in study.get_trials(deepcopy=False) if t.number < n]
        complete = [t for t in trials if t.state is TS.COMPLETE]
        pending = [t for t in trials if t.state in (TS.RUNNING, TS.WAITING)]
        if (len(trials) >= n and not pending) or time.monotonic() - t0 > timeout_s:
            return complete
        time.sleep(1.0)


def run_optimisation(job: Job, jobs: int = 1, log: Callable[[str], None] = lambda m: None,
                     wait_s: float = 3600.0) -> dict[str, Any]:
    """Run (or join) the studies with ``jobs`` local processes, then score each fold's best out of sample.
    Returns the full result (folds, proposal fields, trial history of the last fold)."""
    import optuna
    _quiet()
    t0 = time.perf_counter()
    ev = Evaluator(job)
    log(f"optimising {job.agent}: {len(job.folds)} fold(s) x {job.trials} trials, {jobs} process(es), "
        f"study {job.study}")
    run_workers(job, jobs, 0, ev)
    t_search = time.perf_counter() - t0
    storage = _retry(lambda: open_storage(job.storage))
    current_overrides: dict[str, Any] = {}
    folds_out = []
    history: list[dict] = []
    equity: dict[str, list] = {}
    for f in job.folds:
        study = optuna.load_study(study_name=job.fold_study(f), storage=storage)
        complete = _wait_complete(study, job.trials, wait_s)
        if not complete:
            raise RuntimeError(f"study {job.fold_study(f)} has no complete trial")
        best = max(complete, key=lambda t: (t.value, -t.number))
        params = {k: best.params[k] for k in space(job.agent, job.space_profile())}
        ins = dict(best.user_attrs.get("metrics") or {})
        ins_obj = float(best.value)
        oos, oos_res = ev.run(params, *f.test_range())
        cur, cur_res = ev.run(current_overrides, *f.test_range())
        cur_in, _ = ev.run(current_overrides, *f.train_range())
        row = dict(f.as_dict(), best_trial=best.number, trials=len(complete), params=params,
                   in_sample=ins, out_of_sample=oos, current_in_sample=cur_in, current_out_of_sample=cur,
                   objective={"in_sample": ins_obj, "out_of_sample": objective(oos, f.test_days, job.objective),
                              "current_in_sample": objective(cur_in, f.train_days, job.objective),
                              "current_out_of_sample": objective(cur, f.test_days, job.objective)})
        folds_out.append(row)
        log(f"fold {f.index}: train {row['train_from']}..{row['train_to']} test {row['test_from']}..{row['test_to']}"
            f"  objective in {row['objective']['in_sample']:.3f} out {row['objective']['out_of_sample']:.3f}"
            f" (current out {row['objective']['current_out_of_sample']:.3f})")
        if f is job.folds[-1]:
            history = [{"number": t.number, "value": t.value} for t in sorted(complete, key=lambda t: t.number)]
            equity = {"proposal": [(p.ts.isoformat(), p.equity) for p in oos_res.equity],
                      "current": [(p.ts.isoformat(), p.equity) for p in cur_res.equity]}
    return {"folds": folds_out, "history": history, "equity": equity, "search_s": t_search,
            "wall_s": time.perf_counter() - t0, "current": current_values_of(ev.base, job.agent)}


def current_values_of(s, agent: str) -> dict[str, float]:
    from tracer.optimize.params import current_values
    return current_values(s, agent)


def proposal_from(job: Job, result: Mapping[str, Any], code: str, storage_shown: str) -> dict[str, Any]:
    """The proposal document (``config/proposed_params.json``): the most recent fold's best parameters."""
    last = result["folds"][-1]
    n = len(result["folds"])

    def mean(key: str) -> float:
        return sum(r["objective"][key] for r in result["folds"]) / n
    return {
        "agent": job.agent,
        "profile": job.space_profile(),
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "code_version": code,
        "params": last["params"],
        "current": result["current"],
        "data": {"symbols": job.symbols, "data_dir": job.data_dir or "bundled", "interval_s": job.interval_s,
                 "from": result["folds"][0]["train_from"], "to": last["test_to"],
                 "train": {"from": last["train_from"], "to": last["train_to"]},
                 "test": {"from": last["test_from"], "to": last["test_to"]}},
        "metrics": {"in_sample": last["in_sample"], "out_of_sample": last["out_of_sample"],
                    "current_in_sample": last["current_in_sample"],
                    "current_out_of_sample": last["current_out_of_sample"],
                    "objective": dict(last["objective"],
                                      walk_forward_out_of_sample=mean("out_of_sample"),
                                      walk_forward_current_out_of_sample=mean("current_out_of_sample"))},
        "folds": [{k: v for k, v in r.items()} for r in result["folds"]],
        "optimiser": {"trials_per_fold": job.trials, "seed": job.seed, "study": job.study, "storage": storage_shown,
                      "objective": asdict(job.objective),
                      # a secret --set (TB_OPTIMIZE_STORAGE=postgresql://user:pw@...) never reaches the file or the DB
                      "overrides": dict(sorted(masked_overrides(job.overrides).items()))},
    }


def plot(result: Mapping[str, Any], agent: str, out: Path) -> Path:
    """optimize.png: per fold in/out-of-sample objective (best and current), the last fold's trials, and the
    last scoring window's equity of the proposal and of the current set."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    folds = result["folds"]
    fig, axes = plt.subplots(3, 1, figsize=(10, 11))
    ax = axes[0]
    x = np.arange(len(folds))
    w = 0.2
    for i, (key, lab) in enumerate((("in_sample", "best, in-sample"), ("out_of_sample", "best, out-of-sample"),
                                    ("current_in_sample", "current, in-sample"),
                                    ("current_out_of_sample", "current, out-of-sample"))):
        ax.bar(x + (i - 1.5) * w, [r["objective"][key] for r in folds], w, label=lab)
    ax.set_xticks(x, [f"fold {r['fold']}\n{r['test_from'][:10]}" for r in folds])
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("objective")
    ax.set_title(f"{agent}: walk-forward objective (training vs unseen scoring window)")
    ax.legend(fontsize=8)
    ax = axes[1]
    h = result.get("history") or []
    vals = [t["value"] if t["value"] is not None and t["value"] > BAD / 2 else np.nan for t in h]
    ax.plot([t["number"] for t in h], vals, ".", label="trial")
    ax.plot([t["number"] for t in h], np.fmax.accumulate(np.nan_to_num(vals, nan=-np.inf)) if vals else [],
            "-", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (training window)")
    ax.set_title("last fold: optimisation history")
    ax.legend(fontsize=8)
    ax = axes[2]
    eq = result.get("equity") or {}
    for key, lab in (("proposal", "proposed parameters"), ("current", "current parameters")):
        pts = eq.get(key) or []
        if pts:
            ts = [datetime.fromisoformat(t) for t, _ in pts]
            ax.plot(ts, [e for _, e in pts], label=lab)
    ax.set_title("last scoring window (unseen): equity")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "optimize.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

