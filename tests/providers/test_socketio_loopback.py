"""MultiplexProvider (real socketio.AsyncClient) against the demo chat service on loopback."""

from __future__ import annotations

import random
import string
import threading
import time
from collections.abc import Callable

import pytest

from roogab.config import SocketIOEvents, demo_profile
from roogab.demo import DemoChatService, ScriptedReply
from roogab.demo.markup import markdown_to_html
from roogab.errors import (
    ConversationGone,
    ProviderDisconnected,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from roogab.providers.base import Created, Deadlines, Delta, Done, ProviderEvent, Snapshot, Turn
from roogab.providers.loop import ProviderLoop
from roogab.providers.socketio_impl import MultiplexProvider, Reconnection

pytestmark = pytest.mark.loopback

QUICK = Deadlines(first_token=5, silence=5, total=20)
FAST_RECONNECT = Reconnection(attempts=3, delay=0.05, delay_max=0.2, jitter=0.02)


def events(turn: Turn) -> list[ProviderEvent]:
    return [e for e in turn.events(tick=0.1) if e is not None]


def create(provider: MultiplexProvider, text: str = "hi", model: str = "gab-1") -> tuple[str, list[ProviderEvent]]:
    got = events(provider.send(None, model, text, QUICK))
    assert isinstance(got[0], Created)
    return got[0].handle, got[1:]


def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll *condition* until it holds (the server logs events on its own thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def deltas(got: list[ProviderEvent]) -> str:
    return "".join(e.text for e in got if isinstance(e, Delta))


def test_create_streams_deltas_then_done(provider: MultiplexProvider, demo: DemoChatService) -> None:
    demo.push(ScriptedReply("Hello, loopback world!", chunk=5))
    handle, got = create(provider, "first prompt", "gab-2")
    assert [e.text for e in got if isinstance(e, Delta)] == ["Hello", ", loo", "pback", " worl", "d!"]
    assert got[-1] == Done("Hello, loopback world!")
    creates = [r for r in demo.received if r.event == "newConversation"]
    assert [(r.conversation, r.prompt, r.model) for r in creates] == [(handle, "first prompt", "gab-2")]
    assert eventually(lambda: any(r.event == "subscribe" and r.conversation == handle for r in demo.received))


def test_continue_sends_to_the_same_conversation(provider: MultiplexProvider, demo: DemoChatService) -> None:
    demo.push(ScriptedReply("one"), ScriptedReply("two"))
    handle, _ = create(provider)
    got = events(provider.send(handle, "gab-1", "second prompt", QUICK))
    assert deltas(got) == "two" and got[-1] == Done("two")
    assert [(r.conversation, r.prompt) for r in demo.received if r.event == "sendPrompt"] == \
        [(handle, "second prompt")]


def test_cumulative_snapshots(provider: MultiplexProvider, demo: DemoChatService) -> None:
    demo.push(ScriptedReply("abcdefghij", stream="cumulative", chunk=4))
    _, got = create(provider)
    assert [e.text for e in got if isinstance(e, Snapshot)] == ["abcd", "abcdefgh", "abcdefghij"]
    assert got[-1] == Done("abcdefghij")


def test_cumulative_html_is_rerendered_each_time(provider: MultiplexProvider, demo: DemoChatService) -> None:
    reply = 'Here:\n\n```lua\nreturn { text = [==[a < b & "c"]==] }\n```\n'
    demo.push(ScriptedReply(reply, format="html", stream="cumulative", chunk=16))
    _, got = create(provider)
    snaps = [e.text for e in got if isinstance(e, Snapshot)]
    assert len(snaps) == -(-len(reply) // 16)
    # each snapshot is the whole reply so far rendered again (markdown-it with Pygments, as a page does)
    assert snaps == [markdown_to_html(reply[:n]) for n in range(16, len(reply) + 16, 16)]
    assert snaps[-1].startswith('<p>Here:</p>\n<pre><code class="language-lua">')
    assert "[==[a &lt; b &amp; " in snaps[-1] and "a < b" not in snaps[-1]
    assert got[-1] == Done(snaps[-1])


def test_five_thousand_fast_tokens_arrive_complete_and_in_order(
        provider: MultiplexProvider, demo: DemoChatService) -> None:
    text = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=5000))
    demo.push(ScriptedReply(text, chunk=1, delay_ms=0))
    _, got = create(provider)  # how long it takes is bench_load's business, not a test's
    assert sum(isinstance(e, Delta) for e in got) == 5000
    assert deltas(got) == text and got[-1] == Done(text)


def test_interleaved_conversations_never_mix(provider: MultiplexProvider, demo: DemoChatService) -> None:
    handles = [create(provider, f"setup {i}")[0] for i in range(3)]
    texts = {h: f"<{i}>" + str(i) * 60 + f"</{i}>" for i, h in enumerate(handles)}
    # One scripted reply per prompt, in arrival order: map each prompt to its reply.
    results: dict[str, list[ProviderEvent]] = {}
    stamps: dict[str, list[float]] = {}
    for h in handles:
        demo.push(ScriptedReply(texts[h], chunk=3, delay_ms=2))
    order: list[str] = []
    lock = threading.Lock()

    def run(h: str) -> None:
        with lock:
            order.append(h)
            turn = provider.send(h, "gab-1", f"go {h}", QUICK)
        got, times = [], []
        for e in turn.events(tick=0.1):
            if e is not None:
                got.append(e)
                times.append(time.perf_counter())
        results[h], stamps[h] = got, times

    threads = [threading.Thread(target=run, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    expected = {h: texts[handles[i]] for i, h in enumerate(order)}  # replies go out in arrival order
    for h in handles:
        assert deltas(results[h]) == expected[h]
        assert results[h][-1] == Done(expected[h])
    first, second = stamps[order[0]], stamps[order[1]]
    assert second[0] < first[-1], "the replies did not interleave on the socket"


def test_concurrent_creates_are_matched_by_ref(provider: MultiplexProvider) -> None:
    results: dict[int, list[ProviderEvent]] = {}

    def run(i: int) -> None:
        results[i] = events(provider.send(None, "gab-1", f"request number {i}", QUICK))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    handles = set()
    for i, got in results.items():
        assert isinstance(got[0], Created)
        handles.add(got[0].handle)
        assert f"You asked: request number {i}]" in deltas(got)
    assert len(handles) == 8


def test_unknown_handle_is_conversation_gone(provider: MultiplexProvider) -> None:
    with pytest.raises(ConversationGone, match="no longer knows"):
        events(provider.send("deadbeef", "gab-1", "hello?", QUICK))


def test_service_restart_forgets_conversations(provider: MultiplexProvider, demo: DemoChatService) -> None:
    handle, _ = create(provider)
    demo.reset(conversations=True)
    with pytest.raises(ConversationGone):
        events(provider.send(handle, "gab-1", "still there?", QUICK))


def test_forget_deletes_the_conversation(provider: MultiplexProvider, demo: DemoChatService) -> None:
    handle, _ = create(provider)
    provider.forget(handle)
    with pytest.raises(ConversationGone):
        events(provider.send(handle, "gab-1", "after delete", QUICK))
    assert eventually(lambda: any(r.event == "deleteConversation" and r.conversation == handle
                                  for r in demo.received))


def test_scripted_error_is_rejected(provider: MultiplexProvider, demo: DemoChatService) -> None:
    demo.push(ScriptedReply(error="rate limit reached", code="rate_limited"))
    with pytest.raises(ProviderRejected, match="rate_limited.*rate limit reached"):
        create(provider)


def test_unknown_model_is_rejected(provider: MultiplexProvider) -> None:
    with pytest.raises(ProviderRejected, match="unknown_model"):
        create(provider, model="gab-9")


def test_drop_mid_reply_then_next_turn_after_reconnect(
        provider: MultiplexProvider, demo: DemoChatService) -> None:
    handle, _ = create(provider)
    demo.push(ScriptedReply("abcdefghijklmnop", chunk=4, drop_after=2), ScriptedReply("recovered"))
    with pytest.raises(ProviderDisconnected, match="dropped in the middle of a reply") as caught:
        events(provider.send(handle, "gab-1", "will be cut", QUICK))
    assert "abcdefgh".startswith(caught.value.partial)
    got = events(provider.send(handle, "gab-1", "again", QUICK))  # waits for the reconnection
    assert got[-1] == Done("recovered")
    received = demo.received
    reconnect = max(i for i, r in enumerate(received) if r.event == "connect")
    assert reconnect > 0
    resubscribed = [r for r in received[reconnect:] if r.event == "subscribe" and r.conversation == handle]
    sent = [r for r in received[reconnect:] if r.event == "sendPrompt"]
    assert resubscribed and resubscribed[0].time <= sent[0].time
    assert provider.health().connected


def test_silent_service_times_out_and_the_conversation_still_works(
        provider: MultiplexProvider, demo: DemoChatService) -> None:
    handle, _ = create(provider)
    demo.push(ScriptedReply(silent=True), ScriptedReply("back"))
    turn = provider.send(handle, "gab-1", "anyone?", Deadlines(first_token=0.3, silence=0.3, total=1))
    with pytest.raises(ProviderTimeout, match="no reply within 0.3 s"):
        events(turn)
    turn.cancel()
    assert events(provider.send(handle, "gab-1", "again", QUICK))[-1] == Done("back")


def test_cancel_stops_routing_and_the_rest_drains(provider: MultiplexProvider, demo: DemoChatService) -> None:
    handle, _ = create(provider)
    demo.push(ScriptedReply("x" * 40, chunk=2, delay_ms=5), ScriptedReply("fresh reply"))
    turn = provider.send(handle, "gab-1", "long one", QUICK)
    for e in turn.events(tick=0.1):
        if isinstance(e, Delta):
            break
    turn.cancel()
    assert [e for e in turn.events(tick=0.1) if isinstance(e, (Delta, Done))] == []
    got = events(provider.send(handle, "gab-1", "next", QUICK))
    assert deltas(got) == "fresh reply"


def test_a_turn_cancelled_while_the_last_reply_drains_sends_nothing(
        provider: MultiplexProvider, demo: DemoChatService) -> None:
    handle, _ = create(provider)
    demo.push(ScriptedReply("x" * 200, chunk=2, delay_ms=20), ScriptedReply("fresh reply"))  # 2 s of reply
    first = provider.send(handle, "gab-1", "long one", QUICK)
    for e in first.events(tick=0.1):
        if isinstance(e, Delta):
            break
    first.cancel()  # its reply drains: the next turn waits for its end
    waiting = provider.send(handle, "gab-1", "never sent", QUICK)
    time.sleep(0.3)  # into that wait (were it still starting, it would stop before it, and pass too)
    waiting.cancel()  # the agent went away while it waited
    assert eventually(lambda: any(r.prompt == "long one" for r in demo.received))
    got = events(provider.send(handle, "gab-1", "next", QUICK))
    assert deltas(got) == "fresh reply"
    assert not [r for r in demo.received if r.prompt == "never sent"]


def test_health_follows_the_connection(provider: MultiplexProvider) -> None:
    health = provider.health()
    assert health.ready and health.connected
    provider.close()
    assert not provider.health().connected
    with pytest.raises(ProviderUnavailable):
        create(provider)  # closed: no reconnect on demand


def test_models_come_from_the_profile(provider: MultiplexProvider) -> None:
    assert [m.id for m in provider.models()] == ["gab-1", "gab-2"]
    assert provider.name == "demo"


def test_start_against_a_stopped_server_is_unavailable(provider_loop: ProviderLoop) -> None:
    service = DemoChatService()
    url = service.start()
    service.stop()
    p = MultiplexProvider(demo_profile(url), provider_loop, connect_timeout=1.0,
                          headers={"Cookie": "session=TOPSECRET"})
    with pytest.raises(ProviderUnavailable, match="cannot connect to http://127.0.0.1") as caught:
        p.start()
    assert "TOPSECRET" not in str(caught.value)
    assert not p.health().ready and p.health().last_error
    p.close()


def test_server_stopped_mid_session_fails_the_next_send(provider_loop: ProviderLoop) -> None:
    service = DemoChatService()
    service.start()
    p = MultiplexProvider(demo_profile(service.url), provider_loop, connect_timeout=1.0,
                          reconnection=FAST_RECONNECT)
    try:
        p.start()
        handle, _ = create(p)
        service.stop()
        assert eventually(lambda: not p.health().connected)
        with pytest.raises(ProviderUnavailable):
            events(p.send(handle, "gab-1", "anyone?", QUICK))
        assert not p.health().connected
    finally:
        p.close()
        service.stop()


def test_custom_event_names(provider_loop: ProviderLoop) -> None:
    names = SocketIOEvents(socketio_path="chat/io", create="open", created="opened", send="say",
                           delta="piece", end="over", conversation_field="conv", content_field="text")
    with DemoChatService(events=names) as service:
        profile = demo_profile(service.url)
        p = MultiplexProvider(type(profile)(name="custom", url=service.url, events=names), provider_loop,
                              reconnection=FAST_RECONNECT)
        try:
            p.start()
            service.push(ScriptedReply("renamed"))
            handle, got = create(p)
            assert deltas(got) == "renamed"
            assert [r.event for r in service.received if r.conversation == handle][:1] == ["open"]
        finally:
            p.close()


def test_reconnects_on_demand_after_python_socketio_gave_up(provider_loop: ProviderLoop) -> None:
    service = DemoChatService()
    service.start()
    p = MultiplexProvider(demo_profile(service.url), provider_loop, connect_timeout=1.0,
                          reconnection=FAST_RECONNECT)
    try:
        p.start()
        service.stop()
        assert eventually(lambda: (p.health().last_error or "").startswith("connect failed"))
        time.sleep(0.5)  # past the three quick attempts
        with DemoChatService(port=service.port) as restarted:
            restarted.push(ScriptedReply("back online"))
            _, got = create(p)
            assert deltas(got) == "back online"
    finally:
        p.close()


def test_packets_are_decoded_with_the_kept_decoder(provider: MultiplexProvider, demo: DemoChatService) -> None:
    """python-socketio's documented ``json=`` option reached both libraries' packet classes, and
    a reply decoded through it arrives whole."""
    import engineio.packet
    import socketio.packet

    from roogab.providers.socketio_session import PacketJson

    demo.push(ScriptedReply("Decoded once, kept decoder.", chunk=4))
    _, got = create(provider, "json please")
    assert deltas(got) == "Decoded once, kept decoder."
    assert isinstance(socketio.packet.Packet.json, PacketJson)
    assert isinstance(engineio.packet.Packet.json, PacketJson)
