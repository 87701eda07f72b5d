"""The monitoring layer run for real: coverage of the watchdog loops, the listener and the scorer, self-healing
(scripts/health_check.sh --heal) with its own cap, levelled alerts with per-check repeat windows and recovery
messages, and the monitoring record (monitor_events) with its retention, shown by scripts/monitoring_status.sh."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from procs import alive, db, wait_for
from envs import ops_env as env_for

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "start_trading_system.sh"
HEALTH = ROOT / "scripts" / "health_check.sh"
DASH = ROOT / "scripts" / "monitoring_status.sh"
TRACER = str(ROOT / ".venv" / "bin" / "tracer")



def run(cmd: list[str], tmp: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env_for(tmp, **extra), capture_output=True, text=True, timeout=240, cwd=ROOT)


def health_json(tmp: Path, *args: str, **extra: str) -> dict:
    r = run(["bash", str(HEALTH), "--json", *args], tmp, **extra)
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == r.returncode
    return doc


def levels(doc: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in doc["checks"]}


def pid_of(tmp: Path, name: str) -> int:
    return int((tmp / "state" / f"{name}.pid").read_text())


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 30, f"pid {pid} to die")


def notes(tmp: Path, kind: str) -> list:
    with db(tmp) as c:
        return c.execute("SELECT * FROM notifications WHERE kind=? ORDER BY id", (kind,)).fetchall()


def events(tmp: Path, source: str) -> list:
    with db(tmp) as c:
        return c.execute("SELECT * FROM monitor_events WHERE source=? ORDER BY id", (source,)).fetchall()


def test_a_killed_watchdog_loop_is_seen_and_healed_within_its_cap(tmp_path):
    extra = {"TB_WATCHDOG_ENABLED": "true", "TB_WATCHDOG_INTERVAL_S": "0.5", "TB_HEAL_MAX_PER_DAY": "1"}
    r = run(["bash", str(START), "--interval", "30"], tmp_path, **extra)
    assert r.returncode == 0, r.stderr
    try:
        loop = pid_of(tmp_path, "watchdog_hybrid")
        assert levels(health_json(tmp_path, "--no-alert", **extra))["watchdog[hybrid]"] == "ok"
        kill9(loop)
        doc = health_json(tmp_path, "--no-alert", **extra)
        assert levels(doc)["watchdog[hybrid]"] == "warning" and doc["heal"] == []      # seen, not acted on
        healed = run(["bash", str(HEALTH), "--heal"], tmp_path, **extra)
        line = next(ln for ln in healed.stdout.splitlines() if "watchdog[hybrid]" in ln and "HEAL" in ln)
        assert line.startswith("HEALED") and "watchdog loop" in line, healed.stdout
        wait_for(lambda: pid_of(tmp_path, "watchdog_hybrid") != loop and alive(pid_of(tmp_path, "watchdog_hybrid")),
                 30, "the new loop")
        # the healed loop does its job: a killed agent comes back
        agent = pid_of(tmp_path, "hybrid")
        kill9(agent)
        wait_for(lambda: pid_of(tmp_path, "hybrid") != agent, 60, "the healed loop to restart the agent")
        assert "healed watchdog[hybrid] started the hybrid watchdog loop again" in (tmp_path / "logs" / "heal.log").read_text()
        heal_rows = [e for e in events(tmp_path, "heal") if e["kind"] == "heal"]
        assert len(heal_rows) == 1 and heal_rows[0]["name"] == "watchdog[hybrid]"
        assert len(notes(tmp_path, "heal")) == 1 and "🩹" in notes(tmp_path, "heal")[0]["message"]
        wait_for(lambda: any(e["kind"] == "restart" for e in events(tmp_path, "watchdog")), 30,
                 "the loop's restart to be recorded")
        # the cap (1 a day): the next dead loop is reported, alerted as critical, and left alone
        loop2 = pid_of(tmp_path, "watchdog_hybrid")
        kill9(loop2)
        capped = run(["bash", str(HEALTH), "--heal", "--no-alert"], tmp_path, **extra)
        assert "NOT HEALED watchdog[hybrid]" in capped.stdout and "TB_HEAL_MAX_PER_DAY" in capped.stdout
        assert pid_of(tmp_path, "watchdog_hybrid") == loop2
        assert len(notes(tmp_path, "heal_capped")) == 1
    finally:
        run(["bash", str(START), "--stop"], tmp_path, **extra)


def test_an_agent_the_watchdog_gave_up_on_is_restarted_by_heal_with_its_command_line(tmp_path):
    r = run(["bash", str(START), "--interval", "30"], tmp_path)
    assert r.returncode == 0, r.stderr
    try:
        old = pid_of(tmp_path, "hybrid")
        kill9(old)
        # the watchdog's give-up mark, after the agent's start (what the cap leaves behind)
        (tmp_path / "state" / "watchdog_hybrid.json").write_text(json.dumps({"restarts": [], "gave_up_at": time.time()}))
        h = run(["bash", str(HEALTH), "--heal", "--no-alert"], tmp_path)
        assert h.returncode == 2 and "HEALED     process[hybrid]" in h.stdout, h.stdout
        new = pid_of(tmp_path, "hybrid")
        assert new != old and alive(new)
        import psutil
        assert psutil.Process(new).cmdline()[-2:] == ["--interval", "30"]
        w = run(["bash", str(ROOT / "scripts" / "watchdog_hybrid.sh")], tmp_path)   # watched again, not capped
        assert "ok:" in w.stdout or "starting" in w.stdout, w.stdout
    finally:
        run(["bash", str(START), "--stop"], tmp_path)


def test_levels_repeat_windows_recovery_routing_and_record(tmp_path):
    assert run([TRACER, "init-db"], tmp_path).returncode == 0
    with db(tmp_path) as c:      # an event past the retention (30 days): pruned by the next write
        c.execute("INSERT INTO monitor_events(ts, source, kind, name, level, message) "
                  "VALUES ('2000-01-01T00:00:00Z', 'health', 'check', 'old', 0, 'x')")
    # agents never started: two warnings, alerted once at warning level on the warning channels
    assert health_json(tmp_path)["status"] == "warning"
    assert [n["channel"] for n in notes(tmp_path, "health_warning")] == ["console"]
    health_json(tmp_path)
    assert len(notes(tmp_path, "health_warning")) == 1                       # within the window
    health_json(tmp_path, TB_HEALTH_ALERT_REPEAT_BY_CHECK="process=0")       # that check's own window: 0 min
    assert len(notes(tmp_path, "health_warning")) == 2
    checks = events(tmp_path, "health")
    assert {e["name"] for e in checks} >= {"process[hybrid]", "database", "watchdog[hybrid]", "sentiment"}
    assert not any(e["name"] == "old" for e in checks)
    assert sum(e["name"] == "process[hybrid]" and e["level"] == 1 for e in checks) == 3
    # green again: one info "recovered", on the info channels only (none here: nothing is sent, it is recorded)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with db(tmp_path) as c:
        for a in ("hybrid", "futures"):
            c.execute("INSERT INTO heartbeats(agent, ts, clock, cycle, pid, status) VALUES (?,?,?,?,?,?)",
                      (a, now, now, 5, 1, "stopped"))
    doc = health_json(tmp_path, TB_ALERT_CHANNELS_INFO="")
    assert doc["status"] == "ok" and notes(tmp_path, "health_recovered") == []
    rec = [e for e in events(tmp_path, "alert") if e["name"] == "health_recovered"]
    assert len(rec) == 1 and "process[hybrid]" in rec[0]["message"] and "no channel" in rec[0]["message"]
    assert health_json(tmp_path)["status"] == "ok" and notes(tmp_path, "health_recovered") == []   # once
    # the dashboard shows the record: recent events and the per-check history
    dash = run(["bash", str(DASH), "--events"], tmp_path)
    assert dash.returncode == 0, dash.stderr
    assert "health_recovered" in dash.stdout and "process[hybrid]" in dash.stdout
    table = dash.stdout.split("Health checks, last 24 h", 1)[1].splitlines()
    hist = [c.strip() for c in next(ln for ln in table if "process[hybrid]" in ln).split("│")]
    assert hist[1:5] == ["process[hybrid]", "5", "3", "0"]                   # 5 runs, 3 of them warnings


def test_sentiment_fallback_names_the_install_step_and_a_dead_listener_is_seen(tmp_path):
    assert run([TRACER, "init-db"], tmp_path).returncode == 0
    (tmp_path / "logs").mkdir(exist_ok=True)
    (tmp_path / "logs" / "hybrid.log").write_text(
        "2026-01-01T00:00:00.000Z WARNING hybrid event=sentiment_scorer_fallback wanted=finbert "
        "model=/models/finbert reason=\"OSError: no such folder\"\n"
        "2026-01-01T00:00:00.100Z INFO hybrid event=sentiment_scorer scorer=trained scorer_id=tfidf-lr@x\n")
    (tmp_path / "state" / "telegram.pid").write_text("999999\n")
    doc = health_json(tmp_path, "--no-alert", TB_TELEGRAM_BOT_TOKEN="1:x", TB_TELEGRAM_CHAT_ID="42",
                      TB_TELEGRAM_BASE_URL="http://127.0.0.1:9/bot")
    msg = next(c for c in doc["checks"] if c["name"] == "sentiment")
    assert msg["status"] == "warning" and "not finbert" in msg["message"] and "pip install" in msg["message"]
    assert "canary" in msg["message"]
    assert levels(doc)["listener"] == "warning"


def test_a_dead_listener_is_started_again_by_heal(tmp_path):
    """--heal starts a new Telegram listener (against the fake Bot API) when the one in its pid file is gone."""
    from fakes.telegram import BOT_TOKEN, CHAT_ID, FakeTelegram
    assert run([TRACER, "init-db"], tmp_path).returncode == 0
    (tmp_path / "state" / "telegram.pid").write_text("999999\n")          # a listener that died
    with FakeTelegram() as tg:
        extra = {"TB_TELEGRAM_BOT_TOKEN": BOT_TOKEN, "TB_TELEGRAM_CHAT_ID": str(CHAT_ID),
                 "TB_TELEGRAM_BASE_URL": tg.base_url}
        healed = run(["bash", str(HEALTH), "--heal", "--no-alert"], tmp_path, **extra)
        line = next(ln for ln in healed.stdout.splitlines() if "listener" in ln and "HEAL" in ln)
        assert line.startswith("HEALED"), healed.stdout + healed.stderr
        pid = pid_of(tmp_path, "telegram")
        try:
            assert pid != 999999 and alive(pid)
            wait_for(lambda: any(m == "getUpdates" for m, _ in tg.calls), 60, "the new listener to poll")
            assert levels(health_json(tmp_path, "--no-alert", **extra))["listener"] == "ok"
        finally:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), 30, "the listener to stop")


def test_heal_waits_for_the_launch_lock_of_a_start_or_stop(tmp_path):
    """--stop holds each agent's launch lock while it stops it: heal must not start the agent (or its loop)
    behind it. Once the lock is free, the same heal goes ahead."""
    assert run([TRACER, "init-db"], tmp_path).returncode == 0
    state = tmp_path / "state"
    crashed = subprocess.Popen(["true"])
    crashed.wait()
    (state / "hybrid.pid").write_text(f"{crashed.pid}\n")
    (state / "hybrid.args").write_text("--cycles\n1\n--interval\n0\n")
    (state / "watchdog_hybrid.json").write_text(json.dumps({"restarts": [], "gave_up_at": time.time()}))
    lock = state / "hybrid.launch.lock"
    holder = subprocess.Popen(["bash", "-c", "sleep 120; true", "start_trading_system.sh"])   # a stop going on
    new = 0
    try:
        lock.mkdir()
        (lock / "pid").write_text(f"{holder.pid}\n")
        h = run(["bash", str(HEALTH), "--heal", "--no-alert"], tmp_path)
        line = next(ln for ln in h.stdout.splitlines() if "process[hybrid]" in ln and "HEAL" in ln)
        assert line.startswith("NOT HEALED") and f"in progress (pid {holder.pid})" in line, h.stdout
        assert pid_of(tmp_path, "hybrid") == crashed.pid and (lock / "pid").read_text().strip() == str(holder.pid)
        holder.kill()
        holder.wait()
        h = run(["bash", str(HEALTH), "--heal", "--no-alert"], tmp_path)    # its holder is gone: taken over
        assert "HEALED     process[hybrid]" in h.stdout, h.stdout
        new = pid_of(tmp_path, "hybrid")
        assert new != crashed.pid and not lock.exists()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if new:
            wait_for(lambda: not alive(new), 60, "the healed agent's one cycle")
