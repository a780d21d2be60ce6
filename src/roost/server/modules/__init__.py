"""Feature modules: one file per feature, each registering through its ``ModuleContext``
(``roost.server.api``). Names here are what ``[modules] disabled`` takes."""

from __future__ import annotations

from roost.server.api import Module

__all__ = ["default_modules"]


def default_modules() -> list[Module]:
    """The modules a server loads unless told otherwise (a module after those it needs)."""
    from roost.server.modules.adhoc import AdHocModule
    from roost.server.modules.blocking import BlockingModule
    from roost.server.modules.caps import CapsModule
    from roost.server.modules.carbons import CarbonsModule
    from roost.server.modules.contact import ContactModule
    from roost.server.modules.csi import CsiModule
    from roost.server.modules.disco import DiscoModule
    from roost.server.modules.last import LastActivityModule
    from roost.server.modules.legacy_auth import LegacyAuthModule
    from roost.server.modules.mam import MamModule
    from roost.server.modules.message import MessageModule
    from roost.server.modules.muc import MucModule
    from roost.server.modules.offline import OfflineModule
    from roost.server.modules.pep import PepModule
    from roost.server.modules.ping import PingModule
    from roost.server.modules.presence import PresenceModule
    from roost.server.modules.privacy import PrivacyModule
    from roost.server.modules.privacy_lists import PrivacyLists
    from roost.server.modules.private import PrivateModule
    from roost.server.modules.pubsub import PubSubModule
    from roost.server.modules.push import PushModule
    from roost.server.modules.register import RegisterModule
    from roost.server.modules.roster import RosterModule
    from roost.server.modules.session import SessionModule
    from roost.server.modules.time import TimeModule
    from roost.server.modules.vcard import VCardModule
    from roost.server.modules.version import VersionModule

    return [
        RosterModule(),
        PresenceModule(),
        SessionModule(),
        RegisterModule(),
        LegacyAuthModule(),
        DiscoModule(),
        AdHocModule(),
        ContactModule(),
        CapsModule(),
        PingModule(),
        MessageModule(),
        CarbonsModule(),
        CsiModule(),
        PushModule(),
        OfflineModule(),
        MamModule(),
        VersionModule(),
        TimeModule(),
        LastActivityModule(),
        PepModule(),  # before private: XEP-0049 bookmarks are kept in PEP too (XEP-0411)
        VCardModule(),  # after PEP: avatars convert both ways (XEP-0398)
        PrivateModule(),
        PubSubModule(),
        # XEP-0016 and XEP-0191 share one back end (XEP-0191 §5), loaded before both.
        PrivacyLists(),
        PrivacyModule(),
        BlockingModule(),
        MucModule(),
    ]
