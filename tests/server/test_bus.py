"""The event bus and switchable filters (``roost.server.bus``, ``api.FilterSwitch``):
handlers kept copy-on-write, so one may switch itself or another off while an event runs."""

from __future__ import annotations

from collections.abc import Callable

from roost.server.api import FilterSwitch
from roost.server.bus import TAKEN, EventBus, Filter, Observer

EVENT: Filter[[list[str]]] = Filter("test/event")
SEEN: Observer[[list[str]]] = Observer("test/seen")


def test_a_switch_adds_and_removes_its_filter_once() -> None:
    bus = EventBus()
    calls: list[str] = []

    def handler(log: list[str]) -> bool:
        log.append("f")
        return False

    switch = FilterSwitch(lambda: bus.filter(EVENT, handler))
    assert not bus.has(EVENT) and not switch.active
    switch.on()
    switch.on()  # idempotent: still one handler
    bus.run(EVENT, calls)
    assert calls == ["f"] and switch.active
    switch.off()
    switch.off()
    assert not bus.has(EVENT)
    assert bus.run(EVENT, calls) is None and calls == ["f"]


def test_handlers_removed_while_the_event_runs_still_see_it_once() -> None:
    bus = EventBus()
    calls: list[str] = []
    removers: dict[str, object] = {}

    def first(log: list[str]) -> bool:
        log.append("first")
        removers["first"]()  # type: ignore[operator]
        removers["second"]()  # type: ignore[operator]
        return False

    def second(log: list[str]) -> bool:
        log.append("second")
        return True

    removers["first"] = bus.filter(EVENT, first, priority=10)
    removers["second"] = bus.filter(EVENT, second, priority=0)
    # the run that removed them finishes over the handlers it started with
    assert bus.run(EVENT, calls) is TAKEN
    assert calls == ["first", "second"]
    assert bus.run(EVENT, calls) is None and calls == ["first", "second"]


def test_priority_order_and_equal_priorities_keep_their_order() -> None:
    bus = EventBus()
    calls: list[str] = []

    def noting(name: str) -> Callable[[list[str]], None]:
        return lambda log: log.append(name)

    for name, prio in (("a", 0), ("b", 5), ("c", 0), ("d", 5)):
        bus.observe(SEEN, noting(name), priority=prio)
    bus.notify(SEEN, calls)
    assert calls == ["b", "d", "a", "c"]
