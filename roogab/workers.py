"""Several worker processes on one listening socket (``workers = N``, ``roogab serve --workers N``).

One Python process is bound by its GIL to about one core. With ``workers > 1`` the parent binds
the listening sockets once, then forks N workers: each runs a whole RooGab (its own provider
connections, asyncio loop, request threads and store connection) and accepts connections from the
shared sockets; the kernel hands each new connection to whichever worker takes it first. The
workers share the conversations through the store (SQLite in WAL mode, or PostgreSQL) under task
leases, exactly as separate instances do (docs/deploy.md): one turn at a time per task across
workers, and a task whose turns land on different workers keeps its provider conversation.

The parent serves nothing itself. Before forking, ``roogab serve`` builds the token counter's
tables there (cli.py), so every worker counts with the parent's one copy. The parent forwards
SIGTERM and SIGINT to the workers and waits for them. A worker that exits on its own (a crash, a
start-up error, a kill) is reported and the parent stops the others and exits non-zero (the
worker's status, else 1): a supervisor (systemd, a container runtime) restarts the whole group;
workers are never restarted one by one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

from .config import Config
from .errors import ConfigError
from .server import bind_sockets

__all__ = ["Worker", "supervise", "worker_name"]

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
STOP_GRACE_SECONDS = 30.0     # after SIGTERM, a worker still there is killed


@dataclasses.dataclass(frozen=True)
class Worker:
    """What one worker process runs with: its config (its own instance name), the shared
    listening sockets, its index, and its parent's PID (a worker whose parent is gone stops)."""

    config: Config
    sockets: list[socket.socket]
    index: int
    parent: int


def worker_name(config: Config, index: int, pid: int) -> str:
    """The instance name of worker *index*: ``/healthz``, ``x-roogab-instance`` and the task
    leases carry it, so it names the process (``roogab-1-w0-12345``)."""
    return f"{config.instance or socket.gethostname()}-w{index}-{pid}"


def supervise(config: Config, run: Callable[[Worker], int]) -> int:
    """Bind, fork ``config.workers`` workers each running *run*, and wait for them: the exit
    status of the group (0 after SIGTERM/SIGINT, non-zero when a worker died on its own).

    Raises:
        ConfigError: the address cannot be listened on, or this platform cannot fork.
    """
    if not hasattr(os, "fork"):
        raise ConfigError("workers", "several workers need os.fork (Linux, macOS): set workers = 1")
    sockets = bind_sockets(config.host, config.port)
    port = sockets[0].getsockname()[1]
    config = dataclasses.replace(config, port=port)
    group = _Group(config, sockets)
    signal.signal(signal.SIGTERM, group.forward)
    signal.signal(signal.SIGINT, group.forward)
    try:
        for index in range(config.workers):
            group.fork(index, run)
        log.info("%d workers serving %s:%d: pids %s", config.workers, config.host, port,
                 ", ".join(str(p) for p in group.pids))
        return group.wait()
    finally:
        for sock in sockets:
            sock.close()


class _Group:
    """The parent's view of its workers: fork them, forward signals, reap them."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.children: dict[int, int] = {}   # pid -> index
        self.stopping = False
        self.status = 0

    @property
    def pids(self) -> list[int]:
        """The PIDs of the workers still running."""
        return list(self.children)

    def fork(self, index: int, run: Callable[[Worker], int]) -> None:
        """Start worker *index*; in the child, run it and never return."""
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            os._exit(_child(Worker(self._own(index), self.sockets, index, parent), run))
        self.children[pid] = index

    def _own(self, index: int) -> Config:
        return dataclasses.replace(self.config, instance=worker_name(self.config, index, os.getpid()))

    def forward(self, signum: int, frame: FrameType | None) -> None:
        """The parent's SIGTERM/SIGINT handler: every worker gets SIGTERM."""
        if not self.stopping:
            log.info("stopping %d workers", len(self.children))
        self.stopping = True
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: int) -> None:
        for pid in self.children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass  # already gone: reaped below

    def wait(self) -> int:
        """Reap workers until none is left; the group's exit status."""
        deadline: float | None = None
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if self.stopping and deadline is None:
                    deadline = time.monotonic() + STOP_GRACE_SECONDS
                if deadline is not None and time.monotonic() > deadline:
                    log.error("workers %s did not stop in %.0f s: killing them", self.pids, STOP_GRACE_SECONDS)
                    self._signal_all(signal.SIGKILL)
                    deadline = float("inf")
                time.sleep(POLL_SECONDS)
                continue
            self._reaped(pid, status)
        return self.status

    def _reaped(self, pid: int, status: int) -> None:
        index = self.children.pop(pid, None)
        if index is None or self.stopping:
            return
        code = os.waitstatus_to_exitcode(status)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        log.error("worker %d (pid %d) %s: stopping the other workers", index, pid, how)
        self.status = code if code > 0 else 1
        self.stopping = True
        self._signal_all(signal.SIGTERM)


def _child(worker: Worker, run: Callable[[Worker], int]) -> int:
    """Run one worker; its exit status (a ``sys.exit`` inside *run* included)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run(worker)
    except SystemExit as exc:
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        return 0
    except Exception:  # the process boundary: nothing may return into the parent's code
        log.exception("worker %d failed", worker.index)
        return 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
