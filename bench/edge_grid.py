"""The configurations the edge study tried (each counts as a trial; docs/study/edge_trials.md)."""
from __future__ import annotations

BASE = {"TB_PROFILE": "trend", "TB_LOOKBACK_BARS": "800"}


def _cfg(**kw: str) -> dict[str, str]:
    return {**BASE, **{f"TB_{k.upper()}": v for k, v in kw.items()}}


GRIDS = {
    # round 1: the higher-timeframe window and the band around its mean
    "window_band": {f"w{w}_b{b}": _cfg(trend_window_h=str(w), min_direction_score=str(b))
                    for w in (240, 480, 720) for b in (0.1, 0.3)},
}

# round 2: the exits (stop width in hourly ATRs, trailing stop), at the round-1 middle window and band
GRIDS["exits"] = {f"s{st}_t{tr}": _cfg(trend_window_h="480", min_direction_score="0.1", stop_atr_mult=st,
                                       futures_stop_atr_mult=st, trail_pct=tr, futures_trail_pct=tr)
                  for st in ("4", "8", "16") for tr in ("0", "0.08", "0.15")}

# round 3 (hybrid only): which risk rule turns the daily trend rule's train Sharpe (+0.90) into a loss?
_R3 = _cfg(trend_window_h="480", min_direction_score="0.1", trail_pct="0")
GRIDS["hybrid_rules"] = {
    "r3_base": _R3,
    "r3_no_kelly": {**_R3, "TB_KELLY_MIN_TRADES": "100000"},
    "r3_no_corr": {**_R3, "TB_MAX_CORRELATION": "1"},
    "r3_no_var": {**_R3, "TB_PORTFOLIO_VAR_LIMIT": "1"},
    "r3_9pos": {**_R3, "TB_MAX_POSITIONS": "9"},
    "r3_no_stop": {**_R3, "TB_STOP_ATR_MULT": "50"},
    "r3_no_gates": {**_R3, "TB_MIN_SIGNAL_QUALITY": "0", "TB_MIN_CONVICTION_SCORE": "1",
                    "TB_BEAR_QUALITY_PENALTY": "0", "TB_EXTREME_VOL_QUALITY_PENALTY": "0"},
}

# round 4 (hybrid only): the helpful changes of round 3 together, then the window and band again on top
_R4 = {**_R3, "TB_KELLY_MIN_TRADES": "100000", "TB_MAX_POSITIONS": "9"}
GRIDS["hybrid_combo"] = {
    "r4_nk_9p": _R4,
    "r4_nk_9p_nogates": {**_R4, "TB_MIN_SIGNAL_QUALITY": "0", "TB_MIN_CONVICTION_SCORE": "1",
                         "TB_BEAR_QUALITY_PENALTY": "0", "TB_EXTREME_VOL_QUALITY_PENALTY": "0"},
    "r4_nk_9p_b0.3": {**_R4, "TB_MIN_DIRECTION_SCORE": "0.3"},
    "r4_nk_9p_w240": {**_R4, "TB_TREND_WINDOW_H": "240"},
    "r4_nk_9p_w720": {**_R4, "TB_TREND_WINDOW_H": "720"},
}

# round 5 (hybrid only, diagnosis): every rule off = the hourly twin of the daily trend rule; is the
# hourly evaluation itself the gap to the daily rule?
_PURE = {**_R4, "TB_MIN_SIGNAL_QUALITY": "0", "TB_MIN_CONVICTION_SCORE": "1", "TB_BEAR_QUALITY_PENALTY": "0",
         "TB_EXTREME_VOL_QUALITY_PENALTY": "0", "TB_STOP_ATR_MULT": "50", "TB_CONFIDENCE_SIZING": "false",
         "TB_MAX_CORRELATION": "1", "TB_PORTFOLIO_VAR_LIMIT": "1", "TB_MAX_TRADES_PER_DAY": "100"}
GRIDS["hybrid_pure"] = {
    "r5_pure_b0.1": _PURE,
    "r5_pure_b0.01": {**_PURE, "TB_MIN_DIRECTION_SCORE": "0.01"},
    "r5_pure_b0.3": {**_PURE, "TB_MIN_DIRECTION_SCORE": "0.3"},
}

