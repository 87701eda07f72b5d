"""Discord delivery through the ``discord-webhook`` library.

One call of :meth:`DiscordSender.send_part` is one HTTP POST to the webhook URL (the URL holds the
webhook's secret token, so it is a secret: it never appears in a message, a log line or an error).
The result is classified: 200/204 -> delivered; 429 -> :class:`DeliveryError` ``transient`` with the
server's wait in seconds (:func:`retry_after_s`); 5xx, timeouts and connection errors -> transient; any other
status (3xx, 401, 403, 404, 400 ...) -> permanent.

The payload is built by ``DiscordWebhook`` and posted by us with ``requests.post(..., allow_redirects=False)``
(the library's ``api_post_request()`` follows redirects, and a 301/302 turns the POST into a GET, which Discord
answers 200 with the webhook object while nothing is posted: a 3xx is a permanent failure, a wrong URL); we read
the status ourselves rather than through ``execute()``, because ``execute()`` parses every reply as JSON
and raises on an empty ``204 No Content`` (and on a non-JSON error page). Mentions are disabled
(``allowed_mentions``) and link previews suppressed, and the text is Markdown-escaped
(:func:`tracer.notify.format.escape_discord`), so hostile text shows literally.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

import requests
from discord_webhook import DiscordWebhook

from tracer.notify.format import DISCORD_LIMIT, escape_discord, split_text
from tracer.notify.delivery import DeliveryError

SUPPRESS_EMBEDS = 1 << 2


class DiscordSender:
    channel = "discord"

    def __init__(self, webhook_url: str, timeout_s: float = 10.0, username: str = "Tracer Bullet"):
        if not webhook_url.startswith(("http://", "https://")):
            raise ValueError("TB_DISCORD_WEBHOOK_URL must be an http(s) URL")
        self._url = webhook_url
        self.timeout_s = timeout_s
        self.username = username

    def parts(self, text: str) -> list[str]:
        """The escaped parts of ``text``, each within Discord's 2000-character limit."""
        return split_text(text, DISCORD_LIMIT, transform=escape_discord)

    def send_part(self, part: str) -> None:
        """POST one part; returns on success, raises :class:`DeliveryError` otherwise."""
        hook = DiscordWebhook(url=self._url, content=part, username=self.username, timeout=self.timeout_s,
                              allowed_mentions={"parse": []}, flags=SUPPRESS_EMBEDS)
        try:
            # not hook.api_post_request(): requests follows redirects, and a 301/302 turns the POST into a GET, which
            # Discord answers 200 with the webhook object ("Get Webhook with Token") while nothing is posted
            resp = requests.post(self._url, json=hook.json, timeout=self.timeout_s, allow_redirects=False)
        except requests.Timeout:
            raise DeliveryError("discord: request timed out", transient=True) from None
        except requests.RequestException as e:
            raise DeliveryError(f"discord: connection failed ({type(e).__name__})", transient=True) from None
        code = resp.status_code
        if code in (200, 204):
            return
        if 300 <= code < 400:
            # a configuration problem (an http:// or old-domain URL): permanent; the Location is not shown (it may
            # hold the token)
            raise DeliveryError(f"discord: webhook URL redirects (HTTP {code}): use the "
                                "https://discord.com/api/webhooks/... URL", transient=False)
        body = _json(resp)
        detail = str(body.get("message", ""))[:200] if isinstance(body, dict) else ""
        if code == 429:
            retry_after = retry_after_s(resp.headers, body)
            raise DeliveryError(f"discord: HTTP 429 rate limited (retry_after {retry_after})", transient=True,
                                retry_after=retry_after)
        transient = code >= 500
        raise DeliveryError(f"discord: HTTP {code}" + (f" {detail}" if detail else ""), transient=transient)

    def close(self) -> None:
        """Nothing to release (one ``requests`` call per part)."""


def retry_after_s(headers: Mapping[str, str], body: object) -> float | None:
    """The wait a 429 asks for, in seconds: ``X-RateLimit-Reset-After`` (seconds, with decimals, in every API
    version), else ``Retry-After`` (seconds), else the body's ``retry_after``. The body comes last: it is seconds
    from API v8 on but milliseconds in v6, which is the version of the unversioned ``/api/webhooks/...`` URL that
    Discord hands out (discord-api-docs #2360, #4722). The worker caps whatever this says."""
    ra = body.get("retry_after") if isinstance(body, dict) else None
    for raw in (headers.get("X-RateLimit-Reset-After"), headers.get("Retry-After"), ra):
        if raw is None:
            continue
        try:
            return max(0.0, float(raw))
        except (TypeError, ValueError):      # not a number: the next source
            continue
    return None


def _json(resp: requests.Response) -> object:
    try:
        return json.loads(resp.content.decode("utf-8")) if resp.content else {}
    except (ValueError, UnicodeDecodeError):
        return {}
