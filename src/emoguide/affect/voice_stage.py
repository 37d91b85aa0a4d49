"""Stage `voice`: voice valence/arousal/dominance per utterance (docs/voice.md; utterance columns voice_*).

Reads `sessions/<id>/audio.wav` (16 kHz mono 16-bit, sample i at media time i / 16000) and the
utterance table. For each utterance the samples in [start, end] go through the voice backend
(`voice.py` registry: `prosody`, the offline default, or `audeering`); baseline-relative backends
see all utterances of the session at once, grouped by speaker. Written to the utterance table:

- `voice_valence, voice_arousal, voice_dominance`: [-1, 1], null where the backend has no such
  output or the utterance could not be measured (never 0);
- `voice_n`: windows (audeering) or active 10 ms frames (prosody) averaged, null with the values;
- `voice_source`: the backend id on every row (it looked, even where it found nothing);
- `voice_label, voice_probs`: null (no categorical speech model exists offline, docs/voice.md).

Utterances shorter than `min_duration_s` (0.3 s), silent ones (no 25 ms frame above -50 dBFS),
ones outside the audio and ones without times stay null; the counts per reason go to stages.json
with the backend id, versions, settings and (prosody) the speaker baselines.
"""

from __future__ import annotations

import hashlib
import math
import wave
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from emoguide.affect.voice import SILENCE_DBFS, VoiceAffect, VoiceEstimate, get_voice_affect, is_silent, unavailable
from emoguide.corpus.layout import Corpus, Session
from emoguide.corpus.stages import file_digest
from emoguide.errors import EmoguideError, InputError
from emoguide.runner.summary import BatchSummary, Outcome

STAGE = "voice"
STAGE_VERSION = 1
AUDIO_NAME = "audio.wav"
UPSTREAM = ("media", "utterances", "roles")
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


# --------------------------------------------------------------------------- per session


def _turns_hash(df: pd.DataFrame) -> str:
    cols = [c for c in ("index", "start", "end", "speaker") if c in df.columns]
    if not len(df):
        return "empty"
    h = pd.util.hash_pandas_object(df[cols].astype(str), index=False).to_numpy()
    return hashlib.sha256(h.tobytes() + ",".join(cols).encode()).hexdigest()[:16]


def _settings(backend: VoiceAffect, min_duration_s: float, silence_dbfs: float) -> dict[str, Any]:
    return {
        "version": STAGE_VERSION,
        "backend": backend.settings(),
        "min_duration_s": float(min_duration_s),
        "silence_dbfs": float(silence_dbfs),
    }


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


def voice_session(
    session: Session,
    backend: VoiceAffect,
    *,
    force: bool = False,
    min_duration_s: float = MIN_DURATION_S,
    silence_dbfs: float = SILENCE_DBFS,
    model_digests: dict[str, str] | None = None,
    load: Callable[[], VoiceAffect] | None = None,
) -> tuple[str, str]:
    """Run the stage on one session; return (status, reason)."""
    audio = session.path / AUDIO_NAME
    if not audio.exists():
        return "skipped", f"no {AUDIO_NAME} (run ingest first)"
    utts = session.read_utterances()
    if not len(utts):
        return "skipped", "no utterances"
    settings = _settings(backend, min_duration_s, silence_dbfs)
    run = session.stage(STAGE, settings, upstream=UPSTREAM, inputs=[audio], outputs=[session.utterances_path])
    run.inputs["utterances.parquet#turns"] = _turns_hash(utts)
    if model_digests is None:
        model_digests = {f"model:{p.name}": file_digest(p) for p in backend.model_files()}
    run.inputs.update(model_digests)
    if not force and run.current:
        return "skipped", "up to date"
    with run:
        be = load() if load is not None else backend.load()
        with WavReader(audio) as reader:
            if reader.sr != be.sample_rate:
                run.warn(f"{AUDIO_NAME} is {reader.sr} Hz; resampled to {be.sample_rate} Hz for the backend")
            estimates = estimate_utterances(
                utts, reader, be, min_duration_s=min_duration_s, silence_dbfs=silence_dbfs
            )
            duration = reader.duration
        new = apply_estimates(utts, estimates, be.id)
        session.write_utterances(new)
        reasons = Counter(e.reason or "unknown" for e in estimates if e.empty)
        n_values = sum(not e.empty for e in estimates)
        run.backends["voice"] = {"id": be.id, **be.versions()}
        run.extra.update(
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
            run.warn("no utterance had a usable voice estimate")
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
    return "done", f"{n_values}/{len(estimates)} utterances with voice values" + (f" (null: {detail})" if detail else "")


def run_voice(
    corpus: Corpus,
    sessions: Iterable[str] | None = None,
    *,
    backend: str | VoiceAffect = "prosody",
    model_path: str | Path | None = None,
    force: bool = False,
    on_progress: Callable[[Outcome], None] | None = None,
    min_duration_s: float = MIN_DURATION_S,
    silence_dbfs: float = SILENCE_DBFS,
) -> BatchSummary:
    """The `voice` stage over a corpus. `backend` is a registry name (`prosody`, `audeering`) or a
    built `VoiceAffect`; `model_path` is the audeering model directory. The model loads once, on
    the first session that needs it (a load failure is reported for every session that needed it,
    without retrying). One session's failure is recorded and the rest go on.
    """
    summary = BatchSummary(STAGE)
    be = backend if isinstance(backend, VoiceAffect) else get_voice_affect(backend, model_path=model_path)
    digests = {f"model:{p.name}": file_digest(p) for p in be.model_files()}  # once per batch
    load_error: list[Exception] = []

    def load() -> VoiceAffect:
        if load_error:
            raise load_error[0]
        try:
            return be.load()
        except Exception as exc:  # remembered so the next session does not retry a broken load
            load_error.append(exc)
            raise

    for session in corpus.sessions(sessions):
        try:
            status, reason = voice_session(
                session,
                be,
                force=force,
                min_duration_s=min_duration_s,
                silence_dbfs=silence_dbfs,
                model_digests=digests,
                load=load,
            )
        except (EmoguideError, ValueError, KeyError, OSError, RuntimeError) as exc:
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
        outcome = summary.add(session.id, STAGE, status, reason)
        if on_progress is not None:
            on_progress(outcome)
    return summary
