"""`emoguide run`: every stage for every session, in data-flow order, then prompts and generation.

Stage-major order (all sessions through ASR, then all through diarization, ...) so each model is
loaded once per run. Every stage is resumable on its own (stages.json fingerprints), so a rerun
after a crash, a Ctrl-C or a new session redoes only what is missing or changed. One session's
failure never stops the others; the end summary lists done / skipped / failed with reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rich.console import Console

from emoguide.corpus import Corpus
from emoguide.summary import BatchSummary

STAGES = (
    "transcribe",  # asr, diarize, utterances (skips sessions whose transcript was imported)
    "roles",
    "safety",
    "faces",  # detection + tracking
    "face_affect",
    "voice",
    "text_affect",
    "dissonance",
    "generate",  # corpus level: prompts for every target x condition, then each model
)


@dataclass
class RunResult:
    summaries: list[BatchSummary] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    generations: object = None  # DataFrame when generate ran

    @property
    def failed(self) -> int:
        return sum(s.count("failed") for s in self.summaries)


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
) -> RunResult:
    """Run the stages over the corpus; `skip` names stages to leave out (e.g. "generate")."""
    console = console or Console(stderr=True)
    skip = set(skip)
    unknown = skip - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages: {', '.join(STAGES)}")
    sessions = list(sessions) if sessions else None
    settings = corpus.settings
    result = RunResult()

    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn("[bold]run[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console,
        )
        task = bar.add_task("", total=len([s for s in STAGES if s not in skip]))
        bar.start()

    def stage(name: str, fn: Callable[[], BatchSummary | list[BatchSummary]]) -> None:
        if name in skip:
            return
        t0 = time.perf_counter()
        if bar is not None:
            bar.update(task, description=name)
        got = fn()
        result.seconds[name] = time.perf_counter() - t0
        for s in got if isinstance(got, list) else [got]:
            result.summaries.append(s)
            if bar is not None:
                bar.console.print(f"  {name:<12} {s.line()}  ({result.seconds[name]:.1f} s)", highlight=False)
            if on_stage:
                on_stage(name, s)
        if bar is not None:
            bar.advance(task)

    def transcribe():
        from emoguide.speech.transcribe import transcribe_sessions

        return transcribe_sessions(corpus, sessions, settings=settings.transcribe, force=force)

    def roles():
        from emoguide.runner.roles_stage import run_roles

        return run_roles(corpus, settings.roles, sessions, force=force, llm_settings=settings.llm)

    def safety():
        from emoguide.runner.text_stages import run_safety

        return run_safety(corpus, sessions, force=force)

    def faces():
        from emoguide.vision.faces_stage import FaceSettings, run_faces

        return run_faces(corpus, sessions, settings=FaceSettings.model_validate(settings.faces), force=force)

    def face_affect():
        from emoguide.vision.face_affect_stage import run_face_affect

        fa = settings.face_affect
        return run_face_affect(
            corpus, sessions, backend=fa.get("backend", "fer"), model_path=fa.get("model_path"),
            crop_margin=fa.get("crop_margin"), force=force,
        )

    def voice():
        from emoguide.affect.voice_stage import run_voice

        vs = settings.voice
        return run_voice(corpus, sessions, backend=vs.get("backend", "prosody"), model_path=vs.get("model_path"), force=force)

    def text_affect():
        from emoguide.affect.text_stage import run_text_affect

        return run_text_affect(corpus, sessions, force=force)

    def dissonance():
        from emoguide.runner.text_stages import run_dissonance

        return run_dissonance(corpus, settings.dissonance, sessions, force=force)

    def generate():
        from emoguide.llm.generate import generate as run_generate
        from emoguide.prompts.conditions import select_conditions
        from emoguide.runner.text_stages import build_prompts

        conds = select_conditions(conditions, settings.templates_dir)
        items, psummary = build_prompts(corpus, conds, settings.targets, sessions)
        df, gsummary = run_generate(
            corpus, items, models or ["llamacpp:smollm2"], settings=settings.llm, force=force,
            console=console, progress=progress,
        )
        result.generations = df
        return [psummary, gsummary]

    for name, fn in (
        ("transcribe", transcribe),
        ("roles", roles),
        ("safety", safety),
        ("faces", faces),
        ("face_affect", face_affect),
        ("voice", voice),
        ("text_affect", text_affect),
        ("dissonance", dissonance),
        ("generate", generate),
    ):
        try:
            stage(name, fn)
        except BaseException:
            if bar is not None:
                bar.stop()
            raise
    if bar is not None:
        bar.update(task, description="done")
        bar.stop()
    return result
