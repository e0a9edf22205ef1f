"""Request validation at the edge: every captured client request passes, bad ones name the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import CLINE, KILO, ROO, ROO_HISTORY, ROO_NONSTREAM, captured_bodies

from roogab.errors import InvalidRequest, UnsupportedFeature
from roogab.wire import Usage, canonical_json, check_body_text, completion, parse_chat_request, usage_chunk


@pytest.mark.parametrize("name", [ROO, ROO_NONSTREAM, ROO_HISTORY, CLINE, KILO])
def test_every_captured_request_is_accepted(name: str) -> None:
    for body in captured_bodies(name):
        req = parse_chat_request(body)
        assert req.model == body["model"]
        assert len(req.messages) == len(body["messages"])
        assert len(req.tools) == len(body.get("tools") or [])
        assert req.stream == bool(body.get("stream"))


def test_roo_history_flattens_parts_and_counts_images() -> None:
    req = parse_chat_request(captured_bodies(ROO_HISTORY)[0])
    user = req.messages[1]
    assert user.images == 1 and "<user_message>" in user.content
    assistant = req.messages[2]
    assert [c.id for c in assistant.tool_calls] == ["call_a", "call_b"]
    assert req.messages[3].tool_call_id == "call_a"


def test_include_usage_only_when_streaming(roo_body: dict[str, Any]) -> None:
    assert parse_chat_request(roo_body).include_usage
    roo_body["stream"] = False
    assert not parse_chat_request(roo_body).include_usage


BAD: list[tuple[Any, str | None]] = [
    ([], None),
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "", "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": ["hi"]}, "messages[0]"),
    ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
    ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0]"),
    ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": {}}, "tools"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools[0]"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": 3}, "tool_choice"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
]


@pytest.mark.parametrize(("body", "param"), BAD)
def test_bad_requests_name_the_field(body: Any, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body)
    assert info.value.param == param
    assert info.value.status == 400


@pytest.mark.parametrize("extra", [{"n": 2}, {"logprobs": True}, {"modalities": ["text", "audio"]}])
def test_unsupported_features_are_refused(extra: dict[str, Any]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(UnsupportedFeature):
        parse_chat_request(body)


def test_unknown_keys_are_ignored(roo_body: dict[str, Any]) -> None:
    body = copy.deepcopy(roo_body)
    body["cache_control"] = {"type": "ephemeral"}
    body["messages"][0]["reasoning_details"] = []
    assert parse_chat_request(body).model == roo_body["model"]


def test_canonical_json_ignores_spacing_and_key_order() -> None:
    assert canonical_json('{"b": 1, "a": [1, 2]}') == canonical_json('{"a":[1,2],"b":1}')
    assert canonical_json("not json") == "not json"
    deep = "[" * 3000 + "]" * 3000  # past the recursion limit: json.loads raises RecursionError
    assert canonical_json(deep) == deep


def test_usage_shapes() -> None:
    usage = Usage(10, 5)
    chunk = usage_chunk("c", "m", 1, usage)
    assert chunk["choices"] == [] and chunk["usage"]["total_tokens"] == 15
    body = completion("c", "m", 1, {"role": "assistant", "content": "hi"}, "stop", usage)
    assert body["object"] == "chat.completion" and body["usage"]["prompt_tokens"] == 10


_texts = st.text(alphabet=st.characters(codec=None, exclude_categories=()) | st.sampled_from("a\ud800\udc00é😀"),
                 max_size=6)
_json = st.recursive(st.none() | st.booleans() | st.integers() | _texts,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
                     max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_the_body_text_check_refuses_exactly_what_utf8_cannot_encode(body: object) -> None:
    """The fast check (only non-ASCII strings are encoded) agrees with encoding the whole body."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
        encodable = True
    except UnicodeEncodeError:
        encodable = False
    if encodable:
        check_body_text({"body": body})
    else:
        with pytest.raises(InvalidRequest, match="unpaired surrogate"):
            check_body_text({"body": body})
