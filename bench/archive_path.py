"""What the XEP-0313 archive costs per message, without the network (issue 12).

A real ``Server`` (port 0, its SQLite file in a temporary directory) and N local-to-local
chat messages handed to the archive's two hooks as the router calls them: ``outbound`` (the
sender's archive) and ``delivering`` (the recipient's, with its stanza-id), then
``flushed()`` (every row committed). Prints, per message: the CPU of the hooks on the loop
thread, and the CPU of the whole process (the writer task and the SQLite thread included).
The archive grows by 2N rows a repetition, so later repetitions insert into a larger one.

    .venv/bin/python bench/archive_path.py [N] [REPETITIONS]

Run it from the repository root (it uses ``tests.helpers.start_server``); to compare two
builds, put the other one's ``src`` first on ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
import types
from pathlib import Path

from tests.helpers import start_server

from roost.core.jid import JID
from roost.core.xml.parser import parse_fragment

USERS = 20


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(n: int, reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = await start_server(Path(tmp))
        try:
            for i in range(USERS):
                await srv.accounts.create(f"u{i}", "localhost", "password1")
            mam = srv.services["archive"]
            users = [JID.parse(f"u{i}@localhost/r") for i in range(USERS)]
            # outbound() reads only the session's bare JID
            sessions = [types.SimpleNamespace(bare=u.bare) for u in users]
            texts = [
                (
                    k % USERS,
                    (k + 1) % USERS,
                    f"<message xmlns='jabber:client' from='{users[k % USERS]}'"
                    f" to='{users[(k + 1) % USERS].bare}' type='chat' id='m{k}'>"
                    f"<body>rb:1:{1_700_000_000_000_000_000 + k};{'x' * 40}</body></message>",
                )
                for k in range(n)
            ]
            for rep in range(reps):
                stanzas = [(parse_fragment(t), a, b) for a, b, t in texts]
                await mam.flushed()
                start = _cpu()
                hooks = 0.0
                t0 = 0.0
                for i, (stanza, a, b) in enumerate(stanzas):
                    if i % 500 == 0:
                        t0 = time.thread_time()
                    mam.outbound(stanza, sessions[a], users[b].bare)
                    mam.delivering(stanza, users[a], users[b].bare, ())
                    if i % 500 == 499 or i == n - 1:
                        hooks += time.thread_time() - t0
                        await asyncio.sleep(0)  # let the writer run, as the loop would
                await mam.flushed()
                total = _cpu() - start
                print(
                    f"repetition {rep}: {n} messages: hooks {1e6 * hooks / n:.1f} us/msg,"
                    f" process {1e6 * total / n:.1f} us/msg (both archives, committed)"
                )
        finally:
            await srv.stop()


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 20000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 4,
        )
    )
