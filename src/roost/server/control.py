"""The control channel: a Unix socket in the data directory for ``roost`` commands.

``data_dir/roost.sock``, mode 0600 (only the server's user may connect; nothing on the
network). The protocol is line-delimited JSON: the client writes one request object per
line, ``{"cmd": "status"}`` or ``{"cmd": "user.delete", "jid": "a@b"}``, and reads one
reply line for each: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "one line",
"exit": 1}`` (``exit``: the code the CLI should end with, 1 failed, 2 bad usage).

The socket is bound under a temporary name, given mode 0600 and renamed into place, so it
is never reachable with looser permissions; a socket left by a crashed server is replaced,
one a live server answers on is not (the second server runs without a control channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from roost import __version__
from roost.server.admin import Admin, AdminError, session_info
from roost.storage.api import AccountExists, NoSuchAccount
from roost.storage.credentials import InvalidUsername

if TYPE_CHECKING:
    from roost.server.app import Server

__all__ = ["SOCKET_NAME", "ControlServer", "NoServer", "call", "rss_bytes", "socket_path"]

log = logging.getLogger(__name__)

SOCKET_NAME: Final = "roost.sock"
#: a request line longer than this ends the control connection
MAX_LINE: Final = 64 * 1024
#: a control connection silent (or not reading) this long is closed
IDLE_TIMEOUT: Final = 300.0
#: sun_path holds 108 bytes with the terminating NUL (unix(7))
_MAX_PATH: Final = 107


def socket_path(data_dir: Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


def rss_bytes() -> int:
    """Resident memory of this process (proc(5) statm; the peak where there is no /proc)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Refused(Exception):
    """A request the control channel answers with an error."""

    def __init__(self, message: str, exit: int = 1) -> None:
        super().__init__(message)
        self.exit = exit


Handler = Callable[[dict[str, Any]], Awaitable[object]]


class ControlServer:
    """Serves the control socket of one ``Server``."""

    def __init__(self, server: Server, admin: Admin) -> None:
        self.server = server
        self.admin = admin
        self.path = socket_path(server.config.data_dir)
        self._listener: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._handlers: dict[str, Handler] = {
            "status": self._status,
            "sessions.list": self._sessions_list,
            "sessions.kick": self._sessions_kick,
            "user.add": self._user_add,
            "user.passwd": self._user_passwd,
            "user.delete": self._user_delete,
            "reload": self._reload,
        }

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> bool:
        """Bind the socket; False (logged) when it cannot be had."""
        if len(os.fsencode(self.path)) > _MAX_PATH:
            log.warning(
                "no control socket: %s is longer than a Unix socket path may be; `roost` "
                "commands will go to storage directly (choose a shorter data_dir)",
                self.path,
            )
            return False
        if await _answers(self.path):
            log.warning(
                "no control socket: another Roost server answers on %s (same data_dir?)",
                self.path,
            )
            return False
        tmp = self.path.with_name(f".{SOCKET_NAME}.{secrets.token_hex(4)}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(tmp))
            os.chmod(tmp, 0o600)  # before anyone can find it under its real name
            os.replace(tmp, self.path)
            sock.listen(16)
            self._listener = await asyncio.start_unix_server(
                self._client, sock=sock, limit=MAX_LINE
            )
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning("no control socket at %s: %s", self.path, exc.strerror or exc)
            return False
        return True

    async def stop(self) -> None:
        if self._listener is None:
            return
        self._listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        self._listener = None

    # -- connections ----------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except ValueError:  # longer than MAX_LINE
                    writer.write(_reply_error("request too long", 2))
                    break
                if not line:
                    break
                writer.write(await self._answer(line))
                await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()

    async def _answer(self, line: bytes) -> bytes:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise _Refused("a request is a JSON object with a string 'cmd'", 2)
            handler = self._handlers.get(request["cmd"])
            if handler is None:
                raise _Refused(f"unknown command {request['cmd']!r}", 2)
            result = await handler(request)
        except json.JSONDecodeError:
            return _reply_error("not a JSON line", 2)
        except _Refused as exc:
            return _reply_error(str(exc), exc.exit)
        except AdminError as exc:
            return _reply_error(str(exc), 1)
        except Exception as exc:
            log.exception("control command failed")
            return _reply_error(f"internal error: {exc}", 1)
        return json.dumps({"ok": True, "result": result}).encode() + b"\n"

    # -- commands -------------------------------------------------------------------------

    async def _reload(self, request: dict[str, Any]) -> object:
        """Read the config file (and certificates) again; a bad one is refused and the old
        configuration keeps running."""
        return await reload_from_file(self.server)

    async def _status(self, request: dict[str, Any]) -> object:
        srv = self.server
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime": round(time.time() - srv.started_at, 3),
            "domains": list(srv.config.domains),
            "listeners": [
                {
                    "kind": lst.kind,
                    "host": lst.host,
                    "port": lst.port,
                    "direct_tls": lst.direct_tls,
                    "name": str(lst),
                }
                for lst in srv.listeners
            ]
            + [
                {
                    "kind": "metrics",
                    "host": host,
                    "port": port,
                    "direct_tls": False,
                    "name": f"metrics HTTP {host}:{port}",
                }
                for host, port in (srv.metrics.addresses if srv.metrics is not None else [])
            ],
            "connections": len(srv.connections),
            "sessions": self.admin.per_domain(),
            "memory_rss": rss_bytes(),
        }

    async def _sessions_list(self, request: dict[str, Any]) -> object:
        domain = _opt_str(request, "domain")
        if domain is not None and domain not in self.admin.domains:
            raise _Refused(f"{domain} is not one of the served domains", 2)
        return [session_info(s) for s in self.admin.online(domain)]

    async def _sessions_kick(self, request: dict[str, Any]) -> object:
        return self.admin.kick(
            _str(request, "jid"),
            _opt_str(request, "condition") or "policy-violation",
            _opt_str(request, "reason"),
        )

    async def _user_add(self, request: dict[str, Any]) -> object:
        user = self.admin.account(_str(request, "jid"))
        try:
            await self.admin.add_user(user, _str(request, "password"))
        except AccountExists:
            raise _Refused(f"{user} already exists") from None
        except (InvalidUsername, ValueError) as exc:
            raise _Refused(str(exc)) from None
        return {"jid": str(user)}

    async def _user_passwd(self, request: dict[str, Any]) -> object:
        user = self.admin.account(_str(request, "jid"))
        try:
            ended = await self.admin.set_password(user, _str(request, "password"))
        except NoSuchAccount:
            raise _Refused(f"no account {user}") from None
        except ValueError as exc:
            raise _Refused(str(exc)) from None
        return {"jid": str(user), "sessions_ended": ended}

    async def _user_delete(self, request: dict[str, Any]) -> object:
        user = self.admin.account(_str(request, "jid"))
        try:
            ended = await self.admin.delete_user(user)
        except NoSuchAccount:
            raise _Refused(f"no account {user}") from None
        return {"jid": str(user), "sessions_ended": ended}


