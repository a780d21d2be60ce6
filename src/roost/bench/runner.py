"""The parent side of ``roost bench``: spawn workers, drive the phases, measure the server.

Workers are separate processes (``multiprocessing``, spawn start method, so it is safe from
any thread of any program); each runs its share of the sessions. Every phase starts at an
absolute ``time.monotonic()`` instant handed to all workers (CLOCK_MONOTONIC is system-wide
on Linux), so their load lines up, and the parent reads the server's /proc at those instants.
All waits are bounded; workers that do not finish in time are terminated.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import queue
import time
from dataclasses import asdict
from multiprocessing.queues import Queue
from typing import Any

from roost.bench.options import BenchOptions
from roost.bench.procstat import ProcSample, sample, steal_percent
from roost.bench.report import Progress, percentile
from roost.bench.worker import worker_entry

__all__ = ["BenchError", "run_bench", "split_indices"]

#: messages: a step is fine when this share of what was sent arrived in time...
DELIVERY_OK = 0.95
#: ...and the 99th percentile of the latency stays under this
P99_OK_MS = 200.0
#: steal time (% of all CPU) above which a step's figures get a note
STEAL_NOTE_PCT = 2.0
_SETTLE = 1.0  # seconds between logins and the measured phase (late presence, GC)


class BenchError(Exception):
    """The bench could not run (a worker failed, a phase did not finish in time)."""


def split_indices(users: int, procs: int, pairs: bool) -> list[list[int]]:
    """Contiguous shares of ``range(users)``; with ``pairs`` both members of a chat pair
    (2k, 2k+1) go to the same worker and an odd last user is left out."""
    units = users // 2 if pairs else users
    procs = max(1, min(procs, units))
    shares: list[list[int]] = []
    start = 0
    for w in range(procs):
        size = units // procs + (1 if w < units % procs else 0)
        chunk = range(start, start + size)
        start += size
        shares.append([i for u in chunk for i in (2 * u, 2 * u + 1)] if pairs else list(chunk))
    return shares


class _Workers:
    """The worker processes, their command queues and what they reported."""

    def __init__(self, opts: BenchOptions, progress: Progress) -> None:
        self.opts = opts
        self.progress = progress
        ctx = multiprocessing.get_context("spawn")
        self.inbox: Queue[Any] = ctx.Queue()
        self.shares = split_indices(opts.users, opts.procs, opts.scenario == "messages")
        self.commands = [ctx.Queue() for _ in self.shares]
        self.procs = [
            ctx.Process(
                target=worker_entry,
                args=(opts, wid, share, self.inbox, self.commands[wid]),
                name=f"roost-bench-{wid}",
                daemon=True,
            )
            for wid, share in enumerate(self.shares)
        ]
        self.received: dict[str, dict[int, Any]] = collections.defaultdict(dict)
        self.status: dict[int, dict[str, Any]] = {}
        self.status_text = "starting workers"

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def send(self, wid: int, *cmd: Any) -> None:
        self.commands[wid].put(cmd)

    def broadcast(self, *cmd: Any) -> None:
        for q in self.commands:
            q.put(cmd)

    def _take(self, timeout: float) -> None:
        try:
            msg = self.inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            self._check_alive()
            return
        kind, wid = msg[0], msg[1]
        payload: Any = msg[2] if len(msg) > 2 else None
        if kind == "progress":
            self.status[wid] = payload
        elif kind == "error":
            raise BenchError(f"worker {wid} failed:\n{payload}")
        else:
            self.received[kind][wid] = payload

    def _check_alive(self) -> None:
        for wid, p in enumerate(self.procs):
            if not p.is_alive() and wid not in self.received["closed"]:
                # its last words (an "error") may still be in the queue
                try:
                    while True:
                        msg = self.inbox.get(timeout=0.2)
                        if msg[0] == "error":
                            raise BenchError(f"worker {msg[1]} failed:\n{msg[2]}")
                except queue.Empty:
                    pass
                raise BenchError(f"worker {wid} exited unexpectedly (exit code {p.exitcode})")

    def collect(self, kind: str, timeout: float, expect: int | None = None) -> dict[int, Any]:
        """Wait (bounded) until every worker (or ``expect`` of them) has reported ``kind``."""
        deadline = time.monotonic() + timeout
        while len(self.received[kind]) < (len(self.procs) if expect is None else expect):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"workers did not report {kind!r} within {timeout:.0f} s")
            self._take(min(0.1, remaining))
            self.progress.show(self.describe())
        return self.received.pop(kind)

    def pump_until(self, t: float) -> None:
        """Handle reports (progress) until the monotonic time ``t``."""
        while (remaining := t - time.monotonic()) > 0:
            self._take(min(0.1, remaining))
            self.progress.show(self.describe())

    def describe(self) -> str:
        total: collections.Counter[str] = collections.Counter()
        phase = self.status_text
        for st in self.status.values():
            phase = st.get("phase", phase)
            for key, value in st.items():
                if isinstance(value, int) and key != "step":
                    total[key] += value
        if phase == "login":
            return f"login: {total['ok']:,}/{self.opts.users:,} logged in, {total['failed']} failed"
        if phase == "register":
            return f"register: {total['ok']:,}/{self.opts.users:,}, {total['failed']} failed"
        if phase == "messages":
            return f"{self.status_text}: sent {total['sent']:,}, delivered {total['delivered']:,}"
        if phase == "presence":
            return f"presence: {total['sent']:,} changes, {total['presences']:,} received"
        if phase == "join":
            joined = f"{total['ok']:,}/{self.opts.users:,}"
            return f"join: {joined} in the room, {total['failed']} failed"
        if phase == "muc":
            return f"{self.status_text}: sent {total['sent']:,}, fan-out {total['delivered']:,}"
        return self.status_text

    def shutdown(self) -> None:
        """Close every session (bounded), then make sure every process is gone."""
        alive = [wid for wid, p in enumerate(self.procs) if p.is_alive()]
        for wid in alive:
            self.commands[wid].put(("close",))
        deadline = time.monotonic() + min(self.opts.timeout, 10.0) + 5.0
        while time.monotonic() < deadline and any(p.is_alive() for p in self.procs):
            with contextlib.suppress(BenchError):
                self._take(0.1)
        for p in self.procs:
            p.join(timeout=1.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5.0)
        for q in (*self.commands, self.inbox):
            q.cancel_join_thread()
            q.close()


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run one scenario; return the results (see ``roost.bench.report.render``)."""
    progress = Progress(opts.quiet)
    workers = _Workers(opts, progress)
    options = {k: v for k, v in asdict(opts).items() if k != "password"}
    options["server"] = f"{opts.host}:{opts.port}"
    result: dict[str, Any] = {"scenario": opts.scenario, "options": options, "notes": []}
    try:
        workers.start()
        workers.collect("hello", 120.0)
        if opts.register:
            result["register"] = _register(workers, opts)
        before = sample(opts.server_pid)
        start_at = time.monotonic() + 0.2
        workers.status_text = "login"
        workers.broadcast("login", start_at, start_at + opts.login_timeout)
        logins = workers.collect("logged_in", opts.login_timeout + 30.0)
        after = sample(opts.server_pid)
        attempted = sum(len(share) for share in workers.shares)
        result["login"] = _login_summary(logins, attempted, start_at, before, after)
        ok = result["login"]["ok"]
        if ok == 0:
            result["notes"].append("no session logged in; nothing else was measured")
        elif opts.scenario == "idle":
            result["idle"] = _idle(workers, opts, before, ok)
        elif opts.scenario == "messages":
            _messages(workers, opts, logins, result)
        elif opts.scenario == "presence":
            result["presence"] = _presence(workers, opts, logins, result)
        elif opts.scenario == "muc":
            _muc(workers, opts, result)
        if opts.server_pid is not None and before is None:
            result["notes"].append(f"could not read /proc/{opts.server_pid}: no server figures")
    finally:
        workers.status_text = "closing sessions"
        workers.shutdown()
        progress.done()
    return result


