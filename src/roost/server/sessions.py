"""Who is online: full and bare JID maps, resource binding and conflicts (RFC 6120 §7)."""

from __future__ import annotations

from collections.abc import Callable

from roost.core.jid import JID
from roost.server.session import Session

__all__ = ["SessionManager"]


class SessionManager:
    """In-memory maps for routing: no storage call on the path of a stanza to an online user."""

    __slots__ = ("_by_bare", "_by_full", "_new_resource")

    def __init__(self, new_resource: Callable[[], str]) -> None:
        self._by_full: dict[JID, Session] = {}
        self._by_bare: dict[JID, dict[str, Session]] = {}
        self._new_resource = new_resource

    def __len__(self) -> int:
        return len(self._by_full)

    def get(self, full: JID) -> Session | None:
        return self._by_full.get(full)

    def resources(self, bare: JID) -> dict[str, Session]:
        """The bound sessions of an account, by resource (empty when offline)."""
        return self._by_bare.get(bare, {})

    def is_online(self, bare: JID) -> bool:
        return bare in self._by_bare

    def all(self) -> list[Session]:
        """Every bound session (a copy: safe to close sessions while iterating)."""
        return list(self._by_full.values())

    def pick_resource(self, bare: JID, wanted: str | None) -> JID:
        """The full JID to bind: the one asked for, or a fresh server-generated resource."""
        if wanted is not None:
            return bare.with_resource(wanted)
        while True:
            full = bare.with_resource(self._new_resource())
            if full not in self._by_full:
                return full

    def bind(self, full: JID, session: Session) -> Session | None:
        """Bind ``session`` to ``full``; return the session it replaces (RFC 6120 §7.7.2.2)."""
        old = self._by_full.get(full)
        self._by_full[full] = session
        assert full.resource is not None
        self._by_bare.setdefault(full.bare, {})[full.resource] = session
        return old

    def unbind(self, full: JID, session: Session) -> bool:
        """Forget ``session`` if it still holds ``full``; True when it did."""
        if self._by_full.get(full) is not session:
            return False
        del self._by_full[full]
        bare = full.bare
        res = self._by_bare.get(bare)
        if res is not None:
            assert full.resource is not None
            res.pop(full.resource, None)
            if not res:
                del self._by_bare[bare]
        return True
