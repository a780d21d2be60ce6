"""The ``roost`` command: serve, user, cert, check, bench, client.

Exit codes: 0 success, 1 an operation failed (e.g. the account exists), 2 bad configuration
or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from roost.server.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from roost.storage.api import Storage
    from roost.storage.sqlite import SQLiteStorage

__all__ = ["main"]

_T = TypeVar("_T")
log = logging.getLogger("roost")


def _load(args: argparse.Namespace) -> Config:
    path = Path(args.config) if args.config else None
    if path is None and Path("roost.toml").exists():
        path = Path("roost.toml")
    return load_config(path)


def _setup_logging(config: Config) -> None:
    target = config.log.file
    handler: logging.Handler
    if target is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        try:
            handler = logging.FileHandler(target, encoding="utf-8")
        except OSError as exc:
            raise SystemExit(
                f"roost: configuration error: log.file: cannot open {target}: "
                f"{exc.strerror or exc}"
            ) from None
    logging.basicConfig(
        level=getattr(logging, config.log.level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        handlers=[handler],
    )


# -- serve ---------------------------------------------------------------------------------


def _install_loop(choice: str) -> None:
    if choice == "asyncio":
        return
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit(
                "roost: --loop uvloop asked for, but uvloop is not installed"
            ) from None
        return
    uvloop.install()




async def _sighup(server: Any) -> None:
    """SIGHUP: reload the config file and certificates, as ``roost reload`` does."""
    from roost.server.control import _Refused, reload_from_file

    try:
        await reload_from_file(server)
    except _Refused as exc:
        log.error("SIGHUP: reload refused: %s", exc)


def cmd_reload(args: argparse.Namespace) -> int:
    """``roost reload``: the running server reads its config file and certificates again."""
    config = _load(args)
    result = _need_live(config, "reload")
    applied, restart = result["applied"], result["restart"]
    print("reloaded: " + (", ".join(applied) if applied else "certificates; no setting changed"))
    if restart:
        print("not applied until a restart: " + ", ".join(restart))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args)
    _setup_logging(config)
    _install_loop(args.loop)
    from roost.server.app import Server
    from roost.storage.api import StorageError
    from roost.transport.certs import CertificateError

    async def run() -> None:
        server = Server(config, owns_process=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.request_stop)
        if hasattr(signal, "SIGHUP"):
            loop.add_signal_handler(signal.SIGHUP, lambda: server.spawn(_sighup(server)))
        await server.serve_forever()

    try:
        asyncio.run(run())
    except CertificateError as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"roost: cannot listen: {exc}", file=sys.stderr)
        return 1
    except StorageError as exc:  # e.g. a database from a newer Roost (SchemaError)
        print(f"roost: {exc}", file=sys.stderr)
        return 1
    return 0


# -- user ----------------------------------------------------------------------------------


def _split_jid(text: str) -> tuple[str, str]:
    from roost.core.jid import JID, InvalidJID

    try:
        jid = JID.parse(text)
    except InvalidJID as exc:
        raise SystemExit(f"roost: invalid JID {text!r}: {exc}") from None
    if jid.local is None or jid.resource is not None:
        raise SystemExit(f"roost: {text!r} is not a bare account JID (user@domain)")
    return jid.local, jid.domain


def _password(args: argparse.Namespace, confirm: bool = True) -> str:
    if getattr(args, "password", None):
        return str(args.password)
    env = os.environ.get("ROOST_PASSWORD")
    if env:
        return env
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise SystemExit("roost: no password given")
        return line
    pw = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != pw:
        raise SystemExit("roost: passwords differ")
    if not pw:
        raise SystemExit("roost: the password must not be empty")
    return pw


class _StorageUnavailable(Exception):
    """The database cannot be opened (an unreadable or missing data_dir, say)."""


async def _open_storage(config: Config) -> SQLiteStorage:
    import sqlite3

    from roost.storage.sqlite import SQLiteStorage

    data = Path(config.data_dir)
    if data.exists() and not data.is_dir():
        raise _StorageUnavailable(f"data_dir {data} is not a directory; check data_dir")
    path = data / "roost.db"
    storage = SQLiteStorage(path)
    from roost.storage.api import StorageError

    try:
        await storage.open()
    except StorageError as exc:  # e.g. a database from a newer Roost (SchemaError)
        with contextlib.suppress(Exception):
            await storage.close()
        raise _StorageUnavailable(str(exc)) from None
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(Exception):
            await storage.close()
        why = getattr(exc, "strerror", None) or str(exc)
        raise _StorageUnavailable(
            f"cannot open the database {path} ({why}); check data_dir and its permissions"
        ) from None
    return storage


async def _close_storage(storage: SQLiteStorage, config: Config) -> None:
    """Close, and when run as root (``sudo roost import``...), give the database files to
    the owner of data_dir: the server runs as that user and must write them."""
    await storage.close()
    if os.geteuid() != 0:
        return
    data = Path(config.data_dir)
    with contextlib.suppress(OSError):
        owner = data.stat()
        for path in data.glob("roost.db*"):
            os.chown(path, owner.st_uid, owner.st_gid)


async def _with_storage(config: Config, fn: Callable[[Storage], Awaitable[_T]]) -> _T:
    """Run ``fn`` on the storage of ``config`` (the server not running), then close it."""
    storage = await _open_storage(config)
    try:
        return await fn(storage)
    finally:
        await _close_storage(storage, config)


async def _with_accounts(config: Config, fn):  # type: ignore[no-untyped-def]
    from roost.server.accounts import Accounts

    storage = await _open_storage(config)
    try:
        return await fn(Accounts(storage, config.auth.scram_iterations))
    finally:
        await _close_storage(storage, config)


def cmd_user(args: argparse.Namespace) -> int:
    config = _load(args)
    try:
        return _user(args, config)
    except _StorageUnavailable as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return 1


def _user(args: argparse.Namespace, config: Config) -> int:
    from roost.server.accounts import InvalidUsername
    from roost.storage.api import AccountExists, NoSuchAccount

    if args.user_cmd == "import":
        return _import_users(config, Path(args.file))
    if args.user_cmd == "list":
        rows = asyncio.run(_with_accounts(config, lambda a: a.storage.list_accounts(args.domain)))
        for username, domain in rows:
            print(f"{username}@{domain}")
        return 0
    local, domain = _split_jid(args.jid)
    if domain not in config.domains:
        print(
            f"roost: {domain} is not one of the served domains {list(config.domains)}",
            file=sys.stderr,
        )
        return 2
    password = _password(args) if args.user_cmd in ("add", "passwd") else None
    request: dict[str, object] = {"jid": f"{local}@{domain}", "password": password}
    live = _live(config, f"user.{args.user_cmd}", request)
    if live is not None:
        return _print_live_user(args.user_cmd, f"{local}@{domain}", live)
    try:
        if args.user_cmd == "add":
            assert password is not None
            asyncio.run(_with_accounts(config, lambda a: a.create(local, domain, password)))
            print(f"created {local}@{domain}")
        elif args.user_cmd == "passwd":
            assert password is not None
            asyncio.run(_with_accounts(config, lambda a: a.set_password(local, domain, password)))
            print(f"password changed for {local}@{domain}")
        elif args.user_cmd == "delete":
            ok = asyncio.run(
                _with_accounts(config, lambda a: a.storage.delete_account(local, domain))
            )
            if not ok:
                print(f"roost: no account {local}@{domain}", file=sys.stderr)
                return 1
            print(f"deleted {local}@{domain}")
    except AccountExists:
        print(f"roost: {local}@{domain} already exists", file=sys.stderr)
        return 1
    except NoSuchAccount:
        print(f"roost: no account {local}@{domain}", file=sys.stderr)
        return 1
    except (InvalidUsername, ValueError) as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return 1
    return 0


def _live(
    config: Config, cmd: str, args: dict[str, object] | None = None, timeout: float = 30.0
) -> dict[str, Any] | None:
    """The running server's reply to a control request; None when no server runs."""
    from roost.server.control import NoServer, call, socket_path

    try:
        return call(Path(config.data_dir), cmd, args, timeout=timeout)
    except NoServer:
        return None
    except TimeoutError:
        raise SystemExit(
            f"roost: the server did not answer on {socket_path(config.data_dir)} in {timeout:g} s"
        ) from None
    except ValueError:
        raise SystemExit(
            f"roost: the answer on {socket_path(config.data_dir)} is not a Roost reply"
        ) from None
    except OSError as exc:
        why = exc.strerror or exc
        raise SystemExit(
            f"roost: cannot use the control socket {socket_path(config.data_dir)} ({why}); "
            "run roost as the user the server runs as"
        ) from None


