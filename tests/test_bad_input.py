"""Bad input (issue 6 §1): every malformed or unsupported request is a clear 4xx OpenAI error that
names the field, never a 5xx, and the server keeps serving.

Most cases run in-process (``app.test_client()`` over a FakeProvider); a hypothesis property throws
generated bodies and raw bytes at the app; a few cases go over real HTTP to the live demo stack,
including a body over ``max_body_bytes`` on a stack of its own.
"""

from __future__ import annotations

import copy
import dataclasses
import http.client
import itertools
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import CLINE, ROO_HISTORY, captured_bodies

from roogab.app import create_app
from roogab.config import Config, load_config
from roogab.providers.fake import FakeProvider
from roogab.runtime import Running, start_demo

MODEL = "fake/model"
GOOD: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}
ERROR_KEYS = {"message", "type", "param", "code"}
_addresses = itertools.count(1)


def _fresh_client(app: Flask) -> FlaskClient:
    """A test client with an address of its own: its requests never hit another test's task, so
    every turn renders a full prompt instead of being answered from the record."""
    n = next(_addresses)
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
    return client


@pytest.fixture(scope="module")
def app() -> Flask:
    config = Config(store="memory", max_body_bytes=64 * 1024, max_json_depth=32, ping_interval=0.05)
    return create_app(config, {"fake": FakeProvider(chunk=4)})


def _post(client: FlaskClient, body: Any, *, raw: bytes | None = None) -> tuple[int, bytes, str]:
    data = raw if raw is not None else json.dumps(body).encode()
    response = client.post("/v1/chat/completions", data=data, content_type="application/json")
    return response.status_code, response.get_data(), response.mimetype or ""


