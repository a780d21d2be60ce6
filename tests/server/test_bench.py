"""``roost bench``: every scenario at a tiny size against a real in-process server.

The bench parent runs in a thread (it blocks on its worker queue) while the server keeps
serving on the test's event loop; the workers are real processes connecting over loopback.
``--server-pid`` is this process, so the server figures come from our own /proc entries.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from roost.bench.options import BenchOptions
from roost.bench.provision import check_layout, contacts_of, provision
from roost.bench.report import render, write_json
from roost.bench.runner import run_bench, split_indices
from roost.cli import main
from roost.server import events
from roost.server.app import Server
from roost.server.session import Session
from roost.storage.sqlite import SQLiteStorage
from tests.helpers import start_server

PASSWORD = "bench"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(
        tmp_path,
        c2s={"max_connections_per_ip": 1000},
        registration={"enabled": True, "rate_per_ip": 1000},
    )
    yield srv
    await srv.stop()


async def provisioned(server: Server, users: int, contacts: int = 0) -> None:
    await provision(
        server.storage,
        domain="localhost",
        users=users,
        contacts=contacts,
        prefix="bench",
        password=PASSWORD,
        iterations=4096,
    )


def options(server: Server, scenario: str, **kw: Any) -> BenchOptions:
    base: dict[str, Any] = {
        "scenario": scenario,
        "host": "127.0.0.1",
        "port": server.port(),
        "domain": "localhost",
        "users": 6,
        "insecure": True,
        "quiet": True,
        "server_pid": os.getpid(),
        "timeout": 10.0,
        "login_timeout": 20.0,
    }
    base.update(kw)
    return BenchOptions(**base)


async def bench(opts: BenchOptions) -> dict[str, Any]:
    result = await asyncio.wait_for(asyncio.to_thread(run_bench, opts), 60)
    json.dumps(result)  # always serialisable
    assert render(result)
    return result


def check_logins(result: dict[str, Any], users: int) -> None:
    login = result["login"]
    assert login["ok"] == login["attempted"] == users, login["errors"]
    assert login["failed"] == 0
    assert login["logins_per_s"] > 0
    assert 0 < login["p50_ms"] <= login["p99_ms"]
    assert login["mechanisms"] == {"SCRAM-SHA-256-PLUS": users}
    assert login["server_cpu_ms_per_login"] is not None and login["server_cpu_ms_per_login"] >= 0


async def test_login(server: Server, tmp_path: Path) -> None:
    await provisioned(server, 6)
    result = await bench(options(server, "login", json_path=str(tmp_path / "r.json")))
    check_logins(result, 6)
    write_json(str(tmp_path / "r.json"), result)
    assert json.loads((tmp_path / "r.json").read_text())["login"]["ok"] == 6
    assert "password" not in result["options"]


async def test_cli_runs_a_scenario(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await provisioned(server, 4)
    out = tmp_path / "login.json"
    argv = ["bench", "login", "--server", f"127.0.0.1:{server.port()}", "--users", "4"]
    argv += ["--insecure", "--quiet", "--json", str(out), "--server-pid", str(os.getpid())]
    assert await asyncio.wait_for(asyncio.to_thread(main, argv), 60) == 0
    text = capsys.readouterr().out
    assert "sessions logged in" in text and "4/4" in text
    data = json.loads(out.read_text())
    assert data["scenario"] == "login" and data["login"]["ok"] == 4


async def test_cli_exits_1_when_no_login_succeeds(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: a run where every login failed is a failure of the command."""
    await provisioned(server, 2)
    argv = ["bench", "login", "--server", f"127.0.0.1:{server.port()}", "--users", "2"]
    argv += ["--insecure", "--quiet", "--password", "wrong", "--loop", "asyncio"]
    assert await asyncio.wait_for(asyncio.to_thread(main, argv), 60) == 1
    assert "0/2" in capsys.readouterr().out


async def test_login_direct_tls_two_procs(server: Server) -> None:
    await provisioned(server, 6)
    result = await bench(
        options(server, "login", tls="direct", port=server.port(direct_tls=True), procs=2)
    )
    check_logins(result, 6)


async def test_login_wrong_password(server: Server) -> None:
    await provisioned(server, 2)
    result = await bench(options(server, "login", users=2, password="wrong", loop="asyncio"))
    assert result["login"]["ok"] == 0
    assert result["login"]["errors"] == {"authentication failed: not-authorized": 2}
    assert "no session logged in" in result["notes"][0]


async def test_idle_reports_memory_per_session(server: Server) -> None:
    await provisioned(server, 6)
    result = await bench(options(server, "idle", duration=0.5))
    check_logins(result, 6)
    idle = result["idle"]
    assert idle["sessions"] == 6 and idle["seconds"] >= 0.5
    assert isinstance(idle["rss_per_session_kib"], float)
    assert idle["rss_after_mib"] > 0 and idle["server_cpu_ms_per_s"] >= 0


async def test_messages_steps(server: Server) -> None:
    await provisioned(server, 6)
    result = await bench(
        options(server, "messages", procs=2, rates=(30, 60), step_seconds=1.0, drain=0.5)
    )
    check_logins(result, 6)
    steps = result["steps"]
    assert [s["rate"] for s in steps] == [30, 60]  # the 1 s warm-up is not a step
    for s in steps:
        assert 0.95 * s["rate"] <= s["sent"] <= 1.05 * s["rate"], s  # nor counted in one
        assert s["steal_pct"] is not None and 0 <= s["steal_pct"] <= 100
        assert s["delivered"] == s["sent"] and s["late"] == 0
        assert 0 < s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] < 200
        assert s["server_cpu_ms_per_1000"] is not None and s["server_cpu_ms_per_1000"] > 0
        assert s["ok"], s["why"]
    assert result["max_sustainable_rate"] == 60


