"""Server-to-server streams, sans-IO: exact bytes in, exact bytes and events out.

XEP-0288 bidirectional streams, XEP-0220 §8.1 multiplexing and §2.4 dialback errors. The
socket-level behaviour (two real servers) is in tests/server/test_federation.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from roost.core.errors import StanzaErrorCondition
from roost.core.stream.events import StanzaReceived, StreamEnded
from roost.core.stream.s2s import (
    DialbackFailed,
    DialbackKeyReceived,
    Established,
    ReverseReady,
    S2SInbound,
    S2SOutbound,
    S2SSettings,
    dialback_key,
)

SETTINGS = S2SSettings(
    domains=frozenset({"a.example", "a2.example"}),
    secret="s3cret",
    tls_available=False,  # TLS is the socket tests' business; here the XML only
    require_tls=False,
)
PEER_HEADER = (
    b"<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='b.example' to='a.example' "
    b"id='S1' version='1.0'>"
)
FEATURES = (
    b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
    b"<bidi xmlns='urn:xmpp:features:bidi'/></stream:features>"
)
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def _key(local: str) -> str:
    return dialback_key("s3cret", "b.example", local, "S1")


def _outbound(features: bytes = FEATURES, **settings: bool) -> S2SOutbound:
    """An outbound stream a.example -> b.example, accepted by dialback."""
    out = S2SOutbound(dataclasses.replace(SETTINGS, **settings), "a.example", "b.example")
    out.data_to_send()
    assert out.receive_data(PEER_HEADER + features) == []
    sent = out.data_to_send().decode()
    auth = f"<db:result from='a.example' to='b.example'>{_key('a.example')}</db:result>"
    assert sent.endswith(auth)
    got = out.receive_data(b"<db:result from='b.example' to='a.example' type='valid'/>")
    assert got == [Established("a.example", "b.example", "dialback")]
    return out


def test_outbound_asks_for_bidi_when_offered_and_takes_the_peers_stanzas() -> None:
    out = S2SOutbound(SETTINGS, "a.example", "b.example")
    out.data_to_send()
    out.receive_data(PEER_HEADER + FEATURES)
    assert out.data_to_send().decode() == (
        "<bidi xmlns='urn:xmpp:bidi'/>"
        f"<db:result from='a.example' to='b.example'>{_key('a.example')}</db:result>"
    )
    out.receive_data(b"<db:result from='b.example' to='a.example' type='valid'/>")
    (ev,) = out.receive_data(
        b"<message from='bob@b.example/r' to='alice@a.example' id='m1'><body>hi</body></message>"
    )
    assert isinstance(ev, StanzaReceived) and ev.element.get("id") == "m1"


@pytest.mark.parametrize(
    ("stanza", "condition"),
    [
        # XEP-0288 §3: only the inverse of the authenticated pair
        (b"<message from='eve@c.example' to='alice@a.example'/>", "invalid-from"),
        (b"<message from='bob@b.example' to='alice@a2.example'/>", "invalid-from"),
        (b"<message from='bob@b.example' to='x@elsewhere.example'/>", "host-unknown"),
        (b"<message to='alice@a.example'/>", "invalid-from"),
    ],
)
def test_outbound_bidi_refuses_what_the_peer_did_not_authenticate(
    stanza: bytes, condition: str
) -> None:
    out = _outbound()
    (ev,) = out.receive_data(stanza)
    assert isinstance(ev, StreamEnded) and ev.error is not None
    assert ev.error.condition.value == condition
    assert f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in (
        out.data_to_send().decode()
    )


def test_without_bidi_the_peer_may_not_send_on_our_stream() -> None:
    out = _outbound(features=FEATURES.replace(b"<bidi xmlns='urn:xmpp:features:bidi'/>", b""))
    (ev,) = out.receive_data(b"<message from='bob@b.example' to='alice@a.example'/>")
    assert isinstance(ev, StreamEnded) and ev.error is not None
    assert ev.error.condition.value == "unsupported-stanza-type"


def test_bidi_is_not_asked_for_when_switched_off() -> None:
    out = S2SOutbound(dataclasses.replace(SETTINGS, bidi=False), "a.example", "b.example")
    out.data_to_send()
    out.receive_data(PEER_HEADER + FEATURES)
    assert b"bidi" not in out.data_to_send()


def test_the_peer_multiplexing_onto_our_bidi_stream_is_told_to_open_its_own() -> None:
    """XEP-0220 §2.4 resource-constraint: "establish a new TCP connection"."""
    out = _outbound()
    assert out.receive_data(b"<db:result from='c.example' to='a.example'>k</db:result>") == []
    assert out.data_to_send() == (
        b"<db:result from='a.example' to='c.example' type='error'><error type='wait'>"
        b"<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"
    )
    assert not out.closed


def test_a_second_sender_domain_is_multiplexed_and_a_refusal_spares_the_stream() -> None:
    out = _outbound()
    assert out.can_multiplex
    assert out.add_local("a2.example") == []
    assert out.data_to_send().decode() == (
        f"<db:result from='a2.example' to='b.example'>{_key('a2.example')}</db:result>"
    )
    refusal = (
        b"<db:result from='b.example' to='a2.example' type='error'><error type='cancel'>"
        b"<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"
    )
    assert out.receive_data(refusal) == [
        DialbackFailed("a2.example", "b.example", "item-not-found", fatal=False)
    ]
    assert not out.closed and out.locals == {"a.example"}
    out.add_local("a2.example")
    out.data_to_send()
    got = out.receive_data(b"<db:result from='b.example' to='a2.example' type='valid'/>")
    assert got == [Established("a2.example", "b.example", "dialback")]
    assert out.locals == {"a.example", "a2.example"}


def test_no_multiplexing_without_dialback_errors() -> None:
    """XEP-0220 §8.1: "SHOULD NOT ... unless the Receiving Server has signalled support
    for dialback error handling"."""
    out = _outbound(
        features=b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
        b"</stream:features>"
    )
    assert not out.can_multiplex


