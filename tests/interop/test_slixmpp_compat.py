"""Interop: older slixmpp releases that clients still ship with, in a subprocess.

slixmpp 1.8.3 is what Debian 12's poezio runs. ``make test`` installs it beside the test
venv's own slixmpp (``.venv/compat/slixmpp-1.8``); it runs in its own interpreter with that
directory first on ``PYTHONPATH``, so the two versions never meet in one process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from roost.server.app import Server
from tests.conftest import PASSWORDS

SLIXMPP_18 = Path(sys.prefix) / "compat" / "slixmpp-1.8"
SCRIPT = Path(__file__).parent / "compat" / "slixmpp_login.py"


async def _login(
    path: Path, server: Server, user: str, *, domain: str = "localhost", password: str = ""
) -> str:
    env = {**os.environ, "PYTHONPATH": str(path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        f"{user}@{domain}",
        password or PASSWORDS[user],
        str(server.port()),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 40)
    return out.decode().strip()


@pytest.mark.skipif(not SLIXMPP_18.is_dir(), reason="slixmpp 1.8 not installed (make test does)")
async def test_slixmpp_18_logs_in_on_tls13(server: Server) -> None:
    """Issue 14: slixmpp 1.8.3 on TLS 1.3 offers SCRAM-*-PLUS with ``tls-unique``, then SCRAM
    with the "y" flag, then PLAIN; the refusals must not use up ``max_sasl_attempts`` (3)."""
    line = await _login(SLIXMPP_18, server, "alice")
    assert line == "session-started PLAIN 1.8.3", line
