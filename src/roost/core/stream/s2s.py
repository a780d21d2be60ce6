"""Server-to-server streams (RFC 6120, ``jabber:server``) with Server Dialback (XEP-0220).

Sans-IO like the other streams. ``S2SInbound`` is a stream a peer opened to us (we are the
Receiving Server, and the Authoritative Server for our own domains); ``S2SOutbound`` is one
we opened (the Initiating Server), either to send stanzas for a domain pair once dialback
says "valid", or only to ask a peer's authoritative server to verify a key (``db:verify``).
Keys follow XEP-0185: HMAC-SHA256 of "Receiving Originating StreamID" under SHA-256 of a
secret only this server knows. TLS is negotiated with STARTTLS before dialback.

One stream may carry several domain pairs (XEP-0220 §8, multiplexing): an inbound stream
authorizes each pair it is asked for, and an outbound one can add sender domains once it
is up, when the peer handles dialback errors (a refusal then costs that pair, not the
stream). With XEP-0288 (bidirectional streams) the stream a peer opened also carries our
stanzas back to it, for exactly the pairs it authenticated, inverted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from roost.core import ns
from roost.core.errors import (
    StanzaError,
    StanzaErrorCondition,
    StreamError,
    StreamErrorCondition,
    parse_stanza_error,
    parse_stream_error,
)
from roost.core.identity import CertIdentities, certificate_matches
from roost.core.jid import JID, InvalidJID
from roost.core.stream.events import StanzaReceived, StreamEnded, TLSRequested
from roost.core.xml.element import Element
from roost.core.xml.parser import ElementParsed, StreamClosed, StreamOpened, XMLStreamParser
from roost.core.xml.writer import escape_attr, escape_text, serialize

__all__ = [
    "BIDI",
    "BIDI_FEATURE",
    "DIALBACK",
    "DIALBACK_FEATURE",
    "DialbackFailed",
    "DialbackKeyReceived",
    "Established",
    "PeerAuthenticated",
    "ReverseReady",
    "S2SInbound",
    "S2SOutbound",
    "S2SSettings",
    "S2SState",
    "VerifyAnswered",
    "VerifyRequested",
    "dialback_key",
]

DIALBACK: Final = "jabber:server:dialback"
DIALBACK_FEATURE: Final = "urn:xmpp:features:dialback"
BIDI: Final = "urn:xmpp:bidi"
BIDI_FEATURE: Final = "urn:xmpp:features:bidi"
_SC = StreamErrorCondition
_STANZAS: Final = frozenset(("message", "presence", "iq"))
_CLOSE: Final = b"</stream:stream>"
NO_IDENTITIES: Final = CertIdentities()


def dialback_key(secret: str, receiving: str, originating: str, stream_id: str) -> str:
    """XEP-0185 §3: the key for a stream ``originating`` opened to ``receiving``."""
    inner = hashlib.sha256(secret.encode()).hexdigest().encode()
    text = f"{receiving} {originating} {stream_id}".encode()
    return hmac.new(inner, text, hashlib.sha256).hexdigest()


class S2SState(Enum):
    EXPECT_HEADER = "expect-header"
    OPEN = "open"  # header exchanged: features, TLS, dialback
    TLS_PENDING = "tls-pending"
    READY = "ready"  # outbound: dialback said valid, stanzas may go
    CLOSED = "closed"


_S = S2SState
#: every allowed transition, for both directions (house style: state machines are data)
TRANSITIONS: Final = frozenset(
    {
        (_S.EXPECT_HEADER, _S.OPEN),
        (_S.OPEN, _S.TLS_PENDING),
        (_S.OPEN, _S.EXPECT_HEADER),  # restart after SASL
        (_S.TLS_PENDING, _S.EXPECT_HEADER),
        (_S.OPEN, _S.READY),
    }
    | {(s, _S.CLOSED) for s in _S if s is not _S.CLOSED}
)


@dataclass(frozen=True, slots=True)
class S2SSettings:
    """What an s2s stream needs to know about this server."""

    domains: frozenset[str]
    #: the dialback secret (XEP-0185): random per server start
    secret: str = field(repr=False)
    tls_available: bool = True
    require_tls: bool = True
    #: authenticate peers with Server Dialback when SASL EXTERNAL is not possible
    dialback: bool = True
    #: offer and request XEP-0288 bidirectional streams
    bidi: bool = True
    #: a peer must prove a domain with a certificate that verified and names it, also
    #: when it uses dialback (XEP-0220 §2.4 ``not-authorized``) ...
    require_valid_certs: bool = False
    #: ... except these domains (development only)
    insecure_domains: frozenset[str] = frozenset()
    max_stanza_size: int = 262144
    max_depth: int = 64


# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DialbackKeyReceived:
    """Inbound: a peer claims ``sender`` for stanzas to ``target``; verify ``key`` with the
    authoritative server of ``sender``, then call ``dialback_verified``."""

    sender: str
    target: str
    key: str
    stream_id: str


@dataclass(frozen=True, slots=True)
class VerifyRequested:
    """Inbound: a peer asks whether ``key`` is ours for a stream ``originating`` (one of our
    domains) opened to ``receiving`` with ``stream_id``; answered by the stream itself."""

    receiving: str
    originating: str
    stream_id: str
    valid: bool


@dataclass(frozen=True, slots=True)
class Established:
    """Outbound: the peer accepted the domain pair (``method``: "external" or "dialback");
    queued stanzas may go."""

    local: str
    remote: str
    method: str


@dataclass(frozen=True, slots=True)
class PeerAuthenticated:
    """Inbound: the peer proved ``domain`` with SASL EXTERNAL (its certificate)."""

    domain: str


@dataclass(frozen=True, slots=True)
class ReverseReady:
    """Inbound, bidirectional (XEP-0288 §3): the peer authenticated ``remote`` to our
    ``local``, so this stream may now carry our stanzas from ``local`` to ``remote``."""

    local: str
    remote: str
    method: str


@dataclass(frozen=True, slots=True)
class DialbackFailed:
    """Outbound: the peer refused the domain pair: ``type='invalid'`` or no way to
    authenticate (``fatal``), or a dialback error (XEP-0220 §2.4, the stream goes on)."""

    local: str
    remote: str
    reason: str
    fatal: bool = True


@dataclass(frozen=True, slots=True)
class VerifyAnswered:
    """Outbound (verify only): the authoritative server's answer about ``stream_id``."""

    stream_id: str
    valid: bool