def _str(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise _Refused(f"'{key}' must be a non-empty string", 2)
    return value


def _opt_str(request: dict[str, Any], key: str) -> str | None:
    return None if request.get(key) is None else _str(request, key)


def _reply_error(message: str, exit: int) -> bytes:
    return json.dumps({"ok": False, "error": message, "exit": exit}).encode() + b"\n"


async def _answers(path: Path) -> bool:
    """Whether a live server listens on ``path`` (a stale socket file refuses)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


# -- the client side (the ``roost`` CLI) -----------------------------------------------------


async def reload_from_file(server: Server) -> dict[str, list[str]]:
    """``Server.reload`` with the file the server was started with (``_Refused`` with the
    reason, exit 2, when the new configuration cannot be used)."""
    from roost.server.config import ConfigError, load_config
    from roost.transport.certs import CertificateError

    source = server.config.source
    if source is None:
        raise _Refused("the server was started without a config file: nothing to read again")
    try:
        config = load_config(source)
        return await server.reload(config)
    except ConfigError as exc:
        raise _Refused(f"{source}: {exc}; the old configuration keeps running", 2) from None
    except CertificateError as exc:
        raise _Refused(f"{exc}; the old configuration keeps running", 2) from None


class NoServer(Exception):
    """No server answers on the control socket (none running, or a stale socket file)."""


def call(
    data_dir: Path, cmd: str, args: dict[str, object] | None = None, timeout: float = 30.0
) -> dict[str, Any]:
    """Send one request to the server of ``data_dir``; its reply object (``ok``, then
    ``result`` or ``error`` and ``exit``). ``NoServer`` when nothing answers."""
    path = socket_path(data_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError) as exc:
            raise NoServer(str(exc)) from None  # none runs, or a crashed one left the file
        request = {"cmd": cmd, **{k: v for k, v in (args or {}).items() if v is not None}}
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise NoServer("the server closed the control connection")
            data += chunk
    finally:
        sock.close()
    reply = json.loads(data)
    assert isinstance(reply, dict)
    return reply
