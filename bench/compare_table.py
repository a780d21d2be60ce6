"""Side-by-side table of `roost bench` JSON results for Roost and Prosody (bench/compare.sh)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def load(out: Path, server: str, scenario: str) -> dict[str, Any] | None:
    path = out / f"{server}-{scenario}.json"
    return json.loads(path.read_text()) if path.exists() else None


def pick(result: dict[str, Any] | None, *keys: str) -> float | None:
    value: Any = result
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, int | float) else None


def half_rate_step(result: dict[str, Any] | None) -> dict[str, Any]:
    """The sustained step closest to half of the max sustainable rate ({} if none)."""
    if not result or not result.get("max_sustainable_rate"):
        return {}
    half = result["max_sustainable_rate"] / 2
    steps = [s for s in result.get("steps", []) if s.get("ok")]
    return min(steps, key=lambda s: abs(s["rate"] - half)) if steps else {}


def number(value: object) -> float | None:
    return value if isinstance(value, int | float) else None


def cpu_at_max(result: dict[str, Any] | None) -> float | None:
    """Server CPU ms per 1000 messages at the max sustainable step."""
    if not result or not result.get("max_sustainable_rate"):
        return None
    for s in result.get("steps", []):
        if s["rate"] == result["max_sustainable_rate"]:
            value = s.get("server_cpu_ms_per_1000")
            return value if isinstance(value, int | float) else None
    return None


def muc_table(out: Path, users: int, tls: str, version: str) -> None:
    """The muc scenario (issue 13): per step, both servers' fan-out, latency and CPU."""
    print(
        f"\nRoost vs Prosody {version} group chat: TLS {tls}, one room of {users} occupants, "
        "each message fanned out to every occupant\n"
    )
    head = ["run", "msgs/s/occ", "offered fan-out/s"]
    for name in ("Roost", "Prosody"):
        head += [f"{name} fan-out/s", "p50 ms", "p99 ms", "CPU ms/1k", "CPU %", "wait %"]
        head += ["gen %", "steal %"]
        head.append("ok")
    rows: list[list[str]] = []
    for run in ("muc-steps", "muc"):
        r, q = load(out, "roost", run), load(out, "prosody", run)
        r_steps = (r or {}).get("steps", [])
        q_steps = (q or {}).get("steps", [])
        for i in range(max(len(r_steps), len(q_steps))):
            ref = (r_steps or q_steps)[i]
            row = [run, f"{ref['rate_per_occupant']:g}", f"{ref['rate'] * users:,.0f}"]
            for steps in (r_steps, q_steps):
                s = steps[i] if i < len(steps) else {}
                row += [
                    _cell(s.get("fanout_per_s")),
                    _cell(s.get("p50_ms")),
                    _cell(s.get("p99_ms")),
                    _cell(s.get("server_cpu_ms_per_1000")),
                    _cell(s.get("server_cpu_pct")),
                    _cell(s.get("server_wait_pct")),
                    _cell(s.get("generator_cpu_pct")),
                    _cell(s.get("steal_pct")),
                    "-" if not s else ("yes" if s.get("ok") else "no"),
                ]
            rows.append(row)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def _cell(v: object) -> str:
    if not isinstance(v, int | float):
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--tls", default="starttls")
    p.add_argument("--users", type=int, default=0)
    p.add_argument("--contacts", type=int, default=0)
    p.add_argument("--prosody-version", default="?")
    p.add_argument("--muc", action="store_true", help="the muc scenario's table only")
    args = p.parse_args()
    if args.muc:
        muc_table(args.out, args.users, args.tls, args.prosody_version)
        return

    r = {s: load(args.out, "roost", s) for s in ("login", "idle", "messages", "presence")}
    q = {s: load(args.out, "prosody", s) for s in ("login", "idle", "messages", "presence")}
    rows = [
        (
            "messages: max sustainable rate (msgs/s)",
            "max",
            pick(r["messages"], "max_sustainable_rate"),
            pick(q["messages"], "max_sustainable_rate"),
        ),
        (
            "messages: server CPU per 1000 msgs at max (ms)",
            "min",
            cpu_at_max(r["messages"]),
            cpu_at_max(q["messages"]),
        ),
        (
            "messages: p99 at ~half max rate (ms)",
            "min",
            number(half_rate_step(r["messages"]).get("p99_ms")),
            number(half_rate_step(q["messages"]).get("p99_ms")),
        ),
        (
            "  host steal time during that step (%)",
            "",
            number(half_rate_step(r["messages"]).get("steal_pct")),
            number(half_rate_step(q["messages"]).get("steal_pct")),
        ),
        (
            "login: logins/s",
            "max",
            pick(r["login"], "login", "logins_per_s"),
            pick(q["login"], "login", "logins_per_s"),
        ),
        (
            "login: p99 login time (ms)",
            "min",
            pick(r["login"], "login", "p99_ms"),
            pick(q["login"], "login", "p99_ms"),
        ),
        (
            "login: server CPU per login (ms)",
            "min",
            pick(r["login"], "login", "server_cpu_ms_per_login"),
            pick(q["login"], "login", "server_cpu_ms_per_login"),
        ),
        (
            "idle: RSS per session (KiB)",
            "min",
            pick(r["idle"], "idle", "rss_per_session_kib"),
            pick(q["idle"], "idle", "rss_per_session_kib"),
        ),
        (
            "presence: fan-out stanzas/s",
            "max",
            pick(r["presence"], "presence", "fanout_per_s"),
            pick(q["presence"], "presence", "fanout_per_s"),
        ),
        (
            "presence: server CPU per 1000 fan-out (ms)",
            "min",
            pick(r["presence"], "presence", "server_cpu_ms_per_1000"),
            pick(q["presence"], "presence", "server_cpu_ms_per_1000"),
        ),
    ]

    def fmt(v: float | None) -> str:
        return "-" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}")

    print(
        f"\nRoost vs Prosody {args.prosody_version}: TLS {args.tls}, {args.users} sessions, "
        f"{args.contacts} contacts per roster, SCRAM-SHA-1 (10000 iterations), loopback\n"
    )
    width = max(len(name) for name, *_ in rows)
    print(f"{'':{width}}  {'Roost':>12}  {'Prosody':>12}  {'Roost/Prosody':>13}  better")
    for name, better, rv, pv in rows:
        ratio = f"{rv / pv:.2f}x" if rv is not None and pv and better else "-"
        if rv is None or pv is None or not better:
            verdict = ""
        else:
            verdict = "Roost" if (rv > pv if better == "max" else rv < pv) else "Prosody"
        print(f"{name:{width}}  {fmt(rv):>12}  {fmt(pv):>12}  {ratio:>13}  {verdict}")


if __name__ == "__main__":
    main()
