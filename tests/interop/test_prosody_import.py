"""Moving from Prosody: a data directory made by Debian's ``prosody`` (accounts registered
with ``prosodyctl``, ``authentication = "internal_hashed"``, data stored by Prosody for
slixmpp clients) imported by ``roost import --prosody``; the users then log in to Roost
with their old passwords through slixmpp and aioxmpp and find their roster, vCard, private
XML and offline message.

Prosody kept SCRAM-SHA-1 keys only: slixmpp tries SCRAM-SHA-256, gets
``invalid-mechanism`` and logs in with SCRAM-SHA-1; aioxmpp tries SCRAM-SHA-256, gets
``invalid-mechanism``, falls back to PLAIN, and that login adds the SHA-256 keys, so its
next login is SCRAM-SHA-256 (``ServerStream.hash_unavailable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioxmpp
import aioxmpp.im.p2p
import aioxmpp.roster
import aioxmpp.vcard
import pytest
import slixmpp
from slixmpp.xmlstream import ET

from roost.server.app import Server
from roost.server.config import load_config
from roost.storage.sqlite import SQLiteStorage
from roost.transport.certs import ensure_certificate
from tests.helpers import free_port
from tests.interop.test_prosody_s2s import PROSODY, _wait_port
from tests.interop.test_slixmpp_compat import SLIXMPP_18, _login
from tests.server.test_cli import run_roost

pytestmark = pytest.mark.skipif(PROSODY is None, reason="prosody is not installed")

HOST = "pros.test"
PASSWORDS = {"alice": "alice's old pw", "bob": "bob-pw-ü"}
TIMEOUT = 15.0
BODY = "sent while you were away <&> ü"
PHOTO = b"\x89PNG\r\n\x1a\n not really an image"


def _prosody_config(work: Path, c2s: int) -> str:
    cert, key = ensure_certificate(HOST, work)
    return f"""
run_as_root = true
pidfile = "{work}/prosody.pid"
data_path = "{work}/data"
log = {{ info = "{work}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{
  "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "private"; "offline";
  "vcard_legacy"; "pep"
}}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
VirtualHost "{HOST}"
  ssl = {{ certificate = "{cert}"; key = "{key}" }}
