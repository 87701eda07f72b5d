"""What every bar source has in common: the protocol, the canonical frame, errors, the circuit breaker.

A bar source turns one request ``(symbol, interval, start, end)`` into the canonical bar
frame of the project (see :class:`tracer.data.feed.Snapshot`): a DataFrame indexed by the
bar OPEN time ``ts`` (``datetime64[ns, UTC]``), float64 columns open, high, low, close,
volume, in the order the venue sent them (nothing sorted, dropped or filled here: the
core validation judges the data, see :mod:`tracer.data.validation`).

Every failure of a source (HTTP error, timeout, malformed body) is raised as
:class:`SourceError` with a short reason that never contains a credential.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from tracer.data.validation import COLUMNS, td_ns, to_ns

__all__ = [
    "SourceError", "UnsupportedSymbol", "BarSource", "BarSet", "CircuitBreaker",
    "make_frame", "empty_frame", "interval_seconds", "utc_from_ns",
]

_COLS = pd.Index(list(COLUMNS))


class SourceError(Exception):
    """A source could not deliver bars. ``reason`` is short and free of secrets
    (e.g. ``http 503``, ``malformed: no 'prices' list``, ``timeout``)."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class UnsupportedSymbol(SourceError):
    """The source does not list this symbol or interval: the chain moves on without
    counting it against the source's circuit breaker."""


@runtime_checkable
class BarSource(Protocol):
    """One venue's bars.

    Contract: ``fetch`` returns the bars whose open time ``ts`` lies in ``[start, end)``
    as the venue has them, as a canonical frame (see module docstring); it may return
    bars still forming at ``end`` (the chain drops them). Any failure raises
    :class:`SourceError`; a symbol the venue does not list raises :class:`UnsupportedSymbol`.
    """
    name: str

    def fetch(self, symbol: str, interval: timedelta, start: datetime, end: datetime) -> pd.DataFrame: ...


@dataclass(frozen=True)
class BarSet:
    """Validated bars of one symbol and the source they came from.

    ``bars`` is a canonical frame that passed :func:`tracer.data.validation.validate_bars`;
    ``bars.attrs["source"]`` holds ``source`` too, so the name travels with the frame.
    ``attempts`` lists ``(source, outcome)`` for every source tried before this one.
    """
    symbol: str
    source: str
    bars: pd.DataFrame
    attempts: tuple[tuple[str, str], ...] = ()


def empty_frame() -> pd.DataFrame:
    idx = pd.DatetimeIndex(np.empty(0, dtype="datetime64[ns]"), tz="UTC", name="ts")
    return pd.DataFrame(np.empty((0, 5)), index=idx, columns=_COLS.copy())


def make_frame(ts_ns: Sequence[int] | np.ndarray, rows: Sequence[Sequence[float]] | np.ndarray,
               source: str = "") -> pd.DataFrame:
    """Canonical frame from int64 open times (ns since the epoch, UTC) and ``(n, 5)`` values.

    Values that are not numbers (``None``, ``""``, a number beyond float range) become NaN, which validation
    rejects. Times that fit no int64 nanosecond stamp raise :class:`SourceError` ``malformed: timestamp out of
    range`` naming ``source``.
    """
    try:
        ts = np.asarray(ts_ns, dtype=np.int64)
    except (OverflowError, ValueError, TypeError):
        raise SourceError(source or "source", "malformed: timestamp out of range") from None
    if len(ts) == 0:
        return empty_frame()
    vals = np.array([[_num(x) for x in r] for r in rows], dtype=np.float64).reshape(len(ts), 5)
    idx = pd.DatetimeIndex(pd.to_datetime(ts, unit="ns", utc=True)).as_unit("ns").rename("ts")
    return pd.DataFrame(vals, index=idx, columns=_COLS.copy())


def _num(x: object) -> float:
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):   # OverflowError: an integer beyond float range
        return float("nan")


def interval_seconds(interval: timedelta) -> int:
    s = td_ns(interval) // 1_000_000_000
    if s <= 0:
        raise ValueError(f"interval must be at least one second, got {interval!r}")
    return int(s)


def utc_from_ns(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(ns) // 1_000)


def ms(t: datetime) -> int:
    """UTC datetime -> int milliseconds since the epoch."""
    return to_ns(t) // 1_000_000


@dataclass
class CircuitBreaker:
    """Consecutive-failure circuit breaker of one source.

    * closed: requests pass; each failure adds one, a success resets the count;
    * after ``threshold`` consecutive failures it opens for ``cooldown_s`` seconds
      (measured with ``clock``, default ``time.monotonic``): :meth:`allow` is False;
    * once the cool-down has passed it is half-open: one trial request is allowed;
      its success closes the breaker, its failure opens it again for another cool-down.
    """
    threshold: int = 3
    cooldown_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    last_reason: str = ""
    _trial: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError(f"threshold must be >= 1, got {self.threshold}")
        if self.cooldown_s < 0:
            raise ValueError(f"cooldown_s must be >= 0, got {self.cooldown_s}")

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        if self.opened_at is None:
            return "closed"
        return "open" if self.clock() < self.opened_at + self.cooldown_s else "half_open"

    def remaining_s(self) -> float:
        """Seconds left in the cool-down (0 when not open)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - self.clock())

    def allow(self) -> bool:
        st = self.state
        if st == "closed":
            return True
        if st == "half_open":
            self._trial = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial = False
        self.last_reason = ""

    def record_failure(self, reason: str = "") -> None:
        self.failures += 1
        self.last_reason = reason
        if self._trial or self.failures >= self.threshold:
            self.opened_at = self.clock()
            self._trial = False


def check_rows(source: str, rows: object, what: str) -> list:
    """``rows`` must be a list; otherwise a :class:`SourceError` ``malformed: ...``."""
    if not isinstance(rows, list):
        raise SourceError(source, f"malformed: {what} is {type(rows).__name__}, not a list")
    return rows


def names(sources: Iterable[BarSource]) -> list[str]:
    return [s.name for s in sources]


def get_json(session, source: str, url: str, params: dict | None = None, headers: dict | None = None,
             timeout_s: float = 10.0) -> object:
    """GET ``url`` with a ``requests`` session and decode JSON; every failure becomes a
    :class:`SourceError` (``http 503``, ``timeout``, ``malformed: body is not JSON`` ...).
    A 404 is :class:`UnsupportedSymbol` (the venue does not know the instrument)."""
    import requests

    try:
        resp = session.get(url, params=params, headers=headers, timeout=timeout_s)
    except requests.Timeout:
        raise SourceError(source, "timeout") from None
    except requests.RequestException as e:
        raise SourceError(source, f"request failed: {type(e).__name__}") from None
    if resp.status_code == 404:
        raise UnsupportedSymbol(source, "http 404")
    if not 200 <= resp.status_code < 300:
        raise SourceError(source, f"http {resp.status_code}")
    try:
        return resp.json()
    except ValueError:
        raise SourceError(source, "malformed: body is not JSON") from None
