"""LLM backends: registry, remoteness, retry/backoff/timeout paths, and real completions.

The retry tests use a tiny stdlib HTTP stub on loopback (llama.cpp cannot answer 429); every
completion test talks to a real llama.cpp (server or in-process) running the packaged SmolLM2.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from emoguide.config import LLMSettings, ProviderSettings  # noqa: E402
from emoguide.llm.base import LLMError, is_remote_url  # noqa: E402
from emoguide.llm.registry import UnknownProviderError, get_backend, parse_spec  # noqa: E402

MESSAGES = [{"role": "user", "content": "Say hello to the patient in one short sentence."}]


# -- registry --------------------------------------------------------------------------------

def test_parse_spec():
    assert parse_spec("openai:gpt-4o") == ("openai", "gpt-4o")
    assert parse_spec("ollama:llama3.1:8b") == ("ollama", "llama3.1:8b")
    assert parse_spec("smollm2") == ("llamacpp", "smollm2")
    assert parse_spec("LLAMACPP:smollm2") == ("llamacpp", "smollm2")
    with pytest.raises(UnknownProviderError, match="provider:model"):
        parse_spec("gpt-4o")


def test_unknown_provider_lists_known_ones():
    settings = LLMSettings(providers={"lab": ProviderSettings(base_url="http://10.0.0.5:8000/v1")})
    with pytest.raises(UnknownProviderError) as info:
        get_backend("nosuch:model", settings)
    msg = str(info.value)
    assert "nosuch" in msg
    for name in ("openai", "gemini", "ollama", "vllm", "llamacpp-server", "llamacpp", "lab"):
        assert name in msg


def test_builtin_providers_and_remoteness(monkeypatch):
    for var in ("EMOGUIDE_OPENAI_BASE_URL", "EMOGUIDE_OLLAMA_BASE_URL", "EMOGUIDE_LAB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    s = LLMSettings(providers={"lab": ProviderSettings(base_url="http://10.0.0.5:8000/v1")})
    cases = {
        "openai:gpt-4o": ("https://api.openai.com/v1", True),
        "gemini:gemini-2.0-flash": ("https://generativelanguage.googleapis.com/v1beta/openai", True),
        "ollama:llama3.1:8b": ("http://127.0.0.1:11434/v1", False),
        "vllm:meta-llama/Llama-3.1-8B-Instruct": ("http://127.0.0.1:8000/v1", False),
        "llamacpp-server:smollm2": ("http://127.0.0.1:8080/v1", False),
        "lab:qwen": ("http://10.0.0.5:8000/v1", False),
    }
    for spec, (endpoint, remote) in cases.items():
        backend = get_backend(spec, s)
        assert backend.id == spec
        assert backend.endpoint == endpoint
        assert backend.is_remote is remote, spec
    local = get_backend("smollm2", s)
    assert local.id == "llamacpp:smollm2"
    assert local.endpoint == "in-process" and local.is_remote is False

    monkeypatch.setenv("EMOGUIDE_OLLAMA_BASE_URL", "https://ollama.example.org/v1")
    assert get_backend("ollama:llama3", s).is_remote is True
    monkeypatch.setenv("EMOGUIDE_LAB_BASE_URL", "http://localhost:9000/v1")
    assert get_backend("lab:qwen", s).endpoint == "http://localhost:9000/v1"


def test_is_remote_url():
    assert not is_remote_url("http://localhost:8080/v1")
    assert not is_remote_url("http://127.0.0.1:8080/v1")
    assert not is_remote_url("http://[::1]:8080/v1")
    assert not is_remote_url("http://192.168.1.20:8000/v1")
    assert not is_remote_url("http://172.16.3.4/v1")
    assert is_remote_url("https://api.openai.com/v1")
    assert is_remote_url("http://8.8.8.8/v1")
    assert is_remote_url("http://gpu-box/v1")  # a bare name could be anywhere: say so


def test_api_keys_from_env(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("EMOGUIDE_OPENAI_API_KEY", raising=False)
    backend = get_backend("openai:gpt-4o", LLMSettings())
    with pytest.raises(LLMError) as info:
        backend.load()
    assert info.value.kind == "config" and "OPENAI_API_KEY" in str(info.value)
    monkeypatch.setenv("EMOGUIDE_OPENAI_API_KEY", "sk-override")
    assert get_backend("openai:gpt-4o", LLMSettings()).api_key == "sk-override"
    monkeypatch.delenv("EMOGUIDE_OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-plain")
    assert get_backend("openai:gpt-4o", LLMSettings()).api_key == "sk-plain"
    # local servers need no key
    get_backend("ollama:llama3", LLMSettings()).load().close()


# -- retry, backoff and timeout paths against a loopback stub ----------------------------------

def _completion_body(text="[Validation] That sounds hard.") -> bytes:
    return json.dumps(
        {
            "id": "stub-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "stub",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
    ).encode()


class Stub:
    """Answers POSTs from a script of (status, headers, body, delay_s); the last entry repeats."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[tuple[float, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                stub.requests.append((time.monotonic(), payload))
                n = len(stub.requests) - 1
                status, headers, body, delay = stub.script[min(n, len(stub.script) - 1)]
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _stub_backend(stub, **kw):
    settings = LLMSettings(
        providers={"stub": ProviderSettings(base_url=stub.base_url)},
        timeout_s=kw.pop("timeout_s", 5.0),
        max_retries=kw.pop("max_retries", 3),
    )
    backend = get_backend("stub:tiny-model", settings)
    backend.backoff_base_s = kw.pop("backoff_base_s", 0.05)
    return backend.load()


