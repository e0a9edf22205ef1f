"""How much memory the process keeps from the C allocator: the one place that talks to glibc.

RooGab serves each request on one of many threads (waitress). glibc's ``malloc`` gives every
thread that allocates under contention an arena of its own, up to eight per core, and each arena
keeps the high-water mark of what its threads once held: with the 40 KB-plus bodies agents send,
that is megabytes per arena that no live object uses (measured: 6–9 MiB of ``roogab serve``'s RSS
after 100 turns, bench/bench_startup.py). Two arenas keep contention low at two cores' worth of
Python (one GIL) and most of that memory in use. ``MALLOC_ARENA_MAX`` set in the environment does
the same before start; this does it from inside, for every way RooGab is started.

Both functions are no-ops where the C library is not glibc (musl, macOS, Windows).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import platform

__all__ = ["give_back", "limit_arenas"]

log = logging.getLogger(__name__)

#: glibc's ``mallopt`` parameter for the maximum number of arenas (malloc.h: ``M_ARENA_MAX``).
_M_ARENA_MAX = -8

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
    libc = _glibc()
    if libc is None:
        return False
    done = bool(libc.mallopt(_M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, done)
    return done


def give_back() -> bool:
    """Return the allocator's free pages to the system (``malloc_trim``), e.g. after a big load
    whose temporary objects are gone; True if any memory was released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
