"""``roost bench SCENARIO``: run a load-generator scenario against any XMPP server.

The generator is a client: it uses Roost's core, transport and storage, never the server
package (``roost bench provision``, which writes a Roost server's storage, is in the CLI).
"""

from __future__ import annotations

import argparse
import sys

from roost.bench.options import options_from_args

__all__ = ["run_command"]


def run_command(args: argparse.Namespace) -> int:
    """Run ``roost bench SCENARIO ...``; returns the exit code."""
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
