"""Faults (issue 6 §2) through the live demo chat service: dropped connections, silence past the
deadline, slow tokens, an HTML error page instead of a reply, a service restarting in a loop, and an
agent that hangs up mid-stream.

Each turn ends in a complete answer or a clear error, never a truncated answer presented as
complete: a stream either ends with a finish_reason, the full text and ``[DONE]``, or carries an
``error`` event (and no finish_reason); a JSON turn is either a whole completion or a retryable
5xx OpenAI error (502/503/504). The next turn works once the service is back.
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from roogab.config import ProviderProfile, load_config
from roogab.demo import DemoChatService, ScriptedReply
from roogab.runtime import Running, start, start_demo

pytestmark = pytest.mark.loopback

RETRYABLE = (502, 503, 504)
FIRST_TOKEN, SILENCE = 1.0, 0.5
_tasks = itertools.count(1)


def envelope(text: str) -> str:
    return f"```lua\nreturn {{ text = [==[{text}]==] }}\n```"


HTML_ERROR_PAGE = ("<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>\n"
                   "<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx/1.25.3</center>\n"
                   "</body></html>\n")


@pytest.fixture(scope="module")
def faulty() -> Iterator[Running]:
    """A demo stack with short deadlines: 1 s to the first token, 0.5 s of silence."""
    config = load_config(env={}, overrides={
        "port": 0, "store": "memory", "first_token_timeout": FIRST_TOKEN, "silence_timeout": SILENCE,
        "reply_timeout": 10, "ping_interval": 0.2, "connect_timeout": 2})
    running = start_demo(dataclasses.replace(config))
    yield running
    running.close()


@pytest.fixture
def demo(faulty: Running) -> DemoChatService:
    assert faulty.demo is not None
    faulty.demo.reset()
    return faulty.demo


@dataclass
class Outcome:
    """What the agent got from one turn."""

    status: int
    stream: bool
    text: str = ""
    finish: str | None = None
    error: dict[str, Any] | None = None
    done: bool = False
    events: list[Any] = field(default_factory=list)

    def assert_complete(self, text: str | None = None) -> None:
        assert self.status == 200 and self.error is None, self
        assert self.finish in ("stop", "tool_calls"), self
        assert not self.stream or self.done, self
        if text is not None:
            assert self.text == text, self

    def assert_clear_error(self, *codes: str) -> None:
        """A retryable error, never a short answer that looks complete."""
        assert self.error is not None, self
        assert set(self.error) >= {"message", "type", "code"} and self.error["message"], self
        if codes:
            assert self.error["code"] in codes, self
        if self.stream:
            assert self.status == 200 and self.finish is None and self.done, self
        else:
            assert self.status in RETRYABLE, self


def _body(content: str, *, stream: bool, tools: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "demo/gab-1", "stream": stream,
                            "messages": [{"role": "user", "content": content}]}
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": "read_file", "parameters": {
            "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}]
    return body


def _task(name: str) -> str:
    return f"{name} (task {next(_tasks)})"


def turn(running: Running, content: str, *, stream: bool, tools: bool = False,
         timeout: float = 15) -> Outcome:
    """One turn over raw HTTP, read to the end."""
    parts = urlsplit(running.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(_body(content, stream=stream, tools=tools)),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    if not stream or response.status != 200:
        body = json.loads(raw)
        if "error" in body:
            return Outcome(response.status, False, error=body["error"])
        choice = body["choices"][0]
        return Outcome(response.status, False, choice["message"]["content"] or "", choice["finish_reason"])
    assert response.getheader("Content-Type", "").startswith("text/event-stream")
    return _read_sse(raw.decode())


def _read_sse(raw: str) -> Outcome:
    outcome = Outcome(200, True)
    for block in raw.split("\n\n"):
        if not block.startswith("data: "):
            continue
        payload = block[len("data: "):]
        assert not outcome.done, f"data after [DONE]: {raw[-300:]}"
        if payload == "[DONE]":
            outcome.done = True
            continue
        event = json.loads(payload)
        outcome.events.append(event)
        if "error" in event:
            assert outcome.error is None, "two error events"
            outcome.error = event["error"]
            continue
        assert outcome.error is None, "a chunk after the error event"
        for choice in event["choices"]:
            outcome.text += choice["delta"].get("content") or ""
            outcome.finish = choice["finish_reason"] or outcome.finish
    return outcome


def _next_turn_works(running: Running, stream: bool) -> None:
    turn(running, _task("and now a normal question"), stream=stream).assert_complete()


# -- the connection drops mid-reply ---------------------------------------------------------------

@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_connection_dropped_mid_reply_is_an_error_not_a_short_answer(faulty: Running, demo: DemoChatService,
                                                                      stream: bool) -> None:
    demo.push(ScriptedReply(envelope("the whole answer, which never arrives in full " * 3), chunk=10,
                            delay_ms=20, drop_after=4))
    outcome = turn(faulty, _task("drop me"), stream=stream)
    outcome.assert_clear_error("provider_disconnected")
    assert "whole answer, which never arrives in full " * 3 not in outcome.text
    _next_turn_works(faulty, stream)


# -- silence --------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_silent_service_times_out_on_the_first_token_deadline(faulty: Running, demo: DemoChatService,
                                                              stream: bool) -> None:
    demo.push(ScriptedReply(silent=True))
    started = time.monotonic()
    outcome = turn(faulty, _task("hello? anyone?"), stream=stream)
    took = time.monotonic() - started
    outcome.assert_clear_error("provider_timeout")
    assert took >= FIRST_TOKEN, took  # it waited for the deadline (how promptly after it is a bench matter)
    if stream:  # the agent saw keep-alive pings, not silence, while it waited
        assert outcome.events == [outcome.events[-1]]
    _next_turn_works(faulty, stream)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_reply_that_stalls_midway_times_out_on_the_silence_deadline(faulty: Running, demo: DemoChatService,
                                                                     stream: bool) -> None:
    # The first chunk comes after 0.75 s (inside the 1 s first-token deadline), the next one
    # 0.75 s later: longer than the 0.5 s allowed between tokens.
    demo.push(ScriptedReply(envelope("one two three four five six seven eight nine ten"), chunk=20,
                            delay_ms=750))
    outcome = turn(faulty, _task("stall"), stream=stream)
    outcome.assert_clear_error("provider_timeout")
    assert "stalled" in outcome.error["message"] if outcome.error else False
    _next_turn_works(faulty, stream)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_slow_tokens_within_the_deadlines_give_the_whole_answer(faulty: Running, demo: DemoChatService,
                                                                stream: bool) -> None:
    text = "Slow and steady: every token arrives, a little late, but within the deadlines."
    demo.push(ScriptedReply(envelope(text), chunk=10, delay_ms=100))  # 0.1 s gaps, 1.1 s in all
    started = time.monotonic()
    outcome = turn(faulty, _task("slowly"), stream=stream)
    assert time.monotonic() - started > 1.0
    outcome.assert_complete(text)


# -- an HTML error page instead of a reply -----------------------------------------------------------

@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_html_error_page_is_an_upstream_error_and_the_retry_works(faulty: Running, demo: DemoChatService,
                                                                 stream: bool) -> None:
    """An error document is the service failing, not the model: no repair message is sent into a
    conversation that may never have seen the prompt; the agent's retry is replayed afresh."""
    demo.push(ScriptedReply(HTML_ERROR_PAGE, chunk=16),
              ScriptedReply('```lua\nreturn { text = [==[Reading.]==], tool_calls = {\n'
                            '  { name = "read_file", arguments = { path = "a.py" } } } }\n```'))
    outcome = turn(faulty, _task("read a.py"), stream=stream, tools=True)
    outcome.assert_clear_error("provider_rejected")
    assert "502 Bad Gateway" in outcome.error["message"] and "nginx" not in outcome.text, outcome
    assert len([r for r in demo.received if r.prompt]) == 1  # no repair message
    retry = turn(faulty, _task("read a.py"), stream=stream, tools=True)
    assert retry.error is None and retry.finish == "tool_calls", retry


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_html_error_page_is_not_an_answer_without_tools(faulty: Running, demo: DemoChatService,
                                                        stream: bool) -> None:
    demo.push(ScriptedReply(HTML_ERROR_PAGE, chunk=16))
    outcome = turn(faulty, _task("what is 2 + 2?"), stream=stream)
    outcome.assert_clear_error("provider_rejected")
    assert "Bad Gateway" not in outcome.text and "nginx" not in outcome.text, outcome
    _next_turn_works(faulty, stream)


