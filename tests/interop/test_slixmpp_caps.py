"""Interop: XEP-0115 entity capabilities between slixmpp's xep_0115 plugin and Roost.

Both directions of the hash: slixmpp checks the ver Roost offers in its stream features, and
Roost checks (and caches) the ver slixmpp puts in its presence.

Notes on slixmpp 1.17: ``xep_0115`` handles a ``<c/>`` stream feature like caps in presence
from the server's domain: it fetches disco#info on node#ver, validates it with its own
``generate_verstring`` and only then records the ver for the domain (``get_verstring``). A
client's own ver is computed by ``update_caps``, which nothing calls on its own; its outgoing
filter then adds ``<c/>`` to available presence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import slixmpp

from roost.core.caps import Caps, caps_hash
from roost.core.jid import JID
from roost.server import events
from roost.server.app import Server
from roost.server.modules.caps import NODE, CapsModule
from tests.interop.test_slixmpp import TIMEOUT, Client

SERVER = slixmpp.JID("localhost")


def caps_module(server: Server) -> CapsModule:
    return server.module(CapsModule)


async def test_slixmpp_accepts_the_servers_caps(
    server: Server, clients: Callable[..., Client]
) -> None:
    own = caps_module(server).server_caps()
    alice = clients("alice", plugins=("xep_0115",))
    await alice.start()
    caps = alice.xmpp.plugin["xep_0115"]
    assert "caps" in alice.xmpp.features  # it saw <c/> in the stream features

    # slixmpp's own check of the stream feature: recorded only once the hash matched
    deadline = time.monotonic() + TIMEOUT
    while await caps.get_verstring(SERVER) != own.ver:
        assert time.monotonic() < deadline, "slixmpp did not accept the server's caps"
        await asyncio.sleep(0.02)

    info = await alice.xmpp.plugin["xep_0030"].get_info(
        jid=SERVER, node=own.disco_node, timeout=TIMEOUT
    )
    assert info["disco_info"]["node"] == f"{NODE}#{own.ver}"
    assert caps.generate_verstring(info["disco_info"], "sha-1") == own.ver


async def test_roost_verifies_and_caches_slixmpp_caps(
    server: Server, clients: Callable[..., Client]
) -> None:
    module = caps_module(server)
    alice = clients("alice", resource="caps", plugins=("xep_0115",))
    await alice.start()
    caps = alice.xmpp.plugin["xep_0115"]
    await caps.update_caps(broadcast=False)
    ver = await caps.get_verstring()
    assert ver
    jid = JID.parse("alice@localhost/caps")

    # an observer after the caps module's: by then it has noted the caps and started the check
    seen = asyncio.Event()

    def observe(stanza: Any, sender: JID, conn: Any) -> None:
        if sender == jid:
            seen.set()

    remove = server.bus.observe(events.PRESENCE_BROADCAST, observe, priority=-1)
    try:
        alice.xmpp.send_presence()
        await asyncio.wait_for(seen.wait(), TIMEOUT)
    finally:
        remove()
    assert module.caps_of(jid) == Caps(caps.caps_node, ver, "sha-1")

    info = await asyncio.wait_for(module.resolve(jid), TIMEOUT)
    assert info is not None, "Roost did not verify slixmpp's caps"
    assert caps_hash(info) == ver
    assert module.cache.get(ver) is info
