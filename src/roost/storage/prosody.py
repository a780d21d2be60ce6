"""Import from a Prosody data directory (``storage = "internal"``), without running Prosody.

Prosody's datamanager keeps one file per host, store and user:
``DATA/<host>/<store>/<user>.dat`` (``return <table>;``) or ``.list`` (``item(<table>);``
lines), each path part escaped as ``%xx`` for every byte that is not a letter or digit. This
reads, for each served host:

* ``accounts``: ``internal_hashed`` keeps SCRAM-SHA-1 ``stored_key`` and ``server_key`` (hex),
  ``salt`` and ``iteration_count`` (RFC 5802 §3); they become the account's SHA-1 keys and
  it has no SHA-256 keys until its first PLAIN login (``roost.server.accounts``).
  ``internal_plain`` keeps ``password``: both key sets are derived from it, and the clear
  password is not kept;
* ``roster``: items (``subscription``, ``name``, ``groups``, ``ask``) and, under the key
  ``false``, the ``pending`` inbound subscription requests (RFC 6121 §3.1.3);
* ``vcard`` (mod_vcard's vcard-temp) or, when there is none, the ``urn:xmpp:vcard4`` PEP
  node that Debian's default mod_vcard_legacy keeps, mapped to vcard-temp fields (XEP-0292
  §5 lists the correspondence), with the XEP-0084 avatar as its PHOTO;
* ``offline`` (XEP-0160), each message with the time Prosody stored it;
* ``private`` (XEP-0049).

Every file is read and checked before anything is written, so a file that does not parse
stops the import with its name and nothing half-done; an account that exists already is
left as it is. Stanzas are kept by Prosody as tables (``name``, ``attr`` with ``xmlns``,
children as the table's positional items) and become XML again here.
"""

from __future__ import annotations

import binascii
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from roost.core import ns
from roost.core.delay import parse_xep0082
from roost.core.xml.element import XML_LANG, Element
from roost.core.xml.writer import serialize
from roost.storage.api import Account, AccountExists, RosterItem, Storage, StoredCredentials
from roost.storage.credentials import prepare_username
from roost.storage.luadata import LuaDataError, array, parse_dat, parse_list
from roost.storage.pie import ImportReport

__all__ = ["NotProsodyData", "import_prosody", "prosody_hosts", "unescape"]

VCARD: Final = "vcard-temp"
VCARD4: Final = "urn:ietf:params:xml:ns:vcard-4.0"
AVATAR_DATA: Final = "urn:xmpp:avatar:data"
AVATAR_METADATA: Final = "urn:xmpp:avatar:metadata"
_ESCAPE = re.compile(r"%([0-9a-fA-F]{2})")
_OFFLINE_LIMIT: Final = 1_000_000
#: Prosody's own attributes on a stored stanza (the time it was stored), not the sender's
_PROSODY_ATTRS: Final = {"stamp", "stamp_legacy"}


class NotProsodyData(ValueError):
    """The directory is not a Prosody data directory, or one of its files does not parse."""


def unescape(name: str) -> str:
    """A host or user name from its path part (Prosody's datamanager ``%xx`` escaping)."""
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)
    # The escapes are of UTF-8 bytes: turn the code points < 256 back into bytes.
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def prosody_hosts(root: Path) -> dict[str, Path]:
    """The hosts of a Prosody data directory (those with an ``accounts`` store)."""
    if not root.is_dir():
        raise NotProsodyData(f"{root} is not a directory")
    hosts = {
        unescape(d.name).lower(): d
        for d in sorted(root.iterdir())
        if d.is_dir() and (d / "accounts").is_dir()
    }
    if not hosts:
        raise NotProsodyData(
            f"{root} is not a Prosody data directory (no HOST/accounts/ in it: "
            "give Prosody's data_path, e.g. /var/lib/prosody)"
        )
    return hosts