S2SEvent = (
    TLSRequested
    | StanzaReceived
    | StreamEnded
    | DialbackKeyReceived
    | VerifyRequested
    | Established
    | DialbackFailed
    | VerifyAnswered
    | PeerAuthenticated
    | ReverseReady
)


def _db(
    tag: str,
    attrs: dict[str, str],
    key: str | None = None,
    error: StanzaErrorCondition | None = None,
) -> bytes:
    """A dialback element with the ``db:`` prefix the stream header declares: XEP-0220
    §2.3 notes deployments that accept no other. A dialback error carries the stanza
    error condition in an ``<error/>`` of ``jabber:server`` (XEP-0220 §2.4)."""
    text = "".join(f" {k}='{escape_attr(v)}'" for k, v in attrs.items())
    if error is not None:
        err = StanzaError(error)
        child = Element("error", ns.SERVER, {"type": err.type.value})
        child.sub(error.value, ns.STANZAS)
        return f"<db:{tag}{text}>{serialize(child, ns.SERVER)}</db:{tag}>".encode()
    if key is not None:
        return f"<db:{tag}{text}>{escape_text(key)}</db:{tag}>".encode()
    return f"<db:{tag}{text}/>".encode()


def _dialback_error_reason(el: Element) -> str:
    error = el.find("error", ns.SERVER)
    if error is None:
        return el.get("type") or "?"
    return parse_stanza_error(error).condition.value


