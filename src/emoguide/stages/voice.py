"""Stage `voice`: voice valence/arousal/dominance per utterance (docs/voice.md).

Reads the utterance rows (times, speakers) and `audio.wav`; writes the `voice_*` columns. It does
not read roles: `emoguide roles --set ...` never reruns the voice model. The backend (`prosody`,
the offline default, or `audeering`) is built and loaded once per worker in `setup()`; torch's
threads are capped to the worker's share (`emoguide.threads`). A backend that fails to load
fails every session that needs it, with the load error, without retrying per session.

stages.json gets the backend id and versions, the counts of null values per reason and
(prosody) the speaker baselines.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from emoguide.affect.voice_stage import MIN_DURATION_S
from emoguide.corpus.schema import channel_columns
from emoguide.pipeline.stage import NotApplicable, Resources, Result, SessionView, Stage

SILENCE_DBFS = -50.0  # = emoguide.affect.voice.SILENCE_DBFS (tests check they agree)


class VoiceSettings(BaseModel):
    """`[voice]` in corpus.toml."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field("prosody", description="prosody (offline default: arousal only, approximate) | audeering | none")
    model_path: str | None = Field(None, description="local folder of the audeering wav2vec2 model")
    device: str | None = Field(None, description="audeering: torch device (cpu, cuda); default: cuda if available")
    min_duration_s: float = Field(MIN_DURATION_S, gt=0, description="shorter utterances stay null")
    silence_dbfs: float = Field(SILENCE_DBFS, description="utterances with no 25 ms frame above this level stay null")


class VoiceStage(Stage[VoiceSettings]):
    name = "voice"
    help = "Voice valence/arousal/dominance per utterance (prosody offline, or audeering's model)."
    Settings = VoiceSettings
    reads = ("utterances", "audio")
    writes = ("utterances:voice",)
    columns: ClassVar = {"utterances:voice": tuple(channel_columns("voice"))}
    version = 1
    resources = Resources(cpus=1, memory_mb=300)
    packages = ("numpy",)

    def __init__(self, settings: VoiceSettings | None = None):
        super().__init__(settings)
        if self.settings.backend == "audeering":
            gpus = 1.0 if (self.settings.device or "").startswith("cuda") else 0.0
            self.resources = Resources(cpus=1, gpus=gpus, memory_mb=2500)
            self.packages = ("numpy", "torch", "transformers")
        self.backend: Any = None  # built in setup(), or set on the instance by a test (serial only)
        self._load_error: Exception | None = None

    def _build(self):
        from emoguide.affect.voice import get_voice_affect

        kw: dict[str, Any] = {}
        if self.settings.device is not None:
            kw["device"] = self.settings.device
        return get_voice_affect(self.settings.backend, model_path=self.settings.model_path, **kw)

    def identity(self) -> dict[str, Any]:
        """The backend's own settings and the digests of its model files (computed in the parent;
        building a backend is cheap, loading it is not)."""
        if self.settings.backend == "none":
            return {}
        from emoguide.corpus.stages import file_digest

        try:
            be = self.backend if self.backend is not None else self._build()
            return {"backend": be.settings(), "models": {p.name: file_digest(p) for p in be.model_files()}}
        except Exception as exc:  # reported by setup() for every session; the plan goes on
            return {"error": f"{type(exc).__name__}: {exc}"}

    def inputs(self, session: SessionView) -> list[Path]:
        p = session.file("audio")
        return [p] if p.exists() else []

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if state.get("backend") is not None and getattr(state["backend"], "loaded", False):
            state["backend"] = None  # a loaded model is never pickled; the worker loads its own
        state["_load_error"] = None
        return state

    def setup(self) -> None:
        if self.settings.backend == "none":
            return
        try:
            if self.backend is None:
                self.backend = self._build()
            self.backend.load()
        except Exception as exc:  # remembered: every session fails with it, none retries the load
            self._load_error = exc
            return
        from emoguide.threads import apply_torch

        apply_torch()

    def run(self, session: SessionView) -> Result:
        from emoguide.affect.voice_stage import WavReader, apply_estimates, estimate_utterances

        s = self.settings
        if s.backend == "none":
            raise NotApplicable("voice backend none")
        audio = session.file("audio")
        if not audio.exists():
            src = session.source()
            if src.get("kind", "media") != "media" or (src and src.get("format")):
                raise NotApplicable("no audio in this session (it came from a transcript)")
            if src.get("kind") == "media" and src.get("audio") is None:
                raise NotApplicable("no audio in this session (its media file has no audio track)")
            raise NotApplicable(f"no {audio.name} (run ingest first)")
        utts = session.utterances()
        if not len(utts):
            raise NotApplicable("no utterances")
        if self.backend is None or not getattr(self.backend, "loaded", True):
            if self._load_error is None:
                self.setup()
        if self._load_error is not None:
            raise self._load_error
        be = self.backend
        res = Result()
        with WavReader(audio) as reader:
            if reader.sr != be.sample_rate:
                res.warn(f"{audio.name} is {reader.sr} Hz; resampled to {be.sample_rate} Hz for the backend")
            estimates = estimate_utterances(
                utts, reader, be, min_duration_s=s.min_duration_s, silence_dbfs=s.silence_dbfs
            )
            duration = reader.duration
        new = apply_estimates(utts, estimates, be.id)
        reasons = Counter(e.reason or "unknown" for e in estimates if e.empty)
        n_values = sum(not e.empty for e in estimates)
        res.backends["voice"] = {"id": be.id, **be.versions()}
        res.extra.update(
            {
                "n_utterances": len(estimates),
                "n_with_values": n_values,
                "null_reasons": dict(sorted(reasons.items())),
                "dimensions": list(be.dimensions),
                "audio_seconds": round(duration, 3),
                **be.last_report(),
            }
        )
        if n_values == 0:
            res.warn("no utterance had a usable voice estimate")
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
        res.summary = f"{n_values}/{len(estimates)} utterances with voice values" + (f" (null: {detail})" if detail else "")
        res.tables["utterances:voice"] = new[["index", *self.columns["utterances:voice"]]]
        return res
