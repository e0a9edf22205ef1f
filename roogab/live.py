"""The live-turns board: the turns running right now, as the inspector shows them while they stream.

The turn engine reports to a ``LiveTurns`` handed in by the composition root (``app.build_service``):
a turn begins, each prompt it sends, the raw reply so far, and its end. The board keeps only the
running turns (bounded), plus, per conversation, the id of the turn whose answer the retry record
holds, so an answer sent again from the record can name the turn it repeats. Thread-safe: turns
run on the HTTP worker threads, the inspector reads from others.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace

from .providers.base import WIRE_FRAMES, WIRE_PAYLOAD_CHARS, Frame, shown

__all__ = ["LiveTurn", "LiveTurns", "TurnNote"]

RAW_LIMIT = 200_000
"""Characters of a running turn's raw reply the board keeps (the log has the whole of it)."""

BIG_PAYLOAD_CHARS = 4096
"""A frame holding more characters than this is kept, once its turn ends, as the text it shows."""

PROMPT_LIMIT = 200_000
"""Characters of a prompt the board keeps, its head and its tail (the log has the whole of it):
an 8 MiB prompt would otherwise be redacted again and sent whole on every look at the board."""


@dataclass(frozen=True)
class LiveTurn:
    """A running turn as the board holds it (a snapshot: the board replaces it on each report)."""

    id: str
    conversation_id: str
    provider: str
    model: str
    protocol: str
    started_at: float
    request_summary: str
    prompts: tuple[str, ...] = ()
    raws: tuple[str, ...] = ()
    wires: tuple[Collection[Frame], ...] = ()


@dataclass
class TurnNote:
    """Filled in by a turn for the HTTP layer: its id, and the turn it repeats when it was
    answered from the retry record (``"unknown"`` when that turn is not known to this process)."""

    turn_id: str = ""
    from_record: str | None = None


