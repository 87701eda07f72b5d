"""Discord's 429 against the fake webhook on 127.0.0.1: the wait comes from the rate-limit headers, which are seconds
in every API version, before the body's ``retry_after``, which is milliseconds on the unversioned (API v6) URL that
Discord hands out and seconds from v8 on."""
from __future__ import annotations

import pytest

from fakes.discord import Reply
from tracer.notify.delivery import DeliveryError
from tracer.notify.discord import DiscordSender

V6_BODY = {"message": "You are being rate limited.", "retry_after": 1500, "global": False}


@pytest.mark.parametrize("headers, wait", [
    ({"Retry-After": "2", "X-RateLimit-Reset-After": "1.500", "X-RateLimit-Remaining": "0"}, 1.5),
    ({"Retry-After": "2"}, 2.0),
])
def test_a_429_waits_what_the_rate_limit_headers_say_in_seconds(discord, headers, wait):
    discord.script(Reply(429, V6_BODY, headers=headers))
    sender = DiscordSender(discord.url, timeout_s=5)
    with pytest.raises(DeliveryError) as e:
        sender.send_part("🛑 daily loss stop")
    assert e.value.transient and e.value.retry_after == pytest.approx(wait)
