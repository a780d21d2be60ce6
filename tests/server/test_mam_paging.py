"""XEP-0313 with XEP-0059: 10,000 archived messages paged through both ways, with filters,
checking ids, order, count, index and ``complete`` (issue 12, MAM acceptance 3). The archive
is filled through the storage API in one batch; every query goes over the wire."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from roost.core import ns
from roost.core.delay import xep0082_datetime
from roost.core.mam import MAM2
from roost.server.app import Server
from roost.storage.api import ArchivedMessage
from tests.helpers import Logins
from tests.server.mam_helpers import (
    fin,
    forwarded,
    ids_of,
    mam,
)


@pytest.fixture
async def logins(server: Server) -> AsyncIterator[Logins]:
    made = Logins(server)
    yield made
    await made.close()


# -- 10,000 messages: paging both ways, filters (acceptance 3) ---------------------------------

N = 10_000
#: archived a millisecond apart, from an hour ago
T0 = int((time.time() - 3600) * 1_000_000)


def _peer(i: int) -> str:
    return "bob@localhost" if i % 2 == 0 else "carol@localhost"


async def _fill(server: Server) -> list[str]:
    """N messages in alice's archive, written through the storage API in one batch."""
    rows = []
    for i in range(N):
        peer = _peer(i)
        outgoing = i % 3 == 0
        frm, to = ("alice@localhost/a", peer) if outgoing else (f"{peer}/x", "alice@localhost")
        rows.append(
            ArchivedMessage(
                username="alice",
                domain="localhost",
                seq=T0 + i * 1000,
                peer=peer,
                resource="a" if outgoing else "x",
                outgoing=outgoing,
                stanza=f"<message from='{frm}' to='{to}' type='chat'><body>{i}</body></message>",
            )
        )
    assert await server.storage.archive_messages(rows) == N
    return [r.id for r in rows]


def _when(i: int) -> str:
    return xep0082_datetime((T0 + i * 1000) / 1_000_000)


async def test_ten_thousand_messages_page_both_ways(server: Server, logins: Logins) -> None:
    ids = await _fill(server)
    position = {archive_id: n for n, archive_id in enumerate(ids)}
    a = await logins("alice", "a")
    # forward, 250 at a time
    seen: list[str] = []
    after = ""
    while True:
        results, iq = await mam(a, {}, f"<max>250</max>{after}")
        complete, bounds, index, count = fin(iq)
        page = ids_of(results)
        assert count == N and index == len(seen) and bounds == [page[0], page[-1]]
        bodies = [forwarded(r).find("body", ns.CLIENT).text for r in results]  # type: ignore[union-attr]
        assert bodies == [str(position[i]) for i in page]
        seen += page
        assert complete == (len(seen) == N)
        if complete:
            break
        after = f"<after>{page[-1]}</after>"
    assert seen == ids
    # backward from the end: pages in chronological order inside, complete at the start
    seen = []
    before = "<before/>"
    while True:
        results, iq = await mam(a, {}, f"<max>300</max>{before}")
        complete, bounds, index, count = fin(iq)
        page = ids_of(results)
        assert page == sorted(page) and count == N and index == N - len(seen) - len(page)
        seen = page + seen
        assert complete == (len(seen) == N)
        if complete:
            break
        before = f"<before>{page[0]}</before>"
    assert seen == ids
    # the server's page limit: more than max_page asked, max_page given, not complete
    results, iq = await mam(a, {}, "<max>100000</max>")
    assert len(results) == 250 and not fin(iq)[0]
    # max 0: the count only
    results, iq = await mam(a, {}, "<max>0</max>")
    assert results == [] and fin(iq) == (False, [], None, N)


async def test_ten_thousand_messages_with_filters(server: Server, logins: Logins) -> None:
    ids = await _fill(server)
    a = await logins("alice", "a")
    # with + paging backwards through one peer's half
    bob = [i for n, i in enumerate(ids) if _peer(n) == "bob@localhost"]
    seen: list[str] = []
    before = "<before/>"
    while True:
        results, iq = await mam(a, {"with": "bob@localhost"}, f"<max>500</max>{before}")
        complete, _, index, count = fin(iq)
        page = ids_of(results)
        assert count == N // 2 and index == N // 2 - len(seen) - len(page)
        seen = page + seen
        if complete:
            break
        before = f"<before>{page[0]}</before>"
    assert seen == bob
    # a full JID matches that resource only: carol's messages to alice come from carol/x
    results, iq = await mam(a, {"with": "carol@localhost/x"}, "<max>0</max>")
    assert fin(iq)[3] == len([n for n in range(N) if _peer(n) == "carol@localhost" and n % 3])
    # start and end are inclusive
    results, iq = await mam(a, {"start": _when(100), "end": _when(199)}, "<max>250</max>")
    assert ids_of(results) == ids[100:200] and fin(iq)[0]
    # with + start + paging forwards
    results, iq = await mam(
        a,
        {"with": "carol@localhost", "start": _when(9000)},
        f"<max>100</max><after>{ids[9001]}</after>",
    )
    carol_late = [i for n, i in enumerate(ids) if n > 9001 and _peer(n) == "carol@localhost"]
    assert ids_of(results) == carol_late[:100]
    complete, _, index, count = fin(iq)
    assert (complete, index, count) == (False, 1, 500)
    # after-id and before-id bound the set (exclusive); RSM still pages in it
    results, iq = await mam(
        a, {"after-id": ids[4999], "before-id": ids[5100]}, "<max>60</max><before/>"
    )
    assert ids_of(results) == ids[5040:5100]
    assert fin(iq) == (False, [ids[5040], ids[5099]], 40, 100)
    # ids: exactly these, in archive order; flip-page reverses a page, not the set
    wanted = [ids[7], ids[9999], ids[3]]
    results, iq = await mam(a, {"ids": wanted})
    assert ids_of(results) == [ids[3], ids[7], ids[9999]] and fin(iq)[0]
    results, iq = await mam(a, {}, f"<max>5</max><after>{ids[10]}</after>", extra="<flip-page/>")
    assert ids_of(results) == ids[11:16][::-1]
    # metadata (XEP-0313 §5)
    await a.send(f"<iq type='get' id='md'><metadata xmlns='{MAM2}'/></iq>")
    md = (await a.expect(lambda e: e.get("id") == "md")).find("metadata", MAM2)
    assert md is not None
    assert md.find("start", MAM2).get("id") == ids[0]  # type: ignore[union-attr]
    assert md.find("end", MAM2).get("id") == ids[-1]  # type: ignore[union-attr]
