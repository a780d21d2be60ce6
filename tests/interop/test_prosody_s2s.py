"""Federation with Prosody (Debian's ``prosody``) on loopback: a user on each side.

Prosody finds ``roost.example`` through DNS: its resolver (libunbound) is pointed at a loopback
DNS server in this test that has the SRV and A records (not a ``.test`` name: unbound
answers those itself, RFC 6761); Roost finds ``prosody.test``
through ``s2s.routes``. Both use self-signed certificates, so Server Dialback authenticates
each to the other (Prosody: ``s2s_secure_auth = {secure}``; Roost:
``s2s.require_valid_certs = false``); TLS is required on both sides.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from roost.server.app import Server
from roost.server.config import config_from_dict
from roost.server.streams.s2s import S2SInboundConnection, S2SOutboundConnection
from roost.transport.certs import ensure_certificate
from tests.helpers import LoopbackDNS, RawClient, free_port
from tests.interop.test_slixmpp_federation import TIMEOUT, User, next_matching
from tests.server.test_federation import PASSWORD

PROSODY = shutil.which("prosody")
pytestmark = pytest.mark.skipif(
    PROSODY is None and not os.environ.get("CI"),
    reason="prosody is not installed (CI installs it: .ci/run)",
)


@dataclass
class Sides:
    roost: Server
    prosody_c2s: int
    mode: str


def _ca(tmp_path: Path) -> dict[str, dict[str, Path]]:
    """A test CA, and certificates from it for both servers."""
    import trustme

    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    out = {}
    for domain in ("prosody.test", "roost.example"):
        issued = ca.issue_cert(domain)
        crt, key = tmp_path / f"{domain}.crt", tmp_path / f"{domain}.key"
        for blob in issued.cert_chain_pems:
            blob.write_to_path(str(crt), append=True)
        issued.private_key_pem.write_to_path(str(key))
        out[domain] = {"cert": crt, "key": key, "ca": ca_path}
    return out


def _prosody_config(
    work: Path, c2s: int, s2s: int, dns: int, certs: dict[str, Path] | None, *, bidi: bool
) -> str:
    if certs is None:
        cert, key = ensure_certificate("prosody.test", work)
        ssl_extra, secure = "", "false"
    else:
        cert, key = certs["cert"], certs["key"]
        ssl_extra, secure = f'; cafile = "{certs["ca"]}"', "true"
    extra_modules = '; "s2s_bidi"' if bidi else ""
    return f"""
daemonize = false
run_as_root = true
pidfile = "{work}/prosody.pid"
data_path = "{work}/data"
log = {{ info = "{work}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ {s2s} }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{
  "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "posix"{extra_modules}
}}
modules_disabled = {{ "offline" }}
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = {secure}
unbound = {{ forward = "127.0.0.1@{dns}"; resolvconf = false; hoststxt = false }}
VirtualHost "prosody.test"
  ssl = {{ certificate = "{cert}"; key = "{key}"{ssl_extra} }}
