"""XEP-0054 vcard-temp: a user stores one vCard; anyone may read a local user's vCard.

Stored as serialized XML (store ``vcard``, key ``vcard``). Choices where XEP-0054 leaves one:

* no vCard stored: an empty ``<vCard xmlns='vcard-temp'/>`` result (§3.1 allows this or
  item-not-found), for the user and for others alike, as Prosody does;
* a set on another user's JID: ``forbidden`` (§3.2);
* a vCard larger than ``MAX_VCARD_SIZE`` serialized: ``not-acceptable`` (the request does
  not meet the server's criteria, RFC 6120 §8.3.3.9; unlike policy-violation it has an
  XEP-0086 code, 406, that old clients understand);
* a get for a JID with no account: ``service-unavailable`` (RFC 6121 §8.5.1).

With the PEP module loaded, avatars convert both ways (XEP-0398 §2), and the account
advertises ``urn:xmpp:pep-vcard-conversion:0``:

* a vCard's PHOTO is published as the user's XEP-0084 avatar (data and metadata, id = SHA-1
  of the image), so clients that only read PEP see it;
* an avatar published with XEP-0084 is written into the vCard's PHOTO (the first ``info``
  without a ``url``, its data checked against the SHA-1 id), so clients that read vCards
  (XEP-0153, avatars in group chats) see it; only when the data node's access model is
  ``open`` (§6: a vCard is readable by anyone, a ``presence`` avatar is not), and an
  emptied metadata node (XEP-0084 §4.2, avatar switched off) removes the PHOTO.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from typing import Final

from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server.api import EMPTY, IqRequest, IqResult, ModuleContext
from roost.server.services import PEP, PepService

__all__ = ["MAX_VCARD_SIZE", "VCARD", "VCardModule"]

log = logging.getLogger(__name__)

VCARD: Final = "vcard-temp"
#: largest vCard stored, in bytes of serialized XML (an avatar photo fits comfortably)
MAX_VCARD_SIZE: Final = 64 * 1024
_STORE: Final = "vcard"
_KEY: Final = "vcard"
_C = StanzaErrorCondition
AVATAR_DATA: Final = "urn:xmpp:avatar:data"
AVATAR_METADATA: Final = "urn:xmpp:avatar:metadata"
#: XEP-0398 §1: the account converts PEP avatars to its vCard
CONVERSION: Final = "urn:xmpp:pep-vcard-conversion:0"


class VCardModule:
    name = "vcard"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        ctx.iq("account", "get", VCARD, "vCard", self.get)
        ctx.iq("account", "set", VCARD, "vCard", self.set, advertise=False)
        ctx.account_feature(VCARD)
        pep = ctx.maybe_service(PEP)
        if pep is not None:
            ctx.account_feature(CONVERSION)
            ctx.on_unload(pep.watch(AVATAR_METADATA, self._pep_to_vcard))

    async def get(self, req: IqRequest) -> IqResult:
        user = req.to
        assert user.local is not None
        if (
            req.sender.bare != user
            and not self.ctx.sessions.is_online(user)
            and not await self.ctx.accounts.exists(user.local, user.domain)
        ):
            raise StanzaError(_C.SERVICE_UNAVAILABLE)  # RFC 6121 §8.5.1: no such account
        raw = await self.ctx.storage.get_data(user.local, user.domain, _STORE, _KEY)
        if raw is not None:
            try:
                return parse_fragment(raw)
            except ValueError:
                log.warning("unreadable stored vCard of %s", user)
        return Element("vCard", VCARD)  # XEP-0054 §3.1: no vCard, an empty one

    async def set(self, req: IqRequest) -> IqResult:
        user: JID = req.to
        if req.sender.bare != user:
            raise StanzaError(_C.FORBIDDEN)  # XEP-0054 §3.2: someone else's vCard
        assert user.local is not None
        vcard = req.payload
        value: str | None = None
        if any(True for _ in vcard.elements()) or vcard.text.strip():
            value = serialize(vcard)  # with its own xmlns='vcard-temp'
            if len(value.encode()) > MAX_VCARD_SIZE:
                raise StanzaError(_C.NOT_ACCEPTABLE, "the vCard is too large")
        # An empty vCard removes the stored one: a get answers an empty vCard either way.
        await self.ctx.storage.set_data(user.local, user.domain, _STORE, _KEY, value)
        pep = self.ctx.maybe_service(PEP)
        photo = vcard.find("PHOTO", VCARD)
        if pep is not None and photo is not None:
            await self._photo_to_pep(pep, user, photo)
        return EMPTY

    async def _pep_to_vcard(self, user: JID) -> None:
        """XEP-0398 §2.1: the XEP-0084 avatar just published, as the vCard's PHOTO."""
        pep = self.ctx.maybe_service(PEP)
        if pep is None or user.local is None:
            return
        metadata = await pep.last_payload(user, AVATAR_METADATA)
        if metadata is None:
            return  # retracted or deleted: the vCard keeps what it had
        infos = metadata.find_all("info", AVATAR_METADATA)
        info = next((i for i in infos if not i.get("url")), None)
        photo: Element | None = None
        avatar_id = ""
        if info is not None:
            avatar_id = info.get("id") or ""
            if await pep.access_model(user, AVATAR_DATA) != "open":
                return  # §6: not everyone may see it; a vCard is read by anyone
            data_el = await pep.item_payload(user, AVATAR_DATA, avatar_id)
            if data_el is None:
                return
            try:
                data = base64.b64decode("".join(data_el.text.split()), validate=True)
            except (binascii.Error, ValueError):
                return
            if not data or hashlib.sha1(data).hexdigest() != avatar_id:
                log.info("avatar data of %s does not match its id; not in the vCard", user)
                return
            photo = Element("PHOTO", VCARD)
            photo.sub("TYPE", text=info.get("type") or "image/png")
            photo.sub("BINVAL", text=base64.b64encode(data).decode())
        elif infos:
            return  # only avatars elsewhere (a url): nothing to copy
        vcard = await self._stored(user) or Element("vCard", VCARD)
        current = vcard.find("PHOTO", VCARD)
        if photo is not None and current is not None and _photo_id(current) == avatar_id:
            return  # already there (it came from this vCard, say)
        if photo is None and current is None:
            return
        kept = [c for c in vcard.children if c is not current]
        vcard = Element("vCard", VCARD, dict(vcard.attrs), kept)
        if photo is not None:
            vcard.append(photo)
        value = serialize(vcard)
        if len(value.encode()) > MAX_VCARD_SIZE:
            log.info("the avatar of %s is too large for its vCard", user)
            return
        await self.ctx.storage.set_data(user.local, user.domain, _STORE, _KEY, value)

    async def _stored(self, user: JID) -> Element | None:
        assert user.local is not None
        raw = await self.ctx.storage.get_data(user.local, user.domain, _STORE, _KEY)
        if raw is None:
            return None
        try:
            return parse_fragment(raw)
        except ValueError:
            log.warning("unreadable stored vCard of %s", user)
            return None

    async def _photo_to_pep(self, pep: PepService, user: JID, photo: Element) -> None:
        """XEP-0398 §2: the vCard's photo as the XEP-0084 avatar (unless it already is)."""
        binval = photo.find("BINVAL", VCARD)
        type_el = photo.find("TYPE", VCARD)
        text = "".join((binval.text if binval is not None else "").split())
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return
        if not data:
            return
        avatar_id = hashlib.sha1(data).hexdigest()  # XEP-0084 §4.2 / XEP-0153 §4.3
        current = await pep.last_payload(user, AVATAR_METADATA)
        info = current.find("info", AVATAR_METADATA) if current is not None else None
        if info is not None and info.get("id") == avatar_id:
            return
        data_el = Element("data", AVATAR_DATA, None, [base64.b64encode(data).decode()])
        metadata = Element("metadata", AVATAR_METADATA)
        metadata.sub(
            "info",
            attrs={
                "id": avatar_id,
                "bytes": str(len(data)),
                "type": (type_el.text.strip() if type_el is not None else "") or "image/png",
            },
        )
        try:
            await pep.publish_as(user, AVATAR_DATA, avatar_id, data_el, {})
            await pep.publish_as(user, AVATAR_METADATA, avatar_id, metadata, {})
        except StanzaError as err:  # the nodes are configured otherwise: leave them
            log.info("vCard photo of %s not published to PEP: %s", user, err)


def _photo_id(photo: Element) -> str | None:
    """The SHA-1 of a vCard PHOTO's image (XEP-0153 §4.3), None when it has none."""
    binval = photo.find("BINVAL", VCARD)
    try:
        data = base64.b64decode("".join((binval.text if binval is not None else "").split()))
    except (binascii.Error, ValueError):
        return None
    return hashlib.sha1(data).hexdigest() if data else None
