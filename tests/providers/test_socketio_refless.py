"""MultiplexProvider against a service that answers a create without its ref (providers.md §6:
``loadConversation {id}``): a real python-socketio server on loopback, the real client.

Such an answer can only be matched while one create is pending, so creates go one at a time
until the service has echoed a ref; a create it never answers is given up at the turn's
first-token deadline and holds up nothing after it.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import socketio
from aiohttp import web
from aiohttp_server import AiohttpServer

from roogab.config import ProviderProfile
from roogab.errors import ProviderTimeout
from roogab.providers.base import Created, Deadlines, Delta, Done, ProviderEvent, Turn
from roogab.providers.loop import ProviderLoop
from roogab.providers.socketio_impl import MultiplexProvider

pytestmark = pytest.mark.loopback

QUICK = Deadlines(first_token=2, silence=2, total=5)


@dataclass
class RefLess:
    """Answers each create after the next of *delays* (None: never), without the ref."""

    delays: Iterator[float | None]
    creates: list[str] = field(default_factory=list)  # the prompts of the creates received
    deleted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sio: socketio.AsyncServer = field(default_factory=lambda: socketio.AsyncServer(async_mode="aiohttp"))

    async def create(self, sid: str, data: dict[str, str]) -> None:
        with self.lock:
            self.creates.append(data["prompt"])
            delay = next(self.delays)
        if delay is None:
            return
        await asyncio.sleep(delay)
        cid = uuid.uuid4().hex[:8]
        server = self.sio
        if not server.manager.is_connected(sid, "/"):
            return  # the client started over on a new connection meanwhile
        await server.enter_room(sid, f"c:{cid}")
        await server.emit("loadConversation", {"id": cid}, to=sid)  # no ref
        await server.emit("tokenDelta", {"c": cid, "content": "answer to " + data["prompt"]}, room=f"c:{cid}")
        await server.emit("streamEnd", {"c": cid}, room=f"c:{cid}")

    async def delete(self, sid: str, data: dict[str, str]) -> None:
        with self.lock:
            self.deleted.append(data["c"])



@pytest.fixture
def served(provider_loop: ProviderLoop, request: pytest.FixtureRequest) -> Iterator[tuple[MultiplexProvider, RefLess]]:
    service = RefLess(iter(request.param))
    app = web.Application()
    service.sio.attach(app)
    service.sio.on("newConversation", service.create)
    service.sio.on("deleteConversation", service.delete)
    server = AiohttpServer(app)
    url = server.start()
    provider = MultiplexProvider(ProviderProfile(name="refless", kind="socketio", url=url, models=("m",)),
                                 provider_loop, connect_timeout=3)
    provider.start()
    yield provider, service
    provider.close()
    server.stop()


def answer(turn: Turn) -> list[ProviderEvent]:
    return [e for e in turn.events(tick=0.1) if e is not None]


def pending(provider: MultiplexProvider, loop: ProviderLoop) -> int:
    return loop.run(asyncio.sleep(0, result=len(provider._creating)), 2)


@pytest.mark.parametrize("served", [itertools.chain([0.6], itertools.repeat(0.05))], indirect=True)
def test_a_create_whose_agent_went_away_holds_up_no_later_create(
        served: tuple[MultiplexProvider, RefLess], provider_loop: ProviderLoop) -> None:
    provider, service = served
    first = provider.send(None, "m", "A", QUICK)
    while not service.creates:
        time.sleep(0.01)
    first.cancel()  # the agent went away before the service answered A's create
    for prompt in ("B", "C"):
        got = answer(provider.send(None, "m", prompt, QUICK))
        assert isinstance(got[0], Created) and got[-1] == Done(f"answer to {prompt}"), got
        assert "".join(e.text for e in got if isinstance(e, Delta)) == f"answer to {prompt}"
    assert service.creates == ["A", "B", "C"]
    assert len(service.deleted) == 1  # A's conversation, which nobody will use, was deleted again
    assert pending(provider, provider_loop) == 0


@pytest.mark.parametrize("served", [itertools.chain([0.3], itertools.repeat(0.05))], indirect=True)
def test_concurrent_creates_wait_for_the_one_pending(served: tuple[MultiplexProvider, RefLess]) -> None:
    provider, _ = served
    results: dict[str, list[ProviderEvent]] = {}

    def run(prompt: str) -> None:
        results[prompt] = answer(provider.send(None, "m", prompt, QUICK))

    threads = [threading.Thread(target=run, args=(p,)) for p in "DEFG"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for prompt, got in results.items():
        assert got[-1] == Done(f"answer to {prompt}"), got  # each its own answer, none mixed up
    assert sorted(results) == list("DEFG")


@pytest.mark.parametrize("served", [itertools.chain([None], itertools.repeat(0.05))], indirect=True)
def test_a_create_the_service_never_answers_is_given_up(
        served: tuple[MultiplexProvider, RefLess], provider_loop: ProviderLoop) -> None:
    provider, service = served
    with pytest.raises(ProviderTimeout):
        answer(provider.send(None, "m", "never", QUICK))
    got = answer(provider.send(None, "m", "next", QUICK))
    assert got[-1] == Done("answer to next") and service.creates == ["never", "next"]
    assert pending(provider, provider_loop) == 0


@pytest.mark.parametrize("served", [itertools.chain([2.5, 1.0], itertools.repeat(0.05))], indirect=True)
def test_a_late_answer_to_a_given_up_create_is_never_taken_for_the_next_one(
        served: tuple[MultiplexProvider, RefLess]) -> None:
    """A's create is answered after its deadline; without a ref that answer would match B, the
    create pending then, and B's agent would get A's conversation and reply. The connection
    starts over when A is given up, so A's answer cannot arrive."""
    provider, service = served
    with pytest.raises(ProviderTimeout):
        answer(provider.send(None, "m", "A", QUICK))
    got = answer(provider.send(None, "m", "B", QUICK))
    assert got[-1] == Done("answer to B"), got
    assert service.creates == ["A", "B"]


@pytest.mark.parametrize("served", [itertools.repeat(0.05)], indirect=True)
def test_an_answered_create_leaves_nothing_that_keeps_its_turn(
        served: tuple[MultiplexProvider, RefLess], provider_loop: ProviderLoop) -> None:
    """The timer that would give a create up is cancelled once it is answered: left to run to
    the deadline, it kept the turn, its prompt and its frames alive (about 100 KiB a turn of a
    40 KB request, measured by bench/bench_startup.py)."""
    provider, _ = served
    turn = provider.send(None, "m", "kept?", QUICK)
    assert answer(turn)[-1] == Done("answer to kept?")
    gone = weakref.ref(turn)
    del turn
    provider_loop.run(asyncio.sleep(0), 2)  # the loop has run what the answer scheduled
    gc.collect()
    assert gone() is None
