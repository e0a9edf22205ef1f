"""Bad input on the Anthropic Messages and OpenAI Responses routes: a malformed body is a 4xx in
the route's own error shape that names the field, never a 5xx, and the server keeps serving.

In-process (``app.test_client()`` over a FakeProvider), as tests/test_bad_input.py does for Chat
Completions.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from roogab.app import create_app
from roogab.config import Config
from roogab.protocols.messages_request import parse_request
from roogab.protocols.responses_input import parse_responses_request
from roogab.providers.fake import FakeProvider

MESSAGES: dict[str, Any] = {"model": "fake/model", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def app() -> Flask:
    return create_app(Config(store="memory", max_json_depth=32), {"fake": FakeProvider(chunk=4)})


def _post(client: FlaskClient, path: str, body: Any) -> tuple[int, str]:
    response = client.post(path, data=json.dumps(body), content_type="application/json")
    return response.status_code, response.get_data(as_text=True)


def _assert_anthropic_error(status: int, raw: str, field: str) -> None:
    """A 400 ``{"type": "error", "error": {"type": "invalid_request_error", "message": ...}}``
    whose message names *field*."""
    assert status == 400, (status, raw[:300])
    body = json.loads(raw)
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    assert field in body["error"]["message"], body


def _assert_messages_still_serving(client: FlaskClient) -> None:
    status, raw = _post(client, "/v1/messages", MESSAGES)
    assert status == 200 and json.loads(raw)["type"] == "message", (status, raw[:300])


@pytest.mark.parametrize("kind", [["auto"], {"auto": True}], ids=["list", "object"])
def test_messages_tool_choice_type_not_a_string_is_a_400(app: Flask, kind: object) -> None:
    client = app.test_client()
    _assert_anthropic_error(*_post(client, "/v1/messages", {**MESSAGES, "tool_choice": {"type": kind}}),
                            "tool_choice.type")
    _assert_messages_still_serving(client)


def test_messages_deeply_nested_user_id_is_served(app: Flask) -> None:
    """``metadata.user_id`` is parsed as JSON for Claude Code's session id; one nested past
    Python's recursion limit is just a user id with no session in it."""
    client = app.test_client()
    body = {**MESSAGES, "metadata": {"user_id": "[" * 3000 + "]" * 3000}}
    status, raw = _post(client, "/v1/messages", body)
    assert status == 200 and json.loads(raw)["type"] == "message", (status, raw[:300])


def test_responses_call_arguments_nested_past_the_recursion_limit_are_served(app: Flask) -> None:
    call = {"type": "function_call", "call_id": "call_1", "name": "read_file", "arguments": "[" * 3000 + "]" * 3000}
    body = {"model": "fake/model", "input": [{"type": "message", "role": "user", "content": "hi"}, call,
                                             {"type": "function_call_output", "call_id": "call_1", "output": "ok"}]}
    status, raw = _post(app.test_client(), "/v1/responses", body)
    assert status == 200 and json.loads(raw)["status"] == "completed", (status, raw[:300])


OUTPUT_SCHEMA_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("minItems a string", {"type": "array", "minItems": "x"}, "minItems"),
    ("minItems a bool", {"type": "array", "minItems": True}, "minItems"),
    ("minItems negative", {"type": "array", "minItems": -1}, "minItems"),
    ("nested minItems a float", {"type": "object", "properties": {"tags": {"type": "array", "minItems": 1.5}}},
     "properties.tags.minItems"),
    ("properties a list", {"type": "object", "properties": ["title"]}, "properties"),
    ("required a string", {"type": "object", "properties": {"title": {"type": "string"}}, "required": "title"},
     "required"),
]


