"""Test helpers: a real server on port 0 and a raw-XML client that speaks bytes on a socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import ssl
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roost.core import ns
from roost.core.errors import CONDITION_DEFAULTS, StanzaErrorCondition
from roost.core.sasl import PlainClient, ScramClient
from roost.core.xml.element import Element
from roost.core.xml.parser import ElementParsed, StreamClosed, StreamOpened, XMLStreamParser
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.server.config import Config, config_from_dict
from roost.transport.tls import channel_bindings

STREAM_HEADER = (
    "<?xml version='1.0'?><stream:stream to='{to}' version='1.0' xml:lang='en' "
    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)
TIMEOUT = 5.0
#: the accounts of the ``server`` fixture (tests/conftest.py)
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


def make_config(data_dir: Path, **sections: dict[str, Any]) -> Config:
    """A config for tests: loopback, ephemeral ports, cheap SCRAM."""
    data: dict[str, Any] = {
        "domains": ["localhost", "example.test"],
        "data_dir": str(data_dir),
        "c2s": {"port": 0, "direct_tls_port": 0, "interfaces": ["127.0.0.1"]},
        "s2s": {"port": 0, "interfaces": ["127.0.0.1"]},
        "auth": {"scram_iterations": 4096},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return config_from_dict(data, data_dir)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port for a listener given by number (Direct TLS, where 0 = disabled).

    Picked below the ephemeral range: every outgoing test connection takes its local port
    from that range, so a port found free there can be taken before the server binds it.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


async def start_server(data_dir: Path, **sections: dict[str, Any]) -> Server:
    """Start a real server on loopback: STARTTLS on an ephemeral port, Direct TLS too."""
    sections["c2s"] = {"direct_tls_port": free_port(), **sections.get("c2s", {})}
    server = Server(make_config(data_dir, **sections))
    await server.start()
    return server


#: every client connected with ``RawClient.connect(server)``: the barriers (``sync``) ping
#: those of a server that sent something since their last ping round trip
_connected: weakref.WeakSet[RawClient] = weakref.WeakSet()
_barrier_ids = itertools.count()


class RawClient:
    """A raw XML client: exact bytes out, parsed elements (and raw text) in."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server: Server | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = XMLStreamParser(max_stanza_size=10_000_000)
        self.events: list[Any] = []
        self.raw = b""
        self.header: StreamOpened | None = None
        self.closed = False
        self.jid: str | None = None
        #: the server's domain this client logged in to (its pings go there)
        self.domain = "localhost"
        #: the in-process server of ``RawClient.connect(server)``, which the barriers wait for
        self.server = server
        #: something was sent since the last ping round trip (``ping``)
        self.unsynced = False

    @classmethod
    async def connect(
        cls, to: int | Server, *, direct_tls: bool = False, rcvbuf: int | None = None
    ) -> RawClient:
        """Connect to a port, or to an in-process ``Server`` (its listener of that kind):
        then ``drain``, ``quiet`` and ``sync`` can wait for that server's work too."""
        server = to if isinstance(to, Server) else None
        port = to.port(direct_tls=direct_tls) if isinstance(to, Server) else to
        ctx = client_tls_context() if direct_tls else None
        sock = socket.socket()
        if rcvbuf is not None:  # a small receive window makes a slow reader quickly
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=ctx, server_hostname="localhost" if ctx else None
        )
        client = cls(reader, writer, server)
        if server is not None:
            _connected.add(client)
        return client

    async def send(self, data: str | bytes | Element) -> None:
        if isinstance(data, Element):
            data = serialize(data)
        self.unsynced = True
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def _read(self) -> None:
        chunk = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
        if not chunk:
            self.closed = True
            raise EOFError("server closed the connection")
        self.raw += chunk
        for ev in self.parser.feed(chunk):
            if isinstance(ev, StreamOpened):
                self.header = ev
            else:
                if isinstance(ev, ElementParsed):
                    check_legacy_code(ev.element)
                self.events.append(ev)

    async def next(self) -> Element:
        """The next first-level element from the server."""
        while not self.events:
            await self._read()
        ev = self.events.pop(0)
        if isinstance(ev, StreamClosed):
            raise EOFError("stream closed")
        assert isinstance(ev, ElementParsed)
        return ev.element

    async def expect(self, match: Callable[[Element], bool]) -> Element:
        """Skip elements until one matches."""
        while True:
            el = await self.next()
            if match(el):
                return el

    async def ping(self) -> int:
        """A XEP-0199 ping round trip that leaves whatever else arrives in ``events``.

        When it returns the server has handled everything this client sent before the ping
        (it handles a client's stanzas in order), and everything it wrote to this stream
        before the pong has arrived (it writes to a stream in order). Returns how many of
        ``events`` came before the pong (the pong itself is removed).
        """
        pid = f"barrier{next(_barrier_ids)}"
        ping = f"<iq type='get' id='{pid}' to='{self.domain}'><ping xmlns='{ns.PING}'/></iq>"
        await self.send(ping)
        seen = 0
        while True:
            for i in range(seen, len(self.events)):
                ev = self.events[i]
                if isinstance(ev, StreamClosed):
                    raise EOFError("stream closed")
                el = ev.element
                if el.tag == "iq" and el.get("id") == pid:
                    assert el.get("type") == "result", serialize(el)
                    del self.events[i]
                    self.unsynced = False
                    return i
            seen = len(self.events)
            await self._read()

    def take(self, n: int) -> list[Element]:
        """Remove and return the first ``n`` received elements (see ``ping``)."""
        got = [ev.element for ev in self.events[:n]]
        del self.events[:n]
        return got

    async def stream_error(self) -> str:
        """Read until a stream error; return its condition. The stream must then close."""
        el = await self.expect(lambda e: e.ns == ns.STREAM and e.tag == "error")
        cond = next(c.tag for c in el.elements() if c.ns == ns.STREAMS and c.tag != "text")
        await self.wait_closed()
        return cond

    async def wait_closed(self) -> None:
        """Wait for the closing tag and EOF."""
        try:
            while True:
                while self.events:
                    ev = self.events.pop(0)
                    if isinstance(ev, StreamClosed):
                        break
                await self._read()
        except (EOFError, ConnectionError):
            return

    async def open(self, to: str = "localhost") -> Element:
        """Send a stream header; return the features."""
        self.parser = XMLStreamParser(max_stanza_size=10_000_000)
        await self.send(STREAM_HEADER.format(to=to))
        return await self.expect(lambda e: e.tag == "features")

    async def starttls(self, to: str = "localhost") -> Element:
        await self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        el = await self.next()
        assert el.tag == "proceed", serialize(el)
        await self.writer.start_tls(client_tls_context(), server_hostname=to)
        return await self.open(to)

    def channel_bindings(self) -> dict[str, bytes]:
        sslobj = self.writer.get_extra_info("ssl_object")
        return channel_bindings(sslobj, server_side=False) if sslobj is not None else {}

    async def auth(
        self,
        username: str,
        password: str,
        mechanism: str = "SCRAM-SHA-256",
        cb_type: str | None = None,
    ) -> Element:
        """Run a SASL exchange; return the <success/> or <failure/> element."""
        import base64

        client: ScramClient | PlainClient
        if mechanism == "PLAIN":
            client = PlainClient(username, password)
        else:
            hash_name = "sha1" if "SHA-1" in mechanism else "sha256"
            cb_data = self.channel_bindings().get(cb_type) if cb_type else None
            client = ScramClient(
                hash_name,
                username,
                password,
                nonce="rawclientnonce0123456789",
                cb_type=cb_type,
                cb_data=cb_data,
                server_supports_plus=mechanism.endswith("-PLUS"),
            )
        first = base64.b64encode(client.first()).decode()
        await self.send(f"<auth xmlns='{ns.SASL}' mechanism='{mechanism}'>{first}</auth>")
        while True:
            el = await self.next()
            if el.tag == "challenge":
                assert isinstance(client, ScramClient)
                reply = client.challenge(base64.b64decode(el.text))
                await self.send(
                    f"<response xmlns='{ns.SASL}'>{base64.b64encode(reply).decode()}</response>"
                )
            elif el.tag == "success":
                if isinstance(client, ScramClient):
                    client.success(base64.b64decode(el.text) if el.text else None)
                return el
            else:
                return el

    async def bind(self, resource: str | None = None) -> str:
        body = f"<resource>{resource}</resource>" if resource else ""
        await self.send(f"<iq type='set' id='bind1'><bind xmlns='{ns.BIND}'>{body}</bind></iq>")
        el = await self.expect(lambda e: e.tag == "iq" and e.get("id") == "bind1")
        assert el.get("type") == "result", serialize(el)
        bind = el.find("bind", ns.BIND)
        assert bind is not None
        jid_el = bind.find("jid", ns.BIND)
        assert jid_el is not None
        self.jid = jid_el.text
        return self.jid

    async def login(
        self,
        username: str,
        password: str,
        resource: str | None = None,
        mechanism: str = "SCRAM-SHA-256",
        domain: str = "localhost",
    ) -> str:
        """STARTTLS, SASL, restart, bind: the whole negotiation."""
        self.domain = domain
        await self.open(domain)
        await self.starttls(domain)
        result = await self.auth(username, password, mechanism)
        assert result.tag == "success", serialize(result)
        await self.open(domain)
        return await self.bind(resource)

    async def close(self) -> None:
        try:
            self.writer.write(b"</stream:stream>")
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            pass
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def sync(*clients: RawClient, idle: bool = True) -> list[int]:
    """A barrier: once it returns, whatever the server sends ``clients`` because of anything
    sent so far has arrived, and is left in their ``events``. Returns, per client, how many
    of its events came before its last pong (``RawClient.ping``).

    1. A ping round trip on each of ``clients`` and on every other client of the same server
       that sent something since its last one: the server has read and dispatched it all.
    2. With ``idle``, ``server.idle()``: the work it spawned for that (storage writes,
       subscriptions, offline delivery) is done, and what it wrote is flushed.
    3. A ping round trip on each of ``clients``: what the server wrote to a stream before
       the pong arrives before the pong.

    ``idle=False`` is for a server that is busy on purpose (waiting for a client's answer)
    or runs in another process. The pings alone then cover work a stanza spawns that writes
    before its first wait (a task runs before the second pong can be read), not storage:
    such a test shows by other means that nothing is pending.
    """
    servers = {c.server for c in clients}
    assert len(servers) == 1, "clients of one server at a time"
    server = servers.pop()
    if idle:
        assert server is not None, "idle needs a client made by RawClient.connect(server)"
    if server is not None:
        senders = [
            c
            for c in _connected
            if c.server is server
            and c.unsynced
            and c not in clients
            and c.jid is not None
            and not c.closed
            and not c.writer.is_closing()
        ]
        for c in senders:
            try:
                await c.ping()
            except (EOFError, ConnectionError, ssl.SSLError, RuntimeError):
                c.unsynced = False  # the server closed it: it reads nothing more from it
    for c in clients:
        if c.unsynced:
            await c.ping()
    if idle:
        assert server is not None
        await server.idle()
    return [await c.ping() for c in clients]


