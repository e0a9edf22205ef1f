"""Anthropic Messages requests -> the protocol-neutral ``ChatRequest``. Pure.

``system`` (a string or text blocks, Claude Code's billing tag left out) and ``role: "system"``
messages anywhere in ``messages`` become system messages; a user message's ``tool_result`` blocks
become tool messages (in the order sent, with ``is_error``; ``tool_reference`` blocks as a line of
text), its text and image blocks a user message; an assistant message's ``tool_use`` blocks its
tool calls and its ``thinking`` blocks its reasoning. ``cache_control`` is ignored everywhere.
Deferred tools are offered once a tool search has loaded them; server tools are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequest
from ..wire import (
    ChatRequest,
    Message,
    Thinking,
    ToolCallRef,
    ToolSpec,
    check_body_text,
    check_schema,
    forced_tool,
)

__all__ = ["count_texts", "parse_request"]

SESSION_HEADER = "x-claude-code-session-id"  # header names arrive lower-cased
BILLING_PREFIX = "x-anthropic-billing-header:"  # Claude Code's usage tag, not an instruction
ROLES = ("user", "assistant", "system")


def parse_request(body: object, headers: Mapping[str, str] | None = None, *,
                  count_only: bool = False) -> ChatRequest:
    """Validate a Messages body (or a ``count_tokens`` one with *count_only*).

    Raises:
        InvalidRequest: a field is missing or has the wrong shape; ``param`` names it.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", param=None)
    check_body_text(body)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    if not count_only:
        _check_numbers(body)
    stream = body.get("stream")
    stream = False if stream is None else stream  # null: not streamed, as on chat completions
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    messages = _system(body.get("system")) + _messages(body.get("messages"))
    tools = _tools(body.get("tools"), _referenced(body))
    choice = body.get("tool_choice")
    named = choice.get("name") if isinstance(choice, dict) and choice.get("type") == "tool" else None
    return ChatRequest(
        model=model.strip(), messages=messages, tools=tools,
        stream=stream and not count_only, tool_choice=_tool_choice(choice),
        forced_tool=forced_tool(named if isinstance(named, str) and named else None, tools, _names(body.get("tools"))),
        json_schema=_json_schema(body), affinity=_affinity(headers or {}, body), protocol="messages")


def count_texts(request: ChatRequest) -> list[str]:
    """What ``count_tokens`` counts: every message's text and each tool's definition."""
    texts = [m.content for m in request.messages]
    texts += [json.dumps([[c.name, c.arguments] for c in m.tool_calls], ensure_ascii=False)
              for m in request.messages if m.tool_calls]
    texts += [json.dumps([t.name, t.description, t.parameters], ensure_ascii=False) for t in request.tools]
    return [t for t in texts if t]


