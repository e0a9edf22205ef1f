"""ChatService: one turn end to end (design.md §1), independent of HTTP.

registry -> prompt -> provider -> envelope parser -> checks (-> one repair) -> output events.
``run`` is a generator of ``Out`` items that the API renders as SSE chunks or collects into one
completion. It depends only on the Provider protocol, so tests drive it with a FakeProvider.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from .answer import Accepted, Accumulator, Outcome, outcome_of
from .delivery import Outbox
from .envelope import End, Event, Reasoning, Text, ToolCall, check_call
from .errors import (
    ConversationGone,
    ModelNotFound,
    ProviderRejected,
    ProviderUnavailable,
    ReplyFormatError,
    RooGabError,
)
from .live import LiveTurn, LiveTurns, TurnNote
from .outputs import Answer, CallOut, Finished, Out, Ping, ReasoningOut, TextOut, from_json
from .prompt import PromptBook
from .providers.base import Created, Deadlines, Done, Health, Provider
from .redact import Redactor
from .registry import Plan, Registry
from .render import arguments_json, text_with_xml, xml_clash
from .reply_reader import ReplyReader, Verdict
from .turnlog import request_summary, turn_record
from .usage import TokenCache, TokenCounter
from .utf16 import well_formed
from .wire import ChatRequest, Usage

__all__ = ["ChatService", "TurnSettings", "published_id"]

log = logging.getLogger(__name__)

O_SERIES = re.compile(r"o([134])")
CLAUDE_ALIAS = re.compile(r"claude-", re.IGNORECASE)


@dataclass(frozen=True)
class TurnSettings:
    """The parts of the config a turn needs."""

    deadlines: Deadlines = field(default_factory=Deadlines)
    tick: float = 1.0
    repair_attempts: int = 1
    content: tuple[tuple[str, str], ...] = ()  # provider name -> "auto" | "markdown" | "html"

    def html(self, provider: str) -> bool | None:
        """Whether *provider*'s replies are rendered HTML (None: decide from each reply)."""
        content = dict(self.content).get(provider, "auto")
        return None if content == "auto" else content == "html"


