"""LiveFeed over fake venues and news providers: bars from the chain, headlines deduped, and
never anything after ``now`` (not the still-forming bar, not a headline from the future)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from fakes.alpaca_data import FakeAlpacaData
from fakes.binance import FakeBinance
from fakes.perplexity import FakePerplexity
from fakes.yahoo import FakeYahoo
from tracer.config import load_settings
from tracer.data.factory import make_feed
from tracer.data.feed import Feed
from tracer.data.live import LiveFeed
from tracer.data.sources.binance import BinanceSource
from tracer.data.sources.chain import SourceChain
from tracer.data.sources.yahoo import YahooSource
from tracer.data.validation import validate_bars
from tracer.store import Store
from tracer.news.alpaca_news import AlpacaNews
from tracer.news.dedupe import HeadlineBook, parse_weights
from tracer.news.keys import KeyRing
from tracer.news.perplexity import PerplexityNews

H = timedelta(hours=1)
NOW = datetime(2024, 3, 1, 12, 20, tzinfo=timezone.utc)
NOW_S = int(NOW.timestamp())
KEY = "pplx-live-key-0001"


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def pplx_content(now: datetime) -> str:
    return json.dumps([
        {"title": "Bitcoin hits $70K", "source": "Reuters", "url": "", "published_at": iso(now - timedelta(minutes=50))},
        {"title": "Ether staking grows", "source": "CoinDesk", "url": "", "published_at": iso(now - timedelta(hours=3))},
        # from the future (model made it up, or a clock skew): must not show
        {"title": "Bitcoin to crash tomorrow", "source": "Blog", "url": "", "published_at": iso(now + timedelta(minutes=5))},
        # older than the window
        {"title": "Old news about Bitcoin", "source": "Old", "url": "", "published_at": iso(now - timedelta(days=3))},
    ])


def alpaca_items(now: datetime) -> list[dict]:
    return [{"id": 1, "headline": "Bitcoin Hits $70k - Benzinga", "source": "benzinga", "url": "",
             "created_at": iso(now - timedelta(minutes=40)), "symbols": ["BTCUSD"]},
            {"id": 2, "headline": "Ethereum fees at record low", "source": "benzinga", "url": "",
             "created_at": iso(now + timedelta(hours=1)), "symbols": ["ETHUSD"]}]


def build(bn_url: str, yh_url: str, px_url: str, alp_url: str, now_fn=None, lookback=48, min_bars=24):
    chain = SourceChain([BinanceSource("spot", bn_url), YahooSource(yh_url)])
    ring = KeyRing("perplexity", [KEY])
    news = [AlpacaNews("kid", "sec", base_url=alp_url), PerplexityNews(ring, base_url=px_url)]
    return LiveFeed(["BTC/USD", "ETH/USD", "DOGE/USD"], chain, news, interval=H, lookback=lookback,
                    min_bars=min_bars, max_staleness=timedelta(minutes=90),
                    book=HeadlineBook(parse_weights("alpaca=1,perplexity=0.8")))


def test_snapshot_bars_headlines_rejections_and_no_look_ahead():
    with FakeBinance(NOW_S) as bn, FakeYahoo(NOW_S, tickers=("BTC-USD",)) as yh, \
            FakePerplexity({KEY: ["ok"]}, content=pplx_content(NOW)) as px, \
            FakeAlpacaData(NOW_S, keys=("kid", "sec"), news=alpaca_items(NOW)) as alp:
        feed = build(bn.url, yh.url, px.url, alp.url)
        assert isinstance(feed, Feed)
        snap = feed.snapshot(NOW)
    # every symbol in exactly one of bars / rejected
    assert set(snap.bars) == {"BTC/USD", "ETH/USD"} and set(snap.rejected) == {"DOGE/USD"}
    assert snap.rejected["DOGE/USD"].startswith("no_source: binance_spot: unsupported")
    assert "yahoo: unsupported" in snap.rejected["DOGE/USD"]
    for sym, df in snap.bars.items():
        # the venues sent the bar opening at 12:00 (still forming at 12:20): it is not there
        assert df.index[-1] == pd.Timestamp("2024-03-01T11:00:00Z")
        assert int(df.index.asi8[-1]) // 10**9 + 3600 <= NOW_S
        assert df.attrs["source"] == "binance_spot" == feed.last_sources[sym]
        assert validate_bars(df, NOW, H, timedelta(minutes=90), 24) is None
    titles = [h.title for h in snap.headlines]
    # deduped across providers (alpaca's copy wins by weight), nothing after now, nothing too old
    assert titles == ["Ether staking grows", "Bitcoin Hits $70k - Benzinga"]
    assert all(h.published_at <= NOW for h in snap.headlines)
    assert snap.headlines[1].source == "alpaca/benzinga"


@pytest.mark.parametrize("now", [
    datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc),     # exactly at a close: the 11:00 bar is closed
    datetime(2024, 3, 1, 12, 0, 1, tzinfo=timezone.utc),
    datetime(2024, 3, 1, 12, 59, 59, tzinfo=timezone.utc),
])
def test_never_a_bar_closing_after_now(now):
    now_s = int(now.timestamp())
    # the venue's clock runs two hours ahead: it has bars that close after our now
    with FakeBinance(now_s + 7200) as bn, FakeYahoo(now_s) as yh:
        feed = LiveFeed(["BTC/USD"], SourceChain([BinanceSource("spot", bn.url), YahooSource(yh.url)]), [],
                        interval=H, lookback=30, min_bars=10, max_staleness=timedelta(minutes=90))
        snap = feed.snapshot(now)
    last_open = snap.bars["BTC/USD"].index[-1]
    assert last_open + H <= pd.Timestamp(now)
    assert last_open == pd.Timestamp("2024-03-01T11:00:00Z")


def test_second_cycle_does_not_repeat_stories():
    with FakeBinance(NOW_S) as bn, FakeYahoo(NOW_S) as yh, \
            FakePerplexity({KEY: ["ok"]}, content=pplx_content(NOW)) as px, \
            FakeAlpacaData(NOW_S, keys=("kid", "sec"), news=alpaca_items(NOW)) as alp:
        feed = build(bn.url, yh.url, px.url, alp.url)
        first = feed.snapshot(NOW)
        later = NOW + H
        bn.now = yh.now = int(later.timestamp())
        second = feed.snapshot(later)
        assert len([r for r in px.requests]) == 6  # asked again for each symbol in the next cycle
    assert [h.id for h in first.headlines] == [h.id for h in second.headlines[:2]]
    # the items that were in the future at NOW are in the past an hour later: they appear, once
    assert [h.title for h in second.headlines] == ["Ether staking grows", "Bitcoin Hits $70k - Benzinga",
                                                   "Bitcoin to crash tomorrow", "Ethereum fees at record low"]
    assert all(h.published_at <= later for h in second.headlines)
    assert second.bars["BTC/USD"].index[-1] == pd.Timestamp("2024-03-01T12:00:00Z")


def test_a_failing_news_provider_does_not_stop_the_snapshot():
    class Broken:
        name = "broken"

        def fetch(self, symbols, start, end):
            raise RuntimeError("provider exploded")

    with FakeBinance(NOW_S) as bn:
        feed = LiveFeed(["BTC/USD"], SourceChain([BinanceSource("spot", bn.url)]), [Broken()],
                        interval=H, lookback=30, min_bars=10)
        snap = feed.snapshot(NOW)
    assert "BTC/USD" in snap.bars and snap.headlines == []


def test_wall_clock_stepping_with_injected_clock_and_sleep():
    t = {"now": datetime(2024, 3, 1, 12, 20, tzinfo=timezone.utc)}
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        t["now"] += timedelta(seconds=s)

    feed = LiveFeed(["BTC/USD"], SourceChain([]), [], interval=H, lookback=30, min_bars=10,
                    clock=lambda: t["now"], sleep=sleep, settle=timedelta(seconds=5))
    first = feed.first_time()
    assert first == datetime(2024, 3, 1, 12, tzinfo=timezone.utc)
    nxt = feed.next_time(first)
    assert nxt == datetime(2024, 3, 1, 13, tzinfo=timezone.utc)
    assert slept == [pytest.approx(40 * 60 + 5)] and t["now"] >= nxt
    assert feed.last_time() is None
    # asked to resume from long ago (a restart, a replay start date): it jumps to the present
    slept.clear()
    assert feed.next_time(datetime(2022, 1, 10, tzinfo=timezone.utc)) == datetime(2024, 3, 1, 13, tzinfo=timezone.utc)
    assert slept == []
    with pytest.raises(ValueError):
        feed.snapshot(datetime(2024, 3, 1, 12))  # naive


def test_make_feed_live_from_settings(tmp_path):
    with FakeBinance(NOW_S) as bn, FakeYahoo(NOW_S) as yh, \
            FakePerplexity({KEY: [401], "pplx-second-key-2": ["ok"]}, content=pplx_content(NOW)) as px:
        env = {"TB_FEED": "live", "TB_BAR_SOURCES": "yahoo,binance_spot", "TB_NEWS_SOURCES": "alpaca,perplexity",
               "TB_YAHOO_URL": yh.url, "TB_BINANCE_SPOT_URL": bn.url, "TB_PPLX_URL": px.url,
               "PPLX_API_KEY_1": KEY, "PPLX_API_KEY_2": "pplx-second-key-2",
               "TB_DB_PATH": str(tmp_path / "live.db"), "TB_LOOKBACK_BARS": "60", "TB_MIN_BARS": "30",
               "TB_PROFILE": "phase1c"}     # a 60-bar window: the seed's hourly model (trend needs 240 bars)
        s = load_settings(env, dotenv_path=None)
        store = Store(s.db_path)
        feed = make_feed(s, ["BTC/USD"], store=store)
        snap = feed.snapshot(NOW)
        assert [c[1] for c in px.calls] == [401, 200]
    assert isinstance(feed, LiveFeed) and [x.name for x in feed.chain.sources] == ["yahoo", "binance_spot"]
    assert [n.name for n in feed.news] == ["perplexity"]  # alpaca news needs keys: left out
    assert snap.bars["BTC/USD"].attrs["source"] == "yahoo" and len(snap.bars["BTC/USD"]) == 60
    assert [h.title for h in snap.headlines] == ["Ether staking grows", "Bitcoin hits $70K"]
    assert store.conn.execute("SELECT last_status FROM api_keys").fetchone()[0] == 401
    with pytest.raises(ValueError, match="TB_BAR_SOURCES"):
        make_feed(load_settings({**env, "TB_BAR_SOURCES": "alpaca,nasdaq"}, dotenv_path=None), ["BTC/USD"],
                  store=store)
