"""Faces in a video: sample frames by timestamp, detect, track (library code of the `faces` stage,
`emoguide.stages.faces`; docs/faces.md).

    det = FaceSettings().make_detector().load()
    result = track_video("session.mp4", det, fps=5.0)       # BlazeFace at 5 fps
    df = result.table("session-1")                            # the faces.parquet rows

Frames are streamed (`media.decode.iter_frames_sparse`: the frames `iter_frames` would return,
without decoding the non-reference frames no sample uses), detected in small batches, tracked
(`track.FaceTracker`), and returned as one row per sampled frame x detection (see
`FACES_COLUMNS`). Frames with no face have no row; the count and times of the sampled frames are
in `VideoFaces.frames_record()`. Corrupt data part way through a file ends decoding there, with a
warning, over what decoded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from emoguide.corpus.atomic import read_parquet
from emoguide.vision.detect import FaceDetector, get_detector, iter_batches
from emoguide.vision.track import FaceTracker, TrackerParams

if TYPE_CHECKING:
    from emoguide.vision.crops import CropWriter

STAGE = "faces"
STAGE_VERSION = "faces-v2"  # v2: align_landmarks (O-Net's five points per detection, for aligned crops)
PAPER_FPS = 30.0

FACES_COLUMNS = (
    "session_id", "t", "frame_w", "frame_h", "x1", "y1", "x2", "y2",
    "score", "landmarks", "align_landmarks", "track_id", "detector",
)  # fmt: skip
_DTYPES = {
    "session_id": "string",
    "t": "float64",
    "frame_w": "int32",
    "frame_h": "int32",
    "x1": "float32",
    "y1": "float32",
    "x2": "float32",
    "y2": "float32",
    "score": "float32",
    "landmarks": "string",
    "align_landmarks": "string",
    "track_id": "int32",
    "detector": "string",
}
# A gap between sampled frames longer than this many sampling intervals is listed in stages.json.
GAP_FACTOR = 1.5
MAX_GAPS_LISTED = 200


class FaceSettings(BaseModel):
    """Settings of the `faces` stage (the `[faces]` section of corpus.toml)."""

    detector: str = Field(
        "blazeface", description="mtcnn (the paper's) | blazeface (fast, default) | blazeface-short | haar"
    )
    fps: float = Field(5.0, gt=0, description="frames sampled per second (paper: 30, every frame)")
    min_score: float | None = Field(
        None, ge=0.0, le=1.0, description="drop detections below this; None: the detector's default"
    )
    min_face_px: float = Field(20.0, ge=1.0, description="drop faces whose shorter side is smaller")
    max_side: int | None = Field(
        1280, ge=64, description="downscale larger frames for detection (boxes stay in full pixels)"
    )
    paper_mode: bool = Field(
        False, description="the paper's setup: MTCNN on every frame at 30 fps (overrides detector/fps)"
    )
    batch_size: int = Field(8, ge=1, description="frames per detector call (MTCNN batches them)")
    threads: int | None = Field(
        None, ge=1, description="torch threads for MTCNN; None: the worker's cap (emoguide.threads), else torch's default"
    )
    detector_options: dict[str, Any] = Field(
        default_factory=dict, description="backend options, e.g. {range = 'short'} for blazeface"
    )
    tracker: TrackerParams = Field(default_factory=TrackerParams)
    keep_crops: str | None = Field(
        "fer",
        description="keep the face crops this face-emotion backend needs (face_crops.parquet), so face_affect "
        "does not decode the video again; None: keep none (face_affect decodes)",
    )
    crop_mode: Literal["aligned", "box"] = Field(
        "aligned",
        description="how the kept crops are cut: aligned (on the eyes and mouth, to the backend's template, where "
        "the detector gives landmarks; box otherwise) | box (the square box crop, as before); face_affect uses "
        "them only when its own crop_mode is the same",
    )

    align_landmarks: Literal["onet", "detector"] = Field(
        "onet",
        description="the landmarks aligned crops are cut from: onet (MTCNN's landmark stage run on each detection's "
        "box, the same landmark model whichever detector found the face; the align_landmarks column) | detector "
        "(the detector's own eye and mouth points; align_landmarks null). Detectors without landmarks (haar) get "
        "none either way: their rows keep the box crop",
    )

    def make_refiner(self):
        """The `align.OnetLandmarks` for `align_landmarks = "onet"` (not loaded), else None. It
        runs on one torch thread (`align.ONET_THREADS`, within any worker cap): its batches are
        too small to split, and it runs beside the decoder and the detector."""
        if self.align_landmarks != "onet":
            return None
        from emoguide.vision.align import OnetLandmarks

        return OnetLandmarks()

    def crop_writer(self, path: str | Path):
        """A `vision.crops.CropWriter` for `keep_crops` at its backend's default margin and
        `crop_mode`, or None (no backend named, or one without a prepared-crop path)."""
        if not self.keep_crops:
            return None
        from emoguide.vision.crops import CropWriter
        from emoguide.vision.emotion import get_face_emotion

        backend = get_face_emotion(self.keep_crops)  # built, not loaded: prepare_crop needs no model
        spec = backend.crop_spec(crop_mode=self.crop_mode)
        if spec is None:
            return None
        return CropWriter(path, spec, backend.prepare_crop)

    def effective(self) -> "FaceSettings":
        """The settings actually used: paper_mode pins detector=mtcnn and fps=30."""
        if self.paper_mode:
            return self.model_copy(update={"detector": "mtcnn", "fps": PAPER_FPS})
        return self

    def make_detector(self) -> FaceDetector:
        eff = self.effective()
        from emoguide.threads import cpu_threads

        opts = dict(eff.detector_options)
        threads = eff.threads or cpu_threads()
        if threads and eff.detector == "mtcnn":
            opts.setdefault("threads", threads)
        return get_detector(
            eff.detector, min_score=eff.min_score, min_size=eff.min_face_px, max_side=eff.max_side, **opts
        )

    def fingerprint_dict(self) -> dict[str, Any]:
        """What decides the output (batch size and threads do not)."""
        eff = self.effective()
        d = eff.model_dump(mode="json", exclude={"batch_size", "threads", "paper_mode"})
        d["version"] = STAGE_VERSION
        return d


def empty_faces() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _DTYPES.items()})


def _conform(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return empty_faces()
    return df[list(FACES_COLUMNS)].astype(_DTYPES)


class VideoFaces:
    """Result of `track_video`: the rows, and what was sampled."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.frame_size: tuple[int, int] | None = None
        self.warnings: list[str] = []
        self.cuts: list[float] = []
        self.n_tracks = 0
        self.n_reidentified = 0
        self.detect_seconds = 0.0
        #: O-Net's landmarks (`refiner`), in the detector's worker thread beside the detector
        self.align_seconds = 0.0
        self.decode_track_seconds = 0.0

    def table(self, session_id: str = "") -> pd.DataFrame:
        if not self.rows:
            return empty_faces()
        df = pd.DataFrame(self.rows)
        df.insert(0, "session_id", session_id)
        return _conform(df)

    def frames_record(self, fps: float) -> dict[str, Any]:
        """Count and times of the sampled frames, compactly: first, last, and the gaps."""
        times = self.times
        rec: dict[str, Any] = {"count": len(times), "fps": fps}
        if times:
            rec["first_t"] = round(times[0], 4)
            rec["last_t"] = round(times[-1], 4)
            diffs = np.diff(times) if len(times) > 1 else np.array([])
            rec["median_interval_s"] = round(float(np.median(diffs)), 4) if diffs.size else None
            gap_idx = np.nonzero(diffs > GAP_FACTOR / fps)[0] if diffs.size else []
            rec["gaps"] = [[round(times[i], 4), round(times[i + 1], 4)] for i in gap_idx[:MAX_GAPS_LISTED]]
            rec["n_gaps"] = int(len(gap_idx))
            with_faces = {r["t"] for r in self.rows}
            rec["with_faces"] = len(with_faces)
        if self.frame_size:
            rec["frame_w"], rec["frame_h"] = self.frame_size
        return rec