class ChatService:
    """Runs turns for the API: maps models to providers and requests to conversations.

    *redactor* knows the configured secrets (the generic shapes only by default). Every error the
    service raises leaves it redacted (``_redacted_errors``), and the turn log's request summary
    is redacted with it before its long contents are cut.
    """

    def __init__(self, providers: Mapping[str, Provider], registry: Registry, prompts: PromptBook,
                 settings: TurnSettings = TurnSettings(), *, tokens: TokenCounter | None = None,
                 outbox: Outbox | None = None,
                 new_id: Callable[[], str] = lambda: "call_" + uuid.uuid4().hex[:24],
                 live: LiveTurns | None = None, redactor: Redactor | None = None) -> None:
        self.providers = dict(providers)
        self.live = live if live is not None else LiveTurns()
        self.redactor = redactor or Redactor()
        self.registry = registry
        self.prompts = prompts
        self.outbox = outbox or Outbox(prompts)
        self.settings = settings
        self.tokens = tokens or TokenCounter()
        self.token_cache = TokenCache(self.tokens)
        self._new_id = new_id

    def health(self) -> dict[str, Health]:
        """Each provider's readiness, its last error redacted: the status pages show it to anyone
        who can reach them, and an error may quote a cookie or a login's answer."""
        return {name: _redacted_health(p.health(), self.redactor) for name, p in self.providers.items()}

    def models(self) -> list[tuple[str, int]]:
        """Every published model id with its context length."""
        return [(published, length) for published, (_, _, length) in self._catalog().items()]

    def resolve_model(self, model: str) -> tuple[Provider, str]:
        """A published id, ``provider/model``, or a model id only one provider has ->
        (provider, local id).

        Raises:
            ModelNotFound: no provider publishes that model.
        """
        with _redacted_errors(self.redactor):  # a provider's last error is in the message
            return self._resolve_model(model)

    def _resolve_model(self, model: str) -> tuple[Provider, str]:
        catalog = self._catalog()
        if model in catalog:
            name, local, _ = catalog[model]
            return self.providers[name], local
        name, _, local = model.partition("/")
        matches = [(n, m) for n, m, _ in catalog.values() if (n, m) == (name, local) or m == model]
        if len(matches) == 1:
            return self.providers[matches[0][0]], matches[0][1]
        waiting = self.providers.get(name)
        if waiting is not None and not waiting.models():
            health = waiting.health()
            raise ProviderUnavailable(f"{name} has not been reached yet, so its models are not known: "
                                      f"{health.last_error or 'starting'}", provider=name)
        known = ", ".join(catalog)
        raise ModelNotFound(f"model '{model}' does not exist; available: {known}", param="model")

    def _catalog(self) -> dict[str, tuple[str, str, int]]:
        """Published id -> (provider name, local model id, context length)."""
        return {published_id(name, m.id): (name, m.id, m.context_length)
                for name, p in self.providers.items() for m in p.models()}

    def run(self, request: ChatRequest, client: str, note: TurnNote | None = None) -> Iterator[Out]:
        """Run one turn, yielding what the agent should see, ``Finished`` last; *note* gets the
        turn's id (and, for an answer from the retry record, the turn it repeats).

        Raises:
            RooGabError: the turn failed (before or after some output was yielded); its
                message redacted.
        """
        with _redacted_errors(self.redactor):
            yield from self._run(request, client, note)

    def _run(self, request: ChatRequest, client: str, note: TurnNote | None) -> Iterator[Out]:
        provider, model = self.resolve_model(request.model)
        with self.registry.turn(client, request, provider.name, model) as plan:
            turn = _Turn(self, plan, request, provider, model, client, note or TurnNote())
            if plan.recorded is not None:
                yield from turn.run()
                return
            with self.outbox.slot(provider, turn._opening_prompt(), self.settings.tick) as queued:
                yield from queued
                yield from turn.run()

    def complete(self, request: ChatRequest, client: str, note: TurnNote | None = None) -> Answer:
        """Run one turn to the end: the answer a non-streaming agent gets."""
        return Answer.collect(self.run(request, client, note))