# round 6 (hybrid only): from the pure twin, each component switched back on alone
GRIDS["hybrid_addback"] = {
    "r6_+gates": {**_PURE, "TB_MIN_SIGNAL_QUALITY": "1", "TB_MIN_CONVICTION_SCORE": "2",
                  "TB_BEAR_QUALITY_PENALTY": "1", "TB_EXTREME_VOL_QUALITY_PENALTY": "2"},
    "r6_+stop8": {**_PURE, "TB_STOP_ATR_MULT": "8"},
    "r6_+confsize": {**_PURE, "TB_CONFIDENCE_SIZING": "true"},
    "r6_+corr": {**_PURE, "TB_MAX_CORRELATION": "0.9"},
    "r6_+var": {**_PURE, "TB_PORTFOLIO_VAR_LIMIT": "0.02"},
    "r6_+cap4": {**_PURE, "TB_MAX_TRADES_PER_DAY": "4"},
    "r6_+kelly": {**_PURE, "TB_KELLY_MIN_TRADES": "20"},
}

# round 7 (hybrid only): the two rules that cost most, at looser settings instead of off
GRIDS["hybrid_loose"] = {
    "r7_+var0.06": {**_PURE, "TB_PORTFOLIO_VAR_LIMIT": "0.06"},
    "r7_+var0.10": {**_PURE, "TB_PORTFOLIO_VAR_LIMIT": "0.10"},
    "r7_+kelly100": {**_PURE, "TB_KELLY_MIN_TRADES": "100"},
}

# round 8 (futures only): the futures rules, one at a time, from the round-2 best exits with Kelly off
_F8 = {**_cfg(trend_window_h="480", min_direction_score="0.1", futures_stop_atr_mult="8", futures_trail_pct="0.08"),
       "TB_KELLY_MIN_TRADES": "100000"}
GRIDS["futures_rules"] = {
    "r8_base": _F8,
    "r8_kelly_on": {**_F8, "TB_KELLY_MIN_TRADES": "20"},
    "r8_no_counter_regime": {**_F8, "TB_FUTURES_COUNTER_REGIME_QUALITY": "0"},
    "r8_no_cooldown": {**_F8, "TB_FUTURES_COOLDOWN_H": "0"},
    "r8_9pos": {**_F8, "TB_FUTURES_MAX_POSITIONS": "9"},
    "r8_no_gates": {**_F8, "TB_MIN_SIGNAL_QUALITY": "0", "TB_MIN_CONVICTION_SCORE": "1",
                    "TB_BEAR_QUALITY_PENALTY": "0", "TB_EXTREME_VOL_QUALITY_PENALTY": "0"},
    "r8_no_confsize": {**_F8, "TB_CONFIDENCE_SIZING": "false"},
    "r8_no_corr": {**_F8, "TB_MAX_CORRELATION": "1"},
    "r8_trail0": {**_F8, "TB_FUTURES_TRAIL_PCT": "0"},
}

# round 9 (both agents): the walk-forward selection. Structure fixed by rounds 3-8 (train windows only), in
# the profile; per fold the training window picks the window, the band and the trailing stop.
GRIDS["final"] = {f"w{w}_b{b}_t{t}": {"TB_PROFILE": "trend", "TB_TREND_WINDOW_H": w, "TB_MIN_DIRECTION_SCORE": b,
                                      "TB_TRAIL_PCT": t, "TB_FUTURES_TRAIL_PCT": t}
                  for w in ("240", "480") for b in ("0.1", "0.2") for t in ("0", "0.08")}

# the profiles as shipped (no selection: rows of the README table on the same OOS days)
GRIDS["profiles"] = {"trend": {"TB_PROFILE": "trend"}, "phase1c": {"TB_PROFILE": "phase1c"},
                     "conservative": {"TB_PROFILE": "conservative"}}

