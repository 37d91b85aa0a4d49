"""Completion cache: SQLite on disk, so a rerun costs nothing and an interrupted run resumes.

Keyed by the sha256 of (backend id, messages, temperature, max_tokens, seed). Only successful
completions are stored; a failed call is retried next time. WAL mode lets a reader and a writer
(or two processes on one corpus) work at once; within a process, one connection is shared under a
lock, which is simpler than a connection per thread and fast enough next to an LLM call.

The key holds the backend *id*, not its URL: ``vllm:llama-3-8b`` served from another port or host
is the same model, and hits. Use ``force=True`` (or a new id) when that is not what you want.

Log-probabilities: a request made with ``logprobs=k`` has ``k`` in its key (a cached completion
without logprobs must never answer a logprob request, nor one with fewer alternatives), and its
per-token logprobs are stored beside the text as JSON. Keys of requests without logprobs are
exactly what they were before, so existing caches keep hitting; a cache file from before the
``logprobs`` column gets the column added on open.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from emoguide.llm.base import Completion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    backend_id TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s REAL,
    created_at REAL NOT NULL,
    logprobs TEXT
)
"""


def cache_key(
    backend_id: str,
    messages: list[dict[str, str]],
    temperature: float,
    max_tokens: int,
    seed: int | None,
    logprobs: int | None = None,
    stop: list[str] | None = None,
    response_format: dict[str, Any] | None = None,
) -> str:
    fields: dict[str, Any] = {
        "backend": backend_id,
        "messages": messages,
        "temperature": float(temperature),
        "max_tokens": int(max_tokens),
        "seed": seed,
    }
    if logprobs is not None:  # absent otherwise, so older keys are unchanged
        fields["logprobs"] = int(logprobs)
    if stop:  # likewise: only when set
        fields["stop"] = list(stop)
    if response_format:
        fields["response_format"] = response_format
    blob = json.dumps(
        fields,
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CompletionCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None
        )
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.execute(_SCHEMA)
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(completions)")}
            if "logprobs" not in columns:  # a cache written before logprobs were stored
                try:
                    self._conn.execute("ALTER TABLE completions ADD COLUMN logprobs TEXT")
                except sqlite3.OperationalError as exc:  # another process added it just now
                    if "duplicate column" not in str(exc).lower():
                        raise

    def get(self, key: str) -> tuple[Completion, float] | None:
        """The cached completion and its creation time (epoch seconds), or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT text, finish_reason, prompt_tokens, completion_tokens, latency_s, created_at, "
                "logprobs FROM completions WHERE key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        text, finish, ptok, ctok, latency, created, logprobs = row
        lp = json.loads(logprobs) if logprobs is not None else None
        return Completion(text, finish, ptok, ctok, latency or 0.0, 0, logprobs=lp), created

    def put(self, key: str, backend_id: str, completion: Completion, created_at: float | None = None) -> float:
        created = time.time() if created_at is None else created_at
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO completions (key, backend_id, text, finish_reason, "
                "prompt_tokens, completion_tokens, latency_s, created_at, logprobs) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    backend_id,
                    completion.text,
                    completion.finish_reason,
                    completion.prompt_tokens,
                    completion.completion_tokens,
                    completion.latency_s,
                    created,
                    None
                    if completion.logprobs is None
                    else json.dumps(completion.logprobs, ensure_ascii=False),
                ),
            )
        return created

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT backend_id, COUNT(*) FROM completions GROUP BY backend_id"
            ).fetchall()
        return {"path": str(self.path), "entries": dict(rows)}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "CompletionCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
