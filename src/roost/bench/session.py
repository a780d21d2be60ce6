"""One benchmark session: the client library's ``Connection`` with a hot path of its own.

Negotiation (STARTTLS via ``loop.start_tls``, SASL, bind) is the library's, on the core
machine (``roost.client.connection``).
Once logged in, a session can switch to *raw mode* for the hot path: received bytes are no
longer parsed into elements but scanned for what the scenario counts (message timestamps,
presence stanzas, the end of the stream), and stanzas are written as prepared bytes. That is
only done after negotiation, when the stream carries nothing but stanzas; the scan is sound
because the only text we look for is our own body token (``rb:STEP:NANOS;``), which the
server passes through unchanged, and tag openings (``<presence``) that cannot appear escaped.
"""

from __future__ import annotations

import re
import ssl
import time
from array import array

from roost.client.connection import Connection
from roost.client.dial import tls_context
from roost.client.errors import ClientError as LoginFailed
from roost.core import ns
from roost.core.stream.client import ClientStreamSettings
from roost.core.xml.element import Element
from roost.core.xml.writer import escape_attr

__all__ = ["BenchSession", "LoginFailed", "Tally", "client_tls_context"]

#: initial presence and a ping round trip: the last step of a login
_LOGIN_TAIL = b"<presence/><iq type='get' id='bench-ping'><ping xmlns='urn:xmpp:ping'/></iq>"
_PING_ID = "bench-ping"
#: what raw mode looks for; group 1/2: the step and send time (ns) of a bench message
_SCAN = re.compile(rb"<presence|rb:(\d+):(\d+);|</stream:stream>|<stream:error")
#: the same, with stream management on: every stanza is counted and <r/> answered (the
#: bench's sessions get no nested stanzas: one resource each, so no carbon copies)
_SCAN_SM = re.compile(
    rb"<presence|rb:(\d+):(\d+);|</stream:stream>|<stream:error|<message[ >]|<iq[ >]"
    rb"|<r xmlns='urn:xmpp:sm:3'/>"
)
_SM = "urn:xmpp:sm:3"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
MUC_OWNER = "http://jabber.org/protocol/muc#owner"
_ENABLE_SM = b"<enable xmlns='urn:xmpp:sm:3'/>"
_ENABLE_CARBONS = (
    b"<iq type='set' id='bench-carbons'><enable xmlns='urn:xmpp:carbons:2'/></iq>"
)
_TOKEN = re.compile(r"rb:(\d+):(\d+);")
_MAX_TOKEN = 48  # longer than any match, so a match cut between two reads is kept whole
_PENDING_WRITE_LIMIT = 256 * 1024


def client_tls_context(insecure: bool) -> ssl.SSLContext:
    """A client TLS context; ``insecure`` skips certificate and host name checks."""
    return tls_context(insecure=insecure, warn=False)


