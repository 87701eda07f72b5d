"""``tracer explain``: the whole decision trail of an order or a signal, printed as tables (the same data as the
cockpit's trade page and Telegram's /explain: :meth:`tracer.store.Store.order_trail`)."""
from __future__ import annotations

import json
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tracer.store import Store


def _kv_table(title: str, rows: Sequence[tuple[str, Any]]) -> Table:
    t = Table(title=escape(title), show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for k, v in rows:
        if isinstance(v, float):
            v = f"{v:.6g}"
        # stored text is shown as it is: a headline's "[video]" or "[/]" is not markup (it vanished or crashed)
        t.add_row(escape(k), "" if v is None else escape(str(v)))
    return t


def explain(store: Store, console: Console, order_id: str | None = None, signal_id: int | None = None) -> int:
    """Print the whole decision trail of an order (client order id or numeric id) or a signal
    (:meth:`Store.order_trail`, the same data the web cockpit and /explain show)."""
    trail = store.order_trail(order_id, signal_id)
    if trail is None:
        console.print(f"no order {order_id!r}" if order_id is not None else f"no signal {signal_id!r}", markup=False)
        return 1
    sig, run = trail["signal"], trail["run"]

    def say(text: str) -> None:   # stored text (venue messages, ids) printed as it is, never read as markup
        console.print(text, markup=False)
    if sig is not None:
        console.print(_kv_table(f"Signal {sig['id']} — {sig['agent']} {sig['symbol']} at {sig['ts']}", [
            ("cycle", f"{run['cycle']} (clock {run['clock']})"), ("price", sig["price"]),
            ("action", sig["action"]), ("evaluation", sig["reason"]),
            ("decision", f"{sig['decision']}: {sig['decision_reason']}"),
            ("signal quality", sig["quality"]), ("conviction", sig["conviction"]),
            ("regime", f"{sig['regime']} (confidence {sig['regime_confidence'] or 0:.2f}, trend "
                       f"{sig['trend_score'] or 0:+.3f}), volatility {sig['volatility']} "
                       f"({(sig['annual_vol'] or 0):.0%}/yr), volume {sig['volume_regime']}"),
            ("price score", sig["price_score"]), ("narrative", sig["narrative"]),
            ("divergence", f"{_fmt(sig['divergence'], '+.3f')} (trigger {_fmt(sig['divergence_trigger'], '.3f')})"),
            ("volume z", sig["volume_z"]), ("RSI", sig["rsi"]), ("ATR", sig["atr"]),
            ("size fraction", sig["size_fraction"]), ("headlines", sig["headline_count"]),
            ("sentiment scorer", sig["scorer_id"] or "(no relevant headline)"),
            ("gates", sig["gates_json"]),
        ]))
        if sig["inputs_json"]:
            inputs = json.loads(sig["inputs_json"])
            heads = inputs.pop("headlines", [])
            console.print(_kv_table("Inputs", [(k, json.dumps(v) if isinstance(v, (dict, list)) else v)
                                               for k, v in inputs.items()]))
            if heads:
                t = Table(title="Relevant headlines (latest 10)", title_justify="left")
                for col in ("published", "score", "title"):
                    t.add_column(col)
                for h in heads:
                    t.add_row(escape(str(h["at"])), f"{h['score']:+.3f}", escape(str(h["title"])))
                console.print(t)
        for ev in trail["risk_events"]:
            console.print(_kv_table(f"Risk block: {ev['rule']}", [("detail", ev["detail_json"])]))
    for part in trail["orders"]:
        o = part["order"]
        console.print(_kv_table(f"Order {o['client_order_id']}", [
            ("purpose", o["purpose"]), ("side", o["side"]), ("type", o["type"]), ("qty", o["qty"]),
            ("est. price", o["price_est"]), ("est. notional", o["notional_est"]), ("leverage", o["leverage"]),
            ("state", f"{o['state']}" + (f" ({o['state_reason']})" if o["state_reason"] else "")),
            ("reason", o["reason"]), ("bracket", o["bracket_json"]), ("sizing", o["sizing_json"]),
            ("exploration", _exploration_label(o["sizing_json"])),
            ("venue", (o["venue"] or "paper") + (f" (venue order id {o['venue_order_id']})" if o["venue_order_id"] else "")),
            ("created", o["created_at"]), ("updated", o["updated_at"])]))
        for ev in part["venue_events"]:
            say(f"  venue event {ev['ts']}: {ev['venue']} {ev['kind']} {ev['detail_json']}")
        for f in part["fills"]:
            say(f"  fill: {f['side']} {f['qty']:.8g} @ {f['price']:.8g} fee {f['fee']:.4f} at {f['ts']}")
        pos = part["position"]
        if pos is not None:
            say(f"  position: {pos['status']} {pos['side']} {pos['qty']:.8g} entry {pos['entry_price']:.8g} "
                          f"stop {pos['stop_loss']:.8g} target {pos['take_profit']:.8g} trail {pos['trail_pct']:.2%}")
            if pos["agent"] == "futures" or pos["leverage"] != 1:
                liq = pos["liquidation_price"]
                say(f"  futures: side {pos['side']}, leverage {pos['leverage']:g}x, isolated margin "
                              f"{pos['margin']:.2f}, liquidation price {liq if liq is None else f'{liq:.8g}'}, "
                              f"funding paid {pos['funding_paid']:+.4f}, entry ATR {pos['entry_atr']:.6g}")
        fr = part["funding"]
        if fr[0]:
            say(f"  funding (venue income history): {fr[0]} payment(s), paid {fr[1]:+.4f}, "
                          f"{fr[2]} .. {fr[3]} (venue clock)")
        for tr in part["trades"]:
            say(f"  trade: {tr['side']} {tr['symbol']} {tr['qty']:.8g} {tr['entry_ts']} @ "
                          f"{tr['entry_price']:.8g} -> "
                          f"{tr['exit_ts']} @ {tr['exit_price']:.8g}, exit {tr['exit_reason']}, fees {tr['fees']:.2f}, "
                          f"funding {tr['funding']:.2f}, P&L {tr['pnl']:+.2f} ({tr['return_pct']:+.2%}); "
                          f"exit order {tr['exit_order_id']}")
    return 0


def _fmt(x: float | None, spec: str) -> str:
    return "" if x is None else format(x, spec)


def _exploration_label(sizing_json: str | None) -> str:
    """Whether the order is an exploration entry (tracer/optimize/exploration.py), and why."""
    from tracer.optimize.exploration import label
    try:
        return label(json.loads(sizing_json).get("exploration") if sizing_json else None)
    except (ValueError, AttributeError, KeyError, TypeError):
        return "no"
