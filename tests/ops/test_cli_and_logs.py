"""The `tracer` command, structured logging with secret redaction, and per-run artifacts."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from tracer.agents.hybrid import build
from tracer.config import load_settings
from tracer.logs import kv, setup_logging

ROOT = Path(__file__).resolve().parents[2]


def cli(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    e.update({"TB_DB_PATH": str(tmp / "t.db"), **env})
    return subprocess.run([sys.executable, "-m", "tracer.cli", *args], cwd=tmp, env=e, capture_output=True,
                          text=True, timeout=120)


def test_check_config_masks_secrets_and_fails_on_bad_values(tmp_path):
    r = cli(tmp_path, "check-config", TB_ALPACA_API_KEY="AKSENTINEL0001", TB_ALPACA_SECRET_KEY="SKSENTINEL0002")
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout and "TB_ALPACA_API_KEY" in r.stdout
    assert "SENTINEL" not in r.stdout + r.stderr
    bad = cli(tmp_path, "check-config", TB_PORTFOLIO_VAR_LIMIT="2.5")
    assert bad.returncode == 2 and "TB_PORTFOLIO_VAR_LIMIT" in bad.stderr and "out of range" in bad.stderr
    typo = cli(tmp_path, "check-config", TB_MAX_POSITONS="3")
    assert typo.returncode == 0 and "TB_MAX_POSITONS" in typo.stderr


def test_init_db_and_status(tmp_path):
    r = cli(tmp_path, "init-db")
    from tracer.store import SCHEMA_VERSION
    assert r.returncode == 0 and f"schema version {SCHEMA_VERSION}" in r.stdout and "integrity ok" in r.stdout
    assert (tmp_path / "t.db").stat().st_mode & 0o077 == 0   # user-only permissions
    assert cli(tmp_path, "status").returncode == 0
    missing = cli(tmp_path, "explain", "no-such-order")
    assert missing.returncode == 1 and "no order" in missing.stdout


def test_log_lines_are_structured_and_redact_secrets(tmp_path):
    log = setup_logging("unit", tmp_path, "INFO", secrets=["SUPERSECRETVALUE"], stdout=False)
    log.info(kv("order", symbol="BTC/USD", note="key SUPERSECRETVALUE leaked?", qty=0.5))
    try:
        raise RuntimeError("auth failed for SUPERSECRETVALUE")
    except RuntimeError:
        log.exception(kv("agent_error"))
    for h in log.handlers:
        h.flush()
    text = (tmp_path / "unit.log").read_text()
    assert "SUPERSECRETVALUE" not in text and "***" in text
    first = text.splitlines()[0]
    assert first.split(" ")[0].endswith("Z") and 'event=order symbol=BTC/USD note="key *** leaked?" qty=0.5' in first
    assert (tmp_path / "unit.log").stat().st_mode & 0o077 == 0


def test_library_records_reach_stderr_redacted_and_once(tmp_path, capsys):
    """A library's logger (python-telegram-bot, urllib3, ...) has no handler of its own: its warnings and errors go
    through the root logger's redacting stderr handler (the start script appends stderr to logs/<agent>.err),
    written once however often setup_logging runs; the process's own lines stay in its file and on stdout."""
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        for _ in range(2):
            log = setup_logging("unit-lib", tmp_path, "INFO", secrets=["SUPERSECRETVALUE"], stdout=False)
        logging.getLogger("telegram.request.BaseRequest").error("Cannot POST /botSUPERSECRETVALUE/sendMessage")
        logging.getLogger("urllib3.connection").info("below WARNING, as without the handler: SUPERSECRETVALUE")
        log.warning(kv("own_line"))
        err = capsys.readouterr().err
        assert "SUPERSECRETVALUE" not in err and err.count("Cannot POST") == 1
        assert "Z ERROR telegram.request.BaseRequest Cannot POST /bot***/sendMessage" in err
        assert "below WARNING" not in err and "own_line" not in err
    finally:
        for h in [h for h in root.handlers if h not in before]:
            root.removeHandler(h)
        for h in list(log.handlers):
            log.removeHandler(h)
            h.close()


def test_artifacts_written_behind_the_flag(tmp_path):
    s = load_settings({"TB_DB_PATH": str(tmp_path / "a.db"), "TB_LOG_DIR": str(tmp_path / "logs"),
                       "TB_WRITE_ARTIFACTS": "true", "TB_ARTIFACT_DIR": str(tmp_path / "art"),
                       "TB_SYMBOLS": "BTC/USD,ETH/USD"}, dotenv_path=None)
    log = logging.getLogger("artifacts-test")
    log.addHandler(logging.NullHandler())
    loop = build(s, log)
    summary = loop.run(cycles=3)
    loop.store.close()
    assert summary["cycles"] == 3
    runs = sorted((tmp_path / "art" / "runs").glob("*.json"))
    assert len(runs) == 3
    doc = json.loads(runs[0].read_text())
    assert doc["agent"] == "hybrid" and {d["symbol"] for d in doc["decisions"]} == {"BTC/USD", "ETH/USD"}
    assert len(list((tmp_path / "art" / "bars").glob("*.csv"))) == 6


