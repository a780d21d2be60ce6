"""Interop: slixmpp's XEP-0313 (with XEP-0059, XEP-0359 and XEP-0441) plugins retrieving
history from Roost (issue 12, acceptance 2 for MAM).

alice sends bob messages while both are online; bob's client sees the server's stanza-id on
each, then pages through his archive forwards and backwards with slixmpp's RSM iterator, by
peer and by time, reads the archive metadata and the query form, and sets preferences.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable

from roost.server.app import Server
from tests.interop.test_slixmpp import TIMEOUT, Client

PLUGINS = ("xep_0030", "xep_0059", "xep_0297", "xep_0313", "xep_0359", "xep_0441")
N = 23


async def test_slixmpp_retrieves_history(server: Server, clients: Callable[..., Client]) -> None:
    alice = clients("alice", resource="a", plugins=PLUGINS)
    bob = clients("bob", resource="b", plugins=PLUGINS)
    await asyncio.gather(alice.start(), bob.start())
    info = await bob.xmpp.plugin["xep_0030"].get_info(jid="bob@localhost", timeout=TIMEOUT)
    features = info["disco_info"]["features"]
    assert "urn:xmpp:mam:2" in features and "urn:xmpp:mam:2#extended" in features
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    for i in range(N):
        alice.xmpp.send_message(mto="bob@localhost/b", mbody=f"m{i}", mtype="chat")
    stanza_ids = []
    for i in range(N):
        msg = await bob.next_message()
        assert msg["body"] == f"m{i}"
        assert msg["stanza_id"]["by"] == "bob@localhost"
        stanza_ids.append(msg["stanza_id"]["id"])
    await bob.barrier()

    # forwards, 5 at a time: every message once, in order, under its stanza-id
    mam = bob.xmpp.plugin["xep_0313"]
    got = [m async for m in mam.iterate(with_jid="alice@localhost", rsm={"max": 5})]
    assert [m["mam_result"]["forwarded"]["stanza"]["body"] for m in got] == [
        f"m{i}" for i in range(N)
    ]
    assert [m["mam_result"]["id"] for m in got] == stanza_ids
    forwarded = got[0]["mam_result"]["forwarded"]
    assert str(forwarded["stanza"]["from"]) == "alice@localhost/a"
    assert forwarded["delay"]["stamp"] >= before
    # backwards from the newest, a page at a time. COMPAT: slixmpp 1.x's RSM iterator
    # (xep_0059 ResultIterator) ends a reversed iteration after its first page whenever
    # the server gives <count/> and <first index/> (it applies the forward test,
    # first + len == count), and retrieve() cannot send an empty <before/>: the last page
    # comes from iterate(reverse=True), the earlier ones from retrieve() with <before/>.
    last_page = [m["mam_result"]["id"] async for m in mam.iterate(reverse=True, rsm={"max": 4})]
    back = last_page[::-1]  # iterate() yields a reversed page newest first
    assert back == stanza_ids[-4:]
    while True:
        iq = await mam.retrieve(rsm={"max": 4, "before": back[0]})
        page = [m["mam_result"]["id"] for m in iq["mam"]["results"]]
        assert page == sorted(page)  # chronological inside the page
        back = page + back
        if iq["mam_fin"]["complete"]:
            break
    assert back == stanza_ids
    # one page by time, without RSM iteration
    iq = await mam.retrieve(start=before, with_jid="alice@localhost", rsm={"max": 10})
    assert len(iq["mam"]["results"]) == 10
    assert iq["mam_fin"]["rsm"]["count"] == str(N)
    assert not iq["mam_fin"]["complete"]
    # alice's archive has the same conversation, the other way
    sent = [m async for m in alice.xmpp.plugin["xep_0313"].iterate(rsm={"max": 50})]
    assert [m["mam_result"]["forwarded"]["stanza"]["body"] for m in sent] == [
        f"m{i}" for i in range(N)
    ]

    # metadata and the query form
    md = await mam.get_archive_metadata(timeout=TIMEOUT)
    assert md["mam_metadata"]["start"]["id"] == stanza_ids[0]
    assert md["mam_metadata"]["end"]["id"] == stanza_ids[-1]
    form = await mam.get_fields(timeout=TIMEOUT)
    assert {"with", "start", "end", "before-id", "after-id", "ids"} <= {
        f["var"] for f in form["fields"]
    }

    # XEP-0441 preferences: bob stops archiving alice
    prefs = bob.xmpp.plugin["xep_0441"]
    await prefs.set_preferences(default="always", never=["alice@localhost"], timeout=TIMEOUT)
    default, always, never = await prefs.get_preferences(timeout=TIMEOUT)
    assert default == "always" and list(always) == []
    assert [str(j) for j in never] == ["alice@localhost"]
    alice.xmpp.send_message(mto="bob@localhost/b", mbody="unarchived", mtype="chat")
    assert (await bob.next_message())["body"] == "unarchived"
    await bob.barrier()
    iq = await mam.retrieve(rsm={"max": 0})
    assert iq["mam_fin"]["rsm"]["count"] == str(N)
