"""A real Chainlit server for the tests: tests/fixtures/chainlit_app, run from a throwaway folder
on a free loopback port (its first start writes .chainlit/ into its working directory)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

APP = Path(__file__).parent / "fixtures" / "chainlit_app"
PASSWORD = "wonderland-" + secrets.token_hex(4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChainlitServer:
    """``chainlit run app.py --headless`` in a throwaway folder, on a fixed loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(32)
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0

    def start(self, timeout: float = 120.0) -> None:  # a hang detector: a busy machine starts it slowly
        env = {**os.environ, "CHAINLIT_AUTH_SECRET": self.secret, "ROOGAB_TEST_PASSWORD": PASSWORD}
        with open(self.workdir / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chainlit", "run", "app.py", "--headless", "--host", "127.0.0.1",
                 "--port", str(self.port)], cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"chainlit exited with {self.process.returncode}: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/auth/config", timeout=1) as r:
                    if r.status == 200:
                        self.started_in = time.monotonic() - began
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"chainlit did not answer within {timeout} s: {self.log()[-2000:]}")

    def kill(self) -> None:
        """Kill the server at once (SIGKILL by PID): sockets drop mid-whatever."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")


def new_server(tmp: Path) -> ChainlitServer:
    workdir = tmp / "app"
    shutil.copytree(APP, workdir)
    return ChainlitServer(workdir)