@dataclass
class _Turn:
    """One turn: send, read, repair while allowed, replay a lost conversation, record and log.

    ``answer`` is what the agent has been given; ``accepted`` counts the calls of earlier
    attempts, which are final (design.md §9): a repair continues after them.
    """

    service: ChatService
    plan: Plan
    request: ChatRequest
    provider: Provider
    model: str
    client: str
    note: TurnNote
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    answer: Accumulator = field(default_factory=Accumulator)
    raws: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    handles: set[str] = field(default_factory=set)  # the provider conversations this turn used
    repairs: int = 0
    accepted: Accepted | None = None  # the calls the agent has, once a reply is repaired
    usage: Usage | None = None
    repeat: _Repeat | None = None

    def run(self) -> Iterator[Out]:
        """The turn's items; every outcome (answer, retry, failure, agent gone) is logged."""
        started, clock = time.time(), time.monotonic()
        self._begin(started)
        if self.plan.recorded is not None:
            self.note.from_record = (self.plan.recorded_turn or self.service.live.answered_by(self.plan.conversation.id)
                                     or "unknown")
            yield from from_json(self.plan.recorded)
            self._log(started, clock, Outcome.RETRY, self.plan.recorded, None)
            return
        recorded = False
        failure: Exception | None = None
        try:
            handle = yield from self._answer()
            self.usage = self._usage()
            calls = self.answer.calls
            finished = Finished("tool_calls" if calls and self.request.native_tools else "stop", self.usage)
            reply = self.answer.record(finished)
            self.service.registry.record(self.plan, handle, self.answer.message(), reply, turn_id=self.id)
            recorded = True
            self._log(started, clock, outcome_of(None, self.repairs), reply, None)
            yield finished
        except Exception as exc:  # noted for the turn log (a bug too, not "the agent went away"), then raised
            failure = exc
            raise
        finally:
            if not recorded:
                self.service.registry.drop(self.plan)
                for handle in self.handles:  # never continued: the provider may let them go
                    self.provider.forget(handle)
                error = (f"{type(failure).__name__}: {failure}" if failure is not None
                         else "the agent went away before the turn ended")
                self._log(started, clock, outcome_of(failure or _Gone(), self.repairs),
                          self.answer.record(), error)

    def _begin(self, started: float) -> None:
        """Show the turn on the live board (and name it for the HTTP layer)."""
        self.note.turn_id = self.id
        self.service.live.begin(LiveTurn(self.id, self.plan.conversation.id, self.provider.name, self.model,
                                         self.request.protocol, started,
                                         request_summary(self.request, self.client, redactor=self.service.redactor)))

    def _log(self, started: float, clock: float, outcome: Outcome, response: str, error: str | None) -> None:
        record = turn_record(
            turn_id=self.id, conversation_id=self.plan.conversation.id, provider=self.provider.name,
            model=self.model, from_record=self.note.from_record, request=self.request, client=self.client, started_at=started,
            duration_ms=int((time.monotonic() - clock) * 1000), prompts=self.sent, raws=self.raws,
            verdict=outcome.value, replayed=self.plan.replay, repairs=self.repairs,
            usage=self.usage, response=response, error=error, redactor=self.service.redactor)
        log.log(logging.INFO if error is None else logging.WARNING,
                "%s: %s in %d ms, conversation %s%s%s", outcome.value, self.provider.name, record.duration_ms,
                record.conversation_id, f", {self.repairs} repair(s)" if self.repairs else "",
                ", replayed" if self.plan.replay else "")
        self.service.registry.log_turn(record)
        self.service.live.end(self.id, answered=outcome in (Outcome.OK, Outcome.REPAIRED))

    def _answer(self) -> Generator[Out, None, str]:
        """Send, read, repair while allowed; return the provider conversation's handle."""
        prompt = self._opening_prompt()
        handle = self.plan.conversation.handle
        repairs = self.service.settings.repair_attempts
        while True:
            try:
                reply = yield from self._attempt(handle, prompt)
            except ConversationGone:  # replayed only while the agent has been given nothing
                seen_reasoning = self.request.stream and self.answer.reasoning
                if self.plan.fresh or self.answer.calls or self.answer.texts or seen_reasoning:
                    raise
                self.answer.forget_unseen()  # reasoning a non-streaming agent never got: the replay's replaces it
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
            prompt = self.service.prompts.repair(self.request, reply.problem + _accepted_note(self.answer.calls))

    def _attempt(self, handle: str | None, prompt: str) -> Generator[Out, None, _Reply]:
        """One exchange. A streaming agent sees it live; otherwise only a successful one counts,
        except its accepted calls, which stand either way (streaming agents already got them)."""
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
        else:
            yield from (item for item in held if isinstance(item, CallOut))
        return reply

    def _opening_prompt(self) -> str:
        prompts = self.service.prompts
        if self.plan.fresh:
            return prompts.first_turn(self.request, self.plan.history, self.plan.new)
        return prompts.next_turn(self.request, self.plan.new)

    def _exchange(self, handle: str | None, prompt: str) -> Generator[Out, None, _Reply]:
        settings = self.service.settings
        turn, handle = yield from self.service.outbox.send(self.provider, handle, self.model, prompt,
                                                           settings.deadlines, settings.tick, self.handles.add)
        self.sent.append(prompt)
        self.service.live.sent(self.id, prompt, turn.wire)
        reader = ReplyReader([t.name for t in self.request.offered_tools], html=settings.html(self.provider.name))
        self.service.live.reply(self.id, lambda: reader.raw)
        reply = _Reply(handle)
        if handle is not None:
            self.handles.add(handle)
        done = False
        try:
            for event in turn.events(settings.tick, merge=True):
                if event is None:
                    yield Ping()
                    continue
                if isinstance(event, Created):
                    reply.handle = event.handle
                    self.handles.add(event.handle)
                    continue
                done = isinstance(event, Done)
                parsed = reader.feed(event)
                if reader.verdict is not None:
                    self._judge_end(reader.verdict, reply)
                if parsed:
                    turn.passed_on()  # the first token is out: the rest may come paced
                for item in parsed:
                    yield from self._accept(item, reply)
        finally:
            if not done:
                turn.cancel()
        reply.raw = reader.raw
        self.raws.append(reply.raw)
        self._check_whole(reply)
        return reply

    def _judge_end(self, verdict: Verdict, reply: _Reply) -> None:
        """Judge the reply's end before the held-back prose that precedes it is let through."""
        if verdict.error_page is not None:
            raise ProviderRejected(f"{self.provider.name}: the chat service sent an HTML page instead of "
                                   f"a reply ({verdict.error_page})", provider=self.provider.name)
        if verdict.problem is not None and reply.problem is None:
            reply.problem, reply.offset = verdict.problem, verdict.offset

    def _accept(self, event: Event, reply: _Reply) -> Iterator[Out]:
        if reply.problem is not None or isinstance(event, End):
            return
        if isinstance(event, ToolCall):
            yield from self._accept_call(event, reply)
        elif isinstance(event, Text) and event.text:
            reply.spoke = reply.spoke or not event.text.isspace()
            text = self.repeat.next(event.text) if self.repeat else event.text
            if text:
                self.answer.texts.append(text)
                yield TextOut(text)
        elif isinstance(event, Reasoning) and event.text and not self.repeat:
            self.answer.reasoning.append(event.text)
            yield ReasoningOut(event.text)

    def _forget_attempt(self) -> None:
        """Before a repair: what the agent has not seen yet is dropped; what it has seen stays.

        A non-streaming agent has seen nothing, so the repaired reply's text replaces the failed
        one's. A streaming agent keeps the text it was sent; the repaired reply continues after it.
        Accepted calls stay for both (they are final).
        """
        self.accepted = Accepted((c.call for c in self.answer.calls), self.request.offered_tools)
        if not self.request.stream:
            self.answer.forget_unseen()
        elif self.answer.texts:
            self.repeat = _Repeat(self.answer.text)

    def _accept_call(self, call: ToolCall, reply: _Reply) -> Iterator[Out]:
        reply.acted = True  # even a call dropped below: the reply meant a call
        if not self.request.offered_tools or not self.request.native_tools:
            clash = xml_clash(call)
            if clash is not None:
                reply.problem = clash
                return
            text = ("\n\n" if self.answer.texts else "") + text_with_xml("", [call])
            self.answer.texts.append(text)
            yield TextOut(text)
            return
        try:
            call = check_call(call, {t.name: t.parameters for t in self.request.offered_tools})
        except ReplyFormatError as exc:
            reply.problem = str(exc)
            return
        clash = self.accepted.clash(call) if self.accepted is not None else None
        if clash is not None:
            log.warning("dropped a call of the repaired reply from %s: %s", self.provider.name, clash)
            return
        out = CallOut(len(self.answer.calls), self.service._new_id(), call)
        self.answer.calls.append(out)
        yield out

    def _check_whole(self, reply: _Reply) -> None:
        """Judge the reply on what it said itself: after a repair, what earlier attempts sent
        does not make an empty reply whole, nor does a repeat that stops inside it."""
        if reply.problem is not None:
            return
        if not reply.spoke and not reply.acted:
            reply.problem = "the reply was empty: it had neither text nor a tool call"
        elif self.repeat is not None and self.repeat.short and not reply.acted:
            reply.problem = ("the repaired reply stopped inside the text already sent to the agent: "
                             "it must repeat that text whole and go on")
        elif self.request.call_required and not self.answer.calls:
            forced = self.request.forced_tool
            reply.problem = (f"tool_choice requires a call of {forced}" if forced else
                             "tool_choice is \"required\"") + ", but the reply has no tool call"

    def _usage(self) -> Usage:
        """What the model holds: the agent's messages, and RooGab's format prompt with the tools
        (it stays in the conversation from turn 1 on), plus any repair message of this turn.

        Messages are counted once and remembered by digest, the format prompt by tool set: an
        agent resends both every turn. Only the replies are new each time.
        """
        cached, count = self.service.token_cache.count, self.service.tokens.count
        held = sum(cached(d, m.content) for d, m in zip(self.plan.digests, self.request.messages))
        key = "format:" + hashlib.sha256(self.request.tools_json.encode()).hexdigest()
        held += cached(key, lambda: self.service.prompts.format_prompt(self.request))
        repairs = sum(count(p) for p in self.sent[1:])
        return Usage(held + repairs, sum(count(r) for r in self.raws))


