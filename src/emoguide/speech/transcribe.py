"""Corpus-free pieces of the transcribe stages (asr -> diarize -> utterances).

The stages themselves live in `emoguide.stages.asr`, `.diarize` and `.utterances`
(docs/architecture.md); they read `sessions/<id>/audio.wav` (16 kHz mono 16-bit, written by media
ingest) and produce

- `words.parquet`         stage "asr":        start, end, text, probability (one row per word)
- `diarization.parquet`   stage "diarize":    speaker, start, end (one row per segment)
- `utterances.parquet`    stage "utterances": speaker turns (role "unknown": the roles stage names
  therapist and patient), all schema columns, plus `n_words`.

This module holds what they share and what needs no corpus: building the backends that
`[transcribe]` of corpus.toml names, turning words and segments into the base utterance table,
and telling whether a session's utterance table was imported from a transcript file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from emoguide.corpus.atomic import read_parquet
from emoguide.corpus import schema
from emoguide.speech.asr import ASRBackend, WhisperASR, words_from_frame
from emoguide.speech.diarize import DiarizationBackend, make_diarizer, segments_from_frame
from emoguide.speech.turns import words_to_utterances

#: Bump when words_to_utterances changes behaviour, so old utterance tables are rebuilt.
TURNS_VERSION = 3  # 2: utterances also end at a sentence end followed by a pause; 3: never a sentence piece under 0.5 s


def make_asr_backend(settings: Any) -> ASRBackend:
    """The ASR backend `settings` names (a TranscribeSettings or the asr stage's settings:
    anything with asr_model, compute_type, beam_size, vad_filter, language). Not loaded."""
    return WhisperASR(
        model=settings.asr_model,
        compute_type=settings.compute_type,
        beam_size=settings.beam_size,
        vad_filter=settings.vad_filter,
        language=settings.language,
    )


def make_diarization_backend(settings: Any) -> DiarizationBackend:
    """The diarizer `settings` names (diarizer, num_speakers, expected_speakers). Not loaded."""
    return make_diarizer(
        settings.diarizer,
        num_speakers=settings.num_speakers,
        expected_speakers=settings.expected_speakers,
    )


def imported_transcript(source: dict[str, Any], utterances_record: dict[str, Any], utterances_path: Path) -> bool:
    """Whether the session's utterance table came from a transcript file, not from speech.

    - a transcript-only session (source.json's kind "transcript"), or a media session paired
      with a transcript (source.json's "transcript"): imported;
    - otherwise, when the utterances stage wrote the table (a finished record that is not a
      "not applicable" skip): not imported;
    - otherwise an utterance table with rows is an import (written by hand or by an older
      version without source.json).
    """
    if source.get("transcript") or source.get("kind") == "transcript":
        return True
    if utterances_record.get("status") == "done" and not utterances_record.get("not_applicable"):
        return False
    try:
        return len(read_parquet(utterances_path, columns=["index"])) > 0
    except (OSError, ValueError, KeyError):
        return False


def utterance_table(words: pd.DataFrame, diarization: pd.DataFrame, max_pause_s: float) -> pd.DataFrame:
    """Words (words.parquet) and speaker segments (diarization.parquet) -> the base utterance
    table: speaker turns with role "unknown" and `n_words`, or the empty schema table."""
    turns = words_to_utterances(
        words_from_frame(words), segments_from_frame(diarization), max_pause_s=max_pause_s
    )
    if len(turns) == 0:
        return schema.empty_utterances()
    table = turns.copy()
    table["role"] = "unknown"
    return table
