"""Helpers shared by the benchmark scripts: request bodies, timing, SSE reading, stats, RSS, JSON.

Not a benchmark itself. Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CAPTURED = ROOT / "tests" / "fixtures" / "captured"
ROO = CAPTURED / "roo_request_roo_v3.52.1.json"
MODEL = "demo/gab-1"


def roo_body(model: str = MODEL, target_bytes: int = 40_000) -> dict[str, Any]:
    """Roo Code v3.52.1's first streaming request (37 KB, 21 tools), addressed to *model*.

    The captured system prompt is a 41-byte placeholder; it is padded with ordinary agent
    instructions so that the whole JSON body is about *target_bytes* (Roo's real system prompt
    is larger still).
    """
    data = json.loads(ROO.read_text("utf-8"))
    body = copy.deepcopy(data["requests"][0]["body"])
    body["model"] = model
    size = len(json.dumps(body).encode())
    if size < target_bytes:
        body["messages"][0]["content"] += "\n\n" + system_text(target_bytes - size - 2)
    return body


def system_text(size: int) -> str:
    """*size* characters of plausible system-prompt prose (no JSON escapes needed)."""
    para = ("RULES: Use the tools to read and change files in the workspace. Prefer small, "
            "reviewable edits. Explain what you do in one or two sentences before each tool call. "
            "Never invent file contents; read a file before you change it.\n")
    return (para * (size // len(para) + 1))[:size]


def with_nonce(body: dict[str, Any], nonce: str) -> dict[str, Any]:
    """A copy of *body* whose first user message mentions *nonce*: a task of its own for RooGab."""
    body = copy.deepcopy(body)
    for m in body["messages"]:
        if m["role"] == "user":
            if isinstance(m["content"], str):
                m["content"] += f" ({nonce})"
            else:
                m["content"][0]["text"] += f" ({nonce})"
            break
    return body


@dataclass
class Timing:
    """One turn as a client saw it: seconds to the first token and to the end, bytes received."""

    ttft: float
    total: float
    content: str = ""
    tool_calls: list[dict[str, str]] | None = None
    nbytes: int = 0


class Http:
    """A kept-alive http.client connection to one base URL."""

    def __init__(self, base: str, timeout: float = 60.0) -> None:
        u = urlsplit(base)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def _conn(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def get(self, path: str) -> tuple[int, bytes]:
        conn = self._conn()
        try:
            conn.request("GET", self.prefix + path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def chat(self, payload: bytes, stream: bool, path: str = "/v1/chat/completions",
             headers: dict[str, str] | None = None) -> Timing:
        """POST a chat completion; time the first content/tool-call byte and the end."""
        conn = self._conn()
        hdrs = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
        hdrs.update(headers or {})
        t0 = time.perf_counter()
        try:
            conn.request("POST", self.prefix + path, body=payload, headers=hdrs)
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
            if not stream:
                raw = resp.read()
                t1 = time.perf_counter()
                msg = json.loads(raw)["choices"][0]["message"]
                calls = [{"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                         for c in msg.get("tool_calls") or []]
                return Timing(t1 - t0, t1 - t0, msg.get("content") or "", calls, len(raw))
            return _read_sse(resp, t0)
        except (OSError, http.client.HTTPException):
            self.close()
            raise


def _read_sse(resp: http.client.HTTPResponse, t0: float) -> Timing:
    first = 0.0
    text: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    nbytes = 0
    while True:
        line = resp.readline()
        if not line:
            break
        nbytes += len(line)
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        obj = json.loads(data)
        if "error" in obj:
            raise RuntimeError(f"stream error: {obj['error']}")
        for choice in obj.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content") or delta.get("tool_calls"):
                if not first:
                    first = time.perf_counter()
                text.append(delta.get("content") or "")
                for tc in delta.get("tool_calls") or []:
                    entry = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
                    entry["id"] = entry["id"] or tc.get("id") or ""
                    fn = tc.get("function") or {}
                    entry["name"] = entry["name"] or fn.get("name") or ""
                    entry["arguments"] += fn.get("arguments") or ""
    resp.read()  # drain the chunked terminator so the connection can be reused
    t1 = time.perf_counter()
    return Timing((first or t1) - t0, t1 - t0, "".join(text), [calls[i] for i in sorted(calls)], nbytes)


def pct(values: Sequence[float], p: float) -> float:
    """The *p*-th percentile (nearest rank) of *values*."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, mean, min, max of *values* (milliseconds in, milliseconds out)."""
    return {"p50": pct(values, 50), "p95": pct(values, 95), "mean": statistics.fmean(values) if values else 0.0,
            "min": min(values) if values else 0.0, "max": max(values) if values else 0.0, "n": len(values)}


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of a process in KiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def machine() -> dict[str, Any]:
    """CPU model, cores, Python, load average: what the numbers were measured on."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "loadavg": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain aligned table on stdout."""
    rows = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def write_json(path: str | None, result: dict[str, Any]) -> None:
    """Write *result* (plus the machine) to *path* when one was given."""
    if not path:
        return
    result = {"machine": machine(), **result}
    Path(path).write_text(json.dumps(result, indent=2, default=str) + "\n", "utf-8")
    print(f"wrote {path}", file=sys.stderr)


def wait_http(url: str, deadline: float, path: str = "/healthz") -> float:
    """Poll GET *path* until it answers 200; returns the monotonic time it did.

    Raises:
        TimeoutError: not up by *deadline* (a ``time.monotonic`` value).
    """
    h = Http(url, timeout=2.0)
    try:
        while time.monotonic() < deadline:
            try:
                status, _ = h.get(path)
                if status == 200:
                    return time.monotonic()
            except (OSError, http.client.HTTPException):
                time.sleep(0.01)
                continue
            time.sleep(0.01)
    finally:
        h.close()
    raise TimeoutError(f"{url}{path} not up")


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM a process this benchmark started, then SIGKILL it if it has not exited in 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