def test_artifacts_are_git_committed_and_pushed_when_enabled(tmp_path):
    import subprocess as sp
    remote = tmp_path / "remote.git"
    sp.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    art = tmp_path / "art"
    art.mkdir()
    sp.run(["git", "init", "-q", str(art)], check=True)
    sp.run(["git", "-C", str(art), "remote", "add", "origin", str(remote)], check=True)
    sp.run(["git", "-C", str(art), "checkout", "-q", "-b", "main"], check=True)
    sp.run(["git", "-C", str(art), "config", "push.default", "current"], check=True)
    # a repository made by hand (for its remote) is adopted explicitly; any other one is refused
    sp.run(["git", "-C", str(art), "config", "tracer.artifacts", "true"], check=True)
    s = load_settings({"TB_DB_PATH": str(tmp_path / "a.db"), "TB_LOG_DIR": str(tmp_path / "logs"),
                       "TB_WRITE_ARTIFACTS": "true", "TB_ARTIFACT_DIR": str(art), "TB_SYMBOLS": "BTC/USD",
                       "TB_AUTOCOMMIT_ARTIFACTS": "true", "TB_AUTOCOMMIT_EVERY": "2",
                       "TB_AUTOCOMMIT_PUSH": "true"}, dotenv_path=None)
    log = logging.getLogger("autocommit-test")
    log.addHandler(logging.NullHandler())
    loop = build(s, log)
    loop.run(cycles=4)
    loop.store.close()
    subjects = sp.run(["git", "-C", str(art), "log", "--format=%s"], capture_output=True, text=True).stdout.split("\n")
    assert [x for x in subjects if x][:2] == ["artifacts: hybrid cycle 4 clock 2022-01-10T03:00:00Z",
                                             "artifacts: hybrid cycle 2 clock 2022-01-10T01:00:00Z"]
    tracked = sp.run(["git", "-C", str(art), "ls-files"], capture_output=True, text=True).stdout.split()
    assert "runs/4.json" in tracked and "bars/4_BTCUSD.csv" in tracked
    pushed = sp.run(["git", "-C", str(remote), "log", "--format=%s", "main"], capture_output=True, text=True).stdout
    assert "cycle 4" in pushed


def test_autocommit_failure_never_stops_the_agent(tmp_path):
    from tracer.artifacts import autocommit
    log = logging.getLogger("autocommit-fail")
    log.addHandler(logging.NullHandler())
    (tmp_path / "f.json").write_text("{}")
    assert autocommit(tmp_path, "first", push=True, log=log) is True     # push fails: no upstream, logged
    assert autocommit(tmp_path, "nothing new", push=False, log=log) is False


def test_log_values_cannot_forge_lines_or_move_the_cursor():
    from tracer.logs import kv
    line = kv("notify", message="ok\revent=order_filled\x1b[2K\u2028x\x00", plain="abc")
    assert "\r" not in line and "\x1b" not in line and "\u2028" not in line and "\x00" not in line
    assert line.count("event=") == 2 and line.startswith("event=notify message=\"ok\\revent=order_filled")
    assert line.endswith(" plain=abc") and len(line.splitlines()) == 1


def test_log_file_rotates_at_its_size_and_every_file_is_user_only(tmp_path):
    import os
    from tracer.logs import setup_logging
    log = setup_logging("rot", tmp_path, "INFO", stdout=False, max_mb=0.001, backups=2)   # ~1 KB
    for i in range(100):
        log.info(kv("line", n=i, pad="x" * 40))
    files = sorted(p.name for p in tmp_path.glob("rot.log*"))
    assert files == ["rot.log", "rot.log.1", "rot.log.2"]
    assert all(os.stat(tmp_path / f).st_mode & 0o077 == 0 for f in files)
    assert "n=99" in (tmp_path / "rot.log").read_text()


