"""The generate stage: every prompt item x every model -> one row of ``generations.parquet``.

Resumable at the row level. Each successful completion goes into the SQLite cache the moment it
arrives, and the parquet file is checkpointed (atomically) every few rows, at the end, and on the
way out of an interrupted run (Ctrl-C, a dead server), so nothing generated is lost. A rerun
takes every completion it can from the cache (``cache_hit`` True, no model call), keeps an
existing ``ok`` row whose prompt and generation settings are unchanged even if the cache was
deleted, and retries rows that failed.

Generated interventions are research data, never to be shown to a patient; every row says so
(``research_use_only``) and carries the target utterance's risk flag.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import pandas as pd

from emoguide.config import LLMSettings
from emoguide.corpus.atomic import write_parquet
from emoguide.llm.base import Completion, LLMBackend, LLMError
from emoguide.llm.cache import CompletionCache, cache_key
from emoguide.llm.registry import get_backend
from emoguide.prompts.items import PromptItem
from emoguide.runner.summary import BatchSummary

KEY = ["session_id", "target_index", "condition", "model"]

COLUMNS = [
    "session_id",
    "target_index",
    "condition",
    "model",
    "status",  # ok | error | missing_inputs
    "error",  # "kind: message" for errors; what is missing for missing_inputs
    "error_kind",  # timeout, rate_limit, server_error, connection, bad_request, auth, ...
    "prompt",
    "raw_output",
    "technique",
    "response",
    "flags",  # comma-separated parser flags
    "finish_reason",
    "latency_s",
    "prompt_tokens",
    "completion_tokens",
    "cache_hit",
    "retries",
    "temperature",
    "seed",
    "max_tokens",
    "backend_endpoint",
    "risk_flag",
    "risk_categories",
    "context_indices",  # JSON list text
    "template_hash",
    "prompt_hash",
    "created_at",  # ISO 8601 UTC: when the completion was made (not when it was read from cache)
    "research_use_only",
]

_STR_COLUMNS = [
    "session_id", "condition", "model", "status", "error", "error_kind", "prompt", "raw_output",
    "technique", "response", "flags", "finish_reason", "backend_endpoint", "risk_categories",
    "context_indices", "template_hash", "prompt_hash", "created_at",
]
_INT_COLUMNS = ["prompt_tokens", "completion_tokens", "seed", "max_tokens"]  # nullable
_BOOL_COLUMNS = ["cache_hit", "risk_flag", "research_use_only"]

CHECKPOINT_ROWS = 10
CHECKPOINT_SECONDS = 5.0

RowCallback = Callable[[dict[str, Any]], None]


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in order with stable dtypes (extra columns kept at the end)."""
    df = df.copy()
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    for col in _STR_COLUMNS:
        df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str)
    df["target_index"] = df["target_index"].astype("int64")
    for col in _INT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in ("latency_s", "temperature"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["retries"] = pd.to_numeric(df["retries"], errors="coerce").fillna(0).astype("int64")
    for col in _BOOL_COLUMNS:
        df[col] = df[col].astype(object).where(df[col].notna(), False).astype(bool)
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra]


def empty_generations() -> pd.DataFrame:
    return conform(pd.DataFrame({c: [] for c in COLUMNS}))


def read_generations(path) -> pd.DataFrame:
    try:
        return conform(pd.read_parquet(path))
    except FileNotFoundError:
        return empty_generations()


def _row_label(row: dict[str, Any]) -> str:
    return f"{row['session_id']}#{row['target_index']}/{row['condition']}/{row['model']}"


