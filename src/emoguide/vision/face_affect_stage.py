"""Face emotion per detected face, speaker per track, face_* per utterance: the library code of the
`face_affect` stage (`emoguide.stages.face_affect`; docs/face_emotion.md).

From `faces.parquet` (written by the `faces` stage: one row per sampled frame x detection) and
the utterance table. For one session:

1. Decodes the frames at the face rows' timestamps (`media.decode.frames_at`, which skips the
   non-reference frames no row needs) (exact presentation times; the nearest frame
   when a time does not match exactly), crops each confirmed track's face (aligned on the eyes
   and mouth to the backend's template where the row has landmarks, else the square box with
   the backend's margin: `align.model_crop`) and predicts. Per row, into `faces.parquet`:
   `valence, arousal, label, probs` (JSON), `affect_source`, `crop_mode` ("aligned" | "box"), plus `mouth_motion` (landmark-based) and `lower_energy`
   (frame difference in the lower half of the box) for the speaker assignment. Predictions made
   by the same backend and settings are reused (an override edit reruns only the cheap part).
2. Assigns tracks to speakers (`speakers.py`, overrides from `face_speakers.json` last) and writes
   `speaker, role, speaker_confidence` into the rows; the assignments go to stages.json.
3. Per utterance: over the rows of the utterance's speaker's tracks with start <= t <= end, the
   mean valence, mean arousal and mean class probabilities; `face_label` = arg-max of the mean
   probabilities, `face_n` = rows averaged, `face_source` = backend id. Where no such row exists
   the values and `face_n` are null (never 0); `face_source` still names the backend that looked.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from emoguide.corpus import schema
from emoguide.vision.align import model_crop, scale_landmarks
from emoguide.vision.emotion import FaceEmotion, get_face_emotion
from emoguide.vision.speakers import SpeakerSettings, landmark_motion, lower_half_patch, patch_energy

if TYPE_CHECKING:
    from emoguide.vision.crops import FaceCrops

DETECTION_COLUMNS = ("t", "frame_w", "frame_h", "x1", "y1", "x2", "y2", "track_id", "landmarks", "align_landmarks")
PREDICTION_COLUMNS = ("valence", "arousal", "label", "probs", "affect_source", "crop_mode")
MOTION_COLUMNS = ("mouth_motion", "lower_energy")
SPEAKER_COLUMNS = ("speaker", "role", "speaker_confidence")
OWN_COLUMNS = PREDICTION_COLUMNS + MOTION_COLUMNS + SPEAKER_COLUMNS
# A frame farther than this from a face row's time is not used for it (the row stays null).
MAX_FRAME_OFFSET_S = 0.25
PREDICT_BATCH = 64


class FaceAffectSettings(BaseModel):
    """Settings of the `face_affect` stage (the `[face_affect]` section of corpus.toml)."""

    backend: str = Field("fer", description="face emotion backend: fer (offline default) | hsemotion | emonet")
    model_path: str | None = Field(
        None, description="weights file for backends that take one (hsemotion .onnx, emonet .pth)"
    )
    crop_margin: float | None = Field(
        None, ge=0.0, le=1.0, description="relative margin around the face box per side (box crops); None: the backend's own"
    )
    crop_mode: Literal["aligned", "box"] = Field(
        "aligned",
        description="aligned: the face warped onto the backend's template from the detector's eye and mouth "
        "landmarks (fer: FER2013's geometry; MTCNN and BlazeFace give them), the same crop whichever detector "
        "found the face; rows without landmarks (haar) and backends without a template keep the box crop, and "
        "faces.parquet's crop_mode says which each row got | box: the square box crop for every row (before "
        "face_affect v2)",
    )
    speakers: SpeakerSettings = Field(
        default_factory=SpeakerSettings, description="how face tracks are tied to speakers (docs/face_emotion.md)"
    )
    reuse_predictions: bool = Field(
        True,
        description="reuse the previous run's per-face predictions when only overrides, roles or turns changed "
        "(backend, model and detections unchanged); a forced rerun predicts again",
    )

    def make_backend(self) -> FaceEmotion:
        """The backend, built (not loaded), with the worker's thread cap (emoguide.threads)."""
        from emoguide.threads import cpu_threads

        kwargs: dict[str, Any] = {}
        n = cpu_threads()
        if n:
            kwargs["num_threads"] = n
        return get_face_emotion(self.backend, model_path=self.model_path, **kwargs)

    def backend_settings(self, backend: FaceEmotion) -> dict[str, Any]:
        """What identifies the predictions (the backend's settings, the crop margin and mode)."""
        out = backend.settings() | ({"crop_margin": self.crop_margin} if self.crop_margin is not None else {})
        return out | {"crop_mode": self.crop_mode}


