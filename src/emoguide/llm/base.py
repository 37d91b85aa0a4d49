"""The one interface every LLM backend implements.

A backend is addressed by a ``provider:model`` string (its ``id``). ``__init__`` only records
configuration; ``load()`` does the expensive or fallible part (reading model weights, checking an
API key, building an HTTP client), so a backend can be named, inspected and checked for
remoteness without touching the network or the disk.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from dataclasses import asdict, dataclass
from typing import Any, TypedDict
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


class TokenLogprob(TypedDict):
    """One generated token: its text, its log-probability and the top alternatives at its position
    (token text -> logprob, the chosen token included). Plain dicts, so they cache as JSON."""

    token: str
    logprob: float
    top_logprobs: dict[str, float]


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    retries: int = 0
    #: Per generated token, when ``complete(logprobs=k)`` asked for them and the backend returned
    #: them; None otherwise (never an empty stand-in: callers must be able to tell).
    logprobs: list[TokenLogprob] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _logaddexp(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi)) if lo > float("-inf") else hi


def chat_logprobs(block: Any) -> list[TokenLogprob] | None:
    """OpenAI's chat ``logprobs`` block (``{"content": [{"token", "logprob", "top_logprobs":
    [{"token", "logprob"}, ...]}, ...]}``; llama-cpp-python returns the same shape as dicts, the
    openai SDK as objects) -> our per-token list. None when there is none."""
    if block is None:
        return None
    content = block.get("content") if isinstance(block, dict) else getattr(block, "content", None)
    if content is None:
        return None
    out: list[TokenLogprob] = []
    for entry in content:
        get = entry.get if isinstance(entry, dict) else (lambda k, e=entry: getattr(e, k, None))
        tops: dict[str, float] = {}
        for alt in get("top_logprobs") or []:
            aget = alt.get if isinstance(alt, dict) else (lambda k, a=alt: getattr(a, k, None))
            tok, lp = aget("token"), aget("logprob")
            if tok is not None and lp is not None:
                # the same text twice (two token ids decoding alike): the text's probability is
                # their sum
                prev = tops.get(str(tok))
                tops[str(tok)] = float(lp) if prev is None else _logaddexp(prev, float(lp))
        token, lp = get("token"), get("logprob")
        if token is None or lp is None:
            raise TypeError(f"logprobs entry without token/logprob: {entry!r}")
        out.append(TokenLogprob(token=str(token), logprob=float(lp), top_logprobs=tops))
    return out


def json_schema_of(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema inside a ``response_format``, whichever form it came in:
    llama.cpp's ``{"type": "json_object", "schema": S}``, OpenAI's ``{"type": "json_schema",
    "json_schema": {"name": ..., "schema": S}}``, or a bare schema ``S``. None for no constraint."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object" and "schema" in response_format:
        return dict(response_format["schema"])
    if kind == "json_schema":
        return dict((response_format.get("json_schema") or {}).get("schema") or {})
    if kind in ("json_object", "text"):
        raise ValueError(f"response_format {response_format!r} has no JSON schema")
    return dict(response_format)  # a bare schema


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
        logprobs: int | None = None,
        stop: list[str] | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        """One chat completion. ``logprobs=k`` asks for the top-k alternatives of every generated
        token (``Completion.logprobs``); a backend that cannot give them returns None there, and
        the caller decides what that means. ``stop``: strings that end the answer (not included).
        ``response_format``: JSON-schema-constrained decoding, given as a JSON schema wrapped
        either way the servers take it (see `json_schema_of`); backends translate."""
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


class BackendLoader:
    """Loads each backend once, however many threads ask; a failed load is remembered, so every
    row that needs that backend reports the same `config` error instead of retrying the load."""

    def __init__(self) -> None:
        self._errors: dict[str, LLMError] = {}
        self._lock = threading.Lock()

    def ensure_loaded(self, backend: LLMBackend) -> None:
        if backend.loaded:
            return
        with self._lock:
            if backend.id in self._errors:
                raise self._errors[backend.id]
            if backend.loaded:
                return
            try:
                backend.load()
            except LLMError as exc:
                self._errors[backend.id] = exc
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. MissingExtraError
                err = LLMError("config", f"{backend.id}: {exc}")
                self._errors[backend.id] = err
                raise err from exc
