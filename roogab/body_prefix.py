"""Request bodies decoded in proportion to what is new in them: a per-client prefix cache.

Agents resend their whole history every turn, so a turn's body is the previous body with a few
messages appended. ``BodyCache.decode`` keeps each client's last bodies (bytes), the byte offset
where each element of the history array (``messages``, ``input``) ends, and the decoded elements.
When a new body starts with the same bytes as a kept one up to the end of element *k*, elements
0..k-1 are taken over and only the rest of the body is decoded.

Why the result is exactly ``json.loads`` of the whole body: JSON is read left to right, so after
the same bytes a parser is in the same state and has produced the same values. The kept offsets
come from a scan that reads the top-level object itself, with the standard library's own value
scanner (``JSONDecoder.raw_decode``) for every value, and accepts exactly the grammar
``json.loads`` accepts; where it meets anything it does not expect (a duplicated history key, a
syntax error, a body that is no object) the body is decoded whole by ``json.loads`` instead, whose
result or error is then the answer. The depth bound is checked on what was decoded anew (what was
taken over was checked at the same depth before). Invalid UTF-8 is refused as before: the taken
over bytes were valid, and they end on an ASCII character, so the body is valid exactly when the
rest is.

The text of the body is never held whole on a hit: only the new part is decoded. The values
taken over are shared between the bodies of successive requests: nothing may change a decoded
body in place (nothing does; the parsers only read it).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequest, RequestError

if TYPE_CHECKING:
    from .protocols import WireProtocol
    from .wire import ChatRequest

__all__ = ["BodyCache", "Decoded", "Layout", "decode_body", "depth_over"]

_WS = re.compile(r"[ \t\n\r]*")  # json.decoder.WHITESPACE: what json.loads skips between tokens
_DECODER = json.JSONDecoder()

MAX_BODY = 4 * 1024 * 1024  # bodies larger than this are not kept
BUDGET = 8 * 1024 * 1024  # bytes of bodies kept over all clients
PER_CLIENT = 4  # bodies kept per client and protocol (parallel tasks, sub-agents)


class _Irregular(Exception):
    """The text is not laid out as the scanner reads it: decode it whole."""


@dataclass(frozen=True)
class Layout:
    """Where the history array of a decoded body lies: the top-level members before it, the byte
    offset just after its ``[``, the byte offset just after each element, and the elements."""

    head: tuple[tuple[str, Any], ...]
    start: int
    ends: tuple[int, ...]
    elements: tuple[Any, ...]


@dataclass(frozen=True)
class Decoded:
    """A decoded body; *layout* when it can be kept; *reused* elements were taken over, and
    *known* are the validated messages of those elements (empty when none were kept)."""

    body: object
    layout: Layout | None
    reused: int = 0
    known: tuple[Any, ...] = ()


@dataclass(frozen=True)
class _Entry:
    raw: bytes
    layout: Layout
    known: tuple[Any, ...] | None  # one validated message per element, or None


def depth_over(value: object, limit: int, depth: int = 1) -> bool:
    """True when *value* (itself at *depth*) holds containers nested deeper than *limit*."""
    stack = [(value, depth)]
    while stack:
        item, at = stack.pop()
        if at > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, at + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, at + 1) for v in item if isinstance(v, (dict, list)))
    return False


def decode_body(raw: bytes, max_depth: int) -> object:
    """The body decoded whole, as ``json.loads``; ``InvalidRequest`` for what is not UTF-8, not
    JSON, or nested deeper than *max_depth*."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not valid UTF-8") from None
    try:
        body = json.loads(text)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    del text  # not held beside the decoded body longer than needed (big turns)
    if depth_over(body, max_depth):
        raise _too_deep(max_depth)
    return body


def _too_deep(max_depth: int) -> InvalidRequest:
    return InvalidRequest(f"the JSON body is nested deeper than {max_depth} levels")


# --- the scanner: the top-level object read by hand, every value by the standard scanner -------

