"""Stage `asr`: words with timestamps from `audio.wav` (faster-whisper; docs/transcribe.md).

Reads the session's audio, writes `words.parquet` (start, end, text, probability). Settings come
from `[transcribe]` of corpus.toml (shared with `diarize` and `utterances`; each stage takes its
own keys, so a turns setting does not rerun the recogniser). Sessions without audio, and sessions
whose utterance table was imported from a transcript file, are not applicable.

The helpers `transcribe_settings` and `check_applicable` are shared by the three transcribe stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, Field

from emoguide.pipeline.stage import NotApplicable, Resources, Result, SessionView, Stage

if TYPE_CHECKING:
    from emoguide.speech.asr import ASRBackend


class ASRSettings(BaseModel):
    """The asr keys of `[transcribe]` in corpus.toml."""

    asr_model: str = Field(
        "tiny.en", description="tiny.en (packaged default), base, or a local CTranslate2 Whisper folder"
    )
    language: Optional[str] = Field(None, description="force a language code; None: detect")
    vad_filter: bool = Field(True, description="skip non-speech with the Silero VAD before decoding")
    beam_size: int = Field(1, ge=1, description="beam search width (1: greedy)")
    compute_type: str = Field("int8", description="CTranslate2 compute type (int8, float32, ...)")


def transcribe_settings(model: type[BaseModel], settings: Any) -> BaseModel:
    """`model` validated from the keys of corpus.toml's `[transcribe]` that it declares."""
    section = getattr(settings, "transcribe", None) if settings is not None else None
    if isinstance(section, BaseModel):
        section = section.model_dump()
    section = section or {}
    return model.model_validate({k: v for k, v in section.items() if k in model.model_fields})


def check_applicable(session: SessionView) -> Path:
    """The session's audio.wav; NotApplicable when it has none or its transcript was imported."""
    from emoguide.speech.transcribe import imported_transcript

    if imported_transcript(session.source(), session.record("utterances"), session.file("utterances")):
        raise NotApplicable("utterances came from an imported transcript: no speech stages")
    audio = session.file("audio")
    if not audio.exists():
        raise NotApplicable("no audio")
    return audio


class ASRStage(Stage[ASRSettings]):
    name = "asr"
    help = "Speech recognition with word timestamps (faster-whisper, offline) from audio.wav."
    Settings = ASRSettings
    reads = ("audio",)
    writes = ("words",)
    version = 1
    resources = Resources(cpus=1, memory_mb=1000)
    packages = ("faster-whisper", "ctranslate2")

    def __init__(self, settings: ASRSettings | None = None, *, backend: "ASRBackend | None" = None):
        """`backend`: a pre-built recogniser instead of the one the settings name (tests, or a
        caller holding a loaded model); it must pickle for the pool and Ray executors."""
        super().__init__(settings)
        self.backend = backend
        self._model: ASRBackend | None = None

    @classmethod
    def from_corpus_settings(cls, settings: Any) -> "ASRStage":
        return cls(transcribe_settings(ASRSettings, settings))  # type: ignore[arg-type]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None  # a loaded model stays in its process
        return state

    def _make(self) -> "ASRBackend":
        if self.backend is not None:
            return self.backend
        from emoguide.speech import transcribe

        return transcribe.make_asr_backend(self.settings)

    def identity(self) -> dict[str, Any]:
        backend = self._make()
        return {"backend": backend.settings(), "versions": backend.versions()}

    def inputs(self, session: SessionView) -> list[Path]:
        return [session.file("audio")]

    def setup(self) -> None:
        self._model = self._make().load()  # threads: WhisperASR follows emoguide.threads.cpu_threads()

    def run(self, session: SessionView) -> Result:
        from emoguide.speech.diarize import check_wav

        audio = check_applicable(session)
        duration = check_wav(audio)  # an unusable audio.wav fails this stage with its reason
        backend = self._model if self._model is not None else self._make().load()
        result = backend.transcribe(audio)
        res = Result()
        res.backends["asr"] = {"id": backend.id, **backend.versions()}
        res.extra.update(
            {
                "language": result.language,
                "language_probability": result.language_probability,
                "duration": result.duration if result.duration is not None else duration,
                "n_words": len(result.words),
            }
        )
        if not result.words:
            res.warn("no speech recognised")
        res.tables["words"] = result.words_frame()
        return res