def _assert_error(status: int, raw: bytes, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """A 4xx OpenAI error body: ``{"error": {message, type, param, code}}``."""
    assert 400 <= status < 500, (status, raw[:300])
    body = json.loads(raw)
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    if param is not None:
        assert error["param"] == param, error
        assert param.split("[")[0].split(".")[0] in error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def _sse_events(raw: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE body, ``[DONE]`` as the string."""
    events = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            payload = block[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def _assert_success(status: int, raw: bytes, mimetype: str) -> None:
    """A complete answer: a chat.completion, or a stream with a finish_reason, then [DONE]."""
    assert status == 200, (status, raw[:300])
    if mimetype == "text/event-stream":
        events = _sse_events(raw)
        assert events[-1] == "[DONE]" and not any("error" in e for e in events[:-1] if isinstance(e, dict))
        assert any(c["finish_reason"] for e in events[:-1] for c in e["choices"])
    else:
        body = json.loads(raw)
        assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"]


def _assert_still_serving(client: FlaskClient) -> None:
    body = dict(GOOD, messages=[{"role": "user", "content": f"still there? {next(_addresses)}"}])
    _assert_success(*_post(client, body))


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def _msg(**fields: Any) -> dict[str, Any]:
    return _with(messages=[fields])


def _tool(**function: Any) -> dict[str, Any]:
    return _with(tools=[{"type": "function", "function": {"name": "read_file", **function}}])


# (body, param named, code) — each must be a 4xx naming that field.
BAD_BODIES: list[tuple[str, Any, str | None, str | None]] = [
    ("body is a list", [GOOD], None, None),
    ("body is a string", "hello", None, None),
    ("body is null", None, None, None),
    ("model missing", {"messages": GOOD["messages"]}, "model", None),
    ("model a number", _with(model=7), "model", None),
    ("model blank", _with(model="   "), "model", None),
    ("model a list", _with(model=[MODEL]), "model", None),
    ("unknown model", _with(model="fake/nope"), "model", "model_not_found"),
    ("unknown provider", _with(model="elsewhere/model"), "model", "model_not_found"),
    ("messages missing", {"model": MODEL}, "messages", None),
    ("messages empty", _with(messages=[]), "messages", None),
    ("messages an object", _with(messages={"role": "user", "content": "x"}), "messages", None),
    ("messages a string", _with(messages="hello"), "messages", None),
    ("message a string", _with(messages=["hello"]), "messages[0]", None),
    ("message null", _with(messages=[None]), "messages[0]", None),
    ("role missing", _msg(content="x"), "messages[0].role", None),
    ("role empty", _msg(role="", content="x"), "messages[0].role", None),
    ("role unknown", _msg(role="wizard", content="x"), "messages[0].role", None),
    ("role wrong case", _msg(role="User", content="x"), "messages[0].role", None),
    ("role a number", _msg(role=1, content="x"), "messages[0].role", None),
    ("content missing", _msg(role="user"), "messages[0].content", None),
    ("content a number", _msg(role="user", content=5), "messages[0].content", None),
    ("content an object", _msg(role="user", content={"text": "x"}), "messages[0].content", None),
    ("part of unknown type", _msg(role="user", content=[{"type": "audio", "audio": "x"}]),
     "messages[0].content[0]", None),
    ("part without type", _msg(role="user", content=[{"text": "x"}]), "messages[0].content[0]", None),
    ("part a string", _msg(role="user", content=["x"]), "messages[0].content[0]", None),
    ("text part without text", _msg(role="user", content=[{"type": "text"}]), "messages[0].content[0]", None),
    ("text part text a number", _msg(role="user", content=[{"type": "text", "text": 1}]),
     "messages[0].content[0]", None),
    ("second part bad", _msg(role="user", content=[{"type": "text", "text": "a"}, {"type": "file"}]),
     "messages[0].content[1]", None),
    ("tool message without id", _msg(role="tool", content="r"), "messages[0].tool_call_id", None),
    ("tool_call_id a number", _msg(role="tool", content="r", tool_call_id=3), "messages[0].tool_call_id", None),
    ("assistant with nothing", _msg(role="assistant", content=None), "messages[0].content", None),
    ("tool_calls an object", _msg(role="assistant", content=None, tool_calls={"id": "c"}),
     "messages[0].tool_calls", None),
    ("tool call without function", _msg(role="assistant", content=None, tool_calls=[{"id": "c"}]),
     "messages[0].tool_calls[0].function.name", None),
    ("tool call name a number", _msg(role="assistant", content=None,
                                     tool_calls=[{"id": "c", "function": {"name": 1}}]),
     "messages[0].tool_calls[0].function.name", None),
    ("later message bad", _with(messages=[GOOD["messages"][0], {"role": "user", "content": 1}]),
     "messages[1].content", None),
    ("stream a string", _with(stream="true"), "stream", None),
    ("stream a number", _with(stream=1), "stream", None),
    ("stream_options a list", _with(stream=True, stream_options=[]), "stream_options", None),
    ("include_usage a string", _with(stream=True, stream_options={"include_usage": "yes"}),
     "stream_options.include_usage", None),
    ("temperature a string", _with(temperature="0"), "temperature", None),
    ("temperature a bool", _with(temperature=True), "temperature", None),
    ("top_p a list", _with(top_p=[1]), "top_p", None),
    ("max_tokens a string", _with(max_tokens="32000"), "max_tokens", None),
    ("max_completion_tokens an object", _with(max_completion_tokens={}), "max_completion_tokens", None),
    ("tools an object", _with(tools={"type": "function"}), "tools", None),
    ("tool a string", _with(tools=["read_file"]), "tools[0]", None),
    ("tool of another type", _with(tools=[{"type": "code_interpreter"}]), "tools[0]", None),
    ("tool without function", _with(tools=[{"type": "function"}]), "tools[0]", None),
    ("tool without name", _with(tools=[{"type": "function", "function": {}}]), "tools[0].function.name", None),
    ("tool name a number", _tool(name=5), "tools[0].function.name", None),
    ("tool parameters a list", _tool(parameters=[{"type": "string"}]), "tools[0].function.parameters", None),
    ("tool parameters a string", _tool(parameters="object"), "tools[0].function.parameters", None),
    ("tool_choice a number", _with(tool_choice=3), "tool_choice", None),
    ("tool_choice unknown word", _with(tool_choice="always"), "tool_choice", None),
    ("tool_choice a list", _with(tool_choice=["auto"]), "tool_choice", None),
    ("n is 2", _with(n=2), "n", "unsupported_parameter"),
    ("n is 0", _with(n=0), "n", None),
    ("n negative", _with(n=-1), "n", None),
    ("n a string", _with(n="1"), "n", None),
    ("n a float", _with(n=1.5), "n", None),
    ("n a bool", _with(n=True), "n", None),
    ("logprobs", _with(logprobs=True), "logprobs", "unsupported_parameter"),
    ("audio output", _with(modalities=["text", "audio"], audio={"voice": "alloy"}), "audio",
     "unsupported_parameter"),
]


@pytest.mark.parametrize(("body", "param", "code"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_bad_body_is_a_4xx_naming_the_field(app: Flask, body: Any, param: str | None, code: str | None,
                                            stream: bool) -> None:
    if stream and isinstance(body, dict) and "stream" not in body:
        body = {**body, "stream": True}
    client = _fresh_client(app)
    status, raw, mimetype = _post(client, body)
    assert mimetype == "application/json"
    _assert_error(status, raw, param, code)
    _assert_still_serving(client)


SCHEMA_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("properties a list", {"type": "object", "properties": [{"path": "string"}]}, "properties"),
    ("properties a string", {"type": "object", "properties": "path"}, "properties"),
    ("required a number", {"type": "object", "properties": {"path": {"type": "string"}}, "required": 5},
     "required"),
    ("required a string", {"type": "object", "properties": {"path": {"type": "string"}}, "required": "path"},
     "required"),
    ("required holds a list", {"type": "object", "properties": {"path": {"type": "string"}},
                               "required": [["path"]]}, "required"),
    ("enum a number", {"type": "object", "properties": {"mode": {"enum": 5}}}, "enum"),
    ("object required true", {"type": "object", "properties": {"opts": {
        "type": "object", "properties": {"a": {"type": "string"}}, "required": True}}}, "required"),
    ("nested required a number", {"type": "object", "properties": {"opts": {
        "type": "object", "properties": {"a": {"type": "string"}}, "required": 1}}}, "required"),
    ("items required bad", {"type": "object", "properties": {"files": {"type": "array", "items": {
        "type": "object", "properties": {"path": {"type": "string"}}, "required": {"path": True}}}}}, "required"),
    ("minItems a string", {"type": "object", "properties": {"files": {"type": "array", "minItems": "1"}}},
     "minItems"),
    ("minItems a bool", {"type": "object", "properties": {"files": {"type": "array", "minItems": True}}},
     "minItems"),
]


@pytest.mark.parametrize(("schema", "keyword"), [c[1:] for c in SCHEMA_BAD], ids=[c[0] for c in SCHEMA_BAD])
def test_malformed_tool_schema_is_a_400_not_a_crash(app: Flask, schema: dict[str, Any], keyword: str) -> None:
    """A tool's JSON Schema is read by the prompt renderer and the call checker: a shape they
    cannot read must be refused at the edge, naming the tool, not crash the turn with a 500."""
    client = _fresh_client(app)
    status, raw, _ = _post(client, _tool(parameters=schema))
    error = _assert_error(status, raw)
    assert error["param"] is not None and error["param"].startswith("tools[0].function.parameters"), error
    assert keyword in error["param"], error
    _assert_still_serving(client)


def test_draft3_required_flag_on_a_scalar_is_accepted(app: Flask) -> None:
    schema = {"type": "object", "properties": {"path": {"type": "string", "required": True}}}
    _assert_success(*_post(_fresh_client(app), _tool(parameters=schema)))


RAW_BAD: list[tuple[str, bytes, str]] = [
    ("empty body", b"", "not valid JSON"),
    ("truncated", b'{"model": "fake/model", "messages": [', "not valid JSON"),
    ("trailing comma", b'{"model": "fake/model",}', "not valid JSON"),
    ("single quotes", b"{'model': 'fake/model'}", "not valid JSON"),
    ("two documents", json.dumps(GOOD).encode() * 2, "not valid JSON"),
    ("not JSON at all", b"model=fake/model&messages=hi", "not valid JSON"),
    ("invalid UTF-8", b'{"model": "fake/model", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "UTF-8"),
    ("UTF-16", json.dumps(GOOD).encode("utf-16"), "UTF-8"),
    ("truncated UTF-8 sequence", b'{"model": "fake/model\xe2\x82"}', "UTF-8"),
    ("deep arrays", b"[" * 5000 + b"]" * 5000, "nested deeper"),
    ("deep objects", b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested deeper"),
    ("deep inside a message", json.dumps(_msg(role="user", content="x", extra=json.loads(
        "[" * 40 + "]" * 40))).encode(), "nested deeper"),
]


@pytest.mark.parametrize(("raw", "words"), [c[1:] for c in RAW_BAD], ids=[c[0] for c in RAW_BAD])
def test_undecodable_body_is_a_400(app: Flask, raw: bytes, words: str) -> None:
    client = _fresh_client(app)
    status, body, mimetype = _post(client, None, raw=raw)
    assert mimetype == "application/json"
    error = _assert_error(status, body)
    assert status == 400 and words in error["message"]
    _assert_still_serving(client)


LONE_SURROGATES: list[tuple[str, bytes, str]] = [
    ("in content", b'{"model": "fake/model", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
     "messages[0].content"),
    ("in a text part", (b'{"model": "fake/model", "messages": [{"role": "user", "content": '
                       b'[{"type": "text", "text": "\\udc00"}]}]}'), "messages[0].content"),
    ("in the model", b'{"model": "fake/model\\ud83d", "messages": [{"role": "user", "content": "hi"}]}', "model"),
    ("in a tool description", (b'{"model": "fake/model", "messages": [{"role": "user", "content": "hi"}], '
                              b'"tools": [{"type": "function", "function": {"name": "f", '
                              b'"description": "\\ud800"}}]}'), "tools[0]"),
]


@pytest.mark.parametrize(("raw", "param"), [c[1:] for c in LONE_SURROGATES], ids=[c[0] for c in LONE_SURROGATES])
def test_lone_surrogate_escape_is_a_400(app: Flask, raw: bytes, param: str) -> None:
    """``"\\ud800"`` is valid JSON syntax but no Unicode text: it cannot be hashed, stored or sent
    on as UTF-8, so it is refused at the edge (it used to crash the registry with a 500)."""
    client = _fresh_client(app)
    status, body, _ = _post(client, None, raw=raw)
    error = _assert_error(status, body)
    assert error["param"] is not None and error["param"].startswith(param), error
    _assert_still_serving(client)


def test_a_valid_surrogate_pair_is_fine(app: Flask) -> None:
    client = _fresh_client(app)
    raw = b'{"model": "fake/model", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'
    _assert_success(*_post(client, None, raw=raw))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("key", ["temperature", "max_tokens"])
def test_non_finite_numbers_are_refused(app: Flask, key: str, value: str) -> None:
    client = _fresh_client(app)
    raw = json.dumps(GOOD)[:-1].encode() + f', "{key}": {value}}}'.encode()
    _assert_error(*_post(client, None, raw=raw)[:2], param=key)
    _assert_still_serving(client)


def test_unknown_keys_and_parameters_are_ignored(app: Flask) -> None:
    """clients.md §7: unknown keys (cache_control, reasoning_details, $schema, strict) are ignored."""
    body = _with(cache_control={"type": "ephemeral"}, reasoning_details=[{"x": 1}], seed=4, user="me",
                 frequency_penalty=0.5, presence_penalty=0, stop=["\n"], metadata={"a": "b"},
                 reasoning_effort="high", parallel_tool_calls=True, store=False, n=1, logprobs=False,
                 max_completion_tokens=-1, prediction=None, response_format={"type": "text"})
    body["messages"] = [{"role": "user", "content": [{"type": "text", "text": "hi",
                                                      "cache_control": {"type": "ephemeral"}}], "name": "dev"}]
    _assert_success(*_post(_fresh_client(app), body))


def test_tool_call_arguments_nested_past_the_recursion_limit_are_served(app: Flask) -> None:
    """An earlier call's ``arguments`` are re-spelled canonically to match the history; a string
    nested deeper than json.loads recurses is kept as it came."""
    call = {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": "[" * 3000 + "]" * 3000}}
    body = _with(messages=[GOOD["messages"][0], {"role": "assistant", "content": None, "tool_calls": [call]},
                           {"role": "tool", "tool_call_id": "call_1", "content": "ok"}])
    _assert_success(*_post(_fresh_client(app), body))


def test_wrong_method_and_route_are_openai_errors(app: Flask) -> None:
    client = _fresh_client(app)
    response = client.get("/v1/chat/completions")
    _assert_error(response.status_code, response.get_data(), code="method_not_allowed")
    response = client.post("/v1/completions", json=GOOD)
    _assert_error(response.status_code, response.get_data(), code="not_found")
    _assert_still_serving(client)


def test_an_unexpected_failure_is_a_server_error_not_a_request_error() -> None:
    """A bug (an exception no handler knows) is a 500 typed ``server_error``, as OpenAI types its
    5xx: the request may be fine, so it must not read as the client's mistake."""
    app = create_app(Config(store="memory"), {"fake": FakeProvider()})

    def broken() -> str:
        raise RuntimeError("a bug, with details the client must not see")

    app.add_url_rule("/v1/broken", view_func=broken, methods=["POST"])
    response = _fresh_client(app).post("/v1/broken", json=GOOD)
    assert response.status_code == 500
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    assert body["error"]["type"] == "server_error" and "a bug" not in body["error"]["message"], body


def test_body_over_the_limit_is_a_413_in_process() -> None:
    app = create_app(Config(store="memory", max_body_bytes=2048), {"fake": FakeProvider()})
    client = _fresh_client(app)
    big = _with(messages=[{"role": "user", "content": "x" * 4096}])
    _assert_error(*_post(client, big)[:2], code="request_too_large")
    _assert_still_serving(client)


# -- over real HTTP ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A live demo stack that takes bodies of 4 KiB at most."""
    config = load_config(env={}, overrides={"port": 0, "store": "memory", "max_body_bytes": 4096,
                                            "ping_interval": 0.2})
    running = start_demo(dataclasses.replace(config))
    yield running
    running.close()


def _connection(running: Running) -> http.client.HTTPConnection:
    parts = urlsplit(running.url)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)


def _http_post(conn: http.client.HTTPConnection, raw: bytes, headers: dict[str, str] | None = None
               ) -> tuple[int, bytes, str]:
    conn.request("POST", "/v1/chat/completions", body=raw,
                 headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    return response.status, response.read(), response.getheader("Content-Type") or ""


def _demo_good(text: str) -> bytes:
    return json.dumps({"model": "demo/gab-1", "messages": [{"role": "user", "content": text}]}).encode()


def test_body_over_the_limit_is_a_413_over_http(small_stack: Running) -> None:
    for size in (4097, 64 * 1024, 1024 * 1024):
        conn = _connection(small_stack)
        try:
            status, raw, ctype = _http_post(conn, _demo_good("x" * size))
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer 413 and close before it read the whole body; then only the
            # answer matters, and it was sent: read it from a fresh request with a small body.
            conn.close()
            continue
        finally:
            conn.close()
        assert ctype.startswith("application/json")
        _assert_error(status, raw, code="request_too_large")
        assert status == 413
    conn = _connection(small_stack)
    status, raw, _ = _http_post(conn, _demo_good("and a small one"))
    conn.close()
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"]


def test_bad_bodies_over_one_keep_alive_connection(small_stack: Running) -> None:
    """Over real HTTP (waitress), one connection: each bad body is a 4xx JSON error and the
    connection, and the server, keep serving."""
    conn = _connection(small_stack)
    try:
        bad = [raw for _, raw, _ in RAW_BAD if len(raw) < 4096]
        bad += [json.dumps(dict(body, model="demo/gab-1") if isinstance(body, dict) and "model" in body
                           and body["model"] == MODEL else body).encode()
                for _, body, _, _ in BAD_BODIES[:30]]
        bad += [raw for _, raw, _ in LONE_SURROGATES]
        for raw in bad:
            status, body, ctype = _http_post(conn, raw)
            assert ctype.startswith("application/json"), (raw[:80], status, body[:200])
            _assert_error(status, body)
        status, body, _ = _http_post(conn, _demo_good("after all that, hello"))
        assert status == 200 and "hello" in json.loads(body)["choices"][0]["message"]["content"]
    finally:
        conn.close()


# -- generated bodies (hypothesis) -------------------------------------------------------------

JSON_LEAVES = (st.none() | st.booleans() | st.integers(-2**40, 2**40)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)
ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool", "", "bot", "USER"])
TEXT_PART = st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=30)})
PARTS = st.lists(TEXT_PART | st.fixed_dictionaries({"type": st.sampled_from(["image_url", "audio", "file"]),
                                                    "image_url": JSON_VALUES}) | JSON_VALUES, max_size=3)
