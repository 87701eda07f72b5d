"""The digest of a universe scan, for Discord (Markdown) and Telegram (plain text) (pure).

It is built from the scan's JSON document (``universe_runs/<as_of>.json`` / ``universe_runs.doc_json``):
a header, then one block per ranked asset: thesis, alignment, the evidence line, one plan line per
timeframe and (optionally) its newest relevant headline.

Safety: every text that comes from outside (symbols, headlines, sources, evidence) goes through
:func:`clean` (control and bidi-override characters removed, line breaks flattened, length capped),
then, for Markdown, :func:`tracer.notify.format.escape_discord`. Telegram messages are sent
without ``parse_mode``, so cleaned text shows literally.

Size: :func:`pack` puts whole blocks into messages within the platform limit (Discord 2000,
Telegram 4096; UTF-16 units as the platforms count). A block that alone is too long is split at
line breaks, and only a single line longer than a whole message is shortened (with "…"):
a message never ends in the middle of a line.
"""
from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Callable, Sequence

from tracer.notify.format import DISCORD_LIMIT, TELEGRAM_LIMIT, escape_discord, utf16_len

_BIDI = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
ARROW = {"Buy": "🟢", "Sell": "🔴", "Watch": "⚪"}


def clean(text: object, cap: int = 300) -> str:
    """One safe line: no control/format characters (line breaks become spaces), at most ``cap`` chars."""
    s = str(text if text is not None else "")
    s = _BIDI.sub("", s)
    s = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in s)
    s = re.sub(r"\s+", " ", s).strip()
    return s if len(s) <= cap else s[:cap - 1].rstrip() + "…"


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:,.2f}"
    if a >= 0.1:
        return f"{x:.4f}"
    return f"{x:.6g}"


