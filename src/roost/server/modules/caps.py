"""XEP-0115 Entity Capabilities: the server's own caps, and a verified cache of its clients'.

The server's 'ver' hashes exactly what its disco#info says (``Registry.server_info``); it is
offered in the stream features after authentication (§6.2) and answered on the node
``https://roost.im#<ver>``. Both are recomputed when what modules registered changes.

Clients' caps come with their broadcast presence. A new (hash, ver) is checked once: the
server asks the announcing resource for disco#info on node#ver and caches the answer only
if it is well-formed and hashes to the 'ver' (§5.4). The cache is in memory only (a restart
costs one disco#info per 'ver' seen again) and bounded in entries and entry size.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from roost.core import ns
from roost.core.caps import (
    CAPS,
    SUPPORTED_HASHES,
    Caps,
    CapsCache,
    caps_hash,
    validate,
    verification_string,
    verify,
)
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.server import events
from roost.server.api import ModuleContext
from roost.server.services import CAPS as CAPS_SERVICE
from roost.server.session import Session

__all__ = ["NODE", "CapsModule"]

log = logging.getLogger(__name__)

#: the caps node naming this software (§4: a URL about the product)
NODE: Final = "https://roost.im"
QUERY_TIMEOUT: Final = 15.0
#: distinct 'ver's being checked at once; more are skipped until a slot frees
MAX_PENDING: Final = 128
#: other resources announcing a 'ver' while it is checked, asked in turn if one lies
#: (§5.4 3.9: "SHOULD check ... another generating entity who advertises that value")
MAX_CANDIDATES: Final = 4
#: (ver, resource) pairs that failed, so a liar is not asked again at every presence
MAX_FAILED: Final = 1024
#: responses whose S is longer are not cached (real clients' are a few KiB)
MAX_INFO_CHARS: Final = 16384


@dataclass(slots=True)
class _Pending:
    """A 'ver' being checked: who still may be asked, and the task asking."""

    candidates: deque[tuple[JID, str]]  # (full JID, caps node)
    task: asyncio.Task[Element | None] | None = field(default=None)


class CapsModule:
    """Entity capabilities. Its ``cache`` and lookups are for other features (PEP +notify)."""

    name = "caps"

    def __init__(self, node: str = NODE, cache: CapsCache | None = None) -> None:
        self.node = node
        #: verified disco#info by (hash, ver)
        self.cache = CapsCache() if cache is None else cache
        self._by_jid: dict[JID, Caps] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._failed: OrderedDict[tuple[str, str, JID], None] = OrderedDict()
        self._own_s: str | None = None
        self._own: Caps | None = None
        self._remove_node: Callable[[], object] | None = None

    def setup(self, ctx: ModuleContext) -> None:
        self._ctx = ctx
        ctx.feature(CAPS)  # §7: an entity supporting caps advertises it
        ctx.stream_feature(lambda: self.server_caps().to_element(), pre_auth=False)
        # an observer: the presence module takes the stanza, caps only notes what it says
        ctx.observe(events.PRESENCE_BROADCAST, self._presence)
        ctx.observe(events.SESSION_CLOSED, self._session_closed)
        ctx.provide(CAPS_SERVICE, self)

    # -- the server's own caps -------------------------------------------------------------

    def server_caps(self) -> Caps:
        """The server's caps, recomputed when its disco#info changed (modules loaded)."""
        info = self._ctx.registry.server_info()
        s = verification_string(info)
        if s != self._own_s or self._own is None:
            old = self._own
            own = Caps(self.node, caps_hash(info), "sha-1")
            self._own_s, self._own = s, own
            if old is None or old.ver != own.ver:
                if self._remove_node is not None:
                    self._remove_node()
                self._remove_node = self._ctx.disco_node(
                    own.disco_node, lambda: self._node_info(own.ver)
                )
        return self._own

    def _node_info(self, ver: str) -> Element:
        """disco#info on node#ver: the server's info, carrying the node (§6.2)."""
        own = self.server_caps()
        if own.ver != ver:  # registrations changed since this node was announced
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)
        return self._ctx.registry.server_info(own.disco_node)

    # -- clients' caps ---------------------------------------------------------------------

    def caps_of(self, jid: JID) -> Caps | None:
        """The caps a local full JID last announced in available presence."""
        return self._by_jid.get(jid)

    def info_of(self, jid: JID) -> Element | None:
        """The verified disco#info behind a local full JID's caps, if known yet."""
        caps = self._by_jid.get(jid)
        if caps is None or caps.algo is None:
            return None
        return self.cache.get(caps.ver, caps.algo)

    async def resolve(self, jid: JID) -> Element | None:
        """Like ``info_of``, but waits for a check of that JID's 'ver' under way."""
        caps = self._by_jid.get(jid)
        if caps is None or caps.algo is None:
            return None
        pending = self._pending.get((caps.algo, caps.ver))
        if pending is not None and pending.task is not None:
            await asyncio.shield(pending.task)  # a cancelled waiter must not stop the check
        return self.cache.get(caps.ver, caps.algo)

    @staticmethod
    def _features(info: Element | None) -> frozenset[str] | None:
        if info is None:
            return None
        return frozenset(v for f in info.find_all("feature", ns.DISCO_INFO) if (v := f.get("var")))

    def features_of(self, jid: JID) -> frozenset[str] | None:
        """The features behind a local full JID's verified caps (``CapsService``)."""
        return self._features(self.info_of(jid))

    async def resolve_features(self, jid: JID) -> frozenset[str] | None:
        return self._features(await self.resolve(jid))

    def features_for(self, caps: Caps) -> frozenset[str] | None:
        if caps.algo is None:
            return None
        return self._features(self.cache.get(caps.ver, caps.algo))

    async def resolve_remote(self, jid: JID, caps: Caps) -> frozenset[str] | None:
        """The features behind caps a remote full JID announced to an account (its
        presence), checking them with that JID once per 'ver' as for local clients (§5.4)."""
        if caps.algo is None or caps.algo not in SUPPORTED_HASHES:
            return None
        if (caps.algo, caps.ver) not in self.cache:
            self._check(caps, jid)
            pending = self._pending.get((caps.algo, caps.ver))
            if pending is not None and pending.task is not None:
                await asyncio.shield(pending.task)
        return self.features_for(caps)

    def _presence(self, stanza: Element, sender: JID, session: Session | None) -> None:
        """PRESENCE_BROADCAST observer: note the caps, check a new 'ver'."""
        if session is None or sender.resource is None:
            return None
        ptype = stanza.get("type")
        if ptype == "unavailable":
            self._by_jid.pop(sender, None)
            return None
        if ptype is not None:
            return None
        caps = Caps.find_in(stanza)
        if caps is None:
            self._by_jid.pop(sender, None)
            return None
        self._by_jid[sender] = caps
        # §5.4 step 1: no 'hash' is the legacy format, not supported; step 2: an unknown
        # hash is not validated nor globally cached (per-JID info is not kept either).
        if caps.algo is None or caps.algo not in SUPPORTED_HASHES:
            return None
        if (caps.algo, caps.ver) not in self.cache:
            self._check(caps, sender)
        return None

    def _session_closed(self, session: Session, error: object) -> None:
        self._by_jid.pop(session.jid, None)

    def _check(self, caps: Caps, jid: JID) -> None:
        assert caps.algo is not None
        key = (caps.algo, caps.ver)
        if (caps.algo, caps.ver, jid) in self._failed:
            return
        pending = self._pending.get(key)
        if pending is not None:
            # one check per 'ver' at a time; this resource is asked only if the others fail
            if len(pending.candidates) < MAX_CANDIDATES and all(
                j != jid for j, _ in pending.candidates
            ):
                pending.candidates.append((jid, caps.node))
            return
        if len(self._pending) >= MAX_PENDING:
            log.debug("too many caps checks under way; not checking %s from %s", caps.ver, jid)
            return
        pending = _Pending(deque([(jid, caps.node)]))
        self._pending[key] = pending
        pending.task = self._ctx.spawn(self._verify(key, pending))

    async def _verify(self, key: tuple[str, str], pending: _Pending) -> Element | None:
        algo, ver = key
        try:
            while pending.candidates:
                jid, node = pending.candidates.popleft()
                if self._ctx.is_local_user(jid) and self._ctx.sessions.get(jid) is None:
                    continue  # gone meanwhile
                query, problem = await self._fetch(jid, f"{node}#{ver}")
                if query is not None:
                    if not validate(query):
                        problem = "its disco#info is ill-formed (XEP-0115 §5.4 3.3-3.5)"
                    elif not verify(query, ver, algo):
                        problem = f"wrong hash: its disco#info hashes to {caps_hash(query, algo)}"
                    elif len(verification_string(query)) > MAX_INFO_CHARS:
                        log.info("caps %s from %s: too large to cache", ver, jid)
                        return None
                    else:
                        self.cache.put(ver, query, algo)
                        return query
                # §5.4 3.9: invalid; MUST NOT be cached. Say why: a lie and silence differ.
                log.info("caps %s %s from %s did not verify: %s", algo, ver, jid, problem)
                self._failed[(algo, ver, jid)] = None
                while len(self._failed) > MAX_FAILED:
                    self._failed.popitem(last=False)
            return None
        finally:
            self._pending.pop(key, None)

    async def _fetch(self, jid: JID, node: str) -> tuple[Element | None, str]:
        """disco#info on the caps node, to the exact full JID (§6.2); the query, or None and
        what went wrong (for the log)."""
        iq = Element("iq", ns.CLIENT, {"type": "get"})
        iq.sub("query", ns.DISCO_INFO, {"node": node})
        try:
            reply = await self._ctx.request(iq, jid, QUERY_TIMEOUT)
        except TimeoutError:
            return None, f"no answer to disco#info within {QUERY_TIMEOUT:g} s"
        if reply.get("type") != "result":
            error = reply.find("error", ns.CLIENT)
            conditions = [] if error is None else [c.tag for c in error.elements()]
            condition = next((c for c in conditions if c != "text"), "no condition")
            return None, f"disco#info answered with an error ({condition})"
        query = reply.find("query", ns.DISCO_INFO)
        if query is None:
            return None, "disco#info answered without a <query/>"
        return query, ""