CONTENT = st.text(max_size=40) | PARTS | JSON_VALUES
CALL = st.fixed_dictionaries({"id": st.text(max_size=8) | JSON_VALUES,
                              "type": st.just("function"),
                              "function": st.fixed_dictionaries(
                                  {"name": st.text(max_size=8) | JSON_VALUES,
                                   "arguments": st.text(max_size=20) | JSON_VALUES})}) | JSON_VALUES
MESSAGE = st.fixed_dictionaries({"role": ROLES | JSON_VALUES}, optional={
    "content": CONTENT, "tool_calls": st.lists(CALL, max_size=2) | JSON_VALUES,
    "tool_call_id": st.text(max_size=8) | JSON_VALUES, "name": JSON_VALUES}) | JSON_VALUES
SCHEMA = st.recursive(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "boolean", "number"])}, optional={
        "enum": JSON_VALUES, "description": JSON_VALUES}),
    lambda inner: st.fixed_dictionaries({"type": st.sampled_from(["object", "array"])}, optional={
        "properties": st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3) | JSON_VALUES,
        "required": st.lists(st.text(max_size=6), max_size=3) | JSON_VALUES,
        "items": inner, "anyOf": st.lists(inner, max_size=2), "additionalProperties": st.booleans()}),
    max_leaves=6) | JSON_VALUES
