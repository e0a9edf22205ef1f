"""A real Open WebUI server for the tests, and the small fake model backend it talks to.

``OpenWebUIServer`` runs ``open-webui serve`` from its own venv (``ROOGAB_OPENWEBUI_VENV``, set by
``.ci/run``) offline on a free loopback port, with its data in a throwaway folder and every
feature that would reach the network, or call the model behind the user's back (title, tag and
follow-up generation), switched off. Its one model backend is ``FakeModels``: an OpenAI-shaped
HTTP server on loopback that answers each chat completion with the next scripted reply and keeps
every request it got, so a test sees exactly what Open WebUI sent to the model.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from chainlit_server import free_port
from server_process import ServerProcess

MODEL = "envelope-1"
ADMIN_EMAIL = "alice@example.com"
ADMIN_PASSWORD = "wonderland-" + secrets.token_hex(4)


def venv() -> Path | None:
    """The Open WebUI venv, when there is one."""
    raw = os.environ.get("ROOGAB_OPENWEBUI_VENV", "/root/.cache/roogab-ci/openwebui-venv")
    path = Path(raw)
    return path if (path / "bin" / "open-webui").is_file() else None


class FakeModels:
    """An OpenAI-compatible model backend on loopback with scripted replies."""

    def __init__(self) -> None:
        self.replies: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.received = threading.Condition()
        self.chunk = 7
        self.stall: threading.Event | None = None   # set: the next reply stops after its first piece
        self.stalled = threading.Event()             # until stall is set; this says it got there
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-models", daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def script(self, *replies: str) -> None:
        with self.received:
            self.replies.extend(replies)

    def completions(self) -> list[dict[str, Any]]:
        with self.received:
            return list(self.requests)

    def _next(self, body: dict[str, Any]) -> str:
        with self.received:
            self.requests.append(body)
            self.received.notify_all()
            return self.replies.pop(0) if self.replies else '```lua\nreturn { text = [[ok]] }\n```'

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        models = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test"}]})
                else:
                    self._json({"error": "not found"}, 404)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json({"error": "not found"}, 404)
                    return
                reply = models._next(body)
                stall, models.stall = models.stall, None
                if body.get("stream"):
                    try:
                        self._stream(reply, body, stall)
                    except OSError:  # the caller went away mid-reply (a killed Open WebUI)
                        self.close_connection = True
                else:
                    self._json({"id": "cmpl-1", "object": "chat.completion", "created": int(time.time()),
                                "model": body.get("model", MODEL), "choices": [{
                                    "index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": reply}}]})

            def _stream(self, reply: str, body: dict[str, Any], stall: threading.Event | None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for i, piece in enumerate(_pieces(reply, models.chunk)):
                    self._event({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]},
                                body)
                    if i == 0 and stall is not None:
                        models.stalled.set()
                        stall.wait(120)
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, body)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def _event(self, data: dict[str, Any], body: dict[str, Any]) -> None:
                chunk = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                         "model": body.get("model", MODEL), **data}
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()

            def _json(self, data: object, status: int = 200) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.send_header("Connection", "close")  # no handler thread waits on a kept-alive socket
                self.end_headers()
                self.wfile.write(raw)
                self.close_connection = True

        return Handler


def _pieces(text: str, size: int) -> Iterator[str]:
    for i in range(0, len(text), max(1, size)):
        yield text[i:i + size]


class OpenWebUIServer(ServerProcess):
    """``open-webui serve`` from its venv, offline, on a loopback port, data in *workdir*."""

    name = "open-webui"
    stop_wait = 20.0

    def __init__(self, root: Path, workdir: Path, models_url: str) -> None:
        super().__init__(workdir)
        self.root = root
        self.models_url = models_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(32)

    def environment(self) -> dict[str, str]:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        return {**keep,
                "DATA_DIR": str(data), "WEBUI_SECRET_KEY": self.secret, "OFFLINE_MODE": "true",
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(self.workdir / "hf"),
                "ENABLE_OLLAMA_API": "false", "ENABLE_OPENAI_API": "true",
                "OPENAI_API_BASE_URL": self.models_url, "OPENAI_API_KEY": "sk-fake",
                "ENABLE_SIGNUP": "true", "DEFAULT_USER_ROLE": "user", "ENABLE_VERSION_UPDATE_CHECK": "false",
                "ENABLE_TITLE_GENERATION": "false", "ENABLE_TAGS_GENERATION": "false",
                "ENABLE_FOLLOW_UP_GENERATION": "false", "ENABLE_AUTOCOMPLETE_GENERATION": "false",
                "ENABLE_RETRIEVAL_QUERY_GENERATION": "false", "ENABLE_WEB_SEARCH": "false",
                "ENABLE_IMAGE_GENERATION": "false", "ENABLE_CODE_EXECUTION": "false",
                "ENABLE_CODE_INTERPRETER": "false", "ENABLE_MEMORIES": "false",
                "ENABLE_COMMUNITY_SHARING": "false", "ENABLE_EVALUATION_ARENA_MODELS": "false",
                "BYPASS_EMBEDDING_AND_RETRIEVAL": "true", "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
                "RAG_RERANKING_MODEL_AUTO_UPDATE": "false", "ANONYMIZED_TELEMETRY": "false",
                "SCARF_NO_ANALYTICS": "true", "DO_NOT_TRACK": "true", "GLOBAL_LOG_LEVEL": "WARNING",
                "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
                "NO_PROXY": "127.0.0.1,localhost"}

    def start(self, timeout: float = 240.0) -> None:
        self.launch([str(self.root / "bin" / "open-webui"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                    env=self.environment(), ready_url=self.url + "/health", timeout=timeout, probe_timeout=2,
                    pause=0.5)

    def sign_up_admin(self) -> str:
        """The first sign-up on a fresh data folder becomes the admin; returns its token."""
        body = json.dumps({"name": "Alice", "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).encode()
        request = urllib.request.Request(self.url + "/api/v1/auths/signup", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            token: str = json.loads(r.read())["token"]
        return token
