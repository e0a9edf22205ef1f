"""ChainlitProvider against a real Chainlit server (tests/fixtures/chainlit_app) on loopback.

The app has two chat profiles and password login; its scripted assistant streams a reply
envelope naming the chat profile, the number of user messages the session has seen and the
prompt. Skipped when chainlit is not installed.
"""

from __future__ import annotations

import importlib.util
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

# Like pytest.importorskip, without importing chainlit here: its import writes .chainlit/ into the cwd.
if importlib.util.find_spec("chainlit") is None:
    pytest.skip("chainlit is not installed", allow_module_level=True)

from chainlit_server import PASSWORD, ChainlitServer, free_port, new_server

from roogab.config import ProviderProfile
from roogab.errors import (
    ConfigError,
    ConversationGone,
    ProviderDisconnected,
    ProviderRejected,
    ProviderUnavailable,
)
from roogab.providers.base import Created, Deadlines, Delta, Done, ProviderEvent, Snapshot, Turn
from roogab.providers.chainlit_impl import ChainlitProvider
from roogab.providers.login import Retry
from roogab.providers.loop import ProviderLoop
from roogab.providers.socketio_impl import Reconnection

pytestmark = pytest.mark.loopback

QUICK = Deadlines(first_token=10, silence=10, total=30)
FAST_RECONNECT = Reconnection(attempts=3, delay=0.05, delay_max=0.2, jitter=0.02)
FAST_RETRY = Retry(attempts=2, first=0.05, cap=0.1, max_time=2.0)
REPLY = re.compile(r"profile=(?P<profile>.*?); messages=(?P<messages>\d+); prompt=(?P<prompt>.*?)\]==\]")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainlitServer]:
    s = new_server(tmp_path_factory.mktemp("chainlit"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ChainlitServer]:
    """A server of the test's own, to kill and restart."""
    s = new_server(tmp_path)
    s.start()
    yield s
    s.kill()


@pytest.fixture
def loop() -> Iterator[ProviderLoop]:
    lp = ProviderLoop()
    lp.start()
    yield lp
    lp.stop()


def profile_for(server: ChainlitServer, **changes: object) -> ProviderProfile:
    base = ProviderProfile(name="team", kind="chainlit", url=server.url, models=(), username="alice",
                           password=PASSWORD)
    return replace(base, **changes)  # type: ignore[arg-type]


def make(server: ChainlitServer, loop: ProviderLoop, **changes: object) -> ChainlitProvider:
    return ChainlitProvider(profile_for(server, **changes), loop, connect_timeout=5.0,
                            reconnection=FAST_RECONNECT, retry=FAST_RETRY)


@pytest.fixture
def provider(server: ChainlitServer, loop: ProviderLoop) -> Iterator[ChainlitProvider]:
    p = make(server, loop)
    p.start()
    yield p
    p.close()


def events(turn: Turn) -> list[ProviderEvent]:
    return [e for e in turn.events(tick=0.1) if e is not None]


def streamed(got: list[ProviderEvent]) -> str:
    text = ""
    for e in got:
        if isinstance(e, Delta):
            text += e.text
        elif isinstance(e, Snapshot):
            text = e.text
    return text


def final(got: list[ProviderEvent]) -> str:
    assert isinstance(got[-1], Done) and got[-1].text is not None
    return got[-1].text


def facts(text: str) -> dict[str, str]:
    match = REPLY.search(text)
    assert match is not None, text
    return match.groupdict()


def create(provider: ChainlitProvider, text: str = "hello", model: str = "Fast Lane") -> tuple[str, list[ProviderEvent]]:
    got = events(provider.send(None, model, text, QUICK))
    assert isinstance(got[0], Created)
    return got[0].handle, got[1:]


def first_delta(turn: Turn) -> Iterator[ProviderEvent | None]:
    """The turn's event iterator, advanced to its first Delta."""
    it = turn.events(tick=0.1)
    for event in it:
        if isinstance(event, Delta):
            return it
    raise AssertionError("no delta")


def test_start_logs_in_and_discovers_the_chat_profiles(provider: ChainlitProvider, server: ChainlitServer) -> None:
    assert [m.id for m in provider.models()] == ["Fast Lane", "Deep Thought"]
    health = provider.health()
    assert health.ready and health.connected and health.logged_in is True


def test_a_turn_streams_deltas_and_reconciles(provider: ChainlitProvider) -> None:
    handle, got = create(provider, "hello there")
    deltas = [e for e in got if isinstance(e, Delta)]
    assert len(deltas) > 5 and not any(isinstance(e, Snapshot) for e in got)
    assert streamed(got) == final(got)
    assert final(got).startswith("```lua\nreturn { text = [==[") and final(got).endswith("]==] }\n```\n")
    assert facts(final(got)) == {"profile": "Fast Lane", "messages": "1", "prompt": "hello there"}
    assert len(handle) == 36


def test_a_second_turn_stays_in_the_same_session(provider: ChainlitProvider) -> None:
    handle, _ = create(provider, "one")
    got = events(provider.send(handle, "Fast Lane", "two", QUICK))
    assert not any(isinstance(e, Created) for e in got)
    assert facts(final(got)) == {"profile": "Fast Lane", "messages": "2", "prompt": "two"}


@pytest.mark.parametrize("model", ["Fast Lane", "Deep Thought"])
def test_each_chat_profile_is_reached(provider: ChainlitProvider, model: str) -> None:
    _, got = create(provider, "which profile?", model)
    assert facts(final(got))["profile"] == model


def test_sessions_are_separate(provider: ChainlitProvider) -> None:
    a, _ = create(provider, "a1")
    b, _ = create(provider, "b1", "Deep Thought")
    got_a = events(provider.send(a, "Fast Lane", "a2", QUICK))
    got_b = events(provider.send(b, "Deep Thought", "b2", QUICK))
    assert a != b
    assert facts(final(got_a)) == {"profile": "Fast Lane", "messages": "2", "prompt": "a2"}
    assert facts(final(got_b)) == {"profile": "Deep Thought", "messages": "2", "prompt": "b2"}


def test_sequence_tokens_become_deltas_when_they_extend(provider: ChainlitProvider) -> None:
    _, got = create(provider, "sequence please")
    assert streamed(got) == final(got)
    assert facts(final(got))["prompt"] == "sequence please"


def test_an_error_step_is_a_rejection(provider: ChainlitProvider) -> None:
    with pytest.raises(ProviderRejected, match="the app reported an error: scripted failure"):
        create(provider, "fail now")


def test_cancel_stops_the_reply_and_the_session_goes_on(provider: ChainlitProvider) -> None:
    handle, _ = create(provider, "one")
    turn = provider.send(handle, "Fast Lane", "slow two", QUICK)
    first_delta(turn)
    turn.cancel()
    got = events(provider.send(handle, "Fast Lane", "three", QUICK))
    assert facts(final(got)) == {"profile": "Fast Lane", "messages": "3", "prompt": "three"}
    assert "t5 " not in final(got)


def test_a_newer_turn_supersedes_one_in_flight(provider: ChainlitProvider) -> None:
    handle, _ = create(provider, "one")
    old = provider.send(handle, "Fast Lane", "slow two", QUICK)
    rest = first_delta(old)
    got = events(provider.send(handle, "Fast Lane", "three", QUICK))
    with pytest.raises(ProviderRejected, match="superseded by a newer turn"):
        list(rest)
    assert facts(final(got)) == {"profile": "Fast Lane", "messages": "3", "prompt": "three"}


def test_forget_clears_the_session_on_the_server(provider: ChainlitProvider) -> None:
    handle, _ = create(provider, "one")
    provider.forget(handle)
    time.sleep(0.3)
    with pytest.raises(ConversationGone):
        events(provider.send(handle, "Fast Lane", "two", QUICK))


def test_a_new_provider_resumes_a_session_the_server_still_has(
        provider: ChainlitProvider, server: ChainlitServer, loop: ProviderLoop) -> None:
    handle, _ = create(provider, "one", "Deep Thought")
    provider.close()  # like a RooGab restart: the session stays on the server
    again = make(server, loop)
    again.start()
    try:
        got = events(again.send(handle, "Deep Thought", "two", QUICK))
    finally:
        again.close()
    assert facts(final(got)) == {"profile": "Deep Thought", "messages": "2", "prompt": "two"}


def test_a_wrong_password_is_a_clear_error_from_start(server: ChainlitServer, loop: ProviderLoop) -> None:
    wrong = "not-" + PASSWORD
    p = make(server, loop, password=wrong)
    with pytest.raises(ProviderRejected) as caught:
        p.start()
    message = str(caught.value)
    assert message == "login to team refused for user 'alice' (401)"
    assert wrong not in message and p.health().ready is False and p.health().logged_in is False
    p.close()


def test_no_credentials_is_a_clear_error(server: ChainlitServer, loop: ProviderLoop) -> None:
    p = make(server, loop, username="", password="")
    with pytest.raises(ProviderRejected, match="requires login"):
        p.start()
    p.close()


def test_a_cookie_file_logs_in(server: ChainlitServer, loop: ProviderLoop, tmp_path: Path) -> None:
    token = login_cookie(server)
    cookie_file = tmp_path / "cookies.txt"
    cookie_file.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\taccess_token\t{token}\n")
    p = make(server, loop, username="", password="", cookie_file=cookie_file)
    p.start()
    try:
        _, got = create(p, "with cookies", "Deep Thought")
    finally:
        p.close()
    assert facts(final(got))["profile"] == "Deep Thought"


def test_a_refused_cookie_file_names_the_file_not_the_value(
        server: ChainlitServer, loop: ProviderLoop, tmp_path: Path) -> None:
    cookie_file = tmp_path / "stale.txt"
    cookie_file.write_text("127.0.0.1\tFALSE\t/\tFALSE\t0\taccess_token\tnot-a-valid-jwt\n")
    p = make(server, loop, username="", password="", cookie_file=cookie_file)
    with pytest.raises(ProviderRejected, match="stale.txt") as caught:
        p.start()
    assert "not-a-valid-jwt" not in str(caught.value)
    p.close()


def test_a_malformed_cookie_file_is_a_config_error(server: ChainlitServer, loop: ProviderLoop, tmp_path: Path) -> None:
    cookie_file = tmp_path / "bad.txt"
    cookie_file.write_text("127.0.0.1\tFALSE\t/\n")
    p = make(server, loop, username="", password="", cookie_file=cookie_file)
    with pytest.raises(ConfigError, match="bad.txt, line 1"):
        p.start()
    p.close()


def test_an_unreachable_app_is_unavailable(loop: ProviderLoop) -> None:
    p = ChainlitProvider(ProviderProfile(name="gone", kind="chainlit", url=f"http://127.0.0.1:{free_port()}",
                                         models=()), loop, connect_timeout=1.0, retry=FAST_RETRY)
    with pytest.raises(ProviderUnavailable, match="GET http://127.0.0.1:.*/auth/config failed"):
        p.start()
    assert p.health().connected is False
    p.close()


def test_server_killed_mid_reply_is_a_disconnect(own_server: ChainlitServer, loop: ProviderLoop) -> None:
    p = make(own_server, loop)
    p.start()
    try:
        handle, _ = create(p, "one")
        turn = p.send(handle, "Fast Lane", "slow reply", QUICK)
        rest = first_delta(turn)
        own_server.kill()
        with pytest.raises(ProviderDisconnected, match="dropped in the middle of a reply") as caught:
            for event in rest:
                assert not isinstance(event, Done), "a cut-off reply must never end as an answer"
        assert caught.value.partial.startswith("t0 ")
        assert p.health().connected is False
    finally:
        p.close()


def test_after_a_restart_the_next_continuation_is_gone(own_server: ChainlitServer, loop: ProviderLoop) -> None:
    p = make(own_server, loop)
    p.start()
    try:
        handle, _ = create(p, "one")
        own_server.kill()
        own_server.start()
        with pytest.raises(ConversationGone, match="no longer knows session"):
            events(p.send(handle, "Fast Lane", "two", QUICK))
        with pytest.raises(ConversationGone):  # and it stays gone, without asking the server again
            events(p.send(handle, "Fast Lane", "three", QUICK))
        _, got = create(p, "replayed")  # a fresh session works on the restarted server
        assert facts(final(got))["messages"] == "1"
    finally:
        p.close()


def login_cookie(server: ChainlitServer) -> str:
    body = f"username=alice&password={PASSWORD}".encode()
    with urllib.request.urlopen(urllib.request.Request(server.url + "/login", data=body, method="POST")) as r:
        header = r.headers["Set-Cookie"]
    match = re.match(r"access_token=([^;]+)", header)
    assert match is not None
    return match.group(1)
