"""ProviderLoop: one asyncio loop on one daemon thread, reached from other threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from roogab.errors import ProviderUnavailable, UpstreamError
from roogab.providers.base import Created, Deadlines, Delta, Done, Snapshot, Turn
from roogab.providers.loop import ProviderLoop


async def _thread_name() -> str:
    return threading.current_thread().name


def test_run_returns_the_result_from_the_loop_thread(provider_loop: ProviderLoop) -> None:
    assert provider_loop.running
    assert provider_loop.run(_thread_name(), timeout=2) == "roogab-provider-loop"


def test_submit_returns_a_future(provider_loop: ProviderLoop) -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert provider_loop.submit(double(21)).result(2) == 42


def test_run_times_out_and_cancels_the_coroutine(provider_loop: ProviderLoop) -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        provider_loop.run(forever(), timeout=0.05)
    assert cancelled.wait(2)


def test_call_soon_runs_on_the_loop_thread(provider_loop: ProviderLoop) -> None:
    seen: list[str] = []
    done = threading.Event()

    def record(tag: str) -> None:
        seen.append(f"{tag}@{threading.current_thread().name}")
        done.set()

    provider_loop.call_soon(record, "x")
    assert done.wait(2)
    assert seen == ["x@roogab-provider-loop"]


def test_stop_cancels_leftover_tasks_and_is_idempotent() -> None:
    loop = ProviderLoop()
    loop.start()
    loop.start()  # a no-op
    started, cleaned = threading.Event(), threading.Event()

    async def leftover() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.set()

    loop.submit(leftover())
    assert started.wait(2)
    loop.stop()
    assert cleaned.is_set()
    assert not loop.running
    loop.stop()


def test_submit_after_stop_raises_and_closes_the_coroutine() -> None:
    loop = ProviderLoop()
    loop.start()
    loop.stop()
    coro = _thread_name()
    with pytest.raises(RuntimeError, match="not running"):
        loop.submit(coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning
    loop.call_soon(print, "dropped silently")


def test_run_from_the_loop_thread_is_refused(provider_loop: ProviderLoop) -> None:
    async def nested() -> str:
        try:
            provider_loop.run(_thread_name(), timeout=1)
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "deadlock" in provider_loop.run(nested(), timeout=2)


def test_restart_after_stop() -> None:
    loop = ProviderLoop()
    loop.start()
    loop.stop()
    loop.start()
    try:
        assert loop.run(_thread_name(), timeout=2) == "roogab-provider-loop"
    finally:
        loop.stop()


def test_a_turn_merges_deltas_already_queued_and_keeps_the_order() -> None:
    turn = Turn("t", Deadlines(first_token=5, silence=5, total=5))
    for item in (Created("c"), Delta("a"), Delta("b"), Delta("c"), Snapshot("abc1"), Snapshot("abc12"),
                 Delta("3"), Done("abc123")):
        turn.put(item)
    assert list(turn.events(0.5, merge=True)) == [Created("c"), Delta("abc"), Snapshot("abc12"), Delta("3"),
                                                  Done("abc123")]


def test_start_turn_ends_the_turn_when_the_start_fails(provider_loop: ProviderLoop) -> None:
    async def broken() -> None:
        raise KeyError("a bug")

    turn = Turn("p", Deadlines(first_token=5, silence=5, total=5))
    provider_loop.start_turn(turn, broken())
    with pytest.raises(UpstreamError, match="internal error"):
        list(turn.events(0.5))
    provider_loop.stop()
    stopped = Turn("p", Deadlines(first_token=5, silence=5, total=5))
    provider_loop.start_turn(stopped, broken())
    with pytest.raises(ProviderUnavailable, match="not running"):
        list(stopped.events(0.5))
    provider_loop.fire(broken(), "p: forget")  # dropped quietly after stop
    provider_loop.finish(broken(), 1.0, "p: close")