def _overlap(overlap: bool | None) -> bool:
    if overlap is not None:
        return overlap
    import os

    from emoguide.threads import cpu_threads

    cap = cpu_threads()
    return (cap is None or cap >= 2) and (os.cpu_count() or 1) >= 2


def _refine_batch(refiner: Any, images: list[np.ndarray], results: list[list]) -> list[list] | None:
    """Per frame, per detection: O-Net's five points (`align.OnetLandmarks.refine`, one batched
    forward per pass over the whole batch) for the detections that have landmarks, None for the
    others (detectors without landmarks, e.g. haar, keep the box path); None without a refiner."""
    if refiner is None:
        return None
    idx = [[k for k, d in enumerate(dets) if d.landmarks is not None] for dets in results]
    got = refiner.refine(images, [[dets[k].box for k in ks] for dets, ks in zip(results, idx)])
    out: list[list] = []
    for dets, ks, pts in zip(results, idx, got):
        row: list = [None] * len(dets)
        for k, p in zip(ks, pts):
            row[k] = p
        out.append(row)
    return out


def _detect_batches(frames, detector: FaceDetector, batch_size: int, out: VideoFaces, overlap: bool, refiner: Any = None):
    """(batch, detections, O-Net points or None) in frame order; with `overlap`, batch k is
    detected (and its landmarks read, `_refine_batch`) in a worker thread while the caller
    consumes batch k - 1 and the next batch is decoded."""

    def detect(batch):
        td = time.perf_counter()
        images = [f.image for f in batch]
        res = detector.detect_batch(images)
        ta = time.perf_counter()
        refined = _refine_batch(refiner, images, res)
        return res, refined, ta - td, time.perf_counter() - ta

    def account(got):
        res, refined, sec, asec = got
        out.detect_seconds += sec
        out.align_seconds += asec
        return res, refined

    if not overlap:
        for batch in iter_batches(frames, batch_size):
            yield (batch, *account(detect(batch)))
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="emoguide-detect") as pool:
        pending = None
        for batch in iter_batches(frames, batch_size):
            fut = pool.submit(detect, batch)
            if pending is not None:
                yield (pending[0], *account(pending[1].result()))
            pending = (batch, fut)
        if pending is not None:
            yield (pending[0], *account(pending[1].result()))


