"""XEP-0157 Contact Addresses for XMPP Services: the ``[contact]`` addresses in the server's
disco#info, as an XEP-0128 extended form (FORM_TYPE ``http://jabber.org/network/serverinfo``).

Compliance testers and other operators look for the abuse address there (XEP-0157 §2).
"""

from __future__ import annotations

import dataclasses
from typing import Final

from roost.core.xml.element import Element
from roost.server.api import ModuleContext

__all__ = ["ContactModule", "contact_form"]

SERVERINFO: Final = "http://jabber.org/network/serverinfo"
DATA: Final = "jabber:x:data"


def contact_form(addresses: dict[str, tuple[str, ...]]) -> Element:
    """The ``result`` form: one ``NAME-addresses`` field per kind that has addresses."""
    x = Element("x", DATA, {"type": "result"})
    hidden = x.sub("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
    hidden.sub("value", text=SERVERINFO)
    for kind, uris in addresses.items():
        if uris:
            field = x.sub("field", attrs={"var": f"{kind}-addresses"})
            for uri in uris:
                field.sub("value", text=uri)
    return x


class ContactModule:
    name = "contact"

    def setup(self, ctx: ModuleContext) -> None:
        contact = ctx.config.contact
        addresses = {f.name: getattr(contact, f.name) for f in dataclasses.fields(contact)}
        if any(addresses.values()):
            ctx.disco_form(contact_form(addresses))