# round 10 (both agents): the honest walk-forward. Rounds 3-8 compared designs on the mean over *all* folds'
# training windows, which overlap later folds' test windows; here those structural choices (the seed's risk
# set vs the trend one: Kelly, VaR, positions) are picked again per fold on that fold's training window only,
# with the window, the band and the trailing stop.
_SEED_RISK = {"TB_KELLY_MIN_TRADES": "20", "TB_PORTFOLIO_VAR_LIMIT": "0.02", "TB_MAX_POSITIONS": "5"}
GRIDS["final2"] = {f"w{w}_b{b}_t{t}_{rk}": {"TB_PROFILE": "trend", "TB_TREND_WINDOW_H": w, "TB_MIN_DIRECTION_SCORE": b,
                                            "TB_TRAIL_PCT": t, "TB_FUTURES_TRAIL_PCT": t,
                                            **(_SEED_RISK if rk == "seedrisk" else {})}
                   for w in ("240", "480") for b in ("0.1", "0.2") for t in ("0", "0.08")
                   for rk in ("trendrisk", "seedrisk")}

# round 11 (hybrid only): a stronger regime gate for longs in a bear regime (the adverse-regime penalty)
# (the trend profile's window was 240 h then: pinned, since round 12 moved the profile to 480 h)
GRIDS["bear_gate"] = {f"r11_bear{b}": {"TB_PROFILE": "trend", "TB_TREND_WINDOW_H": "240", "TB_BEAR_QUALITY_PENALTY": b}
                      for b in ("1", "3", "5")}

# round 12 (both agents): the market filter (a new long only while BTC is above its own mean, a new short only
# while below; never an exit), its window = the trend window. The round-9 grid without the filter (already
# counted), with it for both agents, and with it for the hybrid only; the training folds choose among all 24.
_MKT = {"none": {}, "mkt": {"TB_MARKET_FILTER": "BTC/USD"},
        "mkth": {"TB_MARKET_FILTER": "BTC/USD", "TB_FUTURES_MARKET_FILTER": "false"}}
GRIDS["market"] = {f"w{w}_b{b}_t{t}_{m}": {**GRIDS["final"][f"w{w}_b{b}_t{t}"], **_MKT[m]}
                   for w in ("240", "480") for b in ("0.1", "0.2") for t in ("0", "0.08") for m in _MKT}

# rounds 0-12 ran before the hybrid's volatility-targeted size existed (a fixed share of equity), and their cells
# without the market filter before the trend profile set it (round 12): both pinned, so that they reproduce now
for _name, _grid in GRIDS.items():
    if _name != "profiles":
        for _ov in _grid.values():
            _ov.setdefault("TB_RISK_PER_TRADE", "0")
            _ov.setdefault("TB_MARKET_FILTER", "none")

# round 13 (hybrid only): volatility-targeted size (TB_RISK_PER_TRADE: the notional whose loss at the 8-ATR stop
# is that share of equity, capped at the fixed 10%), on the round-12 grid with the market filter; rpt 0 is the
# round-12 configuration itself (already counted), so 16 new configurations. The training folds choose.
GRIDS["risk"] = {f"w{w}_b{b}_t{t}_mkt_r{r}": {**GRIDS["market"][f"w{w}_b{b}_t{t}_mkt"], "TB_RISK_PER_TRADE": r}
                 for w in ("240", "480") for b in ("0.1", "0.2") for t in ("0", "0.08") for r in ("0", "0.003", "0.006")}
GRIDS["risk_off"] = {k: v for k, v in GRIDS["risk"].items() if k.endswith("_r0")}   # the same selection without it

