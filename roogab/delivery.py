"""How a prompt reaches a chat service: within the service's message limit, and paced.

A prompt longer than the provider's ``max_message_chars`` is cut into numbered parts
(``PromptBook.split``). Every part but the last goes out as a message of its own, and its reply
(the model's acknowledgement) is drained and dropped: it never reaches the agent. The last part
asks for the answer; its turn is handed back to the turn engine like any other. A prompt that
would take more than the profile's ``max_parts`` parts is refused before anything is sent, with
its size and the limit (``PromptTooLarge``, 400).

Each provider has a ``Pacer``: a turn first waits for one of its ``max_concurrent_turns`` slots,
and every message (each part, each repair) waits for its ``min_interval``. While waiting, the
generators here yield ``Ping`` so a streaming agent's connection stays alive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType

from .errors import PromptTooLarge
from .outputs import Ping
from .pacing import Pacer
from .prompt import PromptBook
from .providers.base import Created, Deadlines, Done, Provider, Turn

__all__ = ["Outbox", "Policy", "Slot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """One provider's delivery settings (from its profile)."""

    max_parts: int = 10
    min_interval: float = 0.0
    max_concurrent_turns: int = 0


class Outbox:
    """The way out to every provider: parts, budget and pacing."""

    def __init__(self, prompts: PromptBook, policies: Mapping[str, Policy] | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._prompts = prompts
        self._policies = dict(policies or {})
        self._clock = clock
        self._pacers = {name: Pacer(p.min_interval, p.max_concurrent_turns, clock=clock)
                        for name, p in self._policies.items()}

    def pacer(self, name: str) -> Pacer:
        """The pacer of provider *name* (an unpaced one for a provider without a policy)."""
        if name not in self._pacers:
            self._pacers[name] = Pacer(clock=self._clock)
        return self._pacers[name]

    def parts(self, provider: Provider, prompt: str) -> list[str]:
        """*prompt* as the messages it takes on *provider* (one when it fits).

        Raises:
            PromptTooLarge: it takes more than the provider's ``max_parts`` messages.
        """
        limit = provider.max_message_chars
        parts = self._prompts.split(prompt, limit)
        most = self._policies.get(provider.name, Policy()).max_parts
        if len(parts) > most:
            raise PromptTooLarge(
                f"the prompt is {len(prompt):,} characters; {provider.name} takes at most {limit:,} "
                f"characters per message and {most} part{'s' if most != 1 else ''} ({limit * most:,} characters "
                f"in all), so "
                "nothing was sent: start a new task or condense the context", param="messages")
        return parts

    def slot(self, provider: Provider, prompt: str, tick: float) -> Slot:
        """A turn slot on *provider* for a turn that opens with *prompt*."""
        return Slot(self, provider, prompt, tick)

    def send(self, provider: Provider, handle: str | None, model: str, prompt: str, deadlines: Deadlines,
             tick: float, created: Callable[[str], None] | None = None) -> Generator[Ping, None, tuple[Turn, str | None]]:
        """Send *prompt* (in parts when it is long, each paced); return the last part's turn and
        the conversation's handle (set by the first part when it created the conversation, which
        *created* is told at once: a later part may fail).

        Raises:
            PromptTooLarge: before anything was sent.
            UpstreamError: a part before the last failed.
        """
        parts = self.parts(provider, prompt)
        pacer = self.pacer(provider.name)
        for index, part in enumerate(parts[:-1], start=1):
            yield from _pings(pacer.space(tick))
            known = handle
            handle = yield from _acknowledged(provider.send(handle, model, part, deadlines), handle, tick)
            if handle is not None and handle != known and created is not None:
                created(handle)
            log.info("%s: part %d of %d delivered", provider.name, index, len(parts))
        yield from _pings(pacer.space(tick))
        return provider.send(handle, model, parts[-1], deadlines), handle


class Slot:
    """``with outbox.slot(...) as waiting:`` checks the prompt's size on entry (nothing waits or is
    sent for a prompt that cannot go); iterating *waiting* queues for a turn slot, yielding
    ``Ping`` while queued; the slot is given back on exit."""

    def __init__(self, outbox: Outbox, provider: Provider, prompt: str, tick: float) -> None:
        self._outbox = outbox
        self._provider = provider
        self._prompt = prompt
        self._tick = tick
        self._pacer = outbox.pacer(provider.name)
        self._held = False

    def __enter__(self) -> Iterator[Ping]:
        self._outbox.parts(self._provider, self._prompt)
        return self._wait()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._held:
            self._held = False
            self._pacer.leave()

    def _wait(self) -> Iterator[Ping]:
        yield from _pings(self._pacer.admit(self._tick))
        self._held = True


def _pings(waiting: Iterator[None]) -> Iterator[Ping]:
    for _ in waiting:
        yield Ping()


def _acknowledged(turn: Turn, handle: str | None, tick: float) -> Generator[Ping, None, str | None]:
    """Drain the reply to a part before the last (its acknowledgement, dropped); the handle."""
    done = False
    try:
        for event in turn.events(tick, merge=True):
            if event is None:
                yield Ping()
            elif isinstance(event, Created):
                handle = event.handle
            elif isinstance(event, Done):
                done = True
    finally:
        if not done:
            turn.cancel()
    return handle