def _when(s: str | None) -> str:
    if not s:
        return "-"
    return datetime.fromisoformat(s.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")


def _plan_text(tf: str, p: dict, scores: dict | None = None) -> str:
    """The plan follows the thesis' lean; the timeframe's own signal is named first, so a 1h `sell` under a
    conditional long plan reads as what it is (wait for the turn), not as a contradiction."""
    lo, hi = p["entry_zone"]
    tg = " / ".join(_num(t) for t in p["targets"])
    side = "long" if p["side"] > 0 else "short"
    cond = f" if it turns {'up' if p['side'] > 0 else 'down'}" if p.get("conditional") else ""
    now = f"signal {scores['action']} now; " if scores and scores.get("action") else ""
    return (f"{tf}: {now}plan {side}{cond}: entry {_num(lo)}–{_num(hi)}, stop {_num(p['stop'])}, "
            f"targets {tg}, by {_when(p['horizon_end'])}")


def tf_order(doc: dict, asset: dict) -> list[str]:
    """The asset's timeframes in the scan's order (shortest first), whatever order the JSON keys have."""
    order = [t["name"] for t in doc.get("config", {}).get("timeframes", [])]
    have = asset.get("timeframes", {})
    return [tf for tf in order if tf in have] + sorted(tf for tf in have if tf not in order)


def blocks(doc: dict, markdown: bool, top: int = 0, headlines: bool = True) -> list[str]:
    """The digest as blocks of lines (header first, then one per asset)."""
    esc: Callable[[str], str] = escape_discord if markdown else (lambda s: s)
    b: Callable[[str], str] = (lambda s: f"**{s}**") if markdown else (lambda s: s)
    assets = doc.get("assets", [])
    shown = assets[:top] if top else assets
    counts = {a: sum(1 for x in assets if x["thesis"]["action"] == a) for a in ("Buy", "Sell", "Watch")}
    tfs = "/".join(esc(clean(t["name"], 10)) for t in doc.get("config", {}).get("timeframes", []))
    head = [b("Tracer Bullet digest") + f" — universe as of {_when(doc.get('as_of'))}",
            f"{len(assets)} assets on {tfs or '-'} · Buy {counts['Buy']} · Sell {counts['Sell']} · "
            f"Watch {counts['Watch']}" + (f" · showing top {len(shown)}" if len(shown) < len(assets) else "")]
    rej = doc.get("rejected") or {}
    if rej:
        head.append("not evaluated: " + esc(clean("; ".join(f"{k}: {v}" for k, v in sorted(rej.items())), 400)))
    out = ["\n".join(head)]
    for a in shown:
        th, al = a["thesis"], a["alignment"]
        sym = esc(clean(a["symbol"], 20))
        lines = [f"{ARROW.get(th['action'], '')} " + b(f"{a['rank']}. {sym} — {th['action']}")
                 + f" · risk {th['risk_band']} · {th['readiness']} · {esc(clean(al['label'], 30))} "
                   f"({al['score']:+.2f})",
                 ("> " if markdown else "") + esc(clean(a["evidence"], 600))]
        for tf in tf_order(doc, a):
            t = a["timeframes"][tf]
            s = t["scores"]
            lines.append(("- " if markdown else "• ") + esc(clean(_plan_text(tf, t["plan"], s), 300))
                         + f" · q {s['quality']:.1f} c {s['conviction']:.1f}")
        for tf, why in (a.get("skipped") or {}).items():
            lines.append(("- " if markdown else "• ") + esc(clean(f"{tf}: skipped ({why})", 200)))
        h = a.get("headline")
        if headlines and h:
            lines.append("news: " + esc(clean(h.get("title"), 200)) + f" ({esc(clean(h.get('source'), 40))}, "
                         f"{_when(h.get('at'))}, {float(h.get('score', 0.0)):+.2f})")
        out.append("\n".join(lines))
    return out


def pack(blks: Sequence[str], limit: int, measure: Callable[[str], int] = utf16_len, sep: str = "\n\n") -> list[str]:
    """Whole blocks into messages of at most ``limit`` (see the module docstring)."""
    msgs: list[str] = []
    cur = ""

    def push(piece: str, joiner: str) -> None:
        nonlocal cur
        cand = piece if not cur else cur + joiner + piece
        if measure(cand) <= limit:
            cur = cand
            return
        if cur:
            msgs.append(cur)
        cur = piece

    for blk in blks:
        if measure(blk) <= limit:
            push(blk, sep)
            continue
        first = True
        for line in blk.split("\n"):
            if measure(line) > limit:
                line = _shorten(line, limit, measure)
            push(line, sep if first else "\n")
            first = False
    if cur:
        msgs.append(cur)
    return msgs


def _shorten(line: str, limit: int, measure: Callable[[str], int]) -> str:
    while line and measure(line + "…") > limit:
        line = line[:max(1, len(line) - max(1, (measure(line) - limit) // 2))]
        line = line[:-1] if line.endswith("\\") else line      # never leave a dangling escape
    return line + "…"


def discord_messages(doc: dict, top: int = 0, headlines: bool = True) -> list[str]:
    """Markdown messages, each within Discord's 2000 characters."""
    return pack(blocks(doc, True, top, headlines), DISCORD_LIMIT)


def telegram_messages(doc: dict, top: int = 0, headlines: bool = True) -> list[str]:
    """Plain-text messages, each within Telegram's 4096 characters."""
    return pack(blocks(doc, False, top, headlines), TELEGRAM_LIMIT)


def outbox_discord_messages(doc: dict, top: int = 0, headlines: bool = True) -> list[str]:
    """Plain-text messages for the outbox's Discord channel: its sender escapes every Markdown
    character itself, so the text is packed so that each message still fits 2000 AFTER that escaping
    (the worker then sends each one as a single part)."""
    return pack(blocks(doc, False, top, headlines), DISCORD_LIMIT, measure=lambda s: utf16_len(escape_discord(s)))


def markdown(doc: dict, top: int = 0, headlines: bool = True) -> str:
    """The whole Markdown digest as one text (``tracer digest --print-md``)."""
    return "\n\n".join(blocks(doc, True, top, headlines))
