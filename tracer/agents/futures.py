"""The futures agent: leveraged USD-M perpetuals, long and short, on the shared cycle.

Signal parity: it calls the same :func:`tracer.signals.evaluate.evaluate` with the same parameters as
the hybrid agent, so quality, regime and conviction are identical for the same inputs. What differs:

- direction: ``buy`` opens a long, ``sell`` opens a short; a position against the regime (long in a
  bear market, short in a bull market) needs quality >= ``TB_FUTURES_COUNTER_REGIME_QUALITY``;
  an opposite decision closes an open position (exit reason ``signal``);
- leverage: :func:`tracer.risk.leverage.choose_leverage` (lower in high volatility and at low conviction);
- sizing: the loss at the stop is ``equity * TB_FUTURES_RISK_PER_TRADE``, scaled by the
  confidence-based fraction and, once enough trades closed, half-Kelly;
- guards: the stop must sit inside the liquidation price (at most ``TB_FUTURES_LIQ_GUARD`` of its
  distance), a per-symbol cooldown after a close, and the futures limits (positions, trades a day,
  daily loss, notional caps, correlation, VaR).
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from tracer.agents.loop import Decision, Intent
from tracer.agents.protocols import MARKET_EXIT, market_blocked, strength_blocked
from tracer.config import Settings
from tracer.execution.broker import Bracket, client_order_id, exit_order_id
from tracer.execution.margin import initial_margin, liquidation_price, stop_inside_liquidation
from tracer.execution.paper_futures import PaperFuturesBroker
from tracer.models import Action, Order, Position, PositionSide, Side, Signal
from tracer.optimize.exploration import exploration
from tracer.risk.leverage import choose_leverage, risk_notional
from tracer.risk.limits import Book, Candidate, RiskLimits, check_entry
from tracer.signals.gates import adverse

AGENT = "futures"


def futures_limits(s: Settings) -> RiskLimits:
    f = s.futures
    return RiskLimits(max_positions=f.max_positions, max_trades_per_day=f.max_trades_per_day,
                      max_position_pct=f.max_notional_pct, max_trade_notional=f.max_notional,
                      min_trade_notional=s.min_trade_notional, daily_loss_limit_pct=f.daily_loss_limit_pct,
                      kelly_min_trades=s.kelly_min_trades, kelly_cap=s.kelly_cap, kelly_floor=s.kelly_floor,
                      max_correlation=s.max_correlation, var_limit_pct=f.var_limit,
                      var_confidence=s.var_confidence, var_horizon_bars=s.var_horizon_bars,
                      fee_bps=f.costs.fee_bps, slippage_bps=f.costs.slippage_bps)


def paper_broker(s: Settings, interval: timedelta) -> PaperFuturesBroker:
    """The simulated futures broker of the replay and the backtest, from the futures section."""
    f = s.futures
    return PaperFuturesBroker(AGENT, f.capital, f.costs.fee_bps, f.costs.slippage_bps, f.mmr, f.funding_rate,
                              f.max_leverage, f.liq_guard, f.vol_stop_mult, interval)


class FuturesPolicy:
    agent = AGENT

    def __init__(self, s: Settings, step_size: float = 1e-6, last_close: dict[str, datetime] | None = None):
        self.s, self.f = s, s.futures
        self.limits = futures_limits(s)
        self.step = step_size
        self.last_close: dict[str, datetime] = dict(last_close or {})   # symbol -> time of the last close

    def reload(self, s: Settings) -> None:
        """Decide on ``s`` from now on (an operator reload of the promoted parameters)."""
        self.s, self.f = s, s.futures
        self.limits = futures_limits(s)

    def may_act(self, action: int, direction: int, position: Position | None, open_positions: int = 0,
                market_ok: bool = True, market_side: int = 0) -> bool:
        """False when :meth:`decide` (with ``pending_exit`` False) answers a signal of this ``action`` (+1 buy,
        -1 sell, 0 hold), ``direction``, ``market_ok`` and ``market_side`` without an intent, whatever else the
        signal holds ("none", "hold_position", or "blocked" by ``max_positions`` when the book already has
        ``open_positions`` open, or by the market filter when it is on): the backtest, which keeps only
        intents, skips building such signals."""
        if position is not None:
            return (action < 0 and position.side is PositionSide.LONG) or \
                   (action > 0 and position.side is PositionSide.SHORT) or self._market_exit(position, market_side)
        if open_positions >= self.limits.max_positions:   # check_entry blocks every entry (and exploration)
            return False
        if self.f.market_filter and not market_ok:        # every entry, exploration too, is market_blocked
            return False
        return action != 0 or direction != 0

    def _market_exit(self, position: Position, market_side: int) -> bool:
        """TB_MARKET_EXIT (with the filter on for this agent): the market closed on the other side of its mean."""
        if not (self.s.market_exit and self.f.market_filter):
            return False
        return market_side < 0 if position.side is PositionSide.LONG else market_side > 0

    @staticmethod
    def _exit(sig: Signal, position: Position, reason: str, text: str) -> Decision:
        """Close the whole held position (reduce-only, at its leverage) under its current exit id."""
        side = Side.SELL if position.side is PositionSide.LONG else Side.BUY
        order = Order(exit_order_id(position.entry_order_id, position.exit_seq), AGENT, sig.symbol, side, position.qty,
                      reduce_only=True, leverage=position.leverage, purpose="exit", reason=reason, created_at=sig.ts)
        return Decision("exit", text, Intent(order, sig.symbol, sig.price))

    def decide(self, sig: Signal, position: Position | None, book: Book, returns: dict[str, np.ndarray],
               pending_exit: bool = False) -> Decision:
        s, f = self.s, self.f
        if position is not None:
            opposite = (sig.action is Action.SELL and position.side is PositionSide.LONG) or \
                       (sig.action is Action.BUY and position.side is PositionSide.SHORT)
            if opposite and not pending_exit:
                return self._exit(sig, position, "signal",
                                  f"opposite signal while {position.side.value}: {sig.reason}")
            if self._market_exit(position, sig.market_side) and not pending_exit:
                where = "below" if position.side is PositionSide.LONG else "above"
                return self._exit(sig, position, MARKET_EXIT,
                                  f"market exit: {s.market_filter} closed {where} its mean while "
                                  f"{position.side.value} (TB_MARKET_EXIT); {sig.reason}")
            return Decision("hold_position", f"holding {position.side.value}; {sig.reason}")
        explore = None
        if sig.action is Action.HOLD:
            explore = exploration(AGENT, sig, s)
            if explore is None:
                return Decision("none", sig.reason)
        direction = (1 if sig.action is Action.BUY else -1) if explore is None else sig.direction
        if adverse(direction, sig.regime) and sig.quality < f.counter_regime_quality:
            return Decision("none", f"against the {sig.regime.label} regime: quality {sig.quality:.2f} < "
                                    f"{f.counter_regime_quality:.2f} (TB_FUTURES_COUNTER_REGIME_QUALITY)")
        last = self.last_close.get(sig.symbol)
        if last is not None and sig.ts - last < timedelta(hours=f.cooldown_h):
            return Decision("blocked", "risk rule cooldown", risk_rule="cooldown",
                            risk_detail={"last_close": last.isoformat(), "cooldown_h": f.cooldown_h})
        if not (np.isfinite(sig.atr) and sig.atr > 0):
            return Decision("none", f"no valid ATR ({sig.atr}) to place a stop")
        if f.market_filter and not sig.market_ok:
            return market_blocked(sig, s.market_filter, explore)
        weak = strength_blocked(sig, f.strength_top_k, direction, explore)
        if weak is not None:
            return weak

        if explore is not None:
            return self._explore(sig, direction, book, returns, explore)
        lev = choose_leverage(sig.conviction, s.min_conviction_score, sig.regime.volatility, f.max_leverage)
        stop_d = f.exits.stop_atr_mult * sig.atr
        # the guard is checked at the expected fill (the price moved against us by the slippage)
        fill_est = sig.price * (1 + direction * s.slippage_bps / 1e4)
        stop = fill_est - direction * stop_d
        probe_qty = 1.0
        liq = liquidation_price(direction, probe_qty, fill_est, initial_margin(probe_qty, fill_est, lev),
                                f.mmr)
        ok, ratio = stop_inside_liquidation(direction, fill_est, stop, liq, f.liq_guard)
        guard = {"leverage": lev, "stop": stop, "liquidation_price": liq, "stop_to_liquidation": ratio,
                 "max_fraction": f.liq_guard}
        if not ok:
            return Decision("blocked", "risk rule liquidation_guard", risk_rule="liquidation_guard", risk_detail=guard)

        target = risk_notional(book.equity, f.risk_per_trade, sig.price, stop_d)
        rd = check_entry(Candidate(sig.symbol, sig.price, direction, sig.size_fraction, returns, leverage=lev,
                                   spot=False, risk_notional=target), book, self.limits)
        if not rd.approved:
            return Decision("blocked", f"risk rule {rd.rule}", risk_rule=rd.rule, risk_detail=dict(rd.detail))
        qty = math.floor(rd.qty / self.step + 1e-9) * self.step
        if qty <= 0:
            return Decision("blocked", "risk rule below_min_notional", risk_rule="below_min_notional",
                            risk_detail={"qty": rd.qty, "step": self.step})
        order = Order(client_order_id(AGENT, sig.symbol, sig.ts, "entry"), AGENT, sig.symbol,
                      Side.BUY if direction > 0 else Side.SELL, qty, leverage=float(lev), purpose="entry",
                      reason=sig.reason[:240], created_at=sig.ts)
        bracket = self.protective_bracket(sig)
        margin = qty * sig.price / lev
        reserve = qty * sig.price * 2 * (s.futures_fee_bps + s.slippage_bps) / 1e4   # fees and slippage, in and out
        sizing = dict(rd.detail, notional=rd.notional, qty=qty, price_est=sig.price, risk_notional=target,
                      margin=margin, side="long" if direction > 0 else "short", guard=guard,
                      risk_per_trade=f.risk_per_trade)
        return Decision("enter", f"{'long' if direction > 0 else 'short'} {lev}x approved: notional "
                                 f"{rd.notional:.2f}, margin {margin:.2f}, liq {liq:.6g}",
                        Intent(order, sig.symbol, sig.price, bracket, sizing, cash_needed=margin + reserve))

    def protective_bracket(self, sig: Signal) -> Bracket:
        """The exits the rules give a position of ``sig``'s symbol (every entry; a position adopted from a venue)."""
        f = self.f
        return Bracket(stop_distance=f.exits.stop_atr_mult * sig.atr,
                       take_profit_distance=f.exits.take_profit_atr_mult * sig.atr,
                       trail_pct=f.exits.trail_pct, max_hold_s=f.exits.max_hold_h * 3600.0, entry_atr=sig.atr)

    def _explore(self, sig: Signal, direction: int, book: Book, returns: dict[str, np.ndarray], tag: dict) -> Decision:
        """A near-miss entry at 1x and the fixed exploration notional (TB_EXPLORE_NOTIONAL_USD, never more than
        the risk rules approve), after the counter-regime rule and the cooldown, through every risk rule (so it
        counts against the daily trade cap), tagged ``exploration`` (:mod:`tracer.optimize.exploration`)."""
        s = self.s
        rd = check_entry(Candidate(sig.symbol, sig.price, direction, 1.0, returns, leverage=1.0, spot=False),
                         book, self.limits)
        if not rd.approved:
            return Decision("blocked", f"exploration blocked: risk rule {rd.rule}", risk_rule=rd.rule,
                            risk_detail=dict(rd.detail, exploration=tag))
        notional = min(s.explore_notional_usd, rd.notional)
        qty = math.floor(notional / sig.price / self.step + 1e-9) * self.step
        if qty <= 0 or qty * sig.price < self.limits.min_trade_notional:
            return Decision("blocked", "exploration blocked: risk rule below_min_notional",
                            risk_rule="below_min_notional",
                            risk_detail={"notional": notional, "minimum": self.limits.min_trade_notional,
                                         "exploration": tag})
        order = Order(client_order_id(AGENT, sig.symbol, sig.ts, "entry"), AGENT, sig.symbol,
                      Side.BUY if direction > 0 else Side.SELL, qty, leverage=1.0, purpose="entry",
                      reason=f"exploration: {sig.reason}"[:240], created_at=sig.ts)
        bracket = self.protective_bracket(sig)
        margin = qty * sig.price
        reserve = qty * sig.price * 2 * (s.futures_fee_bps + s.slippage_bps) / 1e4
        sizing = dict(rd.detail, notional=margin, qty=qty, price_est=sig.price, margin=margin,
                      side="long" if direction > 0 else "short", exploration=tag)
        return Decision("enter", f"exploration {'long' if direction > 0 else 'short'} 1x (near miss: "
                                 f"{', '.join(tag['missed'])}): fixed notional {margin:.2f}; {sig.reason}",
                        Intent(order, sig.symbol, sig.price, bracket, sizing, cash_needed=margin + reserve))

    def on_trade_closed(self, symbol: str, at: datetime) -> None:
        # the latest close, as the DB gives it at a restart (Store.last_close_by_symbol): a close booked late
        # (a venue's lagging lookup) never moves the cooldown back
        last = self.last_close.get(symbol)
        self.last_close[symbol] = at if last is None or at > last else last


def build(settings: Settings, logger, store=None):
    """Wire the futures agent on the offline replay with the paper futures broker."""
    from tracer.agents.loop import AgentLoop, venue_broker
    from tracer.data.factory import make_feed
    from tracer.store import Store
    from tracer.sentiment.factory import make_scorer

    s = settings
    feed = make_feed(settings, s.futures.symbols)
    broker = paper_broker(s, feed.interval)
    store = store or Store(s.db_path)
    broker = venue_broker(s, AGENT, store, logger, feed.interval) or broker
    last_close = store.last_close_by_symbol(AGENT)
    scorer = make_scorer(settings, logger, store)
    return AgentLoop(AGENT, s, feed, broker, store, scorer, FuturesPolicy(s, last_close=last_close), logger,
                     s.futures.capital)
