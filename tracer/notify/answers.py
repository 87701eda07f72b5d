"""The answers of the read-only Telegram commands beyond /status, /positions and /pnl: pure functions of the DB
(and, for /health, the settings) that return the reply text. Days are UTC days of each agent's market clock."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

from tracer.notify import stats
from tracer.store import SCHEMA_VERSION, Store, parse_iso


def _agents(store: Store) -> list[str]:
    from tracer.models import AGENTS
    return sorted(set(stats.agents(store)) | set(AGENTS))


def _clock(store: Store, agent: str) -> datetime | None:
    run = store.last_run(agent)
    return parse_iso(run["clock"]) if run else None


def _midnight(d: date) -> datetime:
    """The UTC start of day ``d``."""
    return datetime.combine(d, datetime.min.time(), tzinfo=timezone.utc)


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def _int_arg(args: tuple[str, ...], default: int, lo: int = 1, hi: int = 365) -> int:
    try:
        return max(lo, min(hi, int(args[0]))) if args else default
    except ValueError:
        return default


def balance_text(store: Store) -> str:
    lines = ["Balance"]
    for a in _agents(store):
        acct = store.account(a)
        if acct is None:
            lines.append(f"{a}: no account yet")
            continue
        run = store.last_run(a)
        eq = run["equity"] if run else None
        cap = acct["initial_capital"]
        ret = f" ({(eq / cap - 1):+.2%} since start)" if eq is not None and cap else ""
        lines.append(f"{a}: equity {_money(eq)}{ret}, cash {_money(acct['cash'])}, start {_money(cap)}, realized "
                     f"{acct['realized_pnl']:+,.2f}, fees {acct['fees_paid']:,.2f}")
    return "\n".join(lines)


def profit_text(store: Store, args: tuple[str, ...] = ()) -> str:
    days = _int_arg(args, 0, 0, 3650)
    lines = [f"Profit ({f'last {days} day(s)' if days else 'all time'})"]
    for a in _agents(store):
        clock = _clock(store, a)
        since = None
        if days and clock is not None:
            since = _midnight(clock.date() - timedelta(days=days - 1))
        n, pnl, wins = store.trade_stats(a, since)
        wr = f"{wins / n:.0%}" if n else "n/a"
        best = store.trades(a, since=since, limit=1000)
        avg = sum(t["return_pct"] for t in best) / len(best) if best else 0.0
        lines.append(f"{a}: {pnl:+,.2f} on {n} closed trades, win rate {wr}, mean return {avg:+.2%}")
    return "\n".join(lines)


def _day_lines(store: Store, agent: str, days: list[tuple[date, date]], label: str) -> list[str]:
    out = []
    for start, end in days:
        s, e = _midnight(start), _midnight(end)
        n, pnl, wins = store.trade_stats(agent, s, e)
        b, f = stats.equity_before(store, agent, s), stats.equity_before(store, agent, e)
        chg = f", equity {f - b:+,.2f}" if b is not None and f is not None else ""
        out.append(f"  {label.format(start)}: {pnl:+,.2f} on {n} trades ({wins} won){chg}")
    return out


def _period_text(store: Store, title: str, n: int, step: timedelta, first: Callable[[date], date],
                 label: str) -> str:
    """P&L of each agent over its last ``n`` periods of length ``step``, the newest starting at ``first(clock's day)``."""
    lines = [title]
    for a in _agents(store):
        clock = _clock(store, a)
        if clock is None:
            lines.append(f"{a}: no cycle yet")
            continue
        d0 = first(clock.date())
        lines.append(f"{a}:")
        lines += _day_lines(store, a, [(d0 - i * step, d0 - (i - 1) * step) for i in range(n)], label)
    return "\n".join(lines)


def daily_text(store: Store, args: tuple[str, ...] = ()) -> str:
    n = _int_arg(args, 7, 1, 60)
    return _period_text(store, f"Daily P&L (last {n} days of each agent's clock, UTC)", n, timedelta(days=1),
                        lambda d: d, "{:%Y-%m-%d}")


def weekly_text(store: Store, args: tuple[str, ...] = ()) -> str:
    n = _int_arg(args, 4, 1, 52)
    return _period_text(store, f"Weekly P&L (last {n} weeks, Monday to Sunday, UTC)", n, timedelta(weeks=1),
                        lambda d: d - timedelta(days=d.weekday()), "week of {:%Y-%m-%d}")


def trades_text(store: Store, args: tuple[str, ...] = ()) -> str:
    n = _int_arg(args, 10, 1, 50)
    rows = store.trades(limit=n)
    if not rows:
        return "Trades: none closed yet"
    lines = [f"Last {len(rows)} closed trades"]
    for t in rows:
        lines.append(f"{t['agent']} {t['side']} {t['symbol']} {t['entry_ts'][:16]} @ {t['entry_price']:.6g} -> "
                     f"{t['exit_ts'][:16]} @ {t['exit_price']:.6g} ({t['exit_reason']}): {t['pnl']:+,.2f} "
                     f"({t['return_pct']:+.2%}); /explain {t['entry_order_id']}")
    return "\n".join(lines)


def performance_text(store: Store) -> str:
    rows = store.performance_by_symbol()
    if not rows:
        return "Performance: no closed trade yet"
    lines = ["Performance per symbol (closed trades)"]
    for r in rows:
        lines.append(f"{r['agent']} {r['symbol']}: {r['pnl']:+,.2f} on {r['trades']} trades, "
                     f"{r['wins']} won, mean {r['avg_return']:+.2%}")
    return "\n".join(lines)


def count_text(store: Store) -> str:
    lines = ["Open positions / entries today"]
    for a in _agents(store):
        clock = _clock(store, a)
        today = 0
        if clock is not None:
            today = store.entries_since(a, _midnight(clock.date()))
        c = store.control_of(a)
        state = " (entries stopped)" if c is not None and c["paused"] else ""
        lines.append(f"{a}: {store.open_position_count(a)} open, {today} entries today{state}")
    return "\n".join(lines)


def health_text(settings: Any) -> str:
    if settings is None:
        return "Health: not available here"
    from tracer.ops.health import health
    checks = health(settings)
    worst = max((c.level for c in checks), default=0)
    marks = {0: "🟢", 1: "🟡", 2: "🔴"}
    return "\n".join([f"Health: {marks[worst]} {('ok', 'warning', 'critical')[worst]}"] +
                     [f"{marks[c.level]} {c.name}: {c.message}" for c in checks])


def explain_text(store: Store, args: tuple[str, ...]) -> str:
    if not args:
        return "usage: /explain ORDER_ID (a client order id, as /trades shows, or a numeric id)"
    trail = store.order_trail(args[0])
    if trail is None:
        return f"no order {args[0]!r}"
    lines = []
    sig = trail["signal"]
    if sig is not None:
        lines.append(f"Signal {sig['id']}: {sig['agent']} {sig['symbol']} at {sig['ts']}, price {sig['price']:.6g}")
        lines.append(f"decision {sig['decision']}: {sig['decision_reason']}")
        lines.append(f"quality {sig['quality'] or 0:.2f}, conviction {sig['conviction'] or 0:.2f}, regime "
                     f"{sig['regime']}, RSI {sig['rsi'] or 0:.1f}, ATR {sig['atr'] or 0:.6g}")
        if sig["gates_json"]:
            gates = json.loads(sig["gates_json"])
            lines.append("gates: " + ", ".join(f"{k}={v}" for k, v in gates.items())[:600])
        for ev in trail["risk_events"]:
            lines.append(f"risk block {ev['rule']}: {ev['detail_json'][:200]}")
    for part in trail["orders"]:
        o = part["order"]
        lines.append(f"Order {o['client_order_id']}: {o['purpose']} {o['side']} {o['qty']:.8g} {o['symbol']}, "
                     f"{o['state']}, reason {o['reason'][:160]}")
        for f in part["fills"]:
            lines.append(f"  fill {f['qty']:.8g} @ {f['price']:.8g}, fee {f['fee']:.4f} at {f['ts']}")
        for t in part["trades"]:
            lines.append(f"  trade closed {t['exit_ts']} @ {t['exit_price']:.8g} ({t['exit_reason']}): "
                         f"{t['pnl']:+,.2f} ({t['return_pct']:+.2%})")
    return "\n".join(lines)


def version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        v = version("tracer-bullet")
    except PackageNotFoundError:
        from tracer import __version__ as v
    return f"Tracer Bullet {v}, DB schema {SCHEMA_VERSION}{code_version_suffix()}"


def code_version_suffix() -> str:
    import subprocess
    from pathlib import Path
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parents[2],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return f", commit {out.stdout.strip()}" if out.returncode == 0 and out.stdout.strip() else ""


def requests_text(store: Store, limit: int = 5) -> str:
    rows = store.control_requests(limit=limit)
    if not rows:
        return ""
    return "\n".join(["Last operator requests:"] + [
        f"  #{r['id']} {r['agent']} {r['kind']}{' ' + r['target'] if r['target'] else ''} by {r['actor']}: "
        f"{r['status']}{' - ' + r['result'] if r['result'] else ''}" for r in rows])
