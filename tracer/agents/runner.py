"""Process shell shared by the agent entry points: options, config, logging, signals, exit codes."""
from __future__ import annotations

import argparse
import fcntl
import math
import os
import signal
import sys
from pathlib import Path
from typing import IO, Callable

from tracer.config import ConfigError, load_settings
from tracer.logs import kv, setup_logging
from tracer.notify.messages import agent_error_text
from tracer.notify.outbox import enqueue
from tracer.notify.worker import start_workers, stop_workers


def parse_args(agent: str, argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=f"{agent} agent", description=f"Tracer Bullet {agent} agent")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--once", action="store_true", help="run one cycle and exit")
    g.add_argument("--cycles", type=int, metavar="N", help="run N cycles and exit")
    p.add_argument("--interval", type=float, metavar="SECONDS", default=None,
                   help="pause between cycles (default TB_REPLAY_INTERVAL_S; 0 = as fast as possible)")
    p.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    a = p.parse_args(argv)
    if a.cycles is not None and a.cycles < 1:
        p.error("--cycles must be >= 1")
    if a.interval is not None and not (math.isfinite(a.interval) and a.interval >= 0):
        p.error("--interval must be a number >= 0")     # inf would wait for ever after the first cycle
    return a


def run_agent(agent: str, build: Callable, argv: list[str] | None = None) -> int:
    """Parse options, validate config (exit 2 naming the variable), run, exit 0 on a clean stop."""
    args = parse_args(agent, argv)
    warnings: list[str] = []
    try:
        settings = load_settings(dotenv_path=args.env_file, warn=warnings.append)
    except ConfigError as e:
        print(f"{agent}: refusing to start: {e}", file=sys.stderr)
        return 2
    from tracer.config.paths import path_problems
    from tracer.data.replay import DataFileError, replay_data_problems
    problems = path_problems(settings) + replay_data_problems(settings, (agent,))
    if problems:
        print(f"{agent}: refusing to start: {'; '.join(problems)}", file=sys.stderr)
        return 2
    state, db = Path(settings.state_dir), Path(settings.db_path)
    alone, lock = _one_copy(agent, state / f"{agent}.instance", f"TB_STATE_DIR={state}",
                            "./start_trading_system.sh --stop")
    if not alone:
        return 2
    # TB_DB_PATH does not follow TB_STATE_DIR: after a change of TB_STATE_DIR (and a --restart that no longer
    # finds the old agent) only a lock beside the DB keeps a second copy off the same orders
    alone, db_lock = _one_copy(agent, db.with_name(f"{db.name}.{agent}.instance"), f"TB_DB_PATH={db}",
                               "./start_trading_system.sh --stop with the TB_STATE_DIR it runs on, or kill that pid")
    if not alone:
        return 2
    log = setup_logging(agent, settings.log_dir, settings.log_level, settings.secret_values(),
                        max_mb=settings.log_max_mb, backups=settings.log_backups)
    for w in warnings:
        log.warning(kv("config_warning", message=w))
    try:
        loop = build(settings, log)
    except (DataFileError, FileNotFoundError) as e:
        # a candle or headlines file that cannot be read (named, with its line) or TB_HEADLINES_PATH naming none:
        # a data error like a missing candle file above (exit 2, said), not a traceback
        log.error(kv("refusing_to_start", error=type(e).__name__, message=str(e)))
        print(f"{agent}: refusing to start: {e}", file=sys.stderr)
        return 2
    loop.settings_source = lambda: load_settings(dotenv_path=args.env_file)     # an operator /reload

    def _stop(signum, _frame):
        log.info(kv("signal", name=signal.Signals(signum).name, action="finishing the cycle, then exiting"))
        loop.stop_event.set()

    # a hang-up (the terminal closed) stops it cleanly like SIGTERM. A signal ignored at start stays ignored: the
    # start script's and the watchdog's background agents (``nohup ... &``) must not die of a Ctrl-C or a closed
    # window in the terminal that started them (they share its process group)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _stop)
    cycles = 1 if args.once else args.cycles
    interval = settings.replay_interval_s if args.interval is None else args.interval
    workers = start_workers(settings, log)   # Discord/Telegram delivery threads; none when both are off
    try:
        loop.run(cycles=cycles, interval_s=interval)
    except Exception as e:  # the watchdog restarts us; the DB holds everything committed
        log.exception(kv("agent_error", error=type(e).__name__, message=str(e)))
        notify_agent_error(loop.store, settings, agent, e, log)
        return 1
    finally:
        stop_workers(workers)   # a last, bounded delivery pass; what is left stays pending for the restart
        loop.store.close()
    return 0


def _one_copy(agent: str, path: Path, where: str, how: str) -> tuple[bool, IO[str] | None]:
    """An exclusive lock on ``path`` (``<state>/<agent>.instance``, and ``<db>.<agent>.instance`` beside the DB) for
    the life of the process (the OS frees it when the process dies, kill -9 included): a second copy of an agent on
    the same state folder or DB (a direct run while the start script's runs, a watchdog racing a manual start, a
    restart after TB_STATE_DIR changed) would share its DB and double its orders. (False, None) when another copy
    holds it (said on stderr naming ``where``, with ``how`` to stop it: exit 2). A lock file that cannot be made (a
    full or read-only disk: the storage fault the agent rides out, managing its exits) does not stop the start."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # user-only, like every state file (a pid is no secret, but the folder's files are kept 0600)
        f = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+")
        os.chmod(path, 0o600)
    except OSError as e:
        print(f"{agent}: no single-copy lock for {where} ({e}); starting without it", file=sys.stderr)
        return True, None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        other = f.read().strip() or "?"
        f.close()
        print(f"{agent}: refusing to start: another copy runs on {where} (pid {other}); two copies would share "
              f"one DB. Stop it first ({how})", file=sys.stderr)
        return False, None
    try:                   # the pid, for that message: best effort
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
    except OSError:
        pass
    return True, f


def notify_agent_error(store, settings, agent: str, e: BaseException, log) -> None:
    """Queue an ``agent_error`` message (best effort: the DB itself may be what failed)."""
    try:
        with store.transaction():
            enqueue(store, settings, "agent_error", agent_error_text(type(e).__name__, str(e)), agent)
    except Exception as e2:
        log.error(kv("agent_error_not_queued", error=type(e2).__name__))
