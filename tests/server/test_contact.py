"""XEP-0157 contact addresses in the server's disco#info (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.core import ns
from roost.core.caps import CAPS, caps_hash
from roost.core.xml.writer import serialize
from roost.server.config import ConfigError
from tests.helpers import PASSWORDS, RawClient, make_config, start_server

SERVERINFO = "http://jabber.org/network/serverinfo"


async def test_addresses_in_disco_info(tmp_path: Path) -> None:
    srv = await start_server(
        tmp_path,
        contact={
            "abuse": ["mailto:abuse@example.org", "xmpp:abuse@localhost"],
            "admin": ["xmpp:admin@localhost"],
            "support": ["https://example.org/help"],
        },
    )
    try:
        await srv.accounts.create("alice", "localhost", PASSWORDS["alice"])
        c = await RawClient.connect(srv)
        await c.open()
        await c.starttls()
        assert (await c.auth("alice", PASSWORDS["alice"])).tag == "success"
        features = await c.open()
        await c.bind("r")
        await c.send(f"<iq type='get' id='d' to='localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>")
        query = (await c.expect(lambda e: e.get("id") == "d")).find("query", ns.DISCO_INFO)
        assert query is not None
        forms = query.find_all("x", "jabber:x:data")
        assert len(forms) == 1
        assert serialize(forms[0]) == (
            "<x xmlns='jabber:x:data' type='result'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{SERVERINFO}</value></field>"
            "<field var='abuse-addresses'><value>mailto:abuse@example.org</value>"
            "<value>xmpp:abuse@localhost</value></field>"
            "<field var='admin-addresses'><value>xmpp:admin@localhost</value></field>"
            "<field var='support-addresses'><value>https://example.org/help</value></field>"
            "</x>"
        )
        # XEP-0115 §5: the server's caps hash covers the extended form too
        caps = features.find("c", CAPS)
        assert caps is not None and caps.get("ver") == caps_hash(query)
        await c.close()
    finally:
        await srv.stop()


async def test_no_form_without_addresses(server) -> None:  # type: ignore[no-untyped-def]
    assert server.registry.disco_forms == []
    assert server.registry.server_info().find("x", "jabber:x:data") is None


@pytest.mark.parametrize(
    ("contact", "key"),
    [
        ({"abuse": ["abuse@example.org"]}, "contact.abuse[0]"),
        ({"abuse": "mailto:abuse@example.org"}, "contact.abuse"),
        ({"press": ["mailto:p@example.org"]}, "contact.press"),
    ],
)
def test_bad_addresses_name_the_key(tmp_path: Path, contact: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        make_config(tmp_path, contact=contact)
    assert exc.value.key == key
