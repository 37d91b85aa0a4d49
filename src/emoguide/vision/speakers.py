"""Which face track is which speaker (and so which is the patient, which the therapist).

Inputs: `faces.parquet` rows (session_id, t, box, landmarks, track_id; track_id -1 = unconfirmed,
never assigned) and the utterance table (start, end, speaker, role). Three situations:

1. Several faces on screen at once ("multi"): active-speaker evidence. Each track gets a mouth
   motion signal: frame-to-frame change of mouth geometry from its landmarks (lip gap for 68/468
   point meshes; mouth-to-eyes geometry for MTCNN's 5 and BlazeFace's 6 points; lower-landmark
   positions for other layouts), or, when the detector gives no usable landmarks, the frame
   difference energy in the lower half of the box (`lower_energy`, computed while the frames are
   decoded). The evidence for (track k, speaker s) is the Pearson correlation between k's motion
   and "s is speaking" (1 inside s's utterances) at k's sample times. Tracks and speakers are
   matched one to one by the Hungarian algorithm on that matrix; leftover tracks (one person
   split into several tracks) join their best speaker when they never share the screen with that
   speaker's tracks.
2. One face at a time, and the visible track changes with the turns ("switching", an edited
   video cutting to whoever speaks): each track goes to the speaker whose turns cover most of its
   visible time, with that share as the confidence.
3. One face for the whole session ("single"): it is the patient by default (the paper's sessions
   show the patient); `SpeakerSettings.single_face_role` changes that (a role or a speaker label);
   confidence is lower (0.5). The active-speaker evidence is still computed and a warning is
   recorded when it points clearly to another speaker.

Overrides: `sessions/<id>/face_speakers.json`, a JSON object {track_id: speaker} (a speaker label,
a role name such as "patient", or null for "nobody"), applied last, so they survive reruns.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from itertools import permutations
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from emoguide.corpus.atomic import read_json, write_json

OVERRIDES_NAME = "face_speakers.json"
ROLES = ("therapist", "patient", "unknown")


@dataclass
class SpeakerSettings:
    single_face_role: str = "patient"  # role (or speaker label) of the face in one-face sessions
    single_face_confidence: float = 0.5
    min_samples: int = 8  # motion samples a track needs for active-speaker evidence
    min_evidence: float = 0.05  # correlation below which a track is left unassigned
    max_gap_s: float = 1.0  # no motion across gaps longer than this within a track
    co_visible_fraction: float = 0.1  # share of sampled times with >= 2 tracks that makes a session "multi"
    switching_purity: float = 0.6  # share of a track's time inside one speaker's turns for "switching"
    fragment_overlap: float = 0.2  # max co-visible share for a leftover track to join a speaker
    strong_evidence: float = 0.3  # single-face warning threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrackAssignment:
    track_id: int
    speaker: str | None
    role: str | None
    confidence: float
    method: str  # active-speaker | active-speaker(fragment) | camera-switching | single-face-default | override | unassigned
    n_rows: int = 0
    evidence: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["confidence"] = round(float(self.confidence), 4)
        d["evidence"] = {k: round(float(v), 4) for k, v in self.evidence.items()}
        return d


@dataclass
class SpeakerResult:
    mode: str  # multi | switching | single | none
    assignments: dict[int, TrackAssignment]
    warnings: list[str] = field(default_factory=list)
    motion_source: dict[int, str] = field(default_factory=dict)  # track -> landmarks | pixels | none

    def to_extra(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "assignments": {str(k): v.to_dict() for k, v in sorted(self.assignments.items())},
            "motion_source": {str(k): v for k, v in sorted(self.motion_source.items())},
        }


# --------------------------------------------------------------------------- overrides


def overrides_path(session_dir: str | Path) -> Path:
    return Path(session_dir) / OVERRIDES_NAME


def read_face_overrides(session_dir: str | Path) -> dict[int, str | None]:
    """{track_id: speaker-or-role-or-None} from `face_speakers.json` (empty when absent)."""
    path = overrides_path(session_dir)
    data = read_json(path, default={}) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{track_id: speaker}}")
    out: dict[int, str | None] = {}
    for k, v in data.items():
        try:
            tid = int(k)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: track id {k!r} is not an integer") from None
        out[tid] = None if v in (None, "") else str(v)
    return out


def set_face_overrides(session_dir: str | Path, mapping: dict[int | str, str | None]) -> dict[int, str | None]:
    """Merge `mapping` into the session's overrides file. A value of None, "", "-" or "none" marks
    the track as nobody's (its faces count for no utterance); `clear_face_overrides` deletes entries."""
    current = read_face_overrides(session_dir)
    for k, v in mapping.items():
        current[int(k)] = None if v is None or str(v).lower() in ("", "-", "none", "null") else str(v)
    write_json(overrides_path(session_dir), {str(k): v for k, v in sorted(current.items())})
    return current


