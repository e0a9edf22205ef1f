"""Cold start, idle memory and install size.

Run: ``PYTHONPATH=. python bench/bench_startup.py [--runs 5] [--no-install] [--json out.json]``.

1. Install size: a fresh venv under /tmp, ``pip install <repo>`` (from PyPI plus the repo; needs
   the package index), site-packages after minus the fresh venv's; the wheel (``pip wheel
   --no-deps``); the largest installed distributions. The venv is then used for the runs below
   (``--no-install``: this interpreter with ``-m roogab`` instead).
2. Cold start of ``roogab demo --port 0``: process start -> banner on stdout, and -> ``/healthz``
   200. The first run after install is the coldest; then the median of the others.
3. Idle RSS: ``roogab serve`` alone (a ``kind = "socketio"`` provider pointed at a running
   ``roogab demo``'s chat service), one second after start, and again idle after 100 turns of
   the 40 KB Roo request; also the ``roogab demo`` process (RooGab plus the demo service). Then
   once more after ``tokenizer_idle`` (``--tokenizer-idle``, 5 s here, 300 s by default) has let
   the tokenizer's tables go: two idle times and a second after the turns.
   And in a bare interpreter: RSS after importing RooGab, after the socketio kind's module, and
   after loading the cl100k tokenizer. The 80 MB target is decimal: 76.3 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    from bench._common import (
        ROOT,
        Http,
        print_table,
        roo_body,
        rss_kb,
        stop,
        wait_http,
        with_nonce,
        write_json,
    )
except ImportError:
    from _common import ROOT, Http, print_table, roo_body, rss_kb, stop, wait_http, with_nonce, write_json

MB = 1024 * 1024


def du(path: Path) -> int:
    """Bytes of regular files under *path*."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def install(tmp: Path) -> dict[str, Any]:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    sp = site_packages(venv)
    base = du(sp)
    before = {e.name for e in sp.iterdir()}
    t0 = time.monotonic()
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)],
                   check=True, stderr=subprocess.DEVNULL)
    took = time.monotonic() - t0
    after = du(sp)
    wheels = tmp / "wheels"
    subprocess.run([str(venv / "bin" / "pip"), "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                    "-w", str(wheels), str(ROOT)], check=True, stderr=subprocess.DEVNULL)
    wheel = next(wheels.glob("roogab-*.whl"))
    sizes: dict[str, int] = {}
    for entry in sp.iterdir():
        if entry.name in before or entry.name.endswith((".dist-info", ".pth")) or entry.name == "__pycache__":
            continue
        sizes[entry.name] = du(entry) if entry.is_dir() else entry.stat().st_size
    biggest = sorted(sizes.items(), key=lambda kv: kv[1], reverse=True)[:10]
    return {"venv": str(venv), "base_bytes": base, "installed_bytes": after - base, "pip_install_s": took,
            "wheel": wheel.name, "wheel_bytes": wheel.stat().st_size,
            "largest": [{"name": k, "bytes": v} for k, v in biggest]}


def command(venv: Path | None) -> list[str]:
    return [str(venv / "bin" / "roogab")] if venv else [sys.executable, "-m", "roogab"]


def env_for(data: Path, venv: Path | None) -> dict[str, str]:
    env = dict(os.environ, ROOGAB_DATA_DIR=str(data))
    if venv:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = str(ROOT)
    return env


def launch(args: list[str], env: dict[str, str],
           cwd: Path | None = None) -> tuple[subprocess.Popen[str], float, float, str, str]:
    """Start; returns the process, seconds to the banner, seconds to /healthz 200, URL, demo URL."""
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=cwd)
    assert proc.stdout is not None
    url = demo_url = ""
    banner = 0.0
    deadline = t0 + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "is running at" in line:
            url = line.strip().rsplit(" ", 1)[-1]
            banner = time.monotonic() - t0
        elif line.startswith("Demo chat service at"):
            demo_url = line.split()[4]
        elif "Press Ctrl-C" in line:
            break
    if not url:
        stop(proc)
        raise RuntimeError(f"{' '.join(args)} printed no banner")
    healthy = wait_http(url, deadline) - t0
    return proc, banner, healthy, url, demo_url


def cold_starts(runs: int, venv: Path | None, tmp: Path) -> list[dict[str, float]]:
    out = []
    for i in range(runs):
        data = tmp / f"data{i}"
        proc, banner, healthy, _, _ = launch([*command(venv), "demo", "--port", "0"], env_for(data, venv))
        stop(proc)
        out.append({"banner_s": banner, "healthz_s": healthy})
    return out


def idle_rss(venv: Path | None, tmp: Path, turns: int, tokenizer_idle: float) -> dict[str, Any]:
    demo, _, _, _demo_api, chat_url = launch([*command(venv), "demo", "--port", "0"], env_for(tmp / "d", venv))
    serve = None
    try:
        cfg = tmp / "serve.toml"
        cfg.write_text(f'port = 0\ntokenizer_idle = {tokenizer_idle}\n\n[[providers]]\nname = "demo"\nkind = "socketio"\nurl = "{chat_url}"\n'
                       'models = ["gab-1"]\n')
        serve, _, _, url, _ = launch([*command(venv), "serve", "--config", str(cfg)], env_for(tmp / "s", venv))
        time.sleep(1.0)
        res: dict[str, Any] = {"serve_after_start_kb": rss_kb(serve.pid), "demo_after_start_kb": rss_kb(demo.pid)}
        body = roo_body()
        body["stream"] = False
        body.pop("stream_options", None)
        http = Http(url)
        t0 = time.monotonic()
        for i in range(turns):
            http.chat(json.dumps(with_nonce(body, f"rss {i} {time.time_ns()}")).encode(), stream=False)
        http.close()
        res["turns_s"] = time.monotonic() - t0
        time.sleep(1.0)
        res["serve_after_turns_kb"] = rss_kb(serve.pid)
        res["demo_after_turns_kb"] = rss_kb(demo.pid)  # the chat service only; served no turns itself
        time.sleep(2 * tokenizer_idle)  # the housekeeper looks at least once per idle time
        res["serve_after_release_kb"] = rss_kb(serve.pid)
        return res
    finally:
        if serve is not None:
            stop(serve)
        stop(demo)


def import_rss(venv: Path | None) -> dict[str, int]:
    """RSS of a bare interpreter, after importing RooGab's server stack, after the socketio kind's
    module (python-socketio, aiohttp: a provider kind's library loads when that kind is
    configured), after loading cl100k."""
    code = ("import json, sys\n"
            "def rss():\n"
            "    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])\n"
            "r = {'bare_kb': rss()}\n"
            "import roogab.runtime, roogab.cli\n"
            "r['imported_kb'] = rss()\n"
            "import roogab.providers.socketio_impl\n"  # what the serve run's socketio provider loads
            "r['kind_kb'] = rss()\n"
            "from roogab.usage import TokenCounter\n"
            "TokenCounter().warm()\n"
            "r['tokenizer_kb'] = rss()\n"
            "print(json.dumps(r))\n")
    py = str(venv / "bin" / "python") if venv else sys.executable
    env = dict(os.environ)
    if venv:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([py, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out)


def help_time(venv: Path | None, runs: int) -> dict[str, Any]:
    """``roogab --help`` in fresh interpreters: wall and CPU seconds (median), and the same for a
    bare ``python -c pass`` as the reference (the machine is shared: compare the ratio)."""
    py = str(venv / "bin" / "python") if venv else sys.executable
    env = dict(os.environ)
    if venv:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = str(ROOT)

    def once(args: list[str]) -> tuple[float, float]:
        t0, c0 = time.monotonic(), os.times()
        subprocess.run(args, capture_output=True, env=env, check=True, cwd=tempfile.gettempdir())
        c1 = os.times()
        return time.monotonic() - t0, (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)

    helps = [once([py, "-m", "roogab", "--help"]) for _ in range(runs)]
    bares = [once([py, "-c", "pass"]) for _ in range(runs)]
    return {"help_wall_s": statistics.median(w for w, _ in helps), "help_cpu_s": statistics.median(c for _, c in helps),
            "bare_wall_s": statistics.median(w for w, _ in bares), "bare_cpu_s": statistics.median(c for _, c in bares),
            "loadavg": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--turns", type=int, default=100)
    ap.add_argument("--no-install", action="store_true", help="skip the fresh venv; run this interpreter")
    ap.add_argument("--tokenizer-idle", type=float, default=5.0, help="the serve config's tokenizer_idle (s)")
    ap.add_argument("--json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="roogab-startup-"))
    try:
        inst = None if args.no_install else install(tmp)
        venv = Path(inst["venv"]) if inst else None
        starts = cold_starts(args.runs, venv, tmp)
        rss = idle_rss(venv, tmp, args.turns, args.tokenizer_idle)
        imports = import_rss(venv)
        helped = help_time(venv, args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first, rest = starts[0], starts[1:] or starts
    med_b = statistics.median(s["banner_s"] for s in rest)
    med_h = statistics.median(s["healthz_s"] for s in rest)
    rows = [
        ["cold start, first run: banner / healthz 200", f"{first['banner_s']:.2f} / {first['healthz_s']:.2f} s",
         "< 1.5 s", "met" if first["healthz_s"] < 1.5 else "MISSED"],
        [f"cold start, median of next {len(rest)}: banner / healthz", f"{med_b:.2f} / {med_h:.2f} s", "< 1.5 s",
         "met" if med_h < 1.5 else "MISSED"],
        ["idle RSS, roogab serve after start", f"{rss['serve_after_start_kb'] / 1024:.1f} MiB ({rss['serve_after_start_kb'] * 1024 / 1e6:.1f} MB)", "< 80 MB",
         "met" if rss["serve_after_start_kb"] * 1024 < 80e6 else "MISSED"],
        [f"idle RSS, roogab serve after {args.turns} turns", f"{rss['serve_after_turns_kb'] / 1024:.1f} MiB ({rss['serve_after_turns_kb'] * 1024 / 1e6:.1f} MB)",
         "< 80 MB", "met" if rss["serve_after_turns_kb"] * 1024 < 80e6 else "MISSED"],
        [f"idle RSS, roogab serve after {args.turns} turns and tokenizer_idle ({args.tokenizer_idle:g} s)",
         f"{rss['serve_after_release_kb'] / 1024:.1f} MiB ({rss['serve_after_release_kb'] * 1024 / 1e6:.1f} MB)",
         "< 80 MB", "met" if rss["serve_after_release_kb"] * 1024 < 80e6 else "MISSED"],
        ["RSS, roogab demo (RooGab stack + demo service)", f"{rss['demo_after_start_kb'] / 1024:.1f} MiB", "", ""],
        ["RSS, bare python / + import roogab / + socketio kind / + cl100k",
         " / ".join(f"{imports[k] / 1024:.1f}" for k in ("bare_kb", "imported_kb", "kind_kb", "tokenizer_kb"))
         + " MiB", "", ""],
    ]
    rows.append(["roogab --help (fresh interpreter): wall / CPU, median",
                 (f"{helped['help_wall_s']:.3f} / {helped['help_cpu_s']:.3f} s (bare python "
                 f"{helped['bare_wall_s']:.3f} / {helped['bare_cpu_s']:.3f} s)"), "< 0.3 s",
                 "met" if helped["help_wall_s"] < 0.3 else "MISSED"])
    if inst:
        rows += [
            ["install size (site-packages minus fresh venv)", f"{inst['installed_bytes'] / MB:.1f} MiB", "", ""],
            [f"wheel {inst['wheel']}", f"{inst['wheel_bytes'] / 1024:.0f} KiB", "", ""],
        ]
    print_table(["measure", "value", "target", ""], rows)
    if inst:
        print("largest installed: " + ", ".join(f"{e['name']} {e['bytes'] / MB:.1f}" for e in inst["largest"])
              + " (MiB)")
    write_json(args.json, {"benchmark": "startup", "cold_starts": starts, "rss": rss, "import_rss": imports, "help": helped,
                           "install": inst})


if __name__ == "__main__":
    main()
