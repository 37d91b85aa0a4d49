"""Stage `utterances`: speaker turns from the words and the speaker segments (docs/transcribe.md).

Reads `words.parquet` (asr) and `diarization.parquet` (diarize) and writes the session's base
utterance table: one row per turn (cut at speaker changes, at sentence ends followed by a pause,
and at long pauses; see `emoguide.speech.turns`), role "unknown" (the roles stage names therapist and patient),
every schema column, plus `n_words`. Its key of `[transcribe]` is `max_pause_s`. A session whose
utterance table was imported from a transcript file keeps it (not applicable).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from emoguide.pipeline.stage import Resources, Result, SessionView, Stage
from emoguide.stages.asr import check_applicable, transcribe_settings


class UtterancesSettings(BaseModel):
    """The turn-segmentation key of `[transcribe]` in corpus.toml."""

    max_pause_s: float = Field(1.5, gt=0, description="split a speaker's turn at longer pauses (s)")


def _turns_version() -> int:
    from emoguide.speech.transcribe import TURNS_VERSION

    return TURNS_VERSION


class UtterancesStage(Stage[UtterancesSettings]):
    name = "utterances"
    help = "Speaker turns (the base utterance table) from the ASR words and the diarization."
    Settings = UtterancesSettings
    reads = ("words", "diarization")
    writes = ("utterances",)
    version = 3  # 2: sentence-end splits (turns version 2); 3: no sentence piece under 0.5 s
    resources = Resources(cpus=1, memory_mb=300)

    @classmethod
    def from_corpus_settings(cls, settings: Any) -> "UtterancesStage":
        return cls(transcribe_settings(UtterancesSettings, settings))  # type: ignore[arg-type]

    def identity(self) -> dict[str, Any]:
        return {"turns_version": _turns_version()}

    def run(self, session: SessionView) -> Result:
        import pandas as pd

        from emoguide.errors import InputError
        from emoguide.speech.transcribe import utterance_table

        check_applicable(session)
        frames: dict[str, pd.DataFrame] = {}
        for art in ("words", "diarization"):
            path = session.file(art)
            if not path.exists():
                raise InputError(path, f"missing: run the {'asr' if art == 'words' else 'diarize'} stage first")
            frames[art] = session.table(art)
        table = utterance_table(frames["words"], frames["diarization"], self.settings.max_pause_s)
        asr_rec, dia_rec = session.record("asr"), session.record("diarize")
        res = Result()
        res.backends.update(
            {
                "asr": (asr_rec.get("backends") or {}).get("asr"),
                "diarization": (dia_rec.get("backends") or {}).get("diarization"),
            }
        )
        res.extra.update(
            {
                "language": asr_rec.get("language"),
                "n_utterances": len(table),
                "n_speakers": int(table["speaker"].nunique()) if len(table) else 0,
            }
        )
        if len(table) == 0:
            res.warn("no speech: empty utterance table")
        res.tables["utterances"] = table
        return res
