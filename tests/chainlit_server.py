"""A real Chainlit server for the tests: tests/fixtures/chainlit_app, run from a throwaway folder
on a free loopback port (its first start writes .chainlit/ into its working directory)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

from server_process import ServerProcess

APP = Path(__file__).parent / "fixtures" / "chainlit_app"
PASSWORD = "wonderland-" + secrets.token_hex(4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChainlitServer(ServerProcess):
    """``chainlit run app.py --headless`` in a throwaway folder, on a fixed loopback port."""

    name = "chainlit"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(32)

    def start(self, timeout: float = 120.0) -> None:  # a hang detector: a busy machine starts it slowly
        env = {**os.environ, "CHAINLIT_AUTH_SECRET": self.secret, "ROOGAB_TEST_PASSWORD": PASSWORD}
        self.launch([sys.executable, "-m", "chainlit", "run", "app.py", "--headless", "--host", "127.0.0.1",
                     "--port", str(self.port)], env=env, ready_url=self.url + "/auth/config", timeout=timeout)


def new_server(tmp: Path) -> ChainlitServer:
    workdir = tmp / "app"
    shutil.copytree(APP, workdir)
    return ChainlitServer(workdir)


