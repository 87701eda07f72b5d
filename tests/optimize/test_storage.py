"""The SQLite study storage hands each enqueued trial to one worker only."""
from __future__ import annotations

import multiprocessing as mp
import time

import optuna

from tracer.optimize.study import open_storage

N = 300


def _pop_all(url: str, out, start) -> None:
    study = optuna.load_study(study_name="s", storage=open_storage(url))
    start.wait(60)                   # both pull together, as the study's workers do
    got = []
    while (tid := study._pop_waiting_trial_id()) is not None:     # what study.optimize does for each trial
        got.append(tid)
        time.sleep(0.001)    # a trial's work between pops: on a loaded machine one worker could drain them all
    out.put(got)


def test_two_workers_never_take_the_same_enqueued_trial(tmp_path):
    """Optuna's read-WAITING-write-RUNNING is one ``SELECT ... FOR UPDATE``, which SQLite ignores: without
    the storage's immediate transactions two workers could take one trial (optuna#4002) and the second's
    result was refused, stopping the study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    for i in range(N):
        study.enqueue_trial({"x": float(i)}, skip_if_exists=False)
    ctx = mp.get_context("spawn")
    out, start = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=_pop_all, args=(url, out, start)) for _ in range(2)]
    for p in procs:
        p.start()
    taken = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    every = taken[0] + taken[1]
    assert len(every) == N and len(set(every)) == N, "a trial was handed out twice (or not at all)"
    assert all(taken), "both workers took trials (else the test shows nothing)"