RATE_LIMITED = (429, {"Retry-After": "1"}, b'{"error": {"message": "slow down"}}', 0)
OK = (200, {}, _completion_body(), 0)


def test_429_then_success_honours_retry_after():
    with Stub([RATE_LIMITED, OK]) as stub:
        backend = _stub_backend(stub)
        t0 = time.monotonic()
        out = backend.complete(MESSAGES, temperature=0.3, max_tokens=21, seed=7)
        assert out.retries == 1
        assert out.text.startswith("[Validation]")
        assert (out.prompt_tokens, out.completion_tokens, out.finish_reason) == (11, 7, "stop")
        assert len(stub.requests) == 2
        gap = stub.requests[1][0] - stub.requests[0][0]
        assert gap >= 0.9, f"Retry-After: 1 not honoured (gap {gap:.2f} s)"
        assert time.monotonic() - t0 < 5
        sent = stub.requests[1][1]
        assert sent["model"] == "tiny-model"
        assert sent["temperature"] == 0.3 and sent["max_tokens"] == 21 and sent["seed"] == 7
        assert sent["messages"] == MESSAGES


def test_rate_limit_gives_up_after_max_retries():
    with Stub([(429, {}, b'{"error": "busy"}', 0)]) as stub:
        backend = _stub_backend(stub, max_retries=2)
        with pytest.raises(LLMError) as info:
            backend.complete(MESSAGES, max_tokens=8)
        assert info.value.kind == "rate_limit"
        assert info.value.retries == 2
        assert len(stub.requests) == 3
        # exponential backoff: the second wait is longer than the first (base 0.05 s, jitter 0.5-1.5)
        t = [r[0] for r in stub.requests]
        assert t[2] - t[1] > 0.04


def test_server_error_retried_then_ok():
    with Stub([(503, {}, b'{"error": "overloaded"}', 0), (500, {}, b"{}", 0), OK]) as stub:
        out = _stub_backend(stub).complete(MESSAGES, max_tokens=8)
        assert out.retries == 2 and len(stub.requests) == 3


