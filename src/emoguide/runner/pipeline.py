"""`emoguide run`: every stage for every session, in data-flow order, then prompts and generation.

A thin layer over the engine (`emoguide.pipeline.runner.run_stages`, docs/architecture.md): it
builds the default stages from corpus.toml, applies `--skip`, and hands them to the chosen
executor. Resume, the error policy, progress and the summary are the runner's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rich.console import Console

from emoguide.corpus import Corpus
from emoguide.pipeline import registry
from emoguide.summary import BatchSummary

#: What `--skip` accepts: the default stages, and `transcribe` for asr + diarize + utterances.
STAGES = tuple(registry.RUN_DEFAULT) + tuple(registry.GROUPS)


@dataclass
class RunResult:
    summaries: list[BatchSummary] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    generations: object = None  # DataFrame when generate ran
    interrupted: bool = False
    wall_s: float = 0.0

    @property
    def failed(self) -> int:
        return sum(s.count("failed") for s in self.summaries)


def default_stages(
    corpus: Corpus,
    *,
    models: list[str] | None = None,
    conditions: str | None = None,
    skip: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> list:
    """The stages `emoguide run` runs, built from corpus.toml (generation with `models`)."""
    skip = set(skip)
    unknown = skip - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages: {', '.join(STAGES)}")
    for group, members in registry.GROUPS.items():
        if group in skip:
            skip |= set(members)
    names = [n for n in (only or registry.RUN_DEFAULT) if n not in skip]
    settings = corpus.settings
    stages = []
    for n in names:
        cls = registry.stage_class(n)
        if n == "generate":
            from emoguide.stages.generate import GenerateSettings

            stages.append(cls(GenerateSettings.from_corpus(settings, models=models or None, conditions=conditions)))
        else:
            stages.append(cls.from_corpus_settings(settings))
    return stages


def run_pipeline(
    corpus: Corpus,
    sessions: Iterable[str] | None = None,
    *,
    models: list[str] | None = None,
    conditions: str = "base,discrete,continuous,dissonance",
    skip: Iterable[str] = (),
    force: bool = False,
    console: Console | None = None,
    progress: bool = True,
    on_stage: Callable[[str, BatchSummary], None] | None = None,
    executor=None,
) -> RunResult:
    """Run the stages over the corpus; `skip` names stages to leave out (e.g. "generate")."""
    from emoguide.pipeline.events import RichProgress
    from emoguide.pipeline.runner import run_stages

    console = console or Console(stderr=True)
    stages = default_stages(corpus, models=models, conditions=conditions, skip=skip)
    for st in stages:
        if st.name == "generate":
            st.console = console
    bar = RichProgress(console) if progress else None
    try:
        report = run_stages(corpus, stages, sessions, executor=executor, force=force, on_event=bar)
    finally:
        if bar is not None:
            bar.stop()
    result = RunResult(summaries=report.summaries, seconds=report.seconds, interrupted=report.interrupted,
                       wall_s=report.wall_s, generations=report.corpus_results.get("generate"))
    if on_stage:
        for s in report.summaries:
            on_stage(s.title, s)
    return result