TOOL = st.fixed_dictionaries({"type": st.sampled_from(["function", "function", "other"]),
                              "function": st.fixed_dictionaries({"name": st.text(min_size=1, max_size=10)},
                                                                optional={"description": JSON_VALUES,
                                                                          "parameters": SCHEMA})}) | JSON_VALUES
OPTIONAL_FIELDS = {
    "stream": st.booleans() | JSON_VALUES,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | JSON_VALUES}) | JSON_VALUES,
    "tools": st.lists(TOOL, max_size=3) | JSON_VALUES,
    "tool_choice": st.sampled_from(["auto", "none", "required", "bogus"]) | JSON_VALUES,
    "n": st.integers(-1, 3) | JSON_VALUES,
    "temperature": st.floats(0, 2) | JSON_VALUES,
    "max_tokens": st.integers(-1, 32000) | JSON_VALUES,
    "logprobs": st.booleans() | JSON_VALUES,
    "modalities": JSON_VALUES,
    "parallel_tool_calls": JSON_VALUES,
    "cache_control": JSON_VALUES,
}
BODIES = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "model", "fake/other", ""]) | JSON_VALUES,
     "messages": st.lists(MESSAGE, max_size=4) | JSON_VALUES},
    optional=OPTIONAL_FIELDS) | JSON_VALUES

