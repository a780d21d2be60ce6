"""A bench worker process: runs its share of the sessions on one event loop.

The parent drives every worker through the same phases with commands on a queue
(``register``, ``login``, ``muc_create``, ``muc_join``, ``messages``, ``presence``,
``close``); the worker answers on a shared queue with progress and with one result per
phase. Every wait is bounded: a worker
whose parent goes quiet for ``COMMAND_TIMEOUT`` seconds closes its sessions and exits.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import gc
import math
import queue
import ssl
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from multiprocessing.queues import Queue
from typing import Any

from roost.bench.options import BenchOptions
from roost.bench.session import BenchSession, LoginFailed, Tally, client_tls_context
from roost.core.stream.client import (
    DEFAULT_MECHANISMS,
    ClientStreamSettings,
    SaltedPasswordCache,
    TLSMode,
)
from roost.core.xml.writer import escape_attr
from roost.transport.heap import serve_large_blocks_from_heap

__all__ = ["COMMAND_TIMEOUT", "worker_entry"]

#: a worker gives up when its parent sends nothing for this long
COMMAND_TIMEOUT = 900.0
_TICK = 0.005  # seconds between sending rounds
_PROGRESS_EVERY = 0.25
_AWAY = b"<presence><show>away</show></presence>"
_AVAILABLE = b"<presence/>"
_MESSAGE_END = b"</body></message>"

Message = tuple[Any, ...]


def worker_entry(
    opts: BenchOptions,
    wid: int,
    indices: Sequence[int],
    to_parent: Queue[Message],
    commands: Queue[Message],
) -> None:
    """Process entry point (spawned by the parent)."""
    try:
        _run(Worker(opts, wid, indices, to_parent, commands).main, opts.loop)
    except BaseException:  # the worker's one conversion point: report, then exit
        to_parent.put(("error", wid, traceback.format_exc()))


def _run(main: Callable[[], Coroutine[Any, Any, None]], loop_choice: str) -> None:
    serve_large_blocks_from_heap()  # the generator's TLS reads: see roost.transport.heap
    if loop_choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop_choice == "uvloop":
                raise
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())
            return
    asyncio.run(main())


async def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


class Worker:
    """The sessions of one process and the phases run on them."""

    def __init__(
        self,
        opts: BenchOptions,
        wid: int,
        indices: Sequence[int],
        to_parent: Queue[Message],
        commands: Queue[Message],
    ) -> None:
        self.opts = opts
        self.wid = wid
        self.indices = list(indices)
        self.to_parent = to_parent
        self.commands = commands
        self.tally = Tally()
        self.sessions: dict[int, BenchSession] = {}
        self.ctx: ssl.SSLContext | None = (
            client_tls_context(opts.insecure) if opts.tls != "none" else None
        )
        # One cache for the whole worker: every account has the same password, and with
        # accounts from `roost bench provision` the same salt, so PBKDF2 runs once.
        self.cache: SaltedPasswordCache = {}
        self.progress: dict[str, Any] = {"phase": "start"}
        self._sources = opts.source_ips or (None,)

    def put(self, *msg: Any) -> None:
        self.to_parent.put((msg[0], self.wid, *msg[1:]))

    async def main(self) -> None:
        reporter = asyncio.get_running_loop().create_task(self._report_progress())
        try:
            self.put("hello")
            while True:
                cmd = await self._command()
                kind = cmd[0]
                if kind == "register":
                    self.put("registered", await self.register_all(deadline=cmd[1]))
                elif kind == "login":
                    self.put("logged_in", await self.login_all(start_at=cmd[1], deadline=cmd[2]))
                elif kind == "messages":
                    self.put("result", await self.run_messages(cmd[1]))
                elif kind == "presence":
                    self.put("result", await self.run_presence(cmd[1]))
                elif kind == "muc_create":
                    self.put("muc_created", await self.muc_create(cmd[1], deadline=cmd[2]))
                elif kind == "muc_join":
                    self.put("muc_joined", await self.muc_join(cmd[1], deadline=cmd[2]))
                elif kind == "close":
                    await self.close_all()
                    self.put("closed")
                    return
        finally:
            reporter.cancel()
            for sess in self.sessions.values():
                sess.abort()

    async def _command(self) -> Message:
        loop = asyncio.get_running_loop()
        get = functools.partial(self.commands.get, True, COMMAND_TIMEOUT)
        try:
            cmd: Message = await loop.run_in_executor(None, get)
        except queue.Empty:
            return ("close",)  # the parent is gone or stuck: stop by ourselves
        return cmd

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(_PROGRESS_EVERY)
            self.put("progress", dict(self.progress, presences=self.tally.presences))

    # -- sessions -------------------------------------------------------------------------

    def _settings(self, index: int, register: bool) -> ClientStreamSettings:
        o = self.opts
        return ClientStreamSettings(
            username=f"{o.prefix}{index}",
            domain=o.domain,
            password=o.password,
            resource=o.resource,
            tls=TLSMode(o.tls),
            mechanisms=o.mechanisms or DEFAULT_MECHANISMS,
            register=register,
            salted_password_cache=self.cache,
        )

    async def _each(
        self, fn: Callable[[int], Coroutine[Any, Any, None]], deadline: float
    ) -> dict[str, int]:
        """Run ``fn`` for every index, ``concurrency`` at a time, until ``deadline``."""
        sem = asyncio.Semaphore(self.opts.concurrency)
        errors: collections.Counter[str] = collections.Counter()

        async def one(index: int) -> None:
            async with sem:
                if time.monotonic() > deadline:
                    errors["phase deadline passed"] += 1
                    return
                try:
                    async with asyncio.timeout(min(self.opts.timeout, deadline - time.monotonic())):
                        await fn(index)
                except LoginFailed as exc:
                    errors[str(exc)[:100]] += 1
                except TimeoutError:
                    errors["timeout"] += 1
                except (OSError, ssl.SSLError) as exc:
                    errors[f"{type(exc).__name__}: {exc}"[:100]] += 1
                self.progress["failed"] = sum(errors.values())

        async with asyncio.TaskGroup() as tg:
            for index in self.indices:
                tg.create_task(one(index))
        return dict(errors)

    def _source(self, index: int) -> str | None:
        return self._sources[index % len(self._sources)]

    async def register_all(self, deadline: float) -> dict[str, Any]:
        self.progress = {"phase": "register", "ok": 0, "failed": 0, "created": 0}
        created = existed = 0

        async def one(index: int) -> None:
            nonlocal created, existed
            sess = BenchSession(index, self._settings(index, register=True), self.ctx, Tally())
            try:
                if await sess.register(self.opts.host, self.opts.port, self._source(index)):
                    created += 1
                else:
                    existed += 1
                self.progress["ok"] = created + existed
                self.progress["created"] = created
            finally:
                await sess.close(1.0)

        errors = await self._each(one, deadline)
        return {"created": created, "existed": existed, "errors": errors}

    async def login_all(self, start_at: float, deadline: float) -> dict[str, Any]:
        self.progress = {"phase": "login", "ok": 0, "failed": 0}
        await _sleep_until(start_at)
        durations: list[float] = []
        first = time.monotonic()
        last = first

        async def one(index: int) -> None:
            nonlocal last
            sess = BenchSession(
                index,
                self._settings(index, register=False),
                self.ctx,
                self.tally,
                sm=self.opts.sm,
                carbons=self.opts.carbons,
            )
            t0 = time.monotonic()
            try:
                await sess.login(self.opts.host, self.opts.port, self._source(index))
            except BaseException:
                sess.abort()
                raise
            last = time.monotonic()
            durations.append(last - t0)
            self.sessions[index] = sess
            self.progress["ok"] = len(durations)

        errors = await self._each(one, deadline)
        mechanisms = collections.Counter(
            s.stream.mechanism for s in self.sessions.values() if s.stream.mechanism
        )
        senders = self._pair_up() if self.opts.scenario == "messages" else len(self.sessions)
        if self.opts.scenario in ("messages", "presence"):
            for sess in self.sessions.values():
                sess.raw = True  # from here on, bytes are scanned, not parsed
        # The sessions live until the end: keep the cyclic collector from walking them in
        # the middle of a step, where its pauses would show up as the server's latency.
        gc.collect()
        gc.freeze()
        return {
            "ok": len(durations),
            "errors": errors,
            "durations": durations,
            "first_start": first,
            "last_end": last,
            "senders": senders,
            "mechanisms": dict(mechanisms),
        }

    def _pair_up(self) -> int:
        """Sessions 2k and 2k+1 chat with each other; both must be logged in."""
        senders = 0
        for index, sess in self.sessions.items():
            other = self.sessions.get(index ^ 1)
            if other is not None and other.jid is not None:
                sess.partner = other
                senders += 1
        return senders

    # -- group chat -------------------------------------------------------------------------

    async def muc_create(self, room: str, deadline: float) -> dict[str, Any]:
        """Our first session enters first; if the room is new (status 201, XEP-0045
        §10.1.1) it unlocks it as an instant room (§10.1.2) before anyone else joins."""
        self.progress = {"phase": "join", "ok": 0, "failed": 0}
        sess = next((s for s in self.sessions.values() if not s.ended), None)
        if sess is None:
            return {"ok": False, "created": False, "error": "no session"}
        bound = max(0.0, min(self.opts.timeout, deadline - time.monotonic()))
        try:
            async with asyncio.timeout(bound):
                codes = await sess.join_room(room)
                if "201" in codes:
                    await sess.unlock_instant_room(room)
        except (LoginFailed, TimeoutError, OSError) as exc:
            return {"ok": False, "created": False, "error": str(exc) or type(exc).__name__}
        self.progress["ok"] = 1
        return {"ok": True, "created": "201" in codes, "error": None}

    async def muc_join(self, room: str, deadline: float) -> dict[str, Any]:
        """Every other session enters (``concurrency`` at a time); then all go raw."""
        self.progress = {"phase": "join", "ok": 0, "failed": 0}
        joined = [s for s in self.sessions.values() if s.muc_codes is not None]

        async def one(index: int) -> None:
            sess = self.sessions.get(index)
            if sess is None or sess.muc_codes is not None:
                return
            await sess.join_room(room)
            joined.append(sess)
            self.progress["ok"] = len(joined)

        errors = await self._each(one, deadline)
        for sess in self.sessions.values():
            sess.raw = True
        return {"ok": len(joined), "errors": errors}

    async def close_all(self) -> None:
        self.progress = {"phase": "close"}
        sessions = list(self.sessions.values())
        await asyncio.gather(*(s.close(min(self.opts.timeout, 5.0)) for s in sessions))

    # -- scenarios ------------------------------------------------------------------------

    async def run_messages(self, plan: dict[str, Any]) -> dict[str, Any]:
        """Send at each step's rate (this worker's share) from every paired session, or in
        the muc scenario from every occupant to the room."""
        steps: list[tuple[float, float, float]] = plan["steps"]  # (rate, start, end)
        drain: float = plan["drain"]
        self.tally.configure_steps([int((end + drain) * 1e9) for _, _, end in steps])
        senders: list[tuple[BenchSession, bytes]] = []
        if self.opts.scenario == "muc":
            # XEP-0045 §7.4: one groupchat message to the room reaches every occupant
            room = escape_attr(plan["room"])
            prefix = f"<message to='{room}' type='groupchat'><body>".encode()
            senders = [(s, prefix) for s in self.sessions.values() if s.muc_codes is not None]
        else:
            for sess in self.sessions.values():
                partner = sess.partner
                if partner is not None and partner.jid is not None:
                    to = escape_attr(partner.jid)
                    senders.append((sess, f"<message to='{to}' type='chat'><body>".encode()))
        n = len(senders)
        out: list[dict[str, int]] = []
        self.progress = {"phase": self.opts.scenario, "step": 0, "sent": 0, "delivered": 0}
        for step, (rate, start, end) in enumerate(steps):
            await _sleep_until(start)
            sent = skipped = 0
            k = 0
            cap = max(50, int(rate * 0.05))  # at most 50 ms worth of messages in one round
            self.progress["step"] = step
            while n and (now := time.monotonic()) < end:
                due = min(math.ceil((now - start) * rate) - sent - skipped, cap)
                if due > 0:
                    token = b"rb:%d:%d;" % (step, time.monotonic_ns()) + _MESSAGE_END
                    reps, extra = divmod(due, n)
                    for j in range(min(due, n)):
                        sess, prefix = senders[(k + j) % n]
                        count = reps + (1 if j < extra else 0)
                        if sess.write((prefix + token) * count):
                            sent += count
                        else:
                            skipped += count
                    k = (k + due) % n
                    self.progress["sent"] = sent
                    self.progress["delivered"] = self.tally.delivered[step]
                await asyncio.sleep(_TICK)
            out.append({"sent": sent, "skipped": skipped})
        await _sleep_until(steps[-1][2] + drain)
        t = self.tally
        return {
            "steps": [
                {
                    **o,
                    "delivered": t.delivered[i],
                    "late": t.late[i],
                    "latencies_us": t.latencies_us[i],
                }
                for i, o in enumerate(out)
            ],
            "unknown": t.unknown,
            "ended": sum(1 for s in self.sessions.values() if s.ended),
        }

    async def run_presence(self, plan: dict[str, Any]) -> dict[str, Any]:
        """Every session in turn toggles between away and available."""
        rate: float = plan["rate"]
        start: float = plan["start"]
        end: float = plan["end"]
        sessions = [s for s in self.sessions.values() if not s.ended]
        away = [False] * len(sessions)
        n = len(sessions)
        self.progress = {"phase": "presence", "sent": 0}
        await _sleep_until(start)
        base = self.tally.presences
        sent = skipped = k = 0
        cap = max(50, int(rate * 0.05))
        while n and (now := time.monotonic()) < end:
            due = min(math.ceil((now - start) * rate) - sent - skipped, cap)
            for _ in range(max(due, 0)):
                j = k % n
                k += 1
                away[j] = not away[j]
                if sessions[j].write(_AWAY if away[j] else _AVAILABLE):
                    sent += 1
                else:
                    skipped += 1
            self.progress["sent"] = sent
            await asyncio.sleep(_TICK)
        await _sleep_until(end + plan["drain"])
        return {
            "sent": sent,
            "skipped": skipped,
            "received": self.tally.presences - base,
            "ended": sum(1 for s in self.sessions.values() if s.ended),
        }
