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
  force-exited by it. The request stays pending while a pinned position is held: settled after the cycle's
  submit (and a venue's settle) by :func:`settle_force_exits`, it is done once no pinned position is held, and an
  exit the venue refused (Binance -4131 on a market order in a thin book) is retried at the next cycle under the
  position's next exit id; after ``FORCE_EXIT_MAX_REFUSALS`` refused exits the request fails, with an alert.
- ``reload``: before the cycle, the configuration is read again (``.env``, the environment, the promoted
  parameters); a configuration that does not validate, or one that changes what only a restart may change
  (symbols, feed, venues, their keys, URLs and TB_VENUE_* settings, what the brokers were built with, files), is
  refused and the running one kept: the operator is told a restart is needed. The outcome is written on the request.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import fields
from datetime import datetime
from typing import Any, Callable, Sequence

from tracer.agents.protocols import Decision, Intent
from tracer.execution.broker import exit_order_id
from tracer.logs import kv
from tracer.models import Order, OrderState, Position, PositionSide, Side, Signal
from tracer.notify.outbox import enqueue
from tracer.store import Store

FORCE_EXIT_REASON = "force_exit"
# a forced exit is tried once a cycle (a bar): a refusal of a moment (a thin book, -4131) clears within a bar or
# two; one that lasts three bars (a filter, a symbol in settlement) will not clear by sending again, and the
# operator, told, closes the position on the venue
FORCE_EXIT_MAX_REFUSALS = 3

# what a running agent cannot change without a restart
RESTART_ONLY = ("profile", "db_path", "log_dir", "state_dir", "feed", "data_dir", "headlines_path", "symbols",
                "futures_symbols", "replay_start", "replay_end", "venue_hybrid", "venue_futures", "futures_backup_venue",
                "live_trading", "bar_sources", "news_sources", "sentiment_scorer", "finbert_model",
                "hybrid_capital", "futures_capital", "lookback_bars",
                # the paper brokers keep theirs until a restart
                "fee_bps", "futures_fee_bps", "slippage_bps", "futures_mmr", "futures_funding_rate",
                "futures_max_leverage", "futures_liq_guard", "futures_vol_stop_mult",
                # the venue broker and its clients are built with these (tracer.execution.venue_factory): a key
                # rotated in .env is used only by a new process
                "alpaca_api_key", "alpaca_secret_key", "binance_api_key", "binance_api_secret", "bybit_api_key",
                "bybit_api_secret", "alpaca_trading_url", "binance_futures_url", "bybit_url", "venue_timeout_s",
                "venue_recv_window_ms", "venue_max_retries", "venue_backoff_s", "venue_max_wait_s",
                "venue_exit_max_wait_s", "venue_unconfirmed_grace_s")


def force_exit_order(agent: str, p: Position, sig: Signal) -> Order:
    side = Side.SELL if p.side is PositionSide.LONG else Side.BUY
    return Order(exit_order_id(p.entry_order_id, p.exit_seq), agent, p.symbol, side, p.qty, reduce_only=True,
                 leverage=p.leverage, purpose="exit", reason=FORCE_EXIT_REASON, created_at=sig.ts)


def pin_key(request_id: int) -> str:
    return f"force_exit:{request_id}"


def exits_key(request_id: int) -> str:
    """The client order ids of the exits a request caused (written before the cycle writes them)."""
    return f"force_exit:{request_id}:exits"


def _exits(store: Store, request_id: int) -> list[sqlite3.Row]:
    """The rows of the exits request ``request_id`` caused (an id listed but never written is left out)."""
    cids = json.loads(store.notify_state(exits_key(request_id)) or "[]")
    return [row for cid in cids if (row := store.order(cid)) is not None]


def _refused(row: sqlite3.Row) -> bool:
    """An exit that ended without a fill: refused, or canceled / expired by the venue."""
    return row["state"] in (OrderState.REJECTED.value, OrderState.CANCELED.value) and not row["filled_qty"]


def _held(pins: Sequence[tuple[str, str]], positions: dict[str, Position]) -> list[str]:
    return [sym for sym, entry in pins if sym in positions and positions[sym].entry_order_id == entry]


def _done_result(store: Store, request_id: int, pins: Sequence[tuple[str, str]]) -> str:
    filled: dict[str, list[str]] = {}
    for row in _exits(store, request_id):
        if row["filled_qty"]:
            filled.setdefault(row["symbol"], []).append(row["client_order_id"])
    sent = [f"{sym} ({', '.join(filled[sym])})" for sym, _ in pins if sym in filled]
    gone = [sym for sym, _ in pins if sym not in filled]
    return "; ".join((["exit sent: " + ", ".join(sent)] if sent else []) +
                     (["no longer held: " + ", ".join(gone)] if gone else []))


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
    """The cycle's decisions with the requested forced exits in place, and the requests settled already (nothing
    to pin): ``(request id, status, result)`` to write once the cycle is committed. The others are settled by
    :func:`settle_force_exits` once the cycle's exits were submitted and its fills written."""
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
        new_exits = []
        for sym, entry in pins:
            p = positions.get(sym)
            i = by_sym.get(sym)
            if p is None or p.entry_order_id != entry or i is None:
                continue                # closed, or not evaluated this cycle (bad data): waits for the next
            sig, d = out[i]
            if d.decision == "exit" and d.intent is not None:
                continue                # already exiting on the policy's own decision
            order = force_exit_order(agent, p, sig)
            out[i] = (sig, Decision("exit", f"forced exit requested by {r['actor']} (request {r['id']}); was: "
                                            f"{d.decision}: {d.reason}"[:480], Intent(order, sym, sig.price)))
            new_exits.append(order.client_order_id)
        known = json.loads(store.notify_state(exits_key(int(r["id"]))) or "[]")
        if any(cid not in known for cid in new_exits):
            # recorded before the cycle writes them: a crash in between leaves an id without a row, ignored
            with store.transaction():
                store.set_notify_state(exits_key(int(r["id"])), json.dumps(known + [c for c in new_exits
                                                                                      if c not in known]))
    return out, settled


def settle_force_exits(store: Store, settings: Any, agent: str, positions: dict[str, Position],
                       clock: datetime | None) -> None:
    """After the cycle's exits were submitted (and settled on a venue): a request whose pinned positions are no
    longer held is done; one whose exits were refused ``FORCE_EXIT_MAX_REFUSALS`` times fails, with an alert;
    any other stays pending, and the next cycle sends the position's next exit id."""
    for r in store.pending_requests(agent, "force_exit"):
        rid = int(r["id"])
        raw = store.notify_state(pin_key(rid))
        if not raw:
            continue                    # not seen by a cycle yet
        pins = [(str(sym), str(eid)) for sym, eid in json.loads(raw)]
        held = _held(pins, positions)
        if not held:
            # every pinned position closed since (by this request's exit or any other); a newer one is not pinned
            finish(store, [(rid, "done", _done_result(store, rid, pins))], clock)
            continue
        refused = [row for row in _exits(store, rid) if _refused(row)]
        if len(refused) < FORCE_EXIT_MAX_REFUSALS:
            continue
        last = refused[-1]
        result = (f"failed: {len(refused)} exits refused, still held: {', '.join(held)}; last: "
                  f"{last['client_order_id']}: {last['state_reason'] or last['state']}")[:1000]
        with store.transaction():
            store.finish_request(rid, "failed", result, clock)
            enqueue(store, settings, "venue_alert", f"🛑 {agent} agent: forced exit {result[:800]} -- close the "
                    f"position on the venue", agent)


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