@dataclass
class _Reply:
    """What one provider reply turned into."""

    handle: str | None
    raw: str = ""
    problem: str | None = None
    offset: int = -1
    spoke: bool = False  # it had text other than whitespace
    acted: bool = False  # it had a tool call (passed on, or dropped as one already accepted)


class _Gone(Exception):
    """The agent went away before the turn ended (the generator was closed)."""


@dataclass
class _Repeat:
    """Text of a repaired reply, minus what the agent already received from the failed one.

    While the new text repeats the old, nothing is sent; once it goes beyond, only the rest is.
    New text that differs from the old is sent whole, after a paragraph break.
    """

    sent: str
    seen: str = ""
    through: bool = False

    @property
    def short(self) -> bool:
        """The new text so far is a strict beginning of the old: it has not reached its end."""
        return not self.through and self.seen != self.sent

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


def _redacted_health(health: Health, redactor: Redactor) -> Health:
    if health.last_error is None:
        return health
    return replace(health, last_error=redactor.redact(health.last_error))


@contextmanager
def _redacted_errors(redactor: Redactor) -> Iterator[None]:
    """Redact the message of a ``RooGabError`` that leaves the turn engine, in place (its type,
    status and cause stay). This is the one boundary for every error an agent or a user is
    shown: the error body and the mid-stream error event of each protocol, the inspector's try
    page and ``roogab check`` all show ``str(exc)`` of what the service raised, and a provider's
    message may quote what the chat service said (a cookie it refused, a password it echoed)."""
    try:
        yield
    except RooGabError as exc:
        exc.args = (well_formed(redactor.redact(str(exc))),)  # a service's words may hold a lone UTF-16 half
        raise


