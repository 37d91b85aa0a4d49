"""Generation: every prompt item x every model -> one row of ``generations.parquet``.

The library half of the `generate` stage (`emoguide.stages.generate` renders the prompts and
calls :func:`generate` from the runner; benchmarks and tests call it with their own items).

Resumable at the row level. Each successful completion goes into the SQLite cache the moment it
arrives, and the parquet file is checkpointed (atomically) every few rows, at the end, and on the
way out of an interrupted run (Ctrl-C, a dead server), so nothing generated is lost. A rerun
takes every completion it can from the cache (``cache_hit`` True, no model call), keeps an
existing ``ok`` row whose prompt and generation settings are unchanged even if the cache was
deleted, and retries rows that failed.

Generated interventions are research data, never to be shown to a patient; every row says so
(``research_use_only``) and carries the target utterance's risk flag.

Format adherence (docs/llm.md, "Format hint and structured output"): the paper's prompt is always
the user turn, word for word. ``LLMSettings.format_hint`` adds a system turn (the chat template's
own slot, so the prompt is untouched) with a one-line example of the answer form, plus stop
sequences that end the answer where small models start a new dialogue turn or an explanation.
``LLMSettings.structured`` asks backends that support JSON-schema-constrained decoding for
``{"technique", "response"}`` (:data:`emoguide.llm.parse.ANSWER_SCHEMA`). Every row records both
(``format_hint``, ``output_mode`` free|schema); both are off by default, as in the paper.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import pandas as pd

from emoguide.config import LLMSettings
from emoguide.corpus.atomic import read_parquet, write_parquet
from emoguide.llm.base import BackendLoader, Completion, LLMBackend, LLMError
from emoguide.llm.cache import CompletionCache, cache_key
from emoguide.llm.registry import get_backend
from emoguide.prompts.items import PromptItem
from emoguide.summary import BatchSummary

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
    "format_hint",  # the system-turn format hint and stop sequences were used (off: the paper's setting)
    "output_mode",  # free (the paper's free text) | schema (JSON-schema-constrained decoding)
]

_STR_COLUMNS = [
    "session_id", "condition", "model", "status", "error", "error_kind", "prompt", "raw_output",
    "technique", "response", "flags", "finish_reason", "backend_endpoint", "risk_categories",
    "context_indices", "template_hash", "prompt_hash", "created_at", "output_mode",
]
_INT_COLUMNS = ["prompt_tokens", "completion_tokens", "seed", "max_tokens"]  # nullable
_BOOL_COLUMNS = ["cache_hit", "risk_flag", "research_use_only", "format_hint"]

CHECKPOINT_ROWS = 10
CHECKPOINT_SECONDS = 5.0

RowCallback = Callable[[dict[str, Any]], None]

# -- format hint ----------------------------------------------------------------------------------
#: The system turn of ``format_hint``: what the paper's "[Technique] [Your Response]" means, with
#: one example line (small models otherwise echo the brackets, explain their reply in the third
#: person, or continue the dialogue). The user turn stays the paper's prompt, word for word. The
#: hint names several techniques so that its example does not steer the choice toward one.
FORMAT_HINT_SYSTEM = (
    "You are the therapist in this dialogue. Choose the technique that suits this moment and answer "
    "on one line, in exactly this form: the technique's name in square brackets, then what you say "
    "to the patient, speaking to them directly as \"you\" (never \"the patient\"). For example: "
    "[Open Question] What was the hardest part of this week for you? Other techniques include "
    "Validation, Reflective Listening, Reframing and Psychoeducation. Write only that line: no "
    "explanation, no notes."
)
#: The system turn of ``format_hint`` with ``structured``: the schema already fixes the layout.
FORMAT_HINT_SYSTEM_SCHEMA = (
    "You are the therapist in this dialogue. Name the technique you apply, and write what you say "
    "to the patient, speaking to them directly as \"you\" (never \"the patient\"; one or two "
    "sentences, no explanation)."
)
#: Stop sequences of ``format_hint``: where small models go on after the reply (a new dialogue
#: turn, an explanation, a second option).
FORMAT_HINT_STOP = [
    "\nPatient:",
    "\nTherapist:",
    "\nClient:",
    "\n\nExplanation",
    "\n\nThis response",
    "\n\nNote",
]
#: Providers whose backends do JSON-schema-constrained decoding (llama.cpp's grammar, in-process
#: and in its server). Others fall back to free text, recorded as output_mode "free".
SCHEMA_PROVIDERS = frozenset({"llamacpp", "llamacpp-server"})


def build_messages(prompt: str, format_hint: bool = False, structured: bool = False) -> list[dict[str, str]]:
    """The chat messages for one prompt: the paper's prompt as the user turn, preceded by the
    format hint's system turn when asked."""
    messages = [{"role": "user", "content": prompt}]
    if format_hint:
        system = FORMAT_HINT_SYSTEM_SCHEMA if structured else FORMAT_HINT_SYSTEM
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _accepts(backend: LLMBackend, name: str) -> bool:
    """Does this backend's ``complete`` take keyword ``name``? (backends gain parameters over time)"""
    try:
        params = inspect.signature(backend.complete).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def output_mode(backend: LLMBackend, settings: LLMSettings) -> str:
    """``schema`` when structured output is asked for and this backend can constrain decoding."""
    if settings.structured and backend.provider in SCHEMA_PROVIDERS and _accepts(backend, "response_format"):
        return "schema"
    return "free"


