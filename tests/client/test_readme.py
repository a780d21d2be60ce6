"""The README's echo bot runs as shown: its code block, unchanged, in a subprocess."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

from roost.client import JID, Client
from tests.helpers import start_server

README = Path(__file__).resolve().parents[2] / "README.md"


def echo_bot_source() -> str:
    section = README.read_text().split("## Client library", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "no python block in the README's Client library section"
    return match.group(1)


async def test_the_readme_echo_bot(tmp_path: Path) -> None:
    source = echo_bot_source()
    assert len(source.strip().splitlines()) < 15
    bot_file = tmp_path / "echo_bot.py"
    bot_file.write_text(source)
    # as beside `make serve`: the certificate under data/certs/, the bot run from there
    server = await start_server(tmp_path / "data")
    await server.accounts.create("bot", "localhost", "secret")
    await server.accounts.create("alice", "localhost", "alice-pw")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(bot_file),
        "bot@localhost",
        "secret",
        f"127.0.0.1:{server.port()}",
        cwd=tmp_path,
    )
    alice = Client(
        "alice@localhost/a",
        "alice-pw",
        server=("127.0.0.1", server.port()),
        cafile=tmp_path / "data" / "certs" / "localhost.crt",
    )
    try:
        await alice.connect()
        with alice.messages() as inbox:
            # stored offline if the bot is not up yet (XEP-0160), delivered when it is
            alice.send_message("bot@localhost", "echo?")
            reply = await inbox.next(20)
        assert reply.body == "echo?" and reply.type == "chat"
        assert reply.from_ is not None and reply.from_.bare == JID.parse("bot@localhost")
    finally:
        await alice.disconnect()
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
        await server.stop()
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