VALID_MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "user"]),
                           "content": st.text(max_size=40) | st.lists(TEXT_PART, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.text(min_size=1, max_size=40)}),
    st.fixed_dictionaries({"role": st.just("tool"), "content": st.text(max_size=20),
                           "tool_call_id": st.text(min_size=1, max_size=8)}),
)
VALID_TOOL = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries({
    "name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
    "parameters": st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(
        st.from_regex(r"[a-z]{1,6}", fullmatch=True),
        st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "boolean"])}), max_size=3)})})})
VALID_BODIES = st.fixed_dictionaries(
    {"model": st.just(MODEL), "messages": st.lists(VALID_MESSAGE, min_size=1, max_size=4)},
    optional={"stream": st.booleans(), "tools": st.lists(VALID_TOOL, max_size=2),
              "temperature": st.floats(0, 2), "max_tokens": st.integers(1, 32000),
              "tool_choice": st.sampled_from(["auto", "none"]), "n": st.just(1),
              "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()})})


def _assert_never_5xx(app: Flask, raw: bytes) -> None:
    status, body, mimetype = _post(_fresh_client(app), None, raw=raw)
    assert status < 500, (raw[:300], body[:500])
    if status >= 400:
        _assert_error(status, body)
    else:
        _assert_success(status, body, mimetype)


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=BODIES)
def test_generated_bodies_never_get_a_5xx(app: Flask, body: Any) -> None:
    _assert_never_5xx(app, json.dumps(body).encode())


def _skeletons() -> list[dict[str, Any]]:
    """Rich valid bodies (captured Roo and Cline turns: parts, images, tool calls, tool results,
    schemas with enums, nesting and required lists) for one field at a time to be broken."""
    bodies = [captured_bodies(ROO_HISTORY)[0], captured_bodies(CLINE)[1]]
    for body in bodies:
        body["model"] = MODEL
    return bodies


SKELETONS = _skeletons()
_DELETE = object()


def _paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, (*at, key))


