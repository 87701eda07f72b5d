"""scripts/health_check.sh and scripts/monitoring_status.sh, run for real.

Exit codes (README "Operations"): 0 all ok; 1 warning (stale heartbeat, notification backlog, errors in
recent cycles or logs, low disk, agent never started); 2 critical (agent down without a clean stop, DB
missing / not a database / failing quick_check, disk nearly full).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from procs import alive, db, wait_for
from envs import ops_env as env_for

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "start_trading_system.sh"
HEALTH = ROOT / "scripts" / "health_check.sh"
DASH = ROOT / "scripts" / "monitoring_status.sh"



def run(cmd: list[str], tmp: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env_for(tmp, **extra), capture_output=True, text=True, timeout=240, cwd=ROOT)


def health(tmp: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return run(["bash", str(HEALTH), *args], tmp, **extra)


def health_json(tmp: Path, **extra: str) -> dict:
    r = health(tmp, "--json", "--no-alert", **extra)
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == r.returncode
    return doc


def levels(doc: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in doc["checks"]}




def own_heartbeat(tmp: Path, agent: str) -> bool:
    pid = int((tmp / "state" / f"{agent}.pid").read_text())
    with db(tmp) as c:
        hb = c.execute("SELECT * FROM heartbeats WHERE agent=?", (agent,)).fetchone()
    return hb is not None and hb["pid"] == pid and hb["status"] == "running"


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_running_system_ok_then_warning_then_critical(tmp_path):
    # cycles 10 minutes apart: the heartbeat the test makes stale is not refreshed by a cycle meanwhile (a race
    # that a loaded machine lost)
    r = run(["bash", str(START), "--interval", "600"], tmp_path)
    assert r.returncode == 0, r.stderr
    try:
        for a in ("hybrid", "futures"):
            wait_for(lambda: own_heartbeat(tmp_path, a), what=f"{a} heartbeat")
        # 0: everything fresh
        ok = health(tmp_path)
        assert ok.returncode == 0, ok.stdout
        lines = ok.stdout.strip().splitlines()
        assert lines[-1] == "health: ok (0 warning, 0 critical)"
        assert all(ln.startswith("OK") for ln in lines[:-1]) and len(lines) >= 9
        doc = health_json(tmp_path)
        assert doc["status"] == "ok" and set(levels(doc).values()) == {"ok"}
        assert {"process[hybrid]", "heartbeat[futures]", "database", "disk", "errors", "notifications",
                "venue"} <= set(levels(doc))
        assert next(c for c in doc["checks"] if c["name"] == "venue")["message"] == "skipped (offline replay)"

        # 1: a stale heartbeat; the alert is enqueued once, not again on the next run
        with db(tmp_path) as c:
            c.execute("UPDATE heartbeats SET ts=? WHERE agent='hybrid'", (iso(datetime.now(timezone.utc)
                                                                            - timedelta(hours=2)),))
        stale = health(tmp_path)
        assert stale.returncode == 1, stale.stdout
        assert any(ln.startswith("WARNING") and "heartbeat[hybrid]" in ln and "STALE" in ln
                   for ln in stale.stdout.splitlines())
        assert health(tmp_path).returncode == 1
        with db(tmp_path) as c:
            sent = c.execute("SELECT * FROM notifications WHERE kind='health_warning'").fetchall()
            assert len(sent) == 1 and "heartbeat[hybrid]" in sent[0]["message"]
            c.execute("UPDATE heartbeats SET ts=? WHERE agent='hybrid'", (iso(datetime.now(timezone.utc)),))
            c.execute("UPDATE notifications SET status='sent'")
        assert health(tmp_path).returncode == 0

        # 1: a notification backlog
        with db(tmp_path) as c:
            c.execute("INSERT INTO notifications(created_at, agent, channel, kind, message) VALUES (?,?,?,?,?)",
                      (iso(datetime.now(timezone.utc) - timedelta(hours=1)), "hybrid", "discord", "fill", "x"))
        doc = health_json(tmp_path)
        assert doc["exit_code"] == 1 and levels(doc)["notifications"] == "warning"
        with db(tmp_path) as c:
            c.execute("UPDATE notifications SET status='sent'")

        # 1: an error line in an agent's log within the window
        with open(tmp_path / "logs" / "futures.log", "a") as fh:
            fh.write(f"{iso(datetime.now(timezone.utc))[:-1]}.000Z ERROR futures event=agent_error error=X\n")
        doc = health_json(tmp_path)
        assert doc["exit_code"] == 1 and levels(doc)["errors"] == "warning"

        # 2: an agent is down (killed, no clean stop)
        pid = int((tmp_path / "state" / "futures.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), 30, "the futures agent to die")
        down = health(tmp_path)
        assert down.returncode == 2
        assert any(ln.startswith("CRITICAL") and "process[futures]" in ln and "DOWN" in ln
                   for ln in down.stdout.splitlines())
        with db(tmp_path) as c:
            assert c.execute("SELECT COUNT(*) FROM notifications WHERE kind='health_critical'").fetchone()[0] == 1

        # the dashboard shows both agents, the dead one as DOWN
        dash = run(["bash", str(DASH)], tmp_path)
        assert dash.returncode == 0, dash.stderr
        rows = {ln.split("│")[1].strip(): ln for ln in dash.stdout.splitlines() if ln.count("│") > 5}
        assert "up" in rows["hybrid"] and "DOWN" in rows["futures"]
        # trades today against the daily limit of the profile in force
        from tracer.config import load_settings
        cfg = load_settings(env_for(tmp_path), dotenv_path=None)
        assert f"/{cfg.max_trades_per_day}" in rows["hybrid"]
        assert f"/{cfg.futures_max_trades_per_day}" in rows["futures"]
        assert "agent_error" in dash.stdout                                # the last error, from futures.log
    finally:
        run(["bash", str(START), "--stop"], tmp_path)


def test_missing_db_is_critical_and_not_created(tmp_path):
    r = health(tmp_path)
    assert r.returncode == 2
    assert any(ln.startswith("CRITICAL") and "database" in ln and "MISSING" in ln for ln in r.stdout.splitlines())
    assert not (tmp_path / "state" / "t.db").exists()
    doc = health_json(tmp_path)
    assert doc["status"] == "critical" and levels(doc)["database"] == "critical"
    assert levels(doc)["process[hybrid]"] == "warning"        # never started
    assert "alerts.log" in os.listdir(tmp_path / "logs")      # the alert could not go to the missing DB


def test_corrupt_db_is_critical(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "t.db").write_bytes(b"this is not a database" * 100)
    doc = health_json(tmp_path)
    assert doc["exit_code"] == 2 and levels(doc)["database"] == "critical"


def test_disk_thresholds_and_never_started_agents(tmp_path):
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path).returncode == 0
    doc = health_json(tmp_path)
    assert doc["exit_code"] == 1 and levels(doc)["process[futures]"] == "warning"   # not started
    assert levels(doc)["database"] == "ok" and levels(doc)["disk"] == "ok"
    assert levels(health_json(tmp_path, TB_HEALTH_DISK_WARN_PCT="100"))["disk"] == "warning"
    doc = health_json(tmp_path, TB_HEALTH_DISK_WARN_PCT="100", TB_HEALTH_DISK_CRITICAL_PCT="100")
    assert doc["exit_code"] == 2 and levels(doc)["disk"] == "critical"


def test_invalid_config_is_critical(tmp_path):
    r = health(tmp_path, TB_WATCHDOG_MAX_RESTARTS_PER_HOUR="zero")
    assert r.returncode == 2 and "TB_WATCHDOG_MAX_RESTARTS_PER_HOUR" in r.stderr


def test_alert_command_enqueues_for_every_channel(tmp_path):
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path).returncode == 0
    r = run([str(ROOT / ".venv/bin/tracer"), "alert", "test_alert", "hello ops", "--agent", "futures"], tmp_path)
    assert r.returncode == 0 and "1 channel" in r.stdout
    with db(tmp_path) as c:
        row = c.execute("SELECT * FROM notifications WHERE kind='test_alert'").fetchone()
    assert row["message"] == "hello ops" and row["agent"] == "futures" and row["channel"] == "console"


class _Ping:
    """A tiny HTTP service on 127.0.0.1 answering 200 to every GET (stands in for the public data APIs)."""

    def __enter__(self) -> "_Ping":
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a) -> None:
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_live_feed_is_probed_per_source_and_can_pass(tmp_path):
    """TB_FEED=live names a mode, not a venue: each bar source is probed at its URL; none named `live`."""
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path).returncode == 0
    with _Ping() as up:
        env = dict(TB_FEED="live", TB_BAR_SOURCES="binance_spot,coingecko", TB_NEWS_SOURCES="",
                   TB_BINANCE_SPOT_URL=up.url, TB_COINGECKO_URL=up.url)
        lv = levels(health_json(tmp_path, **env))
        assert not any("live" in name for name in lv), lv
        assert lv["feed[binance_spot]"] == "ok" and lv["feed[coingecko]"] == "ok" and lv["venue"] == "ok"
        down = levels(health_json(tmp_path, **dict(env, TB_COINGECKO_URL="http://127.0.0.1:9")))
        assert down["feed[coingecko]"] == "warning" and down["feed[binance_spot]"] == "ok"


def test_invalid_env_file_still_reports_json_and_alerts(tmp_path):
    """A typo in .env: the agents refuse it, and monitoring says so (JSON on stdout, an alert), both from the
    health check and from every watchdog pass, which restarts nothing onto it (alerting once per window)."""
    envf = tmp_path / "bad.env"
    envf.write_text("TB_WATCHDOG_MAX_RESTARTS_PER_HOUR=zero\n")
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path).returncode == 0
    r = run([str(ROOT / ".venv/bin/tracer"), "--env-file", str(envf), "health", "--json"], tmp_path)
    doc = json.loads(r.stdout)
    assert r.returncode == 2 and doc["exit_code"] == 2
    assert levels(doc)["config"] == "critical" and "TB_WATCHDOG_MAX_RESTARTS_PER_HOUR" in \
        next(c["message"] for c in doc["checks"] if c["name"] == "config")
    assert levels(doc)["database"] == "ok"          # the salvaged settings still found the DB
    with db(tmp_path) as c:
        crit = c.execute("SELECT message FROM notifications WHERE kind='health_critical'").fetchall()
    assert len(crit) == 1 and "TB_WATCHDOG_MAX_RESTARTS_PER_HOUR" in crit[0]["message"]
    # the same through the script, with the variable in the environment
    doc = json.loads(health(tmp_path, "--json", "--no-alert", TB_WATCHDOG_MAX_RESTARTS_PER_HOUR="zero").stdout)
    assert doc["status"] == "critical" and levels(doc)["config"] == "critical"
    # the watchdog: reports the invalid config, restarts nothing, alerts once
    (tmp_path / "state" / "hybrid.pid").write_text("999999\n")
    for _ in range(2):
        w = run(["bash", str(ROOT / "scripts" / "watchdog_hybrid.sh")], tmp_path,
                TB_WATCHDOG_MAX_RESTARTS_PER_HOUR="zero")
        assert w.returncode == 0 and "configuration invalid" in w.stdout, w.stdout + w.stderr
    assert (tmp_path / "state" / "hybrid.pid").read_text().strip() == "999999"
    with db(tmp_path) as c:
        sent = c.execute("SELECT message FROM notifications WHERE kind='config_invalid'").fetchall()
    assert len(sent) == 1 and "TB_WATCHDOG_MAX_RESTARTS_PER_HOUR" in sent[0]["message"]


def test_bare_cron_environment_other_folder_and_a_closed_pipe(tmp_path):
    """cron: PATH=/usr/bin:/bin, HOME, cwd elsewhere; `| head` closing the pipe is no traceback."""
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path).returncode == 0
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TB_STATE_DIR": str(tmp_path / "state"),
           "TB_LOG_DIR": str(tmp_path / "logs"), "TB_DB_PATH": str(tmp_path / "state" / "t.db"),
           "TB_HEALTH_DISK_WARN_PCT": "0", "TB_HEALTH_DISK_CRITICAL_PCT": "0"}
    r = subprocess.run(["/bin/bash", str(HEALTH), "--json", "--no-alert"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    doc = json.loads(r.stdout)
    assert r.returncode == doc["exit_code"] == 1 and levels(doc)["database"] == "ok"   # agents never started
    assert not (tmp_path / "state" / "tracer.db").exists() and not (tmp_path / "logs" / "tracer.db").exists()
    p = subprocess.run(f"/bin/bash '{HEALTH}' --no-alert | head -0; echo \"rc=${{PIPESTATUS[0]}}\"", shell=True,
                       executable="/bin/bash", env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
    assert p.stdout.strip() == "rc=1"


def test_venv_whose_python_vanished_is_reported_as_json(tmp_path):
    """A copy of the scripts whose .venv/bin/python points at a Python that is gone (a Homebrew upgrade)."""
    import shutil
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(HEALTH, repo / "scripts" / "health_check.sh")
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").symlink_to(tmp_path / "gone" / "python3.12")
    for args in (["--json"], []):
        r = subprocess.run(["bash", str(repo / "scripts" / "health_check.sh"), *args], env=env_for(tmp_path),
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert r.returncode == 2
        out = json.loads(r.stdout)["checks"][0]["message"] if args else r.stdout
        assert "bootstrap.sh" in out and "Python is gone" in out
    shutil.rmtree(repo / ".venv")
    doc = json.loads(subprocess.run(["bash", str(repo / "scripts" / "health_check.sh"), "--json"],
                                    env=env_for(tmp_path), capture_output=True, text=True, timeout=60).stdout)
    assert doc["exit_code"] == 2 and "missing" in doc["checks"][0]["message"]


def test_env_file_readable_by_others_is_a_warning(tmp_path):
    assert run([str(ROOT / ".venv/bin/tracer"), "init-db"], tmp_path).returncode == 0
    envf = tmp_path / "copied.env"
    envf.write_text("TB_PROFILE=phase1c\n")
    envf.chmod(0o644)                                    # what `cp .env.example .env` gives
    tracer = [str(ROOT / ".venv/bin/tracer"), "--env-file", str(envf), "health", "--json", "--no-alert"]
    doc = json.loads(run(tracer, tmp_path).stdout)
    check = next(c for c in doc["checks"] if c["name"] == "env_file")
    assert check["status"] == "warning" and "chmod 600" in check["message"] and "0644" in check["message"]
    envf.chmod(0o600)
    assert levels(json.loads(run(tracer, tmp_path).stdout))["env_file"] == "ok"


def test_status_from_another_folder_does_not_create_a_db(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    r = subprocess.run([str(ROOT / ".venv/bin/tracer"), "status"], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "TB_DB_PATH" in r.stderr and "no database" in r.stderr
    assert not (tmp_path / "state").exists()


def _watch_output(tmp: Path, *args: str, want: str, timeout: float = 60) -> str:
    """Run the dashboard in --watch mode until ``want`` shows up (or the timeout), then stop it."""
    out = tmp / "watch.out"
    with out.open("w") as fh:
        p = subprocess.Popen(["bash", str(DASH), *args], env=env_for(tmp), cwd=ROOT, stdout=fh,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: want in out.read_text() or p.poll() is not None, timeout, want)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)      # the loop and its dashboard, this test's own group
            p.wait(30)
    return out.read_text()


def test_dashboard_options_take_optional_values_and_refuse_zero(tmp_path):
    """README: `[--watch [SECONDS]] [--events [HOURS]]`: `--watch --events` used to fail ("--watch needs
    seconds"), and `--watch 0` redrew in a busy loop."""
    assert run([str(ROOT / ".venv" / "bin" / "tracer"), "init-db"], tmp_path).returncode == 0
    for args in (["--watch", "0"], ["--watch", "0.0"], ["--events", "0"], ["--events", "12", "--watch", "00"]):
        r = run(["bash", str(DASH), *args], tmp_path)
        assert r.returncode == 2 and "above 0" in r.stderr, (args, r.stderr)
    assert run(["bash", str(DASH), "--watch", "x"], tmp_path).returncode == 2          # not a value: unknown option
    text = _watch_output(tmp_path, "--watch", "--events", want="Health checks, last 24 h")
    assert "Health checks, last 24 h" in text and "needs" not in text, text
    text = _watch_output(tmp_path, "--events", "12", "--watch", "0.5", want="Health checks, last 12 h")
    assert text.count("Health checks, last 12 h") >= 1, text


def _all_ok(tmp: Path) -> None:
    """A DB whose agents both stopped cleanly just now: every check ok."""
    assert run([str(ROOT / ".venv" / "bin" / "tracer"), "init-db"], tmp).returncode == 0
    now = iso(datetime.now(timezone.utc))
    with db(tmp) as c:
        for a in ("hybrid", "futures"):
            c.execute("INSERT INTO heartbeats(agent, ts, clock, cycle, pid, status) VALUES (?,?,?,?,?,?)",
                      (a, now, now, 5, 1, "stopped"))


def test_quiet_prints_only_when_not_ok(tmp_path):
    """--quiet (for cron, which mails any output): nothing when all is ok, the full report otherwise; the exit
    codes are those without it."""
    _all_ok(tmp_path)
    for args in ([], ["--json"], ["--heal"]):
        ok = health(tmp_path, "--quiet", "--no-alert", *args)
        assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == "", (args, ok.stdout, ok.stderr)
    assert "health: ok" in health(tmp_path, "--no-alert").stdout
    with db(tmp_path) as c:
        c.execute("DELETE FROM heartbeats WHERE agent='futures'")           # never started: a warning
    warn = health(tmp_path, "--quiet", "--no-alert")
    assert warn.returncode == 1 and "WARNING  process[futures]" in warn.stdout and "health: warning" in warn.stdout


def test_health_check_rotates_the_operations_logs_at_their_size(tmp_path):
    """health.log, watchdog.log, *.err ... grew without end (only <agent>.log rotated): each health check rotates
    those past TB_LOG_MAX_MB into NAME.1 .. NAME.<TB_LOG_BACKUPS>, user-only, in place, so a writer that keeps
    the file open (cron's >>, an agent's 2>>) goes on at its start; an agent's own log is its handler's."""
    _all_ok(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    cap = {"TB_LOG_MAX_MB": "0.001", "TB_LOG_BACKUPS": "2"}               # about 1 KB
    big = "x" * 99 + "\n"
    for name in ("watchdog.log", "start.log", "hybrid.err", "hybrid.log"):
        (logs / name).write_text(big * 30)
    (logs / "heal.log").write_text(big)                                    # under the cap: left alone
    writer = (logs / "hybrid.err").open("a")                               # an agent's stderr, held open
    try:
        for round_ in range(3):
            r = health(tmp_path, "--no-alert", **cap)
            assert r.returncode == 0, r.stdout
            for name in ("watchdog.log", "start.log", "hybrid.err"):
                assert (logs / name).stat().st_size < 1100, (round_, name)
                assert big in (logs / f"{name}.1").read_text()
                assert (logs / f"{name}.1").stat().st_mode & 0o777 == 0o600
            writer.write(f"round {round_}\n" + big * 20)
            writer.flush()
            (logs / "watchdog.log").write_text(big * 30)
        assert (logs / "watchdog.log.2").exists() and not (logs / "watchdog.log.3").exists()   # TB_LOG_BACKUPS
        err = (logs / "hybrid.err").read_text()
        assert "\0" not in err and err.startswith("round 2")    # appended at the new end, no hole before it
    finally:
        writer.close()
    assert (logs / "heal.log").read_text() == big and not (logs / "heal.log.1").exists()
    assert (logs / "hybrid.log").read_text() == big * 30 and not (logs / "hybrid.log.1").exists()