def _need_live(config: Config, cmd: str, **args: object) -> Any:
    """The result of a request only a running server can answer (exits when it fails)."""
    from roost.server.control import socket_path

    reply = _live(config, cmd, args)
    if reply is None:
        raise SystemExit(
            f"roost: no server is running (nothing answers on {socket_path(config.data_dir)})"
        )
    if not reply.get("ok"):
        print(f"roost: {reply.get('error')}", file=sys.stderr)
        raise SystemExit(int(reply.get("exit", 1)))
    return reply["result"]


def _ended(result: dict[str, Any]) -> str:
    n = int(result.get("sessions_ended", 0))
    return f" ({n} session{'' if n == 1 else 's'} ended)" if n else ""


def _print_live_user(cmd: str, jid: str, reply: dict[str, Any]) -> int:
    """What ``roost user add|passwd|delete`` says when the running server did it."""
    if not reply.get("ok"):
        print(f"roost: {reply.get('error')}", file=sys.stderr)
        return int(reply.get("exit", 1))
    result = reply["result"]
    if cmd == "add":
        print(f"created {jid}")
    elif cmd == "passwd":
        print(f"password changed for {jid}{_ended(result)}")
    else:
        print(f"deleted {jid}{_ended(result)}")
    return 0


# -- status, sessions ----------------------------------------------------------------------