# -- the chat service restarts in a loop ----------------------------------------------------------

@pytest.fixture
def restartable(tmp_path: Any) -> Iterator[tuple[Running, list[DemoChatService]]]:
    """RooGab in front of a demo service that the test stops and starts on the same port."""
    services = [DemoChatService()]
    services[0].start()
    config = load_config(env={}, overrides={"port": 0, "store": "memory", "connect_timeout": 2,
                                            "first_token_timeout": 3, "silence_timeout": 2, "reply_timeout": 10})
    running = start(dataclasses.replace(config, providers=(ProviderProfile(url=services[0].url),)))
    yield running, services
    running.close()
    for service in services:
        service.stop()


def test_service_restarting_in_a_loop(restartable: tuple[Running, list[DemoChatService]]) -> None:
    running, services = restartable
    port = services[0].port
    outcomes: list[Outcome] = []
    stop = threading.Event()

    def agent() -> None:
        # A fresh task each time (a repeated one would be answered from the record), streaming
        # and not, alternately.
        for i in itertools.count():
            if stop.is_set():
                return
            outcomes.append(turn(running, f"restart loop question {i}", stream=i % 2 == 0, timeout=20))

    thread = threading.Thread(target=agent)
    thread.start()
    try:
        for _ in range(3):
            time.sleep(0.4)
            services[-1].stop()
            time.sleep(0.3)
            services.append(DemoChatService(port=port))
            services[-1].start()
    finally:
        time.sleep(0.4)
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert outcomes
    answered = sum(1 for service in services for r in service.received if r.prompt)
    assert answered >= sum(1 for o in outcomes if o.error is None)  # answers came from the service
    for outcome in outcomes:
        if outcome.error is None:
            outcome.assert_complete()
            assert outcome.text.startswith("Hello from the RooGab demo service"), outcome
        else:
            outcome.assert_clear_error()
    for stream in (True, False):
        turn(running, _task("after the restarts"), stream=stream).assert_complete()


