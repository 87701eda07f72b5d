"""Structured log lines: ``<UTC ISO time> <LEVEL> <agent> event=<name> key=value ...``.

Every line goes through :class:`RedactingFormatter`, which replaces any configured secret
value with ``***`` wherever it appears (message, fields or exception trace).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterable


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        s = f"{v:.6g}"
    else:
        s = str(v)
    if s == "" or any(ch in s for ch in ' ="\n\t'):
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'
    return s


def kv(event: str, **fields: Any) -> str:
    """``event=<event> k1=v1 k2="v 2"`` (values quoted when they contain spaces or quotes)."""
    return " ".join([f"event={event}"] + [f"{k}={_fmt_value(v)}" for k, v in fields.items() if v is not None])


class RedactingFormatter(logging.Formatter):
    converter = time.gmtime

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        out = super().format(record)
        for s in self.secrets:
            out = out.replace(s, "***")
        return out


def setup_logging(agent: str, log_dir: Path | None, level: str = "INFO", secrets: Iterable[str] = (),
                  stdout: bool = True) -> logging.Logger:
    """Logger ``agent`` writing to ``<log_dir>/<agent>.log`` (user-only permissions) and stdout."""
    logger = logging.getLogger(agent)
    logger.setLevel(level)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = RedactingFormatter(secrets)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / f"{agent}.log"
        path.touch(mode=0o600, exist_ok=True)
        fh = logging.FileHandler(path, encoding="utf-8")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    if stdout:
        sh = logging.StreamHandler(sys.stdout)
        sh.setFormatter(fmt)
        logger.addHandler(sh)
    return logger
