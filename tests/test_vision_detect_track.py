"""Face detection, tracking with re-identification, the faces stage, and blurred frame export.

Tracker tests run on synthetic frames (textured "faces" on a background, boxes given). Detector,
stage and export tests use the real clips and pictures in ../shared/data/media (skipped when
absent) and the optional `faces` extra (skipped when not installed).
"""

from __future__ import annotations

import json
import math
import sys
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emoguide.corpus.layout import Corpus
from emoguide.errors import EmoguideError
from emoguide.vision.blur import blur_boxes, high_frequency_energy
from emoguide.vision.detect import Detection, available_detectors, get_detector
from emoguide.vision.track import (
    BoxKalman,
    FaceTracker,
    ShotCutDetector,
    TrackerParams,
    appearance,
    iou,
    similarity,
)

MEDIA = Path(__file__).resolve().parents[1].parent / "shared/data/media"


def real(name: str) -> Path:
    path = MEDIA / name
    if not path.exists():
        pytest.skip(f"shared test media not found: {path}")
    return path


def read_image(name: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(real(name)).convert("RGB"))


def need(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} (the faces extra) is not installed")


def need_av() -> None:
    need("av")


# ----------------------------------------------------------------------------- synthetic scenes

W, H = 320, 240


def face_patch(seed: int, w: int, h: int) -> np.ndarray:
    """A person-like patch: a skin-ish oval with hair and clothing colours drawn from `seed`."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 230, size=3)
    patch = np.empty((h, w, 3), np.float64)
    patch[:] = base
    yy, xx = np.mgrid[0:h, 0:w]
    # a face-like layout: dark "eyes" and "mouth" whose positions depend on the seed
    ex = int(w * (0.25 + 0.1 * rng.random()))
    for cx in (ex, w - ex):
        patch[(yy - h // 3) ** 2 + (xx - cx) ** 2 < (w // 10) ** 2] = rng.integers(0, 60, size=3)
    patch[(abs(yy - int(h * 0.72)) < h // 14) & (abs(xx - w // 2) < w // 4)] = rng.integers(100, 255, size=3)
    patch += rng.normal(0, 8, size=patch.shape)
    return np.clip(patch, 0, 255).astype(np.uint8)


def scene(faces: list[tuple[tuple[float, float, float, float], int]], background: int = 0) -> np.ndarray:
    """A frame with the given (box, seed) faces; the area under each face (shoulders) takes the
    face's clothing colour, as in a real head-and-shoulders shot."""
    rng = np.random.default_rng(1000 + background)
    img = np.empty((H, W, 3), np.uint8)
    img[:] = rng.integers(0, 255, size=3)
    img[H // 2 :] = rng.integers(0, 255, size=3)
    for box, seed in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        clothes = np.random.default_rng(seed + 77).integers(0, 255, size=3)
        img[y2 : min(H, y2 + (y2 - y1)), max(0, x1 - 10) : min(W, x2 + 10)] = clothes
        img[y1:y2, x1:x2] = face_patch(seed, x2 - x1, y2 - y1)
    return img


def det(box, score=0.99) -> Detection:
    return Detection(tuple(float(v) for v in box), score, None)


def run(tracker: FaceTracker, frames, fps: float = 5.0, t0: float = 0.0):
    """frames: list of lists of (box, seed); returns per frame the list of internal keys."""
    keys = []
    for k, faces in enumerate(frames):
        t = t0 + k / fps
        img = scene(faces) if faces is not None else scene([])
        out = tracker.update(t, [det(b) for b, _ in faces], img)
        keys.append([a.key for a in out])
    return keys


def moving(x0, y0, vx, vy, n, size=50, seed=1):
    return [((x0 + vx * k, y0 + vy * k, x0 + vx * k + size, y0 + vy * k + size), seed) for k in range(n)]


# ----------------------------------------------------------------------------- tracker


def test_iou_and_kalman_constant_velocity():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    kf = BoxKalman((0, 0, 40, 40))
    for k in range(1, 15):  # 50 px/s to the right, sampled at 5 fps
        kf.predict(0.2)
        kf.update((10 * k, 0, 10 * k + 40, 40))
    pred = kf.predict(1.0)  # one second ahead: +50 px
    assert pred[0] == pytest.approx(190, abs=6)
    assert pred[2] - pred[0] == pytest.approx(40, abs=3)


def test_birth_after_min_hits_and_backfill():
    tr = FaceTracker(min_hits=3)
    frames = [[f] for f in moving(50, 50, 4, 0, 6)]
    keys = []
    ids_now = []
    for k, faces in enumerate(frames):
        out = tr.update(k / 5, [det(b) for b, _ in faces], scene(faces))
        keys.append(out[0].key)
        ids_now.append(out[0].track_id)
    assert ids_now == [-1, -1, 0, 0, 0, 0]  # confirmed on the third hit
    assert {tr.resolve(k) for k in keys} == {0}  # earlier rows get the id afterwards
    assert tr.n_ids == 1


def test_a_blip_is_never_confirmed():
    tr = FaceTracker(min_hits=3)
    frames = [[], [((100, 100, 140, 140), 3)], [], [], [((10, 10, 50, 50), 4)], []]
    keys = run(tr, frames)
    assert all(tr.resolve(k) == -1 for ks in keys for k in ks)
    assert tr.n_ids == 0


def test_death_after_max_age_and_new_person_gets_new_id():
    tr = FaceTracker(min_hits=2, max_age_s=1.0)
    a = moving(40, 60, 2, 0, 5, seed=1)
    b = moving(200, 60, -2, 0, 5, seed=2)  # a different person, elsewhere, after a long gap
    frames = [[f] for f in a] + [[]] * 10 + [[f] for f in b]
    keys = run(tr, frames)
    assert tr.resolve(keys[0][0]) == 0
    assert tr.resolve(keys[-1][0]) == 1
    assert not tr.tracks[0].reidentified
    assert tr.stats.reidentified == 0


def test_two_faces_not_crossing_keep_their_ids():
    tr = FaceTracker()
    left = moving(20, 80, 3, 1, 30, size=60, seed=11)
    right = moving(220, 90, -2, -1, 30, size=55, seed=12)
    frames = [[l, r] for l, r in zip(left, right)]
    keys = run(tr, frames)
    ids = [[tr.resolve(k) for k in ks] for ks in keys]
    assert all(i == ids[0] for i in ids)
    assert sorted(ids[0]) == [0, 1]
    # detections given in the other order still map to the same people
    tr2 = FaceTracker()
    keys2 = run(tr2, [([l, r] if k % 2 else [r, l]) for k, (l, r) in enumerate(zip(left, right))])
    for k, ks in enumerate(keys2):
        order = [tr2.resolve(x) for x in ks]
        assert order == ([0, 1] if k % 2 else [1, 0]) or order == ([1, 0] if k % 2 else [0, 1])
        assert order[0] != order[1]
    assert tr2.n_ids == 2


def test_leave_and_return_gets_the_old_id_back():
    tr = FaceTracker(max_age_s=1.0, reid_max_gap_s=30)
    person, other = 5, 6
    stay = [[((100, 60, 160, 120), person)]] * 8
    gone = [[]] * 15  # 3 s away: the track ends after 1 s
    back = [[((120, 65, 178, 123), person)]] * 8
    stranger = [[((40, 60, 100, 120), other)]] * 8
    keys = run(tr, stay + gone + back + gone + stranger)
    ids = [tr.resolve(k) for ks in keys for k in ks]
    first, returned, new = ids[0], ids[8], ids[-1]
    assert first == returned == 0
    assert new == 1
    assert tr.stats.reidentified == 1


def test_shot_cut_keeps_identities():
    tr = FaceTracker(max_age_s=1.0)
    a, b = 21, 22
    t = 0.0
    got = []
    # shot 1: person a on the left; shot 2 (new background): person b on the right;
    # shot 3: back to shot 1's camera, a now further right
    for shot, box, seed, bg in [
        (1, (40, 50, 110, 120), a, 0),
        (2, (200, 60, 260, 120), b, 1),
        (3, (90, 55, 160, 125), a, 0),
        (4, (200, 60, 260, 120), b, 1),
    ]:
        for _ in range(6):
            img = scene([(box, seed)], background=bg)
            out = tr.update(t, [det(box)], img)
            got.append((shot, out[0].key))
            t += 0.2
    assert len(tr.stats.cuts) == 3
    by_shot: dict[int, set[int]] = {}
    for shot, key in got:
        by_shot.setdefault(shot, set()).add(tr.resolve(key))
    assert by_shot[1] == by_shot[3] == {0}
    assert by_shot[2] == by_shot[4] == {1}


def test_cut_detector_and_appearance():
    cuts = ShotCutDetector()
    one = scene([((40, 50, 110, 120), 1)], background=0)
    same = scene([((44, 50, 114, 120), 1)], background=0)
    other = scene([((40, 50, 110, 120), 2)], background=5)
    assert cuts(one) is False
    assert cuts(same) is False
    assert cuts(other) is True
    e1 = appearance(one, (40, 50, 110, 120))
    e2 = appearance(same, (44, 50, 114, 120))
    e3 = appearance(other, (40, 50, 110, 120))
    assert similarity(e1, e2) > 0.9
    assert similarity(e1, e3) < 0.6
    assert similarity(e1, None) == 0.0
    assert appearance(one, (10, 10, 11, 11)) is None


def test_tracker_without_images_uses_motion_only():
    tr = FaceTracker()
    for k in range(10):
        out = tr.update(k / 30, [det((10 + k, 10, 60 + k, 60))], None)
    assert out[0].track_id == 0


def test_params_validate():
    with pytest.raises(Exception):
        TrackerParams(iou_threshold=2.0)
    assert FaceTracker(TrackerParams(min_hits=1)).p.min_hits == 1


# ----------------------------------------------------------------------------- detectors


def test_registry():
    names = available_detectors()
    assert {"mtcnn", "blazeface", "blazeface-short", "haar"} <= set(names)
    with pytest.raises(EmoguideError, match="unknown face detector"):
        get_detector("nope")
    d = get_detector("blazeface", min_score=0.7, min_size=30)
    assert d.min_score == 0.7 and d.min_size == 30 and not d._loaded  # load() is separate


@pytest.fixture(scope="module")
def blazeface():
    need("mediapipe")
    return get_detector("blazeface").load()


@pytest.fixture(scope="module")
def mtcnn():
    need("facenet_pytorch")
    need("torch")
    return get_detector("mtcnn").load()


@pytest.fixture(scope="module")
def haar():
    need("cv2")
    return get_detector("haar").load()


def _check_dets(dets, image, n_landmarks):
    h, w = image.shape[:2]
    for d in dets:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert 0 <= d.score <= 1
        if n_landmarks is None:
            assert d.landmarks is None
        else:
            assert len(d.landmarks) == n_landmarks
            # eyes lie inside the face box
            for x, y in d.landmarks[:2]:
                assert x1 - 2 <= x <= x2 + 2 and y1 - 2 <= y <= y2 + 2


def test_blazeface_on_pictures(blazeface):
    multi = read_image("multi_face.jpg")
    dets = blazeface.detect(multi)
    assert len(dets) >= 4
    _check_dets(dets, multi, 6)
    single = read_image("single_face.jpg")
    dets = blazeface.detect(single)
    assert len(dets) == 1
    _check_dets(dets, single, 6)
    assert blazeface.detect(read_image("no-face.jpg")) == []
    # batch helper, and the size filter
    assert [len(x) for x in blazeface.detect_batch([single, single])] == [1, 1]
    assert get_detector("blazeface", min_size=2000).detect(single) == []


def test_blazeface_short_range(blazeface):
    d = get_detector("blazeface-short").load()
    assert len(d.detect(read_image("single_face.jpg"))) == 1


@pytest.mark.slow
def test_mtcnn_on_pictures(mtcnn):
    multi = read_image("multi_face.jpg")
    dets = mtcnn.detect(multi)
    assert len(dets) >= 4
    _check_dets(dets, multi, 5)
    single = read_image("single_face.jpg")
    dets = mtcnn.detect(single)
    assert len(dets) == 1
    _check_dets(dets, single, 5)
    assert mtcnn.detect(read_image("no-face.jpg")) == []
    # the torchvision/requests stand-ins were only there during the import
    tv = sys.modules.get("torchvision")
    assert tv is None or not getattr(tv, "__emoguide_stand_in__", False)


def test_torchvision_stand_in_nms():
    need("torch")
    import torch

    from emoguide.vision.detect import _torchvision_stand_in

    mods = _torchvision_stand_in()
    nms = mods["torchvision.ops.boxes"].batched_nms
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    idxs = torch.tensor([0, 0, 0, 1])  # the last box is another image: never suppressed by box 0
    assert nms(boxes, scores, idxs, 0.5).tolist() == [3, 0, 2]
    t = mods["torchvision.transforms.functional"].to_tensor(np.full((2, 3, 3), 255, np.uint8))
    assert tuple(t.shape) == (3, 2, 3) and float(t.max()) == 1.0


def test_haar_on_pictures(haar):
    multi = read_image("multi_face.jpg")
    dets = haar.detect(multi)
    assert len(dets) >= 3  # the fallback finds most frontal faces
    _check_dets(dets, multi, None)
    assert len(haar.detect(read_image("single_face.jpg"))) == 1
    # Haar has false positives: on this picture at most one
    assert len(haar.detect(read_image("no-face.jpg"))) <= 1


# ----------------------------------------------------------------------------- videos


def track(name: str, detector, fps: float = 5.0):
    need_av()
    from emoguide.vision.faces_stage import track_video

    result = track_video(real(name), detector, fps=fps)
    return result, result.table(name)


def test_single_face_video_one_track(blazeface):
    result, df = track("single_face.mp4", blazeface)
    assert len(result.times) == 12
    assert len(df) == len(result.times)  # a face in every sampled frame
    assert set(df["track_id"]) == {0}


def test_face_leaves_track_ends(blazeface):
    result, df = track("face_noface.mov", blazeface)
    confirmed = df[df["track_id"] >= 0]
    assert set(confirmed["track_id"]) == {0}
    assert confirmed["t"].max() < 3.0  # the face is gone after ~2.4 s
    assert result.times[-1] > 6.0  # ... while the video goes on


def test_face_arrives_track_starts(blazeface):
    # HEVC at a high capture rate, sampled by timestamp
    result, df = track("noface_face.mov", blazeface)
    confirmed = df[df["track_id"] >= 0]
    assert confirmed["track_id"].nunique() == 1
    assert 3.0 < confirmed["t"].min() < 4.5
    assert confirmed["t"].max() > 6.0


def test_no_face_video_no_tracks(blazeface):
    result, df = track("no_face.mp4", blazeface)
    assert len(result.times) == 20
    assert (df["track_id"] < 0).all()  # at most an unconfirmed blip
    assert list(df.columns) == list(result.table().columns)


@pytest.mark.slow
def test_wolfgang_one_face(blazeface):
    result, df = track("WolfgangLanger_Pexels.mp4", blazeface)
    confirmed = df[df["track_id"] >= 0]
    assert confirmed["track_id"].nunique() == 1
    assert len(confirmed) > 0.9 * len(result.times)


@pytest.mark.slow
def test_mtcnn_video(mtcnn):
    result, df = track("single_face.mp4", mtcnn)
    assert set(df["track_id"]) == {0}
    assert len(df) == len(result.times)
    assert df["detector"].unique().tolist() == ["mtcnn"]
    assert all(len(json.loads(x)) == 5 for x in df["landmarks"])


@pytest.mark.slow
def test_cut_away_and_back_on_real_frames(blazeface):
    """Two real people edited together: A, B, nobody, A again, B again; ids come back."""
    need_av()
    from emoguide.media.decode import iter_frames

    tr = FaceTracker()
    t = 0.0
    seq = [
        ("WolfgangLanger_Pexels.mp4", 0, 3, "A"),
        ("single_face.mp4", 0, 2.4, "B"),
        ("no_face.mp4", 0, 1.5, None),
        ("WolfgangLanger_Pexels.mp4", 12, 15, "A"),
        ("single_face.mp4", 0, 2.4, "B"),
    ]
    seen: dict[str, set[int]] = {"A": set(), "B": set()}
    keys = []
    for name, a, b, who in seq:
        for frame in iter_frames(real(name), 5.0, a, b):
            for asg in tr.update(t, blazeface.detect(frame.image), frame.image):
                keys.append((who, asg.key))
            t += 0.2
    for who, key in keys:
        if who is not None and tr.resolve(key) >= 0:
            seen[who].add(tr.resolve(key))
    assert len(seen["A"]) == 1 and len(seen["B"]) == 1
    assert seen["A"] != seen["B"]
    assert tr.stats.reidentified >= 2
    assert len(tr.stats.cuts) >= 3


# ----------------------------------------------------------------------------- sparse decoding


@pytest.mark.parametrize("name", ["WolfgangLanger_Pexels.mp4", "face_noface.mov", "single_face.mp4"])
def test_sparse_decoding_returns_the_same_frames(name):
    """iter_frames_sparse / frames_at skip non-reference frames no sample needs: the frames they
    return (times and pixels) must be exactly iter_frames' and the old full-decode frames_at's."""
    need_av()
    from emoguide.media.decode import frames_at, iter_frames, iter_frames_sparse, video_packet_times

    path = real(name)
    times = video_packet_times(path)
    assert times and times == sorted(times)
    for fps, start, end in ((5.0, None, None), (2.0, 1.3, 4.0), (30.0, None, None), (7.0, 0.5, None)):
        full = list(iter_frames(path, fps, start, end))
        sparse = list(iter_frames_sparse(path, fps, start, end))
        assert [f.t for f in sparse] == [f.t for f in full], (fps, start, end)
        assert [f.target for f in sparse] == [f.target for f in full]
        assert all(np.array_equal(a.image, b.image) for a, b in zip(full, sparse))
    # frames_at: every other sampled time, plus one between two frames (nearest is chosen)
    full = list(iter_frames(path, 5.0))
    wanted = [f.t for f in full[::2]] + [(full[1].t + full[2].t) / 2 + 0.004]
    got = list(frames_at(path, wanted))
    assert len(got) == len(set(round(w, 6) for w in wanted))
    by_t = {round(f.t, 6): f.image for f in iter_frames(path, 1000.0)}  # every frame
    for w, ft, img in got:
        assert abs(ft - w) <= 0.25
        assert np.array_equal(img, by_t[round(ft, 6)])
        nearest = min(by_t, key=lambda t: abs(t - w))
        assert abs(ft - w) <= abs(nearest - w) + 1e-6  # (keys are rounded to 1 us)


# ----------------------------------------------------------------------------- the stage


def _write_wav(path: Path, seconds: float = 1.0, sr: int = 16000) -> Path:
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(x.tobytes())
    return path


@pytest.fixture(scope="module")
def stage_corpus(tmp_path_factory):
    need_av()
    need("mediapipe")
    from emoguide.corpus import schema
    from emoguide.stages.ingest_media import ingest_media

    d = tmp_path_factory.mktemp("faces")
    data = real("WolfgangLanger_Pexels.mp4").read_bytes()
    truncated = d / "truncated.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.3)])  # header intact, data stops at ~6 s
    c = Corpus.open(d / "corpus", create=True)
    _, summary = ingest_media(
        c, [real("single_face.mp4"), real("no_face.mp4"), truncated, _write_wav(d / "voice.wav")]
    )
    assert summary.count("failed") == 0, summary.outcomes
    text = c.session("notes")
    text.write_source({"kind": "transcript", "path": str(d / "notes.csv")})
    text.write_utterances(schema.empty_utterances())
    return c


def test_run_faces_stage(stage_corpus):
    from emoguide.pipeline.events import Event
    from emoguide.pipeline.runner import run_one
    from emoguide.stages.faces import FacesStage
    from emoguide.vision.faces_stage import FACES_COLUMNS, FaceSettings

    c = stage_corpus
    events: list[Event] = []
    summary = run_one(c, FacesStage(FaceSettings()), on_event=events.append)
    by = {o.item: o for o in summary.outcomes}
    assert by["single_face"].status == "done"
    assert by["no_face"].status == "done"
    assert by["voice"].status == "skipped" and "audio-only" in by["voice"].reason
    assert by["notes"].status == "skipped" and "transcript" in by["notes"].reason
    assert by["truncated"].status == "done" and "truncated or corrupt" in by["truncated"].reason
    assert {e.session for e in events if e.kind == "done"} == {"single_face", "no_face", "truncated"}

    s = c.session("single_face")
    df = pd.read_parquet(s.faces_path)
    assert tuple(df.columns) == FACES_COLUMNS
    assert set(df["track_id"]) == {0}
    assert (df["session_id"] == "single_face").all()
    assert (df["frame_w"] == 640).all() and (df["frame_h"] == 360).all()
    assert df["detector"].unique().tolist() == ["blazeface"]
    assert len(json.loads(df["landmarks"].iloc[0])) == 6
    rec = s.stages.get("faces")
    assert rec["status"] == "done"
    assert rec["frames"]["count"] == 12 and rec["frames"]["fps"] == 5.0
    assert rec["frames"]["first_t"] == 0.0 and rec["frames"]["gaps"] == []
    assert rec["tracks"] == 1 and rec["backends"]["detector"]["detector"] == "blazeface"
    assert c.session("voice").stages.get("faces")["not_applicable"]

    empty = pd.read_parquet(c.session("no_face").faces_path)
    assert tuple(empty.columns) == FACES_COLUMNS and (empty["track_id"] < 0).all()
    trunc = c.session("truncated")
    assert trunc.stages.get("faces")["warnings"]
    tdf = pd.read_parquet(trunc.faces_path)
    assert tdf["track_id"].max() == 0 and tdf["t"].max() < 7.5

    # resume: nothing changed -> skipped; force -> done; other settings -> done again
    run_id = rec["run_id"]
    again = run_one(c, FacesStage(FaceSettings(batch_size=3)), ["single_face"])  # batch size: same output
    assert again.outcomes[0].status == "skipped" and again.outcomes[0].reason == "unchanged"
    assert s.stages.get("faces")["run_id"] == run_id
    assert run_one(c, FacesStage(), ["single_face"], force=True).outcomes[0].status == "done"
    assert s.stages.get("faces")["run_id"] != run_id
    other = run_one(c, FacesStage(FaceSettings(fps=2.0)), ["single_face"])
    assert other.outcomes[0].status == "done"
    assert s.stages.get("faces")["frames"]["count"] == 5


def test_faces_settings_from_corpus_toml():
    from emoguide.config import Settings
    from emoguide.stages.faces import FacesStage

    st = FacesStage.from_corpus_settings(Settings(faces={"detector": "haar", "fps": 2.0}))
    assert st.settings.detector == "haar" and st.settings.fps == 2.0
    assert FacesStage.from_corpus_settings(Settings()).settings.detector == "blazeface"


def test_paper_mode_settings():
    from emoguide.vision.faces_stage import FaceSettings

    eff = FaceSettings(paper_mode=True, detector="haar", fps=2).effective()
    assert eff.detector == "mtcnn" and eff.fps == 30.0
    assert FaceSettings().fingerprint_dict() != FaceSettings(min_score=0.9).fingerprint_dict()
    assert FaceSettings(batch_size=1).fingerprint_dict() == FaceSettings().fingerprint_dict()


def test_missing_media_file_fails_not_crashes(tmp_path):
    from emoguide.corpus import schema
    from emoguide.pipeline.runner import run_one

    c = Corpus.open(tmp_path / "c", create=True)
    s = c.session("gone")
    s.write_source({"kind": "media", "path": str(tmp_path / "gone.mp4"), "probe": {"has_video": True}})
    s.write_utterances(schema.empty_utterances())
    out = run_one(c, "faces")
    assert out.outcomes[0].status == "failed" and "not found" in out.outcomes[0].reason


# ----------------------------------------------------------------------------- blur and export


def test_blur_boxes_removes_detail():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(200, 300, 3), dtype=np.uint8)
    box = (100, 50, 180, 150)
    out = blur_boxes(img, [box])
    assert high_frequency_energy(out, box) < 0.01 * high_frequency_energy(img, box)
    # outside the (grown) box nothing changed
    assert np.array_equal(out[:, :80], img[:, :80])
    assert np.array_equal(blur_boxes(img, []), img)


