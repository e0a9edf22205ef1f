"""ChatService: one turn end to end (design.md §1), independent of HTTP.

registry -> prompt -> provider -> envelope parser -> checks (-> one repair) -> output events.
``run`` is a generator of ``Out`` items that the API renders as SSE chunks or collects into one
completion. It depends only on the Provider protocol, so tests drive it with a FakeProvider.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field

from .envelope import End, Event, Reasoning, ReplyParser, SnapshotFeeder, Text, ToolCall, check_call
from .errors import ConversationGone, ModelNotFound, ProviderRejected, ReplyFormatError, RooGabError
from .outputs import (
    Answer,
    CallOut,
    Finished,
    FromRecord,
    Out,
    Ping,
    ReasoningOut,
    TextOut,
    from_json,
    to_json,
)
from .prompt import PromptBook
from .providers.base import Created, Deadlines, Delta, Done, Provider, Snapshot
from .registry import Plan, Registry
from .render import arguments_json, text_with_xml
from .turnlog import turn_record
from .usage import TokenCache, TokenCounter
from .wire import ChatRequest, Message, ToolCallRef, Usage

__all__ = ["ChatService", "TurnSettings", "published_id"]

log = logging.getLogger(__name__)

O_SERIES = re.compile(r"o([134])")
CLAUDE_ALIAS = re.compile(r"claude-", re.IGNORECASE)
ERROR_PAGE_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class TurnSettings:
    """The parts of the config a turn needs."""

    deadlines: Deadlines = field(default_factory=Deadlines)
    tick: float = 1.0
    repair_attempts: int = 1


class ChatService:
    """Runs turns for the API: maps models to providers and requests to conversations."""

    def __init__(self, providers: Mapping[str, Provider], registry: Registry, prompts: PromptBook,
                 settings: TurnSettings = TurnSettings(), *, tokens: TokenCounter | None = None,
                 new_id: Callable[[], str] = lambda: "call_" + uuid.uuid4().hex[:24]) -> None:
        self.providers = dict(providers)
        self.registry = registry
        self.prompts = prompts
        self.settings = settings
        self.tokens = tokens or TokenCounter()
        self.token_cache = TokenCache(self.tokens)
        self._new_id = new_id

    def models(self) -> list[tuple[str, int]]:
        """Every published model id with its context length."""
        return [(published, length) for published, (_, _, length) in self._catalog().items()]

    def resolve_model(self, model: str) -> tuple[Provider, str]:
        """A published id, ``provider/model``, or a model id only one provider has ->
        (provider, local id).

        Raises:
            ModelNotFound: no provider publishes that model.
        """
        catalog = self._catalog()
        if model in catalog:
            name, local, _ = catalog[model]
            return self.providers[name], local
        name, _, local = model.partition("/")
        matches = [(n, m) for n, m, _ in catalog.values() if (n, m) == (name, local) or m == model]
        if len(matches) == 1:
            return self.providers[matches[0][0]], matches[0][1]
        known = ", ".join(catalog)
        raise ModelNotFound(f"model '{model}' does not exist; available: {known}", param="model")

    def _catalog(self) -> dict[str, tuple[str, str, int]]:
        """Published id -> (provider name, local model id, context length)."""
        return {published_id(name, m.id): (name, m.id, m.context_length)
                for name, p in self.providers.items() for m in p.models()}

    def run(self, request: ChatRequest, client: str) -> Iterator[Out]:
        """Run one turn, yielding what the agent should see, ``Finished`` last.

        Raises:
            RooGabError: the turn failed (before or after some output was yielded).
        """
        provider, model = self.resolve_model(request.model)
        with self.registry.turn(client, request, provider.name, model) as plan:
            yield from _Turn(self, plan, request, provider, model, client).run()

    def complete(self, request: ChatRequest, client: str) -> Answer:
        """Run one turn to the end and gather what it yielded."""
        return Answer.collect(self.run(request, client))


@dataclass
class _Reply:
    """What one provider reply turned into."""

    handle: str | None
    raw: str = ""
    snapshots: bool = False
    problem: str | None = None
    offset: int = -1


@dataclass
class _Turn:
    """One turn's state: what was sent, what the agent has already seen."""

    service: ChatService
    plan: Plan
    request: ChatRequest
    provider: Provider
    model: str
    client: str
    texts: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[CallOut] = field(default_factory=list)
    raws: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    repairs: int = 0
    usage: Usage | None = None
    repeat: _Repeat | None = None
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    seen_calls: set[str] = field(default_factory=set)  # each delivered call, as canonical JSON

    def run(self) -> Iterator[Out]:
        """The turn's items; every outcome (answer, retry, failure, agent gone) is logged."""
        started, clock = time.time(), time.monotonic()
        if self.plan.recorded is not None:
            items = from_json(self.plan.recorded)
            if self.plan.recorded_turn is not None:
                yield FromRecord(self.plan.recorded_turn)
            yield from items
            self._log(started, clock, "retry answered from the record", self.plan.recorded, None)
            return
        recorded, error = False, "the agent went away before the turn ended"
        try:
            handle = yield from self._answer()
            self.usage = self._usage()
            finished = Finished("tool_calls" if self.calls and self.request.native_tools else "stop", self.usage)
            reply = to_json([TextOut("".join(self.texts)), ReasoningOut("".join(self.reasoning)),
                             *self.calls, finished])
            self.service.registry.record(self.plan, handle, _echo_message("".join(self.texts), self.calls),
                                         reply, turn_id=self.turn_id)
            recorded = True
            self._log(started, clock, "repaired" if self.repairs else "ok", reply, None)
            yield finished
        except RooGabError as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if not recorded:
                self.service.registry.drop(self.plan)
                verdict = "non_compliant" if error.startswith("ReplyFormatError") else "failed"
                self._log(started, clock, verdict, to_json([TextOut("".join(self.texts)), *self.calls]), error)

    def _log(self, started: float, clock: float, verdict: str, response: str, error: str | None) -> None:
        record = turn_record(
            turn_id=self.turn_id, conversation_id=self.plan.conversation.id, provider=self.provider.name,
            request=self.request, client=self.client, started_at=started,
            duration_ms=int((time.monotonic() - clock) * 1000), prompts=self.sent, raws=self.raws,
            verdict=verdict, replayed=self.plan.replay, repairs=self.repairs,
            usage=self.usage, response=response, error=error,
            retry_of=self.plan.recorded_turn if self.plan.recorded is not None else None)
        log.log(logging.INFO if error is None else logging.WARNING,
                "%s: %s in %d ms, conversation %s%s%s", verdict, self.provider.name, record.duration_ms,
                record.conversation_id, f", {self.repairs} repair(s)" if self.repairs else "",
                ", replayed" if self.plan.replay else "")
        self.service.registry.log_turn(record)

    def _answer(self) -> Generator[Out, None, str]:
        """Send, parse, repair while allowed; return the provider conversation's handle."""
        prompt = self._opening_prompt()
        handle = self.plan.conversation.handle
        repairs = self.service.settings.repair_attempts
        while True:
            try:
                reply = yield from self._attempt(handle, prompt)
            except ConversationGone:
                if self.plan.fresh or self.calls or self.texts:
                    raise
                log.info("conversation %s is gone from %s: replaying", handle, self.provider.name)
                self.plan = self.service.registry.restart(self.plan)
                prompt, handle = self._opening_prompt(), None
                continue
            handle = reply.handle
            if reply.problem is None:
                assert handle is not None, "a provider turn ended without naming its conversation"
                return handle
            if repairs <= 0:
                raise _non_compliant(reply)
            repairs -= 1
            self.repairs += 1
            log.info("repairing a reply from %s: %s", self.provider.name, reply.problem)
            self._forget_attempt()
            prompt = self.service.prompts.repair(self.request, reply.problem)

    def _attempt(self, handle: str | None, prompt: str) -> Generator[Out, None, _Reply]:
        """One exchange. A streaming agent sees it live; otherwise only a successful one counts."""
        if self.request.stream:
            return (yield from self._exchange(handle, prompt))
        held: list[Out] = []
        exchange = self._exchange(handle, prompt)
        while True:
            try:
                item = next(exchange)
            except StopIteration as stop:
                reply: _Reply = stop.value
                break
            if not isinstance(item, Ping):
                held.append(item)
        if reply.problem is None:
            yield from held
        return reply

    def _opening_prompt(self) -> str:
        prompts = self.service.prompts
        if self.plan.fresh:
            return prompts.first_turn(self.request, self.plan.history, self.plan.new)
        return prompts.next_turn(self.request, self.plan.new)

    def _exchange(self, handle: str | None, prompt: str) -> Generator[Out, None, _Reply]:
        settings = self.service.settings
        turn = self.provider.send(handle, self.model, prompt, settings.deadlines)
        self.sent.append(prompt)
        parser = ReplyParser([t.name for t in self.request.tools])
        feeder = SnapshotFeeder(parser)
        reply = _Reply(handle)
        done = False
        try:
            for event in turn.events(settings.tick, merge=True):
                if event is None:
                    yield Ping()
                    continue
                if isinstance(event, Created):
                    reply.handle = event.handle
                    continue
                done = isinstance(event, Done)
                parsed = self._parse(event, parser, feeder, reply)
                self._judge_end(parsed, reply)
                for item in parsed:
                    yield from self._accept(item, reply)
        finally:
            if not done:
                turn.cancel()
        self.raws.append(reply.raw)
        self._check_whole(reply)
        return reply

    def _parse(self, event: object, parser: ReplyParser, feeder: SnapshotFeeder, reply: _Reply) -> list[Event]:
        if isinstance(event, Delta):
            reply.raw += event.text
            return parser.feed(event.text)
        if isinstance(event, Snapshot):
            if reply.raw and not reply.snapshots:
                return self._rewrite(event.text, parser, reply)
            reply.raw, reply.snapshots = event.text, True
            return feeder.feed_snapshot(event.text)
        assert isinstance(event, Done)
        events: list[Event] = []
        if event.text and event.text.startswith(reply.raw) and len(event.text) > len(reply.raw):
            rest = event.text[len(reply.raw):]
            reply.raw = event.text
            events = parser.feed(rest)
        return events + (feeder.close() if reply.snapshots else parser.close())

    def _rewrite(self, text: str, parser: ReplyParser, reply: _Reply) -> list[Event]:
        """A whole-reply snapshot after deltas (Chainlit rewrites a message this way)."""
        if text.startswith(reply.raw):
            rest, reply.raw = text[len(reply.raw):], text
            return parser.feed(rest)
        log.warning("%s rewrote a reply it had already streamed; keeping what was streamed",
                    self.provider.name)
        return []

    def _accept(self, event: Event, reply: _Reply) -> Iterator[Out]:
        if reply.problem is not None or isinstance(event, End):
            return
        if isinstance(event, ToolCall):
            yield from self._accept_call(event, reply)
        elif isinstance(event, Text) and event.text:
            text = self.repeat.next(event.text) if self.repeat else event.text
            if text:
                self.texts.append(text)
                yield TextOut(text)
        elif isinstance(event, Reasoning) and event.text and not self.repeat:
            self.reasoning.append(event.text)
            yield ReasoningOut(event.text)

    def _forget_attempt(self) -> None:
        """Before a repair: what the agent has not seen yet is dropped; what it has seen stays.

        A non-streaming agent has seen nothing, so the repaired reply replaces the failed one.
        A streaming agent keeps the text it was sent; the repaired reply continues after it.
        """
        if not self.request.stream:
            self.texts.clear()
            self.reasoning.clear()
            self.calls.clear()
            self.seen_calls.clear()
        elif self.texts:
            self.repeat = _Repeat("".join(self.texts))

    def _judge_end(self, events: list[Event], reply: _Reply) -> None:
        """Judge the reply's End before the held-back prose that precedes it is let through."""
        end = next((e for e in events if isinstance(e, End)), None)
        if end is None or end.problem is None or reply.problem is not None:
            return
        title = None if end.envelope else _error_page_title(reply.raw)
        if title is not None:
            raise ProviderRejected(f"{self.provider.name}: the chat service sent an HTML page instead of "
                                   f"a reply ({title})", provider=self.provider.name)
        if end.envelope or self.request.tools:  # without tools, plain prose is a fine answer
            reply.problem, reply.offset = end.problem, end.offset

    def _accept_call(self, call: ToolCall, reply: _Reply) -> Iterator[Out]:
        if not self.request.tools or not self.request.native_tools:
            text = ("\n\n" if self.texts else "") + text_with_xml("", [call])
            self.texts.append(text)
            yield TextOut(text)
            return
        try:
            call = check_call(call, self.request.tool_schemas())
        except ReplyFormatError as exc:
            reply.problem = str(exc)
            return
        seen = json.dumps([call.name, call.arguments], sort_keys=True, ensure_ascii=False)
        if seen in self.seen_calls:
            return  # already delivered before a repair
        self.seen_calls.add(seen)
        out = CallOut(len(self.calls), self.service._new_id(), call)
        self.calls.append(out)
        yield out

    def _check_whole(self, reply: _Reply) -> None:
        if reply.problem is None and not self.texts and not self.calls:
            reply.problem = "the reply was empty: it had neither text nor a tool call"

    def _usage(self) -> Usage:
        """What the model holds: the agent's messages, and RooGab's format prompt with the tools
        (it stays in the conversation from turn 1 on), plus any repair message of this turn.

        Messages are counted once and remembered by digest, the format prompt by tool set: an
        agent resends both every turn. Only the replies are new each time.
        """
        cached, count = self.service.token_cache.count, self.service.tokens.count
        held = sum(cached(d, m.content) for d, m in zip(self.plan.digests, self.request.messages))
        tools = json.dumps([[t.name, t.description, t.parameters] for t in self.request.tools])
        key = "format:" + hashlib.sha256(tools.encode()).hexdigest()
        held += cached(key, lambda: self.service.prompts.format_prompt(self.request))
        repairs = sum(count(p) for p in self.sent[1:])
        return Usage(held + repairs, sum(count(r) for r in self.raws))