def _accepted_note(calls: list[CallOut]) -> str:
    """What a repair prompt says about the calls the agent already has."""
    if not calls:
        return ""
    listed = "; ".join(f"{c.call.name} {arguments_json(c.call)[:120]}" for c in calls)
    return (f". These tool calls were already accepted and will run: {listed}. Do not repeat or change "
            "them; reply with the rest of the answer only")


def published_id(provider: str, model: str) -> str:
    """``provider/model``, with o1/o3/o4 written o-1/o-3/o-4: Roo Code switches to another
    request shape for any model id that contains those (clients.md §1.1); and ``claude-`` written
    ``claude_``: Claude Code rewrites known ``claude-*`` names before sending them
    (``claude-opus-4-1`` arrives as ``claude-opus-5-5``, agents-wire.md §1.2)."""
    return CLAUDE_ALIAS.sub(lambda m: m.group(0)[:-1] + "_", O_SERIES.sub(r"o-\1", f"{provider}/{model}"))


def _non_compliant(reply: _Reply) -> ReplyFormatError:
    snippet = reply.raw.strip()[:200]
    message = f"the model's reply did not follow the reply format: {reply.problem}"
    if snippet:
        message += f". It began: {snippet!r}"
    return ReplyFormatError(message, offset=reply.offset, snippet=snippet)

