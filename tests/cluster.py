"""Several `roogab serve` processes on one PostgreSQL database, optionally behind a real HAProxy.

Used by tests/test_multi_instance.py and bench/bench_cluster.py. Every process is started here
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

ROOT = Path(__file__).resolve().parent.parent
DSN_VAR = "ROOGAB_CLUSTER_DSN"

HAPROXY_CONFIG = """\
global
    maxconn 400
defaults
    mode http
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
    http-request set-var(txn.route) req.hdr(session_id) unless {{ var(txn.route) -m found }}
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

    def __init__(self, name: str, workdir: Path, dsn: str, demo_url: str, *, lease_ttl: float = 2.0) -> None:
        self.name = name
        self.dsn = dsn
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / f"{name}.toml"
        self.config.write_text(
            f'store = "postgres"\ndsn_env = "{DSN_VAR}"\ninstance = "{name}"\nlease_ttl = {lease_ttl}\n'
            f'data_dir = "{workdir / name}"\nping_interval = 0.2\n'
            f'[[providers]]\nname = "demo"\nkind = "demo"\nurl = "{demo_url}"\n')
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
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


class Balancer:
    """HAProxy in the foreground (``-db``) in front of *instances*."""

    def __init__(self, workdir: Path, instances: list[Instance]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        servers = "\n".join(f"    server {i.name} 127.0.0.1:{i.port} check inter 500ms" for i in instances)
        config = workdir / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(port=self.port, servers=servers))
        binary = shutil.which("haproxy")
        assert binary is not None
        self.proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def wait_ready(self, instances: int, limit: float = 30.0) -> None:
        """Until /healthz through the balancer has reached each of *instances* (checks passed)."""
        deadline, seen = time.monotonic() + limit, set()
        while time.monotonic() < deadline:
            try:
                status, body = get_json(self.url + "/healthz", timeout=2)
                if status == 200:
                    seen.add(body["instance"])
                if len(seen) == instances:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("haproxy not ready")

    def stop(self) -> None:
        """SIGTERM by PID."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)


def haproxy_available() -> bool:
    """True when HAProxy is installed (``.ci/run`` installs it; ROOGAB_REQUIRE_HAPROXY=1 there)."""
    return shutil.which("haproxy") is not None
