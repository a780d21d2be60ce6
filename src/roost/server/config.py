"""TOML configuration -> frozen, typed, validated settings.

Every section is a frozen dataclass. One generic validator walks the dataclass fields and
converts by their declared types (int, float, bool, str, Path, Path | None, tuple[str, ...]);
bounds, choices and per-item normalisers live in field metadata. Errors name the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from roost.core.jid import JID, InvalidJID
from roost.core.sasl import MECHANISMS as _SASL_MECHANISMS

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "ArchiveConfig",
    "AuthConfig",
    "C2SConfig",
    "ComponentsConfig",
    "Config",
    "ConfigError",
    "ContactConfig",
    "LegacyAuthConfig",
    "LogConfig",
    "MetricsConfig",
    "ModulesConfig",
    "OfflineConfig",
    "RegistrationConfig",
    "RosterConfig",
    "S2SConfig",
    "StorageConfig",
    "TLSConfig",
    "build_section",
    "config_from_dict",
    "listening_ports",
    "load_config",
]

_T = TypeVar("_T")
#: the default listen addresses: every IPv6 and every IPv4 address (dual stack; "::" is
#: skipped with a warning on a machine without IPv6, see ``roost.transport.listeners``)
ALL_INTERFACES = ("::", "0.0.0.0")


class ConfigError(Exception):
    """A configuration problem; ``key`` is the dotted key (or the file) that is wrong."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def _opt(
    default: _T,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
    item: Callable[[str], str] | None = None,
    nonempty: bool = False,
) -> _T:
    """A field with validation metadata (bounds inclusive; ``item`` normalises list items)."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "item": item, "nonempty": nonempty}
    return field(default=default, metadata=meta)


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"must be an IP address, got {value!r}") from None


def _domain(value: str) -> str:
    """Normalise a domainpart (RFC 7622 §3.2)."""
    try:
        return str(JID.make(None, value).domain)
    except InvalidJID as exc:  # names the domainpart itself
        raise ValueError(str(exc)) from None


def _account_jid(value: str) -> str:
    """A bare account JID (user@domain), normalised (RFC 7622)."""
    try:
        jid = JID.parse(value)
    except InvalidJID as exc:
        raise ValueError(str(exc)) from None
    if jid.local is None or jid.resource is not None:
        raise ValueError(f"must be a bare account JID (user@domain), got {value!r}")
    return str(jid)


@dataclass(frozen=True, slots=True)
class C2SConfig:
    """Client-to-server listener and its limits (times in seconds)."""

    port: int = _opt(5222, lo=0, hi=65535)
    interfaces: tuple[str, ...] = _opt(ALL_INTERFACES, item=_ip_address, nonempty=True)
    # XEP-0368 Direct TLS; 0 disables it.
    direct_tls_port: int = _opt(5223, lo=0, hi=65535)
    require_encryption: bool = True
    # RFC 6120 §13.12: a server must accept stanzas of at least 10000 bytes.
    max_stanza_size: int = _opt(262144, lo=10000)
    max_depth: int = _opt(64, lo=8, hi=10000)
    idle_timeout: float = _opt(600.0, lo=0)
    preauth_timeout: float = _opt(30.0, lo=1)
    max_sasl_attempts: int = _opt(3, lo=1)
    max_connections_per_ip: int = _opt(100, lo=1)
    max_auth_failures_per_ip: int = _opt(10, lo=1)
    auth_failure_window: float = _opt(300.0, lo=1)
    keepalive_interval: float = _opt(60.0, lo=0)
    # Free a client's XML parser (~15 KB) after this long without input; 0 keeps it.
    hibernate_after: float = _opt(2.0, lo=0)
    # XEP-0199: ping a bound client silent this long; close it if no answer in ping_timeout.
    ping_interval: float = _opt(300.0, lo=0)
    ping_timeout: float = _opt(60.0, lo=1)


@dataclass(frozen=True, slots=True)
class StreamManagementConfig:
    """XEP-0198 Stream Management (times in seconds)."""

    enabled: bool = True
    # how long a session whose connection dropped waits to be resumed; 0: no resumption
    resume_timeout: float = _opt(300.0, lo=0)
    # stanzas a client may leave unacknowledged; beyond: policy-violation
    max_unacked: int = _opt(1000, lo=1)
    # ask for an ack (<r/>) once this many stanzas wait for one, or this many seconds
    # after the first of them
    ack_every: int = _opt(20, lo=1)
    ack_delay: float = _opt(2.0, lo=0.01)


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Certificate and key (PEM); when both are omitted a self-signed pair is generated."""

    cert: Path | None = None
    key: Path | None = None
    # seconds between looks at the sources of certificates brought in with `roost cert
    # import` (renewed ones are copied again and used at once); 0: never
    renewal_check: float = _opt(3600.0, lo=0)

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("tls", "cert and key must be set together")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """SASL settings."""

    # RFC 7677 §4: at least 4096 iterations.
    scram_iterations: int = _opt(10000, lo=4096, hi=10_000_000)
    mechanisms: tuple[str, ...] = _opt(_SASL_MECHANISMS, choices=_SASL_MECHANISMS, nonempty=True)
    # PLAIN is only ever offered over TLS; this switches it off entirely.
    allow_plain: bool = True


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    """XEP-0077 in-band registration."""

    enabled: bool = False
    rate_per_ip: int = _opt(5, lo=1)  # registrations per IP per hour


