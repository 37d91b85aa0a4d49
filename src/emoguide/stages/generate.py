"""Stage `generate`: every prompt x every model -> one row of ``generations.parquet`` (docs/llm.md).

A corpus-scope stage, run in the parent after the session stages. It renders the prompts the way
the `prompts` stage does (`emoguide.stages.prompts.build_prompts`; prompts are not persisted) and
hands them to the library's `emoguide.llm.generate.generate`, which owns the row-level resume
(completion cache, unchanged ok rows kept, failed rows retried), the checkpoints and
``generations.json``. Requests run on `llm.concurrency` threads; an in-process llama.cpp model
takes its thread count from `emoguide.threads.cpu_threads()` when a cap is set.

Progress: one "plan" event with the number of rows, then one event per finished row (see
`row_events`). The remote-endpoint notice (session text leaves the machine) goes to `console`, a
parent-only attribute the CLI may set (default: stderr).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pydantic import Field, field_validator

from emoguide.config import LLMSettings
from emoguide.pipeline.events import Event, EventSink
from emoguide.pipeline.stage import Resources, Stage
from emoguide.stages.prompts import PromptsSettings, _names, build_prompts, select
from emoguide.summary import BatchSummary

DEFAULT_MODEL = "llamacpp:smollm2"


class GenerateSettings(PromptsSettings):
    """What to generate with (corpus.toml: [llm], [targets], templates_dir)."""

    models: list[str] = Field(
        default_factory=lambda: [DEFAULT_MODEL],
        description="provider:model, one or more: llamacpp:smollm2 (in-process, default), llamacpp:/path.gguf, "
        "llamacpp-server:NAME, ollama:NAME, vllm:NAME, openai:gpt-4o, gemini:gemini-2.0-flash, or a provider "
        "from corpus.toml [llm.providers]",
    )
    limit: int = Field(0, ge=0, description="only the first N targets (0: all); for trying things out")
    llm: LLMSettings = Field(
        default_factory=LLMSettings,
        description="sampling, timeouts, retries, concurrency, format hint / structured output (corpus.toml [llm])",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        return _names(value)

    @classmethod
    def from_corpus(cls, settings: Any, **overrides: Any) -> "GenerateSettings":
        data: dict[str, Any] = {}
        if settings is not None:
            data.update(targets=settings.targets.model_dump(), templates_dir=settings.templates_dir,
                        llm=settings.llm.model_dump())
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)


def limit_targets(items: list, limit: int) -> list:
    """The items of the first `limit` (session, target) pairs, every condition of each (0: all)."""
    if not limit:
        return list(items)
    keep, seen = [], set()
    for i in items:
        key = (i.session_id, i.target_index)
        if key not in seen and len(seen) >= limit:
            continue
        seen.add(key)
        keep.append(i)
    return keep


def _seconds(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(v) else v


def row_events(
    stage: str,
    on_event: EventSink | None,
    label: Callable[[dict[str, Any]], str],
    status: Callable[[dict[str, Any]], tuple[str, str]],
) -> tuple[Callable[[int], None], Callable[[dict[str, Any]], None]]:
    """(on_plan, on_row) for the library's generate()/judge(), emitting progress events.

    The runner announces a corpus stage with a "plan" event of total 1; the stage then announces
    its real size (a second "plan", the number of rows) and one "done" / "skipped" / "failed"
    event per finished row, with the row's key in the event's `session` field.
    """
    emit = on_event or (lambda ev: None)

    def on_plan(total: int) -> None:
        emit(Event("plan", stage, total=int(total)))

    def on_row(row: dict[str, Any]) -> None:
        kind, reason = status(row)
        emit(Event(kind, stage, label(row), reason, _seconds(row.get("latency_s"))))

    return on_plan, on_row


def _generation_status(row: dict[str, Any]) -> tuple[str, str]:
    """The event of one generation row (the same mapping as the library's summary)."""
    if row["status"] == "ok":
        return ("skipped", "cached") if row["cache_hit"] else ("done", "")
    if row["status"] == "error":
        return "failed", row["error"]
    return "skipped", f"{row['status']}: {row['error']}".rstrip(": ")


class GenerateStage(Stage[GenerateSettings]):
    name = "generate"
    help = "Generate [Technique] [Response] for every target x model x condition into generations.parquet."
    Settings = GenerateSettings
    scope = "corpus"
    reads = ("prompts",)
    writes = ("generations",)
    version = 1
    resources = Resources(cpus=2, memory_mb=2000)
    packages = ("llama-cpp-python", "openai")

    #: Where the remote-endpoint notice is printed (parent only; None: stderr).
    console: Any = None

    @classmethod
    def from_corpus_settings(cls, settings: Any) -> "GenerateStage":
        return cls(GenerateSettings.from_corpus(settings))

    def run_corpus(self, corpus, sessions: list[str], *, force: bool = False,
                   on_event: EventSink | None = None) -> tuple[Any, list[BatchSummary]]:
        """(this run's rows as a DataFrame, [the prompts' summary, the rows' summary])."""
        from emoguide.llm.generate import _row_label, generate

        s: GenerateSettings = self.settings
        if not s.models:
            raise ValueError("generate: name at least one model (provider:model)")
        items, psummary = build_prompts(corpus, select(s), s.targets, sessions)
        items = limit_targets(items, s.limit)
        on_plan, on_row = row_events(self.name, on_event, _row_label, _generation_status)
        df, gsummary = generate(
            corpus, items, list(s.models), settings=s.llm, force=force, console=self.console,
            progress=False, on_row=on_row, on_plan=on_plan,
        )
        return df, [psummary, gsummary]
