"""The backtest: the agents' own decision code replayed over history with a simulated clock.

What is shared with the live agents (no second implementation of the strategy): the features and
:func:`tracer.signals.evaluate.decide`, the relevance filter, the sentiment scorer, the narrative, the
agent's policy (:class:`HybridPolicy` / :class:`FuturesPolicy` with the risk rules), the decision step
(:func:`tracer.agents.kernel.step`: day roll, risk book, decisions in order) and the paper brokers (fills,
fees, slippage, funding, liquidation, exits). What differs is the driver: features are computed once over the whole
history with vectorised code (:func:`tracer.signals.features.feature_table`) instead of once per cycle
on a window, and nothing is written to SQLite per cycle (results are collected in memory).

Also driver-only, each exact (tests/backtest compares each with what it replaces): the files, the gap
policy's rows, the feature tables and the narratives come from a :class:`tracer.backtest.history.History`
(the study and the optimiser pass one, so that hundreds of backtests over the same files compute each piece
once; without one a fresh one is built, which keeps the candles, feature tables, regime columns and narratives
in the preparation cache under ``TB_STATE_DIR/prep_cache``: :mod:`tracer.backtest.prep_cache`); runs of quiet
bars (no order due, no exit or funding possible, no signal the policy could act on) are passed over in one go
(:mod:`tracer.backtest.quiet`: the broker marks its positions, the equity points and the day roll come out as
stepping each bar gives them; ``quiet_runs=False`` steps every bar); every distinct relevant title is scored once, in one batch, through
a score file under ``TB_STATE_DIR/score_cache`` keyed by scorer id and scorer code
(:class:`tracer.sentiment.cache.ScoreFile`: a repeated backtest neither scores nor loads the model); the
narrative of every bar comes from one call (:func:`tracer.sentiment.narrative.narrative_series`, bit for bit
the per-bar computation); a symbol with neither a position nor a pending order has its close recorded
without ``broker.on_bar`` (the paper brokers' ``on_bar`` does nothing else for it); and a signal that the
policy's ``may_act`` says it can only answer without an intent (a hold; spot: a sell while flat, a buy while
held; futures: a same-side signal while held; any entry once ``max_positions`` are open or against the
market filter) is neither built nor decided (the backtest keeps only intents, and decide_all's order and
book for the other signals do not depend on it).

Order of one step, as in :meth:`tracer.agents.loop.AgentLoop.run_cycle`: the broker processes the bar
that just closed (fills of the previous step's orders at its open, then exits), the UTC day rolls,
every symbol is evaluated, the policy decides, new orders are submitted, equity is recorded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from tracer.agents.kernel import RECENT_RETURNS, Day, notify_closed, roll_day, step
from tracer.backtest.data import Series
from tracer.backtest.history import History
from tracer.backtest.prep_cache import PREP_CACHE_DIR
from tracer.backtest.quiet import QuietRuns, SignalEvents
from tracer.config import Settings
from tracer.models import Bar, OrderState, Position, Trade
from tracer.risk.correlation import aligned_returns
from tracer.sentiment.scorer import SentimentScorer
from tracer.signals.evaluate import EvalParams, signal_at
from tracer.signals.scoring import score_table, strength_counts
from tracer.signals.features import market_gap

NS = 1_000_000_000
SCORE_CACHE_DIR = "score_cache"     # under TB_STATE_DIR: headline scores by scorer id and title


@dataclass(slots=True)
class EquityPoint:
    ts: datetime
    equity: float
    cash: float
    exposure: float          # gross notional of open positions
    positions: int


@dataclass
class BacktestResult:
    agent: str
    symbols: list[str]
    interval: timedelta
    start: datetime
    end: datetime
    initial_capital: float
    trades: list[Trade] = field(default_factory=list)
    equity: list[EquityPoint] = field(default_factory=list)
    fees_paid: float = 0.0
    entries: int = 0
    rejected: int = 0
    bar_steps: int = 0
    quiet_steps: int = 0     # of the bar-steps, those passed over in runs of quiet bars (tracer.backtest.quiet)


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NS, tz=timezone.utc)


def _idle_noop_brokers() -> tuple[type, ...]:
    """Brokers whose ``on_bar`` for a symbol without a position or a pending order only records the close."""
    from tracer.execution.paper import PaperSpotBroker
    from tracer.execution.paper_futures import PaperFuturesBroker
    return PaperSpotBroker, PaperFuturesBroker


def make_agent(agent: str, s: Settings, interval: timedelta):
    """The agent's own policy and paper broker, configured from the settings exactly as live."""
    if agent == "hybrid":
        from tracer.agents import hybrid
        return hybrid.HybridPolicy(s), hybrid.paper_broker(s, interval), s.hybrid.capital
    if agent == "futures":
        from tracer.agents import futures
        return futures.FuturesPolicy(s), futures.paper_broker(s, interval), s.futures.capital
    raise ValueError(f"unknown agent {agent!r} (hybrid or futures)")


