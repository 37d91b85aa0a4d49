"""Tracks to speakers: active-speaker evidence, one-face and switching-camera fallbacks, overrides.

faces.parquet tables are built directly here (the detection stage is not needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emoguide.corpus import Corpus, schema
from emoguide.vision import speakers as sp
from emoguide.vision.emotion import FaceEmotion, FaceEstimate
from emoguide.pipeline.runner import run_one
from emoguide.stages.face_affect import FaceAffectStage
from emoguide.vision import emotion as emo
from emoguide.vision.face_affect_stage import FaceAffectSettings

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"
FPS = 5.0
BLOCK = 5.0  # seconds per turn


def turns(duration: float = 60.0, roles=("therapist", "patient")) -> pd.DataFrame:
    """A and B alternate in BLOCK-second turns (A first); A = roles[0], B = roles[1]."""
    rows = []
    t, i = 0.0, 0
    while t < duration:
        speaker = "A" if i % 2 == 0 else "B"
        rows.append(
            {
                "session_id": "s1",
                "index": i,
                "start": t,
                "end": t + BLOCK - 0.3,
                "speaker": speaker,
                "role": roles[0] if speaker == "A" else roles[1],
                "text": f"turn {i}",
            }
        )
        t += BLOCK
        i += 1
    return schema.conform(pd.DataFrame(rows))


def speaking_of(t: float, utts: pd.DataFrame) -> str | None:
    hit = utts[(utts["start"] <= t) & (utts["end"] >= t)]
    return None if hit.empty else str(hit["speaker"].iloc[0])


def mtcnn_points(x1: float, y1: float, w: float, open_: float) -> list[list[float]]:
    """5 MTCNN-style landmarks; `open_` lowers the mouth corners (jaw opening)."""
    return [
        [x1 + 0.3 * w, y1 + 0.4 * w],
        [x1 + 0.7 * w, y1 + 0.4 * w],
        [x1 + 0.5 * w, y1 + 0.6 * w],
        [x1 + 0.35 * w, y1 + (0.78 + open_) * w],
        [x1 + 0.65 * w, y1 + (0.78 + open_) * w],
    ]


def face_rows(
    utts: pd.DataFrame,
    tracks: dict[int, dict],
    duration: float = 60.0,
    seed: int = 0,
    landmarks: bool = True,
) -> pd.DataFrame:
    """Rows at FPS for each track. tracks[tid] = {"talks": speaker whose turns move its mouth,
    "x": left edge, "visible": callable(t)->bool (default always)}."""
    rng = np.random.default_rng(seed)
    rows = []
    spans = list(zip(utts["start"], utts["end"], utts["speaker"].astype(str)))
    for k in range(int(duration * FPS)):
        t = round(k / FPS, 3)
        now = next((s for a, b, s in spans if a <= t <= b), None)
        for tid, spec in tracks.items():
            if not spec.get("visible", lambda _t: True)(t):
                continue
            talking = now == spec["talks"]
            open_ = abs(rng.normal(0, 0.06)) if talking else abs(rng.normal(0, 0.004))
            x1, y1, w = spec["x"], 100.0, 200.0
            rows.append(
                {
                    "session_id": "s1",
                    "t": t,
                    "frame_w": 1280,
                    "frame_h": 720,
                    "x1": x1,
                    "y1": y1,
                    "x2": x1 + w,
                    "y2": y1 + w,
                    "score": 0.99,
                    "landmarks": json.dumps(mtcnn_points(x1, y1, w, open_)) if landmarks else None,
                    "track_id": tid,
                    "detector": "synthetic",
                    # pixel-energy fallback signal, as the stage would compute it
                    "lower_energy": (0.08 + rng.normal(0, 0.01)) if talking else abs(rng.normal(0.01, 0.003)),
                }
            )
    return pd.DataFrame(rows)


def test_mouth_motion_follows_speaker_turns():
    utts = turns()
    faces = face_rows(utts, {1: {"talks": "A", "x": 100.0}, 2: {"talks": "B", "x": 700.0}})
    res = sp.assign_speakers(faces.drop(columns=["lower_energy"]), utts)
    assert res.mode == "multi"
    assert res.assignments[1].speaker == "A" and res.assignments[1].role == "therapist"
    assert res.assignments[2].speaker == "B" and res.assignments[2].role == "patient"
    assert res.assignments[1].method == "active-speaker"
    assert res.assignments[1].confidence > 0.7
    assert res.motion_source == {1: "landmarks", 2: "landmarks"}
    ev = res.assignments[1].evidence
    assert ev["A"] > 0.3 and ev["B"] < 0


def test_assignment_is_not_positional():
    utts = turns()
    faces = face_rows(utts, {1: {"talks": "B", "x": 100.0}, 2: {"talks": "A", "x": 700.0}}, seed=3)
    res = sp.assign_speakers(faces, utts)
    assert res.assignments[1].speaker == "B"
    assert res.assignments[2].speaker == "A"


def test_pixel_energy_when_no_landmarks():
    utts = turns()
    faces = face_rows(utts, {1: {"talks": "A", "x": 100.0}, 2: {"talks": "B", "x": 700.0}}, landmarks=False)
    res = sp.assign_speakers(faces, utts)
    assert res.motion_source == {1: "pixels", 2: "pixels"}
    assert res.assignments[1].speaker == "A" and res.assignments[2].speaker == "B"


def test_unconfirmed_rows_are_never_assigned():
    utts = turns()
    faces = face_rows(utts, {1: {"talks": "A", "x": 100.0}, -1: {"talks": "B", "x": 700.0}})
    res = sp.assign_speakers(faces, utts)
    assert -1 not in res.assignments
    out = sp.apply_assignments(faces, res)
    assert out.loc[out["track_id"] == -1, "speaker"].isna().all()
    # the one confirmed track is alone on screen: the one-face default (patient) applies
    assert res.mode == "single"
    assert (out.loc[out["track_id"] == 1, "speaker"] == "B").all()


def test_fragmented_track_joins_its_speaker():
    utts = turns()
    faces = face_rows(
        utts,
        {
            1: {"talks": "A", "x": 100.0, "visible": lambda t: t < 30},
            3: {"talks": "A", "x": 120.0, "visible": lambda t: t >= 30},
            2: {"talks": "B", "x": 700.0},
        },
    )
    res = sp.assign_speakers(faces, utts)
    assert res.mode == "multi"
    assert res.assignments[1].speaker == "A" and res.assignments[3].speaker == "A"
    assert res.assignments[2].speaker == "B"
    assert {res.assignments[1].method, res.assignments[3].method} == {"active-speaker", "active-speaker(fragment)"}


def test_one_face_is_the_patient_by_default():
    utts = turns()  # A therapist, B patient
    faces = face_rows(utts, {0: {"talks": "nobody", "x": 400.0}})
    res = sp.assign_speakers(faces, utts)
    assert res.mode == "single"
    a = res.assignments[0]
    assert (a.speaker, a.role, a.method) == ("B", "patient", "single-face-default")
    assert a.confidence == pytest.approx(0.5)
    res2 = sp.assign_speakers(faces, utts, sp.SpeakerSettings(single_face_role="therapist"))
    assert res2.assignments[0].speaker == "A"
    res3 = sp.assign_speakers(faces, utts, sp.SpeakerSettings(single_face_role="A", single_face_confidence=0.4))
    assert res3.assignments[0].speaker == "A" and res3.assignments[0].confidence == pytest.approx(0.4)


def test_one_face_whose_mouth_follows_the_other_speaker_is_flagged():
    utts = turns()
    faces = face_rows(utts, {0: {"talks": "A", "x": 400.0}})  # moves with the therapist's speech
    res = sp.assign_speakers(faces, utts)
    assert res.assignments[0].speaker == "B"  # the default still applies...
    assert any("mouth moves with A" in w for w in res.warnings)  # ...but it is flagged


def test_switching_camera_assigns_by_turn_overlap():
    utts = turns()
    faces = face_rows(
        utts,
        {
            1: {"talks": "A", "x": 400.0, "visible": lambda t: speaking_of(t, utts) == "A"},
            2: {"talks": "B", "x": 420.0, "visible": lambda t: speaking_of(t, utts) != "A"},
        },
        landmarks=False,
    )
    res = sp.assign_speakers(faces, utts)
    assert res.mode == "switching"
    assert res.assignments[1].speaker == "A" and res.assignments[2].speaker == "B"
    assert res.assignments[1].confidence > 0.9
    assert res.assignments[2].method == "camera-switching"


def test_overrides_read_write(tmp_path):
    assert sp.read_face_overrides(tmp_path) == {}
    sp.set_face_overrides(tmp_path, {3: "A", "4": "patient"})
    sp.set_face_overrides(tmp_path, {5: "none"})
    assert sp.read_face_overrides(tmp_path) == {3: "A", 4: "patient", 5: None}
    sp.clear_face_overrides(tmp_path, [5])
    assert sp.read_face_overrides(tmp_path) == {3: "A", 4: "patient"}
    (tmp_path / "face_speakers.json").write_text('{"x": "A"}')
    with pytest.raises(ValueError, match="not an integer"):
        sp.read_face_overrides(tmp_path)


def test_override_beats_evidence_and_resolves_roles():
    utts = turns()
    faces = face_rows(utts, {1: {"talks": "A", "x": 100.0}, 2: {"talks": "B", "x": 700.0}})
    res = sp.assign_speakers(faces, utts, overrides={1: "patient", 2: None})
    assert (res.assignments[1].speaker, res.assignments[1].method, res.assignments[1].confidence) == ("B", "override", 1.0)
    assert res.assignments[2].speaker is None


def test_hungarian_matches_best_total():
    score = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert sorted(sp.hungarian(score)) == [(0, 1), (1, 0)]
    big = np.random.default_rng(1).random((9, 3))  # large: scipy (or greedy) path
    pairs = sp.hungarian(big)
    assert len(pairs) == 3 and len({j for _, j in pairs}) == 3


# --------------------------------------------------------------------------- stage-level rerun


class FakeEmotion(FaceEmotion):
    """Deterministic stand-in: valence from the crop's brightness. Registered as backend "fake"
    (serial executor: the registry is this process's); `calls` counts crops over all instances."""

    name = "fake"
    calls = 0

    def __init__(self, **_kwargs):
        super().__init__()

    @property
    def id(self) -> str:
        return "fake-v1"

    def _load(self) -> None:
        pass

    def _predict(self, crops):
        FakeEmotion.calls += len(crops)
        out = []
        for c in crops:
            v = float(c.mean()) / 127.5 - 1.0
            out.append(FaceEstimate(valence=v, arousal=0.1, label="neutral", probs={"neutral": 0.8, "happy": 0.2}))
        return out


def _video_session(tmp_path: Path, video: Path):
    from emoguide.media.decode import iter_frames

    corpus = Corpus.open(tmp_path / "corpus", create=True)
    s = corpus.session("s1")
    utts = schema.conform(
        pd.DataFrame(
            {
                "session_id": "s1",
                "index": [0, 1],
                "start": [0.0, 1.2],
                "end": [1.1, 2.4],
                "speaker": ["A", "B"],
                "role": ["therapist", "patient"],
                "text": ["How are you?", "Fine."],
            }
        )
    )
    s.write_utterances(utts)
    s.write_source({"kind": "media", "path": str(video)})
    rows = [
        {
            "session_id": "s1", "t": f.t, "frame_w": f.image.shape[1], "frame_h": f.image.shape[0],
            "x1": 200.0, "y1": 60.0, "x2": 400.0, "y2": 260.0, "score": 0.9, "landmarks": None,
            "track_id": 0, "detector": "synthetic",
        }
        for f in iter_frames(video, fps=5.0)
    ]
    pd.DataFrame(rows).to_parquet(s.faces_path, index=False)
    return corpus, s


@pytest.mark.skipif(not (MEDIA / "single_face.mp4").exists(), reason="shared media not available")
def test_override_survives_rerun(tmp_path, monkeypatch):
    monkeypatch.setitem(emo.REGISTRY, "fake", FakeEmotion)
    monkeypatch.setattr(FakeEmotion, "calls", 0)
    corpus, s = _video_session(tmp_path, MEDIA / "single_face.mp4")
    stage = FaceAffectStage(FaceAffectSettings(backend="fake"))
    summary = run_one(corpus, stage)
    assert summary.count("done") == 1, summary.outcomes
    faces = pd.read_parquet(s.faces_path)
    assert (faces["speaker"] == "B").all()  # one face -> the patient
    assert FakeEmotion.calls == len(faces)
    u = s.read_utterances()
    assert pd.isna(u.loc[0, "face_valence"]) and pd.isna(u.loc[0, "face_n"])  # therapist: no face
    assert u.loc[1, "face_n"] > 0

    sp.set_face_overrides(s.path, {0: "A"})
    summary = run_one(corpus, stage)  # the overrides file is an input: the stage reruns
    assert summary.count("done") == 1
    rec = s.stages.get("face_affect")
    assert rec["reused_predictions"] is True  # no second decoding for an override edit
    assert FakeEmotion.calls == len(faces)
    assert rec["speakers"]["assignments"]["0"]["method"] == "override"
    faces = pd.read_parquet(s.faces_path)
    assert (faces["speaker"] == "A").all() and (faces["role"] == "therapist").all()
    u = s.read_utterances()
    assert u.loc[0, "face_n"] > 0 and pd.isna(u.loc[1, "face_n"])

    assert run_one(corpus, stage).count("skipped") == 1  # up to date
    run_one(corpus, stage, force=True)  # a forced rerun predicts again and keeps the override
    assert FakeEmotion.calls == 2 * len(faces)
    assert s.stages.get("face_affect")["reused_predictions"] is False
    faces = pd.read_parquet(s.faces_path)
    assert (faces["speaker"] == "A").all()
    assert s.read_utterances().loc[0, "face_source"] == "fake-v1"
