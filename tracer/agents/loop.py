"""The shared agent cycle. Reads top to bottom like a recipe:

``snapshot -> broker processes the new bars -> evaluate every symbol -> policy decides
(entries through risk, exits) -> persist the whole cycle in one transaction -> submit the
new orders -> notify -> heartbeat``.

The cycle's types are in :mod:`tracer.agents.protocols`, its storage-fault handling in
:mod:`tracer.agents.storage_faults`.

Crash-only: start-up and recovery are the same code path (:meth:`AgentLoop.start`). The
clock resumes after the last committed cycle, the broker is rebuilt from the DB, and
orders the DB has as ``new`` are reconciled with the broker by client order id before
anything else happens, so a kill at any point neither loses nor duplicates an order.
"""
from __future__ import annotations

import copy
import json
import logging
import sqlite3
import threading
import time
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

from tracer.config import Settings
from tracer.data.feed import Feed, Snapshot
from tracer.data.gaps import ongoing_outage_message, ongoing_outages, outage_message, outages
from tracer.data.validation import td_ns, to_ns
from tracer.store import Store, is_storage_fault, iso, parse_iso, row_to_order, utcnow
from tracer.execution.broker import BarReport, Bracket, OrderUpdate
from tracer.agents import fault_journal
from tracer.agents.controls import apply_force_exits, apply_reload, finish, settle_force_exits
from tracer.agents.kernel import Day, InFlight, decide_all, notify_closed, recent_returns, roll_day, step
from tracer.agents.protocols import CycleResult, Decision, Intent, Policy, TradingBroker
from tracer.agents.bar_processing import BarProcessing, cycle_returns
from tracer.agents.storage_faults import StorageFault, StorageFaultHandling
from tracer.artifacts import autocommit, write_run
from tracer.logs import kv
from tracer.notify.messages import cycle_messages
from tracer.notify.outbox import deliver_console, enqueue, enqueue_periodic
from tracer.models import OrderState, RunStatus, ScoredHeadline, Side, Signal
from tracer.sentiment.narrative import relevant_to
from tracer.sentiment.scorer import SentimentScorer
from tracer.signals.evaluate import EvalParams, decide_many, market_context, prepare


class _StopWaiting(Exception):
    """A stop was requested while the loop waited for the feed's next clock."""


def venue_broker(s: Settings, agent: str, store: Store, log: logging.Logger, interval: timedelta):
    """The agent's VenueBroker when it trades on a real venue (None: the paper broker). Venue
    alerts (bans, auth errors, discrepancies) go to the notification outbox."""
    from tracer.execution.venue_factory import make_venue_broker

    def alert(text: str) -> None:
        try:
            with store.transaction():
                enqueue(store, s, "venue_alert", text, agent)
        except Exception as e:   # best effort: the venue event itself is already recorded
            log.error(kv("venue_alert_not_queued", error=type(e).__name__))

    return make_venue_broker(s, agent, store, log, interval, alert)


