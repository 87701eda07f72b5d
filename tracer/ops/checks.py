"""Health checks of the monitoring layer itself and of what the agents run on (beside tracer/ops.py's
process, heartbeat, DB, disk, errors, backlog and venue checks):

* ``watchdog[<agent>]``: a watchdog loop that was started (its pid file exists) must still run. Before this,
  a killed loop still read "ok" and nobody restarted a dead agent.
* ``listener``: the Telegram listener, when Telegram is configured and it was started.
* ``log[<agent>]``: a running agent's log must have been written within ``TB_HEALTH_LOG_STALE_MIN``.
* ``resources[<agent>]``: a running agent's resident memory against ``TB_HEALTH_AGENT_MAX_RSS_MB``, with its
  CPU share.
* ``sentiment``: which scorer the agents run (their last ``event=sentiment_scorer`` log line), a fallback
  (FinBERT or the trained model did not load) as a warning that names the install step, and a canary
  inference: the configured scorer must call a plainly bullish and a plainly bearish headline right.
* ``venue_auth[<venue>]``: through the agents' own venue client, a signed balance request (the keys work)
  and the offset between this machine's clock and the venue's (signed requests fail beyond the receive
  window).

Each returns a :class:`tracer.ops.Check`; none raises.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tracer.ops.health import Check, live_venues
from tracer.models import AGENTS
from tracer.ops.common import _now, human_age
from tracer.ops.heartbeat import agent_state
from tracer.ops.processes import agent_alive, read_pid, runs, watchdog_loop_alive
from tracer.ops.suspend import SuspendClock, asleep_note, awake_age_at, record


def watchdog_loops(settings: Any) -> list[Check]:
    out = []
    for a in AGENTS:
        pf = Path(settings.state_dir) / f"watchdog_{a}.pid"
        pid = read_pid(pf)
        if not pf.exists():
            out.append(Check(f"watchdog[{a}]", 0, "no loop started (cron passes, or watchdogs off)"))
        elif watchdog_loop_alive(pid, a):
            out.append(Check(f"watchdog[{a}]", 0, f"loop running (pid {pid})"))
        elif not (Path(settings.state_dir) / f"{a}.pid").exists():
            out.append(Check(f"watchdog[{a}]", 0, f"loop gone (pid {pid}), agent stopped: nothing to watch"))
        else:
            out.append(Check(f"watchdog[{a}]", 1, f"DOWN: the watchdog loop (pid {pid}) is gone: a dead or hung "
                                                  f"{a} agent would not be restarted (health_check.sh --heal "
                                                  f"restarts it)"))
    return out


def listener(settings: Any) -> Check:
    if not (settings.telegram_bot_token and settings.telegram_chat_id):
        return Check("listener", 0, "n/a (Telegram off)")
    pf = Path(settings.state_dir) / "telegram.pid"
    pid = read_pid(pf)
    if not pf.exists():
        return Check("listener", 0, "not started (no pid file)")
    if runs(pid, r"telegram_listener\.py"):
        return Check("listener", 0, f"running (pid {pid})")
    return Check("listener", 1, f"DOWN: the Telegram listener (pid {pid}) is gone: no /commands, and no alert "
                                f"delivery while the agents are down (health_check.sh --heal restarts it)")


def agent_logs_and_resources(settings: Any, clock: SuspendClock | None = None) -> list[Check]:
    import psutil
    out = []
    stale_s = settings.health_log_stale_min * 60
    now = _now()
    gaps = record(settings.state_dir, "health", now, clock)     # awake time only: tracer/ops/suspend.py
    for a in AGENTS:
        st = agent_state(settings, a)
        if not st.alive or st.pid is None:
            continue
        log = Path(settings.log_dir) / f"{a}.log"
        try:
            age: float | None = now.timestamp() - log.stat().st_mtime
        except FileNotFoundError:
            age = None
        awake = awake_age_at(age, now, gaps)
        if awake is None:
            out.append(Check(f"log[{a}]", 1, f"MISSING: {log} does not exist while the agent runs"))
        elif awake > stale_s:
            out.append(Check(f"log[{a}]", 1, f"STALE: {log} last written {human_age(age)} ago"
                                             f"{asleep_note(age, awake)} (limit {human_age(stale_s)})"))
        else:
            out.append(Check(f"log[{a}]", 0, f"written {human_age(age)} ago{asleep_note(age, awake)}"))
        try:
            p = psutil.Process(st.pid)
            rss = p.memory_info().rss / 2 ** 20
            cpu = p.cpu_percent(interval=0.2)
        except (psutil.Error, OSError) as e:
            out.append(Check(f"resources[{a}]", 0, f"unknown ({type(e).__name__})"))
            continue
        msg = f"memory {rss:.0f} MB resident, CPU {cpu:.0f}%"
        if rss > settings.health_agent_max_rss_mb:
            out.append(Check(f"resources[{a}]", 1, f"HIGH MEMORY: {msg} (limit {settings.health_agent_max_rss_mb:g} "
                                                   f"MB, TB_HEALTH_AGENT_MAX_RSS_MB)"))
        else:
            out.append(Check(f"resources[{a}]", 0, msg))
    return out


# --- sentiment ---------------------------------------------------------------------------------------------
_EVENT = re.compile(r"event=(sentiment_scorer|sentiment_scorer_fallback)\b(.*)$")
INSTALL_STEP = {"finbert": "install transformers and torch into .venv (.venv/bin/python -m pip install "
                           "'transformers>=5,<6' torch) and point TB_FINBERT_MODEL at a model folder",
                "trained": "reinstall the project (scripts/bootstrap.sh; the shipped model needs the pinned "
                           "scikit-learn)"}
CANARY = (("Bitcoin surges to a record high as ETF inflows soar", 1),
          ("Crypto exchange hacked, withdrawals halted as prices crash", -1))


def _last_scorer_lines(settings: Any, max_bytes: int = 256_000) -> tuple[str | None, str | None]:
    """(the newest ``sentiment_scorer`` line's fields across the agents' logs, the fallback logged at that same
    start-up, i.e. after the previous ``sentiment_scorer`` line of that log, or None)."""
    best: tuple[str, str, str | None] | None = None        # (ts, fields, fallback)
    for a in AGENTS:
        try:
            with open(Path(settings.log_dir) / f"{a}.log", "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - max_bytes))
                lines = fh.read().decode("utf-8", "replace").splitlines()
        except OSError:
            continue
        pending: str | None = None
        for ln in lines:
            m = _EVENT.search(ln)
            if not m:
                continue
            if m.group(1) == "sentiment_scorer_fallback":
                pending = m.group(2).strip()
                continue
            ts = ln.split(" ", 1)[0]
            if best is None or ts >= best[0]:
                best = (ts, m.group(2).strip(), pending)
            pending = None
    return (best[1], best[2]) if best else (None, None)


def sentiment(settings: Any) -> Check:
    import logging
    used, fallback = _last_scorer_lines(settings)
    live = (re.search(r"scorer=(\w+)", used).group(1) if used and re.search(r"scorer=(\w+)", used) else None)
    try:
        from tracer.sentiment.factory import make_scorer
        quiet = logging.getLogger("tracer.health.sentiment")
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        scorer = make_scorer(settings, quiet)
        scores = scorer.score([t for t, _ in CANARY])
    except Exception as e:  # noqa: BLE001 - a scorer that cannot even be built is the finding
        return Check("sentiment", 2, f"BROKEN: the configured scorer cannot score ({type(e).__name__}: {e})"[:300])
    wrong = [t for (t, want), s in zip(CANARY, scores) if (s.value > 0) != (want > 0) or s.value == 0]
    canary = f"canary {'/'.join(f'{s.value:+.2f}' for s in scores)} by {scores[0].scorer_id}"
    if wrong:
        return Check("sentiment", 1, f"CANARY FAILED: {canary}: scored the wrong way: {'; '.join(wrong)}")
    if fallback is not None and live in (None, "trained", "lexicon"):
        wanted = (re.search(r"wanted=(\w+)", fallback) or re.search(r"(finbert|trained)", fallback))
        w = wanted.group(1) if wanted else "finbert"
        reason = re.search(r'reason=("[^"]*"|\S+)', fallback)
        return Check("sentiment", 1, f"FALLBACK: the agents run {live or 'a fallback scorer'}, not {w} "
                                     f"({reason.group(1) if reason else 'see the agent log'}); to fix: "
                                     f"{INSTALL_STEP.get(w, INSTALL_STEP['finbert'])}; {canary}")
    return Check("sentiment", 0, f"agents run {live or '(no agent log yet)'}; {canary}")


# --- venues: authenticated probe and clock -------------------------------------------------------------------
MAX_OFFSET_S = 1.0        # Binance's default recvWindow is 5 s; 1 s leaves room for the request itself


def venue_auth(settings: Any) -> list[Check]:
    """Per live venue, through the same client the agents use: the server's clock against this machine's, and
    a signed balance request (the keys work: not expired, not revoked, IP allowed, trading permission)."""
    from tracer.execution.venue import AuthError, VenueError
    from tracer.execution.venue_factory import make_client
    out = []
    for v in live_venues(settings):
        name = f"venue_auth[{v}]"
        try:
            client = make_client(settings, v)
        except (ValueError, TypeError) as e:
            out.append(Check(name, 1, f"no client: {e}"))
            continue
        try:
            t0 = time.time()
            server = client.server_time().timestamp()
            t1 = time.time()
            offset = (t0 + t1) / 2 - server
            clock = f"clock {offset:+.2f} s off the venue's"
            bal = client.balance()
        except AuthError as e:
            out.append(Check(name, 2, f"KEYS REFUSED by {v}: {type(e).__name__}: {e}"[:300]
                                      + " (check the key, its IP allow-list and its permissions)"))
            continue
        except (VenueError, OSError) as e:
            out.append(Check(name, 1, f"signed probe failed: {type(e).__name__}: {e}"[:300]))
            continue
        finally:
            close = getattr(client, "close", None)
            if callable(close):
                close()
        if abs(offset) > MAX_OFFSET_S:
            out.append(Check(name, 1, f"CLOCK DRIFT: {clock} (limit {MAX_OFFSET_S:g} s): signed requests fail "
                                      f"outside the receive window; sync this machine's clock"))
        else:
            out.append(Check(name, 0, f"keys work (available {bal.available:,.2f}), {clock}"))
    return out


def coverage(settings: Any) -> list[Check]:
    """Every check of this module, each guarded so that one failing does not hide the others."""
    out: list[Check] = []
    for fn in (watchdog_loops, lambda s: [listener(s)], agent_logs_and_resources, lambda s: [sentiment(s)],
               venue_auth):
        try:
            out += fn(settings)
        except Exception as e:  # noqa: BLE001 - report the checker's own failure as a finding
            out.append(Check("monitor", 1, f"a check failed to run: {type(e).__name__}: {e}"[:300]))
    return out


__all__ = ["coverage", "watchdog_loops", "listener", "agent_logs_and_resources", "sentiment", "venue_auth",
           "agent_alive"]