def test_timeout_path():
    with Stub([(200, {}, _completion_body(), 3.0)]) as stub:
        backend = _stub_backend(stub, timeout_s=0.4, max_retries=1)
        t0 = time.monotonic()
        with pytest.raises(LLMError) as info:
            backend.complete(MESSAGES, max_tokens=8)
        assert info.value.kind == "timeout"
        assert info.value.retries == 1
        assert time.monotonic() - t0 < 2.5


def test_bad_request_not_retried_and_unparseable_response():
    with Stub([(400, {}, b'{"error": {"message": "no such model"}}', 0)]) as stub:
        with pytest.raises(LLMError) as info:
            _stub_backend(stub).complete(MESSAGES, max_tokens=8)
        assert info.value.kind == "bad_request" and "no such model" in info.value.message
        assert len(stub.requests) == 1
    with Stub([(200, {}, b'{"object": "nonsense"}', 0)]) as stub:
        with pytest.raises(LLMError) as info:
            _stub_backend(stub).complete(MESSAGES, max_tokens=8)
        assert info.value.kind == "unparseable_response"


def test_connection_refused():
    from llm_server import free_port

    settings = LLMSettings(
        providers={"gone": ProviderSettings(base_url=f"http://127.0.0.1:{free_port()}/v1")},
        max_retries=1,
        timeout_s=2,
    )
    backend = get_backend("gone:x", settings)
    backend.backoff_base_s = 0.01
    with pytest.raises(LLMError) as info:
        backend.complete(MESSAGES, max_tokens=8)
    assert info.value.kind == "connection" and info.value.retries == 1


# -- real llama.cpp ------------------------------------------------------------------------------

def _skip_without_llama():
    from llm_server import server_available

    reason = server_available()
    if reason:
        pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_http_backend_against_real_llama_server(llama_server):
    settings = LLMSettings(providers={"local": ProviderSettings(base_url=llama_server.base_url)})
    backend = get_backend("local:smollm2", settings).load()
    assert backend.is_remote is False
    out = backend.complete(MESSAGES, temperature=0.0, max_tokens=24, seed=1, timeout=60)
    assert out.text.strip()
    assert out.finish_reason in ("stop", "length")
    assert out.prompt_tokens > 5 and 0 < out.completion_tokens <= 24
    assert out.latency_s > 0 and out.retries == 0
    again = backend.complete(MESSAGES, temperature=0.0, max_tokens=24, seed=1, timeout=60)
    assert again.text == out.text  # temperature 0 is deterministic
    info = backend.info()
    assert info["endpoint"] == llama_server.base_url and info["is_remote"] is False


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_in_process_llamacpp_smollm2():
    _skip_without_llama()
    backend = get_backend("llamacpp:smollm2", LLMSettings(n_threads=2, n_ctx=1024))
    assert not backend.loaded
    backend.load()
    try:
        out = backend.complete(MESSAGES, temperature=0.0, max_tokens=24, seed=1)
        assert out.text.strip()
        assert out.completion_tokens and out.completion_tokens <= 24
        assert out.prompt_tokens and out.latency_s > 0
        info = backend.info()
        assert info["path"].endswith(".gguf") and info["endpoint"] == "in-process"
        # the timeout path in-process: a deadline that has already passed stops generation
        with pytest.raises(LLMError) as err:
            backend.complete(MESSAGES, max_tokens=24, timeout=0.0)
        assert err.value.kind == "timeout"
    finally:
        backend.close()


def test_missing_gguf_is_a_config_error(tmp_path):
    pytest.importorskip("llama_cpp")
    backend = get_backend(f"llamacpp:{tmp_path / 'nope.gguf'}", LLMSettings())
    with pytest.raises(LLMError) as info:
        backend.load()
    assert info.value.kind == "config" and "nope.gguf" in str(info.value)


# -- stop sequences and JSON-schema-constrained decoding ------------------------------------------

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"technique": {"type": "string"}, "response": {"type": "string"}},
    "required": ["technique", "response"],
}


