"""The disk cache of a backtest's preparation (candles, feature tables, narratives) changes no result, is used
when warm, and misses whenever a file, a setting or the code it depends on changes."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

import tracer.backtest.history as history_mod
import tracer.backtest.prep_cache as prep_cache
from test_history import _fingerprint, _settings
from tracer.backtest.history import History
from tracer.backtest.runner import run_backtest
from tracer.data.replay import bundled_dir
from tracer.sentiment.factory import make_scorer

SYMBOLS = ["BTC/USD", "ETH/USD", "SOL/USD"]
FILES = ["candles_1h_BTCUSDT.csv", "candles_1h_ETHUSDT.csv", "candles_1h_SOLUSDT.csv", "headlines.csv"]


@pytest.fixture
def data(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    for f in FILES:
        shutil.copy(bundled_dir() / f, d / f)
    return d


def _run(tmp_path: Path, data: Path, agent: str = "hybrid", history: History | None = None, **extra: str):
    s = _settings(tmp_path, **extra)
    log = logging.getLogger("test-prep-cache")
    log.propagate = False
    return run_backtest(s, agent, SYMBOLS, make_scorer(s, log), data_dir=data, history=history)


def _uncached(tmp_path: Path, data: Path, agent: str = "hybrid", **extra: str):
    from datetime import timedelta
    return _run(tmp_path, data, agent, History(data, timedelta(hours=1)), **extra)


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "state" / prep_cache.PREP_CACHE_DIR


def _entries(tmp_path: Path) -> set[Path]:
    return {p for p in _cache(tmp_path).iterdir() if p.suffix in (".npy", ".npz")}


def test_a_warm_cache_gives_the_same_backtest_without_reading_or_computing_anything(tmp_path, data, monkeypatch):
    plain, plain_futures = _uncached(tmp_path, data), _uncached(tmp_path, data, "futures")
    cold, cold_futures = _run(tmp_path, data), _run(tmp_path, data, "futures")
    kinds = sorted({p.name.split("-")[0] for p in _entries(tmp_path)})
    assert kinds == ["features", "narratives", "regime", "series"]
    assert len(plain.trades) > 10

    def refuse(*a, **k):
        raise AssertionError("a warm cache must not compute this again")
    for name in ("load_series", "feature_table", "narrative_series", "load_headlines", "relevant_to", "regime_columns"):
        monkeypatch.setattr(history_mod, name, refuse)
    warm, warm_futures = _run(tmp_path, data), _run(tmp_path, data, "futures")
    assert _fingerprint(plain) == _fingerprint(cold) == _fingerprint(warm)
    assert _fingerprint(plain_futures) == _fingerprint(cold_futures) == _fingerprint(warm_futures)


def test_a_changed_file_a_changed_setting_or_changed_code_miss_the_cache(tmp_path, data, monkeypatch):
    _run(tmp_path, data)
    # one close price of ETH changed (still a valid bar): its candles, features and the narratives miss
    path = data / "candles_1h_ETHUSDT.csv"
    lines = path.read_text().splitlines()
    ts, o, h, l, c, v = lines[3000].split(",")
    lines[3000] = ",".join([ts, o, h, l, repr((float(h) + float(l)) / 2), v])
    path.write_text("\n".join(lines) + "\n")
    assert _fingerprint(_run(tmp_path, data)) == _fingerprint(_uncached(tmp_path, data))
    # a headline fewer: the narratives miss
    hl = data / "headlines.csv"
    rows = hl.read_text().splitlines()
    hl.write_text("\n".join(rows[:1] + rows[2:]) + "\n")
    assert _fingerprint(_run(tmp_path, data)) == _fingerprint(_uncached(tmp_path, data))
    # a setting the feature tables depend on
    extra = {"TB_TREND_WINDOW_H": "240", "TB_NARRATIVE_HALFLIFE_MIN": "30"}
    assert _fingerprint(_run(tmp_path, data, **extra)) == _fingerprint(_uncached(tmp_path, data, **extra))
    # other code: nothing stored under the old fingerprint is read
    before = _entries(tmp_path)
    monkeypatch.setattr(prep_cache, "code_fingerprint", lambda: "another version")
    loads: list = []
    for name in ("load", "load_table"):
        real = getattr(prep_cache.PrepCache, name)
        monkeypatch.setattr(prep_cache.PrepCache, name,
                            lambda self, kind, key, real=real: loads.append(real(self, kind, key)) or loads[-1])
    _run(tmp_path, data)
    assert len(loads) >= 4 and all(x is None for x in loads)
    assert _entries(tmp_path) > before


def test_unreadable_entries_are_misses_and_the_cache_stays_bounded(tmp_path, data, monkeypatch):
    plain = _uncached(tmp_path, data)
    _run(tmp_path, data)
    for p in _entries(tmp_path):
        p.write_bytes(p.read_bytes()[:100])                 # truncated, as by a crash mid-write
    assert _fingerprint(_run(tmp_path, data)) == _fingerprint(plain)
    assert all(p.stat().st_size > 1000 for p in _entries(tmp_path))   # written again, whole
    monkeypatch.setattr(prep_cache, "MAX_ENTRIES", 4)
    _run(tmp_path, data, TB_TREND_WINDOW_H="240")
    assert len(_entries(tmp_path)) == 4
    assert not list(_cache(tmp_path).glob("*.tmp"))


def test_the_cache_key_names_every_part():
    key = prep_cache.PrepCache.key("features", "abc", 8760.0, 20, 480)
    assert prep_cache.code_fingerprint() in key and "8760.0" in key and "480" in key
    assert prep_cache.PrepCache.key("features", "abc", 8760.0, 20, 481) != key