@dataclass
class _User:
    """Everything read for one account, before anything is written."""

    account: Account
    roster: list[RosterItem] = field(default_factory=list)
    pending_in: list[str] = field(default_factory=list)
    vcard: Element | None = None
    offline: list[tuple[Element, float]] = field(default_factory=list)
    private: list[Element] = field(default_factory=list)


def _read(path: Path, as_list: bool = False) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotProsodyData(f"{path}: cannot read it: {getattr(exc, 'strerror', exc)}") from None
    try:
        return parse_list(text) if as_list else parse_dat(text)
    except LuaDataError as exc:
        raise NotProsodyData(f"{path}: {exc}") from None


def _user_file(host: Path, store: str, user: str, ext: str) -> Path:
    return host / store / f"{user}.{ext}"


def _stanza(table: object, parent_ns: str, where: Path) -> Element:
    """A stanza as Prosody's util.stanza keeps it, as an element."""
    if not isinstance(table, dict) or not isinstance(table.get("name"), str):
        raise NotProsodyData(f"{where}: a stored stanza without a name")
    attrs_in = table.get("attr", {})
    if not isinstance(attrs_in, dict):
        raise NotProsodyData(f"{where}: a stored stanza's attributes are not a table")
    element_ns = str(attrs_in.get("xmlns", parent_ns))
    attrs: dict[str, str] = {}
    for key, value in attrs_in.items():
        if key == "xmlns" or not isinstance(value, str | int | float):
            continue
        name = str(key)
        if name == "xml:lang":
            name = XML_LANG
        elif "\x01" in name:  # util.stanza: "namespace\1name" for a namespaced attribute
            uri, _, local = name.partition("\x01")
            name = f"{{{uri}}}{local}"
        attrs[name] = str(value)
    el = Element(str(table["name"]), element_ns, attrs)
    for child in array(table):
        el.children.append(child if isinstance(child, str) else _stanza(child, element_ns, where))
    return el


def _account(host: Path, user: str, domain: str, derive: Callable[[str, str], Account]) -> Account:
    path = _user_file(host, "accounts", user, "dat")
    data = _read(path)
    if not isinstance(data, dict):
        raise NotProsodyData(f"{path}: not an account table")
    local, dom = prepare_username(unescape(user), domain)
    created = data.get("created")
    when = float(created) if isinstance(created, int | float) else path.stat().st_mtime
    if isinstance(data.get("password"), str):  # internal_plain
        account = derive(f"{local}@{dom}", str(data["password"]))
        return Account(local, dom, account.sha1, account.sha256, when)
    try:
        sha1 = StoredCredentials(
            salt=str(data["salt"]).encode("utf-8"),
            iterations=int(str(data["iteration_count"])),
            stored_key=bytes.fromhex(str(data["stored_key"])),
            server_key=bytes.fromhex(str(data["server_key"])),
        )
    except (KeyError, ValueError, binascii.Error) as exc:
        raise ValueError(f"no usable SCRAM-SHA-1 keys ({exc})") from None
    return Account(local, dom, sha1, None, when)


def _roster(host: Path, user: str, into: _User) -> list[str]:
    path = _user_file(host, "roster", user, "dat")
    if not path.exists():
        return []
    data = _read(path)
    if not isinstance(data, dict):
        raise NotProsodyData(f"{path}: not a roster table")
    skipped = []
    for jid, item in data.items():
        if jid is False:  # the roster's own metadata
            pending = item.get("pending", {}) if isinstance(item, dict) else {}
            into.pending_in.extend(str(j) for j in pending if isinstance(j, str))
            continue
        if not isinstance(item, dict) or not isinstance(jid, str):
            continue
        groups = item.get("groups", {})
        try:
            into.roster.append(
                RosterItem(
                    jid=jid,
                    name=str(item["name"]) if isinstance(item.get("name"), str) else None,
                    subscription=str(item.get("subscription", "none")),
                    ask=item.get("ask") == "subscribe",
                    approved=item.get("approved") is True,
                    groups=tuple(sorted(str(g) for g in groups))
                    if isinstance(groups, dict)
                    else (),
                )
            )
        except ValueError as exc:
            skipped.append(f"roster item {jid}: {exc}")
    return skipped


