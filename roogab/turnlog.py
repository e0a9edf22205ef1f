"""The turn log: what the agent sent, what the chat service got and said, for every turn.

``turn_record`` builds an entry (pure). A ``TurnLog`` takes entries for the store: the
``TurnLogWriter`` off the request path on a thread of its own (the composition root creates it
and hands it to the registry), ``DirectTurnLog`` at once (tests and one-shot tools). The store
redacts secrets when it writes them; a content cut short is redacted before it is cut. Either
keeps the records a failing store could not take and writes them once it works again; a record the
store refuses itself (``RecordRefused``: a duplicate id, a value it cannot hold) would be refused
again, so it is dropped with a warning naming its turn, rather than hold up every turn after it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .errors import RecordRefused, StoreError
from .redact import Redactor
from .store import Store, TurnRecord
from .wire import ChatRequest, Usage

__all__ = ["SEPARATOR", "DirectTurnLog", "TurnLog", "TurnLogWriter", "request_body", "request_summary",
           "turn_record"]

log = logging.getLogger(__name__)

SEPARATOR = "\n\n===== next message of this turn =====\n\n"
CONTENT_LIMIT = 4000
TOOLS_LIMIT = 64_000
"""Characters of tool definitions the log keeps whole (so `roogab parse --request` can check
calls against them); beyond that only the names are kept."""
HEAD, TAIL = 2, 10  # messages of the request a log entry keeps: the task, and the latest
RETRY_RECORDS = 100  # turn records kept while the store fails, to write once it works again


def request_summary(request: ChatRequest, client: str, from_record: str | None = None, *,
                    redactor: Redactor | None = None) -> str:
    """The agent's request, its long contents cut short: enough to see what was asked, and the
    tools whole (up to ``TOOLS_LIMIT`` characters) so the turn can be checked offline.

    A long content is redacted by *redactor* (the generic shapes only when None) before it is
    cut, so a secret across the cut leaves no part of itself for the store's redaction to miss.

    Of a long history only the first ``HEAD`` and the last ``TAIL`` messages are kept (the task
    and what is new), so that a turn's log entry stays the same size however long the task ran;
    ``omitted`` counts the messages left out between them.
    """
    kept = request.messages
    omitted = max(0, len(kept) - HEAD - TAIL)
    if omitted:
        kept = kept[:HEAD] + kept[-TAIL:]
    r = redactor or Redactor()
    messages = [{"role": m.role, "content": _cut(m.content, r), "images": m.images,
                 "tool_calls": [c.name for c in m.tool_calls],
                 "calls": [{"id": c.id, "name": c.name, "arguments": _cut(c.arguments, r)} for c in m.tool_calls],
                 "tool_call_id": m.tool_call_id}
                for m in kept]
    tools = [{"type": "function", "function": {"name": t.name, "description": _cut(t.description, r),
                                               "parameters": t.parameters}} for t in request.tools]
    whole = len(json.dumps(tools, ensure_ascii=False)) <= TOOLS_LIMIT
    return json.dumps({"client": client, "protocol": request.protocol, "model": request.model,
                       "stream": request.stream, "tool_choice": request.tool_choice,
                       "tools": [t.name for t in request.tools], "tool_specs": tools if whole else None,
                       "messages": messages, "message_count": len(request.messages), "omitted": omitted,
                       "from_record": from_record}, ensure_ascii=False)


def request_body(summary: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions body rebuilt from a request summary (what `roogab parse --request`
    reads): the messages as logged (long contents cut) and the tools whole when they were kept."""
    messages: list[dict[str, Any]] = []
    for m in summary.get("messages", []):
        message: dict[str, Any] = {"role": m["role"], "content": m.get("content", "")}
        if m.get("tool_call_id"):
            message["tool_call_id"] = m["tool_call_id"]
        if m.get("calls"):
            message["tool_calls"] = [{"id": c["id"], "type": "function",
                                      "function": {"name": c["name"], "arguments": c["arguments"]}}
                                     for c in m["calls"]]
        messages.append(message)
    body: dict[str, Any] = {"model": summary.get("model", ""), "messages": messages,
                            "stream": bool(summary.get("stream"))}
    if summary.get("tool_specs"):
        body["tools"] = summary["tool_specs"]
    return body


def turn_record(*, turn_id: str, conversation_id: str, provider: str, model: str, request: ChatRequest,
                client: str, from_record: str | None = None,
                started_at: float, duration_ms: int, prompts: Sequence[str], raws: Sequence[str],
                verdict: str, replayed: bool, repairs: int, usage: Usage | None, response: str,
                error: str | None, redactor: Redactor | None = None) -> TurnRecord:
    """One turn as the log keeps it (the request's long contents redacted by *redactor*, then cut)."""
    used = json.dumps(usage.as_dict() if usage else None)
    return TurnRecord(turn_id, conversation_id, provider, model, started_at, duration_ms,
                      request_summary(request, client, from_record, redactor=redactor),
                      SEPARATOR.join(prompts), SEPARATOR.join(raws),
                      verdict, replayed, repairs, used, response, error, from_record)


