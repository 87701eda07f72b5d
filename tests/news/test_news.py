"""Headlines: Perplexity (tolerant parsing, key rotation persisted in SQLite, no key leaks),
Alpaca news through the SDK, and dedupe across sources and cycles. Real HTTP to fakes on 127.0.0.1."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from fakes.alpaca_data import FakeAlpacaData
from fakes.perplexity import FakePerplexity
from tracer.store import Store
from tracer.models import Headline
from tracer.news.alpaca_news import AlpacaNews
from tracer.news.dedupe import HeadlineBook, dedupe, normalise_title, parse_weights, source_weight
from tracer.news.keys import KeyRing, NoKeyAvailable, key_id, parse_retry_after
from tracer.news.perplexity import PerplexityNews, extract_items, parse_headlines

END = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
START = END - timedelta(hours=24)
T0 = END.timestamp()
K1, K2, K3 = "pplx-key-one-0001", "pplx-key-two-0002", "pplx-key-three-0003"

GOOD = json.dumps([
    {"title": "Bitcoin ETF inflows hit record", "source": "Reuters", "url": "https://r.example/1",
     "published_at": "2024-03-01T09:30:00Z"},
    {"title": "Ether rallies as staking grows", "source": "CoinDesk", "url": "https://c.example/2",
     "published_at": "2024-03-01T10:00:00+00:00"},
])


class Clock:
    """Wall clock (epoch seconds) with a sleep that advances it: no real waiting in tests."""

    def __init__(self, t: float = T0):
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def make_news(url: str, keys, store=None, clock: Clock | None = None, **kw) -> tuple[PerplexityNews, Clock]:
    clock = clock or Clock()
    ring = KeyRing("perplexity", keys, store, clock=clock, auth_cooldown_s=6 * 3600, error_cooldown_s=60)
    return PerplexityNews(ring, base_url=url, sleep=clock.sleep, **kw), clock


def api_rows(store: Store) -> dict[str, dict]:
    return {r["key_id"]: dict(r) for r in store.conn.execute("SELECT * FROM api_keys WHERE provider='perplexity'")}


# --------------------------------------------------------------------------- parsing

def test_parse_plain_json_array():
    hs = parse_headlines(GOOD, END)
    assert [h.title for h in hs] == ["Bitcoin ETF inflows hit record", "Ether rallies as staking grows"]
    assert hs[0].source == "perplexity/Reuters" and hs[0].url == "https://r.example/1"
    assert hs[0].published_at == datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc)
    assert len({h.id for h in hs}) == 2


def test_parse_code_fence_and_prose_around():
    text = f"Sure! Here are the latest headlines:\n```json\n{GOOD}\n```\nLet me know if you need more."
    assert [h.title for h in parse_headlines(text, END)] == [h.title for h in parse_headlines(GOOD, END)]
    prose = f"Here you go: {GOOD} (sources: [1], [2])"
    assert len(parse_headlines(prose, END)) == 2


def test_parse_drops_malformed_items_and_keeps_the_rest():
    items = [
        {"title": "Solana outage resolved", "source": "The Block", "published_at": "2024-03-01T08:00:00Z"},
        {"title": "", "published_at": "2024-03-01T08:00:00Z"},            # empty title
        {"source": "X", "published_at": "2024-03-01T08:00:00Z"},          # no title
        {"title": "No time given"},                                       # no published_at
        {"title": "Bad time", "published_at": "yesterday-ish"},           # unparsable time
        {"title": 42, "published_at": "2024-03-01T08:00:00Z"},            # title not text
        "just a string", 7, None,
        {"title": "Bare date", "source": None, "published_at": "2024-03-01"},
        {"title": "Naive time", "published_at": "2024-02-29T23:00:00"},
    ]
    hs = parse_headlines(json.dumps(items), END)
    assert [h.title for h in hs] == ["Solana outage resolved", "Bare date", "Naive time"]
    # a bare date is placed at the end of that day, but never after the request's end
    assert hs[1].published_at == END and hs[1].source == "perplexity"
    assert hs[2].published_at == datetime(2024, 2, 29, 23, tzinfo=timezone.utc)


def test_parse_truncated_array_and_wrapper_object():
    truncated = GOOD[: GOOD.index("Ether") + 20]   # the answer was cut mid-item
    hs = parse_headlines(truncated, END)
    assert [h.title for h in hs] == ["Bitcoin ETF inflows hit record"]
    wrapped = json.dumps({"headlines": json.loads(GOOD)})
    assert len(parse_headlines(wrapped, END)) == 2


@pytest.mark.parametrize("text", ["", "no json here", "[", "{]", "[1, 2, 3]", '{"title": ', "```json\n```",
                                  "null", '[{"title": null}]', "\x00\xff"])
def test_parse_garbage_gives_nothing(text):
    assert parse_headlines(text, END) == []


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_never_raises_on_any_text(text):
    assert isinstance(parse_headlines(text, END), list)
    assert isinstance(extract_items(text), list)


# --------------------------------------------------------------------------- Perplexity over HTTP

def test_perplexity_success_request_shape(tmp_path):
    with FakePerplexity({K1: ["ok"]}, content=f"```json\n{GOOD}\n```") as fake:
        news, _ = make_news(fake.url, [K1])
        hs = news.fetch(["BTC/USD"], START, END)
        body = fake.bodies[0]
        auth = fake.requests[0].headers["Authorization"]
    assert [h.source for h in hs] == ["perplexity/Reuters", "perplexity/CoinDesk"]
    assert body["model"] == "sonar" and body["search_recency_filter"] == "day"
    prompt = body["messages"][-1]["content"]
    assert "Bitcoin (BTC)" in prompt and "JSON array" in prompt and "published_at" in prompt
    assert auth == f"Bearer {K1}"


def test_401_rotates_to_the_next_key_and_cools_the_bad_one_longer_than_5xx(tmp_path):
    store = Store(tmp_path / "t.db")
    with FakePerplexity({K1: [401], K2: [503, "ok"], K3: ["ok"]}, content=GOOD) as fake:
        news, clock = make_news(fake.url, [K1, K2, K3], store)
        hs = news.fetch(["BTC/USD"], START, END)
        assert fake.calls == [(K1, 401), (K2, 503), (K3, 200)]
    assert len(hs) == 2
    ring = news.ring
    assert ring.state(K1).cooldown_until == pytest.approx(T0 + 6 * 3600)
    assert ring.state(K2).cooldown_until == pytest.approx(T0 + 60)
    assert ring.available() == [K3]
    rows = api_rows(store)
    assert rows[key_id(K1)]["last_status"] == 401 and rows[key_id(K1)]["failures"] == 1
    assert rows[key_id(K1)]["cooldown_until"] == "2024-03-01T18:00:00.000000Z"
    assert rows[key_id(K2)]["last_status"] == 503 and rows[key_id(K2)]["cooldown_until"].startswith("2024-03-01T12:01:00")
    # 5xx again on the same key doubles its cool-down
    clock.t += 61
    assert ring.report_failure(K2, 500) == 120


def test_429_honours_retry_after_with_one_key(tmp_path):
    store = Store(tmp_path / "t.db")
    with FakePerplexity({K1: [(429, "7"), "ok"]}, content=GOOD) as fake:
        news, clock = make_news(fake.url, [K1], store)
        hs = news.fetch(["ETH/USD"], START, END)
        assert fake.calls == [(K1, 429), (K1, 200)]
    assert clock.slept == [pytest.approx(7.0)] and len(hs) == 2
    # the key was cooled for exactly the Retry-After, then used again and reset by the success
    assert api_rows(store)[key_id(K1)]["last_status"] == 200 and api_rows(store)[key_id(K1)]["failures"] == 0


def test_429_with_two_keys_rotates_and_cools_for_retry_after(tmp_path):
    with FakePerplexity({K1: [(429, "120")], K2: ["ok"]}, content=GOOD) as fake:
        news, clock = make_news(fake.url, [K1, K2])
        assert len(news.fetch(["BTC/USD"], START, END)) == 2
        assert fake.calls == [(K1, 429), (K2, 200)]
    assert clock.slept == []
    assert news.ring.state(K1).cooldown_until == pytest.approx(T0 + 120)
    # Retry-After as an HTTP date
    assert parse_retry_after("Fri, 01 Mar 2024 12:00:30 GMT", T0) == pytest.approx(30)
    assert parse_retry_after("soon", T0) is None and parse_retry_after(None, T0) is None


def test_long_retry_after_gives_up_for_the_cycle_without_sleeping(tmp_path):
    with FakePerplexity({K1: [(429, "3600")]}, content=GOOD) as fake:
        news, clock = make_news(fake.url, [K1], max_wait_s=30)
        assert news.fetch(["BTC/USD", "ETH/USD"], START, END) == []
        assert fake.calls == [(K1, 429)]  # the second symbol does not hammer the cooled key
    assert clock.slept == []
    with pytest.raises(NoKeyAvailable) as ei:
        news.ring.current()
    assert ei.value.wait_s == pytest.approx(3600)


def test_5xx_on_every_key_then_no_key_left(tmp_path):
    with FakePerplexity({K1: [500], K2: [502]}, content=GOOD) as fake:
        news, clock = make_news(fake.url, [K1, K2], max_wait_s=0)
        assert news.fetch(["BTC/USD"], START, END) == []
        assert fake.calls == [(K1, 500), (K2, 502)]


def test_rotation_state_survives_a_restart(tmp_path):
    path = tmp_path / "state.db"
    with FakePerplexity({K1: [401], K2: ["ok"]}, content=GOOD) as fake:
        store = Store(path)
        news, clock = make_news(fake.url, [K1, K2], store)
        news.fetch(["BTC/USD"], START, END)
        store.close()
        assert fake.calls == [(K1, 401), (K2, 200)]
        # restart: a new process, a new ring on the same DB, one hour later
        store2 = Store(path)
        later = Clock(T0 + 3600)
        news2, _ = make_news(fake.url, [K1, K2], store2, clock=later)
        news2.fetch(["BTC/USD"], START, END)
        assert fake.calls[2:] == [(K2, 200)]  # the dead key was not tried again
        # after its cool-down the key is tried again
        later.t = T0 + 6 * 3600 + 1
        fake.script[K1] = ["ok"]
        news2.fetch(["BTC/USD"], START, END)
        assert fake.calls[3:] == [(K1, 200)]
        assert api_rows(store2)[key_id(K1)]["failures"] == 0


def test_malformed_body_is_survived_without_blaming_the_key(tmp_path):
    with FakePerplexity({K1: ["not_json"]}) as fake:
        news, _ = make_news(fake.url, [K1, K2])
        assert news.fetch(["BTC/USD"], START, END) == []
        assert fake.calls == [(K1, 200)]
    assert news.ring.available() == [K1, K2]


def test_keys_never_in_logs_db_or_exceptions(tmp_path, caplog):
    s1, s2 = "sk-SENTINEL-AAAA-1111-zzzz", "sk-SENTINEL-BBBB-2222-yyyy"
    caplog.set_level(logging.DEBUG)  # urllib3, requests and ours, at every level
    store = Store(tmp_path / "s.db")
    seen_errors: list[str] = []
    with FakePerplexity({s1: [401, (429, "1"), 500, "not_json"], s2: [403, 503, "ok"]}, content=GOOD) as fake:
        news, clock = make_news(fake.url, [s1, s2], store, max_wait_s=10_000)
        for _ in range(6):
            news.fetch(["BTC/USD", "ETH/USD"], START, END)
            clock.t += 7 * 3600
        url = fake.url
    # the server is gone: a connection error
    dead, _ = make_news(url, [s1, s2], store, clock=Clock(T0 + 10 ** 6))
    dead.fetch(["BTC/USD"], START, END)
    for bad in (lambda: KeyRing("perplexity", []).current(),):
        try:
            bad()
        except Exception as e:  # noqa: BLE001 - collect every message
            seen_errors.append(f"{e!r} {e}")
    assert {st for _, st in fake.calls} >= {401, 403, 429, 500, 503, 200}
    store.close()
    text = caplog.text + " ".join(seen_errors) + repr(news) + repr(news.ring) + str(news.__dict__)
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for s in (s1, s2):
        assert s not in text and s.encode() not in blob
        assert "SENTINEL" not in text
    assert key_id(s1).encode() in blob  # the state is there, under the hash
    assert f"key_id={key_id(s1)}" in caplog.text and "status=401" in caplog.text  # failures were logged


# --------------------------------------------------------------------------- Alpaca news

ALPACA_ITEMS = [
    {"id": 1, "headline": "Bitcoin miners sell as hashprice drops", "source": "benzinga",
     "url": "https://b.example/1", "created_at": "2024-03-01T10:15:00Z", "updated_at": "2024-03-01T10:20:00Z",
     "symbols": ["BTCUSD"], "author": "A", "summary": "", "images": []},
    {"id": 2, "headline": "Ethereum devs set upgrade date", "source": "benzinga", "url": "",
     "created_at": "2024-03-01T11:00:00Z", "updated_at": "2024-03-01T11:00:00Z", "symbols": ["ETHUSD"],
     "author": "B", "summary": "", "images": []},
    {"id": 3, "headline": "", "source": "benzinga", "created_at": "2024-03-01T11:00:00Z", "symbols": ["BTCUSD"]},
]


def test_alpaca_news_through_the_sdk():
    with FakeAlpacaData(int(T0), keys=("kid", "sec"), news=ALPACA_ITEMS) as fake:
        hs = AlpacaNews("kid", "sec", base_url=fake.url).fetch(["BTC/USD", "ETH/USD"], START, END)
        req = fake.requests[0]
    assert req.path == "/v1beta1/news" and set(req.query["symbols"].split(",")) == {"BTCUSD", "ETHUSD"}
    assert [h.title for h in hs] == ["Bitcoin miners sell as hashprice drops", "Ethereum devs set upgrade date"]
    assert hs[0].source == "alpaca/benzinga" and hs[0].published_at == datetime(2024, 3, 1, 10, 15, tzinfo=timezone.utc)


def test_alpaca_news_refused_or_failing_gives_nothing_not_a_crash(caplog):
    with FakeAlpacaData(int(T0), keys=("kid", "sec"), news=ALPACA_ITEMS) as fake:
        assert AlpacaNews("kid", "wrong-secret-xyz", base_url=fake.url).fetch(["BTC/USD"], START, END) == []
        fake.mode = "500"
        assert AlpacaNews("kid", "sec", base_url=fake.url).fetch(["BTC/USD"], START, END) == []
    assert "status=401" in caplog.text and "status=500" in caplog.text
    assert "wrong-secret-xyz" not in caplog.text


# --------------------------------------------------------------------------- dedupe

def H(title: str, source: str, minute: int) -> Headline:
    from tracer.data.replay import headline_id
    t = END - timedelta(minutes=minute)
    return Headline(headline_id(source, title, t), t, source, title)


def test_normalised_title():
    assert normalise_title("Bitcoin Hits $70K!  - Reuters") == normalise_title("bitcoin hits $70k")
    assert normalise_title("Bitcoin hits $70K | CoinDesk") == "bitcoin hits 70k"
    assert normalise_title("Café crypto: Ether’s rally") == "cafe crypto ether s rally"
    assert normalise_title("BTC - ETH") == "btc eth"  # too short to lose a 'suffix'
    assert normalise_title("Bitcoin hits $70K") != normalise_title("Bitcoin hits $60K")


def test_dedupe_across_sources_keeps_the_heavier_source():
    w = parse_weights("alpaca=1.0, perplexity=0.8")
    a = H("Bitcoin hits $70K", "alpaca/benzinga", 30)
    p = H("Bitcoin Hits $70k - Reuters", "perplexity/Reuters", 40)
    other = H("Solana fees fall", "perplexity/The Block", 10)
    out = dedupe([p, other, a], w)
    assert out == [a, other]
    # equal weights: the earlier publication stays
    assert dedupe([a, p], {}) == [p]
    assert source_weight("perplexity/Reuters", {"perplexity/reuters": 2.0, "perplexity": 0.5}) == 2.0
    assert source_weight("perplexity/Other", {"perplexity": 0.5}) == 0.5 and source_weight("x", {}) == 1.0
    with pytest.raises(ValueError):
        parse_weights("alpaca")


def test_dedupe_across_cycles():
    book = HeadlineBook(parse_weights("alpaca=1,perplexity=0.8"), retention=timedelta(hours=48))
    first = [H("Bitcoin hits $70K", "perplexity/Reuters", 50), H("Ether upgrade set", "alpaca/benzinga", 45)]
    assert book.add(first, END) == 2
    # next cycle: the same stories again (one re-worded casing, one from the other provider) plus a new one
    again = [H("BITCOIN HITS $70K", "perplexity/Reuters", 48), H("Ether upgrade set!", "perplexity/CoinDesk", 44),
             H("XRP ruling appealed", "alpaca/benzinga", 5)]
    assert book.add(again, END + timedelta(hours=1)) == 1
    win = book.window(END - timedelta(hours=24), END + timedelta(hours=1))
    assert [h.title for h in win] == ["Bitcoin hits $70K", "Ether upgrade set", "XRP ruling appealed"]
    assert win[1].source == "alpaca/benzinga"
    # past the retention a story is forgotten
    book.add([], END + timedelta(hours=60))
    assert len(book) == 0
