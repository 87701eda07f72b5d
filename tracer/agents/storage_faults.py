"""Storage faults of the agent cycle (the DB locked past the busy timeout, read-only, full, an I/O error): the
cycle's transaction rolls back and nothing of it is sent; the fault is logged, alerted and written to
``storage_fault_<agent>.json``; a venue agent keeps managing its exits, journaled durably before each send;
recovery goes through the start-up path once the DB takes writes again."""
from __future__ import annotations

import copy
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracer.agents import fault_journal
from tracer.config import Settings
from tracer.store import Store, is_storage_fault, iso, parse_iso, row_to_order, utcnow
from tracer.execution.broker import Bracket
from tracer.logs import kv
from tracer.models import Order, OrderState
from tracer.notify.outbox import alert_or_log

if TYPE_CHECKING:
    from tracer.agents.protocols import Policy, TradingBroker
    from tracer.data.feed import Feed


@dataclass(slots=True)
class StorageFault:
    """A storage fault while it lasts (the DB cannot take the cycle): written to ``storage_fault_<agent>.json``
    for the health check, noted in the first cycle that commits again."""
    since: str                       # when it started (UTC, ISO)
    clock: str | None                # the clock of the first cycle not committed (None: the agent's start)
    cycle: int
    error: str
    attempts: int = 0
    last: str | None = None          # the last failed attempt
    journaled: list[str] = field(default_factory=list)   # venue: orders sent (maybe) during the fault
    bars_seen: str | None = None     # venue: the bars its exit checks looked at, up to this clock