def test_json_schema_of_accepts_each_form():
    from emoguide.llm.base import json_schema_of

    assert json_schema_of(None) is None
    assert json_schema_of({"type": "json_object", "schema": ANSWER_SCHEMA}) == ANSWER_SCHEMA
    assert json_schema_of({"type": "json_schema", "json_schema": {"name": "a", "schema": ANSWER_SCHEMA}}) == ANSWER_SCHEMA
    assert json_schema_of(ANSWER_SCHEMA) == ANSWER_SCHEMA
    with pytest.raises(ValueError, match="no JSON schema"):
        json_schema_of({"type": "json_object"})


def test_stop_and_schema_reach_the_server_in_its_form():
    ok = (200, {}, _completion_body('{"technique": "Validation", "response": "That sounds hard."}'), 0)
    with Stub([ok]) as stub:
        backend = _stub_backend(stub)  # an endpoint of the user's own: llama.cpp's form
        backend.complete(MESSAGES, stop=["\n\n"], response_format={"type": "json_object", "schema": ANSWER_SCHEMA})
        backend.complete(MESSAGES)
    sent, plain = stub.requests[0][1], stub.requests[1][1]
    assert sent["stop"] == ["\n\n"]
    assert sent["response_format"] == {"type": "json_object", "schema": ANSWER_SCHEMA}
    assert "stop" not in plain and "response_format" not in plain  # nothing sent unless asked
    openai_backend = get_backend("openai:gpt-4o-mini", LLMSettings())
    assert openai_backend._response_format(ANSWER_SCHEMA)["json_schema"]["schema"] == ANSWER_SCHEMA


def test_cache_key_separates_constrained_answers():
    from emoguide.llm.cache import cache_key

    plain = cache_key("m", MESSAGES, 0.0, 32, 0)
    assert cache_key("m", MESSAGES, 0.0, 32, 0, stop=None, response_format=None) == plain  # old keys kept
    assert cache_key("m", MESSAGES, 0.0, 32, 0, stop=["\n"]) != plain
    assert cache_key("m", MESSAGES, 0.0, 32, 0, response_format={"type": "json_object", "schema": ANSWER_SCHEMA}) != plain


def _assert_schema_answer(text: str) -> None:
    data = json.loads(text)  # the grammar allows nothing else
    assert set(ANSWER_SCHEMA["required"]) <= set(data)
    assert all(isinstance(data[k], str) for k in ANSWER_SCHEMA["required"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_schema_constrained_answer_from_real_llama_server(llama_server):
    settings = LLMSettings(providers={"local": ProviderSettings(base_url=llama_server.base_url)})
    backend = get_backend("local:smollm2", settings).load()
    fmt = {"type": "json_object", "schema": ANSWER_SCHEMA}
    out = backend.complete(MESSAGES, temperature=0.0, max_tokens=96, seed=1, timeout=120, response_format=fmt)
    if out.finish_reason == "stop":
        _assert_schema_answer(out.text)
    else:  # cut by max_tokens: still a prefix of the grammar, an object being written
        assert out.text.lstrip().startswith("{")
    stopped = backend.complete(MESSAGES, temperature=0.0, max_tokens=48, seed=1, timeout=120, stop=[" "])
    assert " " not in stopped.text.strip()  # the first space ended it


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_schema_constrained_answer_in_process():
    _skip_without_llama()
    backend = get_backend("llamacpp:smollm2", LLMSettings(n_threads=2, n_ctx=1024)).load()
    try:
        fmt = {"type": "json_object", "schema": ANSWER_SCHEMA}
        out = backend.complete(MESSAGES, temperature=0.0, max_tokens=96, seed=1, response_format=fmt)
        if out.finish_reason == "stop":
            _assert_schema_answer(out.text)
        else:
            assert out.text.lstrip().startswith("{")
    finally:
        backend.close()