class Tally:
    """What all sessions of one worker received, for the scenario's report.

    Messages are attributed to the step they were sent in (the step is in the token); a
    message counts as delivered if it arrives before that step's deadline (end + drain).
    """

    __slots__ = ("deadlines_ns", "delivered", "late", "latencies_us", "presences", "unknown")

    def __init__(self) -> None:
        self.presences = 0
        self.unknown = 0
        self.deadlines_ns: list[int] = []
        self.delivered: list[int] = []
        self.late: list[int] = []
        self.latencies_us: list[array[int]] = []

    def configure_steps(self, deadlines_ns: list[int]) -> None:
        self.deadlines_ns = deadlines_ns
        self.delivered = [0] * len(deadlines_ns)
        self.late = [0] * len(deadlines_ns)
        self.latencies_us = [array("q") for _ in deadlines_ns]

    def message(self, step: int, sent_ns: int, now_ns: int) -> None:
        if step >= len(self.deadlines_ns):
            self.unknown += 1
        elif now_ns <= self.deadlines_ns[step]:
            self.delivered[step] += 1
            self.latencies_us[step].append((now_ns - sent_ns) // 1000)
        else:
            self.late[step] += 1


class BenchSession(Connection):
    """One benchmark connection (``roost.client.connection``) and its scenario state."""

    __slots__ = (
        "_tail",
        "answers",
        "carbons",
        "h",
        "index",
        "muc_codes",
        "muc_error",
        "muc_self",
        "partner",
        "ponged",
        "raw",
        "sm",
        "tally",
    )

    def __init__(
        self,
        index: int,
        settings: ClientStreamSettings,
        ctx: ssl.SSLContext | None,
        tally: Tally,
        *,
        sm: bool = False,
        carbons: bool = False,
    ) -> None:
        super().__init__(settings, ctx)
        self.index = index
        self.tally = tally
        #: XEP-0198 on: ``h`` counts the stanzas received since <enable/>
        self.sm = sm
        self.h = 0
        self.carbons = carbons
        self.partner: BenchSession | None = None
        self.ponged = False
        self.raw = False
        self._tail = b""
        #: muc: our occupant JID (room/nick) while joining; the status codes of our own
        #: presence once the room sent it (XEP-0045 §7.2.3), or the error condition
        self.muc_self: str | None = None
        self.muc_codes: set[str] | None = None
        self.muc_error: str | None = None
        #: iq ids we wait for -> the type of the answer (None until it came)
        self.answers: dict[str, str | None] = {}

    async def login(self, host: str, port: int, source_ip: str | None = None) -> str:
        """Connect, negotiate, bind, send initial presence and wait for a ping answer."""
        jid = await super().login(host, port, source_ip)
        if self.sm:
            self.stream.send_raw(_ENABLE_SM)
        if self.carbons:
            self.stream.send_raw(_ENABLE_CARBONS)
        self.stream.send_raw(_LOGIN_TAIL)
        self._flush()
        await self.wait_for(lambda: self.ponged)
        return jid

    def data_received(self, data: bytes) -> None:
        if self.raw:
            self._scan(data)
        else:
            self._handle(self.stream.receive_data(data))

    def handle_stanza(self, el: Element) -> None:
        if el.ns == _SM:
            if el.tag == "r":
                self.stream.send_raw(b"<a xmlns='urn:xmpp:sm:3' h='%d'/>" % self.h)
            return
        if self.sm:
            self.h += 1
        tag = el.tag
        if tag == "presence":
            self.tally.presences += 1
            if self.muc_self is not None and el.get("from") == self.muc_self:
                self._own_occupant_presence(el)
        elif tag == "message":
            body = el.find("body")
            if body is not None and (m := _TOKEN.search(body.text)):
                self.tally.message(int(m.group(1)), int(m.group(2)), time.monotonic_ns())
        elif tag == "iq":
            iq_type = el.get("type")
            iq_id = el.get("id")
            if iq_id == _PING_ID and iq_type in ("result", "error"):
                self.ponged = True
                self._wake()
            elif iq_id in self.answers and iq_type in ("result", "error"):
                self.answers[iq_id] = iq_type
                self._wake()
            elif iq_type == "get" and el.find("ping", ns.PING) is not None:
                # XEP-0199 §4.3: the server checks that we are alive.
                reply = Element("iq", ns.CLIENT, {"type": "result", "id": el.get("id") or ""})
                if (frm := el.get("from")) is not None:
                    reply.attrs["to"] = frm
                self.stream.send_stanza(reply)

    # -- group chat (XEP-0045) ---------------------------------------------------------------

    async def join_room(self, room: str) -> set[str]:
        """Enter ``room`` as our user name with no history (XEP-0045 §7.2.15 maxstanzas 0);
        return the status codes of our own presence, the last the room sends (§7.2.3)."""
        nick = self.stream.settings.username
        self.muc_self = f"{room}/{nick}"
        self.muc_codes = self.muc_error = None
        self.stream.send_raw(
            b"<presence to='%s'><x xmlns='%s'><history maxstanzas='0'/></x></presence>"
            % (escape_attr(self.muc_self).encode(), MUC.encode())
        )
        self._flush()
        await self.wait_for(lambda: self.muc_codes is not None or self.muc_error is not None)
        if self.muc_error is not None:
            raise LoginFailed(f"join refused: {self.muc_error}")
        assert self.muc_codes is not None
        return self.muc_codes

    async def unlock_instant_room(self, room: str) -> None:
        """§10.1.2: the creator accepts the default configuration (an instant room)."""
        iq_id = "bench-instant"
        self.answers[iq_id] = None
        self.stream.send_raw(
            b"<iq type='set' id='%s' to='%s'><query xmlns='%s'>"
            b"<x xmlns='jabber:x:data' type='submit'/></query></iq>"
            % (iq_id.encode(), escape_attr(room).encode(), MUC_OWNER.encode())
        )
        self._flush()
        await self.wait_for(lambda: self.answers[iq_id] is not None)
        if self.answers.pop(iq_id) != "result":
            raise LoginFailed("the room refused the instant configuration")

    def _own_occupant_presence(self, el: Element) -> None:
        if el.get("type") == "error":
            error = el.find("error")
            cond = next(error.elements(), None) if error is not None else None
            self.muc_error = cond.tag if cond is not None else "error"
        elif el.get("type") != "unavailable":
            x = el.find("x", MUC_USER)
            statuses = x.find_all("status", MUC_USER) if x is not None else []
            self.muc_codes = {s.get("code") or "" for s in statuses}
        self._wake()

    # -- raw mode (hot path) --------------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """Write prepared stanza bytes; False (nothing written) when the server is not
        reading fast enough or the session is gone."""
        t = self.transport
        if t is None or self.ended or t.get_write_buffer_size() > _PENDING_WRITE_LIMIT:
            return False
        t.write(data)
        return True

    def _scan(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
        tally = self.tally
        now_ns = time.monotonic_ns()
        end = 0
        sm = self.sm
        for m in (_SCAN_SM if sm else _SCAN).finditer(data):
            end = m.end()
            step = m.group(1)
            if step is not None:
                tally.message(int(step), int(m.group(2)), now_ns)
                continue
            found = m.group(0)
            if found == b"<presence":
                tally.presences += 1
                self.h += 1
            elif sm and found.startswith((b"<message", b"<iq")):
                self.h += 1
            elif sm and found.startswith(b"<r "):
                t = self.transport
                if t is not None:
                    t.write(b"<a xmlns='urn:xmpp:sm:3' h='%d'/>" % self.h)
            else:
                self.ended = True  # the server closed or errored our stream
        # No complete match lies after ``end``; keep what could be the start of one.
        self._tail = data[max(end, len(data) - _MAX_TOKEN) :]

