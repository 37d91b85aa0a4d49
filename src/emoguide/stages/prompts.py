"""Stage `prompts`: render every prompt condition for every target utterance (paper, Appendix A).

A corpus-scope stage: it runs in the parent after the session stages and reads each session's
utterance table (text, roles, the affect channels, dissonance and the safety flags the
conditions show). Rendering is cheap and deterministic, so nothing is persisted: the rendered
`PromptItem`s are the stage's value (`RunReport.corpus_results["prompts"]`); `generate` renders
them again the same way (`build_prompts`), and `emoguide prompts --save` writes them as JSONL.

The corpus loop lives here; the pure rendering (`emoguide.prompts.render.render_session`) stays
in the library, which knows nothing of the corpus.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field, field_validator

from emoguide.config import TargetSettings
from emoguide.errors import EmoguideError
from emoguide.pipeline.events import Event, EventSink
from emoguide.pipeline.stage import Resources, SessionView, Stage
from emoguide.prompts.items import PromptItem
from emoguide.summary import BatchSummary


def _paper_conditions() -> list[str]:
    from emoguide.prompts.conditions import PAPER_CONDITIONS  # jinja2: imported on use

    return list(PAPER_CONDITIONS)


def _names(value: Any) -> Any:
    """`"base, dissonance"` (the CLI's form) -> ["base", "dissonance"]."""
    if isinstance(value, str):
        return [n.strip() for n in value.split(",") if n.strip()]
    return value


class PromptsSettings(BaseModel):
    """Which conditions are rendered for which targets (corpus.toml: [targets], templates_dir)."""

    conditions: list[str] = Field(
        default_factory=_paper_conditions,
        description="prompt conditions to render, comma-separated, or 'all' (packaged: base, discrete, "
        "continuous, dissonance; more from templates_dir)",
    )
    templates_dir: str | None = Field(
        None, description="folder of extra condition templates (*.toml), besides the packaged four"
    )
    targets: TargetSettings = Field(
        default_factory=TargetSettings, description="which utterances get a prompt, and the dialogue window"
    )

    @field_validator("conditions", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _names(value)

    @classmethod
    def from_corpus(cls, settings: Any, **overrides: Any) -> "PromptsSettings":
        """corpus.toml's [targets] and templates_dir (there is no [prompts] section)."""
        data: dict[str, Any] = {}
        if settings is not None:
            data["targets"] = settings.targets.model_dump()
            data["templates_dir"] = settings.templates_dir
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)


def select(settings: PromptsSettings) -> list:
    """The settings' `Condition`s (packaged, then templates_dir); KeyError for an unknown name."""
    from emoguide.prompts.conditions import select_conditions

    return select_conditions(settings.conditions, settings.templates_dir)


def _session_ids(corpus, sessions: list[str] | None) -> list[str]:
    """None: every session; an empty list: none (`Corpus.sessions([])` would give them all)."""
    if sessions is None:
        return corpus.session_ids()
    return [s.id for s in corpus.sessions(sessions)] if sessions else []


def _reason(exc: Exception) -> str:
    if isinstance(exc, (EmoguideError, OSError, ValueError)) and str(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def build_prompts(
    corpus,
    conditions,
    target_settings: TargetSettings,
    sessions: Iterable[str] | None = None,
    on_event: EventSink | None = None,
    stage: str = "prompts",
) -> tuple[list[PromptItem], BatchSummary]:
    """Render every condition for every target of `sessions` (None: all); report, per session and
    condition, what was rendered and which conditions lack their inputs.

    `conditions` are `Condition` objects (`emoguide.prompts.conditions.select_conditions`). One
    session's unreadable table or bad template fails that session only.
    """
    from emoguide.prompts.render import render_session

    emit = on_event or (lambda ev: None)
    summary = BatchSummary("prompts")
    items: list[PromptItem] = []
    ids = _session_ids(corpus, None if sessions is None else list(sessions))
    emit(Event("plan", stage, total=len(ids)))
    for sid in ids:
        try:
            df = SessionView(corpus.root, sid).utterances()
            if not (df["role"] == "patient").fillna(False).any():
                reason = "no patient utterances: set roles first"
                summary.add(sid, "prompts", "skipped", reason)
                emit(Event("skipped", stage, sid, reason))
                continue
            got = render_session(df, conditions, target_settings)
        except Exception as exc:  # noqa: BLE001 - one session's failure never ends the batch
            reason = _reason(exc)
            summary.add(sid, "prompts", "failed", reason)
            emit(Event("failed", stage, sid, reason))
            continue
        if not got:
            reason = (
                f"no target: no patient utterance ends a window of {target_settings.context_turns} turns "
                f"(strategy {target_settings.strategy})"
            )
            summary.add(sid, "prompts", "skipped", reason)
            emit(Event("skipped", stage, sid, reason))
            continue
        for cond in conditions:
            mine = [i for i in got if i.condition == cond.name]
            missing = [i for i in mine if i.status == "missing_inputs"]
            if missing and len(missing) == len(mine):
                summary.add(sid, f"prompts:{cond.name}", "skipped", missing[0].missing)
            elif missing:
                summary.add(
                    sid, f"prompts:{cond.name}", "done",
                    f"{len(mine) - len(missing)} rendered, {len(missing)} targets lack inputs",
                )
            else:
                summary.add(sid, f"prompts:{cond.name}", "done", f"{len(mine)} rendered")
        items.extend(got)
        emit(Event("done", stage, sid, f"{sum(i.status == 'ok' for i in got)} of {len(got)} rendered"))
    return items, summary


class PromptsStage(Stage[PromptsSettings]):
    name = "prompts"
    help = "Render the prompt conditions (paper Appendix A) for every target utterance."
    Settings = PromptsSettings
    scope = "corpus"
    # The rows, and every column group a condition shows or a target strategy uses.
    reads = ("utterances", "utterances:role", "utterances:risk", "utterances:voice", "utterances:face",
             "utterances:text", "utterances:dissonance")
    writes = ("prompts",)
    version = 1
    resources = Resources(cpus=1, memory_mb=300)
    packages = ("jinja2",)

    @classmethod
    def from_corpus_settings(cls, settings: Any) -> "PromptsStage":
        return cls(PromptsSettings.from_corpus(settings))

    def run_corpus(self, corpus, sessions: list[str], *, force: bool = False,
                   on_event: EventSink | None = None) -> tuple[list[PromptItem], BatchSummary]:
        """(the rendered items, the summary); `force` changes nothing: prompts are always rendered."""
        return build_prompts(corpus, select(self.settings), self.settings.targets, sessions, on_event, self.name)
