"""Structured log lines: ``<UTC ISO time> <LEVEL> <agent> event=<name> key=value ...``.

Every line goes through :class:`RedactingFormatter`, which replaces any configured secret
value with ``***`` wherever it appears (message, fields or exception trace).
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable


_SPECIAL = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(ch: str) -> str:
    """One character of a quoted value: quotes, backslashes and every control or line/paragraph separator
    escaped, so no value can forge a log line, move the cursor or split a line."""
    if ch in _SPECIAL:
        return _SPECIAL[ch]
    o = ord(ch)
    if o < 0x20 or 0x7F <= o < 0xA0 or ch in "\u2028\u2029\u0085":
        return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"
    return ch


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        s = f"{v:.6g}"
    else:
        s = str(v)
    if s == "" or any(ch in ' ="\\' or not ch.isprintable() for ch in s):
        s = '"' + "".join(_escape(ch) for ch in s) + '"'
    return s


def kv(event: str, **fields: Any) -> str:
    """``event=<event> k1=v1 k2="v 2"`` (values quoted when they contain spaces or quotes)."""
    return " ".join([f"event={event}"] + [f"{k}={_fmt_value(v)}" for k, v in fields.items() if v is not None])


class RedactingFormatter(logging.Formatter):
    converter = time.gmtime

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        from tracer.notify.format import secret_fragments
        # the secrets and the fragments that show up on their own (a webhook URL's path in a requests error,
        # a storage URL's password), longest first
        self.secrets = sorted({s for s in secret_fragments(secrets) if s and len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        out = super().format(record)
        for s in self.secrets:
            out = out.replace(s, "***")
        return out


def private_dir(path: Path) -> Path:
    """``mkdir -p`` with user-only permissions for the folders it creates (existing ones are left alone)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for d in missing:          # mkdir's mode applies to the last folder only (and goes through the umask)
        try:
            os.chmod(d, 0o700)
        except OSError:
            pass
    return path


def private_open(path: Path, mode: str = "a"):
    """``open(path, mode)`` (text, utf-8) of a file created user-only (0600) whatever the umask; an existing
    file keeps its mode. For state and log files (they may hold account figures, never secrets)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    return os.fdopen(fd, mode, encoding="utf-8")


def private_write_text(path: Path, text: str) -> None:
    """``path.write_text(text)`` with a new file created user-only (0600)."""
    with private_open(path, "w") as fh:
        fh.write(text)


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A size-rotated log file, every new file created user-only whatever the umask."""

    def _open(self):
        return private_open(Path(self.baseFilename), "a")


class _StderrHandler(logging.StreamHandler):
    """The root logger's handler: the libraries' records (telegram, httpx, urllib3, pybit, binance, alpaca) to
    whatever ``sys.stderr`` is when they are written, as ``logging.lastResort`` would, but redacted."""

    def __init__(self, level: int = logging.WARNING):
        logging.Handler.__init__(self, level)     # no stream of its own: sys.stderr is looked up at each record

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr


def _redact_root(fmt: RedactingFormatter) -> None:
    """One redacting stderr handler on the root logger. Without it a library's record finds no handler and goes
    to stderr through ``logging.lastResort``, unformatted -- python-telegram-bot logs a proxy's error page
    quoting ``/bot<token>/`` -- and the start script appends stderr to ``logs/<agent>.err``. The process's own
    loggers do not propagate, so nothing is written twice."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _StderrHandler)]:    # a second setup_logging replaces it
        root.removeHandler(h)
    h = _StderrHandler()
    h.setFormatter(fmt)
    root.addHandler(h)


def setup_logging(agent: str, log_dir: Path | None, level: str = "INFO", secrets: Iterable[str] = (),
                  stdout: bool = True, max_mb: float = 50.0, backups: int = 5) -> logging.Logger:
    """Logger ``agent`` writing to ``<log_dir>/<agent>.log`` (user-only permissions) and stdout; the libraries'
    warnings and errors go to stderr through the same redaction."""
    logger = logging.getLogger(agent)
    logger.setLevel(level)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = RedactingFormatter(secrets)
    if log_dir is not None:
        private_dir(log_dir)
        path = log_dir / f"{agent}.log"
        private_open(path).close()           # created user-only whatever the umask
        fh = PrivateRotatingFileHandler(path, maxBytes=int(max_mb * 1024 * 1024), backupCount=backups,
                                        encoding="utf-8")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    if stdout:
        sh = logging.StreamHandler(sys.stdout)
        sh.setFormatter(fmt)
        logger.addHandler(sh)
    _redact_root(fmt)
    return logger


def log_line(settings: Any, name: str, agent: str | None, message: str) -> None:
    """Append ``<UTC time> <agent> <message>`` to ``TB_LOG_DIR/<name>.log`` (the operations logs: watchdog, alerts
    that could not be enqueued, heal actions)."""
    from datetime import datetime, timezone
    d = private_dir(Path(settings.log_dir))
    with private_open(d / f"{name}.log", "a") as fh:          # user-only, like every log and state file
        fh.write(f"{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')} {agent or '-'} {message}\n")
