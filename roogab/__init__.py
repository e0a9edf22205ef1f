"""RooGab: an OpenAI-compatible API in front of a browser chat service, for coding agents.

The public surface: ``create_app`` (a Flask app over started providers), ``Config`` and
``load_config``, the error tree, and ``__version__``. Everything else is internal.
"""

from typing import Any

from .config import Config, ProviderProfile, load_config
from .errors import (
    ConfigError,
    ProviderUnavailable,
    ReplyFormatError,
    RequestError,
    RooGabError,
    UpstreamError,
)

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "ProviderProfile",
    "ProviderUnavailable",
    "ReplyFormatError",
    "RequestError",
    "RooGabError",
    "UpstreamError",
    "__version__",
    "create_app",
    "load_config",
]


def __getattr__(name: str) -> Any:
    """``create_app`` loads Flask and the providers only when asked for (PEP 562), so importing a
    pure module such as ``roogab.envelope`` pulls in no web, socket or database library."""
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'roogab' has no attribute {name!r}")
