"""OpenAI Responses requests -> the protocol-neutral ``ChatRequest``. Pure.

What Codex sends (agents-wire.md §2): ``input`` items (messages with ``input_text`` /
``output_text`` parts, ``reasoning``, ``function_call``, ``function_call_output``,
``custom_tool_call``, ``custom_tool_call_output``, ``tool_search_call``/``_output``), the whole
history every turn (``store: false``), tools of kinds ``function``, ``custom`` (freeform, with a
Lark grammar), ``namespace``, ``tool_search`` and hosted ones (``web_search``) that RooGab cannot
run. An assistant turn arrives as several items (reasoning, message, calls); they are joined back
into the one assistant ``Message`` the turn engine recorded, so the registry's digests match.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidRequest, UnsupportedFeature
from ..wire import ChatRequest, Message, ToolCallRef, ToolSpec, check_body_text, check_schema, forced_tool

__all__ = ["REASONING_PREFIX", "Lookup", "opaque_reasoning", "parse_responses_request"]

REASONING_PREFIX = "roogab-v1."
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
ASSISTANT_ITEMS = ("function_call", "custom_tool_call", "tool_search_call", "reasoning")
OUTPUT_ITEMS = ("function_call_output", "custom_tool_call_output", "tool_search_output")
# Hosted tools: OpenAI runs them on its side; a chat service behind RooGab cannot.
HOSTED = ("web_search", "web_search_preview", "file_search", "computer_use_preview", "computer_use",
          "code_interpreter", "image_generation", "mcp", "local_shell", "shell")

Lookup = Callable[[str], "tuple[Message, ...] | None"]


def opaque_reasoning(text: str) -> str:
    """RooGab's own ``encrypted_content`` for a reasoning item: the summary, marked as ours."""
    return REASONING_PREFIX + base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


def parse_responses_request(body: object, *, lookup: Lookup | None = None,
                            session: str = "") -> ChatRequest:
    """Validate a decoded ``POST /v1/responses`` body and return the neutral request.

    *lookup* finds the conversation a ``previous_response_id`` names (None: not known);
    *session* is the client's session header, used as the affinity key when the body has no
    ``prompt_cache_key``.

    Raises:
        InvalidRequest: a field is missing or malformed, or ``previous_response_id`` is unknown.
        UnsupportedFeature: an option RooGab cannot honour (``background``, audio ...).
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", param=None)
    check_body_text(body)
    _check_unsupported(body)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    for key in ("temperature", "top_p", "max_output_tokens"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidRequest(f"'{key}' must be a number", param=key)
    stream = body.get("stream")
    stream = False if stream is None else stream  # "boolean or null" in OpenAI's reference
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be of type bool", param="stream")
    earlier = _previous(body.get("previous_response_id"), lookup)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("'instructions' must be a string", param="instructions")
    items = _input_items(body.get("input"))
    tools, unavailable = _tools(body.get("tools"), where="tools")
    messages, found = _messages(items)
    extra = tuple(t for t in found if t.name not in {s.name for s in tools})
    system = (Message("system", instructions),) if instructions and instructions.strip() else ()
    all_messages = (*system, *earlier, *messages)
    if not all_messages:
        raise InvalidRequest("'input' must hold at least one message", param="input")
    affinity = body.get("prompt_cache_key")
    choice = body.get("tool_choice")
    named = choice.get("name") if isinstance(choice, dict) and choice.get("type") == "function" else None
    return ChatRequest(
        model=model.strip(), messages=all_messages, tools=tools + extra, stream=stream,
        include_usage=stream, tool_choice=_tool_choice(choice), protocol="responses",
        forced_tool=forced_tool(named if isinstance(named, str) and named else None, tools + extra, unavailable),
        affinity=affinity if isinstance(affinity, str) and affinity else session or None,
        unavailable=unavailable, include=_include(body.get("include")), json_schema=_text_format(body.get("text")))


def _text_format(text: object) -> dict[str, Any] | None:
    """``text.format`` of type ``json_schema`` (``codex exec --output-schema``): its schema,
    checked as tool schemas are (the answer is fitted to it)."""
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None or isinstance(fmt, dict) and fmt.get("type") in ("text", None):
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        raise InvalidRequest("'text.format' must be text, json_object or json_schema", param="text.format")
    if fmt["type"] == "json_object":
        return {"type": "object"}
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest("'text.format.schema' must be an object", param="text.format.schema")
    check_schema(schema, "text.format.schema")
    return schema


def _include(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise InvalidRequest("'include' must be an array of strings", param="include")
    return tuple(raw)


def _check_unsupported(body: Mapping[str, Any]) -> None:
    if body.get("background"):
        raise UnsupportedFeature("'background' responses are not supported: RooGab answers while "
                                 "the chat service replies", param="background")
    if body.get("conversation") is not None:
        raise UnsupportedFeature("'conversation' objects are not supported: send the whole "
                                 "conversation in 'input' (store: false)", param="conversation")
    if body.get("n") not in (None, 1):
        raise UnsupportedFeature("'n' greater than 1 is not supported: a chat service gives one answer",
                                 param="n")


def _previous(response_id: object, lookup: Lookup | None) -> tuple[Message, ...]:
    if response_id is None:
        return ()
    if not isinstance(response_id, str) or not response_id:
        raise InvalidRequest("'previous_response_id' must be a non-empty string", param="previous_response_id")
    earlier = lookup(response_id) if lookup is not None else None
    if earlier is None:
        raise InvalidRequest(f"previous_response_id '{response_id[:64]}' is not known to this RooGab "
                             "(it keeps recent responses in memory only): send the whole conversation "
                             "in 'input' with store: false, as Codex does", param="previous_response_id")
    return earlier


def _input_items(raw: object) -> list[tuple[str, dict[str, Any]]]:
    if isinstance(raw, str):
        return [("input", {"type": "message", "role": "user", "content": raw})]
    if not isinstance(raw, list):
        raise InvalidRequest("'input' must be a string or an array of items", param="input")
    items = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{where}' must be an object", param=where)
        kind = item.get("type", "message")
        if kind == "item_reference":
            if str(item.get("id", "")).startswith("rs_"):
                continue  # a reasoning item of ours (the AI SDK refers to them when store is on)
            raise InvalidRequest(f"'{where}': item_reference needs stored items, which RooGab does not "
                                 "keep; send the items themselves (store: false)", param=where)
        items.append((where, item))
    return items


def _messages(items: list[tuple[str, dict[str, Any]]]) -> tuple[tuple[Message, ...], list[ToolSpec]]:
    """The items as messages; one assistant turn's items make one assistant message."""
    messages: list[Message] = []
    found: list[ToolSpec] = []
    turn: list[tuple[str, dict[str, Any]]] = []
    for where, item in items:
        kind = item.get("type", "message")
        if kind in ASSISTANT_ITEMS or kind == "message" and item.get("role") == "assistant":
            turn.append((where, item))
            continue
        if turn:
            messages += _assistant(turn)
            turn = []
        if kind == "message":
            messages.append(_input_message(where, item))
        elif kind in OUTPUT_ITEMS:
            messages.append(_output(where, item, found))
        else:
            raise InvalidRequest(f"'{where}.type' {str(kind)[:40]!r} is not an input item RooGab takes",
                                 param=f"{where}.type")
    if turn:
        messages += _assistant(turn)
    return tuple(messages), found


