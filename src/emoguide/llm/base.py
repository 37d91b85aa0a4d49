"""The one interface every LLM backend implements.

A backend is addressed by a ``provider:model`` string (its ``id``). ``__init__`` only records
configuration; ``load()`` does the expensive or fallible part (reading model weights, checking an
API key, building an HTTP client), so a backend can be named, inspected and checked for
remoteness without touching the network or the disk.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlparse

from emoguide.errors import EmoguideError

#: Error kinds an :class:`LLMError` may carry.
ERROR_KINDS = (
    "timeout",  # the request did not finish within the timeout
    "rate_limit",  # HTTP 429, after the retries
    "server_error",  # HTTP 5xx (or 409), after the retries
    "connection",  # could not connect, or the connection dropped
    "bad_request",  # HTTP 4xx other than 401/403/408/409/429 (unknown model, bad parameter)
    "auth",  # HTTP 401/403: missing or wrong API key
    "unparseable_response",  # the server answered, but not with a chat completion
    "config",  # the backend could not be set up (missing key, missing model file)
)

#: Kinds worth retrying with backoff.
RETRYABLE_KINDS = frozenset({"timeout", "rate_limit", "server_error", "connection"})


class LLMError(EmoguideError):
    """A failed completion, with a short machine-readable ``kind`` and a human message."""

    def __init__(self, kind: str, message: str, retries: int = 0):
        self.kind = kind
        self.message = message
        self.retries = retries
        super().__init__(f"{kind}: {message}")

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    retries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def override_env(provider: str, what: str) -> str:
    """``EMOGUIDE_<PROVIDER>_<WHAT>``: provider upper-cased, ``-`` and ``.`` to ``_``."""
    name = provider.upper().replace("-", "_").replace(".", "_")
    return f"EMOGUIDE_{name}_{what}"


def is_remote_url(url: str) -> bool:
    """True unless the URL's host is localhost, a loopback, private or link-local address.

    Host names other than ``localhost`` count as remote: we cannot tell where a name resolves,
    and telling the user once too often is the safe side.
    """
    host = (urlparse(url).hostname or "").strip("[]").lower()
    if not host:
        return True
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return True
    return not (addr.is_loopback or addr.is_private or addr.is_link_local)


class LLMBackend:
    """Base class: a chat-completion model behind a ``provider:model`` id."""

    provider: str = ""
    model: str = ""
    endpoint: str = "in-process"

    @property
    def id(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def is_remote(self) -> bool:
        if self.endpoint == "in-process":
            return False
        return is_remote_url(self.endpoint)

    @property
    def loaded(self) -> bool:
        return getattr(self, "_loaded", False)

    def load(self) -> "LLMBackend":
        """Prepare the backend (idempotent). Raises :class:`LLMError` with kind ``config``."""
        self._loaded = True
        return self

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
        timeout: float | None = None,
    ) -> Completion:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What to record beside results produced by this backend."""
        return {
            "id": self.id,
            "provider": self.provider,
            "model": self.model,
            "endpoint": self.endpoint,
            "is_remote": self.is_remote,
        }

    def close(self) -> None:
        """Release resources (HTTP pools, model memory). Safe to call twice."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} @ {self.endpoint}>"