def load_history(symbols: Sequence[str], data_dir: Path | None, interval: timedelta) -> list[Series]:
    h = History(data_dir, interval)
    return [h.series(sym) for sym in symbols]


def run_backtest(s: Settings, agent: str, symbols: Sequence[str], scorer: SentimentScorer,  # noqa: C901
                 start: datetime | None = None, end: datetime | None = None, data_dir: Path | None = None,
                 headlines_path: Path | None = None, interval: timedelta = timedelta(hours=1),
                 close_at_end: bool = True, progress: Callable[[int, int], None] | None = None,
                 history: History | None = None, quiet_runs: bool = True) -> BacktestResult:
    if history is None:     # a fresh one, with the candles, features and narratives kept on disk between runs
        history = History(data_dir, interval, Path(s.state_dir) / PREP_CACHE_DIR)
    elif not history.same_files(data_dir, interval):
        raise ValueError("the prepared history is of another folder or interval than the backtest asks for")
    series = [history.series(sym) for sym in symbols]
    iv_ns = history.iv_ns
    # the common clock: bar open times every symbol has (as the replay feed), and each symbol's row at each
    common, rows = history.clock(symbols)
    # a bar is usable when its look-back window (as the live and replay feeds see it) passes the gap policy
    # (tracer.data.gaps); win_lo: the window's first row (the risk rules' returns start there)
    usable, win_lo, usable_np = {}, {}, {}
    for sr in series:
        usable[sr.symbol], win_lo[sr.symbol] = history.usable(sr.symbol, s.lookback_bars, s.min_bars, s.max_gap_bars)
        usable_np[sr.symbol] = history.usable_mask(sr.symbol, s.lookback_bars, s.min_bars, s.max_gap_bars)

    bars_per_year = timedelta(days=365) / interval
    trend_windows = EvalParams.from_settings(s, interval).trend_windows
    tables = {sr.symbol: history.features(sr.symbol, bars_per_year, s.volume_z_window, trend_windows) for sr in series}
    ts_of = {sr.symbol: sr.ts_ns for sr in series}
    closes = {sr.symbol: np.asarray(sr.close, dtype=float) for sr in series}
    ohlcv = {sr.symbol: history.ohlcv(sr.symbol) for sr in series}

    params = EvalParams.from_settings(s, interval, symbols)
    # the decision arithmetic for every bar at once (the same code the live agent runs on one bar)
    need_lo = max(s.min_bars - 1, 0)
    narratives = history.narratives(symbols, headlines_path, scorer, params.halflife_min, params.sentiment_trim,
                                   timedelta(hours=s.headline_lookback_h), params.source_weights,
                                   Path(s.state_dir) / SCORE_CACHE_DIR, need_lo)

    policy, broker, capital = make_agent(agent, s, interval)
    mgaps = history.derived(("market_gaps", tuple(symbols), s.market_filter, params.market_bars, s.lookback_bars,
                             s.min_bars, s.max_gap_bars), lambda: _market_gaps(series, usable_np, params, s.market_filter))
    # the relative-strength filter's cross-section: every symbol's trend gap at each bar of the clock (the live
    # cycle compares the symbols of its snapshot, those the gap policy let through)
    strength = history.derived(("strength", tuple(symbols), trend_windows, s.lookback_bars, s.min_bars, s.max_gap_bars),
                               lambda: _strength(series, rows, usable_np, {sym: t.trend_gap for sym, t in tables.items()}))
    scores = {}
    for sr in series:
        ft, nc = tables[sr.symbol], narratives[sr.symbol]
        # the regime columns depend on the feature table alone: computed once per table of the history
        reg = history.regime(sr.symbol, bars_per_year, s.volume_z_window, trend_windows)
        scores[sr.symbol] = score_table(ft.rsi, ft.macd_hist_z, ft.ema_spread_z, ft.volume_z, ft.horizons,
                                        ft.annual_vol, ft.participation, nc.score, nc.count, params, nc.confidence,
                                        ft.trend_gap, mgaps[sr.symbol], reg, strength[sr.symbol])
    act_np = {sym: t.action for sym, t in scores.items()}
    from tracer.optimize.exploration import allowed as explore_allowed
    if explore_allowed(s)[0]:   # an exploration entry may come from a near-miss hold: the policy must see those
        act_np = {sym: ((t.action != 0) | (t.direction != 0)).astype(int) for sym, t in scores.items()}
    actions = {sym: a.tolist() for sym, a in act_np.items()}
    close_ns = common + iv_ns
    first = max(s.min_bars - 1, 0)
    lo_i = first
    if start is not None:
        lo_i = max(lo_i, int(np.searchsorted(close_ns, int(start.timestamp() * NS), side="left")))
    hi_i = len(common) - 1
    if end is not None:
        hi_i = min(hi_i, int(np.searchsorted(close_ns, int(end.timestamp() * NS), side="right")) - 1)
    if lo_i > hi_i:
        raise ValueError("no bar in the requested window (after the warm-up of TB_MIN_BARS bars)")

    res = BacktestResult(agent, list(symbols), interval, _utc(int(close_ns[lo_i])), _utc(int(close_ns[hi_i])), capital)
    entries: dict[str, list[str]] = {}         # client order ids of the entries of each UTC day (daily cap)
    rejected: set[str] = set()
    closed_returns: list[float] = []
    recent: tuple[float, ...] = ()             # the last RECENT_RETURNS of them, rebuilt when a trade closes
    day = Day()

    def entries_today(d: Day) -> int:
        return sum(1 for cid in entries.get(d.day or "", ()) if cid not in rejected)
    total = hi_i - lo_i + 1
    # per-symbol columns as Python lists, indexed by position in ``series`` (no numpy scalars in the loop)
    syms = [sr.symbol for sr in series]
    may_act = getattr(policy, "may_act", None)
    # the market filter's side per row, which a held position's market exit reads (zeros without TB_MARKET_EXIT:
    # a hold then never reaches the policy)
    cols = [(sym, rows[sym].tolist(), ohlcv[sym], usable[sym], actions[sym], scores[sym].action.tolist(),
             scores[sym].direction.tolist(), (~scores[sym].gates["market"].astype(bool)).tolist(),
             scores[sym].market_side.tolist() if s.market_exit else [0] * len(rows[sym])) for sym in syms]
    open_l = common.tolist()
    times = history.close_times(symbols)          # _utc(close) of every bar of the clock, shared between runs
    n_series = len(series)
    # A symbol with neither a position nor a pending order: the paper brokers' on_bar only records its
    # close (no order is due, no exit to check), so the driver records it directly.
    idle_noop = type(broker) in _idle_noop_brokers()
    lp = broker.last_price
    # every symbol's close at a bar of the clock (recorded at once on a flat bar and at the end of a quiet run)
    close_cols = [(row, ohlc[3]) for _, row, ohlc, *_ in cols]

    def closes_at(i: int) -> list[float]:
        return [c[row[i]] for row, c in close_cols]
    # Per bar of the common clock: the symbols whose signal a flat book may act on (SignalEvents.flat_act;
    # without may_act: usable and not a hold). A held symbol's signal is checked at its bar.
    events = _signal_events(may_act, syms, rows, usable_np, act_np, scores, s.market_exit) \
        if may_act is not None else None
    flat_act = [(events.flat_act[sym] if events is not None else usable_np[sym][rows[sym]] & (act_np[sym][rows[sym]] != 0))
                [lo_i:hi_i + 1] for sym in syms]
    # runs of quiet bars (tracer.backtest.quiet) are passed over in one go; a policy without may_act, or a
    # broker that is not a paper broker, steps every bar
    quiet = None
    if quiet_runs and events is not None and idle_noop:
        quiet = QuietRuns(events, history.derived(("clock_ohlc", tuple(syms)), lambda: {
            sr.symbol: np.array([sr.open, sr.high, sr.low, sr.close])[:, rows[sr.symbol]] for sr in series}), common)
    # the symbols of each bar as a bit mask (column k is bit k), expanded through a table of the masks seen
    masks = (np.column_stack(flat_act).astype(np.int64) << np.arange(len(syms), dtype=np.int64)).sum(axis=1)
    expand = {m: [k for k in range(len(syms)) if m >> k & 1] for m in np.unique(masks).tolist()}
    flat_cands = [expand[m] for m in masks.tolist()]
    col_of = {sym: k for k, sym in enumerate(syms)}
    i = lo_i - 1
    while i < hi_i:
        i += 1
        k = i - lo_i
        now = times[i]
        closed = False
        busy = None
        if idle_noop:
            busy = {p.symbol for p in broker.positions()}
            busy.update(o.symbol for o in broker.open_orders())
        flat = busy is not None and not busy
        if flat:
            lp.update(zip(syms, closes_at(i)))
        else:
            ts_open = None
            for sym, row, (o, h, l, c, v), _, _, _, _, _, _ in cols:
                j = row[i]
                if busy is not None and sym not in busy:
                    lp[sym] = c[j]
                    continue
                if ts_open is None:
                    ts_open = _utc(open_l[i])
                rep = broker.on_bar(Bar(sym, ts_open, o[j], h[j], l[j], c[j], v[j]))
                for u in rep.updates:
                    if u.state is OrderState.REJECTED:
                        rejected.add(u.client_order_id)
                if rep.trades:
                    for t in rep.trades:
                        res.trades.append(t)
                        closed_returns.append(t.return_pct)
                    closed = True
                    notify_closed(policy, rep.trades)
        if closed:
            recent = tuple(closed_returns[-RECENT_RETURNS:])

        signals: list = []
        # no bar went to the broker while nothing was busy: nothing can be open
        positions = {} if flat else {p.symbol: p for p in broker.positions()}
        n_open = len(positions)
        # a hold changes nothing: both policies answer "none" (flat) or "hold_position" (held); only buy/sell
        # decisions can enter or exit (the backtest == live test holds this); nor does any signal the policy
        # can only answer without an intent (its ``may_act``): decide_all's order of the others and its book
        # are the same without it (it orders them by conviction and symbol, not by this loop)
        for kc in flat_cands[i - lo_i]:
            sym, row, ohlc, ok, act, acode, dcode, mok, _ = cols[kc]
            if sym in positions:
                continue
            j = row[i]
            if may_act is not None and not may_act(acode[j], dcode[j], None, n_open, mok[j]):
                continue
            signals.append(signal_at(sym, now, ohlc[3][j], scores[sym], j, tables[sym].row(j),
                                     narratives[sym].results[j], params))
        for sym, pos in positions.items():
            sym, row, ohlc, ok, act, acode, dcode, mok, mside = cols[col_of[sym]]
            j = row[i]
            if not ok[j] or (act[j] == 0 and not mside[j]):
                continue
            if may_act is not None and not may_act(acode[j], dcode[j], pos, n_open, mok[j], mside[j]):
                continue
            signals.append(signal_at(sym, now, ohlc[3][j], scores[sym], j, tables[sym].row(j),
                                     narratives[sym].results[j], params))
        at_row = {sym: row[i] for sym, row, _, ok, _, _, _, _, _ in cols if ok[row[i]]} if signals else {}
        # the decision step the live loop runs too (tracer.agents.kernel): day roll, risk book, decisions
        returns = {sym: aligned_returns(ts_of[sym][win_lo[sym][j]:j + 1], closes[sym][win_lo[sym][j]:j + 1],
                                        int(common[i]), iv_ns, s.lookback_bars - 1)
                   for sym, j in at_row.items()} if signals else {}
        equity, cash = broker.equity(), broker.balance()
        done = step(policy, now, day, equity, cash, positions, lp, signals, returns, entries_today, lambda: recent)
        day = done.day
        submitted = False
        for sig, dcs in done.decisions:
            if dcs.intent is None:
                continue
            upd = broker.submit(dcs.intent.order, dcs.intent.bracket)
            submitted = True
            if dcs.intent.order.purpose == "entry":
                entries.setdefault(day.day or "", []).append(dcs.intent.order.client_order_id)
                res.entries += 1
                if upd.state is OrderState.REJECTED:
                    rejected.add(dcs.intent.order.client_order_id)
        if submitted:       # a broker may book something at submission: read it again
            res.equity.append(_point(now, broker))
        else:
            res.equity.append(EquityPoint(now, equity, cash, _exposure(positions.values(), lp), len(positions)))
        res.bar_steps += n_series
        if progress is not None and (k % 256 == 0 or k == total - 1):
            progress(k + 1, total)
        if quiet is not None and i < hi_i and not submitted and not broker.open_orders():
            end = quiet.span(broker, positions, i + 1, hi_i + 1)
            if end > i + 1:
                day = _pass_over(quiet, broker, positions, i + 1, end, day, res, times, closes_at, syms, lo_i, total,
                                 progress)
                i = end - 1

    if close_at_end and broker.positions():
        last = {sr.symbol: sr.close[int(rows[sr.symbol][hi_i])] for sr in series}
        rep = broker.close_all(last, res.end)
        res.trades.extend(rep.trades)
        res.equity[-1] = _point(res.end, broker)
    res.fees_paid = broker.fees_paid
    res.rejected = len(rejected)
    return res


