"""How much memory the process keeps from the C allocator: the one place that talks to glibc.

RooGab serves each request on one of many threads (waitress). glibc's ``malloc`` gives every
thread that allocates under contention an arena of its own, up to eight per core, and each arena
keeps the high-water mark of what its threads once held: with the 40 KB-plus bodies agents send,
that is megabytes per arena that no live object uses (measured: 6–9 MiB of ``roogab serve``'s RSS
after 100 turns, bench/bench_startup.py). Two arenas keep contention low at two cores' worth of
Python (one GIL) and most of that memory in use. ``MALLOC_ARENA_MAX`` set in the environment does
the same before start; this does it from inside, for every way RooGab is started.

Big blocks are another matter. glibc serves a block over ``M_MMAP_THRESHOLD`` (128 KiB at
start) from its own ``mmap`` and unmaps it on ``free``, but each such free raises the threshold to
the freed size, up to 32 MiB: after one big turn, the next turn's multi-megabyte strings (the
body, the prompt, its frames) come from the heap and stay there. A fixed threshold keeps every
block over 1 MiB mapped and returned when freed (measured in docs/benchmarks.md §12).

These functions are no-ops where the C library is not glibc (musl, macOS, Windows).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import platform

__all__ = ["give_back", "limit_arenas", "map_big_blocks"]

log = logging.getLogger(__name__)

#: glibc's ``mallopt`` parameter for the maximum number of arenas (malloc.h: ``M_ARENA_MAX``).
_M_ARENA_MAX = -8

#: glibc's ``mallopt`` parameter for the size from which blocks get their own mapping (``M_MMAP_THRESHOLD``).
_M_MMAP_THRESHOLD = -3

#: Blocks this big or bigger are mapped on their own and given back when freed.
BIG_BLOCK = 1 << 20

#: Arenas RooGab asks for: one for the main thread, one shared by the others.
ARENAS = 2


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before the server's threads start); True if it took."""
    return _mallopt(_M_ARENA_MAX, arenas, "malloc arenas capped at %d")


def map_big_blocks(size: int = BIG_BLOCK) -> bool:
    """Give every block of *size* bytes or more its own mapping, returned to the system when it is
    freed (a fixed ``M_MMAP_THRESHOLD``; call at start); True if it took."""
    return _mallopt(_M_MMAP_THRESHOLD, size, "blocks of %d bytes or more mapped on their own")


def _mallopt(param: int, value: int, what: str) -> bool:
    libc = _glibc()
    if libc is None:
        return False
    done = bool(libc.mallopt(param, value))
    log.debug(what + ": %s", value, done)
    return done


def give_back() -> bool:
    """Return the allocator's free pages to the system (``malloc_trim``), e.g. after a big load
    whose temporary objects are gone; True if any memory was released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
