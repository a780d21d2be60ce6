"""The one place where stanzas are written to local sessions.

Every stanza for a local session, whoever made it (the router, a module's reply or push,
an offline message), ends in ``deliver``. This is where the stream's namespace is applied
and where later features that must see every delivery (archives, carbons, client-state
queues, cluster forwarding) hook in, so none of them is threaded through the modules.
``grep -rn "stream.write(" src/roost/server`` finds them all here: ``deliver``'s own for
the common case (no feature holds the stanza back), ``_write`` for the rest, and
``resume`` (README, Architecture).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from roost.core import ns
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server import stats
from roost.server.session import MAX_DETACHED_QUEUE, Session, SessionStream

__all__ = ["STANZA_NAMESPACES", "attach", "deliver", "deliver_all", "stanza_bytes"]

log = logging.getLogger(__name__)

#: the namespaces a stanza's top element may be in; each stream writes them as its own
STANZA_NAMESPACES: Final = frozenset((ns.CLIENT, ns.SERVER, ns.COMPONENT))


def stanza_bytes(stanza: Element) -> bytes:
    """A stanza as any stream writes it: in the stream's default namespace.

    A stanza that came in on a ``jabber:server`` stream carries that namespace; written
    with it as the default, its top element (and the children in the same namespace)
    take the namespace of whichever stream it is written to (RFC 6120 §4.8.3).
    """
    default = stanza.ns if stanza.ns in STANZA_NAMESPACES else ns.CLIENT
    return serialize(stanza, default).encode()


def deliver(session: Session, stanza: Element | None, data: bytes | None = None) -> None:
    """Write ``stanza`` (or its bytes, already made by ``stanza_bytes``) to ``session``."""
    if data is None:
        assert stanza is not None
        data = stanza_bytes(stanza)
    if stanza is not None:
        stats.SENT_C2S[stanza.tag] += 1
    hold = session.hold_back
    if hold is None and session.sm is None:
        stream = session.stream
        if stream is not None:  # the hot path: one attribute test per feature, one call
            stream.write(data)
            return
    elif hold is not None:
        # XEP-0352: an inactive client gets what can wait later, and all of it, in
        # order, before the next thing that cannot
        if stanza is not None and hold.keep(stanza, data):
            return
        for kept in hold.release():
            _write(session, kept, None)
    _write(session, data, stanza)


def _write(session: Session, data: bytes, stanza: Element | None) -> None:
    sm = session.sm
    stream = session.stream
    if sm is not None:
        # XEP-0198: counted and kept until acknowledged; while detached, this is the
        # queue a resumption sends again
        sm.outbound(stanza, data)
        if stream is None:
            if len(sm.unacked) > sm.limit and sm.overflow is not None:
                sm.overflow()  # waiting for a resumption: bounded too
            return
    if stream is not None:
        stream.write(data)
        if sm is not None and sm.watch is not None:
            sm.watch()  # the stream asks for an ack, or ends a client that never gives one
        return
    # Detached (XEP-0198 resumption, BOSH between requests): kept, within bounds.
    if session.queued_size + len(data) > MAX_DETACHED_QUEUE:
        log.info("%r: detached queue full; dropping a stanza", session)
        return
    if session.queued is None:
        session.queued = []
    session.queued.append(data)
    session.queued_size += len(data)


def attach(session: Session, stream: SessionStream) -> None:
    """Carry ``session`` on ``stream`` (a resumed or next-request stream); what was
    delivered while it was detached goes out first, in order."""
    queued, session.queued, session.queued_size = session.queued, None, 0
    session.stream = stream
    for data in queued or ():
        deliver(session, None, data)


def resume(session: Session, stream: SessionStream, h: int) -> None:
    """XEP-0198 §5: carry ``session`` on ``stream`` again, forget what the client says it
    handled (``h``, already checked) and send the rest again, in order."""
    sm = session.sm
    assert sm is not None
    sm.ack(h)
    session.stream = stream
    for _, data in sm.unacked:
        stream.write(data)
    if sm.unacked and sm.watch is not None:
        sm.watch()


def deliver_all(sessions: Iterable[Session], stanza: Element) -> None:
    """Deliver one stanza to several sessions, serialised once."""
    data: bytes | None = None
    for session in sessions:
        if data is None:
            data = stanza_bytes(stanza)
        deliver(session, stanza, data)
