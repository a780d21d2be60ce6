"""XEP-0115 Entity Capabilities for the client: our own caps, and others' verified.

Ours: the 'ver' is the hash of the disco#info we answer (§5.1), sent in every available
presence (§4) and answered on ``node#ver`` (§6.2). Others': a ``<c/>`` in presence is only
a claim. Its 'ver' is looked up in the cache of verified entries; if unknown, disco#info is
asked of that JID on ``node#ver`` and cached only if its recomputed hash equals 'ver' (§5.4;
a mismatch is a forgery or a bug, and is never trusted nor cached, §8.4). Legacy caps
without 'hash' (§11) and unsupported hashes are ignored. The cache can be kept in a file;
entries read back from it are verified again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from roost.client.disco import DiscoInfo
from roost.client.errors import ClientError
from roost.core import ns
from roost.core.caps import CAPS, SUPPORTED_HASHES, Caps, CapsCache, caps_hash, verify
from roost.core.errors import StanzaError
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize

if TYPE_CHECKING:
    from roost.client.client import Client
    from roost.client.stanzas import Presence

__all__ = ["DEFAULT_NODE", "MAX_PENDING", "EntityCaps"]

log = logging.getLogger(__name__)

#: §4: a URI that identifies the software (no registry; it is only ever compared)
DEFAULT_NODE = "urn:roost:client"
_ALGO = "sha-1"
#: verifications (disco#info queries) under way at once, at most
MAX_PENDING = 32  # §9.1: the mandatory-to-implement hash, which every peer can check


class EntityCaps:
    """Own caps and a cache of others' verified disco#info (``Client.caps``)."""

    def __init__(
        self, client: Client, node: str = DEFAULT_NODE, cache_file: str | Path | None = None
    ) -> None:
        self._client = client
        self.node = node
        self.cache = CapsCache()
        self.cache_file = Path(cache_file) if cache_file is not None else None
        #: who has which verified caps: JID -> (hash, ver)
        self._of: dict[JID, tuple[str, str]] = {}
        self._pending: dict[tuple[str, str], asyncio.Task[bool]] = {}
        self._waiting: dict[JID, tuple[str, str]] = {}
        self._own: Caps | None = None
        if self.cache_file is not None:
            self._load(self.cache_file)

    # -- ours -----------------------------------------------------------------------------

    def own_info(self, node: str | None = None) -> Element:
        """Our disco#info ``<query/>`` (§6.2: the same for ``node#ver``, echoing the node)."""
        query = Element("query", ns.DISCO_INFO, {"node": node} if node else None)
        for identity in self._client.identities:
            query.append(identity.to_element())
        for feature in sorted(self._client.features):
            query.sub("feature", ns.DISCO_INFO, {"var": feature})
        return query

    @property
    def own(self) -> Caps:
        """Our ``<c/>`` values; recomputed when identities or features change."""
        if self._own is None:
            self._own = Caps(self.node, caps_hash(self.own_info(), _ALGO), _ALGO)
        return self._own

    def changed(self) -> None:
        """Our features changed: a new 'ver' goes out with the next presence (§8.4)."""
        self._own = None

    def is_own_node(self, node: str | None) -> bool:
        return node is None or node == self.own.disco_node

    def annotate(self, presence: Element) -> None:
        """Add ``<c/>`` to an outgoing available presence (§4), replacing any other."""
        for old in presence.find_all("c", CAPS):
            presence.children.remove(old)
        presence.append(self.own.to_element())

    # -- others' --------------------------------------------------------------------------

    def observe(self, presence: Presence) -> None:
        """Note the caps claimed in an incoming presence; verify unknown ones."""
        jid = presence.from_
        if jid is None:
            return
        if not presence.available:
            self._of.pop(jid, None)
            self._waiting.pop(jid, None)
            return
        claim = presence.caps
        if claim is None or claim.algo not in SUPPORTED_HASHES:
            self._of.pop(jid, None)  # §11 legacy caps or an unknown hash: not checkable
            return
        key = (claim.algo, claim.ver)
        if claim == self.own and key not in self.cache:
            self.cache.put(claim.ver, self.own_info(), claim.algo)  # ours: known, not asked
        if key in self.cache:
            self._of[jid] = key
            return
        self._of.pop(jid, None)
        self._waiting[jid] = key
        if key not in self._pending:
            if len(self._pending) >= MAX_PENDING:
                # anyone can mint 'ver's: a flood of them must not become a flood of queries
                log.info("caps of %s not checked: %d checks under way", jid, MAX_PENDING)
                self._waiting.pop(jid, None)
                return
            task = self._client.spawn(self._verify(jid, claim))
            self._pending[key] = task
            task.add_done_callback(lambda _t: self._pending.pop(key, None))

    async def _verify(self, jid: JID, claim: Caps) -> bool:
        assert claim.algo is not None
        query = Element("query", ns.DISCO_INFO, {"node": claim.disco_node})
        try:
            result = await self._client.request(query, to=jid)
        except (StanzaError, ClientError, TimeoutError) as exc:
            log.info("caps of %s: disco#info failed: %s", jid, exc)
            return False
        if result is None or not verify(result, claim.ver, claim.algo):
            log.warning("caps of %s do not match their disco#info: not trusted", jid)
            return False
        self.cache.put(claim.ver, result, claim.algo)
        key = (claim.algo, claim.ver)
        for who, wanted in list(self._waiting.items()):
            if wanted == key:
                self._of[who] = key
                del self._waiting[who]
        if self.cache_file is not None:
            self._save(self.cache_file)
        return True

    def known(self, jid: JID) -> DiscoInfo | None:
        """The verified disco#info behind ``jid``'s current caps, if already known."""
        key = self._of.get(jid)
        query = None if key is None else self.cache.get(key[1], key[0])
        return None if query is None else DiscoInfo.from_query(query)

    async def info(self, jid: JID) -> DiscoInfo | None:
        """The verified disco#info behind ``jid``'s caps (waiting for a verification under
        way), or None: no caps, unverifiable or forged."""
        key = self._waiting.get(jid)
        if key is not None and (task := self._pending.get(key)) is not None:
            await asyncio.shield(task)
        return self.known(jid)

    # -- persistence ----------------------------------------------------------------------

    def _save(self, path: Path) -> None:
        entries = [
            {"hash": algo, "ver": ver, "query": serialize(query)}
            for (algo, ver), query in self.cache.items()
        ]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": 1, "entries": entries}))
        os.replace(tmp, path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            entries = data["entries"] if isinstance(data, dict) else []
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError) as exc:
            log.warning("caps cache %s is unreadable (%s): starting empty", path, exc)
            return
        for entry in entries:
            try:
                algo, ver = str(entry["hash"]), str(entry["ver"])
                query = parse_fragment(str(entry["query"]))
            except (KeyError, TypeError, ValueError):
                continue
            if verify(query, ver, algo):  # a file is no more trusted than the network
                self.cache.put(ver, query, algo)
