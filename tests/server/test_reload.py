"""#14: reloading without a restart (`roost reload`, SIGHUP) against a `roost serve`
subprocess: a new certificate and log level are taken, a broken config is refused while
the old one keeps serving, and what needs a restart is reported."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import time
from pathlib import Path

from roost.transport.certs import generate_self_signed, load_certificate_der
from tests.server.test_cli import START_TIMEOUT, RoostProcess


def _pair(tmp: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    generate_self_signed("localhost", cert, key)
    return cert, key


def _tls_section(cert: Path, key: Path, level: str = "info") -> str:
    return f'\n[tls]\ncert = "{cert}"\nkey = "{key}"\n\n[log]\nlevel = "{level}"\n'


def _served_certificate(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), 5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def _rewrite(proc: RoostProcess, extra: str, c2s_port: int | None = None) -> None:
    text = proc.config.read_text()
    head = text.split("\n[tls]")[0]
    if c2s_port is not None:
        head = head.replace(f"port = {proc.c2s_port}\n", f"port = {c2s_port}\n", 1)
    proc.config.write_text(head + extra)


async def test_reload_takes_a_new_certificate_and_log_level(tmp_path: Path) -> None:
    a, b = _pair(tmp_path, "a"), _pair(tmp_path, "b")
    proc = RoostProcess(tmp_path, _tls_section(*a))
    try:
        proc.start().wait_ready()
        assert _served_certificate(proc.tls_port) == load_certificate_der(a[0])
        _rewrite(proc, _tls_section(*b, level="debug"))
        r = proc.roost("reload")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("reloaded: tls.cert, tls.key, log.level"), r.stdout
        assert _served_certificate(proc.tls_port) == load_certificate_der(b[0])
        assert "not applied" not in r.stdout
        assert proc.terminate() == 0
    finally:
        proc.cleanup()


async def test_a_broken_config_is_refused_and_the_old_one_keeps_serving(tmp_path: Path) -> None:
    proc = RoostProcess(tmp_path, _tls_section(*_pair(tmp_path, "a")))
    try:
        proc.start().wait_ready()
        proc.add_user("alice@localhost", "alice-pw")
        good = proc.config.read_text()
        proc.config.write_text(good.replace(f"port = {proc.c2s_port}\n", 'port = "abc"\n', 1))
        r = proc.roost("reload")  # the CLI reads the file first: refused before asking
        assert r.returncode == 2 and "c2s.port" in r.stderr, r.stderr
        proc.send_signal(signal.SIGHUP)  # the server reads it itself: refused, logged
        deadline = time.monotonic() + START_TIMEOUT
        while "reload refused" not in proc.stderr:
            assert time.monotonic() < deadline, proc.stderr
            await asyncio.to_thread(proc._queue.get, True, 1.0)
        refused = next(line for line in proc.lines if "reload refused" in line)
        assert "c2s.port" in refused and "old configuration keeps running" in refused
        alice = await proc.login("alice", "alice-pw")  # still serving, as before
        await alice.close()
        # a new port cannot be taken live: said, and the rest applied
        proc.config.write_text(good.replace(f"port = {proc.c2s_port}\n", "port = 1\n", 1))
        r = proc.roost("reload")
        assert r.returncode == 0, r.stderr
        assert "not applied until a restart: c2s.port" in r.stdout
        alice = await proc.login("alice", "alice-pw", "again")  # on the old port
        await alice.close()
        assert proc.terminate() == 0
    finally:
        proc.cleanup()


async def test_sighup_reloads(tmp_path: Path) -> None:
    a, b = _pair(tmp_path, "a"), _pair(tmp_path, "b")
    proc = RoostProcess(tmp_path, _tls_section(*a))
    try:
        proc.start().wait_ready()
        _rewrite(proc, _tls_section(*b))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + START_TIMEOUT
        while "configuration reloaded" not in proc.stderr:
            assert time.monotonic() < deadline, proc.stderr
            await asyncio.to_thread(proc._queue.get, True, 1.0)
        assert _served_certificate(proc.tls_port) == load_certificate_der(b[0])
        assert proc.proc is not None and proc.proc.poll() is None
        assert proc.terminate() == 0
    finally:
        proc.cleanup()
