"""Big prompts and pacing in the turn engine, over a FakeProvider: parts the model acknowledges
(the acknowledgements never reach the agent), a budget that refuses before sending, turn slots
that queue, and the interval between messages (on a test clock, never the wall clock)."""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import CLINE, captured_bodies

from roogab.delivery import Outbox, Policy
from roogab.errors import PromptTooLarge
from roogab.outputs import Finished, Out, Ping, TextOut
from roogab.pacing import Pacer
from roogab.prompt import PromptBook
from roogab.providers.base import Created, Deadlines, Delta, Done, Turn
from roogab.providers.fake import FakeProvider, SentPrompt
from roogab.registry import Registry
from roogab.service import ChatService, TurnSettings
from roogab.wire import ChatRequest, parse_chat_request

BOOK = PromptBook.load()
ANSWER = '```lua\nreturn { text = [==[The whole answer.]==] }\n```'
HEADER = re.compile(r"\A\[Part (\d+) of (\d+)[^\n]*\]\n\n", re.DOTALL)


def _service(fake: FakeProvider, policy: Policy | None = None) -> ChatService:
    return ChatService({"fake": fake}, Registry(), BOOK, TurnSettings(tick=0.01),
                       outbox=Outbox(BOOK, {"fake": policy or Policy()}))


def _request(turn: int = 0) -> ChatRequest:
    body = captured_bodies(CLINE)[turn]
    body["model"] = "fake/model"
    return parse_chat_request(body)


def _next(turn: int, reply: str) -> ChatRequest:
    """The captured request *turn*, answered with *reply*, and one more user message."""
    body = captured_bodies(CLINE)[turn]
    body["model"] = "fake/model"
    body["messages"] += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And now?"}]
    return parse_chat_request(body)


def _text(items: list[Out]) -> str:
    return "".join(i.text for i in items if isinstance(i, TextOut))


def _bodies(texts: list[str]) -> tuple[list[tuple[int, int]], str]:
    numbers, bodies = [], []
    for text in texts:
        match = HEADER.match(text)
        assert match is not None, text[:200]
        numbers.append((int(match.group(1)), int(match.group(2))))
        bodies.append(text[match.end():])
    return numbers, "".join(bodies)


def test_a_long_prompt_goes_in_numbered_parts_and_only_the_answer_reaches_the_agent() -> None:
    request = _request()
    whole = BOOK.first_turn(request, (), request.messages)
    limit = len(whole) // 4
    fake = FakeProvider(["OK, part 1 received."] * 4 + [ANSWER], chunk=7, max_message_chars=limit)
    items = list(_service(fake).run(request, "addr:t"))
    assert _text(items) == "The whole answer."
    assert isinstance(items[-1], Finished)
    numbers, rejoined = _bodies([s.text for s in fake.sent])
    total = len(fake.sent)
    assert total >= 5 and numbers == [(i, total) for i in range(1, total + 1)]
    assert rejoined == whole
    assert all(len(s.text) <= limit for s in fake.sent)
    assert fake.sent[0].handle is None and {s.handle for s in fake.sent[1:]} == {"fake-1"}
    assert "last one" in fake.sent[-1].text and "Do not answer yet" in fake.sent[0].text


