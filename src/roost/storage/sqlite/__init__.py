"""SQLite backend: one database file, one connection, owned by one worker thread.

Every operation is a plain function of the connection, run on that thread and awaited with
``loop.run_in_executor``, so the event loop never waits on the disk and writes are serialised.
Nothing is cached in memory: the CLI (``roost user add``) writes to the same file while the
server runs, and the server must see its accounts at once. WAL lets both processes work at
the same time; ``busy_timeout`` makes a writer wait for the other instead of failing.

If the awaiting task is cancelled, an operation already handed to the worker still runs to the
end (a write may still commit); only its result is lost.

Layout: ``db`` (connection, worker thread, transactions, migrations), ``migrations`` (the
schema), one module of connection functions per store (``accounts``, ``rosters``,
``offline``, ``keyvalue``), and ``storage`` (``SQLiteStorage``, which puts them together).
"""

from roost.storage.sqlite.migrations import MIGRATIONS
from roost.storage.sqlite.storage import SQLiteStorage

__all__ = ["MIGRATIONS", "SQLiteStorage"]
