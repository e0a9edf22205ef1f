"""Scanning helpers for the envelope's Lua data subset (and the JSON it tolerates).

Every function works on a buffer that may end in the middle of a token. A helper that cannot
decide yet returns ``None`` (or a ``False`` completeness flag) unless ``final`` says no more input
will come. Nothing here keeps state; :mod:`roogab.envelope.tables` drives it.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "LONG_OPEN_RE",
    "LONG_PREFIX_RE",
    "NAME_RE",
    "NUMBER_RE",
    "completes_closer",
    "held_suffix",
    "number_value",
    "plain_run_re",
    "scan_escape",
    "skip_space",
]

LONG_OPEN_RE = re.compile(r"\[(=*)\[")
"""An opening long bracket: ``[[``, ``[==[`` ..."""

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

NUMBER_RE = re.compile(
    r"-?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?"
    r"|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
)

_SPACE_RE = re.compile(r"\s*")
LONG_PREFIX_RE = re.compile(r"\[=*\Z")
_BYTE_RUN_RE = re.compile(r"(?:\\(?:\d{1,3}|x[0-9a-fA-F]{2}))+")
_HEX4_RE = re.compile(r"[0-9a-fA-F]{4}")
_LUA_U_RE = re.compile(r"\{([0-9a-fA-F]{1,8})\}")
_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
    "\\": "\\", '"': '"', "'": "'", "/": "/", "\n": "\n",
}
_PLAIN_RUNS = {'"': re.compile(r'[^"\\]*'), "'": re.compile(r"[^'\\]*")}


def _end(pattern: re.Pattern[str], buf: str, pos: int) -> int:
    m = pattern.match(buf, pos)
    return m.end() if m else pos


def plain_run_re(quote: str) -> re.Pattern[str]:
    """The regex matching a run of characters that need no decoding inside a *quote* string."""
    return _PLAIN_RUNS[quote]


def held_suffix(text: str, closer: str) -> int:
    """How many trailing characters of *text* could be the start of *closer* (and must wait)."""
    for k in range(min(len(closer) - 1, len(text)), 0, -1):
        if text.endswith(closer[:k]):
            return k
    return 0


def skip_space(buf: str, pos: int, final: bool) -> tuple[int, bool]:
    """Skip whitespace and Lua comments from *pos*.

    Returns ``(pos, complete)``; ``complete`` is ``False`` when a comment (or a lone ``-``)
    runs into the end of the buffer, and then ``pos`` is where it starts.
    """
    n = len(buf)
    while True:
        pos = _end(_SPACE_RE, buf, pos)
        if not buf.startswith("-", pos):
            return pos, True
        if pos + 1 >= n:
            return pos, final
        if buf[pos + 1] != "-":
            return pos, True
        end = _comment_end(buf, pos + 2, final)
        if end < 0:
            return pos, False
        pos = end


def _comment_end(buf: str, pos: int, final: bool) -> int:
    """End of a comment whose body starts at *pos* (after ``--``); -1 if not in the buffer yet."""
    if not final and LONG_PREFIX_RE.match(buf, pos):
        return -1
    m = LONG_OPEN_RE.match(buf, pos)
    if m:
        closer = "]" + m.group(1) + "]"
        end = buf.find(closer, m.end())
        if end >= 0:
            return end + len(closer)
        return len(buf) if final else -1
    end = buf.find("\n", pos)
    if end >= 0:
        return end + 1
    return len(buf) if final else -1


def number_value(token: str) -> int | float:
    """Convert a Lua or JSON numeral (already matched by ``NUMBER_RE``) to int or float.

    As in Lua, a numeral too big for a float is infinite (``1e999``, ``0x1p99999``) and a decimal
    integer too long for Python's int conversion (over 4 300 digits) is read as a float; tool
    calls refuse what JSON cannot carry (``calls.json_values``)."""
    sign = -1 if token.startswith("-") else 1
    body = token.lstrip("-")
    if body[:2] in ("0x", "0X"):
        if "." in body or "p" in body or "P" in body:
            text = body if ("p" in body or "P" in body) else body + "p0"
            try:
                return sign * float.fromhex(text)
            except OverflowError:
                return sign * math.inf
        return sign * int(body, 16)
    if "." in body or "e" in body or "E" in body:
        return sign * float(body)
    try:
        return sign * int(body)
    except ValueError:  # over sys.get_int_max_str_digits()
        return sign * float(body)


def scan_escape(buf: str, pos: int, final: bool) -> tuple[str, int] | None:
    """Decode the escape sequence at ``buf[pos] == "\\\\"``: ``(text, end)`` or ``None`` to wait.

    Handles Lua's ``\\n \\t \\\\ \\" \\' \\a \\b \\f \\v \\r``, ``\\ddd``, ``\\xXX`` (runs of byte
    escapes are decoded as UTF-8), ``\\u{XXX}``, ``\\z`` and a backslash-newline, plus JSON's
    ``\\/`` and ``\\uXXXX`` (with surrogate pairs). An unknown escape is kept as written.
    """
    n = len(buf)
    if pos + 1 >= n:
        return None if not final else ("\\", n)
    c = buf[pos + 1]
    if c.isdigit() or c == "x":
        return _scan_bytes(buf, pos, final)
    if c == "z":
        end = _end(_SPACE_RE, buf, pos + 2)
        return None if (end == n and not final) else ("", end)
    if c == "\r":
        if pos + 2 >= n and not final:
            return None
        return "\n", pos + (3 if buf.startswith("\n", pos + 2) else 2)
    if c == "u":
        return _scan_unicode(buf, pos, final)
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], pos + 2
    return "\\" + c, pos + 2


def _scan_bytes(buf: str, pos: int, final: bool) -> tuple[str, int] | None:
    m = _BYTE_RUN_RE.match(buf, pos)
    if m is None:  # "\x" without two hex digits
        if not final and len(buf) - pos < 4:
            return None
        return "\\x", pos + 2
    if m.end() >= len(buf) - 3 and not final:
        return None  # the run (or its last \ddd) may continue
    values = bytearray()
    for part in m.group().split("\\")[1:]:
        value = int(part[1:], 16) if part.startswith("x") else int(part)
        values.append(min(value, 255))
    return values.decode("utf-8", "replace"), m.end()


def _scan_unicode(buf: str, pos: int, final: bool) -> tuple[str, int] | None:
    n = len(buf)
    if buf.startswith("{", pos + 2):
        m = _LUA_U_RE.match(buf, pos + 2)
        if m is None:
            return None if (not final and n - pos < 12) else ("\\u", pos + 2)
        return _chr(int(m.group(1), 16)), m.end()
    if not final and n - pos < 6:
        return None
    m = _HEX4_RE.match(buf, pos + 2)
    if m is None:
        return "\\u", pos + 2
    code = int(m.group(), 16)
    if 0xD800 <= code < 0xDC00:
        if not final and n - pos < 12:
            return None
        if buf.startswith("\\u", pos + 6) and _HEX4_RE.match(buf, pos + 8):
            low = int(buf[pos + 8:pos + 12], 16)
            if 0xDC00 <= low < 0xE000:
                return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), pos + 12
    return _chr(code), pos + 6


def _chr(code: int) -> str:
    if 0xD800 <= code < 0xE000 or code > 0x10FFFF:
        return "\ufffd"
    return chr(code)


def completes_closer(closer: str, pending: list[str], before: str, chunk: str) -> bool:
    """Does *chunk* complete *closer* (``]=*]``), the end of a long string whose text so far
    ends with the *pending* pieces, which *before* precedes?"""
    need = len(closer) - 1  # characters before the chunk that may hold the closer's start
    head = "".join(pending[-need:])  # enough unless some pieces are shorter than one
    if len(head) >= need:
        return closer in head[-need:] + chunk
    head = ""
    for piece in reversed(pending):
        if len(head) >= need:
            break
        head = piece + head
    else:
        head = before + head
    return closer in head[-need:] + chunk
