"""Human-readable notification texts built from a cycle's events (pure)."""
from __future__ import annotations

from typing import Any, Sequence


def cycle_messages(report: Any, decisions: Sequence[tuple[Any, Any]]) -> list[tuple[str, str]]:
    """(kind, text) for the fills, closed trades, entries and risk stops of one cycle."""
    out = []
    for f in report.fills:
        out.append(("fill", f"🟢 {f.side.value.upper()} {f.qty:.6g} {f.symbol} @ {f.price:.6g} "
                            f"(fee {f.fee:.2f}) [{f.client_order_id}]"))
    for t in report.trades:
        icon = "✅" if t.pnl > 0 else ("💥" if t.exit_reason == "liquidation" else "🔻")
        lev = f" {t.leverage:g}x" if t.leverage != 1 else ""
        out.append(("trade_closed", f"{icon} closed {t.side.value}{lev} {t.symbol}: {t.exit_reason}, "
                                    f"P&L {t.pnl:+.2f} ({t.entry_price:.6g} -> {t.exit_price:.6g})"))
    for sig, d in decisions:
        if d.decision == "enter" and d.intent is not None:
            o = d.intent.order
            icon = "📈" if o.side.value == "buy" else "📉"
            lev = f" {o.leverage:g}x" if o.leverage != 1 else ""
            out.append(("trade_opened", f"{icon} entry {o.side.value}{lev} {o.qty:.6g} {sig.symbol} "
                                        f"~{sig.price:.6g}: quality {sig.quality:.1f}, conviction "
                                        f"{sig.conviction:.1f}, regime {sig.regime.label}, size "
                                        f"{sig.size_fraction:.0%} of max"))
        elif d.decision == "blocked" and d.risk_rule in ("daily_loss_limit",):
            out.append(("risk_block", f"⛔ {sig.symbol}: {d.reason}"))
    return out
