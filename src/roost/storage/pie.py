"""XEP-0227 Portable Import/Export: a whole server's accounts and their data as one XML file.

``export_xml`` writes, per host and user (XEP-0227 §3): the SCRAM credentials (§3.3,
``urn:xmpp:pie:0#scram``, SHA-1 and SHA-256 if it has them: never a clear password), the roster
(§3.4), offline messages with their XEP-0203 stamps (§3.5), private XML (§3.6), the vCard
(§3.7), privacy lists with the default one (§3.8; the XEP-0191 blocklist is the default
list, so it goes too) and pending incoming subscription requests (§3.9). ``import_xml``
reads the same back: a round trip is lossless for all of these. It works on the storage
directly, so the server should not be running (the CLI checks).

An account needs SCRAM-SHA-1 keys here; one without SHA-256 keys logs in with SCRAM-SHA-1
or PLAIN, and its first PLAIN login adds them (``roost.server.accounts``). A user with a
clear ``password`` and not both key sets is imported with keys derived from that
password; one with SHA-256 keys only and no password is skipped and reported.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from roost.core import ns
from roost.core.delay import delay_element, parse_delay
from roost.core.im.privacy import list_element, list_from_json, list_to_json, parse_list
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import escape_attr, serialize
from roost.storage.api import (
    Account,
    AccountExists,
    RosterItem,
    Storage,
    StoredCredentials,
)

__all__ = ["PIE", "ImportReport", "export_xml", "import_xml"]

PIE: Final = "urn:xmpp:pie:0"
SCRAM: Final = "urn:xmpp:pie:0#scram"
PRIVATE: Final = "jabber:iq:private"
PRIVACY: Final = "jabber:iq:privacy"
VCARD: Final = "vcard-temp"
#: the key-value stores the modules keep this data in (vcard, private, privacy_lists)
_VCARD_STORE, _VCARD_KEY = "vcard", "vcard"
_PRIVATE_STORE = "private"
_PRIVACY_STORE, _LIST_PREFIX, _DEFAULT_KEY = "privacy", "list:", "default"
_MECHANISMS: Final = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}


def _scram(mechanism: str, creds: StoredCredentials) -> Element:
    el = Element("scram-credentials", SCRAM, {"mechanism": mechanism})
    el.sub("iter-count", text=str(creds.iterations))
    for tag, value in (
        ("salt", creds.salt),
        ("server-key", creds.server_key),
        ("stored-key", creds.stored_key),
    ):
        el.sub(tag, text=base64.b64encode(value).decode())
    return el


async def _user_element(storage: Storage, account: Account) -> Element:
    user, domain = account.username, account.domain
    el = Element("user", PIE, {"name": user, "createdAt": str(account.created)})
    el.append(_scram("SCRAM-SHA-1", account.sha1))
    if account.sha256 is not None:
        el.append(_scram("SCRAM-SHA-256", account.sha256))
    roster = await storage.get_roster(user, domain)
    query = el.sub("query", ns.ROSTER, {"ver": str(roster.version)})
    for item in roster.items.values():
        attrs = {"jid": item.jid, "subscription": item.subscription}
        if item.name is not None:
            attrs["name"] = item.name
        if item.ask:
            attrs["ask"] = "subscribe"
        if item.approved:
            attrs["approved"] = "true"
        it = query.sub("item", attrs=attrs)
        for group in item.groups:
            it.sub("group", text=group)
    offline = await storage.list_offline(user, domain)
    if offline:
        box = el.sub("offline-messages")
        for text, stamp in offline:
            msg = parse_fragment(text)
            msg.ns = ns.CLIENT
            msg.append(delay_element(stamp, domain, "Offline Storage"))
            box.append(msg)
    private = await storage.list_data(user, domain, _PRIVATE_STORE)
    if private:
        pq = el.sub("query", PRIVATE)
        for text in private.values():
            pq.append(parse_fragment(text))
    vcard = await storage.get_data(user, domain, _VCARD_STORE, _VCARD_KEY)
    if vcard is not None:
        el.append(parse_fragment(vcard))
    privacy = await storage.list_data(user, domain, _PRIVACY_STORE)
    lists = {k[len(_LIST_PREFIX) :]: v for k, v in privacy.items() if k.startswith(_LIST_PREFIX)}
    if lists:
        prq = el.sub("query", PRIVACY)
        if (default := privacy.get(_DEFAULT_KEY)) is not None:
            prq.sub("default", attrs={"name": default})
        for name, text in sorted(lists.items()):
            prq.append(list_element(list_from_json(name, text)))
    for text in roster.pending_in.values():
        presence = parse_fragment(text)
        presence.ns = ns.CLIENT
        el.append(presence)
    return el


async def export_xml(storage: Storage, domains: Iterable[str]) -> str:
    """The XEP-0227 document for every account of ``domains``."""
    parts = ["<?xml version='1.0' encoding='UTF-8'?>\n", f"<server-data xmlns='{PIE}'>\n"]
    for domain in domains:
        parts.append(f"<host jid='{escape_attr(domain)}'>\n")
        for username, _ in await storage.list_accounts(domain):
            account = await storage.get_account(username, domain)
            if account is None:
                continue
            parts.append(serialize(await _user_element(storage, account), PIE) + "\n")
        parts.append("</host>\n")
    parts.append("</server-data>\n")
    return "".join(parts)


@dataclass
class ImportReport:
    """What an import did: accounts created, one line per thing it could not do, and what
    it left out on purpose (hosts not asked for)."""

    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _credentials(el: Element) -> dict[str, StoredCredentials]:
    out = {}
    for sc in el.find_all("scram-credentials", SCRAM):
        hash_name = _MECHANISMS.get(sc.get("mechanism") or "")
        if hash_name is None:
            continue
        values = {c.tag: c.text.strip() for c in sc.elements()}
        out[hash_name] = StoredCredentials(
            salt=base64.b64decode(values["salt"], validate=True),
            iterations=int(values["iter-count"]),
            stored_key=base64.b64decode(values["stored-key"], validate=True),
            server_key=base64.b64decode(values["server-key"], validate=True),
        )
    return out


async def import_xml(
    storage: Storage,
    text: str,
    domains: Iterable[str],
    derive: Callable[[str, str], Account] | None = None,
) -> ImportReport:
    """Create the accounts of a XEP-0227 document (hosts this server serves only) with
    their data. ``derive(username@domain, password)`` makes an account from a clear
    password, for users exported with one (XEP-0227 §3.2). Existing accounts are skipped."""
    served = set(domains)
    report = ImportReport()
    body = text.lstrip()
    if body.startswith("<?xml"):
        body = body[body.index("?>") + 2 :]  # the declaration (a fragment cannot have one)
    root = parse_fragment(body, max_size=1 << 31)
    if root.ns != PIE or root.tag != "server-data":
        raise ValueError("not a XEP-0227 document (no <server-data xmlns='urn:xmpp:pie:0'/>)")
    for host in root.find_all("host", PIE):
        domain = (host.get("jid") or "").lower()
        if domain not in served:
            report.skipped.append(f"host {domain}: not one of the served domains")
            continue
        for user in host.find_all("user", PIE):
            name = user.get("name") or ""
            jid = f"{name}@{domain}"
            try:
                account = _account(user, name, domain, derive)
            except (ValueError, KeyError, binascii.Error) as exc:
                report.skipped.append(f"{jid}: {exc}")
                continue
            try:
                await storage.create_account(account)
            except AccountExists:
                report.skipped.append(f"{jid}: already exists (left as it is)")
                continue
            await _import_data(storage, user, name, domain)
            report.created.append(jid)
    return report


def _account(
    user: Element, name: str, domain: str, derive: Callable[[str, str], Account] | None
) -> Account:
    if not name:
        raise ValueError("a <user/> without a name")
    creds = _credentials(user)
    created = float(user.get("createdAt") or time.time())
    if "sha1" in creds and "sha256" in creds:
        return Account(name, domain, creds["sha1"], creds["sha256"], created)
    password = user.get("password")
    if password is not None and derive is not None:
        return derive(f"{name}@{domain}", password)
    if "sha1" in creds:
        return Account(name, domain, creds["sha1"], None, created)
    raise ValueError(
        "needs SCRAM-SHA-1 credentials or a password (it has "
        f"{', '.join(sorted(creds)) or 'neither'})"
    )


async def _import_data(storage: Storage, user: Element, name: str, domain: str) -> None:
    for query in user.find_all("query"):
        if query.ns == ns.ROSTER:
            for item in query.find_all("item", ns.ROSTER):
                await storage.put_roster_item(
                    name,
                    domain,
                    RosterItem(
                        jid=item.get("jid") or "",
                        name=item.get("name"),
                        subscription=item.get("subscription") or "none",
                        ask=item.get("ask") == "subscribe",
                        approved=item.get("approved") in ("true", "1"),
                        groups=tuple(g.text for g in item.find_all("group", ns.ROSTER)),
                    ),
                )
        elif query.ns == PRIVATE:
            for fragment in query.elements():
                key = f"{{{fragment.ns}}}{fragment.tag}"
                await storage.set_data(name, domain, _PRIVATE_STORE, key, serialize(fragment))
        elif query.ns == PRIVACY:
            for lst in query.find_all("list", PRIVACY):
                parsed = parse_list(lst, max_items=10_000)
                await storage.set_data(
                    name, domain, _PRIVACY_STORE, _LIST_PREFIX + parsed.name, list_to_json(parsed)
                )
            default = query.find("default", PRIVACY)
            if default is not None and default.get("name"):
                await storage.set_data(
                    name, domain, _PRIVACY_STORE, _DEFAULT_KEY, default.get("name")
                )
    vcard = user.find("vCard", VCARD)
    if vcard is not None:
        await storage.set_data(name, domain, _VCARD_STORE, _VCARD_KEY, serialize(vcard))
    box = user.find("offline-messages", PIE)
    for msg in box.elements() if box is not None else ():
        stamp = time.time()
        kept = []
        for child in msg.children:
            if isinstance(child, Element) and child.ns == ns.DELAY and child.tag == "delay":
                found = parse_delay(child)
                if found is not None:
                    stamp = found
                continue
            kept.append(child)
        msg.children = kept
        await storage.push_offline(name, domain, serialize(msg), stamp, 1_000_000)
    for presence in user.find_all("presence", ns.CLIENT):
        sender = presence.get("from")
        if presence.get("type") == "subscribe" and sender:
            await storage.set_pending_in(name, domain, sender, serialize(presence))
