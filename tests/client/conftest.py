"""Fixtures for the client library tests: the shared ``server`` and a client factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from roost.client import Client
from roost.server.app import Server
from tests.helpers import PASSWORDS

MakeClient = Callable[..., Client]


def server_cafile(server: Server) -> Path:
    """The self-signed certificate the test server generated for localhost."""
    return Path(server.config.data_dir) / "certs" / "localhost.crt"


@pytest.fixture
async def make_client(server: Server) -> AsyncIterator[MakeClient]:
    """``make_client("alice", **options)``: a (not yet connected) client of ``server``,
    trusting its certificate; every one is disconnected at teardown."""
    made: list[Client] = []

    def make(user: str, *, direct_tls: bool = False, **kw: Any) -> Client:
        kw.setdefault("password", PASSWORDS.get(user, "x"))
        kw.setdefault("cafile", server_cafile(server))
        kw.setdefault("server", ("127.0.0.1", server.port(direct_tls=direct_tls)))
        kw.setdefault("timeout", 5.0)
        kw.setdefault("request_timeout", 5.0)
        jid = user if "@" in user else f"{user}@localhost"
        client = Client(jid, kw.pop("password"), direct_tls=direct_tls, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.disconnect(timeout=2.0)
