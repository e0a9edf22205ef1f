"""RooGab's exception tree.

Each class carries the HTTP status and the OpenAI error ``type`` it maps to, so the API needs one
handler (``to_openai_error``), not a chain of ``isinstance`` checks. ``str(exc)`` is always a
message that is safe to show to the client: no cookie, password or key ever goes into one.

    RooGabError                    500  server_error
    ├── RequestError               400  invalid_request_error
    │   ├── InvalidRequest         400  .param names the field ("messages[3].role")
    │   ├── UnsupportedFeature     400  n > 1, audio, logprobs ...
    │   ├── Unauthorized           401  missing or wrong API key
    │   ├── ForbiddenHost          403  Host header not allowed (DNS rebinding)
    │   ├── ForbiddenOrigin        403  a web page's request (Origin, Sec-Fetch-Site): CSRF
    │   ├── NotFound               404  unknown route
    │   ├── ModelNotFound          404  code "model_not_found"
    │   ├── ConversationNotFound   404
    │   ├── MethodNotAllowed       405
    │   ├── PayloadTooLarge        413
    │   ├── PromptTooLarge         400  context_length_exceeded: more than the service takes, even in parts
    │   └── UnsupportedMediaType   415  a body that is not application/json
    ├── UpstreamError              502  upstream_error; .provider
    │   ├── ProviderUnavailable    503  connect/handshake failed, or reconnect gave up
    │   ├── ProviderTimeout        504  no complete reply before a deadline
    │   ├── ProviderDisconnected   503  dropped mid-reply (retryable)
    │   ├── ConversationGone       502  the service no longer knows the conversation (replay it)
    │   ├── ProviderRejected       502  the service refused (rate limit, login, captcha)
    │   └── ReplyFormatError       502  code "non_compliant_response"; .offset, .snippet
    ├── StoreError                 500  wraps the store's own errors
    │   └── RecordRefused          500  the record itself (a value the store cannot hold, a duplicate id)
    ├── ServerBusy                 503  too many turns at once (in total or on one provider)
    └── ConfigError                 -   start-up only: the CLI prints it and exits 2
    ParserClosedError(RuntimeError)     misuse (feed after close); never mapped to HTTP
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigError",
    "ConversationGone",
    "ConversationNotFound",
    "ForbiddenHost",
    "ForbiddenOrigin",
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelNotFound",
    "NotFound",
    "ParserClosedError",
    "PayloadTooLarge",
    "PromptTooLarge",
    "ProviderDisconnected",
    "ProviderRejected",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RecordRefused",
    "ReplyFormatError",
    "RequestError",
    "RooGabError",
    "ServerBusy",
    "StoreError",
    "Unauthorized",
    "UnsupportedFeature",
    "UnsupportedMediaType",
    "UpstreamError",
    "to_openai_error",
]


class RooGabError(Exception):
    """Base class of every error RooGab raises on purpose."""

    status = 500
    openai_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code


class RequestError(RooGabError):
    """The client's request is wrong; retrying it unchanged will not help."""

    status = 400
    openai_type = "invalid_request_error"


class InvalidRequest(RequestError):
    """A field of the request body is missing, of the wrong type or out of range."""


class UnsupportedFeature(RequestError):
    """A valid OpenAI feature that RooGab cannot provide (n > 1, audio, logprobs ...)."""

    code = "unsupported_parameter"


class Unauthorized(RequestError):
    """No API key, or one that is not configured."""

    status = 401
    openai_type = "authentication_error"
    code = "invalid_api_key"


class ForbiddenHost(RequestError):
    """The Host header names a host this server does not answer for."""

    status = 403
    openai_type = "permission_error"
    code = "forbidden_host"


class ForbiddenOrigin(RequestError):
    """A request sent by a web page of another site (cross-site request forgery)."""

    status = 403
    openai_type = "permission_error"
    code = "forbidden_origin"


class NotFound(RequestError):
    """No such route."""

    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    """The requested model is not published by any provider."""

    code = "model_not_found"


class ConversationNotFound(NotFound):
    """No stored conversation has that id."""

    code = "conversation_not_found"


class MethodNotAllowed(RequestError):
    """The route exists but not for this HTTP method."""

    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(RequestError):
    """The request body is over the configured limit."""

    status = 413
    code = "request_too_large"


class PromptTooLarge(RequestError):
    """The prompt is longer than the chat service takes, even split into parts; nothing was sent.

    OpenAI's own code for a prompt over the context window, which agents treat as final rather
    than retrying it (Codex, for one: agents-wire.md).
    """

    code = "context_length_exceeded"
class UnsupportedMediaType(RequestError):
    """The body is not ``application/json`` (a web form, ``text/plain``, a beacon)."""

    status = 415
    code = "unsupported_media_type"


class UpstreamError(RooGabError):
    """The chat service failed us; the client may retry."""

    status = 502
    openai_type = "upstream_error"

    def __init__(self, message: str, *, provider: str = "", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.provider = provider


class ProviderUnavailable(UpstreamError):
    """Could not connect or log in to the chat service, or reconnecting gave up."""

    status = 503
    code = "provider_unavailable"


class ProviderTimeout(UpstreamError):
    """No complete reply before a deadline (first token, silence or whole reply)."""

    status = 504
    code = "provider_timeout"


class ProviderDisconnected(UpstreamError):
    """The connection dropped in the middle of a reply; the turn can be retried."""

    status = 503
    code = "provider_disconnected"

    def __init__(self, message: str, *, provider: str = "", partial: str = "") -> None:
        super().__init__(message, provider=provider)
        self.partial = partial


class ConversationGone(UpstreamError):
    """The chat service no longer knows the conversation (it restarted, the session expired)."""

    code = "conversation_gone"


class ProviderRejected(UpstreamError):
    """The chat service refused the turn (rate limit, login, captcha, an error step)."""

    code = "provider_rejected"


class ReplyFormatError(UpstreamError):
    """The model's reply could not be turned into a valid answer, even after repair.

    ``offset`` is where in the reply the problem was found (-1 if nowhere in particular) and
    ``snippet`` a short excerpt of what the model wrote.
    """

    code = "non_compliant_response"

    def __init__(self, message: str, *, offset: int = -1, snippet: str = "", provider: str = "") -> None:
        super().__init__(message, provider=provider)
        self.offset = offset
        self.snippet = snippet


class ServerBusy(RooGabError):
    """Too many turns are in progress (in total, or waiting on one provider); retry shortly."""

    status = 503
    code = "server_busy"


class StoreError(RooGabError):
    """The conversation store failed."""

    code = "store_error"


class RecordRefused(StoreError):
    """The store refused the record it was given, not the request to write it: a value it cannot
    hold, a duplicate id. Writing the same record again fails again, whether or not the store works."""


class ConfigError(RooGabError):
    """A configuration value is missing or invalid; raised only at start-up."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config: {key}: {problem}", param=key)
        self.key = key


class ParserClosedError(RuntimeError):
    """``feed`` or ``close`` was called on a parser that is already closed."""


def to_openai_error(exc: RooGabError) -> tuple[int, dict[str, Any]]:
    """Return ``(status, body)`` in the OpenAI error shape for *exc*."""
    body = {"message": str(exc), "type": exc.openai_type, "param": exc.param, "code": exc.code}
    return exc.status, {"error": body}
