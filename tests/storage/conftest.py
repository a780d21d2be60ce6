"""Storage fixtures: ``backend`` is parametrised over every backend, so each test that uses
it (or ``storage`` / ``juliet``) runs once per backend. A new backend is one more entry in
``params`` and in ``make_backend``; a file of backend-specific tests overrides ``backend``
with a fixture of its own (see ``test_sqlite.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.storage import Storage
from tests.storage.helpers import Backend, SQLiteBackend, account


def make_backend(name: str, tmp_path: Path) -> Backend:
    """A fresh, empty database on backend ``name`` for one test."""
    if name == "sqlite":
        return SQLiteBackend(tmp_path / "data" / "roost.sqlite3")
    raise ValueError(f"unknown storage backend {name!r}")


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request.param, tmp_path)


@pytest.fixture
async def storage(backend: Backend) -> AsyncIterator[Storage]:
    async with backend.open() as opened:
        yield opened


@pytest.fixture
async def juliet(storage: Storage) -> Storage:
    """The storage, with the accounts juliet and romeo on DOMAIN."""
    await storage.create_account(account("juliet"))
    await storage.create_account(account("romeo"))
    return storage
