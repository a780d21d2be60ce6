"""Dual-stack listeners by default: IPv6 (``::``) beside IPv4 (``0.0.0.0``), and a server that
still starts where IPv6 is turned off."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from roost.server.app import Server
from roost.server.config import ALL_INTERFACES, config_from_dict
from roost.transport.listeners import ipv6_missing
from tests.helpers import STREAM_HEADER, TIMEOUT, free_port

ROOT = Path(__file__).resolve().parents[2]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _default_listeners_config(data_dir: Path) -> dict[str, object]:
    """The built-in interfaces (no ``interfaces`` key), on fixed free ports."""
    return {
        "domains": ["localhost"],
        "data_dir": str(data_dir),
        "c2s": {"port": free_port(), "direct_tls_port": 0},
        "s2s": {"enabled": False},
        "auth": {"scram_iterations": 4096},
    }


async def _features_over(host: str, port: int) -> bytes:
    """Open a stream to ``host`` and read until the server's features arrive."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
    writer.write(STREAM_HEADER.format(to="localhost").encode())
    data = b""
    while b"</stream:features>" not in data:
        chunk = await asyncio.wait_for(reader.read(4096), TIMEOUT)
        assert chunk, data
        data += chunk
    writer.close()
    return data


def test_default_interfaces_are_dual_stack() -> None:
    assert ALL_INTERFACES == ("::", "0.0.0.0")
    config = config_from_dict({}, Path("."))
    assert config.c2s.interfaces == ALL_INTERFACES
    assert config.s2s.interfaces == ALL_INTERFACES


def test_only_the_ipv6_wildcard_may_be_missing() -> None:
    assert ipv6_missing("::", OSError(errno.EAFNOSUPPORT, "Address family not supported"))
    assert not ipv6_missing("::1", OSError(errno.EAFNOSUPPORT, "Address family not supported"))
    assert not ipv6_missing("::", OSError(errno.EADDRINUSE, "Address already in use"))


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
async def test_clients_reach_the_default_listeners_over_ipv6_and_ipv4(tmp_path: Path) -> None:
    """Issue 14: clients that resolve ``localhost`` to ``::1`` first must connect."""
    server = Server(config_from_dict(_default_listeners_config(tmp_path), tmp_path))
    await server.start()
    try:
        port = server.port()
        assert {(lst.host, lst.port) for lst in server.listeners} == {
            ("::", port),
            ("0.0.0.0", port),
        }
        for host in ("::1", "127.0.0.1"):
            assert b"<starttls" in await _features_over(host, port), host
    finally:
        await server.stop()


_NO_IPV6_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from roost.server.app import Server
    from roost.server.config import config_from_dict
    from tests.server.test_ipv6 import _default_listeners_config, _features_over

    async def main():
        data = Path({data!r})
        server = Server(config_from_dict(_default_listeners_config(data), data))
        await server.start()
        try:
            features = await _features_over("127.0.0.1", server.port())
            print("ok" if b"<starttls" in features else "no features")
        finally:
            await server.stop()

    asyncio.run(main())
    """
)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for a network namespace without IPv6",
)
def test_default_listeners_start_where_ipv6_is_off(tmp_path: Path) -> None:
    """In a network namespace with IPv6 disabled (as in many containers) the default
    listeners still start and serve IPv4."""
    script = _NO_IPV6_SCRIPT.format(root=str(ROOT), data=str(tmp_path))
    sysctls = " ".join(
        f"net.ipv6.conf.{i}.disable_ipv6=1" for i in ("all", "default", "lo")
    )
    shell = f"ip link set lo up && sysctl -qw {sysctls} && exec {sys.executable} -c \"$0\""
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "true"], capture_output=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"unshare -n is not permitted here: {probe.stderr.decode().strip()}")
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", shell, script],
        capture_output=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.stdout.decode().strip() == "ok", done.stderr.decode()[-2000:]