@pytest.mark.parametrize(("schema", "keyword"), [c[1:] for c in OUTPUT_SCHEMA_BAD],
                         ids=[c[0] for c in OUTPUT_SCHEMA_BAD])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_messages_output_schema_is_checked_at_the_edge(app: Flask, schema: dict[str, Any], keyword: str,
                                                       stream: bool) -> None:
    """``output_config.format.schema`` gets the check tool schemas get: refused before any
    answer (and before a stream opens), not a crash where the answer is fitted to it."""
    client = app.test_client()
    body = {**MESSAGES, "stream": stream, "output_config": {"format": {"type": "json_schema", "schema": schema}}}
    _assert_anthropic_error(*_post(client, "/v1/messages", body), f"output_config.format.schema.{keyword}")
    legacy = {**MESSAGES, "stream": stream, "output_format": {"type": "json_schema", "schema": schema}}
    _assert_anthropic_error(*_post(client, "/v1/messages", legacy), f"output_format.schema.{keyword}")
    _assert_messages_still_serving(client)


@pytest.mark.parametrize(("schema", "keyword"), [c[1:] for c in OUTPUT_SCHEMA_BAD],
                         ids=[c[0] for c in OUTPUT_SCHEMA_BAD])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_responses_output_schema_is_checked_at_the_edge(app: Flask, schema: dict[str, Any], keyword: str,
                                                        stream: bool) -> None:
    client = app.test_client()
    body = {"model": "fake/model", "input": "hi", "stream": stream,
            "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema}}}
    status, raw = _post(client, "/v1/responses", body)
    assert status == 400, (status, raw[:300])
    error = json.loads(raw)["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == f"text.format.schema.{keyword}", error
    assert error["param"] in error["message"], error
    status, raw = _post(client, "/v1/responses", {"model": "fake/model", "input": "still there?"})
    assert status == 200, (status, raw[:300])


def _messages_asking_for(schema: dict[str, Any], stream: bool) -> dict[str, Any]:
    return {**MESSAGES, "stream": stream, "output_config": {"format": {"type": "json_schema", "schema": schema}}}


def _responses_asking_for(schema: dict[str, Any], stream: bool) -> dict[str, Any]:
    return {"model": "fake/model", "input": "hi", "stream": stream,
            "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema}}}


STRUCTURED_ROUTES = {"messages": ("/v1/messages", _messages_asking_for),
                     "responses": ("/v1/responses", _responses_asking_for)}


@pytest.mark.parametrize("route", list(STRUCTURED_ROUTES))
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_huge_min_items_gives_a_small_answer(app: Flask, route: str, stream: bool) -> None:
    path, build = STRUCTURED_ROUTES[route]
    body = build({"type": "array", "minItems": 2_000_000}, stream)
    status, raw = _post(app.test_client(), path, body)
    assert status == 200 and len(raw) < 20_000, (status, len(raw), raw[:300])


@pytest.mark.parametrize("route", list(STRUCTURED_ROUTES))
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_schema_jsonschema_cannot_use_still_ends_the_answer(route: str, stream: bool) -> None:
    """A ``pattern`` that is no regex passes the edge check (RooGab itself never reads it) but
    makes jsonschema raise when the answer is validated: the answer is built from the schema
    instead, and a stream still ends as it should."""
    app = create_app(Config(store="memory"), {"fake": FakeProvider(['```lua\nreturn { text = [["a title"]] }\n```'])})
    path, build = STRUCTURED_ROUTES[route]
    status, raw = _post(app.test_client(), path, build({"type": "string", "pattern": "["}, stream))
    assert status == 200, (status, raw[:300])
    if stream:
        assert "event: error" not in raw and "response.failed" not in raw, raw[-500:]
        assert "event: message_stop" in raw or "event: response.completed" in raw, raw[-500:]
    assert "a title" in raw, raw[-500:]


# -- routing before content type; 405 says what is allowed; null stream; count_tokens' model ---------

@pytest.mark.parametrize(("method", "path", "status"), [
    ("DELETE", "/v1/chat/completions", 405),
    ("PUT", "/v1/messages", 405),
    ("POST", "/v1/models", 405),
    ("POST", "/v1/nope", 404),
])
def test_a_wrong_route_or_method_is_said_before_the_content_type(
        app: Flask, method: str, path: str, status: int) -> None:
    response = app.test_client().open(path, method=method, data=b"x")  # no Content-Type
    assert response.status_code == status and response.is_json, response.get_data(as_text=True)[:200]
    if status == 405:
        assert "POST" in response.headers["Allow"] or "GET" in response.headers["Allow"]


def test_a_405_names_the_allowed_methods(app: Flask) -> None:
    response = app.test_client().get("/v1/chat/completions")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["Allow"].split(",")} >= {"POST"}
    assert response.get_json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/messages", MESSAGES),
    ("/v1/responses", {"model": "fake/model", "input": "hi"}),
])
def test_stream_null_is_not_streamed(app: Flask, path: str, body: dict[str, Any]) -> None:
    status, raw = _post(app.test_client(), path, {**body, "stream": None})
    assert status == 200 and json.loads(raw)["type" if path == "/v1/messages" else "object"] in (
        "message", "response"), raw[:300]


