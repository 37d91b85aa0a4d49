"""Voice affect backends: one interface, a registry by name (docs/voice.md).

`VoiceAffect.predict(audio, sr)` takes one utterance's samples (float32 mono, any rate the backend
accepts; emoguide's audio is 16 kHz) and returns a `VoiceEstimate`: valence, arousal and dominance
on [-1, 1], each None when the backend has no such output (never 0), and the number of windows or
frames averaged.

Backends
- `prosody` (offline default, `prosody.py`): arousal from loudness, pitch level and variability
  and speaking rate, each relative to the speaker's own baseline in the session. No valence, no
  dominance. An approximation, and its source id says so.
- `audeering` (`audeering.py`): the paper's model, audeering/wav2vec2-large-robust-12-ft-emotion-
  msp-dim (arousal, dominance, valence), loaded from a local directory; weights are never
  downloaded unless the caller allows it explicitly.

Some estimates are only meaningful against a baseline (the prosodic one compares a speaker with
themselves), so besides `predict` there are two passes: `measure(audio, sr)` per clip (streamed:
one utterance in memory at a time) and `finish(measures, groups)` over all of a session's clips,
with the speaker as the group; `predict_many(clips, sr, groups)` runs both. For a backend without
a baseline `measure` is `predict` and `finish` returns the estimates unchanged.

`load()` is separate from `__init__`: building a backend to read its id or settings for a stage
fingerprint costs nothing.
"""

from __future__ import annotations

from emoguide.backends import LazyModel

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from emoguide.errors import EmoguideError


class VoiceModelError(EmoguideError):
    """A voice model's weights are missing or unusable; says where emoguide looked."""


@dataclass(frozen=True)
class VoiceEstimate:
    """One utterance's voice affect. Values on [-1, 1]; None = unavailable (never 0)."""

    valence: float | None = None
    arousal: float | None = None
    dominance: float | None = None
    label: str | None = None
    n_windows: int = 0
    #: why the values are null, when they are (e.g. "too short", "silent"); None when they are not
    reason: str | None = None

    @property
    def empty(self) -> bool:
        return self.valence is None and self.arousal is None and self.dominance is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unavailable(reason: str, n_windows: int = 0) -> VoiceEstimate:
    return VoiceEstimate(n_windows=n_windows, reason=reason)


def clip_unit(v: float | None) -> float | None:
    """Clamp to [-1, 1]; None/NaN/inf -> None."""
    if v is None:
        return None
    v = float(v)
    if not np.isfinite(v):
        return None
    return min(1.0, max(-1.0, v))


#: a clip whose loudest 25 ms frame is below this level (dB re full scale) is treated as silent
SILENCE_DBFS = -50.0


def peak_frame_dbfs(x: np.ndarray, frame: int = 400, hop: int = 160) -> float:
    """The level of the loudest `frame`-sample frame, in dB re full scale (-inf for digital silence)."""
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        return float("-inf")
    if x.size < frame:
        ms = float(np.mean(np.square(x, dtype=np.float64)))
    else:
        c = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
        starts = np.arange(0, x.size - frame + 1, hop)
        ms = float(np.max((c[starts + frame] - c[starts]) / frame))
    return float(10.0 * np.log10(ms)) if ms > 0 else float("-inf")


def is_silent(x: np.ndarray, floor_dbfs: float = SILENCE_DBFS) -> bool:
    return peak_frame_dbfs(x) < floor_dbfs


def as_mono_float32(audio: Any) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:  # (n, channels) or (channels, n): average the short axis
        x = x.mean(axis=1 if x.shape[1] <= x.shape[0] else 0)
    if x.ndim != 1:
        raise ValueError("audio must be a 1-D float array of mono samples")
    return x


