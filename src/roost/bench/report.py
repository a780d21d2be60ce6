"""Turning bench results into numbers people read: percentiles, the table, progress, JSON."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = ["Progress", "format_table", "percentile", "render", "write_json"]


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Right-aligned columns (the first left-aligned), a rule under the headers."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def render(result: dict[str, Any]) -> str:
    """The human-readable report of one run."""
    o = result["options"]
    lines = [
        f"roost bench {result['scenario']}: {o['server']} (domain {o['domain']}), "
        f"{o['users']} sessions, {o['procs']} proc(s), TLS {o['tls']}"
    ]
    if (reg := result.get("register")) is not None:
        lines.append(
            f"registration: {reg['created']} created, {reg['existed']} existed, "
            f"{reg['failed']} failed"
        )
    login = result["login"]
    rows: list[list[object]] = [
        ["sessions logged in", f"{login['ok']}/{login['attempted']}"],
        ["SASL mechanism", ", ".join(login.get("mechanisms", {})) or "-"],
        ["login phase (s)", login["seconds"]],
        ["logins/s", login["logins_per_s"]],
        ["login time p50 (ms)", login["p50_ms"]],
        ["login time p99 (ms)", login["p99_ms"]],
    ]
    if login.get("server_cpu_ms_per_login") is not None:
        rows.append(["server CPU per login (ms)", login["server_cpu_ms_per_login"]])
    if (idle := result.get("idle")) is not None:
        rows += [
            ["idle for (s)", idle["seconds"]],
            ["server RSS before (MiB)", idle.get("rss_before_mib")],
            ["server RSS with sessions (MiB)", idle.get("rss_after_mib")],
            ["server RSS per session (KiB)", idle.get("rss_per_session_kib")],
            ["server CPU while idle (ms/s)", idle.get("server_cpu_ms_per_s")],
        ]
    if (pres := result.get("presence")) is not None:
        rows += [
            ["presence changes sent", pres["sent"]],
            ["presence stanzas received", pres["received"]],
            ["fan-out stanzas/s", pres["fanout_per_s"]],
            ["fan-out per change", pres["fanout_per_change"]],
        ]
        if pres.get("expected") is not None:
            rows.append(["expected received", pres["expected"]])
        if pres.get("server_cpu_ms_per_1000") is not None:
            rows.append(["server CPU per 1000 fan-out (ms)", pres["server_cpu_ms_per_1000"]])
    if (muc := result.get("muc")) is not None:
        rows += [
            ["room", muc["room"]],
            ["room created by the first session", "yes" if muc["created"] else "no"],
            ["occupants", muc["occupants"]],
        ]
        if muc.get("join_seconds") is not None:
            rows.append(["join phase (s)", muc["join_seconds"]])
        for reason, count in muc.get("join_errors", {}).items():
            rows.append([f"join failures: {reason}", count])
    lines.append(format_table(["", "value"], rows))
    if muc is not None and (steps := result.get("steps")) is not None:
        lines.append("")
        lines.append(_muc_steps(steps))
        best = result.get("max_sustainable_fanout")
        lines.append(
            f"max sustained fan-out: {best:,.0f} stanzas/s" if best else "max sustained: none"
        )
    elif (steps := result.get("steps")) is not None:
        lines.append("")
        lines.append(
            format_table(
                [
                    "rate/s",
                    "sent/s",
                    "delivered/s",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "CPU ms/1k",
                    "steal %",
                    "result",
                ],
                [
                    [
                        s["rate"],
                        s["sent_per_s"],
                        s["delivered_per_s"],
                        s["p50_ms"],
                        s["p95_ms"],
                        s["p99_ms"],
                        s["server_cpu_ms_per_1000"],
                        s.get("steal_pct"),
                        "ok" if s["ok"] else f"no ({s['why']})",
                    ]
                    for s in steps
                ],
            )
        )
        best = result.get("max_sustainable_rate")
        lines.append(
            f"max sustainable rate: {best:,} msgs/s" if best else "max sustainable rate: none"
        )
    for reason, count in sorted(login["errors"].items(), key=lambda kv: -kv[1]):
        lines.append(f"login failures: {count} x {reason}")
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _muc_steps(steps: list[dict[str, Any]]) -> str:
    return format_table(
        [
            "msgs/s/occupant",
            "sent/s",
            "fan-out/s",
            "p50 ms",
            "p99 ms",
            "CPU ms/1k fan-out",
            "CPU %",
            "CPU wait %",
            "RSS MiB",
            "gen CPU %",
            "steal %",
            "result",
        ],
        [
            [
                f"{s['rate_per_occupant']:g}",
                s["sent_per_s"],
                s["fanout_per_s"],
                s["p50_ms"],
                s["p99_ms"],
                s["server_cpu_ms_per_1000"],
                s["server_cpu_pct"],
                s.get("server_wait_pct"),
                s["rss_mib"],
                s.get("generator_cpu_pct"),
                s.get("steal_pct"),
                "ok" if s["ok"] else f"no ({s['why']})",
            ]
            for s in steps
        ],
    )


def write_json(path: str, result: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class Progress:
    """A one-line status on stderr: redrawn in place on a terminal, else every few seconds."""

    def __init__(self, quiet: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._started = time.monotonic()
        self._width = 0

    def show(self, text: str, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else 5.0):
            return
        self._last = now
        line = f"[{now - self._started:6.1f}s] {text}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if not self.quiet and self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
