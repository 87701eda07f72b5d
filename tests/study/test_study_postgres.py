"""``tracer study`` scale-out on a real PostgreSQL 15 server: two worker processes share the in-fold search
through Optuna's RDB storage, and the result equals a one-process run on SQLite for the same seed.

The server is started by the test (``initdb`` and ``pg_ctl`` in a temporary folder, as the ``postgres`` user
when the tests run as root, which PostgreSQL refuses) and stopped at the end."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("TB_PG_BIN", "/usr/lib/postgresql/15/bin"))
pytestmark = pytest.mark.skipif(not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file(),
                                reason=f"PostgreSQL server binaries not found in {PG_BIN} (set TB_PG_BIN)")


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    return ["runuser", "-u", "postgres", "--", *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throw-away server on 127.0.0.1 (trust auth, no password to leak); yields its URL. Its folder is
    made outside pytest's temporary tree, which is private to the user running the tests."""
    root = Path(tempfile.mkdtemp(prefix="tb-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    run = lambda cmd, **kw: subprocess.run(_as_server_user(cmd), check=True, capture_output=True, text=True,  # noqa: E731
                                           timeout=120, **kw)
    run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
    port = _free_port()
    run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
         "-o", f"-h 127.0.0.1 -p {port} -k {sock} -c fsync=off", "start"])
    try:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        yield url
    finally:
        subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_on_postgresql_agree_with_one_on_sqlite(postgres, tmp_path):
    pytest.importorskip("psycopg", reason="psycopg[binary] (dev extra) is needed for PostgreSQL storage")
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