def test_export_frame_blurs_by_default(stage_corpus, tmp_path):
    from PIL import Image

    from emoguide.pipeline.runner import run_one
    from emoguide.vision.frames import export_frame, read_frame

    c = stage_corpus
    run_one(c, "faces", ["single_face"])
    s = c.session("single_face")
    faces = pd.read_parquet(s.faces_path)
    row = faces[np.isclose(faces["t"], 1.0)].iloc[0]
    box = (row.x1, row.y1, row.x2, row.y2)
    original = read_frame(real("single_face.mp4"), 1.0).image

    blurred = export_frame(c, "single_face", 1.0, tmp_path / "blurred.png", boxes=False)
    sharp = export_frame(c, "single_face", 1.0, tmp_path / "sharp.png", blur=False, boxes=False)
    b = np.asarray(Image.open(blurred).convert("RGB"))
    k = np.asarray(Image.open(sharp).convert("RGB"))
    assert b.shape == original.shape
    assert np.array_equal(k, original)  # blur=False, no boxes: the frame as decoded (PNG)
    e0 = high_frequency_energy(original, box)
    assert high_frequency_energy(b, box) < 0.05 * e0
    assert high_frequency_energy(k, box) == pytest.approx(e0)

    # boxes and labels, JPEG, speaker/role columns used when present
    faces["speaker"] = "B"
    faces["role"] = "patient"
    faces.to_parquet(s.faces_path, index=False)
    jpg = export_frame(c, "single_face", 0.5, tmp_path / "labelled.jpg")
    assert Image.open(jpg).format == "JPEG"
    with pytest.raises(ValueError, match="image format"):
        export_frame(c, "single_face", 0.5, tmp_path / "x.gif")
    with pytest.raises(Exception, match="no frame"):
        export_frame(c, "single_face", 99.0, tmp_path / "late.png")


def test_export_frame_refuses_without_any_face_source(stage_corpus, tmp_path):
    from emoguide.vision.frames import export_frame

    c = stage_corpus
    s = c.session("no_face")
    moved = s.faces_path.with_suffix(".bak")
    if s.faces_path.exists():
        s.faces_path.rename(moved)
    try:
        with pytest.raises(EmoguideError, match="blur"):
            export_frame(c, "no_face", 1.0, tmp_path / "x.png", detector=None)
        # explicit opt-out works
        assert export_frame(c, "no_face", 1.0, tmp_path / "x.png", detector=None, blur=False).exists()
        with pytest.raises(EmoguideError, match="audio-only"):
            export_frame(c, "voice", 0.5, tmp_path / "y.png")
    finally:
        if moved.exists():
            moved.rename(s.faces_path)


def test_high_frequency_energy_sanity():
    flat = np.full((20, 20, 3), 128, np.uint8)
    assert high_frequency_energy(flat) == pytest.approx(0.0, abs=1e-9)
    assert math.isfinite(high_frequency_energy(np.zeros((2, 2), np.uint8)))
