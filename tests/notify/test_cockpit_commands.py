"""The cockpit's Telegram commands (/balance ... /version) through python-telegram-bot against the fake Bot API,
answered from a real SQLite file that a paper hybrid agent wrote; /forceexit and /reload carried out by the agent
at its next cycle."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from fakes.telegram import BOT_TOKEN, CHAT_ID, FakeTelegram
from test_telegram_commands import settings_for
from tracer.notify.commands import CommandListener
from tracer.notify.telegram import TelegramClient
from tracer.store import Store

LOG = logging.getLogger("test-cockpit-commands")


@pytest.fixture(scope="module")
def traded(tmp_path_factory):
    """A paper hybrid agent on phase1c, after the cycles in which it entered and closed trades."""
    from tracer.agents.hybrid import build
    tmp = tmp_path_factory.mktemp("traded")
    with FakeTelegram() as fake:
        loop = build(settings_for(tmp, fake, TB_PROFILE="phase1c"), LOG)
        loop.run(cycles=40)
        loop.store.close()
    return tmp


@pytest.fixture
def chat(tmp_path, traded):
    """A copy of the traded DB, a listener on it, and a function: send a command, get the reply."""
    import shutil
    (tmp_path / "state").mkdir()
    for f in (traded / "state").glob("tracer.db*"):
        shutil.copy(f, tmp_path / "state" / f.name)
    with FakeTelegram() as fake:
        s = settings_for(tmp_path, fake)
        store = Store(s.db_path)
        client = TelegramClient(BOT_TOKEN, str(CHAT_ID), fake.base_url, 5.0)
        listener = CommandListener(store, client, s, LOG)

        def say(text: str) -> str:
            before = store.conn.execute("SELECT COALESCE(MAX(id), 0) FROM notifications").fetchone()[0]
            fake.push_message(text)
            listener.poll_once()
            rows = store.conn.execute("SELECT message FROM notifications WHERE kind='command_reply' AND id>?",
                                      (before,)).fetchall()
            assert len(rows) == 1, text
            return str(rows[0][0])

        yield s, store, say, fake, tmp_path
        client.close()
        store.close()


def test_read_only_commands_answer_from_the_db(chat):
    s, store, say, _, _ = chat
    c = store.conn
    n, pnl = c.execute("SELECT COUNT(*), SUM(pnl) FROM trades WHERE agent='hybrid'").fetchone()
    assert n >= 1, "the phase1c replay closes trades in its first cycles"
    acct = store.account("hybrid")
    bal = say("/balance")
    assert f"cash {acct['cash']:,.2f}" in bal and "hybrid: equity" in bal and "futures: no account yet" in bal
    assert f"hybrid: {pnl:+,.2f} on {n} closed trades" in say("/profit")
    assert "Profit (last 3 day(s))" in say("/profit 3")
    last = c.execute("SELECT * FROM trades ORDER BY exit_ts DESC, id DESC LIMIT 1").fetchone()
    trades = say("/trades 2")
    assert f"/explain {last['entry_order_id']}" in trades and trades.startswith("Last ")
    perf = say("/performance")
    best = c.execute("SELECT symbol, SUM(pnl) FROM trades GROUP BY symbol ORDER BY SUM(pnl) DESC").fetchone()
    assert f"hybrid {best[0]}: {best[1]:+,.2f}" in perf
    daily = say("/daily 3")
    assert daily.count("  20") == 3 and "futures: no cycle yet" in daily
    assert "week of" in say("/weekly 2")
    count = say("/count")
    assert f"hybrid: {store.open_position_count('hybrid')} open" in count
    ex = say(f"/explain {last['entry_order_id']}")
    assert f"Order {last['entry_order_id']}: entry buy" in ex and "decision enter" in ex and "trade closed" in ex
    assert "no order 'nope'" in say("/explain nope")
    assert "DB schema" in say("/version")
    health = say("/health")
    assert health.startswith("Health:") and "process[hybrid]" in health and "venue" in health
    helptext = say("/help")
    for name in ("balance", "profit", "daily", "weekly", "trades", "performance", "count", "health", "explain",
                 "forceexit", "stopentry", "startentry", "reload", "version"):
        assert f"/{name}" in helptext


def test_stopentry_and_startentry_write_the_controls(chat):
    s, store, say, _, _ = chat
    assert "paused hybrid" in say("/stopentry hybrid")
    assert store.is_paused("hybrid") and not store.is_paused("futures")
    assert "entries stopped" in say("/count")
    assert "resumed hybrid" in say("/startentry hybrid")
    assert not store.is_paused("hybrid")


def test_forceexit_needs_a_confirmation_within_the_window(chat):
    s, store, say, _, _ = chat
    held = store.open_positions("hybrid")
    assert held, "the agent holds a position at the end of the seeding run"
    sym = held[0].symbol
    assert "no /forceexit" in say(f"/forceexit {sym} confirm")          # nothing asked yet
    assert store.pending_requests("hybrid") == []
    ask = say(f"/forceexit {sym}")
    assert "confirm within 60 s" in ask and sym in ask
    assert store.pending_requests("hybrid") == []                          # asking changes nothing
    # a confirmation after the window is refused
    old = datetime.now(timezone.utc) - timedelta(seconds=120)
    store.set_notify_state("forceexit_confirm:" + sym, old.isoformat())
    assert "no /forceexit" in say(f"/forceexit {sym} confirm")
    say(f"/forceexit {sym}")
    assert "forced exit queued" in say(f"/forceexit {sym} confirm")
    [req] = store.pending_requests("hybrid")
    assert req["kind"] == "force_exit" and req["target"] == sym.upper() and req["actor"] == "telegram:alice"
    assert "no open position in ZZZ/USD" in say("/forceexit zzz/usd")


def test_forceexit_is_carried_out_once_by_the_agent_through_the_normal_exit_path(chat):
    from tracer.agents.hybrid import build
    s, store, say, fake, tmp = chat
    p = store.open_positions("hybrid")[0]
    say(f"/forceexit {p.symbol}")
    say(f"/forceexit {p.symbol} confirm")
    say(f"/forceexit {p.symbol}")
    say(f"/forceexit {p.symbol} confirm")          # twice: still one pending request
    assert len(store.pending_requests("hybrid")) == 1
    loop = build(settings_for(tmp, fake, TB_PROFILE="phase1c"), LOG)
    loop.run(cycles=2)
    loop.store.close()
    c = store.conn
    [req] = c.execute("SELECT * FROM control_requests").fetchall()
    assert req["status"] == "done" and "exit sent" in req["result"]
    exits = c.execute("SELECT * FROM orders WHERE reason='force_exit'").fetchall()
    assert len(exits) == 1 and exits[0]["reduce_only"] == 1 and exits[0]["side"] == "sell"
    assert exits[0]["qty"] == pytest.approx(p.qty) and exits[0]["state"] == "filled"
    [t] = c.execute("SELECT * FROM trades WHERE entry_order_id=?", (p.entry_order_id,)).fetchall()
    assert t["exit_reason"] == "force_exit" and t["exit_order_id"] == exits[0]["client_order_id"]
    assert c.execute("SELECT status FROM positions WHERE entry_order_id=?", (p.entry_order_id,)).fetchone()[0] == "closed"
    sig = c.execute("SELECT decision, decision_reason FROM signals WHERE id=?", (exits[0]["signal_id"],)).fetchone()
    assert sig["decision"] == "exit" and sig["decision_reason"].startswith("forced exit requested by telegram:alice")


def test_reload_is_done_at_the_next_cycle_and_refused_when_invalid(chat):
    from tracer.agents.hybrid import build
    s, store, say, fake, tmp = chat
    assert "reload queued for hybrid" in say("/reload hybrid")
    params = tmp / "active.json"
    params.write_text(json.dumps({"agents": {"hybrid": {"params": {"TB_STOP_ATR_MULT": "3.5"}}}}))
    env = {"TB_ACTIVE_PARAMS_PATH": str(params)}
    loop = build(settings_for(tmp, fake, TB_PROFILE="phase1c"), LOG)
    loop.settings_source = lambda: settings_for(tmp, fake, TB_PROFILE="phase1c", **env)
    loop.run(cycles=1)
    [req] = store.control_requests("hybrid")
    assert req["status"] == "done" and "TB_STOP_ATR_MULT" in req["result"]
    assert loop.s.stop_atr_mult == 3.5 and loop.policy.s.stop_atr_mult == 3.5
    say("/reload hybrid")
    env["TB_SYMBOLS"] = "BTC/USD"                       # what only a restart may change
    loop.run(cycles=1)
    req = store.control_requests("hybrid")[0]
    assert req["status"] == "failed" and "TB_SYMBOLS" in req["result"] and loop.s.symbols != ("BTC/USD",)
    say("/reload hybrid")
    env.pop("TB_SYMBOLS")
    env["TB_FEE_BPS"] = "10"                            # the paper broker charges the fee it was built with
    loop.run(cycles=1)
    req = store.control_requests("hybrid")[0]
    assert req["status"] == "failed" and "TB_FEE_BPS" in req["result"] and loop.s.fee_bps == 25.0
    say("/reload hybrid")
    env.pop("TB_FEE_BPS")
    env["TB_STOP_ATR_MULT"] = "-1"
    loop.run(cycles=1)
    req = store.control_requests("hybrid")[0]
    assert req["status"] == "failed" and "TB_STOP_ATR_MULT" in req["result"] and loop.s.stop_atr_mult == 3.5
    assert "reload" in say("/health")
    loop.store.close()


def test_forceexit_all_closes_every_futures_position_once_even_if_the_request_is_seen_again(tmp_path):
    """Longs and shorts of the futures agent closed by reduce-only orders on the other side; a request found pending
    again (a crash after the cycle committed, before the request was marked done) sends nothing twice."""
    from tracer.agents.futures import build
    from tracer.notify import controls
    with FakeTelegram() as fake:
        s = settings_for(tmp_path, fake, TB_PROFILE="phase1c")
        loop = build(s, LOG)
        loop.run(cycles=40)
        st = loop.store
        held = st.open_positions("futures")
        assert held
        out = controls.force_exit(st, "all", "test", ["futures"])
        assert out.ok and out.agents == ("futures",)
        with st.transaction():                       # entries stopped, so the closed symbols stay closed
            st.set_paused("futures", True, "test")
        loop.run(cycles=1)                           # the exits sent: the request waits for their fills
        [req] = st.control_requests("futures")
        assert req["status"] == "pending"
        loop.run(cycles=1)                           # the paper broker fills them at the next bar
        [req] = st.control_requests("futures")
        assert req["status"] == "done" and "exit sent" in req["result"]
        with st.transaction():                       # as if the process died before marking it done
            st.conn.execute("UPDATE control_requests SET status='pending', result=NULL WHERE id=?", (req["id"],))
        loop.run(cycles=2)
        c = st.conn
        exits = c.execute("SELECT * FROM orders WHERE reason='force_exit' ORDER BY id").fetchall()
        # every position open at the forced cycle (those held after 40 cycles, and the entries that filled in it)
        closed = c.execute("SELECT * FROM trades WHERE exit_reason='force_exit'").fetchall()
        assert len(exits) == len(closed) == len({o["client_order_id"] for o in exits}) >= len(held)
        assert {t["exit_order_id"] for t in closed} == {o["client_order_id"] for o in exits}
        assert {p.entry_order_id for p in held} <= {t["entry_order_id"] for t in closed}
        for t in closed:
            [o] = [o for o in exits if o["client_order_id"] == t["exit_order_id"]]
            assert o["reduce_only"] == 1 and o["side"] == ("sell" if t["side"] == "long" else "buy")
            assert o["leverage"] == t["leverage"] and o["state"] == "filled" and o["qty"] == pytest.approx(t["qty"])
        assert st.open_positions("futures") == []
        assert st.control_requests("futures")[0]["status"] == "done"
        st.close()
