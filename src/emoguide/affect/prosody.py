"""Prosodic arousal: the offline default voice backend (numpy only).

No offline speech-emotion weights exist on the package registries (docs/voice.md), so the default voice
channel is a transparent approximation: arousal from four prosodic cues that the literature ties to
vocal arousal (Banse & Scherer 1996; Juslin & Laukka 2003; the eGeMAPS arousal parameters, Eyben
et al. 2016): louder, higher, more varied in pitch and faster speech is more aroused. Valence has
no reliable prosodic correlate of that kind, so it is reported as unavailable (None), never
invented; dominance likewise.

Two passes, because the cues only mean something against the speaker's own baseline:

1. `extract(audio, sr) -> ProsodyFeatures`, per utterance:
   - `loudness_db`  active speech level: 10 log10 of the mean power of the 25 ms frames (10 ms hop)
     within 30 dB of the utterance's loudest frame, in dB re full scale;
   - `pitch_st`     median F0 of the voiced frames, in semitones re 100 Hz;
   - `pitch_var_st` spread of F0: (90th - 10th percentile) / 2.563 of the voiced frames' semitones
     (a robust standard deviation);
   - `rate_syl_s`   syllable nuclei per second between the first and the last active frame; a
     nucleus is a voiced peak of the smoothed intensity that is at least 2 dB above the dip that
     separates it from the previous nucleus (after de Jong & Wempe 2009).
   F0 comes from a small numpy YIN (de Cheveigne & Kawahara 2002) on the signal decimated to
   8 kHz: 32 ms window, 60-500 Hz, threshold 0.15, parabolic refinement, 10 ms hop.
2. `normalise(features, groups) -> [VoiceEstimate]`: per group (speaker, within one session) each
   cue is z-scored over that speaker's usable utterances, z = (x - mean) / max(sd, floor), clipped
   to +-3, so the speaker's own average is 0. Then

       arousal = tanh( sum_k w_k z_k / sum_k w_k )

   over the cues available for the utterance, with w = loudness 0.35, pitch level 0.25, pitch
   variability 0.20, rate 0.20 (intensity and mean F0 are the strongest and most consistent arousal
   cues in the studies above; F0 variability and tempo are consistent but weaker). A speaker with
   fewer than `min_utterances` (default 3) usable utterances has no baseline: arousal is None.

Limits (docs/voice.md): relative, not absolute (a speaker who is aroused throughout reads as 0 on
average); cues also move with speaking style, question intonation, microphone distance changes
and crosstalk; YIN has octave errors on creaky or noisy voice; nothing here is validated against
rated arousal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from emoguide.affect.voice import (
    SILENCE_DBFS,
    VoiceAffect,
    VoiceEstimate,
    as_mono_float32,
    clip_unit,
    register,
    resample,
    unavailable,
    version_of,
)

VERSION = 1
SOURCE_ID = f"prosody-arousal-v{VERSION}(approx; valence unavailable)"
FEATURES = ("loudness_db", "pitch_st", "pitch_var_st", "rate_syl_s")
DEFAULT_WEIGHTS: dict[str, float] = {"loudness_db": 0.35, "pitch_st": 0.25, "pitch_var_st": 0.20, "rate_syl_s": 0.20}
#: smallest standard deviation used for z-scores, per cue: below it differences are noise
DEFAULT_SD_FLOORS: dict[str, float] = {"loudness_db": 1.0, "pitch_st": 0.5, "pitch_var_st": 0.25, "rate_syl_s": 0.3}

SR = 16000
HOP = 160  # 10 ms
FRAME = 400  # 25 ms
YIN_WIN_S = 0.032  # YIN integration window (s)
YIN_SR = 8000  # F0 is estimated on the signal decimated to 8 kHz (F0 <= 500 Hz; 4x less work)
F0_MIN = 60.0
F0_MAX = 500.0
YIN_THRESHOLD = 0.15
GATE_DB = 30.0  # frames within this many dB of the loudest frame are "active"
DIP_DB = 2.0  # a nucleus must rise this far above the dip before it
MIN_VOICED = 5  # voiced frames needed for the pitch cues
MIN_ACTIVE = 10  # active frames (0.1 s) needed at all


# --------------------------------------------------------------------------- signal helpers


def frame_power_db(x: np.ndarray, frame: int = FRAME, hop: int = HOP) -> np.ndarray:
    """Mean power of each frame (centred every `hop` samples) in dB re full scale."""
    n = x.size
    n_frames = 1 + max(0, (n - 1) // hop)
    c = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    centres = np.arange(n_frames) * hop
    lo = np.clip(centres - frame // 2, 0, n)
    hi = np.clip(centres + frame // 2, 0, n)
    width = np.maximum(hi - lo, 1)
    power = (c[hi] - c[lo]) / width
    return 10.0 * np.log10(power + 1e-12)


def yin(
    x: np.ndarray,
    sr: int = SR,
    *,
    hop: int = HOP,
    win: int | None = None,
    fmin: float = F0_MIN,
    fmax: float = F0_MAX,
    threshold: float = YIN_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """F0 per frame (Hz, NaN where unvoiced) and the aperiodicity (CMND minimum) per frame.

    Frame i starts at sample i * hop - win // 2, with `win` = 32 ms by default (so it is centred like `frame_power_db`'s frames);
    the signal is zero-padded at both ends.
    """
    win = int(round(YIN_WIN_S * sr)) if win is None else int(win)
    tau_min = max(2, int(math.floor(sr / fmax)))
    tau_max = int(math.ceil(sr / fmin))
    length = win + tau_max
    n_frames = 1 + max(0, (x.size - 1) // hop)
    pad_l = win // 2
    xp = np.zeros(pad_l + x.size + length, dtype=np.float64)
    xp[pad_l : pad_l + x.size] = x
    frames = np.lib.stride_tricks.sliding_window_view(xp, length)[: n_frames * hop : hop]
    nfft = 1 << int(math.ceil(math.log2(length)))
    spec_full = np.fft.rfft(frames, nfft, axis=1)
    spec_head = np.fft.rfft(frames[:, :win], nfft, axis=1)
    r = np.fft.irfft(np.conj(spec_head) * spec_full, nfft, axis=1)[:, : tau_max + 1]
    csum = np.concatenate([[0.0], np.cumsum(xp * xp)])
    taus = np.arange(tau_max + 1)
    starts = (np.arange(frames.shape[0]) * hop)[:, None]
    e0 = csum[starts + win] - csum[starts]
    etau = csum[starts + taus + win] - csum[starts + taus]
    d = np.maximum(e0 + etau - 2.0 * r, 0.0)
    # cumulative mean normalised difference
    cum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd[:, 1:] = np.where(cum > 0, d[:, 1:] * taus[1:] / cum, 1.0)
    seg = cmnd[:, tau_min:tau_max]
    below = seg < threshold
    has = below.any(axis=1)
    first = np.argmax(below, axis=1)  # first tau under the threshold
    # then the local minimum that follows it: the first tau >= first where the CMND stops falling
    cols = np.arange(seg.shape[1])
    rising = np.ones_like(below)
    rising[:, :-1] = seg[:, 1:] >= seg[:, :-1]
    idx = np.argmax(rising & (cols[None, :] >= first[:, None]), axis=1)
    tau = (idx + tau_min).astype(np.float64)
    rows = np.arange(cmnd.shape[0])
    ti = tau.astype(int)
    left = cmnd[rows, np.maximum(ti - 1, 1)]
    mid = cmnd[rows, ti]
    right = cmnd[rows, np.minimum(ti + 1, tau_max)]
    denom = left - 2.0 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / denom, 0.0)
    tau_ref = tau + np.clip(shift, -1.0, 1.0)
    f0 = np.where(has, sr / tau_ref, np.nan)
    aperiodicity = np.where(has, mid, seg.min(axis=1) if seg.size else 1.0)
    return f0, aperiodicity


def smooth(y: np.ndarray, width: int = 7) -> np.ndarray:
    if y.size < 3 or width < 2:
        return y
    w = np.hanning(width + 2)[1:-1]
    w /= w.sum()
    ypad = np.pad(y, (width // 2, width - 1 - width // 2), mode="edge")
    return np.convolve(ypad, w, mode="valid")


def syllable_nuclei(db: np.ndarray, voiced: np.ndarray, active: np.ndarray, *, dip_db: float = DIP_DB) -> np.ndarray:
    """Frame indices of syllable nuclei: voiced peaks of the smoothed intensity above the median
    of the active frames, each >= dip_db above the lowest point since the previous nucleus."""
    if not active.any():
        return np.zeros(0, dtype=int)
    s = smooth(db, 7)
    floor = float(np.median(s[active]))
    peaks = np.flatnonzero((s[1:-1] > s[:-2]) & (s[1:-1] >= s[2:])) + 1
    voiced_near = np.convolve(voiced.astype(float), np.ones(5), mode="same") > 0  # voiced within +-2 frames
    peaks = [p for p in peaks if s[p] > floor and active[p] and voiced_near[p]]
    kept: list[int] = []
    for p in peaks:
        if not kept:
            kept.append(p)
            continue
        q = kept[-1]
        dip = float(s[q : p + 1].min())
        if s[p] - dip >= dip_db and s[q] - dip >= dip_db:
            kept.append(p)
        elif s[p] > s[q]:
            kept[-1] = p  # same syllable, a higher peak
    return np.asarray(kept, dtype=int)


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class ProsodyFeatures:
    """Pass 1: one utterance's prosodic cues (NaN where a cue could not be measured)."""

    loudness_db: float = math.nan
    pitch_st: float = math.nan
    pitch_var_st: float = math.nan
    rate_syl_s: float = math.nan
    duration_s: float = 0.0
    n_active: int = 0
    n_voiced: int = 0
    n_nuclei: int = 0
    #: why the utterance is unusable ("silent", "too short"); None when it is usable
    reason: str | None = None

    @property
    def usable(self) -> bool:
        return self.reason is None

    def value(self, name: str) -> float:
        return float(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SpeakerBaseline:
    """Per-cue mean and (floored) standard deviation over one speaker's utterances."""

    mean: dict[str, float] = field(default_factory=dict)
    sd: dict[str, float] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "sd": self.sd, "n": self.n}


