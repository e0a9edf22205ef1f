"""Two `roogab serve` processes on one PostgreSQL database, in front of one demo chat service:
turns of one task alternate between them, an instance dies mid-turn, identical requests race.

Behind a real HAProxy and a real nginx when they are installed (`.ci/run` installs both and sets
ROOGAB_REQUIRE_HAPROXY=1 and ROOGAB_REQUIRE_NGINX=1). Without HAProxy the tests alternate between
the instances themselves and the balancer-only test is skipped; without nginx its variants are
skipped. Each test says which path it ran in its output.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import openai
import psycopg
import pytest
from cluster import Balancer, HAProxy, Instance, Nginx, get_json, roo_next_turn
from support import ROO, captured_bodies, no_keepalive

from roogab.demo import DemoChatService, ScriptedReply

pytestmark = [pytest.mark.loopback, pytest.mark.slow]

CALL = ('```lua\nreturn {{ text = [==[Step {n}.]==], tool_calls = {{\n'
        '  {{ name = "list_files", arguments = {{ path = "src{n}", recursive = false }} }} }} }}\n```')


@pytest.fixture(scope="module")
def demo_service() -> Iterator[DemoChatService]:
    with DemoChatService() as demo:
        yield demo


@pytest.fixture
def service(demo_service: DemoChatService) -> DemoChatService:
    """The demo chat service, its script and received log empty."""
    demo_service.reset()
    return demo_service


@pytest.fixture(scope="module")
def pair(pg: Any, demo_service: DemoChatService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Instance]]:
    """Instances a and b on one fresh database, both ready (the kill test, last, kills a)."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    dsn = pg.database()
    instances = [Instance(name, tmp_path, dsn, demo_service.url) for name in ("a", "b")]
    try:
        for instance in instances:
            instance.wait_ready()
        yield instances
    finally:
        for instance in instances:
            instance.stop()


def _balanced(kind: type[Balancer], pair: list[Instance], tmp_path_factory: pytest.TempPathFactory,
              ) -> Iterator[str | None]:
    """*kind* running in front of the pair: its URL; None when it is absent (CI: a failure)."""
    if not kind.available():
        if os.environ.get(f"ROOGAB_REQUIRE_{kind.name.upper()}") == "1":
            pytest.fail(f"{kind.name} is not installed")
        yield None
        return
    balancer = kind(tmp_path_factory.mktemp(kind.name), pair)
    try:
        balancer.wait_ready(len(pair))
        yield balancer.url
    finally:
        balancer.stop()


