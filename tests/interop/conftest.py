"""Fixtures shared by the slixmpp interop tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from roost.server.app import Server
from tests.interop.test_slixmpp import Client


@pytest.fixture
async def clients(server: Server) -> AsyncIterator[Callable[..., Client]]:
    """A factory of slixmpp clients for ``server``; all are disconnected at teardown."""
    made: list[Client] = []

    def make(user: str, **kwargs: Any) -> Client:
        client = Client(server, user, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.stop()