#: XEP-0292 §5: vCard4 elements (each with one <text/>, <uri/> or <date/>) and their vcard-temp
_VCARD4_SIMPLE: Final = {
    "fn": "FN",
    "nickname": "NICKNAME",
    "bday": "BDAY",
    "note": "DESC",
    "title": "TITLE",
    "role": "ROLE",
    "url": "URL",
}
_VCARD4_N: Final = {
    "surname": "FAMILY",
    "given": "GIVEN",
    "additional": "MIDDLE",
    "prefix": "PREFIX",
    "suffix": "SUFFIX",
}


def _value(el: Element) -> str:
    for child in el.elements():
        if child.tag in ("text", "uri", "date", "date-time", "date-and-or-time"):
            return child.text
    return el.text


def _vcard_temp(card: Element) -> Element | None:
    """The vcard-temp form of a vCard4 (XEP-0292 §5): names, nickname, dates, notes, URLs,
    e-mail addresses, telephone numbers and the organisation."""
    out = Element("vCard", VCARD)
    for field_el in card.elements():
        tag = field_el.tag
        if tag in _VCARD4_SIMPLE and _value(field_el):
            out.sub(_VCARD4_SIMPLE[tag], text=_value(field_el))
        elif tag == "n":
            n = Element("N", VCARD)
            for part in field_el.elements():
                if part.tag in _VCARD4_N and part.text:
                    n.sub(_VCARD4_N[part.tag], text=part.text)
            if n.children:
                out.append(n)
        elif tag == "email" and _value(field_el):
            out.sub("EMAIL").sub("USERID", text=_value(field_el))
        elif tag == "tel" and _value(field_el):
            number = _value(field_el).removeprefix("tel:")
            out.sub("TEL").sub("NUMBER", text=number)
        elif tag == "org" and _value(field_el):
            out.sub("ORG").sub("ORGNAME", text=_value(field_el))
    return out if out.children else None


def _vcard(host: Path, user: str) -> Element | None:
    path = _user_file(host, "vcard", user, "dat")
    if path.exists():
        data = _read(path)
        if isinstance(data, dict) and data:
            return _stanza(data, VCARD, path)
    vcard = None
    pep = host / "pep_urn%3axmpp%3avcard4" / f"{user}.list"
    if pep.exists():
        current = [i for i in _items(pep) if i.get("name") == "vcard"]
        if current:
            vcard = _vcard_temp(_stanza(current[-1], VCARD4, pep))
    photo = _avatar(host, user)
    if photo is not None:
        vcard = vcard if vcard is not None else Element("vCard", VCARD)
        vcard.append(photo)
    return vcard


def _items(path: Path) -> list[dict[object, object]]:
    items = _read(path, as_list=True)
    assert isinstance(items, list)
    return [i for i in items if isinstance(i, dict)]


def _avatar(host: Path, user: str) -> Element | None:
    """The XEP-0084 avatar Prosody keeps in PEP (mod_vcard_legacy puts a vCard's photo
    there) as a vcard-temp PHOTO (XEP-0153 §3.1): the metadata names the current item of
    the data node."""
    meta_path = host / "pep_urn%3axmpp%3aavatar%3ametadata" / f"{user}.list"
    data_path = host / "pep_urn%3axmpp%3aavatar%3adata" / f"{user}.list"
    if not meta_path.exists() or not data_path.exists():
        return None
    metas = [i for i in _items(meta_path) if i.get("name") == "metadata"]
    info = _stanza(metas[-1], AVATAR_METADATA, meta_path).find("info") if metas else None
    if info is None:
        return None
    found = [i for i in _items(data_path) if i.get("key") == info.get("id")]
    if not found:
        return None
    data = "".join(_stanza(found[-1], AVATAR_DATA, data_path).text.split())
    photo = Element("PHOTO", VCARD)
    photo.sub("TYPE", text=info.get("type") or "image/png")
    photo.sub("BINVAL", text=data)
    return photo


