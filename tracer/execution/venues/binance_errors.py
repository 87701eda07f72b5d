"""What Binance USD-M answers when a request goes wrong, or is about to: its error codes translated into the
typed errors of :mod:`tracer.execution.venue`, and the request-weight throttle that keeps a client from
being rate-limited and then IP-banned (HTTP 429, then 418).
"""
from __future__ import annotations

import logging
import math
import re
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from tracer.execution.venue import (Ambiguous, AuthError, DuplicateClientId, InsufficientMargin, IpBanned,
                                    OrderRejected, RateLimited, TimestampDrift, VenueError, VenueUnavailable)
from tracer.execution.venues.fields import lenient, utc_from_ms
from tracer.logs import kv

__all__ = ["translate_api_error", "translate_request_error", "WeightThrottle", "NOT_FOUND_CODES"]

NOT_FOUND_CODES = (-2013, -2011)          # "Order does not exist." / "Unknown order sent."
AMBIGUOUS_CODES = (-1000, -1001, -1006, -1007)
AUTH_CODES = (-1022, -2014, -2015, -1002)
MARGIN_CODES = (-2018, -2019)
RATE_CODES = (-1003, -1015)   # too many requests / too many new orders
# -4116 DUPLICATED_CLIENT_ORDER_ID "ClientOrderId is duplicated": an order under this id exists (often our own
# earlier POST, processed late). Not -4015 (the id is malformed) nor -2022 (reduce-only refused): real refusals.
DUPLICATE_CODE = -4116



def _headers(e: Any) -> Any:
    resp = getattr(e, "response", None)
    return getattr(resp, "headers", None) or {}


def translate_api_error(e: Any, what: str) -> VenueError:
    """A ``BinanceAPIException`` (or anything with ``status_code``/``code``/``message``/``response``) as ours."""
    status = getattr(e, "status_code", None)
    code = getattr(e, "code", None) or None
    msg = str(getattr(e, "message", "") or "")[:300]
    text = f"{what}: {msg} (HTTP {status}, code {code})"
    h = _headers(e)
    if status == 418:
        # the later of Retry-After and the "banned until <ms>" of the message; 2 minutes if neither
        candidates = []
        ra = h.get("Retry-After")
        if ra is not None and lenient(ra, -1) >= 0:
            candidates.append(datetime.now(timezone.utc) + timedelta(seconds=lenient(ra)))
        m = re.search(r"banned until (\d{10,})", msg)
        if m and utc_from_ms(m.group(1)) is not None:
            candidates.append(utc_from_ms(m.group(1)))
        until = max(candidates) if candidates else datetime.now(timezone.utc) + timedelta(minutes=2)
        return IpBanned(text, until=until, code=code, status=status)
    if status == 429 or code in RATE_CODES:
        ra = h.get("Retry-After")
        uw = h.get("X-MBX-USED-WEIGHT-1M")
        retry = lenient(ra, 60.0) if ra is not None else 60.0
        return RateLimited(text, retry_after_s=max(retry, 0.0), used_weight=int(lenient(uw)) if uw is not None else None,
                           code=code, status=status)
    if code == -1021:
        return TimestampDrift(text, code=code, status=status)
    if code in AUTH_CODES or status == 401:
        return AuthError(text, code=code, status=status)
    if code in AMBIGUOUS_CODES or (status is not None and status >= 500) or status == 408:
        return Ambiguous(text, code=code, status=status)
    if status == 403:   # WAF / CDN block: the request never reached the matching engine
        return VenueUnavailable(text, code=code, status=status)
    if code in MARGIN_CODES:
        return InsufficientMargin(text, code=code, status=status)
    if code == DUPLICATE_CODE:
        return DuplicateClientId(text, code=code, status=status)
    return OrderRejected(text, code=code, status=status)