def _duration(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [f"{d}d"] if d else []
    parts += [f"{h}h"] if h or d else []
    return "".join([*parts, f"{m}m{s:02d}s"])


def cmd_status(args: argparse.Namespace) -> int:
    """``roost status``: what the running server is doing (exit 1 when none runs)."""
    import json

    config = _load(args)
    st = _need_live(config, "status")
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(f"roost {st['version']}, pid {st['pid']}, up {_duration(st['uptime'])}")
    print("listening: " + ", ".join(lst["name"] for lst in st["listeners"]))
    sessions = ", ".join(f"{d} {n}" for d, n in st["sessions"].items())
    print(f"sessions: {sessions} ({st['connections']} client connections)")
    print(f"memory: {st['memory_rss'] / 1048576:.1f} MiB resident")
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    """``roost sessions list [--domain D]``, ``roost sessions kick JID``."""
    import json

    config = _load(args)
    if args.sessions_cmd == "list":
        rows = _need_live(config, "sessions.list", domain=args.domain)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            state = "available" if row["available"] else "unavailable"
            tls = "TLS" if row["encrypted"] else "no TLS"
            print(f"{row['jid']}\t{row['address'] or '-'}\t{state}\t{tls}")
        return 0
    ended = _need_live(
        config, "sessions.kick", jid=args.jid, condition=args.condition, reason=args.reason
    )
    for jid in ended:
        print(f"ended {jid} ({args.condition})")
    return 0


def _csv_rows(reader: Iterator[list[str]], path: Path) -> Iterator[list[str]]:
    """The rows, with a file that is not UTF-8 text reported instead of a traceback."""
    try:
        yield from reader
    except UnicodeDecodeError as exc:
        raise SystemExit(f"roost: {path} is not UTF-8 text ({exc.reason})") from None


def _read_user_csv(path: Path, config: Config) -> list[tuple[str, str, str]]:
    """Rows of ``user@domain,password`` (a header line and blank lines are skipped)."""
    import csv

    from roost.core.jid import JID, InvalidJID

    rows: list[tuple[str, str, str]] = []
    try:
        f = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise SystemExit(f"roost: cannot read {path}: {exc.strerror or exc}") from None
    with f:
        for n, row in enumerate(_csv_rows(csv.reader(f), path), start=1):
            if not row or not row[0].strip() or (n == 1 and row[0].strip().lower() == "jid"):
                continue
            if len(row) < 2 or not row[1]:
                raise SystemExit(f"roost: {path}:{n}: expected 'user@domain,password'")
            try:
                jid = JID.parse(row[0].strip())
            except InvalidJID as exc:
                raise SystemExit(f"roost: {path}:{n}: {exc}") from None
            if jid.local is None or jid.resource is not None or jid.domain not in config.domains:
                raise SystemExit(
                    f"roost: {path}:{n}: {row[0]!r} is not an account of a served domain"
                )
            rows.append((jid.local, jid.domain, row[1]))
    return rows


def _import_users(config: Config, path: Path) -> int:
    """Bulk-create accounts: keys derived on every core, stored in one transaction."""
    from concurrent.futures import ProcessPoolExecutor

    from roost.server.accounts import make_account

    rows = _read_user_csv(path, config)
    iterations = config.auth.scram_iterations
    with ProcessPoolExecutor() as pool:
        accounts = list(
            pool.map(
                make_account,
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                [iterations] * len(rows),
                chunksize=64,
            )
        )

    async def store() -> int:
        storage = await _open_storage(config)
        try:
            return await storage.create_accounts_bulk(accounts)
        finally:
            await _close_storage(storage, config)

    created = asyncio.run(store())
    print(f"imported {created} accounts ({len(rows) - created} already existed)")
    return 0


# -- cert ----------------------------------------------------------------------------------


def cmd_cert(args: argparse.Namespace) -> int:
    if args.cert_cmd == "import":
        return cmd_cert_import(args)
    config = _load(args)
    from roost.core.jid import JID, InvalidJID
    from roost.transport.certs import generate_self_signed

    try:
        domain = JID.make(None, args.domain).domain  # RFC 7622 §3.2, as for `domains`
    except InvalidJID as exc:
        print(f"roost: {args.domain!r} is not a valid domain: {exc}", file=sys.stderr)
        return 2
    out = Path(config.data_dir) / "certs"
    cert, key = out / f"{domain}.crt", out / f"{domain}.key"
    existing = [p for p in (cert, key) if p.exists()]
    if existing and not args.force:
        names = " and ".join(str(p) for p in existing)
        print(
            f"roost: {names} already exist{'s' if len(existing) == 1 else ''} (a running "
            "server may use it); pass --force to replace it",
            file=sys.stderr,
        )
        return 1
    try:
        generate_self_signed(domain, cert, key)
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or exc
        print(f"roost: cannot write {cert}: {why}", file=sys.stderr)
        return 1
    print(f"wrote {cert} and {key}")
    return 0


def cmd_cert_import(args: argparse.Namespace) -> int:
    """``roost cert import DIR``: each served domain's certificate from where a CA client
    keeps it (certbot: /etc/letsencrypt/live), into data_dir/certs; renewals are followed."""
    config = _load(args)
    from roost.transport.certs import CertificateError
    from roost.transport.certstore import import_certificates

    try:
        results = import_certificates(Path(args.directory), config.domains, Path(config.data_dir))
    except CertificateError as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"roost: cannot read {args.directory}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    ok = 0
    for r in results:
        if r.problem is None:
            ok += 1
            assert r.not_after is not None
            print(f"{r.domain}: imported {r.source} (valid until {r.not_after:%Y-%m-%d})")
        else:
            print(f"{r.domain}: {r.problem}")
    if config.tls.cert is not None and ok:
        print(
            "note: tls.cert is set and serves every domain; remove the [tls] cert and key "
            "to use these per-domain certificates"
        )
    if ok:
        reply = _live(config, "reload", {})
        if reply is not None and reply.get("ok"):
            print("the running server uses them now")
    return 0 if ok == len(results) else 1


def _refuse_if_running(config: Config, what: str) -> None:
    reply = _live(config, "status", timeout=5.0)
    if reply is not None:
        raise SystemExit(f"roost: a server is running on {config.data_dir}: stop it to {what}")


def cmd_export(args: argparse.Namespace) -> int:
    """``roost export FILE``: every account and its data as XEP-0227 XML (``-``: stdout)."""
    config = _load(args)
    _refuse_if_running(config, "export a consistent copy")
    from roost.storage.pie import export_xml

    try:
        text = asyncio.run(_with_storage(config, lambda st: export_xml(st, config.domains)))
    except _StorageUnavailable as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return 1
    if args.file == "-":
        sys.stdout.write(text)
        return 0
    try:
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # SCRAM keys
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        print(f"roost: cannot write {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    users = text.count("<user ")
    print(f"exported {users} account{'' if users == 1 else 's'} to {args.file}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """``roost import FILE``: accounts and their data from a XEP-0227 file;
    ``roost import --prosody DIR``: from Prosody's data directory."""
    if (args.file is None) == (args.prosody is None):
        print("roost: import needs a XEP-0227 FILE or --prosody DIR (one of them)", file=sys.stderr)
        return 2
    if args.domain and args.prosody is None:
        print("roost: --domain goes with --prosody", file=sys.stderr)
        return 2
    config = _load(args)
    _refuse_if_running(config, "import into its storage")
    from roost.storage.credentials import make_account
    from roost.storage.pie import import_xml

    def derive(jid: str, password: str) -> Any:
        user, _, domain = jid.partition("@")
        return make_account(user, domain, password, config.auth.scram_iterations)

    if args.prosody is not None:
        return _import_prosody(args, config, derive)

    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        print(f"roost: cannot read {args.file}: {why}", file=sys.stderr)
        return 1

    try:
        report = asyncio.run(
            _with_storage(config, lambda st: import_xml(st, text, config.domains, derive))
        )
    except _StorageUnavailable as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"roost: {args.file}: {exc}", file=sys.stderr)
        return 2
    for line in report.skipped:
        print(f"skipped {line}")
    n = len(report.created)
    print(f"imported {n} account{'' if n == 1 else 's'}")
    return 0 if not report.skipped else 1


def _import_prosody(args: argparse.Namespace, config: Config, derive: Any) -> int:
    from roost.storage.prosody import NotProsodyData, import_prosody

    domains = list(config.domains)
    if args.domain:
        unknown = sorted(set(d.lower() for d in args.domain) - set(domains))
        if unknown:
            print(f"roost: --domain {unknown[0]} is not one of the domains served", file=sys.stderr)
            return 2
        domains = [d.lower() for d in args.domain]
    try:
        report = asyncio.run(
            _with_storage(
                config, lambda st: import_prosody(st, Path(args.prosody), domains, derive)
            )
        )
    except _StorageUnavailable as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return 1
    except NotProsodyData as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return 2
    for line in report.ignored:
        print(line)
    for line in report.skipped:
        print(f"skipped {line}")
    n = len(report.created)
    print(f"imported {n} account{'' if n == 1 else 's'} from Prosody")
    return 0 if not report.skipped else 1


# -- check ---------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """Validate config, certificates, data directory and ports; say how to fix problems."""
    config = _load(args)
    from roost.server.config import listening_ports
    from roost.server.loader import resolve_modules
    from roost.server.modules import default_modules
    from roost.server.privileges import resolve_run_as
    from roost.transport.certs import CertificateError, load_tls_context_server
    from roost.transport.listeners import bind_problem

    resolve_modules(config, default_modules())  # a bad [modules] table: ConfigError, exit 2
    resolve_run_as(config.run_as)  # a user or group this system lacks: ConfigError, exit 2
    problems: list[str] = []
    data = Path(config.data_dir)
    try:
        data.mkdir(parents=True, exist_ok=True)
        probe = data / ".roost-check"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        problems.append(f"data_dir {data}: not writable ({exc}); choose another data_dir")
    if config.tls.cert is not None and config.tls.key is not None:
        try:
            load_tls_context_server(config.tls.cert, config.tls.key)
        except CertificateError as exc:
            problems.append(f"tls: {exc}; fix tls.cert/tls.key or remove both to self-sign")
        else:
            problems += _check_certificates(config)
    else:
        for domain in config.domains:
            crt = data / "certs" / f"{domain}.crt"
            state = "present" if crt.exists() else "will be generated on first start"
            print(f"certificate for {domain}: self-signed, {state}")
        problems += _check_certificates(config)
    # A server running with this data_dir holds its own ports: not a conflict. Its answer
    # on the control socket makes `roost check` a health check (exit 0 when it answers).
    live = _live(config, "status", timeout=5.0)
    ours: set[int] = set()
    if live is not None and live.get("ok"):
        st = live["result"]
        ours = {lst["port"] for lst in st["listeners"]}
        sessions = ", ".join(f"{d} {n}" for d, n in st["sessions"].items())
        print(
            f"server running: roost {st['version']}, pid {st['pid']}, "
            f"up {_duration(st['uptime'])}, sessions {sessions}"
        )
    elif live is not None:
        problems.append(f"the running server answers with an error: {live.get('error')}")
    for key, port, interfaces in listening_ports(config):
        if port in ours:
            continue
        for host in interfaces:
            err = bind_problem(host, port, skip_missing_ipv6=len(interfaces) > 1)
            if err is not None:
                problems.append(
                    f"{key}: cannot bind {host}:{port} ({err.strerror}); is another server "
                    "running? choose another port"
                )
    if config.s2s.enabled:
        problems += _check_s2s(config)
    for p in problems:
        print(f"problem: {p}")
    if problems:
        return 1
    print(f"ok: config {config.source or '(defaults)'}; domains {', '.join(config.domains)}")
    return 0


#: a certificate that expires sooner than this is reported (not a problem yet)
_EXPIRY_WARNING_DAYS = 30


def _check_certificates(config: Config) -> list[str]:
    """Each domain's certificate names it (RFC 6125 §6.4) and is valid now; one about to
    expire is mentioned. A configured ``tls.cert`` serves every domain; otherwise each has
    its own self-signed pair in data_dir/certs (checked when present)."""
    import datetime

    from roost.core.identity import certificate_matches
    from roost.transport.certs import (
        CertificateError,
        certificate_identities,
        certificate_validity,
    )

    problems: list[str] = []
    now = datetime.datetime.now(datetime.UTC)
    checked: set[Path] = set()
    for domain in config.domains:
        if config.tls.cert is not None:
            path, label = config.tls.cert, "tls.cert"
            fix = "get one whose subjectAltName includes {domain}"
        else:
            path = Path(config.data_dir) / "certs" / f"{domain}.crt"
            label = f"the certificate for {domain} ({path})"
            fix = f"run `roost cert generate {domain} --force` for a new self-signed one"
            if not path.exists():
                continue
        try:
            ids = certificate_identities(path)
            not_before, not_after = certificate_validity(path)
        except CertificateError as exc:
            problems.append(f"{label}: {exc}")
            continue
        if not certificate_matches(domain, ids):
            named = ", ".join(ids.names()) or "no DNS name"
            problems.append(
                f"{label} does not name {domain} (it names {named}); clients and other servers "
                f"will refuse it: {fix.format(domain=domain)}"
            )
        if path in checked:
            continue  # one file's dates are reported once
        checked.add(path)
        renew = "renew it" if config.tls.cert is not None else fix.format(domain=domain)
        if not_after <= now:
            problems.append(
                f"{label} expired on {not_after:%Y-%m-%d %H:%M} UTC; clients will refuse it: "
                f"{renew}"
            )
        elif not_before > now:
            problems.append(
                f"{label} is not valid before {not_before:%Y-%m-%d %H:%M} UTC (check the "
                "clock of this machine or of the issuer)"
            )
        elif not_after - now < datetime.timedelta(days=_EXPIRY_WARNING_DAYS):
            days = (not_after - now).days
            print(f"note: {label} expires in {days} days ({not_after:%Y-%m-%d} UTC): {renew}")
    return problems


def _check_s2s(config: Config) -> list[str]:
    """Federation: certificate names and DNS records other servers will look at."""
    from roost.transport.srv import srv_targets

    problems = []
    s2s = config.s2s
    for domain in config.domains:
        if domain == "localhost":
            continue  # never federated (RFC 6761 §6.3)
        # (whether tls.cert names the domain: _check_certificates)
        if config.tls.cert is None and s2s.require_valid_certs:
            print(
                f"s2s for {domain}: the self-signed certificate is trusted by no one; peers "
                "that require valid certificates will refuse it (set tls.cert/tls.key)"
            )
        if domain in s2s.routes or not s2s.port:
            continue  # found without DNS, or an ephemeral port
        servers = []
        for entry in s2s.dns_servers:
            host, _, port = entry.rpartition(":")
            servers.append((host, int(port)))
        targets = asyncio.run(
            srv_targets("xmpp-server", domain, 5269, nameservers=servers, timeout=3.0)
        )
        ports = {port for _, port in targets}
        if not targets:
            problems.append(
                f"DNS: _xmpp-server._tcp.{domain} says there is no XMPP service; remove that "
                "record or point it at this server"
            )
        elif s2s.port not in ports:
            where = ", ".join(f"{h}:{p}" for h, p in targets)
            problems.append(
                f"DNS: other servers will look for {domain} at {where}, but s2s.port is "
                f"{s2s.port}: publish _xmpp-server._tcp.{domain}. SRV 0 5 {s2s.port} <this host>."
            )
    return problems


# -- bench ---------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> int:
    """Load generator scenarios and account provisioning (``roost.bench``)."""
    if args.bench_cmd == "provision":
        return _bench_provision(args, _load(args))
    from roost.bench.cli import run_command

    return run_command(args)


def _bench_provision(args: argparse.Namespace, config: Config) -> int:
    """``roost bench provision``: benchmark accounts and rosters in this server's storage."""
    from roost.bench.provision import check_layout, provision
    from roost.server.app import open_storage

    domain = args.domain or config.domains[0]
    if domain not in config.domains:
        print(f"roost bench: {domain} is not one of {list(config.domains)}", file=sys.stderr)
        return 2
    try:
        check_layout(args.users, args.contacts)
    except ValueError as exc:
        print(f"roost bench: {exc}", file=sys.stderr)
        return 2
    if args.contacts > config.roster.max_items:
        print(
            f"roost bench: warning: {args.contacts} contacts exceed roster.max_items "
            f"({config.roster.max_items}); the server will refuse to add more",
            file=sys.stderr,
        )

    def say(text: str) -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\r" + text)
            sys.stderr.flush()

    async def run() -> int:
        storage = open_storage(config)
        await storage.open()
        try:
            t0 = time.monotonic()
            res = await provision(
                storage,
                domain=domain,
                users=args.users,
                contacts=args.contacts,
                prefix=args.prefix,
                password=args.password,
                iterations=config.auth.scram_iterations,
                bulk_load=True,
                progress=say,
            )
        except ValueError as exc:
            print(f"roost bench: {exc}", file=sys.stderr)
            return 1
        finally:
            await storage.close()
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        print(
            f"provisioned {args.users} accounts {args.prefix}0..{args.prefix}{args.users - 1}"
            f"@{domain} ({res.created} created, {res.existed} existed) in "
            f"{res.accounts_seconds:.1f} s; {res.roster_items} roster items "
            f"({args.contacts} mutual contacts each, subscription both) in "
            f"{res.rosters_seconds:.1f} s; total {time.monotonic() - t0:.1f} s. "
            "All accounts share one password and one set of SCRAM keys (one salt)."
        )
        return 0

    try:
        import uvloop
    except ImportError:
        return asyncio.run(run())
    return uvloop.run(run())  # a third faster: the roster writes are many small awaits


# -- client --------------------------------------------------------------------------------


def cmd_client(args: argparse.Namespace) -> int:
    """``roost client ...``: the command-line XMPP client (``roost.client.cli``)."""
    from roost.client.cli import run_command

    return run_command(args)


# -- main ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from roost import __version__

    parser = argparse.ArgumentParser(prog="roost", description="Roost XMPP server")
    parser.add_argument("--version", action="version", version=f"roost {__version__}")
    parser.add_argument(
        "--config", "-c", help="TOML config file (default: ./roost.toml if present)"
    )
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--config", "-c", default=argparse.SUPPRESS, help="TOML config file")
        return p

    serve = add("serve", "run the server")
    serve.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop (auto: uvloop when installed)",
    )
    serve.set_defaults(fn=cmd_serve)

    user = add("user", "manage accounts")
    usub = user.add_subparsers(dest="user_cmd", required=True)
    for name, help in (("add", "create an account"), ("passwd", "change a password")):
        p = usub.add_parser(name, help=help)
        p.add_argument("jid")
        p.add_argument("--password", "-p", help="(else $ROOST_PASSWORD, else a prompt)")
        p.add_argument("--config", "-c", default=argparse.SUPPRESS)
    p = usub.add_parser("delete", help="delete an account and its data")
    p.add_argument("jid")
    p.add_argument("--config", "-c", default=argparse.SUPPRESS)
    p = usub.add_parser("import", help="create accounts in bulk from a CSV of user@domain,password")
    p.add_argument("file")
    p.add_argument("--config", "-c", default=argparse.SUPPRESS)
    p = usub.add_parser("list", help="list accounts")
    p.add_argument("domain", nargs="?")
    p.add_argument("--config", "-c", default=argparse.SUPPRESS)
    user.set_defaults(fn=cmd_user)

    p = add("export", "every account and its data as a XEP-0227 file (server stopped)")
    p.add_argument("file", help="where to write it ('-': standard output)")
    p.set_defaults(fn=cmd_export)
    p = add(
        "import",
        "accounts and their data from a XEP-0227 file or Prosody's data directory "
        "(server stopped)",
    )
    p.add_argument("file", nargs="?", help="a XEP-0227 file (from roost export)")
    p.add_argument(
        "--prosody",
        metavar="DIR",
        help="Prosody's data_path (internal storage, e.g. /var/lib/prosody) instead of a file",
    )
    p.add_argument(
        "--domain",
        "-d",
        action="append",
        help="with --prosody: only this host (repeatable; default: every served domain)",
    )
    p.set_defaults(fn=cmd_import)

    reload = add("reload", "the running server reads its config file and certificates again")
    reload.set_defaults(fn=cmd_reload)

    status = add("status", "what the running server is doing (version, uptime, sessions)")
    status.add_argument("--json", action="store_true", help="the whole reply as JSON")
    status.set_defaults(fn=cmd_status)

    sessions = add("sessions", "the running server's client sessions")
    ssub = sessions.add_subparsers(dest="sessions_cmd", required=True)
    p = ssub.add_parser("list", help="bound sessions: JID, address, presence, TLS")
    p.add_argument("--domain", "-d", help="only this domain's")
    p.add_argument("--json", action="store_true")
    p.add_argument("--config", "-c", default=argparse.SUPPRESS)
    p = ssub.add_parser("kick", help="end a session (full JID) or all of an account's (bare)")
    p.add_argument("jid")
    from roost.server.admin import KICK_CONDITIONS

    p.add_argument(
        "--condition",
        choices=list(KICK_CONDITIONS),
        default="policy-violation",
        help="the stream error sent (RFC 6120 §4.9.3; default policy-violation)",
    )
    p.add_argument("--reason", help="text sent with the stream error")
    p.add_argument("--config", "-c", default=argparse.SUPPRESS)
    sessions.set_defaults(fn=cmd_sessions)

    cert = add("cert", "certificates")
    csub = cert.add_subparsers(dest="cert_cmd", required=True)
    p = csub.add_parser("generate", help="generate a self-signed certificate into data_dir/certs")
    p.add_argument("domain")
    p.add_argument("--force", action="store_true", help="replace an existing certificate")
    p.add_argument("--config", "-c", default=argparse.SUPPRESS)
    p = csub.add_parser(
        "import",
        help="copy each domain's certificate from a CA client's directory into data_dir/certs "
        "(certbot: /etc/letsencrypt/live); renewals are followed",
    )
    p.add_argument("directory")
    p.add_argument("--config", "-c", default=argparse.SUPPRESS)
    cert.set_defaults(fn=cmd_cert)

    check = add("check", "validate config, certificates, data directory and ports")
    check.set_defaults(fn=cmd_check)

    from roost.bench.options import add_arguments as add_bench_arguments

    bench = add("bench", "load generator (login, idle, messages, presence) and provisioning")
    add_bench_arguments(bench)
    bench.set_defaults(fn=cmd_bench)

    from roost.client.cli import add_arguments as add_client_arguments

    client = add("client", "XMPP client: send, listen, roster, disco, register, passwd, ping, ...")
    add_client_arguments(client)
    client.set_defaults(fn=cmd_client)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "fn", None) is None:  # no command: the usage, not an internal name
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.fn(args))
    except ConfigError as exc:
        print(f"roost: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
