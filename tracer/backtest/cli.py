"""``tracer backtest``: options, settings overrides, progress bar, outputs."""
from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console

from tracer.cli_args import headlines_file, parse_when
from tracer.config import ConfigError, env_names, load_settings
from tracer.models import AGENTS


def add_parser(sub) -> None:
    b = sub.add_parser("backtest", help="replay an agent's own decision code over history")
    b.add_argument("--agent", choices=AGENTS, default="hybrid")
    b.add_argument("--from", dest="start", help="first UTC date/time (ISO 8601), default: as early as the data allow")
    b.add_argument("--to", dest="end", help="last UTC date/time (ISO 8601), default: end of the data")
    b.add_argument("--symbols", help="comma list (default: the agent's TB_SYMBOLS / TB_FUTURES_SYMBOLS, or every "
                                     "file in --data)")
    b.add_argument("--data", help="folder of candles_<interval>_<SYMBOL>.csv files (default: bundled data)")
    b.add_argument("--headlines", help="headlines CSV (default: TB_HEADLINES_PATH, else headlines.csv in the data "
                                       "folder)")
    b.add_argument("--out", default="backtests/latest", help="output folder (default backtests/latest)")
    b.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override one TB_ setting")
    b.add_argument("--no-plot", action="store_true", help="skip report.png")


def _when(s: str | None, opt: str, prog: str = "tracer backtest") -> datetime | None:
    return parse_when(s, opt, prog)


def run(args, env_file: str = ".env") -> int:
    from tracer.backtest.data import DataError, discover
    from tracer.backtest.report import print_summary, write_outputs
    from tracer.backtest.runner import run_backtest
    from tracer.sentiment.factory import make_scorer
    from tracer.signals.evaluate import EvalParams

    environ = dict(os.environ)
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or name not in env_names():
            print(f"tracer backtest: --set {item!r}: expected NAME=VALUE with a known TB_ variable", file=sys.stderr)
            return 2
        environ[name] = value
    warnings: list[str] = []     # a misspelt variable in .env would run at its default unsaid
    try:
        s = load_settings(environ, dotenv_path=env_file, warn=warnings.append)
    except ConfigError as e:
        print(f"tracer backtest: {e}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"tracer backtest: warning: {w}", file=sys.stderr)
    try:        # as the replay agent reads them: the same settings run the same strategy
        headlines = headlines_file(args.headlines, s.headlines_path)
    except ValueError as e:
        print(f"tracer backtest: {e}", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    data_dir = Path(args.data) if args.data else None
    from datetime import timedelta
    interval = timedelta(hours=1)
    if args.symbols:
        from tracer.symbols import canonical
        symbols = [canonical(x.strip()) for x in args.symbols.split(",") if x.strip()]
    elif data_dir is not None:
        found = discover(data_dir)
        if not found:
            print(f"tracer backtest: no candles_<interval>_<SYMBOL>.csv file in {data_dir}", file=sys.stderr)
            return 2
        symbols = sorted(found)
    else:
        symbols = list(s.symbols if args.agent == "hybrid" else s.futures_symbols)
    if data_dir is not None:
        found = discover(data_dir)
        ivs = {found[sym][0] for sym in symbols if sym in found}
        if len(ivs) > 1:
            print(f"tracer backtest: mixed intervals in {data_dir}: {sorted(ivs)}", file=sys.stderr)
            return 2
        if ivs:
            interval = ivs.pop()
    # the evaluation's own decision: the filter reads its symbol from the agent's feed (as live), so a run whose
    # symbols lack it has no filter
    if (s.market_filter != "none" and not EvalParams.from_settings(s, interval, symbols).market_bars
            and (args.agent == "hybrid" or s.futures_market_filter)):
        print(f"tracer backtest: note: the market filter's symbol {s.market_filter} is not among the symbols "
              f"({', '.join(symbols)}): this run trades without the market filter (TB_MARKET_FILTER)",
              file=sys.stderr)
    log = logging.getLogger("backtest")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    scorer = make_scorer(s, log)
    progress = prog = None
    if sys.stderr.isatty():
        from rich.progress import Progress
        prog = Progress(console=console, transient=True)
        task = prog.add_task(f"{args.agent} backtest", total=None)
        prog.start()

        def _progress(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)
        progress = _progress
    t0 = time.perf_counter()
    try:
        res = run_backtest(s, args.agent, symbols, scorer, _when(args.start, "--from"), _when(args.end, "--to"),
                           data_dir, headlines, interval, progress=progress)
    except DataError as e:
        print(f"tracer backtest: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"tracer backtest: {e}", file=sys.stderr)
        return 2
    finally:
        if prog is not None:
            prog.stop()
    elapsed = time.perf_counter() - t0
    out = Path(args.out)
    m = write_outputs(res, out, plot=not args.no_plot)
    print_summary(m, Console())
    print(f"{res.bar_steps} bar-steps in {elapsed:.2f} s ({res.bar_steps / max(elapsed, 1e-9):,.0f}/s); "
          f"outputs in {out}/")
    return 0