def version_of(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


class VoiceAffect(LazyModel, ABC):
    """One voice-affect model. Build cheaply, `load()` before `predict()` (predict loads if needed)."""

    name: str = ""
    #: dimensions this backend can produce (the others are always None)
    dimensions: tuple[str, ...] = ()
    #: whether the values are an approximation (recorded in the source id too)
    approximate: bool = False
    #: the sample rate the backend works at; other rates are resampled by `resample`
    sample_rate: int = 16000

    @property
    @abstractmethod
    def id(self) -> str:
        """Backend id recorded in `voice_source` and stages.json."""



    @abstractmethod
    def _predict(self, audio: np.ndarray) -> VoiceEstimate:
        """One clip at `self.sample_rate`, already mono float32."""

    def predict(self, audio: Any, sr: int) -> VoiceEstimate:
        self.load()
        x = resample(as_mono_float32(audio), int(sr), self.sample_rate)
        return self._predict(x)

    # Two passes, so a stage can stream utterances through `measure` (one in memory at a time) and
    # let baseline-relative backends compare each utterance with the others in `finish`. For a
    # backend without a baseline, `measure` is `predict` and `finish` returns the estimates.

    def measure(self, audio: Any, sr: int) -> Any:
        """Pass 1 on one clip: an estimate, or whatever `finish` needs (e.g. prosodic features)."""
        return self.predict(audio, sr)

    def finish(self, measures: Sequence[Any], groups: Sequence[Hashable] | None = None) -> list[VoiceEstimate]:
        """Pass 2: the estimates for all measured clips; `groups` (e.g. speakers) are one per clip."""
        if groups is not None and len(groups) != len(measures):
            raise ValueError("groups must have one entry per clip")
        return list(measures)

    def predict_many(
        self, clips: Sequence[Any], sr: int, groups: Sequence[Hashable] | None = None
    ) -> list[VoiceEstimate]:
        """Estimates for several clips (e.g. one session's utterances, `groups` = speakers)."""
        if groups is not None and len(groups) != len(clips):
            raise ValueError("groups must have one entry per clip")
        self.load()
        return self.finish([self.measure(c, sr) for c in clips], groups)

    def last_report(self) -> dict[str, Any]:
        """Details of the last `finish` worth recording in stages.json (e.g. speaker baselines)."""
        return {}

    def settings(self) -> dict[str, Any]:
        """What identifies this backend's results (for the stage fingerprint)."""
        return {"backend": self.name, "id": self.id}

    def versions(self) -> dict[str, str]:
        return {"numpy": version_of("numpy")}

    def model_files(self) -> list[Path]:
        """User weight/config files the results depend on (hashed into the stage fingerprint)."""
        return []


def resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Band-limited resampling by FFT (numpy only); a no-op at the same rate."""
    if sr == target or x.size == 0:
        return x.astype(np.float32, copy=False)
    if sr <= 0 or target <= 0:
        raise ValueError("sample rates must be positive")
    n_out = int(round(x.size * target / sr))
    if n_out <= 0:
        return np.zeros(0, dtype=np.float32)
    spec = np.fft.rfft(x.astype(np.float64))
    n_bins = n_out // 2 + 1
    if n_bins <= spec.size:
        spec = spec[:n_bins]
    else:
        spec = np.concatenate([spec, np.zeros(n_bins - spec.size, dtype=spec.dtype)])
    y = np.fft.irfft(spec, n=n_out) * (n_out / x.size)
    return y.astype(np.float32)


# --------------------------------------------------------------------------- registry

BackendFactory = Callable[..., VoiceAffect]
REGISTRY: dict[str, BackendFactory] = {}
ALIASES: dict[str, str] = {}


def register(name: str, *aliases: str) -> Callable[[BackendFactory], BackendFactory]:
    def deco(factory: BackendFactory) -> BackendFactory:
        REGISTRY[name] = factory
        for a in aliases:
            ALIASES[a] = name
        return factory

    return deco


def _ensure_builtin() -> None:
    # The built-in backends register themselves on import; imported here (not at module top)
    # so that voice.py has no import cycle with them and audeering's torch stays lazy.
    from emoguide.affect import audeering, prosody  # noqa: F401


def available_voice_backends() -> list[str]:
    _ensure_builtin()
    return sorted(REGISTRY)


def get_voice_affect(name: str, model_path: str | Path | None = None, **kwargs: Any) -> VoiceAffect:
    """Build (not load) a voice backend by registry name: `prosody` or `audeering`."""
    _ensure_builtin()
    key = ALIASES.get(name, name)
    if key not in REGISTRY:
        raise ValueError(f"unknown voice backend {name!r}; known: {', '.join(sorted(REGISTRY))}")
    if model_path is not None:
        kwargs["model_path"] = model_path
    return REGISTRY[key](**kwargs)
