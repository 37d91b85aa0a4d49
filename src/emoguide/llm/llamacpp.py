"""In-process llama.cpp (``llamacpp:<path.gguf>`` or ``llamacpp:smollm2``).

``llama_cpp.Llama`` is not thread-safe, so every call holds the backend's lock: with
``concurrency > 1`` the calls queue here one at a time. The timeout cannot interrupt the C code
directly; a logits processor forces end-of-sequence once it runs past the deadline, and the call
then fails with kind ``timeout`` (the partial text is discarded, not cached).

Log-probabilities: llama-cpp-python (0.3.x) refuses ``logprobs`` unless the model was created
with ``logits_all=True``, which keeps a float row per context position and vocabulary entry
(n_ctx x n_vocab: about 400 MB for SmolLM2 at n_ctx 2048). So the model is loaded without it, and
the first call that asks for logprobs reloads it with ``logits_all=True`` (or pass
``logits_all=True`` up front); plain completions are unchanged either way.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from emoguide.errors import require
from emoguide.llm.base import Completion, LLMBackend, LLMError, chat_logprobs, json_schema_of
from emoguide.llm.models import ModelNotFoundError, resolve_gguf


class LlamaCppBackend(LLMBackend):
    provider = "llamacpp"
    endpoint = "in-process"

    def __init__(
        self,
        model: str,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        timeout_s: float = 120.0,
        logits_all: bool = False,
    ):
        self.model = model
        self.logits_all = bool(logits_all)
        self.n_ctx = int(n_ctx)
        self.n_threads = n_threads
        self.timeout_s = float(timeout_s)
        self.path: Path | None = None
        self._llm = None
        self._lock = threading.Lock()

    def threads(self) -> tuple[int, int | None]:
        """(generation threads, prompt-processing threads) for llama.cpp.

        Under a per-worker cap (`emoguide.threads.cpu_threads()`, set by the pool and Ray
        executors) neither exceeds it, not even an explicit `n_threads`; llama.cpp's own default
        for prompt processing is every core, so it is capped too. Without a cap: `n_threads`, or
        min(8, cores), and llama.cpp's default (None) for prompt processing.
        """
        from emoguide.threads import cpu_threads

        cap = cpu_threads()
        threads = self.n_threads or cap or max(1, min(8, os.cpu_count() or 1))
        if cap is not None:
            threads = min(threads, cap)
            return threads, threads
        return threads, None

    def load(self) -> "LlamaCppBackend":
        with self._lock:
            self._load_locked()
        return self

    def _load_locked(self) -> None:
        if self._llm is not None:
            return
        llama_cpp = require("llama_cpp", "llm", "in-process llama.cpp")
        try:
            self.path = resolve_gguf(self.model)
        except ModelNotFoundError as exc:
            raise LLMError("config", str(exc)) from exc
        threads, batch_threads = self.threads()
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=self.n_ctx,
                n_threads=threads,
                n_threads_batch=batch_threads,
                logits_all=self.logits_all,
                verbose=False,
            )
        except Exception as exc:  # noqa: BLE001 - llama.cpp raises ValueError/RuntimeError
            raise LLMError("config", f"{self.path}: could not load: {exc}") from exc
        self._threads_used = threads
        self._batch_threads_used = batch_threads
        self._loaded = True

    def _ensure_logits_all(self) -> None:
        """Reload with ``logits_all=True`` (caller holds the lock); see the module docstring."""
        if self.logits_all and self._llm is not None:
            return
        self.logits_all = True
        llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()
        self._load_locked()

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
        if self._llm is None:
            self.load()
        timeout = self.timeout_s if timeout is None else float(timeout)
        with self._lock:
            if logprobs is not None:
                self._ensure_logits_all()
            elif self._llm is None:  # closed by another thread meanwhile
                self._load_locked()
            start = time.perf_counter()
            deadline = start + timeout
            expired = False

            eos = self._llm.token_eos()

            def past_deadline(_input_ids, scores):
                # llama.cpp's chat API has no stopping criteria; past the deadline, force EOS.
                nonlocal expired
                if expired or time.perf_counter() > deadline:
                    expired = True
                    scores[:] = -float("inf")
                    scores[eos] = 0.0
                return scores

            kwargs: dict[str, Any] = {
                "messages": messages,
                "temperature": temperature,
                "max_tokens": max_tokens,
                "logits_processor": _processors([past_deadline]),
            }
            if seed is not None:
                kwargs["seed"] = seed
            if logprobs is not None:
                kwargs["logprobs"] = True
                kwargs["top_logprobs"] = max(1, int(logprobs))
            if stop:
                kwargs["stop"] = list(stop)
            if schema is not None:
                # llama-cpp-python compiles the schema to a GBNF grammar: decoding cannot leave it
                kwargs["response_format"] = {"type": "json_object", "schema": schema}
            try:
                response = self._llm.create_chat_completion(**kwargs)
            except ValueError as exc:  # e.g. prompt longer than n_ctx
                raise LLMError("bad_request", f"{self.id}: {exc}") from exc
            latency = time.perf_counter() - start
        if expired:
            raise LLMError("timeout", f"{self.id}: generation ran past {timeout:g} s")
        try:
            choice = response["choices"][0]
            usage = response.get("usage") or {}
            return Completion(
                text=choice["message"]["content"] or "",
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                latency_s=latency,
                retries=0,
                logprobs=chat_logprobs(choice.get("logprobs")) if logprobs is not None else None,
            )
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMError("unparseable_response", f"{self.id}: {exc!r}") from exc

    def info(self) -> dict[str, Any]:
        out = super().info()
        out.update(
            {
                "backend": "llama-cpp-python",
                "path": str(self.path) if self.path else None,
                "n_ctx": self.n_ctx,
                "n_threads": getattr(self, "_threads_used", self.n_threads),
                "n_threads_batch": getattr(self, "_batch_threads_used", None),  # None: llama.cpp's default
                "logits_all": self.logits_all,
            }
        )
        try:
            from importlib.metadata import version

            out["llama_cpp_python"] = version("llama-cpp-python")
        except Exception:  # noqa: BLE001
            pass
        return out

    def close(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()


def _processors(funcs):
    import llama_cpp

    return llama_cpp.LogitsProcessorList(funcs)
