"""Anthropic Messages (``POST /v1/messages``, Claude Code): request parsing and answer rendering. Pure.

``parse_request`` turns a Messages body into the protocol-neutral ``ChatRequest``: ``system``
(a string or text blocks) and ``role: "system"`` messages anywhere in ``messages`` become system
messages; a user message's ``tool_result`` blocks become tool messages (in the order sent, with
``is_error``), its text and image blocks a user message; an assistant message's ``tool_use``
blocks its tool calls and its ``thinking`` blocks its reasoning. ``cache_control`` is ignored
everywhere. ``MessagesStream`` renders a turn's ``Out`` items as the SSE events Claude Code
accepts (agents-wire.md §1.4), ``message_json`` the non-streaming answer, ``error_response`` the
error body with the status Claude Code's retry loop expects (§1.6).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest, RooGabError
from ..outputs import CallOut, Finished, Out, Ping, ReasoningOut, TextOut
from ..render import arguments_json
from ..wire import ChatRequest, Message, Thinking, ToolCallRef, ToolSpec, check_body_text, check_schema
from ..structured import fit_json

__all__ = ["MessagesStream", "count_texts", "error_response", "message_json", "parse_request"]

SESSION_HEADER = "X-Claude-Code-Session-Id"
BILLING_PREFIX = "x-anthropic-billing-header:"  # Claude Code's usage tag, not an instruction
STOP_REASONS = {"tool_calls": "tool_use", "stop": "end_turn", "length": "max_tokens"}
JSON_PIECE = 512  # input_json_delta pieces: what one frame carries of a tool call's input
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
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    messages = _system(body.get("system")) + _messages(body.get("messages"))
    return ChatRequest(
        model=model.strip(), messages=messages, tools=_tools(body.get("tools"), _referenced(body)),
        stream=stream and not count_only, tool_choice=_tool_choice(body.get("tool_choice")),
        json_schema=_json_schema(body), affinity=_affinity(headers or {}, body), protocol="messages")


def count_texts(request: ChatRequest) -> list[str]:
    """What ``count_tokens`` counts: every message's text and each tool's definition."""
    texts = [m.content for m in request.messages]
    texts += [json.dumps(m.tool_calls and [[c.name, c.arguments] for c in m.tool_calls])
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


def _tool_choice(raw: object) -> str:
    if raw is None:
        return "auto"
    kind = raw.get("type") if isinstance(raw, dict) else None
    choices = {"auto": "auto", "none": "none", "any": "required", "tool": "required"}
    if kind not in choices:
        raise InvalidRequest("'tool_choice.type' must be auto, any, tool or none", param="tool_choice")
    return choices[str(kind)]


def _json_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """``output_config.format`` (or the older ``output_format``) of type ``json_schema``."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else body.get("output_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise InvalidRequest("'output_config.format' must be {\"type\": \"json_schema\", \"schema\": {...}}",
                             param="output_config.format")
    schema: dict[str, Any] = fmt["schema"]
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
    except ValueError:
        return None
    session = parsed.get("session_id") if isinstance(parsed, dict) else None
    return "claude-code:" + session if isinstance(session, str) and session else None


def signature(text: str) -> str:
    """An opaque signature for a thinking block (the client echoes it; RooGab never checks it)."""
    return base64.b64encode(b"roogab:" + hashlib.sha256(text.encode()).digest()[:12]).decode()


def error_response(exc: RooGabError) -> tuple[int, dict[str, Any]]:
    """``(status, body)`` in Anthropic's error shape. A chat service that is busy, down, slow or
    refusing is ``overloaded_error`` 529; Claude Code retries 529 and 500 with backoff, not 400."""
    status, kind = _anthropic_error(exc)
    return status, {"type": "error", "error": {"type": kind, "message": str(exc)}}


def _anthropic_error(exc: RooGabError) -> tuple[int, str]:
    code = exc.status
    if code == 401:
        return 401, "authentication_error"
    if code == 403:
        return 403, "permission_error"
    if code == 404:
        return 404, "not_found_error"
    if code == 413:
        return 413, "request_too_large"
    if 400 <= code < 500:
        return code, "invalid_request_error"
    if code in (503, 504) or exc.code == "provider_rejected":
        return 529, "overloaded_error"
    return 500, "api_error"