def request_options(backend: LLMBackend, settings: LLMSettings) -> dict[str, Any]:
    """The extra keyword arguments of ``complete`` for these settings (stop, response_format)."""
    from emoguide.llm.parse import answer_response_format

    opts: dict[str, Any] = {}
    if settings.format_hint and _accepts(backend, "stop"):
        opts["stop"] = list(FORMAT_HINT_STOP)
    if output_mode(backend, settings) == "schema":
        opts["response_format"] = answer_response_format()
    return opts


def request_key(backend_id: str, messages, settings: LLMSettings, opts: dict[str, Any]) -> str:
    """The cache key: :func:`cache_key`'s, unchanged when there are no extra options (so existing
    caches keep hitting), else hashed together with the options (stop, response_format), which
    change the answer."""
    base = cache_key(backend_id, messages, settings.temperature, settings.max_tokens, settings.seed)
    if not opts:
        return base
    blob = json.dumps({"key": base, "options": opts}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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
    # rows written before output_mode existed were free text
    df["output_mode"] = df["output_mode"].where(df["output_mode"] != "", "free")
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra]


def empty_generations() -> pd.DataFrame:
    return conform(pd.DataFrame({c: [] for c in COLUMNS}))


def read_generations(path) -> pd.DataFrame:
    try:
        return conform(read_parquet(path))
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
        self._loader = BackendLoader()

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
            "format_hint": bool(s.format_hint),
            "output_mode": output_mode(backend, s),
        }

    def missing_row(self, item: PromptItem, backend: LLMBackend) -> dict[str, Any]:
        row = self.base_row(item, backend)
        row.update(status=item.status or "missing_inputs", error=item.missing or "")
        return row

    def ok_row(self, item, backend, completion: Completion, created: float, cache_hit: bool):
        from emoguide.llm.parse import parse_answer

        row = self.base_row(item, backend)
        parsed = parse_answer(completion.text, completion.finish_reason, row["output_mode"])
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
        self._loader.ensure_loaded(backend)

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
            and bool(old.get("format_hint")) == bool(s.format_hint)
            and (old.get("output_mode") or "free") == output_mode(backend, s)
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
        opts = request_options(backend, s)
        messages = build_messages(item.prompt, s.format_hint, "response_format" in opts)
        key = request_key(backend.id, messages, s, opts)
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
                **opts,
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
    on_plan: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, BatchSummary]:
    """Generate an intervention for every item x model and merge them into generations.parquet.

    `corpus` is anything with ``generations_path``, ``cache_path`` and ``settings.llm`` (the
    corpus stage ``emoguide.stages.generate`` passes the corpus). Returns this call's rows (items
    x models, in that order) and a summary: fresh completions are ``done``, cache hits and missing
    inputs ``skipped``, failures ``failed`` with their kind. ``on_plan`` is called once with the
    number of rows this call makes, ``on_row`` in the calling thread with each finished row (the
    stage turns both into progress events).
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

    # Send the rows of one condition together: consecutive prompts then share the template's
    # opening (the instructions and format hint), which llama.cpp keeps in its KV cache and does
    # not evaluate again (about a third of a prompt). Stable: within a condition, input order.
    pending.sort(key=lambda p: p[0].condition)

    for backend in backends.values():
        if backend.is_remote and any(b is backend for _, b in pending):
            console.print(
                f"[bold yellow]NOTE:[/] session text will be sent to "
                f"{escape(backend.endpoint)} ({escape(backend.id)})",
                highlight=False,
            )

    summary = BatchSummary(title="generate")
    state = {"dirty": bool(done_rows), "since": 0, "last": time.monotonic()}
    if on_plan:
        on_plan(len(order))

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
    from emoguide.llm.parse import ANSWER_SCHEMA

    for backend in backends.values():
        opts = request_options(backend, settings)
        models[backend.id] = {
            **backend.info(),
            "last_run": now,
            "output_mode": output_mode(backend, settings),
            "stop": opts.get("stop"),
        }
    meta.update(
        models=models,
        settings=settings.model_dump(mode="json", exclude={"providers"}),
        # what format_hint / structured add to the paper's prompt (null when off)
        format={
            "system_turn": (
                FORMAT_HINT_SYSTEM_SCHEMA if settings.structured else FORMAT_HINT_SYSTEM
            ) if settings.format_hint else None,
            "stop": list(FORMAT_HINT_STOP) if settings.format_hint else None,
            "answer_schema": ANSWER_SCHEMA if settings.structured else None,
        },
        versions=package_versions(("emoguide", "llama-cpp-python", "openai", "pandas", "pyarrow")),
        research_use_only=True,
    )
    write_json(meta_path, meta)
