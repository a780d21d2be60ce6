"""Log in with whatever slixmpp is first on ``sys.path`` and print how it went.

Run as a subprocess by ``tests/interop/test_slixmpp_compat.py`` with an older slixmpp on
``PYTHONPATH`` (the test venv's own slixmpp is newer). Arguments: JID PASSWORD PORT.
Prints one line: ``session-started MECHANISM VERSION`` or ``failed CONDITIONS``.
"""

from __future__ import annotations

import asyncio
import ssl
import sys

import slixmpp


async def main(jid: str, password: str, port: int) -> int:
    xmpp = slixmpp.ClientXMPP(jid, password)
    xmpp.ssl_context.check_hostname = False
    xmpp.ssl_context.verify_mode = ssl.CERT_NONE
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    failures: list[str] = []

    def started(_: object) -> None:
        mech = xmpp.plugin["feature_mechanisms"].mech.name
        if not done.done():
            done.set_result(f"session-started {mech} {slixmpp.__version__}")

    def failed(stanza: object) -> None:
        failures.append(str(stanza["condition"]))  # type: ignore[index]

    def gave_up(_: object) -> None:
        if not done.done():
            done.set_result("failed " + ",".join(failures))

    xmpp.add_event_handler("session_start", started)
    xmpp.add_event_handler("failed_auth", failed)
    xmpp.add_event_handler("failed_all_auth", gave_up)
    xmpp.add_event_handler("disconnected", gave_up)
    xmpp.connect(("127.0.0.1", port))
    try:
        print(await asyncio.wait_for(done, 20), flush=True)
    except TimeoutError:
        print("failed timeout " + ",".join(failures), flush=True)
    xmpp.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
