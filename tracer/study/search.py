"""The in-fold parameter search: the Optuna optimiser of :mod:`tracer.optimize.study` over training windows.

Reused as is: the search space (:mod:`tracer.optimize.params`), the trial objective (backtest on the
training window, :mod:`tracer.optimize.objective`, a set that cannot run scores worst, a set already scored is
not run again), the RDB storage (SQLite file, or PostgreSQL for several processes or machines) and the
:class:`~tracer.optimize.study.Evaluator`.

What differs from ``tracer optimize``: the candidates of each fold are drawn up front from the seed (the
parameters in force first, then Optuna's seeded random sampler) and enqueued in the fold's study; workers only
pull them. Which worker runs which candidate then changes nothing: one process on SQLite and several on
PostgreSQL try the same configurations and choose the same ones, and the number of configurations tried is
exact. (An adaptive sampler such as TPE proposes from whatever has finished, so with several workers its
proposals depend on timing.)
"""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from typing import Any, Callable

from tracer.optimize import study as opt
from tracer.optimize.params import space


def candidates(agent: str, n: int, seed: int, fold: int, first: dict[str, float],
               profile: str | None = None) -> list[dict[str, float]]:
    """``first`` (the parameters in force) and ``n - 1`` seeded random draws from the agent's search space."""
    import optuna
    opt._quiet()
    sampler = optuna.samplers.RandomSampler(seed=seed + 7919 * fold)
    draw = optuna.create_study(direction="maximize", sampler=sampler)
    out = [dict(first)]
    while len(out) < n:
        t = draw.ask()
        out.append(opt.suggest(t, agent, profile))
        draw.tell(t, 0.0)
    return out[:n]


def prepare(job: opt.Job, baseline: dict[str, float]) -> None:
    """Create every fold's study and enqueue its candidates (once: a study that has trials is resumed)."""
    import optuna
    opt._quiet()
    storage = opt._retry(lambda: opt.open_storage(job.storage))
    for f in job.folds:
        study = opt._retry(lambda: optuna.create_study(study_name=job.fold_study(f), storage=storage,
                                                       direction="maximize", load_if_exists=True))
        if study.get_trials(deepcopy=False):
            continue
        for i, params in enumerate(candidates(job.agent, job.trials, job.seed, f.index, baseline, job.space_profile())):
            study.enqueue_trial(params, user_attrs={"baseline": i == 0}, skip_if_exists=False)


def work(job: opt.Job, worker: int = 0, ev: opt.Evaluator | None = None,
         on_trial: Callable[[], None] | None = None, ready=None) -> int:
    """One worker: run enqueued candidates of every fold until none is left. Returns how many it ran.
    ``ready`` (an event) is set once the storage is open and every fold's study loaded, just before the first
    trial: the pulling starts then."""
    import optuna
    opt._quiet()
    ev = ev or opt.Evaluator(job)
    storage = opt._retry(lambda: opt.open_storage(job.storage))
    TS = optuna.trial.TrialState
    studies = [opt._retry(lambda f=f: optuna.load_study(study_name=job.fold_study(f), storage=storage,
                                                        sampler=optuna.samplers.RandomSampler(seed=job.seed)))
               for f in job.folds]
    if ready is not None:
        ready.set()
    ran = 0
    for f, study in zip(job.folds, studies):
        cbs = [optuna.study.MaxTrialsCallback(job.trials, states=(TS.COMPLETE, TS.RUNNING, TS.PRUNED))]
        if on_trial is not None:
            cbs.append(lambda _s, _t: on_trial())
        if sum(1 for t in study.get_trials(deepcopy=False) if t.state is TS.WAITING):
            study.optimize(opt._trial_objective(job, ev, f, worker), n_trials=job.trials, gc_after_trial=False,
                           callbacks=cbs)
        ran += sum(1 for t in study.get_trials(deepcopy=False)
                   if t.user_attrs.get("worker") == worker and t.state is TS.COMPLETE)
    return ran


def _spawned(job: opt.Job, worker: int, ready=None) -> None:
    work(job, worker, opt.Evaluator(job), ready=ready)


def run_workers(job: opt.Job, jobs: int, ev: opt.Evaluator | None = None,
                on_trial: Callable[[], None] | None = None, start_timeout_s: float = 300.0) -> None:
    """``jobs`` workers: this process plus ``jobs - 1`` spawned ones, all on ``job.storage``. The workers
    start pulling together (this one waits until the others have loaded their settings and scorer, opened the
    storage and loaded the studies), so the candidates are shared out instead of this process running most of them while the others start."""
    procs, events = [], []
    ctx = mp.get_context("spawn")
    for w in range(1, jobs):
        ready = ctx.Event()
        p = ctx.Process(target=_spawned, args=(job, w, ready), daemon=False)
        p.start()
        procs.append(p)
        events.append(ready)
    try:
        for e in events:
            e.wait(start_timeout_s)
        work(job, 0, ev, on_trial)
    finally:
        for p in procs:
            p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} study worker(s) failed (exit codes {bad})")


@dataclass(frozen=True)
class FoldChoice:
    fold: int
    params: dict[str, float]
    best_trial: int
    in_sample_objective: float
    in_sample: dict[str, Any]
    trials: int                        # complete trials of the fold
    distinct: int                      # of them, configurations actually backtested (not duplicates)
    sharpes: list[float]               # in-sample (annualised) Sharpe of every distinct configuration


def choices(job: opt.Job, wait_s: float = 3600.0) -> list[FoldChoice]:
    """The best candidate of every fold, chosen on its training window only (ties: the earlier candidate)."""
    import optuna
    storage = opt._retry(lambda: opt.open_storage(job.storage))
    out = []
    keys = list(space(job.agent, job.space_profile()))
    for f in job.folds:
        study = optuna.load_study(study_name=job.fold_study(f), storage=storage)
        complete = opt._wait_complete(study, job.trials, wait_s)
        if not complete:
            raise RuntimeError(f"study {job.fold_study(f)} has no complete trial")
        best = max(complete, key=lambda t: (t.value, -t.number))
        distinct = [t for t in complete if "duplicate_of" not in t.user_attrs]
        sharpes = [float((t.user_attrs.get("metrics") or {}).get("sharpe") or 0.0) for t in distinct]
        out.append(FoldChoice(f.index, {k: best.params[k] for k in keys}, best.number, float(best.value),
                              dict(best.user_attrs.get("metrics") or {}), len(complete), len(distinct), sharpes))
    return out