def clear_face_overrides(session_dir: str | Path, tracks: Iterable[int] | None = None) -> None:
    path = overrides_path(session_dir)
    if tracks is None:
        if path.exists():
            path.unlink()
        return
    current = read_face_overrides(session_dir)
    for t in tracks:
        current.pop(int(t), None)
    write_json(path, {str(k): v for k, v in sorted(current.items())})


# --------------------------------------------------------------------------- mouth motion


def _parse_landmarks(value: Any) -> np.ndarray | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        pts = np.asarray(json.loads(value) if isinstance(value, str) else value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] < 2:
        return None
    return pts[:, :2]


def mouth_feature(points: np.ndarray | None, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """Scale- and translation-free mouth geometry of one face (a small vector), or None."""
    if points is None:
        return None
    n = len(points)
    x1, y1, x2, y2 = box
    bw, bh = max(x2 - x1, 1e-6), max(y2 - y1, 1e-6)

    def dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.hypot(*(a - b)))

    if n in (468, 478):  # MediaPipe FaceMesh: inner lips 13/14, mouth corners 61/291, eyes 33/263
        io = dist(points[33], points[263]) or bh
        return np.array([dist(points[13], points[14]) / io, dist(points[61], points[291]) / io])
    if n == 68:  # iBUG 68: inner lips 62/66, corners 48/54, outer eye corners 36/45
        io = dist(points[36], points[45]) or bh
        return np.array([dist(points[62], points[66]) / io, dist(points[48], points[54]) / io, dist(points[33], points[8]) / io])
    if n == 5:  # MTCNN: left eye, right eye, nose, mouth left, mouth right
        eyes = (points[0] + points[1]) / 2
        io = dist(points[0], points[1]) or bw
        mouth = (points[3] + points[4]) / 2
        return np.array([(mouth[1] - eyes[1]) / io, dist(points[3], points[4]) / io, (mouth[1] - points[2][1]) / io])
    if n == 6:  # BlazeFace: right eye, left eye, nose tip, mouth centre, right ear, left ear
        eyes = (points[0] + points[1]) / 2
        io = dist(points[0], points[1]) or bw
        return np.array([(points[3][1] - eyes[1]) / io, (points[3][1] - points[2][1]) / io])
    # Unknown layout: positions of the landmarks in the lower half of the box, box-normalised.
    rel = np.column_stack([(points[:, 0] - x1) / bw, (points[:, 1] - y1) / bh])
    lower = rel[rel[:, 1] > 0.5]
    return lower.reshape(-1) if len(lower) else None


def landmark_motion(faces: pd.DataFrame, max_gap_s: float = 1.0) -> pd.Series:
    """Per row: RMS change of the mouth feature since the track's previous sample (NaN for the
    first sample, after gaps, for unconfirmed tracks and where landmarks are missing)."""
    out = pd.Series(np.nan, index=faces.index, dtype="float64")
    if len(faces) == 0 or "landmarks" not in faces.columns:
        return out
    for tid, grp in faces[faces["track_id"] >= 0].groupby("track_id", sort=False):
        grp = grp.sort_values("t", kind="stable")
        prev_t, prev_f = None, None
        cols = zip(grp.index, grp["t"].to_numpy(float), grp["landmarks"], grp["x1"], grp["y1"], grp["x2"], grp["y2"])
        for idx, t, lms, x1, y1, x2, y2 in cols:
            feat = mouth_feature(_parse_landmarks(lms), (x1, y1, x2, y2))
            if feat is not None and prev_f is not None and prev_f.shape == feat.shape and t - prev_t <= max_gap_s:
                out.at[idx] = float(np.sqrt(np.mean((feat - prev_f) ** 2)))
            prev_t, prev_f = t, feat
    return out


