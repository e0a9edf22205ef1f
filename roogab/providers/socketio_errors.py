"""The one place python-socketio's (and its transport's) exceptions become RooGab's.

Both Socket.IO providers (``socketio_impl``, ``chainlit_impl``) wrap every call into the client
in ``socketio_errors``; no other module names a socketio exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import socketio

from ..errors import ProviderTimeout, ProviderUnavailable

__all__ = ["MAX_FRAME_BYTES", "socketio_errors"]

#: The largest WebSocket frame a Socket.IO provider accepts (aiohttp's default is 4 MB).
MAX_FRAME_BYTES = 256 * 1024 * 1024


@contextmanager
def socketio_errors(provider: str, action: str) -> Iterator[None]:
    """Translate what *action* raised into ``ProviderUnavailable`` or ``ProviderTimeout``.

    Raises:
        ProviderTimeout: the service did not acknowledge in time.
        ProviderUnavailable: not connected, the connection failed, or the transport broke.
    """
    try:
        yield
    except socketio.exceptions.BadNamespaceError as exc:
        raise ProviderUnavailable(f"{provider}: {action}: not connected to the service",
                                  provider=provider) from exc
    except socketio.exceptions.TimeoutError as exc:
        raise ProviderTimeout(f"{provider}: {action}: the service did not answer", provider=provider) from exc
    except socketio.exceptions.SocketIOError as exc:  # ConnectionError and the rest
        raise ProviderUnavailable(f"{provider}: {action}: {exc or type(exc).__name__}",
                                  provider=provider) from exc
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(f"{provider}: {action}: {type(exc).__name__}", provider=provider) from exc
    except OSError as exc:
        raise ProviderUnavailable(f"{provider}: {action}: {exc.strerror or exc}", provider=provider) from exc
    except ValueError as exc:  # engine.io: "Client is not in a disconnected state", a bad URL
        raise ProviderUnavailable(f"{provider}: {action}: {exc}", provider=provider) from exc