@dataclass(frozen=True, slots=True)
class LegacyAuthConfig:
    """XEP-0078 non-SASL authentication (plaintext, only over TLS)."""

    enabled: bool = True


@dataclass(frozen=True, slots=True)
class RosterConfig:
    """RFC 6121 §2 rosters: limits a roster set must respect."""

    max_items: int = _opt(1000, lo=1)  # beyond: <not-allowed/>
    max_name_length: int = _opt(1023, lo=1)  # longer names: <not-acceptable/> (§2.3.3)
    max_group_length: int = _opt(1023, lo=1)  # longer group names: <not-acceptable/>


@dataclass(frozen=True, slots=True)
class OfflineConfig:
    """XEP-0160 offline messages."""

    max_messages: int = _opt(1000, lo=0)  # per user; when full: <service-unavailable/>


def _duration(default: float, *, lo: float = 0) -> float:
    """A time span in seconds: a number, or a string such as ``"90s"``, ``"12h"``, ``"1w"``."""
    meta = {"lo": lo, "hi": None, "choices": None, "item": None, "nonempty": False}
    return field(default=default, metadata={**meta, "duration": True})


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _parse_duration(value: object) -> float | None:
    """Seconds for a number or a ``<number><unit>`` string (s, m, h, d, w, y); None if
    neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip().lower()
        unit = _UNITS.get(text[-1:]) if text else None
        number = text[:-1] if unit is not None else text
        try:
            amount = float(number)
        except ValueError:
            return None
        return amount * (unit or 1) if math.isfinite(amount) else None
    return None


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    """XEP-0313 message archive (the ``mam`` module)."""

    # messages older than this are deleted (like Prosody's archive_expires_after = "1w");
    # 0: kept for ever
    expire_after: float = _duration(7 * 86400.0)
    # per user; the oldest beyond it are deleted by the clean-up (0: no limit)
    max_items: int = _opt(0, lo=0)
    # how often the clean-up (expire_after, max_items) runs
    cleanup_interval: float = _duration(3600.0, lo=1)
    # what a user who set no preferences gets archived (XEP-0441)
    default_policy: str = _opt("always", choices=("always", "roster", "never"))
    # results per query page at most, whatever the client asks (XEP-0313 §4.3.1)
    max_page: int = _opt(250, lo=1, hi=10000)
    # seconds the writer lets messages gather before it writes a batch (fewer, larger
    # transactions); a batch that is full already is written at once. 0: no wait
    batch_delay: float = _opt(0.005, lo=0, hi=1)


def _secret(value: str) -> str:
    if len(value) < 8:
        raise ValueError("a component secret must have at least 8 characters")
    return value


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be 'host:port', got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class S2SConfig:
    """Server-to-server federation (RFC 6120, XEP-0220 dialback); times in seconds."""

    # every domain has a certificate (configured, or self-signed on first start)
    enabled: bool = True
    port: int = _opt(5269, lo=0, hi=65535)
    # XEP-0368 Direct TLS for servers (_xmpps-server._tcp); 0: no such listener
    direct_tls_port: int = _opt(0, lo=0, hi=65535)
    interfaces: tuple[str, ...] = _opt(ALL_INTERFACES, item=_ip_address, nonempty=True)
    # domain -> "host:port", instead of DNS (private networks, tests)
    routes: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={"key": _domain, "item": _host_port},
    )
    # RFC 7590: TLS on every s2s stream
    require_encryption: bool = True
    # false: accept peers whose certificate does not verify (dialback authenticates them)
    require_valid_certs: bool = True
    # remote domains exempt from require_valid_certs (development only): dialback
    # authenticates them whatever certificate they have, and theirs is not checked
    insecure_domains: tuple[str, ...] = _opt((), item=_domain)
    dialback: bool = True
    ca_file: Path | None = None
    # "host:port" of DNS servers for SRV look-ups; empty: the system's (/etc/resolv.conf)
    dns_servers: tuple[str, ...] = _opt((), item=_host_port)
    connect_timeout: float = _opt(10.0, lo=0.1)
    # an incoming stream must have authenticated a domain this soon (connection-timeout)
    auth_timeout: float = _opt(30.0, lo=0.1)
    # an s2s stream with no traffic this long is closed (0: never)
    idle_timeout: float = _opt(600.0, lo=0)
    max_connections_per_ip: int = _opt(100, lo=1)
    # stanzas waiting for one domain while its stream comes up; beyond: resource-constraint
    max_queue: int = _opt(1000, lo=1)
    # XEP-0288: one stream carries both directions when the peer agrees
    bidi: bool = True
    # stanzas a second one stream may carry in, sustained, and saved up for a burst;
    # a peer beyond them is cut off (policy-violation)
    max_stanza_rate: float = _opt(1000.0, lo=1)
    stanza_burst: int = _opt(10000, lo=1)


@dataclass(frozen=True, slots=True)
class ComponentsConfig:
    """XEP-0114 external components: the listener and each component's shared secret."""

    # the listener opens only when a component is configured (0: an ephemeral port)
    port: int = _opt(5347, lo=0, hi=65535)
    # components run on trusted hosts: the protocol has no TLS
    interfaces: tuple[str, ...] = _opt(("127.0.0.1",), item=_ip_address, nonempty=True)
    # component domain -> shared secret
    secrets: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={"key": _domain, "item": _secret},
    )


