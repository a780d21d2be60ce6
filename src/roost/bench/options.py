"""Command-line options of ``roost bench`` and the settings every worker process receives.

Kept free of heavy imports: ``roost.cli`` builds its parser from here on every start.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

__all__ = ["SCENARIOS", "BenchOptions", "add_arguments", "options_from_args", "parse_server"]

SCENARIOS = ("login", "idle", "messages", "presence", "muc")
TLS_MODES = ("starttls", "direct", "none")
LOOPS = ("auto", "asyncio", "uvloop")


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """Everything a bench run needs; picklable, handed to each worker process."""

    scenario: str
    host: str
    port: int
    domain: str
    users: int = 100
    procs: int = 1
    tls: str = "starttls"
    insecure: bool = False
    prefix: str = "bench"
    password: str = "bench"
    resource: str | None = "bench"
    mechanisms: tuple[str, ...] = ()
    #: logins in flight at once, per worker process
    concurrency: int = 50
    #: bound on each network step (one login, one registration, closing a session)
    timeout: float = 30.0
    #: bound on the whole login (or registration) phase
    login_timeout: float = 300.0
    register: bool = False
    server_pid: int | None = None
    #: local addresses to spread connections over (e.g. 127.0.0.2..); empty: the default
    source_ips: tuple[str, ...] = ()
    #: idle: how long the sessions stay idle; presence: how long presence changes go on
    duration: float = 5.0
    #: messages: aggregate rates (messages per second) of the steps
    rates: tuple[int, ...] = (500, 1000, 2000, 4000)
    step_seconds: float = 5.0
    #: messages: seconds at the first rate before the first step, not counted
    warmup: float = 1.0
    #: how long after a step (or the presence phase) late deliveries are still counted
    drain: float = 1.0
    #: presence: aggregate presence changes per second
    presence_rate: float = 100.0
    #: presence: roster size of each user (for the expected fan-out); None: not reported
    contacts: int | None = None
    #: muc: the room (default bench@conference.DOMAIN) and each step's groupchat messages
    #: per second per occupant
    room: str | None = None
    occupant_rates: tuple[float, ...] = (1.0,)
    #: enable XEP-0198 stream management (acks answered) on every session
    sm: bool = False
    #: enable XEP-0280 message carbons on every session
    carbons: bool = False
    json_path: str | None = None
    quiet: bool = False
    loop: str = "auto"

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}")
        if self.tls not in TLS_MODES:
            raise ValueError(f"unknown TLS mode {self.tls!r}")
        if self.users < 1 or self.procs < 1 or self.concurrency < 1:
            raise ValueError("--users, --procs and --concurrency must be at least 1")
        if self.procs > self.users:
            raise ValueError("--procs cannot exceed --users")
        if self.scenario == "messages" and self.users < 2:
            raise ValueError("messages needs at least 2 users (sessions chat in pairs)")
        if not self.rates or any(r <= 0 for r in self.rates):
            raise ValueError("--rates must be positive integers")
        if not self.occupant_rates or any(r <= 0 for r in self.occupant_rates):
            raise ValueError("muc --rates must be positive numbers")
        if min(self.timeout, self.login_timeout, self.step_seconds) <= 0:
            raise ValueError("timeouts and --step-seconds must be positive")
        if self.duration < 0 or self.drain < 0 or self.warmup < 0 or self.presence_rate <= 0:
            raise ValueError("--duration, --drain and --warmup must be >= 0, --rate positive")


def parse_server(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _csv_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from None


def _csv_floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers: {text!r}") from None


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target")
    g.add_argument(
        "--server",
        type=parse_server,
        default=("127.0.0.1", 5222),
        metavar="HOST:PORT",
        help="the only address connected to (default 127.0.0.1:5222)",
    )
    g.add_argument("--domain", default="localhost", help="XMPP domain of the accounts")
    g.add_argument(
        "--tls",
        choices=TLS_MODES,
        default="starttls",
        help="starttls (default), direct (XEP-0368: point --server at that port), none",
    )
    g.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server certificate (self-signed test servers)",
    )
    g.add_argument(
        "--mechanisms",
        type=_csv,
        default=(),
        help="SASL mechanisms to use, best first (default: SCRAM-SHA-256-PLUS, "
        "SCRAM-SHA-1-PLUS, SCRAM-SHA-256, SCRAM-SHA-1, PLAIN)",
    )
    g.add_argument(
        "--server-pid",
        type=int,
        default=None,
        help="server process id: its CPU time and memory are read from /proc",
    )
    g.add_argument(
        "--source-ips",
        type=_csv,
        default=(),
        help="local addresses to spread connections over (per-IP limits, ports)",
    )
    g = p.add_argument_group("accounts")
    g.add_argument("--users", type=int, default=100, help="sessions (accounts) to log in")
    g.add_argument(
        "--users-prefix",
        "--prefix",
        dest="prefix",
        default="bench",
        help="accounts are PREFIX0, PREFIX1, ... (default bench)",
    )
    g.add_argument("--password", default="bench", help="the password of every account")
    g.add_argument("--resource", default="bench", help="resource to bind ('' lets the server pick)")
    g.add_argument(
        "--register",
        action="store_true",
        help="create the accounts in-band first (XEP-0077), for other servers",
    )
    g = p.add_argument_group("load")
    g.add_argument("--procs", type=int, default=1, help="worker processes (default 1)")
    g.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="logins in flight per worker process (default 50)",
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds allowed for one login or close (default 30)",
    )
    g.add_argument(
        "--login-timeout",
        type=float,
        default=300.0,
        help="seconds allowed for the whole login phase (default 300)",
    )
    g.add_argument("--loop", choices=LOOPS, default="auto", help="event loop (auto: uvloop)")
    g.add_argument(
        "--sm", action="store_true", help="enable XEP-0198 stream management on every session"
    )
    g.add_argument(
        "--carbons", action="store_true", help="enable XEP-0280 message carbons on every session"
    )
    g = p.add_argument_group("output")
    g.add_argument("--json", dest="json_path", metavar="FILE", help="also write results as JSON")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress display")


def add_arguments(bench: argparse.ArgumentParser) -> None:
    """The ``roost bench`` sub-commands (scenarios and ``provision``)."""
    sub = bench.add_subparsers(dest="bench_cmd", required=True, metavar="SCENARIO")
    p = sub.add_parser("login", help="N accounts log in: logins/s, p50/p99 login time")
    _common(p)
    p = sub.add_parser("idle", help="N idle sessions: server memory per session")
    _common(p)
    p.add_argument("--duration", type=float, default=5.0, help="seconds to stay idle")
    p = sub.add_parser("messages", help="pairs chat at stepped rates: latency, max rate")
    _common(p)
    p.add_argument(
        "--rates",
        type=_csv_ints,
        default=(500, 1000, 2000, 4000),
        help="aggregate messages/s of each step (default 500,1000,2000,4000)",
    )
    p.add_argument("--step-seconds", type=float, default=5.0, help="length of a step")
    p.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of messages at the first rate before the first step, not counted (default 1)",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=1.0,
        help="seconds after a step during which deliveries still count (default 1)",
    )
    p = sub.add_parser("presence", help="rosters of M contacts change presence: fan-out/s")
    _common(p)
    p.add_argument(
        "--rate",
        dest="presence_rate",
        type=float,
        default=100.0,
        help="aggregate presence changes per second (default 100)",
    )
    p.add_argument("--duration", type=float, default=5.0, help="seconds of presence changes")
    p.add_argument("--drain", type=float, default=1.0, help="seconds to wait for stragglers")
    p.add_argument(
        "--contacts",
        type=int,
        default=None,
        help="contacts per roster (as provisioned), for the expected fan-out",
    )
    p = sub.add_parser(
        "muc", help="N occupants of one room send groupchat messages: fan-out/s, latency"
    )
    _common(p)
    p.add_argument(
        "--room",
        default=None,
        help="room JID (default bench@conference.DOMAIN); the first session creates it",
    )
    p.add_argument(
        "--rates",
        dest="occupant_rates",
        type=_csv_floats,
        default=(1.0,),
        help="messages/s per occupant of each step (default 1)",
    )
    p.add_argument(
        "--step-seconds",
        "--duration",
        dest="step_seconds",
        type=float,
        default=60.0,
        help="length of a step (default 60)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of messages at the first rate before the first step, not counted",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=1.0,
        help="seconds after a step during which deliveries still count (default 1)",
    )
    p = sub.add_parser(
        "provision",
        help="create accounts and mutual rosters directly in Roost's storage (fast, offline)",
    )
    p.add_argument("--config", "-c", default=argparse.SUPPRESS, help="TOML config file")
    p.add_argument("--users", type=int, required=True, help="accounts to create")
    p.add_argument("--contacts", type=int, default=0, help="mutual contacts per user")
    p.add_argument("--users-prefix", "--prefix", dest="prefix", default="bench")
    p.add_argument("--password", default="bench", help="the password of every account")
    p.add_argument("--domain", default=None, help="domain (default: the first configured)")


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """Validated ``BenchOptions`` from parsed arguments (raises ``ValueError``)."""
    host, port = args.server
    return BenchOptions(
        scenario=args.bench_cmd,
        host=host,
        port=port,
        domain=args.domain,
        users=args.users,
        procs=args.procs,
        tls=args.tls,
        insecure=args.insecure,
        prefix=args.prefix,
        password=args.password,
        resource=args.resource or None,
        mechanisms=tuple(args.mechanisms),
        concurrency=args.concurrency,
        timeout=args.timeout,
        login_timeout=args.login_timeout,
        register=args.register,
        server_pid=args.server_pid,
        source_ips=tuple(args.source_ips),
        duration=getattr(args, "duration", 5.0),
        rates=getattr(args, "rates", (500, 1000, 2000, 4000)),
        step_seconds=getattr(args, "step_seconds", 5.0),
        warmup=getattr(args, "warmup", 1.0),
        drain=getattr(args, "drain", 1.0),
        presence_rate=getattr(args, "presence_rate", 100.0),
        contacts=getattr(args, "contacts", None),
        room=getattr(args, "room", None),
        occupant_rates=getattr(args, "occupant_rates", (1.0,)),
        sm=args.sm,
        carbons=args.carbons,
        json_path=args.json_path,
        quiet=args.quiet,
        loop=args.loop,
    )
