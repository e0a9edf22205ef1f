"""The per-client body prefix cache (roogab/body_prefix.py): decoding a body from a kept prefix
gives exactly what decoding it whole gives (the same body, the same error), for growing, edited,
truncated and broken bodies; and a chat request parsed with the kept messages is the same request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roogab.body_prefix import BodyCache, decode_body
from roogab.errors import RequestError
from roogab.protocols import PROTOCOLS
from roogab.wire import parse_chat_request

CHAT = PROTOCOLS["/chat/completions"]

scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) \
    | st.text(max_size=6)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
texts = st.text(max_size=12) | st.sampled_from(["hé", "日本", "\ud800", "a\\\"b", "😀", "]},{"])
call = st.fixed_dictionaries({"id": st.text(max_size=4), "type": st.just("function"),
                              "function": st.fixed_dictionaries({"name": st.sampled_from(["ls", "read"]),
                                                                 "arguments": st.sampled_from(["{}", '{"a":1}'])})})
chat_message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]), "content": texts}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": texts | st.none()},
                          optional={"tool_calls": st.lists(call, max_size=2)}),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": st.text(max_size=4), "content": texts}),
    st.fixed_dictionaries({"role": st.just("user"),
                           "content": st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
                                               min_size=1, max_size=2)}),
)
message = chat_message | values  # now and then an element no chat message is, or any JSON value
tools = st.sampled_from([None, [], [{"type": "function", "function": {"name": "ls", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}}}}], "bad"])
styles = st.sampled_from([{}, {"separators": (",", ":")}, {"indent": 1}, {"ensure_ascii": False},
                          {"ensure_ascii": False, "separators": (",", ":")}])

edits = st.one_of(
    st.tuples(st.just("append"), st.lists(message, min_size=1, max_size=3)),
    st.tuples(st.just("edit"), st.integers(0, 50), message),
    st.tuples(st.just("truncate"), st.integers(0, 50)),
    st.tuples(st.just("model"), st.sampled_from(["m", "gab-1", "", 5])),
    st.tuples(st.just("tools"), tools),
    st.tuples(st.just("style"), styles),
    st.tuples(st.just("extra"), st.sampled_from(["stream", "temperature", "messages", "model", "x"]), values,
              st.booleans()),
    st.tuples(st.just("deep"), st.integers(1, 12)),
    st.tuples(st.just("deep extra"), st.integers(1, 8), st.booleans()),
    st.tuples(st.just("drop extra"), st.integers(0, 5)),
    # byte-level changes of the body just sent: prefix matches, structure differs
    st.tuples(st.just("cut"), st.integers(0, 10**6)),
    st.tuples(st.just("byte"), st.integers(0, 10**6), st.sampled_from([b"\xff", b"\xc3", b"}", b"]", b",", b'"',
                                                                           b" ", b"1", b"\\", b"{", b"[", b"\x00"])),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from([b",", b"]", b"}", b' "messages": []',
                                                                           b"x", b"1", b"\n", b"\xe2\x82"])),
)


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except RequestError as exc:
        return "error", (type(exc).__name__, str(exc), exc.param)


def _parsed_whole(raw: bytes, depth: int) -> tuple[str, Any]:
    body = decode_body(raw, depth)
    return repr(body), parse_chat_request(body)


def _parsed_kept(cache: BodyCache, raw: bytes, depth: int) -> tuple[str, Any]:
    body, turn = cache.parse_turn("client", raw, depth, CHAT, {})
    return repr(body), turn


def _nested(depth: int) -> Any:
    nested: Any = "x"
    for _ in range(depth):
        nested = [nested]
    return nested


def _bodies(start: list[Any], steps: list[Any]) -> list[bytes]:
    """The bodies of a session: each step changes the request (or the bytes just sent)."""
    state: dict[str, Any] = {"model": "gab-1", "messages": list(start)}
    style: dict[str, Any] = {}
    extra: list[tuple[str, Any]] = []
    out: list[bytes] = []
    for step in steps:
        kind, *args = step
        raw: bytes | None = None
        if kind == "append":
            state["messages"] = state["messages"] + args[0]
        elif kind == "edit" and state["messages"]:
            state["messages"] = list(state["messages"])
            state["messages"][args[0] % len(state["messages"])] = args[1]
        elif kind == "truncate":
            state["messages"] = state["messages"][:args[0]]
        elif kind == "model":
            state["model"] = args[0]
        elif kind == "tools":
            state["tools"] = args[0]
        elif kind == "style":
            style = args[0]
        elif kind == "extra":
            extra.append((args[0], args[1], args[2]))
        elif kind == "deep extra":
            extra.append(("x", _nested(args[0]), args[1]))
        elif kind == "drop extra" and extra:
            del extra[args[0] % len(extra)]
        elif kind == "deep":
            state["messages"] = state["messages"] + [{"role": "user", "content": "d", "deep": _nested(args[0])}]
        elif out and kind in ("cut", "byte", "insert"):
            last = out[-1]
            at = args[0] % (len(last) + 1)
            if kind == "cut":
                raw = last[:at]
            elif kind == "byte":
                raw = last[:at] + args[1] + last[at + 1:]
            else:
                raw = last[:at] + args[1] + last[at:]
        if raw is None:
            raw = json.dumps(state, **style).encode("utf-8", "surrogatepass")
            # members before and after the history, duplicates among them (json.loads keeps the last)
            head = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v, before in extra if before)
            tail = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v, before in extra if not before)
            if head:
                raw = b"{" + head.encode() + b", " + raw[1:]
            if tail:
                raw = raw[:-1] + b", " + tail.encode() + b"}"
        out.append(raw)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.lists(chat_message, max_size=4), steps=st.lists(edits, min_size=1, max_size=12),
       depth=st.sampled_from([3, 4, 6, 64]))
def test_a_kept_prefix_decodes_as_the_whole_body(start: list[Any], steps: list[Any], depth: int) -> None:
    cache = BodyCache()
    for raw in _bodies(start, steps):
        whole = _outcome(decode_body, raw, depth)
        decoded = _outcome(cache.decode, "client", raw, depth, "messages")
        if whole[0] == "ok":
            assert decoded[0] == "ok", decoded
            assert repr(decoded[1].body) == repr(whole[1])  # types, order and values alike
            cache.keep("client", raw, decoded[1], None)
        else:
            assert decoded == whole


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.lists(chat_message, max_size=4), steps=st.lists(edits, min_size=1, max_size=12),
       depth=st.sampled_from([3, 5, 64]))
def test_a_chat_request_parsed_from_a_kept_prefix_is_the_same(start: list[Any], steps: list[Any],
                                                              depth: int) -> None:
    cache = BodyCache()
    for raw in _bodies(start, steps):
        assert _outcome(_parsed_kept, cache, raw, depth) == _outcome(_parsed_whole, raw, depth)


def _chat_body(n: int, **extra: Any) -> bytes:
    messages = [{"role": "system", "content": "be brief"}]
    for i in range(n):
        messages += [{"role": "user", "content": f"question {i} é"}, {"role": "assistant", "content": f"answer {i}"}]
    return json.dumps({"model": "gab-1", "messages": messages, **extra}).encode()


def test_the_next_turn_reuses_every_element_of_the_last() -> None:
    cache = BodyCache()
    cache.parse_turn("c", _chat_body(3), 64, CHAT, {})
    assert (cache.hits, cache.misses) == (0, 1)
    _, turn = cache.parse_turn("c", _chat_body(4), 64, CHAT, {})
    assert (cache.hits, cache.reused) == (1, 7)
    assert turn == parse_chat_request(json.loads(_chat_body(4)))


def test_clients_and_protocols_do_not_share_bodies() -> None:
    cache = BodyCache()
    cache.parse_turn("a", _chat_body(3), 64, CHAT, {})
    cache.parse_turn("b", _chat_body(4), 64, CHAT, {})
    cache.decode(("a", "messages"), _chat_body(4), 64, "messages")
    assert cache.hits == 0


def test_parallel_tasks_of_one_client_each_keep_their_prefix() -> None:
    cache = BodyCache()

    def task(name: str, n: int) -> bytes:
        body = json.loads(_chat_body(n))
        body["messages"][1]["content"] = name  # the same system prompt, another task
        return json.dumps(body).encode()

    reused = []
    for n in range(1, 4):
        for name in ("task one", "task two"):
            before = cache.reused
            cache.parse_turn("c", task(name, n), 64, CHAT, {})
            reused.append(cache.reused - before)
    assert reused == [0, 1, 3, 3, 5, 5]  # each turn takes over its own task's whole last body


def test_an_error_in_a_reused_body_is_the_whole_parse_error() -> None:
    cache = BodyCache()
    cache.parse_turn("c", _chat_body(2), 64, CHAT, {})
    bad = json.loads(_chat_body(3))
    bad["messages"][-1]["role"] = "robot"
    bad["messages"][-2]["content"] = "\ud800"  # two problems: the whole parse names the surrogate first
    raw = json.dumps(bad).encode()
    with pytest.raises(RequestError) as whole:
        parse_chat_request(decode_body(raw, 64))
    with pytest.raises(RequestError) as kept:
        cache.parse_turn("c", raw, 64, CHAT, {})
    assert (str(kept.value), kept.value.param) == (str(whole.value), whole.value.param)
    assert cache.hits == 1


@pytest.mark.parametrize(("first", "second", "hits"), [
    # a deep value a later duplicate key replaces is no error; the same value left alone is one
    (b'{"x": [[[[1]]]], "messages": [{"role": "user", "content": "a"}], "x": 1}',
     b'{"x": [[[[1]]]], "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}', 0),
    (b'{"messages": [{"role": "user", "content": "a"}]}',
     b'{"messages": [{"role": "user", "content": "a"}], "x": [[[[1]]]], "x": 1}', 1),
])
def test_the_depth_bound_holds_for_the_values_a_body_keeps(first: bytes, second: bytes, hits: int) -> None:
    cache = BodyCache()
    for raw in (first, second):
        whole = _outcome(decode_body, raw, 4)
        decoded = _outcome(cache.decode, "c", raw, 4, "messages")
        assert (decoded[0], repr(decoded[1].body) if decoded[0] == "ok" else decoded[1]) == \
            (whole[0], repr(whole[1]) if whole[0] == "ok" else whole[1])
        if decoded[0] == "ok":
            cache.keep("c", raw, decoded[1], None)
    assert cache.hits == hits


def test_bodies_over_the_bounds_are_not_kept() -> None:
    cache = BodyCache(budget=3000, max_body=2000)
    cache.parse_turn("c", _chat_body(60), 64, CHAT, {})
    assert cache.held == 0
    for client in "abcdef":
        cache.parse_turn(client, _chat_body(5), 64, CHAT, {})
    assert 0 < cache.held <= 3000