def _check_numbers(body: Mapping[str, Any]) -> None:
    for key in ("max_tokens", "temperature", "top_p", "top_k"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidRequest(f"'{key}' must be a number", param=key)
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise InvalidRequest("'stop_sequences' must be an array of strings", param="stop_sequences")


def _system(raw: object) -> tuple[Message, ...]:
    if raw is None:
        return ()
    text = _text_only("system", raw)
    return (Message(role="system", content=text),) if text else ()


def _text_only(where: str, raw: object) -> str:
    """A system prompt: a string or a list of text blocks (Claude Code's billing tag left out)."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise InvalidRequest(f"'{where}' must be a string or an array of text blocks", param=where)
    texts = []
    for j, block in enumerate(raw):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise InvalidRequest(f"'{where}[{j}]' must be a text block", param=f"{where}[{j}]")
        if not block["text"].startswith(BILLING_PREFIX):
            texts.append(block["text"])
    return "\n\n".join(texts)


def _messages(raw: object) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    out: list[Message] = []
    for i, message in enumerate(raw):
        out += _message(f"messages[{i}]", message)
    return tuple(out)


def _message(where: str, raw: object) -> list[Message]:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"'{where}' must be an object", param=where)
    role = raw.get("role")
    if role not in ROLES:
        raise InvalidRequest(f"'{where}.role' must be one of {', '.join(ROLES)}", param=f"{where}.role")
    content = raw.get("content")
    if role == "system":
        return [Message(role="system", content=_text_only(f"{where}.content", content))]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list):
        raise InvalidRequest(f"'{where}.content' must be a string or an array of content blocks",
                             param=f"{where}.content")
    if role == "assistant":
        return [_assistant(where, blocks)]
    return _user(where, blocks)


def _assistant(where: str, blocks: list[Any]) -> Message:
    """Text blocks join without a separator: RooGab's own answers come back split where a tool
    block interrupted the text, and must mean what RooGab recorded."""
    texts: list[str] = []
    calls: list[ToolCallRef] = []
    thinking: list[Thinking] = []
    for j, block in enumerate(blocks):
        at, kind = f"{where}.content[{j}]", _kind(f"{where}.content[{j}]", block)
        if kind == "text":
            texts.append(_string(at, block, "text"))
        elif kind == "tool_use":
            calls.append(_tool_use(at, block))
        elif kind == "thinking":
            thinking.append(Thinking(_string(at, block, "thinking"), str(block.get("signature") or "")))
        elif kind != "redacted_thinking":
            raise InvalidRequest(f"'{at}' must be a text, tool_use or thinking block", param=at)
    return Message(role="assistant", content="".join(texts), tool_calls=tuple(calls), thinking=tuple(thinking))


def _tool_use(at: str, block: Mapping[str, Any]) -> ToolCallRef:
    call_id, name = _string(at, block, "id"), _string(at, block, "name")
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"'{at}.input' must be an object", param=f"{at}.input")
    return ToolCallRef(id=call_id, name=name, arguments=json.dumps(arguments, ensure_ascii=False))


def _user(where: str, blocks: list[Any]) -> list[Message]:
    """Tool results become tool messages in the order sent (Claude Code sends them in completion
    order: they are matched by id); runs of other blocks become user messages between them."""
    out: list[Message] = []
    texts: list[str] = []
    images = 0
    for j, block in enumerate(blocks):
        at, kind = f"{where}.content[{j}]", _kind(f"{where}.content[{j}]", block)
        if kind == "tool_result":
            if texts or images:
                out.append(Message(role="user", content="\n\n".join(texts), images=images))
                texts, images = [], 0
            out.append(_tool_result(at, block))
            continue
        text, image = _part(at, kind, block)
        texts += [text] if text else []
        images += image
    if texts or images or not out:
        out.append(Message(role="user", content="\n\n".join(texts), images=images))
    return out


def _tool_result(at: str, block: Mapping[str, Any]) -> Message:
    call_id = _string(at, block, "tool_use_id")
    content = block.get("content", "")
    is_error = block.get("is_error", False)
    if not isinstance(is_error, bool):
        raise InvalidRequest(f"'{at}.is_error' must be a boolean", param=f"{at}.is_error")
    if isinstance(content, str):
        return Message(role="tool", content=content, tool_call_id=call_id, is_error=is_error)
    if not isinstance(content, list):
        raise InvalidRequest(f"'{at}.content' must be a string or an array of blocks", param=f"{at}.content")
    texts, images = [], 0
    for j, part in enumerate(content):
        text, image = _part(f"{at}.content[{j}]", _kind(f"{at}.content[{j}]", part), part)
        texts += [text] if text else []
        images += image
    return Message(role="tool", content="\n\n".join(texts), images=images, tool_call_id=call_id,
                   is_error=is_error)


def _part(at: str, kind: str, block: Mapping[str, Any]) -> tuple[str, int]:
    """A user or tool-result block as (text, images left out)."""
    if kind == "text":
        return _string(at, block, "text"), 0
    if kind in ("image", "document") and isinstance(block.get("source"), dict):
        source = block["source"]
        if kind == "document" and source.get("type") == "text" and isinstance(source.get("data"), str):
            return source["data"], 0
        return "", 1
    if kind == "tool_reference":  # Claude Code's ToolSearch result: the tool is now offered
        return f"Tool {_string(at, block, 'tool_name')} is now available.", 0
    if kind == "search_result" and isinstance(block.get("content"), list):
        texts = [str(c.get("text", "")) for c in block["content"] if isinstance(c, dict)]
        return "\n\n".join([str(block.get("title", "")), *texts]).strip(), 0
    raise InvalidRequest(f"'{at}' must be a text, image, document, tool_result or tool_reference block",
                         param=at)


def _kind(at: str, block: object) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise InvalidRequest(f"'{at}' must be a content block with a 'type'", param=at)
    return str(block["type"])


def _string(at: str, block: Mapping[str, Any], key: str) -> str:
    value = block.get(key)
    if not isinstance(value, str):
        raise InvalidRequest(f"'{at}.{key}' is required and must be a string", param=f"{at}.{key}")
    return value


def _referenced(body: Mapping[str, Any]) -> set[str]:
    """Tools a ``tool_reference`` block in a tool result has loaded (the client's tool search)."""
    names = set()
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            inner = block.get("content") if isinstance(block, dict) else None
            for part in inner if isinstance(inner, list) else []:
                if isinstance(part, dict) and part.get("type") == "tool_reference":
                    names.add(str(part.get("tool_name")))
    return names


def _tools(raw: object, loaded: set[str]) -> tuple[ToolSpec, ...]:
    """Client tools. Deferred ones (``defer_loading``) are offered once a tool search result
    references them; server tools (a ``type`` such as ``web_search_20250305``) RooGab cannot run."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    specs = []
    for i, tool in enumerate(raw):
        at = f"tools[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequest(f"'{at}.name' is required", param=f"{at}.name")
        deferred = tool.get("defer_loading") is True and tool["name"] not in loaded
        if deferred or tool.get("type") not in (None, "custom"):
            continue
        schema = tool.get("input_schema") or {"type": "object", "properties": {}}
        if not isinstance(schema, dict):
            raise InvalidRequest(f"'{at}.input_schema' must be an object", param=f"{at}.input_schema")
        check_schema(schema, f"{at}.input_schema")
        specs.append(ToolSpec(tool["name"], str(tool.get("description") or ""), schema))
    return tuple(specs)


def _names(raw: object) -> set[str]:
    """The names of every tool in the request (server and deferred ones too)."""
    tools = raw if isinstance(raw, list) else []
    return {t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)}


def _tool_choice(raw: object) -> str:
    if raw is None:
        return "auto"
    kind = raw.get("type") if isinstance(raw, dict) else None
    choices = {"auto": "auto", "none": "none", "any": "required", "tool": "required"}
    if not isinstance(kind, str) or kind not in choices:  # a list or object is unhashable: not a dict key
        raise InvalidRequest("'tool_choice.type' must be auto, any, tool or none", param="tool_choice")
    return choices[kind]


def _json_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """``output_config.format`` (or the older ``output_format``) of type ``json_schema``: its
    schema, checked as tool schemas are (the answer is fitted to it)."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else body.get("output_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise InvalidRequest("'output_config.format' must be {\"type\": \"json_schema\", \"schema\": {...}}",
                             param="output_config.format")
    schema: dict[str, Any] = fmt["schema"]
    check_schema(schema, ("output_config.format" if isinstance(config, dict) else "output_format") + ".schema")
    return schema


def _affinity(headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """Claude Code's session id: the header, else ``metadata.user_id``'s ``session_id``."""
    session = headers.get(SESSION_HEADER)
    if session:
        return "claude-code:" + session.strip()
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    try:
        parsed = json.loads(user_id) if isinstance(user_id, str) else None
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter recurses
        return None
    session = parsed.get("session_id") if isinstance(parsed, dict) else None
    return "claude-code:" + session if isinstance(session, str) and session else None
