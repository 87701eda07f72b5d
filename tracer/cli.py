"""``tracer`` command line: explain, check-config, config-example, init-db, status."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tracer.config import ConfigError, env_example, load_settings
from tracer.store import Store
from tracer import ops
from tracer.explain import explain


def _settings(args) -> Any:
    warnings: list[str] = []
    s = load_settings(dotenv_path=getattr(args, "env_file", ".env"), warn=warnings.append)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return s


def status(store: Store, console: Console) -> int:
    t = Table(title="Agents", title_justify="left")
    for col in ("agent", "cycle", "clock", "status", "heartbeat (UTC)", "cash", "equity", "open", "trades", "P&L"):
        t.add_column(col)
    for hb in store.heartbeats():
        a = hb["agent"]
        acct = store.account(a)
        run = store.last_run(a)
        n_trades, pnl, _ = store.trade_stats(a)
        t.add_row(a, str(hb["cycle"]), hb["clock"] or "", hb["status"], hb["ts"],
                  f"{acct['cash']:.2f}" if acct else "", f"{run['equity']:.2f}" if run and run["equity"] else "",
                  str(store.open_position_count(a)), str(n_trades), f"{pnl:+.2f}")
    console.print(t)
    return 0


def _check_config(s: Any, console: Console) -> int:
    """The settings (already valid), the DB, state and log paths, and the replay's data for what the agents trade;
    exit 2 naming what is wrong."""
    from tracer.config.paths import path_problems
    from tracer.data.replay import replay_data_problems
    problems = path_problems(s) + replay_data_problems(s)
    for problem in problems:
        print(f"tracer: {problem}", file=sys.stderr)
    if problems:
        return 2
    t = Table(title=f"Configuration (profile {s.profile})", title_justify="left")
    for col in ("variable", "value", "meaning"):
        t.add_column(col, overflow="fold")
    for row in s.describe():
        t.add_row(*(escape(str(c)) for c in row))     # values and help are text, not markup
    console.print(t)
    console.print("configuration OK")
    return 0


def _init_db(s: Any) -> int:
    """Create or migrate the DB; a TB_DB_PATH (or state folder) that cannot be used is exit 2 naming it (the start
    script runs this right after check-config)."""
    from tracer.config.paths import path_problems
    problems = path_problems(s)
    for problem in problems:
        print(f"tracer: {problem}", file=sys.stderr)
    if problems:
        return 2
    store = Store(s.db_path)
    try:
        print(f"{s.db_path}: schema version {store.version()}, integrity {'ok' if store.integrity_ok() else 'FAILED'}")
        return 0
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (``tracer config-example | head``): no traceback, and no second one when the
        # interpreter flushes stdout at exit (Python's documented recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tracer", description="Tracer Bullet command line")
    p.add_argument("--env-file", default=".env")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("explain", help="print the decision trail of an order or a signal")
    e.add_argument("order_id", nargs="?", help="client order id (or numeric order id)")
    e.add_argument("--signal", type=int, help="signal id instead of an order")
    sub.add_parser("check-config", help="validate the configuration and print it (secrets masked)")
    sub.add_parser("config-example", help="print the .env.example text")
    sub.add_parser("init-db", help="create or migrate the SQLite DB")
    sub.add_parser("status", help="agents' heartbeats, cash, equity and trades")
    nt = sub.add_parser("notify", help="deliver pending Discord/Telegram notifications now (--test: send a test)")
    nt.add_argument("--test", action="store_true", help="first queue a test message on every enabled channel")
    nt.add_argument("--timeout", type=float, default=20.0, help="seconds to spend delivering (default 20)")
    from tracer.sentiment import command as sentiment_cmd
    sentiment_cmd.add_arguments(sub.add_parser(
        "sentiment", help="score texts from stdin as JSON lines; `sentiment train` retrains the shipped model"))
    from tracer.backtest.cli import add_parser as add_backtest
    add_backtest(sub)
    from tracer.data import download_cli
    download_cli.add_parser(sub)
    ops.add_parsers(sub)   # health, alert, heartbeat-age, dashboard, watchdog-check, watchdog-restarted
    # (anchor: research commands: run, universe, digest, eval)
    from tracer.research import cli as research_cli
    research_cli.add_parsers(sub)
    # (anchor: optimisation commands: optimize, params)
    from tracer.optimize import cli as optimize_cli
    optimize_cli.add_parsers(sub)
    from tracer.study import cli as study_cli
    study_cli.add_parser(sub)
    from tracer.web import server as web_server    # the only importer of tracer.web
    web_server.add_parser(sub)
    args = p.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=160)

    from tracer.backtest.cli import run as run_backtest_cmd
    # commands that load their own settings (their --set overrides apply before validation)
    own_settings = {"backtest": run_backtest_cmd, "download": download_cli.run, "study": study_cli.run}
    if args.cmd in own_settings:
        return own_settings[args.cmd](args, args.env_file)
    # (anchor: research dispatch)
    if args.cmd in research_cli.COMMANDS:
        try:
            research_settings = _settings(args)
        except ConfigError as err:
            print(f"tracer: {err}", file=sys.stderr)
            return 2
        return research_cli.dispatch(args, research_settings, console)
    # (anchor: optimisation dispatch)
    if args.cmd in optimize_cli.COMMANDS:
        return optimize_cli.dispatch(args, args.env_file)
    if args.cmd in ops.COMMANDS:
        # monitoring must still report, and alert, when the configuration is broken: a best-effort
        # salvage of it, with the problems as a critical finding (never used to trade)
        from tracer.ops.fallback import load_for_monitoring
        loaded = load_for_monitoring(dotenv_path=args.env_file)
        for problem in loaded.problems:
            print(f"tracer: invalid configuration: {problem}", file=sys.stderr)
        return ops.dispatch(args, loaded.settings, console, loaded.problems)
    if args.cmd == "config-example":
        print(env_example())
        return 0
    try:
        s = _settings(args)
    except ConfigError as err:
        print(f"tracer: {err}", file=sys.stderr)
        return 2
    if args.cmd == "check-config":
        return _check_config(s, console)
    if args.cmd == "web":
        return web_server.run(args, s, args.env_file)
    if args.cmd == "notify":
        from tracer.notify.worker import notify_command
        return notify_command(s, test=args.test, timeout_s=args.timeout)
    if args.cmd in ("status", "explain") and not Path(s.db_path).is_file():
        # run from another folder, a relative TB_DB_PATH points nowhere: say so instead of creating an empty DB
        print(f"tracer: no database at {Path(s.db_path).resolve()} (TB_DB_PATH={str(s.db_path)!r}, relative to "
              f"{Path.cwd()}): run from the checkout, set TB_DB_PATH, or create it with `tracer init-db`",
              file=sys.stderr)
        return 2
    if args.cmd == "init-db":
        return _init_db(s)
    store = Store(s.db_path)
    try:
        if args.cmd == "status":
            return status(store, console)
        if args.cmd == "explain":
            if args.order_id is None and args.signal is None:
                p.error("explain needs an ORDER_ID or --signal ID")
            return explain(store, console, args.order_id, args.signal)
        if args.cmd == "sentiment":
            return sentiment_cmd.run(args, s, store)
    finally:
        store.close()
    return 1


if __name__ == "__main__":
    sys.exit(main())
