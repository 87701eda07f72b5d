"""Operator requests carried out by a futures agent on a (fake) Binance USD-M venue: a forced exit the venue
refuses is sent again, under the position's next exit id, until it closes the position or has been refused
``FORCE_EXIT_MAX_REFUSALS`` times; a /reload refuses the settings the running venue broker was built with."""
from __future__ import annotations

import dataclasses
from dataclasses import replace

from envs import agent_env
from fakes.binance_futures_venue import FakeBinanceFutures
from tracer.agents.controls import FORCE_EXIT_MAX_REFUSALS
from tracer.config import load_settings
from tracer.models import Action
from tracer.notify import controls

from test_futures_venue_loop import H, PRICES, _loop, signals  # noqa: F401  (the fixture re-used)


def _force_exits(store) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in store.conn.execute("SELECT client_order_id, state FROM orders "
                                                     "WHERE reason='force_exit' ORDER BY id")]


def _held_on_venue(venue: FakeBinanceFutures) -> float:
    return float(venue.positions["BTCUSDT"]["amt"]) if "BTCUSDT" in venue.positions else 0.0


def test_a_forced_exit_the_venue_refuses_is_sent_again_under_the_next_exit_id(tmp_path, signals):  # noqa: F811
    with FakeBinanceFutures("ck", "cs", wallet=10_000.0, prices=dict(PRICES)) as venue:
        loop, store, clock, t1 = _loop(tmp_path, venue, ["BTC/USD"])
        signals({t1 + k * H: {"BTC/USD": Action.BUY if k == 0 else Action.HOLD} for k in range(4)})
        loop.run_cycle(t1)
        assert _held_on_venue(venue) != 0.0
        assert controls.force_exit(store, "BTC/USD", "telegram:op").ok
        venue.inject("POST /fapi/v1/order", -4131)          # a thin book: the market exit is refused once
        clock.advance(hours=1)
        loop.run_cycle(t1 + H)
        [(first, state)] = _force_exits(store)
        assert state == "rejected"
        assert store.control_requests("futures")[0]["status"] == "pending"     # not "exit sent"
        clock.advance(hours=1)
        loop.run_cycle(t1 + 2 * H)                          # the policy holds; the request sends the next exit id
        [_, (second, state)] = _force_exits(store)
        assert second != first and state == "filled" and _held_on_venue(venue) == 0.0
        req = store.control_requests("futures")[0]
        assert req["status"] == "done" and f"exit sent: BTC/USD ({second})" in req["result"]
        clock.advance(hours=1)
        loop.run_cycle(t1 + 3 * H)                          # nothing more is sent
        assert len(_force_exits(store)) == 2
        store.close()


def test_a_forced_exit_refused_again_and_again_fails_with_an_alert(tmp_path, signals):  # noqa: F811
    with FakeBinanceFutures("ck", "cs", wallet=10_000.0, prices=dict(PRICES)) as venue:
        loop, store, clock, t1 = _loop(tmp_path, venue, ["BTC/USD"])
        loop.s = replace(loop.s, notify_console=True)       # an outbox channel, to see the alert
        n = FORCE_EXIT_MAX_REFUSALS
        signals({t1 + k * H: {"BTC/USD": Action.BUY if k == 0 else Action.HOLD} for k in range(n + 2)})
        loop.run_cycle(t1)
        assert controls.force_exit(store, "BTC/USD", "telegram:op").ok
        venue.inject("POST /fapi/v1/order", -4131, times=None)
        for k in range(1, n + 2):
            clock.advance(hours=1)
            loop.run_cycle(t1 + k * H)
            status = store.control_requests("futures")[0]["status"]
            assert status == ("pending" if k < n else "failed"), (k, status)
        exits = _force_exits(store)
        assert len(exits) == n == len({cid for cid, _ in exits}) and {s for _, s in exits} == {"rejected"}
        req = store.control_requests("futures")[0]
        assert f"{n} exits refused" in req["result"] and "BTC/USD" in req["result"]
        [alert] = store.conn.execute("SELECT message FROM notifications WHERE kind='venue_alert' "
                                     "AND message LIKE '%forced exit%'").fetchall()
        assert "close the position on the venue" in alert[0]
        assert _held_on_venue(venue) != 0.0
        store.close()