def _usage(finished: Finished) -> dict[str, int]:
    return {"input_tokens": finished.usage.prompt_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": finished.usage.completion_tokens}


def message_json(message_id: str, model: str, items: Iterable[Out],
                 schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole non-streaming ``message`` for a turn's items."""
    items = list(items)
    thinking = "".join(i.text for i in items if isinstance(i, ReasoningOut))
    text = "".join(i.text for i in items if isinstance(i, TextOut))
    finished = next((i for i in items if isinstance(i, Finished)), None)
    content: list[dict[str, Any]] = []
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": signature(thinking)})
    if text or schema is not None:
        content.append({"type": "text", "text": fit_json(text, schema) if schema is not None else text})
    content += [{"type": "tool_use", "id": c.id, "name": c.call.name, "input": c.call.arguments}
                for c in items if isinstance(c, CallOut)]
    stop = STOP_REASONS.get(finished.finish_reason, "end_turn") if finished else "end_turn"
    usage = _usage(finished) if finished else {"input_tokens": 0, "output_tokens": 0}
    return {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": None, "usage": usage}


def event(kind: str, data: Mapping[str, Any]) -> str:
    """One SSE frame; Claude Code reads only frames with an ``event:`` line."""
    payload = json.dumps({"type": kind, **data}, ensure_ascii=False, separators=(",", ":"))
    return f"event: {kind}\ndata: {payload}\n\n"


@dataclass
class MessagesStream:
    """Out items -> Anthropic stream events, one content block per text, thinking or tool_use run.

    ``start()`` opens the message; ``feed(item)`` returns the frames for one item (``Finished``
    closes the message); ``fail(exc)`` the ``error`` event for a turn that failed mid-stream.
    With a *schema* the text is held back and sent whole at the end, as JSON that fits it.
    """

    message_id: str
    model: str
    input_tokens: int = 0
    schema: dict[str, Any] | None = None
    index: int = -1
    open_kind: str | None = None
    thinking: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)

    def start(self) -> list[str]:
        """``message_start`` and a first ``ping``."""
        usage = {"input_tokens": self.input_tokens, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0, "output_tokens": 1}
        message = {"id": self.message_id, "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        return [event("message_start", {"message": message}), event("ping", {})]

    def feed(self, item: Out) -> list[str]:
        """The frames for one item."""
        if isinstance(item, Ping):
            return [event("ping", {})]
        if isinstance(item, TextOut):
            if self.schema is not None:
                self.held.append(item.text)
                return []
            return self._open("text") + [self._delta({"type": "text_delta", "text": item.text})]
        if isinstance(item, ReasoningOut):
            self.thinking.append(item.text)
            return self._open("thinking") + [self._delta({"type": "thinking_delta", "thinking": item.text})]
        if isinstance(item, CallOut):
            return self._close() + self._tool_use(item)
        return self._finish(item)

    def fail(self, exc: RooGabError) -> list[str]:
        """The ``error`` event: Claude Code asks again without streaming; no block is left half open
        as a complete one (an open tool block never exists: calls are sent whole)."""
        return [event("error", {"error": error_response(exc)[1]["error"]})]

    def _finish(self, finished: Finished) -> list[str]:
        frames = self._close()
        if self.schema is not None:
            frames += self._open("text") + [self._delta({"type": "text_delta",
                                                          "text": fit_json("".join(self.held), self.schema)})]
            frames += self._close()
        delta = {"stop_reason": STOP_REASONS.get(finished.finish_reason, "end_turn"), "stop_sequence": None}
        frames.append(event("message_delta", {"delta": delta, "usage": _usage(finished)}))
        frames.append(event("message_stop", {}))
        return frames

    def _tool_use(self, call: CallOut) -> list[str]:
        self.index += 1
        block = {"type": "tool_use", "id": call.id, "name": call.call.name, "input": {}}
        frames = [event("content_block_start", {"index": self.index, "content_block": block})]
        arguments = arguments_json(call.call)
        for at in range(0, len(arguments), JSON_PIECE):
            frames.append(self._delta({"type": "input_json_delta", "partial_json": arguments[at:at + JSON_PIECE]}))
        frames.append(event("content_block_stop", {"index": self.index}))
        return frames

    def _open(self, kind: str) -> list[str]:
        if self.open_kind == kind:
            return []
        frames = self._close()
        self.index += 1
        self.open_kind = kind
        block = {"type": "text", "text": ""} if kind == "text" else \
            {"type": "thinking", "thinking": "", "signature": ""}
        return frames + [event("content_block_start", {"index": self.index, "content_block": block})]

    def _close(self) -> list[str]:
        if self.open_kind is None:
            return []
        frames = []
        if self.open_kind == "thinking":
            frames.append(self._delta({"type": "signature_delta", "signature": signature("".join(self.thinking))}))
            self.thinking.clear()
        self.open_kind = None
        return frames + [event("content_block_stop", {"index": self.index})]

    def _delta(self, delta: dict[str, Any]) -> str:
        return event("content_block_delta", {"index": self.index, "delta": delta})
