"""What a backtest prepares from its files before the first step, kept for the next backtest over them.

The study and the optimiser run hundreds of backtests over one history that differ only in their settings
(and their window). Reading the candle files, applying the gap policy, computing the feature tables,
parsing the headlines, filtering them by relevance, scoring them and computing every bar's narrative are
each a pure function of the files and of a few settings, and cost about two thirds of a backtest over the
bundled data. :class:`History` computes each piece once per distinct input, memoised by exactly the
settings it depends on, so a trial pays only for what its settings change. ``run_backtest`` without a
history builds a fresh one (nothing is kept between calls): the result is the same either way
(tests/backtest/test_history.py compares them).

The files are read when first needed and not again: a :class:`History` is for one run of the study or
optimiser, not for a folder that changes under it.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Sequence, TypeVar, overload

import numpy as np

from tracer.backtest.data import Series, candle_file, load_series
from tracer.backtest.prep_cache import PrepCache, file_digest
from tracer.data.gaps import usable_rows
from tracer.data.replay import bundled_dir, load_headlines
from tracer.news.dedupe import source_weight
from tracer.sentiment.cache import ScoreFile, scorer_code_fingerprint
from tracer.sentiment.narrative import NarrativeResult, narrative_series, relevant_to
from tracer.sentiment.scorer import SentimentScorer
from tracer.signals.features import FeatureTable, TrendWindows, feature_table
from tracer.signals.regime import HORIZONS
from tracer.signals.scoring import RegimeColumns, narrative_confidence, regime_columns, scorer_weight

NS = 1_000_000_000
T = TypeVar("T")


class _Memo:
    """A bounded memo (least recently used out first): a search over a parameter that a piece depends on
    (the trend window, the narrative's half-life) must not keep every trial's tables."""

    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        value = make()
        self._d[key] = value
        if len(self._d) > self.size:
            self._d.popitem(last=False)
        return value


class _Narratives:
    """Per-symbol relevant headlines, every distinct relevant title scored once (one batch, through the
    score file of ``cache_dir`` when given), and the decayed narrative at any set of times."""

    def __init__(self, symbols: Sequence[str], headlines, scorer: SentimentScorer, halflife: float, trim: float,
                 lookback: timedelta, source_weights=(), cache_dir: Path | None = None):
        self.halflife, self.trim = halflife, trim
        self.lookback_ns = int(lookback.total_seconds() * NS)
        self.source_weights = dict(source_weights)
        rel = relevant_to(symbols, headlines)
        titles = list(dict.fromkeys(h.title for sym in symbols for h in rel[sym]))
        if not titles:
            scores = []
        elif cache_dir is not None:
            scores = ScoreFile(cache_dir).score(scorer, titles)
        else:
            scores = scorer.score(titles)
        by_title = dict(zip(titles, scores))
        self.arrays: dict[str, tuple[np.ndarray, list[float], list[str], list[float] | None]] = {}
        for sym in symbols:
            hs = rel[sym]
            sc = [by_title[h.title] for h in hs]
            t = np.array([int(h.published_at.timestamp() * NS) for h in hs], dtype=np.int64)
            self.arrays[sym] = (t, [x.value for x in sc], [x.scorer_id for x in sc],
                                [source_weight(h.source, self.source_weights) for h in hs]
                                if self.source_weights else None)

    def series(self, symbol: str, now_ns: np.ndarray) -> list[NarrativeResult]:
        """The narrative at each time of ``now_ns`` (int ns): exactly what the live agent computes from the
        headlines of the look-back window (:func:`tracer.sentiment.narrative.narrative_series`)."""
        t, values, ids, sw = self.arrays[symbol]
        return narrative_series(now_ns, t, values, ids, self.lookback_ns, self.halflife, self.trim, sw)


class History:
    """The candle files of one folder at one interval, and the headlines read with them, prepared for
    backtests (see the module's docstring)."""

    def __init__(self, data_dir: Path | None = None, interval: timedelta = timedelta(hours=1),
                 cache_dir: Path | None = None):
        """``cache_dir``: a :class:`tracer.backtest.prep_cache.PrepCache` folder for the candles, feature tables
        and narratives (kept between processes); None: nothing is kept beyond this object."""
        self.data_dir = Path(data_dir) if data_dir else bundled_dir()
        self._disk = PrepCache(cache_dir) if cache_dir is not None else None
        self._digests: dict[Path, str] = {}
        self._narrative_columns = _Memo(4)
        self.interval = interval
        self.iv_ns = int(interval.total_seconds() * NS)
        self._series: dict[str, Series] = {}
        self._lists: dict[str, tuple[list[float], ...]] = {}
        self._clock = _Memo(8)
        self._times = _Memo(4)
        self._derived = _Memo(16)
        self._usable = _Memo(64)
        # a feature table of the 16-month history holds about 5 MB (arrays and the step loop's lists): two
        # trials' worth of 9 symbols; the optimiser searches the trend window, which each table depends on
        self._features = _Memo(18)
        self._headlines = _Memo(4)
        self._narratives = _Memo(4)

    def same_files(self, data_dir: Path | None, interval: timedelta) -> bool:
        return (Path(data_dir) if data_dir else bundled_dir()) == self.data_dir and interval == self.interval

    def series(self, symbol: str) -> Series:
        if symbol not in self._series:
            path = candle_file(self.data_dir, symbol, self.interval)
            # the bar times' int64 bits travel in the float64 matrix as they are (a view, not a conversion)
            self._series[symbol] = self._kept(
                "series", lambda: (self._digest(path),), lambda: load_series(path, symbol),
                lambda sr: [sr.ts_ns.view(np.float64), sr.open, sr.high, sr.low, sr.close, sr.volume],
                lambda m: Series(symbol, path, m[0].view(np.int64), *m[1:]), 6)
        return self._series[symbol]

    def _digest(self, path: Path) -> str:
        if path not in self._digests:
            self._digests[path] = file_digest(path)
        return self._digests[path]

    def _kept(self, kind: str, key: Callable[[], tuple], compute: Callable[[], T],
              rows_of: Callable[[T], list[np.ndarray]], from_rows: Callable[[np.ndarray], T], n_rows: int) -> T:
        """``compute()``, or with a preparation cache its entry for ``key()`` (a float64 matrix of ``n_rows``
        rows: ``rows_of`` writes it, ``from_rows`` reads it back; any other shape is a miss)."""
        if self._disk is None:
            return compute()
        k = PrepCache.key(kind, *key())
        got = self._disk.load_table(kind, k)
        if got is not None and len(got) == n_rows:
            return from_rows(got)
        out = compute()
        self._disk.save_table(kind, k, np.array(rows_of(out), dtype=np.float64))
        return out

    def clock(self, symbols: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The bar open times every symbol of ``symbols`` has (the replay feed's clock), and each symbol's row
        at each of them."""
        def make() -> tuple[np.ndarray, dict[str, np.ndarray]]:
            series = [self.series(sym) for sym in symbols]
            common = series[0].ts_ns
            for sr in series[1:]:
                common = np.intersect1d(common, sr.ts_ns, assume_unique=True)
            if len(common) == 0:
                raise ValueError("the symbols share no bar time")
            return common, {sr.symbol: np.searchsorted(sr.ts_ns, common) for sr in series}
        return self._clock.get(tuple(symbols), make)

    def close_times(self, symbols: Sequence[str]) -> list[datetime]:
        """The close time of each bar of the clock of ``symbols`` (:meth:`clock`), as UTC datetimes."""
        def make() -> list[datetime]:
            return [datetime.fromtimestamp(ns / NS, tz=timezone.utc) for ns in (self.clock(symbols)[0] + self.iv_ns).tolist()]
        return self._times.get(tuple(symbols), make)

    def derived(self, key: Hashable, make: Callable[[], T]) -> T:
        """A caller's piece computed from this history alone, memoised by ``key``, which must name every
        setting ``make`` reads."""
        return self._derived.get(key, make)

    def ohlcv(self, symbol: str) -> tuple[list[float], ...]:
        """Open, high, low, close and volume as Python lists (the step loop reads scalars from them)."""
        if symbol not in self._lists:
            sr = self.series(symbol)
            self._lists[symbol] = (sr.open.tolist(), sr.high.tolist(), sr.low.tolist(), sr.close.tolist(),
                                   sr.volume.tolist())
        return self._lists[symbol]

    def usable(self, symbol: str, lookback_bars: int, min_bars: int, max_gap_bars: int) -> tuple[list[bool], list[int]]:
        """The gap policy per row (:func:`tracer.data.gaps.usable_rows`): usable?, and the window's first row."""
        ok, lo, _ = self._usable_rows(symbol, lookback_bars, min_bars, max_gap_bars)
        return ok, lo

    def usable_mask(self, symbol: str, lookback_bars: int, min_bars: int, max_gap_bars: int) -> np.ndarray:
        """:meth:`usable`'s first column as a boolean array."""
        return self._usable_rows(symbol, lookback_bars, min_bars, max_gap_bars)[2]

    def _usable_rows(self, symbol: str, lookback_bars: int, min_bars: int,
                     max_gap_bars: int) -> tuple[list[bool], list[int], np.ndarray]:
        def make() -> tuple[list[bool], list[int], np.ndarray]:
            ok, lo = usable_rows(self.series(symbol).ts_ns, self.iv_ns, lookback_bars, min_bars, max_gap_bars)
            return ok.tolist(), lo.tolist(), np.asarray(ok, dtype=bool)
        return self._usable.get((symbol, lookback_bars, min_bars, max_gap_bars), make)

    def features(self, symbol: str, bars_per_year: float, volume_z_window: int,
                 trend_windows: TrendWindows) -> FeatureTable:
        def make() -> FeatureTable:
            sr = self.series(symbol)
            return self._kept(
                "features", lambda: (self._digest(sr.path), bars_per_year, volume_z_window, trend_windows),
                lambda: feature_table(sr.high, sr.low, sr.close, sr.volume, bars_per_year, volume_z_window,
                                      trend_windows),
                lambda ft: [ft.volume_z, ft.rsi, ft.macd_hist_z, ft.ema_spread_z, ft.atr, ft.annual_vol,
                            ft.participation, ft.trend_gap, *ft.horizons],
                lambda m: FeatureTable(*m[:5], list(m[8:]), m[5], m[6], m[7]), 8 + len(HORIZONS))
        return self._features.get((symbol, bars_per_year, volume_z_window, trend_windows), make)

    def regime(self, symbol: str, bars_per_year: float, volume_z_window: int,
               trend_windows: TrendWindows) -> RegimeColumns:
        """The regime columns of :meth:`features`'s table (:func:`tracer.signals.scoring.regime_columns`)."""
        def make() -> RegimeColumns:
            ft = self.features(symbol, bars_per_year, volume_z_window, trend_windows)
            # the codes are small integers: exact as floats
            return self._kept(
                "regime", lambda: (self._digest(self.series(symbol).path), bars_per_year, volume_z_window,
                                   trend_windows),
                lambda: regime_columns(np.column_stack(ft.horizons), ft.annual_vol, ft.participation),
                lambda r: [r.trend_score, r.confidence, r.trend_code, r.vol_code, r.volume_code],
                lambda m: RegimeColumns(m[0], m[2].astype(np.int64), m[3].astype(np.int64), m[4].astype(np.int64),
                                        m[1]), 5)
        return self._derived.get(("regime", symbol, bars_per_year, volume_z_window, trend_windows), make)

    def headlines(self, path: Path | None) -> list:
        """The headlines file (None: ``headlines.csv`` of the data folder); none when it does not exist
        (the backtest is then price-only)."""
        p = Path(path) if path else self.data_dir / "headlines.csv"
        return self._headlines.get(p, lambda: load_headlines(p) if p.is_file() else [])

    def narratives(self, symbols: Sequence[str], headlines_path: Path | None, scorer: SentimentScorer,
                   halflife: float, trim: float, lookback: timedelta, source_weights: Sequence[tuple[str, float]],
                   cache_dir: Path | None, from_row: int) -> dict[str, NarrativeColumns]:
        """Every symbol's narrative at the close of each of its bars, exactly as the live agent computes it at
        that time, from row ``from_row`` on (the empty narrative before it). Shared between calls: read only."""
        sw = tuple(source_weights)
        hp = Path(headlines_path) if headlines_path else self.data_dir / "headlines.csv"
        if self._disk is None:
            return self._computed_narratives(symbols, hp, scorer, halflife, trim, lookback, sw, cache_dir, from_row)
        disk = self._disk

        def from_disk() -> dict[str, NarrativeColumns]:
            key = PrepCache.key("narratives", tuple(symbols), self._digest(hp),
                                tuple(self._digest(self.series(sym).path) for sym in symbols), self.iv_ns,
                                scorer.scorer_id, scorer_code_fingerprint(), halflife, trim, lookback.total_seconds(),
                                sw, from_row)
            got = disk.load("narratives", key)
            if got is not None:
                return {sym: NarrativeColumns.from_arrays(got, f"{k}.") for k, sym in enumerate(symbols)}
            out = self._computed_narratives(symbols, hp, scorer, halflife, trim, lookback, sw, cache_dir, from_row)
            disk.save("narratives", key, {f"{k}.{name}": a for k, sym in enumerate(symbols)
                                          for name, a in out[sym].arrays().items()})
            return out
        return self._narrative_columns.get((tuple(symbols), hp, id(scorer), halflife, trim, lookback, sw, cache_dir,
                                            from_row), lambda: (scorer, from_disk()))[1]

    def _computed_narratives(self, symbols: Sequence[str], hp: Path, scorer: SentimentScorer, halflife: float, trim: float,
                    lookback: timedelta, sw: tuple[tuple[str, float], ...], cache_dir: Path | None,
                    from_row: int) -> dict[str, NarrativeColumns]:
        key = (tuple(symbols), hp, id(scorer), halflife, trim, lookback, sw, cache_dir)

        def make() -> tuple[SentimentScorer, _Narratives, dict]:
            # the scorer is kept with its entry so that its id cannot be reused by another while the entry lives
            return scorer, _Narratives(symbols, self.headlines(hp), scorer, halflife, trim, lookback, sw,
                                       cache_dir), {}
        _, narr, rows = self._narratives.get(key, make)
        out = {}
        for sym in symbols:
            if (sym, from_row) not in rows:
                ts = self.series(sym).ts_ns
                nars = [_EMPTY] * len(ts)
                nars[from_row:] = narr.series(sym, ts[from_row:] + self.iv_ns)
                rows[sym, from_row] = NarrativeColumns.of(nars)
            out[sym] = rows[sym, from_row]
        return out


_EMPTY = NarrativeResult(score=0.0, count=0, effective_weight=0.0, scorer_id="", latest_age_min=None)
_SCORER_ID, _COUNT, _SCORE, _DISPERSION = (attrgetter(a) for a in ("scorer_id", "count", "score", "dispersion"))


class _Results(Sequence[NarrativeResult]):
    """Narrative results built on access from their columns (a backtest reads a few hundred of a history's
    tens of thousands): equal to the results the columns were taken from."""

    def __init__(self, score: np.ndarray, count: np.ndarray, weight: np.ndarray, ids: list[str], id_code: np.ndarray,
                 latest: np.ndarray, dispersion: np.ndarray):
        # ndarray.item: a Python float or int per access, without converting whole columns
        self._score, self._count, self._weight = score.item, count.item, weight.item
        self._ids, self._id_code = ids, id_code.item
        self._latest, self._dispersion = latest.item, dispersion.item
        self._n = len(score)

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> NarrativeResult: ...

    @overload
    def __getitem__(self, i: slice) -> list[NarrativeResult]: ...

    def __getitem__(self, i: int | slice) -> NarrativeResult | list[NarrativeResult]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        latest = self._latest(i)
        return NarrativeResult(self._score(i), self._count(i), self._weight(i), self._ids[self._id_code(i)],
                               None if latest != latest else latest, self._dispersion(i))

    def __iter__(self) -> Iterator[NarrativeResult]:
        return (self[k] for k in range(len(self)))


@dataclass(frozen=True)
class NarrativeColumns:
    """One symbol's narratives per row, and the columns the score table reads from them."""
    results: Sequence[NarrativeResult]
    score: np.ndarray
    count: np.ndarray
    confidence: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field of every result as columns (:meth:`from_arrays` rebuilds equal results): the scorer ids
        as codes into a table, a missing age (no headline) as NaN."""
        ids = list(dict.fromkeys(r.scorer_id for r in self.results))
        code = {sid: k for k, sid in enumerate(ids)}
        if any(r.latest_age_min is not None and r.latest_age_min != r.latest_age_min for r in self.results):
            raise ValueError("a narrative's age is NaN: it could not be told from a missing one")
        floats = [self.score, self.confidence, [r.effective_weight for r in self.results],
                  [np.nan if r.latest_age_min is None else r.latest_age_min for r in self.results],
                  [r.dispersion for r in self.results]]
        return {"floats": np.array(floats, dtype=float), "ids": np.array(ids, dtype=str),
                "ints": np.array([self.count, [code[r.scorer_id] for r in self.results]], dtype=np.int64)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], prefix: str = "") -> NarrativeColumns:
        score, confidence, weight, latest, dispersion = a[prefix + "floats"]
        count, id_code = a[prefix + "ints"]
        return cls(_Results(score, count, weight, a[prefix + "ids"].tolist(), id_code, latest, dispersion), score,
                   count, confidence)

    @classmethod
    def of(cls, nars: list[NarrativeResult]) -> NarrativeColumns:
        ids = list(map(_SCORER_ID, nars))
        weights = {sid: scorer_weight(sid) for sid in dict.fromkeys(ids)}
        counts = list(map(_COUNT, nars))
        conf = narrative_confidence(counts, list(map(_DISPERSION, nars)), list(map(weights.__getitem__, ids)))
        return cls(nars, np.array(list(map(_SCORE, nars)), dtype=float), np.array(counts), np.asarray(conf))
