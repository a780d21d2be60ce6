"""``roost bench`` sub-commands: run a scenario, or provision accounts."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from roost.bench.options import options_from_args

if TYPE_CHECKING:
    from roost.server.config import Config

__all__ = ["run_command"]


def run_command(args: argparse.Namespace, load_config: Callable[[], Config]) -> int:
    """Dispatch ``roost bench ...``; returns the exit code."""
    if args.bench_cmd == "provision":
        return _provision(args, load_config())
    from roost.bench.report import render, write_json
    from roost.bench.runner import BenchError, run_bench

    try:
        opts = options_from_args(args)
    except ValueError as exc:
        print(f"roost bench: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_bench(opts)
    except BenchError as exc:
        print(f"roost bench: {exc}", file=sys.stderr)
        return 1
    print(render(result))
    if opts.json_path:
        write_json(opts.json_path, result)
    return 0 if result["login"]["ok"] else 1


def _provision(args: argparse.Namespace, config: Config) -> int:
    from roost.bench.provision import check_layout, provision
    from roost.storage.sqlite import SQLiteStorage

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
        storage = SQLiteStorage(Path(config.data_dir) / "roost.db")
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
