"""tracer download: candles from the venues (through the real python-binance / alpaca-py clients over HTTP against
the fake venues on 127.0.0.1) into the CSV files the backtest reads; pagination, resume, closed bars only, holes
and bad bars recorded."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from fakes.alpaca_data import FakeAlpacaData
from fakes.binance import FakeBinance
from fakes.market import bar
from tracer.cli import main
from tracer.backtest.data import load_series
from tracer.data.download import (CandleFileError, bar_problem, download_symbol, parse_interval, repair_tail,
                                   write_manifest)
from tracer.data.replay import load_candles
from tracer.data.validation import fmt_ts
from tracer.data.sources.binance import BinanceSource

H = 3600


def now_s() -> int:
    return int(time.time())


def env(monkeypatch, tmp_path, **kw):
    for k in list(__import__("os").environ):
        if k.startswith("TB_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("TB_DB_PATH", str(tmp_path / "state" / "t.db"))
    for k, v in kw.items():
        monkeypatch.setenv(k, v)


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def test_binance_spot_download_paginates_and_writes_closed_bars_the_backtest_reads(tmp_path, monkeypatch, capsys):
    t = now_s()
    with FakeBinance(t) as fake:
        env(monkeypatch, tmp_path, TB_BINANCE_SPOT_URL=fake.url)
        start = datetime.fromtimestamp((t // H - 1500) * H, tz=timezone.utc)      # 1,500 bars: two pages
        out = tmp_path / "candles"
        rc = main(["download", "--venue", "binance", "--symbols", "BTC/USD,ETH/USD", "--from", start.isoformat(),
                   "--out", str(out)])
        assert rc == 0
        pages = [r for r in fake.requests if r.path == "/api/v3/klines" and r.query["symbol"] == "BTCUSDT"]
    df = read(out / "candles_1h_BTCUSDT.csv")
    assert list(df.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    ts = pd.to_datetime(df.timestamp, utc=True)
    assert len(df) == 1500 and ts.is_monotonic_increasing and ts.diff().dropna().eq(pd.Timedelta(hours=1)).all()
    # closed bars only: the forming one is not written
    assert ts.iloc[-1] + pd.Timedelta(hours=1) <= pd.Timestamp(t, unit="s", tz="UTC")
    # the venue's numbers, as served
    o, h, lo, c, v = bar("BTCUSDT", int(ts.iloc[10].timestamp()))
    assert (df.open[10], df.high[10], df.low[10], df.close[10], df.volume[10]) == pytest.approx((o, h, lo, c, v))
    assert len(pages) >= 2
    m = json.loads((out / "download_manifest.json").read_text())["files"]["candles_1h_BTCUSDT.csv"]
    assert m["rows"] == 1500 and m["gaps"] == [] and m["venue"] == "binance"
    assert "+1500 bars" in capsys.readouterr().out
    # the backtest reads the folder (price only: no headlines.csv there)
    from tracer.backtest.data import discover
    found = discover(out)
    assert set(found) == {"BTC/USD", "ETH/USD"}


def test_resume_continues_after_the_last_bar_and_equals_a_one_shot_download(tmp_path):
    t = now_s()
    start = datetime.fromtimestamp((t // H - 300) * H, tz=timezone.utc)
    mid = start + timedelta(hours=120)
    now = datetime.fromtimestamp(t, tz=timezone.utc)
    with FakeBinance(t) as fake:
        src = BinanceSource("spot", fake.url, page_limit=100)
        a = download_symbol(src, "BTC/USD", timedelta(hours=1), start, mid, tmp_path / "a", now=now)
        b = download_symbol(src, "BTC/USD", timedelta(hours=1), start, None, tmp_path / "a", now=now)
        again = download_symbol(src, "BTC/USD", timedelta(hours=1), start, None, tmp_path / "a", now=now)
        one = download_symbol(src, "BTC/USD", timedelta(hours=1), start, None, tmp_path / "b", now=now, chunk_bars=50)
    assert a.added == 120 and b.added == 180 and b.resumed_after and again.added == 0
    assert (tmp_path / "a" / "candles_1h_BTCUSDT.csv").read_bytes() == \
        (tmp_path / "b" / "candles_1h_BTCUSDT.csv").read_bytes()
    assert one.rows == b.rows == 300


def test_rerun_after_a_torn_last_line_cuts_it_and_gives_a_complete_readable_file(tmp_path):
    """A download killed mid-write (a closed Terminal, kill -9, a power cut) leaves its last row cut short, with
    no newline: the re-run must not take that row as written nor append to it ("simply run again")."""
    t = now_s()
    start = datetime.fromtimestamp((t // H - 300) * H, tz=timezone.utc)
    now = datetime.fromtimestamp(t, tz=timezone.utc)
    out = tmp_path / "c"
    with FakeBinance(t) as fake:
        src = BinanceSource("spot", fake.url, page_limit=1000)
        download_symbol(src, "BTC/USD", timedelta(hours=1), start, start + timedelta(hours=100), out, now=now)
        path = out / "candles_1h_BTCUSDT.csv"
        head, last = path.read_text().rstrip("\n").rsplit("\n", 1)
        path.write_text(head + "\n" + last[: len(last.split(",")[0]) + 4])   # cut after the open's first digits
        rep = download_symbol(src, "BTC/USD", timedelta(hours=1), start, None, out, now=now)
        download_symbol(src, "BTC/USD", timedelta(hours=1), start, None, tmp_path / "one", now=now)
    df = load_candles(path)                       # the replay and the backtest read it, and no bar is lost
    load_series(path, "BTC/USD")
    assert (df.index.to_series().diff().dropna() == pd.Timedelta(hours=1)).all()
    assert rep.resumed_after == fmt_ts(pd.Timestamp(head.rsplit("\n", 1)[1].split(",")[0]).value)   # not the torn row
    assert rep.rows == 300
    assert path.read_bytes() == (tmp_path / "one" / "candles_1h_BTCUSDT.csv").read_bytes()


def test_repair_cuts_only_what_an_interruption_tears(tmp_path):
    p = tmp_path / "candles_1h_BTCUSDT.csv"
    header = b"timestamp,open,high,low,close,volume\n"
    rows = b"".join(b"2024-01-01T%02d:00:00Z,1,2,0.5,1.5,3\n" % h for h in range(3))
    for text, kept in ((b"", b""), (b"timest", b""), (header, header), (header + b"2024-01-01T00:0", header),
                       (header + rows + b"\0" * 9000, header + rows),                 # a power cut's zeroed pages
                       (header + rows + b"2024-01-01T03:00:00Z,1,\0\0\0,5\n\0\0", header + rows)):
        p.write_bytes(text)
        t = repair_tail(p)
        assert p.read_bytes() == kept
        assert t == (pd.Timestamp("2024-01-01T02:00Z").value if kept.endswith(rows) else None)
    # damage further back than a torn tail, or not a candle file at all: named by its line, left untouched
    for text, line in ((header + rows + b"x" * (1 << 20) + b"\n", 5), (b"open_time,price\n1,2\n", 1)):
        p.write_bytes(text)
        with pytest.raises(CandleFileError, match=f"{p.name}:{line}:"):
            repair_tail(p)
        assert p.read_bytes() == text


def test_holes_are_kept_and_recorded_bad_bars_rejected_with_their_reason(tmp_path):
    t = now_s()
    start = datetime.fromtimestamp((t // H - 60) * H, tz=timezone.utc)
    now = datetime.fromtimestamp(t, tz=timezone.utc)
    with FakeBinance(t, mode="gap") as fake:
        rep = download_symbol(BinanceSource("spot", fake.url), "BTC/USD", timedelta(hours=1), start, None,
                              tmp_path / "g", now=now)
    assert len(rep.gaps) == 1 and "(1 bars)" in rep.gaps[0] and rep.rows == 59
    with FakeBinance(t, mode="high_below_low") as fake:
        rep = download_symbol(BinanceSource("spot", fake.url), "BTC/USD", timedelta(hours=1), start, None,
                              tmp_path / "h", now=now)
    assert len(rep.rejected) == 1 and "inconsistent high/low" in rep.rejected[0]
    assert rep.rows == 59 and len(rep.gaps) == 1           # the bad bar is a hole in the file, recorded
    m = write_manifest(tmp_path / "h", "binance", timedelta(hours=1), [rep])
    doc = json.loads(m.read_text())["files"]["candles_1h_BTCUSDT.csv"]
    assert doc["rejected"] == rep.rejected and doc["gaps"] == rep.gaps


def test_usdm_and_alpaca_downloads(tmp_path, monkeypatch):
    t = now_s()
    start = datetime.fromtimestamp((t // H - 48) * H, tz=timezone.utc)
    with FakeBinance(t) as bn, FakeAlpacaData(t, page_size=10, keys=("ak", "as")) as al:
        env(monkeypatch, tmp_path, TB_BINANCE_FUTURES_DATA_URL=bn.url, TB_ALPACA_DATA_URL=al.url,
            TB_ALPACA_API_KEY="ak", TB_ALPACA_SECRET_KEY="as", TB_BINANCE_SPOT_URL=bn.url)
        assert main(["download", "--venue", "binance-futures", "--symbols", "BTC/USD", "--from", start.isoformat(),
                     "--out", str(tmp_path / "f")]) == 0
        assert main(["download", "--venue", "binance", "--symbols", "BTC/USD", "--from", start.isoformat(),
                     "--out", str(tmp_path / "s")]) == 0
        assert main(["download", "--venue", "alpaca", "--symbols", "BTC/USD", "--from", start.isoformat(),
                     "--out", str(tmp_path / "al")]) == 0
        alpaca_pages = [r for r in al.requests if r.path == "/v1beta3/crypto/us/bars"]
    f = read(tmp_path / "f" / "candles_1h_BTCUSDT.csv")
    sp = read(tmp_path / "s" / "candles_1h_BTCUSDT.csv")
    a = read(tmp_path / "al" / "candles_1h_BTCUSDT.csv")
    assert len(f) == len(sp) == len(a) == 48 and list(a.timestamp) == list(f.timestamp)
    assert (f.close - sp.close).round(6).eq(5.0).all()         # the USD-M endpoint: the fake's perpetual is 5 above
    assert (a.low <= a[["open", "close"]].min(axis=1)).all() and (a.high >= a[["open", "close"]].max(axis=1)).all()
    assert len(alpaca_pages) >= 5                                # 48 bars in pages of 10


def test_bad_options_are_refused_naming_the_option(tmp_path, monkeypatch, capsys):
    env(monkeypatch, tmp_path)
    assert main(["download", "--venue", "binance", "--symbols", "BTC/USD", "--from", "2024-01-01",
                 "--interval", "hourly"]) == 2
    assert "--interval" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["download", "--venue", "binance", "--symbols", "BTC/USD", "--from", "yesterday"])
    assert e.value.code == 2 and "--from 'yesterday' is not an ISO 8601" in capsys.readouterr().err


def test_pure_parts():
    assert parse_interval("4h") == timedelta(hours=4) and parse_interval("15m") == timedelta(minutes=15)
    with pytest.raises(ValueError):
        parse_interval("0h")
    ns = 3600 * 10**9
    assert bar_problem(0, 1, 2, 0.5, 1.5, 3, ns) is None
    assert "finite" in bar_problem(0, float("nan"), 2, 0.5, 1.5, 3, ns)
    assert "positive" in bar_problem(0, 0, 2, 0.5, 1.5, 3, ns)
    assert "negative volume" in bar_problem(0, 1, 2, 0.5, 1.5, -1, ns)
    assert "grid" in bar_problem(5, 1, 2, 0.5, 1.5, 3, ns)