# round 14 (written down before any run): the market filter also exits (TB_MARKET_EXIT: a held long is sold when BTC
# closes below its own mean by more than the band, a short bought back above it; the 0b daily rule "coin and BTC
# above their means" does this, and round 12 listed it as not tried). Hybrid: round 13's 24 cells without (already
# counted) and with it, chosen per fold on the hybrid's own training Sharpe: 24 new. Futures: round 12's 8 cells with
# the filter for both agents, without and with it, chosen on the futures agent's own training Sharpe: 8 new.
GRIDS["market_exit"] = {**GRIDS["risk"], **{f"{k}_mx": {**v, "TB_MARKET_EXIT": "true"} for k, v in GRIDS["risk"].items()}}
_MKT_BOTH = {k: v for k, v in GRIDS["market"].items() if k.endswith("_mkt")}
GRIDS["market_exit_futures"] = {**_MKT_BOTH, **{f"{k}_mx": {**v, "TB_MARKET_EXIT": "true"} for k, v in _MKT_BOTH.items()}}
GRIDS["market_exit_futures_off"] = dict(_MKT_BOTH)      # the same futures selection without the option (nothing new)

# round 15 (written down before any run): a longer market window than the trend window (round 12 listed "a market
# window other than the trend window" as not tried; a slow regime filter is the classic use of a long mean). The
# market filter's mean at 720 h (30 days) and 1,200 h (50 days) instead of the trend window, with a look-back of
# 1,300 bars so that the mean fits (TB_LOOKBACK_BARS; the counted cells keep theirs). Hybrid: round 13's 8 cells at
# 0.6% risk per trade; futures: round 12's 8 cells with the filter for both agents; each chosen per fold on its own
# agent's training Sharpe among its 24 (8 already counted). 32 new configurations.
_MW = {"mw0": {}, "mw720": {"TB_MARKET_WINDOW_H": "720", "TB_LOOKBACK_BARS": "1300"},
       "mw1200": {"TB_MARKET_WINDOW_H": "1200", "TB_LOOKBACK_BARS": "1300"}}
GRIDS["market_window"] = {f"w{w}_b{b}_t{t}_mkt_r0.006_{m}": {**GRIDS["risk"][f"w{w}_b{b}_t{t}_mkt_r0.006"], **_MW[m]}
                          for w in ("240", "480") for b in ("0.1", "0.2") for t in ("0", "0.08") for m in _MW}
GRIDS["market_window_futures"] = {f"w{w}_b{b}_t{t}_mkt_{m}": {**GRIDS["market"][f"w{w}_b{b}_t{t}_mkt"], **_MW[m]}
                                  for w in ("240", "480") for b in ("0.1", "0.2") for t in ("0", "0.08") for m in _MW}
GRIDS["market_window_off"] = {k: v for k, v in GRIDS["market_window"].items() if k.endswith("_mw0")}  # nothing new

# round 16 (written down and committed before any run): a multi-horizon trend (TB_TREND_ENSEMBLE: the trend gap is the
# mean of the log gaps from the means over half, one and two trend windows, e.g. 10, 20 and 40 days at 480 h; the
# classic time-series-momentum blend of Hurst, Ooi & Pedersen 2017, instead of one window the folds must pick). The
# market filter keeps the trend window's single mean. Look-back 1,000 bars in every ensemble cell (the 40-day mean
# fits). Hybrid: round 13's 8 cells at 0.6% risk per trade; futures: round 12's 8 cells with the filter for both
# agents; each × {one window (already counted), ensemble}, chosen per fold on its own agent's training Sharpe among
# its 16: 16 new configurations, 191 in all. Decision rule, fixed now: the option is adopted for an agent only if
# (a) that agent's walk-forward OOS Sharpe with it (16 cells) is above the same selection without it (its 8 counted
# cells: grids market_window_off / market_exit_futures_off) and (b) the round-9 rule (best mean training Sharpe over
# all folds among the 16) picks an ensemble cell, which then becomes the default; otherwise it stays off.
_ENS = {"one": {}, "ens": {"TB_TREND_ENSEMBLE": "true", "TB_LOOKBACK_BARS": "1000"}}
GRIDS["ensemble"] = {f"w{w}_b{b}_t{t}_mkt_r0.006_{e}": {**GRIDS["risk"][f"w{w}_b{b}_t{t}_mkt_r0.006"], **_ENS[e]}
                     for w in ("240", "480") for b in ("0.1", "0.2") for t in ("0", "0.08") for e in _ENS}
