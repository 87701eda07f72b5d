"""Bar sources against fake venues on 127.0.0.1 (real SDK clients / requests over HTTP), the
failover chain and the circuit breaker."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from fakes.alpaca_data import FakeAlpacaData
from fakes.binance import FakeBinance
from fakes.coingecko import OFFSET_S, FakeCoinGecko
from fakes.market import bar, price
from fakes.yahoo import FakeYahoo
from tracer.data.sources.alpaca import AlpacaSource
from tracer.data.sources.base import CircuitBreaker, SourceError, UnsupportedSymbol
from tracer.data.sources.binance import BinanceSource, binance_interval
from tracer.data.sources.chain import ChainFailure, SourceChain
from tracer.data.sources.coingecko import CoinGeckoSource, bars_from_points
from tracer.data.sources.yahoo import YahooSource
from tracer.data.validation import validate_bars
from tracer.symbols import (alpaca_news_symbol, base_of, binance_symbol, canonical, coingecko_id, display_name,
                            yahoo_symbol)

H = timedelta(hours=1)
NOW = datetime(2024, 3, 1, 12, 20, tzinfo=timezone.utc)   # the 12:00 bar is still forming
NOW_S = int(NOW.timestamp())
LAST_CLOSED = datetime(2024, 3, 1, 11, tzinfo=timezone.utc)  # open time of the last closed bar


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def fetch_chain(chain: SourceChain, symbol: str = "BTC/USD", now: datetime = NOW, lookback: int = 48):
    return chain.fetch(symbol, now, H, lookback, min_bars=24, max_staleness=timedelta(minutes=90))


def expected_frame(symbol_key: str, times: pd.DatetimeIndex, offset: float = 0.0) -> np.ndarray:
    out = []
    for t in times:
        o, h, lo, c, v = bar(symbol_key, int(t.timestamp()))
        out.append((o + offset, h + offset, lo + offset, c + offset, v))
    return np.array(out)


def assert_canonical(df: pd.DataFrame) -> None:
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC" and df.index.name == "ts"
    assert all(df.dtypes == np.float64)


# --------------------------------------------------------------------------- symbols

def test_symbol_notations_map_in_one_place():
    for s in ("BTC/USD", "BTCUSDT", "BTC-USD", "btc", "BTCUSD"):
        assert canonical(s) == "BTC/USD" and base_of(s) == "BTC"
    assert binance_symbol("ETH/USD") == "ETHUSDT"
    assert yahoo_symbol("ETHUSDT") == "ETH-USD"
    assert alpaca_news_symbol("SOL-USD") == "SOLUSD"
    assert coingecko_id("AVAX/USD") == "avalanche-2" and coingecko_id("BTC/USD") == "bitcoin"
    assert coingecko_id("NOPE/USD") is None
    assert display_name("AVAX/USD") == "Avalanche" and display_name("XYZ/USD") == "XYZ"


# --------------------------------------------------------------------------- each source

def test_alpaca_bars_through_the_sdk_with_pagination():
    with FakeAlpacaData(NOW_S, page_size=20) as fake:
        src = AlpacaSource("key-id", "secret", base_url=fake.url)
        raw = src.fetch("BTC/USD", H, NOW - 48 * H, NOW)
        # three pages followed by the SDK, each a real HTTP request to the v1beta3 path
        bar_reqs = [r for r in fake.requests if r.path == "/v1beta3/crypto/us/bars"]
        assert len(bar_reqs) == 3 and bar_reqs[0].query["symbols"] == "BTC/USD"
        assert bar_reqs[0].query["timeframe"] == "1Hour"
        assert bar_reqs[1].query["page_token"] == "20"
        assert bar_reqs[0].headers["APCA-API-KEY-ID"] == "key-id"
        chain = SourceChain([src])
        got = fetch_chain(chain)
    assert_canonical(raw)
    assert raw.index[-1] == pd.Timestamp("2024-03-01T12:00:00Z")  # the venue sent the forming bar
    assert got.source == "alpaca" and got.bars.attrs["source"] == "alpaca"
    assert got.bars.index[-1] == pd.Timestamp(LAST_CLOSED) and len(got.bars) == 48
    np.testing.assert_allclose(got.bars.to_numpy(), expected_frame("BTC/USD", got.bars.index))


@pytest.mark.parametrize("market,path,offset", [("spot", "/api/v3/klines", 0.0), ("usdm", "/fapi/v1/klines", 5.0)])
def test_binance_klines_spot_and_usdm(market, path, offset):
    with FakeBinance(NOW_S) as fake:
        src = BinanceSource(market, fake.url, page_limit=30)  # 30 per page -> 2 pages for 48 bars
        got = fetch_chain(SourceChain([src]))
        reqs = [r for r in fake.requests]
    assert {r.path for r in reqs} == {path} and len(reqs) == 2
    assert reqs[0].query["symbol"] == "BTCUSDT" and reqs[0].query["interval"] == "1h"
    assert int(reqs[1].query["startTime"]) == int(reqs[0].query["startTime"]) + 30 * 3600 * 1000
    assert got.source == f"binance_{market}"
    assert_canonical(got.bars)
    assert got.bars.index[0] == pd.Timestamp(LAST_CLOSED - 47 * H) and got.bars.index[-1] == pd.Timestamp(LAST_CLOSED)
    np.testing.assert_allclose(got.bars.to_numpy(), expected_frame("BTCUSDT", got.bars.index, offset))


def test_binance_unknown_symbol_is_unsupported_not_a_failure():
    with FakeBinance(NOW_S) as fake:
        src = BinanceSource("spot", fake.url)
        with pytest.raises(UnsupportedSymbol):
            src.fetch("DOGE/USD", H, NOW - 10 * H, NOW)
        chain = SourceChain([src], threshold=1)
        with pytest.raises(ChainFailure) as ei:
            fetch_chain(chain, "DOGE/USD")
    assert "unsupported" in ei.value.reason
    assert chain.breakers["binance_spot"].state == "closed"
    with pytest.raises(ValueError):
        binance_interval(timedelta(minutes=7))


def test_yahoo_chart_drops_the_forming_bar_stamped_with_the_last_trade():
    with FakeYahoo(NOW_S) as fake:
        src = YahooSource(fake.url)
        raw = src.fetch("BTC/USD", H, NOW - 48 * H, NOW)
        got = fetch_chain(SourceChain([src]))
        assert fake.requests[0].path == "/v8/finance/chart/BTC-USD"
        assert fake.requests[0].query["interval"] == "1h"
        assert "Mozilla" in fake.requests[0].headers["User-Agent"]
    assert raw.index[-1] == pd.Timestamp(NOW)  # misaligned forming bar, as Yahoo sends it
    assert got.source == "yahoo" and got.bars.index[-1] == pd.Timestamp(LAST_CLOSED)
    np.testing.assert_allclose(got.bars.to_numpy(), expected_frame("BTC-USD", got.bars.index))


def test_yahoo_null_values_fail_validation():
    with FakeYahoo(NOW_S, mode="nulls") as fake:
        with pytest.raises(ChainFailure) as ei:
            fetch_chain(SourceChain([YahooSource(fake.url)]))
    assert ei.value.attempts[0][1].startswith("invalid: nan_price")


def test_coingecko_bars_built_from_price_points():
    with FakeCoinGecko(NOW_S) as fake:
        src = CoinGeckoSource(fake.url)
        got = fetch_chain(SourceChain([src]))
        req = fake.requests[0]
    assert req.path == "/api/v3/coins/bitcoin/market_chart/range" and req.query["vs_currency"] == "usd"
    df = got.bars
    assert got.source == "coingecko" and df.index[-1] == pd.Timestamp(LAST_CLOSED) and len(df) == 48
    for t, row in df.iterrows():
        s = int(t.timestamp())
        close = price("bitcoin", s + OFFSET_S)
        prev_close = price("bitcoin", s - 3600 + OFFSET_S)
        assert row["close"] == pytest.approx(close) and row["open"] == pytest.approx(prev_close)
        assert row["high"] == pytest.approx(max(close, prev_close))
        assert row["low"] == pytest.approx(min(close, prev_close))
        assert row["volume"] == pytest.approx(24_000_000.0 / 24 / close)
    assert validate_bars(df, NOW, H, timedelta(minutes=90), 48) is None


def test_coingecko_points_rules_pure():
    # two points in the first hour, none in the second, one in the third
    ts, rows = bars_from_points([[0, 10.0], [1_800_000, 12.0], [7_300_000, 11.0]], [[0, 2400.0]], 3600)
    assert ts == [0, 7_200_000 * 1_000_000]
    assert rows[0] == (10.0, 12.0, 10.0, 12.0, pytest.approx(2400.0 / 24 / 12.0))
    assert rows[1] == (11.0, 11.0, 11.0, 11.0, 0.0)  # previous bucket empty: open = own first price
    with pytest.raises((TypeError, ValueError)):
        bars_from_points([[0, None]], [], 3600)


def test_coingecko_unknown_asset_is_unsupported():
    with FakeCoinGecko(NOW_S) as fake:
        with pytest.raises(UnsupportedSymbol):
            CoinGeckoSource(fake.url).fetch("NOPE/USD", H, NOW - 5 * H, NOW)
        assert fake.requests == []  # no id: not even asked


# --------------------------------------------------------------------------- failover

@pytest.mark.parametrize("mode,reason", [
    ("500", "http 500"),
    ("malformed", "malformed"),
    ("high_below_low", "invalid: high_below_low at 2024-03-01T10:00:00Z"),
    ("gap", "invalid: gap: 2024-03-01T08:00:00Z -> 2024-03-01T09:00:00Z (1 bars)"),
])
def test_failover_to_the_second_source_records_why(mode, reason):
    with FakeAlpacaData(NOW_S, mode=mode) as alp, FakeBinance(NOW_S) as bn:
        chain = SourceChain([AlpacaSource(base_url=alp.url), BinanceSource("spot", bn.url)])
        got = fetch_chain(chain)
        assert len(alp.requests) >= 1 and len(bn.requests) >= 1
    assert got.source == "binance_spot" and got.bars.attrs["source"] == "binance_spot"
    assert got.attempts[0][0] == "alpaca" and got.attempts[0][1].startswith(reason), got.attempts
    assert chain.breakers["alpaca"].failures == 1 and chain.breakers["binance_spot"].failures == 0
    assert validate_bars(got.bars, NOW, H, timedelta(minutes=90), 24) is None


@pytest.mark.parametrize("fake_cls,make", [
    (FakeBinance, lambda url: BinanceSource("usdm", url)),
    (FakeYahoo, lambda url: YahooSource(url)),
    (FakeCoinGecko, lambda url: CoinGeckoSource(url)),
])
def test_every_source_reports_5xx_and_malformed_as_source_errors(fake_cls, make):
    for mode, prefix in (("500", "http 5"), ("malformed", "malformed")):
        with fake_cls(NOW_S, mode=mode) as fake:
            with pytest.raises(SourceError) as ei:
                make(fake.url).fetch("BTC/USD", H, NOW - 30 * H, NOW)
        assert not isinstance(ei.value, UnsupportedSymbol)
        assert ei.value.reason.startswith(prefix), ei.value.reason


def test_stale_or_short_data_counts_as_failure():
    # the venue's clock is 5 hours behind: its last bar is stale at NOW
    with FakeBinance(NOW_S - 5 * 3600) as bn, FakeYahoo(NOW_S) as yh:
        got = fetch_chain(SourceChain([BinanceSource("spot", bn.url), YahooSource(yh.url)]))
    assert got.source == "yahoo" and got.attempts[0][1].startswith("invalid: stale")


def test_all_sources_failing_names_every_reason():
    with FakeAlpacaData(NOW_S, mode="500") as alp, FakeBinance(NOW_S, mode="high_below_low") as bn:
        chain = SourceChain([AlpacaSource(base_url=alp.url), BinanceSource("spot", bn.url)])
        with pytest.raises(ChainFailure) as ei:
            fetch_chain(chain)
    assert [s for s, _ in ei.value.attempts] == ["alpaca", "binance_spot"]
    assert ei.value.reason.startswith("no_source: alpaca: http 500; binance_spot: invalid: high_below_low")


def test_connection_refused_is_a_failure_not_a_crash():
    with FakeBinance(NOW_S) as bn:
        dead = FakeYahoo(NOW_S)
        with dead:
            url = dead.url
        got = fetch_chain(SourceChain([YahooSource(url, timeout_s=2), BinanceSource("spot", bn.url)]))
    assert got.source == "binance_spot" and got.attempts[0][1].startswith("request failed")


# --------------------------------------------------------------------------- circuit breaker

def test_breaker_opens_after_n_failures_skips_during_cooldown_and_closes_after():
    clock = Clock()
    with FakeAlpacaData(NOW_S, mode="500") as alp, FakeBinance(NOW_S) as bn:
        chain = SourceChain([AlpacaSource(base_url=alp.url), BinanceSource("spot", bn.url)],
                            threshold=3, cooldown_s=60, clock=clock)
        br = chain.breakers["alpaca"]
        for i in range(3):
            assert fetch_chain(chain).source == "binance_spot"
            assert len(alp.requests) == i + 1
        assert br.state == "open" and br.failures == 3
        # during the cool-down alpaca is not even asked
        clock.t += 59
        got = fetch_chain(chain)
        assert len(alp.requests) == 3 and got.source == "binance_spot"
        assert got.attempts[0][0] == "alpaca" and got.attempts[0][1].startswith("circuit_open")
        # cool-down over: one trial; alpaca recovered, the breaker closes
        clock.t += 2
        assert br.state == "half_open"
        alp.mode = "ok"
        got = fetch_chain(chain)
        assert got.source == "alpaca" and len(alp.requests) == 4
        assert br.state == "closed" and br.failures == 0


def test_breaker_failed_trial_reopens_for_another_cooldown():
    clock = Clock()
    br = CircuitBreaker(threshold=2, cooldown_s=10, clock=clock)
    br.record_failure("x")
    assert br.allow() and br.state == "closed"
    br.record_failure("x")
    assert not br.allow() and br.state == "open" and br.remaining_s() == 10
    clock.t += 10
    assert br.allow() and br.state == "half_open"
    br.record_failure("still down")  # one failure in half-open is enough
    assert br.state == "open" and not br.allow() and br.last_reason == "still down"
    clock.t += 10
    assert br.allow()
    br.record_success()
    assert br.state == "closed" and br.failures == 0
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=0)


def test_an_empty_answer_is_unsupported_and_does_not_trip_the_breaker():
    from tracer.data.sources.base import empty_frame

    class Empty:
        name = "empty"
        calls = 0

        def fetch(self, symbol, interval, start, end):
            Empty.calls += 1
            return empty_frame()

    with FakeBinance(NOW_S) as bn:
        chain = SourceChain([Empty(), BinanceSource("spot", bn.url)], threshold=1)
        for _ in range(3):
            got = fetch_chain(chain)
            assert got.source == "binance_spot"
            assert got.attempts == (("empty", "unsupported: no bars for this symbol"),)
    assert Empty.calls == 3 and chain.breakers["empty"].state == "closed"


def test_a_bug_inside_a_source_is_a_failure_of_that_source_only():
    class Buggy:
        name = "buggy"

        def fetch(self, symbol, interval, start, end):
            raise KeyError("surprise")

    with FakeYahoo(NOW_S) as yh:
        chain = SourceChain([Buggy(), YahooSource(yh.url)], threshold=1)
        got = fetch_chain(chain)
    assert got.source == "yahoo" and got.attempts == (("buggy", "error: KeyError"),)
    assert chain.breakers["buggy"].state == "open"