def test_inbound_offers_bidi_and_opens_the_reverse_route_once_dialback_says_valid() -> None:
    inbound = S2SInbound(SETTINGS, lambda: "ID1")
    header = PEER_HEADER.replace(b" id='S1'", b"")
    inbound.receive_data(header)
    assert inbound.data_to_send().endswith(
        b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
        b"<bidi xmlns='urn:xmpp:features:bidi'/></stream:features>"
    )
    got = inbound.receive_data(
        b"<bidi xmlns='urn:xmpp:bidi'/><db:result from='b.example' to='a.example'>k</db:result>"
    )
    assert got == [DialbackKeyReceived("b.example", "a.example", "k", "ID1")]
    assert inbound.data_to_send() == b""  # <bidi/> has no answer (XEP-0288 §2.2)
    got = inbound.dialback_verified("b.example", "a.example", True)
    assert got == [ReverseReady("a.example", "b.example", "dialback")]
    assert inbound.data_to_send() == b"<db:result from='a.example' to='b.example' type='valid'/>"


def test_inbound_without_bidi_opens_no_reverse_route() -> None:
    inbound = S2SInbound(SETTINGS, lambda: "ID1")
    inbound.receive_data(PEER_HEADER.replace(b" id='S1'", b""))
    inbound.receive_data(b"<db:result from='b.example' to='a.example'>k</db:result>")
    assert inbound.dialback_verified("b.example", "a.example", True) == []


def test_an_undecided_dialback_is_a_dialback_error_and_the_stream_stays() -> None:
    inbound = S2SInbound(SETTINGS, lambda: "ID1")
    inbound.receive_data(PEER_HEADER.replace(b" id='S1'", b""))
    inbound.data_to_send()
    inbound.receive_data(b"<db:result from='b.example' to='a.example'>k</db:result>")
    assert (
        inbound.dialback_error("b.example", "a.example", StanzaErrorCondition.REMOTE_SERVER_TIMEOUT)
        == []
    )
    assert inbound.data_to_send() == (
        b"<db:result from='a.example' to='b.example' type='error'><error type='wait'>"
        b"<remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        b"</db:result>"
    )
    assert not inbound.closed


def test_inbound_takes_a_second_target_domain_on_the_same_stream() -> None:
    """XEP-0220 §8.2 target multiplexing, receiving side: any domain served here may be
    asked for on a stream opened to another one; each pair is authorized by itself."""
    inbound = S2SInbound(SETTINGS, lambda: "ID1")
    inbound.receive_data(PEER_HEADER.replace(b" id='S1'", b""))
    inbound.receive_data(b"<db:result from='b.example' to='a.example'>k1</db:result>")
    inbound.dialback_verified("b.example", "a.example", True)
    got = inbound.receive_data(b"<db:result from='b.example' to='a2.example'>k2</db:result>")
    assert got == [DialbackKeyReceived("b.example", "a2.example", "k2", "ID1")]
    (ev,) = inbound.receive_data(b"<message from='bob@b.example' to='carol@a2.example'/>")
    assert isinstance(ev, StreamEnded) and ev.error is not None
    assert ev.error.condition.value == "invalid-from"  # not yet verified for a2.example
    inbound = S2SInbound(SETTINGS, lambda: "ID1")
    inbound.receive_data(PEER_HEADER.replace(b" id='S1'", b""))
    for target in ("a.example", "a2.example"):
        inbound.receive_data(f"<db:result from='b.example' to='{target}'>k</db:result>".encode())
        inbound.dialback_verified("b.example", target, True)
    (ev,) = inbound.receive_data(b"<message from='bob@b.example' to='carol@a2.example'/>")
    assert isinstance(ev, StanzaReceived)