@register("prosody", "prosodic")
class ProsodicArousal(VoiceAffect):
    """Speaker-relative arousal from loudness, pitch level, pitch variability and speaking rate."""

    name = "prosody"
    dimensions = ("arousal",)
    approximate = True
    sample_rate = SR

    def __init__(
        self,
        *,
        weights: Mapping[str, float] | None = None,
        sd_floors: Mapping[str, float] | None = None,
        min_utterances: int = 3,
        min_duration_s: float = 0.3,
        silence_dbfs: float = SILENCE_DBFS,
        z_clip: float = 3.0,
        model_path: Any = None,
    ) -> None:
        super().__init__()
        if model_path is not None:
            raise ValueError("the prosody voice backend uses no model file (model_path is for --voice-backend audeering)")
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        unknown = set(self.weights) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown prosodic cue(s) {sorted(unknown)}; known: {', '.join(FEATURES)}")
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError("weights must be >= 0 and not all 0")
        self.sd_floors = dict(DEFAULT_SD_FLOORS) | dict(sd_floors or {})
        self.min_utterances = max(2, int(min_utterances))
        self.min_duration_s = float(min_duration_s)
        self.silence_dbfs = float(silence_dbfs)
        self.z_clip = float(z_clip)
        self.baseline: SpeakerBaseline | None = None
        self._last_baselines: dict[Hashable, SpeakerBaseline | None] = {}

    @property
    def id(self) -> str:
        return SOURCE_ID

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "id": self.id,
            "version": VERSION,
            "weights": self.weights,
            "sd_floors": self.sd_floors,
            "min_utterances": self.min_utterances,
            "min_duration_s": self.min_duration_s,
            "silence_dbfs": self.silence_dbfs,
            "z_clip": self.z_clip,
            "yin": {"win_s": YIN_WIN_S, "sr": YIN_SR, "fmin": F0_MIN, "fmax": F0_MAX, "threshold": YIN_THRESHOLD},
        }

    def versions(self) -> dict[str, str]:
        return {"numpy": version_of("numpy")}

    # ------------------------------------------------------------------ pass 1

    def extract(self, audio: Any, sr: int) -> ProsodyFeatures:
        x = resample(as_mono_float32(audio), int(sr), SR).astype(np.float64)
        duration = x.size / SR
        if duration < self.min_duration_s:
            return ProsodyFeatures(duration_s=duration, reason="too short")
        if not np.isfinite(x).all():
            raise ValueError("audio contains NaN or infinite samples")
        x = x - x.mean()  # DC offset would bias loudness
        db = frame_power_db(x)
        peak = float(db.max()) if db.size else -np.inf
        if peak < self.silence_dbfs:
            return ProsodyFeatures(duration_s=duration, reason="silent")
        active = db >= max(peak - GATE_DB, self.silence_dbfs)
        n_active = int(active.sum())
        if n_active < MIN_ACTIVE:
            return ProsodyFeatures(duration_s=duration, n_active=n_active, reason="silent")
        loudness = float(10.0 * np.log10(np.mean(10.0 ** (db[active] / 10.0))))
        f0, _ = yin(resample(x, SR, YIN_SR), YIN_SR, hop=HOP * YIN_SR // SR)
        f0 = np.pad(f0[: db.size], (0, max(0, db.size - f0.size)), constant_values=np.nan)
        voiced = active & np.isfinite(f0)
        n_voiced = int(voiced.sum())
        pitch = spread = math.nan
        if n_voiced >= MIN_VOICED:
            st = 12.0 * np.log2(f0[voiced] / 100.0)
            pitch = float(np.median(st))
            p10, p90 = np.percentile(st, [10, 90])
            spread = float((p90 - p10) / 2.563)
        idx = np.flatnonzero(active)
        span = (idx[-1] - idx[0] + 1) * HOP / SR
        nuclei = syllable_nuclei(db, voiced, active)
        rate = float(len(nuclei) / span) if span > 0 and n_voiced >= MIN_VOICED else math.nan
        return ProsodyFeatures(
            loudness_db=loudness,
            pitch_st=pitch,
            pitch_var_st=spread,
            rate_syl_s=rate,
            duration_s=duration,
            n_active=n_active,
            n_voiced=n_voiced,
            n_nuclei=int(len(nuclei)),
        )

    # ------------------------------------------------------------------ pass 2

    def fit(self, features: Sequence[ProsodyFeatures]) -> SpeakerBaseline | None:
        """One speaker's baseline from their usable utterances (None: too few to have one)."""
        base = SpeakerBaseline()
        for cue in FEATURES:
            vals = np.array([f.value(cue) for f in features if f.usable], dtype=float)
            vals = vals[np.isfinite(vals)]
            if vals.size < self.min_utterances:
                continue
            base.mean[cue] = float(vals.mean())
            base.sd[cue] = float(max(vals.std(), self.sd_floors.get(cue, 1e-6)))
            base.n[cue] = int(vals.size)
        return base if base.mean else None

    def zscores(self, f: ProsodyFeatures, base: SpeakerBaseline) -> dict[str, float]:
        out: dict[str, float] = {}
        for cue in FEATURES:
            v = f.value(cue)
            if cue in base.mean and math.isfinite(v) and self.weights.get(cue, 0.0) > 0:
                z = (v - base.mean[cue]) / base.sd[cue]
                out[cue] = float(np.clip(z, -self.z_clip, self.z_clip))
        return out

    def score(self, f: ProsodyFeatures, base: SpeakerBaseline | None) -> VoiceEstimate:
        if not f.usable:
            return unavailable(f.reason or "unusable")
        if base is None:
            return unavailable("no speaker baseline", f.n_active)
        z = self.zscores(f, base)
        if not z:
            return unavailable("no speaker baseline", f.n_active)
        wsum = sum(self.weights[c] for c in z)
        arousal = math.tanh(sum(self.weights[c] * z[c] for c in z) / wsum)
        return VoiceEstimate(valence=None, arousal=clip_unit(arousal), dominance=None, label=None, n_windows=f.n_active)

    def baselines(
        self, features: Sequence[ProsodyFeatures], groups: Sequence[Hashable]
    ) -> dict[Hashable, SpeakerBaseline | None]:
        by: dict[Hashable, list[ProsodyFeatures]] = {}
        for f, g in zip(features, groups):
            by.setdefault(g, []).append(f)
        return {g: self.fit(fs) for g, fs in by.items()}

    def normalise(
        self, features: Sequence[ProsodyFeatures], groups: Sequence[Hashable] | None = None
    ) -> list[VoiceEstimate]:
        """Pass 2: arousal per utterance relative to its group's (speaker's) baseline."""
        groups = list(groups) if groups is not None else [None] * len(features)
        if len(groups) != len(features):
            raise ValueError("groups must have one entry per utterance")
        bases = self.baselines(features, groups)
        self._last_baselines = bases
        return [self.score(f, bases[g]) for f, g in zip(features, groups)]

    # ------------------------------------------------------------------ VoiceAffect

    def measure(self, audio: Any, sr: int) -> ProsodyFeatures:
        return self.extract(audio, sr)

    def finish(
        self, measures: Sequence[ProsodyFeatures], groups: Sequence[Hashable] | None = None
    ) -> list[VoiceEstimate]:
        return self.normalise(measures, groups)

    def last_report(self) -> dict[str, Any]:
        return {"baselines": {str(g): (b.to_dict() if b else None) for g, b in self._last_baselines.items()}}

    def set_baseline(self, features: Sequence[ProsodyFeatures]) -> "ProsodicArousal":
        """Fix the baseline that single-clip `predict` compares against (e.g. a speaker's session)."""
        self.baseline = self.fit(features)
        return self

    def _predict(self, audio: np.ndarray) -> VoiceEstimate:
        if self.baseline is None:
            raise ValueError(
                "prosodic arousal is relative to the speaker's baseline: use predict_many(clips, sr, groups) "
                "or set_baseline([extract(...) for each utterance of the speaker]) before predict()"
            )
        return self.score(self.extract(audio, SR), self.baseline)
