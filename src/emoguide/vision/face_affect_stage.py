"""Stage `face_affect`: face emotion per detected face, speaker per track, face_* per utterance.

Reads `faces.parquet` (written by the `faces` stage: one row per sampled frame x detection) and
the utterance table. For one session:

1. Re-decodes the frames at the face rows' timestamps (exact presentation times; the nearest frame
   when a time does not match exactly), crops each confirmed track's box (square, with the
   backend's margin) and predicts. Per row, into `faces.parquet`: `valence, arousal, label,
   probs` (JSON), `affect_source`, plus `mouth_motion` (landmark-based) and `lower_energy`
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
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from emoguide.corpus import schema
from emoguide.corpus.atomic import write_parquet
from emoguide.corpus.layout import Corpus, Session
from emoguide.corpus.stages import file_digest
from emoguide.errors import EmoguideError, InputError
from emoguide.runner.summary import BatchSummary, Outcome
from emoguide.vision.emotion import FaceEmotion, crop_face, get_face_emotion
from emoguide.vision.speakers import (
    SpeakerSettings,
    apply_assignments,
    assign_speakers,
    landmark_motion,
    lower_half_patch,
    overrides_path,
    patch_energy,
    read_face_overrides,
)

STAGE = "face_affect"
STAGE_VERSION = 1
DETECTION_COLUMNS = ("t", "frame_w", "frame_h", "x1", "y1", "x2", "y2", "track_id", "landmarks")
PREDICTION_COLUMNS = ("valence", "arousal", "label", "probs", "affect_source")
MOTION_COLUMNS = ("mouth_motion", "lower_energy")
SPEAKER_COLUMNS = ("speaker", "role", "speaker_confidence")
OWN_COLUMNS = PREDICTION_COLUMNS + MOTION_COLUMNS + SPEAKER_COLUMNS
# A frame farther than this from a face row's time is not used for it (the row stays null).
MAX_FRAME_OFFSET_S = 0.25
PREDICT_BATCH = 64


# --------------------------------------------------------------------------- decoding


def frames_at(
    path: str | Path, times: Iterable[float], *, tol: float = 1e-3, max_offset: float = MAX_FRAME_OFFSET_S,
    warnings: list[str] | None = None,
) -> Iterator[tuple[float, float, np.ndarray]]:
    """Yield (wanted_time, frame_time, RGB image) for each wanted time, in increasing order.

    The frame whose presentation time equals the wanted time (within `tol`) is used; otherwise the
    nearer of the frames just before and after it, when within `max_offset`. Times are seconds from
    the start of the media, as `media.decode.iter_frames` reports them; rotation is applied the
    same way. Decoding is sequential from a seek before the first wanted time, one frame in memory.
    """
    from emoguide.media.decode import _decode_packets, _Warner
    from emoguide.media.probe import _av, _open, check_file, frame_rotation, media_origin, pick_video_stream

    wanted = sorted({round(float(t), 6) for t in times})
    if not wanted:
        return
    av = _av()
    path = check_file(path)
    warn = _Warner(warnings, None)
    container = _open(path)
    try:
        stream = pick_video_stream(container)
        if stream is None:
            raise InputError(path, "no video stream")
        stream.codec_context.thread_count = 1
        origin = media_origin(container)
        first = wanted[0]
        if first > 1.0:
            try:
                ts = int((first - 1.0 + origin) / float(stream.time_base))
                container.seek(ts, stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError as err:
                warn(f"{path.name}: could not seek to {first:.2f} s ({err}); decoding from the start")
        rate = float(stream.guessed_rate or stream.average_rate or 0) or 25.0
        cache: dict[int, np.ndarray] = {}

        def image(fr) -> np.ndarray:
            key = id(fr)
            if key not in cache:
                cache.clear()
                img = fr.to_ndarray(format="rgb24")
                rot = frame_rotation(fr, stream)
                if rot:
                    img = np.ascontiguousarray(np.rot90(img, k=rot // 90))
                cache[key] = img
            return cache[key]

        i = 0
        prev = None  # (t, frame)
        n = 0
        for frame in _decode_packets(av, container, stream, warn, path):
            t = (frame.time - origin) if frame.time is not None else n / rate
            n += 1
            while i < len(wanted) and t >= wanted[i] - tol:
                w = wanted[i]
                chosen = (t, frame)
                if abs(t - w) > tol and prev is not None and abs(prev[0] - w) < abs(t - w):
                    chosen = prev
                if abs(chosen[0] - w) <= max_offset:
                    yield w, chosen[0], image(chosen[1])
                i += 1
            if i >= len(wanted):
                break
            prev = (t, frame)
        while i < len(wanted) and prev is not None:  # stream ended: the last frame, if near
            if abs(prev[0] - wanted[i]) <= max_offset:
                yield wanted[i], prev[0], image(prev[1])
            i += 1
    finally:
        container.close()


# --------------------------------------------------------------------------- per-row predictions


def predict_faces(
    faces: pd.DataFrame,
    video: str | Path,
    backend: FaceEmotion,
    *,
    crop_margin: float | None = None,
    max_gap_s: float = 1.0,
    warnings: list[str] | None = None,
) -> pd.DataFrame:
    """Per-row predictions and lower-half motion energy for the confirmed rows of `faces`."""
    out = faces.copy()
    margin = backend.crop_margin if crop_margin is None else float(crop_margin)
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

    def flush() -> None:
        if not pending_crops:
            return
        for idx, est in zip(pending_idx, backend.predict(pending_crops)):
            val.at[idx] = np.nan if est.valence is None else est.valence
            aro.at[idx] = np.nan if est.arousal is None else est.arousal
            lab.at[idx] = est.label
            prb.at[idx] = schema.probs_to_json(est.probs)
        pending_idx.clear()
        pending_crops.clear()

    found = 0
    for wanted, _ft, img in frames_at(video, by_time.keys(), warnings=warnings):
        h, w = img.shape[:2]
        for idx in by_time[wanted]:
            r = out.loc[idx]
            box = [float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"])]
            fw, fh = r.get("frame_w"), r.get("frame_h")
            if fw and fh and not (pd.isna(fw) or pd.isna(fh)) and (int(fw), int(fh)) != (w, h):
                sx, sy = w / float(fw), h / float(fh)
                box = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
                if not scaled_once and warnings is not None:
                    warnings.append(f"face boxes were for {int(fw)}x{int(fh)} frames, decoded {w}x{h}: boxes rescaled")
                scaled_once = True
            pending_idx.append(idx)
            pending_crops.append(crop_face(img, box, margin))
            patches[idx] = (float(r["t"]), lower_half_patch(img, tuple(box)))
            found += 1
        if len(pending_crops) >= PREDICT_BATCH:
            flush()
    flush()
    missing = len(rows) - found
    if missing and warnings is not None:
        warnings.append(f"{missing} face rows had no decodable frame at their time: left null")
    out["valence"] = val
    out["arousal"] = aro
    out["label"] = lab
    out["probs"] = prb
    out["affect_source"] = pd.Series(backend.id, index=out.index, dtype="string")
    out.loc[out["label"].isna(), "affect_source"] = pd.NA
    out["mouth_motion"] = landmark_motion(out, max_gap_s)
    out["lower_energy"] = patch_energy(patches, out, max_gap_s)
    return out


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


# --------------------------------------------------------------------------- stage


def _frame_hash(df: pd.DataFrame, columns: Iterable[str]) -> str:
    cols = [c for c in columns if c in df.columns]
    if not len(df):
        return "empty"
    h = pd.util.hash_pandas_object(df[cols].astype(str), index=False).to_numpy()
    return hashlib.sha256(h.tobytes() + ",".join(cols).encode()).hexdigest()[:16]


def _video_path(session: Session) -> Path | None:
    src = session.read_source()
    p = src.get("path")
    if src.get("kind", "media") != "media" or not p:
        return None
    return Path(p)


def _settings(backend: FaceEmotion, crop_margin: float | None, speakers: SpeakerSettings) -> dict[str, Any]:
    return {
        "version": STAGE_VERSION,
        "backend": backend.settings() | ({"crop_margin": crop_margin} if crop_margin is not None else {}),
        "speakers": speakers.to_dict(),
    }


def face_affect_session(
    session: Session,
    backend: FaceEmotion,
    *,
    crop_margin: float | None = None,
    speaker_settings: SpeakerSettings | None = None,
    force: bool = False,
) -> tuple[str, str]:
    """Run the stage on one session; return (status, reason)."""
    spk = speaker_settings or SpeakerSettings()
    if not session.faces_path.exists():
        return "skipped", "no faces.parquet (run the faces stage first)"
    faces = pd.read_parquet(session.faces_path)
    utts = session.read_utterances()
    settings = _settings(backend, crop_margin, spk)
    model = backend.model_file()
    ov_path = overrides_path(session.path)
    run = session.stage(STAGE, settings, outputs=[session.faces_path, session.utterances_path])
    run.inputs.update(
        {
            "faces.parquet#detections": _frame_hash(faces, ("session_id",) + DETECTION_COLUMNS),
            "utterances.parquet#turns": _frame_hash(utts, ("index", "start", "end", "speaker", "role")),
            ov_path.name: file_digest(ov_path) if ov_path.exists() else "absent",
        }
    )
    if model is not None and model.exists():
        run.inputs[f"model:{model.name}"] = file_digest(model)
    if not force and run.current:
        return "skipped", "up to date"
    prediction_key = {
        "backend": settings["backend"],
        "model": run.inputs.get(f"model:{model.name}") if model else None,
        "detections": run.inputs["faces.parquet#detections"],
    }
    prev = session.stages.get(STAGE) or {}
    with run:
        warnings: list[str] = []
        reuse = (
            not force
            and prev.get("prediction_key") == prediction_key
            and all(c in faces.columns for c in PREDICTION_COLUMNS + MOTION_COLUMNS)
        )
        base = faces.drop(columns=[c for c in OWN_COLUMNS if c in faces.columns])
        n_confirmed = int((faces["track_id"] >= 0).sum()) if len(faces) else 0
        if reuse or n_confirmed == 0:
            rows = faces.copy()
            for c in PREDICTION_COLUMNS + MOTION_COLUMNS:
                if c not in rows.columns:
                    rows[c] = pd.Series(pd.NA if c in ("label", "probs", "affect_source") else np.nan, index=rows.index)
            if n_confirmed == 0:
                warnings.append("no confirmed face track in faces.parquet")
        else:
            video = _video_path(session)
            if video is None or not video.exists():
                raise InputError(video or session.source_path, "the session's video is missing: cannot crop faces")
            backend.load()
            rows = predict_faces(base, video, backend, crop_margin=crop_margin, max_gap_s=spk.max_gap_s, warnings=warnings)
        overrides = read_face_overrides(session.path)
        result = assign_speakers(rows, utts, spk, overrides)
        warnings += result.warnings
        rows = apply_assignments(rows, result)
        source = backend.id
        if len(rows) and rows["affect_source"].notna().any():
            source = str(rows["affect_source"].dropna().iloc[0])
        new_utts = aggregate_utterances(utts, rows, source)
        ordered = list(base.columns) + [c for c in OWN_COLUMNS if c in rows.columns]
        write_parquet(session.faces_path, rows[ordered].reset_index(drop=True))
        session.write_utterances(new_utts)
        run.backends["face_emotion"] = {"id": source, **backend.versions()}
        run.extra.update(
            {
                "prediction_key": prediction_key,
                "reused_predictions": bool(reuse),
                "speakers": result.to_extra(),
                "n_face_rows": int(len(rows)),
                "n_predicted": int(rows["label"].notna().sum()) if len(rows) else 0,
                "n_utterances_with_face": int(new_utts["face_n"].notna().sum()),
                "overrides": {str(k): v for k, v in overrides.items()},
            }
        )
        for w in warnings:
            run.warn(w)
    n_with = int(new_utts["face_n"].notna().sum())
    return "done", f"{n_with}/{len(new_utts)} utterances with a face ({result.mode})"


def run_face_affect(
    corpus: Corpus,
    sessions: Iterable[str] | None = None,
    *,
    backend: str | FaceEmotion = "fer",
    model_path: str | Path | None = None,
    force: bool = False,
    on_progress: Callable[[Outcome], None] | None = None,
    crop_margin: float | None = None,
    speaker_settings: SpeakerSettings | None = None,
) -> BatchSummary:
    """The `face_affect` stage over a corpus. `backend` is a registry name (`fer`, `hsemotion`,
    `emonet`) or a built `FaceEmotion` (tests, callers holding a loaded model). The model loads
    once, on the first session that needs it. One session's failure is recorded and the rest go on.
    """
    summary = BatchSummary(STAGE)
    be = backend if isinstance(backend, FaceEmotion) else get_face_emotion(backend, model_path=model_path)
    for session in corpus.sessions(sessions):
        try:
            status, reason = face_affect_session(
                session, be, crop_margin=crop_margin, speaker_settings=speaker_settings, force=force
            )
        except (EmoguideError, ValueError, KeyError, OSError, RuntimeError) as exc:
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
        outcome = summary.add(session.id, STAGE, status, reason)
        if on_progress is not None:
            on_progress(outcome)
    return summary