def _stanza_addresses(el: Element) -> tuple[JID, JID]:
    """RFC 6120 §8.1.1.2 / §8.1.2.2: 'to' and 'from' are required on s2s stanzas."""
    try:
        sender = JID.parse(el.get("from") or "")
    except InvalidJID:
        raise StreamError(_SC.INVALID_FROM, "a stanza needs a valid 'from'") from None
    try:
        to = JID.parse(el.get("to") or "")
    except InvalidJID:
        raise StreamError(_SC.IMPROPER_ADDRESSING, "a stanza needs a valid 'to'") from None
    return sender, to


class _S2SStream:
    """Plumbing both directions share: parser, output buffer, header, closing."""

    __slots__ = (
        "_events",
        "_out",
        "_parser",
        "_sasl_done",
        "_sent_header",
        "encrypted",
        "settings",
        "state",
        "stream_id",
    )

    def __init__(self, settings: S2SSettings, *, encrypted: bool = False) -> None:
        self.settings = settings
        self.encrypted = encrypted
        self.state = S2SState.EXPECT_HEADER
        self.stream_id: str | None = None
        self._out: list[bytes] = []
        self._events: list[S2SEvent] = []
        self._sent_header = False
        self._sasl_done = False
        self._parser = self._new_parser()

    def _new_parser(self) -> XMLStreamParser:
        return XMLStreamParser(
            max_stanza_size=self.settings.max_stanza_size, max_depth=self.settings.max_depth
        )

    def _go(self, new: S2SState) -> None:
        if (self.state, new) not in TRANSITIONS:
            raise AssertionError(f"illegal transition {self.state.name} -> {new.name}")
        self.state = new

    @property
    def closed(self) -> bool:
        return self.state is S2SState.CLOSED

    def data_to_send(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def send_raw(self, data: bytes) -> None:
        self._out.append(data)

    def _send(self, el: Element) -> None:
        self._out.append(serialize(el, ns.SERVER).encode())

    def _header(self, from_: str | None, to: str | None, stream_id: str | None) -> None:
        attrs = "".join(
            f" {k}='{escape_attr(v)}'"
            for k, v in (("from", from_), ("to", to), ("id", stream_id))
            if v is not None
        )
        self._out.append(
            f"<?xml version='1.0'?><stream:stream xmlns='{ns.SERVER}' "
            f"xmlns:db='{DIALBACK}' xmlns:stream='{ns.STREAM}'{attrs} version='1.0'>".encode()
        )
        self._sent_header = True

    def hibernate(self) -> bool:
        return self._parser.hibernate()

    def receive_data(self, data: bytes) -> list[S2SEvent]:
        if self.state in (S2SState.CLOSED, S2SState.TLS_PENDING):
            return []
        try:
            for ev in self._parser.feed(data):
                if isinstance(ev, ElementParsed):
                    el = ev.element
                    if el.ns == ns.STREAM and el.tag == "error":
                        self._peer_error(parse_stream_error(el))
                    else:
                        self._element(el)
                elif isinstance(ev, StreamOpened):
                    self._opened(ev)
                else:
                    assert isinstance(ev, StreamClosed)
                    self._close(None)
                if self.state in (S2SState.CLOSED, S2SState.TLS_PENDING):
                    break
        except StreamError as err:
            self._close(err)
        return self._take()

    def close(self, error: StreamError | None) -> list[S2SEvent]:
        self._close(error)
        return self._take()

    def tls_started(self, peer_identities: CertIdentities = NO_IDENTITIES) -> list[S2SEvent]:
        """The transport is now TLS: the stream restarts (RFC 6120 §5.4.3.3).

        ``peer_identities``: the identities in the peer's certificate if it presented one
        that verified (an inbound stream then offers SASL EXTERNAL)."""
        self.encrypted = True
        self._tls_identities(peer_identities)
        self._restart()
        return self._take()

    def _tls_identities(self, identities: CertIdentities) -> None: ...

    def _restart(self) -> None:
        self._go(S2SState.EXPECT_HEADER)
        self._parser.discard()
        self._parser = self._new_parser()
        self._restarted()

    def _take(self) -> list[S2SEvent]:
        events, self._events = self._events, []
        return events

    def _close(self, error: StreamError | None) -> None:
        if self.state is S2SState.CLOSED:
            return
        if not self._sent_header:
            self._header(None, None, None)
        if error is not None:
            self._send(error.to_element())
        self._out.append(_CLOSE)
        self._go(S2SState.CLOSED)
        self._parser.discard()
        self._events.append(StreamEnded(error))

    def _peer_error(self, error: StreamError) -> None:
        """The peer ended the stream with an error (RFC 6120 §4.9): close ours, no reply."""
        self._out.append(_CLOSE)
        self._go(S2SState.CLOSED)
        self._parser.discard()
        self._events.append(StreamEnded(error))

    @staticmethod
    def _check_header(ev: StreamOpened) -> None:
        if ev.ns != ns.STREAM or ev.tag != "stream":
            raise StreamError(_SC.INVALID_NAMESPACE, "the stream namespace is wrong")
        if ev.namespaces.get("", "") != ns.SERVER:
            raise StreamError(_SC.INVALID_NAMESPACE, "the content namespace must be jabber:server")

    def _restarted(self) -> None: ...

    def _opened(self, ev: StreamOpened) -> None:
        raise NotImplementedError

    def _element(self, el: Element) -> None:
        raise NotImplementedError


class S2SInbound(_S2SStream):
    """A stream a peer opened to us: we receive its stanzas and answer its dialback."""

    __slots__ = ("_new_id", "_peer_header_from", "authorized", "bidi", "local", "peer_ids")

    def __init__(
        self, settings: S2SSettings, new_id: Callable[[], str], *, encrypted: bool = False
    ) -> None:
        super().__init__(settings, encrypted=encrypted)
        self._new_id = new_id
        #: our domain the peer addressed in its header
        self.local: str | None = None
        #: (peer domain, our domain) pairs dialback verified on this stream
        self.authorized: set[tuple[str, str]] = set()
        #: identities in the peer's verified certificate (empty: none, or it did not verify)
        self.peer_ids = CertIdentities()
        self._peer_header_from: str | None = None
        #: the peer asked for a bidirectional stream (XEP-0288)
        self.bidi = False

    def _tls_identities(self, identities: CertIdentities) -> None:
        self.peer_ids = identities

    def direct_tls(self, peer_identities: CertIdentities) -> None:
        """The connection is TLS from its first byte (XEP-0368): no STARTTLS."""
        self.encrypted = True
        self.peer_ids = peer_identities

    def _opened(self, ev: StreamOpened) -> None:
        if self.state is not S2SState.EXPECT_HEADER:
            raise StreamError(_SC.NOT_WELL_FORMED, "unexpected stream header")
        to = (ev.attrs.get("to") or "").lower().rstrip(".")
        self.local = to if to in self.settings.domains else None
        self._peer_header_from = ev.attrs.get("from")
        self.stream_id = self._new_id()
        self._header(self.local, ev.attrs.get("from"), self.stream_id)
        self._check_header(ev)
        if self.local is None:
            raise StreamError(_SC.HOST_UNKNOWN, "this server does not serve that domain")
        self._go(S2SState.OPEN)
        if ev.attrs.get("version", "").partition(".")[0] == "1":
            features = Element("features", ns.STREAM)
            if not self.encrypted and self.settings.tls_available:
                tls = features.sub("starttls", ns.STARTTLS)
                if self.settings.require_tls:
                    tls.sub("required")
            if self.encrypted and self.peer_ids and not self._sasl_done:
                # XEP-0178 §3: EXTERNAL when the peer's certificate verified
                mechanisms = features.sub("mechanisms", ns.SASL)
                mechanisms.sub("mechanism", text="EXTERNAL")
            if (self.encrypted or not self.settings.require_tls) and self.settings.dialback:
                features.sub("dialback", DIALBACK_FEATURE).sub("errors")
            if self.settings.bidi and not self.authorized:
                features.sub("bidi", BIDI_FEATURE)  # XEP-0288 §2: before and after TLS
            self._send(features)

    def _element(self, el: Element) -> None:
        if self.state is not S2SState.OPEN:
            raise StreamError(_SC.NOT_WELL_FORMED, "an element before the stream header")
        if el.ns == ns.STARTTLS and el.tag == "starttls":
            if self.encrypted or not self.settings.tls_available:
                raise StreamError(_SC.UNSUPPORTED_STANZA_TYPE, "TLS is not available here")
            self._out.append(f"<proceed xmlns='{ns.STARTTLS}'/>".encode())
            self._go(S2SState.TLS_PENDING)
            self._events.append(TLSRequested())
            return
        if self.settings.require_tls and not self.encrypted:
            if el.ns == ns.SERVER and el.tag in ("message", "presence", "iq"):
                # RFC 6120 §4.3.5: a stanza before negotiation completes: not-authorized.
                raise StreamError(_SC.NOT_AUTHORIZED, "negotiate TLS and authenticate first")
            # RFC 6120 §5.3.1: TLS is mandatory-to-negotiate here.
            raise StreamError(_SC.POLICY_VIOLATION, "negotiate TLS first")
        if el.ns == ns.SASL and el.tag == "auth":
            self._external(el)
            return
        if el.ns == BIDI and el.tag == "bidi" and self.settings.bidi and not self.authorized:
            self.bidi = True  # XEP-0288 §2.2: no answer; it applies once a pair is authorized
            return
        if el.ns == DIALBACK and el.tag in ("result", "verify") and el.get("type") is None:
            sender, target = self._domains(el)
            if el.tag == "verify":
                self._verify(sender, target, el)
            elif target not in self.settings.domains:
                # XEP-0220 §2.4: we advertise dialback errors; the stream goes on
                self.dialback_error(sender, target, StanzaErrorCondition.ITEM_NOT_FOUND)
            elif not self._certified(sender):
                self.dialback_error(sender, target, StanzaErrorCondition.NOT_AUTHORIZED)
            else:
                assert self.stream_id is not None
                self._events.append(DialbackKeyReceived(sender, target, el.text, self.stream_id))
            return
        if el.tag in _STANZAS and el.ns == ns.SERVER:
            self._stanza(el)
            return
        raise StreamError(_SC.UNSUPPORTED_STANZA_TYPE, f"<{el.tag}/> is not expected here")

    def _certified(self, sender: str) -> bool:
        """Whether policy lets dialback authenticate ``sender`` on this stream: always,
        unless ``require_valid_certs``; then its certificate must have verified and name
        it (XEP-0220 §2.4, ``not-authorized``: "a valid PKIX certificate containing the
        identity of the Sender Domain"), or it is one of the ``insecure_domains``."""
        settings = self.settings
        return (
            not settings.require_valid_certs
            or sender in settings.insecure_domains
            or certificate_matches(sender, self.peer_ids)
        )

    @property
    def peer_claims(self) -> str | None:
        """The domain the peer named in its stream header (before TLS: unproven)."""
        return self._peer_header_from.lower() if self._peer_header_from else None

    def _external(self, el: Element) -> None:
        """XEP-0178 §3: SASL EXTERNAL: the peer's certificate must name the domain."""
        assert self.local is not None
        domain = None
        if el.get("mechanism") == "EXTERNAL" and self.peer_ids and not self._sasl_done:
            text = el.text.strip()
            try:
                authzid = (
                    base64.b64decode(text, validate=True).decode() if text not in ("", "=") else ""
                )
            except (binascii.Error, UnicodeDecodeError):
                authzid = None
            claimed = authzid or self._peer_header_from
            if claimed and certificate_matches(claimed.lower(), self.peer_ids):
                domain = claimed.lower()
        if domain is None:
            failure = Element("failure", ns.SASL)
            failure.sub("not-authorized")
            self._send(failure)
            self._close(None)
            return
        self._out.append(f"<success xmlns='{ns.SASL}'/>".encode())
        self._sasl_done = True
        self.authorized.add((domain, self.local))
        self._events.append(PeerAuthenticated(domain))
        if self.bidi:
            # XEP-0288 §3: with SASL, the stream's 'to' is what we may send from
            self._events.append(ReverseReady(self.local, domain, "external"))
        self._restart()

    def _domains(self, el: Element) -> tuple[str, str]:
        try:
            sender = JID.parse(el.get("from") or "")
            target = JID.parse(el.get("to") or "")
        except InvalidJID:
            raise StreamError(_SC.IMPROPER_ADDRESSING, "dialback needs 'from' and 'to'") from None
        if sender.local is not None or sender.resource is not None:
            raise StreamError(_SC.INVALID_FROM, "dialback is for domains")
        if target.local is not None or target.resource is not None:
            raise StreamError(_SC.IMPROPER_ADDRESSING, "dialback is for domains")
        if el.tag == "verify" and target.domain not in self.settings.domains:
            raise StreamError(_SC.HOST_UNKNOWN, "this server does not serve that domain")
        return sender.domain, target.domain

    def _verify(self, receiving: str, originating: str, el: Element) -> None:
        """We are the authoritative server of ``originating``: is the key ours?"""
        stream_id = el.get("id") or ""
        expected = dialback_key(self.settings.secret, receiving, originating, stream_id)
        valid = bool(stream_id) and hmac.compare_digest(expected, el.text.strip())
        attrs = {"from": originating, "to": receiving, "id": stream_id}
        self._out.append(_db("verify", attrs | {"type": "valid" if valid else "invalid"}))
        self._events.append(VerifyRequested(receiving, originating, stream_id, valid))

    def dialback_verified(self, sender: str, target: str, valid: bool) -> list[S2SEvent]:
        """Tell the peer what the authoritative server said (XEP-0220 §2.1.4)."""
        if self.state is S2SState.CLOSED:
            return []
        attrs = {"from": target, "to": sender, "type": "valid" if valid else "invalid"}
        self._out.append(_db("result", attrs))
        if valid:
            self.authorized.add((sender, target))
            if self.bidi:
                # XEP-0288 §3: the inverse of the domain pair dialback verified
                self._events.append(ReverseReady(target, sender, "dialback"))
        elif not self.authorized:
            self._close(StreamError(_SC.NOT_AUTHORIZED, "dialback failed"))
        return self._take()

    def dialback_error(
        self, sender: str, target: str, condition: StanzaErrorCondition
    ) -> list[S2SEvent]:
        """XEP-0220 §2.4: the request could not be decided (the authoritative server did
        not answer, the target is not ours): a ``type='error'`` answer, not fatal for the
        stream, so the pairs it already carries stay up."""
        if self.state is S2SState.CLOSED:
            return []
        attrs = {"from": target, "to": sender, "type": "error"}
        self._out.append(_db("result", attrs, error=condition))
        return self._take()

    def _stanza(self, el: Element) -> None:
        if not self.authorized:
            raise StreamError(_SC.NOT_AUTHORIZED, "authenticate with dialback first")
        sender, to = _stanza_addresses(el)
        if to.domain not in self.settings.domains:
            raise StreamError(_SC.HOST_UNKNOWN, f"{to.domain} is not served here")
        if (sender.domain, to.domain) not in self.authorized:
            raise StreamError(_SC.INVALID_FROM, f"{sender.domain} is not authenticated here")
        self._events.append(StanzaReceived(el))


class S2SOutbound(_S2SStream):
    """A stream we opened to ``remote`` for ``local``: dialback, then our stanzas.

    With ``verify`` set (``(receiving, stream_id, key)``) it only asks the peer, as the
    authoritative server of ``remote``, to verify a key, and ends with the answer.
    """

    __slots__ = (
        "bidi",
        "dialback_errors",
        "external",
        "local",
        "locals",
        "pending",
        "remote",
        "verify",
    )

    def __init__(
        self,
        settings: S2SSettings,
        local: str,
        remote: str,
        *,
        verify: tuple[str, str] | None = None,
        external: bool = False,
    ) -> None:
        super().__init__(settings)
        self.local = local
        self.remote = remote
        #: we present a certificate for ``local``: try SASL EXTERNAL (XEP-0178)
        self.external = external
        #: (stream id, key) to verify, for a verify-only stream
        self.verify = verify
        #: our domains the peer has accepted on this stream (``local`` first)
        self.locals: set[str] = set()
        #: further sender domains asked for with dialback, not yet answered (XEP-0220 §8.1)
        self.pending: set[str] = set()
        #: the peer advertised dialback errors (XEP-0220 §2.4), so multiplexing is safe
        self.dialback_errors = False
        #: we asked for a bidirectional stream (XEP-0288): the peer may send to us here
        self.bidi = False
        self._header(local, remote, None)

    def _restarted(self) -> None:
        self._header(self.local, self.remote, None)

    @property
    def can_multiplex(self) -> bool:
        """Whether another sender domain may be added (XEP-0220 §8.1): the stream is up,
        and the peer does dialback with errors, so a refusal is not fatal to it."""
        return (
            self.state is S2SState.READY
            and self.verify is None
            and self.dialback_errors
            and self.settings.dialback
        )

    def add_local(self, local: str) -> list[S2SEvent]:
        """Ask the peer to accept stanzas from ``local`` too (sender multiplexing)."""
        assert self.can_multiplex and self.stream_id is not None
        if local not in self.locals and local not in self.pending:
            self.pending.add(local)
            self._send_result(local)
        return self._take()

    def _send_result(self, local: str) -> None:
        assert self.stream_id is not None
        key = dialback_key(self.settings.secret, self.remote, local, self.stream_id)
        attrs = {"from": local, "to": self.remote}
        self._out.append(_db("result", attrs, key))

    def _opened(self, ev: StreamOpened) -> None:
        if self.state is not S2SState.EXPECT_HEADER:
            raise StreamError(_SC.NOT_WELL_FORMED, "unexpected stream header")
        self._check_header(ev)
        self.stream_id = ev.attrs.get("id")
        if not self.stream_id:
            raise StreamError(_SC.INVALID_XML, "the stream header needs an id")
        self._go(S2SState.OPEN)
        if ev.attrs.get("version", "").partition(".")[0] != "1":
            self._dialback()  # a pre-XMPP-1.0 peer sends no features

    def _dialback(self) -> None:
        if self.settings.require_tls and not self.encrypted:
            raise StreamError(_SC.POLICY_VIOLATION, "the peer does not offer TLS")
        assert self.stream_id is not None
        if self.verify is None and not self.settings.dialback:
            self._events.append(DialbackFailed(self.local, self.remote, "no way to authenticate"))
            self._close(None)
            return
        if self.verify is not None:
            stream_id, key = self.verify
            attrs = {"from": self.local, "to": self.remote, "id": stream_id}
            self._out.append(_db("verify", attrs, key))
            return
        self._send_result(self.local)

    def _established(self, method: str) -> None:
        self._go(S2SState.READY)
        self.locals.add(self.local)
        self._events.append(Established(self.local, self.remote, method))

    def _features(self, el: Element) -> None:
        tls = el.find("starttls", ns.STARTTLS)
        if tls is not None and not self.encrypted and self.settings.tls_available:
            self._out.append(f"<starttls xmlns='{ns.STARTTLS}'/>".encode())
            return
        dialback = el.find("dialback", DIALBACK_FEATURE)
        self.dialback_errors = dialback is not None and dialback.find("errors") is not None
        if self._sasl_done:
            self._established("external")
            return
        if (
            self.settings.bidi
            and self.verify is None
            and not self.bidi
            and (self.encrypted or not self.settings.require_tls)
            and el.find("bidi", BIDI_FEATURE) is not None
        ):
            # XEP-0288 §2.2: after TLS, before SASL or dialback
            self.bidi = True
            self._out.append(f"<bidi xmlns='{BIDI}'/>".encode())
        mechanisms = el.find("mechanisms", ns.SASL)
        offered = (
            [m.text for m in mechanisms.find_all("mechanism", ns.SASL)]
            if mechanisms is not None
            else []
        )
        if self.external and self.encrypted and self.verify is None and "EXTERNAL" in offered:
            auth = base64.b64encode(self.local.encode()).decode()
            self._out.append(f"<auth xmlns='{ns.SASL}' mechanism='EXTERNAL'>{auth}</auth>".encode())
            return
        self._dialback()

    def _element(self, el: Element) -> None:
        if self.state is not S2SState.OPEN and self.state is not S2SState.READY:
            raise StreamError(_SC.NOT_WELL_FORMED, "an element before the stream header")
        if el.ns == ns.STREAM and el.tag == "features":
            self._features(el)
            return
        if el.ns == ns.SASL and el.tag == "success" and not self._sasl_done:
            self._sasl_done = True
            self._restart()
            return
        if el.ns == ns.SASL and el.tag == "failure":
            self._dialback()  # XEP-0178 §4: fall back when the peer does not accept it
            return
        if el.ns == ns.STARTTLS and el.tag == "proceed":
            self._go(S2SState.TLS_PENDING)
            self._events.append(TLSRequested())
            return
        if el.ns == DIALBACK and el.tag == "verify" and self.verify is not None:
            valid = el.get("type") == "valid" and el.get("id") == self.verify[0]
            self._events.append(VerifyAnswered(self.verify[0], valid))
            self._close(None)
            return
        if el.ns == DIALBACK and el.tag == "result" and self.verify is None:
            self._result(el)
            return
        if el.ns == ns.SERVER and el.tag in _STANZAS and self.bidi and self.state is S2SState.READY:
            self._stanza(el)
            return
        raise StreamError(_SC.UNSUPPORTED_STANZA_TYPE, f"<{el.tag}/> is not expected here")

    def _result(self, el: Element) -> None:
        """The peer's answer to a ``db:result`` of ours; a request (no type) on a
        bidirectional stream is the peer multiplexing its own domains onto it, which we
        do not take: ``resource-constraint`` tells it to open a stream of its own
        (XEP-0220 §2.4)."""
        kind = el.get("type")
        to = (el.get("to") or "").lower()
        if kind is None and self.bidi:
            attrs = {"from": el.get("to") or "", "to": el.get("from") or "", "type": "error"}
            self._out.append(_db("result", attrs, error=StanzaErrorCondition.RESOURCE_CONSTRAINT))
            return
        if to in self.pending:
            self.pending.discard(to)
            if kind == "valid":
                self.locals.add(to)
                self._events.append(Established(to, self.remote, "dialback"))
            else:
                reason = _dialback_error_reason(el)
                self._events.append(DialbackFailed(to, self.remote, reason, kind != "error"))
            return
        if self.state is S2SState.OPEN and to in ("", self.local):
            if kind == "valid":
                self._established("dialback")
            else:
                reason = _dialback_error_reason(el)
                self._events.append(
                    DialbackFailed(self.local, self.remote, reason, kind != "error")
                )
                self._close(None)
            return
        raise StreamError(_SC.UNSUPPORTED_STANZA_TYPE, "an unexpected dialback answer")

    def _stanza(self, el: Element) -> None:
        """XEP-0288 §3: the peer sends on our stream only what it authenticated, inverted:
        from ``remote`` to a domain of ours it accepted here."""
        sender, to = _stanza_addresses(el)
        if to.domain not in self.settings.domains:
            raise StreamError(_SC.HOST_UNKNOWN, f"{to.domain} is not served here")
        if sender.domain != self.remote or to.domain not in self.locals:
            raise StreamError(_SC.INVALID_FROM, f"{sender.domain} is not authenticated here")
        self._events.append(StanzaReceived(el))