@dataclass
class _Repeat:
    """Text of a repaired reply, minus what the agent already received from the failed one.

    While the new text repeats the old, nothing is sent; once it goes beyond, only the rest is.
    New text that differs from the old is sent whole, after a paragraph break.
    """

    sent: str
    seen: str = ""
    through: bool = False

    def next(self, piece: str) -> str:
        """The part of *piece* the agent has not seen yet."""
        if self.through:
            return piece
        self.seen += piece
        if self.sent.startswith(self.seen):
            return ""
        self.through = True
        if self.seen.startswith(self.sent):
            return self.seen[len(self.sent):]
        return "\n\n" + self.seen


def _error_page_title(raw: str) -> str | None:
    """The title of a whole HTML document (a proxy's or server's error page), else None.

    A chat page's rendered reply is a fragment (``<p>``, ``<pre>``); a document is not a reply.
    """
    head = raw.lstrip()[:300].lower()
    if not head.startswith(("<!doctype html", "<html")):
        return None
    match = ERROR_PAGE_TITLE.search(raw)
    return match.group(1).strip()[:100] if match else "no title"


def published_id(provider: str, model: str) -> str:
    """``provider/model``, with o1/o3/o4 written o-1/o-3/o-4: Roo Code switches to another
    request shape for any model id that contains those (clients.md §1.1); and ``claude-`` written
    ``claude_``: Claude Code rewrites known ``claude-*`` names before sending them
    (``claude-opus-4-1`` arrives as ``claude-opus-5-5``, agents-wire.md §1.2)."""
    return CLAUDE_ALIAS.sub(lambda m: m.group(0)[:-1] + "_", O_SERIES.sub(r"o-\1", f"{provider}/{model}"))


def _echo_message(text: str, calls: list[CallOut]) -> Message:
    """The assistant message as the agent will send it back next turn."""
    refs = tuple(ToolCallRef(c.id, c.call.name, arguments_json(c.call)) for c in calls)
    return Message(role="assistant", content=text, tool_calls=refs)


def _non_compliant(reply: _Reply) -> ReplyFormatError:
    snippet = reply.raw.strip()[:200]
    message = f"the model's reply did not follow the reply format: {reply.problem}"
    if snippet:
        message += f". It began: {snippet!r}"
    return ReplyFormatError(message, offset=reply.offset, snippet=snippet)

