"""Anthropic Messages (``POST /v1/messages``, Claude Code): agents-wire.md §1, §3.1. Pure.

Parsing is ``messages_request.parse_request``. ``MessagesStream`` renders a turn's ``Out`` items
as the SSE events Claude Code accepts (agents-wire.md §1.4): ``message_start``, one
``content_block_start``/``delta``/``stop`` triple per text, thinking (with a signature) or
tool_use block, a tool call's input as ``input_json_delta`` pieces of its final JSON (a call is
sent only once it is complete and checked), ``message_delta`` with the stop reason and usage,
``message_stop``, ``ping`` keep-alives; a failure mid-stream is an ``error`` event. The usage in
``message_start`` is 0: RooGab counts it when the turn ends and sends it in ``message_delta``,
which the SDKs apply. ``message_json`` is the non-streaming answer (Claude Code's fallback),
``error_response`` the error body with the status Claude Code's retry loop expects (§1.6).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import RooGabError
from ..outputs import Answer, CallOut, Finished, Out, Ping, ReasoningOut, TextOut
from ..render import arguments_json
from ..structured import fit_json
from ..wire import ChatRequest, Message
from .messages_request import count_texts, parse_request

if TYPE_CHECKING:
    from . import Exchange

__all__ = ["AnthropicMessages", "MessagesStream", "count_texts", "error_response", "message_json",
           "parse_request"]

log = logging.getLogger(__name__)

STOP_REASONS = {"tool_calls": "tool_use", "stop": "end_turn", "length": "max_tokens"}
JSON_PIECE = 512  # input_json_delta pieces: what one frame carries of a tool call's input


class AnthropicMessages:
    """``POST /v1/messages`` (Claude Code sends ``?beta=true``; the query changes nothing)."""

    name = "messages"
    history = "messages"
    one_message_per_element = False

    def new_id(self) -> str:
        return "msg_" + uuid.uuid4().hex[:24]

    def parse(self, body: object, headers: Mapping[str, str], known: tuple[Message, ...] = ()) -> ChatRequest:
        return parse_request(body, headers)

    def stream(self, items: Iterator[Out], request: ChatRequest, exchange: Exchange) -> Iterator[str]:
        stream = MessagesStream(exchange.id, exchange.model, schema=request.json_schema)
        try:
            yield from stream.start()
            for item in items:
                yield from stream.feed(item)
        except RooGabError as exc:
            log.warning("turn %s failed mid-stream: %s", exchange.id, exc)
            yield from stream.fail(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def complete(self, answer: Answer, request: ChatRequest, exchange: Exchange) -> dict[str, Any]:
        items: list[Out] = [ReasoningOut(answer.reasoning), TextOut(answer.text), *answer.calls, answer.finished]
        return message_json(exchange.id, exchange.model, items, request.json_schema)

    def error(self, exc: RooGabError) -> tuple[int, dict[str, Any]]:
        return error_response(exc)


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
        message: dict[str, Any] = {"id": self.message_id, "type": "message", "role": "assistant", "model": self.model,
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