async def test_messages_with_stream_management_and_carbons(server: Server) -> None:
    """#12 acceptance 6: every session enables XEP-0198 and XEP-0280; the load generator
    answers the server's <r/> from its byte scanner, so nothing piles up unacknowledged."""
    await provisioned(server, 6)
    ended: list[tuple[int, int]] = []

    def closed(session: Session, error: object) -> None:
        assert session.sm is not None
        ended.append((session.sm.acked, len(session.sm.unacked)))

    server.bus.observe(events.SESSION_CLOSED, closed, 0, "test")
    result = await bench(
        options(server, "messages", rates=(60,), step_seconds=1.0, drain=0.5, sm=True, carbons=True)
    )
    check_logins(result, 6)
    (step,) = result["steps"]
    assert step["delivered"] == step["sent"] > 0 and step["ok"], step
    await server.idle()
    assert len(ended) == 6
    for acked, unacked in ended:
        # acks came back: at the end at most the last few in flight are unacknowledged
        assert acked > 0 and unacked < 20, (acked, unacked)


async def test_presence_fanout(server: Server) -> None:
    await provisioned(server, 6, contacts=2)
    result = await bench(
        options(server, "presence", presence_rate=12.0, duration=1.0, drain=0.5, contacts=2)
    )
    check_logins(result, 6)
    pres = result["presence"]
    assert pres["sent"] >= 10
    # RFC 6121 §4.4.2: two contacts and the sender's own resource get each change
    assert pres["received"] == pres["expected"] == 3 * pres["sent"]
    assert pres["fanout_per_s"] > 0 and pres["fanout_per_change"] == 3.0


async def test_muc_fanout(server: Server) -> None:
    """#13 acceptance 4 at a tiny size: five occupants of one room (the first creates it as
    an instant room, XEP-0045 §10.1.2), each sending 2 groupchat messages a second; every
    message reaches all five (§7.4), and no history is replayed on joining (§7.2.15)."""
    await provisioned(server, 5)
    result = await bench(
        options(
            server, "muc", users=5, occupant_rates=(2.0,), step_seconds=2.0, drain=0.5, procs=2
        )
    )
    check_logins(result, 5)
    muc = result["muc"]
    assert muc["room"] == "bench@conference.localhost" and muc["created"]
    assert muc["occupants"] == 5 and muc["join_failed"] == 0
    (step,) = result["steps"]
    assert step["rate"] == 10.0 and 0.95 * 20 <= step["sent"] <= 1.05 * 20, step
    assert step["fanout"] == step["expected_fanout"] == 5 * step["sent"], step
    assert step["fanout_per_s"] > 0 and step["late"] == 0
    assert 0 < step["p50_ms"] <= step["p99_ms"] < 200
    assert step["server_cpu_ms_per_1000"] is not None and step["server_cpu_ms_per_1000"] > 0
    assert step["rss_mib"] > 0 and step["ok"], step["why"]
    assert step["server_wait_pct"] >= 0 and step["generator_cpu_pct"] > 0
    assert "fan-out/s" in render(result)


async def test_register_in_band_then_login(server: Server) -> None:
    opts = options(server, "login", users=4, prefix="reg", register=True)
    result = await bench(opts)
    assert result["register"] == {"created": 4, "existed": 0, "failed": 0, "errors": {}}
    check_logins(result, 4)
    again = await bench(opts)
    assert again["register"]["existed"] == 4
    assert await server.accounts.exists("reg3", "localhost")


# -- provisioning and helpers -----------------------------------------------------------------


@pytest.mark.parametrize(("users", "contacts"), [(10, 0), (10, 3), (7, 4), (6, 5), (100, 10)])
def test_contacts_are_mutual(users: int, contacts: int) -> None:
    check_layout(users, contacts)
    for i in range(users):
        mine = contacts_of(i, users, contacts)
        assert len(set(mine)) == len(mine) == contacts and i not in mine
        for j in mine:
            assert i in contacts_of(j, users, contacts)


@pytest.mark.parametrize(("users", "contacts"), [(5, 5), (7, 3), (0, 0)])
def test_impossible_layouts(users: int, contacts: int) -> None:
    with pytest.raises(ValueError):
        check_layout(users, contacts)


def test_split_indices() -> None:
    assert split_indices(7, 2, pairs=False) == [[0, 1, 2, 3], [4, 5, 6]]
    assert split_indices(7, 2, pairs=True) == [[0, 1, 2, 3], [4, 5]]
    assert split_indices(4, 8, pairs=True) == [[0, 1], [2, 3]]


def test_provision_command(tmp_path: Path) -> None:
    (tmp_path / "roost.toml").write_text(
        'domains = ["localhost"]\ndata_dir = "data"\n[auth]\nscram_iterations = 4096\n'
    )
    argv = ["-c", str(tmp_path / "roost.toml"), "bench", "provision"]
    assert main([*argv, "--users", "10", "--contacts", "3", "--prefix", "p"]) == 0
    assert main([*argv, "--users", "5", "--contacts", "5"]) == 2

    async def check() -> None:
        async with SQLiteStorage(tmp_path / "data" / "roost.db") as storage:
            accounts = await storage.list_accounts("localhost")
            assert len(accounts) == 10
            first = await storage.get_account("p0", "localhost")
            other = await storage.get_account("p7", "localhost")
            assert first is not None and other is not None
            assert first.sha256 == other.sha256  # one derivation shared by all
            for i in range(10):
                roster = await storage.get_roster(f"p{i}", "localhost")
                assert roster.version == 3
                expected = {f"p{j}@localhost" for j in contacts_of(i, 10, 3)}
                assert set(roster.items) == expected
                assert {item.subscription for item in roster.items.values()} == {"both"}

    asyncio.run(check())