GRIDS["ensemble_futures"] = {f"w{w}_b{b}_t{t}_mkt_{e}": {**GRIDS["market"][f"w{w}_b{b}_t{t}_mkt"], **_ENS[e]}
                             for w in ("240", "480") for b in ("0.1", "0.2") for t in ("0", "0.08") for e in _ENS}

# round 17 (written down and committed before any run; hybrid only): a cross-sectional relative-strength filter
# (TB_STRENGTH_TOP_K: a new long only for a coin whose trend gap, the log distance of its close from its trend-window
# mean that its direction already reads, ranks among the K highest of the symbols evaluated at that bar; held
# positions are never exited by it). Cross-sectional momentum is the other classic trend effect in crypto (Liu,
# Tsyvinski & Wu 2022); it is the first of the two ideas the closing note listed as untried. K = 3 (the top third
# of the 9 coins) and 5; round 13's 8 cells at 0.6% risk per trade, each × {off (already counted), 3, 5}, chosen per
# fold on the hybrid's own training Sharpe among its 24: 16 new configurations, 207 in all. The futures agent is not
# part of this round (its policy ignores the filter unless TB_FUTURES_STRENGTH_TOP_K is set; default 0).
# Decision rule, fixed now, stricter than round 16's because round 16's check showed that where the folds fall moves
# the hybrid's walk-forward Sharpe by up to 0.87: the option is adopted only if (a) the walk-forward OOS Sharpe of
# the selection among the 24 beats the same selection among the 8 counted cells (grid market_window_off) both at the
# reported fold placement and on the mean over the four placements (--offset-days 0, 15, 30, 45), and (b) the
# round-9 rule (best mean training Sharpe over all folds at placement 0 among the 24) picks a K > 0 cell, which then
# becomes the trend profile's hybrid default; otherwise it stays off and selectable.
_RS = {"rs0": {}, "rs3": {"TB_STRENGTH_TOP_K": "3"}, "rs5": {"TB_STRENGTH_TOP_K": "5"}}
GRIDS["strength"] = {f"w{w}_b{b}_t{t}_mkt_r0.006_{k}": {**GRIDS["risk"][f"w{w}_b{b}_t{t}_mkt_r0.006"], **_RS[k]}
                     for w in ("240", "480") for b in ("0.1", "0.2") for t in ("0", "0.08") for k in _RS}

# round 18 (written down and committed before the option existed in the code; hybrid only; run at the venues' own
# fees, --fees venue, the fees the agent pays since 2026-12-06): a daily decision cadence (TB_DECISION_EVERY_H=24:
# the hybrid's trend entries and signal exits are decided only on the bar that closes at 00:00 UTC, the daily close
# the benchmark trend rules read; every other bar is a hold, and the stop is still checked on every bar). Why: at
# Alpaca's 25 bps a side a round trip costs about 60 bps with slippage, and an hourly close that wanders across the
# 1% band around the 20-day mean buys and sells the same coin within days; the issue names "hysteresis or a minimum
# hold so a signal does not flip every hour". One value, no new free parameter (the daily close is the rule's own
# clock). Round 13's 8 cells at 0.6% risk per trade × {every bar (already counted), 24 h}, chosen per fold on the
# hybrid's training Sharpe among its 16: 8 new configurations, 215 in all. Decision rule, fixed now (round 17's):
# adopted only if (a) the walk-forward OOS Sharpe of the selection among the 16 beats the same selection among the 8
# counted cells (grid market_window_off) both at the reported fold placement and on the mean over the four placements
# (--offset-days 0,15,30,45), all at --fees venue, and (b) the best mean training cell at placement 0 (at venue fees)
# is a 24 h cell, which then becomes the trend profile's hybrid default; otherwise it stays off and selectable.
_DC = {"dc1": {}, "dc24": {"TB_DECISION_EVERY_H": "24"}}
GRIDS["cadence"] = {f"w{w}_b{b}_t{t}_mkt_r0.006_{c}": {**GRIDS["risk"][f"w{w}_b{b}_t{t}_mkt_r0.006"], **_DC[c]}
                    for w in ("240", "480") for b in ("0.1", "0.2") for t in ("0", "0.08") for c in _DC}