def translate_request_error(e: BaseException, what: str) -> VenueError:
    """A requests exception as ours: refused before sending -> VenueUnavailable, else Ambiguous."""
    import requests
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    name = type(e).__name__
    if isinstance(e, requests.exceptions.ConnectTimeout):
        return VenueUnavailable(f"{what}: connect timeout ({name})")
    if isinstance(e, requests.exceptions.Timeout):
        return Ambiguous(f"{what}: no response in time ({name})")
    if isinstance(e, requests.exceptions.SSLError):
        return VenueUnavailable(f"{what}: TLS handshake failed ({name})")
    if isinstance(e, requests.exceptions.ConnectionError):
        inner = e.args[0] if e.args else None
        reason = getattr(inner, "reason", None) if isinstance(inner, MaxRetryError) else inner
        if isinstance(reason, NewConnectionError):
            return VenueUnavailable(f"{what}: cannot connect ({type(reason).__name__})")
        return Ambiguous(f"{what}: connection lost ({type(reason).__name__ if reason is not None else name})")
    if isinstance(e, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                      requests.exceptions.InvalidSchema)):
        return VenueUnavailable(f"{what}: bad venue URL ({name})")
    return Ambiguous(f"{what}: request failed ({name})")


class WeightThrottle:
    """Keeps a client under Binance's IP request-weight limit instead of running into it: Binance counts
    weight per calendar minute (``X-MBX-USED-WEIGHT-1M`` on every answer), answers 429 past the limit and
    bans the IP (418, minutes to days) for clients that keep going. When the last answer said the used
    weight is at ``headroom`` of the limit or more, the next request waits for the next minute on the
    venue's clock (at most 61 s, once per minute; the agent's cycles are an hour apart). Every answer counts
    (errors such as "order does not exist" carry the header too) but 429/418: those are the caller's
    :class:`RateLimited` / :class:`IpBanned`, with their own wait. The weight is counted in the minute the
    request was sent.

    ``limit``: the venue's ``REQUEST_WEIGHT`` per minute, from ``exchangeInfo`` (2,400 until then).
    ``sleep``: injectable for tests. ``waits`` counts the waits it made.
    """

    def __init__(self, limit: int = 2400, headroom: float = 0.9, sleep: Callable[[float], None] | None = None,
                 log: logging.Logger | None = None, stop: threading.Event | None = None) -> None:
        self.limit = int(limit)
        self.headroom = float(headroom)
        self._sleep = sleep
        # a stop request (SIGTERM) ends the wait at once: the request is then not sent (VenueUnavailable)
        self.stop = stop
        self._log = log or logging.getLogger("tracer.venue.binance")
        self.used = 0
        self._minute = -1          # the venue minute ``used`` belongs to
        self.waits = 0

    def after_response(self, header: Any, now_s: float) -> None:
        """Record the weight the venue reported; an absent or unreadable header changes nothing."""
        w = lenient(header, -1.0)
        if w >= 0 and math.isfinite(w):
            self.used, self._minute = int(w), int(now_s // 60)

    def before_request(self, now_s: float) -> None:
        if int(now_s // 60) != self._minute or self.used < self.headroom * self.limit:
            return
        wait = min(61.0, (self._minute + 1) * 60 - now_s + 0.25)
        self._log.warning(kv("venue_weight_throttle", venue="binance", used_weight=self.used, limit=self.limit,
                             wait_s=round(wait, 2)))
        self.waits += 1
        if self._sleep is not None:
            self._sleep(wait)
        elif (self.stop or threading.Event()).wait(wait):
            raise VenueUnavailable("binance: stop requested during the request-weight wait; request not sent")
        self.used, self._minute = 0, -1     # a new minute: the next answer says how much of it is used

    def set_limit(self, rate_limits: Any) -> None:
        """The per-minute ``REQUEST_WEIGHT`` from ``exchangeInfo``'s ``rateLimits`` (kept when absent)."""
        for r in rate_limits if isinstance(rate_limits, list) else ():
            if (isinstance(r, dict) and r.get("rateLimitType") == "REQUEST_WEIGHT"
                    and r.get("interval") == "MINUTE" and lenient(r.get("intervalNum"), 0) >= 1):
                per_min = lenient(r.get("limit"), 0) / lenient(r.get("intervalNum"), 1)
                if 0 < per_min < math.inf:
                    self.limit = int(per_min)
                    return
