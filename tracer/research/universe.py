"""The universe configuration (``config/universe.yaml``): symbols, timeframes with their horizons,
plan parameters, and how many ranked assets to show. Loading is strict: an unknown key, a bad
timeframe or a bad number stops with a message naming the key."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from tracer.config import ALL_SYMBOLS
from tracer.research.plan import PlanParams
from tracer.research.timeframes import label_of, parse_timeframe
from tracer.symbols import canonical

DEFAULT_TIMEFRAMES = (("1h", 24), ("4h", 12), ("1d", 5))


class UniverseConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TimeframeSpec:
    label: str
    tf: timedelta
    horizon_bars: int


@dataclass(frozen=True, slots=True)
class UniverseConfig:
    symbols: tuple[str, ...]
    timeframes: tuple[TimeframeSpec, ...]
    plan: PlanParams
    top: int = 0
    source: str = "(defaults)"

    def as_dict(self) -> dict:
        return {"symbols": list(self.symbols),
                "timeframes": [{"name": t.label, "horizon_bars": t.horizon_bars} for t in self.timeframes],
                "plan": {"entry_atr": self.plan.entry_atr, "stop_atr": self.plan.stop_atr,
                         "targets_r": list(self.plan.targets_r)},
                "top": self.top}


def default_config() -> UniverseConfig:
    return from_mapping({}, "(defaults)")


def _num(v: Any, key: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= float(v) <= hi):
        raise UniverseConfigError(f"{key}: expected a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def from_mapping(doc: Any, source: str) -> UniverseConfig:
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise UniverseConfigError(f"{source}: expected a mapping at the top level")
    unknown = sorted(set(doc) - {"symbols", "timeframes", "plan", "top"})
    if unknown:
        raise UniverseConfigError(f"{source}: unknown key(s) {', '.join(map(str, unknown))}")
    raw_syms = doc.get("symbols", ALL_SYMBOLS.split(","))
    if isinstance(raw_syms, str):
        raw_syms = raw_syms.split(",")
    if not isinstance(raw_syms, list) or not raw_syms:
        raise UniverseConfigError(f"{source}: symbols must be a non-empty list")
    try:
        symbols = tuple(dict.fromkeys(canonical(str(s).strip()) for s in raw_syms if str(s).strip()))
    except ValueError as e:
        raise UniverseConfigError(f"{source}: symbols: {e}") from None
    raw_tfs = doc.get("timeframes", [{"name": n, "horizon_bars": h} for n, h in DEFAULT_TIMEFRAMES])
    if not isinstance(raw_tfs, list) or not raw_tfs:
        raise UniverseConfigError(f"{source}: timeframes must be a non-empty list")
    tfs: list[TimeframeSpec] = []
    for i, t in enumerate(raw_tfs):
        if isinstance(t, str):
            t = {"name": t}
        if not isinstance(t, dict) or "name" not in t or set(t) - {"name", "horizon_bars"}:
            raise UniverseConfigError(f"{source}: timeframes[{i}]: expected {{name: 4h, horizon_bars: 12}}")
        try:
            tf = parse_timeframe(t["name"])
        except ValueError as e:
            raise UniverseConfigError(f"{source}: timeframes[{i}]: {e}") from None
        if tf < timedelta(hours=1) or tf % timedelta(hours=1):
            raise UniverseConfigError(f"{source}: timeframes[{i}]: {t['name']} must be whole hours (built from 1h bars)")
        default_h = dict(DEFAULT_TIMEFRAMES).get(label_of(tf), 12)
        h = int(_num(t.get("horizon_bars", default_h), f"timeframes[{i}].horizon_bars", 1, 10000))
        tfs.append(TimeframeSpec(label_of(tf), tf, h))
    tfs.sort(key=lambda x: x.tf)
    if len({t.label for t in tfs}) != len(tfs):
        raise UniverseConfigError(f"{source}: timeframes: a timeframe is listed twice")
    plan = doc.get("plan", {}) or {}
    if not isinstance(plan, dict) or set(plan) - {"entry_atr", "stop_atr", "targets_r"}:
        raise UniverseConfigError(f"{source}: plan: expected entry_atr, stop_atr, targets_r")
    targets = plan.get("targets_r", [1.0, 2.0])
    if not isinstance(targets, list) or not targets:
        raise UniverseConfigError(f"{source}: plan.targets_r must be a non-empty list")
    pp = PlanParams(entry_atr=_num(plan.get("entry_atr", 0.25), "plan.entry_atr", 0, 10),
                    stop_atr=_num(plan.get("stop_atr", 1.5), "plan.stop_atr", 0.01, 50),
                    targets_r=tuple(_num(x, "plan.targets_r", 0.01, 100) for x in targets))
    top = int(_num(doc.get("top", 0), "top", 0, 10000))
    return UniverseConfig(symbols, tuple(tfs), pp, top, source)


def load_config(path: str | Path | None) -> UniverseConfig:
    """Read the YAML file; a missing default file gives the defaults, a missing named file is an error."""
    import yaml

    if path is None:
        return default_config()
    p = Path(path)
    if not p.is_file():
        raise UniverseConfigError(f"{p}: no such universe file")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UniverseConfigError(f"{p}: not valid YAML: {e}") from None
    return from_mapping(doc, str(p))


def params_hash(cfg: UniverseConfig, settings: Any) -> str:
    """Identifies what a scan depends on besides time: the universe and the evaluation settings."""
    keys = ("profile", "feed", "data_dir", "headlines_path", "min_signal_quality", "min_conviction_score",
            "narrative_halflife_min", "sentiment_trim", "volume_z_window", "divergence_threshold",
            "min_direction_score", "sentiment_scorer", "finbert_model", "headline_lookback_h",
            "universe_lookback_bars", "universe_min_bars", "news_source_weights")
    s = {k: str(getattr(settings, k, None)) for k in keys}
    blob = json.dumps({"universe": cfg.as_dict(), "settings": s}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]