def _register(workers: _Workers, opts: BenchOptions) -> dict[str, Any]:
    workers.status_text = "register"
    workers.broadcast("register", time.monotonic() + opts.login_timeout)
    regs = workers.collect("registered", opts.login_timeout + 30.0)
    errors: collections.Counter[str] = collections.Counter()
    for r in regs.values():
        errors.update(r["errors"])
    return {
        "created": sum(r["created"] for r in regs.values()),
        "existed": sum(r["existed"] for r in regs.values()),
        "failed": sum(errors.values()),
        "errors": dict(errors),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _login_summary(
    logins: dict[int, Any],
    attempted: int,
    start_at: float,
    before: ProcSample | None,
    after: ProcSample | None,
) -> dict[str, Any]:
    durations = sorted(d for r in logins.values() for d in r["durations"])
    errors: collections.Counter[str] = collections.Counter()
    mechanisms: collections.Counter[str] = collections.Counter()
    for r in logins.values():
        errors.update(r["errors"])
        mechanisms.update(r["mechanisms"])
    ok = len(durations)
    last = max((r["last_end"] for r in logins.values() if r["ok"]), default=start_at)
    seconds = max(last - start_at, 1e-9)
    summary: dict[str, Any] = {
        "attempted": attempted,
        "ok": ok,
        "failed": sum(errors.values()),
        "errors": dict(errors),
        "mechanisms": dict(mechanisms),
        "seconds": round(seconds, 3),
        "logins_per_s": round(ok / seconds, 1),
        "p50_ms": _ms(percentile(durations, 50)),
        "p99_ms": _ms(percentile(durations, 99)),
        "mean_ms": _ms(sum(durations) / ok) if ok else None,
        "server_cpu_ms_per_login": None,
    }
    if before is not None and after is not None and ok:
        summary["server_cpu_ms_per_login"] = round((after.cpu - before.cpu) * 1000 / ok, 3)
    return summary


def _idle(
    workers: _Workers, opts: BenchOptions, before: ProcSample | None, ok: int
) -> dict[str, Any]:
    workers.status_text = f"idle for {opts.duration:g} s"
    start = sample(opts.server_pid)
    t0 = time.monotonic()
    workers.pump_until(t0 + opts.duration)
    end = sample(opts.server_pid)
    idle: dict[str, Any] = {"seconds": round(time.monotonic() - t0, 3), "sessions": ok}
    if before is not None and start is not None and end is not None:
        idle.update(
            rss_before_mib=round(before.rss_kib / 1024, 1),
            rss_after_mib=round(end.rss_kib / 1024, 1),
            rss_per_session_kib=round((end.rss_kib - before.rss_kib) / ok, 2),
            server_cpu_ms_per_s=round((end.cpu - start.cpu) * 1000 / (end.at - start.at), 2),
        )
    return idle


def _shares(total: float, weights: dict[int, int]) -> dict[int, float]:
    whole = sum(weights.values())
    return {wid: (total * w / whole if whole else 0.0) for wid, w in weights.items()}


def _messages(
    workers: _Workers, opts: BenchOptions, logins: dict[int, Any], result: dict[str, Any]
) -> None:
    senders = {wid: r["senders"] for wid, r in logins.items()}
    if sum(senders.values()) == 0:
        result["notes"].append("no complete chat pair logged in")
        return
    t = time.monotonic() + _SETTLE
    steps: list[tuple[int, float, float]] = []
    if opts.warmup:
        # Every session sends before anything is measured: per-session state a server
        # builds on first use (Roost's hibernated parsers, caches) is not a steady cost.
        steps.append((opts.rates[0], t, t + opts.warmup))
        t += opts.warmup
    first = len(steps)
    for rate in opts.rates:
        steps.append((rate, t, t + opts.step_seconds))
        t += opts.step_seconds + opts.drain
    for wid in range(len(workers.procs)):
        plan = {
            "steps": [(_shares(rate, senders)[wid], s, e) for rate, s, e in steps],
            "drain": opts.drain,
        }
        workers.send(wid, "messages", plan)
    cpu: list[tuple[ProcSample | None, ProcSample | None]] = []
    for i, (rate, start, end) in enumerate(steps):
        workers.status_text = (
            f"messages step {i + 1 - first}/{len(steps) - first} at {rate:,}/s"
            if i >= first
            else f"warm-up at {rate:,}/s"
        )
        workers.pump_until(start)
        s0 = sample(opts.server_pid)
        workers.pump_until(end if i < first else end + opts.drain)
        cpu.append((s0, sample(opts.server_pid)))
    reports = workers.collect("result", opts.drain + 60.0)
    rows = []
    for i, (rate, _, _) in enumerate(steps):
        if i < first:
            continue
        parts = [r["steps"][i] for r in reports.values()]
        sent = sum(p["sent"] for p in parts)
        delivered = sum(p["delivered"] for p in parts)
        latencies = sorted(v for p in parts for v in p["latencies_us"])
        row: dict[str, Any] = {
            "rate": rate,
            "seconds": opts.step_seconds,
            "sent": sent,
            "skipped": sum(p["skipped"] for p in parts),
            "delivered": delivered,
            "late": sum(p["late"] for p in parts),
            "sent_per_s": round(sent / opts.step_seconds, 1),
            "delivered_per_s": round(delivered / opts.step_seconds, 1),
        }
        for p in (50, 95, 99):
            v = percentile(latencies, p)
            row[f"p{p}_ms"] = None if v is None else round(v / 1000, 2)
        s0, s1 = cpu[i]
        row["server_cpu_ms_per_1000"] = (
            round((s1.cpu - s0.cpu) * 1000 / delivered * 1000, 2)
            if s0 is not None and s1 is not None and delivered
            else None
        )
        row["steal_pct"] = steal_percent(s0, s1)
        why = []
        if sent < DELIVERY_OK * rate * opts.step_seconds:
            why.append(f"only {sent / opts.step_seconds:,.0f}/s sent")
        if delivered < DELIVERY_OK * sent or not sent:
            why.append(f"{delivered / sent:.0%} delivered" if sent else "nothing sent")
        if row["p99_ms"] is None or row["p99_ms"] >= P99_OK_MS:
            why.append(f"p99 >= {P99_OK_MS:g} ms")
        row["ok"] = not why
        row["why"] = "; ".join(why)
        rows.append(row)
    result["steps"] = rows
    result["max_sustainable_rate"] = max((r["rate"] for r in rows if r["ok"]), default=None)
    stolen = [
        f"{r['rate']:,}/s ({r['steal_pct']}%)"
        for r in rows
        if (r["steal_pct"] or 0) > STEAL_NOTE_PCT
    ]
    if stolen:
        result["notes"].append(
            "the hypervisor took CPU time from this machine during the steps at "
            + ", ".join(stolen)
            + ": their latencies include stalls no process here caused"
        )
    ended = sum(r["ended"] for r in reports.values())
    if ended:
        result["notes"].append(f"{ended} sessions were closed by the server during the run")
    if opts.users % 2:
        result["notes"].append(f"{opts.prefix}{opts.users - 1} had no partner and sat out")


def _presence(
    workers: _Workers, opts: BenchOptions, logins: dict[int, Any], result: dict[str, Any]
) -> dict[str, Any]:
    online = {wid: r["ok"] for wid, r in logins.items()}
    start = time.monotonic() + max(_SETTLE, opts.drain)
    end = start + opts.duration
    rates = _shares(opts.presence_rate, online)
    for wid in range(len(workers.procs)):
        plan = {"rate": rates[wid], "start": start, "end": end, "drain": opts.drain}
        workers.send(wid, "presence", plan)
    workers.status_text = "presence"
    workers.pump_until(start)
    s0 = sample(opts.server_pid)
    workers.pump_until(end + opts.drain)
    s1 = sample(opts.server_pid)
    reports = workers.collect("result", opts.drain + 60.0)
    sent = sum(r["sent"] for r in reports.values())
    received = sum(r["received"] for r in reports.values())
    out: dict[str, Any] = {
        "seconds": opts.duration,
        "sent": sent,
        "skipped": sum(r["skipped"] for r in reports.values()),
        "received": received,
        "fanout_per_s": round(received / opts.duration, 1) if opts.duration else None,
        "fanout_per_change": round(received / sent, 2) if sent else None,
        "expected": None,
        "server_cpu_ms_per_1000": None,
    }
    if opts.contacts is not None:
        # RFC 6121 §4.4.2: every contact with a subscription gets it, and so does the
        # sender's own resource; only right when all contacts are online (users = all).
        out["expected"] = sent * (opts.contacts + 1)
    if s0 is not None and s1 is not None and received:
        out["server_cpu_ms_per_1000"] = round((s1.cpu - s0.cpu) * 1000 / received * 1000, 2)
    ended = sum(r["ended"] for r in reports.values())
    if ended:
        result["notes"].append(f"{ended} sessions were closed by the server during the run")
    return out


def _busy_pct(before: list[ProcSample | None], after: list[ProcSample | None]) -> float | None:
    """CPU % (of one core) the processes used between the two samples, summed."""
    total = 0.0
    for b, a in zip(before, after, strict=True):
        if b is None or a is None or a.at <= b.at:
            return None
        total += (a.cpu - b.cpu) / (a.at - b.at) * 100
    return round(total, 1)


def _muc(workers: _Workers, opts: BenchOptions, result: dict[str, Any]) -> None:
    """One room, every session an occupant, each sending groupchat messages at each step's
    rate; what counts is the room's fan-out (XEP-0045 §7.4: every occupant, the sender
    too, gets every message)."""
    room = opts.room or f"bench@conference.{opts.domain}"
    t0 = time.monotonic()
    workers.status_text = "join"
    workers.send(0, "muc_create", room, t0 + opts.timeout)
    first = workers.collect("muc_created", opts.timeout + 30.0, expect=1)[0]
    summary: dict[str, Any] = {"room": room, "created": first["created"], "occupants": 0}
    result["muc"] = summary
    if not first["ok"]:
        result["notes"].append(f"the first session could not enter {room}: {first['error']}")
        return
    workers.broadcast("muc_join", room, time.monotonic() + opts.login_timeout)
    joins = workers.collect("muc_joined", opts.login_timeout + 30.0)
    errors: collections.Counter[str] = collections.Counter()
    for r in joins.values():
        errors.update(r["errors"])
    occupants = {wid: r["ok"] for wid, r in joins.items()}
    n = sum(occupants.values())
    summary.update(
        occupants=n, join_failed=sum(errors.values()), join_errors=dict(errors),
        join_seconds=round(time.monotonic() - t0, 3),
    )
    t = time.monotonic() + _SETTLE
    steps: list[tuple[float, float, float]] = []
    if opts.warmup:
        steps.append((opts.occupant_rates[0], t, t + opts.warmup))
        t += opts.warmup
    first_step = len(steps)
    for rate in opts.occupant_rates:
        steps.append((rate, t, t + opts.step_seconds))
        t += opts.step_seconds + opts.drain
    for wid in range(len(workers.procs)):
        plan = {
            "steps": [(rate * occupants[wid], s, e) for rate, s, e in steps],
            "drain": opts.drain,
            "room": room,
        }
        workers.send(wid, "messages", plan)
    cpu: list[tuple[ProcSample | None, ProcSample | None]] = []
    gen: list[float | None] = []
    for i, (rate, start, end) in enumerate(steps):
        workers.status_text = (
            f"muc step {i + 1 - first_step}/{len(steps) - first_step} at {rate:g}/s per occupant"
            if i >= first_step
            else f"warm-up at {rate:g}/s per occupant"
        )
        workers.pump_until(start)
        s0 = sample(opts.server_pid)
        g0 = [sample(p.pid) for p in workers.procs]
        workers.pump_until(end if i < first_step else end + opts.drain)
        cpu.append((s0, sample(opts.server_pid)))
        gen.append(_busy_pct(g0, [sample(p.pid) for p in workers.procs]))
    reports = workers.collect("result", opts.drain + 60.0)
    rows = []
    secs = opts.step_seconds
    for i, (rate, _, _) in enumerate(steps):
        if i < first_step:
            continue
        parts = [r["steps"][i] for r in reports.values()]
        sent = sum(p["sent"] for p in parts)
        delivered = sum(p["delivered"] for p in parts)
        latencies = sorted(v for p in parts for v in p["latencies_us"])
        row: dict[str, Any] = {
            "rate_per_occupant": rate,
            "rate": round(rate * n, 1),
            "seconds": secs,
            "sent": sent,
            "skipped": sum(p["skipped"] for p in parts),
            "fanout": delivered,
            "expected_fanout": sent * n,
            "late": sum(p["late"] for p in parts),
            "sent_per_s": round(sent / secs, 1),
            "fanout_per_s": round(delivered / secs, 1),
        }
        for p in (50, 95, 99):
            v = percentile(latencies, p)
            row[f"p{p}_ms"] = None if v is None else round(v / 1000, 2)
        s0, s1 = cpu[i]
        row["server_cpu_ms_per_1000"] = (
            round((s1.cpu - s0.cpu) * 1000 / delivered * 1000, 2)
            if s0 is not None and s1 is not None and delivered
            else None
        )
        row["server_cpu_pct"] = (
            round((s1.cpu - s0.cpu) / (s1.at - s0.at) * 100, 1)
            if s0 is not None and s1 is not None
            else None
        )
        row["server_wait_pct"] = (
            round((s1.waited - s0.waited) / (s1.at - s0.at) * 100, 1)
            if s0 is not None and s1 is not None
            else None
        )
        row["rss_mib"] = round(s1.rss_kib / 1024, 1) if s1 is not None else None
        # the generator's own share: one process near 100% means it measures itself
        row["generator_cpu_pct"] = gen[i]
        row["steal_pct"] = steal_percent(s0, s1)
        why = []
        if sent < DELIVERY_OK * rate * n * secs:
            why.append(f"only {sent / secs:,.0f}/s sent")
        if delivered < DELIVERY_OK * sent * n or not sent:
            why.append(f"{delivered / (sent * n):.0%} fanned out" if sent else "nothing sent")
        if row["p99_ms"] is None or row["p99_ms"] >= P99_OK_MS:
            why.append(f"p99 >= {P99_OK_MS:g} ms")
        row["ok"] = not why
        row["why"] = "; ".join(why)
        rows.append(row)
    result["steps"] = rows
    result["max_sustainable_fanout"] = max(
        (r["fanout_per_s"] for r in rows if r["ok"]), default=None
    )
    stolen = [
        f"{r['rate_per_occupant']:g}/s ({r['steal_pct']}%)"
        for r in rows
        if (r["steal_pct"] or 0) > STEAL_NOTE_PCT
    ]
    if stolen:
        result["notes"].append(
            "the hypervisor took CPU time from this machine during the steps at "
            + ", ".join(stolen)
            + " per occupant: their latencies include stalls no process here caused"
        )
    ended = sum(r["ended"] for r in reports.values())
    if ended:
        result["notes"].append(f"{ended} sessions were closed by the server during the run")
