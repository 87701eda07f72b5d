"""ReplayFeed: no look-ahead, truncation invariance, rejection of bad symbols, headlines, clock."""
from __future__ import annotations

import csv
import hashlib
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.data.feed import Feed, Snapshot
from tracer.data.replay import (
    ReplayFeed, bundled_dir, candle_path, headline_id, load_candles, load_headlines,
)

UTC = timezone.utc
H = timedelta(hours=1)
SYMBOLS = ["BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD",
           "ADA/USD", "BNB/USD", "LINK/USD", "AVAX/USD"]
DATA_START = datetime(2021, 10, 1, tzinfo=UTC)          # first bar opens
DATA_END = datetime(2022, 8, 1, tzinfo=UTC)             # last bar closes
HEADLINES = bundled_dir() / "headlines.csv"


def utc(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def feed() -> ReplayFeed:
    return ReplayFeed(SYMBOLS)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {s: load_candles(candle_path(bundled_dir(), s)) for s in SYMBOLS}


# ----------------------------------------------------------------------------- file text helpers

def _read_lines(path: Path) -> tuple[str, list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    return lines[0], lines[1:]


_CANDLE_LINES = {s: _read_lines(candle_path(bundled_dir(), s)) for s in SYMBOLS}


def _headline_rows() -> tuple[list[str], list[list[str]]]:
    with open(HEADLINES, newline="", encoding="utf-8") as fh:
        r = csv.reader(fh)
        header = next(r)
        return header, list(r)


_H_HEADER, _H_ROWS = _headline_rows()


def write_truncated(dest: Path, now: datetime, symbols: list[str], *, by: str = "open") -> None:
    """Copies of the bundled files holding only what exists up to ``now``.

    ``by="open"`` keeps every bar that has OPENED by now (the last one still forming: its
    final OHLC is future information the feed must not show); ``by="close"`` keeps only
    bars closed by now. Headlines keep rows published at or before now.
    """
    # the files' timestamps are fixed-width ISO-8601 "...Z" strings: text order is time order
    open_cut = _iso(now - (H if by == "close" else timedelta(0)))
    for s in symbols:
        header, lines = _CANDLE_LINES[s]
        keep = [ln for ln in lines if ln[:20] <= open_cut]
        (dest / candle_path(dest, s).name).write_text(header + "".join(keep), encoding="utf-8")
    pub_cut = _iso(now)
    with open(dest / "headlines.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(_H_HEADER)
        w.writerows(r for r in _H_ROWS if r[0] <= pub_cut)


def _iso(t: datetime) -> str:
    """Truncated to the second: a row at 12:00:00Z is kept for now = 12:00:00.5."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def assert_same_snapshot(a: Snapshot, b: Snapshot) -> None:
    assert a.now == b.now
    assert a.rejected == b.rejected
    assert list(a.bars) == list(b.bars)
    for s in a.bars:
        pd.testing.assert_frame_equal(a.bars[s], b.bars[s], check_exact=True)
    assert a.headlines == b.headlines


def assert_no_look_ahead(snap: Snapshot, now: datetime, interval: timedelta = H) -> None:
    for s, df in snap.bars.items():
        if len(df):
            assert df.index[-1] + interval <= pd.Timestamp(now), s
            assert (df.index + interval <= pd.Timestamp(now)).all(), s
    for h in snap.headlines:
        assert h.published_at <= now


# ----------------------------------------------------------------------------- basics

def test_is_a_feed(feed):
    assert isinstance(feed, Feed)
    assert feed.symbols == SYMBOLS
    assert feed.interval == H


def test_symbols_are_canonicalised():
    f = ReplayFeed(["btcusdt", "BTC-USD", "ETH/USD"], min_bars=10, lookback=20)
    assert f.symbols == ["BTC/USD", "ETH/USD"]


def test_load_candles_format(frames):
    df = frames["BTC/USD"]
    assert df.index.name == "ts"
    assert str(df.index.tz) == "UTC"
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert (df.dtypes == np.float64).all()
    assert len(df) == 7296
    assert df.index[0] == pd.Timestamp("2021-10-01T00:00:00Z")
    assert df.iloc[0].tolist() == [43820.01, 44059.0, 43661.63, 43694.48, 2001.56071]
    # the ATH print named in PROVENANCE.md
    assert df.loc[pd.Timestamp("2021-11-10T14:00:00Z"), "high"] == 69000.0


def test_missing_file_names_symbol_and_path():
    with pytest.raises(FileNotFoundError) as e:
        ReplayFeed(["BTC/USD", "PEPE/USD"], data_dir=bundled_dir())
    assert "PEPE/USD" in str(e.value) and "candles_1h_PEPEUSDT.csv" in str(e.value)


def test_bad_parameters():
    with pytest.raises(ValueError):
        ReplayFeed(["BTC/USD"], lookback=50, min_bars=60)
    with pytest.raises(ValueError):
        ReplayFeed([])


# ----------------------------------------------------------------------------- no look-ahead

def test_bar_visible_only_once_closed(feed, frames):
    # 11:00 bar closes at 12:00: visible at exactly 12:00, the 12:00 bar is not until 13:00
    for now, last_open in [("2022-05-10T12:00:00Z", "2022-05-10T11:00:00Z"),
                           ("2022-05-10T12:59:59Z", "2022-05-10T11:00:00Z"),
                           ("2022-05-10T13:00:00Z", "2022-05-10T12:00:00Z")]:
        snap = feed.snapshot(utc(now))
        assert snap.rejected == {}
        for s in SYMBOLS:
            df = snap.bars[s]
            assert len(df) == 256
            assert df.index[-1] == pd.Timestamp(last_open)
            expected = frames[s].loc[:pd.Timestamp(last_open)].tail(256)
            pd.testing.assert_frame_equal(df, expected, check_exact=True)
        assert_no_look_ahead(snap, utc(now))


def test_before_data_and_after_data(feed):
    snap = feed.snapshot(DATA_START)
    assert snap.bars == {} and snap.headlines == []
    assert all(r == "insufficient_bars: 0 < 60" for r in snap.rejected.values())
    assert set(snap.rejected) == set(SYMBOLS)
    # 59 closed bars: still too few; 60: fine
    assert feed.snapshot(DATA_START + 59 * H).rejected["BTC/USD"] == "insufficient_bars: 59 < 60"
    assert feed.snapshot(DATA_START + 60 * H).rejected == {}
    # at the very end every bar is visible, an hour later the data is stale
    end = feed.snapshot(DATA_END)
    assert end.rejected == {} and end.bars["BTC/USD"].index[-1] == pd.Timestamp("2022-07-31T23:00:00Z")
    later = feed.snapshot(DATA_END + 2 * H)
    assert later.bars == {}
    assert later.rejected["ETH/USD"] == "stale: last bar closes 2022-08-01T00:00:00Z, 2h before now"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset_s=st.integers(-86_400, int((DATA_END - DATA_START).total_seconds()) + 86_400))
def test_property_no_look_ahead_and_exact_window(feed, frames, offset_s):
    now = DATA_START + timedelta(seconds=offset_s)
    snap = feed.snapshot(now)
    assert snap.now == now
    assert_no_look_ahead(snap, now)
    assert set(snap.bars) | set(snap.rejected) == set(SYMBOLS)
    assert not set(snap.bars) & set(snap.rejected)
    if DATA_START + 60 * H <= now <= DATA_END + H:  # clean data, enough history, fresh
        assert snap.rejected == {}
    now_ts = pd.Timestamp(now)
    for s, df in snap.bars.items():  # exactly the latest closed bars, nothing skipped
        full = frames[s]
        expected = full[full.index + H <= now_ts].tail(256)
        pd.testing.assert_frame_equal(df, expected, check_exact=True)
    lb = now - timedelta(hours=24)
    assert snap.headlines == [h for h in feed.headlines if lb < h.published_at <= now]


def test_truncated_files_give_identical_snapshots(feed, tmp_path):
    cases = [("2021-10-03T11:00:00Z", "open"), ("2021-10-03T12:00:00Z", "close"),
             ("2022-05-10T12:30:00Z", "open"), ("2022-05-10T12:30:00Z", "close"),
             ("2022-07-04T15:53:00Z", "open"), ("2022-07-31T23:59:59Z", "open")]
    for i, (s, by) in enumerate(cases):
        now = utc(s)
        d = tmp_path / f"{i}_{by}"
        d.mkdir()
        write_truncated(d, now, SYMBOLS, by=by)
        truncated = ReplayFeed(SYMBOLS, data_dir=d)
        tl = truncated.timeline()
        assert tl == feed.timeline()[:len(tl)]
        assert_same_snapshot(feed.snapshot(now), truncated.snapshot(now))


@pytest.fixture(scope="module")
def small_feed() -> ReplayFeed:
    return ReplayFeed(SYMBOLS[:3], headlines_path=HEADLINES)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset_s=st.integers(50 * 3600, int((DATA_END - DATA_START).total_seconds())))
def test_property_truncation_invariance(small_feed, offset_s):
    now = DATA_START + timedelta(seconds=offset_s)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_truncated(d, now, SYMBOLS[:3], by="open")
        truncated = ReplayFeed(SYMBOLS[:3], data_dir=d)
        assert_same_snapshot(small_feed.snapshot(now), truncated.snapshot(now))


def test_returned_frames_cannot_corrupt_the_feed(feed):
    now = utc("2022-03-01T00:00:00Z")
    df = feed.snapshot(now).bars["BTC/USD"]
    before = df.copy()
    df.iloc[-1, 0] = -1.0
    df["close"] = 0.0
    pd.testing.assert_frame_equal(feed.snapshot(now).bars["BTC/USD"], before)


def test_naive_now_rejected(feed):
    with pytest.raises(ValueError):
        feed.snapshot(datetime(2022, 3, 1))


# ----------------------------------------------------------------------------- bad data in a tmp dir

@pytest.fixture
def damaged_dir(tmp_path) -> Path:
    """BTC clean; ETH missing 3 bars (2022-03-01 05..07h); SOL with an empty close at 2022-03-01 10h."""
    for s in ("BTC/USD", "ETH/USD", "SOL/USD"):
        shutil.copy(candle_path(bundled_dir(), s), candle_path(tmp_path, s))
    shutil.copy(HEADLINES, tmp_path / "headlines.csv")
    header, lines = _CANDLE_LINES["ETH/USD"]
    drop = {f"2022-03-01T0{h}:00:00Z" for h in (5, 6, 7)}
    candle_path(tmp_path, "ETH/USD").write_text(
        header + "".join(ln for ln in lines if ln.split(",", 1)[0] not in drop), encoding="utf-8")
    header, lines = _CANDLE_LINES["SOL/USD"]
    out = []
    for ln in lines:
        if ln.startswith("2022-03-01T10:00:00Z"):
            f = ln.rstrip("\n").split(",")
            f[4] = ""
            ln = ",".join(f) + "\n"
        out.append(ln)
    candle_path(tmp_path, "SOL/USD").write_text(header + "".join(out), encoding="utf-8")
    return tmp_path


def test_damaged_symbols_rejected_others_pass(damaged_dir):
    # a 3-bar hole is longer than the limit of 2 (the gap policy; the default limit accepts it, below)
    f = ReplayFeed(["BTC/USD", "ETH/USD", "SOL/USD"], data_dir=damaged_dir, max_gap_bars=2)
    # before the damage: everything is fine
    early = f.snapshot(utc("2022-03-01T05:00:00Z"))
    assert early.rejected == {} and set(early.bars) == {"BTC/USD", "ETH/USD", "SOL/USD"}
    # gap in the window: ETH out (SOL's NaN bar has not closed yet)
    snap = f.snapshot(utc("2022-03-01T10:00:00Z"))
    assert snap.rejected == {"ETH/USD": "gap: 2022-03-01T05:00:00Z -> 2022-03-01T08:00:00Z (3 bars > 2 allowed)"}
    assert set(snap.bars) == {"BTC/USD", "SOL/USD"}
    # the default limit (6 bars) accepts the hole: ETH is evaluated on the 253 bars that exist, the hole noted
    snap = ReplayFeed(["BTC/USD", "ETH/USD", "SOL/USD"], data_dir=damaged_dir).snapshot(utc("2022-03-01T10:00:00Z"))
    assert snap.rejected == {} and len(snap.bars["ETH/USD"]) == 253 and len(snap.bars["BTC/USD"]) == 256
    assert snap.notes == {"ETH/USD": "gap accepted: 2022-03-01T05:00:00Z -> 2022-03-01T08:00:00Z (3 bars)"}
    # once SOL's NaN bar has closed, SOL is out too; BTC still comes through with headlines
    snap = f.snapshot(utc("2022-03-01T11:00:00Z"))
    assert snap.rejected["ETH/USD"].startswith("gap: ")
    assert snap.rejected["SOL/USD"] == "nan_price: 1 rows"
    assert list(snap.bars) == ["BTC/USD"] and len(snap.bars["BTC/USD"]) == 256
    assert len(snap.headlines) > 0
    assert_no_look_ahead(snap, snap.now)
    # 256 bars later the bad rows have left the look-back window: both come back
    later = f.snapshot(utc("2022-03-01T11:00:00Z") + 256 * H)
    assert later.rejected == {}


def test_unsorted_file_is_rejected_and_never_looks_ahead(tmp_path):
    header, lines = _CANDLE_LINES["BTC/USD"]
    lines = list(lines)
    i = next(k for k, ln in enumerate(lines) if ln.startswith("2022-03-01T05:00:00Z"))
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    candle_path(tmp_path, "BTC/USD").write_text(header + "".join(lines), encoding="utf-8")
    shutil.copy(candle_path(bundled_dir(), "ETH/USD"), candle_path(tmp_path, "ETH/USD"))
    f = ReplayFeed(["BTC/USD", "ETH/USD"], data_dir=tmp_path, headlines_path=HEADLINES)
    ok = f.snapshot(utc("2022-03-01T05:00:00Z"))  # disorder is still in the future
    assert ok.rejected == {}
    assert_no_look_ahead(ok, ok.now)
    snap = f.snapshot(utc("2022-03-01T08:00:00Z"))
    assert snap.rejected == {"BTC/USD": "out_of_order at 2022-03-01T05:00:00Z"}
    assert list(snap.bars) == ["ETH/USD"]
    # file order is ..04h, 06h, 05h, 07h: at 06:30 only ..04h, 05h have closed, in order
    mid = f.snapshot(utc("2022-03-01T06:30:00Z"))
    assert mid.rejected == {}
    assert mid.bars["BTC/USD"].index[-1] == pd.Timestamp("2022-03-01T05:00:00Z")
    assert_no_look_ahead(mid, mid.now)


# ----------------------------------------------------------------------------- headlines

def test_headline_count_at_known_times(feed):
    assert len(feed.headlines) == 7494
    snap = feed.snapshot(utc("2022-07-04T16:00:00Z"))
    assert len(snap.headlines) == 37
    assert snap.headlines[-1].title == "Bitcoin price spikes to $20K as whale bought BTC confirms support"
    assert snap.headlines[-1].source == "CoinTelegraph"
    # published exactly at now: included; a second earlier: not yet
    assert len(feed.snapshot(utc("2022-07-04T15:53:00Z")).headlines) == 37
    assert len(feed.snapshot(utc("2022-07-04T15:52:59Z")).headlines) == 36
    # the oldest one in the window was published 2022-07-03T16:29Z: out at exactly 24h
    assert snap.headlines[0].published_at == utc("2022-07-03T16:29:00Z")
    assert feed.snapshot(utc("2022-07-04T16:29:00Z")).headlines[0].published_at > utc("2022-07-03T16:29:00Z")
    # independent count straight from the CSV text
    for now_s in ("2022-05-10T12:00:00Z", "2022-01-01T12:00:00Z", "2021-12-24T00:00:00Z"):
        now = utc(now_s)
        expected = sum(1 for r in _H_ROWS if now - timedelta(hours=24) < utc(r[0]) <= now and r[2].strip())
        assert len(feed.snapshot(now).headlines) == expected
    assert len(feed.snapshot(utc("2022-05-10T12:00:00Z")).headlines) == 56


def test_headline_lookback_is_configurable():
    f = ReplayFeed(["BTC/USD"], headline_lookback=timedelta(hours=1))
    hs = f.snapshot(utc("2022-07-04T16:00:00Z")).headlines
    assert hs and all(h.published_at > utc("2022-07-04T15:00:00Z") for h in hs)


def test_headline_ids_stable_and_unique():
    a = load_headlines(HEADLINES)
    b = load_headlines(HEADLINES)
    assert [h.id for h in a] == [h.id for h in b]
    assert a == b
    assert len({h.id for h in a}) == len(a)
    assert all(len(h.id) == 16 and int(h.id, 16) >= 0 for h in a)
    assert [h.published_at for h in a] == sorted(h.published_at for h in a)
    assert all(h.published_at.tzinfo is not None and h.published_at.utcoffset() == timedelta(0) for h in a)
    h = next(x for x in a if x.title.startswith("Bitcoin price spikes to $20K"))
    want = hashlib.sha1(
        f"CoinTelegraph|{h.title}|2022-07-04T15:53:00+00:00".encode()).hexdigest()[:16]
    assert h.id == want == headline_id("CoinTelegraph", h.title, utc("2022-07-04T15:53:00Z"))


# ----------------------------------------------------------------------------- clock

def test_timeline_and_stepping(feed):
    tl = feed.timeline()
    assert len(tl) == 7296
    assert tl[0] == DATA_START + H and tl[-1] == DATA_END
    assert all(b - a == H for a, b in zip(tl, tl[1:]))
    assert feed.first_time(60) == DATA_START + 60 * H
    assert feed.first_time() == feed.first_time(feed.min_bars)
    assert feed.snapshot(feed.first_time(60)).rejected == {}
    assert feed.next_time(tl[10]) == tl[11]
    assert feed.next_time(tl[10] + timedelta(minutes=1)) == tl[11]
    assert feed.next_time(DATA_START - 5 * H) == tl[0]
    assert feed.next_time(DATA_END) is None
    # walk the last few bars to the end
    now, steps = tl[-5], 0
    while now is not None:
        snap = feed.snapshot(now)
        assert snap.bars["BTC/USD"].index[-1] + H == pd.Timestamp(now)
        now, steps = feed.next_time(now), steps + 1
    assert steps == 5
    with pytest.raises(ValueError):
        feed.first_time(0)
    with pytest.raises(ValueError):
        feed.first_time(10_000)


def test_timeline_is_intersection(tmp_path):
    header, lines = _CANDLE_LINES["BTC/USD"]
    candle_path(tmp_path, "BTC/USD").write_text(header + "".join(lines[100:]), encoding="utf-8")
    header, lines = _CANDLE_LINES["ETH/USD"]
    candle_path(tmp_path, "ETH/USD").write_text(header + "".join(lines[:-50]), encoding="utf-8")
    f = ReplayFeed(["BTC/USD", "ETH/USD"], data_dir=tmp_path, headlines_path=HEADLINES)
    tl = f.timeline()
    assert len(tl) == 7296 - 150
    assert tl[0] == DATA_START + 101 * H and tl[-1] == DATA_END - 50 * H
    assert f.first_time(60) == tl[59]
    assert f.snapshot(f.first_time(60)).rejected == {}