# -- the agent hangs up mid-stream -----------------------------------------------------------------

def _hang_up_after_first_content(running: Running, content: str) -> None:
    parts = urlsplit(running.url)
    sock = socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10)
    body = json.dumps(_body(content, stream=True)).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    seen = b""
    while b'"content"' not in seen:
        chunk = sock.recv(4096)
        assert chunk, seen
        seen += chunk
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def test_agent_hanging_up_cancels_the_provider_turn(faulty: Running, demo: DemoChatService) -> None:
    slow = envelope("word " * 120)  # 650 characters at 5 every 40 ms: over 5 s if read to the end
    demo.push(ScriptedReply(slow, chunk=5, delay_ms=40))
    task = _task("a long answer please")
    before = {t.id for t in faulty.store.turns(limit=50)}
    _hang_up_after_first_content(faulty, task)
    hung_up = time.monotonic()
    failed = None
    while failed is None and time.monotonic() - hung_up < 30:  # a hang detector, not a speed claim
        failed = next((t for t in faulty.store.turns(limit=10) if t.id not in before), None)
        time.sleep(0.05)
    assert failed is not None, "the turn was still running 30 s after the agent hung up"
    assert failed.verdict == "failed" and "went away" in (failed.error or ""), failed
    # The same task, asked again at once, is served promptly with the next reply.
    demo.push(ScriptedReply(envelope("Short answer this time.")))
    turn(faulty, task, stream=True).assert_complete("Short answer this time.")


# -- a bug in RooGab itself, mid-turn -------------------------------------------------------------

STREAM_ERRORS = {"/v1/chat/completions": 'data: {"error":{',  # each protocol's own error event
                 "/v1/messages": "event: error\n",
                 "/v1/responses": "event: response.failed\n"}


def _post_raw(running: Running, path: str, body: object) -> tuple[int, str]:
    """POST *body* as JSON; the status and the whole body as read off the socket (http.client
    raises IncompleteRead on a chunked body cut off mid-chunk)."""
    parts = urlsplit(running.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=15)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _bug(self: object) -> None:
    raise KeyError("a bug")


