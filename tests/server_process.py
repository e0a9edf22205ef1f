"""A real server in a child process for the integration tests: launched, waited on until a URL
answers, stopped by PID. Chainlit, Open WebUI and Gradio fixtures share it."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def stop_by_pid(proc: subprocess.Popen[Any], wait: float) -> None:
    """SIGTERM the child *proc* (by its PID), wait up to *wait* seconds, then SIGKILL it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class ServerProcess:
    """One server child; ``workdir/server.log`` holds its output."""

    name = "server"
    stop_wait = 10.0  # seconds a SIGTERM gets before SIGKILL

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0

    def launch(self, argv: Sequence[str], *, env: Mapping[str, str], ready_url: str, timeout: float,
               probe_timeout: float = 1.0, pause: float = 0.1) -> None:
        """Start *argv* in the work folder and wait until *ready_url* answers 200 (a hang detector:
        a busy machine starts servers slowly). Raises RuntimeError with the log's tail otherwise."""
        with open(self.workdir / "server.log", "ab") as log:
            self.process = subprocess.Popen(list(argv), cwd=self.workdir, env=dict(env), stdout=log,
                                            stderr=subprocess.STDOUT)
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(ready_url, timeout=probe_timeout) as r:
                    if r.status == 200:
                        self.started_in = time.monotonic() - began
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(pause)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s: {self.log()[-3000:]}")

    def kill(self) -> None:
        """Kill the server at once (SIGKILL by PID): its sockets drop mid-whatever."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(self.stop_wait)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_by_pid(self.process, self.stop_wait)
            self.process = None

    def log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")
