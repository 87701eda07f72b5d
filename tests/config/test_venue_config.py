"""Venue selection and the live-trading guard (tracer.config venue settings)."""
from __future__ import annotations

import pytest

from tracer.config import ConfigError, load_settings
from tracer.execution.venue import is_local_url, is_test_url
from tracer.execution.venue_factory import venue_names

KEYS = {"TB_BINANCE_API_KEY": "bk", "TB_BINANCE_API_SECRET": "bs", "TB_BYBIT_API_KEY": "yk",
        "TB_BYBIT_API_SECRET": "ys", "TB_ALPACA_API_KEY": "ak", "TB_ALPACA_SECRET_KEY": "as"}


def load(env):
    return load_settings(environ=env, dotenv_path=None)


def test_offline_default_is_paper_even_with_keys():
    s = load(dict(KEYS))
    assert (s.hybrid_venue, s.futures_venue, s.futures_backup) == ("paper", "paper", None)
    assert venue_names(s, "hybrid") == [] and venue_names(s, "futures") == []


def test_keys_and_live_feed_switch_on_the_test_venues():
    s = load(dict(KEYS, TB_FEED="live"))
    assert s.hybrid_venue == "alpaca"
    assert s.futures_venue == "binance" and s.futures_backup == "bybit"
    assert venue_names(s, "futures") == ["binance", "bybit"]
    assert "testnet" in s.binance_futures_url and "paper" in s.alpaca_trading_url and "testnet" in s.bybit_url


def test_bybit_alone_is_the_main_venue_and_no_backup_without_keys():
    env = {"TB_FEED": "live", "TB_BYBIT_API_KEY": "k", "TB_BYBIT_API_SECRET": "s"}
    s = load(env)
    assert s.futures_venue == "bybit" and s.futures_backup is None
    s = load(dict(env, TB_VENUE_FUTURES="paper"))
    assert s.futures_venue == "paper" and s.futures_backup is None


@pytest.mark.parametrize("var,url", [("TB_BINANCE_FUTURES_URL", "https://fapi.binance.com"),
                                     ("TB_ALPACA_TRADING_URL", "https://api.alpaca.markets"),
                                     ("TB_BYBIT_URL", "https://api.bybit.com")])
def test_live_url_refused_without_explicit_yes(var, url):
    venue = {"TB_BINANCE_FUTURES_URL": ("TB_VENUE_FUTURES", "binance"),
             "TB_ALPACA_TRADING_URL": ("TB_VENUE_HYBRID", "alpaca"),
             "TB_BYBIT_URL": ("TB_VENUE_FUTURES", "bybit")}[var]
    env = dict(KEYS, TB_FEED="live", **{var: url, venue[0]: venue[1]})
    with pytest.raises(ConfigError) as e:
        load(env)
    assert var in str(e.value) and "TB_LIVE_TRADING=yes" in str(e.value)
    s = load(dict(env, TB_LIVE_TRADING="yes"))
    assert getattr(s, {"TB_BINANCE_FUTURES_URL": "binance_futures_url", "TB_ALPACA_TRADING_URL":
                       "alpaca_trading_url", "TB_BYBIT_URL": "bybit_url"}[var]) == url


def test_live_url_of_an_unused_venue_is_not_refused():
    s = load({"TB_BINANCE_FUTURES_URL": "https://fapi.binance.com"})    # paper futures: the URL is not used
    assert s.futures_venue == "paper"


def test_explicit_venue_without_keys_names_the_key():
    with pytest.raises(ConfigError) as e:
        load({"TB_FEED": "live", "TB_VENUE_FUTURES": "binance"})
    assert "TB_BINANCE_API_KEY is missing" in str(e.value)


def test_real_venue_on_the_replay_is_refused_but_a_local_test_venue_is_allowed():
    with pytest.raises(ConfigError) as e:
        load(dict(KEYS, TB_VENUE_FUTURES="binance"))
    assert "TB_FEED" in str(e.value)
    # the backup venue (bybit has keys) is checked too: on a real URL it would take replayed entries
    with pytest.raises(ConfigError) as e:
        load(dict(KEYS, TB_VENUE_FUTURES="binance", TB_BINANCE_FUTURES_URL="http://127.0.0.1:9"))
    assert "TB_FEED" in str(e.value) and "bybit" in str(e.value)
    s = load(dict(KEYS, TB_VENUE_FUTURES="binance", TB_BINANCE_FUTURES_URL="http://127.0.0.1:9",
                  TB_BYBIT_URL="http://127.0.0.1:8"))
    assert s.futures_venue == "binance" and s.futures_backup == "bybit"
    s = load(dict(KEYS, TB_VENUE_FUTURES="binance", TB_BINANCE_FUTURES_URL="http://127.0.0.1:9",
                  TB_FUTURES_BACKUP_VENUE="none"))
    assert s.futures_venue == "binance" and s.futures_backup is None


def test_secret_without_its_pair_is_refused():
    with pytest.raises(ConfigError) as e:
        load({"TB_BYBIT_API_KEY": "k"})
    assert "TB_BYBIT_API_SECRET is missing" in str(e.value)


def test_url_classification():
    assert is_local_url("http://127.0.0.1:8080") and is_local_url("http://localhost/x")
    assert not is_local_url("https://fapi.binance.com")
    assert is_test_url("binance", "https://testnet.binancefuture.com")
    assert not is_test_url("binance", "https://fapi.binance.com")
    assert is_test_url("alpaca", "https://paper-api.alpaca.markets/")
    assert not is_test_url("alpaca", "https://api.alpaca.markets")
    assert not is_test_url("bybit", "https://api.bybit.com") and is_test_url("bybit", "https://api-testnet.bybit.com")