def lower_half_patch(image: np.ndarray, box: tuple[float, float, float, float], size: int = 24) -> np.ndarray | None:
    """The lower half of a face box as a size x size grey float patch in [0, 1] (for `lower_energy`)."""
    patch = lower_half_patch_u8(image, box, size)
    return None if patch is None else patch.astype(np.float32) / 255.0


def lower_half_patch_u8(image: np.ndarray, box: tuple[float, float, float, float], size: int = 24) -> np.ndarray | None:
    """`lower_half_patch` before the scaling to [0, 1]: uint8 grey (what `vision.crops` keeps)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    ym = (y1 + y2) / 2
    xa, xb = int(max(0, math.floor(x1))), int(min(w, math.ceil(x2)))
    ya, yb = int(max(0, math.floor(ym))), int(min(h, math.ceil(y2)))
    if xb - xa < 2 or yb - ya < 2:
        return None
    patch = image[ya:yb, xa:xb]
    from PIL import Image

    grey = Image.fromarray(np.ascontiguousarray(patch[..., :3])).convert("L").resize((size, size), Image.BOX)
    return np.asarray(grey, dtype=np.uint8)


def patch_energy(patches: dict[Any, tuple[float, np.ndarray | None]], faces: pd.DataFrame, max_gap_s: float = 1.0) -> pd.Series:
    """Per row: mean |difference| between the row's lower-half patch and its track's previous one.

    `patches` maps a faces row index to (t, patch)."""
    out = pd.Series(np.nan, index=faces.index, dtype="float64")
    confirmed = faces[faces["track_id"] >= 0]
    for _, grp in confirmed.groupby("track_id", sort=False):
        prev = None
        for idx in grp.sort_values("t", kind="stable").index:
            t, patch = patches.get(idx, (None, None))
            if patch is not None and prev is not None and t - prev[0] <= max_gap_s:
                p = patch - patch.mean()
                q = prev[1] - prev[1].mean()  # brightness changes do not count as motion
                out.at[idx] = float(np.mean(np.abs(p - q)))
            prev = (t, patch) if patch is not None else None
    return out


def track_motion(faces: pd.DataFrame, max_gap_s: float = 1.0) -> tuple[pd.Series, dict[int, str]]:
    """Per-row motion used as evidence, and per track which signal it came from: landmark motion
    where a track has it for at least half its rows, else `lower_energy` if the column exists."""
    lm = faces["mouth_motion"] if "mouth_motion" in faces.columns else landmark_motion(faces, max_gap_s)
    px = faces["lower_energy"] if "lower_energy" in faces.columns else pd.Series(np.nan, index=faces.index)
    motion = pd.Series(np.nan, index=faces.index, dtype="float64")
    source: dict[int, str] = {}
    for tid, grp in faces[faces["track_id"] >= 0].groupby("track_id"):
        n = len(grp)
        n_lm = int(lm.loc[grp.index].notna().sum())
        n_px = int(px.loc[grp.index].notna().sum())
        if n_lm >= max(2, n // 2):
            motion.loc[grp.index] = lm.loc[grp.index]
            source[int(tid)] = "landmarks"
        elif n_px >= 2:
            motion.loc[grp.index] = px.loc[grp.index]
            source[int(tid)] = "pixels"
        else:
            source[int(tid)] = "none"
    return motion, source


# --------------------------------------------------------------------------- evidence


def _speakers(utterances: pd.DataFrame) -> list[str]:
    sp = utterances["speaker"].dropna().astype(str)
    return sorted(sp.unique().tolist())


def speaking(times: np.ndarray, utterances: pd.DataFrame, speaker: str) -> np.ndarray:
    """1.0 where `speaker` has an utterance covering the time, else 0.0."""
    u = utterances[utterances["speaker"].astype("string") == speaker]
    out = np.zeros(len(times), dtype=np.float64)
    for s, e in zip(u["start"].to_numpy(float), u["end"].to_numpy(float)):
        out[(times >= s) & (times <= e)] = 1.0
    return out


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def evidence_matrix(faces: pd.DataFrame, motion: pd.Series, utterances: pd.DataFrame, min_samples: int = 8) -> pd.DataFrame:
    """Tracks x speakers: correlation of the track's motion with each speaker speaking."""
    speakers = _speakers(utterances)
    rows: dict[int, dict[str, float]] = {}
    conf = faces[faces["track_id"] >= 0]
    for tid, grp in conf.groupby("track_id"):
        m = motion.loc[grp.index]
        ok = m.notna().to_numpy()
        if ok.sum() < min_samples:
            continue
        t = grp["t"].to_numpy(float)[ok]
        x = m.to_numpy(float)[ok]
        rows[int(tid)] = {s: _corr(x, speaking(t, utterances, s)) for s in speakers}
    return pd.DataFrame.from_dict(rows, orient="index", columns=speakers).sort_index()