"""


@contextlib.asynccontextmanager
async def _slixmpp(user: str, port: int, *plugins: str) -> AsyncIterator[slixmpp.ClientXMPP]:
    """A slixmpp client logged in (session started) as ``user`` with its old password."""
    xmpp = slixmpp.ClientXMPP(f"{user}@{HOST}", PASSWORDS[user], loop=asyncio.get_running_loop())
    for plugin in plugins:
        xmpp.register_plugin(plugin)
    xmpp.ssl_context.check_hostname = False
    xmpp.ssl_context.verify_mode = ssl.CERT_NONE
    xmpp.enable_plaintext = xmpp.enable_direct_tls = False
    started, ended = asyncio.Event(), asyncio.Event()
    failures: list[str] = []
    xmpp.add_event_handler("session_start", lambda _: started.set())
    xmpp.add_event_handler("disconnected", lambda _: ended.set())
    xmpp.add_event_handler("failed_all_auth", lambda _: ended.set())
    xmpp.add_event_handler("failed_auth", lambda f: failures.append(str(f["condition"])))
    xmpp.connect("127.0.0.1", port)
    waits = [asyncio.ensure_future(e.wait()) for e in (started, ended)]
    await asyncio.wait(waits, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    for w in waits:
        w.cancel()
    assert started.is_set(), f"{user}: no session (SASL failures: {failures})"
    xmpp.sasl_failures = failures  # type: ignore[attr-defined]
    try:
        yield xmpp
    finally:
        xmpp.disconnect(wait=TIMEOUT)
        await asyncio.wait_for(ended.wait(), TIMEOUT)
        task = xmpp._run_out_filters
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _fill_prosody(port: int) -> None:
    """What users leave on a Prosody: alice's roster, vCard and bookmarks; bob's message
    to alice while she is offline, and his subscription request to her."""
    async with _slixmpp("alice", port, "xep_0054", "xep_0049") as alice:  # on Prosody
        await alice.update_roster(f"bob@{HOST}", name="Bob É", groups=["Friends", "Work"])
        vcard = alice.plugin["xep_0054"].stanza.VCardTemp()
        vcard["FN"] = "Alice Ünï"
        vcard["NICKNAME"] = "al"
        vcard["PHOTO"]["TYPE"] = "image/png"
        vcard["PHOTO"]["BINVAL"] = PHOTO  # mod_vcard_legacy keeps it as the PEP avatar
        await alice.plugin["xep_0054"].publish_vcard(vcard, timeout=TIMEOUT)
        bookmarks = ET.fromstring(
            "<storage xmlns='storage:bookmarks'><conference jid='room@muc.pros.test' "
            "name='The room'/></storage>"
        )
        await alice.plugin["xep_0049"].store(bookmarks, timeout=TIMEOUT)
    async with _slixmpp("bob", port, "xep_0030") as bob:
        bob.send_message(mto=f"alice@{HOST}", mbody=BODY, mtype="chat")
        bob.send_presence(pto=f"alice@{HOST}", ptype="subscribe")
        await bob.plugin["xep_0030"].get_info(jid=HOST, timeout=TIMEOUT)  # a barrier


@pytest.fixture
async def prosody_data(tmp_path: Path) -> Path:
    """A Prosody data directory, filled by a real Prosody that has stopped again."""
    assert PROSODY is not None
    work = tmp_path / "prosody"
    work.mkdir()
    port = free_port()
    config = work / "prosody.cfg.lua"
    config.write_text(_prosody_config(work, port))
    for user, password in PASSWORDS.items():
        subprocess.run(
            ["prosodyctl", "--config", str(config), "register", user, HOST, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
    proc = subprocess.Popen(
        [PROSODY, "--config", str(config), "-F"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_port(port, proc, work / "prosody.log")
        await _fill_prosody(port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return work / "data"


def _roost_config(tmp_path: Path) -> Path:
    path = tmp_path / "roost.toml"
    path.write_text(
        f"""\
domains = ["{HOST}"]
data_dir = "roost"

[c2s]
interfaces = ["127.0.0.1"]
port = {free_port()}
direct_tls_port = 0

