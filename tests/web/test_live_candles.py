"""The symbol page on a live feed: its candles come from the agents' bar sources (a real BinanceSource over HTTP
against a fake /api/v3/klines), up to the latest closed hour, never from the bundled 2022 files; a source that
refuses the symbol is said on the page's data instead of a chart of other data."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from fakes.server import FakeServer, Request
from tracer.config import load_settings
from tracer.store import Store
from tracer.web.data import candles

H_MS = 3_600_000


def price(open_ms: int) -> float:
    return 100.0 + (open_ms // H_MS) % 97          # any hour of any day has a bar, its price known here


def klines(req: Request):
    if req.path != "/api/v3/klines":
        return 404, {}, {"code": -1, "msg": "not found"}
    if req.query["symbol"] != "BTCUSDT":
        return 400, {}, {"code": -1121, "msg": "Invalid symbol."}
    start, end = int(req.query["startTime"]), int(req.query["endTime"])
    limit = int(req.query.get("limit", 500))
    first = -(-start // H_MS) * H_MS
    rows = []
    for o in range(first, end + 1, H_MS)[:limit]:
        p = price(o)
        rows.append([o, str(p), str(p + 1), str(p - 1), str(p + 0.5), "10", o + H_MS - 1, "0", 1, "0", "0", "0"])
    return 200, {}, rows


@pytest.fixture
def live(tmp_path):
    with FakeServer(klines) as bn:
        s = load_settings({"TB_FEED": "live", "TB_BAR_SOURCES": "binance_spot", "TB_BINANCE_SPOT_URL": bn.url,
                           "TB_NEWS_SOURCES": "", "TB_DB_PATH": str(tmp_path / "t.db"),
                           "TB_STATE_DIR": str(tmp_path), "TB_LOG_DIR": str(tmp_path / "logs"),
                           "TB_ACTIVE_PARAMS_PATH": str(tmp_path / "none.json")}, dotenv_path=None)
        store = Store(s.db_path)
        try:
            yield s, store, bn
        finally:
            store.close()


def test_live_candles_come_from_the_bar_sources_up_to_the_last_closed_hour(live):
    s, store, bn = live
    got = candles(s, store, "BTC/USD", 50)
    assert "error" not in got and len(got["bars"]) == 50
    last = datetime.fromisoformat(got["bars"][-1]["t"].replace("Z", "+00:00"))
    now = datetime.now(timezone.utc)
    assert 0 < (now - last).total_seconds() <= 2 * 3600 + 60      # the bar that opened an hour before the last close
    for b in got["bars"]:
        o = int(datetime.fromisoformat(b["t"].replace("Z", "+00:00")).timestamp() * 1000)
        assert (b["o"], b["c"]) == (price(o), price(o) + 0.5)
    assert got["bars"][-1]["mean"] is not None         # the window held enough bars for the model's mean
    assert all(r.path == "/api/v3/klines" for r in bn.requests)


def test_a_symbol_the_sources_refuse_is_said_not_drawn(live):
    s, store, _ = live
    got = candles(s, store, "ETH/USD", 50)
    assert got["bars"] == [] and got["error"].startswith("live bars unavailable")
