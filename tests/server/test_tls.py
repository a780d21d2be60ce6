"""Tests for roost.transport: TLS channel bindings over real connections, heap settings."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from roost.transport import tls
from roost.transport.certs import (
    generate_self_signed,
    load_certificate_der,
    load_tls_context_server,
    make_client_context,
)
from roost.transport.tls import channel_bindings, tls_exporter, tls_server_end_point


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    generate_self_signed("localhost", d / "c.crt", d / "c.key")
    return d / "c.crt", d / "c.key"


Bindings = dict[str, bytes]


def _connect(
    pair: tuple[Path, Path], version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
) -> tuple[Bindings, Bindings, Bindings]:
    """One blocking TLS connection on a socketpair -> (server, server via ctypes, client)."""
    server_ctx = load_tls_context_server(*pair)
    server_ctx.maximum_version = version
    client_ctx = make_client_context(verify=True, cafile=pair[0])
    der = load_certificate_der(pair[0])
    a, b = socket.socketpair()
    result: list[Bindings] = []
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                assert s.version() == version.name.replace("_", ".")
                result.append(channel_bindings(s, server_side=True, local_cert_der=der))
                result.append(channel_bindings(s, server_side=True))
                s.sendall(b"x")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    with client_ctx.wrap_socket(b, server_hostname="localhost") as c:
        client = channel_bindings(c, server_side=False)
        assert c.recv(1) == b"x"
    thread.join(10)
    assert not errors, errors
    return result[0], result[1], client


def test_tls13_bindings_match_on_both_ends(pair: tuple[Path, Path]) -> None:
    server, server_ctypes, client = _connect(pair)
    assert set(server) == {"tls-exporter", "tls-server-end-point"}
    assert len(server["tls-exporter"]) == 32
    assert server == client
    assert server_ctypes == server  # our own certificate read back through OpenSSL
    # RFC 5929 §4.1: the certificate is signed with SHA-256, so its SHA-256 hash.
    expected = hashlib.sha256(load_certificate_der(pair[0])).digest()
    assert server["tls-server-end-point"] == expected


def test_exporter_differs_per_connection(pair: tuple[Path, Path]) -> None:
    first = _connect(pair)[0]["tls-exporter"]
    second = _connect(pair)[0]["tls-exporter"]
    assert first != second


def test_tls12_has_no_exporter(pair: tuple[Path, Path]) -> None:
    server, _, client = _connect(pair, ssl.TLSVersion.TLSv1_2)
    assert "tls-exporter" not in server
    assert "tls-exporter" not in client
    assert server["tls-server-end-point"] == client["tls-server-end-point"]


def test_not_connected_gives_none() -> None:
    ctx = make_client_context(verify=False)
    obj = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    assert tls_exporter(obj) is None
    assert tls_server_end_point(obj, server_side=False) is None
    assert channel_bindings(obj, server_side=False) == {}


async def test_asyncio_ssl_object(pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio exposes an ssl.SSLObject (memory BIO); bindings work there too."""
    server_ctx = load_tls_context_server(*pair)
    seen: asyncio.Future[Bindings] = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        obj = writer.get_extra_info("ssl_object")
        seen.set_result(channel_bindings(obj, server_side=True))
        writer.write(b"x")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=server_ctx)
    async with server:
        port = server.sockets[0].getsockname()[1]
        client_ctx = make_client_context(verify=True, cafile=pair[0])
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"),
            10,
        )
        obj = writer.get_extra_info("ssl_object")
        assert isinstance(obj, ssl.SSLObject)
        client = channel_bindings(obj, server_side=False)
        # A layout check that fails (here: the type word is looked for in the wrong place)
        # must make the binding unavailable, not crash.
        monkeypatch.setattr(tls, "_TYPE_OFFSET", 0)
        assert tls_exporter(obj) is None
        monkeypatch.undo()
        assert tls_exporter(obj) == client["tls-exporter"]
        assert await asyncio.wait_for(reader.read(1), 10) == b"x"
        server_side = await asyncio.wait_for(seen, 10)
        writer.close()
        await writer.wait_closed()
    assert len(client["tls-exporter"]) == 32
    assert client == server_side


_HEAP_PROBE = """
import sys
from roost.transport.heap import serve_large_blocks_from_heap
if sys.argv[1] == "on":
    assert serve_large_blocks_from_heap()
block = b"x" * (256 * 1024)  # what a TLS read of uvloop allocates
lo, hi = next(
    (int(a, 16), int(b, 16))
    for a, b in (line.split()[0].split("-") for line in open("/proc/self/maps") if "[heap]" in line)
)
print(lo <= id(block) < hi)
"""


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(("setting", "in_heap"), [("on", "True"), ("off", "False")])
def test_large_read_blocks_come_from_the_heap(setting: str, in_heap: str) -> None:
    """A 256 KiB block is an mmap per allocation by default; from the heap once set."""
    out = subprocess.run(
        [sys.executable, "-c", _HEAP_PROBE, setting], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == in_heap
