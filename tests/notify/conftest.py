"""Fixtures of the notification tests: the fake Discord webhook and Bot API on 127.0.0.1, and a command listener on a
real SQLite file."""
from __future__ import annotations

import logging

import pytest

from fakes.discord import FakeDiscord
from fakes.telegram import BOT_TOKEN, CHAT_ID, FakeTelegram
from test_telegram_commands import settings_for
from tracer.notify.commands import CommandListener
from tracer.notify.telegram import TelegramClient
from tracer.store import Store

LOG = logging.getLogger("test-telegram")


@pytest.fixture
def discord():
    with FakeDiscord() as f:
        yield f


@pytest.fixture
def telegram():
    with FakeTelegram() as f:
        yield f


@pytest.fixture
def fake():
    with FakeTelegram() as f:
        yield f


@pytest.fixture
def env(tmp_path, fake):
    """(settings, store, listener) against ``fake``."""
    s = settings_for(tmp_path, fake)
    store = Store(s.db_path)
    client = TelegramClient(BOT_TOKEN, str(CHAT_ID), fake.base_url, 5.0)
    yield s, store, CommandListener(store, client, s, LOG)
    client.close()
    store.close()
