"""Seeded chaos on a venue: the real futures agent process trades on the fake Binance USD-M venue while the
venue fills orders in part (market orders and triggered stops), answers 429 and bans the IP (418, enforced)
with orders in flight, refuses stops, loses responses, pays funding at each 8-hour boundary of the agent's
clock, and a position appears on the venue by hand (adopted); the agent is killed with SIGKILL at random
moments and restarted. At the end: no client id accepted twice, no double position, every position protected,
and the DB's positions, orders, fills, fees, funding and wallet equal the venue's.

The default run is short (a few dozen cycles, a few kills); the long variant runs 300+ cycles with 20 kills.
The seed is printed (``TB_CHAOS_SEED`` replays one)."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from fakes.binance_futures_venue import FakeBinanceFutures, _Fault
from procs import committed_cycles
from envs import agent_env
from test_venue_crash import last_clock, replay_closes

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "high_risk_futures_agent.py"
SEED = int(os.environ.get("TB_CHAOS_SEED", "20261204"))
BASES = ("BTC", "ETH", "SOL")        # the agent trades BTC and ETH; SOL appears on the venue by hand
WALLET = 10_000.0


class ChaosVenue(FakeBinanceFutures):
    """Draws faults from its own seeded generator on every request; a 418 ban is enforced until it ends."""

    def __init__(self, *a, rng: random.Random, **kw):
        super().__init__(*a, **kw)
        self.rng, self.pid = rng, None
        self.banned_until_ms = 0
        self.faults_drawn: dict[str, int] = {}
        self.kill_after_post = 0.0
        # every kind of fault happens at least once: its first chance is taken
        self.first = {"partial fill", "stop refused", "partial stop trigger", "lost response"}

    def _draw(self, kind: str, p: float, r: float) -> bool:
        if kind in self.first:
            self.first.discard(kind)
            return True
        return r < p

    def _count(self, k: str) -> None:
        self.faults_drawn[k] = self.faults_drawn.get(k, 0) + 1

    def _route(self, req):
        now = self.now_ms()
        if now < self.banned_until_ms:
            return 418, {}, {"code": -1003, "msg": f"Way too many requests; IP banned until {self.banned_until_ms}."}
        r = self.rng.random()
        ep = f"{req.method} {req.path}"
        if ep == "POST /fapi/v1/order":
            if self._draw("partial fill", 0.15, r):
                self.inject(ep, "partial", fraction=self.rng.choice((0.3, 0.5, 0.8)))
                self._count("partial fill")
            elif self._draw("lost response", 0.05, r - 0.15):
                self.inject(ep, "lost")
                self._count("lost response")
            elif 0.20 <= r < 0.23:
                self.inject(ep, 429, retry_after=1)
                self._count("429")
        elif ep == "POST /fapi/v1/algoOrder":
            if self._draw("stop refused", 0.15, r):
                self.inject(ep, -4045)
                self._count("stop refused")
            elif 0.15 <= r < 0.20:
                self.inject(ep, "lost")
                self._count("lost response")
        elif r < 0.004:
            self.banned_until_ms = now + 2500
            self._count("418 ban")
            return 418, {}, {"code": -1003, "msg": f"Way too many requests; IP banned until {self.banned_until_ms}."}
        out = super()._route(req)
        if ep in ("POST /fapi/v1/order", "POST /fapi/v1/algoOrder") and self.pid and out[0] == 200 \
                and self.rng.random() < self.kill_after_post:
            try:
                os.kill(self.pid, signal.SIGKILL)
                self._count("kill after a POST")
                self.pid = None
            except ProcessLookupError:
                pass
        return out

    def _take_named(self, name):
        if name == "trigger" and self._draw("partial stop trigger", 0.3, self.rng.random()):   # a thin book
            self._count("partial stop trigger")
            return _Fault("trigger", "partial", 1, {"fraction": 0.5})
        return super()._take_named(name)


def market_driver(venue: ChaosVenue, dbfile: Path, stop: threading.Event, rng: random.Random, log: dict) -> None:
    """The venue's marks follow the replay (the close of the bar the agent last committed); funding is paid at
    each 00/08/16 UTC boundary of that clock; once, a SOL position is opened on the venue by hand."""
    closes = replay_closes(BASES)
    last = None
    while not stop.is_set():
        clock = last_clock(dbfile)
        if clock and clock != last:
            ts = pd.Timestamp(clock)
            for sym, m in closes.items():
                if str(ts) in m:
                    venue.set_price(sym, float(m[str(ts)]))
            if ts.hour % 8 == 0:
                for sym in list(venue.positions):
                    log["funding"] = log.get("funding", 0) + 1
                    venue.apply_funding(sym, rng.uniform(-0.0004, 0.0008))
            log["clocks"] = log.get("clocks", 0) + 1
            if log["clocks"] == 12 and "SOLUSDT" not in venue.positions:
                with venue._lock:                     # by hand, fee-free (the DB cannot know a manual fee)
                    fee, venue.taker_fee = venue.taker_fee, 0.0
                    venue.leverage["SOLUSDT"] = 2          # by hand at 2x: not liquidated before it is adopted
                    try:
                        venue._execute("SOLUSDT", "BUY", venue_dec("3"), venue.prices["SOLUSDT"], 0)
                    finally:
                        venue.taker_fee = fee
                log["manual"] = 1
            last = clock
        time.sleep(0.01)


def venue_dec(s: str):
    from decimal import Decimal
    return Decimal(s)


def run_chaos(tmp: Path, kills_wanted: int, min_cycles: int, seed: int) -> tuple[ChaosVenue, int, dict]:
    (tmp / "state").mkdir(parents=True, exist_ok=True)
    dbfile = tmp / "state" / "tracer.db"
    rng = random.Random(seed)
    print(f"venue chaos seed {seed} (TB_CHAOS_SEED to replay)")
    log: dict = {}
    venue = ChaosVenue("xk", "xs", rng=random.Random(seed + 1), wallet=WALLET,
                       prices={"BTCUSDT": 42000.0, "ETHUSDT": 3000.0, "SOLUSDT": 140.0})
    venue.__enter__()
    env = agent_env(tmp, TB_VENUE_FUTURES="binance", TB_BINANCE_FUTURES_URL=venue.url, TB_BINANCE_API_KEY="xk",
                    TB_BINANCE_API_SECRET="xs", TB_FUTURES_SYMBOLS="BTC/USD,ETH/USD",
                    TB_SENTIMENT_SCORER="lexicon", TB_FUTURES_BACKUP_VENUE="none", TB_VENUE_TIMEOUT_S="2",
                    TB_VENUE_MAX_WAIT_S="2", TB_REPLAY_START="2022-05-08T00:00:00Z", TB_PROFILE="phase1c")
    stop = threading.Event()
    th = threading.Thread(target=market_driver, args=(venue, dbfile, stop, random.Random(seed + 2), log), daemon=True)
    th.start()
    kills = 0
    try:
        venue.kill_after_post = 0.03
        while kills < kills_wanted or committed_cycles(dbfile) < min_cycles:
            p = subprocess.Popen([sys.executable, str(SCRIPT), "--cycles", "100000"], cwd=tmp, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            venue.pid = p.pid
            target = committed_cycles(dbfile) + rng.randint(2, max(3, 2 * min_cycles // max(kills_wanted, 1)))
            deadline = time.time() + 180
            while committed_cycles(dbfile) < target and p.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.8))          # somewhere inside the next cycle
            if p.poll() is None:
                p.kill()
            p.wait()
            venue.pid = None
            err = p.stderr.read() if p.stderr else ""
            assert p.returncode in (-signal.SIGKILL, 0), err[-3000:]
            kills += p.returncode == -signal.SIGKILL
        # the chaos ends: the market stops first (funding paid on the settle run's last committed clock would
        # land after its last lookup, booked only by a later run), then a clean run settles everything
        stop.set()
        th.join(5)
        venue.kill_after_post = 0.0
        venue.rng = random.Random(0)
        venue.rng.random = lambda: 1.0                 # no more faults drawn
        venue.first.clear()
        venue.clear_faults()
        venue.banned_until_ms = 0
        # the settle run stands for "later": an entry whose POST was unclear near the end (and that the venue never
        # processed) is asked for during the 15-minute grace and left new meanwhile, rightly; here the grace is over
        settle_env = dict(env, TB_VENUE_UNCONFIRMED_GRACE_S="0")
        r = subprocess.run([sys.executable, str(SCRIPT), "--cycles", "4"], cwd=tmp, env=settle_env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
    finally:
        stop.set()
        th.join(5)
        venue.__exit__(None, None, None)
    return venue, kills, log


def check_invariants(tmp: Path, venue: ChaosVenue) -> dict:
    c = sqlite3.connect(tmp / "state" / "tracer.db")
    c.row_factory = sqlite3.Row
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # no client id accepted twice
    booked: dict[str, int] = {}
    for o in list(venue.orders.values()) + list(venue.algo_orders.values()):
        cid = o.get("clientOrderId") or o.get("clientAlgoId")
        booked[cid] = booked.get(cid, 0) + 1
    assert {k: n for k, n in booked.items() if k.startswith("tb-") and n > 1} == {}
    # no double position, DB positions == venue positions
    db_pos = {r["symbol"].split("/")[0] + "USDT": (r["side"], round(r["qty"], 8)) for r in
              c.execute("SELECT * FROM positions WHERE agent='futures' AND status='open'")}
    venue_pos = {s: ("long" if p["amt"] > 0 else "short", round(abs(float(p["amt"])), 8))
                 for s, p in venue.positions.items() if p["amt"] != 0}
    assert db_pos == venue_pos
    assert c.execute("SELECT COUNT(*) FROM orders WHERE state='new'").fetchone()[0] == 0
    # every open position is protected: a reduce-only stop resting on the venue, or the agent's own stop after
    # the bounded re-placements were refused
    for r in c.execute("SELECT * FROM positions WHERE agent='futures' AND status='open'"):
        assert r["stop_loss"] > 0, dict(r)
        resting = [a for a in venue.algo_orders.values() if a["algoStatus"] == "NEW" and a["orderType"] == "STOP_MARKET"
                   and a["symbol"] == r["symbol"].split("/")[0] + "USDT" and a["reduceOnly"]]
        assert resting or r["stop_seq"] >= 3, dict(r)
    # resting orders: the venue's open algo orders are the DB's submitted ones
    venue_open = {a["clientAlgoId"] for a in venue.algo_orders.values() if a["algoStatus"] == "NEW"}
    db_open = {r[0] for r in c.execute("SELECT client_order_id FROM orders WHERE state IN ('submitted','partially_filled')")}
    assert venue_open == db_open
    # fills and fees: the DB's equal the venue's trades of our orders (an algo order's through its actual order)
    owner = {o["orderId"]: o.get("clientOrderId") for o in venue.orders.values()}
    for a in venue.algo_orders.values():
        if a.get("actualOrderId"):
            owner[int(a["actualOrderId"])] = a["clientAlgoId"]
    v_qty: dict[str, float] = {}
    v_liq: dict[str, float] = {}
    v_fee = 0.0
    for t in venue.trades:
        cid = owner.get(t["orderId"]) or ""
        if cid.startswith("tb-"):
            v_qty[cid] = v_qty.get(cid, 0.0) + float(t["qty"])
            v_fee += float(t["commission"])
        elif cid.startswith("autoclose-"):     # the venue's liquidation order (Binance's id for it)
            v_liq[t["symbol"]] = v_liq.get(t["symbol"], 0.0) + float(t["qty"])
    adopted = {r[0] for r in c.execute("SELECT client_order_id FROM orders WHERE purpose='adopted'")}
    # a liquidation is booked under an exit id of the position (its trade's exit reason 'liquidation', its order's
    # reason too): it matches the venue's autoclose order, symbol by symbol, not an order of ours
    liquidated = {r[0]: r[1] for r in c.execute("SELECT exit_order_id, symbol FROM trades WHERE exit_reason='liquidation'")}
    assert all(c.execute("SELECT reason FROM orders WHERE client_order_id=?", (k,)).fetchone()[0] == "liquidation"
               for k in liquidated)
    d_liq: dict[str, float] = {}
    d_qty: dict[str, float] = {}
    for cid, qty in c.execute("SELECT client_order_id, SUM(qty) FROM fills GROUP BY client_order_id"):
        if cid in adopted:                  # an adopted position's "fill" is the venue's position, not a trade
            continue
        if cid in liquidated:
            sym = liquidated[cid].split("/")[0] + "USDT"
            d_liq[sym] = d_liq.get(sym, 0.0) + qty
        else:
            d_qty[cid] = qty
    assert {k: round(v, 8) for k, v in d_qty.items()} == {k: round(v, 8) for k, v in v_qty.items()}
    assert {k: round(v, 8) for k, v in d_liq.items()} == {k: round(v, 8) for k, v in v_liq.items()}
    d_fee = c.execute("SELECT COALESCE(SUM(fee), 0) FROM fills").fetchone()[0]
    assert d_fee == pytest.approx(v_fee, abs=1e-6)
    # funding: every payment the venue made is booked once
    v_funding = -sum(float(i["income"]) for i in venue.income if i["incomeType"] == "FUNDING_FEE")
    d_funding = c.execute("SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM funding_payments").fetchone()
    booked_refs = {r[0] for r in c.execute("SELECT venue_ref FROM funding_payments")}
    missing = [i for i in venue.income if i["incomeType"] == "FUNDING_FEE" and str(i["tranId"]) not in booked_refs]
    anchor = c.execute("SELECT value FROM notify_state WHERE key='wallet_anchor:futures'").fetchone()
    sol = [dict(r) for r in c.execute("SELECT symbol, entry_ts, exit_ts, exit_reason, entry_order_id FROM trades")]
    ev = [dict(r) for r in c.execute("SELECT ts, kind, symbol FROM venue_events WHERE kind LIKE 'position%'")]
    assert missing == [], (missing, anchor and anchor[0], sol, ev, [dict(r) for r in c.execute("SELECT * FROM funding_payments")])
    assert d_funding[0] == pytest.approx(v_funding, abs=1e-6)
    # the wallet: the venue's equals the DB's starting wallet plus its trades, fees and funding
    realized = c.execute("SELECT realized_pnl FROM accounts WHERE agent='futures'").fetchone()[0]
    open_costs = c.execute("SELECT COALESCE(SUM(entry_fee + funding_paid), 0) FROM positions "
                           "WHERE agent='futures' AND status='open'").fetchone()[0]
    v_real: dict[str, float] = {}
    for i in venue.income:
        if i["incomeType"] == "REALIZED_PNL":
            v_real[i["symbol"]] = v_real.get(i["symbol"], 0.0) + float(i["income"])
    d_real = {r[0].split("/")[0] + "USDT": r[1] for r in c.execute(
        "SELECT symbol, SUM(pnl + fees - funding) FROM trades GROUP BY symbol")}
    assert venue.balance == pytest.approx(WALLET + realized - open_costs, abs=0.05), (
        v_real, d_real, [dict(r) for r in c.execute("SELECT symbol, qty, entry_price, exit_price, exit_reason, pnl, "
                                                      "fees, funding, exit_order_id FROM trades")],
        [(t["orderId"], t["symbol"], t["side"], t["qty"], t["price"], t["realizedPnl"]) for t in venue.trades],
        [dict(r) for r in c.execute("SELECT ts, kind, symbol, detail_json FROM venue_events WHERE kind NOT IN "
                                      "('rate_limited', 'ip_banned', 'order_rejected')")])
    trades_pnl = c.execute("SELECT COALESCE(SUM(pnl), 0) FROM trades WHERE agent='futures'").fetchone()[0]
    assert trades_pnl == pytest.approx(realized, abs=1e-6)
    return {"orders": len(booked), "trades": c.execute("SELECT COUNT(*) FROM trades").fetchone()[0],
            "partial_exits": c.execute("SELECT COUNT(*) FROM venue_events WHERE kind='partial_exit'").fetchone()[0],
            "adopted": c.execute("SELECT COUNT(*) FROM venue_events WHERE kind='position_adopted'").fetchone()[0],
            "liquidations": sum(1 for o in venue.orders.values() if o["clientOrderId"].startswith("autoclose-")),
            "funding_payments": d_funding[1], "wallet": round(venue.balance, 2)}


def _chaos(tmp: Path, reliability, kills: int, cycles: int, name: str) -> None:
    venue, killed, log = run_chaos(tmp, kills, cycles, SEED)
    figures = check_invariants(tmp, venue)
    cyc = committed_cycles(tmp / "state" / "tracer.db")
    figures.update(kills=killed, cycles=cyc, faults=dict(venue.faults_drawn), funding_rounds=log.get("funding", 0),
                   manual_positions=log.get("manual", 0), seed=SEED, restarts=killed,
                   faults_injected=sum(venue.faults_drawn.values()), duplicates=0)   # duplicates: checked above
    print("venue chaos:", json.dumps(figures, sort_keys=True))
    assert killed >= kills and cyc >= cycles
    assert venue.faults_drawn.get("partial fill", 0) >= 1 and venue.faults_drawn.get("stop refused", 0) >= 1
    reliability(name, trials=killed, checked="no client id accepted twice, no double position, every position "
                "protected, DB positions/orders/fills/fees/funding/wallet equal to the venue's", ok=True, **figures)


def test_venue_chaos_short(tmp_path, reliability):
    _chaos(tmp_path, reliability, kills=3, cycles=40, name="venue chaos (short)")


@pytest.mark.long
def test_venue_chaos_long(tmp_path, reliability):
    _chaos(tmp_path, reliability, kills=20, cycles=320, name="venue chaos (long, 300+ cycles)")