@pytest.mark.parametrize("path", list(STREAM_ERRORS))
def test_a_bug_after_the_stream_began_ends_it_with_the_protocols_error_event(
        faulty: Running, demo: DemoChatService, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """A bug in RooGab after some text went out: the stream ends properly with the protocol's
    error event (not a body cut off mid-chunk), says only the bug's type, and the turn log
    names the bug (not "the agent went away")."""
    # in one piece from the service, so the text reaches the agent in one delta
    demo.push(ScriptedReply(envelope("Some text that reaches the agent first."), chunk=1 << 16))
    monkeypatch.setattr("roogab.service._Turn._usage", _bug)  # after the answer, before it is finished
    body = {"model": "demo/gab-1", "stream": True, "max_tokens": 100,
            "messages": [{"role": "user", "content": _task("meet a bug")}]}
    if path == "/v1/responses":
        body = {"model": "demo/gab-1", "stream": True, "input": _task("meet a bug")}
    status, raw = _post_raw(faulty, path, body)
    assert status == 200 and "the agent first." in raw, raw  # the text went out before the bug
    assert STREAM_ERRORS[path] in raw and "internal error in RooGab (KeyError)" in raw, raw
    assert "a bug" not in raw and '"stop"' not in raw and "end_turn" not in raw, raw
    if path == "/v1/chat/completions":
        assert raw.endswith("data: [DONE]\n\n"), raw[-200:]
    [logged] = faulty.registry.turns(limit=1)
    assert logged.verdict == "failed" and (logged.error or "").startswith("KeyError"), logged
    monkeypatch.undo()
    _next_turn_works(faulty, True)


@pytest.mark.parametrize("path", list(STREAM_ERRORS))
def test_a_bug_in_a_json_turn_is_a_500_in_the_protocols_error_shape(
        faulty: Running, demo: DemoChatService, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    demo.push(ScriptedReply(envelope("An answer that never goes out.")))
    monkeypatch.setattr("roogab.service._Turn._usage", _bug)
    body: dict[str, Any] = {"model": "demo/gab-1", "max_tokens": 100,
                            "messages": [{"role": "user", "content": _task("meet a bug")}]}
    if path == "/v1/responses":
        body = {"model": "demo/gab-1", "input": _task("meet a bug")}
    status, raw = _post_raw(faulty, path, body)
    answer = json.loads(raw)
    assert status == 500 and "error" in answer and "never goes out" not in json.dumps(answer), answer
    assert "a bug" not in json.dumps(answer), answer
    [logged] = faulty.registry.turns(limit=1)
    assert logged.verdict == "failed" and (logged.error or "").startswith("KeyError"), logged


# -- values JSON cannot carry, streamed --------------------------------------------------------------

WRITE_TOOL = {"name": "write_to_file", "description": "Write a file.",
              "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                             "required": ["path", "content"]}}
STREAM_CALLS = {"/v1/chat/completions": ('"finish_reason":"tool_calls"', "data: [DONE]\n\n"),
                "/v1/messages": ('"stop_reason":"tool_use"', 'event: message_stop\ndata: {"type":"message_stop"}\n\n')}


@pytest.mark.parametrize("path", list(STREAM_CALLS))
def test_a_lone_utf16_half_in_streamed_arguments_reaches_the_agent_as_u_fffd(
        faulty: Running, demo: DemoChatService, path: str) -> None:
    """JSON-string arguments with ``\\ud83d`` alone: ``json.loads`` keeps the half, which no UTF-8
    body can carry; it used to kill the stream after the call's header went out."""
    demo.push(ScriptedReply('```lua\nreturn { tool_calls = { { name = "write_to_file", arguments = '
                            '[==[{"path": "a.txt", "content": "smile \\ud83d end"}]==] } } }\n```', chunk=7))
    body: dict[str, Any] = {"model": "demo/gab-1", "stream": True, "max_tokens": 100,
                            "messages": [{"role": "user", "content": _task("write a smile")}],
                            "tools": [{"type": "function", "function": WRITE_TOOL}]}
    if path == "/v1/messages":
        body["tools"] = [{"name": WRITE_TOOL["name"], "description": WRITE_TOOL["description"],
                          "input_schema": WRITE_TOOL["parameters"]}]
    status, raw = _post_raw(faulty, path, body)
    finish, last = STREAM_CALLS[path]
    assert status == 200 and finish in raw and raw.endswith(last), raw[-300:]
    assert "smile \ufffd end" in raw.replace('\\"', '"'), raw
    assert [r for r in demo.received if r.prompt and "write a smile" in r.prompt]  # the service got the turn