# --------------------------------------------------------------------------- per-row predictions


def predict_faces(
    faces: pd.DataFrame,
    video: str | Path,
    backend: FaceEmotion,
    *,
    crop_margin: float | None = None,
    max_gap_s: float = 1.0,
    warnings: list[str] | None = None,
    overlap: bool | None = None,
    crop_mode: str = "aligned",
) -> pd.DataFrame:
    """Per-row predictions and lower-half motion energy for the confirmed rows of `faces`.

    `crop_mode`: "aligned" (the backend's alignment template where a row's landmarks allow,
    else the box crop) or "box" (box crops only); the `crop_mode` column says which each row got.
    `overlap`: the backend predicts one batch of crops in a second thread while the next frames
    are decoded and cropped (same results; None: as `faces_stage.track_video` decides).
    """
    from emoguide.vision.faces_stage import _overlap

    out = faces.copy()
    margin = backend.crop_margin if crop_margin is None else float(crop_margin)
    template = backend.template_for(crop_mode)
    mode = pd.Series(pd.NA, index=out.index, dtype="string")
    val = pd.Series(np.nan, index=out.index, dtype="float64")
    aro = pd.Series(np.nan, index=out.index, dtype="float64")
    lab = pd.Series(pd.NA, index=out.index, dtype="string")
    prb = pd.Series(pd.NA, index=out.index, dtype="string")
    patches: dict[Any, tuple[float, np.ndarray | None]] = {}
    rows = out[out["track_id"] >= 0]
    by_time: dict[float, list] = {}
    for idx, t in zip(rows.index, rows["t"].to_numpy(float)):
        by_time.setdefault(round(t, 6), []).append(idx)
    pending_idx: list = []
    pending_crops: list[np.ndarray] = []
    scaled_once = False

    pool = None
    if _overlap(overlap):
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, thread_name_prefix="emoguide-emotion")
    in_flight: list[tuple[list, Any]] = []

    def collect() -> None:
        while in_flight:
            idxs, fut = in_flight.pop(0)
            for idx, est in zip(idxs, fut.result() if pool is not None else fut):
                val.at[idx] = np.nan if est.valence is None else est.valence
                aro.at[idx] = np.nan if est.arousal is None else est.arousal
                lab.at[idx] = est.label
                prb.at[idx] = schema.probs_to_json(est.probs)

    def flush() -> None:
        if not pending_crops:
            return
        crops, idxs = list(pending_crops), list(pending_idx)
        pending_idx.clear()
        pending_crops.clear()
        if pool is None:
            in_flight.append((idxs, backend.predict(crops)))
        else:
            collect()  # at most one batch in flight: memory stays flat
            in_flight.append((idxs, pool.submit(backend.predict, crops)))
        if pool is None:
            collect()

    from emoguide.media.decode import frames_at

    xyxy = out[["x1", "y1", "x2", "y2"]].to_numpy(float)
    pos = {idx: i for i, idx in enumerate(out.index)}
    fw_col = out["frame_w"].to_numpy(float) if "frame_w" in out.columns else np.full(len(out), np.nan)
    fh_col = out["frame_h"].to_numpy(float) if "frame_h" in out.columns else np.full(len(out), np.nan)
    t_col = out["t"].to_numpy(float)
    lm_col = out["landmarks"].tolist() if "landmarks" in out.columns else [None] * len(out)
    det_col = out["detector"].tolist() if "detector" in out.columns else [None] * len(out)
    if "align_landmarks" in out.columns:  # O-Net's points (MTCNN's layout) where the faces stage made them
        for i, v in enumerate(out["align_landmarks"].tolist()):
            if v is not None and not (isinstance(v, float) or v is pd.NA):
                lm_col[i], det_col[i] = v, "mtcnn"
    found = 0
    try:
        for wanted, _ft, img in frames_at(video, by_time.keys(), warnings=warnings):
            h, w = img.shape[:2]
            for idx in by_time[wanted]:
                i = pos[idx]
                box = [float(v) for v in xyxy[i]]
                lms = lm_col[i]
                det = det_col[i]
                fw, fh = fw_col[i], fh_col[i]
                if fw and fh and not (np.isnan(fw) or np.isnan(fh)) and (int(fw), int(fh)) != (w, h):
                    sx, sy = w / float(fw), h / float(fh)
                    box = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
                    lms = scale_landmarks(lms, sx, sy)
                    if not scaled_once and warnings is not None:
                        warnings.append(f"face boxes were for {int(fw)}x{int(fh)} frames, decoded {w}x{h}: boxes rescaled")
                    scaled_once = True
                crop, mode.at[idx] = model_crop(img, box, margin, template, lms,
                                                None if det is None or pd.isna(det) else str(det))
                pending_idx.append(idx)
                pending_crops.append(crop)
                patches[idx] = (float(t_col[i]), lower_half_patch(img, tuple(box)))
                found += 1
            if len(pending_crops) >= PREDICT_BATCH:
                flush()
        flush()
        collect()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    missing = len(rows) - found
    if missing and warnings is not None:
        warnings.append(f"{missing} face rows had no decodable frame at their time: left null")
    return _finish(out, backend, val, aro, lab, prb, patches, max_gap_s, mode)


