"""``run_as``: ``roost serve`` started as root binds its ports, then becomes the configured
user before it opens its data (``roost.server.privileges``). Run as a real subprocess; the
user is ``nobody``, which every Debian system has, so the test creates no user."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.test_cli import RoostProcess, run_roost

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to give it up)")


def _uids(pid: int) -> list[int]:
    """Real, effective, saved and filesystem uid of a process (proc(5) ``Uid:``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(n) for n in line.split()[1:]]
    raise AssertionError("no Uid line")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory ``nobody`` can reach (pytest's tmp_path is under a root-only 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="roost-run-as-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _with_run_as(proc: RoostProcess, value: str) -> None:
    proc.config.write_text(f'run_as = "{value}"\n' + proc.config.read_text())


async def test_serve_as_root_becomes_run_as_after_binding(workdir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    proc = RoostProcess(workdir)
    _with_run_as(proc, "nobody")
    try:
        proc.start()
        proc.wait_ready()
        assert proc.proc is not None
        assert _uids(proc.proc.pid) == [nobody.pw_uid] * 4  # root cannot be taken back
        # The data it wrote after the switch (database, control socket) belongs to nobody,
        # and the control socket answers root's commands.
        assert (proc.data_dir / "roost.db").stat().st_uid == nobody.pw_uid
        proc.add_user("alice@localhost", "alice-pw")
        client = await proc.login("alice", "alice-pw")
        await client.close()
        assert proc.terminate() == 0
        assert "now running as nobody" in proc.stderr
    finally:
        proc.cleanup()


def test_root_without_run_as_warns(workdir: Path) -> None:
    proc = RoostProcess(workdir)
    try:
        proc.start()
        proc.wait_ready()
        assert proc.terminate() == 0
        assert "running as root: set run_as" in proc.stderr
    finally:
        proc.cleanup()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("no-such-user-here", "run_as: no user 'no-such-user-here'"),
        ("nobody:no-such-group-here", "run_as: no group 'no-such-group-here'"),
        ("nobody:", "run_as: must be 'user' or 'user:group'"),
    ],
)
def test_bad_run_as_is_a_config_error(workdir: Path, value: str, reason: str) -> None:
    proc = RoostProcess(workdir)
    _with_run_as(proc, value)
    for command in ("serve", "check"):
        done = run_roost(command, "--config", str(proc.config), cwd=workdir)
        assert done.returncode == 2, done.stderr
        assert reason in done.stderr and "Traceback" not in done.stderr
    assert not proc.data_dir.exists()  # refused before anything was written


def test_offline_commands_run_as_root_leave_the_database_to_data_dirs_owner(
    workdir: Path,
) -> None:
    """``sudo roost user add`` (or ``roost import``) before the first start creates the
    database; the server, running as the owner of data_dir, must be able to write it."""
    nobody = pwd.getpwnam("nobody")
    proc = RoostProcess(workdir)
    proc.data_dir.mkdir()
    os.chown(proc.data_dir, nobody.pw_uid, nobody.pw_gid)
    done = proc.roost("user", "add", "alice@localhost", "--password", "pw")
    assert done.returncode == 0, done.stderr
    files = list(proc.data_dir.glob("roost.db*"))
    assert files and all(f.stat().st_uid == nobody.pw_uid for f in files)
