"""``tracer optimize``'s inputs: the headlines its backtests read are the replay agent's (TB_HEADLINES_PATH),
unless --headlines names others; a named file that does not exist is refused."""
from __future__ import annotations

from backtest.test_cli import _use_env, bearish_headlines
from data.test_gaps import FIXTURE, env
from tracer.cli import main


def _optimize(tmp_path, monkeypatch, *extra: str) -> tuple[int, list]:
    """Run ``tracer optimize`` up to its search; the job it would search with."""
    from tracer.optimize import study
    jobs: list = []

    def stop(job, *_a, **_k):
        jobs.append(job)
        raise RuntimeError("stopped before the search")
    monkeypatch.setattr(study, "run_optimisation", stop)
    rc = main(["optimize", "--agent", "hybrid", "--data", str(FIXTURE), "--symbols", "BTC/USD,ETH/USD,SOL/USD",
               "--train-days", "8", "--test-days", "4", "--folds", "1", "--trials", "1",
               "--out", str(tmp_path / "opt"), "--no-plot", *extra])
    return rc, jobs


def test_optimize_backtests_read_tb_headlines_path_like_the_replay(tmp_path, monkeypatch, capsys):
    heads = bearish_headlines(tmp_path / "news.csv")
    _use_env(monkeypatch, env(tmp_path, TB_HEADLINES_PATH=str(heads)))
    rc, jobs = _optimize(tmp_path, monkeypatch)
    assert rc == 2 and "stopped before the search" in capsys.readouterr().err
    assert jobs[0].headlines == str(heads)
    other = bearish_headlines(tmp_path / "other.csv")
    assert _optimize(tmp_path, monkeypatch, "--headlines", str(other))[1][0].headlines == str(other)
    monkeypatch.setenv("TB_HEADLINES_PATH", str(tmp_path / "typo.csv"))
    rc, jobs = _optimize(tmp_path, monkeypatch)
    assert rc == 2 and not jobs and "TB_HEADLINES_PATH=" in capsys.readouterr().err