def _offline(host: Path, user: str, into: _User) -> None:
    path = _user_file(host, "offline", user, "list")
    if not path.exists():
        return
    items = _read(path, as_list=True)
    assert isinstance(items, list)
    for item in items:
        msg = _stanza(item, ns.CLIENT, path)
        stamp = item.get("when") if isinstance(item, dict) else None
        if not isinstance(stamp, int | float):
            stamp = parse_xep0082(msg.get("stamp") or "") or time.time()
        for attr in _PROSODY_ATTRS:
            msg.attrs.pop(attr, None)
        into.offline.append((msg, float(stamp)))


def _private(host: Path, user: str, into: _User) -> None:
    path = _user_file(host, "private", user, "dat")
    if not path.exists():
        return
    data = _read(path)
    if not isinstance(data, dict):
        raise NotProsodyData(f"{path}: not a table of private XML")
    for fragment in data.values():
        into.private.append(_stanza(fragment, "", path))


def _read_host(
    host: Path, domain: str, derive: Callable[[str, str], Account], report: ImportReport
) -> list[_User]:
    users = []
    for path in sorted((host / "accounts").glob("*.dat")):
        user = path.stem
        jid = f"{unescape(user)}@{domain}"
        try:
            entry = _User(_account(host, user, domain, derive))
        except NotProsodyData:
            raise
        except ValueError as exc:  # InvalidUsername too
            report.skipped.append(f"{jid}: {exc}")
            continue
        report.skipped.extend(f"{jid}: {line}" for line in _roster(host, user, entry))
        entry.vcard = _vcard(host, user)
        _offline(host, user, entry)
        _private(host, user, entry)
        users.append(entry)
    return users


async def _write(storage: Storage, entry: _User) -> None:
    account = entry.account
    name, domain = account.username, account.domain
    for item in entry.roster:
        await storage.put_roster_item(name, domain, item)
    for contact in entry.pending_in:
        presence = Element(
            "presence", ns.CLIENT, {"from": contact, "to": f"{name}@{domain}", "type": "subscribe"}
        )
        await storage.set_pending_in(name, domain, contact, serialize(presence))
    if entry.vcard is not None:
        await storage.set_data(name, domain, "vcard", "vcard", serialize(entry.vcard))
    for msg, stamp in entry.offline:
        await storage.push_offline(name, domain, serialize(msg), stamp, _OFFLINE_LIMIT)
    for fragment in entry.private:
        key = f"{{{fragment.ns}}}{fragment.tag}"
        await storage.set_data(name, domain, "private", key, serialize(fragment))


async def import_prosody(
    storage: Storage,
    root: Path,
    domains: Iterable[str],
    derive: Callable[[str, str], Account],
) -> ImportReport:
    """Create the accounts of the hosts in ``domains`` found in Prosody's data directory
    ``root``, with their data; ``derive(user@domain, password)`` makes the keys of an
    ``internal_plain`` account. Raises ``NotProsodyData`` before writing anything when
    ``root`` is not such a directory or one of its files does not parse."""
    hosts = prosody_hosts(root)
    report = ImportReport()
    wanted = [d.lower() for d in domains]
    for host in sorted(set(hosts) - set(wanted)):
        report.ignored.append(f"host {host}: not imported (not asked for or not served)")
    read = [u for d in wanted if d in hosts for u in _read_host(hosts[d], d, derive, report)]
    if not any(d in hosts for d in wanted):
        raise NotProsodyData(
            f"{root} has no data for {', '.join(wanted)} (it has {', '.join(sorted(hosts))})"
        )
    for entry in read:
        jid = f"{entry.account.username}@{entry.account.domain}"
        try:
            await storage.create_account(entry.account)
        except AccountExists:
            report.skipped.append(f"{jid}: already exists (left as it is)")
            continue
        await _write(storage, entry)
        report.created.append(jid)
    return report