def _ws(s: str, i: int) -> int:
    match = _WS.match(s, i)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _value(s: str, i: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(s, i)
    except (ValueError, RecursionError) as exc:
        raise _Irregular from exc


def _expect(s: str, i: int, char: str) -> int:
    if not s.startswith(char, i):
        raise _Irregular
    return i + 1


def _elements(s: str, i: int, after_value: bool, elements: list[Any], ends: list[int]) -> int:
    """Read array elements from *i* (just after ``[``, or just after an element) to past ``]``."""
    if not after_value:
        i = _ws(s, i)
        if s.startswith("]", i):
            return i + 1
        value, i = _value(s, i)
        elements.append(value)
        ends.append(i)
    while True:
        i = _ws(s, i)
        if s.startswith("]", i):
            return i + 1
        i = _ws(s, _expect(s, i, ","))
        value, i = _value(s, i)
        elements.append(value)
        ends.append(i)


def _members(s: str, i: int, pairs: list[tuple[str, Any]], key: str,
             found: list[tuple[int, list[Any], list[int]]] | None) -> int:
    """Read object members from *i* (just after ``{`` or ``,``) to past ``}``; the history array
    (*key* holding an array) is read element by element into *found* (a second one, or any when
    *found* is None, is ``_Irregular``)."""
    while True:
        i = _ws(s, i)
        if not s.startswith('"', i):
            raise _Irregular
        name, i = _value(s, i)
        i = _ws(s, _expect(s, _ws(s, i), ":"))
        if name == key:
            if found is None or found or not s.startswith("[", i):
                raise _Irregular  # a second history key, or one that is no array
            elements: list[Any] = []
            ends: list[int] = []
            found.append((i + 1, elements, ends))
            i = _elements(s, i + 1, False, elements, ends)
            value: Any = elements
        else:
            value, i = _value(s, i)
        pairs.append((name, value))
        i = _ws(s, i)
        if s.startswith("}", i):
            return i + 1
        i = _expect(s, i, ",")


def _end(s: str, i: int) -> None:
    if _ws(s, i) != len(s):
        raise _Irregular


def _byte_offsets(text: str, base: int, offsets: list[int]) -> list[int]:
    """Character offsets (ascending) in *text* as byte offsets of its UTF-8, plus *base*."""
    if text.isascii():
        return [base + o for o in offsets]
    out, at, seen = [], base, 0
    for o in offsets:
        at += len(text[seen:o].encode("utf-8"))
        seen = o
        out.append(at)
    return out


def _scan_whole(text: str, key: str) -> tuple[dict[str, Any], Layout]:
    """The body and its layout, read by the scanner (``_Irregular`` where it cannot)."""
    i = _expect(text, _ws(text, 0), "{")
    pairs: list[tuple[str, Any]] = []
    found: list[tuple[int, list[Any], list[int]]] = []
    if text.startswith("}", _ws(text, i)):
        raise _Irregular  # no history array: nothing to keep
    _end(text, _members(text, i, pairs, key, found))
    if not found:
        raise _Irregular
    start, elements, ends = found[0]
    offsets = _byte_offsets(text, 0, [start, *ends])
    at = next(n for n, (name, _) in enumerate(pairs) if name == key)
    layout = Layout(tuple(pairs[:at]), offsets[0], tuple(offsets[1:]), tuple(elements))
    return dict(pairs), layout


def _scan_rest(text: str, base: int, key: str, prior: Layout,
               reused: int) -> tuple[dict[str, Any], Layout]:
    """The body whose bytes up to the end of element *reused* are *prior*'s; *text* is the rest
    (from byte *base*)."""
    elements = list(prior.elements[:reused])
    ends: list[int] = []
    i = _ws(text, _elements(text, 0, True, elements, ends))
    pairs = [*prior.head, (key, elements)]
    if text.startswith("}", i):
        i += 1
    else:
        i = _members(text, _expect(text, i, ","), pairs, key, None)
    _end(text, i)
    layout = Layout(prior.head, prior.start, prior.ends[:reused] + tuple(_byte_offsets(text, base, ends)),
                    tuple(elements))
    return dict(pairs), layout


def _rest_too_deep(body: dict[str, Any], key: str, reused: int, limit: int) -> bool:
    """The depth bound on the body's top-level values (at depth 2: the body is at 1) but the
    history, and on the history elements decoded anew (at 3). The elements taken over passed it at
    the same depth before; a top-level value may not have (a later duplicate key replaced it)."""
    return (any(depth_over(v, limit, 2) for name, v in body.items() if name != key and isinstance(v, (dict, list)))
            or any(depth_over(v, limit, 3) for v in body[key][reused:] if isinstance(v, (dict, list))))


# --- the cache -----------------------------------------------------------------------------------

class BodyCache:
    """The last bodies of each client (bounded by ``MAX_BODY`` each, ``PER_CLIENT`` per client and
    ``BUDGET`` bytes in all, least recently used dropped first). Thread-safe; entries are
    immutable, so a lookup holds the lock only to find them.

    ``hits`` counts bodies decoded from a kept prefix, ``reused`` the elements taken over.
    """

    def __init__(self, budget: int = BUDGET, max_body: int = MAX_BODY, per_client: int = PER_CLIENT) -> None:
        self._budget = budget
        self._max_body = max_body
        self._per_client = per_client
        self._held = 0
        self._entries: OrderedDict[Hashable, list[_Entry]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.reused = 0

    def decode(self, client: Hashable, raw: bytes, max_depth: int, key: str) -> Decoded:
        """*raw* decoded exactly as ``decode_body`` does (same body, same errors), from a kept
        prefix of *client*'s where one matches."""
        with self._lock:
            entries = list(self._entries.get(client, ()))
        best, reused = _best(entries, raw)
        if best is not None and max_depth >= 3:
            decoded = _from_prefix(raw, best, reused, max_depth, key)
            if decoded is not None:
                with self._lock:
                    self.hits += 1
                    self.reused += reused
                return decoded
        with self._lock:
            self.misses += 1
        return _whole(raw, max_depth, key)

    def parse_turn(self, client: Hashable, raw: bytes, max_depth: int, protocol: WireProtocol,
                   headers: Mapping[str, str]) -> tuple[object, ChatRequest]:
        """The body and *protocol*'s request from it, exactly as ``protocol.parse(decode_body(raw))``
        (same result, same error); then *raw* is kept as *client*'s latest body."""
        decoded = self.decode(client, raw, max_depth, protocol.history)
        per_element = protocol.one_message_per_element
        known = decoded.known if per_element else ()
        try:
            turn = protocol.parse(decoded.body, headers, known)
        except RequestError:
            if not known:
                raise
            turn = protocol.parse(decoded.body, headers)  # the error a whole parse finds first
        self.keep(client, raw, decoded, turn.messages if per_element else None)
        return decoded.body, turn

    def keep(self, client: Hashable, raw: bytes, decoded: Decoded, known: tuple[Any, ...] | None) -> None:
        """Keep *raw* (its *decoded* layout, and *known*: one validated message per element,
        or None) as *client*'s latest body; the entry it was decoded from is replaced."""
        layout = decoded.layout
        if layout is None or len(raw) > self._max_body or not layout.elements:
            return
        if known is not None and len(known) != len(layout.elements):
            known = None
        entry = _Entry(raw, layout, known)
        with self._lock:
            entries = self._entries.pop(client, [])
            kept = [e for e in entries if not _derived(entry, e)]
            self._held -= sum(len(e.raw) for e in entries) - sum(len(e.raw) for e in kept)
            kept = [entry, *kept]
            for gone in kept[self._per_client:]:
                self._held -= len(gone.raw)
            self._entries[client] = kept[:self._per_client]
            self._held += len(raw)
            self._evict()

    def _evict(self) -> None:
        while self._held > self._budget and self._entries:
            _, entries = self._entries.popitem(last=False)
            self._held -= sum(len(e.raw) for e in entries)

    @property
    def held(self) -> int:
        """Bytes of bodies kept."""
        return self._held


def _derived(new: _Entry, old: _Entry) -> bool:
    """*new* holds all of *old*'s elements (the next turn of its task): it supersedes it."""
    return new.raw.startswith(memoryview(old.raw)[:old.layout.ends[-1]])


def _best(entries: list[_Entry], raw: bytes) -> tuple[_Entry | None, int]:
    """The kept entry sharing the most whole elements with *raw*, and how many."""
    best: _Entry | None = None
    most = 0
    for entry in entries:
        n = _shared(entry, raw)
        if n > most:
            best, most = entry, n
    return best, most


def _shared(entry: _Entry, raw: bytes) -> int:
    """How many elements of *entry* lie wholly inside the bytes *raw* shares with it."""
    ends, old = entry.layout.ends, memoryview(entry.raw)
    if raw.startswith(old[:ends[-1]]):
        return len(ends)
    low, high = 0, len(ends) - 1  # ends[:low] shared, ends[high:] not
    while low < high:
        mid = (low + high) // 2
        if raw.startswith(old[:ends[mid]]):
            low = mid + 1
        else:
            high = mid
    return low


def _from_prefix(raw: bytes, entry: _Entry, reused: int, max_depth: int, key: str) -> Decoded | None:
    """*raw* decoded from *entry*'s first *reused* elements and its own rest; None where the rest
    is not as the scanner reads it (the caller then decodes it whole)."""
    base = entry.layout.ends[reused - 1]
    try:
        text = raw[base:].decode("utf-8")
        body, layout = _scan_rest(text, base, key, entry.layout, reused)
    except (UnicodeDecodeError, _Irregular):
        return None
    del text
    if _rest_too_deep(body, key, reused, max_depth):
        raise _too_deep(max_depth)
    known = entry.known[:reused] if entry.known is not None else ()
    return Decoded(body, layout, reused, known)


def _whole(raw: bytes, max_depth: int, key: str) -> Decoded:
    """*raw* decoded whole; with its layout when the scanner reads it (else by ``json.loads``)."""
    try:
        text = raw.decode("utf-8")
        body, layout = _scan_whole(text, key)
    except (UnicodeDecodeError, _Irregular):
        return Decoded(decode_body(raw, max_depth), None)
    del text
    if depth_over(body, max_depth):
        raise _too_deep(max_depth)
    return Decoded(body, layout)