def _reloaded_env(tmp, venue, **kw):
    return agent_env(tmp, **{**dict(
        TB_VENUE_FUTURES="binance", TB_BINANCE_FUTURES_URL=venue.url, TB_BINANCE_API_KEY="ck",
        TB_BINANCE_API_SECRET="cs", TB_FUTURES_SYMBOLS="BTC/USD", TB_SENTIMENT_SCORER="lexicon",
        TB_VENUE_TIMEOUT_S="2", TB_NOTIFY_CONSOLE="false", TB_MAX_CORRELATION="1.0", TB_VENUE_MAX_RETRIES="1",
        TB_FUTURES_BACKUP_VENUE="none", TB_REPLAY_START="2022-06-06T00:00:00Z", TB_FUTURES_VAR_LIMIT="10"), **kw})


def test_a_reload_of_rotated_api_keys_is_refused_and_asks_for_a_restart(tmp_path, signals):  # noqa: F811
    """The running venue broker signs with the clients it was built with: a reload cannot put new keys in use."""
    with FakeBinanceFutures("ck", "cs", wallet=10_000.0, prices=dict(PRICES)) as venue:
        loop, store, clock, t1 = _loop(tmp_path, venue, ["BTC/USD"])
        signals({t1: {"BTC/USD": Action.HOLD}})
        loop.settings_source = lambda: load_settings(environ=_reloaded_env(
            tmp_path, venue, TB_BINANCE_API_KEY="ck2", TB_BINANCE_API_SECRET="cs2", TB_VENUE_MAX_WAIT_S="7"),
            dotenv_path=None)
        controls.reload(store, ["futures"], "telegram:op")
        loop.run_cycle(t1)
        req = store.control_requests("futures")[0]
        assert req["status"] == "failed" and "needs a restart" in req["result"]
        assert {"TB_BINANCE_API_KEY", "TB_BINANCE_API_SECRET", "TB_VENUE_MAX_WAIT_S"} <= \
            set(req["result"].split(": ", 1)[1].split(", "))
        assert loop.s.binance_api_key == "ck"
        store.close()


def test_a_reload_of_the_volatility_stop_is_refused_and_asks_for_a_restart(tmp_path, signals):  # noqa: F811
    with FakeBinanceFutures("ck", "cs", wallet=10_000.0, prices=dict(PRICES)) as venue:
        loop, store, clock, t1 = _loop(tmp_path, venue, ["BTC/USD"], TB_FUTURES_VOL_STOP_MULT="0")
        signals({t1: {"BTC/USD": Action.HOLD}})
        loop.settings_source = lambda: load_settings(
            environ=_reloaded_env(tmp_path, venue, TB_FUTURES_VOL_STOP_MULT="3"), dotenv_path=None)
        controls.reload(store, ["futures"], "telegram:op")
        loop.run_cycle(t1)
        req = store.control_requests("futures")[0]
        assert req["status"] == "failed" and "TB_FUTURES_VOL_STOP_MULT" in req["result"]
        assert loop.s.futures_vol_stop_mult == 0.0 == loop.broker.vol_stop_mult
        store.close()


def test_every_setting_the_venue_broker_is_built_with_needs_a_restart():
    import inspect
    import re

    from tracer.agents.controls import RESTART_ONLY
    from tracer.config import Settings
    from tracer.execution import venue_factory

    fields = {f.name for f in dataclasses.fields(Settings)}
    derived = {"hybrid_venue": "venue_hybrid", "futures_venue": "venue_futures", "futures_backup": "futures_backup_venue"}
    read = set(re.findall(r"\bs\.(\w+)", inspect.getsource(venue_factory)))
    assert read, "venue_factory reads no setting?"
    names = {derived.get(n, n) for n in read}
    assert names <= fields, names - fields
    assert names - set(RESTART_ONLY) == set()
