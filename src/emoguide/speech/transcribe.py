"""The transcribe stages of a session: asr -> diarize -> utterances.

Reads `sessions/<id>/audio.wav` (16 kHz mono 16-bit, written by the media stage) and writes

- `words.parquet`         stage "asr":     start, end, text, probability (one row per word)
- `diarization.parquet`   stage "diarize": speaker, start, end (one row per segment)
- `utterances.parquet`    stage "utterances": speaker turns (role "unknown": the roles stage
  names therapist and patient), all schema columns, plus `n_words`.

Each stage records its fingerprint (settings, upstream fingerprints, audio digest) in
`stages.json`, so a rerun skips what has not changed; models are loaded once per batch and only
when some session needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from emoguide.config import TranscribeSettings
from emoguide.corpus import Corpus, Session, schema
from emoguide.corpus.atomic import write_parquet
from emoguide.errors import EmoguideError
from emoguide.runner.summary import BatchSummary, Outcome
from emoguide.speech.asr import ASRBackend, WhisperASR, words_from_frame
from emoguide.speech.diarize import (
    DiarizationBackend,
    check_wav,
    make_diarizer,
    segments_from_frame,
    segments_to_frame,
)
from emoguide.speech.turns import words_to_utterances

STAGE = "transcribe"
AUDIO_NAME = "audio.wav"
WORDS_NAME = "words.parquet"
DIARIZATION_NAME = "diarization.parquet"
#: The stage that writes audio.wav (emoguide.media); hashed as upstream when it is recorded.
MEDIA_STAGE = "media"
#: Bump when words_to_utterances changes behaviour, so old utterance tables are rebuilt.
TURNS_VERSION = 1


def audio_path(session: Session) -> Path:
    return session.path / AUDIO_NAME


def words_path(session: Session) -> Path:
    return session.path / WORDS_NAME


def diarization_path(session: Session) -> Path:
    return session.path / DIARIZATION_NAME


def make_asr_backend(settings: TranscribeSettings) -> ASRBackend:
    return WhisperASR(
        model=settings.asr_model,
        compute_type=settings.compute_type,
        beam_size=settings.beam_size,
        vad_filter=settings.vad_filter,
        language=settings.language,
    )


def make_diarization_backend(settings: TranscribeSettings) -> DiarizationBackend:
    return make_diarizer(
        settings.diarizer,
        num_speakers=settings.num_speakers,
        expected_speakers=settings.expected_speakers,
    )


class _Lazy:
    """Build and load a backend on first use, once per batch."""

    def __init__(self, factory: Callable[[], Any], given: Any = None):
        self._factory = factory
        self._obj = given

    def peek(self) -> Any:
        if self._obj is None:
            self._obj = self._factory()
        return self._obj

    def get(self) -> Any:
        return self.peek().load()


def _imported_transcript(session: Session) -> bool:
    """The utterance table holds rows that the utterances stage did not write (an import)."""
    if session.stages.get("utterances") is not None:
        return False
    try:
        return len(pd.read_parquet(session.utterances_path, columns=["index"])) > 0
    except (OSError, ValueError, KeyError):
        return False


def transcribe_session(
    session: Session,
    *,
    settings: TranscribeSettings,
    asr: ASRBackend | _Lazy,
    diarizer: DiarizationBackend | _Lazy,
    force: bool = False,
) -> tuple[str, str]:
    """Run the three stages on one session; return (status, reason)."""
    asr_l = asr if isinstance(asr, _Lazy) else _Lazy(lambda: asr, asr)
    dia_l = diarizer if isinstance(diarizer, _Lazy) else _Lazy(lambda: diarizer, diarizer)
    audio = audio_path(session)
    if not audio.exists():
        return "skipped", "no audio"
    if not force and _imported_transcript(session):
        return "skipped", "utterances came from an imported transcript (force=True replaces them)"
    ran: list[str] = []
    warnings: list[str] = []
    media_up = [MEDIA_STAGE] if session.stages.get(MEDIA_STAGE) else []

    # ---- asr
    asr_backend: ASRBackend = asr_l.peek()
    run = session.stage(
        "asr", settings=asr_backend.settings(), upstream=media_up, inputs=[audio], outputs=[words_path(session)]
    )
    if force or not run.current:
        with run:
            # Checked inside the stage, so an unusable audio.wav is recorded as a failed stage
            # (with its error) in stages.json, not only in the batch summary.
            duration = check_wav(audio)
            backend = asr_l.get()
            result = backend.transcribe(audio)
            run.backends["asr"] = {"id": backend.id, **backend.versions()}
            run.extra.update(
                {
                    "language": result.language,
                    "language_probability": result.language_probability,
                    "duration": result.duration if result.duration is not None else duration,
                    "n_words": len(result.words),
                }
            )
            if not result.words:
                run.warn("no speech recognised")
            write_parquet(words_path(session), result.words_frame())
        warnings += run.warnings
        ran.append("asr")

    # ---- diarize
    dia_backend: DiarizationBackend = dia_l.peek()
    run = session.stage(
        "diarize",
        settings=dia_backend.settings(),
        upstream=media_up,
        inputs=[audio],
        outputs=[diarization_path(session)],
    )
    if force or not run.current:
        with run:
            backend = dia_l.get()
            segments = backend.diarize(audio)
            run.backends["diarization"] = {"id": backend.id, **backend.versions()}
            speakers = sorted({s.speaker for s in segments})
            run.extra.update({"n_speakers": len(speakers), "n_segments": len(segments)})
            for note in getattr(backend, "notes", []) or []:
                run.warn(note)
            write_parquet(diarization_path(session), segments_to_frame(segments))
        warnings += run.warnings
        ran.append("diarize")

    # ---- utterances
    run = session.stage(
        "utterances",
        settings={"max_pause_s": settings.max_pause_s, "turns_version": TURNS_VERSION},
        upstream=["asr", "diarize"],
        outputs=[session.utterances_path],
    )
    if force or not run.current:
        with run:
            words = words_from_frame(pd.read_parquet(words_path(session)))
            segments = segments_from_frame(pd.read_parquet(diarization_path(session)))
            turns = words_to_utterances(words, segments, max_pause_s=settings.max_pause_s)
            asr_rec = session.stages.get("asr") or {}
            dia_rec = session.stages.get("diarize") or {}
            run.backends.update(
                {"asr": asr_rec.get("backends", {}).get("asr"), "diarization": dia_rec.get("backends", {}).get("diarization")}
            )
            run.extra.update(
                {
                    "language": asr_rec.get("language"),
                    "n_utterances": len(turns),
                    "n_speakers": int(turns["speaker"].nunique()) if len(turns) else 0,
                }
            )
            if len(turns) == 0:
                run.warn("no speech: empty utterance table")
            table = turns.copy()
            table["role"] = "unknown"
            table["session_id"] = session.id
            session.write_utterances(table if len(table) else schema.empty_utterances())
        warnings += run.warnings
        ran.append("utterances")

    if not ran:
        return "skipped", "unchanged"
    reason = f"ran {', '.join(ran)}"
    if warnings:
        reason += "; " + "; ".join(dict.fromkeys(warnings))
    return "done", reason


def transcribe_sessions(
    corpus: Corpus,
    sessions: Iterable[str] | None = None,
    *,
    settings: TranscribeSettings | None = None,
    force: bool = False,
    on_progress: Callable[[Outcome], None] | None = None,
    asr: ASRBackend | None = None,
    diarizer: DiarizationBackend | None = None,
) -> BatchSummary:
    """ASR, diarization and speaker turns for each session that has `audio.wav`.

    `settings` defaults to the corpus's `[transcribe]` section. `asr`/`diarizer` replace the
    backends the settings name (tests, or a caller that holds loaded models). One session's
    failure is recorded and the batch goes on. `on_progress` is called with each Outcome.
    """
    settings = settings or corpus.settings.transcribe
    summary = BatchSummary("transcribe")
    asr_l = _Lazy(lambda: make_asr_backend(settings), asr)
    dia_l = _Lazy(lambda: make_diarization_backend(settings), diarizer)
    for session in corpus.sessions(sessions):
        try:
            status, reason = transcribe_session(session, settings=settings, asr=asr_l, diarizer=dia_l, force=force)
        except (EmoguideError, ValueError, KeyError, OSError, RuntimeError) as exc:
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
        outcome = summary.add(session.id, STAGE, status, reason)
        if on_progress is not None:
            on_progress(outcome)
    return summary