async def eventually(
    check: Callable[[], object], what: str, timeout: float = 2 * TIMEOUT
) -> None:
    """Wait (bounded) for server state that no stanza announces: a dropped connection
    noticed, a session ended by a timer, a file another process writes. ``check`` may be a
    coroutine function. Fails with ``what`` after ``timeout``; a reply or a ``sync`` barrier
    is the better wait wherever there is one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def detached(server: Server, jid: str) -> Callable[[], bool]:
    """For ``eventually``: the session of ``jid`` has lost its connection (it waits for a
    XEP-0198 resumption)."""
    from roost.core.jid import JID

    full = JID.parse(jid)

    def check() -> bool:
        session = server.sessions.get(full)
        return session is not None and session.stream is None

    return check


def offline(server: Server, bare: str) -> Callable[[], bool]:
    """For ``eventually``: the account has no session left."""
    from roost.core.jid import JID

    user = JID.parse(bare)
    return lambda: not server.sessions.resources(user)


async def drain(c: RawClient, *, idle: bool = True) -> list[Element]:
    """Everything the server sends ``c`` up to a barrier (``sync``), removed from ``c``.

    Whatever the stanzas sent so far (by any client of the server) cause for ``c`` is in
    it, also when it comes from work the server spawned (storage, subscriptions).
    """
    (n,) = await sync(c, idle=idle)
    return c.take(n)


async def quiet(*clients: RawClient, idle: bool = True) -> None:
    """Assert that nothing (more) arrives at any of ``clients``, up to a barrier (``sync``)."""
    counts = await sync(*clients, idle=idle)
    for c, n in zip(clients, counts, strict=True):
        extra = c.take(n)
        assert extra == [], f"{c.jid} got: {[serialize(e) for e in extra]}"


class Logins:
    """Logs clients of the test accounts in, and closes them all at the end of a test."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.made: list[RawClient] = []

    async def __call__(
        self, user: str, resource: str, priority: int | None = None, *, available: bool = True
    ) -> RawClient:
        """Log in ``user/resource``; unless ``available`` is false, send initial presence
        (with ``priority``) and wait for it to come back (RFC 6121 §4.2.2)."""
        c = await RawClient.connect(self.server)
        self.made.append(c)
        await c.login(user, PASSWORDS[user], resource)
        if available:
            prio = "" if priority is None else f"<priority>{priority}</priority>"
            await c.send(f"<presence>{prio}</presence>")
            await c.expect(lambda e: e.tag == "presence" and e.get("from") == c.jid)
        return c

    async def close(self) -> None:
        for c in self.made:
            if not c.writer.is_closing():
                await c.close()