class _Run:
    """State of one generate() call, shared by the worker threads."""

    def __init__(self, settings: LLMSettings, cache: CompletionCache, existing: dict, force: bool):
        self.settings = settings
        self.cache = cache
        self.existing = existing
        self.force = force
        self._load_errors: dict[str, LLMError] = {}
        self._load_lock = threading.Lock()

    # -- rows -------------------------------------------------------------------------------
    def base_row(self, item: PromptItem, backend: LLMBackend) -> dict[str, Any]:
        s = self.settings
        return {
            "session_id": item.session_id,
            "target_index": int(item.target_index),
            "condition": item.condition,
            "model": backend.id,
            "status": "ok",
            "error": "",
            "error_kind": "",
            "prompt": item.prompt,
            "raw_output": "",
            "technique": "",
            "response": "",
            "flags": "",
            "finish_reason": "",
            "latency_s": None,
            "prompt_tokens": None,
            "completion_tokens": None,
            "cache_hit": False,
            "retries": 0,
            "temperature": float(s.temperature),
            "seed": s.seed,
            "max_tokens": int(s.max_tokens),
            "backend_endpoint": backend.endpoint,
            "risk_flag": bool(item.risk_flag),
            "risk_categories": item.risk_categories or "",
            "context_indices": json.dumps([int(i) for i in item.context_indices]),
            "template_hash": item.template_hash,
            "prompt_hash": prompt_hash(item.prompt),
            "created_at": _iso(time.time()),
            "research_use_only": True,
        }

    def missing_row(self, item: PromptItem, backend: LLMBackend) -> dict[str, Any]:
        row = self.base_row(item, backend)
        row.update(status=item.status or "missing_inputs", error=item.missing or "")
        return row

    def ok_row(self, item, backend, completion: Completion, created: float, cache_hit: bool):
        from emoguide.llm.parse import parse_output

        row = self.base_row(item, backend)
        parsed = parse_output(completion.text, completion.finish_reason)
        row.update(
            raw_output=completion.text,
            technique=parsed.technique or "",
            response=parsed.response or "",
            flags=",".join(parsed.flags or []),
            finish_reason=completion.finish_reason or "",
            latency_s=completion.latency_s,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cache_hit=cache_hit,
            retries=0 if cache_hit else completion.retries,
            created_at=_iso(created),
        )
        return row

    def error_row(self, item, backend, kind: str, message: str, retries: int = 0):
        row = self.base_row(item, backend)
        row.update(status="error", error_kind=kind, error=f"{kind}: {message}", retries=retries)
        return row

    # -- work -------------------------------------------------------------------------------
    def _ensure_loaded(self, backend: LLMBackend) -> None:
        if backend.loaded:
            return
        with self._load_lock:
            if backend.id in self._load_errors:
                raise self._load_errors[backend.id]
            if backend.loaded:
                return
            try:
                backend.load()
            except LLMError as exc:
                self._load_errors[backend.id] = exc
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. MissingExtraError
                err = LLMError("config", f"{backend.id}: {exc}")
                self._load_errors[backend.id] = err
                raise err from exc

    def reusable_row(self, item: PromptItem, backend: LLMBackend) -> dict[str, Any] | None:
        """An existing ok row for this key with the same prompt and settings (cache deleted)."""
        old = self.existing.get((item.session_id, int(item.target_index), item.condition, backend.id))
        if not old or old.get("status") != "ok":
            return None
        s = self.settings
        same = (
            old.get("prompt_hash") == prompt_hash(item.prompt)
            and float(old.get("temperature")) == float(s.temperature)
            and _int_or_none(old.get("max_tokens")) == int(s.max_tokens)
            and _int_or_none(old.get("seed")) == s.seed
        )
        if not same:
            return None
        row = self.base_row(item, backend)
        for col in ("raw_output", "technique", "response", "flags", "finish_reason", "latency_s",
                    "prompt_tokens", "completion_tokens", "created_at"):
            row[col] = old.get(col)
        row["cache_hit"] = True
        return row

    def run_one(self, item: PromptItem, backend: LLMBackend) -> dict[str, Any]:
        s = self.settings
        messages = [{"role": "user", "content": item.prompt}]
        key = cache_key(backend.id, messages, s.temperature, s.max_tokens, s.seed)
        try:
            if not self.force:
                hit = self.cache.get(key)
                if hit is not None:
                    completion, created = hit
                    return self.ok_row(item, backend, completion, created, cache_hit=True)
                kept = self.reusable_row(item, backend)
                if kept is not None:
                    return kept
            self._ensure_loaded(backend)
            completion = backend.complete(
                messages,
                temperature=s.temperature,
                max_tokens=s.max_tokens,
                seed=s.seed,
                timeout=s.timeout_s,
            )
            created = self.cache.put(key, backend.id, completion)
            return self.ok_row(item, backend, completion, created, cache_hit=False)
        except LLMError as exc:
            return self.error_row(item, backend, exc.kind, exc.message, exc.retries)
        except Exception as exc:  # noqa: BLE001 - one bad row never stops the batch
            return self.error_row(item, backend, "internal", f"{type(exc).__name__}: {exc}")


def _int_or_none(value: Any) -> int | None:
    try:
        if value is None or pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return int(value)


def _progress(console, enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )


