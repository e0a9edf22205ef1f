"""A turn's ``Out`` items -> OpenAI Responses stream events and the response object. Pure.

Event order is the one the captured Codex sessions accepted (codex_0.171.0_*_reply*.sse):
``response.created``, ``response.in_progress``, then per output item ``output_item.added``, its
part/delta/done events, ``output_item.done``, and ``response.completed`` with the whole response.
Codex runs an item the moment its ``output_item.done`` arrives, so an item is closed only when it
is final: a call is emitted whole (the turn engine yields a call only once it is complete and
checked), a text or reasoning item is closed when the next item starts or the turn finishes, and
a turn that fails leaves its open item unclosed and ends with ``response.failed``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import RequestError, RooGabError
from ..outputs import CallOut, Finished, Out, ReasoningOut, TextOut
from ..render import arguments_json
from ..structured import fit_json
from ..wire import ToolSpec, Usage
from .responses_input import opaque_reasoning

__all__ = ["ResponseStream", "usage_object"]

Event = dict[str, Any]


def usage_object(usage: Usage) -> dict[str, Any]:
    """The Responses ``usage`` object."""
    return {"input_tokens": usage.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


def _new_suffix() -> str:
    return uuid.uuid4().hex[:24]


@dataclass
class _Open:
    """The text or reasoning item being streamed."""

    kind: str
    item_id: str
    index: int
    text: str = ""


@dataclass
class ResponseStream:
    """Renders one turn; ``start`` first, then ``feed`` each item, ``fail`` on an error."""

    response_id: str
    model: str
    created: int
    tools: Mapping[str, ToolSpec] = field(default_factory=dict)
    encrypted_reasoning: bool = False
    echo: Mapping[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] | None = None
    held: list[str] = field(default_factory=list)
    new_suffix: Callable[[], str] = _new_suffix
    output: list[dict[str, Any]] = field(default_factory=list)
    sequence: int = 0
    status: str = "in_progress"
    usage: Usage | None = None
    error: dict[str, Any] | None = None
    incomplete: dict[str, Any] | None = None
    _open: _Open | None = None

    def start(self) -> list[Event]:
        """``response.created`` and ``response.in_progress``."""
        return [self._event("response.created", response=self.response()),
                self._event("response.in_progress", response=self.response())]

    def feed(self, item: Out) -> list[Event]:
        """The events for one item (none for a ``Ping``)."""
        if isinstance(item, TextOut):
            if self.schema is not None:  # structured output: sent whole at the end, as JSON that fits
                self.held.append(item.text)
                return []
            return self._stream_text("message", item.text)
        if isinstance(item, ReasoningOut):
            return self._stream_text("reasoning", item.text)
        if isinstance(item, CallOut):
            return self._close() + self._call(item)
        if isinstance(item, Finished):
            return self._finish(item)
        return []

    def fail(self, exc: RooGabError) -> list[Event]:
        """``response.failed``: the open item stays unfinished, so the client acts on nothing of it.

        ``server_error`` makes Codex retry the turn; a request error is reported as itself.
        """
        self._open = None
        self.status = "failed"
        code = "invalid_request_error" if isinstance(exc, RequestError) else "server_error"
        self.error = {"code": code, "message": str(exc)}
        return [self._event("response.failed", response=self.response())]

    def response(self) -> dict[str, Any]:
        """The response object as it stands (the whole non-streaming answer once finished)."""
        body: dict[str, Any] = {
            "id": self.response_id, "object": "response", "created_at": self.created, "model": self.model,
            "status": self.status, "output": [o for o in self.output if o],
            "usage": usage_object(self.usage) if self.usage else None, "error": self.error,
            "incomplete_details": self.incomplete, **self.echo}
        if self.status == "completed":
            body["output_text"] = "".join(p["text"] for o in self.output if o.get("type") == "message"
                                          for p in o["content"])
        return body

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def _stream_text(self, kind: str, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open is None or self._open.kind != kind:
            events += self._close() + self._open_item(kind)
        assert self._open is not None
        self._open.text += text
        at = {"item_id": self._open.item_id, "output_index": self._open.index}
        if kind == "message":
            events.append(self._event("response.output_text.delta", **at, content_index=0, delta=text,
                                      logprobs=[]))
        else:
            events.append(self._event("response.reasoning_summary_text.delta", **at, summary_index=0,
                                      delta=text))
        return events

    def _open_item(self, kind: str) -> list[Event]:
        index = len(self.output)
        if kind == "message":
            self._open = _Open(kind, "msg_" + self.new_suffix(), index)
            item = {"id": self._open.item_id, "type": "message", "status": "in_progress", "role": "assistant",
                    "content": []}
            part_event = "response.content_part.added"
            part: dict[str, Any] = {"content_index": 0, "part": {"type": "output_text", "text": "",
                                                                 "annotations": []}}
        else:
            self._open = _Open(kind, "rs_" + self.new_suffix(), index)
            item = {"id": self._open.item_id, "type": "reasoning", "summary": []}
            part_event = "response.reasoning_summary_part.added"
            part = {"summary_index": 0, "part": {"type": "summary_text", "text": ""}}
        self.output.append({})  # holds the index; filled in when the item is done
        at = {"item_id": self._open.item_id, "output_index": index}
        return [self._event("response.output_item.added", output_index=index, item=item),
                self._event(part_event, **at, **part)]

    def _close(self) -> list[Event]:
        item, self._open = self._open, None
        if item is None:
            return []
        at = {"item_id": item.item_id, "output_index": item.index}
        done: dict[str, Any]
        if item.kind == "message":
            part = {"type": "output_text", "text": item.text, "annotations": []}
            done = {"id": item.item_id, "type": "message", "status": "completed", "role": "assistant",
                    "content": [part]}
            events = [self._event("response.output_text.done", **at, content_index=0, text=item.text,
                                  logprobs=[]),
                      self._event("response.content_part.done", **at, content_index=0, part=part)]
        else:
            summary = {"type": "summary_text", "text": item.text}
            done = {"id": item.item_id, "type": "reasoning", "summary": [summary],
                    "encrypted_content": opaque_reasoning(item.text) if self.encrypted_reasoning else None}
            events = [self._event("response.reasoning_summary_text.done", **at, summary_index=0, text=item.text),
                      self._event("response.reasoning_summary_part.done", **at, summary_index=0, part=summary)]
        self.output[item.index] = done
        return events + [self._event("response.output_item.done", output_index=item.index, item=done)]

    def _call(self, out: CallOut) -> list[Event]:
        """One complete call: added, its input in one delta, done — all at once."""
        spec = self.tools.get(out.call.name)
        kind = spec.kind if spec else "function"
        index = len(self.output)
        if kind == "tool_search":
            done: dict[str, Any] = {"id": "tsc_" + self.new_suffix(), "type": "tool_search_call",
                                    "status": "completed", "call_id": out.id, "execution": "client",
                                    "arguments": dict(out.call.arguments)}
            self.output.append(done)
            return [self._event("response.output_item.added", output_index=index, item=done),
                    self._event("response.output_item.done", output_index=index, item=done)]
        if kind == "custom":
            text = str(out.call.arguments.get("input", ""))
            base = {"id": "ctc_" + self.new_suffix(), "type": "custom_tool_call", "call_id": out.id,
                    "name": out.call.name}
            done = {**base, "status": "completed", "input": text}
            delta, finished = "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done"
            added = {**base, "status": "in_progress", "input": ""}
            last: dict[str, Any] = {"input": text}
        else:
            text = arguments_json(out.call)
            base = {"id": "fc_" + self.new_suffix(), "type": "function_call", "call_id": out.id,
                    "name": spec.bare_name if spec else out.call.name}
            if spec is not None and spec.namespace:
                base["namespace"] = spec.namespace
            done = {**base, "status": "completed", "arguments": text}
            delta, finished = "response.function_call_arguments.delta", "response.function_call_arguments.done"
            added = {**base, "status": "in_progress", "arguments": ""}
            last = {"arguments": text}
        self.output.append(done)
        at = {"item_id": base["id"], "output_index": index}
        return [self._event("response.output_item.added", output_index=index, item=added),
                self._event(delta, **at, delta=text),
                self._event(finished, **at, **last),
                self._event("response.output_item.done", output_index=index, item=done)]

    def _finish(self, item: Finished) -> list[Event]:
        events = self._close()
        if self.schema is not None:
            events += self._stream_text("message", fit_json("".join(self.held), self.schema)) + self._close()
        self.usage = item.usage
        if item.finish_reason == "length":
            self.status = "incomplete"
            self.incomplete = {"reason": "max_output_tokens"}
            return events + [self._event("response.incomplete", response=self.response())]
        self.status = "completed"
        return events + [self._event("response.completed", response=self.response())]
