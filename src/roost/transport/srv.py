"""DNS SRV look-ups (RFC 2782) with dnspython's asynchronous resolver.

``srv_targets`` returns the (host, port) pairs to try for a service, in the order RFC 2782
gives: lowest priority first, and within one priority a weighted random order. No records
gives the fallback the caller names; a single record with target "." says the service is
decidedly not available there (RFC 2782, RFC 6120 §3.2.1): nothing to try.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdtypes.IN.SRV
import dns.resolver

__all__ = ["order_srv", "srv_targets"]

SrvRecord = tuple[int, int, int, str]  # priority, weight, port, target


def order_srv(
    records: Sequence[SrvRecord], rng: random.Random | None = None
) -> list[tuple[str, int]]:
    """RFC 2782's order: by priority, then weighted random among equal priorities."""
    pick = rng or random.Random()
    out: list[tuple[str, int]] = []
    for priority in sorted({r[0] for r in records}):
        group = [r for r in records if r[0] == priority]
        while group:
            total = sum(r[1] for r in group)
            if total == 0:
                chosen = group[0]
            else:
                point = pick.uniform(0, total)
                running = 0
                chosen = group[-1]
                for r in group:
                    running += r[1]
                    if running >= point:
                        chosen = r
                        break
            group.remove(chosen)
            out.append((chosen[3], chosen[2]))
    return out


async def srv_targets(
    service: str,
    domain: str,
    fallback_port: int | None,
    *,
    nameservers: Sequence[tuple[str, int]] = (),
    timeout: float = 5.0,
) -> list[tuple[str, int]]:
    """Where ``_service._tcp.domain`` is: SRV targets in order; with no records,
    ``(domain, fallback_port)``, or nothing when ``fallback_port`` is None."""
    fallback = [] if fallback_port is None else [(domain, fallback_port)]
    resolver = dns.asyncresolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = [host for host, _ in nameservers]
        resolver.port = nameservers[0][1]
    resolver.lifetime = timeout
    try:
        answer = await resolver.resolve(f"_{service}._tcp.{domain}.", "SRV")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
        return fallback
    except dns.exception.Timeout:
        return fallback
    records: list[SrvRecord] = []
    for rr in answer:
        assert isinstance(rr, dns.rdtypes.IN.SRV.SRV)
        target = "." if rr.target == dns.name.root else rr.target.to_text(omit_final_dot=True)
        records.append((rr.priority, rr.weight, rr.port, target))
    if len(records) == 1 and records[0][3] == ".":
        return []  # "decidedly not available"
    return order_srv([r for r in records if r[3] != "."])
