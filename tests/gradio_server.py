"""A real Gradio server for the tests: tests/fixtures/gradio_app/app.py run with the Python of the
cached Gradio venv (``ROOGAB_GRADIO_PYTHON``; ``.ci/run`` installs it into
/root/.cache/roogab-ci/gradio-venv), on a free loopback port, analytics off.

``ROOGAB_REQUIRE_GRADIO=1`` (set by CI) turns a missing Gradio into a failure instead of a skip.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from chainlit_server import free_port
from server_process import ServerProcess

APP = Path(__file__).parent / "fixtures" / "gradio_app" / "app.py"
PASSWORD = "looking-glass-" + secrets.token_hex(4)
DEFAULT_PYTHON = Path("/root/.cache/roogab-ci/gradio-venv/bin/python")


def gradio_python() -> Path:
    """The interpreter that has Gradio, or skip (fail under ROOGAB_REQUIRE_GRADIO=1)."""
    python = Path(os.environ.get("ROOGAB_GRADIO_PYTHON") or DEFAULT_PYTHON)
    if python.is_file():
        return python
    reason = f"no Gradio venv at {python}: run .ci/run once, or set ROOGAB_GRADIO_PYTHON"
    if os.environ.get("ROOGAB_REQUIRE_GRADIO") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


class GradioServer(ServerProcess):
    """The test app on one port: ``/open`` without login, ``/locked`` behind ``auth=``."""

    name = "gradio"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    @property
    def open_url(self) -> str:
        return self.base + "/open/"

    @property
    def locked_url(self) -> str:
        return self.base + "/locked/"

    def start(self, timeout: float = 180.0) -> None:
        python = gradio_python()
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "ROOGAB_GRADIO_DIR": str(self.workdir),
               "ROOGAB_TEST_PASSWORD": PASSWORD, "NO_PROXY": "127.0.0.1,localhost"}
        self.launch([str(python), str(APP), str(self.port)], env=env, ready_url=self.open_url + "config",
                    timeout=timeout, probe_timeout=2, pause=0.2)

    def script(self, *replies: str) -> None:
        """Queue the next replies (after those already answered)."""
        with open(self.workdir / "replies.jsonl", "a") as f:
            f.writelines(json.dumps(reply) + "\n" for reply in replies)

    def received(self) -> list[dict[str, Any]]:
        path = self.workdir / "received.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def reset(self) -> None:
        """Forget the script and the log; the next reply is the first scripted one."""
        for name in ("replies.jsonl", "received.jsonl"):
            (self.workdir / name).unlink(missing_ok=True)
