"""Voice affect per utterance of one session's audio: the library half of stage `voice`
(docs/voice.md; the stage itself is `emoguide.stages.voice`).

`WavReader` gives random access to `audio.wav` (16 kHz mono 16-bit, sample i at media time
i / 16000). `estimate_utterances` sends each utterance's samples in [start, end] through a voice
backend (`voice.py` registry: `prosody`, the offline default, or `audeering`); baseline-relative
backends see all utterances of the session at once, grouped by speaker. `apply_estimates` turns
the estimates into the utterance columns:

- `voice_valence, voice_arousal, voice_dominance`: [-1, 1], null where the backend has no such
  output or the utterance could not be measured (never 0);
- `voice_n`: windows (audeering) or active 10 ms frames (prosody) averaged, null with the values;
- `voice_source`: the backend id on every row (it looked, even where it found nothing);
- `voice_label, voice_probs`: null (no categorical speech model exists offline, docs/voice.md).

Utterances shorter than `min_duration_s` (0.3 s), silent ones (no 25 ms frame above -50 dBFS),
ones outside the audio and ones without times stay null, each with its reason.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoguide.affect.voice import SILENCE_DBFS, VoiceAffect, VoiceEstimate, is_silent, unavailable
from emoguide.errors import InputError

MIN_DURATION_S = 0.3
VALUE_COLUMNS = ("voice_valence", "voice_arousal", "voice_dominance")


# --------------------------------------------------------------------------- audio


class WavReader:
    """Random access to segments of a PCM WAV file, one segment in memory at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._wf = wave.open(str(self.path), "rb")
        except (wave.Error, EOFError) as exc:
            raise InputError(self.path, f"not a PCM WAV file ({exc})") from None
        self.sr = self._wf.getframerate()
        self.channels = self._wf.getnchannels()
        self.width = self._wf.getsampwidth()
        self.n = self._wf.getnframes()
        if self.width != 2:
            self._wf.close()
            raise InputError(
                self.path,
                f"audio must be 16-bit PCM, found {self.width * 8}-bit "
                "(convert: ffmpeg -i IN -ac 1 -ar 16000 -c:a pcm_s16le audio.wav)",
            )

    @property
    def duration(self) -> float:
        return self.n / float(self.sr)

    def segment(self, start: float, end: float) -> np.ndarray:
        """float32 mono samples for media times [start, end) (clipped to the file)."""
        a = min(max(0, int(round(start * self.sr))), self.n)
        b = min(max(a, int(round(end * self.sr))), self.n)
        if b <= a:
            return np.zeros(0, dtype=np.float32)
        self._wf.setpos(a)
        raw = self._wf.readframes(b - a)
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        if self.channels > 1:
            x = x.reshape(-1, self.channels).mean(axis=1)
        return x

    def close(self) -> None:
        self._wf.close()

    def __enter__(self) -> "WavReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- per utterance


def estimate_utterances(
    utterances: pd.DataFrame,
    reader: WavReader,
    backend: VoiceAffect,
    *,
    min_duration_s: float = MIN_DURATION_S,
    silence_dbfs: float = SILENCE_DBFS,
) -> list[VoiceEstimate]:
    """One estimate per utterance row (in row order); unusable rows get an empty estimate with a reason."""
    n = len(utterances)
    out: list[VoiceEstimate | None] = [None] * n
    measures: list[Any] = []
    groups: list[str] = []
    rows: list[int] = []
    starts = utterances["start"].to_numpy(dtype=float, na_value=np.nan)
    ends = utterances["end"].to_numpy(dtype=float, na_value=np.nan)
    speakers = utterances["speaker"].astype("string")
    for i in range(n):
        s, e = starts[i], ends[i]
        if math.isnan(s) or math.isnan(e):
            out[i] = unavailable("no times")
            continue
        if e - s < min_duration_s:
            out[i] = unavailable("too short")
            continue
        if s >= reader.duration:
            out[i] = unavailable("outside the audio")
            continue
        x = reader.segment(s, e)
        if x.size < int(min_duration_s * reader.sr):
            out[i] = unavailable("too short")
            continue
        if is_silent(x, silence_dbfs):
            out[i] = unavailable("silent")
            continue
        measures.append(backend.measure(x, reader.sr))
        sp = speakers.iloc[i]
        groups.append("" if pd.isna(sp) else str(sp))
        rows.append(i)
    for i, est in zip(rows, backend.finish(measures, groups)):
        out[i] = est
    return [e if e is not None else unavailable("not measured") for e in out]


def apply_estimates(utterances: pd.DataFrame, estimates: list[VoiceEstimate], source: str) -> pd.DataFrame:
    out = utterances.copy()
    idx = out.index

    def col(name: str) -> pd.Series:
        vals = [getattr(e, name) for e in estimates]
        return pd.Series([np.nan if v is None else float(v) for v in vals], index=idx, dtype="float64")

    out["voice_valence"] = col("valence")
    out["voice_arousal"] = col("arousal")
    out["voice_dominance"] = col("dominance")
    out["voice_label"] = pd.Series([e.label for e in estimates], index=idx, dtype="string")
    out["voice_probs"] = pd.Series([pd.NA] * len(out), index=idx, dtype="string")
    out["voice_n"] = pd.Series(
        [pd.NA if e.empty else int(e.n_windows) for e in estimates], index=idx, dtype="Int64"
    )
    out["voice_source"] = pd.Series([source] * len(out), index=idx, dtype="string")
    return out
