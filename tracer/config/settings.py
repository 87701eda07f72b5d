"""The declaration of every ``TB_*`` setting: type, default, allowed range and a one-line meaning."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tracer.config.keys import _split_keys
from tracer.config.profiles import ALL_SYMBOLS, PROFILES
from tracer.config.sections import FuturesSection, HybridSection, futures_section, hybrid_section
from tracer.config.venues import _VENUE_KEYS


def _var(env: str, kind: str, default: Any, help: str, *, lo: float | None = None,
         hi: float | None = None, choices: tuple[str, ...] | None = None, secret: bool = False,
         profile: bool = False, required_if: tuple[str, str] | None = None) -> Any:
    return field(default=default, metadata=dict(
        env=env, kind=kind, help=help, lo=lo, hi=hi, choices=choices, secret=secret,
        profile=profile, required_if=required_if))


@dataclass(frozen=True)
class Settings:
    # --- run-time placement --------------------------------------------------------------
    profile: str = _var("TB_PROFILE", "choice", "trend",
                        "strategy profile: trend (the 20-day-mean trend model with exits that let a trend run, "
                        "chosen out of sample), conservative (quality>=5, conviction>=6) or phase1c "
                        "(quality>=1, conviction>=2, 8 trades/day, confidence sizing)",
                        choices=tuple(PROFILES))
    db_path: Path = _var("TB_DB_PATH", "path", Path("state/tracer.db"), "SQLite audit DB file")
    log_dir: Path = _var("TB_LOG_DIR", "path", Path("logs"), "directory of the agents' log files")
    state_dir: Path = _var("TB_STATE_DIR", "path", Path("state"), "directory of pid files and runtime state")
    log_level: str = _var("TB_LOG_LEVEL", "choice", "INFO", "log level",
                          choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_max_mb: float = _var("TB_LOG_MAX_MB", "float", 50.0,
                             "an agent's log file is rotated at this size (MB; 0 = never)", lo=0, hi=100000)
    log_backups: int = _var("TB_LOG_BACKUPS", "int", 5, "rotated log files kept per agent", lo=1, hi=1000)
    write_artifacts: bool = _var("TB_WRITE_ARTIFACTS", "bool", False,
                                 "also write runs/<run_id>.json and bars/<run_id>_<symbol>.csv per cycle")
    autocommit_artifacts: bool = _var("TB_AUTOCOMMIT_ARTIFACTS", "bool", False,
                                      "git-commit the artifact folder (its own repository) every "
                                      "TB_AUTOCOMMIT_EVERY cycles (needs TB_WRITE_ARTIFACTS)")
    autocommit_every: int = _var("TB_AUTOCOMMIT_EVERY", "int", 24, "cycles between artifact commits", lo=1,
                                 hi=100000)
    autocommit_push: bool = _var("TB_AUTOCOMMIT_PUSH", "bool", False,
                                 "push each artifact commit to the artifact repository's upstream")
    artifact_dir: Path = _var("TB_ARTIFACT_DIR", "path", Path("state/artifacts"),
                              "where per-run JSON and bars CSV go when TB_WRITE_ARTIFACTS is on")

    # --- market data -----------------------------------------------------------------------
    feed: str = _var("TB_FEED", "choice", "replay",
                     "market data source: replay = bundled real history (offline default); live = venues "
                     "through the failover chain (TB_BAR_SOURCES) and live headlines (TB_NEWS_SOURCES)",
                     choices=("replay", "live"))
    data_dir: str = _var("TB_DATA_DIR", "str", "",
                         "folder of candles_1h_<SYMBOL>.csv files; empty = bundled data")
    headlines_path: str = _var("TB_HEADLINES_PATH", "str", "",
                               "headlines CSV (published_at,source,title,...); empty = bundled")
    symbols: tuple[str, ...] = _var("TB_SYMBOLS", "symbols", tuple(ALL_SYMBOLS.split(",")),
                                    "comma-separated symbols the hybrid agent trades")
    replay_start: datetime | None = _var("TB_REPLAY_START", "datetime",
                                         datetime(2022, 1, 10, tzinfo=timezone.utc),
                                         "UTC time the replay clock starts at (ISO 8601); empty = "
                                         "as soon as enough history exists")
    replay_end: datetime | None = _var("TB_REPLAY_END", "datetime", None,
                                       "UTC time the replay stops at; empty = end of the data")
    replay_interval_s: float = _var("TB_REPLAY_INTERVAL_S", "float", 1.0,
                                    "seconds between replay cycles (one bar each); 0 = as fast as possible",
                                    lo=0, hi=3600)
    lookback_bars: int = _var("TB_LOOKBACK_BARS", "int", None, "bars of history given to each evaluation",
                              lo=60, hi=5000, profile=True)
    min_bars: int = _var("TB_MIN_BARS", "int", 180, "fewest valid bars needed to evaluate a symbol",
                         lo=30, hi=5000)
    max_staleness_min: float = _var("TB_MAX_STALENESS_MIN", "float", 90.0,
                                    "a symbol whose last bar closed longer ago than this is skipped",
                                    lo=1, hi=100000)
    max_gap_bars: int = _var("TB_MAX_GAP_BARS", "int", 6,
                             "most bars one hole in a look-back window may miss (an exchange maintenance hour) "
                             "with the symbol still evaluated on the bars that exist; a longer hole skips the "
                             "symbol, alerted, until it has left the window; 0 = any hole skips",
                             lo=0, hi=1000)
    headline_lookback_h: float = _var("TB_HEADLINE_LOOKBACK_H", "float", 24.0,
                                      "hours of headlines considered for the narrative", lo=0.5, hi=720)

    # --- signals ---------------------------------------------------------------------------
    narrative_halflife_min: float = _var("TB_NARRATIVE_HALFLIFE_MIN", "float", 90.0,
                                         "half-life of a headline's weight in the narrative (minutes)",
                                         lo=1, hi=100000)
    sentiment_trim: float = _var("TB_SENTIMENT_TRIM", "float", 0.1,
                                 "share of extreme scores trimmed at each end before averaging", lo=0, hi=0.45)
    sentiment_scorer: str = _var("TB_SENTIMENT_SCORER", "choice", "auto",
                                 "headline scorer: auto = FinBERT if TB_FINBERT_MODEL loads, else the "
                                 "shipped trained model, else the VADER lexicon",
                                 choices=("auto", "finbert", "trained", "lexicon"))
    finbert_model: str = _var("TB_FINBERT_MODEL", "str", "",
                              "FinBERT model: a local directory or a hub id (e.g. ProsusAI/finbert, "
                              "network once); empty = no FinBERT")
    finbert_batch: int = _var("TB_FINBERT_BATCH", "int", 32, "headlines per FinBERT forward pass",
                              lo=1, hi=512)
    finbert_threads: int = _var("TB_FINBERT_THREADS", "int", 0,
                                "torch CPU threads for FinBERT (0 = torch's default)", lo=0, hi=256)
    finbert_quantize: bool = _var("TB_FINBERT_QUANTIZE", "bool", False,
                                  "dynamic int8 quantisation of FinBERT's Linear layers (faster on CPU)")
    volume_z_window: int = _var("TB_VOLUME_Z_WINDOW", "int", 20, "bars in the volume z-score window",
                                lo=5, hi=1000)
    divergence_threshold: float = _var("TB_DIVERGENCE_THRESHOLD", "float", 0.5,
                                       "base |narrative - price| that counts as a divergence (10 = off)", lo=0.05, hi=10)
    min_direction_score: float = _var("TB_MIN_DIRECTION_SCORE", "float", None,
                                      "|0.6*price + 0.4*narrative| needed to call a direction (trend model: the band "
                                      "around the mean inside which a held position is kept)",
                                      lo=0, hi=1, profile=True)
    trend_window_h: float = _var("TB_TREND_WINDOW_H", "float", None,
                                 "hours in the higher-timeframe mean the trend model reads (480 = 20 days); the "
                                 "price score is then the close's distance from it, and TB_MIN_DIRECTION_SCORE the "
                                 "band around it; 0 = the seed's hourly oscillators (profile trend: 480)",
                                 lo=0, hi=5000, profile=True)
    trend_ensemble: bool = _var("TB_TREND_ENSEMBLE", "bool", False,
                                "multi-horizon trend: the trend model's gap is the mean of the gaps from the means "
                                "over half, one and two TB_TREND_WINDOW_H (10, 20 and 40 days at 480), so "
                                "TB_LOOKBACK_BARS must hold twice the window")
    market_filter: str = _var("TB_MARKET_FILTER", "market", None,
                              "market filter: a new long only while this symbol's close is above its mean over "
                              "TB_MARKET_WINDOW_H, a new short only while below (exits are never blocked); an agent "
                              "whose symbols lack it trades without it; none = off (profile trend: BTC/USD)",
                              profile=True)
    market_window_h: float = _var("TB_MARKET_WINDOW_H", "float", 0.0,
                                  "hours in the market filter's mean; 0 = TB_TREND_WINDOW_H (both 0: the profile's "
                                  "filter is off)", lo=0, hi=5000)
    futures_market_filter: bool = _var("TB_FUTURES_MARKET_FILTER", "bool", True,
                                       "the futures agent obeys TB_MARKET_FILTER too (false: the hybrid only)")
    market_exit: bool = _var("TB_MARKET_EXIT", "bool", False,
                             "the market filter also exits: a held long is sold when the market symbol closes below "
                             "its mean by more than the band TB_MIN_DIRECTION_SCORE, a held short bought back when "
                             "above it (the futures agent only with TB_FUTURES_MARKET_FILTER); false = the filter "
                             "only refuses new entries")
    strength_top_k: int = _var("TB_STRENGTH_TOP_K", "int", 0,
                               "hybrid: relative-strength filter, a new long only for a coin whose trend gap (the "
                               "close's distance from its TB_TREND_WINDOW_H mean) ranks among the K highest of the "
                               "symbols evaluated at that bar; never an exit; 0 = off", lo=0, hi=100)
    decision_every_h: int = _var("TB_DECISION_EVERY_H", "int", 0,
                                 "hybrid: decide trend entries and signal exits only on bars that close at a multiple "
                                 "of this many hours UTC (24: the 00:00 UTC daily close); every other bar holds, and "
                                 "the stop is checked on every bar; 0 = every bar", lo=0, hi=168)
    futures_strength_top_k: int = _var("TB_FUTURES_STRENGTH_TOP_K", "int", 0,
                                       "futures: the same filter, a new long only among the K strongest, a new "
                                       "short only among the K weakest; 0 = off", lo=0, hi=100)
    min_signal_quality: float = _var("TB_MIN_SIGNAL_QUALITY", "float", None,
                                     "signal quality gate 0-10 (profile default)", lo=0, hi=10, profile=True)
    min_conviction_score: float = _var("TB_MIN_CONVICTION_SCORE", "float", None,
                                       "conviction gate 1-10 (profile default)", lo=1, hi=10, profile=True)
    bear_quality_penalty: float = _var("TB_BEAR_QUALITY_PENALTY", "float", 1.0,
                                       "extra quality required in bear/strong_bear regimes", lo=0, hi=10)
    extreme_vol_quality_penalty: float = _var("TB_EXTREME_VOL_QUALITY_PENALTY", "float", 2.0,
                                              "extra quality required in extreme volatility", lo=0, hi=10)
    confidence_sizing: bool = _var("TB_CONFIDENCE_SIZING", "bool", None,
                                   "scale size 20%..100% of the max by conviction (profile default)",
                                   profile=True)

    # --- risk --------------------------------------------------------------------------------
    hybrid_capital: float = _var("TB_HYBRID_CAPITAL", "float", 100_000.0,
                                 "starting cash of the hybrid agent's paper account (USD)", lo=100, hi=1e9)
    max_trades_per_day: int = _var("TB_MAX_TRADES_PER_DAY", "int", None,
                                   "new entries per agent per UTC day (profile default)", lo=0, hi=1000,
                                   profile=True)
    max_positions: int = _var("TB_MAX_POSITIONS", "int", None, "open positions per agent", lo=0, hi=100, profile=True)
    max_position_pct: float = _var("TB_MAX_POSITION_PCT", "float", 0.10,
                                   "largest position as a fraction of equity", lo=0.001, hi=1)
    risk_per_trade: float = _var("TB_RISK_PER_TRADE", "float", None,
                                 "hybrid: size an entry so that its stop-loss costs this fraction of equity "
                                 "(volatility-targeted, never above TB_MAX_POSITION_PCT); 0 = a fixed "
                                 "TB_MAX_POSITION_PCT of equity (profile default)", lo=0, hi=0.2, profile=True)
    max_trade_notional: float = _var("TB_MAX_TRADE_NOTIONAL_USD", "float", 10_000.0,
                                     "hard cap on one order's notional (USD)", lo=1, hi=1e9)
    min_trade_notional: float = _var("TB_MIN_TRADE_NOTIONAL_USD", "float", 10.0,
                                     "orders smaller than this are not placed (USD)", lo=0, hi=1e6)
    daily_loss_limit_pct: float = _var("TB_DAILY_LOSS_LIMIT_PCT", "float", 0.03,
                                       "loss from the UTC day's starting equity that stops new entries",
                                       lo=0.001, hi=1)
    kelly_min_trades: int = _var("TB_KELLY_MIN_TRADES", "int", None,
                                 "closed trades needed before half-Kelly sizing applies", lo=2, hi=100000, profile=True)
    kelly_cap: float = _var("TB_KELLY_CAP", "float", 0.25, "cap on the half-Kelly fraction", lo=0.001, hi=1)
    kelly_floor: float = _var("TB_KELLY_FLOOR", "float", 0.01,
                              "smallest position fraction when Kelly says no edge", lo=0, hi=1)
    max_correlation: float = _var("TB_MAX_CORRELATION", "float", 0.9,
                                  "|correlation| of returns with an open position that blocks an entry",
                                  lo=0, hi=1)
    portfolio_var_limit: float = _var("TB_PORTFOLIO_VAR_LIMIT", "float", None,
                                      "portfolio VaR limit as a fraction of equity", lo=0.0001, hi=1, profile=True)
    var_confidence: float = _var("TB_VAR_CONFIDENCE", "float", 0.95, "VaR confidence level", lo=0.5, hi=0.999)
    var_horizon_bars: int = _var("TB_VAR_HORIZON_BARS", "int", 24, "VaR horizon in bars (historical simulation)",
                                 lo=1, hi=500)

    # --- execution (paper broker) and exits ----------------------------------------------
    # the venues' own taker fees at their first volume tier: Alpaca crypto 0.25%, Binance USD-M futures 0.05%
    fee_bps: float = _var("TB_FEE_BPS", "float", 25.0, "spot (hybrid) taker fee in basis points (Alpaca crypto, "
                          "first volume tier: 25)", lo=0, hi=500)
    futures_fee_bps: float = _var("TB_FUTURES_FEE_BPS", "float", 5.0, "futures taker fee in basis points "
                                  "(Binance USD-M, VIP 0: 5; Bybit: 5.5)", lo=0, hi=500)
    slippage_bps: float = _var("TB_SLIPPAGE_BPS", "float", 5.0, "slippage in basis points against us",
                               lo=0, hi=1000)
    stop_atr_mult: float = _var("TB_STOP_ATR_MULT", "float", None, "stop-loss distance in ATRs",
                                lo=0.1, hi=50, profile=True)
    take_profit_atr_mult: float = _var("TB_TAKE_PROFIT_ATR_MULT", "float", None,
                                       "take-profit distance in ATRs", lo=0.1, hi=100, profile=True)
    trail_pct: float = _var("TB_TRAIL_PCT", "float", None,
                            "trailing stop as a fraction below the best price (0 = off)", lo=0, hi=0.9, profile=True)
    max_hold_h: float = _var("TB_MAX_HOLD_H", "float", None, "time stop in hours (0 = off)",
                             lo=0, hi=10000, profile=True)
    exit_on_sell_signal: bool = _var("TB_EXIT_ON_SELL_SIGNAL", "bool", True,
                                     "close a spot position when its symbol's decision turns to sell")

    # --- futures agent (USD-M perpetuals, long and short) ---------------------------------
    futures_symbols: tuple[str, ...] = _var("TB_FUTURES_SYMBOLS", "symbols", tuple(ALL_SYMBOLS.split(",")),
                                            "comma-separated symbols the futures agent trades")
    futures_capital: float = _var("TB_FUTURES_CAPITAL", "float", 10_000.0,
                                  "starting wallet of the futures agent's paper account (USD)", lo=100, hi=1e9)
    futures_max_leverage: float = _var("TB_FUTURES_MAX_LEVERAGE", "float", None,
                                       "highest leverage of a futures trade", lo=1, hi=125, profile=True)
    futures_max_positions: int = _var("TB_FUTURES_MAX_POSITIONS", "int", 5, "open futures positions",
                                      lo=0, hi=100)
    futures_max_trades_per_day: int = _var("TB_FUTURES_MAX_TRADES_PER_DAY", "int", None,
                                           "new futures entries per UTC day", lo=0, hi=1000, profile=True)
    futures_risk_per_trade: float = _var("TB_FUTURES_RISK_PER_TRADE", "float", 0.01,
                                         "capital lost if the stop is hit, as a fraction of equity", lo=0.0001, hi=0.2)
    futures_max_notional: float = _var("TB_FUTURES_MAX_NOTIONAL_USD", "float", 20_000.0,
                                       "hard cap on one futures order's notional (USD)", lo=1, hi=1e9)
    futures_max_notional_pct: float = _var("TB_FUTURES_MAX_NOTIONAL_PCT", "float", 1.0,
                                           "largest futures notional as a fraction of equity", lo=0.001, hi=50)
    futures_daily_loss_limit_pct: float = _var("TB_FUTURES_DAILY_LOSS_LIMIT_PCT", "float", 0.20,
                                               "futures loss from the UTC day's start that halts new entries",
                                               lo=0.001, hi=1)
    futures_var_limit: float = _var("TB_FUTURES_VAR_LIMIT", "float", 0.25,
                                    "futures portfolio VaR limit as a fraction of equity", lo=0.0001, hi=10)
    futures_cooldown_h: float = _var("TB_FUTURES_COOLDOWN_H", "float", None,
                                     "hours after a close before the same symbol is traded again",
                                     lo=0, hi=1000, profile=True)
    futures_counter_regime_quality: float = _var("TB_FUTURES_COUNTER_REGIME_QUALITY", "float", 6.0,
                                                 "quality needed to trade against the regime", lo=0, hi=10)
    futures_mmr: float = _var("TB_FUTURES_MMR", "float", 0.004,
                              "maintenance margin rate (Binance USD-M first bracket: 0.4%)", lo=0.0001, hi=0.5)
    futures_funding_rate: float = _var("TB_FUTURES_FUNDING_RATE", "float", 0.0001,
                                       "funding rate per 8 h in the replay (longs pay when positive)",
                                       lo=-0.05, hi=0.05)
    futures_liq_guard: float = _var("TB_FUTURES_LIQ_GUARD", "float", 0.5,
                                    "largest stop distance as a fraction of the liquidation distance", lo=0.01, hi=0.99)
    futures_stop_atr_mult: float = _var("TB_FUTURES_STOP_ATR_MULT", "float", None,
                                        "futures stop-loss distance in ATRs", lo=0.1, hi=50, profile=True)
    futures_take_profit_atr_mult: float = _var("TB_FUTURES_TAKE_PROFIT_ATR_MULT", "float", None,
                                               "futures take-profit distance in ATRs", lo=0.1, hi=100, profile=True)
    futures_trail_pct: float = _var("TB_FUTURES_TRAIL_PCT", "float", None,
                                    "futures trailing stop distance from the best price (0 = off)",
                                    lo=0, hi=0.9, profile=True)
    futures_max_hold_h: float = _var("TB_FUTURES_MAX_HOLD_H", "float", None, "futures time stop in hours (0 = off)",
                                     lo=0, hi=10000, profile=True)
    futures_vol_stop_mult: float = _var("TB_FUTURES_VOL_STOP_MULT", "float", None,
                                        "exit when a bar's range exceeds this many entry ATRs (0 = off)",
                                        lo=0, hi=100, profile=True)

    # --- notifications ---------------------------------------------------------------------
    notify_console: bool = _var("TB_NOTIFY_CONSOLE", "bool", True, "print trade notifications to the log")
    heartbeat_every: int = _var("TB_HEARTBEAT_EVERY", "int", 1, "write a heartbeat every N cycles", lo=1, hi=100000)
    discord_webhook_url: str = _var("TB_DISCORD_WEBHOOK_URL", "url", "",
                                    "Discord webhook URL; set = Discord notifications on (empty = off)", secret=True)
    telegram_bot_token: str = _var("TB_TELEGRAM_BOT_TOKEN", "str", "",
                                   "Telegram bot token; with TB_TELEGRAM_CHAT_ID = Telegram notifications and "
                                   "commands on (empty = off)", secret=True,
                                   required_if=("telegram_chat_id", "<set>"))
    telegram_chat_id: str = _var("TB_TELEGRAM_CHAT_ID", "str", "",
                                 "the one Telegram chat that receives messages and may send commands",
                                 required_if=("telegram_bot_token", "<set>"))
    telegram_allowed_user_ids: str = _var("TB_TELEGRAM_ALLOWED_USER_IDS", "ids", "",
                                          "comma-separated Telegram user ids allowed to send commands (empty = "
                                          "only the user whose private chat is TB_TELEGRAM_CHAT_ID)")
    telegram_command_max_age_s: float = _var("TB_TELEGRAM_COMMAND_MAX_AGE_S", "float", 300.0,
                                             "a command older than this (queued while the listener was down) "
                                             "is ignored", lo=1, hi=86400)
    telegram_base_url: str = _var("TB_TELEGRAM_BASE_URL", "url", "https://api.telegram.org/bot",
                                  "Telegram Bot API base URL (the token is appended); change only for tests")
    telegram_poll_timeout_s: int = _var("TB_TELEGRAM_POLL_TIMEOUT_S", "int", 25,
                                        "long-poll seconds of the Telegram command listener", lo=0, hi=50)
    notify_heartbeat_every: int = _var("TB_NOTIFY_HEARTBEAT_EVERY", "int", 24,
                                       "send a heartbeat notification every N cycles (0 = never)", lo=0, hi=1000000)
    notify_daily_summary: bool = _var("TB_NOTIFY_DAILY_SUMMARY", "bool", True,
                                      "send each agent's daily summary (P&L, trades, win rate) when the UTC day ends")
    notify_max_attempts: int = _var("TB_NOTIFY_MAX_ATTEMPTS", "int", 5,
                                    "delivery attempts of one message before it is marked failed", lo=1, hi=100)
    notify_backoff_s: float = _var("TB_NOTIFY_BACKOFF_S", "float", 2.0,
                                   "first retry wait (doubles each attempt) when no retry_after is given",
                                   lo=0, hi=3600)
    notify_backoff_max_s: float = _var("TB_NOTIFY_BACKOFF_MAX_S", "float", 60.0,
                                       "longest retry wait between attempts (a server asking for longer gets its "
                                       "row retried this much later)",
                                       lo=0, hi=3600)
    notify_poll_s: float = _var("TB_NOTIFY_POLL_S", "float", 2.0,
                                "seconds between the delivery worker's looks at the outbox", lo=0.01, hi=3600)
    notify_timeout_s: float = _var("TB_NOTIFY_TIMEOUT_S", "float", 10.0,
                                   "HTTP timeout of one Discord or Telegram request (seconds)", lo=0.1, hi=300)

    # --- operations: watchdogs and health check (tracer/ops.py, scripts/watchdog*.sh) -------------
    watchdog_enabled: bool = _var("TB_WATCHDOG_ENABLED", "bool", True,
                                  "start_trading_system.sh also starts one watchdog loop per agent")
    watchdog_interval_s: float = _var("TB_WATCHDOG_INTERVAL_S", "float", 60.0,
                                      "seconds between two passes of a watchdog in --loop mode", lo=0.1, hi=3600)
    watchdog_max_heartbeat_age_min: float = _var("TB_WATCHDOG_MAX_HEARTBEAT_AGE_MIN", "float", 10.0,
                                                 "a running agent whose heartbeat is older is hung: restarted",
                                                 lo=0.05, hi=10080)
    watchdog_max_restarts_per_hour: int = _var("TB_WATCHDOG_MAX_RESTARTS_PER_HOUR", "int", 3,
                                               "restarts of one agent per hour before its watchdog alerts and "
                                               "gives up (until the agent is started again)", lo=1, hi=1000)
    watchdog_stop_grace_s: float = _var("TB_WATCHDOG_STOP_GRACE_S", "float", 30.0,
                                        "seconds a hung agent gets after SIGTERM before SIGKILL", lo=0.1, hi=600)
    health_disk_warn_pct: float = _var("TB_HEALTH_DISK_WARN_PCT", "float", 10.0,
                                       "free disk below this % of the DB's volume is a health warning", lo=0, hi=100)
    health_disk_critical_pct: float = _var("TB_HEALTH_DISK_CRITICAL_PCT", "float", 3.0,
                                           "free disk below this % of the DB's volume is critical", lo=0, hi=100)
    health_error_window_min: float = _var("TB_HEALTH_ERROR_WINDOW_MIN", "float", 60.0,
                                          "minutes of recent cycles and log lines the error-rate check reads",
                                          lo=1, hi=100000)
    health_error_rate_warn: float = _var("TB_HEALTH_ERROR_RATE_WARN", "float", 0.1,
                                         "share of recent cycles not 'ok' that is a health warning", lo=0, hi=1)
    health_backlog_min: float = _var("TB_HEALTH_BACKLOG_MIN", "float", 15.0,
                                     "a notification still pending after this many minutes is a backlog warning",
                                     lo=0.1, hi=100000)
    health_alert_repeat_min: float = _var("TB_HEALTH_ALERT_REPEAT_MIN", "float", 60.0,
                                          "a failing check is not alerted again within this many minutes "
                                          "(unless its level changes)", lo=0, hi=100000)
    # monitoring (tracer/ops): alert routing per level, per-check repeat windows, record, self-healing
    alert_channels_info: str = _var("TB_ALERT_CHANNELS_INFO", "channels", "console",
                                    "channels of info alerts (recoveries, heal actions that worked)")
    alert_channels_warning: str = _var("TB_ALERT_CHANNELS_WARNING", "channels", "console,discord,telegram",
                                       "channels of warning alerts (those enabled are used)")
    alert_channels_critical: str = _var("TB_ALERT_CHANNELS_CRITICAL", "channels", "console,discord,telegram",
                                        "channels of critical alerts (those enabled are used)")
    health_alert_repeat_by_check: str = _var("TB_HEALTH_ALERT_REPEAT_BY_CHECK", "str", "",
                                             "per-check repeat windows in minutes, e.g. disk=240,heartbeat=15 "
                                             "(a name matches a check and its [agent] variants)")
    monitor_retention_days: float = _var("TB_MONITOR_RETENTION_DAYS", "float", 30.0,
                                         "days the monitoring record (monitor_events) is kept", lo=1, hi=3650)
    heal_max_per_day: int = _var("TB_HEAL_MAX_PER_DAY", "int", 3,
                                 "restarts of one process by health_check.sh --heal per 24 h before it only alerts",
                                 lo=0, hi=1000)
    health_log_stale_min: float = _var("TB_HEALTH_LOG_STALE_MIN", "float", 90.0,
                                       "a running agent whose log was not written for this long is a warning",
                                       lo=1, hi=100000)
    health_agent_max_rss_mb: float = _var("TB_HEALTH_AGENT_MAX_RSS_MB", "float", 2048.0,
                                          "an agent using more memory (resident) than this is a warning",
                                          lo=16, hi=1000000)

    # --- live data (TB_FEED=live; tracer/data/sources, tracer/news) ---------------------------
    bar_sources: str = _var("TB_BAR_SOURCES", "str", "alpaca,binance_spot,yahoo,coingecko",
                            "live bar sources in failover order (alpaca, binance_spot, binance_usdm, yahoo, "
                            "coingecko)")
    news_sources: str = _var("TB_NEWS_SOURCES", "str", "alpaca,perplexity",
                             "live headline providers (alpaca needs the Alpaca keys, perplexity PPLX_API_KEY*); "
                             "empty = none")
    news_source_weights: str = _var("TB_NEWS_SOURCE_WEIGHTS", "str", "alpaca=1.0,perplexity=0.8",
                                    "name=weight per provider (or provider/publisher): scales a headline's "
                                    "weight in the narrative; of duplicate stories the heavier copy is kept")
    alpaca_data_url: str = _var("TB_ALPACA_DATA_URL", "url", "https://data.alpaca.markets",
                                "Alpaca market data base URL (crypto bars, news); change only for tests")
    binance_spot_url: str = _var("TB_BINANCE_SPOT_URL", "url", "https://api.binance.com",
                                 "Binance spot REST base URL (/api/v3/klines is appended)")
    binance_futures_data_url: str = _var("TB_BINANCE_FUTURES_DATA_URL", "url", "https://fapi.binance.com",
                                         "Binance USD-M market data base URL for the binance_usdm bar source "
                                         "(/fapi/v1/klines is appended)")
    yahoo_url: str = _var("TB_YAHOO_URL", "url", "https://query2.finance.yahoo.com",
                          "Yahoo Finance chart API base URL")
    coingecko_url: str = _var("TB_COINGECKO_URL", "url", "https://api.coingecko.com",
                              "CoinGecko API base URL (/api/v3/... is appended)")
    pplx_url: str = _var("TB_PPLX_URL", "url", "https://api.perplexity.ai",
                         "Perplexity API base URL (/chat/completions is appended)")
    pplx_model: str = _var("TB_PPLX_MODEL", "str", "sonar", "Perplexity model asked for headlines")
    http_timeout_s: float = _var("TB_HTTP_TIMEOUT_S", "float", 10.0,
                                 "timeout of one market-data or news HTTP request (seconds)", lo=0.5, hi=300)
    breaker_failures: int = _var("TB_BREAKER_FAILURES", "int", 3,
                                 "consecutive failures after which a bar source is skipped for a cool-down",
                                 lo=1, hi=1000)
    breaker_cooldown_s: float = _var("TB_BREAKER_COOLDOWN_S", "float", 300.0,
                                     "seconds a failing bar source is skipped before one trial request",
                                     lo=1, hi=86400)
    pplx_auth_cooldown_s: float = _var("TB_PPLX_AUTH_COOLDOWN_S", "float", 21600.0,
                                       "cool-down of a Perplexity key refused with 401/403 (seconds)",
                                       lo=60, hi=2592000)
    pplx_error_cooldown_s: float = _var("TB_PPLX_ERROR_COOLDOWN_S", "float", 60.0,
                                        "first cool-down of a key after a 5xx (doubles, at most 1 h), and after "
                                        "a 429 without Retry-After (seconds)", lo=1, hi=86400)
    pplx_max_wait_s: float = _var("TB_PPLX_MAX_WAIT_S", "float", 30.0,
                                  "longest sleep for a cooling key (e.g. a 429's Retry-After) before giving up "
                                  "on headlines for the cycle", lo=0, hi=600)

    # --- venues: real order execution (tracer/execution/venue_broker.py, venues/) -------------
    venue_hybrid: str = _var("TB_VENUE_HYBRID", "choice", "auto",
                             "where the hybrid agent trades: paper (simulated), alpaca, or auto (alpaca when "
                             "the Alpaca keys are set and TB_FEED=live, else paper)",
                             choices=("auto", "paper", "alpaca"))
    venue_futures: str = _var("TB_VENUE_FUTURES", "choice", "auto",
                              "where the futures agent trades: paper, binance, bybit, or auto (binance when its "
                              "keys are set, else bybit when its keys are set, and TB_FEED=live; else paper)",
                              choices=("auto", "paper", "binance", "bybit"))
    futures_backup_venue: str = _var("TB_FUTURES_BACKUP_VENUE", "choice", "bybit",
                                     "venue the futures agent fails over to when its venue is down (needs that "
                                     "venue's keys; none = no failover)", choices=("none", "bybit", "binance"))
    live_trading: str = _var("TB_LIVE_TRADING", "choice", "no",
                             "yes allows a venue URL that is not a paper/testnet endpoint (real money); "
                             "without it such a URL refuses to start", choices=("no", "yes"))
    alpaca_trading_url: str = _var("TB_ALPACA_TRADING_URL", "url", "https://paper-api.alpaca.markets",
                                   "Alpaca trading API base URL (paper by default; live needs TB_LIVE_TRADING=yes)")
    binance_futures_url: str = _var("TB_BINANCE_FUTURES_URL", "url", "https://testnet.binancefuture.com",
                                    "Binance USD-M futures trading base URL (testnet by default; live "
                                    "https://fapi.binance.com needs TB_LIVE_TRADING=yes)")
    bybit_url: str = _var("TB_BYBIT_URL", "url", "https://api-testnet.bybit.com",
                          "Bybit v5 API base URL (testnet by default; live needs TB_LIVE_TRADING=yes)")
    venue_timeout_s: float = _var("TB_VENUE_TIMEOUT_S", "float", 10.0,
                                  "timeout of one venue request (seconds); a timed-out order is then looked up "
                                  "by its client order id, never blindly re-sent", lo=0.2, hi=120)
    venue_max_retries: int = _var("TB_VENUE_MAX_RETRIES", "int", 3,
                                  "attempts of a venue read (and of a lookup after an ambiguous order) before "
                                  "the cycle gives up on it", lo=1, hi=20)
    venue_backoff_s: float = _var("TB_VENUE_BACKOFF_S", "float", 0.5,
                                  "first retry delay of a venue read (doubles each attempt, with jitter)",
                                  lo=0, hi=60)
    venue_max_wait_s: float = _var("TB_VENUE_MAX_WAIT_S", "float", 30.0,
                                   "longest in-cycle wait for a 429 Retry-After; longer waits skip the venue "
                                   "for this cycle", lo=0, hi=600)
    venue_exit_max_wait_s: float = _var("TB_VENUE_EXIT_MAX_WAIT_S", "float", 90.0,
                                        "longest in-cycle wait of a market exit, venue stop or target for a 429's "
                                        "window (Alpaca's is a minute, Binance's order-rate one 60 s): these are a "
                                        "position's stop, and a longer wait leaves it to the next cycle", lo=0, hi=600)
    venue_unconfirmed_grace_s: float = _var("TB_VENUE_UNCONFIRMED_GRACE_S", "float", 900.0,
                                            "how long an order whose POST was unclear (a timeout, a 5xx) is asked "
                                            "for before the venue's \"not found\" is believed: until then it is "
                                            "never sent again, and no other entry of its symbol goes out",
                                            lo=0, hi=3600)
    venue_recv_window_ms: int = _var("TB_VENUE_RECV_WINDOW_MS", "int", 5000,
                                     "recvWindow of signed Binance/Bybit requests (milliseconds)", lo=100, hi=60000)

    # (anchor: research settings: universe, digest, eval)
    universe_config: Path = _var("TB_UNIVERSE_CONFIG", "path", Path("config/universe.yaml"),
                                 "universe file of `tracer universe` (symbols, timeframes, horizons, plan)")
    research_dir: Path = _var("TB_RESEARCH_DIR", "path", Path("state/research"),
                              "where `tracer run/universe/eval` write runs/, bars/, universe_runs/, eval_runs/")
    universe_lookback_bars: int = _var("TB_UNIVERSE_LOOKBACK_BARS", "int", None,
                                       "bars of each timeframe given to a universe evaluation (unset: as many "
                                       "as TB_LOOKBACK_BARS gives the agents, so the 1h signal equals theirs)",
                                       lo=30, hi=2000)
    universe_min_bars: int = _var("TB_UNIVERSE_MIN_BARS", "int", 60,
                                  "fewest complete bars a timeframe needs to be evaluated in a scan", lo=30, hi=2000)
    digest_headlines: bool = _var("TB_DIGEST_HEADLINES", "bool", True,
                                  "show each asset's latest relevant headline in the digest")
    universe_git_autocommit: bool = _var("TB_UNIVERSE_GIT_AUTOCOMMIT", "bool", False,
                                         "git-commit TB_RESEARCH_DIR (its own repository) after each "
                                         "universe scan and evaluation")
    universe_git_push: bool = _var("TB_UNIVERSE_GIT_PUSH", "bool", False,
                                   "push each research commit to TB_RESEARCH_DIR's upstream")

    # (anchor: optimisation and exploration settings)
    active_params_path: Path = _var("TB_ACTIVE_PARAMS_PATH", "path", Path("config/active_params.json"),
                                    "promoted parameter set (tracer params promote): applied under variables set "
                                    "in the environment or .env, above the profile; read at start")
    proposed_params_path: Path = _var("TB_PROPOSED_PARAMS_PATH", "path", Path("config/proposed_params.json"),
                                      "where tracer optimize writes its proposal (never applied by itself)")
    optimize_storage: str = _var("TB_OPTIMIZE_STORAGE", "str", "",
                                 "Optuna RDB storage URL shared by the workers (sqlite:///path or "
                                 "postgresql://user:pw@host/db); empty = sqlite under TB_STATE_DIR", secret=True)
    optimize_trials: int = _var("TB_OPTIMIZE_TRIALS", "int", 40, "Optuna trials per walk-forward fold", lo=1,
                                hi=100000)
    optimize_train_days: float = _var("TB_OPTIMIZE_TRAIN_DAYS", "float", 60.0,
                                      "days of the training window of each walk-forward fold", lo=1, hi=3650)
    optimize_test_days: float = _var("TB_OPTIMIZE_TEST_DAYS", "float", 20.0,
                                     "days of the unseen scoring window after each training window", lo=1, hi=3650)
    optimize_max_folds: int = _var("TB_OPTIMIZE_MAX_FOLDS", "int", 3,
                                   "most recent walk-forward folds used (the windows roll by TB_OPTIMIZE_TEST_DAYS)",
                                   lo=1, hi=100)
    optimize_seed: int = _var("TB_OPTIMIZE_SEED", "int", 42, "seed of the Optuna sampler (same seed, same proposal)",
                              lo=0, hi=2**31 - 1)
    optimize_dd_penalty: float = _var("TB_OPTIMIZE_DD_PENALTY", "float", 5.0,
                                      "objective = Sharpe - this x max drawdown - trade-count penalty", lo=0, hi=1000)
    optimize_min_trades_per_day: float = _var("TB_OPTIMIZE_MIN_TRADES_PER_DAY", "float", 0.2,
                                              "fewer closed trades a day than this are penalised (freeze)",
                                              lo=0, hi=1000)
    optimize_max_trades_per_day: float = _var("TB_OPTIMIZE_MAX_TRADES_PER_DAY", "float", 6.0,
                                              "more closed trades a day than this are penalised (churn)",
                                              lo=0.01, hi=1000)
    auto_apply_enabled: bool = _var("TB_AUTO_APPLY_ENABLED", "bool", False,
                                    "tracer params auto-apply promotes a proposal that passes the guard rails")
    auto_apply_kill: bool = _var("TB_AUTO_APPLY_KILL", "bool", False,
                                 "kill switch: no automatic promotion at all, whatever TB_AUTO_APPLY_ENABLED says")
    auto_apply_min_improvement: float = _var("TB_AUTO_APPLY_MIN_IMPROVEMENT", "float", 0.1,
                                             "out-of-sample objective must beat the current set's by this margin",
                                             lo=0, hi=1000)
    auto_apply_max_change: float = _var("TB_AUTO_APPLY_MAX_CHANGE", "float", 0.25,
                                        "largest change of one parameter, as a fraction of its search range",
                                        lo=0.0, hi=1)
    explore_share: float = _var("TB_EXPLORE_SHARE", "float", 0.0,
                                "share of (symbol, bar) cycles in which a near-miss entry is explored "
                                "(0 = off); paper/testnet only unless TB_EXPLORE_LIVE", lo=0, hi=0.5)
    explore_notional_usd: float = _var("TB_EXPLORE_NOTIONAL_USD", "float", 100.0,
                                       "fixed notional of an exploration entry (USD; futures at 1x)", lo=1, hi=1e6)
    explore_quality_margin: float = _var("TB_EXPLORE_QUALITY_MARGIN", "float", 1.0,
                                         "a hold whose quality is at most this below the required quality is a "
                                         "near miss", lo=0, hi=10)
    explore_conviction_margin: float = _var("TB_EXPLORE_CONVICTION_MARGIN", "float", 1.0,
                                            "a hold whose conviction is at most this below the gate is a near miss",
                                            lo=0, hi=10)
    explore_live: bool = _var("TB_EXPLORE_LIVE", "bool", False,
                              "allow exploration entries with TB_LIVE_TRADING=yes (real money)")

    # --- secrets (never logged, printed or stored) ------------------------------------------
    alpaca_api_key: str = _var("TB_ALPACA_API_KEY", "str", "",
                               "Alpaca API key id (for the Alpaca venue; not needed offline)", secret=True)
    alpaca_secret_key: str = _var("TB_ALPACA_SECRET_KEY", "str", "",
                                  "Alpaca API secret (for the Alpaca venue; not needed offline)", secret=True,
                                  required_if=("alpaca_api_key", "<set>"))
    binance_api_key: str = _var("TB_BINANCE_API_KEY", "str", "",
                                "Binance USD-M API key (futures venue; public klines need none)", secret=True)
    binance_api_secret: str = _var("TB_BINANCE_API_SECRET", "str", "",
                                   "Binance USD-M API secret (futures venue)", secret=True,
                                   required_if=("binance_api_key", "<set>"))
    bybit_api_key: str = _var("TB_BYBIT_API_KEY", "str", "", "Bybit API key (backup futures venue)", secret=True)
    bybit_api_secret: str = _var("TB_BYBIT_API_SECRET", "str", "", "Bybit API secret (backup futures venue)",
                                 secret=True, required_if=("bybit_api_key", "<set>"))
    # The one exception to TB_ names: Perplexity keys are read under the provider's usual names
    # too (pplx_keys_from: PPLX_API_KEY_1..N, else PPLX_API_KEYS, else PPLX_API_KEY), which win
    # over TB_PPLX_API_KEYS. Stored comma-joined; use the ``pplx_keys`` property for the tuple.
    pplx_api_keys: str = _var("TB_PPLX_API_KEYS", "str", "",
                              "Perplexity API keys, comma list; PPLX_API_KEY_1..N, PPLX_API_KEYS or PPLX_API_KEY "
                              "are read too and win; rotated on 401/403/429/5xx", secret=True)

    # --- the local web cockpit (tracer web) ---------------------------------------------------
    web_token: str = _var("TB_WEB_TOKEN", "str", "",
                          "the web cockpit's access token (empty: `tracer web` generates one on its first start, "
                          "writes it here in .env and prints it once)", secret=True)
    web_port: int = _var("TB_WEB_PORT", "int", 8787, "port of the web cockpit (always bound to 127.0.0.1)",
                         lo=1024, hi=65535)
    backtest_dir: Path = _var("TB_BACKTEST_DIR", "path", Path("backtests"),
                              "folder the web cockpit lists backtests (metrics.json, equity.csv) and studies from")

    # --- derived helpers -------------------------------------------------------------------
    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            v = getattr(self, f.name)
            parts.append(f"{f.name}={mask(v) if f.metadata['secret'] else v!r}")
        return "Settings(" + ", ".join(parts) + ")"

    __str__ = __repr__

    def secret_values(self) -> list[str]:
        """Values of every secret that is set (for log redaction)."""
        out: list[str] = []
        for f in fields(self):
            v = getattr(self, f.name)
            if f.metadata["secret"] and v:
                out.extend(_split_keys(v) if f.name == "pplx_api_keys" else [v])
        return out

    @property
    def hybrid_venue(self) -> str:
        """paper or alpaca: TB_VENUE_HYBRID, with auto = alpaca when its keys are set and TB_FEED=live."""
        if self.venue_hybrid != "auto":
            return self.venue_hybrid
        return "alpaca" if self.alpaca_api_key and self.feed == "live" else "paper"

    @property
    def futures_venue(self) -> str:
        """paper, binance or bybit: TB_VENUE_FUTURES, with auto = the first venue whose keys are set
        (binance, then bybit) when TB_FEED=live."""
        if self.venue_futures != "auto":
            return self.venue_futures
        if self.feed != "live":
            return "paper"
        return "binance" if self.binance_api_key else "bybit" if self.bybit_api_key else "paper"

    @property
    def futures_backup(self) -> str | None:
        """The failover venue of the futures agent, when it is set, differs from the main one and has keys."""
        b = self.futures_backup_venue
        if b == "none" or b == self.futures_venue or self.futures_venue == "paper":
            return None
        return b if getattr(self, _VENUE_KEYS[b][0]) else None

    @property
    def hybrid(self) -> HybridSection:
        """The spot agent's variables as one typed section (tracer.config.sections)."""
        return hybrid_section(self)

    @property
    def futures(self) -> FuturesSection:
        """The futures agent's variables as one typed section (tracer.config.sections)."""
        return futures_section(self)

    @property
    def pplx_keys(self) -> tuple[str, ...]:
        """The Perplexity keys in rotation order (see :func:`pplx_keys_from`)."""
        return _split_keys(self.pplx_api_keys)

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, shown value, meaning) for every setting, secrets masked."""
        rows = []
        for f in fields(self):
            v = getattr(self, f.name)
            shown = mask(v) if f.metadata["secret"] else _render(v)
            rows.append((f.metadata["env"], shown, f.metadata["help"]))
        return rows


def mask(value: Any) -> str:
    """``'abcd1234xyz'`` -> ``'***'`` (set) or ``''`` (unset): never reveals any character."""
    return "***" if value else ""


def _render(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(v)
