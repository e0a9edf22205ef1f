"""OpenAI Responses (Codex CLI, Continue's gpt-5/o3 models, OpenCode with @ai-sdk/openai):
``POST /v1/responses``, agents-wire.md §2 and §3.2.

Parsing is ``responses_input.parse_responses_request``; the event renderer is
``responses_stream.ResponseStream``. This module joins them to the ``WireProtocol`` the API
serves: SSE frames (``event:`` and ``data:`` lines; Codex reads only ``data:``), the non-streaming
response object, errors as ``{"error": {message, type, param, code}}``. A turn that fails after
the stream began ends with ``response.failed`` and ``error.code: "server_error"``, which Codex
answers by retrying the request; a turn that stops without finishing is never reported complete.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ProviderDisconnected, RooGabError, to_openai_error
from ..outputs import Answer, Out, Ping, ReasoningOut, TextOut
from ..wire import ChatRequest, Message
from .responses_input import parse_responses_request
from .responses_stream import ResponseStream

if TYPE_CHECKING:
    from . import Exchange

__all__ = ["Responses", "sse_event"]

log = logging.getLogger(__name__)


def sse_event(event: dict[str, Any]) -> str:
    """One SSE frame: the event's type on the ``event:`` line, its JSON on the ``data:`` line."""
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _renderer(request: ChatRequest, exchange: Exchange) -> ResponseStream:
    echo = {"parallel_tool_calls": True, "tool_choice": request.tool_choice, "tools": [], "store": False}
    return ResponseStream(exchange.id, exchange.model, exchange.created, {t.name: t for t in request.tools},
                          encrypted_reasoning="reasoning.encrypted_content" in request.include, echo=echo,
                          schema=request.json_schema)


class Responses:
    """``POST /v1/responses``."""

    name = "responses"
    history = "input"
    one_message_per_element = False

    def new_id(self) -> str:
        return "resp_" + uuid.uuid4().hex[:24]

    def parse(self, body: object, headers: Mapping[str, str], known: tuple[Message, ...] = ()) -> ChatRequest:
        return parse_responses_request(body, session=headers.get("session-id", ""))

    def stream(self, items: Iterator[Out], request: ChatRequest, exchange: Exchange) -> Iterator[str]:
        render = _renderer(request, exchange)
        finished = False
        try:
            yield from map(sse_event, render.start())
            for item in items:
                if isinstance(item, Ping):
                    yield ": ping\n\n"
                    continue
                events = render.feed(item)
                finished = finished or render.status != "in_progress"
                yield from map(sse_event, events)
            if not finished:
                raise ProviderDisconnected("the turn ended before the answer was complete")
        except RooGabError as exc:
            log.warning("turn %s failed mid-stream: %s", exchange.id, exc)
            yield from map(sse_event, render.fail(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def complete(self, answer: Answer, request: ChatRequest, exchange: Exchange) -> dict[str, Any]:
        render = _renderer(request, exchange)
        render.start()
        items: list[Out] = [ReasoningOut(answer.reasoning)] if answer.reasoning else []
        items += [TextOut(answer.text)] if answer.text else []
        for item in [*items, *answer.calls, answer.finished]:
            render.feed(item)
        return render.response()

    def error(self, exc: RooGabError) -> tuple[int, dict[str, Any]]:
        return to_openai_error(exc)
