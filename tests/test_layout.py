"""The package's shape: its public names, and pure modules that import no IO library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import roogab

PURE = ["roogab.wire", "roogab.utf16", "roogab.prompt", "roogab.envelope", "roogab.render", "roogab.errors",
        "roogab.config", "roogab.outputs", "roogab.offline", "roogab.protocols", "roogab.protocols.chat",
        "roogab.protocols.messages", "roogab.structured", "roogab.store", "roogab.store_memory",
        "roogab.registry", "roogab.turnlog", "roogab.service", "roogab.leases", "roogab.housekeeping",
        "roogab.affinity", "roogab.reply_reader", "roogab.answer"]
IO_LIBRARIES = ["flask", "socketio", "engineio", "websocket", "sqlite3", "waitress", "aiohttp", "psycopg",
                "psycopg_pool"]


def test_public_names() -> None:
    assert sorted(roogab.__all__) == sorted(
        ["Config", "ConfigError", "ProviderProfile", "ProviderUnavailable", "ReplyFormatError",
         "RequestError", "RooGabError", "UpstreamError", "__version__", "create_app", "load_config"])
    for name in roogab.__all__:
        assert hasattr(roogab, name)


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io_library(module: str) -> None:
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            f"print([m for m in {IO_LIBRARIES!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"{module} pulls in {result.stdout.strip()}"


# -- the layers (docs/architecture.md): which way imports go ------------------------------------

ROOT = Path(roogab.__file__).parent
FORBIDDEN = {
    # the pure core: the envelope, rendering, the wire shapes and the prompt know nothing above them
    "roogab.envelope": ["roogab.service", "roogab.registry", "roogab.providers", "roogab.api",
                        "roogab.protocols", "roogab.store", "roogab.runtime"],
    "roogab.render": ["roogab.service", "roogab.registry", "roogab.providers", "roogab.api", "roogab.store"],
    "roogab.wire": ["roogab.service", "roogab.registry", "roogab.providers", "roogab.api", "roogab.protocols"],
    "roogab.prompt": ["roogab.service", "roogab.registry", "roogab.providers", "roogab.api", "roogab.protocols"],
    # wire protocols in front: parse and render only; they never reach the engine or a provider
    "roogab.protocols": ["roogab.service", "roogab.registry", "roogab.providers", "roogab.api",
                         "roogab.app", "roogab.store", "roogab.runtime"],
    # the turn engine knows no protocol and no HTTP, and providers only by their protocol
    "roogab.service": ["roogab.api", "roogab.app", "roogab.protocols", "roogab.runtime",
                       "roogab.providers.socketio_impl", "roogab.providers.chainlit_impl",
                       "roogab.providers.websocket_impl"],
    # state knows no engine, no HTTP and no provider
    "roogab.registry": ["roogab.service", "roogab.api", "roogab.providers", "roogab.protocols"],
    "roogab.turnlog": ["roogab.service", "roogab.api", "roogab.providers", "roogab.protocols"],
    # chat services behind: a provider knows nothing of the turn engine, HTTP or the state
    "roogab.providers": ["roogab.service", "roogab.api", "roogab.app", "roogab.registry",
                         "roogab.protocols", "roogab.runtime", "roogab.cli"],
    # HTTP knows the engine and the protocols, not how a provider is built
    "roogab.api": ["roogab.runtime", "roogab.cli", "roogab.providers.socketio_impl",
                   "roogab.providers.chainlit_impl", "roogab.providers.websocket_impl"],
}


def _imports(path: Path) -> set[str]:
    """The roogab modules *path* imports (relative imports resolved)."""
    module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if path.name == "__init__.py":
        module = package
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("roogab")}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        out.append((name.removesuffix(".__init__"), path))
    return out


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_go_one_way(module: str, path: Path) -> None:
    rules = [banned for layer, banned in FORBIDDEN.items() if module == layer or module.startswith(layer + ".")]
    bad = sorted(name for name in _imports(path) for banned in (b for r in rules for b in r)
                 if name == banned or name.startswith(banned + "."))
    assert not bad, f"{module} imports {bad}: against the layers in docs/architecture.md"


OVER_BUDGET: set[str] = set()
"""Known to be over, each with its issue open: strict, so the split must remove the entry."""


@pytest.mark.parametrize(("module", "path"), [
    pytest.param(m, p, marks=pytest.mark.xfail(strict=True, reason="over budget: split pending"))
    if m in OVER_BUDGET else (m, p) for m, p in _modules()], ids=[m for m, _ in _modules()])
def test_no_module_is_over_the_line_budget(module: str, path: Path) -> None:
    """style.md §2: a module that outgrows ~400 lines of code has more than one reason to change."""
    text = path.read_text()
    docs: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            docs |= set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    code = [n for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#") and n not in docs]
    assert len(code) <= 400, f"{module} has {len(code)} lines of code (docstrings and comments aside)"