"""


async def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            pass
        assert proc.poll() is None, f"prosody exited: {log.read_text() if log.exists() else ''}"
        assert loop.time() < deadline, "prosody did not start"
        await asyncio.sleep(0.1)


@pytest.fixture(params=["dialback", "certificates", "bidi"])
async def sides(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Sides]:
    """``dialback``: self-signed certificates on both sides; ``certificates``: both from a
    CA both trust, and neither accepts dialback, so SASL EXTERNAL must carry it; ``bidi``:
    dialback, and Prosody's mod_s2s_bidi loaded (XEP-0288: one stream both ways)."""
    mode: str = request.param
    certs = _ca(tmp_path) if mode == "certificates" else None
    assert PROSODY is not None, "prosody is not installed"
    p_c2s, p_s2s, r_s2s = free_port(), free_port(), free_port()
    dns = LoopbackDNS(
        srv={"_xmpp-server._tcp.roost.example.": [(0, 5, r_s2s, "roost.example.")]},
        a={"roost.example.": "127.0.0.1"},
    )
    dns_port = await dns.start()
    work = tmp_path / "prosody"
    work.mkdir()
    config = work / "prosody.cfg.lua"
    config.write_text(
        _prosody_config(
            work, p_c2s, p_s2s, dns_port, certs and certs["prosody.test"], bidi=mode == "bidi"
        )
    )
    subprocess.run(
        ["prosodyctl", "--config", str(config), "register", "bob", "prosody.test", PASSWORD],
        check=True,
        capture_output=True,
        timeout=30,
    )
    proc = subprocess.Popen(
        [PROSODY, "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    roost: Server | None = None
    try:
        await _wait_port(p_s2s, proc, work / "prosody.log")
        data = {
            "domains": ["roost.example"],
            "data_dir": str(tmp_path / "roost"),
            "c2s": {"port": 0, "direct_tls_port": 0, "interfaces": ["127.0.0.1"]},
            "auth": {"scram_iterations": 4096},
            "s2s": {
                "enabled": True,
                "port": r_s2s,
                "interfaces": ["127.0.0.1"],
                "require_valid_certs": False,
                "routes": {"prosody.test": f"127.0.0.1:{p_s2s}"},
            },
        }
        if certs is not None:
            mine = certs["roost.example"]
            data["tls"] = {"cert": str(mine["cert"]), "key": str(mine["key"])}
            data["s2s"].update(  # type: ignore[attr-defined]
                {"require_valid_certs": True, "ca_file": str(mine["ca"]), "dialback": False}
            )
        roost = Server(config_from_dict(data, tmp_path))
        await roost.start()
        await roost.accounts.create("alice", "roost.example", PASSWORD)
        yield Sides(roost, p_c2s, mode)
    finally:
        if roost is not None:
            await roost.stop()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        dns.stop()


async def test_users_on_roost_and_prosody_chat_and_share_presence(sides: Sides) -> None:
    bob = User(sides.prosody_c2s, "bob@prosody.test/s", answer_subscriptions=False)
    await bob.start()
    alice = await RawClient.connect(sides.roost.port())
    await alice.login("alice", PASSWORD, "r", domain="roost.example")
    await alice.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
    await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "r1")
    await alice.send("<presence/>")
    try:
        # Roost -> Prosody: a message (Roost's outgoing stream, Prosody verifies by dialback)
        await alice.send(
            "<message to='bob@prosody.test/s' id='m1' type='chat'>"
            "<body>hi from Roost</body></message>"
        )
        got = await next_matching(bob.messages, lambda m: m["id"] == "m1")
        assert str(got["from"]) == "alice@roost.example/r" and got["body"] == "hi from Roost"
        # Prosody -> Roost: the reply (Prosody finds roost.example by SRV; Roost verifies it)
        bob.xmpp.send_message(mto="alice@roost.example/r", mbody="hi from Prosody", mtype="chat")
        got = await asyncio.wait_for(alice.expect(lambda e: e.tag == "message"), TIMEOUT)
        assert got.get("from") == "bob@prosody.test/s"
        body = got.find("body")
        assert body is not None and body.text == "hi from Prosody"
        # a subscription across the two servers, and presence once approved
        await alice.send("<presence to='bob@prosody.test' type='subscribe'/>")
        request = await next_matching(bob.presences, lambda p: p["type"] == "subscribe")
        assert str(request["from"]) == "alice@roost.example"
        bob.xmpp.send_presence(pto="alice@roost.example", ptype="subscribed")
        got = await asyncio.wait_for(
            alice.expect(lambda e: e.tag == "presence" and e.get("from") == "bob@prosody.test/s"),
            TIMEOUT,
        )
        assert got.get("type") is None  # bob's available presence, now that alice may see it
        assert sides.roost.federation is not None
        route = sides.roost.federation.routes[("roost.example", "prosody.test")]
        assert route.method == ("external" if sides.mode == "certificates" else "dialback")
        # streams carrying stanzas: one each way, or with bidi one for both (whichever
        # side's came up first; Prosody's verifying stream also authenticates itself)
        carrying = [
            c
            for c in sides.roost.federation.connections
            if not c.stream.closed
            and (
                (isinstance(c, S2SInboundConnection) and c.stream.authorized)
                or (isinstance(c, S2SOutboundConnection) and c.stream.verify is None)
            )
        ]
        assert len(carrying) == (1 if sides.mode == "bidi" else 2), carrying
        assert route.bidi == isinstance(route.conn, S2SInboundConnection)
    finally:
        bob.xmpp.disconnect()
        await alice.close()


@pytest.mark.parametrize("sides", ["bidi"], indirect=True)
async def test_roost_answers_on_the_stream_prosody_opened(sides: Sides) -> None:
    """XEP-0288, Roost as the receiving server: Prosody writes first and asks for bidi;
    Roost's reply goes back on Prosody's stream, and Roost opens no stream of its own."""
    bob = User(sides.prosody_c2s, "bob@prosody.test/s", answer_subscriptions=False)
    await bob.start()
    alice = await RawClient.connect(sides.roost.port())
    await alice.login("alice", PASSWORD, "r", domain="roost.example")
    try:
        bob.xmpp.send_message(mto="alice@roost.example/r", mbody="you first", mtype="chat")
        got = await asyncio.wait_for(alice.expect(lambda e: e.tag == "message"), TIMEOUT)
        assert got.get("from") == "bob@prosody.test/s"
        await alice.send(
            "<message to='bob@prosody.test/s' id='m1' type='chat'><body>on your stream</body>"
            "</message>"
        )
        answer = await next_matching(bob.messages, lambda m: m["id"] == "m1")
        assert answer["body"] == "on your stream"
        assert sides.roost.federation is not None
        route = sides.roost.federation.routes[("roost.example", "prosody.test")]
        assert isinstance(route.conn, S2SInboundConnection) and route.bidi
        assert not any(
            isinstance(c, S2SOutboundConnection) and c.stream.verify is None
            for c in sides.roost.federation.connections
        )
    finally:
        bob.xmpp.disconnect()
        await alice.close()
