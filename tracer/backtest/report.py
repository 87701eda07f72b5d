"""Backtest outputs: trades.csv, equity.csv, metrics.json, report.png and a terminal summary.

Files are written deterministically (fixed column order, ``repr`` floats, sorted JSON keys), so the
same inputs give byte-identical trades.csv and metrics.json.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tracer.backtest.metrics import compute_metrics, drawdown_series
from tracer.backtest.runner import BacktestResult
from tracer.store import iso

TRADE_COLUMNS = ("entry_ts", "exit_ts", "symbol", "side", "qty", "entry_price", "exit_price", "leverage", "fees",
                 "funding", "pnl", "return_pct", "exit_reason", "entry_order_id", "exit_order_id", "signal")


def _f(x) -> str:
    """Shortest round-trip text of a float (numpy scalars included)."""
    return repr(float(x))


def metrics_of(res: BacktestResult) -> dict:
    m = compute_metrics([p.equity for p in res.equity], res.initial_capital, res.interval,
                        [t.pnl for t in res.trades], res.fees_paid, [p.positions > 0 for p in res.equity],
                        funding=sum(t.funding for t in res.trades))
    m.update({"agent": res.agent, "symbols": res.symbols, "start": iso(res.start), "end": iso(res.end),
              "interval_s": int(res.interval.total_seconds()), "entries": res.entries, "rejected": res.rejected,
              "bar_steps": res.bar_steps})
    return m


def _signal_key(entry_order_id: str, symbol: str) -> str:
    """The signal behind a trade: symbol and decision time, as encoded in the deterministic entry id."""
    parts = entry_order_id.split("-")
    return f"{symbol}@{parts[3]}" if len(parts) > 3 else entry_order_id


def write_outputs(res: BacktestResult, out: Path, plot: bool = True) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "trades.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(TRADE_COLUMNS)
        for t in res.trades:
            w.writerow([iso(t.entry_ts), iso(t.exit_ts), t.symbol, t.side.value, _f(t.qty), _f(t.entry_price),
                        _f(t.exit_price), _f(t.leverage), _f(t.fees), _f(t.funding), _f(t.pnl),
                        _f(t.return_pct), t.exit_reason, t.entry_order_id, t.exit_order_id,
                        _signal_key(t.entry_order_id, t.symbol)])
    with open(out / "equity.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("ts", "equity", "cash", "exposure", "positions"))
        for p in res.equity:
            w.writerow([iso(p.ts), _f(p.equity), _f(p.cash), _f(p.exposure), p.positions])
    m = metrics_of(res)
    (out / "metrics.json").write_text(json.dumps(m, sort_keys=True, indent=2) + "\n")
    if plot:
        plot_report(res, out / "report.png")
    return m


def plot_report(res: BacktestResult, path: Path) -> None:
    # the object API with the Agg canvas: no pyplot (its import and global figure state cost more than the plot)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ts = [p.ts for p in res.equity]
    eq = [p.equity for p in res.equity]
    fig = Figure(figsize=(12, 7))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax1.plot(ts, eq, lw=1.0, color="#1f77b4", label="equity")
    by_ts = dict(zip(ts, eq))
    exits = [(t.exit_ts, by_ts[t.exit_ts], t.pnl > 0) for t in res.trades if t.exit_ts in by_ts]
    for won, color in ((True, "#2ca02c"), (False, "#d62728")):     # one collection per colour, not one per trade
        pts = [(x, y) for x, y, w in exits if w is won]
        if pts:
            ax1.scatter([x for x, _ in pts], [y for _, y in pts], s=10, color=color, zorder=3)
    ax1.set_title(f"{res.agent} backtest {iso(res.start)} -> {iso(res.end)} ({len(res.trades)} trades; "
                  f"green/red = winning/losing exits)")
    ax1.set_ylabel("equity (USD)")
    ax1.grid(alpha=0.3)
    dd = drawdown_series([res.initial_capital] + eq)[1:] * 100
    ax2.fill_between(ts, dd, 0, color="#d62728", alpha=0.4)
    ax2.set_ylabel("drawdown %")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def summary_table(m: dict) -> Table:
    t = Table(title=f"Backtest {m['agent']} {m['start']} -> {m['end']}", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    pct = {"total_return", "cagr", "max_drawdown", "win_rate", "exposure"}
    for k in ("final_equity", "total_return", "cagr", "sharpe", "sortino", "max_drawdown", "trades", "win_rate",
              "profit_factor", "exposure", "fees_paid", "funding", "bar_steps"):
        v = m.get(k)
        if v is None:
            s = "-"
        elif k in pct:
            s = f"{v * 100:.2f}%"
        elif isinstance(v, float):
            s = f"{v:,.2f}"
        else:
            s = f"{v:,}"
        t.add_row(k, s)
    return t


def print_summary(m: dict, console: Console | None = None) -> None:
    (console or Console()).print(summary_table(m))
