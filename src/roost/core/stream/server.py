"""Server side of a client-to-server stream negotiation (RFC 6120 §4-§7), sans-IO.

Bytes go in through ``receive_data``; what the driver must act on comes back as events;
bytes to write are collected and taken with ``data_to_send``. The driver answers the
requests it is given (upgrade to TLS, look up credentials, bind a resource) by calling the
matching method. The allowed transitions are the table ``TRANSITIONS``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto

from roost.core import ns
from roost.core.errors import (
    StanzaError,
    StanzaErrorCondition,
    StreamError,
    StreamErrorCondition,
    error_reply,
)
from roost.core.sasl import (
    MECHANISMS,
    Challenge,
    Failure,
    NeedCredentials,
    NeedPasswordCheck,
    PlainServer,
    SaslStep,
    ScramCredentials,
    ScramServer,
    ServerMechanism,
    Success,
)
from roost.core.stream.events import StanzaReceived, StreamEnded, TLSRequested
from roost.core.xml.element import Element
from roost.core.xml.parser import ElementParsed, StreamClosed, StreamOpened, XMLStreamParser
from roost.core.xml.writer import STREAM_CLOSE, serialize, stream_header

__all__ = [
    "AuthFailed",
    "Authenticated",
    "BindRequested",
    "CredentialsNeeded",
    "NonzaReceived",
    "PasswordCheckNeeded",
    "PreAuthStanza",
    "ResumeRequested",
    "SMReceived",
    "ServerStream",
    "ServerStreamSettings",
    "StanzaReceived",
    "State",
    "StreamEnded",
    "TLSRequested",
]

_SC = StreamErrorCondition
STANZA_TAGS = frozenset(("message", "presence", "iq"))
SM = "urn:xmpp:sm:3"
SCRAM_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
#: Channel-binding types we prefer, best first (RFC 9266 for TLS 1.3, RFC 5929 otherwise).
CB_PREFERENCE = ("tls-exporter", "tls-server-end-point")
#: SASL failures on one stream that tried no credentials (a refused mechanism, an unsupported
#: channel-binding type, a malformed message) before the stream is closed: a client that
#: walks down its list of mechanisms needs a few, a loop does not get more.
MAX_UNCOUNTED_SASL_FAILURES = 10


class State(Enum):
    """Where the negotiation is (RFC 6120 §4.3)."""

    EXPECT_HEADER = auto()  # before the initial header, and after each restart
    PRE_TLS = auto()  # features sent; TLS not yet negotiated
    TLS_PENDING = auto()  # <proceed/> sent; the driver is upgrading the transport
    PRE_AUTH = auto()  # features with SASL mechanisms sent
    SASL = auto()  # a SASL exchange is in progress
    SASL_WAITING = auto()  # waiting on the driver for credentials or a password check
    PRE_BIND = auto()  # authenticated, after the restart; expecting bind
    BIND_WAITING = auto()  # waiting on the driver to bind
    READY = auto()  # bound: stanzas flow
    CLOSED = auto()


#: Every allowed transition (state machines are data). ``_go`` refuses any other.
TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {
        (State.EXPECT_HEADER, State.PRE_TLS),
        (State.EXPECT_HEADER, State.PRE_AUTH),
        (State.EXPECT_HEADER, State.PRE_BIND),
        (State.PRE_TLS, State.TLS_PENDING),
        (State.PRE_TLS, State.SASL),  # TLS optional by configuration
        (State.TLS_PENDING, State.EXPECT_HEADER),
        (State.PRE_AUTH, State.SASL),
        (State.PRE_AUTH, State.PRE_BIND),  # legacy (XEP-0078) authentication, bound at once
        (State.SASL, State.SASL_WAITING),
        (State.SASL, State.PRE_AUTH),  # failure or abort: the client may retry
        (State.SASL, State.EXPECT_HEADER),  # success: restart
        (State.SASL_WAITING, State.SASL),
        (State.SASL_WAITING, State.PRE_AUTH),
        (State.SASL_WAITING, State.EXPECT_HEADER),
        (State.PRE_BIND, State.BIND_WAITING),
        (State.BIND_WAITING, State.PRE_BIND),  # bind failed: may try again
        (State.BIND_WAITING, State.READY),
        (State.PRE_BIND, State.READY),  # XEP-0198 resumption instead of binding
    }
    | {(s, State.CLOSED) for s in State if s is not State.CLOSED}
)


# -- events for the driver ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CredentialsNeeded:
    """Look up the SCRAM credentials of ``username``; answer with ``provide_credentials``."""

    username: str
    hash_name: str


@dataclass(frozen=True, slots=True)
class PasswordCheckNeeded:
    """Verify ``password`` for ``username`` (off the loop); answer with ``password_checked``."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """SASL succeeded for ``username`` (the stream restarts next)."""

    username: str
    mechanism: str


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """A SASL attempt failed.

    ``counted`` is true when credentials were tried and did not verify (see
    ``ServerStream._sasl_failure``): those count against ``max_sasl_attempts`` and the
    driver's per-address limit; a mechanism or channel-binding choice the server refused
    does not.
    """

    username: str | None
    condition: str
    counted: bool = True


@dataclass(frozen=True, slots=True)
class BindRequested:
    """Bind ``resource`` (None: pick one); answer with ``bind_succeeded`` or ``bind_failed``."""

    iq_id: str
    resource: str | None


@dataclass(frozen=True, slots=True)
class PreAuthStanza:
    """An iq a module handles before authentication (registration, legacy auth)."""

    element: Element


@dataclass(frozen=True, slots=True)
class SMReceived:
    """A XEP-0198 element once bound: ``<enable/>``, ``<r/>`` or ``<a/>``."""

    element: Element


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    """XEP-0198 §5: resume ``previd``, the client having handled ``h`` of our stanzas;
    answer with ``resumed`` or ``resume_failed``."""

    previd: str
    h: int


@dataclass(frozen=True, slots=True)
class NonzaReceived:
    """A first-level element that is not a stanza, in a namespace a module handles once
    the stream is bound (XEP-0352 ``<active/>``/``<inactive/>``, say)."""

    element: Element


StreamEvent = (
    TLSRequested
    | CredentialsNeeded
    | PasswordCheckNeeded
    | Authenticated
    | AuthFailed
    | BindRequested
    | PreAuthStanza
    | NonzaReceived
    | SMReceived
    | ResumeRequested
    | StanzaReceived
    | StreamEnded
)


@dataclass(frozen=True)
class ServerStreamSettings:
    """What a stream needs to know about the server; shared by all streams of a listener."""

    domains: frozenset[str]
    #: the ``from`` of our header when the client named no domain we serve
    default_domain: str = "localhost"
    require_encryption: bool = True
    tls_available: bool = True
    mechanisms: Sequence[str] = MECHANISMS
    max_stanza_size: int = 262144
    max_depth: int = 64
    max_sasl_attempts: int = 3
    #: iq payload namespaces that modules answer before authentication
    preauth_iq_namespaces: frozenset[str] = frozenset()
    #: namespaces of first-level non-stanza elements modules take after bind
    nonza_namespaces: frozenset[str] = frozenset()
    #: offer XEP-0198 stream management
    stream_management: bool = False
    #: extra features offered before authentication (e.g. ``register``, ``iq-auth``)
    preauth_features: Callable[[], Sequence[Element]] = lambda: ()
    #: extra features offered after authentication (e.g. roster versioning, ``sub``)
    bound_features: Callable[[], Sequence[Element]] = lambda: ()


class ServerStream:
    """One client-to-server stream, from the first byte to the closing tag."""

    __slots__ = (
        "_attempt_user",
        "_cb",
        "_credentials_tried",
        "_events",
        "_mech",
        "_new_id",
        "_out",
        "_parser",
        "_plus_advertised",
        "_sasl_failures",
        "_sasl_uncounted",
        "_sent_header",
        "domain",
        "encrypted",
        "jid",
        "lang",
        "peer_closed",
        "resuming",
        "settings",
        "state",
        "stream_id",
        "username",
    )

    def __init__(
        self, settings: ServerStreamSettings, new_id: Callable[[], str], *, encrypted: bool = False
    ) -> None:
        self.settings = settings
        self._new_id = new_id
        self.encrypted = encrypted
        self.state = State.EXPECT_HEADER
        self.domain: str | None = None
        self.username: str | None = None
        self.jid: str | None = None
        self.stream_id: str | None = None
        self.lang = "en"
        self._out: list[bytes] = []
        self._events: list[StreamEvent] = []
        self._parser = self._new_parser()
        self._sent_header = False
        self._cb: dict[str, bytes] = {}
        self._mech: ServerMechanism | None = None
        self._plus_advertised = False
        self._sasl_failures = 0
        self._sasl_uncounted = 0
        #: this SASL attempt got as far as checking credentials (a password guess)
        self._credentials_tried = False
        self._attempt_user: str | None = None
        #: the client closed the stream itself (``</stream:stream>``), not the connection
        self.peer_closed = False
        #: a XEP-0198 resumption is being decided
        self.resuming = False

    # -- plumbing -------------------------------------------------------------------------

    def _new_parser(self) -> XMLStreamParser:
        return XMLStreamParser(
            max_stanza_size=self.settings.max_stanza_size, max_depth=self.settings.max_depth
        )

    def _go(self, new: State) -> None:
        if (self.state, new) not in TRANSITIONS:
            raise AssertionError(f"illegal transition {self.state.name} -> {new.name}")
        self.state = new

    def data_to_send(self) -> bytes:
        """Bytes to write, in order; empties the buffer."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def send_stanza(self, el: Element) -> None:
        """Queue a stanza (or negotiation element) for the client."""
        self._out.append(serialize(el).encode())

    def send_raw(self, data: bytes) -> None:
        """Queue already-serialised bytes (a stanza serialised once for several readers)."""
        self._out.append(data)

    def _take_events(self) -> list[StreamEvent]:
        events, self._events = self._events, []
        return events

    # -- input ----------------------------------------------------------------------------

    def hibernate(self) -> bool:
        """Free the XML parser while the client is quiet between stanzas (see the parser)."""
        return self._parser.hibernate()

    def receive_data(self, data: bytes) -> list[StreamEvent]:
        """Feed bytes from the client; return what the driver must act on."""
        if self.state in (State.CLOSED, State.TLS_PENDING):
            return []
        try:
            for ev in self._parser.feed(data):
                if isinstance(ev, ElementParsed):
                    self._element(ev.element)
                elif isinstance(ev, StreamOpened):
                    self._header(ev)
                else:
                    assert isinstance(ev, StreamClosed)
                    self.peer_closed = True
                    self._close(None)
                if self.state in (State.CLOSED, State.TLS_PENDING):
                    # after <proceed/> nothing more may be read in clear (RFC 6120 §5.4.3.3)
                    break
        except StreamError as err:
            self._close(err)
        return self._take_events()

    def close(self, error: StreamError | None) -> list[StreamEvent]:
        """End the stream: an optional error, then the closing tag (RFC 6120 §4.4)."""
        self._close(error)
        return self._take_events()

    def _close(self, error: StreamError | None) -> None:
        if self.state is State.CLOSED:
            return
        if not self._sent_header:
            # RFC 6120 §4.9.1.1: the header comes first, even for an error on the header.
            self._write_header()
        if error is not None:
            self.send_stanza(error.to_element())
        self._out.append(STREAM_CLOSE)
        self._go(State.CLOSED)
        self._parser.discard()
        self._events.append(StreamEnded(error))

    # -- stream header --------------------------------------------------------------------

    def _write_header(self) -> None:
        self.stream_id = self._new_id()
        self._out.append(
            stream_header(
                from_=self.domain or self.settings.default_domain,
                to=None,
                stream_id=self.stream_id,
                lang=self.lang,
            )
        )
        self._sent_header = True

    def _header(self, ev: StreamOpened) -> None:
        if self.state is not State.EXPECT_HEADER:
            raise StreamError(_SC.NOT_WELL_FORMED, "unexpected stream header")
        to = ev.attrs.get("to")
        if to is not None and self.domain is None:
            to = to.lower().rstrip(".")
            if to in self.settings.domains:
                self.domain = to
        lang = ev.attrs.get("{http://www.w3.org/XML/1998/namespace}lang")
        if lang and len(lang) < 36:
            self.lang = lang
        self._write_header()
        # RFC 6120 §4.9.3.10 / §4.9.3.2: namespaces and prefix of the header.
        if ev.ns != ns.STREAM or ev.tag != "stream":
            raise StreamError(_SC.INVALID_NAMESPACE, "the stream namespace is wrong")
        if ev.namespaces.get("stream") != ns.STREAM:
            # RFC 6120 §4.9.3.2 (its example: a 'foobar' prefix) and §11.2.
            raise StreamError(_SC.BAD_NAMESPACE_PREFIX, "the stream prefix must be 'stream'")
        if ev.namespaces.get("", "") != ns.CLIENT:
            raise StreamError(_SC.INVALID_NAMESPACE, "the content namespace must be jabber:client")
        version = ev.attrs.get("version")
        if version is None or not version.partition(".")[0].isdigit():
            raise StreamError(_SC.UNSUPPORTED_VERSION, "XMPP 1.0 is required")
        if int(version.partition(".")[0]) != 1:
            raise StreamError(_SC.UNSUPPORTED_VERSION, "XMPP 1.0 is required")
        if self.domain is None:
            raise StreamError(_SC.HOST_UNKNOWN, "this server does not serve that domain")
        features = Element("features", ns.STREAM)
        if self.username is not None:
            # RFC 6120 §7.2: after SASL, offer binding.
            features.sub("bind", ns.BIND)
            if self.settings.stream_management:
                features.sub("sm", SM)  # XEP-0198 §3: after authentication
            features.sub("session", ns.SESSION).sub("optional")
            features.children.extend(self.settings.bound_features())
            self._go(State.PRE_BIND)
        elif not self.encrypted and self.settings.tls_available:
            tls = features.sub("starttls", ns.STARTTLS)
            if self.settings.require_encryption:
                tls.sub("required")
            else:
                self._add_mechanisms(features)
                features.children.extend(self.settings.preauth_features())
            self._go(State.PRE_TLS)
        else:
            self._add_mechanisms(features)
            features.children.extend(self.settings.preauth_features())
            self._go(State.PRE_AUTH)
        self.send_stanza(features)

    def _offered_mechanisms(self) -> list[str]:
        offered = []
        for name in self.settings.mechanisms:
            if name.endswith("-PLUS") and not self._cb:
                continue
            if name == "PLAIN" and not self.encrypted:
                continue  # RFC 6120 §13.8: PLAIN only under TLS
            offered.append(name)
        return offered

    def _add_mechanisms(self, features: Element) -> None:
        if self.encrypted or not self.settings.require_encryption:
            mechs = features.sub("mechanisms", ns.SASL)
            for name in self._offered_mechanisms():
                mechs.sub("mechanism", text=name)
            self._plus_advertised = any(m.endswith("-PLUS") for m in self._offered_mechanisms())
            if self._cb:
                # XEP-0440: which channel-binding types this connection supports.
                cbs = features.sub("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
                for cb_type in self._cb:
                    cbs.sub("channel-binding", attrs={"type": cb_type})

    # -- first-level elements -------------------------------------------------------------

    def _element(self, el: Element) -> None:
        state = self.state
        if state is State.READY:
            if el.ns == ns.CLIENT and el.tag in STANZA_TAGS:
                self._events.append(StanzaReceived(el))
                return
            if el.ns == SM and self.settings.stream_management:
                self._events.append(SMReceived(el))
                return
            if el.ns in self.settings.nonza_namespaces:
                self._events.append(NonzaReceived(el))
                return
            raise StreamError(_SC.UNSUPPORTED_STANZA_TYPE, f"<{el.tag}/> is not a stanza")
        if el.ns == ns.STARTTLS and el.tag == "starttls":
            if state is not State.PRE_TLS:
                raise StreamError(_SC.POLICY_VIOLATION, "TLS is not available now")
            self.send_stanza(Element("proceed", ns.STARTTLS))
            self._go(State.TLS_PENDING)
            self._events.append(TLSRequested())
            return
        if el.ns == ns.SASL:
            self._sasl(el)
            return
        if el.ns == SM and self.settings.stream_management and state is State.PRE_BIND:
            self._sm_before_bind(el)
            return
        if el.ns == ns.CLIENT and el.tag in STANZA_TAGS:
            if state in (State.PRE_BIND, State.BIND_WAITING):
                self._pre_bind(el)
                return
            if (
                (
                    state is State.PRE_AUTH
                    or (state is State.PRE_TLS and not self.settings.require_encryption)
                )
                and el.tag == "iq"
                and (payload := el.find()) is not None
                and payload.ns in self.settings.preauth_iq_namespaces
            ):
                self._events.append(PreAuthStanza(el))
                return
            # RFC 6120 §4.3.5 / §4.9.3.12: a stanza before negotiation completes MUST close
            # the stream with not-authorized, also before a required STARTTLS (nothing in
            # §5 makes that case a policy-violation; Prosody answers such stanzas with a
            # service-unavailable stanza error and keeps the stream, which §4.3.5 forbids).
            if state is State.PRE_TLS and self.settings.require_encryption:
                raise StreamError(_SC.NOT_AUTHORIZED, "negotiate TLS, then authenticate")
            raise StreamError(_SC.NOT_AUTHORIZED, "authenticate first")
        raise StreamError(_SC.UNSUPPORTED_STANZA_TYPE, f"<{el.tag}/> is not expected here")

    # -- SASL (RFC 6120 §6) ---------------------------------------------------------------

    def _sasl_failure(self, condition: str, text: str | None = None) -> None:
        """Send ``<failure/>`` and count it.

        Only an attempt whose credentials were checked and did not verify (no such account,
        a wrong password or proof, channel-binding data that does not match) counts against
        ``max_sasl_attempts`` (RFC 6120 §6.4.5: "retries"). Refusing the client's choice of
        mechanism or of channel-binding type (RFC 5802 §6: an unsupported type, or the "y"
        flag while -PLUS is offered), a malformed message or an unauthorised authzid is not
        a guessed password: a client that tries its mechanisms in turn (slixmpp 1.8 tries
        SCRAM-*-PLUS with ``tls-unique``, then SCRAM with "y", then PLAIN) must get in. Such
        failures are bounded separately (``MAX_UNCOUNTED_SASL_FAILURES``). Prosody has no
        per-stream limit at all and, like here, does not report a refused mechanism as an
        authentication failure.
        """
        counted = self._credentials_tried and condition not in (
            "invalid-authzid",
            "invalid-mechanism",  # see ``hash_unavailable``
        )
        self._credentials_tried = False
        failure = Element("failure", ns.SASL)
        failure.sub(condition)
        if text:
            failure.sub("text", text=text)
        self.send_stanza(failure)
        self._mech = None
        if self.state is not State.PRE_AUTH:
            self._go(State.PRE_AUTH)
        if condition == "aborted":
            return
        self._events.append(AuthFailed(self._attempt_user, condition, counted))
        if counted:
            self._sasl_failures += 1
            if self._sasl_failures >= self.settings.max_sasl_attempts:
                # RFC 6120 §6.4.5: too many retries.
                raise StreamError(_SC.POLICY_VIOLATION, "too many failed authentication attempts")
        else:
            self._sasl_uncounted += 1
            if self._sasl_uncounted >= MAX_UNCOUNTED_SASL_FAILURES:
                raise StreamError(_SC.POLICY_VIOLATION, "too many failed authentication attempts")

    def _sasl(self, el: Element) -> None:
        state = self.state
        if el.tag == "auth":
            if state is State.PRE_TLS and self.settings.require_encryption:
                raise StreamError(_SC.POLICY_VIOLATION, "TLS is required")
            if state not in (State.PRE_AUTH, State.PRE_TLS):
                raise StreamError(_SC.POLICY_VIOLATION, "authentication is not allowed now")
            name = el.get("mechanism") or ""
            if name not in self._offered_mechanisms():
                self._go(State.SASL)
                self._sasl_failure("invalid-mechanism")
                return
            self._mech = self._make_mechanism(name)
            self._credentials_tried = False
            self._go(State.SASL)
            text = el.text.strip()
            initial: bytes | None
            if not text:
                initial = None
            elif text == "=":
                initial = b""
            else:
                decoded = _b64decode(text)
                if decoded is None:
                    self._sasl_failure("incorrect-encoding")
                    return
                initial = decoded
            self._step(self._mech.start(initial))
        elif el.tag == "response":
            if state is not State.SASL or self._mech is None:
                raise StreamError(_SC.POLICY_VIOLATION, "no authentication in progress")
            data = _b64decode(el.text.strip()) if el.text.strip() not in ("", "=") else b""
            if data is None:
                self._sasl_failure("incorrect-encoding")
                return
            self._step(self._mech.respond(data))
        elif el.tag == "abort":
            if state not in (State.SASL, State.SASL_WAITING):
                raise StreamError(_SC.POLICY_VIOLATION, "no authentication in progress")
            self._sasl_failure("aborted")
        else:
            raise StreamError(_SC.UNSUPPORTED_STANZA_TYPE, f"unexpected SASL <{el.tag}/>")

    def _make_mechanism(self, name: str) -> ServerMechanism:
        if name == "PLAIN":
            return PlainServer()
        plus = name.endswith("-PLUS")
        return ScramServer(
            SCRAM_HASHES[name.removesuffix("-PLUS")],
            nonce=self._new_id() + self._new_id(),
            channel_bindings=self._cb,
            plus=plus,
            plus_advertised=self._plus_advertised,
        )

    def _step(self, step: SaslStep) -> None:
        if isinstance(step, Challenge):
            if self.state is State.SASL_WAITING:
                self._go(State.SASL)
            self.send_stanza(Element("challenge", ns.SASL, children=[_b64(step.data)]))
        elif isinstance(step, NeedCredentials):
            self._go(State.SASL_WAITING)
            mech_name = self._mech.name if self._mech else ""
            hash_name = SCRAM_HASHES.get(mech_name.removesuffix("-PLUS"), "")
            self._attempt_user = step.username
            self._credentials_tried = True
            self._events.append(CredentialsNeeded(step.username, hash_name))
        elif isinstance(step, NeedPasswordCheck):
            self._go(State.SASL_WAITING)
            self._attempt_user = step.username
            self._credentials_tried = True
            self._events.append(PasswordCheckNeeded(step.username, step.password))
        elif isinstance(step, Success):
            if step.authzid is not None and step.authzid not in (
                step.authcid,
                f"{step.authcid}@{self.domain}",
            ):
                self._sasl_failure("invalid-authzid")
                return
            assert self._mech is not None
            self.username = step.authcid
            self.send_stanza(
                Element("success", ns.SASL, children=[_b64(step.data)] if step.data else None)
            )
            self._events.append(Authenticated(step.authcid, self._mech.name))
            self._mech = None
            self._restart()
        else:
            assert isinstance(step, Failure)
            self._sasl_failure(step.condition, step.text)

    def provide_credentials(self, creds: ScramCredentials | None) -> list[StreamEvent]:
        """Answer ``CredentialsNeeded`` (None: no such account)."""
        if self.state is State.SASL_WAITING and self._mech is not None:
            self._run(lambda m: m.credentials(creds))
        return self._take_events()

    def hash_unavailable(self) -> list[StreamEvent]:
        """Answer ``CredentialsNeeded`` for an account that has no keys for that hash (one
        imported from Prosody with SCRAM-SHA-1 keys only, before its first PLAIN login).

        The attempt fails with ``invalid-mechanism``, not counted against
        ``max_sasl_attempts``: it is not a guessed password, and RFC 6120 §6.4.5 lets the
        client fall back to the next mechanism in its list. The server cannot go on: its
        first SCRAM message carries the salt and iteration count of keys for this hash
        (RFC 5802 §5.1, §7). A fake challenge would end in ``not-authorized``, which
        clients take as a wrong password: aioxmpp 0.13 retries the same mechanism with
        the same password until it gives up, while for ``invalid-mechanism`` (or
        ``mechanism-too-weak``) it drops SCRAM and uses PLAIN, which upgrades the account;
        slixmpp tries its next mechanism after any failure (SCRAM-SHA-1, then PLAIN).
        ``mechanism-too-weak`` (§6.5.9) would say the opposite of the truth;
        ``invalid-mechanism`` (§6.5.7: "not supported by the receiving entity") is true
        for this account. The cost: the failure shows that the account exists, as
        ``not-authorized`` at once already does (see ``roost.core.sasl.scram_server``).
        """
        if self.state is State.SASL_WAITING and self._mech is not None:
            self._sasl_failure(
                "invalid-mechanism",
                f"{self._mech.name} is not available for this account yet: "
                "use SCRAM-SHA-1 or PLAIN",
            )
        return self._take_events()

    def password_checked(self, ok: bool) -> list[StreamEvent]:
        """Answer ``PasswordCheckNeeded``."""
        if self.state is State.SASL_WAITING and self._mech is not None:
            self._run(lambda m: m.password_checked(ok))
        return self._take_events()

    def _run(self, fn: Callable[[ServerMechanism], SaslStep]) -> None:
        assert self._mech is not None
        try:
            self._step(fn(self._mech))
        except StreamError as err:
            self._close(err)

    def _restart(self) -> None:
        # RFC 6120 §4.3.3: after TLS and SASL both parties start a new stream.
        self._parser.discard()
        self._parser = self._new_parser()
        self._sent_header = False
        self._go(State.EXPECT_HEADER)

    def tls_started(self, channel_bindings: dict[str, bytes]) -> list[StreamEvent]:
        """The transport is now TLS; the client sends a new header (RFC 6120 §5.4.3.3)."""
        self.encrypted = True
        self._cb = {k: channel_bindings[k] for k in CB_PREFERENCE if k in channel_bindings}
        if self.state is not State.EXPECT_HEADER:  # Direct TLS (XEP-0368): no restart
            self._restart()
        return self._take_events()

    def legacy_authenticated(self, username: str, full_jid: str) -> None:
        """XEP-0078: a module authenticated and bound the stream in one step."""
        self.username = username
        self._go(State.PRE_BIND)
        self._go(State.BIND_WAITING)
        self.jid = full_jid
        self._go(State.READY)

    # -- resource binding (RFC 6120 §7) ---------------------------------------------------

    def _pre_bind(self, el: Element) -> None:
        iq_type = el.get("type")
        iq_id = el.get("id")
        payload = el.find()
        if el.tag == "iq" and iq_type == "set" and iq_id and payload is not None:
            if payload.ns == ns.BIND and payload.tag == "bind":
                if self.state is State.BIND_WAITING:
                    self.send_stanza(_iq_error(el, StanzaErrorCondition.UNEXPECTED_REQUEST))
                    return
                res_el = payload.find("resource", ns.BIND)
                resource = res_el.text.strip() if res_el is not None else ""
                self._go(State.BIND_WAITING)
                self._events.append(BindRequested(iq_id, resource or None))
                return
            if payload.ns == ns.SESSION:
                self.send_stanza(Element("iq", ns.CLIENT, {"type": "result", "id": iq_id}))
                return
        if el.tag == "iq" and iq_type in ("get", "set"):
            # RFC 6120 §7.1: nothing but binding before a resource is bound.
            self.send_stanza(_iq_error(el, StanzaErrorCondition.NOT_AUTHORIZED))
            return
        raise StreamError(_SC.NOT_AUTHORIZED, "bind a resource first")

    # -- XEP-0198 before binding: resumption ----------------------------------------------

    def _sm_before_bind(self, el: Element) -> None:
        if el.tag == "resume" and not self.resuming:
            h = _parse_h(el.get("h"))
            previd = el.get("previd")
            if h is None or not previd:
                self._sm_failed("bad-request")
                return
            self.resuming = True
            self._events.append(ResumeRequested(previd, h))
            return
        # §3: stream management is enabled after binding, and only acks make sense then
        self._sm_failed("unexpected-request")

    def _sm_failed(self, condition: str, h: int | None = None) -> None:
        attrs = {"h": str(h)} if h is not None else None
        failed = Element("failed", SM, attrs)
        failed.sub(condition, ns.STANZAS)
        self.send_stanza(failed)

    def resumed(self, previd: str, h: int, full_jid: str) -> None:
        """§5: the driver resumed ``previd``; ``h``: the client's stanzas it had handled."""
        self.resuming = False
        self.jid = full_jid
        self.send_stanza(Element("resumed", SM, {"previd": previd, "h": str(h)}))
        self._go(State.READY)

    def resume_failed(self, h: int | None) -> None:
        """§5: no such session (``h``: its last count, when known); the client may bind."""
        self.resuming = False
        self._sm_failed("item-not-found", h)

    def bind_succeeded(self, iq_id: str, full_jid: str) -> None:
        """The driver bound ``full_jid``: answer the bind request."""
        self.jid = full_jid
        iq = Element("iq", ns.CLIENT, {"type": "result", "id": iq_id})
        iq.sub("bind", ns.BIND).sub("jid", text=full_jid)
        self.send_stanza(iq)
        self._go(State.READY)

    def bind_failed(self, iq_id: str, error: StanzaError) -> None:
        """Binding was refused (RFC 6120 §7.6.2); the client may try again."""
        iq = Element("iq", ns.CLIENT, {"type": "set", "id": iq_id})
        self.send_stanza(error_reply(iq, error))
        self._go(State.PRE_BIND)


def _parse_h(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    h = int(value)
    return h if h < 2**32 else None


def _iq_error(iq: Element, condition: StanzaErrorCondition) -> Element:
    return error_reply(iq, StanzaError(condition))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else "="


def _b64decode(text: str) -> bytes | None:
    """Strict base64 (RFC 6120 §6.4.2); None when invalid."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
