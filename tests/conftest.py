"""Shared fixtures: a real Roost server on loopback with accounts alice, bob and carol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.server.app import Server
from tests.helpers import PASSWORDS, start_server

__all__ = ["PASSWORDS", "server"]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path)
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    yield srv
    await srv.stop()