def _input_message(where: str, item: dict[str, Any]) -> Message:
    role = item.get("role")
    if role not in ("system", "developer", "user"):
        raise InvalidRequest(f"'{where}.role' must be one of system, developer, user, assistant",
                             param=f"{where}.role")
    text, images = _content(where, item.get("content"), "\n\n")
    return Message(role=role, content=text, images=images)


def _content(where: str, raw: object, joiner: str) -> tuple[str, int]:
    if isinstance(raw, str):
        return raw, 0
    if not isinstance(raw, list):
        raise InvalidRequest(f"'{where}.content' must be a string or an array of parts",
                             param=f"{where}.content")
    texts: list[str] = []
    images = 0
    for j, part in enumerate(raw):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        elif kind in ("input_image", "input_file"):
            images += 1
        else:
            raise InvalidRequest(f"'{where}.content[{j}]' must be a text, image or file part",
                                 param=f"{where}.content[{j}]")
    return joiner.join(texts), images


def _assistant(turn: list[tuple[str, dict[str, Any]]]) -> list[Message]:
    texts: list[str] = []
    calls: list[ToolCallRef] = []
    for where, item in turn:
        kind = item.get("type", "message")
        if kind == "message":
            texts.append(_content(where, item.get("content"), "")[0])
        elif kind != "reasoning":
            calls.append(_call(where, kind, item))
    if not texts and not calls:
        return []  # reasoning alone: nothing the chat service has to see
    return [Message(role="assistant", content="".join(texts), tool_calls=tuple(calls))]


def _call(where: str, kind: str, item: dict[str, Any]) -> ToolCallRef:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"'{where}.call_id' is required", param=f"{where}.call_id")
    if kind == "tool_search_call":
        arguments = item.get("arguments") or {}
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        return ToolCallRef(call_id, "tool_search", text)
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"'{where}.name' is required", param=f"{where}.name")
    namespace = item.get("namespace")
    if isinstance(namespace, str) and namespace:
        name = f"{namespace}.{name}"
    if kind == "custom_tool_call":
        raw = item.get("input")
        if not isinstance(raw, str):
            raise InvalidRequest(f"'{where}.input' must be a string", param=f"{where}.input")
        return ToolCallRef(call_id, name, json.dumps({"input": raw}, ensure_ascii=False))
    arguments = item.get("arguments", "")
    if not isinstance(arguments, str):
        raise InvalidRequest(f"'{where}.arguments' must be a JSON string", param=f"{where}.arguments")
    return ToolCallRef(call_id, name, arguments)


