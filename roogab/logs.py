"""Logging set-up for the CLI: readable text, or one JSON object a line for machines."""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar

from .redact import Redactor

__all__ = ["JsonFormatter", "RedactingFormatter", "RequestIdFilter", "configure_logging", "request_id"]

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s]: %(message)s"

# The id of the HTTP request (for a turn, its chatcmpl id) the current thread is serving. A
# ContextVar, like Flask's own request context: each waitress worker thread sees its own value.
request_id: ContextVar[str] = ContextVar("roogab_request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record, so all lines of one turn can be found together."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp the record; never drops one."""
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a record: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render *record* as a JSON line."""
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
                 "level": record.levelname.lower(), "logger": record.name,
                 "request_id": getattr(record, "request_id", "-"), "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    """Another formatter's output with every secret replaced: a model or a service may quote a
    key, a password or a cookie in the text RooGab logs (an error snippet, an error page)."""

    def __init__(self, inner: logging.Formatter, redactor: Redactor) -> None:
        super().__init__()
        self._inner = inner
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        """The inner formatter's line, redacted (message, arguments and traceback alike)."""
        return self._redactor.redact(self._inner.format(record))


def configure_logging(level: str, fmt: str, redactor: Redactor | None = None) -> None:
    """Send RooGab's logs to stderr at *level* in *fmt* (``text`` or ``json``), through
    *redactor* (the generic credential shapes are always redacted)."""
    handler = logging.StreamHandler()
    inner = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(RedactingFormatter(inner, redactor or Redactor()))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("engineio", "socketio", "aiohttp.access", "waitress.queue"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