def _signal_events(may_act: Callable[..., bool], syms: list[str], rows: Mapping[str, np.ndarray],
                   usable: Mapping[str, np.ndarray], actions: Mapping[str, np.ndarray], scores: Mapping,
                   market_exit: bool) -> SignalEvents:
    """Where the step loop hands signals to the policy, from the columns it reads, aligned to the clock (the
    market side only with TB_MARKET_EXIT, as the loop reads it)."""
    def at(sym: str, col) -> np.ndarray:
        return np.asarray(col)[rows[sym]]
    return SignalEvents(
        may_act, {s: at(s, usable[s]) for s in syms}, {s: at(s, actions[s]) for s in syms},
        {s: at(s, scores[s].action) for s in syms}, {s: at(s, scores[s].direction) for s in syms},
        {s: at(s, ~scores[s].gates["market"].astype(bool)) for s in syms},
        {s: at(s, scores[s].market_side) if market_exit else np.zeros(len(rows[s]), dtype=np.int64) for s in syms})


def _pass_over(quiet: QuietRuns, broker, positions: Mapping[str, Position], frm: int, end: int, day: Day,
               res: BacktestResult, times: list[datetime], closes_at: Callable[[int], list[float]], syms: list[str], lo_i: int,
               total: int, progress: Callable[[int, int], None] | None) -> Day:
    """Bars ``frm`` to ``end - 1``, found quiet: what stepping each would do (the broker marks its positions,
    the day rolls at its first bar, an equity point per bar), in one go."""
    n = end - frm
    marks = {sym: quiet.columns[sym][3][frm:end] for sym in positions}
    equity = broker.equity_path(marks, n)
    exposure: list = [0] * n         # _exposure() of no position: the int 0
    if positions:
        acc = sum(p.qty * marks[p.symbol] for p in positions.values())   # _exposure()'s sum, in its order
        exposure = acc.tolist()
    for sym in positions:
        _, h, l, c = quiet.columns[sym]
        broker.pass_quiet(sym, h[frm:end], l[frm:end], c[frm:end])
    broker.last_price.update(zip(syms, closes_at(end - 1)))
    cash, n_pos = broker.balance(), len(positions)
    span = times[frm:end]
    ordinal = day.start().toordinal() if day.day is not None else None
    for k, now in enumerate(span):
        if now.toordinal() != ordinal:          # roll_day changes nothing within the day it last saw
            day = roll_day(day, now, equity[k])
            ordinal = now.toordinal()
    res.equity.extend(map(EquityPoint, span, equity, repeat(cash, n), exposure, repeat(n_pos, n)))
    res.bar_steps += n * len(syms)
    res.quiet_steps += n * len(syms)
    if progress is not None:                    # as the step loop reports: every 256th bar and the last
        for b in range(frm, end):
            k = b - lo_i
            if k % 256 == 0 or k == total - 1:
                progress(k + 1, total)
    return day


