"""``roogab try``: one probe turn through a running RooGab, as an agent would send it.

The boundary to the HTTP client (``urllib``): its exceptions become ``ProbeFailed`` here, once.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["PROBE", "ProbeFailed", "ProbeResult", "probe", "wildcard_url"]

PROBE = "Reply with one short sentence: which model are you?"


class ProbeFailed(Exception):
    """The probe turn did not come back as an answer (the message says what came back)."""


@dataclass(frozen=True)
class ProbeResult:
    """What came back: the model used, the answer, the turn's id and whether it was recorded."""

    model: str
    text: str
    turn_id: str
    from_record: str | None


def wildcard_url(host: str, port: int) -> str:
    """The base URL to print for a bind address: a wildcard bind (``0.0.0.0``, ``::``) is not an
    address a client can use, so this machine's loopback is printed instead."""
    if host in ("0.0.0.0", "", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def probe(base_url: str, key: str, model: str | None = None, timeout: float = 120.0) -> ProbeResult:
    """Send one probe turn to *base_url* (the first published model unless *model*).

    Raises:
        ProbeFailed: RooGab is not reachable, or answered with an error.
    """
    if model is None:
        models = _call(base_url + "/v1/models", key, None, timeout)[0].get("data", [])
        if not models:
            raise ProbeFailed(f"{base_url} publishes no model")
        model = str(models[0]["id"])
    body = {"model": model, "messages": [{"role": "user", "content": PROBE}]}
    answer, headers = _call(base_url + "/v1/chat/completions", key, body, timeout)
    text = answer["choices"][0]["message"].get("content") or ""
    return ProbeResult(model, text, headers.get("x-roogab-turn", ""), headers.get("x-roogab-from-record"))


def _call(url: str, key: str, body: dict[str, Any] | None, timeout: float) -> tuple[dict[str, Any], dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Authorization": f"Bearer {key}",
                                                               "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return json.loads(response.read()), headers
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:500]
        raise ProbeFailed(f"{url} answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ProbeFailed(f"cannot reach {url}: {exc} (is `roogab serve` or `roogab demo` running?)") from exc
    except ValueError as exc:
        raise ProbeFailed(f"{url} did not answer JSON: {exc}") from exc