@dataclass(frozen=True, slots=True)
class ModulesConfig:
    """``[modules]``: which feature modules to leave out, and their option tables.

    ``disabled`` names modules (checked against the modules there are when the server is
    built); every other key is a module's ``[modules.NAME]`` table, validated against that
    module's ``Options`` when it loads.
    """

    disabled: tuple[str, ...] = ()
    options: Mapping[str, Mapping[str, object]] = field(
        default_factory=lambda: MappingProxyType({}), metadata={"internal": True}
    )


def _uri(value: str) -> str:
    scheme, sep, rest = value.partition(":")
    if not sep or not rest or not scheme.isascii() or not scheme[:1].isalpha():
        raise ValueError(f"must be a URI such as 'mailto:abuse@example.org', got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class ContactConfig:
    """XEP-0157 contact addresses (URIs: ``mailto:``, ``xmpp:``, ``https:``...), published
    in the server's disco#info."""

    abuse: tuple[str, ...] = _opt((), item=_uri)
    admin: tuple[str, ...] = _opt((), item=_uri)
    feedback: tuple[str, ...] = _opt((), item=_uri)
    sales: tuple[str, ...] = _opt((), item=_uri)
    security: tuple[str, ...] = _opt((), item=_uri)
    status: tuple[str, ...] = _opt((), item=_uri)
    support: tuple[str, ...] = _opt((), item=_uri)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The Prometheus endpoint (``GET /metrics``, plain HTTP)."""

    # 0: no endpoint
    port: int = _opt(0, lo=0, hi=65535)
    # metrics say who is online: keep them on loopback unless a firewall guards the port
    interfaces: tuple[str, ...] = _opt(("127.0.0.1",), item=_ip_address, nonempty=True)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    backend: str = _opt("sqlite", choices=("sqlite",))


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = _opt("info", choices=("debug", "info", "warning", "error"))
    # a file to append the log to; unset: standard error
    file: Path | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; ``source`` is the file it came from (not a TOML key)."""

    domains: tuple[str, ...] = _opt(("localhost",), item=_domain, nonempty=True)
    data_dir: Path = Path("data")
    # accounts that may run the XEP-0133 administration commands (XEP-0050 ad-hoc)
    admins: tuple[str, ...] = _opt((), item=_account_jid)
    # "user" or "user:group": started as root, become it after binding ports (privileges.py)
    run_as: str | None = None
    c2s: C2SConfig = field(default_factory=C2SConfig)
    stream_management: StreamManagementConfig = field(default_factory=StreamManagementConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    legacy_auth: LegacyAuthConfig = field(default_factory=LegacyAuthConfig)
    roster: RosterConfig = field(default_factory=RosterConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    modules: ModulesConfig = field(default_factory=ModulesConfig)
    s2s: S2SConfig = field(default_factory=S2SConfig)
    components: ComponentsConfig = field(default_factory=ComponentsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    contact: ContactConfig = field(default_factory=ContactConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: Path | None = field(default=None, metadata={"internal": True})


def load_config(path: Path | None) -> Config:
    """Read and validate a TOML file; ``None`` gives the defaults with data_dir under the cwd."""
    if path is None:
        return config_from_dict({}, Path.cwd())
    path = Path(path).absolute()
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), str(exc)) from None
    return dataclasses.replace(config_from_dict(data, path.parent), source=path)


def config_from_dict(data: Mapping[str, object], base_dir: Path) -> Config:
    """Validate parsed TOML; relative paths resolve against ``base_dir``."""
    config = _build(Config, data, base_dir, "")
    for domain in config.components.secrets:
        if domain in config.domains:
            raise ConfigError(
                f"components.secrets.{domain}", "is one of `domains`: a component needs its own"
            )
    _check_port_clashes(config)
    return config


def listening_ports(config: Config) -> list[tuple[str, int, tuple[str, ...]]]:
    """(key, port, interfaces) of every listener the server opens on a fixed port."""
    c2s, s2s, comp = config.c2s, config.s2s, config.components
    ports = [
        ("c2s.port", c2s.port, c2s.interfaces),
        ("c2s.direct_tls_port", c2s.direct_tls_port, c2s.interfaces),
    ]
    if s2s.enabled:
        ports.append(("s2s.port", s2s.port, s2s.interfaces))
        ports.append(("s2s.direct_tls_port", s2s.direct_tls_port, s2s.interfaces))
    if comp.secrets:
        ports.append(("components.port", comp.port, comp.interfaces))
    ports.append(("metrics.port", config.metrics.port, config.metrics.interfaces))
    return [(key, port, hosts) for key, port, hosts in ports if port]


def _same_socket(a: str, b: str) -> bool:
    """Whether listening on ``a`` and on ``b`` (same port) would clash."""
    ia, ib = ipaddress.ip_address(a), ipaddress.ip_address(b)
    if ia.version != ib.version:
        return False  # IPv6 listeners are IPv6-only (roost.transport.listeners)
    return ia == ib or ia.is_unspecified or ib.is_unspecified


def _check_port_clashes(config: Config) -> None:
    """Two listeners on one port and address cannot both open (``c2s.port`` equal to
    ``c2s.direct_tls_port``, say): a configuration error naming the second key."""
    seen: list[tuple[str, int, tuple[str, ...]]] = []
    for key, port, hosts in listening_ports(config):
        for other, other_port, other_hosts in seen:
            if port == other_port and any(_same_socket(a, b) for a in hosts for b in other_hosts):
                raise ConfigError(key, f"{port} is also {other}; give each listener its own port")
        seen.append((key, port, hosts))


# -- generic validator ---------------------------------------------------------------------------

_D = TypeVar("_D", bound="DataclassInstance")


def build_section(cls: type[_D], data: object, base_dir: Path, prefix: str) -> _D:
    """Validate one table against a dataclass of settings (a module's ``Options``, say);
    ``prefix`` is the dotted key of the table, with a trailing dot."""
    return _build(cls, data, base_dir, prefix)


def _modules(data: Mapping[str, object], base_dir: Path, prefix: str) -> ModulesConfig:
    options: dict[str, Mapping[str, object]] = {}
    for key, value in data.items():
        if key == "disabled":
            continue
        if not isinstance(value, Mapping):
            raise ConfigError(f"{prefix}{key}", f"must be a table of module options, got {value!r}")
        options[str(key)] = MappingProxyType(dict(value))
    disabled = _convert(
        tuple[str, ...], data.get("disabled", []), f"{prefix}disabled", {}, base_dir
    )
    assert isinstance(disabled, tuple)
    return ModulesConfig(disabled, MappingProxyType(options))


def _build(cls: type[_D], data: object, base_dir: Path, prefix: str) -> _D:
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip("."), f"must be a table, got {data!r}")
    if cls is ModulesConfig:
        return _modules(data, base_dir, prefix)  # type: ignore[return-value]
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            hint = difflib.get_close_matches(str(key), names, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{prefix}{key}", f"unknown key{extra}")
    values: dict[str, object] = {}
    for f in fields:
        key, hint = f"{prefix}{f.name}", hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[f.name] = _build(hint, data.get(f.name, {}), base_dir, f"{key}.")
        elif f.name in data:
            values[f.name] = _convert(hint, data[f.name], key, f.metadata, base_dir)
        elif isinstance(f.default, Path):
            values[f.name] = base_dir / f.default
    return cls(**values)


def _describe(hint: object, meta: Mapping[str, Any]) -> str:
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if meta.get("duration"):
        return f"a duration >= {_num(meta['lo'])} s (seconds, or e.g. \"90s\", \"12h\", \"1w\")"
    if hint is int or hint is float:
        noun = "an integer" if hint is int else "a number"
        if lo is not None and hi is not None:
            return f"{noun} between {_num(lo)} and {_num(hi)}"
        if lo is not None:
            return f"{noun} >= {_num(lo)}"
        return noun
    if hint is bool:
        return "a boolean (true or false)"
    if hint is str or _optional_of(hint) is str:
        return ("one of " + ", ".join(map(repr, choices))) if choices else "a string"
    if hint is Path or _optional_of(hint) is Path:
        return "a path (string)"
    return "a non-empty list of strings" if meta.get("nonempty") else "a list of strings"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _optional_of(hint: object) -> object | None:
    """``X`` for ``X | None``, else None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            inner: object = args[0]
            return inner
    return None


def _convert(
    hint: object, value: object, key: str, meta: Mapping[str, Any], base_dir: Path
) -> object:
    def bad() -> ConfigError:
        return ConfigError(key, f"must be {_describe(hint, meta)}, got {value!r}")

    if hint is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if meta.get("duration"):
        seconds = _parse_duration(value)
        if seconds is None or seconds < meta["lo"]:
            raise bad()
        return seconds
    if hint is int or hint is float:
        # bool is an int subclass in Python; `port = true` is still a mistake.
        allowed = (int,) if hint is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed) or not math.isfinite(value):
            raise bad()
        lo, hi = meta.get("lo"), meta.get("hi")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise bad()
        return value if hint is int else float(value)
    if hint is str or _optional_of(hint) is str:
        if not isinstance(value, str) or (meta.get("choices") and value not in meta["choices"]):
            raise bad()
        return value
    if hint is Path or _optional_of(hint) is Path:
        if not isinstance(value, str) or not value:
            raise bad()
        return base_dir / Path(value).expanduser()
    if typing.get_origin(hint) is Mapping and typing.get_args(hint) == (str, str):
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"must be a table of strings, got {value!r}")
        table: dict[str, str] = {}
        for raw_key, raw in value.items():
            name = str(raw_key)
            if meta.get("key") is not None:
                try:
                    name = meta["key"](name)
                except ValueError as exc:
                    raise ConfigError(f"{key}.{raw_key}", str(exc)) from None
            if not isinstance(raw, str):
                raise ConfigError(f"{key}.{raw_key}", f"must be a string, got {raw!r}")
            try:
                table[name] = meta["item"](raw) if meta.get("item") else raw
            except ValueError as exc:
                raise ConfigError(f"{key}.{raw_key}", str(exc)) from None
        return MappingProxyType(table)
    if typing.get_origin(hint) is tuple and typing.get_args(hint) == (str, ...):
        if not isinstance(value, list) or (meta.get("nonempty") and not value):
            raise bad()
        items: list[str] = []
        item_meta = {"choices": meta.get("choices")}
        for i, raw in enumerate(value):
            item = _convert(str, raw, f"{key}[{i}]", item_meta, base_dir)
            assert isinstance(item, str)
            if meta.get("item") is not None:
                try:
                    item = meta["item"](item)
                except ValueError as exc:
                    raise ConfigError(f"{key}[{i}]", str(exc)) from None
            if item in items:
                raise ConfigError(f"{key}[{i}]", f"duplicate value {raw!r}")
            items.append(item)
        return tuple(items)
    raise TypeError(f"{key}: unsupported config field type {hint!r}")  # a bug in this module
