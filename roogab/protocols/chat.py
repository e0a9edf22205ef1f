"""OpenAI Chat Completions (Cline, Kilo, Zoo Code, OpenCode, the SDKs): clients.md §7. Pure.

Parsing is ``wire.parse_chat_request``; this module renders a turn's items as
``chat.completion.chunk`` SSE (role on the first delta, each call's id and name on its first
fragment, one usage chunk with ``choices: []`` when asked, then ``[DONE]``) or as one
``chat.completion``, and errors as ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import RooGabError, to_openai_error
from ..outputs import Answer, CallOut, Finished, Out, Ping, ReasoningOut, TextOut
from ..render import arguments_json, tool_call_deltas
from ..wire import ChatRequest, Message, chunk, completion, parse_chat_request, usage_chunk

if TYPE_CHECKING:
    from . import Exchange

__all__ = ["ChatCompletions", "sse_data"]

log = logging.getLogger(__name__)


class ChatCompletions:
    """``POST /v1/chat/completions``."""

    name = "chat"
    history = "messages"
    one_message_per_element = True

    def new_id(self) -> str:
        return "chatcmpl-" + uuid.uuid4().hex[:24]

    def parse(self, body: object, headers: Mapping[str, str], known: tuple[Message, ...] = ()) -> ChatRequest:
        return parse_chat_request(body, known)

    def stream(self, items: Iterator[Out], request: ChatRequest, exchange: Exchange) -> Iterator[str]:
        role_sent = False
        try:
            for item in items:
                if isinstance(item, Ping):
                    yield ": ping\n\n"
                    continue
                for delta, finish in _deltas(item):
                    if not role_sent and delta:
                        delta = {"role": "assistant", **delta}
                        role_sent = True
                    yield sse_data(chunk(exchange.id, exchange.model, exchange.created, delta, finish))
                if isinstance(item, Finished) and request.include_usage:
                    yield sse_data(usage_chunk(exchange.id, exchange.model, exchange.created, item.usage))
        except RooGabError as exc:
            log.warning("turn %s failed mid-stream: %s", exchange.id, exc)
            yield sse_data(self.error(exc)[1])
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        yield "data: [DONE]\n\n"

    def complete(self, answer: Answer, request: ChatRequest, exchange: Exchange) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer.text or (None if answer.calls else "")}
        if answer.calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.call.name, "arguments": arguments_json(c.call)}}
                                     for c in answer.calls]
        if answer.reasoning:
            message["reasoning_content"] = answer.reasoning
        finished = answer.finished
        return completion(exchange.id, exchange.model, exchange.created, message, finished.finish_reason,
                          finished.usage)

    def error(self, exc: RooGabError) -> tuple[int, dict[str, Any]]:
        return to_openai_error(exc)


def _deltas(item: Out) -> list[tuple[dict[str, Any], str | None]]:
    if isinstance(item, TextOut):
        return [({"content": item.text}, None)]
    if isinstance(item, ReasoningOut):
        return [({"reasoning_content": item.text}, None)]
    if isinstance(item, CallOut):
        return [(d, None) for d in tool_call_deltas(item.call, item.index, item.id)]
    if isinstance(item, Finished):
        return [({}, item.finish_reason)]
    return []


def sse_data(obj: dict[str, Any]) -> str:
    """One SSE ``data:`` event with compact JSON (unicode kept readable)."""
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"
