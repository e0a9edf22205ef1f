"""LiteLLM's proxy in front of a fake OpenAI upstream, beside RooGab in front of the demo service.

Run: ``PYTHONPATH=. python bench/bench_litellm.py [--turns 200] [--json out.json]``.

LiteLLM is never a RooGab dependency: it is installed at run time into a throwaway venv
(``/tmp/roogab-bench-litellm`` by default, reused when present; ``pip install 'litellm[proxy]'``
needs the package index). Then, all on 127.0.0.1 and stopped here:

* a fake OpenAI upstream (this file, ``--upstream``; aiohttp in its own process) answering
  ``/v1/chat/completions`` with the same 830-character reply as ``bench_turn``: 16-character
  ``delta.content`` SSE chunks when ``stream`` is true, one JSON completion otherwise;
* ``litellm --config`` with one model routed to that upstream (``openai/`` provider);
* this process posting the same 40 KB Roo request (model renamed) with ``http.client``,
  alternating LiteLLM turns and direct-to-upstream turns (the floor), streaming and not.

RooGab's numbers beside it come from ``bench_turn.run`` in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

try:
    from bench import bench_turn
    from bench._common import Http, Timing, print_table, roo_body, summary, wait_http, with_nonce, write_json
except ImportError:
    import bench_turn  # type: ignore[no-redef]
    from _common import Http, Timing, print_table, roo_body, summary, wait_http, with_nonce, write_json

VENV = Path("/tmp/roogab-bench-litellm")
MASTER_KEY = "sk-bench-" + uuid.uuid4().hex  # LiteLLM refuses to start without one
CHUNK = bench_turn.CHUNK


# -- the fake upstream (subprocess) -------------------------------------------------------

def upstream(port_file: str) -> None:
    import asyncio

    from aiohttp import web

    text = bench_turn.REPLY
    pieces = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)]

    def chunk(cid: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
        obj = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": "fake",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        cid = "chatcmpl-" + uuid.uuid4().hex[:12]
        if not body.get("stream"):
            return web.json_response({
                "id": cid, "object": "chat.completion", "created": int(time.time()), "model": "fake",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9000, "completion_tokens": 200, "total_tokens": 9200}})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(chunk(cid, {"role": "assistant", "content": ""}))
        for p in pieces:
            await resp.write(chunk(cid, {"content": p}))
        await resp.write(chunk(cid, {}, "stop"))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def main() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", completions)
        app.router.add_get("/v1/models", models)
        app.router.add_get("/healthz", models)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        Path(port_file).write_text(str(site._server.sockets[0].getsockname()[1]))  # type: ignore[union-attr]
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


# -- LiteLLM --------------------------------------------------------------------------------

class Unavailable(Exception):
    """LiteLLM could not be installed or started here; the message says why."""


def ensure_litellm(venv: Path) -> tuple[Path, str]:
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                              "litellm[proxy]"], check=False, capture_output=True, text=True)
        if pip.returncode != 0 or not exe.exists():
            tail = "\n".join(line for line in pip.stderr.splitlines() if "Location" not in line)[-1500:]
            raise Unavailable(f"pip install 'litellm[proxy]' failed (exit {pip.returncode}): {tail}")
    version = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('litellm'))"],
                             check=False, capture_output=True, text=True).stdout.strip()
    return exe, version


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_litellm(exe: Path, tmp: Path, upstream_url: str) -> tuple[subprocess.Popen[bytes], str, float]:
    cfg = tmp / "litellm.yaml"
    cfg.write_text("model_list:\n  - model_name: fake\n    litellm_params:\n      model: openai/fake\n"
                   f"      api_base: {upstream_url}/v1\n      api_key: sk-fake\n"
                   "litellm_settings:\n  telemetry: false\n  drop_params: true\n")
    port = free_port()
    env = dict(os.environ, LITELLM_MASTER_KEY=MASTER_KEY, LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR", NO_DOCS="True",
               DISABLE_ADMIN_UI="True")
    env.pop("PYTHONPATH", None)
    log = open(tmp / "litellm.log", "wb")  # noqa: SIM115 (the proxy writes to it until stopped)
    t0 = time.monotonic()
    proc = subprocess.Popen([str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                             "--num_workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None:
            try:
                wait_http(url, min(deadline, time.monotonic() + 1), path="/health/liveliness")
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        else:
            raise TimeoutError
    except TimeoutError:
        stop(proc)
        raise Unavailable("litellm exited or did not answer /health/liveliness within 120 s; log tail: "
                          + (tmp / "litellm.log").read_text(errors="replace")[-1500:]) from None
    return proc, url, time.monotonic() - t0


def start_upstream(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tmp / "upstream.port"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen([sys.executable, __file__, "--upstream", str(port_file)], env=env)
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the fake upstream did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def check(t: Timing) -> None:
    if t.content != bench_turn.REPLY:
        raise AssertionError(f"not the upstream's reply: {t.content[:80]!r}")


def compare(proxy_url: str, upstream_url: str, turns: int, warmup: int, stream: bool) -> dict[str, Any]:
    base = roo_body(model="fake")
    base["stream"] = stream
    if not stream:
        base.pop("stream_options", None)
    proxy, direct = Http(proxy_url, timeout=120), Http(upstream_url)
    px: list[Timing] = []
    dr: list[Timing] = []
    try:
        for i in range(warmup + turns):
            payload = json.dumps(with_nonce(base, f"litellm {i} {uuid.uuid4().hex[:8]}")).encode()
            a = proxy.chat(payload, stream, headers={"Authorization": f"Bearer {MASTER_KEY}"})
            check(a)
            b = direct.chat(payload, stream)
            check(b)
            if i >= warmup:
                px.append(a)
                dr.append(b)
    finally:
        proxy.close()
        direct.close()
    ms = 1000.0
    return {
        "stream": stream, "turns": turns, "request_bytes": len(payload),
        "roogab_total": summary([t.total * ms for t in px]), "direct_total": summary([t.total * ms for t in dr]),
        "roogab_ttft": summary([t.ttft * ms for t in px]), "direct_ttft": summary([t.ttft * ms for t in dr]),
        "added_total": summary([(a.total - b.total) * ms for a, b in zip(px, dr)]),
        "added_ttft": summary([(a.ttft - b.ttft) * ms for a, b in zip(px, dr)]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--venv", type=Path, default=VENV, help="where LiteLLM is (or gets) installed")
    ap.add_argument("--upstream", metavar="PORT_FILE", help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.upstream:
        upstream(args.upstream)
        return
    result: dict[str, Any] = {"benchmark": "litellm"}
    with tempfile.TemporaryDirectory(prefix="roogab-litellm-") as tmpname:
        tmp = Path(tmpname)
        up, up_url = start_upstream(tmp)
        lite = None
        try:
            try:
                exe, version = ensure_litellm(args.venv)
                lite, lite_url, boot = start_litellm(exe, tmp, up_url)
            except Unavailable as exc:
                result["litellm_error"] = str(exc)
                print(f"LiteLLM unavailable: {exc}", file=sys.stderr)
            else:
                result.update(litellm_version=version, litellm_start_s=boot,
                              litellm={"modes": [compare(lite_url, up_url, args.turns, args.warmup, s)
                                                 for s in (True, False)]})
        finally:
            if lite is not None:
                stop(lite)
            stop(up)
    result["roogab"] = bench_turn.run(args.turns, args.warmup)
    rows = bench_turn.rows(result["roogab"], "RooGab (vs demo direct)")
    if "litellm" in result:
        rows = bench_turn.rows(result["litellm"], f"LiteLLM {result['litellm_version']} (vs upstream direct)") + rows
        print(f"LiteLLM proxy {result['litellm_version']} started in {result['litellm_start_s']:.1f} s; ms:")
    print_table(bench_turn.HEADERS, rows)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
