"""``run_as``: a server started as root gives root up once it holds what needs root.

``roost serve`` started as root (a port below 1024, key files only root may read) binds its
listening sockets and loads its certificates first, then becomes the ``run_as`` user (and
its group, or the ``user:group`` given), and only then opens the data directory: storage,
the control socket and everything written at run time belong to that user. The data
directory (and what is in it) is given to that user at the switch, so a directory made by
root, or files that ``roost cert import`` wrote as root, stay usable.

Started as root without ``run_as``, Roost keeps running as root with a warning (a
container may want that); started as another user, ``run_as`` must name that user or be
absent (a process cannot change its user without root).

Before the switch every Roost module is imported (``_preload``): a module imported lazily
later (a command's code, an optional codec) must not depend on files the new user may not
read, nor on a copy of Roost upgraded on disk while this one runs.
"""

from __future__ import annotations

import dataclasses
import grp
import importlib
import logging
import os
import pkgutil
import pwd
from pathlib import Path

import roost
from roost.server.config import ConfigError

__all__ = ["Identity", "check_run_as", "drop_privileges", "resolve_run_as"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """The user and group ``run_as`` names."""

    user: str
    uid: int
    gid: int
    group: str | None  # given explicitly ("user:group"); None: the user's own groups


def resolve_run_as(value: str | None) -> Identity | None:
    """The identity ``run_as`` names; raises ``ConfigError('run_as', ...)`` for a user or
    group this system does not have."""
    if value is None:
        return None
    user, sep, group = value.partition(":")
    if not user or (sep and not group):
        raise ConfigError("run_as", f"must be 'user' or 'user:group', got {value!r}")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(
            "run_as", f"no user {user!r} on this system (create it, e.g. useradd --system)"
        ) from None
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError("run_as", f"no group {group!r} on this system") from None
    return Identity(user, entry.pw_uid, gid, group or None)


def _give(path: Path, identity: Identity) -> None:
    """``path`` and everything under it to the identity (symbolic links themselves only)."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o750)
    for root, dirs, files in os.walk(path):
        os.chown(root, identity.uid, identity.gid, follow_symlinks=False)
        for name in dirs + files:
            os.chown(Path(root) / name, identity.uid, identity.gid, follow_symlinks=False)


#: imported lazily by the standard library (host names in IDNA form), not by Roost
_LAZY_STDLIB = ("encodings.idna",)


def _preload() -> None:
    names = [m.name for m in pkgutil.walk_packages(roost.__path__, "roost.")]
    for name in [*names, *_LAZY_STDLIB]:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an optional dependency (uvloop...) that is not installed
            log.debug("not preloaded: %s (%s)", name, exc)


def check_run_as(identity: Identity | None) -> None:
    """Raise ``ConfigError('run_as', ...)`` if this process could not become ``identity``
    (called before anything is written, and again at the switch)."""
    if identity is not None and os.geteuid() not in (0, identity.uid):
        raise ConfigError(
            "run_as",
            f"only root can switch to {identity.user!r}; start roost as root or as that "
            "user (or remove run_as)",
        )


def drop_privileges(identity: Identity | None, data_dir: Path) -> None:
    """Become ``identity`` if running as root (see the module); warn when staying root."""
    check_run_as(identity)
    if os.geteuid() != 0:
        return
    if identity is None:
        log.warning(
            'running as root: set run_as = "USER" so Roost gives root up after binding '
            "its ports, or start it as an unprivileged user"
        )
        return
    _preload()
    _give(data_dir, identity)
    if identity.group is None:
        os.initgroups(identity.user, identity.gid)  # the user's supplementary groups too
    else:
        os.setgroups([identity.gid])
    os.setgid(identity.gid)
    os.setuid(identity.uid)  # real, effective and saved: root cannot be taken back
    log.info("now running as %s (uid %d, gid %d)", identity.user, identity.uid, identity.gid)