def hungarian(score: np.ndarray) -> list[tuple[int, int]]:
    """Maximum-score one-to-one matching of rows to columns: exact search over permutations for
    the small matrices of real sessions (a few tracks, two speakers), scipy's Hungarian solver for
    larger ones, greedy when scipy is absent."""
    n, m = score.shape
    if n == 0 or m == 0:
        return []
    if min(n, m) <= 5 and max(n, m) <= 7:
        best, best_pairs = -math.inf, []
        if n <= m:
            for perm in permutations(range(m), n):
                s = sum(score[i, perm[i]] for i in range(n))
                if s > best:
                    best, best_pairs = s, [(i, perm[i]) for i in range(n)]
        else:
            for perm in permutations(range(n), m):
                s = sum(score[perm[j], j] for j in range(m))
                if s > best:
                    best, best_pairs = s, [(perm[j], j) for j in range(m)]
        return sorted(best_pairs)
    try:
        from scipy.optimize import linear_sum_assignment

        r, c = linear_sum_assignment(-score)
        return list(zip(r.tolist(), c.tolist()))
    except ImportError:
        pass
    pairs, used_r, used_c = [], set(), set()
    for flat in np.argsort(-score, axis=None):
        i, j = divmod(int(flat), m)
        if i not in used_r and j not in used_c:
            pairs.append((i, j))
            used_r.add(i)
            used_c.add(j)
    return sorted(pairs)


# --------------------------------------------------------------------------- assignment


def _speaker_roles(utterances: pd.DataFrame) -> dict[str, str]:
    """speaker -> role (the most frequent non-null role of that speaker's utterances)."""
    out: dict[str, str] = {}
    if "role" not in utterances.columns:
        return out
    for sp, grp in utterances.dropna(subset=["speaker"]).groupby(utterances["speaker"].astype(str)):
        roles = grp["role"].dropna().astype(str)
        if len(roles):
            out[str(sp)] = roles.value_counts().index[0]
    return out


def resolve_speaker(value: str | None, utterances: pd.DataFrame) -> str | None:
    """A speaker label from a speaker label or a role name (the role's speaker with most speech)."""
    if value is None:
        return None
    speakers = _speakers(utterances)
    if value in speakers:
        return value
    if value.lower() in ROLES and "role" in utterances.columns:
        u = utterances[utterances["role"].astype("string") == value.lower()].dropna(subset=["speaker"])
        if len(u):
            dur = (u["end"] - u["start"]).groupby(u["speaker"].astype(str)).sum()
            return str(dur.idxmax())
        return None
    return value  # a label not (yet) in the table: kept as given