@dataclass
class LiveTurns:
    """The running turns, newest first on reading; at most *limit* kept. *redact* is applied to
    every text as it is read (secrets never leave the board; the engine pays nothing per delta)."""

    redact: Callable[[str], str] = str
    limit: int = 256
    answers_kept: int = 4096
    wires_kept: int = 32
    _turns: OrderedDict[str, LiveTurn] = field(default_factory=OrderedDict)
    _answers: OrderedDict[str, str] = field(default_factory=OrderedDict)
    _wires: OrderedDict[str, tuple[Collection[Frame], ...]] = field(default_factory=OrderedDict)
    _to_agent: OrderedDict[str, deque[Frame]] = field(default_factory=OrderedDict)
    _reading: dict[str, Callable[[], str]] = field(default_factory=dict)  # a running turn's raw reply, read when looked at
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, turn: LiveTurn) -> None:
        """A turn started."""
        with self._lock:
            self._turns[turn.id] = turn
            while len(self._turns) > self.limit:
                self._reading.pop(self._turns.popitem(last=False)[0], None)

    def sent(self, turn_id: str, prompt: str, wire: Collection[Frame] = ()) -> None:
        """The turn sent *prompt* to the chat service (a repair sends another); *wire* is where
        the provider notes that exchange's frames (read, never copied, until the turn ends)."""
        if len(prompt) > PROMPT_LIMIT:  # redacted before it is cut: a cut may not leave part of a secret
            prompt = _head_and_tail(self.redact(prompt), PROMPT_LIMIT)
        with self._lock:
            turn, read = self._turns.get(turn_id), self._reading.pop(turn_id, None)
            if turn is not None:
                self._turns[turn_id] = replace(turn, prompts=turn.prompts + (prompt,),
                                               raws=_read(turn.raws, read) + ("",), wires=turn.wires + (wire,))

    def reply(self, turn_id: str, raw: Callable[[], str]) -> None:
        """Where the raw reply to the latest prompt is read while it streams: once per prompt,
        read only when the board is looked at (a streaming turn pays nothing per piece; reading
        the whole reply on each piece made a long reply's cost grow with its square)."""
        with self._lock:
            if turn_id in self._turns:
                self._reading[turn_id] = raw

    def end(self, turn_id: str, *, answered: bool = False) -> None:
        """The turn ended (its record is in the turn log); *answered*: the retry record now holds
        its answer."""
        with self._lock:
            turn = self._turns.pop(turn_id, None)
            self._reading.pop(turn_id, None)
        kept = tuple(tuple(map(self._keepable, w)) for w in turn.wires) if turn is not None else ()
        with self._lock:
            if kept:
                self._wires[turn_id] = kept
                while len(self._wires) > self.wires_kept:
                    self._wires.popitem(last=False)
            if turn is not None and answered:
                self._answers[turn.conversation_id] = turn_id
                self._answers.move_to_end(turn.conversation_id)
                while len(self._answers) > self.answers_kept:
                    self._answers.popitem(last=False)

    def wire(self, turn_id: str) -> list[Frame]:
        """The frames of a running or recently ended turn, in order (redacted); [] when gone."""
        with self._lock:
            turn = self._turns.get(turn_id)
            wires = turn.wires if turn is not None else self._wires.get(turn_id, ())
            frames = [f for w in wires for f in list(w)]
        return [f if isinstance(f.payload, _Shown) else replace(f, payload=shown(f.payload, self.redact))
                for f in frames]

    def _keepable(self, frame: Frame) -> Frame:
        """*frame* as an ended turn keeps it: a big payload (a prompt's part) as the text the wire
        view shows, so the last turns' frames do not hold their whole prompts."""
        if _chars(frame.payload, BIG_PAYLOAD_CHARS) > BIG_PAYLOAD_CHARS:
            return replace(frame, payload=_Shown(shown(frame.payload, self.redact)))
        return frame

    def to_agent(self, turn_id: str, chunk: str) -> None:
        """A piece of the stream sent to the agent (an SSE event): kept for the last turns."""
        name = chunk.partition("\n")[0].removeprefix("event: ") if chunk.startswith("event: ") else "data"
        frame = Frame(time.time(), "agent", "sse", name, chunk)
        with self._lock:
            frames = self._to_agent.get(turn_id)
            if frames is None:
                frames = self._to_agent[turn_id] = deque(maxlen=WIRE_FRAMES)
                while len(self._to_agent) > self.wires_kept:
                    self._to_agent.popitem(last=False)
            frames.append(frame)

    def agent_wire(self, turn_id: str) -> list[Frame]:
        """The SSE events sent to the agent for a turn, in order (redacted); [] when gone."""
        with self._lock:
            frames = list(self._to_agent.get(turn_id, ()))
        return [replace(f, payload=_cut(self.redact(str(f.payload)))) for f in frames]

    def answered_by(self, conversation_id: str) -> str | None:
        """The turn whose answer the conversation's retry record holds, if known."""
        with self._lock:
            return self._answers.get(conversation_id)

    def running(self, conversation_id: str | None = None) -> list[LiveTurn]:
        """The running turns, newest first (of one conversation when given)."""
        with self._lock:
            turns = [(t, self._reading.get(t.id)) for t in self._turns.values()
                     if conversation_id in (None, t.conversation_id)]
        r = self.redact  # the replies are read here, outside the lock the streaming turns report under
        return [replace(t, request_summary=r(t.request_summary), prompts=tuple(map(r, t.prompts)),
                        raws=tuple(map(r, _read(t.raws, read))))
                for t, read in reversed(turns)]


def _read(raws: tuple[str, ...], read: Callable[[], str] | None) -> tuple[str, ...]:
    """*raws* with the latest prompt's reply read from *read* (its last ``RAW_LIMIT`` characters)."""
    return raws if read is None or not raws else raws[:-1] + (read()[-RAW_LIMIT:],)


class _Shown(str):
    """A frame payload already made into the text the wire view shows (redacted and cut)."""


def _chars(value: object, stop: int, depth: int = 0) -> int:
    """The characters of the strings in *value* (nested to 8 levels), counted until past *stop*."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if depth > 8 or not isinstance(value, (dict, list, tuple)):
        return 0
    total = 0
    for item in value.values() if isinstance(value, dict) else value:
        total += _chars(item, stop - total, depth + 1)
        if total > stop:
            break
    return total


def _head_and_tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… [{len(text) - 2 * half} characters left out: the turn log has them] …\n{text[-half:]}"


def _cut(text: str) -> str:
    if len(text) <= WIRE_PAYLOAD_CHARS:
        return text
    return text[:WIRE_PAYLOAD_CHARS] + f"… [{len(text) - WIRE_PAYLOAD_CHARS} more characters]"