def _output(where: str, item: dict[str, Any], found: list[ToolSpec]) -> Message:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"'{where}.call_id' is required", param=f"{where}.call_id")
    if item.get("type") == "tool_search_output":
        tools, _ = _tools(item.get("tools") or [], where=f"{where}.tools")
        found.extend(tools)
        names = ", ".join(t.name for t in tools) or "none"
        return Message(role="tool", content=f"Tools found and now available: {names}", tool_call_id=call_id)
    output = item.get("output", "")
    if isinstance(output, str):
        text, images = output, 0
    else:
        text, images = _content(where, output, "\n\n")
    return Message(role="tool", content=text, images=images, tool_call_id=call_id)


def _tools(raw: object, *, where: str) -> tuple[tuple[ToolSpec, ...], tuple[str, ...]]:
    """The tools RooGab can offer the model, and the names of those it cannot run."""
    if raw is None:
        return (), ()
    if not isinstance(raw, list):
        raise InvalidRequest(f"'{where}' must be an array", param=where)
    specs: list[ToolSpec] = []
    unavailable: list[str] = []
    for i, tool in enumerate(raw):
        at = f"{where}[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or not isinstance(kind, str):
            raise InvalidRequest(f"'{at}' must be a tool object with a 'type'", param=at)
        if kind == "function":
            specs.append(_function(at, tool, ""))
        elif kind == "custom":
            specs.append(_custom(at, tool))
        elif kind == "namespace":
            specs += _namespace(at, tool)
        elif kind == "tool_search" and tool.get("execution", "client") == "client":
            params = _schema(at, tool.get("parameters"))
            specs.append(ToolSpec("tool_search", str(tool.get("description") or ""), params, kind="tool_search"))
        else:
            unavailable.append(kind if kind != "tool_search" else "tool_search (server-executed)")
    return tuple(specs), tuple(unavailable)


def _function(at: str, tool: dict[str, Any], namespace: str) -> ToolSpec:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"'{at}.name' is required", param=f"{at}.name")
    params = _schema(at, tool.get("parameters"))
    full = f"{namespace}.{name}" if namespace else name
    return ToolSpec(full, str(tool.get("description") or ""), params, namespace=namespace)


def _schema(at: str, params: object) -> dict[str, Any]:
    if params is None:
        return dict(EMPTY_SCHEMA)
    if not isinstance(params, dict):
        raise InvalidRequest(f"'{at}.parameters' must be an object", param=f"{at}.parameters")
    check_schema(params, f"{at}.parameters")
    return params


def _custom(at: str, tool: dict[str, Any]) -> ToolSpec:
    """A freeform tool, offered as one string argument ``input`` that holds the raw text."""
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"'{at}.name' is required", param=f"{at}.name")
    raw_format = tool.get("format")
    fmt: dict[str, Any] = raw_format if isinstance(raw_format, dict) else {}
    about = "The raw input, exactly as the tool reads it (not JSON): put it in a long bracket string."
    if fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        about += f" It must match this {fmt.get('syntax', 'lark')} grammar:\n{fmt['definition']}"
    schema = {"type": "object", "properties": {"input": {"type": "string", "description": about}},
              "required": ["input"]}
    return ToolSpec(name, str(tool.get("description") or ""), schema, kind="custom")


def _namespace(at: str, tool: dict[str, Any]) -> list[ToolSpec]:
    name = tool.get("name")
    inner = tool.get("tools")
    if not isinstance(name, str) or not name or not isinstance(inner, list):
        raise InvalidRequest(f"'{at}' must be a namespace with a 'name' and 'tools'", param=at)
    specs = []
    for j, sub in enumerate(inner):
        if not isinstance(sub, dict) or sub.get("type", "function") != "function":
            raise InvalidRequest(f"'{at}.tools[{j}]' must be a function tool", param=f"{at}.tools[{j}]")
        specs.append(_function(f"{at}.tools[{j}]", sub, name))
    return specs


def _tool_choice(raw: object) -> str:
    if raw is None:
        return "auto"
    if raw in ("auto", "none", "required"):
        return str(raw)
    if isinstance(raw, dict):
        if raw.get("type") == "allowed_tools":
            return "required" if raw.get("mode") == "required" else "auto"
        if raw.get("type") in ("function", "custom", "tool_search"):
            return "required"
    raise InvalidRequest("'tool_choice' must be auto, none, required or a tool", param="tool_choice")
