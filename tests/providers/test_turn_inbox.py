"""The turn inbox: everything queued handed over at once, the reader woken only when it waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roogab.errors import ProviderRejected
from roogab.providers.base import Deadlines, Delta, Done, Pace, ProviderEvent, Turn
from roogab.providers.loop import ProviderLoop

LONG = Deadlines(first_token=30, silence=30, total=60)


def _reader(turn: Turn, out: list[ProviderEvent | None], tick: float = 5.0) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.extend(turn.events(tick, merge=True)), daemon=True)
    thread.start()
    return thread


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the reader never started waiting"
        time.sleep(0.001)


def _text(events: list[ProviderEvent | None]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


class Rings:
    """A ``defer`` that keeps the rings it is asked for, with their delays, to run by hand."""

    def __init__(self) -> None:
        self.asked: list[tuple[Callable[[], None], float]] = []

    def __call__(self, ring: Callable[[], None], delay: float) -> None:
        self.asked.append((ring, delay))

    def __len__(self) -> int:
        return len(self.asked)

    def run(self) -> float:
        """Run the oldest ring; its delay."""
        ring, delay = self.asked.pop(0)
        ring()
        return delay


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=300))
def test_deltas_from_another_thread_arrive_once_in_order(pauses: list[int]) -> None:
    turn = Turn("t", LONG)
    out: list[ProviderEvent | None] = []
    reader = _reader(turn, out)
    for k, pause in enumerate(pauses):
        turn.put(Delta(f"{k};"))
        if pause == 3:
            time.sleep(0.0005)  # let the reader catch up and wait again now and then
    turn.put(Done())
    reader.join(10)
    assert _text(out) == "".join(f"{k};" for k in range(len(pauses)))
    assert out[-1] == Done()


def test_a_waiting_reader_is_rung_once_for_a_burst() -> None:
    rings = Rings()
    turn = Turn("t", LONG, defer=rings)
    out: list[ProviderEvent | None] = []
    reader = _reader(turn, out)
    _until(lambda: turn._waiting)
    for piece in ("a", "b", "c"):
        turn.put(Delta(piece))
    assert len(rings) == 1 and not out  # one ring scheduled, not yet run: the reader still waits
    assert rings.run() == 0.0  # no pace: at the end of the loop's batch
    _until(lambda: len(out) == 1)
    _until(lambda: turn._waiting)
    turn.put(Done())
    assert len(rings) == 1
    rings.run()
    reader.join(10)
    assert out == [Delta("abc"), Done()]


def test_a_ring_that_never_runs_delays_but_loses_nothing() -> None:
    dropped = Rings()
    turn = Turn("t", LONG, defer=dropped)
    out: list[ProviderEvent | None] = []
    reader = _reader(turn, out, tick=0.05)
    _until(lambda: turn._waiting)
    turn.put(Delta("a"))
    _until(lambda: _text(out) == "a")
    _until(lambda: turn._waiting)
    turn.put(Delta("b"))
    turn.put(Done())
    reader.join(10)
    assert _text(out) == "ab" and out[-1] == Done() and len(dropped) == 2


def test_cancel_wakes_a_waiting_reader_and_later_puts_are_dropped() -> None:
    turn = Turn("t", LONG)
    out: list[ProviderEvent | None] = []
    reader = _reader(turn, out)
    _until(lambda: turn._waiting)
    turn.cancel()
    reader.join(10)
    assert not reader.is_alive() and out == [] and turn.cancelled
    turn.put(Delta("late"))
    assert turn._items == []


def test_a_failure_after_deltas_in_one_batch_comes_after_them() -> None:
    turn = Turn("t", LONG)
    turn.put(Delta("a"))
    turn.put(Delta("b"))
    turn.put(ProviderRejected("no", provider="t"))
    events = turn.events(1.0, merge=True)
    assert next(events) == Delta("ab")
    with pytest.raises(ProviderRejected):
        next(events)


def test_coalesce_runs_after_the_loop_callback_that_asked(provider_loop: ProviderLoop) -> None:
    order: list[str] = []

    def burst() -> None:
        provider_loop.coalesce(lambda: order.append("ring 1"))
        provider_loop.coalesce(lambda: order.append("ring 2"))
        order.append("callback")

    provider_loop.call_soon(burst)
    _until(lambda: len(order) == 3)
    assert order == ["callback", "ring 1", "ring 2"]
    provider_loop.coalesce(lambda: order.append("now"))  # not the loop thread: at once
    assert order[-1] == "now"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_with_a_pace_a_piece_soon_after_a_batch_waits_for_the_pace_and_the_end_does_not() -> None:
    """The reader is woken at most once per pace for pieces (what came meanwhile comes joined);
    the first piece after a pause, and Done, ring at once."""
    rings, clock = Rings(), Clock()
    turn = Turn("t", LONG, defer=rings, pace=Pace(0.05), clock=clock)
    out: list[ProviderEvent | None] = []
    reader = _reader(turn, out)
    _until(lambda: turn._waiting)
    turn.put(Delta("a"))  # the first piece: nothing was taken yet
    assert rings.run() <= 0
    _until(lambda: _text(out) == "a")
    turn.passed_on()
    _until(lambda: turn._waiting)
    clock.now += 0.02
    turn.put(Delta("b"))
    turn.put(Delta("c"))
    assert len(rings) == 1 and rings.asked[0][1] == pytest.approx(0.03)  # 0.05 after "a" was taken
    turn.put(Done())  # the end does not wait for the pace
    assert len(rings) == 2 and rings.asked[1][1] == 0.0
    rings.run()
    reader.join(10)
    assert out == [Delta("a"), Delta("bc"), Done()]
    rings.run()  # the paced ring, late: the reader is gone, nothing happens


def test_nothing_is_paced_before_the_reader_passed_something_on() -> None:
    """A reply's envelope opening shows nothing: the pieces after it must not wait for the pace,
    or the agent's first token would come a pace late."""
    rings, clock = Rings(), Clock()
    turn = Turn("t", LONG, defer=rings, pace=Pace(0.05), clock=clock)
    out: list[ProviderEvent | None] = []
    reader = _reader(turn, out)
    for piece in ("```lua\nreturn {", " text = [==[", "Hello"):
        _until(lambda: turn._waiting)
        turn.put(Delta(piece))
        assert rings.run() == 0.0
        _until(lambda piece=piece: _text(out).endswith(piece))
        clock.now += 0.001
    turn.passed_on()
    _until(lambda: turn._waiting)
    turn.put(Delta(" there"))
    assert rings.asked[0][1] == pytest.approx(0.049)
    turn.put(Done())
    rings.run()
    rings.run()
    reader.join(10)
    assert out[-1] == Done() and _text(out).endswith("Hello there")


