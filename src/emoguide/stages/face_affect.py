"""Stage `face_affect`: facial emotion per face row, a speaker per track, face_* per utterance
(docs/face_emotion.md).

Reads `faces.parquet` (the `faces` stage's rows), the utterance rows and their roles (speaker
assignment ties a one-face session to the patient by role), and the face crops the faces stage kept
(`face_crops.parquet`, `vision.crops`) or, when there are none for this backend, the video (to crop
the faces: the reference path, same values).
Writes two column groups: `faces:emotion` (per face row: prediction, motion, speaker columns) and
`utterances:face` (the face_* channel). Overrides in `face_speakers.json` are an input: editing
them reruns the stage, which then reuses the previous run's per-face predictions (its stages.json
record says which backend, model and detections they came from) and redoes only the cheap part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from emoguide.corpus.schema import channel_columns
from emoguide.pipeline.stage import NotApplicable, Resources, Result, SessionView, Stage
from emoguide.vision.face_affect_stage import OWN_COLUMNS, FaceAffectSettings

FACE_COLUMNS = tuple(channel_columns("face"))


class FaceAffectStage(Stage[FaceAffectSettings]):
    name = "face_affect"
    help = "Facial emotion per face (fer by default), face tracks tied to speakers, face_* per utterance."
    Settings = FaceAffectSettings
    reads = ("faces", "face_crops", "utterances", "utterances:role", "video")
    writes = ("faces:emotion", "utterances:face")
    columns: ClassVar = {"faces:emotion": OWN_COLUMNS, "utterances:face": FACE_COLUMNS}
    # 1: predictions from face_crops.parquet are the decoding path's, value for value
    # 2: crops aligned on the eyes and mouth (crop_mode = "aligned", default; per-row crop_mode column)
    version = 2
    resources = Resources(cpus=1, memory_mb=600)
    packages = ("av", "fer", "ai-edge-litert", "onnxruntime")

    def settings_for_hash(self) -> Any:
        return self.settings.model_dump(mode="json", exclude={"reuse_predictions"})

    def identity(self) -> dict[str, Any]:
        from emoguide.corpus.stages import file_digest

        backend = self.settings.make_backend()
        model = backend.model_file()
        out: dict[str, Any] = {"backend": self.settings.backend_settings(backend)}
        if model is not None and Path(model).exists():
            out["model"] = {Path(model).name: file_digest(model)}
        return out

    def inputs(self, session: SessionView) -> list[Path]:
        from emoguide.vision.speakers import overrides_path

        return [overrides_path(session.path)]

    def setup(self) -> None:
        from emoguide.threads import apply_torch

        self.backend = self.settings.make_backend()
        self.backend.load()
        apply_torch()

    def run(self, session: SessionView) -> Result:
        import numpy as np
        import pandas as pd

        from emoguide.corpus.stages import file_digest
        from emoguide.errors import InputError
        from emoguide.vision.face_affect_stage import (
            DETECTION_COLUMNS,
            MOTION_COLUMNS,
            PREDICTION_COLUMNS,
            aggregate_utterances,
            frame_hash,
            predict_faces,
            predict_from_crops,
        )
        from emoguide.vision.speakers import apply_assignments, assign_speakers, overrides_path, read_face_overrides

        if not session.has("faces"):
            from emoguide.vision.faces_stage import video_from_source

            video, why = video_from_source(session.source())
            if video is None:  # a transcript or audio-only session: say so in the user's words
                raise NotApplicable(f"{why.replace('no video: ', 'no video in this session: ')}")
            raise NotApplicable("no faces.parquet (run the faces stage first)")
        backend = getattr(self, "backend", None)
        if backend is None:  # run() without setup() (a test calling it directly)
            self.setup()
            backend = self.backend
        s = self.settings
        spk = s.speakers
        faces = session.table("faces").reset_index(drop=True)
        utts = session.utterances()
        res = Result()
        model = backend.model_file()
        prediction_key = {
            "backend": s.backend_settings(backend),
            "model": self.identity().get("model") if model else None,
            "detections": frame_hash(faces, ("session_id",) + DETECTION_COLUMNS),
        }
        # What the cheap part (speakers, per-utterance means) depends on. When only that changed
        # (an override edit, new roles or turns), the previous predictions are reused; when it did
        # not change either, the rerun was asked for (--force) and everything is redone.
        ov = overrides_path(session.path)
        cheap_key = {
            "overrides": file_digest(ov) if ov.exists() else None,
            "turns": frame_hash(utts, ("index", "start", "end", "speaker", "role")),
            "speakers": s.model_dump(mode="json")["speakers"],
        }
        prev = session.record(self.name)
        reuse = (
            s.reuse_predictions
            and prev.get("status") == "done"
            and prev.get("prediction_key") == prediction_key
            and prev.get("cheap_key") != cheap_key
            and all(c in faces.columns for c in PREDICTION_COLUMNS + MOTION_COLUMNS)
        )
        base = faces.drop(columns=[c for c in OWN_COLUMNS if c in faces.columns])
        n_confirmed = int((faces["track_id"] >= 0).sum()) if len(faces) else 0
        warnings: list[str] = []
        crops_used = False
        if reuse or n_confirmed == 0:
            rows = faces.copy()
            for c in PREDICTION_COLUMNS + MOTION_COLUMNS:
                if c not in rows.columns or n_confirmed == 0:
                    text = c in ("label", "probs", "affect_source", "crop_mode")
                    rows[c] = pd.Series(pd.NA if text else np.nan, index=rows.index,
                                        dtype="string" if text else "float64")
            if n_confirmed == 0:
                warnings.append("no confirmed face track in faces.parquet")
        else:
            crops = _kept_crops(session, backend, s.crop_margin, len(base), s.crop_mode)
            if crops is not None:
                rows = predict_from_crops(base, crops, backend, max_gap_s=spk.max_gap_s, warnings=warnings)
            else:
                video = session.video_path()
                if video is None or not video.exists():
                    raise InputError(video or session.file("source"), "the session's video is missing: cannot crop faces")
                rows = predict_faces(base, video, backend, crop_margin=s.crop_margin, max_gap_s=spk.max_gap_s,
                                     warnings=warnings, crop_mode=s.crop_mode)
            crops_used = crops is not None
        overrides = read_face_overrides(session.path)
        assigned = assign_speakers(rows, utts, spk, overrides)
        warnings += assigned.warnings
        rows = apply_assignments(rows, assigned)
        source = backend.id
        if len(rows) and rows["affect_source"].notna().any():
            source = str(rows["affect_source"].dropna().iloc[0])
        new_utts = aggregate_utterances(utts, rows, source)
        rows = rows.reset_index(drop=True)
        for c in OWN_COLUMNS:
            if c not in rows.columns:
                rows[c] = pd.Series(pd.NA, index=rows.index, dtype="string")
        res.tables["faces:emotion"] = rows[list(OWN_COLUMNS)]
        res.tables["utterances:face"] = new_utts[["index", *FACE_COLUMNS]]
        res.backends["face_emotion"] = {"id": source, **backend.versions()}
        n_with = int(new_utts["face_n"].notna().sum())
        res.extra = {
            "prediction_key": prediction_key,
            "cheap_key": cheap_key,
            "reused_predictions": bool(reuse),
            "crops": "face_crops.parquet" if crops_used else ("decoded" if not reuse and n_confirmed else None),
            # per predicted row: aligned on the landmarks, or the box crop (haar, no landmarks, crop_mode="box")
            "crop_modes": {str(k): int(v) for k, v in rows["crop_mode"].dropna().value_counts().sort_index().items()}
            if "crop_mode" in rows.columns else {},
            "speakers": assigned.to_extra(),
            "n_face_rows": int(len(rows)),
            "n_predicted": int(rows["label"].notna().sum()) if len(rows) else 0,
            "n_utterances_with_face": n_with,
            "overrides": {str(k): v for k, v in overrides.items()},
        }
        for w in warnings:
            res.warn(w)
        res.summary = f"{n_with}/{len(new_utts)} utterances with a face ({assigned.mode})"
        if warnings:
            res.summary += "; " + "; ".join(warnings)
        return res


def _kept_crops(session: SessionView, backend, margin: float | None, n_rows: int, crop_mode: str = "aligned"):
    """The faces stage's face_crops.parquet when it was kept for this backend, margin and crop mode
    and for this faces table (one crop row per face row); else None (the video is decoded instead)."""
    if not session.has("face_crops"):
        return None
    spec = backend.crop_spec(margin, crop_mode=crop_mode)
    if spec is None:
        return None
    from emoguide.vision.crops import read_crops

    try:
        crops = read_crops(session.file("face_crops"))
    except Exception:  # noqa: BLE001 - a damaged file: decode instead (same values)
        return None
    if not crops.matches(spec) or crops.n != n_rows:
        return None
    return crops
