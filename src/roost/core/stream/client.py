"""Client side of a client-to-server stream negotiation (RFC 6120 §4-§7), sans-IO.

The mirror of ``roost.core.stream.server``: bytes from the server go in through
``receive_data``, what the driver must act on comes back as events, and the bytes to write
are taken with ``data_to_send``. The stream negotiates STARTTLS (or runs over Direct TLS, or
in the clear when told to), optionally registers the account in-band (XEP-0077), runs SASL
(SCRAM-SHA-256/-1 with -PLUS channel binding, or PLAIN under TLS; XEP-0474 downgrade
protection when the server offers it), restarts, binds a resource and then hands stanzas
over as ``StanzaReceived``. Nonces come from the caller. The allowed transitions are the
table ``TRANSITIONS``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto

from roost.core import ns
from roost.core.errors import StreamError, StreamErrorCondition, parse_stream_error
from roost.core.sasl import HASHES, MECHANISMS, PlainClient, SaslClientError, ScramClient
from roost.core.stream.events import StanzaReceived, StreamEnded, TLSRequested
from roost.core.xml.element import Element
from roost.core.xml.parser import ElementParsed as _Parsed
from roost.core.xml.parser import StreamClosed, StreamOpened, XMLStreamParser
from roost.core.xml.writer import STREAM_CLOSE, serialize, stream_header

__all__ = [
    "DEFAULT_MECHANISMS",
    "TRANSITIONS",
    "AuthFailed",
    "Authenticated",
    "Bound",
    "ClientEvent",
    "ClientStream",
    "ClientStreamSettings",
    "Registered",
    "RegistrationRefused",
    "SaltedPasswordCache",
    "StanzaReceived",
    "State",
    "StreamEnded",
    "TLSMode",
    "TLSRequested",
]

_SC = StreamErrorCondition
REGISTER = "jabber:iq:register"
SASL_CB = "urn:xmpp:sasl-cb:0"  # XEP-0440
#: Channel-binding types we can use for -PLUS, best first (RFC 9266, RFC 5929).
CB_PREFERENCE = ("tls-exporter", "tls-server-end-point")
DEFAULT_MECHANISMS = MECHANISMS
_BIND_ID = "bind_1"
_SESSION_ID = "session_1"
_REGISTER_ID = "register_1"

#: hash name ("sha1", "sha256") -> (salt, iterations) -> SaltedPassword.
SaltedPasswordCache = dict[str, dict[tuple[bytes, int], bytes]]


class TLSMode(Enum):
    """How the connection is protected."""

    STARTTLS = "starttls"  # upgrade in-band (RFC 6120 §5); refuse a server without it
    DIRECT = "direct"  # TLS from the first byte (XEP-0368); the driver calls tls_started first
    NONE = "none"  # never negotiate TLS (test setups); refuse a server that requires it


class State(Enum):
    """Where the negotiation is, from the client's side."""

    INITIAL = auto()  # nothing sent yet
    EXPECT_HEADER = auto()  # our header sent (first time, after TLS, after SASL)
    EXPECT_FEATURES = auto()  # the server's header read, waiting for <stream:features/>
    STARTTLS_SENT = auto()  # <starttls/> sent, waiting for <proceed/>
    TLS_PENDING = auto()  # <proceed/> read: the driver is upgrading the transport
    REGISTERING = auto()  # XEP-0077 registration iq sent, waiting for its answer
    SASL = auto()  # <auth/> sent, exchanging challenges and responses
    BINDING = auto()  # bind iq sent (RFC 6120 §7)
    SESSION = auto()  # legacy session iq sent (RFC 3921 §3), for servers that require it
    READY = auto()  # bound: stanzas flow
    CLOSING = auto()  # our closing tag sent, waiting for the server's
    CLOSED = auto()


_ACTIVE = frozenset(State) - {State.INITIAL, State.CLOSING, State.CLOSED}