@pytest.fixture(scope="module")
def haproxy_front(pair: list[Instance], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """HAProxy's URL in front of the pair, or None (the test alternates itself)."""
    yield from _balanced(HAProxy, pair, tmp_path_factory)


@pytest.fixture(scope="module")
def nginx_front(pair: list[Instance], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """nginx's URL in front of the pair, or None (absent)."""
    yield from _balanced(Nginx, pair, tmp_path_factory)


@dataclass(frozen=True)
class Front:
    """The balancer a test runs behind: its name and URL (None: no HAProxy, the test alternates
    between the instances itself)."""

    name: str
    url: str | None


@pytest.fixture(params=["haproxy", "nginx"])
def front(request: pytest.FixtureRequest) -> Front:
    """Each test that takes it runs behind HAProxy, then behind nginx."""
    url: str | None = request.getfixturevalue(f"{request.param}_front")
    if url is None and request.param == "nginx":
        pytest.skip("nginx is not installed")
    print(f"behind a real {request.param} (round robin for requests without a session header)" if url
          else "HAProxy absent: alternating requests between the instances")
    return Front(request.param, url)


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120, http_client=no_keepalive())


def _opening(task: str) -> dict[str, Any]:
    """Roo's first request of a task of its own (the first user message names *task*)."""
    body = captured_bodies(ROO)[0]
    body.update(model="demo/gab-1", stream=False)
    first = next(m for m in body["messages"] if m["role"] == "user")
    first["content"] = [{"type": "text", "text": f"<task>{task}</task>"}, *first["content"]] \
        if isinstance(first["content"], list) else f"<task>{task}</task>\n{first['content']}"
    body.pop("stream_options", None)
    return body


def _ask(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[Any, dict[str, str]]:
    with _client(url) as client:
        raw = client.chat.completions.with_raw_response.create(**body, extra_headers=headers or {})
        return raw.parse().choices[0].message, {k.lower(): v for k, v in raw.headers.items()}


def _prompts(service: DemoChatService) -> list[tuple[str, str | None, str]]:
    return [(r.event, r.conversation, r.prompt) for r in service.received if r.prompt is not None]


def test_healthz_names_the_instance_and_the_store(pair: list[Instance]) -> None:
    for instance in pair:
        status, body = get_json(instance.url + "/healthz")
        assert status == 200
        assert body["instance"] == instance.name
        assert body["store"] == {"kind": "postgres", "ok": True, "last_error": None}


def test_roo_task_alternating_between_instances_keeps_one_provider_conversation(
        pair: list[Instance], front: Front, service: DemoChatService) -> None:
    turns, task = 4, f"alternating-{front.name}"
    service.push(*[ScriptedReply(CALL.format(n=n)) for n in range(turns)])
    body, served = _opening(task), []
    for n in range(turns):
        url = front.url or pair[n % 2].url
        message, headers = _ask(url, body)
        served.append(headers["x-roogab-instance"])
        assert headers["x-roogab-affinity"]  # the opening's digest: Roo sends no session header
        assert message.content == f"Step {n}."
        body = roo_next_turn(body, message, n)
    assert served == ["a", "b", "a", "b"] or served == ["b", "a", "b", "a"]
    prompts = _prompts(service)
    assert len(prompts) == turns  # the chat service got each turn once
    assert [e for e, _, _ in prompts] == ["newConversation"] + ["sendPrompt"] * (turns - 1)
    conversations = {c for e, c, _ in prompts if e == "sendPrompt"}
    assert len(conversations) == 1  # one provider conversation throughout
    for n in range(1, turns):
        assert sum(f"listing {n - 1}:" in p for _, _, p in prompts) == 1
        assert f"listing {n - 1}:" in prompts[n][2]
    # Either instance's inspector shows every turn of the shared log (the other instance's
    # writer logs its turns in the background: wait for them).
    for instance in pair:
        url = instance.url + f"/inspect/turns.json?limit=50&q={task}"
        _wait_until(lambda url=url: len(get_json(url)[1]["data"]) == turns)


@pytest.mark.parametrize(("header", "client"), [("x-session-affinity", "kilo"),
                                                ("X-Claude-Code-Session-Id", "claude-code"),
                                                ("session-id", "codex")])
def test_a_session_header_keeps_a_task_on_one_instance(
        pair: list[Instance], front: Front, service: DemoChatService, header: str, client: str) -> None:
    if front.url is None:
        pytest.skip("needs HAProxy to hash the session header")
    key = f"{client}-{front.name}-42"  # the session id that client sends
    service.push(*[ScriptedReply(CALL.format(n=n)) for n in range(3)])
    body, served = _opening(f"header-{key}"), set()
    for n in range(3):
        message, headers = _ask(front.url, body, {header: key})
        assert headers["x-roogab-affinity"] == key
        served.add(headers["x-roogab-instance"])
        body = roo_next_turn(body, message, n)
    assert len(served) == 1  # round robin would have alternated
    prompts = _prompts(service)
    assert len(prompts) == 3
    assert len({c for e, c, _ in prompts if e == "sendPrompt"}) == 1


def test_twenty_identical_concurrent_requests_across_both_instances_send_one_prompt(
        pair: list[Instance], service: DemoChatService) -> None:
    service.push(ScriptedReply(CALL.format(n=0), delay_ms=20))
    body = _opening("twenty")
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda i: _ask(pair[i % 2].url, body), range(20)))
    assert len(_prompts(service)) == 1
    assert {m.content for m, _ in answers} == {"Step 0."}
    assert len({m.tool_calls[0].id for m, _ in answers}) == 1  # the same call, answered from the record
    assert {h["x-roogab-instance"] for _, h in answers} == {"a", "b"}


def test_the_database_holds_one_lease_per_task(pair: list[Instance], service: DemoChatService, pg: Any) -> None:
    service.push(ScriptedReply(CALL.format(n=0)))
    _ask(pair[0].url, _opening("lease"))
    with psycopg.connect(pair[0].dsn) as conn:
        rows = conn.execute("SELECT owner, busy FROM leases").fetchall()
    assert ("a", False) in rows and all(not busy for _, busy in rows)


def test_killing_the_owner_mid_turn_lets_the_other_take_over_by_replay(
        pair: list[Instance], service: DemoChatService, pg: Any) -> None:
    a, b = pair
    service.push(ScriptedReply(CALL.format(n=0)))
    first, _ = _ask(a.url, _opening("kill"))
    second = roo_next_turn(_opening("kill"), first, 0)
    service.push(ScriptedReply(silent=True), ScriptedReply(CALL.format(n=1)), ScriptedReply(CALL.format(n=2)))
    hung = threading.Thread(target=_ask_quietly, args=(a.url, second), daemon=True)
    hung.start()
    _wait_until(lambda: len(_prompts(service)) == 2)  # a sent turn 2; the service never answers
    a.kill()
    hung.join(timeout=30)
    message, headers = _ask(b.url, second)  # the agent's retry reaches b
    assert headers["x-roogab-instance"] == "b"
    assert message.content == "Step 1."
    prompts = _prompts(service)
    assert [e for e, _, _ in prompts] == ["newConversation", "sendPrompt", "newConversation"]  # a fresh provider conversation
    replay = prompts[2][2]
    assert replay.count("listing 0:") == 1  # the transcript, replayed once
    _, log = get_json(b.url + "/inspect/turns.json?limit=10")
    assert log["data"][0]["replayed"] is True
    # The task goes on in the new conversation, on either instance.
    message, _ = _ask(b.url, roo_next_turn(second, message, 1))
    assert message.content == "Step 2."
    last = _prompts(service)[-1]
    assert last[0] == "sendPrompt" and last[2].count("listing 1:") == 1
    assert sum("listing 0:" in p for _, _, p in _prompts(service)) == 2  # the dead turn, the replay


def _ask_quietly(url: str, body: dict[str, Any]) -> None:
    try:
        _ask(url, body)
    except openai.APIError:
        pass  # the instance was killed under this request


def _wait_until(condition: Any, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(0.01)