def test_health_check_probes_the_configured_venue_and_reports_venue_events(tmp_path):
    from fakes.binance_futures_venue import FakeBinanceFutures
    from tracer.ops.health import health as run_health
    from tracer.store import Store
    with FakeBinanceFutures("k", "s") as venue:
        s = load(dict(KEYS, TB_VENUE_FUTURES="binance", TB_BINANCE_FUTURES_URL=venue.url,
                      TB_FUTURES_BACKUP_VENUE="none", TB_DB_PATH=str(tmp_path / "t.db"), TB_STATE_DIR=str(tmp_path)))
        store = Store(s.db_path)
        checks = {c.name: c for c in run_health(s)}
        assert checks["venue[binance]"].level == 0 and venue.url in checks["venue[binance]"].message
        assert checks["venue_events"].level == 0
        with store.transaction():
            store.insert_venue_event("futures", "binance", "ip_banned", detail={"until": "later"})
            store.insert_venue_event("futures", "binance", "rate_limited", detail={})
        store.close()
        checks = {c.name: c for c in run_health(s)}
        assert checks["venue_events"].level == 1 and "ip_banned x1" in checks["venue_events"].message
        assert "rate_limited" not in checks["venue_events"].message      # routine: no attention needed
        venue.down()
        checks = {c.name: c for c in run_health(s)}
        assert checks["venue[binance]"].level == 1 and "UNREACHABLE" in checks["venue[binance]"].message


_URLS = {"binance": ("TB_BINANCE_FUTURES_URL", "https://testnet.binancefuture.com", "https://fapi.binance.com"),
         "bybit": ("TB_BYBIT_URL", "https://api-testnet.bybit.com", "https://api.bybit.com")}


@pytest.mark.parametrize("main", ["binance", "bybit"])
@pytest.mark.parametrize("main_live", [False, True])
@pytest.mark.parametrize("backup_live", [None, False, True])      # None: no backup venue
@pytest.mark.parametrize("live_trading", ["no", "yes"])
def test_live_gate_covers_the_main_and_the_backup_venue(main, main_live, backup_live, live_trading):
    """Every combination: a live URL on any venue the futures agent may touch (its backup included, which
    takes entries on a failover) needs TB_LIVE_TRADING=yes; the error names the variable of that URL."""
    backup = "bybit" if main == "binance" else "binance"
    env = dict(KEYS, TB_FEED="live", TB_VENUE_FUTURES=main, TB_LIVE_TRADING=live_trading,
               TB_FUTURES_BACKUP_VENUE="none" if backup_live is None else backup)
    var, test_url, live_url = _URLS[main]
    env[var] = live_url if main_live else test_url
    if backup_live is not None:
        bvar, btest, blive = _URLS[backup]
        env[bvar] = blive if backup_live else btest
    live_used = [main] * main_live + [backup] * bool(backup_live)
    if live_used and live_trading != "yes":
        with pytest.raises(ConfigError) as e:
            load(env)
        for v in live_used:
            assert _URLS[v][0] in str(e.value) and "TB_LIVE_TRADING=yes" in str(e.value)
        return
    s = load(env)
    assert venue_names(s, "futures") == [main] + ([backup] if backup_live is not None else [])
    from tracer.execution.venue_factory import make_client
    clients = [make_client(s, v) for v in venue_names(s, "futures")]
    assert [not c.is_test_venue for c in clients] == [main_live] + ([bool(backup_live)] if backup_live is not None else [])


def test_venue_broker_refuses_a_live_client_that_bypassed_the_config_check(tmp_path):
    """Defence in depth: settings that reach the factory without passing venue_problems (e.g. changed after
    loading) still cannot build a real-money broker without TB_LIVE_TRADING=yes."""
    import dataclasses
    import logging
    from datetime import timedelta
    from tracer.store import Store
    from tracer.execution.venue_factory import make_venue_broker
    s = load(dict(KEYS, TB_FEED="live", TB_VENUE_FUTURES="binance"))
    s = dataclasses.replace(s, bybit_url="https://api.bybit.com")           # the backup turned live
    store = Store(tmp_path / "t.db")
    with pytest.raises(ValueError, match="bybit without TB_LIVE_TRADING=yes"):
        make_venue_broker(s, "futures", store, logging.getLogger("t"), timedelta(hours=1))
    s = dataclasses.replace(s, live_trading="yes")
    assert make_venue_broker(s, "futures", store, logging.getLogger("t"), timedelta(hours=1)) is not None


def test_health_check_signs_a_request_with_the_keys_and_reads_the_venue_clock(tmp_path):
    """venue_auth[binance] through the agents' own client against the fake venue: the right keys pass with the
    clock offset shown; a wrong secret is critical ("keys refused")."""
    from fakes.binance_futures_venue import FakeBinanceFutures
    from tracer.ops.checks import venue_auth
    with FakeBinanceFutures("k", "s") as venue:
        env = dict(KEYS, TB_VENUE_FUTURES="binance", TB_BINANCE_FUTURES_URL=venue.url, TB_FUTURES_BACKUP_VENUE="none",
                   TB_VENUE_HYBRID="paper", TB_BINANCE_API_KEY="k", TB_BINANCE_API_SECRET="s")
        [ok] = venue_auth(load(env))
        assert ok.name == "venue_auth[binance]" and ok.level == 0, ok.message
        assert "keys work" in ok.message and "s off the venue's" in ok.message
        [bad] = venue_auth(load(dict(env, TB_BINANCE_API_SECRET="wrong")))
        assert bad.level == 2 and "KEYS REFUSED" in bad.message and "wrong" not in bad.message
