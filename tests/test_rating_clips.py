"""Rating clips cut for real with PyAV from the demo video: codecs, duration, faststart, blur."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emoguide.cli import app
from emoguide.errors import InputError
from emoguide.evaluation.rating.clips import FaceBlur, cut_clip
from emoguide.evaluation.rating.store import RatingStore
from emoguide.vision.blur import high_frequency_energy
from eval_fixtures import DEMO_VIDEO, eval_corpus

av = pytest.importorskip("av", reason="PyAV (the media extra) cuts the clips")


def _streams(path: Path):
    with av.open(str(path)) as c:
        v = c.streams.video[0] if c.streams.video else None
        a = c.streams.audio[0] if c.streams.audio else None
        fps = float(v.average_rate) if v is not None else None
        vcodec = v.codec_context.name if v is not None else None
        acodec = a.codec_context.name if a is not None else None
        duration = c.duration / av.time_base if c.duration else None
        frames = sum(1 for _ in c.decode(video=0)) if v is not None else 0
    return vcodec, acodec, fps, duration, frames


def _frame_at(path: Path, t: float) -> np.ndarray:
    with av.open(str(path)) as c:
        best = None
        for f in c.decode(video=0):
            if best is None or abs(f.time - t) < abs(best[0] - t):
                best = (f.time, f.to_ndarray(format="rgb24"))
            if f.time > t + 0.5:
                break
    return best[1]


@pytest.mark.slow  # real H.264 encoding, > 5 s on a small machine
def test_video_clip_is_h264_aac_faststart_and_the_window_long(tmp_path):
    out = tmp_path / "clip.mp4"
    info = cut_clip(DEMO_VIDEO, out, 3.0, 9.5, kind="video")
    vcodec, acodec, fps, duration, frames = _streams(out)
    assert (vcodec, acodec) == ("h264", "aac")
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    window = 9.5 - 3.0
    assert abs(frames / fps - window) <= 2 / fps  # within two frames
    assert abs(duration - window) <= 2 / fps + 0.05  # the container's duration (audio included)
    head = out.read_bytes()
    assert head.find(b"moov") < head.find(b"mdat")  # +faststart: the index comes first
    # the first frame of the clip is the source frame at the window's start
    src, clip = _frame_at(DEMO_VIDEO, 3.0), _frame_at(out, 0.0)
    assert src.shape == clip.shape and np.abs(src.astype(int) - clip.astype(int)).mean() < 6


def test_audio_clip_is_aac_m4a(tmp_path):
    out = tmp_path / "clip.m4a"
    info = cut_clip(DEMO_VIDEO, out, 1.0, 4.0, kind="audio")
    vcodec, acodec, _, duration, _ = _streams(out)
    assert vcodec is None and acodec == "aac"
    assert abs(info.duration - 3.0) < 0.01 and abs(duration - 3.0) < 0.06


def test_bad_media_is_an_input_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(InputError, match="broken.mp4"):
        cut_clip(bad, tmp_path / "x.mp4", 0.0, 2.0)
    with pytest.raises(InputError, match="missing.mp4"):
        cut_clip(tmp_path / "missing.mp4", tmp_path / "x.mp4", 0.0, 2.0)
    with pytest.raises(InputError, match="after the end"):
        cut_clip(DEMO_VIDEO, tmp_path / "x.mp4", 500.0, 510.0)
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / "x.mp4").exists()


def test_blurred_clip_removes_the_detail_in_the_face_boxes(tmp_path):
    src = _frame_at(DEMO_VIDEO, 2.0)
    h, w = src.shape[:2]
    # the most detailed quarter of the frame stands in for a face (boxes as faces.parquet has them)
    quads = [(x, y, x + w // 2, y + h // 2) for x in (0, w // 2) for y in (0, h // 2)]
    box = max(quads, key=lambda b: high_frequency_energy(src, b))
    inner = (box[0] + 0.2 * w / 2, box[1] + 0.2 * h / 2, box[2] - 0.2 * w / 2, box[3] - 0.2 * h / 2)
    faces = pd.DataFrame({"t": np.arange(0, 6, 0.2), "x1": inner[0], "y1": inner[1], "x2": inner[2], "y2": inner[3]})
    out = tmp_path / "blurred.mp4"
    cut_clip(DEMO_VIDEO, out, 1.0, 4.0, kind="video", blur=FaceBlur(faces, tolerance_s=0.2))
    clip = _frame_at(out, 1.0)
    plain = high_frequency_energy(src, inner)
    assert plain > 0 and high_frequency_energy(clip, inner) < 0.1 * plain
    with pytest.raises(Exception, match="cannot blur faces"):
        FaceBlur(None, detector=None)


@pytest.mark.slow  # real H.264 encoding, > 5 s on a small machine
def test_blurred_study_uses_faces_parquet(tmp_path):
    c = eval_corpus(tmp_path)
    s1 = c.session("s1")
    pd.DataFrame({"session_id": "s1", "t": np.arange(0, 32, 0.2), "x1": 10.0, "y1": 10.0, "x2": 120.0, "y2": 120.0}).to_parquet(s1.faces_path)
    cfg = tmp_path / "study.toml"
    cfg.write_text(textwrap.dedent("""
        [study]
        video = "blurred"
        [raters]
        count = 1
    """))
    res = CliRunner().invoke(app, ["rate", "init", "--corpus", str(c.root), "--config", str(cfg)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "clips: 2 video, 2 none" in " ".join(res.output.split())
    st = RatingStore.open(Path(c.root) / "ratings.sqlite")
    assert st.study().video_mode == "blurred"
    names = {r[0] for r in st.connection().execute("SELECT clip_name FROM contexts WHERE clip_name IS NOT NULL")}
    assert len(names) == 2 and all(st.clip_file(n) is not None for n in names)


def test_audio_only_session_gets_an_m4a(tmp_path):
    c = eval_corpus(tmp_path)
    s1 = c.session("s1")
    src = s1.read_source()
    s1.write_source({**src, "probe": {"duration_s": 32.0, "has_video": False, "has_audio": True}})
    res = CliRunner().invoke(app, ["rate", "init", "--corpus", str(c.root), "--raters", "1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "clips: 2 audio, 2 none" in " ".join(res.output.split())
    st = RatingStore.open(Path(c.root) / "ratings.sqlite")
    rows = st.connection().execute("SELECT media_kind, clip_name FROM contexts WHERE clip_name IS NOT NULL").fetchall()
    assert len(rows) == 2 and all(k == "audio" and n.endswith(".m4a") for k, n in rows)
    vcodec, acodec, _, duration, _ = _streams(st.clip_file(rows[0][1]))
    assert vcodec is None and acodec == "aac" and abs(duration - 13.5) < 0.1