#: Every allowed transition (state machines are data). ``_go`` refuses any other.
TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {
        (State.INITIAL, State.EXPECT_HEADER),
        (State.EXPECT_HEADER, State.EXPECT_FEATURES),
        (State.EXPECT_FEATURES, State.STARTTLS_SENT),
        (State.EXPECT_FEATURES, State.REGISTERING),
        (State.EXPECT_FEATURES, State.SASL),
        (State.EXPECT_FEATURES, State.BINDING),
        (State.STARTTLS_SENT, State.TLS_PENDING),
        (State.TLS_PENDING, State.EXPECT_HEADER),
        (State.REGISTERING, State.SASL),
        (State.SASL, State.EXPECT_HEADER),
        (State.BINDING, State.SESSION),
        (State.BINDING, State.READY),
        (State.SESSION, State.READY),
    }
    | {(s, State.CLOSING) for s in _ACTIVE}
    | {(s, State.CLOSED) for s in State if s is not State.CLOSED}
)


# -- events for the driver ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registered:
    """XEP-0077: the account was created (``created``) or already existed (conflict)."""

    created: bool


@dataclass(frozen=True, slots=True)
class RegistrationRefused:
    """XEP-0077 §3.1: the server refused to create the account (not a conflict); the
    stream is closed next."""

    condition: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    """SASL succeeded and the server proved itself; the stream restarts next."""

    mechanism: str


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """SASL failed: an RFC 6120 §6.5 condition from the server, or ours (server not
    verified, no usable mechanism). The stream is closed next."""

    condition: str
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Bound:
    """A resource is bound (RFC 6120 §7): stanzas may flow."""

    jid: str


ClientEvent = (
    TLSRequested
    | Registered
    | RegistrationRefused
    | Authenticated
    | AuthFailed
    | Bound
    | StanzaReceived
    | StreamEnded
)


@dataclass(frozen=True)
class ClientStreamSettings:
    """Who logs in where, and how."""

    username: str
    domain: str
    password: str = field(repr=False)
    #: the resource to ask for; None lets the server pick one (RFC 6120 §7.6)
    resource: str | None = None
    tls: TLSMode = TLSMode.STARTTLS
    #: mechanisms we are willing to use, best first
    mechanisms: Sequence[str] = DEFAULT_MECHANISMS
    #: register the account in-band (XEP-0077) before authenticating
    register: bool = False
    #: SCRAM SaltedPassword per hash and (salt, iterations), shared by streams that use the
    #: same password (RFC 5802 §5.1 allows caching it; it does not depend on the username)
    salted_password_cache: SaltedPasswordCache | None = field(
        default=None, repr=False, compare=False
    )
    max_stanza_size: int = 1 << 20
    max_depth: int = 64
    lang: str = "en"


