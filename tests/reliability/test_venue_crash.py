"""Crash test on a venue: the real futures agent process trades on the fake Binance USD-M venue and is
killed with SIGKILL at 30+ seeded random moments, some of them between an order POST and its DB write
(the venue books the order, then kills the agent before answering). It is restarted each time. At the
end the venue holds no duplicate order, no client id was ever POSTed twice, and the DB agrees with the
venue on orders and positions."""
from __future__ import annotations

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

from fakes.binance_futures_venue import FakeBinanceFutures
from procs import committed_cycles
from envs import agent_env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "high_risk_futures_agent.py"
KILLS = 32
SEED = int(os.environ.get("TB_CRASH_SEED", "20261125"))
BASES = ("BTC", "ETH", "SOL")


class KillingVenue(FakeBinanceFutures):
    """Books an order POST, then (sometimes) kills the agent before it can read the answer."""

    def __init__(self, *a, rng: random.Random, p_kill: float, **kw):
        super().__init__(*a, **kw)
        self.rng, self.p_kill, self.pid = rng, p_kill, None
        self.armed_unsent = False   # kill on the next POST before booking it
        self.kills_after_post = self.kills_before_post = 0
        self.armed = False        # kill on the next booked POST, whatever the draw

    def _route(self, req):
        if req.method == "POST" and req.path in ("/fapi/v1/order", "/fapi/v1/algoOrder") and self.pid \
                and self.armed_unsent:
            # killed mid-POST, before the venue got it: the agent recorded the POST's start and never its outcome
            try:
                os.kill(self.pid, signal.SIGKILL)
                self.kills_before_post += 1
                self.pid, self.armed_unsent = None, False
                return 503, {}, {"code": -1, "msg": "the agent was killed before this POST arrived"}
            except ProcessLookupError:
                pass
        out = super()._route(req)
        if req.method == "POST" and req.path in ("/fapi/v1/order", "/fapi/v1/algoOrder") and self.pid \
                and out[0] == 200 and (self.armed or self.rng.random() < self.p_kill):
            try:
                os.kill(self.pid, signal.SIGKILL)
                self.kills_after_post += 1
                self.pid, self.armed = None, False
            except ProcessLookupError:
                pass
        return out


def replay_closes(bases=BASES) -> dict[str, dict[str, float]]:
    """Venue symbol -> {bar close time: close} of the bundled replay."""
    closes = {}
    for b in bases:
        df = pd.read_csv(ROOT / "tracer" / "data" / "bundled" / f"candles_1h_{b}USDT.csv")
        closes[b + "USDT"] = dict(zip((pd.to_datetime(df.timestamp) + pd.Timedelta(hours=1)).astype(str), df.close))
    return closes


def last_clock(dbfile: Path) -> str | None:
    """The clock of the agent's last committed cycle (read-only; None while it cannot be read)."""
    if not dbfile.exists():
        return None
    try:
        c = sqlite3.connect(f"file:{dbfile}?mode=ro", uri=True, timeout=1)
        try:
            return c.execute("SELECT MAX(clock) FROM runs").fetchone()[0]
        finally:
            c.close()
    except sqlite3.Error:
        return None


