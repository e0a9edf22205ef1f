"""The package's shape: its public names, and pure modules that import no IO library."""

from __future__ import annotations

import subprocess
import sys

import pytest

import roogab

PURE = ["roogab.wire", "roogab.prompt", "roogab.envelope", "roogab.render", "roogab.errors",
        "roogab.config", "roogab.outputs", "roogab.offline", "roogab.protocols", "roogab.protocols.chat"]
IO_LIBRARIES = ["flask", "socketio", "engineio", "websocket", "sqlite3", "waitress", "aiohttp"]


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
