"""Walk-forward optimisation: windows never share data, the objective's penalties, the same seed gives the
same proposal, and two worker processes sharing one Optuna storage complete one study without duplicates."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tracer.optimize.objective import ObjectiveConfig, objective, trade_penalty
from tracer.optimize.walkforward import folds

UTC = timezone.utc
D = timedelta(days=1)


@pytest.mark.parametrize("train,test,step,n", [(20, 10, None, None), (30, 7, 3, 5), (10, 10, 20, 3), (45, 15, 15, 1)])
def test_windows_never_overlap_and_roll_forward(train, test, step, n):
    start, end = datetime(2021, 11, 1, tzinfo=UTC), datetime(2022, 7, 1, 5, tzinfo=UTC)
    fl = folds(start, end, train * D, test * D, n, step * D if step else None)
    assert fl and (n is None or len(fl) <= n)
    assert fl[-1].test_end == end                                 # the last fold is scored on the latest data
    for f in fl:
        assert start <= f.train_start < f.train_end == f.test_start < f.test_end <= end
        tr, te = f.train_range(), f.test_range()
        assert tr[1] < te[0]                                      # inclusive backtest ranges share no instant
        assert f.train_end - f.train_start == train * D and f.test_end - f.test_start == test * D
    for a, b in zip(fl, fl[1:]):
        assert b.test_start - a.test_start == (step or test) * D   # rolls forward by the step
        assert b.index == a.index + 1


def test_too_short_a_window_is_an_error():
    with pytest.raises(ValueError, match="shorter than one training"):
        folds(datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 1, 20, tzinfo=UTC), 15 * D, 10 * D)


def test_objective_penalises_drawdown_freeze_and_churn():
    cfg = ObjectiveConfig(dd_penalty=5, min_trades_per_day=0.5, max_trades_per_day=4, trade_weight=2)
    good = {"sharpe": 2.0, "max_drawdown": 0.04, "trades": 20}
    assert objective(good, 10, cfg) == pytest.approx(2.0 - 0.2)
    assert objective(dict(good, max_drawdown=0.2), 10, cfg) < objective(good, 10, cfg)
    assert trade_penalty(0, 10, cfg) == 1.0                          # frozen: full penalty
    assert objective(dict(good, trades=0), 10, cfg) == pytest.approx(2.0 - 0.2 - 2.0)
    assert trade_penalty(80, 10, cfg) == pytest.approx(1.0)          # 8/day against 4/day
    assert trade_penalty(20, 10, cfg) == 0.0


# --- with real backtests (one or two symbols, short windows, few trials) --------------------------------
def _job(tmp_path, name="s", trials=3, seed=7, n_folds=1):
    from tracer.optimize.study import Job
    fl = folds(datetime(2022, 1, 10, tzinfo=UTC), datetime(2022, 1, 31, tzinfo=UTC), 14 * D, 7 * D, n_folds)
    # January 2022: the default's BTC filter keeps the trend model out of the market; the 10-day trend without
    # it trades in these windows (the trend space's draws set their own window)
    env = {"TB_ACTIVE_PARAMS_PATH": str(tmp_path / "none.json"), "TB_SENTIMENT_SCORER": "lexicon",
           "TB_STATE_DIR": str(tmp_path), "TB_MARKET_FILTER": "none", "TB_TREND_WINDOW_H": "240"}
    return Job(agent="hybrid", symbols=["BTC/USD", "ETH/USD"], folds=fl, trials=trials, seed=seed,
               storage=f"sqlite:///{tmp_path / (name + '.db')}", study=name, base_env=env, env_file=None)


def test_training_and_scoring_backtests_share_no_bar(tmp_path):
    from tracer.optimize.study import Evaluator
    job = _job(tmp_path)
    ev = Evaluator(job)
    f = job.folds[0]
    _, tr = ev.run({}, *f.train_range())
    _, te = ev.run({}, *f.test_range())
    assert tr.equity[-1].ts < te.equity[0].ts
    assert max(t.exit_ts for t in tr.trades) <= tr.equity[-1].ts      # training trades end in training
    assert min(t.entry_ts for t in te.trades) >= f.test_start
    assert tr.equity[0].ts >= f.train_start and te.equity[-1].ts < f.test_end


def test_same_seed_same_proposal(tmp_path):
    from tracer.optimize.study import proposal_from, run_optimisation
    props = []
    for name in ("a", "b"):
        job = _job(tmp_path, name=name)
        res = run_optimisation(job, jobs=1)
        p = proposal_from(job, res, "test", job.storage)
        props.append(p)
    a, b = props
    assert a["params"] == b["params"] and a["metrics"] == b["metrics"] and a["folds"] == b["folds"]
    assert a["metrics"]["objective"]["in_sample"] >= a["metrics"]["objective"]["current_in_sample"] - 1e-9
    assert set(a["params"]) == set(a["current"]) and a["data"]["test"]["from"] == a["data"]["train"]["to"]
    # the default profile draws from its own space: the trend model's window and band are tuned
    assert a["profile"] == "trend" and {"TB_TREND_WINDOW_H", "TB_MIN_DIRECTION_SCORE"} <= set(a["params"])


def test_two_worker_processes_share_one_study_without_duplicates(tmp_path):
    import multiprocessing as mp
    import time
    import optuna
    from tracer.optimize.study import Evaluator, _spawned, work
    job = _job(tmp_path, name="par", trials=6)
    ev = Evaluator(job)                                   # this process is worker 0, a spawned one worker 1
    optuna.create_study(study_name=job.fold_study(job.folds[0]), storage=job.storage, direction="maximize")
    child = mp.get_context("spawn").Process(target=_spawned, args=(job, 1))
    child.start()
    study = optuna.load_study(study_name=job.fold_study(job.folds[0]), storage=job.storage)
    t0 = time.monotonic()
    while not study.get_trials(deepcopy=False) and time.monotonic() - t0 < 60:
        time.sleep(0.05)                                  # the other process is at work: join it
    work(job, 0, ev)
    child.join(60)
    assert child.exitcode == 0
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.number for t in complete) == list(range(6))      # exactly the budget, each number once
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert all(t.number >= 6 for t in trials if t.state == optuna.trial.TrialState.PRUNED)
    backtested = [tuple(sorted(t.params.items())) for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(backtested) == len(set(backtested))                   # no parameter set backtested twice
    assert {t.user_attrs["worker"] for t in complete} == {0, 1}      # both processes ran trials