def generate(
    corpus,
    items: Iterable[PromptItem],
    models: Iterable[str],
    *,
    settings: LLMSettings | None = None,
    force: bool = False,
    console=None,
    progress: bool = True,
    on_row: RowCallback | None = None,
) -> tuple[pd.DataFrame, BatchSummary]:
    """Generate an intervention for every item x model and merge them into generations.parquet.

    Returns this call's rows (items x models, in that order) and a summary: fresh completions are
    ``done``, cache hits and missing inputs ``skipped``, failures ``failed`` with their kind.
    ``on_row`` is called in the calling thread with each finished row.
    """
    from rich.console import Console
    from rich.markup import escape

    settings = settings or corpus.settings.llm
    console = console or Console(stderr=True)
    items = list(items)
    backends: dict[str, LLMBackend] = {}
    for spec in models:
        backend = get_backend(spec, settings)
        backends.setdefault(backend.id, backend)

    path = corpus.generations_path
    existing_df = read_generations(path)
    existing = {
        (r["session_id"], int(r["target_index"]), r["condition"], r["model"]): r
        for r in existing_df.to_dict("records")
    }
    cache = CompletionCache(corpus.cache_path)
    run = _Run(settings, cache, existing, force)

    order: list[tuple] = []
    done_rows: dict[tuple, dict[str, Any]] = {}
    pending: list[tuple[PromptItem, LLMBackend]] = []
    seen: set[tuple] = set()
    for item in items:
        for backend in backends.values():
            key = (item.session_id, int(item.target_index), item.condition, backend.id)
            if key in seen:
                continue  # the same item twice: one row, one call
            seen.add(key)
            order.append(key)
            if item.status != "ok":
                done_rows[key] = run.missing_row(item, backend)
            else:
                pending.append((item, backend))

    for backend in backends.values():
        if backend.is_remote and any(b is backend for _, b in pending):
            console.print(
                f"[bold yellow]NOTE:[/] session text will be sent to "
                f"{escape(backend.endpoint)} ({escape(backend.id)})",
                highlight=False,
            )

    summary = BatchSummary(title="generate")
    state = {"dirty": bool(done_rows), "since": 0, "last": time.monotonic()}

    def checkpoint() -> None:
        if not state["dirty"]:
            return
        new = conform(pd.DataFrame(list(done_rows.values()), columns=COLUMNS))
        new_keys = set(done_rows)
        keep = existing_df[
            [k not in new_keys for k in zip(*(existing_df[c] for c in KEY))]
        ] if len(existing_df) else existing_df
        merged = pd.concat([keep, new], ignore_index=True) if len(keep) else new
        merged = conform(merged).sort_values(KEY, kind="stable").reset_index(drop=True)
        write_parquet(path, merged)
        state.update(dirty=False, since=0, last=time.monotonic())

    def record(row: dict[str, Any]) -> None:
        key = (row["session_id"], row["target_index"], row["condition"], row["model"])
        done_rows[key] = row
        state["dirty"] = True
        state["since"] += 1
        label = _row_label(row)
        if row["status"] == "ok":
            if row["cache_hit"]:
                summary.add(label, "generate", "skipped", "cached")
            else:
                summary.add(label, "generate", "done")
        elif row["status"] == "error":
            summary.add(label, "generate", "failed", row["error"])
        else:
            summary.add(label, "generate", "skipped", f"{row['status']}: {row['error']}".rstrip(": "))

    executor = ThreadPoolExecutor(
        max_workers=max(1, int(settings.concurrency)), thread_name_prefix="emoguide-llm"
    )
    try:
        for row in list(done_rows.values()):  # missing inputs: written as rows, never sent
            record(row)
            if on_row:
                on_row(row)
        with _progress(console, progress) as bar:
            task = bar.add_task("generate", total=len(pending))
            futures = [executor.submit(run.run_one, item, backend) for item, backend in pending]
            for future in as_completed(futures):
                row = future.result()
                record(row)
                bar.advance(task)
                if on_row:
                    on_row(row)
                if (
                    state["since"] >= CHECKPOINT_ROWS
                    or time.monotonic() - state["last"] >= CHECKPOINT_SECONDS
                ):
                    checkpoint()
    finally:
        # Ctrl-C or an exception from on_row: drop the queued work, keep what is done.
        executor.shutdown(wait=False, cancel_futures=True)
        checkpoint()

    executor.shutdown(wait=True)
    cache.close()
    _write_meta(corpus, backends, settings)
    for backend in backends.values():
        backend.close()
    rows = [done_rows[k] for k in order if k in done_rows]
    return conform(pd.DataFrame(rows, columns=COLUMNS)), summary


def _write_meta(corpus, backends: dict[str, LLMBackend], settings: LLMSettings) -> None:
    """`generations.json` beside the table: what made the rows (backends, versions, settings),
    merged with earlier runs' entries so a model used once stays described."""
    from emoguide.corpus.atomic import read_json, write_json
    from emoguide.corpus.stages import package_versions

    meta_path = corpus.generations_path.with_suffix(".json")
    meta = read_json(meta_path, default={}) or {}
    models = dict(meta.get("models", {}))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for backend in backends.values():
        models[backend.id] = {**backend.info(), "last_run": now}
    meta.update(
        models=models,
        settings=settings.model_dump(mode="json", exclude={"providers"}),
        versions=package_versions(("emoguide", "llama-cpp-python", "openai", "pandas", "pyarrow")),
        research_use_only=True,
    )
    write_json(meta_path, meta)
