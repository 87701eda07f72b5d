"""The hybrid agent: spot crypto, long-only, on the shared cycle.

Its policy: a ``buy`` decision with no position becomes an entry sized by the risk rules, with a
bracket (ATR stop, ATR take-profit, trailing stop, time stop); a ``sell`` decision while holding
closes the position (``TB_EXIT_ON_SELL_SIGNAL``); a bearish signal without a position is recorded
and not traded (spot cannot short).
"""
from __future__ import annotations

import math
from datetime import timedelta

import numpy as np

from tracer.agents.loop import Decision, Intent
from tracer.agents.protocols import MARKET_EXIT, between_decisions, market_blocked, strength_blocked
from tracer.config import Settings
from tracer.execution.broker import Bracket, client_order_id, exit_order_id
from tracer.execution.paper import PaperSpotBroker
from tracer.models import Action, Order, Position, Side, Signal
from tracer.optimize.exploration import exploration
from tracer.risk.leverage import risk_notional
from tracer.risk.limits import Book, Candidate, RiskLimits, check_entry

AGENT = "hybrid"


def paper_broker(s: Settings, interval: timedelta) -> PaperSpotBroker:
    """The simulated spot broker of the replay and the backtest, from the hybrid section."""
    h = s.hybrid
    return PaperSpotBroker(AGENT, h.capital, h.costs.fee_bps, h.costs.slippage_bps, interval)