def follow_prices(venue: FakeBinanceFutures, dbfile: Path, stop: threading.Event) -> None:
    """The venue's mark price follows the replay: the close of the bar the agent last processed."""
    closes = replay_closes()
    last = None
    while not stop.is_set():
        clock = last_clock(dbfile)
        if clock and clock != last:
            key = str(pd.Timestamp(clock))
            for sym, m in closes.items():
                if key in m:
                    venue.set_price(sym, float(m[key]))
            last = clock
        time.sleep(0.01)


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("venue_crash")
    (tmp / "state").mkdir()
    dbfile = tmp / "state" / "tracer.db"
    rng = random.Random(SEED)
    print(f"venue crash test seed {SEED} (TB_CRASH_SEED to replay)")
    # the venue draws on its HTTP thread: its own generator, so the trials' schedule stays the seed's
    with KillingVenue("ck", "cs", rng=random.Random(SEED + 1), p_kill=0.08, prices={"BTCUSDT": 47000.0, "ETHUSDT": 3700.0,
                                                                  "SOLUSDT": 170.0}) as venue:
        env = agent_env(tmp, TB_VENUE_FUTURES="binance", TB_BINANCE_FUTURES_URL=venue.url, TB_BINANCE_API_KEY="ck",
                        TB_BINANCE_API_SECRET="cs", TB_FUTURES_SYMBOLS="BTC/USD,ETH/USD,SOL/USD",
                        TB_SENTIMENT_SCORER="lexicon", TB_FUTURES_BACKUP_VENUE="none", TB_VENUE_TIMEOUT_S="2",
                        TB_REPLAY_START="2022-01-10T00:00:00Z")
        stop = threading.Event()
        th = threading.Thread(target=follow_prices, args=(venue, dbfile, stop), daemon=True)
        th.start()
        kills = 0
        try:
            # KILLS kills at seeded random moments; some trials (and every one after KILLS while fewer
            # than 3 kills came right after a POST) are armed: the venue kills the agent on its next booked
            # POST. How many POSTs fit in a random delay depends on the machine's speed; an armed trial
            # does not, so the after-POST kills happen on a slow machine too.
            while kills < KILLS or (venue.kills_after_post < 3 and kills < KILLS + 8):
                p = subprocess.Popen([sys.executable, str(SCRIPT), "--cycles", "100000"], cwd=tmp, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                venue.pid = p.pid
                armed = rng.random() < 0.15 or kills >= KILLS
                if armed:
                    venue.armed = True
                    delay = 120.0                                 # until its next POST (or give up)
                elif rng.random() < 0.2:
                    delay = rng.uniform(0.2, 1.5)                 # during start-up / reconciliation
                else:                                             # in the cycles: after the first new one
                    before = committed_cycles(dbfile, timeout=1)
                    deadline = time.time() + 120
                    while committed_cycles(dbfile, timeout=1) == before and p.poll() is None and time.time() < deadline:
                        time.sleep(0.05)
                    delay = rng.uniform(0.05, 2.5)
                try:
                    p.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                venue.pid, venue.armed = None, False
                err = p.stderr.read() if p.stderr else ""
                assert p.returncode in (-signal.SIGKILL, 0), err[-3000:]
                kills += p.returncode == -signal.SIGKILL
            # one last clean run lets the reconciliation settle, then stop
            r = subprocess.run([sys.executable, str(SCRIPT), "--cycles", "3"], cwd=tmp, env=env,
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr[-3000:]
        finally:
            stop.set()
            th.join(5)
        print(f"{kills} kills, {venue.kills_after_post} of them right after a POST")
        yield tmp, venue, kills


def test_kills_happened_at_random_moments_including_after_a_post(crashed):
    _, venue, kills = crashed
    assert kills >= 30
    assert venue.kills_after_post >= 3
    c = sqlite3.connect(crashed[0] / "state" / "tracer.db")
    assert c.execute("SELECT COUNT(*) FROM orders WHERE purpose='entry' AND state='filled'").fetchone()[0] >= 5


def test_no_client_id_posted_twice_and_no_duplicate_order(crashed):
    _, venue, _ = crashed
    twice = {cid: n for cid, n in venue.post_counts.items() if n > 1}
    assert twice == {}
    booked = [o.get("clientOrderId") or o.get("clientAlgoId") for o in
              list(venue.orders.values()) + list(venue.algo_orders.values())]
    ours = [cid for cid in booked if cid.startswith("tb-")]
    assert len(ours) == len(set(ours))


def test_db_agrees_with_the_venue(crashed):
    tmp, venue, _ = crashed
    c = sqlite3.connect(tmp / "state" / "tracer.db")
    c.row_factory = sqlite3.Row
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # positions: same symbols, sides and quantities
    db_pos = {r["symbol"].split("/")[0] + "USDT": (r["side"], round(r["qty"], 8)) for r in
              c.execute("SELECT * FROM positions WHERE agent='futures' AND status='open'")}
    venue_pos = {s: ("long" if float(p["amt"]) > 0 else "short", round(abs(float(p["amt"])), 8))
                 for s, p in venue.positions.items() if float(p["amt"]) != 0}
    assert db_pos == venue_pos
    # resting orders: the venue's open stops/targets are exactly the DB's submitted ones
    venue_open = {a["clientAlgoId"] for a in venue.algo_orders.values() if a["algoStatus"] == "NEW"}
    db_open = {r[0] for r in c.execute("SELECT client_order_id FROM orders WHERE agent='futures' AND "
                                       "state IN ('submitted','partially_filled')")}
    assert venue_open == db_open
    assert c.execute("SELECT COUNT(*) FROM orders WHERE state='new'").fetchone()[0] == 0
    # every order the venue booked under our ids is in the DB, and filled there when it filled on the venue
    db_state = {r[0]: r[1] for r in c.execute("SELECT client_order_id, state FROM orders")}
    for cid, o in venue.orders_by_client_id.items():
        if not cid.startswith("tb-"):
            continue
        assert cid in db_state, cid
        filled = o.get("status") == "FILLED" or o.get("algoStatus") == "FINISHED"
        if filled and float(o.get("executedQty", o.get("quantity", 0)) or 0) > 0 or o.get("algoStatus") == "FINISHED":
            assert db_state[cid] == "filled", (cid, o.get("status") or o.get("algoStatus"), db_state[cid])
    # every entry that filled has either an open position or a closed trade
    for r in c.execute("SELECT client_order_id FROM orders WHERE purpose='entry' AND state='filled'"):
        held = c.execute("SELECT 1 FROM positions WHERE entry_order_id=?", (r[0],)).fetchone()
        assert held, r[0]


def test_futures_agent_fails_over_to_bybit_when_binance_is_down(tmp_path):
    """The real agent process, Binance down (connection refused), Bybit up: it trades on Bybit and says so."""
    from fakes.bybit_venue import FakeBybit
    (tmp_path / "state").mkdir()
    dbfile = tmp_path / "state" / "tracer.db"
    with FakeBinanceFutures("bk", "bs") as binance, FakeBybit("yk", "ys") as bybit:
        binance.down()
        stop = threading.Event()
        th = threading.Thread(target=follow_prices, args=(bybit, dbfile, stop), daemon=True)
        th.start()
        env = agent_env(tmp_path, TB_VENUE_FUTURES="binance", TB_BINANCE_FUTURES_URL=binance.url,
                        TB_BINANCE_API_KEY="bk", TB_BINANCE_API_SECRET="bs", TB_BYBIT_URL=bybit.url,
                        TB_BYBIT_API_KEY="yk", TB_BYBIT_API_SECRET="ys", TB_FUTURES_BACKUP_VENUE="bybit",
                        TB_FUTURES_SYMBOLS="BTC/USD,ETH/USD,SOL/USD", TB_SENTIMENT_SCORER="lexicon",
                        TB_VENUE_TIMEOUT_S="2", TB_REPLAY_START="2022-01-10T00:00:00Z")
        try:
            r = subprocess.run([sys.executable, str(SCRIPT), "--cycles", "60"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=600)
        finally:
            stop.set()
            th.join(5)
        assert r.returncode == 0, r.stderr[-3000:]
    c = sqlite3.connect(dbfile)
    venues = {v for (v,) in c.execute("SELECT DISTINCT venue FROM orders WHERE state='filled'")}
    assert venues == {"bybit"}
    assert c.execute("SELECT COUNT(*) FROM orders WHERE purpose='entry' AND state='filled'").fetchone()[0] >= 1
    kinds = {k for (k,) in c.execute("SELECT kind FROM venue_events")}
    assert {"venue_down", "failover"} <= kinds
    log = (tmp_path / "logs" / "futures.log").read_text()
    assert "venue_failover" in log and "new entries go to bybit" in log
    assert all(n == 1 for n in bybit.post_counts.values())
