"""Checks across variables at start: the live feed's sources and weights, and the venue safety rules (a live
URL needs ``TB_LIVE_TRADING=yes``, a venue needs keys, a replay never drives a real venue)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from tracer.config.sources import BAR_SOURCES, NEWS_SOURCES, parse_weights, source_names
from tracer.config.venues import _VENUE_KEYS, _VENUE_URL, is_local_url, is_test_url

if TYPE_CHECKING:
    from tracer.config.settings import Settings


def feed_problems(s: "Settings") -> list[str]:
    """With TB_FEED=live, the source lists and weights it reads must parse (refused at start, naming the
    variable, rather than when the feed is built)."""
    if s.feed != "live":
        return []
    out: list[str] = []
    for env, spec, allowed in (("TB_BAR_SOURCES", s.bar_sources, BAR_SOURCES),
                               ("TB_NEWS_SOURCES", s.news_sources, NEWS_SOURCES)):
        try:
            names = source_names(spec, allowed, env)
        except ValueError as e:
            out.append(f"{env}={spec!r}: {str(e).split(': ', 1)[-1]}")
            continue
        if env == "TB_BAR_SOURCES" and not names:
            out.append(f"{env}={spec!r}: at least one source is needed for TB_FEED=live; allowed: "
                       f"{', '.join(allowed)}")
    try:
        parse_weights(s.news_source_weights)
    except ValueError as e:
        out.append(f"TB_NEWS_SOURCE_WEIGHTS={s.news_source_weights!r}: {e}; allowed: name=weight in [0, 10], "
                   "comma separated")
    return out




def venue_problems(s: "Settings") -> list[str]:
    """Refuse a venue set-up that is unsafe or cannot work, naming the variable:
    a live (non-paper, non-testnet) URL without TB_LIVE_TRADING=yes, a venue without keys, and a
    real venue driven by the offline replay (its prices are not the venue's; only a local test venue)."""
    out: list[str] = []
    # every venue an agent may touch: the futures backup takes entries on a failover, so it is gated too
    used = [("hybrid", s.hybrid_venue, ""), ("futures", s.futures_venue, "")]
    if s.futures_backup:
        used.append(("futures", s.futures_backup, " (the futures backup venue, TB_FUTURES_BACKUP_VENUE)"))
    for agent, venue, role in used:
        if venue == "paper":
            continue
        attr, env = _VENUE_URL[venue]
        url = getattr(s, attr)
        if not is_test_url(venue, url) and s.live_trading != "yes":
            out.append(f"{env}={url!r} is a live (real money) endpoint{role}: set TB_LIVE_TRADING=yes to allow "
                       f"it, or use the paper/testnet URL")
        key_attr, key_env = _VENUE_KEYS[venue]
        if not getattr(s, key_attr):
            out.append(f"{key_env} is missing: the {agent} agent trades on {venue} (TB_VENUE_{agent.upper()})")
        if s.feed != "live" and not is_local_url(url):
            out.append(f"TB_FEED={s.feed!r}: the {agent} agent trades on {venue}, which needs TB_FEED=live "
                       f"(replayed prices are not the venue's)")
    return out
