"""The monitoring record as the dashboard shows it (``scripts/monitoring_status.sh``): the recent watchdog,
heal and alert events, and each health check's history (runs, warnings, criticals, last result)."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tracer.ops.records import history, recent

_STYLE = {0: "green", 1: "yellow", 2: "bold red"}
_NAME = {0: "ok", 1: "warning", 2: "critical"}


def show(settings: Any, console: Console, hours: float = 24.0, limit: int = 20) -> None:
    ev = Table(title=f"Recent monitoring events (last {limit})", title_justify="left")
    for col in ("time (UTC)", "source", "kind", "about", "level", "message"):
        ev.add_column(col, overflow="fold")
    for e in recent(settings, limit):
        lvl = int(e["level"])
        # names like process[hybrid] are not markup: escaped
        ev.add_row(e["ts"], e["source"], e["kind"], escape(e["name"]), f"[{_STYLE[lvl]}]{_NAME[lvl]}[/]",
                   escape(e["message"][:200]))
    console.print(ev)
    hist = Table(title=f"Health checks, last {hours:g} h", title_justify="left")
    for col in ("check", "runs", "warning", "critical", "last", "last result"):
        hist.add_column(col, overflow="fold")
    for h in history(settings, hours):
        lvl = int(h["last_level"] or 0)
        hist.add_row(escape(h["name"]), str(h["runs"]), str(h["warnings"] or 0), str(h["criticals"] or 0),
                     f"[{_STYLE[lvl]}]{_NAME[lvl]}[/] {h['last_ts']}", escape((h["last_message"] or "")[:160]))
    console.print(hist)