def without_stanza_ids(stanza: Element) -> Element:
    """``stanza`` without the XEP-0359 ``<stanza-id/>`` the archive stamped on it (its value
    differs every run), for exact transcripts of delivered messages."""
    copy = stanza.copy()
    copy.children = [
        c
        for c in stanza.children
        if isinstance(c, str) or c.ns != "urn:xmpp:sid:0" or c.tag != "stanza-id"
    ]
    return copy


def check_legacy_code(stanza: Element) -> None:
    """XEP-0086: every stanza error from the server carries the code of its condition.

    Run on everything a RawClient reads, so the whole suite checks it (issue 4, acceptance 4).
    """
    if stanza.ns != ns.CLIENT or stanza.get("type") != "error":
        return
    error = stanza.find("error", ns.CLIENT)
    assert error is not None, f"error stanza without <error/>: {serialize(stanza)}"
    conditions = [c.tag for c in error.elements() if c.ns == ns.STANZAS and c.tag != "text"]
    assert len(conditions) == 1, serialize(stanza)
    _type, code = CONDITION_DEFAULTS[StanzaErrorCondition(conditions[0])]
    expected = None if code is None else str(code)
    assert error.get("code") == expected, f"wrong XEP-0086 code: {serialize(stanza)}"


def client_tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class LoopbackDNS(asyncio.DatagramProtocol):
    """A DNS server on 127.0.0.1 for tests: the SRV and A records it is given, NXDOMAIN
    for other names (an empty answer for other types of a known name)."""

    def __init__(
        self,
        srv: dict[str, list[tuple[int, int, int, str]]],
        a: dict[str, str] | None = None,
    ) -> None:
        self.srv = srv
        self.a = a or {}
        self.transport: asyncio.DatagramTransport | None = None
        self.asked: list[str] = []

    async def start(self) -> int:
        """Listen on an ephemeral loopback UDP port; returns it."""
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text()
        if question.rdtype == dns.rdatatype.SRV:
            self.asked.append(name)
        if question.rdtype == dns.rdatatype.SRV and name in self.srv:
            texts = [f"{p} {w} {port} {target}" for p, w, port, target in self.srv[name]]
            reply.answer.append(dns.rrset.from_text(name, 60, "IN", "SRV", *texts))
        elif question.rdtype == dns.rdatatype.A and name in self.a:
            reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", self.a[name]))
        elif name not in self.a and name not in self.srv:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)
