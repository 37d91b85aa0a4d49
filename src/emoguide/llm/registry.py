"""``provider:model`` strings -> backends.

Built-in providers are OpenAI-compatible endpoints plus in-process llama.cpp. A provider defined
in ``corpus.toml`` (``[llm.providers.NAME] base_url = ..., api_key_env = ...``) adds a name or
replaces a built-in one, and ``EMOGUIDE_<PROVIDER>_BASE_URL`` / ``EMOGUIDE_<PROVIDER>_API_KEY``
(provider upper-cased, ``-`` -> ``_``) override both. The model part is sent to the server as
given (``ollama:llama3.1:8b`` -> model ``llama3.1:8b``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from emoguide.config import LLMSettings
from emoguide.errors import EmoguideError
from emoguide.llm.base import LLMBackend, override_env
from emoguide.llm.models import canonical_name


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    api_key_env: str | None = None  # None: no key needed (local servers)


BUILTIN_PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        Provider(
            "gemini", "https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY"
        ),
        Provider("ollama", "http://127.0.0.1:11434/v1"),
        Provider("vllm", "http://127.0.0.1:8000/v1"),
        Provider("llamacpp-server", "http://127.0.0.1:8080/v1"),
    )
}

#: The in-process provider.
IN_PROCESS = "llamacpp"
DEFAULT_MODEL = "llamacpp:smollm2"
#: The packaged model that writes readable interventions (the demo's when it is installed).
LOCAL_MODEL = "llamacpp:qwen2.5-coder-1.5b"


class UnknownProviderError(EmoguideError, ValueError):
    pass


def known_providers(settings: LLMSettings | None = None) -> list[str]:
    names = set(BUILTIN_PROVIDERS) | {IN_PROCESS}
    if settings is not None:
        names |= set(settings.providers)
    return sorted(names)


def parse_spec(spec: str) -> tuple[str, str]:
    """``"provider:model"`` -> (provider, model); a bare packaged name (``smollm2``,
    ``qwen2.5-coder-1.5b`` and their aliases) is ``llamacpp:<canonical name>``."""
    spec = spec.strip()
    packaged = canonical_name(spec)
    if packaged is not None:
        return IN_PROCESS, packaged
    provider, sep, model = spec.partition(":")
    if not sep or not provider or not model:
        raise UnknownProviderError(
            f"{spec!r}: expected 'provider:model' (e.g. openai:gpt-4o, ollama:llama3.1:8b, "
            "llamacpp:smollm2, llamacpp:qwen2.5-coder-1.5b), or a packaged model's name "
            "(smollm2, qwen2.5-coder-1.5b)"
        )
    provider = provider.strip()
    if provider.lower() in BUILTIN_PROVIDERS or provider.lower() == IN_PROCESS:
        provider = provider.lower()
    model = model.strip()
    if provider == IN_PROCESS:
        model = canonical_name(model) or model
    return provider, model


def resolve_provider(name: str, settings: LLMSettings) -> Provider:
    """The provider's base URL and key variable after settings and environment overrides."""
    if name in settings.providers:
        cfg = settings.providers[name]
        provider = Provider(name, cfg.base_url, cfg.api_key_env)
    elif name in BUILTIN_PROVIDERS:
        provider = BUILTIN_PROVIDERS[name]
    else:
        raise UnknownProviderError(
            f"unknown LLM provider {name!r}; known: {', '.join(known_providers(settings))}. "
            "Define others in corpus.toml under [llm.providers.NAME] with base_url (and api_key_env)."
        )
    base_url = os.environ.get(override_env(name, "BASE_URL")) or provider.base_url
    return Provider(name, base_url, provider.api_key_env)


def get_backend(spec: str, settings: LLMSettings | None = None) -> LLMBackend:
    """Build (not load) the backend for ``spec``. Call ``.load()`` before the first completion
    (``complete`` also loads on first use)."""
    settings = settings or LLMSettings()
    provider, model = parse_spec(spec)
    if provider == IN_PROCESS:
        from emoguide.llm.llamacpp import LlamaCppBackend

        model = canonical_name(model) or model
        return LlamaCppBackend(
            model, n_ctx=settings.n_ctx, n_threads=settings.n_threads, timeout_s=settings.timeout_s
        )

    from emoguide.llm.openai_compat import OpenAICompatBackend

    resolved = resolve_provider(provider, settings)
    key = os.environ.get(override_env(provider, "API_KEY"))
    if not key and resolved.api_key_env:
        key = os.environ.get(resolved.api_key_env)
    return OpenAICompatBackend(
        provider,
        model,
        resolved.base_url,
        api_key=key or None,
        api_key_env=resolved.api_key_env,
        timeout_s=settings.timeout_s,
        max_retries=settings.max_retries,
    )