class ClientStream:
    """One client stream, from our header to the closing tag."""

    __slots__ = (
        "_authenticated",
        "_cb",
        "_events",
        "_features",
        "_mech",
        "_new_nonce",
        "_out",
        "_parser",
        "_registered",
        "_session_needed",
        "encrypted",
        "jid",
        "mechanism",
        "settings",
        "state",
        "stream_id",
    )

    def __init__(self, settings: ClientStreamSettings, new_nonce: Callable[[], str]) -> None:
        self.settings = settings
        self._new_nonce = new_nonce
        self.state = State.INITIAL
        self.encrypted = False
        self.stream_id: str | None = None
        self.jid: str | None = None
        self.mechanism: str | None = None
        self._cb: dict[str, bytes] = {}
        self._out: list[bytes] = []
        self._events: list[ClientEvent] = []
        self._parser = self._new_parser()
        self._features: Element | None = None
        self._mech: ScramClient | PlainClient | None = None
        self._authenticated = False
        self._registered = False
        self._session_needed = False

    @property
    def features(self) -> Element | None:
        """The last ``<stream:features/>`` read (once bound: those after SASL, e.g. the
        roster versioning feature of RFC 6121 §2.6.1)."""
        return self._features

    # -- plumbing -------------------------------------------------------------------------

    def _new_parser(self) -> XMLStreamParser:
        return XMLStreamParser(
            max_stanza_size=self.settings.max_stanza_size, max_depth=self.settings.max_depth
        )

    def _go(self, new: State) -> None:
        if (self.state, new) not in TRANSITIONS:
            raise AssertionError(f"illegal transition {self.state.name} -> {new.name}")
        self.state = new

    def _send(self, el: Element) -> None:
        self._out.append(serialize(el).encode())

    def _take_events(self) -> list[ClientEvent]:
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        """Bytes to write, in order; empties the buffer."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def send_stanza(self, el: Element) -> None:
        """Queue a stanza for the server (only once bound)."""
        if self.state is not State.READY:
            raise RuntimeError(f"cannot send stanzas in state {self.state.name}")
        self._out.append(serialize(el).encode())

    def send_raw(self, data: bytes) -> None:
        """Queue already-serialised stanza bytes (only once bound)."""
        if self.state is not State.READY:
            raise RuntimeError(f"cannot send stanzas in state {self.state.name}")
        self._out.append(data)

    # -- driver calls ---------------------------------------------------------------------

    def start(self) -> list[ClientEvent]:
        """Open the stream: queue our header (RFC 6120 §4.7). With Direct TLS, call
        ``tls_started`` first."""
        if self.settings.tls is TLSMode.DIRECT and not self.encrypted:
            raise RuntimeError("Direct TLS: call tls_started() before start()")
        self._write_header()
        self._go(State.EXPECT_HEADER)
        return self._take_events()

    def tls_started(self, channel_bindings: dict[str, bytes]) -> list[ClientEvent]:
        """The transport is TLS now; ``channel_bindings`` are what it offers for -PLUS."""
        if self.state is State.INITIAL:  # Direct TLS (XEP-0368): no restart
            self.encrypted = True
            self._cb = dict(channel_bindings)
            return []
        if self.state is not State.TLS_PENDING:
            raise RuntimeError(f"tls_started() in state {self.state.name}")
        self.encrypted = True
        self._cb = dict(channel_bindings)
        self._restart()  # RFC 6120 §5.4.3.3: a new stream over TLS
        return self._take_events()

    def close(self) -> list[ClientEvent]:
        """Close our stream (RFC 6120 §4.4); ``StreamEnded`` comes when the server closes its
        own (the driver should not wait for it forever)."""
        if self.state is State.INITIAL:
            self._go(State.CLOSED)
            self._events.append(StreamEnded(None))
        elif self.state in _ACTIVE:
            self._out.append(STREAM_CLOSE)
            self._go(State.CLOSING)
        return self._take_events()

    def connection_lost(self) -> list[ClientEvent]:
        """The transport is gone (EOF or error)."""
        if self.state is not State.CLOSED:
            reason = None if self.state is State.CLOSING else "connection lost"
            self._go(State.CLOSED)
            self._events.append(StreamEnded(None, reason))
        return self._take_events()

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """Feed bytes from the server; return what the driver must act on."""
        if self.state in (State.CLOSED, State.TLS_PENDING, State.INITIAL):
            return []
        try:
            for ev in self._parser.feed(data):
                if isinstance(ev, _Parsed):
                    self._element(ev.element)
                elif isinstance(ev, StreamOpened):
                    self._header(ev)
                else:
                    assert isinstance(ev, StreamClosed)
                    self._peer_closed(None, None)
                if self.state in (State.CLOSED, State.TLS_PENDING):
                    # RFC 6120 §5.4.3.3: after <proceed/> nothing more is read in the clear.
                    break
        except StreamError as err:
            # The server sent something we cannot parse: tell it, then close.
            self._fail(f"the server sent bad XML ({err})", err)
        return self._take_events()

    def _fail(self, reason: str, error: StreamError | None = None) -> None:
        """End the stream from our side (a negotiation we cannot complete)."""
        if self.state is State.CLOSED:
            return
        if error is not None:
            self._send(error.to_element())
        if self.state is not State.CLOSING:
            self._out.append(STREAM_CLOSE)
        self._go(State.CLOSED)
        self._events.append(StreamEnded(None, reason))

    def _peer_closed(self, error: StreamError | None, reason: str | None) -> None:
        if self.state is not State.CLOSING:
            self._out.append(STREAM_CLOSE)  # RFC 6120 §4.4: answer with our closing tag
        self._go(State.CLOSED)
        self._events.append(StreamEnded(error, reason))

    # -- stream header --------------------------------------------------------------------

    def _write_header(self) -> None:
        self._out.append(
            stream_header(
                from_=None, to=self.settings.domain, stream_id=None, lang=self.settings.lang
            )
        )

    def _restart(self) -> None:
        # RFC 6120 §4.3.3: after TLS and SASL both parties start a new stream.
        self._parser = self._new_parser()
        self._features = None
        self._write_header()
        self._go(State.EXPECT_HEADER)

    def _header(self, ev: StreamOpened) -> None:
        if self.state is State.CLOSING:
            return
        if self.state is not State.EXPECT_HEADER:
            raise StreamError(_SC.NOT_WELL_FORMED, "unexpected stream header")
        if ev.ns != ns.STREAM or ev.tag != "stream":
            raise StreamError(_SC.INVALID_NAMESPACE, "the stream namespace is wrong")
        if ev.namespaces.get("", "") != ns.CLIENT:
            raise StreamError(_SC.INVALID_NAMESPACE, "the content namespace must be jabber:client")
        version = ev.attrs.get("version", "")
        if version.partition(".")[0] != "1":
            # RFC 6120 §4.7.5: we speak XMPP 1.0 only (no pre-XMPP jabber streams).
            raise StreamError(_SC.UNSUPPORTED_VERSION, "XMPP 1.0 is required")
        self.stream_id = ev.attrs.get("id")
        self._go(State.EXPECT_FEATURES)

    # -- first-level elements -------------------------------------------------------------

    def _element(self, el: Element) -> None:
        if el.ns == ns.STREAM and el.tag == "error":
            self._peer_closed(parse_stream_error(el), None)
            return
        state = self.state
        if state is State.READY:
            self._events.append(StanzaReceived(el))
        elif state is State.CLOSING:
            pass  # RFC 6120 §4.4: the server may still send stanzas before its closing tag
        elif state is State.EXPECT_FEATURES:
            if el.ns == ns.STREAM and el.tag == "features":
                self._features = el
                self._negotiate(el)
            else:
                raise StreamError(_SC.NOT_AUTHORIZED, f"<{el.tag}/> before features")
        elif state is State.STARTTLS_SENT:
            self._starttls_answer(el)
        elif state is State.SASL:
            self._sasl_answer(el)
        elif state is State.REGISTERING:
            self._iq_answer(el, _REGISTER_ID, self._registration_answer)
        elif state is State.BINDING:
            self._iq_answer(el, _BIND_ID, self._bind_answer)
        elif state is State.SESSION:
            self._iq_answer(el, _SESSION_ID, self._session_answer)
        else:
            raise StreamError(_SC.UNSUPPORTED_STANZA_TYPE, f"<{el.tag}/> is not expected here")

    def _negotiate(self, features: Element) -> None:
        if self._authenticated:
            if features.find("bind", ns.BIND) is None:
                self._fail("the server offers no resource binding")
                return
            session = features.find("session", ns.SESSION)
            # RFC 7590 / draft-cridland-xmpp-session: <optional/> means we may skip it.
            self._session_needed = session is not None and session.find("optional") is None
            iq = Element("iq", ns.CLIENT, {"type": "set", "id": _BIND_ID})
            bind = iq.sub("bind", ns.BIND)
            if self.settings.resource is not None:
                bind.sub("resource", text=self.settings.resource)
            self._send(iq)
            self._go(State.BINDING)
            return
        tls_mode = self.settings.tls
        starttls = features.find("starttls", ns.STARTTLS)
        if not self.encrypted:
            if tls_mode is TLSMode.STARTTLS:
                if starttls is None:
                    self._fail("the server does not offer STARTTLS")
                    return
                self._send(Element("starttls", ns.STARTTLS))
                self._go(State.STARTTLS_SENT)
                return
            if starttls is not None and starttls.find("required", ns.STARTTLS) is not None:
                self._fail("the server requires TLS")
                return
        if self.settings.register and not self._registered:
            iq = Element("iq", ns.CLIENT, {"type": "set", "id": _REGISTER_ID})
            query = iq.sub("query", REGISTER)
            query.sub("username", text=self.settings.username)
            query.sub("password", text=self.settings.password)
            self._send(iq)
            self._go(State.REGISTERING)
            return
        self._start_sasl(features)

    def _starttls_answer(self, el: Element) -> None:
        if el.ns == ns.STARTTLS and el.tag == "proceed":
            self._go(State.TLS_PENDING)
            self._events.append(TLSRequested())
        elif el.ns == ns.STARTTLS and el.tag == "failure":
            # RFC 6120 §5.4.2.2: the server closes the stream after <failure/>.
            self._fail("the server refused STARTTLS")
        else:
            raise StreamError(_SC.NOT_WELL_FORMED, f"<{el.tag}/> instead of <proceed/>")

    # -- XEP-0077 registration ------------------------------------------------------------

    def _iq_answer(self, el: Element, iq_id: str, handler: Callable[[Element], None]) -> None:
        if (
            el.ns == ns.CLIENT
            and el.tag == "iq"
            and el.get("id") == iq_id
            and el.get("type") in ("result", "error")
        ):
            handler(el)
        # anything else before we are bound is ignored (RFC 6120 §7.1)

    def _registration_answer(self, iq: Element) -> None:
        if iq.get("type") == "result":
            created = True
        else:
            condition = _stanza_error_condition(iq)
            if condition != "conflict":  # XEP-0077 §3.1: the username is taken
                self._events.append(RegistrationRefused(condition))
                self._fail(f"registration failed: {condition}")
                return
            created = False
        self._registered = True
        self._events.append(Registered(created))
        assert self._features is not None
        self._start_sasl(self._features)

    # -- SASL (RFC 6120 §6) ---------------------------------------------------------------

    def _start_sasl(self, features: Element) -> None:
        mechs_el = features.find("mechanisms", ns.SASL)
        offered = (
            [m.text.strip() for m in mechs_el.find_all("mechanism", ns.SASL)]
            if mechs_el is not None
            else []
        )
        server_plus = any(m.endswith("-PLUS") for m in offered)
        cb_type = self._cb_type(features)
        ssdp = _ssdp_string(offered, features)
        s = self.settings
        for name in s.mechanisms:
            if name not in offered:
                continue
            if name == "PLAIN":
                if not self.encrypted:
                    continue  # RFC 6120 §13.8: never a clear password over a clear channel
                self._mech = PlainClient(s.username, s.password)
                self._auth(name, self._mech.first())
                return
            scram = name.removeprefix("SCRAM-")
            plus = scram.endswith("-PLUS")
            hash_name = HASHES.get(scram.removesuffix("-PLUS"))
            if hash_name is None or (plus and cb_type is None):
                continue
            # RFC 5802 §6: bind with -PLUS; otherwise say "y" (we could bind, the server
            # offers no -PLUS) or "n" (we choose not to although it does).
            use_cb = cb_type if (plus or not server_plus) else None
            cache = None
            if s.salted_password_cache is not None:
                cache = s.salted_password_cache.setdefault(hash_name, {})
            self._mech = ScramClient(
                hash_name,
                s.username,
                s.password,
                nonce=self._new_nonce(),
                cb_type=use_cb,
                cb_data=self._cb[use_cb] if use_cb is not None else None,
                server_supports_plus=plus,
                salted_password_cache=cache,
                ssdp=ssdp,
            )
            self._auth(self._mech.name, self._mech.first())
            return
        self._events.append(AuthFailed("invalid-mechanism", f"none of {offered} is usable"))
        self._fail("no usable SASL mechanism")

    def _cb_type(self, features: Element) -> str | None:
        """The channel-binding type to use for -PLUS, if any."""
        advertised = features.find("sasl-channel-binding", SASL_CB)
        server_types = (
            {c.get("type") for c in advertised.find_all("channel-binding", SASL_CB)}
            if advertised is not None
            else None
        )
        for cb_type in CB_PREFERENCE:
            if cb_type in self._cb and (server_types is None or cb_type in server_types):
                return cb_type
        return None

    def _auth(self, name: str, initial: bytes) -> None:
        self.mechanism = name
        auth = Element("auth", ns.SASL, {"mechanism": name}, [_b64(initial)])
        self._send(auth)
        self._go(State.SASL)

    def _sasl_answer(self, el: Element) -> None:
        if el.ns != ns.SASL:
            raise StreamError(_SC.NOT_WELL_FORMED, f"<{el.tag}/> during SASL")
        mech = self._mech
        assert mech is not None
        text = el.text.strip()
        data = _b64decode(text) if text not in ("", "=") else b""
        if el.tag == "failure":
            condition = next(
                (c.tag for c in el.elements() if c.tag != "text"), "undefined-condition"
            )
            text_el = el.find("text")
            self._mech = None
            self._events.append(
                AuthFailed(condition, text_el.text if text_el is not None else None)
            )
            self._fail(f"authentication failed: {condition}")
            return
        try:
            if data is None:
                raise SaslClientError("the server sent invalid base64")
            if el.tag == "challenge":
                if not isinstance(mech, ScramClient):
                    raise SaslClientError("unexpected challenge")
                reply = mech.challenge(data)
                self._send(Element("response", ns.SASL, children=[_b64(reply)]))
                return
            if el.tag == "success":
                if isinstance(mech, ScramClient):
                    # RFC 5802 §5: the server must prove it knows the password too.
                    mech.success(data or None)
                self._mech = None
                self._authenticated = True
                self._events.append(Authenticated(mech.name))
                self._restart()
                return
        except SaslClientError as exc:
            self._mech = None
            self._events.append(AuthFailed("server-not-verified", str(exc)))
            # RFC 6120 §6.4.4: abort the exchange; we do not trust this server any more.
            self._send(Element("abort", ns.SASL))
            self._fail(f"authentication aborted: {exc}")
            return
        raise StreamError(_SC.NOT_WELL_FORMED, f"unexpected SASL <{el.tag}/>")

    # -- resource binding (RFC 6120 §7) ---------------------------------------------------

    def _bind_answer(self, iq: Element) -> None:
        if iq.get("type") != "result":
            self._fail(f"binding failed: {_stanza_error_condition(iq)}")
            return
        bind = iq.find("bind", ns.BIND)
        jid_el = bind.find("jid", ns.BIND) if bind is not None else None
        if jid_el is None or not jid_el.text.strip():
            self._fail("the bind result has no JID")
            return
        self.jid = jid_el.text.strip()
        if self._session_needed:
            iq = Element("iq", ns.CLIENT, {"type": "set", "id": _SESSION_ID})
            iq.sub("session", ns.SESSION)
            self._send(iq)
            self._go(State.SESSION)
            return
        self._go(State.READY)
        self._events.append(Bound(self.jid))

    def _session_answer(self, iq: Element) -> None:
        if iq.get("type") != "result":
            self._fail(f"session establishment failed: {_stanza_error_condition(iq)}")
            return
        assert self.jid is not None
        self._go(State.READY)
        self._events.append(Bound(self.jid))


def _ssdp_string(offered: list[str], features: Element) -> str:
    """XEP-0474 §3.1: the sorted mechanisms, then (with XEP-0440) the sorted channel-binding
    types, as the server hashes them for its downgrade protection."""
    s = "\x1e".join(sorted(offered))
    advertised = features.find("sasl-channel-binding", SASL_CB)
    if advertised is not None:
        types = sorted(
            t for c in advertised.find_all("channel-binding", SASL_CB) if (t := c.get("type"))
        )
        s += "\x1f" + "\x1e".join(types)
    return s


def _stanza_error_condition(stanza: Element) -> str:
    error = stanza.find("error")
    if error is None:
        return "undefined-condition"
    return next(
        (c.tag for c in error.elements() if c.ns == ns.STANZAS and c.tag != "text"),
        "undefined-condition",
    )


def _b64(data: bytes) -> str:
    # RFC 6120 §6.4.2: an empty response is sent as "=".
    return base64.b64encode(data).decode() if data else "="


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
