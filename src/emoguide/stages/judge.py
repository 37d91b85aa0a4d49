"""Stage `judge`: G-Eval scores of the generated responses into ``judgments.parquet`` (docs/judge.md).

A corpus-scope stage (opt-in: not in `emoguide run`'s default), run in the parent. It adapts the
library's `emoguide.evaluation.judge.run.judge`, which owns the blinded prompts, the frozen
evaluation steps, the completion cache, the row-level resume and ``judgments.json``. The stage
adds the choice of criteria (the corpus's rating study when it has one, else the paper's) and
turns rows into progress events (one per response x judge x criterion).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from emoguide.config import LLMSettings
from emoguide.pipeline.events import EventSink
from emoguide.pipeline.stage import Resources, Stage
from emoguide.stages.generate import row_events
from emoguide.stages.prompts import _names
from emoguide.summary import BatchSummary


class JudgeStageSettings(BaseModel):
    """The judge's settings (corpus.toml: [llm] for the backends' timeouts, retries, concurrency)."""

    models: list[str] = Field(
        default_factory=list,
        description="judge model(s), provider:model, more than one for a panel: openai:gpt-4o, "
        "llamacpp-server:NAME, vllm:NAME, llamacpp:smollm2 (in-process), ...",
    )
    method: Literal["auto", "logprobs", "sampling"] = Field(
        "auto",
        description="logprobs: score distribution from token log-probabilities (an error row where the "
        "backend gives none); sampling: n samples; auto: logprobs where available, else sampling, recorded per row",
    )
    samples: int = Field(20, ge=1, description="samples per score for method sampling (temperature sample_temperature)")
    sample_temperature: float = Field(1.0, ge=0.0, description="temperature of the samples (G-Eval: 1)")
    top_logprobs: int = Field(20, ge=1, description="log-probabilities asked per token (method logprobs)")
    max_tokens: int = Field(10, ge=1, description="tokens per judge answer (score-first: the score comes first)")
    seed: int = Field(0, description="seed for sampling and for the shuffled work order")
    steps_max_tokens: int = Field(400, ge=1, description="tokens for writing one criterion's evaluation steps")
    criteria_from_study: bool = Field(
        True,
        description="judge the rating study's criteria when the corpus has a study (ratings.sqlite), so judge "
        "and raters read the same statements; false: always the paper's three",
    )
    steps: str | None = Field(None, description="evaluation steps file (TOML) instead of <corpus>/judge/steps.toml")
    regenerate_steps: bool = Field(
        False, description="have the steps model write new evaluation steps (a new version of judge/steps.toml)"
    )
    steps_model: str | None = Field(
        None,
        description="model that writes missing steps (default: the first judge model; without it the paper's "
        "criteria use the packaged hand-written steps)",
    )
    limit: int = Field(0, ge=0, description="only the first N contexts (0: all); for trying things out")
    llm: LLMSettings = Field(
        default_factory=LLMSettings, description="timeouts, retries, concurrency, providers (corpus.toml [llm])"
    )

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        return _names(value)

    @classmethod
    def from_corpus(cls, settings: Any, **overrides: Any) -> "JudgeStageSettings":
        data: dict[str, Any] = {}
        if settings is not None:
            data["llm"] = settings.llm.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)

    def judge_settings(self):
        """The library's JudgeSettings."""
        from emoguide.evaluation.judge.run import JudgeSettings

        return JudgeSettings(
            method=self.method, samples=self.samples, sample_temperature=self.sample_temperature,
            top_logprobs=self.top_logprobs, max_tokens=self.max_tokens, seed=self.seed,
            steps_max_tokens=self.steps_max_tokens,
        )


def _judgment_status(row: dict[str, Any]) -> tuple[str, str]:
    """The event of one judgment row (the same mapping as the library's summary)."""
    if row["status"] == "ok":
        return ("skipped", "cached") if row["cache_hit"] else ("done", row.get("reason") or "")
    return "failed", row["reason"]


class JudgeStage(Stage[JudgeStageSettings]):
    name = "judge"
    help = "Score every generated response on the study's criteria with an LLM judge (G-Eval)."
    Settings = JudgeStageSettings
    scope = "corpus"
    reads = ("generations",)
    writes = ("judgments",)
    version = 1
    resources = Resources(cpus=2, memory_mb=2000)
    packages = ("llama-cpp-python", "openai")

    #: Where notices go (criteria chosen, steps written, remote endpoint); parent only, None: stderr.
    console: Any = None

    @classmethod
    def from_corpus_settings(cls, settings: Any) -> "JudgeStage":
        return cls(JudgeStageSettings.from_corpus(settings))

    def run_corpus(self, corpus, sessions: list[str], *, force: bool = False,
                   on_event: EventSink | None = None) -> tuple[Any, BatchSummary]:
        """(this run's rows as a DataFrame, the summary). Judges the whole generations table:
        `sessions` does not narrow it (the judge reads generations, not sessions)."""
        from rich.console import Console

        from emoguide.evaluation.judge.run import _label, judge, study_criteria

        s: JudgeStageSettings = self.settings
        if not s.models:
            raise ValueError("judge: name at least one judge model (provider:model)")
        console = self.console or Console(stderr=True)
        criteria = None
        if s.criteria_from_study:
            criteria, note = study_criteria(corpus.root)
            console.print(note, highlight=False, markup=False)
        on_plan, on_row = row_events(self.name, on_event, _label, _judgment_status)
        return judge(
            corpus, list(s.models), criteria=criteria, settings=s.judge_settings(), llm_settings=s.llm,
            steps_file=s.steps, regenerate_steps=s.regenerate_steps, steps_model=s.steps_model,
            force=force, limit=s.limit, console=console, progress=False, on_row=on_row, on_plan=on_plan,
        )