def test_the_next_turn_continues_the_conversation_the_parts_created() -> None:
    first, second = _request(0), _next(0, "The whole answer.")
    whole = BOOK.first_turn(first, (), first.messages)
    fake = FakeProvider(["OK"] * 2 + [ANSWER, ANSWER], max_message_chars=len(whole) // 2 + 200)
    service = _service(fake)
    list(service.run(first, "addr:t"))
    sent = len(fake.sent)
    assert sent >= 2
    list(service.run(second, "addr:t"))
    assert len(fake.sent) == sent + 1 and fake.sent[-1].handle == "fake-1"
    assert not fake.sent[-1].text.startswith("[Part")


def test_a_prompt_over_the_budget_fails_before_anything_is_sent() -> None:
    request = _request()
    whole = BOOK.first_turn(request, (), request.messages)
    fake = FakeProvider([ANSWER], max_message_chars=len(whole) // 3)
    with pytest.raises(PromptTooLarge) as caught:
        list(_service(fake, Policy(max_parts=2)).run(request, "addr:t"))
    assert fake.sent == []
    message = str(caught.value)
    assert f"{len(whole):,} characters" in message and "2 parts" in message
    assert f"{len(whole) // 3:,}" in message
    assert caught.value.status == 400 and caught.value.code == "context_length_exceeded"


def test_a_refused_continuation_keeps_its_conversation() -> None:
    first = _request(0)
    fake = FakeProvider([ANSWER, ANSWER])
    service = _service(fake, Policy(max_parts=1))
    list(service.run(first, "addr:t"))
    fake.max_message_chars = 50  # the next prompt no longer fits
    with pytest.raises(PromptTooLarge):
        list(service.run(_next(0, "The whole answer."), "addr:t"))
    fake.max_message_chars = 0
    list(service.run(_next(0, "The whole answer."), "addr:t"))
    assert [s.handle for s in fake.sent] == [None, "fake-1"]


@given(text=st.text(min_size=0, max_size=400), limit=st.integers(min_value=0, max_value=300))
def test_split_parts_fit_and_rejoin(text: str, limit: int) -> None:
    parts = BOOK.split(text, limit)
    if len(parts) == 1 and (limit <= 0 or len(text) <= limit):
        assert parts == [text]
        return
    numbers, rejoined = _bodies(parts)
    assert rejoined == text
    assert numbers == [(i, len(parts)) for i in range(1, len(parts) + 1)]
    if limit > len(BOOK.fill("part", index=999, total=999, body="")):
        assert all(len(p) <= limit for p in parts)


def test_turns_over_the_limit_wait_in_line_and_healthz_state_counts_them() -> None:
    pacer = Pacer(max_concurrent=1)
    first = pacer.admit(0.01)
    assert list(first) == []  # admitted at once
    entered = threading.Event()
    waited = threading.Event()

    def second() -> None:
        for _ in pacer.admit(0.01):
            waited.set()
        entered.set()

    worker = threading.Thread(target=second)
    worker.start()
    assert waited.wait(10)
    assert pacer.state().running == 1 and pacer.state().queued == 1 and not entered.is_set()
    pacer.leave()
    assert entered.wait(10)
    worker.join(10)
    assert pacer.state().running == 1 and pacer.state().queued == 0


def test_a_turn_that_gives_up_its_place_leaves_the_queue() -> None:
    pacer = Pacer(max_concurrent=1)
    list(pacer.admit(0.01))
    waiting = pacer.admit(0.01)
    assert next(waiting) is None and pacer.state().queued == 1
    waiting.close()
    assert pacer.state().queued == 0
    pacer.leave()
    assert list(pacer.admit(0.01)) == [] and pacer.state().running == 1


def test_messages_are_spaced_by_min_interval_on_the_pacers_clock() -> None:
    now = [100.0]
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    pacer = Pacer(min_interval=5.0, clock=lambda: now[0])
    assert list(pacer.space(1.0, wait)) == []
    assert list(pacer.space(1.0, wait)) == [None] * 5
    assert now[0] == pytest.approx(105.0) and sum(waits) == pytest.approx(5.0)
    now[0] += 7.0
    assert list(pacer.space(1.0, wait)) == []


class _HeldProvider(FakeProvider):
    """A fake whose turns stay open until the test releases them."""

    def __init__(self) -> None:
        super().__init__()
        self.turns: list[Turn] = []
        self.arrived = threading.Semaphore(0)

    def send(self, handle: str | None, model: str, text: str, deadlines: Deadlines) -> Turn:
        self.sent.append(SentPrompt(handle, model, text))
        turn = Turn(self.name, deadlines)
        self.turns.append(turn)
        self.arrived.release()
        return turn


def test_a_second_turn_is_queued_not_refused_and_pings_while_it_waits() -> None:
    held = _HeldProvider()
    service = _service(held, Policy(max_concurrent_turns=1))
    results: dict[str, list[Out]] = {}
    pinged = threading.Event()

    def run(name: str, request: ChatRequest) -> None:
        out: list[Out] = []
        for item in service.run(request, f"addr:{name}"):
            out.append(item)
            if name == "b" and isinstance(item, Ping):
                pinged.set()
        results[name] = out

    a = threading.Thread(target=run, args=("a", _request(0)))
    a.start()
    assert held.arrived.acquire(timeout=10)
    b = threading.Thread(target=run, args=("b", _request(0)))
    b.start()
    assert pinged.wait(10)
    state = service.outbox.pacer("fake").state()
    assert (state.running, state.queued, len(held.sent)) == (1, 1, 1)
    held.turns[0].put(Created("h-a"))
    held.turns[0].put(Delta(ANSWER))
    held.turns[0].put(Done(ANSWER))
    assert held.arrived.acquire(timeout=10)
    held.turns[1].put(Created("h-b"))
    held.turns[1].put(Done(ANSWER))
    a.join(10)
    b.join(10)
    assert _text(results["a"]) == _text(results["b"]) == "The whole answer."
    assert service.outbox.pacer("fake").state().running == 0