def _co_visible(a: set[float], b: set[float]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def assign_speakers(
    faces: pd.DataFrame,
    utterances: pd.DataFrame,
    settings: SpeakerSettings | None = None,
    overrides: dict[int, str | None] | None = None,
) -> SpeakerResult:
    """Assign each confirmed track (track_id >= 0) to a speaker. See the module docstring."""
    cfg = settings or SpeakerSettings()
    roles = _speaker_roles(utterances)
    speakers = _speakers(utterances)
    conf = faces[faces["track_id"] >= 0] if len(faces) else faces
    tracks = sorted(int(t) for t in conf["track_id"].unique()) if len(conf) else []
    n_rows = conf["track_id"].value_counts().to_dict() if len(conf) else {}
    times = {tid: set(np.round(conf.loc[conf["track_id"] == tid, "t"].to_numpy(float), 3)) for tid in tracks}
    warnings: list[str] = []
    result: dict[int, TrackAssignment] = {}

    def put(tid: int, speaker: str | None, confidence: float, method: str, evidence: dict[str, float]) -> None:
        result[tid] = TrackAssignment(
            track_id=tid,
            speaker=speaker,
            role=roles.get(speaker) if speaker is not None else None,
            confidence=float(confidence) if speaker is not None else 0.0,
            method=method if speaker is not None else "unassigned",
            n_rows=int(n_rows.get(tid, 0)),
            evidence=evidence,
        )

    motion, motion_source = (
        track_motion(faces, cfg.max_gap_s) if len(conf) else (pd.Series(dtype=float), {})
    )
    ev = evidence_matrix(faces, motion, utterances, cfg.min_samples) if len(conf) and speakers else pd.DataFrame()

    def evid(tid: int) -> dict[str, float]:
        return {s: float(ev.at[tid, s]) for s in ev.columns} if tid in ev.index else {}

    # How often do two tracks share the screen?
    if len(conf):
        per_time = conf.groupby(conf["t"].round(3))["track_id"].nunique()
        co_frac = float((per_time >= 2).mean())
    else:
        co_frac = 0.0

    if not tracks:
        mode = "none"
    elif not speakers:
        mode = "none"
        warnings.append("no speakers in the utterance table: faces left unassigned")
        for tid in tracks:
            put(tid, None, 0.0, "unassigned", {})
    elif co_frac >= cfg.co_visible_fraction:
        mode = "multi"
        _assign_active(tracks, ev, times, cfg, put, evid)
    else:
        # One face at a time: switching camera, or one face throughout?
        overlap: dict[int, dict[str, float]] = {}
        for tid in tracks:
            t = np.array(sorted(times[tid]))
            cover = {s: float(speaking(t, utterances, s).mean()) for s in speakers}
            overlap[tid] = cover
        best = {tid: max(cov, key=cov.get) for tid, cov in overlap.items()}
        purity = {
            tid: (cov[best[tid]] / sum(cov.values()) if sum(cov.values()) > 0 else 0.0) for tid, cov in overlap.items()
        }
        pure = [tid for tid in tracks if purity[tid] >= cfg.switching_purity]
        if len(tracks) >= 2 and len({best[t] for t in pure}) >= 2:
            mode = "switching"
            for tid in tracks:
                ev_t = {f"overlap:{s}": v for s, v in overlap[tid].items()}
                if purity[tid] >= cfg.switching_purity:
                    put(tid, best[tid], purity[tid], "camera-switching", ev_t)
                else:
                    put(tid, None, 0.0, "unassigned", ev_t)
        else:
            mode = "single"
            target = resolve_speaker(cfg.single_face_role, utterances)
            if target is None:
                warnings.append(
                    f"one face on screen, but no speaker has role {cfg.single_face_role!r}: "
                    "falling back to active-speaker evidence"
                )
                _assign_active(tracks, ev, times, cfg, put, evid)
            else:
                for tid in tracks:
                    e = evid(tid)
                    put(tid, target, cfg.single_face_confidence, "single-face-default", e)
                    if e:
                        top = max(e, key=e.get)
                        if top != target and e[top] >= cfg.strong_evidence and e[top] - e.get(target, 0.0) >= cfg.strong_evidence:
                            warnings.append(
                                f"track {tid}: shown alone and taken as {target} ({cfg.single_face_role}), but its "
                                f"mouth moves with {top}'s speech (r={e[top]:.2f}); check, or set "
                                f"{OVERRIDES_NAME}"
                            )

    for tid in tracks:
        if tid not in result:
            put(tid, None, 0.0, "unassigned", evid(tid))

    # Overrides last.
    for tid, value in (overrides or {}).items():
        speaker = resolve_speaker(value, utterances) if value is not None else None
        if value is not None and speaker is None:
            warnings.append(f"{OVERRIDES_NAME}: track {tid} -> {value!r}: no speaker has that role; ignored")
            continue
        prev = result.get(tid)
        result[tid] = TrackAssignment(
            track_id=tid,
            speaker=speaker,
            role=roles.get(speaker) if speaker is not None else None,
            confidence=1.0,
            method="override",
            n_rows=int(n_rows.get(tid, 0)),
            evidence=prev.evidence if prev else {},
        )
        if tid not in tracks:
            warnings.append(f"{OVERRIDES_NAME}: track {tid} does not occur in faces.parquet")
    return SpeakerResult(mode=mode, assignments=result, warnings=warnings, motion_source=motion_source)


def _assign_active(tracks, ev: pd.DataFrame, times, cfg: SpeakerSettings, put, evid) -> None:
    """Hungarian matching on the evidence matrix, then leftover fragments."""
    if ev.empty:
        return
    score = ev.to_numpy(float)
    track_ids = [int(t) for t in ev.index]
    speakers = list(ev.columns)
    assigned: dict[str, list[int]] = {s: [] for s in speakers}
    for i, j in hungarian(score):
        tid, sp = track_ids[i], speakers[j]
        e = score[i, j]
        if e < cfg.min_evidence:
            continue
        others = [score[i, k] for k in range(len(speakers)) if k != j]
        margin = e - max(others) if others else e
        conf = 0.5 + 0.5 * math.tanh(3.0 * max(margin, 0.0))
        put(tid, sp, conf, "active-speaker", evid(tid))
        assigned[sp].append(tid)
    # Leftover tracks: the same person re-detected under a new id, never on screen together.
    left = [t for t in track_ids if t not in {x for v in assigned.values() for x in v}]
    left.sort(key=lambda t: -len(times.get(t, ())))
    for tid in left:
        i = track_ids.index(tid)
        order = np.argsort(-score[i])
        for j in order:
            sp, e = speakers[j], score[i, j]
            if e < cfg.min_evidence:
                break
            if all(_co_visible(times[tid], times[o]) <= cfg.fragment_overlap for o in assigned[sp]):
                others = [score[i, k] for k in range(len(speakers)) if k != j]
                margin = e - max(others) if others else e
                put(tid, sp, 0.5 + 0.5 * math.tanh(3.0 * max(margin, 0.0)), "active-speaker(fragment)", evid(tid))
                assigned[sp].append(tid)
                break


def apply_assignments(faces: pd.DataFrame, result: SpeakerResult) -> pd.DataFrame:
    """Write `speaker`, `role` and `speaker_confidence` into the faces rows."""
    out = faces.copy()
    sp = {tid: a.speaker for tid, a in result.assignments.items()}
    ro = {tid: a.role for tid, a in result.assignments.items()}
    cf = {tid: (a.confidence if a.speaker is not None else None) for tid, a in result.assignments.items()}
    tids = out["track_id"].astype(int)
    out["speaker"] = pd.Series(tids.map(sp), index=out.index, dtype="object").astype("string")
    out["role"] = pd.Series(tids.map(ro), index=out.index, dtype="object").astype("string")
    out["speaker_confidence"] = pd.to_numeric(tids.map(cf), errors="coerce").astype("float64")
    unconfirmed = tids < 0
    out.loc[unconfirmed, ["speaker", "role"]] = pd.NA
    out.loc[unconfirmed, "speaker_confidence"] = np.nan
    return out
