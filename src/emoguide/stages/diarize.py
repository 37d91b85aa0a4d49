"""Stage `diarize`: who spoke when in `audio.wav` (senko by default; docs/transcribe.md).

Reads the session's audio and, when the asr stage has run, its words; writes
`diarization.parquet` (speaker, start, end). Its keys of `[transcribe]` are `diarizer`,
`num_speakers` and `expected_speakers`.

With words, speakers are decided per sentence piece from voice embeddings of exactly that audio
(`emoguide.speech.speakers.refine_speakers`): speaker changes land between words, and when two
speakers are expected but the diarizer returned one voice, the two-speaker hypothesis is tested
on per-sentence embeddings. stages.json records what was decided and why under `speakers`
(`two_speaker_check`: decision, reason, silhouette, ...). What the backend decided (spurious
clusters merged, no speech found) is recorded as warnings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, Field

from emoguide.pipeline.stage import Resources, Result, SessionView, Stage
from emoguide.stages.asr import check_applicable, transcribe_settings

if TYPE_CHECKING:
    from emoguide.speech.diarize import DiarizationBackend


class DiarizeSettings(BaseModel):
    """The diarization keys of `[transcribe]` in corpus.toml."""

    diarizer: str = Field("senko", description="diarization backend: senko, or none (one speaker)")
    num_speakers: Optional[int] = Field(
        None, ge=1, description="force this many speakers; None: estimate, expecting `expected_speakers`"
    )
    expected_speakers: int = Field(2, ge=1, description="speakers a session is expected to have (dyadic: 2)")


class DiarizeStage(Stage[DiarizeSettings]):
    name = "diarize"
    help = "Speaker diarization (senko, offline): who spoke when in audio.wav."
    Settings = DiarizeSettings
    reads = ("audio", "words")
    writes = ("diarization",)
    version = 2  # 2: speakers decided per sentence piece on the ASR words
    resources = Resources(cpus=1, memory_mb=1500)
    packages = ("senko", "torch")

    def __init__(self, settings: DiarizeSettings | None = None, *, backend: "DiarizationBackend | None" = None):
        """`backend`: a pre-built diarizer instead of the one the settings name (tests, or a
        caller holding a loaded model); it must pickle for the pool and Ray executors."""
        super().__init__(settings)
        self.backend = backend
        self._model: DiarizationBackend | None = None

    @classmethod
    def from_corpus_settings(cls, settings: Any) -> "DiarizeStage":
        return cls(transcribe_settings(DiarizeSettings, settings))  # type: ignore[arg-type]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None  # a loaded model stays in its process
        return state

    def _make(self) -> "DiarizationBackend":
        if self.backend is not None:
            return self.backend
        from emoguide.speech import transcribe

        return transcribe.make_diarization_backend(self.settings)

    def identity(self) -> dict[str, Any]:
        from emoguide.errors import EmoguideError

        try:
            backend = self._make()
        except EmoguideError:  # an unknown backend name: every session fails with the reason in setup()
            return {"backend": {"backend": self.settings.diarizer}}
        return {"backend": backend.settings(), "versions": backend.versions()}

    def inputs(self, session: SessionView) -> list[Path]:
        return [session.file("audio")]

    def setup(self) -> None:
        self._model = self._make().load()  # senko: torch follows emoguide.threads.cpu_threads()

    def run(self, session: SessionView) -> Result:
        from emoguide.speech.diarize import check_wav, segments_to_frame

        audio = check_applicable(session)
        check_wav(audio)
        backend = self._model if self._model is not None else self._make().load()
        segments = backend.diarize(audio)
        notes = list(getattr(backend, "notes", []) or [])
        res = Result()
        res.backends["diarization"] = {"id": backend.id, **backend.versions()}
        words_path = session.file("words")
        if segments and words_path.exists() and backend.name != "none":
            from emoguide.speech.speakers import refine_speakers

            words = session.table("words")
            ref = refine_speakers(
                words,
                segments,
                lambda spans: backend.embed(audio, spans),
                expected=self.settings.expected_speakers,
                num_speakers=self.settings.num_speakers,
            )
            notes.extend(n for n in (getattr(backend, "notes", []) or []) if n not in notes)  # from embed()
            if len({s.speaker for s in ref.segments}) > len({s.speaker for s in segments}):
                notes = [n for n in notes if not n.startswith("asked for")]  # recovered: no longer true
            segments = ref.segments
            notes.extend(ref.notes)
            res.extra["speakers"] = ref.decision
            if getattr(backend, "embed_stats", None):  # sentence embeddings reused from the diarizer's windows / computed
                res.extra["speakers"]["embeddings"] = dict(backend.embed_stats)
        elif segments and backend.name != "none":
            res.extra["speakers"] = {"method": "diarizer segments", "reason": "no words.parquet (run asr first)"}
        res.extra.update({"n_speakers": len({s.speaker for s in segments}), "n_segments": len(segments)})
        for note in notes:
            res.warn(note)
        res.tables["diarization"] = segments_to_frame(segments)
        return res