def test_count_tokens_of_an_unknown_model_is_a_404(app: Flask) -> None:
    status, raw = _post(app.test_client(), "/v1/messages/count_tokens",
                        {"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert status == 404 and json.loads(raw)["error"]["type"] == "not_found_error", raw
    status, raw = _post(app.test_client(), "/v1/messages/count_tokens",
                        {"model": "fake/model", "messages": [{"role": "user", "content": "x"}]})
    assert status == 200 and json.loads(raw)["input_tokens"] >= 1, raw


# -- a named tool_choice must name an offered tool ---------------------------------------------------

READ = {"name": "read_file", "description": "Read a file.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "fake/model", "messages": [{"role": "user", "content": "hi"}],
                              "tools": [{"type": "function", "function": READ}],
                              "tool_choice": {"type": "function", "function": {"name": "write_file"}}}),
    ("/v1/messages", {**MESSAGES, "tools": [{"name": READ["name"], "input_schema": READ["parameters"]}],
                      "tool_choice": {"type": "tool", "name": "write_file"}}),
    ("/v1/responses", {"model": "fake/model", "input": "hi", "tools": [{"type": "function", **READ}],
                       "tool_choice": {"type": "function", "name": "write_file"}}),
])
def test_a_tool_choice_naming_a_tool_not_offered_is_a_400(app: Flask, path: str, body: dict[str, Any]) -> None:
    """As OpenAI and Anthropic answer: the model would be asked to call a tool it does not have."""
    status, raw = _post(app.test_client(), path, body)
    assert status == 400 and "write_file" in raw and "tool_choice" in raw, raw


@pytest.mark.parametrize("path", ["/v1//messages", "/v1///messages"])
def test_a_doubled_slash_is_served_not_redirected(app: Flask, path: str) -> None:
    """A base URL ending in '/' joined to '/messages': served, not Werkzeug's HTML 308 page."""
    status, raw = _post(app.test_client(), path, MESSAGES)
    assert status == 200 and json.loads(raw)["type"] == "message", raw[:300]


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/messages", {**MESSAGES, "stream": 0}),
    ("/v1/responses", {"model": "fake/model", "input": "hi", "stream": ""}),
])
def test_stream_must_be_a_boolean_or_null(app: Flask, path: str, body: dict[str, Any]) -> None:
    status, raw = _post(app.test_client(), path, body)
    assert status == 400 and "stream" in raw, raw


def test_a_named_tool_choice_narrows_the_tools_offered() -> None:
    write = {"name": "write_file", "input_schema": READ["parameters"]}
    read = {"name": READ["name"], "input_schema": READ["parameters"]}
    messages = parse_request({**MESSAGES, "tools": [read, write], "tool_choice": {"type": "tool", "name": "write_file"}})
    assert [t.name for t in messages.offered_tools] == ["write_file"] and messages.call_required
    responses = parse_responses_request(
        {"model": "m", "input": "hi", "tools": [{"type": "function", **READ}, {"type": "function", **READ, "name": "b"}],
         "tool_choice": {"type": "function", "name": "b"}})
    assert [t.name for t in responses.offered_tools] == ["b"]


def test_a_tool_choice_naming_a_server_tool_asks_for_any_call() -> None:
    """A server tool RooGab cannot run is in 'tools' but cannot be offered: not a 400."""
    body = {**MESSAGES, "tools": [{"name": READ["name"], "input_schema": READ["parameters"]},
                                  {"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "tool", "name": "web_search"}}
    request = parse_request(body)
    assert request.forced_tool is None and [t.name for t in request.offered_tools] == ["read_file"]
