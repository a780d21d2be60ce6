"""Certificates per domain in ``data_dir/certs``: imported from where a CA client keeps
them, and kept up to date when it renews them.

``import_certificates`` looks in a directory for certificates the way certbot lays them out
(``live/DOMAIN/fullchain.pem`` and ``privkey.pem``), or ``DOMAIN.crt``/``DOMAIN.key`` and
``DOMAIN.pem`` pairs, and for each served domain copies the one that names it (a wildcard
counts) into ``data_dir/certs/DOMAIN.crt`` and ``.key``, where the server looks (SNI picks
each domain's). The source is remembered beside the copy (``DOMAIN.source``), so
``renew_certificates`` can copy it again when the CA client has replaced it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from roost.core.identity import certificate_matches
from roost.transport.certs import (
    CertificateError,
    certificate_identities,
    certificate_validity,
    load_tls_context_server,
)

__all__ = ["Imported", "import_certificates", "renew_certificates"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Imported:
    """What happened for one domain: ``path`` is the copy, ``problem`` why there is none."""

    domain: str
    source: Path | None = None
    not_after: datetime.datetime | None = None
    problem: str | None = None


def _candidates(directory: Path) -> Iterator[tuple[Path, Path]]:
    """(certificate, key) pairs under ``directory``: certbot's layout (a ``live``
    directory, or one domain's directory in it) and flat ``NAME.crt``/``NAME.key`` or
    ``NAME.pem`` files with the key in ``NAME.key``."""
    roots = [directory]
    if (directory / "live").is_dir():
        roots.insert(0, directory / "live")
    for root in roots:
        for sub in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
            chain, key = sub / "fullchain.pem", sub / "privkey.pem"
            if chain.is_file() and key.is_file():
                yield chain, key
        for crt in sorted([*root.glob("*.crt"), *root.glob("*.pem")]):
            key = crt.with_suffix(".key")
            if crt.name not in ("fullchain.pem", "privkey.pem") and key.is_file():
                yield crt, key


def _copy(src: Path, dst: Path, mode: int) -> None:
    """Copy atomically (a temporary file renamed over), with ``mode``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    data = src.read_bytes()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, dst)


def _give_to_data_dir_owner(certs_dir: Path, names: Iterable[str]) -> None:
    """Run as root (certbot's deploy hook, ``sudo roost cert import``), the copies are
    given to the owner of data_dir: the server runs as that user and must read the key at
    its next reload or start."""
    if os.geteuid() != 0:
        return
    owner = certs_dir.parent.stat()
    for path in (certs_dir, *(certs_dir / n for n in names)):
        os.chown(path, owner.st_uid, owner.st_gid)


def _install(domain: str, cert: Path, key: Path, certs_dir: Path) -> datetime.datetime:
    """Check the pair and copy it in (``CertificateError`` if it cannot be used)."""
    load_tls_context_server(cert, key)  # the key matches, the files parse
    _, not_after = certificate_validity(cert)
    if not_after <= datetime.datetime.now(datetime.UTC):
        raise CertificateError(f"{cert}: expired on {not_after:%Y-%m-%d}")
    _copy(cert, certs_dir / f"{domain}.crt", 0o644)
    _copy(key, certs_dir / f"{domain}.key", 0o600)
    source = {"cert": str(cert.resolve()), "key": str(key.resolve())}
    (certs_dir / f"{domain}.source").write_text(json.dumps(source) + "\n")
    _give_to_data_dir_owner(certs_dir, [f"{domain}.{ext}" for ext in ("crt", "key", "source")])
    return not_after


def import_certificates(directory: Path, domains: Iterable[str], data_dir: Path) -> list[Imported]:
    """Install, for each domain, the certificate in ``directory`` that names it."""
    if not directory.is_dir():
        raise CertificateError(f"{directory} is not a directory")
    found: list[tuple[Path, Path]] = []
    for cert, key in _candidates(directory):
        try:
            certificate_identities(cert)
        except CertificateError:
            continue
        found.append((cert, key))
    out = []
    certs_dir = data_dir / "certs"
    for domain in domains:
        matches = [
            (c, k) for c, k in found if certificate_matches(domain, certificate_identities(c))
        ]
        if not matches:
            out.append(Imported(domain, problem=f"no certificate in {directory} names it"))
            continue
        # the one valid longest (a renewed one beside an old one)
        matches.sort(key=lambda ck: certificate_validity(ck[0])[1], reverse=True)
        cert, key = matches[0]
        try:
            not_after = _install(domain, cert, key, certs_dir)
        except (CertificateError, OSError) as exc:
            out.append(Imported(domain, cert, problem=str(exc)))
            continue
        out.append(Imported(domain, cert, not_after))
    return out


def renew_certificates(domains: Iterable[str], data_dir: Path) -> list[str]:
    """Copy again every imported certificate whose source changed since; the domains
    renewed (a source that cannot be used is logged and the copy kept)."""
    certs_dir = data_dir / "certs"
    renewed = []
    for domain in domains:
        record = certs_dir / f"{domain}.source"
        copy = certs_dir / f"{domain}.crt"
        if not record.is_file() or not copy.is_file():
            continue
        try:
            source = json.loads(record.read_text())
            cert, key = Path(source["cert"]), Path(source["key"])
            if max(cert.stat().st_mtime, key.stat().st_mtime) <= copy.stat().st_mtime:
                continue
            if cert.read_bytes() == copy.read_bytes():
                continue
            _install(domain, cert, key, certs_dir)
        except (OSError, ValueError, KeyError, CertificateError) as exc:
            log.warning("certificate for %s not renewed from its source: %s", domain, exc)
            continue
        log.info("certificate for %s renewed from %s", domain, cert)
        renewed.append(domain)
    return renewed
