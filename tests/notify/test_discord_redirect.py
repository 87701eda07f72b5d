"""A Discord webhook POST answered with a redirect: requests follows 301/302 as a GET, and a GET on a webhook URL is
Discord's 'Get Webhook with Token' (200 and the webhook object, nothing posted), so the alert was marked sent. The
POST must not follow redirects: a 3xx is a permanent failure (a wrong URL), recorded without the secret URL."""
from __future__ import annotations

import logging

import pytest

from fakes.discord import WEBHOOK_ID, WEBHOOK_TOKEN
from fakes.server import FakeServer
from tracer.config import load_settings
from tracer.notify import outbox
from tracer.notify.worker import Deliverer
from tracer.store import Store

LOG = logging.getLogger("test-discord-redirect")
PATH = f"/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirected_webhook_post_is_a_permanent_failure_not_a_delivery(tmp_path, caplog, code):
    posted: list[dict] = []

    def discord(req):
        if req.path != PATH:
            return 404, {}, {"message": "Unknown Webhook", "code": 10015}
        if req.method == "POST" and req.query.get("moved") != "1":
            # the host answers the http:// (or old-domain) URL with a redirect, as discord.com's edge does
            return code, {"Location": f"{PATH}?moved=1&wait=True"}, b""
        if req.method == "POST":
            posted.append(req.json())
            return 200, {}, {"id": "1", "type": 0, "content": req.json().get("content"), "channel_id": "1"}
        # GET /webhooks/{id}/{token}: Get Webhook with Token -> 200 and the webhook object, nothing is posted
        return 200, {}, {"type": 1, "id": WEBHOOK_ID, "name": "tracer", "channel_id": "1", "guild_id": "2",
                         "token": WEBHOOK_TOKEN}

    with FakeServer(discord) as srv:
        url = srv.url.rstrip("/") + PATH
        s = load_settings({"TB_DB_PATH": str(tmp_path / "t.db"), "TB_STATE_DIR": str(tmp_path),
                           "TB_LOG_DIR": str(tmp_path / "logs"), "TB_NOTIFY_CONSOLE": "false",
                           "TB_DISCORD_WEBHOOK_URL": url, "TB_NOTIFY_BACKOFF_S": "0.01",
                           "TB_NOTIFY_BACKOFF_MAX_S": "0.05"}, dotenv_path=None)
        store = Store(s.db_path)
        with store.transaction():
            [nid] = outbox.enqueue(store, s, "kill_switch", "KILL SWITCH: daily loss limit hit", "hybrid")
        sender = outbox.make_sender("discord", s)
        try:
            with caplog.at_level(logging.INFO, logger="test-discord-redirect"):
                out = Deliverer(store, sender, s, LOG).drain()
        finally:
            sender.close()
        row = dict(store.conn.execute("SELECT * FROM notifications WHERE id=?", (nid,)).fetchone())
        store.close()
        seen = [(r.method, r.query.get("moved")) for r in srv.requests]
    assert [o.status for o in out] == ["failed"] and row["status"] == "failed", (row, seen)
    assert seen == [("POST", None)]                      # not followed (no GET, no second POST), tried once
    assert row["attempts"] == 1 and f"redirects (HTTP {code})" in row["last_error"]
    assert "https://discord.com/api/webhooks/" in row["last_error"]
    for secret in (WEBHOOK_TOKEN, url):
        assert secret not in row["last_error"] and secret not in caplog.text
