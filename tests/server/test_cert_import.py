"""#14: `roost cert import` finds certificates as certbot lays them out, puts each served
domain's in data_dir/certs, and a running server follows their renewal."""

from __future__ import annotations

import asyncio
import datetime
import os
import pwd
import socket
import ssl
import stat
from pathlib import Path

import pytest
import trustme

from roost.transport.certs import load_certificate_der
from roost.transport.certstore import import_certificates
from tests.helpers import eventually, start_server
from tests.server.test_cli import run_roost, write_config


def _certbot(live: Path, name: str, *identities: str, ca: trustme.CA | None = None) -> Path:
    """``live/NAME/fullchain.pem`` and ``privkey.pem``, as certbot writes them."""
    issued = (ca or trustme.CA()).issue_cert(*identities)
    d = live / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "fullchain.pem").write_bytes(b"".join(b.bytes() for b in issued.cert_chain_pems))
    (d / "privkey.pem").write_bytes(issued.private_key_pem.bytes())
    return d


def test_import_from_a_certbot_directory(tmp_path: Path) -> None:
    le = tmp_path / "letsencrypt"
    _certbot(le / "live", "example.org", "example.org")
    _certbot(le / "live", "wild", "*.example.net")
    _certbot(le / "live", "unrelated.test", "unrelated.test")
    config = write_config(tmp_path, 0, 0, name="roost.toml")
    config.write_text(
        config.read_text().replace(
            'domains = ["localhost"]', 'domains = ["example.org", "chat.example.net", "localhost"]'
        )
    )
    r = run_roost("cert", "import", str(le), "--config", str(config), cwd=tmp_path)
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"example.org: imported {le / 'live/example.org/fullchain.pem'}")
    assert lines[1].startswith(f"chat.example.net: imported {le / 'live/wild/fullchain.pem'}")
    assert lines[2] == f"localhost: no certificate in {le} names it"
    assert r.returncode == 1  # not every domain got one
    certs = tmp_path / "data" / "certs"
    assert load_certificate_der(certs / "example.org.crt") == load_certificate_der(
        le / "live/example.org/fullchain.pem"
    )
    assert stat.S_IMODE(os.stat(certs / "example.org.key").st_mode) == 0o600
    r = run_roost(
        "cert", "import", str(tmp_path / "nowhere"), "--config", str(config), cwd=tmp_path
    )
    assert r.returncode == 1 and r.stderr.strip().endswith("is not a directory"), r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_imported_as_root_the_copies_belong_to_the_data_dir_owner(tmp_path: Path) -> None:
    """certbot's deploy hook runs ``roost cert import`` as root; the server runs as the
    owner of data_dir and must be able to read the key it copied."""
    nobody = pwd.getpwnam("nobody")
    le = tmp_path / "letsencrypt"
    _certbot(le / "live", "localhost", "localhost")
    config = write_config(tmp_path, 0, 0, name="roost.toml")
    (tmp_path / "data").mkdir()
    os.chown(tmp_path / "data", nobody.pw_uid, nobody.pw_gid)
    r = run_roost("cert", "import", str(le), "--config", str(config), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    certs = tmp_path / "data" / "certs"
    for path in (certs, certs / "localhost.crt", certs / "localhost.key"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)


def test_an_expired_certificate_is_not_imported(tmp_path: Path) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert(
        "example.org", not_after=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    )
    d = tmp_path / "live" / "example.org"
    d.mkdir(parents=True)
    (d / "fullchain.pem").write_bytes(b"".join(b.bytes() for b in issued.cert_chain_pems))
    (d / "privkey.pem").write_bytes(issued.private_key_pem.bytes())
    (result,) = import_certificates(tmp_path, ["example.org"], tmp_path / "data")
    assert result.problem is not None and "expired" in result.problem
    assert not (tmp_path / "data" / "certs" / "example.org.crt").exists()


def _served(port: int, name: str) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), 5) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


async def test_a_running_server_follows_a_renewal(tmp_path: Path) -> None:
    live = tmp_path / "live"
    first = _certbot(live, "example.org", "example.org")
    results = import_certificates(tmp_path, ["example.org"], tmp_path / "data")
    assert results[0].problem is None
    srv = await start_server(
        tmp_path / "data",
        domains=["example.org"],
        tls={"renewal_check": 0.1},
        s2s={"enabled": False},
    )
    try:
        port = srv.port(direct_tls=True)
        before = await asyncio.to_thread(_served, port, "example.org")
        assert before == load_certificate_der(first / "fullchain.pem")
        renewed = _certbot(live, "example.org", "example.org")  # certbot renew
        future = os.stat(renewed / "fullchain.pem").st_mtime + 10
        os.utime(renewed / "fullchain.pem", (future, future))
        want = load_certificate_der(renewed / "fullchain.pem")

        async def renewed_served() -> bool:
            return await asyncio.to_thread(_served, port, "example.org") == want

        await eventually(renewed_served, "the renewed certificate to be served")
    finally:
        await srv.stop()
