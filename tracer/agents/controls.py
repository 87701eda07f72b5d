"""Operator requests the agent carries out at a cycle boundary (``control_requests``, written by the Telegram
listener and the web cockpit through :mod:`tracer.notify.controls`).

- ``force_exit`` (a symbol or ``all``): in the cycle after the request, each open position it names gets the
  policy's own kind of exit (a reduce-only market order on the opposite side, the position's deterministic exit
  id, reason ``force_exit``), in place of that symbol's decision. It goes through the normal exit path (written
  with the cycle, submitted, filled by the broker, a trade with ``exit_reason`` ``force_exit``); the exit id is
  the one any other exit of that position would use, so a request seen twice (a crash before it was marked
  done) never becomes two orders. A symbol held but not evaluated this cycle (bad data) waits for the next.
  Scope: the positions held when the agent first sees the request (the ones the operator's confirmation listed),
  pinned by entry order id in ``notify_state`` (``force_exit:<request id>``) before any exit it causes is written,
  so a restart keeps them. A pinned position no longer held (closed by its exit or otherwise) counts as done; a
  position opened after the request was first seen (a new entry while another pinned symbol waits) is never
  force-exited by it. The request is done, with a result text, once no pinned position waits.
- ``reload``: before the cycle, the configuration is read again (``.env``, the environment, the promoted
  parameters); a configuration that does not validate, or one that changes what only a restart may change
  (symbols, feed, venues, files), is refused and the running one kept. The outcome is written on the request.
"""
from __future__ import annotations

import json
import logging
from dataclasses import fields
from datetime import datetime
from typing import Any, Callable, Sequence

from tracer.agents.protocols import Decision, Intent
from tracer.execution.broker import exit_order_id
from tracer.logs import kv
from tracer.models import Order, Position, PositionSide, Side, Signal
from tracer.store import Store

FORCE_EXIT_REASON = "force_exit"

# what a running agent cannot change without a restart
RESTART_ONLY = ("profile", "db_path", "log_dir", "state_dir", "feed", "data_dir", "headlines_path", "symbols",
                "futures_symbols", "replay_start", "replay_end", "venue_hybrid", "venue_futures", "futures_backup_venue",
                "live_trading", "bar_sources", "news_sources", "sentiment_scorer", "finbert_model",
                "hybrid_capital", "futures_capital", "lookback_bars",
                "fee_bps", "futures_fee_bps", "slippage_bps")     # the paper brokers keep theirs until a restart


def force_exit_order(agent: str, p: Position, sig: Signal) -> Order:
    side = Side.SELL if p.side is PositionSide.LONG else Side.BUY
    return Order(exit_order_id(p.entry_order_id, p.exit_seq), agent, p.symbol, side, p.qty, reduce_only=True,
                 leverage=p.leverage, purpose="exit", reason=FORCE_EXIT_REASON, created_at=sig.ts)


def pin_key(request_id: int) -> str:
    return f"force_exit:{request_id}"


def _pinned(store: Store, r: Any, positions: dict[str, Position]) -> list[tuple[str, str]]:
    """``(symbol, entry order id)`` of the positions request ``r`` applies to: those written at its first sight,
    else the ones it names now, written (committed) here before the cycle can write any exit they cause, so that
    a crash between the two never re-resolves it against positions opened later."""
    key = pin_key(int(r["id"]))
    raw = store.notify_state(key)
    if raw:
        return [(str(sym), str(eid)) for sym, eid in json.loads(raw)]
    target = (r["target"] or "all").upper()
    pins = [(s, positions[s].entry_order_id) for s in sorted(positions) if target == "ALL" or s.upper() == target]
    with store.transaction():
        store.set_notify_state(key, json.dumps(pins))
    return pins


def apply_force_exits(store: Store, agent: str, decisions: list[tuple[Signal, Decision]],
                      positions: dict[str, Position]) -> tuple[list[tuple[Signal, Decision]], list[tuple[int, str, str]]]:
    """The cycle's decisions with the requested forced exits in place, and the requests settled by them:
    ``(request id, status, result)`` to write once the cycle is committed."""
    reqs = store.pending_requests(agent, "force_exit")
    if not reqs:
        return decisions, []
    by_sym = {sig.symbol: i for i, (sig, _) in enumerate(decisions)}
    out = list(decisions)
    settled: list[tuple[int, str, str]] = []
    for r in reqs:
        pins = _pinned(store, r, positions)
        if not pins:
            settled.append((int(r["id"]), "done", f"no open {agent} position in {r['target']}"))
            continue
        waiting, sent, gone = [], [], []
        for sym, entry in pins:
            p = positions.get(sym)
            if p is None or p.entry_order_id != entry:
                # closed since (by this request's exit or any other); a newer position of the symbol is not pinned
                gone.append(sym)
                continue
            i = by_sym.get(sym)
            if i is None:
                waiting.append(sym)
                continue
            sig, d = out[i]
            if d.decision == "exit" and d.intent is not None:
                sent.append(f"{sym} (already exiting: {d.reason[:60]})")
                continue
            order = force_exit_order(agent, p, sig)
            out[i] = (sig, Decision("exit", f"forced exit requested by {r['actor']} (request {r['id']}); was: "
                                            f"{d.decision}: {d.reason}"[:480], Intent(order, sym, sig.price)))
            sent.append(f"{sym} ({order.client_order_id})")
        if not waiting:
            parts = (["exit sent: " + ", ".join(sent)] if sent else []) + \
                    (["no longer held: " + ", ".join(gone)] if gone else [])
            settled.append((int(r["id"]), "done", "; ".join(parts)))
    return out, settled


def finish(store: Store, settled: Sequence[tuple[int, str, str]], clock: datetime | None) -> None:
    if settled:
        with store.transaction():
            for rid, status, result in settled:
                store.finish_request(rid, status, result, clock)


def changed_settings(old: Any, new: Any) -> list[str]:
    """The TB_ names whose value differs between two Settings."""
    return [f.metadata["env"] for f in fields(old) if getattr(old, f.name) != getattr(new, f.name)]


def apply_reload(loop: Any, now: datetime, source: Callable[[], Any] | None, log: logging.Logger) -> None:
    """Carry out the pending ``reload`` requests of ``loop``'s agent before its cycle at ``now``."""
    store: Store = loop.store
    reqs = store.pending_requests(loop.agent, "reload")
    if not reqs:
        return
    if source is None:
        status, result = "failed", "this agent process cannot read its configuration again: restart it"
    else:
        try:
            new = source()
        except Exception as e:       # ConfigError (listing every problem), an unreadable promoted parameter file
            new, status, result = None, "failed", f"configuration refused, the running one kept: {e}"[:1000]
        if new is not None:
            changed = changed_settings(loop.s, new)
            restart = [n for n in changed if n in {f.metadata["env"] for f in fields(new) if f.name in RESTART_ONLY}]
            if restart:
                status, result = "failed", f"needs a restart (the running configuration kept): {', '.join(restart)}"
            else:
                loop.reconfigure(new)
                status, result = "done", ("reloaded: " + ", ".join(changed)) if changed else "reloaded: no change"
    log.info(kv("reload", status=status, result=result[:300]))
    finish(store, [(int(r["id"]), status, result) for r in reqs], now)
