"""Human-readable notification texts (pure): every function maps data to ``(kind, text)`` or text.

Kinds: ``fill``, ``trade_opened``, ``trade_closed``, ``risk_block``, ``kill_switch`` (the daily loss
stop), ``heartbeat``, ``daily_summary``, ``agent_error``, ``agent_restarted`` (sent by the watchdog),
``command_reply``. Texts are plain: no Markdown or HTML is relied on (Discord escapes, Telegram sends
plain text), and no text here ever includes a setting's value.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

# Risk rules worth a message when they block an entry the strategy wanted (the others are routine:
# a position already open, a cooldown, a pause, an order below the minimum notional ...).
NOTABLE_RULES = ("max_trades_per_day", "max_positions", "correlation", "portfolio_var", "liquidation_guard")
KILL_SWITCH_RULES = ("daily_loss_limit",)


def _lev(x: float) -> str:
    return f" {x:g}x" if x != 1 else ""


def cycle_messages(report: Any, decisions: Sequence[tuple[Any, Any]]) -> list[tuple[str, str]]:
    """(kind, text) for the fills, closed trades, entries and risk stops of one cycle.

    At most one ``risk_block`` (the blocked symbols collapsed) and one ``kill_switch`` per cycle;
    the kill switch text's first line is the same all day, so the outbox keeps one per day."""
    out = []
    for f in report.fills:
        out.append(("fill", f"🟢 {f.side.value.upper()} {f.qty:.6g} {f.symbol} @ {f.price:.6g} "
                            f"(fee {f.fee:.2f}) [{f.client_order_id}]"))
    for t in report.trades:
        icon = "✅" if t.pnl > 0 else ("💥" if t.exit_reason == "liquidation" else "🔻")
        ret = f", {t.return_pct:+.2%}" if t.entry_price * t.qty else ""
        out.append(("trade_closed", f"{icon} closed {t.side.value}{_lev(t.leverage)} {t.qty:.6g} {t.symbol}: "
                                    f"{t.exit_reason}, P&L {t.pnl:+.2f}{ret} "
                                    f"({t.entry_price:.6g} -> {t.exit_price:.6g})"))
    blocked: list[str] = []
    kill = None
    for sig, d in decisions:
        if d.decision == "enter" and d.intent is not None:
            o = d.intent.order
            icon = "📈" if o.side.value == "buy" else "📉"
            out.append(("trade_opened", f"{icon} entry {o.side.value}{_lev(o.leverage)} {o.qty:.6g} {sig.symbol} "
                                        f"~{sig.price:.6g}: quality {sig.quality:.1f}, conviction "
                                        f"{sig.conviction:.1f}, regime {sig.regime.label}, size "
                                        f"{sig.size_fraction:.0%} of max"))
        elif d.decision == "blocked" and d.risk_rule in KILL_SWITCH_RULES and kill is None:
            det = d.risk_detail or {}
            day = sig.ts.strftime("%Y-%m-%d")
            loss = det.get("day_return")
            lim = det.get("limit")
            nums = (f"day return {loss:+.2%}, limit {lim:+.2%}" if isinstance(loss, (int, float))
                    and isinstance(lim, (int, float)) else d.reason)
            kill = ("kill_switch", f"🛑 daily loss stop {day}: no new entries until the next UTC day\n{nums}")
        elif d.decision == "blocked" and d.risk_rule in NOTABLE_RULES:
            blocked.append(f"{sig.symbol} ({d.risk_rule})")
    if kill is not None:
        out.append(kill)
    if blocked:
        out.append(("risk_block", "⛔ risk blocked " + ("an entry: " if len(blocked) == 1 else
                                                        f"{len(blocked)} entries: ") + ", ".join(blocked)))
    return out


def heartbeat_text(cycle: int, clock: datetime | None, equity: float, open_positions: int, paused: bool) -> str:
    at = clock.strftime("%Y-%m-%d %H:%M UTC") if clock else "?"
    return (f"💓 alive: cycle {cycle}, clock {at}, equity {equity:,.2f}, open positions {open_positions}"
            + (", PAUSED (no new entries)" if paused else ""))


def daily_summary_text(st: Any) -> str:
    """``st``: a :class:`tracer.notify.stats.DayStats`."""
    wr = f"{st.win_rate:.0%}" if st.win_rate is not None else "n/a"
    lines = [f"📊 daily summary {st.day.isoformat()}",
             f"closed trades {st.trades}, wins {st.wins}, win rate {wr}",
             f"realized P&L {st.pnl:+,.2f}"]
    if st.equity_change is not None:
        pct = st.equity_change / st.start_equity if st.start_equity else 0.0
        lines.append(f"equity {st.start_equity:,.2f} -> {st.end_equity:,.2f} ({st.equity_change:+,.2f}, {pct:+.2%})")
    return "\n".join(lines)


def agent_error_text(error_type: str, message: str) -> str:
    return f"🚨 agent error: {error_type}: {message}"[:1500] + "\nthe watchdog restarts the agent; state is in the DB"


def agent_restarted_text(reason: str, restarts_last_hour: int | None = None) -> str:
    """For the watchdog (``tracer alert``): an agent was found down and restarted."""
    extra = f" ({restarts_last_hour} restarts in the last hour)" if restarts_last_hour is not None else ""
    return f"🔄 agent restarted by the watchdog: {reason}{extra}"
