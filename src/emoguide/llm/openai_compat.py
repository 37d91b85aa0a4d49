"""Any OpenAI-compatible chat-completions endpoint (OpenAI, Gemini, vLLM, Ollama, llama.cpp).

Retries: the SDK's own ``max_retries`` retries 408/409/429/5xx and connection errors and honours
``Retry-After``, but it does not tell the caller how many retries it made, and the number belongs
in the results (a run that needed 40 retries against a rate-limited API is worth knowing about).
So the client is built with ``max_retries=0`` and the loop is here: exponential backoff with
jitter, ``Retry-After``/``retry-after-ms`` honoured (capped), every retry counted, and the final
failure classified into an :class:`LLMError` kind.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

from emoguide.llm.base import Completion, LLMBackend, LLMError, chat_logprobs, json_schema_of, override_env

#: Backoff: BACKOFF_BASE_S * 2**attempt, capped, with +-50% jitter. Retry-After wins when sent.
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
RETRY_AFTER_CAP_S = 60.0

_LOCAL_KEY = "not-needed"  # the SDK insists on a non-empty key; local servers ignore it


def _short(text: Any, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms") is not None:
            return float(headers["retry-after-ms"]) / 1000.0
        if headers.get("retry-after") is not None:
            return float(headers["retry-after"])
    except (TypeError, ValueError):
        # an HTTP date; not worth parsing, fall back to backoff
        return None
    return None


def classify(exc: Exception) -> LLMError:
    """Map an SDK / transport exception onto an :class:`LLMError`."""
    import openai

    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return LLMError("timeout", "request timed out")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
        return LLMError("connection", _short(detail))
    if isinstance(exc, openai.APIResponseValidationError):
        return LLMError("unparseable_response", _short(exc))
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body if exc.body is not None else getattr(exc, "message", "")
        message = f"HTTP {status}: {_short(body if not isinstance(body, (dict, list)) else json.dumps(body))}"
        if status == 429:
            return LLMError("rate_limit", message)
        if status == 408:
            return LLMError("timeout", message)
        if status >= 500 or status == 409:
            return LLMError("server_error", message)
        if status in (401, 403):
            return LLMError("auth", message)
        return LLMError("bad_request", message)
    if isinstance(exc, (json.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError)):
        return LLMError("unparseable_response", _short(f"{type(exc).__name__}: {exc}"))
    return LLMError("connection", _short(f"{type(exc).__name__}: {exc}"))


class OpenAICompatBackend(LLMBackend):
    """Chat completions over HTTP with the ``openai`` SDK."""

    def __init__(
        self,
        provider: str,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_base_s: float = BACKOFF_BASE_S,
    ):
        self.provider = provider
        self.model = model
        self.endpoint = base_url.rstrip("/")
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.backoff_base_s = float(backoff_base_s)
        self._client = None
        self._lock = threading.Lock()
        # OpenAI's newer models reject max_tokens and want max_completion_tokens; learned once.
        self._max_tokens_param = "max_tokens"

    def load(self) -> "OpenAICompatBackend":
        with self._lock:
            if self._client is not None:
                return self
            import openai

            key = self.api_key
            if not key:
                if self.api_key_env:
                    raise LLMError(
                        "config",
                        f"{self.id}: set the API key in ${self.api_key_env} "
                        f"(or ${override_env(self.provider, 'API_KEY')})",
                    )
                key = _LOCAL_KEY
            self._client = openai.OpenAI(
                base_url=self.endpoint, api_key=key, timeout=self.timeout_s, max_retries=0
            )
            self._loaded = True
        return self

    def _backoff(self, attempt: int, exc: Exception | None) -> float:
        after = _retry_after(exc) if exc is not None else None
        if after is not None:
            return max(0.0, min(after, RETRY_AFTER_CAP_S))
        delay = min(BACKOFF_CAP_S, self.backoff_base_s * (2**attempt))
        return delay * (0.5 + random.random())

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        """OpenAI, Gemini, vLLM and Ollama take OpenAI's ``json_schema`` form; llama-cpp-python's
        server (``llamacpp-server``, and endpoints of your own, usually llama.cpp) takes
        ``json_object`` with a ``schema``, which llama.cpp's own llama-server accepts too."""
        if self.provider in ("openai", "gemini", "vllm", "ollama"):
            return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
        return {"type": "json_object", "schema": schema}

    def _call(self, messages, temperature, max_tokens, seed, timeout, logprobs=None, stop=None, schema=None):
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            self._max_tokens_param: max_tokens,
            "timeout": timeout,
        }
        if seed is not None:
            kwargs["seed"] = seed
        if logprobs is not None:
            # OpenAI caps top_logprobs at 20; llama.cpp's server and vLLM accept the same form.
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = max(0, min(20, int(logprobs)))
        if stop:
            kwargs["stop"] = list(stop)[:4]  # OpenAI accepts at most 4
        if schema is not None:
            kwargs["response_format"] = self._response_format(schema)
        return self._client.chat.completions.create(**kwargs)

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
        schema = json_schema_of(response_format)
        if self._client is None:
            self.load()
        import openai

        timeout = self.timeout_s if timeout is None else float(timeout)
        retries = 0
        switched_param = False
        while True:
            start = time.perf_counter()
            try:
                response = self._call(messages, temperature, max_tokens, seed, timeout, logprobs, stop, schema)
                latency = time.perf_counter() - start
                return self._to_completion(response, latency, retries, want_logprobs=logprobs is not None)
            except openai.BadRequestError as exc:
                text = str(exc)
                if (
                    not switched_param
                    and self._max_tokens_param == "max_tokens"
                    and "max_completion_tokens" in text
                ):
                    self._max_tokens_param = "max_completion_tokens"
                    switched_param = True
                    continue
                raise self._fail(exc, retries) from exc
            except Exception as exc:  # noqa: BLE001 - classified below
                err = classify(exc)
                if not err.retryable or retries >= self.max_retries:
                    raise self._fail(exc, retries) from exc
                time.sleep(self._backoff(retries, exc))
                retries += 1

    def _fail(self, exc: Exception, retries: int) -> LLMError:
        err = classify(exc)
        suffix = f" (after {retries} retr{'y' if retries == 1 else 'ies'})" if retries else ""
        return LLMError(err.kind, f"{self.id} @ {self.endpoint}: {err.message}{suffix}", retries)

    def _to_completion(
        self, response: Any, latency: float, retries: int, want_logprobs: bool = False
    ) -> Completion:
        try:
            choice = response.choices[0]
            text = choice.message.content
            if text is None:
                raise ValueError("the response has no message content")
            usage = getattr(response, "usage", None)
            return Completion(
                text=text,
                finish_reason=getattr(choice, "finish_reason", None),
                prompt_tokens=getattr(usage, "prompt_tokens", None) if usage else None,
                completion_tokens=getattr(usage, "completion_tokens", None) if usage else None,
                latency_s=latency,
                retries=retries,
                # a server that ignores the request sends no block: None, for the caller to judge
                logprobs=chat_logprobs(getattr(choice, "logprobs", None)) if want_logprobs else None,
            )
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise LLMError(
                "unparseable_response",
                f"{self.id} @ {self.endpoint}: {_short(f'{type(exc).__name__}: {exc}')}",
                retries,
            ) from exc

    def info(self) -> dict[str, Any]:
        import openai

        out = super().info()
        out.update(
            {
                "backend": "openai-compatible",
                "openai_sdk": openai.__version__,
                "api_key_env": self.api_key_env,
                "timeout_s": self.timeout_s,
                "max_retries": self.max_retries,
            }
        )
        return out

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
