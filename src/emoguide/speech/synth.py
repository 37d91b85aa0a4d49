"""Synthetic evaluation dialogues and the metrics to score a transcript against them.

`synthesize_dialogue` speaks each turn with a clearly different espeak-ng voice and concatenates
the turns with gaps, returning the ground truth (speaker, start, end, text). With `annomi_turns`
the words come from a real AnnoMI session, so ASR and diarization can be measured offline, with
no recordings, on dialogue of the right register. Synthetic speech is easier than real speech:
numbers measured here are an upper bound on quality, and a floor for regression tests.

Needs the `espeak-ng` program (Debian: `apt-get install -y espeak-ng`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import wave
from math import gcd
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from emoguide.errors import EmoguideError, InputError

#: Two voices that differ in timbre and pitch (espeak-ng variants: male 3, female 4).
DEFAULT_VOICES = ("en-us+m3", "en-us+f4")


# --------------------------------------------------------------------------------------- audio io


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A PCM WAV file -> (float32 mono samples in [-1, 1], sample rate)."""
    with wave.open(str(path), "rb") as wf:
        sr = wf.getframerate()
        ch = wf.getnchannels()
        width = wf.getsampwidth()
        raw = wf.readframes(wf.getnframes())
    if width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    elif width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        raise InputError(path, f"unsupported WAV sample width {width * 8} bit")
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    return x, sr


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> None:
    """float samples in [-1, 1] -> 16-bit mono PCM WAV."""
    pcm = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    pcm = np.round(pcm * 32767.0).astype("<i2")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(int(sample_rate))
        wf.writeframes(pcm.tobytes())


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (scipy) with a plain-numpy linear fallback."""
    if sr_in == sr_out:
        return x.astype(np.float32)
    try:
        from scipy.signal import resample_poly
    except ImportError:  # pragma: no cover - scipy comes with the speech dependencies
        n_out = int(round(len(x) * sr_out / sr_in))
        t = np.arange(n_out) * (sr_in / sr_out)
        return np.interp(t, np.arange(len(x)), x).astype(np.float32)
    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


# ------------------------------------------------------------------------------------- synthesis


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EmoguideError(
            "espeak-ng is not installed; synthetic dialogues need it "
            "(Debian/Ubuntu: apt-get install -y espeak-ng)"
        )
    return exe


def speak(text: str, voice: str, *, sample_rate: int = 16000, speed: int = 160) -> np.ndarray:
    """One utterance spoken by espeak-ng, as float32 mono samples at `sample_rate`."""
    with tempfile.TemporaryDirectory(prefix="emoguide-tts-") as tmp:
        out = Path(tmp) / "turn.wav"
        proc = subprocess.run(
            [_espeak(), "-v", voice, "-s", str(speed), "-w", str(out), "--", text],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not out.exists():
            raise EmoguideError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.strip()}")
        x, sr = read_wav(out)
    return resample(x, sr, sample_rate)


def _trim(x: np.ndarray, sr: int, threshold: float = 1e-3) -> np.ndarray:
    """Cut leading/trailing near-silence so that turn times in the truth are speech times."""
    idx = np.flatnonzero(np.abs(x) > threshold)
    if idx.size == 0:
        return x[:0]
    pad = int(0.02 * sr)
    return x[max(0, idx[0] - pad) : idx[-1] + 1 + pad]


def synthesize_dialogue(
    turns: Sequence[tuple[str, str]],
    out_wav: str | Path,
    voices: Sequence[str] | dict[str, str] = DEFAULT_VOICES,
    gap_s: float = 0.6,
    sample_rate: int = 16000,
    lead_s: float = 0.3,
    speed: int = 160,
) -> pd.DataFrame:
    """Speak `turns` [(speaker, text), ...] into one 16-bit mono WAV; return the truth table.

    Speakers get voices in order of first appearance (or by name when `voices` is a dict).
    The truth has one row per turn: speaker, start, end (seconds of speech, silence trimmed),
    text.
    """
    if not turns:
        raise ValueError("synthesize_dialogue: no turns")
    if isinstance(voices, dict):
        voice_of = dict(voices)
    else:
        voice_of = {}
        for spk, _ in turns:
            if spk not in voice_of:
                if len(voice_of) >= len(voices):
                    raise ValueError(
                        f"{len(voice_of) + 1} speakers but only {len(voices)} voices: pass more voices"
                    )
                voice_of[spk] = voices[len(voice_of)]
    gap = np.zeros(int(round(gap_s * sample_rate)), dtype=np.float32)
    pieces = [np.zeros(int(round(lead_s * sample_rate)), dtype=np.float32)]
    t = len(pieces[0]) / sample_rate
    rows = []
    for i, (spk, text) in enumerate(turns):
        if spk not in voice_of:
            raise ValueError(f"no voice for speaker {spk!r}")
        x = _trim(speak(text, voice_of[spk], sample_rate=sample_rate, speed=speed), sample_rate)
        start = t
        t += len(x) / sample_rate
        rows.append({"speaker": spk, "start": round(start, 3), "end": round(t, 3), "text": text})
        pieces.append(x)
        pieces.append(gap)
        t += len(gap) / sample_rate
    audio = np.concatenate(pieces)
    # Leave headroom: espeak-ng output can touch full scale.
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0.9:
        audio = audio * (0.9 / peak)
    write_wav(out_wav, audio, sample_rate)
    return pd.DataFrame(rows, columns=["speaker", "start", "end", "text"])


def silence_wav(out_wav: str | Path, seconds: float, sample_rate: int = 16000, noise: float = 0.0) -> None:
    """A silent (optionally faintly noisy) 16-bit mono WAV, for edge-case tests."""
    n = int(round(seconds * sample_rate))
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, noise, n) if noise > 0 else np.zeros(n)
    write_wav(out_wav, x, sample_rate)


# ---------------------------------------------------------------------------------------- AnnoMI


def annomi_turns(
    csv_path: str | Path,
    transcript_id: int,
    max_turns: int | None = None,
    *,
    start_turn: int = 0,
    min_chars: int = 1,
) -> list[tuple[str, str]]:
    """Turns [(interlocutor, text), ...] of one AnnoMI transcript, in utterance order.

    The CSV repeats an utterance once per annotator: rows are collapsed to unique
    (transcript_id, utterance_id). Interlocutors are "therapist" and "client".
    """
    path = Path(csv_path)
    if not path.exists():
        raise InputError(path, "no such file")
    df = pd.read_csv(
        path,
        usecols=["transcript_id", "utterance_id", "interlocutor", "utterance_text"],
        dtype={"interlocutor": "string", "utterance_text": "string"},
    )
    df = df[df["transcript_id"] == int(transcript_id)]
    if df.empty:
        raise InputError(path, f"no transcript with transcript_id {transcript_id}")
    df = df.drop_duplicates(["transcript_id", "utterance_id"]).sort_values("utterance_id")
    turns = []
    for spk, text in zip(df["interlocutor"], df["utterance_text"].fillna("")):
        text = re.sub(r"\s+", " ", str(text)).strip()
        if len(text) >= min_chars:
            turns.append((str(spk), text))
    turns = turns[start_turn:]
    return turns[:max_turns] if max_turns is not None else turns


# --------------------------------------------------------------------------------------- metrics

_NORM_PUNCT = re.compile(r"[^\w\s']")


def normalize_text(text: str) -> str:
    """Lower case, punctuation out (apostrophes kept), hyphens and dashes to spaces."""
    text = str(text).lower().replace("-", " ").replace("\u2014", " ").replace("\u2013", " ")
    text = _NORM_PUNCT.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def _edit_distance(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_error_rate(ref: str | Iterable[str], hyp: str | Iterable[str]) -> float:
    """WER after `normalize_text` (case and punctuation ignored).

    Uses `jiwer` when installed; otherwise a plain Levenshtein over words (same numbers).
    Strings or lists of strings (joined with spaces) are accepted.
    """
    if not isinstance(ref, str):
        ref = " ".join(ref)
    if not isinstance(hyp, str):
        hyp = " ".join(hyp)
    r, h = normalize_text(ref), normalize_text(hyp)
    if not r:
        return 0.0 if not h else 1.0
    try:
        import jiwer
    except ImportError:
        rw, hw = r.split(), h.split()
        return _edit_distance(rw, hw) / len(rw)
    return float(jiwer.wer(r, h if h else ""))


def speaker_attribution_accuracy(
    truth: pd.DataFrame,
    words_with_speakers: pd.DataFrame,
    *,
    return_mapping: bool = False,
):
    """Share of recognised words attributed to the right speaker.

    `truth`: speaker, start, end (one row per turn). `words_with_speakers`: start, end, speaker
    (diarized labels). Diarized labels are mapped one-to-one onto truth speakers by the mapping
    that maximises agreement (`scipy.optimize.linear_sum_assignment`). A word counts as correct when
    its time midpoint falls inside a truth turn of the speaker its label maps to; words whose
    midpoint falls in no turn (gaps) are attributed to the nearest turn. Labels left unmapped
    (more diarized speakers than true ones) count as wrong.
    """
    from scipy.optimize import linear_sum_assignment

    w = words_with_speakers
    if len(w) == 0:
        return (float("nan"), {}) if return_mapping else float("nan")
    mids = ((w["start"].to_numpy(float) + w["end"].to_numpy(float)) / 2.0)
    ts = truth["start"].to_numpy(float)
    te = truth["end"].to_numpy(float)
    tspk = truth["speaker"].astype(str).to_numpy()
    # Distance from each midpoint to each truth turn (0 inside).
    dist = np.maximum(ts[None, :] - mids[:, None], 0) + np.maximum(mids[:, None] - te[None, :], 0)
    true_of_word = tspk[np.argmin(dist, axis=1)]
    hyp = w["speaker"].astype(str).to_numpy()
    true_labels = sorted(set(tspk))
    hyp_labels = sorted(set(hyp))
    counts = np.zeros((len(hyp_labels), len(true_labels)))
    hi = {h: i for i, h in enumerate(hyp_labels)}
    ti = {t: i for i, t in enumerate(true_labels)}
    for h, t in zip(hyp, true_of_word):
        counts[hi[h], ti[t]] += 1
    rows, cols = linear_sum_assignment(-counts)
    mapping = {hyp_labels[r]: true_labels[c] for r, c in zip(rows, cols)}
    acc = float(counts[rows, cols].sum() / len(w))
    return (acc, mapping) if return_mapping else acc


def diarization_speakers(segments: pd.DataFrame | Sequence) -> int:
    """Number of distinct speakers in a segment list/table."""
    if isinstance(segments, pd.DataFrame):
        return int(segments["speaker"].nunique()) if len(segments) else 0
    return len({s.speaker for s in segments})
