"""The answer accumulator and the turn's typed outcomes. Pure.

:class:`Accumulator` collects a turn's ``Out`` items (text, reasoning, calls, the finish) the same way
for a streaming agent (which also got them one by one) and for a non-streaming one (which gets
only the result): both end with the same answer. :class:`Outcome` names how a turn ended, for
the turn log, instead of reading it out of an error message.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .envelope import ToolCall
from .errors import ReplyFormatError
from .outputs import CallOut, Finished, Out, ReasoningOut, TextOut, to_json
from .render import arguments_json
from .wire import Message, ToolCallRef, ToolSpec, Usage

__all__ = ["Accepted", "Accumulator", "Outcome", "outcome_of"]


class Outcome(enum.Enum):
    """How a turn ended (the turn log's verdict)."""

    OK = "ok"
    REPAIRED = "repaired"
    RETRY = "retry answered from the record"
    NON_COMPLIANT = "non_compliant"
    FAILED = "failed"


def outcome_of(error: Exception | None, repairs: int) -> Outcome:
    """The outcome of a turn that ended with *error* (None: it succeeded) after *repairs*."""
    if error is None:
        return Outcome.REPAIRED if repairs else Outcome.OK
    return Outcome.NON_COMPLIANT if isinstance(error, ReplyFormatError) else Outcome.FAILED


@dataclass
class Accumulator:
    """What the agent has been given in one turn, built from its ``Out`` items as they go out
    (the turn records it; :meth:`roogab.outputs.Answer.collect` gathers the same items for a
    non-streaming agent)."""

    texts: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[CallOut] = field(default_factory=list)
    finished: Finished = field(default_factory=lambda: Finished("stop", Usage(0, 0)))

    def add(self, item: Out) -> None:
        """Take one item (``Ping`` is ignored)."""
        if isinstance(item, TextOut):
            self.texts.append(item.text)
        elif isinstance(item, ReasoningOut):
            self.reasoning.append(item.text)
        elif isinstance(item, CallOut):
            self.calls.append(item)
        elif isinstance(item, Finished):
            self.finished = item

    @property
    def text(self) -> str:
        """The answer's text."""
        return "".join(self.texts)

    @property
    def reasoning_text(self) -> str:
        """The answer's reasoning."""
        return "".join(self.reasoning)

    def forget_unseen(self) -> None:
        """Before a non-streaming repair: the failed reply's text goes; its accepted calls stay."""
        self.texts.clear()
        self.reasoning.clear()

    def message(self) -> Message:
        """The assistant message as the agent will send it back next turn."""
        refs = tuple(ToolCallRef(c.id, c.call.name, arguments_json(c.call)) for c in self.calls)
        return Message(role="assistant", content=self.text, tool_calls=refs)

    def record(self, finished: Finished | None = None) -> str:
        """The answer as JSON (see :func:`roogab.outputs.to_json`)."""
        items: list[Out] = [TextOut(self.text), ReasoningOut(self.reasoning_text), *self.calls]
        return to_json(items + ([finished] if finished is not None else []))


SHORT_ARGUMENT = 200  # characters: an argument this short names what a call acts on (a path, a command)


class Accepted:
    """The calls an agent already has when a reply is repaired: accepted calls are final.

    A repaired reply's call may not repeat one of them, nor change one: name the same tool and
    agree with it on what the call acts on (the same ``path``, the same ``command``) but not on
    everything. What a call acts on is a short string argument the tool requires; a flag, a
    number or an optional argument (``requires_approval = false``, ``limit = 100``, ``cwd =
    "."``) is shared by unrelated calls and names nothing. Without the tool's schema every short
    string argument counts. Indexed once, so each later call is checked in time proportional to
    its size.

    ``clash`` is asked once per call of the repaired reply, in order. Each accepted call answers
    for one repeat: once a call has repeated it, it no longer stands in the way of a later call
    on the same target, which is then a call of its own (a reply that writes a file twice, the
    first write accepted before the page garbled the reply, is both writes, not one).
    """

    def __init__(self, calls: Iterable[ToolCall], tools: Iterable[ToolSpec] = ()) -> None:
        self._required = {t.name: _required(t.parameters) for t in tools}
        self._whole: dict[str, list[int]] = {}  # canonical call -> the accepted calls it is
        self._targets: dict[tuple[str, str, str], set[int]] = {}  # target -> the calls acting on it
        self._open: set[int] = set()  # accepted calls not repeated yet
        for i, call in enumerate(calls):
            self._whole.setdefault(_canonical([call.name, call.arguments]), []).append(i)
            for target in self._targets_of(call):
                self._targets.setdefault(target, set()).add(i)
            self._open.add(i)

    def clash(self, call: ToolCall) -> str | None:
        """Why *call*, the repaired reply's next call, may not go out (None: it may)."""
        repeated = next((i for i in self._whole.get(_canonical([call.name, call.arguments]), ()) if i in self._open),
                        None)
        if repeated is not None:
            self._open.discard(repeated)
            return f"it repeats the accepted call {call.name}"
        if any(not self._open.isdisjoint(self._targets.get(t, ())) for t in self._targets_of(call)):
            return f"it changes the accepted call {call.name}; accepted calls are final"
        return None

    def _targets_of(self, call: ToolCall) -> set[tuple[str, str, str]]:
        required = self._required.get(call.name)
        return {(call.name, key, value) for key, value in call.arguments.items()
                if isinstance(value, str) and len(value) <= SHORT_ARGUMENT and (required is None or key in required)}


def _required(parameters: Mapping[str, object]) -> frozenset[str] | None:
    """The arguments a tool's schema requires (None: the schema does not say)."""
    names = parameters.get("required")
    if not isinstance(names, list):
        return None
    return frozenset(n for n in names if isinstance(n, str))


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