[s2s]
interfaces = ["127.0.0.1"]
port = 0
"""
    )
    return path


def _aioxmpp(user: str, server: Server) -> Any:
    security = aioxmpp.make_security_layer(PASSWORDS[user], no_verify=True)
    return aioxmpp.Client(
        aioxmpp.JID.fromstr(f"{user}@{HOST}/ax"),
        security,
        override_peer=[("127.0.0.1", server.port(), aioxmpp.connector.STARTTLSConnector())],
    )


async def test_prosody_data_imports_and_its_users_log_in(
    tmp_path: Path, prosody_data: Path
) -> None:
    config = _roost_config(tmp_path)
    done = run_roost(
        "--config", str(config), "import", "--prosody", str(prosody_data), cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "imported 2 accounts from Prosody" in done.stdout
    storage = SQLiteStorage(tmp_path / "roost" / "roost.db")
    await storage.open()
    try:
        roster = await storage.get_roster("alice", HOST)
        assert list(roster.pending_in) == [f"bob@{HOST}"]  # RFC 6121 §3.1.3: kept for her
        for user in PASSWORDS:
            account = await storage.get_account(user, HOST)
            assert account is not None and account.sha256 is None  # SCRAM-SHA-1 keys only
    finally:
        await storage.close()

    server = Server(load_config(config))
    await server.start()
    try:
        # slixmpp: SCRAM-SHA-256 is refused (uncounted), SCRAM-SHA-1 logs in.
        async with _slixmpp("alice", server.port(), "xep_0054") as alice:
            messages: asyncio.Queue[Any] = asyncio.Queue()
            alice.add_event_handler("message", messages.put_nowait)
            assert alice.plugin["feature_mechanisms"].mech.name.startswith("SCRAM-SHA-1")
            assert alice.sasl_failures == ["invalid-mechanism"]  # type: ignore[attr-defined]
            alice.send_presence()  # XEP-0160 §3: offline messages come with presence
            msg = await asyncio.wait_for(messages.get(), TIMEOUT)
            assert msg["body"] == BODY and msg["from"].bare == f"bob@{HOST}"
            delay = msg.xml.find("{urn:xmpp:delay}delay")  # XEP-0203: when Prosody stored it
            assert delay is not None and delay.get("stamp", "").startswith("20")
            await alice.get_roster(timeout=TIMEOUT)
            item = alice.client_roster[f"bob@{HOST}"]
            assert item["name"] == "Bob É" and set(item["groups"]) == {"Friends", "Work"}
            vcard = await alice.plugin["xep_0054"].get_vcard(f"alice@{HOST}", timeout=TIMEOUT)
            assert vcard["vcard_temp"]["FN"] == "Alice Ünï"
            assert vcard["vcard_temp"]["NICKNAME"] == ["al"]
            assert vcard["vcard_temp"]["PHOTO"]["BINVAL"] == PHOTO
            iq = alice.make_iq_get()  # XEP-0049 §2.3 (raw: slixmpp has no stanza for it)
            iq.xml.append(
                ET.fromstring(
                    "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>"
                )
            )
            private = await iq.send(timeout=TIMEOUT)
            conference = private.xml.find(
                "{jabber:iq:private}query/{storage:bookmarks}storage/{storage:bookmarks}conference"
            )
            assert conference.get("jid") == "room@muc.pros.test"
            assert conference.get("name") == "The room"

        if SLIXMPP_18.is_dir():  # Debian 12's poezio: every refusal on its way is uncounted
            line = await _login(
                SLIXMPP_18, server, "alice", domain=HOST, password=PASSWORDS["alice"]
            )
            assert line.startswith("session-started ") and line.endswith(" 1.8.3"), line

        # aioxmpp: SCRAM-SHA-256 is refused, PLAIN logs in and adds the SHA-256 keys ...
        bob = _aioxmpp("bob", server)
        async with bob.connected():
            vcard = await bob.summon(aioxmpp.vcard.VCardService).get_vcard(
                aioxmpp.JID.fromstr(f"alice@{HOST}")
            )
            assert vcard.get_photo_data() == PHOTO  # alice's avatar, from Prosody's PEP
        account = await server.storage.get_account("bob", HOST)
        assert account is not None and account.sha256 is not None
        # ... so its next login is SCRAM-SHA-256 (no failure at all on the way).
        async with _slixmpp("bob", server.port()) as again:
            assert again.plugin["feature_mechanisms"].mech.name.startswith("SCRAM-SHA-256")
            assert again.sasl_failures == []  # type: ignore[attr-defined]
    finally:
        await server.stop()


def test_bad_prosody_directories_are_one_line_errors(tmp_path: Path) -> None:
    """A missing directory, one that is not Prosody's, an unparseable file: exit 2 with
    the reason on one line, nothing imported."""
    config = _roost_config(tmp_path)
    bad = tmp_path / "bad"
    (bad / "pros%2etest" / "accounts").mkdir(parents=True)
    (bad / "pros%2etest" / "accounts" / "eve.dat").write_text("return { os.exit() };\n")
    cases = {
        str(tmp_path / "missing"): "is not a directory",
        str(tmp_path): "is not a Prosody data directory",
        str(bad): "eve.dat: line 1",
    }
    for directory, reason in cases.items():
        done = run_roost("--config", str(config), "import", "--prosody", directory, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert reason in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr
