"""Several `roogab serve` processes on one PostgreSQL database, optionally behind a real HAProxy
or nginx.

Used by tests/test_multi_instance.py and bench/bench_instances.py. Every process is started here
and stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from server_process import stop_by_pid

ROOT = Path(__file__).resolve().parent.parent
DSN_VAR = "ROOGAB_CLUSTER_DSN"

HAPROXY_CONFIG = """\
global
    maxconn 4000
defaults
    mode http
    option http-no-delay  # stream each SSE chunk at once (else small chunks wait up to ~200 ms)
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend agents
    bind 127.0.0.1:{port}
    default_backend roogab
backend roogab
    # the task's routing key: what the client sends (docs/deploy.md); none: round robin
    http-request set-var(txn.route) req.hdr(x-session-affinity)
    http-request set-var(txn.route) req.hdr(x-claude-code-session-id) unless {{ var(txn.route) -m found }}
    http-request set-var(txn.route) req.hdr(session-id) unless {{ var(txn.route) -m found }}
    http-request set-header x-roogab-route %[var(txn.route)] if {{ var(txn.route) -m found }}
    balance hdr(x-roogab-route)
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host 127.0.0.1
{servers}
"""


def free_port() -> int:
    """A free loopback port (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_json(url: str, timeout: float = 10.0) -> tuple[int, Any]:
    """GET *url*: the status and the JSON body."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Instance:
    """One `roogab serve` process."""

    def __init__(self, name: str, workdir: Path, dsn: str, demo_url: str, *, lease_ttl: float = 2.0,
                 ping_interval: float = 0.2, settings: str = "", providers: str | None = None) -> None:
        """*settings*: more top-level TOML lines; *providers*: ``[[providers]]`` tables instead
        of the demo at *demo_url*."""
        self.name = name
        self.dsn = dsn
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / f"{name}.toml"
        if providers is None:
            providers = f'[[providers]]\nname = "demo"\nkind = "demo"\nurl = "{demo_url}"\n'
        self.config.write_text(
            f'store = "postgres"\ndsn_env = "{DSN_VAR}"\ninstance = "{name}"\nlease_ttl = {lease_ttl}\n'
            f'data_dir = "{workdir / name}"\nping_interval = {ping_interval}\n{settings}{providers}')
        self.log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop)
        env = dict(os.environ, PYTHONPATH=str(ROOT), **{DSN_VAR: dsn})
        env.pop("HTTPS_PROXY", None)
        env.pop("HTTP_PROXY", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "roogab", "serve", "--config", str(self.config),
                                      "--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, cwd=workdir)

    def wait_ready(self, limit: float = 60.0) -> None:
        """Until /healthz answers 200 (start-up: a database connection and the demo's login)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"instance {self.name} exited with {self.proc.returncode}")
            try:
                if get_json(self.url + "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"instance {self.name} not ready after {limit} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease released."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then wait; SIGKILL when it does not go."""
        stop_by_pid(self.proc, 20)
        self.log.close()


NGINX_CONFIG = """\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    # the task's routing key: what the client sends (docs/deploy.md); none: round robin
    map "$http_x_session_affinity|$http_x_claude_code_session_id|$http_session_id" $roogab_route {{
        "~^(?<key>[^|]+)[|]" $key;
        "~^[|](?<key>[^|]+)[|]" $key;
        "~^[|][|](?<key>.+)$" $key;
        default "";
    }}
    upstream roogab {{
        hash $roogab_route consistent;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 32m;  # RooGab's max_body_bytes
        client_body_buffer_size 1m;  # bodies in memory: the worker may not reach the prefix as nobody
        location / {{
            proxy_pass http://roogab;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;  # not the upstream's name: loopback RooGab checks Host
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 900s;
            proxy_send_timeout 900s;
        }}
    }}
}}
"""


class Balancer:
    """A load balancer in the foreground in front of *instances*, stopped by its PID.

    Subclasses write its configuration into *workdir* and give the command line; the balancer's
    own log goes to ``workdir/<name>.log``."""

    name = "balancer"

    def __init__(self, workdir: Path, instances: list[Instance]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(workdir / f"{self.name}.log", "wb") as log:
            self.proc = subprocess.Popen(self.command(instances), stdout=log, stderr=subprocess.STDOUT)

    def command(self, instances: list[Instance]) -> list[str]:
        """The argv that runs the balancer in the foreground."""
        raise NotImplementedError

    @classmethod
    def available(cls) -> bool:
        """True when the balancer's binary is installed."""
        return shutil.which(cls.name) is not None

    def _binary(self) -> str:
        binary = shutil.which(self.name)
        assert binary is not None, f"{self.name} is not installed"
        return binary

    def wait_ready(self, instances: int, limit: float = 30.0) -> None:
        """Until /healthz through the balancer has reached each of *instances* (checks passed)."""
        deadline, seen = time.monotonic() + limit, set()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                status, body = get_json(self.url + "/healthz", timeout=2)
                if status == 200:
                    seen.add(body["instance"])
                if len(seen) == instances:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready: {self.log()[-2000:]}")

    def log(self) -> str:
        """What the balancer wrote so far."""
        return (self.workdir / f"{self.name}.log").read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM by PID (both balancers shut down fast on it)."""
        stop_by_pid(self.proc, 10)


class HAProxy(Balancer):
    """HAProxy in the foreground (``-db``): hashes the session header, else round robin; active
    health checks on /healthz."""

    name = "haproxy"

    def command(self, instances: list[Instance]) -> list[str]:
        servers = "\n".join(f"    server {i.name} 127.0.0.1:{i.port} check inter 500ms" for i in instances)
        config = self.workdir / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(port=self.port, servers=servers))
        return [self._binary(), "-db", "-f", str(config)]


class Nginx(Balancer):
    """nginx in the foreground (``daemon off``) with its prefix, pid file and error log in
    *workdir*: consistent hash on the session header; an empty key falls back to round robin."""

    name = "nginx"

    def command(self, instances: list[Instance]) -> list[str]:
        servers = "\n".join(f"        server 127.0.0.1:{i.port} max_fails=1 fail_timeout=10s;" for i in instances)
        config = self.workdir / "nginx.conf"
        config.write_text(NGINX_CONFIG.format(prefix=self.workdir, port=self.port, servers=servers))
        # -e: the error log before the configuration is read (else nginx opens /var/log/nginx/).
        return [self._binary(), "-p", str(self.workdir), "-c", str(config), "-e", str(self.workdir / "error.log")]

    def log(self) -> str:
        error_log = self.workdir / "error.log"
        return super().log() + (error_log.read_text(errors="replace") if error_log.exists() else "")


def haproxy_available() -> bool:
    """True when HAProxy is installed (``.ci/run`` installs it; ROOGAB_REQUIRE_HAPROXY=1 there)."""
    return HAProxy.available()


def roo_next_turn(body: dict[str, Any], message: Any, n: int) -> dict[str, Any]:
    """What Roo sends next: our reply echoed, then the tool's result."""
    [call] = message.tool_calls
    body = json.loads(json.dumps(body))
    body["messages"] += [
        {"role": "assistant", "content": message.content or "",
         "tool_calls": [{"id": call.id, "type": "function",
                         "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": f"listing {n}: a.py b.py"}]
    return body