def _finish(
    out: pd.DataFrame, backend: FaceEmotion, val, aro, lab, prb, patches, max_gap_s: float, mode: pd.Series
) -> pd.DataFrame:
    out["valence"] = val
    out["arousal"] = aro
    out["label"] = lab
    out["probs"] = prb
    out["affect_source"] = pd.Series(backend.id, index=out.index, dtype="string")
    out.loc[out["label"].isna(), "affect_source"] = pd.NA
    out["crop_mode"] = mode
    out.loc[out["label"].isna(), "crop_mode"] = pd.NA
    out["mouth_motion"] = landmark_motion(out, max_gap_s)
    out["lower_energy"] = patch_energy(patches, out, max_gap_s)
    return out


def predict_from_crops(
    faces: pd.DataFrame,
    crops: "FaceCrops",
    backend: FaceEmotion,
    *,
    max_gap_s: float = 1.0,
    warnings: list[str] | None = None,
) -> pd.DataFrame:
    """`predict_faces` from the crops the `faces` stage kept (`vision.crops`), without decoding.

    `faces` must be the table those crops were kept for, in its stored order (crop `row` = the
    position in it), and `crops.spec` the backend's `crop_spec`: the predictions and the lower-half
    energies are then exactly the decoding path's.
    """
    out = faces.copy()
    val = pd.Series(np.nan, index=out.index, dtype="float64")
    aro = pd.Series(np.nan, index=out.index, dtype="float64")
    lab = pd.Series(pd.NA, index=out.index, dtype="string")
    prb = pd.Series(pd.NA, index=out.index, dtype="string")
    mode = pd.Series(pd.NA, index=out.index, dtype="string")
    patches: dict[Any, tuple[float, np.ndarray | None]] = {}
    t_col = out["t"].to_numpy(float)
    confirmed = np.nonzero(out["track_id"].to_numpy() >= 0)[0]
    have = [i for i in confirmed if int(i) in crops.crops]
    for start in range(0, len(have), PREDICT_BATCH):
        chunk = have[start : start + PREDICT_BATCH]
        ests = backend.predict_prepared([crops.crops[int(i)] for i in chunk])
        for i, est in zip(chunk, ests):
            idx = out.index[i]
            val.at[idx] = np.nan if est.valence is None else est.valence
            aro.at[idx] = np.nan if est.arousal is None else est.arousal
            lab.at[idx] = est.label
            prb.at[idx] = schema.probs_to_json(est.probs)
            mode.at[idx] = crops.modes.get(int(i), "box")
    for i in have:
        p = crops.patches.get(int(i))
        patches[out.index[i]] = (float(t_col[i]), None if p is None else p.astype(np.float32) / 255.0)
    missing = len(confirmed) - len(have)
    if missing and warnings is not None:
        warnings.append(f"{missing} face rows had no kept crop: left null")
    return _finish(out, backend, val, aro, lab, prb, patches, max_gap_s, mode)


