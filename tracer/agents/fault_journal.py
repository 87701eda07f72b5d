"""The orders an agent sends while its DB cannot take writes (a storage fault), journaled first.

A venue agent keeps managing exits during a storage fault (:meth:`tracer.agents.loop.AgentLoop._exits_during_fault`):
reduce-only exits and protective stops go to the venue although the DB cannot record them. Each one is
appended here, flushed and fsynced, *before* it is sent; no journal line, no order. At the next start or
recovery the lines are written to the ``orders`` table (state ``new``: reconciliation asks the venue by client
order id and books what it did) with a ``venue_events`` row saying when and why, then the file is removed.
Importing twice is harmless: an order id already in the DB is never inserted again.

File: ``TB_STATE_DIR/fault_orders_<agent>.jsonl``, user-only; one JSON object per line with the
``orders`` columns :func:`tracer.db.row_to_order` reads.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tracer.db import Store, iso, parse_iso, row_to_order, utcnow
from tracer.logs import private_open
from tracer.models import Order

__all__ = ["journal_path", "append", "pending", "import_into"]


def journal_path(state_dir: str | Path, agent: str) -> Path:
    return Path(state_dir) / f"fault_orders_{agent}.jsonl"


def append(path: Path, order: Order, venue: str, fault: dict[str, Any] | None) -> None:
    """One order, durably (flush + fsync) before it may be sent. Raises OSError when it cannot be written
    (the disk may be what is full): the caller then does not send it."""
    row = {"client_order_id": order.client_order_id, "agent": order.agent, "symbol": order.symbol,
           "side": order.side.value, "qty": order.qty, "type": order.type.value, "reduce_only": order.reduce_only,
           "leverage": order.leverage, "purpose": order.purpose, "reason": order.reason, "venue": venue,
           "price_est": order.stop_price, "created_at": iso(order.created_at or utcnow()),
           "journaled_at": iso(utcnow()), "fault_since": (fault or {}).get("since"),
           "fault_error": (fault or {}).get("error")}
    path.parent.mkdir(parents=True, exist_ok=True)
    with private_open(path, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def pending(path: Path) -> list[dict[str, Any]]:
    """The journal's complete lines (a line cut short by a crash while it was written is ignored: its order
    was never sent, the append had not returned)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("client_order_id"):
            out.append(row)
    return out


def import_into(store: Store, path: Path, agent: str) -> list[str]:
    """Write the journal's orders to the DB (in one transaction) and remove the file; returns their ids.
    Raises the storage error when the DB still cannot take them (the file is kept)."""
    rows = [r for r in pending(path) if r.get("agent") == agent]
    if not rows:
        path.unlink(missing_ok=True)
        return []
    done = []
    with store.transaction():
        for r in rows:
            order = row_to_order(r)     # type: ignore[arg-type]  (the same keys as an orders row)
            if store.insert_order(order, run_id=None, signal_id=None, price_est=r.get("price_est")) is not None:
                if r.get("venue"):
                    store.set_order_venue(order.client_order_id, str(r["venue"]), None)
                store.insert_venue_event(agent, str(r.get("venue") or ""), "sent_during_storage_fault", symbol=order.symbol,
                                         client_order_id=order.client_order_id,
                                         detail={"journaled_at": r.get("journaled_at"),
                                                 "fault_since": r.get("fault_since"),
                                                 "fault_error": r.get("fault_error"), "reason": order.reason},
                                         ts=parse_iso(r["journaled_at"]) if r.get("journaled_at") else utcnow())
                done.append(order.client_order_id)
    path.unlink(missing_ok=True)
    return done