def _replace(body: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    if new is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return body


WEIRD_TEXT = st.text(st.characters(categories=["Cs", "Cc", "Zs", "Lo", "So"]), max_size=6)


@FUZZ
@given(data=st.data())
def test_one_broken_field_in_a_real_request_never_gets_a_5xx(app: Flask, data: st.DataObject) -> None:
    """Break one field of a real client request (any depth: a schema keyword, a tool call id, a
    content part) with any JSON value, a lone surrogate, or by deleting it."""
    body = copy.deepcopy(data.draw(st.sampled_from(SKELETONS)))
    path = data.draw(st.sampled_from(list(_paths(body))))
    new = data.draw(JSON_VALUES | WEIRD_TEXT | st.just(_DELETE) if path else JSON_VALUES)
    body = _replace(body, path, new)
    _assert_never_5xx(app, json.dumps(body).encode())


@settings(FUZZ, max_examples=100)
@given(body=VALID_BODIES)
def test_generated_valid_bodies_succeed(app: Flask, body: dict[str, Any]) -> None:
    status, raw, mimetype = _post(_fresh_client(app), body)
    _assert_success(status, raw, mimetype)


@settings(FUZZ, max_examples=150)
@given(raw=st.binary(max_size=200) | st.builds(
    lambda cut, junk: json.dumps(GOOD).encode()[:cut] + junk,
    st.integers(0, len(json.dumps(GOOD))), st.binary(max_size=8)))
def test_generated_bytes_never_get_a_5xx(app: Flask, raw: bytes) -> None:
    _assert_never_5xx(app, raw)
