"""``tracer download``: options, progress bar, summary (the work is :mod:`tracer.data.download`)."""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tracer.cli_args import parse_when
from tracer.config import ConfigError, load_settings


def add_parser(sub) -> None:
    d = sub.add_parser("download", help="download candles from a venue into the CSV files the backtest reads")
    d.add_argument("--venue", required=True, choices=("binance", "binance-futures", "alpaca"),
                   help="binance (spot klines), binance-futures (USD-M klines) or alpaca (crypto bars)")
    d.add_argument("--symbols", required=True, help="comma list, e.g. BTC/USD,ETH/USD")
    d.add_argument("--interval", default="1h", help="bar interval: 1m, 5m, 15m, 1h, 4h or 1d (default 1h)")
    d.add_argument("--from", dest="start", required=True, help="first UTC date/time (ISO 8601)")
    d.add_argument("--to", dest="end", help="end UTC date/time, exclusive (default: the last closed bar)")
    d.add_argument("--out", default="data/candles", help="output folder (default data/candles); a file there "
                                                         "is continued after its last bar")


def _when(s: str | None, opt: str) -> datetime | None:
    return parse_when(s, opt, "tracer download")


def run(args, env_file: str) -> int:
    from tracer.data.download import CandleFileError, download_symbol, make_source, parse_interval, write_manifest
    from tracer.data.sources.base import SourceError
    warnings: list[str] = []     # a misspelt variable in .env would run at its default unsaid
    try:
        s = load_settings(dotenv_path=env_file, warn=warnings.append)
    except ConfigError as e:
        print(f"tracer: {e}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"tracer download: warning: {w}", file=sys.stderr)
    try:
        interval = parse_interval(args.interval)
    except ValueError as e:
        print(f"tracer download: --interval {args.interval!r}: {e}", file=sys.stderr)
        return 2
    start, end = _when(args.start, "--from"), _when(args.end, "--to")
    assert start is not None
    if end is not None and end <= start:
        print("tracer download: --to must be after --from", file=sys.stderr)
        return 2
    symbols = [x.strip() for x in args.symbols.split(",") if x.strip()]
    out = Path(args.out)
    source = make_source(args.venue, s)
    now = datetime.now(timezone.utc)
    total = int(((end or now) - start) / interval) * len(symbols)
    console = Console(stderr=True)
    reports = []
    rc = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"{args.venue} {args.interval}", total=max(total, 1))
        for sym in symbols:
            bar.update(task, description=f"{args.venue} {args.interval} {sym}")
            try:
                reports.append(download_symbol(source, sym, interval, start, end, out, now=now,
                                               step=lambda n: bar.advance(task, n)))
            except SourceError as e:     # what was written so far stays: run the command again to resume
                # the venue's message is text, not markup
                console.print(f"[red]{escape(f'{sym}: {e}')}[/red] (written so far is kept; run again to resume)")
                rc = max(rc, 1)
            except CandleFileError as e:     # a file that is not an interrupted download's: left as it is
                console.print(f"[red]{escape(f'{sym}: {e}')}[/red]")
                rc = 2
    manifest = write_manifest(out, args.venue, interval, reports)
    for r in reports:
        print(f"{r.path}: +{r.added} bars, {r.rows} in all ({r.first} .. {r.last}); {len(r.gaps)} hole(s), "
              f"{len(r.rejected)} bar(s) rejected" + (f"; resumed after {r.resumed_after}" if r.resumed_after else ""))
        for g in r.gaps[:10]:
            print(f"  hole: {g}")
        for x in r.rejected[:10]:
            print(f"  rejected: {x}")
    print(f"manifest: {manifest}")
    return rc