def test_a_pace_without_a_loop_to_defer_to_is_ignored() -> None:
    """A provider on its own thread (no defer) cannot schedule a later ring: it rings at once."""
    turn = Turn("t", LONG, pace=Pace(0.5))
    out: list[ProviderEvent | None] = []
    reader = _reader(turn, out)
    _until(lambda: turn._waiting)
    turn.put(Delta("a"))
    _until(lambda: _text(out) == "a")
    turn.put(Done())
    reader.join(10)
    assert out == [Delta("a"), Done()]


def test_coalesce_with_a_delay_runs_later_on_the_loop(provider_loop: ProviderLoop) -> None:
    order: list[str] = []

    def burst() -> None:
        provider_loop.coalesce(lambda: order.append("paced"), 0.05)
        provider_loop.coalesce(lambda: order.append("batch end"))
        order.append("callback")

    provider_loop.call_soon(burst)
    _until(lambda: len(order) == 3)
    assert order == ["callback", "batch end", "paced"]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=200))
def test_paced_deltas_put_on_the_loop_arrive_once_in_order(pauses: list[int]) -> None:
    """The provider loop's real pacing (call_later): every piece once, in order, whatever the
    timing of the puts against the reader's takes."""
    loop = ProviderLoop(pace=0.002)
    loop.start()
    try:
        turn = Turn("t", LONG, defer=loop.coalesce, pace=loop.pace)
        out: list[ProviderEvent | None] = []
        reader = _reader(turn, out)
        for k, pause in enumerate(pauses):
            loop.call_soon(turn.put, Delta(f"{k};"))
            if pause == 3:
                time.sleep(0.001)
        loop.call_soon(turn.put, Done())
        reader.join(10)
    finally:
        loop.stop()
    assert _text(out) == "".join(f"{k};" for k in range(len(pauses)))
    assert out[-1] == Done()


def test_many_streams_at_once_stretch_the_pace() -> None:
    """All the paced readers of a loop together are woken at most about wakes_per_second times a
    second: the interval grows with the readers streaming now, and shrinks back as they end."""
    pace = Pace(0.05, wakes_per_second=20)
    assert pace.interval() == 0.05
    turns = [Turn(f"t{i}", LONG, defer=lambda ring, delay: ring(), pace=pace) for i in range(3)]
    readers = [t.events(0.01) for t in turns]
    for reader in readers:
        assert next(reader) is None  # reading (a tick of silence)
    assert pace.interval() == pytest.approx(3 / 20)
    turns[0].put(Done())
    assert next(readers[0]) == Done()
    with pytest.raises(StopIteration):
        next(readers[0])
    turns[1].put(ProviderRejected("no", provider="t1"))
    with pytest.raises(ProviderRejected):
        next(readers[1])
    assert pace.interval() == pytest.approx(1 / 20)
    readers[2].close()  # the request went away mid-reply
    assert pace.interval() == 0.05