class StorageFaultHandling:
    """Mixin of :class:`tracer.agents.loop.AgentLoop`: what the agent does while its DB cannot take a cycle."""
    agent: str
    s: Settings
    feed: "Feed"
    broker: "TradingBroker"
    store: Store
    policy: "Policy"
    log: logging.Logger
    stop_event: threading.Event
    venue: bool
    storage_fault: StorageFault | None
    storage_backoff_s: float
    storage_backoff_max_s: float
    cycle_no: int
    clock: datetime | None
    processed_until: datetime | None
    _restores: int
    _broker_template: Any

    def _storage_fault(self, clock: datetime | None, e: BaseException) -> datetime | None:
        """The DB could not take the cycle (locked past the busy timeout, read-only, disk full, I/O error).

        The cycle's transaction was rolled back, so none of its orders exists and none was sent (orders are
        sent only after the commit); a venue agent still sends its due exits (:meth:`_exits_during_fault`).
        Log and alert (outbox, else ``logs/alerts.log``), wait with a doubling
        backoff, then recover through the start-up path: reopen the DB, rebuild the paper broker as built
        and restore it from the DB (it processed bars the DB never got), resume after the last committed
        cycle. Repeats until the DB takes writes again; returns the clock to run (None: stop requested)."""
        while True:
            wait = self._note_fault(clock, e)
            if clock is None and self.venue:
                clock = self._restore_during_fault()
            self._exits_during_fault(clock)
            if self.stop_event.wait(wait):
                return None
            restores = self._restores
            try:
                self.store.reopen()
                # start() below reconciles and may send orders: only once the DB takes writes again
                self.store.probe_write()
                if self._broker_template is not None:
                    self.broker = copy.deepcopy(self._broker_template)
                if isinstance(getattr(self.policy, "last_close", None), dict):   # futures cooldowns, from the DB
                    self.policy.last_close = self.store.last_close_by_symbol(self.agent)  # type: ignore[attr-defined]
                return self.start()
            except Exception as e2:
                if not is_storage_fault(e2):
                    raise
                e = e2
                if self._restores != restores and self.storage_fault is not None and self.processed_until is not None:
                    # a start() that got as far as restoring the broker from the DB put it back at the last
                    # commit: the fault's exit checks go over the bars since then again
                    self.storage_fault.bars_seen = min(self.storage_fault.bars_seen or "~", iso(self.processed_until))

    def _restore_during_fault(self) -> datetime | None:
        """A venue agent that (re)started while the DB cannot take writes (start() refused): the broker as
        the DB has it (reads only; a DB that cannot even be read leaves None, retried next attempt), and
        orders an earlier process journaled in its fault counted as maybe sent (looked up on the venue,
        never sent blind again). The fault's exit checks look at the bars after the last committed clock:
        returns the clock they go to (a live feed: its newest close, looked up at each attempt; a replay:
        the next clock, the one that cannot commit), None when nothing was committed yet (no position)."""
        if getattr(self.s, "state_dir", None) is None:     # no journal: nothing can be sent during the fault
            return None
        try:
            acct, last = self.store.account(self.agent), self.store.last_run(self.agent)
            if acct is None or last is None:
                return None
            self._restore(acct)
            unsent = self.store.orders_in_state(self.agent, OrderState.NEW)
            journaled = [r["client_order_id"] for r in
                         fault_journal.pending(fault_journal.journal_path(self.s.state_dir, self.agent))]
            due = [(row_to_order(r), Bracket(**json.loads(r["bracket_json"])) if r["bracket_json"] else None)
                   for r in unsent if r["reduce_only"]]
            due += self.broker.ensure_protection()
        except Exception as e:
            # a DB that cannot be read, a journal that cannot be read: no exit can be sent safely (one may
            # have been sent already); tried again at the next attempt
            if not (is_storage_fault(e) or isinstance(e, OSError)):
                raise
            self.log.error(kv("fault_restore_failed", error=type(e).__name__, message=str(e)[:200]))
            return None
        fault = self.storage_fault      # set by _note_fault before this runs
        assert fault is not None
        # orders the DB has as new (maybe sent by the process that wrote them) are looked up on the venue
        # before any send, like those journaled; the reduce-only ones and the protective stops the venue
        # should hold and the DB does not know of go out during the fault; entries never do
        fault.journaled = list(dict.fromkeys(journaled + [r["client_order_id"] for r in unsent]))
        fault.bars_seen = last["clock"]
        self.broker.requeue(due)
        self.cycle_no = int(last["cycle"])
        self.clock = self.processed_until = parse_iso(last["clock"])
        self.log.warning(kv("fault_restore", after_clock=last["clock"], open_positions=len(self.broker.positions()),
                            journaled_before=len(journaled), new_in_db=len(unsent),
                            action="exits managed during the fault"))
        if callable(getattr(self.feed, "latest_time", None)):
            return self.processed_until
        return self.feed.next_time(self.processed_until) or self.processed_until  # type: ignore[attr-defined]

    def _exits_during_fault(self, clock: datetime | None) -> None:
        """A venue agent keeps managing its exits while the DB cannot take a cycle, where it can.

        No entry is ever sent. The broker (the venue agent's, kept through the fault) learns from the venue
        what happened (fills, venue stops), sees the bars that closed since (a live feed's newest close;
        a replay stays at the clock that failed), and its due reduce-only orders are sent: agent-side exits
        (stop, target, trailing, time, volatility) and the protective stops of fills it learned of. Each is
        journaled durably first (:mod:`tracer.agents.fault_journal`) and not sent when that fails (the
        disk may be full). Exit ids are deterministic per position, so nothing can be sent twice; at
        recovery the journal goes to the DB and reconciliation books the venue's fills. A paper agent has
        nothing to do here: its bars wait with it (the missed ones are processed when the DB is back)."""
        fault = self.storage_fault
        if not self.venue or clock is None or fault is None or getattr(self.s, "state_dir", None) is None:
            return
        b = self.broker
        try:
            if fault.bars_seen is None:
                fault.bars_seen = iso(clock)                            # the failed cycle saw the bars to it
            seen = parse_iso(fault.bars_seen)
            latest = getattr(self.feed, "latest_time", None)
            t = max(clock, latest()) if callable(latest) else clock
            held = {p.symbol for p in b.positions()}
            if t > seen and held:
                snap = self.feed.snapshot(t)
                snap = replace(snap, bars={s: df for s, df in snap.bars.items() if s in held})
                self._process_bars(snap, t, after=seen)
                # seen up to the earliest last close among the positions: a bar a source did not have yet
                # (or a symbol rejected this time) is looked at again at the next attempt
                lasts = [snap.bars[s].index[-1].to_pydatetime() + self.feed.interval
                         for s in held if s in snap.bars and len(snap.bars[s])]
                if len(lasts) == len(held):
                    fault.bars_seen = iso(max(seen, min(lasts)))
            else:
                b.sync(t)
                if not held:
                    fault.bars_seen = iso(max(t, seen))
            due = b.take_outbox()
        except Exception as e:  # the feed or the venue failing too: try again at the next attempt
            self.log.error(kv("fault_exits_unavailable", error=type(e).__name__, message=str(e)[:200]))
            return
        keep: list = []
        for _ in range(4):      # a stop refused as already through becomes a market exit: sent in this attempt
            for o, br in due:
                if not (o.reduce_only and self._send_during_fault(o, br)):
                    keep.append((o, br))
            due = b.take_outbox()
            if not due:
                break
        keep += due
        if keep:
            b.requeue(keep)

    def _send_during_fault(self, o: Order, br: Bracket | None) -> bool:
        """Journal (once) and send one reduce-only order while the DB cannot record it; False to keep it for
        the next attempt (journal not writable, the venue cannot say or could not be reached)."""
        b = self.broker
        assert self.storage_fault is not None
        journaled = self.storage_fault.journaled          # maybe sent
        cid, venue = o.client_order_id, b.venue_for(o)
        if cid in journaled:
            # sent before, maybe without an answer: ask the venue first, never a blind second POST
            known = b.find(o, br)
            if known is not None:
                return known.state is not OrderState.NEW     # NEW: the venue cannot say now
        else:
            try:
                fault_journal.append(fault_journal.journal_path(self.s.state_dir, self.agent), o, venue,
                                     {"since": self.storage_fault.since, "error": self.storage_fault.error})
            except OSError as e:
                self.log.error(kv("fault_exit_not_sent", client_order_id=cid, symbol=o.symbol, reason=o.reason,
                                  error=type(e).__name__, why="journal not writable"))
                return False
            journaled.append(cid)
        try:
            upd = b.submit(o, br)
        except Exception as e:       # e.g. the DB read in submit: journaled, reconciled later
            self.log.error(kv("fault_exit_not_sent", client_order_id=cid, error=type(e).__name__))
            return False
        self.log.warning(kv("fault_exit_" + upd.state.value, client_order_id=cid, symbol=o.symbol, side=o.side.value,
                            qty=o.qty, purpose=o.purpose, reason=upd.reason or o.reason, venue=venue))
        return upd.state is not OrderState.NEW       # not sent or not confirmed: asked again next attempt

    def _note_fault(self, clock: datetime | None, e: BaseException) -> float:
        """Record one failed attempt (log, state file; alert on the first); returns the wait before the next."""
        f = self.storage_fault
        err = f"{type(e).__name__}: {e}"
        if f is None:
            f = self.storage_fault = StorageFault(since=iso(utcnow()), clock=iso(clock) if clock else None,
                                                  cycle=self.cycle_no, error=err)
        f.attempts += 1
        f.error, f.last = err, iso(utcnow())
        wait = min(self.storage_backoff_max_s, self.storage_backoff_s * 2 ** min(f.attempts - 1, 20))
        self.log.error(kv("storage_fault", error=type(e).__name__, message=str(e), clock=f.clock,
                          attempt=f.attempts, retry_in_s=round(wait, 2),
                          action="no entries until it clears" + ("; exits still sent" if self.venue else "")))
        self._fault_file(f)
        if f.attempts == 1:
            what = f"the cycle at clock {f.clock}" if f.clock else "the agent's start"
            alert_or_log(self.store, self.s, "storage_fault",
                         f"🚨 {self.agent} agent: STORAGE FAULT, the DB cannot take {what} ({err}). "
                         f"No position is opened until it clears"
                         f"{' (due exits are still sent to the venue, journaled)' if self.venue else ''}; "
                         f"retrying with backoff up to "
                         f"{self.storage_backoff_max_s:g} s. Check the disk, the file's permissions and who holds "
                         f"the lock.", self.agent)
        return wait

    def _fault_file(self, f: StorageFault | None) -> None:
        """``TB_STATE_DIR/storage_fault_<agent>.json`` while a fault lasts (the health check reads it: the DB
        itself cannot say). Best effort: the disk may be what is full."""
        d = getattr(self.s, "state_dir", None)
        if d is None:
            return
        p = Path(d) / f"storage_fault_{self.agent}.json"
        try:
            if f is None:
                p.unlink(missing_ok=True)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                from tracer.logs import private_write_text
                private_write_text(p, json.dumps(dict(asdict(f), agent=self.agent, pid=os.getpid()), sort_keys=True))
        except OSError:
            pass
