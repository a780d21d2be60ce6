"""``roost client SUBCOMMAND``: a command-line XMPP client on ``roost.client``.

Exit codes: 0 done, 1 the request failed (a stanza error, a timeout, a refused stream),
2 bad usage, 3 authentication failed, 4 the server cannot be found or reached, 5 its
certificate is not trusted. Errors are one line on stderr that says what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from roost.client.client import Client
from roost.client.errors import (
    AuthenticationFailed,
    CertificateNotTrusted,
    ClientError,
    ConnectFailed,
    HostNotFound,
    RegistrationFailed,
)
from roost.client.stanzas import Message, Presence
from roost.core.errors import StanzaError
from roost.core.jid import JID, InvalidJID

__all__ = ["add_arguments", "run_command"]

EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_CONNECT, EXIT_CERT = 1, 2, 3, 4, 5


class UsageError(Exception):
    """Bad arguments; the message says which."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``client`` subcommands and their common options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--jid", "-j", help="account JID (else $ROOST_JID)")
    common.add_argument("--password", "-p", help="(else $ROOST_PASSWORD, else a prompt)")
    common.add_argument("--server", "-s", metavar="HOST:PORT", help="connect here (skip SRV)")
    common.add_argument("--direct-tls", action="store_true", help="TLS from the first byte")
    common.add_argument("--cafile", metavar="FILE", help="trust the CA certificates in FILE")
    common.add_argument(
        "--insecure", action="store_true", help="do not verify the certificate (development only)"
    )
    common.add_argument("--resource", "-r", help="resource to bind (default: the server's)")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds per step (10)")
    common.add_argument("--config", "-c", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="client_cmd", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    p = add("send", "send a message")
    p.add_argument("to")
    p.add_argument("text")
    p.add_argument("--type", default="chat", choices=("chat", "normal", "headline"))
    p = add("listen", "print incoming messages and presence until interrupted")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", type=int, help="stop after this many lines")
    # (the options go after list/add/remove: argparse lets a subcommand's defaults
    # overwrite what its parent parsed)
    roster = sub.add_parser("roster", help="list, add or remove contacts")
    rsub = roster.add_subparsers(dest="roster_cmd", required=True)
    rsub.add_parser("list", help="list contacts", parents=[common])
    p = rsub.add_parser("add", help="add a contact and ask for a subscription", parents=[common])
    p.add_argument("contact")
    p.add_argument("--name")
    p.add_argument("--group", action="append", default=[])
    p.add_argument("--no-subscribe", action="store_true", help="only add it to the roster")
    p = rsub.add_parser("remove", help="remove a contact", parents=[common])
    p.add_argument("contact")
    p = add("disco", "service discovery: identities and features (and items)")
    p.add_argument("target", metavar="JID")
    p.add_argument("node", nargs="?")
    add("register", "create the account (XEP-0077 in-band registration)")
    p = add("passwd", "change the account's password")
    p.add_argument("--new-password", help="(else $ROOST_NEW_PASSWORD, else a prompt)")
    p = add("ping", "XEP-0199 ping (default: the server)")
    p.add_argument("target", metavar="JID", nargs="?")
    for name, help in (("block", "block JIDs (XEP-0191)"), ("unblock", "unblock JIDs")):
        p = add(name, help)
        p.add_argument("targets", metavar="JID", nargs="+")


# -- the commands ---------------------------------------------------------------------------


async def _send(c: Client, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    c.send_message(_jid(args.to), args.text, type=args.type)
    await c.ping()  # the server has handled the message once it answers (RFC 6120 §10.1)
    return 0


async def _listen(c: Client, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    printed = 0
    with c.events(Message, Presence) as events:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while args.count is None or printed < args.count:
                nxt = asyncio.ensure_future(events.__anext__())
                done, _ = await asyncio.wait({nxt, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    break
                try:
                    ev = nxt.result()
                except StopAsyncIteration:
                    break
                line = _line(ev, args.json)
                if line is not None:
                    out(line)
                    printed += 1
        finally:
            stopping.cancel()
    return 0


def _line(ev: object, as_json: bool) -> str | None:
    if isinstance(ev, Message):
        if ev.body is None and ev.error is None:
            return None  # chat states, receipts: nothing to show
        data: dict[str, Any] = {
            "kind": "message",
            "from": str(ev.from_) if ev.from_ else None,
            "type": ev.type,
            "body": ev.body,
        }
        if ev.error is not None:
            data["error"] = ev.error.condition.value
        if as_json:
            return json.dumps(data, ensure_ascii=False)
        return f"message {data['from']} ({ev.type}): {ev.body if ev.body is not None else ''}"
    if isinstance(ev, Presence):
        data = {
            "kind": "presence",
            "from": str(ev.from_) if ev.from_ else None,
            "type": ev.type or "available",
            "show": ev.show,
            "status": ev.status,
        }
        if as_json:
            return json.dumps(data, ensure_ascii=False)
        extra = " ".join(x for x in (ev.show, ev.status) if x)
        return f"presence {data['from']} {data['type']}" + (f" {extra}" if extra else "")
    return None


async def _roster(c: Client, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    if args.roster_cmd == "list":
        for item in sorted(c.roster, key=lambda i: str(i.jid)):
            ask = " (asked)" if item.ask else ""
            groups = ",".join(sorted(item.groups))
            out(f"{item.jid}\t{item.subscription}{ask}\t{item.name or ''}\t{groups}")
        return 0
    contact = _jid(args.contact).bare
    if args.roster_cmd == "add":
        await c.roster.add(contact, name=args.name, groups=args.group)
        if not args.no_subscribe:
            c.roster.subscribe(contact)
        await c.ping()
        out(f"added {contact}" + ("" if args.no_subscribe else "; subscription requested"))
    else:
        await c.roster.remove(contact)
        out(f"removed {contact}")
    return 0


async def _disco(c: Client, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    target = _jid(args.target)
    info = await c.disco.info(target, args.node)
    for identity in info.identities:
        name = f" {identity.name}" if identity.name else ""
        out(f"identity {identity.category}/{identity.type}{name}")
    for feature in sorted(info.features):
        out(f"feature {feature}")
    try:
        items = await c.disco.items(target, args.node)
    except StanzaError:
        items = []  # disco#items is optional for an entity (XEP-0030 §4)
    for item in items:
        node = f" node={item.node}" if item.node else ""
        name = f" {item.name}" if item.name else ""
        out(f"item {item.jid}{node}{name}")
    return 0


async def _register(c: Client, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    if c.registered:
        out(f"created {c.account}")
        return 0
    print(f"roost client: {c.account} already exists (and the password is right)", file=sys.stderr)
    return EXIT_FAILED


async def _passwd(c: Client, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    await c.change_password(args.new_password_value)
    out(f"password changed for {c.account}")
    return 0


async def _ping(c: Client, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    target = _jid(args.target) if args.target else c.server_jid
    rtt = await c.ping(target)
    out(f"pong from {target} in {rtt * 1000:.1f} ms")
    return 0


async def _block(c: Client, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    jids = [_jid(t) for t in args.targets]
    if args.client_cmd == "block":
        await c.blocklist.block(*jids)
    else:
        await c.blocklist.unblock(*jids)
    out(f"{args.client_cmd}ed " + " ".join(str(j) for j in jids))
    return 0


Command = Callable[[Client, argparse.Namespace, Callable[[str], None]], Awaitable[int]]
_COMMANDS: dict[str, tuple[Command, dict[str, bool]]] = {
    # name -> (function, Client options: fetch the roster? send presence? register?)
    "send": (_send, {}),
    "listen": (_listen, {"fetch_roster": True, "available": True}),
    "roster": (_roster, {"fetch_roster": True}),
    "disco": (_disco, {}),
    "register": (_register, {"register": True}),
    "passwd": (_passwd, {}),
    "ping": (_ping, {}),
    "block": (_block, {}),
    "unblock": (_block, {}),
}


# -- plumbing --------------------------------------------------------------------------------


def _jid(text: str) -> JID:
    try:
        return JID.parse(text)
    except InvalidJID as exc:
        raise UsageError(f"invalid JID {text!r}: {exc}") from None


def _secret(value: str | None, env: str, prompt: str, *, confirm: bool = False) -> str:
    if value:
        return value
    if os.environ.get(env):
        return os.environ[env]
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise UsageError(f"no password: give it with --password or ${env}")
        return line
    secret = getpass.getpass(prompt)
    if confirm and getpass.getpass("Again: ") != secret:
        raise UsageError("the passwords differ")
    if not secret:
        raise UsageError("the password must not be empty")
    return secret


def _server(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--server {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _client(args: argparse.Namespace, options: dict[str, bool]) -> Client:
    jid_text = args.jid or os.environ.get("ROOST_JID")
    if not jid_text:
        raise UsageError("no account: give --jid USER@DOMAIN or set $ROOST_JID")
    jid = _jid(jid_text)
    if jid.local is None:
        raise UsageError(f"{jid} is not an account JID (user@domain)")
    server = _server(args.server)
    password = _secret(args.password, "ROOST_PASSWORD", f"Password for {jid.bare}: ")
    if args.client_cmd == "passwd":
        args.new_password_value = _secret(
            args.new_password, "ROOST_NEW_PASSWORD", "New password: ", confirm=True
        )
    return Client(
        jid,
        password,
        resource=args.resource,
        server=server,
        direct_tls=args.direct_tls,
        cafile=args.cafile,
        insecure=args.insecure,
        timeout=args.timeout,
        request_timeout=args.timeout,
        reconnect=args.client_cmd == "listen",
        register=options.get("register", False),
        fetch_roster=options.get("fetch_roster", False),
        available=options.get("available", False),
    )


def _explain(exc: Exception, c: Client | None) -> tuple[str, int]:
    """One line a shell user can act on, and the exit code."""
    who = str(c.account) if c is not None else "the account"
    domain = c.account.domain if c is not None else "the domain"
    if isinstance(exc, AuthenticationFailed):
        return (
            f"authentication failed for {who} ({exc.condition}): check the JID and password "
            "(or create the account: roost client register, roost user add)",
            EXIT_AUTH,
        )
    if isinstance(exc, RegistrationFailed):
        return (
            f"the server refused to register {who} ({exc.condition}): in-band registration "
            "may be off (registration.enabled) or the name not allowed",
            EXIT_FAILED,
        )
    if isinstance(exc, CertificateNotTrusted):
        return (
            f"{exc}: give --cafile FILE with the CA that issued it (or --insecure, for "
            "development only)",
            EXIT_CERT,
        )
    if isinstance(exc, HostNotFound):
        return (
            f"cannot find the server for {domain}: {exc}; check the domain, or give "
            "--server HOST:PORT",
            EXIT_CONNECT,
        )
    if isinstance(exc, ConnectFailed):
        return (
            f"cannot connect to the server for {domain}: {exc}; is it running? "
            "(--server HOST:PORT picks the address)",
            EXIT_CONNECT,
        )
    if isinstance(exc, StanzaError):
        text = f" ({exc.text})" if exc.text else ""
        return f"refused: {exc.condition.value}{text}", EXIT_FAILED
    if isinstance(exc, TimeoutError):
        return "no answer in time (--timeout SECONDS waits longer)", EXIT_FAILED
    return str(exc), EXIT_FAILED


async def _run(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    fn, options = _COMMANDS[args.client_cmd]
    client: Client | None = None
    try:
        client = _client(args, options)
        await client.connect()
        return await fn(client, args, out)
    except UsageError as exc:
        print(f"roost client: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ClientError, StanzaError, TimeoutError) as exc:
        message, code = _explain(exc, client)
        print(f"roost client: {message}", file=sys.stderr)
        return code
    finally:
        if client is not None:
            await client.disconnect(timeout=min(args.timeout, 5.0))


def run_command(args: argparse.Namespace) -> int:
    """Run ``roost client ...``; returns the exit code."""
    root = logging.getLogger("roost")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("roost client: %(levelname)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)

    def out(line: str) -> None:
        print(line, flush=True)

    return asyncio.run(_run(args, out))
