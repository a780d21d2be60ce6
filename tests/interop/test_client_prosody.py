"""Interop: the Roost client library logs in to Prosody (Debian's ``prosody``) on loopback.

Prosody serves ``prosody.test`` with a certificate from a test CA (``trustme``), which the
client trusts with ``cafile``: the full verification path (chain and name) against another
implementation. Two library clients then exchange messages, manage the roster and ping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from roost.client import JID, AuthenticationFailed, Client, RosterChanged
from tests.helpers import free_port
from tests.interop.test_prosody_s2s import _wait_port

PROSODY = shutil.which("prosody")
pytestmark = pytest.mark.skipif(
    PROSODY is None and not os.environ.get("CI"),
    reason="prosody is not installed (CI installs it: .ci/run)",
)
T = 10.0


@dataclass
class Prosody:
    port: int
    ca: Path


def _config(work: Path, c2s: int, cert: Path, key: Path) -> str:
    return f"""
daemonize = false
run_as_root = true
pidfile = "{work}/prosody.pid"
data_path = "{work}/data"
log = {{ info = "{work}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "version" }}
modules_disabled = {{ "offline"; "s2s" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
VirtualHost "prosody.test"
  ssl = {{ certificate = "{cert}"; key = "{key}" }}
"""


@pytest.fixture
async def prosody(tmp_path: Path) -> AsyncIterator[Prosody]:
    import trustme

    assert PROSODY is not None, "prosody is not installed"
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    issued = ca.issue_cert("prosody.test")
    crt, key = tmp_path / "prosody.test.crt", tmp_path / "prosody.test.key"
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(crt), append=True)
    issued.private_key_pem.write_to_path(str(key))
    work = tmp_path / "prosody"
    work.mkdir()
    port = free_port()
    config = work / "prosody.cfg.lua"
    config.write_text(_config(work, port, crt, key))
    for user in ("alice", "bob"):
        subprocess.run(
            ["prosodyctl", "--config", str(config), "register", user, "prosody.test", f"{user}-pw"],
            check=True,
            capture_output=True,
            timeout=30,
        )
    proc = subprocess.Popen(
        [PROSODY, "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await _wait_port(port, proc, work / "prosody.log")
        yield Prosody(port, ca_path)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _client(p: Prosody, user: str, password: str | None = None) -> Client:
    return Client(
        f"{user}@prosody.test/lib",
        password or f"{user}-pw",
        server=("127.0.0.1", p.port),
        cafile=p.ca,
        timeout=T,
        request_timeout=T,
        reconnect=False,
    )


async def test_the_library_logs_in_to_prosody_and_chats(prosody: Prosody) -> None:
    alice, bob = _client(prosody, "alice"), _client(prosody, "bob")
    try:
        await alice.connect()
        await bob.connect()
        # (Debian 12's Prosody 0.12.3 offers SCRAM-SHA-1 without -PLUS and PLAIN: SCRAM wins)
        assert alice.mechanism is not None and alice.mechanism.startswith("SCRAM-")
        with bob.messages() as inbox:
            alice.send_message("bob@prosody.test/lib", "hello from roost.client")
            msg = await inbox.next(T)
        assert msg.body == "hello from roost.client"
        assert msg.from_ == JID.parse("alice@prosody.test/lib")
        with alice.events(RosterChanged) as changes:
            await alice.roster.add("bob@prosody.test", name="Bob")
            change = await changes.next(T)
        assert isinstance(change, RosterChanged) and change.item.name == "Bob"
        assert await alice.ping() >= 0
        version = await alice.software_version()
        assert version.name.lower().startswith("prosody")
        info = await alice.disco.info()
        assert "urn:xmpp:ping" in info.features
    finally:
        await alice.disconnect()
        await bob.disconnect()


async def test_wrong_password_at_prosody(prosody: Prosody) -> None:
    client = _client(prosody, "alice", password="wrong")
    with pytest.raises(AuthenticationFailed) as info:
        await client.connect()
    assert info.value.condition == "not-authorized"