class AgentLoop(BarProcessing, StorageFaultHandling):
    def __init__(self, agent: str, settings: Settings, feed: Feed, broker: TradingBroker, store: Store,
                 scorer: SentimentScorer, policy: Policy, logger: logging.Logger, initial_capital: float):
        self.agent = agent
        self.s = settings
        self.feed = feed
        self.broker = broker
        self.store = store
        self.scorer = scorer
        self.policy = policy
        self.log = logger
        self.initial_capital = initial_capital
        self.params = EvalParams.from_settings(settings, feed.interval, feed.symbols)
        self.stop_event = threading.Event()
        self.cycle_no = 0
        self.clock: datetime | None = None
        self.processed_until: datetime | None = None
        self._bars_seen: dict[str, int] = {}
        # symbol -> open time (ns) of the newest bar its last evaluation before this start read
        self._evaluated_bar_ns: dict[str, int] = {}
        self.day: str | None = None
        self.day_start_equity: float | None = None
        self.venue = broker.places_own_orders      # a real venue (VenueBroker)
        # storage faults (the DB locked, read-only, full): see run() and _storage_fault()
        self._broker_template = None if self.venue else copy.deepcopy(broker)   # a paper broker as built
        self.storage_fault: StorageFault | None = None
        self._restores = 0                    # broker restores from the DB (a failed recovery: did it get there?)
        self._committed: datetime | None = None   # the clock of the last cycle this process committed
        self.storage_backoff_s = 1.0          # first retry after a storage fault, doubling up to the max
        self.storage_backoff_max_s = 60.0
        self._notes: list[str] = []           # written to the cycle's runs.note (clock gaps, recovered faults)
        # a live feed waiting for the next bar close, or the replay's pause: heartbeat this often (a third of the
        # watchdog's heartbeat limit when that is under 3 minutes, so that a waiting agent never looks hung)
        self.wait_heartbeat_s = min(60.0, max(1.0, settings.watchdog_max_heartbeat_age_min * 20.0))
        self._slept_since_hb = 0.0
        # operator /reload (tracer.agents.controls): how to read the configuration again; None: refused
        self.settings_source: Callable[[], Settings] | None = None
        broker.bind_stop(self.stop_event)

    def reconfigure(self, s: Settings) -> None:
        """Run on ``s`` from the next cycle (an operator reload, validated by tracer.agents.controls)."""
        self.s = s
        self.params = EvalParams.from_settings(s, self.feed.interval, self.feed.symbols)
        reload = getattr(self.policy, "reload", None)
        if callable(reload):
            reload(s)

    # --- start-up == recovery ------------------------------------------------------------
    def start(self) -> datetime | None:
        """Restore state from the DB, reconcile open orders, and return the first clock to run."""
        st = self.store
        if self.venue:
            # a venue agent sends nothing at start (reconciliation, protection) unless the DB can record it:
            # while it cannot, the fault path restores what it can read and manages exits, journaled
            st.probe_write()
        if getattr(self.s, "state_dir", None) is not None:   # orders sent while the DB could not take them
            got = fault_journal.import_into(st, fault_journal.journal_path(self.s.state_dir, self.agent), self.agent,
                                            self.log)
            if got:
                self.log.warning(kv("fault_orders_imported", count=len(got), client_order_ids=",".join(got)))
        acct = st.account(self.agent)
        if acct is None:
            capital = self.initial_capital
            if self.venue:     # on a venue the capital is what its wallets hold at the first start
                capital = self.broker.starting_equity() or capital
            with st.transaction():
                st.save_account(self.agent, initial_capital=capital, cash=capital,
                                realized_pnl=0.0, fees_paid=0.0, day=None, day_start_equity=None)
            acct = st.account(self.agent)
        self._restore(acct)
        # an entry never sent is cancelled when its signal is more than two bars old at this start (a live
        # feed's latest close; a replay resumes at its last committed clock)
        latest = getattr(self.feed, "latest_time", None)
        last = st.last_run(self.agent)
        self.reconcile(latest() if callable(latest) else (parse_iso(last["clock"]) if last is not None else None))
        self._send_broker_orders(self.broker.ensure_protection())

        self.clock = self.processed_until = None
        self._bars_seen = {}          # the broker restored from the DB: bars are new again from processed_until
        self._evaluated_bar_ns = {sym: to_ns(ts - self.feed.interval)
                                  for sym, ts in st.last_evaluated_by_symbol(self.agent).items()}
        self.cycle_no = 0
        if last is not None:
            self.cycle_no = int(last["cycle"])
            self.clock = self.processed_until = parse_iso(last["clock"])
            nxt = self._next_time(self.processed_until)    # a live feed: waits, with heartbeats, stoppable
            self.log.info(kv("resume", after_clock=last["clock"], cycle=self.cycle_no,
                             next_clock=iso(nxt) if nxt else "end-of-data", cash=round(acct["cash"], 2),
                             open_positions=len(self.broker.positions())))
            return nxt
        first = self.feed.first_time(self.s.min_bars)  # type: ignore[attr-defined]
        if self.s.replay_start is not None and self.s.replay_start > first:
            first = self.feed.next_time(self.s.replay_start - timedelta(microseconds=1))  # type: ignore[attr-defined]
        self.log.info(kv("start", first_clock=iso(first) if first else "end-of-data", capital=self.initial_capital,
                         symbols=",".join(self.feed.symbols), profile=self.s.profile,
                         market_filter=self.s.market_filter if self.params.market_bars else "off"))
        return first

    def _restore(self, acct) -> None:
        """The broker as the DB has it: cash, open positions, orders in flight (reads only)."""
        st = self.store
        self._restores += 1
        if self.venue:
            self.initial_capital = float(acct["initial_capital"])
        self.broker.cash = acct["cash"]
        self.day, self.day_start_equity = acct["day"], acct["day_start_equity"]
        pending = []
        for r in st.orders_in_state(self.agent, OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED):
            br = json.loads(r["bracket_json"]) if r["bracket_json"] else None
            pending.append((row_to_order(r), Bracket(**br) if br else None))
        self.broker.restore(st.open_positions(self.agent), pending, acct["realized_pnl"], acct["fees_paid"], {})

    def reconcile(self, now: datetime | None = None) -> None:
        """Orders written as ``new`` but maybe never sent: ask the broker by client order id, adopt its state if it
        knows the order, submit only if it does not. An entry unsent for two bars on a venue (stale), or never sent
        (:meth:`_maybe_sent`) while the agent is paused, is cancelled instead; exits and stops always go."""
        paused = self.store.is_paused(self.agent)
        for r in self.store.orders_in_state(self.agent, OrderState.NEW):
            cid = r["client_order_id"]
            known = self.broker.get(cid)
            br = json.loads(r["bracket_json"]) if r["bracket_json"] else None
            if known is not None and known.state is OrderState.NEW:
                continue                      # the venue cannot say yet: try again next cycle
            unsent_entry = known is None and r["purpose"] == "entry" and not r["reduce_only"]
            stale = (self.venue and unsent_entry and now is not None
                     and parse_iso(r["created_at"]) < now - 2 * self.feed.interval)
            if unsent_entry and paused and not self._maybe_sent(r):
                upd = OrderUpdate(cid, OrderState.CANCELED, "not sent: agent paused")
            elif stale:
                upd = OrderUpdate(cid, OrderState.CANCELED, "stale: not sent within two bars of its signal")
            else:
                upd = known or self.broker.submit(row_to_order(r), Bracket(**br) if br else None)
            with self.store.transaction():
                self.store.set_order_state(cid, upd.state, upd.reason)
            self.log.info(kv("reconcile", client_order_id=cid, found=known is not None, state=upd.state.value))

    # --- one cycle -------------------------------------------------------------------------
    def run_cycle(self, now: datetime) -> CycleResult:
        started = utcnow()
        self._notes = []
        apply_reload(self, now, self.settings_source, self.log)      # an operator /reload, at the cycle boundary
        if self.processed_until is not None and now - self.processed_until > self.feed.interval:
            # the clock jumped (a live feed after a stall, a wall-clock jump, a restart after a while): the
            # broker still sees every bar in between (below); the bars never evaluated are recorded here
            missed = int((now - self.processed_until) / self.feed.interval) - 1
            self._notes.append(f"clock_gap: {missed} bar(s) not evaluated between {iso(self.processed_until)} "
                               f"and {iso(now)}")
            self.log.warning(kv("clock_gap", after=iso(self.processed_until), clock=iso(now),
                                bars_not_evaluated=missed))
        snap = self.feed.snapshot(now)
        # holes the gap policy accepted (tracer.data.gaps), recorded in runs.note (one line per hole)
        by_note: dict[str, list[str]] = {}
        for sym, note in sorted(snap.notes.items()):
            by_note.setdefault(note, []).append(sym)
        self._notes += [f"{note} in {','.join(syms)}" for note, syms in by_note.items()]
        report = self._process_bars(snap, now, midnight=self._midnight_to_roll(now))
        if self._midnight_equity is not None:
            # a new UTC day whose midnight fell inside the bars just processed (a restart after a while, a stall):
            # it starts with the equity at its midnight, so the daily loss limit counts the losses made since
            self._set_day(roll_day(Day(self.day, self.day_start_equity), now, self._midnight_equity), now)
        notify_closed(self.policy, report.trades)

        rel = relevant_to(list(snap.bars), snap.headlines)
        # one batched call for every relevant title of the cycle (a model call has a fixed cost per batch)
        titles = list(dict.fromkeys(h.title for hs in rel.values() for h in hs))
        by_title = dict(zip(titles, self.scorer.score(titles))) if titles else {}
        # the market filter's symbol, read from this cycle's own snapshot (absent when the gap policy refused it:
        # unknown, no new entries); the backtest builds the same numbers (tracer.backtest.runner._market_gaps)
        market = market_context(snap.bars.get(self.s.market_filter), self.params)
        # every symbol prepared, then one score table for all of them (the per-symbol signals are the same)
        prepared = [prepare(sym, bars, [ScoredHeadline(h, by_title[h.title]) for h in rel[sym]], now, self.params,
                            market) for sym, bars in snap.bars.items()]
        signals: list[Signal] = decide_many(prepared, self.params)

        returns = cycle_returns(snap.bars, now, self.feed.interval, self.s.lookback_bars)
        positions = {p.symbol: p for p in self.broker.positions()}
        if any(p.stop_loss <= 0 for p in positions.values()):
            # a position adopted from the venue gets the levels the agent's rules give its symbol now
            by_sym = {sig.symbol: sig for sig in signals}
            self.broker.set_brackets({s: self.policy.protective_bracket(by_sym[s]) if s in by_sym else None
                                      for s, p in positions.items() if p.stop_loss <= 0})
            positions = {p.symbol: p for p in self.broker.positions()}
        # the decision step the backtest runs too (tracer.agents.kernel): day roll, risk book, decisions
        done = step(self.policy, now, Day(self.day, self.day_start_equity), self.broker.equity(),
                    self.broker.balance(), positions, self.broker.last_price, signals, returns,
                    entries_today=lambda day: self.store.entries_since(self.agent, day.start()),
                    closed_returns=lambda: recent_returns(self.store.closed_trade_pnls(self.agent), report.trades),
                    paused=self.store.is_paused(self.agent), in_flight=self._entries_in_flight(positions, now))
        self._set_day(done.day, now)
        decisions, settled = apply_force_exits(self.store, self.agent, done.decisions, positions)   # operator requests

        res = self._persist(now, started, snap, report, decisions)
        finish(self.store, settled, now)
        self._submit([d.intent for _, d in decisions if d.intent is not None])
        if self.venue:
            self._settle(res, now)
        settle_force_exits(self.store, self.s, self.agent, {p.symbol: p for p in self.broker.positions()}, now)
        self._notify(res, report, decisions)
        self.clock = self.processed_until = now
        return res

    def _entries_in_flight(self, positions: dict[str, Any], now: datetime) -> dict[str, InFlight]:
        """Entries not yet positions: the broker's own (current after its sync), and the DB's ``new`` ones, unless
        never sent and older than two bars (:meth:`reconcile` cancels those); one whose POST was unclear counts
        until the venue confirms or cancels it (it may be a position there)."""
        stale = now - 2 * self.feed.interval
        orders = [o for o in self.broker.open_orders() if o.purpose == "entry" and not o.reduce_only]
        orders += [row_to_order(r) for r in self.store.orders_in_state(self.agent, OrderState.NEW)
                   if r["purpose"] == "entry" and not r["reduce_only"]
                   and not (self.venue and parse_iso(r["created_at"]) < stale and not self._maybe_sent(r))]
        out: dict[str, InFlight] = {}
        for o in orders:
            if o.symbol in positions or o.symbol in out:
                continue
            px = self.broker.last_price.get(o.symbol) or 0.0
            notional = o.qty * px * (1 if o.side is Side.BUY else -1)
            out[o.symbol] = InFlight(notional, abs(notional) / max(o.leverage, 1.0))
        return out

    def _maybe_sent(self, row: sqlite3.Row) -> bool:
        """Whether a venue may have a ``new`` order: its POST began (its venue is written before, cleared on a
        refusal before processing) or was unclear (an ``order_unconfirmed`` event)."""
        return bool(row["venue"]) or \
            self.store.last_venue_event_at(row["client_order_id"], "order_unconfirmed") is not None

    def _roll_day(self, now: datetime) -> None:
        """The UTC day at ``now`` (:func:`tracer.agents.kernel.roll_day`: a day already seen never starts again)."""
        self._set_day(roll_day(Day(self.day, self.day_start_equity), now, self.broker.equity()), now)

    def _set_day(self, day: Day, now: datetime) -> None:
        if day.day != self.day:
            self.log.info(kv("day_start", day=day.day, clock=iso(now), day_start_equity=round(day.start_equity or 0.0, 2)))
        self.day, self.day_start_equity = day.day, day.start_equity

    def _persist(self, now: datetime, started: datetime, snap: Snapshot, report: BarReport,
                 decisions: Sequence[tuple[Signal, Decision]]) -> CycleResult:
        st = self.store
        self.cycle_no += 1
        fault = self.storage_fault
        with st.transaction():
            run_id = st.insert_run(self.agent, self.cycle_no, now, started)
            res = CycleResult(run_id, now)
            for sym, reason in sorted(snap.rejected.items()):
                st.insert_skip(run_id, self.agent, sym, now, f"bad_data: {reason}")
                res.skipped += 1
            for o in outages(snap.rejected):    # a hole longer than TB_MAX_GAP_BARS: alerted once per hole
                enqueue(st, self.s, "data_outage", outage_message(self.agent, o, self.s.lookback_bars), self.agent)
            # one still going on (the sources keep sending their last candle, or nothing): only "stale" so far
            # a symbol no source has answered for since a restart (the network down): its newest bar is the one
            # its last evaluation read, so an outage a restart fell into is still alerted and counted
            newest = {**self._evaluated_bar_ns, **self._bars_seen}
            going_on = ongoing_outages(newest, snap.rejected, to_ns(now), td_ns(self.feed.interval),
                                       self.s.max_gap_bars)
            for g in going_on:
                enqueue(st, self.s, "data_outage", ongoing_outage_message(self.agent, g), self.agent)
            self._write_events(run_id, report, now)
            res.fills += len(report.fills)
            res.trades += len(report.trades)
            for sig, d in decisions:
                sid = st.insert_signal(run_id, self.agent, sig, d.decision, d.reason)
                res.signals += 1
                if d.risk_rule:
                    st.insert_risk_event(run_id, self.agent, now, sig.symbol, d.risk_rule, d.risk_detail or {}, sid)
                if d.intent is not None:
                    it = d.intent
                    br = it.bracket
                    if br is not None and it.order.purpose == "entry":
                        br = replace(br, signal_id=sid)
                        it.bracket = br
                    oid = st.insert_order(it.order, run_id=run_id, signal_id=sid, price_est=it.price_est,
                                          bracket=None if br is None else asdict(br), sizing=it.sizing)
                    if oid is None:
                        self.log.warning(kv("duplicate_order_suppressed", client_order_id=it.order.client_order_id))
                        d.intent = None
                    else:
                        res.orders.append(it.order.client_order_id)
            self._write_book(report)
            res.equity = self.broker.equity()
            if self.cycle_no % self.s.heartbeat_every == 0:
                st.heartbeat(self.agent, self.cycle_no, now, "running",
                             {"equity": res.equity, "positions": len(self.broker.positions())})
            for msg_kind, msg in cycle_messages(report, decisions):
                enqueue(st, self.s, msg_kind, msg, self.agent)
            # periodic messages (heartbeat, the daily summary of the UTC day that just ended) in the cycle's
            # own transaction: a crash or a storage fault can neither lose nor repeat a daily summary
            enqueue_periodic(st, self.s, self.agent, self.cycle_no, now, self.processed_until, res.equity,
                             len(self.broker.positions()))
            if fault is not None:
                note = (f"storage_fault_recovered: {fault.error}; {fault.attempts} failed attempt(s) since "
                        f"{fault.since} at clock {fault.clock}")
                self._notes.append(note)
                enqueue(st, self.s, "storage_recovered", f"✅ {self.agent} agent: storage fault cleared, cycles "
                        f"commit again from clock {iso(now)} ({note})", self.agent)
            # a cycle that decided nothing because the data is still missing is not ok (the health check counts
            # those); once the bars are back, the days a past hole keeps a symbol out of decisions are ok runs,
            # their skips recorded and the hole alerted
            status = RunStatus.NO_DATA if going_on and not snap.bars else RunStatus.OK
            st.finish_run(run_id, symbols=res.signals, skipped=res.skipped, orders=len(res.orders), fills=res.fills,
                          cash=self.broker.balance(), equity=res.equity, status=status.value,
                          **({"note": "; ".join(self._notes)} if self._notes else {}))
        self._committed = now
        if fault is not None:
            self.log.info(kv("storage_recovered", clock=iso(now), attempts=fault.attempts, since=fault.since,
                             error=fault.error))
            self.storage_fault = None
            self._fault_file(None)
        if self.s.write_artifacts:
            self._artifacts(run_id, now, snap, decisions)
        return res

    def _write_events(self, run_id: int | None, report: BarReport, now: datetime) -> None:
        """Broker events: orders it created itself (exits, stops), fills, state changes, closed trades."""
        st = self.store
        exit_signal = {t.exit_order_id: t.signal_id for t in report.trades}
        for o in report.exit_orders:
            st.insert_order(o, run_id=run_id, signal_id=exit_signal.get(o.client_order_id), price_est=o.stop_price)
        for cid, venue in report.venues.items():
            st.set_order_venue(cid, venue)
        for f in report.fills:
            st.insert_fill(f, self.agent)
        for u in report.updates:
            st.set_order_state(u.client_order_id, u.state, u.reason, filled_qty=u.filled_qty or None,
                               avg_price=u.avg_price, at=now)
        for t in report.trades:
            st.insert_trade(t)
        for venue, fp, entry in report.funding:
            st.insert_funding(self.agent, venue, fp.symbol, fp.ts, fp.amount, fp.ref, entry)
        for entry, amount in report.late_funding:
            st.add_trade_funding(self.agent, entry, amount)
        for key, value in report.memos.items():
            st.set_notify_state(key, value)

    def _write_book(self, report: BarReport) -> None:
        """Open positions (and those closed in ``report``) and the account, as the broker has them."""
        exits = {t.entry_order_id: t.exit_ts for t in report.trades}
        self.store.save_positions(self.agent, self.broker.positions(),
                                  [(p, exits[p.entry_order_id]) for p in report.closed if p.entry_order_id in exits])
        self.store.save_account(self.agent, initial_capital=self.initial_capital, cash=self.broker.balance(),
                                realized_pnl=self.broker.realized_pnl, fees_paid=self.broker.fees_paid,
                                day=self.day, day_start_equity=self.day_start_equity)

    def _write_report(self, run_id: int | None, report: BarReport, now: datetime) -> None:
        self._write_events(run_id, report, now)
        self._write_book(report)

    def _submit(self, intents: Sequence[Intent | None]) -> None:
        for it in intents:
            if it is None:
                continue
            upd = self.broker.submit(it.order, it.bracket)
            with self.store.transaction():
                self.store.set_order_state(it.order.client_order_id, upd.state, upd.reason, at=it.order.created_at)
            self.log.info(kv("order_" + upd.state.value, client_order_id=it.order.client_order_id,
                             symbol=it.order.symbol, side=it.order.side.value, qty=it.order.qty,
                             purpose=it.order.purpose, reason=upd.reason or it.order.reason))

    def _settle(self, res: CycleResult, now: datetime) -> None:
        """Venue only: send the broker's own orders (agent exits, then protective stops of new fills),
        book what the venue did with them, and write each round in its own transaction."""
        self.reconcile(now)      # orders left ``new`` by a venue that was down or could not confirm
        for _ in range(4):
            self._send_broker_orders(self.broker.take_outbox())
            rep = self.broker.sync(now)
            if not rep.any():
                # an exit queued while sending (an unclear exit's next id) goes now; a stop re-placed after a
                # refusal waits for the next cycle (its tries are few: a refusal of a moment must not use them all)
                more = self.broker.take_outbox()
                self.broker.requeue(more)
                if not any(o.purpose == "exit" for o, _ in more):
                    break
            with self.store.transaction():
                self._write_report(res.run_id, rep, now)
                res.fills += len(rep.fills)
                res.trades += len(rep.trades)
                for msg_kind, msg in cycle_messages(rep, []):
                    enqueue(self.store, self.s, msg_kind, msg, self.agent)
            # the closes of the agent's own exits are booked here, after the decisions: the cooldown starts with
            # them as it does with those the next cycle's sync books (a paper broker and the backtest book them
            # at the next bar, before that bar's decisions)
            notify_closed(self.policy, rep.trades)
        self.broker.check_wallet()
        res.equity = self.broker.equity()

    def _send_broker_orders(self, orders) -> None:
        """The broker's own orders: written as new (a no-op when the cycle already wrote them), then sent."""
        orders = list(orders)
        unsent = 0              # orders[unsent:] are not in the venue's hands (nor recorded as sent)
        try:
            for unsent, (o, br) in enumerate(orders):
                with self.store.transaction():
                    self.store.insert_order(o, run_id=None, signal_id=None, price_est=o.stop_price)
                upd = self.broker.submit(o, br)
                unsent += 1     # from here on it is in the DB as new: reconciliation asks the venue for it
                with self.store.transaction():
                    self.store.set_order_state(o.client_order_id, upd.state, upd.reason)
                self.log.info(kv("order_" + upd.state.value, client_order_id=o.client_order_id, symbol=o.symbol,
                                 side=o.side.value, qty=o.qty, purpose=o.purpose, reason=upd.reason or o.reason))
        except Exception:
            # a storage fault (or a DB read in submit): the unsent orders go back to the broker, to be sent
            # during the fault (_exits_during_fault, journaled) or after it; none is lost with the exception
            self.broker.requeue(orders[unsent:])
            raise

    def _notify(self, res: CycleResult, report: BarReport, decisions) -> None:
        """Deliver the console channel (the periodic messages, a heartbeat every TB_NOTIFY_HEARTBEAT_EVERY
        cycles and the daily summary of the UTC day that just ended, were queued in the cycle's transaction).
        Discord and Telegram rows are sent by the outbox worker threads (tracer.notify.worker), never by the loop."""
        if self.s.notify_console:
            deliver_console(self.store, self.log)

    def _artifacts(self, run_id: int, now: datetime, snap: Snapshot, decisions) -> None:
        write_run(Path(self.s.artifact_dir), run_id, self.agent, now, decisions, snap.bars, snap.rejected)
        if self.s.autocommit_artifacts and self.cycle_no % self.s.autocommit_every == 0:
            autocommit(Path(self.s.artifact_dir), f"artifacts: {self.agent} cycle {self.cycle_no} clock {iso(now)}",
                       self.s.autocommit_push, self.log)

    # --- the loop --------------------------------------------------------------------------
    def run(self, cycles: int | None = None, interval_s: float = 0.0) -> dict[str, Any]:
        try:
            now = self.start()
        except Exception as e:
            if not is_storage_fault(e):
                raise
            now = self._storage_fault(None, e)
        done = 0
        while now is not None and not self.stop_event.is_set():
            if self.s.replay_end is not None and now > self.s.replay_end:
                break
            if self.processed_until is not None and now <= self.processed_until:
                # never process a clock twice (a feed or wall clock that went back): wait for the next one
                self.log.warning(kv("clock_not_advancing", clock=iso(now), processed_until=iso(self.processed_until)))
                now = self._next_time(self.processed_until)
                continue
            t0 = time.perf_counter()
            try:
                res = self.run_cycle(now)
            except Exception as e:
                if not is_storage_fault(e):
                    raise
                failed = now
                now = self._storage_fault(now, e)     # the clock of the first cycle not committed, or None
                if self._committed == failed:
                    # the cycle had committed and what came after it failed (sending its orders, settling,
                    # the console): recovery reconciles those orders from the DB, and the cycle is done
                    done += 1
                    if cycles is not None and done >= cycles:
                        break
                continue
            done += 1
            self.log.info(kv("cycle", n=self.cycle_no, clock=iso(now), signals=res.signals, skipped=res.skipped,
                             orders=len(res.orders), fills=res.fills, closed=res.trades, equity=round(res.equity, 2),
                             ms=round((time.perf_counter() - t0) * 1000, 1)))
            if cycles is not None and done >= cycles:
                break
            now = self._next_time(now)
            if interval_s > 0 and now is not None:
                self._pause(interval_s)
        summary = self.summary()
        summary["cycles_this_run"] = done
        summary["end_of_data"] = now is None and not self.stop_event.is_set()
        # why it stopped, for the supervisor: a signal (the OS at a shutdown or logout, a kill) leaves the pid file
        # that only --stop removes, and the next load of the launchd job starts the agent again
        summary["stopped_by"] = "signal" if self.stop_event.is_set() else \
            ("end_of_data" if now is None or (self.s.replay_end is not None and now > self.s.replay_end) else "cycles")
        self.log.info(kv("summary", **summary))
        try:
            with self.store.transaction():
                self.store.heartbeat(self.agent, self.cycle_no, self.clock, "stopped", summary)
        except Exception as e:
            if not is_storage_fault(e):
                raise
            self.log.error(kv("storage_fault", error=type(e).__name__, message=str(e), at="final_heartbeat"))
        return summary

    def _pause(self, seconds: float) -> None:
        """The replay's pause between cycles (``--interval``, TB_REPLAY_INTERVAL_S), ended by a stop request; a
        heartbeat every ``wait_heartbeat_s`` of it, as during a live feed's wait: a pause longer than the watchdog's
        heartbeat limit must not make a waiting agent look hung (restarted in a loop, then given up)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not self.stop_event.wait(min(left, self.wait_heartbeat_s)):
            self._wait_heartbeat()

    def _next_time(self, after: datetime) -> datetime | None:
        """The feed's next clock. A live feed sleeps until the next bar close (up to an interval): its sleep
        is cut into steps of at most 1 s, so that it looks at the clock again after each (a wall clock that
        jumped forward is seen at once, not after the whole sleep), a stop request ends the wait, and a
        heartbeat is written every ``wait_heartbeat_s`` (the watchdog must not take a waiting agent for a
        hung one). Returns None when a stop was requested during the wait."""
        real = getattr(self.feed, "sleep", None)
        if not callable(real):
            return self.feed.next_time(after)  # type: ignore[attr-defined]

        def sleep(seconds: float) -> None:
            step = min(max(seconds, 0.0), 1.0)
            real(step)
            self._slept_since_hb += step
            if self.stop_event.is_set():
                raise _StopWaiting
            if self._slept_since_hb >= self.wait_heartbeat_s:
                self._slept_since_hb = 0.0
                self._wait_heartbeat()

        self.feed.sleep = sleep  # type: ignore[attr-defined]
        try:
            return self.feed.next_time(after)  # type: ignore[attr-defined]
        except _StopWaiting:
            return None
        finally:
            self.feed.sleep = real  # type: ignore[attr-defined]

    def _wait_heartbeat(self) -> None:
        try:
            with self.store.transaction():
                self.store.heartbeat(self.agent, self.cycle_no, self.processed_until, "running",
                                     {"waiting": "next bar close", "equity": self.broker.equity()})
        except Exception as e:
            if not is_storage_fault(e):
                raise
            self.log.error(kv("storage_fault", error=type(e).__name__, message=str(e), at="wait_heartbeat"))

    def summary(self) -> dict[str, Any]:
        t = self.store.agent_totals(self.agent)
        eq = self.broker.equity()
        n = t["closed_trades"]
        return {"agent": self.agent, "cycles": self.cycle_no, "clock": iso(self.clock) if self.clock else None,
                "orders": t["orders"], "fills": t["fills"], "closed_trades": n, "realized_pnl": round(t["pnl"], 2),
                "win_rate": round(t["winners"] / n, 3) if n else None, "equity": round(eq, 2),
                "return_pct": round((eq / self.initial_capital - 1) * 100, 3),
                "open_positions": len(self.broker.positions())}


__all__ = ["AgentLoop", "CycleResult", "Decision", "Intent", "Policy", "StorageFault", "TradingBroker", "decide_all",
           "venue_broker"]