def test_autocommit_never_commits_in_a_repository_it_did_not_create_nor_non_artifacts(tmp_path):
    """Pointed at an existing repository (the code checkout, say), nothing is staged there; in its own
    repository only JSON and CSV artifacts are committed, never a stray .env.bak."""
    import subprocess as sp
    from tracer.artifacts import autocommit
    log = logging.getLogger("autocommit-owner")
    log.addHandler(logging.NullHandler())
    code = tmp_path / "checkout"
    code.mkdir()
    sp.run(["git", "init", "-q", str(code)], check=True)
    (code / ".env.bak").write_text("TB_BINANCE_API_SECRET=supersecret\n")
    (code / "runs").mkdir()
    (code / "runs" / "1.json").write_text("{}")
    assert autocommit(code, "should not happen", push=False, log=log) is False
    status = sp.run(["git", "-C", str(code), "status", "--porcelain"], capture_output=True, text=True).stdout
    assert "A " not in status and sp.run(["git", "-C", str(code), "log"], capture_output=True).returncode != 0
    # a folder inside the checkout gets a repository of its own; only its artifacts are committed
    art = code / "state" / "artifacts"
    (art / "runs").mkdir(parents=True)
    (art / "runs" / "2.json").write_text("{}")
    (art / "bars").mkdir()
    (art / "bars" / "2_BTCUSD.csv").write_text("ts,close\n")
    (art / ".env.bak").write_text("TB_BINANCE_API_SECRET=supersecret\n")
    (art / "notes.txt").write_text("x")
    assert autocommit(art, "artifacts", push=False, log=log) is True
    tracked = sp.run(["git", "-C", str(art), "ls-files"], capture_output=True, text=True).stdout.split()
    assert sorted(tracked) == ["bars/2_BTCUSD.csv", "runs/2.json"]
    assert sp.run(["git", "-C", str(code), "log"], capture_output=True).returncode != 0   # the checkout: untouched


def test_explain_prints_stored_text_verbatim(tmp_path):
    # headlines come from the wild: "[video]" is not a style and "[/]" closes nothing; neither may vanish or crash
    import io
    import sqlite3

    from rich.console import Console

    from tracer.explain import explain
    from tracer.store import Store

    # phase1c trades within a few hourly cycles: an order to hang a venue event on
    s = load_settings({"TB_DB_PATH": str(tmp_path / "e.db"), "TB_LOG_DIR": str(tmp_path / "logs"),
                       "TB_SYMBOLS": "BTC/USD,ETH/USD,SOL/USD", "TB_PROFILE": "phase1c"}, dotenv_path=None)
    log = logging.getLogger("explain-markup-test")
    log.addHandler(logging.NullHandler())
    loop = build(s, log)
    loop.run(cycles=12)
    loop.store.close()
    c = sqlite3.connect(tmp_path / "e.db")
    cid, sid = c.execute("SELECT client_order_id, signal_id FROM orders ORDER BY id LIMIT 1").fetchone()
    c.execute("INSERT INTO venue_events (agent, venue, ts, kind, symbol, client_order_id, detail_json) "
              "VALUES ('hybrid', 'alpaca', '2022-01-10T01:00:00Z', 'rejected', 'BTC/USD', ?, ?)",
              (cid, json.dumps({"message": "venue says [/] and [red]no"})))
    inputs = c.execute("SELECT inputs_json FROM signals WHERE id=?", (sid,)).fetchone()[0]
    doc = json.loads(inputs or "{}")
    doc["headlines"] = [{"at": "2022-01-10T00:00:00Z", "score": 0.5, "title": "[video] ETF [/] verdict"}]
    c.execute("UPDATE signals SET inputs_json=?, decision_reason=? WHERE id=?",
              (json.dumps(doc), "held [bold]on[/bold]", sid))
    c.commit()
    c.close()
    store = Store(tmp_path / "e.db")
    try:
        buf = io.StringIO()
        assert explain(store, Console(file=buf, width=300), signal_id=sid) == 0
        by_order = io.StringIO()
        assert explain(store, Console(file=by_order, width=300), cid) == 0
    finally:
        store.close()
    out = buf.getvalue()
    assert "[video] ETF [/] verdict" in out and "held [bold]on[/bold]" in out
    assert "venue says [/] and [red]no" in by_order.getvalue() and "[video] ETF [/] verdict" in by_order.getvalue()
    missing = cli(tmp_path, "explain", "[/]", TB_DB_PATH=str(tmp_path / "e.db"))
    assert missing.returncode == 1 and "no order '[/]'" in missing.stdout, missing.stderr


def test_a_reader_that_goes_away_is_no_traceback(tmp_path):
    """``tracer config-example | head``: the pipe's reader closes early; the command ends quietly (status 1)."""
    r, w = os.pipe()
    os.close(r)                                  # the reader is gone before the first write
    try:
        p = subprocess.run([sys.executable, "-m", "tracer.cli", "config-example"], cwd=tmp_path, stdout=w,
                           stderr=subprocess.PIPE, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(w)
    assert p.returncode == 1 and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr[-2000:]