def _cut(text: str, redactor: Redactor) -> str:
    """*text*, or its head redacted (only the head is scanned: the store redacts the rest)."""
    if len(text) <= CONTENT_LIMIT:
        return text
    return redactor.head(text, CONTENT_LIMIT) + f"\n[... {len(text) - CONTENT_LIMIT} more characters]"


class TurnLog(Protocol):
    """Where the registry puts turn records."""

    def add(self, record: TurnRecord) -> None:
        """Take *record* for the store."""
        ...

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every record taken so far is in the store."""
        ...

    def close(self) -> None:
        """Write what is pending; take no more."""
        ...


class _Retrying:
    """Writes records to the store; those a failing store could not take (the newest
    ``RETRY_RECORDS``) are kept and written first, oldest first, the next time anything is
    written. A record the store refuses itself is dropped (see ``_write``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._failed: list[TurnRecord] = []

    def write(self, record: TurnRecord) -> None:
        """Write the records kept from before, then *record*; failures are logged and kept."""
        with self._lock:
            if self._write_failed() and _write(self._store, record):
                return
            self._failed = [*self._failed, record][-RETRY_RECORDS:]

    def retry(self) -> None:
        """Write the records kept from before (until the store fails again)."""
        with self._lock:
            self._write_failed()

    def _write_failed(self) -> bool:
        for i, record in enumerate(self._failed):
            if not _write(self._store, record):
                self._failed = self._failed[i:]
                return False
        self._failed = []
        return True


class DirectTurnLog:
    """Writes each record to the store at once, on the caller's thread."""

    def __init__(self, store: Store) -> None:
        self._writer = _Retrying(store)

    def add(self, record: TurnRecord) -> None:
        """Write *record* now; a store failure is logged (and the record kept for the next write),
        never raised into the turn."""
        self._writer.write(record)

    def flush(self, timeout: float = 5.0) -> None:
        """Write the records a failing store refused before, if it works now."""
        self._writer.retry()

    def close(self) -> None:
        """Nothing to stop."""


class TurnLogWriter:
    """Writes turn records on a thread of its own, so an agent's reply never waits for redaction
    and the insert. Readers call ``flush()`` first to see every turn that has ended.

    The writer waits *delay* seconds after a turn ends before it writes (then writes everything
    queued): a turn is logged just before its response goes out, and redacting and inserting
    40 KB at that moment held the response up by ~1.4 ms through the GIL (measured).

    *after_writes*, if given, runs on the writer's thread once *settle* seconds have passed since
    the first record it has not yet followed, at a moment nothing is queued: at most once per
    *settle* seconds while turns keep ending, and once after the last. The composition root
    gives it ``memory.give_back``, which returns to the system the pages finished turns freed.
    """

    def __init__(self, store: Store, delay: float = 0.05, *,
                 after_writes: Callable[[], object] | None = None, settle: float = 0.5) -> None:
        self._writer = _Retrying(store)
        self._delay = delay
        self._after_writes = after_writes
        self._settle = settle
        self._queue: queue.Queue[TurnRecord | threading.Event | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, record: TurnRecord) -> None:
        """Queue *record* for the store; starts the writer on first use."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="roogab-turnlog", daemon=True)
                self._thread.start()
        self._queue.put(record)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every record queued so far is in the store."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        due: float | None = None  # when after_writes runs next
        while True:
            try:
                first = self._queue.get(timeout=None if due is None else max(0.0, due - time.monotonic()))
            except queue.Empty:
                assert self._after_writes is not None  # due is only set with one
                self._after_writes()
                due = None
                continue
            if due is None and self._after_writes is not None and isinstance(first, TurnRecord):
                due = time.monotonic() + self._settle
            batch = [first]
            if isinstance(batch[0], TurnRecord):
                time.sleep(self._delay)
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._writer.retry()
            for item in batch:
                if item is None:
                    return
                if isinstance(item, threading.Event):
                    item.set()
                else:
                    self._writer.write(item)


def _write(store: Store, record: TurnRecord) -> bool:
    """Write *record*; False when the store failed and the record is to be kept for later.

    A record the store refuses itself is done with (True): kept, it would stop every later write
    at it. Its warning names the turn only; the store's message may quote the record's contents.
    """
    try:
        store.add_turn(record)
    except RecordRefused:
        log.warning("the turn log dropped turn %s: the store refuses the record itself", record.id)
    except StoreError as exc:
        log.warning("could not write the turn log: %s", exc)
        return False
    return True