# --------------------------------------------------------------------------- per-utterance


def aggregate_utterances(utterances: pd.DataFrame, faces: pd.DataFrame, source: str) -> pd.DataFrame:
    """face_* columns per utterance from the assigned speaker's face rows inside [start, end]."""
    out = utterances.copy()
    n = len(out)
    v_out = np.full(n, np.nan)
    a_out = np.full(n, np.nan)
    lab_out: list[Any] = [pd.NA] * n
    prb_out: list[Any] = [pd.NA] * n
    n_out: list[Any] = [pd.NA] * n
    usable = faces
    if len(faces):
        usable = faces[(faces["track_id"] >= 0) & faces["speaker"].notna() & faces["label"].notna()]
    labels: list[str] = sorted({k for p in usable["probs"].dropna() for k in json.loads(p)}) if len(usable) else []
    per_speaker: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for sp, grp in usable.groupby(usable["speaker"].astype(str)) if len(usable) else []:
        grp = grp.sort_values("t", kind="stable")
        P = np.zeros((len(grp), len(labels)))
        for r, text in enumerate(grp["probs"]):
            for k, p in json.loads(text).items():
                P[r, labels.index(k)] = p
        per_speaker[sp] = (
            grp["t"].to_numpy(float),
            grp["valence"].to_numpy(float),
            grp["arousal"].to_numpy(float),
            P,
        )
    starts = out["start"].to_numpy(float)
    ends = out["end"].to_numpy(float)
    speakers = out["speaker"].astype("string")
    for i in range(n):
        sp = speakers.iloc[i]
        if pd.isna(sp) or sp not in per_speaker or math.isnan(starts[i]) or math.isnan(ends[i]):
            continue
        t, v, a, P = per_speaker[sp]
        lo = int(np.searchsorted(t, starts[i] - 1e-9, side="left"))
        hi = int(np.searchsorted(t, ends[i] + 1e-9, side="right"))
        if hi <= lo:
            continue
        vs, as_, ps = v[lo:hi], a[lo:hi], P[lo:hi]
        if np.isfinite(vs).any():
            v_out[i] = float(np.nanmean(vs))
        if np.isfinite(as_).any():
            a_out[i] = float(np.nanmean(as_))
        mean_p = ps.mean(axis=0)
        lab_out[i] = labels[int(np.argmax(mean_p))]
        prb_out[i] = schema.probs_to_json(dict(zip(labels, mean_p.tolist())))
        n_out[i] = hi - lo
    out["face_valence"] = pd.Series(v_out, index=out.index, dtype="float64")
    out["face_arousal"] = pd.Series(a_out, index=out.index, dtype="float64")
    out["face_label"] = pd.Series(lab_out, index=out.index, dtype="string")
    out["face_probs"] = pd.Series(prb_out, index=out.index, dtype="string")
    out["face_n"] = pd.Series(n_out, index=out.index, dtype="Int64")
    out["face_source"] = pd.Series([source] * n, index=out.index, dtype="string")
    return out


# --------------------------------------------------------------------------- fingerprints


def frame_hash(df: pd.DataFrame, columns: Iterable[str]) -> str:
    cols = [c for c in columns if c in df.columns]
    if not len(df):
        return "empty"
    h = pd.util.hash_pandas_object(df[cols].astype(str), index=False).to_numpy()
    return hashlib.sha256(h.tobytes() + ",".join(cols).encode()).hexdigest()[:16]