def track_video(
    path: str | Path,
    detector: FaceDetector,
    *,
    fps: float = 5.0,
    tracker: FaceTracker | TrackerParams | None = None,
    start: float | None = None,
    end: float | None = None,
    batch_size: int = 8,
    on_frame: Callable[[float], None] | None = None,
    overlap: bool | None = None,
    crops: "CropWriter | None" = None,
    refiner: Any = None,
) -> VideoFaces:
    """Detect and track faces in one video file; returns rows with final track ids.

    `overlap`: run the detector on one batch in a second thread while this one tracks the
    previous batch and decodes the next (same results, in the same order; the decoder and the
    detectors release the GIL). None: overlap unless the worker is capped at one thread
    (`emoguide.threads.cpu_threads()`) or the machine has one core.

    `crops`: also keep, for every row, the prepared face crop and lower-half patch that
    `face_affect` would otherwise decode the video again for (`vision.crops`); the caller closes it.

    `refiner`: an `align.OnetLandmarks` (`FaceSettings.make_refiner`): each detection that has
    landmarks also gets O-Net's five points from its box (`align_landmarks`), which the aligned
    crops are cut from; None: `align_landmarks` null (aligned crops use the detector's points).
    It runs right after the detector on the same batch of frames (in the worker thread with
    `overlap`), one batched forward per pass; its time is `result.align_seconds`.

    Raises `InputError` for a file that cannot be opened or has no video stream. Corrupt data
    later on ends decoding with a warning in `result.warnings`.
    """
    from emoguide.media.decode import iter_frames_sparse

    detector.load()
    if refiner is not None:
        refiner.load()
    if not isinstance(tracker, FaceTracker):
        tracker = FaceTracker(tracker)
    out = VideoFaces()
    keys: list[int] = []  # per row: internal track key, resolved to the final id at the end
    frames = iter_frames_sparse(path, fps, start, end, warnings=out.warnings)
    t0 = time.perf_counter()
    for batch, results, refined_batch in _detect_batches(frames, detector, batch_size, out, _overlap(overlap), refiner):
        for n, (frame, dets) in enumerate(zip(batch, results)):
            h, w = frame.image.shape[:2]
            out.frame_size = (w, h)
            out.times.append(frame.t)
            assigned = tracker.update(frame.t, dets, frame.image)  # one Assignment per detection, in order
            refined = refined_batch[n] if refined_batch is not None else [None] * len(assigned)
            for a, ref in zip(assigned, refined):
                d = a.detection
                lms = None if d.landmarks is None else json.dumps([[round(x, 2), round(y, 2)] for x, y in d.landmarks])
                alms = None if ref is None else json.dumps([[round(x, 2), round(y, 2)] for x, y in ref])
                out.rows.append(
                    {
                        "t": frame.t,
                        "frame_w": w,
                        "frame_h": h,
                        "x1": d.box[0],
                        "y1": d.box[1],
                        "x2": d.box[2],
                        "y2": d.box[3],
                        "score": d.score,
                        "landmarks": lms,
                        "align_landmarks": alms,
                        "track_id": -1,
                        "detector": detector.name,
                    }
                )
                keys.append(a.key)
                if crops is not None:
                    # the landmarks as stored (rounded): the decoding path crops from the same values
                    if alms is not None:
                        crops.add(len(out.rows) - 1, frame.image, d.box, alms, "mtcnn")  # O-Net: MTCNN's layout
                    else:
                        crops.add(len(out.rows) - 1, frame.image, d.box, lms, detector.name)
            if on_frame is not None:
                on_frame(frame.t)
    tracker.finish()
    for row, key in zip(out.rows, keys):
        row["track_id"] = tracker.resolve(key)
    out.decode_track_seconds = max(0.0, time.perf_counter() - t0 - out.detect_seconds - out.align_seconds)
    out.cuts = list(tracker.stats.cuts)
    out.n_tracks = tracker.n_ids
    out.n_reidentified = tracker.stats.reidentified
    return out


def video_from_source(src: dict[str, Any] | None) -> tuple[Path | None, str]:
    """The video file a session's source.json names, or None and why there is none."""
    if not src:
        return None, "no source.json (not ingested from media)"
    kind = src.get("kind", "media")
    if kind != "media":
        return None, f"no video: the session came from a {kind} file"
    probe = src.get("probe") or {}
    if probe and not probe.get("has_video", probe.get("video") is not None):
        return None, "no video: audio-only media"
    p = src.get("path") or src.get("origin")
    if not p:
        return None, "source.json names no media file"
    return Path(p), ""


def session_video(session) -> tuple[Path | None, str]:
    """`video_from_source` for a corpus `Session` (frame export, rating clips)."""
    return video_from_source(session.read_source())


def read_faces(session) -> pd.DataFrame:
    """A session's faces.parquet (empty table with the columns when absent)."""
    if not session.faces_path.exists():
        return empty_faces()
    return read_parquet(session.faces_path)

