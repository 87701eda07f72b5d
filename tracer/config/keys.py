"""Perplexity keys, the documented exception to ``TB_`` names (numbered, a list or one key)."""
from __future__ import annotations

import re
from typing import Mapping

_PPLX_NUMBERED = re.compile(r"PPLX_API_KEY_(\d+)")


def _split_keys(joined: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(k.strip() for k in joined.split(",") if k.strip()))


def pplx_keys_from(env: Mapping[str, str]) -> tuple[str, ...]:
    """Perplexity keys, the documented exception to ``TB_`` names: ``PPLX_API_KEY_1..N`` (in
    number order), else ``PPLX_API_KEYS`` (comma list), else ``PPLX_API_KEY``; blanks and
    repeats dropped."""
    numbered = sorted((int(m.group(1)), v) for k, v in env.items()
                      if (m := _PPLX_NUMBERED.fullmatch(k)) and v and v.strip())
    if numbered:
        raw = [v for _, v in numbered]
    elif (env.get("PPLX_API_KEYS") or "").strip():
        raw = env["PPLX_API_KEYS"].split(",")
    else:
        raw = [env.get("PPLX_API_KEY") or ""]
    return tuple(dict.fromkeys(k.strip() for k in raw if k.strip()))
