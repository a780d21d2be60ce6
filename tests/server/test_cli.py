"""End-to-end tests of the ``roost`` command, run as a real subprocess.

Every test writes its own TOML config in a temporary directory (loopback only, free ports,
cheap SCRAM) and drives ``python -m roost.cli``. Servers are started by ``RoostProcess``,
which waits for the single "Roost ready" line on stderr (never a fixed sleep); the
``roost`` fixture kills anything still running at teardown.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from roost.core import ns
from roost.core.xml.writer import serialize
from roost.transport.certs import generate_self_signed, load_certificate_der
from tests.helpers import RawClient, eventually, free_port

ROOST = [sys.executable, "-m", "roost.cli"]
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
# The event loop most tests use (None: the default, uvloop when installed);
# `test_serve_event_loops` covers each explicitly.
SERVE_LOOP: str | None = None
READY = "Roost ready"
START_TIMEOUT = 20.0
CLI_TIMEOUT = 30.0


def write_config(
    directory: Path, c2s_port: int, tls_port: int, extra: str = "", name: str = "roost.toml"
) -> Path:
    """A config with a relative data_dir (resolved against the file's directory)."""
    path = directory / name
    path.write_text(
        f"""\
domains = ["localhost"]
data_dir = "data"

[c2s]
interfaces = ["127.0.0.1"]
port = {c2s_port}
direct_tls_port = {tls_port}

[auth]
scram_iterations = 4096

[s2s]
interfaces = ["127.0.0.1"]
port = 0
{extra}"""
    )
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ROOST_PASSWORD"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_roost(
    *args: str, cwd: Path, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``roost`` command to completion (stdin is a pipe or /dev/null, never a tty)."""
    return subprocess.run(
        [*ROOST, *args],
        cwd=cwd,
        env=env or cli_env(),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


class RoostProcess:
    """``roost serve`` in a subprocess; stderr is read by a thread into ``lines``."""

    def __init__(self, workdir: Path, extra: str = "", loop: str | None = SERVE_LOOP) -> None:
        self.workdir = workdir
        self.loop_args = ["--loop", loop] if loop else []
        self.c2s_port = free_port()
        self.tls_port = free_port()
        while self.tls_port == self.c2s_port:
            self.tls_port = free_port()
        self.config = write_config(workdir, self.c2s_port, self.tls_port, extra)
        self.data_dir = workdir / "data"
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> RoostProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.lines = []
        self._queue = queue.Queue()
        self.proc = subprocess.Popen(
            [*ROOST, "serve", "--config", str(self.config), *self.loop_args],
            cwd=self.workdir,
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        t = threading.Thread(target=self._pump, args=(self.proc, self._queue), daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _pump(self, proc: subprocess.Popen[str], q: queue.Queue[str | None]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line)
            q.put(line)
        q.put(None)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> str:
        """Block until the ready line appears; fail with the log if the process dies first."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"roost serve not ready after {timeout}s:\n{self.stderr}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                assert self.proc is not None
                rc = self.proc.wait(timeout=5)
                pytest.fail(f"roost serve exited ({rc}) before ready:\n{self.stderr}")
            if READY in line:
                return line

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit code; stderr is complete afterwards."""
        self.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=5)
        return rc

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a crash or power loss for the process."""
        assert self.proc is not None
        self.proc.kill()
        self.wait()

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for t in self._threads:
            t.join(timeout=5)

    # -- helpers --------------------------------------------------------------------------

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def roost(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``roost <args> --config <this config>``."""
        return run_roost(
            *args, "--config", str(self.config), cwd=self.workdir, input=input, env=env
        )

    def add_user(self, jid: str, password: str) -> None:
        r = self.roost("user", "add", jid, "--password", password)
        assert r.returncode == 0, r.stderr
        assert f"created {jid}" in r.stdout

    async def login(self, user: str, password: str, resource: str = "test") -> RawClient:
        client = await RawClient.connect(self.c2s_port)
        jid = await client.login(user, password, resource)
        assert jid == f"{user}@localhost/{resource}"
        return client

    async def auth_result(self, user: str, password: str) -> str:
        """The SASL outcome over STARTTLS: "success", or the <failure/> condition."""
        client = await RawClient.connect(self.c2s_port)
        try:
            await client.open()
            await client.starttls()
            el = await client.auth(user, password)
            if el.tag == "success":
                return "success"
            assert el.tag == "failure" and el.ns == ns.SASL, serialize(el)
            return next(c.tag for c in el.elements() if c.tag != "text")
        finally:
            await client.close()


@pytest.fixture
def roost(tmp_path: Path) -> Iterator[RoostProcess]:
    proc = RoostProcess(tmp_path)
    try:
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture
def running(roost: RoostProcess) -> RoostProcess:
    roost.start().wait_ready()
    return roost


# -- 1. serve ------------------------------------------------------------------------------


async def test_serve_starts_logs_ready_and_creates_state(roost: RoostProcess) -> None:
    assert not roost.data_dir.exists()
    line = roost.start().wait_ready()
    assert "localhost" in line
    assert f"c2s STARTTLS 127.0.0.1:{roost.c2s_port}" in line
    assert f"c2s direct TLS 127.0.0.1:{roost.tls_port}" in line

    crt = roost.data_dir / "certs" / "localhost.crt"
    key = roost.data_dir / "certs" / "localhost.key"
    assert crt.is_file() and key.is_file()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (roost.data_dir / "roost.db").is_file()

    # The generated certificate is the one served on the Direct TLS port.
    client = await RawClient.connect(roost.tls_port, direct_tls=True)
    sslobj = client.writer.get_extra_info("ssl_object")
    assert sslobj.getpeercert(binary_form=True) == load_certificate_der(crt)
    features = await client.open()
    assert features.find("mechanisms", ns.SASL) is not None
    await client.close()

    assert roost.terminate() == 0
    ready_lines = [ln for ln in roost.lines if READY in ln]
    assert len(ready_lines) == 1, roost.stderr
    assert "Roost stopped" in roost.stderr
    assert "Traceback" not in roost.stderr


@pytest.mark.parametrize(
    "loop",
    [
        "asyncio",
        pytest.param(
            "uvloop",
            marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed"),
        ),
        None,
    ],
    ids=["asyncio", "uvloop", "default"],
)
async def test_serve_event_loops(tmp_path: Path, loop: str | None) -> None:
    """Clients can log in (STARTTLS and Direct TLS) and shutdown is clean on every loop."""
    roost = RoostProcess(tmp_path, loop=loop)
    try:
        roost.start().wait_ready()
        roost.add_user("alice@localhost", "alice-pw")
        plain = await roost.login("alice", "alice-pw", "starttls")
        direct = await RawClient.connect(roost.tls_port, direct_tls=True)
        await direct.open()
        assert (await direct.auth("alice", "alice-pw")).tag == "success"
        await direct.open()
        assert await direct.bind("direct") == "alice@localhost/direct"
        roost.send_signal(signal.SIGTERM)
        assert await plain.stream_error() == "system-shutdown"
        assert await direct.stream_error() == "system-shutdown"
        assert roost.wait() == 0
        assert "Traceback" not in roost.stderr
    finally:
        roost.cleanup()


# -- 2. user management against a running server -------------------------------------------


async def test_user_add_while_running(running: RoostProcess) -> None:
    # --password; the running server sees the account at once.
    running.add_user("alice@localhost", "alice-pw")
    alice = await running.login("alice", "alice-pw")
    await alice.close()

    # $ROOST_PASSWORD
    r = running.roost("user", "add", "bob@localhost", env=cli_env(ROOST_PASSWORD="bob-pw"))
    assert r.returncode == 0, r.stderr
    assert await running.auth_result("bob", "bob-pw") == "success"

    # A non-tty stdin: one line.
    r = running.roost("user", "add", "carol@localhost", input="carol-pw\n")
    assert r.returncode == 0, r.stderr
    assert await running.auth_result("carol", "carol-pw") == "success"

    # An existing account: exit 1, a message, and the password is untouched.
    r = running.roost("user", "add", "alice@localhost", "--password", "other")
    assert r.returncode == 1
    assert "alice@localhost already exists" in r.stderr
    assert await running.auth_result("alice", "alice-pw") == "success"

    r = running.roost("user", "list")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["alice@localhost", "bob@localhost", "carol@localhost"]
    r = running.roost("user", "list", "localhost")
    assert r.returncode == 0 and len(r.stdout.split()) == 3


async def test_user_add_rejects_bad_input(running: RoostProcess) -> None:
    r = running.roost("user", "add", "dave@elsewhere.example", "--password", "x")
    assert r.returncode == 2
    assert "elsewhere.example is not one of the served domains" in r.stderr

    r = running.roost("user", "add", "dave@localhost", input="")
    assert r.returncode != 0
    assert "no password given" in r.stderr

    r = running.roost("user", "add", "dave@localhost/res", "--password", "x")
    assert r.returncode != 0
    assert "not a bare account JID" in r.stderr

    r = running.roost("user", "list")
    assert r.returncode == 0 and r.stdout == ""


async def test_user_passwd_and_delete(running: RoostProcess) -> None:
    running.add_user("alice@localhost", "old-pw")
    running.add_user("bob@localhost", "bob-pw")

    r = running.roost("user", "passwd", "alice@localhost", "--password", "new-pw")
    assert r.returncode == 0, r.stderr
    assert "password changed for alice@localhost" in r.stdout
    assert await running.auth_result("alice", "old-pw") == "not-authorized"
    alice = await running.login("alice", "new-pw")
    await alice.close()

    r = running.roost("user", "passwd", "nobody@localhost", "--password", "x")
    assert r.returncode == 1
    assert "no account nobody@localhost" in r.stderr

    r = running.roost("user", "delete", "alice@localhost")
    assert r.returncode == 0, r.stderr
    assert "deleted alice@localhost" in r.stdout
    assert await running.auth_result("alice", "new-pw") == "not-authorized"
    r = running.roost("user", "list")
    assert r.stdout.split() == ["bob@localhost"]

    r = running.roost("user", "delete", "alice@localhost")
    assert r.returncode == 1
    assert "no account alice@localhost" in r.stderr
    assert await running.auth_result("bob", "bob-pw") == "success"


# -- 3. crash safety -----------------------------------------------------------------------


async def test_accounts_survive_sigkill(roost: RoostProcess) -> None:
    roost.start().wait_ready()
    cert_before = (roost.data_dir / "certs" / "localhost.crt").read_bytes()
    accounts = {f"user{i}": f"pw-{i}" for i in range(3)}
    for user, password in accounts.items():
        roost.add_user(f"{user}@localhost", password)
    r = roost.roost("user", "passwd", "user0@localhost", "--password", "changed")
    assert r.returncode == 0, r.stderr
    accounts["user0"] = "changed"
    # The server has read (and holds open) the database while the accounts change.
    client = await roost.login("user1", accounts["user1"])

    roost.kill()
    assert roost.proc is not None and roost.proc.returncode == -signal.SIGKILL
    await client.wait_closed()

    roost.start().wait_ready()
    for user, password in accounts.items():
        c = await roost.login(user, password)
        await c.close()
    assert await roost.auth_result("user0", "pw-0") == "not-authorized"
    # The existing certificate is reused, not regenerated.
    assert (roost.data_dir / "certs" / "localhost.crt").read_bytes() == cert_before
    assert roost.terminate() == 0


# -- 4. graceful shutdown ------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_sends_system_shutdown_and_exits_0(running: RoostProcess, sig: int) -> None:
    running.add_user("alice@localhost", "alice-pw")
    alice = await running.login("alice", "alice-pw")
    # A second client that has not authenticated yet (Direct TLS).
    anon = await RawClient.connect(running.tls_port, direct_tls=True)
    await anon.open()

    started = time.monotonic()
    running.send_signal(sig)
    assert await alice.stream_error() == "system-shutdown"
    assert await anon.stream_error() == "system-shutdown"
    assert running.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert "Roost stopped" in running.stderr
    assert "Traceback" not in running.stderr
    # The listeners are gone.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", running.c2s_port), timeout=2).close()


async def test_sighup_does_not_stop_the_server(running: RoostProcess) -> None:
    """Issue 14: SIGHUP's default action killed the server. Now it reloads the config
    (tests/server/test_reload.py); the session and the listeners stay."""
    running.add_user("alice@localhost", "alice-pw")
    alice = await running.login("alice", "alice-pw")
    running.send_signal(signal.SIGHUP)
    await alice.ping()
    assert running.proc is not None and running.proc.poll() is None
    deadline = time.monotonic() + START_TIMEOUT
    while "configuration reloaded" not in running.stderr:
        assert time.monotonic() < deadline, running.stderr
        await asyncio.to_thread(running._queue.get, True, 1.0)
    await alice.ping()
    again = await running.login("alice", "alice-pw", "second")
    await again.close()
    await alice.close()
    assert running.terminate() == 0


# -- 5. bad configuration ------------------------------------------------------------------


BAD_CONFIGS = {
    # Each snippet replaces the `port = ...` line of the [c2s] table.
    "port-not-int": ('port = "abc"', ["c2s.port", "must be an integer", "'abc'"]),
    "unknown-key": ("prot = 1", ["c2s.prot", "unknown key", "did you mean 'port'"]),
    "toml-syntax": ("port = = 1", ["roost.toml", "line"]),
}


@pytest.mark.parametrize("command", ["serve", "check"])
@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, command: str, case: str) -> None:
    snippet, expected = BAD_CONFIGS[case]
    path = write_config(tmp_path, 12345, 0)
    path.write_text(path.read_text().replace("port = 12345", snippet))
    r = run_roost(command, "--config", str(path), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "roost: configuration error:" in r.stderr
    for text in expected:
        assert text in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert READY not in r.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("command", ["serve", "check"])
def test_unknown_module_exits_2_naming_the_key(tmp_path: Path, command: str) -> None:
    """``[modules] disabled`` names modules that exist (issue 9, acceptance 4)."""
    path = write_config(tmp_path, 12345, 0)
    path.write_text(path.read_text() + '\n[modules]\ndisabled = ["version", "vcrad"]\n')
    r = run_roost(command, "--config", str(path), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert (
        "roost: configuration error: modules.disabled[1]: no module named 'vcrad' "
        "(did you mean 'vcard'?)"
    ) in r.stderr
    assert "Traceback" not in r.stderr
    assert READY not in r.stderr


@pytest.mark.parametrize("command", ["serve", "check"])
def test_c2s_port_equal_to_direct_tls_port_exits_2(tmp_path: Path, command: str) -> None:
    port = free_port()
    path = write_config(tmp_path, port, port)
    r = run_roost(command, "--config", str(path), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert (
        f"roost: configuration error: c2s.direct_tls_port: {port} is also c2s.port; "
        "give each listener its own port"
    ) in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists()


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    r = run_roost("serve", "--config", str(tmp_path / "absent.toml"), cwd=tmp_path)
    assert r.returncode == 2
    assert "absent.toml" in r.stderr and "cannot read" in r.stderr


TLS_MISSING = '\n[tls]\ncert = "missing.crt"\nkey = "missing.key"\n'


def test_serve_missing_tls_cert_is_a_startup_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, free_port(), free_port(), TLS_MISSING)
    r = run_roost("serve", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"roost: {tmp_path / 'missing.crt'}: certificate file not found" in r.stderr
    assert "Traceback" not in r.stderr
    assert READY not in r.stderr


def test_check_missing_tls_cert_names_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, free_port(), free_port(), TLS_MISSING)
    r = run_roost("check", "--config", str(path), cwd=tmp_path)
    assert r.returncode != 0
    assert "problem: tls:" in r.stdout
    assert "missing.crt: certificate file not found" in r.stdout
    assert "tls.cert" in r.stdout
    assert "ok:" not in r.stdout


def test_serve_missing_tls_key_is_a_startup_error(tmp_path: Path) -> None:
    generate_self_signed("localhost", tmp_path / "good.crt", tmp_path / "unused.key")
    tls = '\n[tls]\ncert = "good.crt"\nkey = "missing.key"\n'
    path = write_config(tmp_path, free_port(), free_port(), tls)
    r = run_roost("serve", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"{tmp_path / 'missing.key'}: key file not found" in r.stderr
    r = run_roost("check", "--config", str(path), cwd=tmp_path)
    assert r.returncode != 0
    assert "missing.key: key file not found" in r.stdout


def test_tls_cert_without_key_exits_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, free_port(), free_port(), '\n[tls]\ncert = "a.crt"\n')
    for command in ("serve", "check"):
        r = run_roost(command, "--config", str(path), cwd=tmp_path)
        assert r.returncode == 2
        assert "tls: cert and key must be set together" in r.stderr


# -- 6. check ------------------------------------------------------------------------------


def test_check_ok(tmp_path: Path) -> None:
    path = write_config(tmp_path, free_port(), free_port())
    r = run_roost("check", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f"ok: config {path}" in r.stdout
    assert "certificate for localhost: self-signed, will be generated on first start" in r.stdout
    assert "problem" not in r.stdout


@pytest.mark.parametrize("key", ["c2s.port", "c2s.direct_tls_port"])
def test_check_reports_taken_port(tmp_path: Path, key: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        other = free_port()
        c2s, tls = (taken, other) if key == "c2s.port" else (other, taken)
        path = write_config(tmp_path, c2s, tls)
        r = run_roost("check", "--config", str(path), cwd=tmp_path)
    assert r.returncode != 0
    assert f"problem: {key}: cannot bind 127.0.0.1:{taken}" in r.stdout
    assert "ok:" not in r.stdout


@pytest.mark.parametrize("key", ["c2s.port", "c2s.direct_tls_port"])
def test_serve_reports_taken_port(tmp_path: Path, key: str) -> None:
    """Issue 14: the key is named, exit 2, and nothing is created on disk first (no data
    directory, no generated certificate)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        other = free_port()
        c2s, tls = (taken, other) if key == "c2s.port" else (other, taken)
        path = write_config(tmp_path, c2s, tls)
        r = run_roost("serve", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert (
        f"roost: configuration error: {key}: cannot listen on 127.0.0.1:{taken} "
        "(Address already in use)"
    ) in r.stderr
    assert "Traceback" not in r.stderr
    assert READY not in r.stderr
    assert not (tmp_path / "data").exists()


def test_serve_unwritable_data_dir_exits_2(tmp_path: Path) -> None:
    """A data_dir that cannot be a writable directory (here: a regular file is in the way,
    which stops root too) is named before anything else happens."""
    (tmp_path / "taken").write_text("not a directory")
    path = write_config(tmp_path, free_port(), free_port())
    path.write_text(path.read_text().replace('data_dir = "data"', 'data_dir = "taken/data"'))
    r = run_roost("serve", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert (
        f"roost: configuration error: data_dir: {tmp_path / 'taken' / 'data'} is not a "
        "writable directory"
    ) in r.stderr
    assert "Traceback" not in r.stderr
    assert READY not in r.stderr


# -- tracebacks turned into one-line errors (issue 14) -------------------------------------


def test_no_arguments_prints_the_usage(tmp_path: Path) -> None:
    r = run_roost(cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("usage: roost ")
    assert "serve" in r.stderr and "check" in r.stderr
    assert "cmd" not in r.stderr.replace("COMMAND", "")


def test_version(tmp_path: Path) -> None:
    import roost

    r = run_roost("--version", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout.strip() == f"roost {roost.__version__}"


@pytest.mark.parametrize("what", ["missing", "directory", "not-utf8"])
def test_user_import_unreadable_file(tmp_path: Path, what: str) -> None:
    path = write_config(tmp_path, free_port(), free_port())
    targets = {"missing": "absent.csv", "directory": ".", "not-utf8": "latin1.csv"}
    target = (tmp_path / targets[what]).resolve()
    if what == "not-utf8":
        target.write_bytes(b"j\xfcrgen@localhost,pw\n")
    r = run_roost("user", "import", str(target), "--config", str(path), cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    expected = {
        "missing": f"roost: cannot read {target}: No such file or directory",
        "directory": f"roost: cannot read {target}: Is a directory",
        "not-utf8": f"roost: {target} is not UTF-8 text",
    }[what]
    assert r.stderr.startswith(expected), r.stderr


@pytest.mark.parametrize("sub", [["list"], ["add", "alice@localhost", "--password", "pw"]])
def test_user_commands_with_an_unusable_data_dir(tmp_path: Path, sub: list[str]) -> None:
    (tmp_path / "taken").write_text("not a directory")
    path = write_config(tmp_path, free_port(), free_port())
    path.write_text(path.read_text().replace('data_dir = "data"', 'data_dir = "taken"'))
    r = run_roost("user", *sub, "--config", str(path), cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.stderr == f"roost: data_dir {tmp_path / 'taken'} is not a directory; check data_dir\n"


def test_cert_generate_bad_domain(tmp_path: Path) -> None:
    path = write_config(tmp_path, free_port(), free_port())
    r = run_roost("cert", "generate", "bad domain", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("roost: 'bad domain' is not a valid domain: ")
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "data" / "certs").exists()


def test_cert_generate_does_not_overwrite(tmp_path: Path) -> None:
    """Issue 14: a certificate in use was silently replaced; now it takes --force."""
    path = write_config(tmp_path, free_port(), free_port())
    args = ("cert", "generate", "example.org", "--config", str(path))
    assert run_roost(*args, cwd=tmp_path).returncode == 0
    crt = tmp_path / "data" / "certs" / "example.org.crt"
    first = crt.read_bytes()
    r = run_roost(*args, cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "already exist" in r.stderr and "--force" in r.stderr
    assert crt.read_bytes() == first
    r = run_roost(*args, "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert crt.read_bytes() != first


# -- 7. cert generate ----------------------------------------------------------------------


def test_cert_generate(tmp_path: Path) -> None:
    path = write_config(tmp_path, free_port(), free_port())
    r = run_roost("cert", "generate", "example.org", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    crt = tmp_path / "data" / "certs" / "example.org.crt"
    key = tmp_path / "data" / "certs" / "example.org.key"
    assert f"wrote {crt} and {key}" in r.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "example.org" in san.get_values_for_type(x509.DNSName)
    # The pair is usable as tls.cert/tls.key for that domain.
    tls = f'\n[tls]\ncert = "{crt}"\nkey = "{key}"\n'
    path = write_config(tmp_path, free_port(), free_port(), tls, name="tls.toml")
    path.write_text(path.read_text().replace('["localhost"]', '["example.org"]'))
    r = run_roost("check", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    assert "ok:" in r.stdout


def _issue(tmp_path: Path, name: str, *, days: tuple[float, float]) -> str:
    """A CA-issued pair for ``name`` valid from now+days[0] to now+days[1]; its [tls]."""
    import datetime

    import trustme

    now = datetime.datetime.now(datetime.UTC)
    issued = trustme.CA().issue_cert(
        name,
        not_before=now + datetime.timedelta(days=days[0]),
        not_after=now + datetime.timedelta(days=days[1]),
    )
    crt, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(crt), append=True)
    issued.private_key_pem.write_to_path(str(key))
    return f'\n[tls]\ncert = "{crt}"\nkey = "{key}"\n'


@pytest.mark.parametrize(
    ("name", "days", "expected"),
    [
        (
            "other.example",
            (-1, 365),
            "problem: tls.cert does not name localhost (it names other.example); clients and "
            "other servers will refuse it: get one whose subjectAltName includes localhost",
        ),
        ("localhost", (-30, -1), "problem: tls.cert expired on "),
        ("localhost", (2, 365), "problem: tls.cert is not valid before "),
    ],
    ids=["other-domain", "expired", "not-yet-valid"],
)
def test_check_reports_unusable_certificate(
    tmp_path: Path, name: str, days: tuple[float, float], expected: str
) -> None:
    """Issue 14: `roost check` said "ok" for these."""
    path = write_config(tmp_path, free_port(), free_port(), _issue(tmp_path, name, days=days))
    r = run_roost("check", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert expected in r.stdout, r.stdout
    assert "ok:" not in r.stdout


def test_check_mentions_a_certificate_about_to_expire(tmp_path: Path) -> None:
    tls = _issue(tmp_path, "localhost", days=(-1, 10))
    path = write_config(tmp_path, free_port(), free_port(), tls)
    r = run_roost("check", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "note: tls.cert expires in 9 days" in r.stdout, r.stdout


def test_check_reports_an_expired_self_signed_certificate(tmp_path: Path) -> None:
    """The generated per-domain pair is checked too (the server would keep serving it)."""
    path = write_config(tmp_path, free_port(), free_port())
    certs = tmp_path / "data" / "certs"
    certs.mkdir(parents=True)
    _issue(tmp_path, "localhost", days=(-30, -1))  # written where a generated pair lives:
    (tmp_path / "localhost.pem").rename(certs / "localhost.crt")
    (tmp_path / "localhost.key").rename(certs / "localhost.key")
    r = run_roost("check", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"problem: the certificate for localhost ({certs / 'localhost.crt'}) expired on " in (
        r.stdout
    )
    assert "roost cert generate localhost --force" in r.stdout


async def test_check_reports_federation_problems(tmp_path: Path) -> None:
    """``roost check`` with s2s on: a certificate for another name, SRV pointing elsewhere."""
    import trustme

    from tests.helpers import LoopbackDNS

    issued = trustme.CA().issue_cert("other.example")
    crt, key = tmp_path / "c.pem", tmp_path / "k.pem"
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(crt), append=True)
    issued.private_key_pem.write_to_path(str(key))
    dns = LoopbackDNS({"_xmpp-server._tcp.chat.example.": [(0, 5, 5999, "xmpp.example.")]})
    dns_port = await dns.start()
    path = tmp_path / "roost.toml"
    port = free_port()
    path.write_text(
        'domains = ["chat.example"]\n'
        '[c2s]\nport = 0\ndirect_tls_port = 0\ninterfaces = ["127.0.0.1"]\n'
        f'[tls]\ncert = "{crt}"\nkey = "{key}"\n'
        f'[s2s]\nport = {port}\ninterfaces = ["127.0.0.1"]\n'
        f'dns_servers = ["127.0.0.1:{dns_port}"]\n'
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            *ROOST,
            "check",
            "--config",
            str(path),
            cwd=tmp_path,
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    finally:
        dns.stop()
    text = out.decode()
    assert proc.returncode == 1, (text, err.decode())
    assert (
        "problem: tls.cert does not name chat.example (it names other.example); clients and "
        "other servers will refuse it: get one whose subjectAltName includes chat.example"
    ) in text
    assert (
        f"problem: DNS: other servers will look for chat.example at xmpp.example:5999, but "
        f"s2s.port is {port}: publish _xmpp-server._tcp.chat.example. SRV 0 5 {port} <this host>."
    ) in text
    assert "Traceback" not in err.decode()


async def test_log_file_with_connects_and_disconnects(tmp_path: Path) -> None:
    """#14: ``log.file``; a client's connect and disconnect are logged at INFO, each line
    about one connection carrying its id."""
    log_file = tmp_path / "roost.log"
    proc = RoostProcess(tmp_path, f'\n[log]\nfile = "{log_file}"\n')
    try:
        proc.start()

        def ready() -> bool:  # in the file, not on stderr: it is another process's log
            assert proc.proc is not None and proc.proc.poll() is None, proc.stderr
            return log_file.exists() and READY in log_file.read_text()

        await eventually(ready, "the ready line in the log file", START_TIMEOUT)
        proc.add_user("alice@localhost", "alice-pw")
        alice = await proc.login("alice", "alice-pw")
        await alice.close()
        await eventually(lambda: "disconnected" in log_file.read_text(), "the disconnect line")
        lines = log_file.read_text().splitlines()
        connected = next(line for line in lines if line.endswith(": connected"))
        cid = connected.split("<C2S ")[1].split()[0]
        about = [line for line in lines if f"<C2S {cid} " in line]
        assert any("disconnected" in line and "alice@localhost/test" in line for line in about)
        assert proc.terminate() == 0
    finally:
        proc.cleanup()


def test_a_database_from_a_newer_roost_is_a_one_line_error(tmp_path: Path) -> None:
    """After a downgrade (README: Upgrading): serve and the offline commands say so."""
    import sqlite3

    config = write_config(tmp_path, free_port(), 0)
    added = run_roost("user", "add", "a@localhost", "-p", "pw", "-c", str(config), cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    with sqlite3.connect(tmp_path / "data" / "roost.db") as db:
        db.execute("PRAGMA user_version = 999")
    for args in (["serve"], ["user", "list"]):
        done = run_roost(*args, "--config", str(config), cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert "has schema version 999, newer than this Roost" in last
        assert "Traceback" not in done.stderr
