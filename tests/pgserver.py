"""A real PostgreSQL server for the tests: ``initdb`` into a temporary directory, ``pg_ctl start``
on a free loopback port, stopped by its PID at the end.

initdb and postgres refuse to run as root: as root, they run as an unprivileged user
(``ROOGAB_PG_USER``, default ``nobody``) through ``runuser``. The binaries come from
``ROOGAB_PG_BIN``, else the newest ``/usr/lib/postgresql/*/bin``, else ``PATH``. Absent binaries
skip the tests that need the server, unless ``ROOGAB_REQUIRE_POSTGRES=1`` (CI) makes them fail.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest


def _bin_dir() -> Path | None:
    given = os.environ.get("ROOGAB_PG_BIN")
    if given:
        return Path(given)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class PgServer:
    """One running PostgreSQL cluster; ``database()`` makes a fresh database and returns its DSN."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None or not (bin_dir / "pg_ctl").exists():
            reason = "PostgreSQL binaries not found (set ROOGAB_PG_BIN)"
            if os.environ.get("ROOGAB_REQUIRE_POSTGRES") == "1":
                pytest.fail(reason)
            pytest.skip(reason)
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="roogab-pg-"))
        self.data, self.sockets, self.log = self.root / "data", self.root / "run", self.root / "server.log"
        self.sockets.mkdir()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            user = os.environ.get("ROOGAB_PG_USER", "nobody")
            shutil.chown(self.root, user)
            shutil.chown(self.sockets, user)
            self.as_user = ["runuser", "-u", user, "--"]
        self.port = _free_port()
        self.pid = 0
        self._names = itertools.count(1)

    def start(self) -> None:
        """initdb, then pg_ctl start (waits until the server accepts connections)."""
        run = [*self.as_user]
        subprocess.run([*run, str(self.bin / "initdb"), "-D", str(self.data), "-U", "roogab", "--auth=trust",
                        "-E", "UTF8", "--no-sync", "--no-instructions"], check=True, capture_output=True)
        options = f"-k {self.sockets} -h 127.0.0.1 -p {self.port} -F -c max_connections=200"
        subprocess.run([*run, str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                        "-o", options, "start"], check=True, capture_output=True)
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def dsn(self, dbname: str = "postgres") -> str:
        """Where a client connects (user roogab, trust authentication on loopback)."""
        return f"postgresql://roogab@127.0.0.1:{self.port}/{dbname}"

    def database(self) -> str:
        """A new, empty database; its DSN."""
        name = f"t{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]  # our own counter
        return self.dsn(name)

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT to the postmaster), then remove the directory."""
        if self.pid and _alive(self.pid):
            os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)  # not our child: nothing to wait on but its PID
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