def _market_gaps(series: Sequence[Series], usable: dict[str, np.ndarray], params: EvalParams,
                 market: str) -> dict[str, np.ndarray]:
    """Per symbol and row: the market symbol's gap from its own mean at the bar with the same open time, NaN
    (unknown) where the market has no such bar or its window fails the gap policy (the live snapshot then
    leaves it out); a row reads the market's rows up to its own time only. All NaN when the filter is off
    (ignored then)."""
    nan = {sr.symbol: np.full(len(sr.ts_ns), np.nan) for sr in series}
    if params.market_bars <= 0:
        return nan
    m = next((sr for sr in series if sr.symbol == market), None)
    if m is None:
        raise ValueError(f"TB_MARKET_FILTER={market}: the market filter needs {market} among the symbols")
    g = np.where(usable[m.symbol], market_gap(m.close, params.market_bars), np.nan)
    out = {}
    for sr in series:
        k = np.clip(np.searchsorted(m.ts_ns, sr.ts_ns), 0, len(m.ts_ns) - 1)
        out[sr.symbol] = np.where(m.ts_ns[k] == sr.ts_ns, g[k], np.nan)
    return out


def _strength(series: Sequence[Series], rows: Mapping[str, np.ndarray], usable: Mapping[str, np.ndarray],
              gaps: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per symbol and row: :func:`strength_counts` among the symbols at that bar of the clock whose window the gap
    policy lets through (NaN off the clock: such a row is never evaluated)."""
    table = np.column_stack([np.where(usable[sr.symbol][rows[sr.symbol]], gaps[sr.symbol][rows[sr.symbol]], np.nan)
                             for sr in series])
    up, down = strength_counts(table)
    out = {}
    for k, sr in enumerate(series):
        a, b = np.full(len(sr.ts_ns), np.nan), np.full(len(sr.ts_ns), np.nan)
        a[rows[sr.symbol]], b[rows[sr.symbol]] = up[:, k], down[:, k]
        out[sr.symbol] = (a, b)
    return out


def _point(now: datetime, broker) -> EquityPoint:
    pos: list[Position] = broker.positions()
    return EquityPoint(now, broker.equity(), broker.balance(), _exposure(pos, broker.last_price), len(pos))


def _exposure(positions: Iterable[Position], last_price: Mapping[str, float]) -> float:
    """Gross notional of the positions at their last prices."""
    return sum(p.qty * last_price.get(p.symbol, p.entry_price) for p in positions)
