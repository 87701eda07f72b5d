"""``tracer study`` on a real PostgreSQL 15 server (the ``postgres`` fixture, tests/conftest.py): two worker processes
share the in-fold search through Optuna's RDB storage, and the result equals a one-process run on SQLite for the
same seed; the storage's password stays out of everything the study writes and serves."""
from __future__ import annotations

import json
import sys

import pytest


def test_two_workers_on_postgresql_agree_with_one_on_sqlite(postgres, tmp_path):
    import optuna
    from test_study import _cfg, _slice
    from tracer.study.engine import run_study

    data = _slice(tmp_path / "d")
    kw = dict(trials=6, folds=2, ablate=False)
    one = run_study(_cfg(tmp_path, data, "sqlite", jobs=1, **kw))
    two = run_study(_cfg(tmp_path, data, "pg", jobs=2, storage=postgres, **kw))
    assert two.doc["design"]["storage"].startswith("postgresql://")
    assert one.doc["design"]["storage"].startswith("sqlite:///")
    # the same choices, the same out-of-sample numbers
    for key in ("folds", "oos", "benchmarks", "configurations_tried", "deflated_sharpe", "untuned", "costs"):
        assert one.doc[key] == two.doc[key], key
    # the search really was shared by two processes through the server
    name = two.doc["design"]["study"]
    workers = set()
    for f in two.doc["folds"]:
        study = optuna.load_study(study_name=f"{name}.fold{f['fold']}", storage=postgres)
        done = [t for t in study.get_trials(deepcopy=False) if t.state is optuna.trial.TrialState.COMPLETE]
        assert sorted(t.number for t in done) == list(range(6))
        workers |= {t.user_attrs["worker"] for t in done}
    assert workers == {0, 1}


PW = "Sup3rS3cretPgPassw0rd"


@pytest.mark.parametrize("given", ["--storage URL", "--storage=URL", "TB_OPTIMIZE_STORAGE"])
def test_storage_password_stays_out_of_the_report_and_the_cockpit(postgres, tmp_path, monkeypatch, capsys, given):
    """The Reproduce line (study.json's ``command``, report.md, the cockpit's GET /api/v1/backtests) shows the
    storage without its password; TB_OPTIMIZE_STORAGE (.env) is read as by tracer optimize, so the URL need not be
    typed at all; the report files are user-only."""
    from test_study import _slice
    from tracer.cli import main
    from tracer.web import data as webdata
    data = _slice(tmp_path / "d")
    url = postgres.replace("postgresql://postgres@", f"postgresql://postgres:{PW}@")
    for k, v in {"TB_ACTIVE_PARAMS_PATH": str(tmp_path / "none.json"), "TB_SENTIMENT_SCORER": "lexicon",
                 "TB_STATE_DIR": str(tmp_path / "state"), "TB_MIN_BARS": "50", "TB_LOOKBACK_BARS": "60",
                 "TB_PROFILE": "phase1c"}.items():
        monkeypatch.setenv(k, v)
    storage = {"--storage URL": ["--storage", url], "--storage=URL": [f"--storage={url}"]}.get(given, [])
    if given == "TB_OPTIMIZE_STORAGE":
        monkeypatch.setenv("TB_OPTIMIZE_STORAGE", url)
    out = tmp_path / "backtests" / "study" / "futures"
    (tmp_path / "none.env").touch()        # an empty .env (a named one must exist)
    argv = ["--env-file", str(tmp_path / "none.env"), "study", "--agent", "futures", "--data", str(data),
            "--train-days", "8", "--test-days", "4", "--folds", "1", "--trials", "2", "--costs", "1",
            "--seed", "9", *storage, "--out", str(out), "--no-plot"]
    monkeypatch.setattr(sys, "argv", ["tracer", *argv])          # reproduce_command reads sys.argv
    assert main(argv) == 0
    printed = capsys.readouterr()
    doc = json.loads((out / "study.json").read_text())
    assert doc["design"]["storage"] == "postgresql://***@" + postgres.split("@", 1)[1]     # the server was used
    texts = {"study.json": (out / "study.json").read_text(), "report.md": (out / "report.md").read_text(),
             "cockpit /api/v1/backtests": json.dumps(webdata.backtest_runs(tmp_path / "backtests")),
             "stdout": printed.out, "stderr": printed.err}
    leaks = {k: v[max(0, v.index(PW) - 60):v.index(PW) + 40] for k, v in texts.items() if PW in v}
    assert not leaks, f"storage password leaked into {sorted(leaks)}: {leaks}"
    if storage:
        assert "postgresql://***@127.0.0.1" in doc["command"]         # the Reproduce line still names the server
    assert all((out / f).stat().st_mode & 0o077 == 0 for f in ("study.json", "report.md"))
