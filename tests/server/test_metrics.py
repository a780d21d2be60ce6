"""The Prometheus endpoint (issue 14, acceptance 5): fetched during the test with curl (or
urllib where curl is missing), the counters move, and the output parses as Prometheus text
with ``prometheus_client``'s own parser."""

from __future__ import annotations

import asyncio
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from roost.server.app import Server
from tests.helpers import PASSWORDS, RawClient, free_port, start_server

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def fetch(port: int, path: str = "/metrics") -> tuple[int, str]:
    """(status, body) of a GET; curl in a subprocess, so the server's loop keeps running."""
    url = f"http://127.0.0.1:{port}{path}"
    if shutil.which("curl"):
        proc = await asyncio.create_subprocess_exec(
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "10",
            url,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        body, _, status = out.decode().rpartition("\n")
        return int(status), body

    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    return await asyncio.to_thread(get)


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def scrape(port: int) -> Samples:
    status, body = await fetch(port)
    assert status == 200, body
    return parse(body)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_move(tmp_path: Path) -> None:
    port = free_port()
    srv = await start_server(tmp_path, metrics={"port": port})
    try:
        for user in ("alice", "bob"):
            await srv.accounts.create(user, "localhost", PASSWORDS[user])
        before = await scrape(port)
        assert value(before, "roost_sessions", domain="localhost") == 0
        assert value(before, "roost_info", version=__import__("roost").__version__) == 1
        assert value(before, "process_resident_memory_bytes") > 1_000_000
        assert value(before, "roost_memory_rss_bytes") > 1_000_000

        alice = await RawClient.connect(srv)
        await alice.login("alice", PASSWORDS["alice"], "a")
        bob = await RawClient.connect(srv)
        await bob.login("bob", PASSWORDS["bob"], "b")
        bad = await RawClient.connect(srv)
        await bad.open()
        await bad.starttls()
        assert (await bad.auth("alice", "wrong")).tag == "failure"
        for i in range(3):
            await alice.send(
                f"<message to='bob@localhost/b' type='chat'><body>{i}</body></message>"
            )
        for _ in range(3):
            await bob.expect(lambda e: e.tag == "message")
        await alice.ping()

        after = await scrape(port)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert value(after, "roost_sessions", domain="localhost") == 2
        assert value(after, "roost_client_connections") == 3
        assert moved("roost_connections_accepted_total", kind="c2s") == 3
        assert moved("roost_stanzas_received_total", stream="c2s", kind="message") == 3
        assert moved("roost_stanzas_sent_total", stream="c2s", kind="message") == 3
        # binding is negotiation, not a routed stanza: the ping is
        assert moved("roost_stanzas_received_total", stream="c2s", kind="iq") == 1
        assert moved("roost_auth_total", result="success") == 2
        assert moved("roost_auth_total", result="failure") == 1
        routed = moved("roost_routing_seconds_count")
        assert routed == 4
        assert moved("roost_routing_seconds_bucket", le="+Inf") == routed
        assert value(after, "roost_routing_seconds_sum") > 0
        assert moved("roost_storage_seconds_count") >= 2  # credentials, rosters at login

        assert (await fetch(port, "/"))[0] == 404
        for c in (alice, bob, bad):
            await c.close()
    finally:
        await srv.stop()


async def test_off_by_default(server: Server) -> None:
    assert server.metrics is None
    assert server.config.metrics.port == 0
    assert server.config.metrics.interfaces == ("127.0.0.1",)