class HybridPolicy:
    agent = AGENT

    def __init__(self, s: Settings, step_size: float = 1e-8):
        self.s, self.exits = s, s.hybrid.exits
        self.limits = RiskLimits.from_settings(s)
        self.step = step_size

    def reload(self, s: Settings) -> None:
        """Decide on ``s`` from now on (an operator reload of the promoted parameters)."""
        self.s, self.exits = s, s.hybrid.exits
        self.limits = RiskLimits.from_settings(s)

    def may_act(self, action: int, direction: int, position: Position | None, open_positions: int = 0,
                market_ok: bool = True, market_side: int = 0) -> bool:
        """False when :meth:`decide` (with ``pending_exit`` False) answers a signal of this ``action`` (+1 buy,
        -1 sell, 0 hold), ``direction``, ``market_ok`` and ``market_side`` without an intent, whatever else the
        signal holds ("none", "hold_position", or "blocked" by ``max_positions`` when the book already has
        ``open_positions`` open, or by the market filter): the backtest, which keeps only intents, skips
        building such signals."""
        if position is not None:
            return (action < 0 and self.s.exit_on_sell_signal) or (self.s.market_exit and market_side < 0)
        if open_positions >= self.limits.max_positions:   # check_entry blocks every entry (and exploration)
            return False
        if not market_ok:                                 # every entry, exploration too, is market_blocked
            return False
        return action > 0 or (action == 0 and direction > 0)

    def decide(self, sig: Signal, position: Position | None, book: Book, returns: dict[str, np.ndarray],
               pending_exit: bool = False) -> Decision:
        every = self.s.hybrid.decision_every_h
        if between_decisions(sig.ts, every):
            # the daily cadence: no entry and no signal exit between decision bars (the stop still runs every bar)
            return Decision("hold_position" if position is not None else "none",
                            f"between decision bars (TB_DECISION_EVERY_H={every}); {sig.reason}")
        if position is not None:
            if sig.action is Action.SELL and self.s.exit_on_sell_signal and not pending_exit:
                return self._exit(sig, position, "signal", f"sell signal while holding: {sig.reason}")
            if self.s.market_exit and sig.market_side < 0 and not pending_exit:
                return self._exit(sig, position, MARKET_EXIT, f"market exit: {self.s.market_filter} closed below its "
                                                              f"mean while holding (TB_MARKET_EXIT); {sig.reason}")
            return Decision("hold_position", f"holding; {sig.reason}")
        if sig.action is Action.SELL:
            return Decision("none", f"spot is long-only, bearish signal not traded; {sig.reason}")
        if sig.action is not Action.BUY:
            tag = exploration(AGENT, sig, self.s) if sig.direction > 0 else None
            if tag is not None:
                if not sig.market_ok:
                    return market_blocked(sig, self.s.market_filter, tag)
                weak = strength_blocked(sig, self.s.hybrid.strength_top_k, +1, tag)
                return weak if weak is not None else self._explore(sig, book, returns, tag)
            return Decision("none", sig.reason)
        if not (np.isfinite(sig.atr) and sig.atr > 0):
            return Decision("none", f"no valid ATR ({sig.atr}) to place a stop")
        if not sig.market_ok:
            return market_blocked(sig, self.s.market_filter)
        weak = strength_blocked(sig, self.s.hybrid.strength_top_k, +1)
        if weak is not None:
            return weak
        rpt = self.s.hybrid.risk_per_trade
        # volatility-targeted size: the notional whose loss at the stop is rpt of equity (capped as usual)
        target = risk_notional(book.equity, rpt, sig.price, self.exits.stop_atr_mult * sig.atr) if rpt > 0 else None
        rd = check_entry(Candidate(sig.symbol, sig.price, +1, sig.size_fraction, returns, risk_notional=target),
                         book, self.limits)
        if not rd.approved:
            return Decision("blocked", f"risk rule {rd.rule}", risk_rule=rd.rule, risk_detail=dict(rd.detail))
        qty = math.floor(rd.qty / self.step + 1e-9) * self.step
        order = Order(client_order_id(AGENT, sig.symbol, sig.ts, "entry"), AGENT, sig.symbol, Side.BUY, qty,
                      purpose="entry", reason=sig.reason[:240], created_at=sig.ts)
        bracket = self.protective_bracket(sig)
        sizing = dict(rd.detail, notional=rd.notional, qty=qty, price_est=sig.price,
                      stop_atr_mult=self.exits.stop_atr_mult, take_profit_atr_mult=self.exits.take_profit_atr_mult)
        if target is not None:
            sizing.update(risk_notional=target, risk_per_trade=rpt)
        return Decision("enter", f"entry approved: notional {rd.notional:.2f} ({sig.size_fraction:.0%} of max)",
                        Intent(order, sig.symbol, sig.price, bracket, sizing))

    @staticmethod
    def _exit(sig: Signal, position: Position, reason: str, text: str) -> Decision:
        """Sell the whole held position under its current exit id."""
        order = Order(exit_order_id(position.entry_order_id, position.exit_seq), AGENT, sig.symbol, Side.SELL,
                      position.qty, reduce_only=True, purpose="exit", reason=reason, created_at=sig.ts)
        return Decision("exit", text, Intent(order, sig.symbol, sig.price))

    def protective_bracket(self, sig: Signal) -> Bracket:
        """The exits the rules give a position of ``sig``'s symbol (every entry; a position adopted from a venue)."""
        x = self.exits
        return Bracket(stop_distance=x.stop_atr_mult * sig.atr, take_profit_distance=x.take_profit_atr_mult * sig.atr,
                       trail_pct=x.trail_pct, max_hold_s=x.max_hold_h * 3600.0)

    def _explore(self, sig: Signal, book: Book, returns: dict[str, np.ndarray], tag: dict) -> Decision:
        """A near-miss long taken at the fixed exploration notional (TB_EXPLORE_NOTIONAL_USD, never more than
        the risk rules approve at full size), through every risk rule (so it counts against the daily trade
        cap), tagged ``exploration`` in the order's sizing and reason (:mod:`tracer.optimize.exploration`)."""
        if not (np.isfinite(sig.atr) and sig.atr > 0):
            return Decision("none", f"no valid ATR ({sig.atr}) to place a stop; {sig.reason}")
        rd = check_entry(Candidate(sig.symbol, sig.price, +1, 1.0, returns), book, self.limits)
        if not rd.approved:
            return Decision("blocked", f"exploration blocked: risk rule {rd.rule}", risk_rule=rd.rule,
                            risk_detail=dict(rd.detail, exploration=tag))
        notional = min(self.s.explore_notional_usd, rd.notional)
        qty = math.floor(notional / sig.price / self.step + 1e-9) * self.step
        if qty <= 0 or qty * sig.price < self.limits.min_trade_notional:
            return Decision("blocked", "exploration blocked: risk rule below_min_notional",
                            risk_rule="below_min_notional",
                            risk_detail={"notional": notional, "minimum": self.limits.min_trade_notional,
                                         "exploration": tag})
        order = Order(client_order_id(AGENT, sig.symbol, sig.ts, "entry"), AGENT, sig.symbol, Side.BUY, qty,
                      purpose="entry", reason=f"exploration: {sig.reason}"[:240], created_at=sig.ts)
        bracket = self.protective_bracket(sig)
        sizing = dict(rd.detail, notional=qty * sig.price, qty=qty, price_est=sig.price,
                      stop_atr_mult=self.exits.stop_atr_mult, take_profit_atr_mult=self.exits.take_profit_atr_mult,
                      exploration=tag)
        return Decision("enter", f"exploration entry (near miss: {', '.join(tag['missed'])}): fixed notional "
                                 f"{qty * sig.price:.2f}; {sig.reason}", Intent(order, sig.symbol, sig.price, bracket, sizing))


def build(settings: Settings, logger, store=None):
    """Wire the hybrid agent on the offline replay with the paper spot broker."""
    from tracer.agents.loop import AgentLoop, venue_broker
    from tracer.data.factory import make_feed
    from tracer.store import Store
    from tracer.sentiment.factory import make_scorer

    feed = make_feed(settings, settings.hybrid.symbols)
    broker = paper_broker(settings, feed.interval)
    store = store or Store(settings.db_path)
    broker = venue_broker(settings, AGENT, store, logger, feed.interval) or broker
    scorer = make_scorer(settings, logger, store)
    return AgentLoop(AGENT, settings, feed, broker, store, scorer, HybridPolicy(settings), logger,
                     settings.hybrid.capital)
