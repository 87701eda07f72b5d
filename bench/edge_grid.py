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
