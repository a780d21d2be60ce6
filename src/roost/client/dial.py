"""Finding the server and logging in: SRV look-ups, TLS contexts, trying each address.

RFC 6120 §3.2 and XEP-0368 §3: without an explicit host, ``_xmpps-client._tcp`` records
(TLS from the first byte) are tried first, then ``_xmpp-client._tcp`` ones (STARTTLS), each
in RFC 2782 order, then the domain itself on 5222. The certificate is checked against the
XMPP domain (RFC 6125 §6.2.1 / RFC 9525: the source domain, never the SRV target), which is
also the SNI name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from roost.client.connection import Connection
from roost.client.errors import (
    AuthenticationFailed,
    CertificateNotTrusted,
    ClientError,
    ConnectFailed,
    HostNotFound,
    NegotiationFailed,
    RegistrationFailed,
)
from roost.core.stream.client import ClientStreamSettings, TLSMode
from roost.transport.certs import CertificateError, make_client_context
from roost.transport.srv import srv_targets

__all__ = ["DEFAULT_PORT", "Target", "backoff", "dial", "find_targets", "tls_context"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 5222
#: XEP-0368 §4: the ALPN protocol of Direct TLS client streams
ALPN = "xmpp-client"


@dataclass(frozen=True, slots=True)
class Target:
    """One address to try, and whether TLS starts at once (XEP-0368) or by STARTTLS."""

    host: str
    port: int
    direct_tls: bool = False


def tls_context(
    *,
    cafile: str | Path | None = None,
    insecure: bool = False,
    direct_tls: bool = False,
    warn: bool = True,
) -> ssl.SSLContext:
    """A client context that verifies against the system store (or ``cafile``).

    ``insecure`` skips every check (development only: anyone on the path can read the
    password), and says so in the log unless ``warn`` is false.
    """
    if insecure and warn:
        log.warning("TLS certificate verification is OFF (--insecure): for development only")
    try:
        ctx = make_client_context(
            verify=not insecure, cafile=Path(cafile) if cafile is not None else None
        )
    except CertificateError as exc:
        raise CertificateNotTrusted(str(exc)) from None
    if direct_tls:
        ctx.set_alpn_protocols([ALPN])
    return ctx


async def find_targets(
    domain: str,
    *,
    server: tuple[str, int] | None = None,
    direct_tls: bool = False,
    nameservers: Sequence[tuple[str, int]] = (),
    timeout: float = 5.0,
) -> list[Target]:
    """Where to connect for ``domain``: ``server`` if given, else SRV, else domain:5222."""
    if server is not None:
        return [Target(server[0], server[1], direct_tls)]
    direct = await srv_targets(
        "xmpps-client", domain, None, nameservers=nameservers, timeout=timeout
    )
    plain = await srv_targets(
        "xmpp-client", domain, DEFAULT_PORT, nameservers=nameservers, timeout=timeout
    )
    return [Target(h, p, True) for h, p in direct] + [Target(h, p, False) for h, p in plain]


#: which failure to report when every address failed: the most telling one
_RANK: tuple[type[ClientError], ...] = (
    CertificateNotTrusted,
    NegotiationFailed,
    ConnectFailed,
    HostNotFound,
)


async def dial(
    settings: ClientStreamSettings,
    targets: Sequence[Target],
    *,
    cafile: str | Path | None = None,
    insecure: bool = False,
    timeout: float = 10.0,
    register: bool = False,
    make: Callable[[ClientStreamSettings, ssl.SSLContext], Connection] = Connection,
) -> Connection:
    """Log in at the first target that works; each attempt is bounded by ``timeout``.

    A wrong password (or a refused registration) ends the search at once: another address
    of the same service would say the same. Otherwise the most telling failure is raised.
    """
    if not targets:
        raise HostNotFound(f"{settings.domain} has no XMPP client service (SRV target '.')")
    failures: list[ClientError] = []
    for n, target in enumerate(targets):
        mode = TLSMode.DIRECT if target.direct_tls else TLSMode.STARTTLS
        ctx = tls_context(
            cafile=cafile, insecure=insecure, direct_tls=target.direct_tls, warn=n == 0
        )
        conn = make(dataclasses.replace(settings, tls=mode), ctx)
        try:
            async with asyncio.timeout(timeout):
                await _attempt(conn, target, register)
            return conn
        except (AuthenticationFailed, RegistrationFailed):
            conn.abort()
            raise
        except ClientError as exc:
            conn.abort()
            failures.append(exc)
        except TimeoutError:
            conn.abort()
            failures.append(ConnectFailed(f"{target.host}:{target.port}: timed out"))
        except BaseException:  # cancelled: leave no connection behind
            conn.abort()
            raise
        log.info("cannot log in at %s:%d: %s", target.host, target.port, failures[-1])
    for kind in _RANK:
        for failure in failures:
            if isinstance(failure, kind):
                raise failure
    raise failures[-1]


async def _attempt(conn: Connection, target: Target, register: bool) -> None:
    await conn.connect(target.host, target.port)
    if register:
        await conn.wait_for(lambda: conn.registered is not None)
    await conn.wait_for(lambda: conn.jid is not None)


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before reconnection attempt ``attempt`` (0, 1, ...): exponential with
    "equal jitter", half fixed and half random, so clients cut off together do not all
    come back at the same instant, and never beyond ``cap``."""
    delay = min(cap, base * 2.0 ** min(attempt, 32))
    return delay / 2 + rng.uniform(0, delay / 2)
