"""Media: probe, streamed decoding, URL lists/downloads, and ingest into a corpus.

Real clips come from ../shared/data/media (skipped when absent); the rest (no audio track, silent
track, variable frame rate, rotation, broken files) are generated here with PyAV.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

av = pytest.importorskip("av", reason="PyAV (the media extra) is not installed")

from emoguide.config import MediaSettings  # noqa: E402
from emoguide.corpus.layout import Corpus  # noqa: E402
from emoguide.errors import InputError  # noqa: E402
from emoguide.media import (  # noqa: E402
    MEDIA_EXTENSIONS,
    DownloadError,
    download,
    extract_audio_wav,
    iter_audio,
    iter_frames,
    looks_like_url_list,
    media_digest,
    probe,
    read_url_list,
)
from emoguide.media import ingest as ingest_mod  # noqa: E402
from emoguide.stages.ingest_media import ingest_media  # noqa: E402

MEDIA = Path(__file__).resolve().parents[1].parent / "shared/data/media"


def real(name: str) -> Path:
    path = MEDIA / name
    if not path.exists():
        pytest.skip(f"shared test media not found: {path}")
    return path


# ----------------------------------------------------------------------------- synthetic media


def make_media(
    path: Path,
    *,
    times: list[float] | None = None,
    fps: int = 25,
    seconds: float = 2.0,
    size: tuple[int, int] = (96, 64),
    audio: str | None = None,
    audio_seconds: float | None = None,
    rotation: int = 0,
    sample_rate: int = 16000,
) -> Path:
    """An H.264 MP4 with frames at `times` (s) and optionally an AAC track ('silent' | 'tone').

    The top-left quarter of every frame is red, so orientation can be checked.
    """
    w, h = size
    if times is None:
        times = [i / fps for i in range(int(round(seconds * fps)))]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.time_base = Fraction(1, 1000)
        v.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = out.add_stream("aac", rate=sample_rate)
            a.layout = "mono"
        for i, t in enumerate(times):
            img = np.zeros((h, w, 3), np.uint8)
            img[: h // 2, : w // 2] = (255, 0, 0)
            img[h // 2 :, :, 2] = min(255, i * 3)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = int(round(t * 1000))
            frame.time_base = Fraction(1, 1000)
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            dur = audio_seconds if audio_seconds is not None else times[-1] + 1 / fps
            n = int(dur * sample_rate)
            tt = np.arange(n) / sample_rate
            x = (
                np.zeros(n, np.float32)
                if audio == "silent"
                else (0.5 * np.sin(2 * np.pi * 440 * tt)).astype(np.float32)
            )
            for s0 in range(0, n, 1024):
                frame = av.AudioFrame.from_ndarray(x[None, s0 : s0 + 1024], format="flt", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = s0
                frame.time_base = Fraction(1, sample_rate)
                for p in a.encode(frame):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)
    return path


VFR_TIMES = [i / 30 for i in range(30)] + [1 + i * 0.1 for i in range(1, 21)]  # 30 fps, then 10 fps


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    files = {
        "tone": make_media(d / "tone.mp4", audio="tone", seconds=2.0),
        "noaudio": make_media(d / "noaudio.mp4", seconds=2.0),
        "silent": make_media(d / "silent.mp4", audio="silent", seconds=2.0),
        "short_audio": make_media(d / "short_audio.mp4", audio="tone", seconds=3.0, audio_seconds=1.0),
        "vfr": make_media(d / "vfr.mp4", times=VFR_TIMES, fps=30),
        "rotated": make_media(d / "rotated.mp4", rotation=90, seconds=1.0, audio="tone"),
    }
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    text = d / "notes.mp4"
    text.write_text("this is a text file, renamed to .mp4\n")
    # PyAV writes the MP4 index (moov) at the end: cutting the file loses the header.
    data = files["tone"].read_bytes()
    (d / "cut_header.mp4").write_bytes(data[: int(len(data) * 0.3)])
    files.update(empty=empty, text=text, cut_header=d / "cut_header.mp4")
    return files


@pytest.fixture(scope="module")
def truncated_real(tmp_path_factory) -> Path:
    """The first 30% of a real MP4 whose index is up front: the header is fine, the data stops."""
    src = real("WolfgangLanger_Pexels.mp4")
    out = tmp_path_factory.mktemp("trunc") / "truncated.mp4"
    data = src.read_bytes()
    out.write_bytes(data[: int(len(data) * 0.3)])
    return out


def wav_params(path: Path) -> tuple[int, int, int, int]:
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


# ----------------------------------------------------------------------------- probe


def test_probe_real_mp4():
    path = real("WolfgangLanger_Pexels.mp4")
    p = probe(path)
    assert p.duration_s == pytest.approx(19.69, abs=0.05)
    assert "mp4" in p.format
    assert p.size_bytes == path.stat().st_size
    v = p.video
    assert (v.codec, v.width, v.height) == ("h264", 640, 360)
    assert v.avg_fps == pytest.approx(24000 / 1001, rel=1e-3)
    assert v.nominal_fps == pytest.approx(24000 / 1001, rel=1e-3)
    assert not v.variable_frame_rate
    assert v.rotation == 0
    assert v.n_frames == 472
    a = p.audio
    assert (a.codec, a.sample_rate, a.channels) == ("aac", 48000, 2)
    assert a.duration_s == pytest.approx(19.69, abs=0.05)
    assert p.has_audio and not p.audio_shorter_than_video and p.warnings == []
    d = json.loads(json.dumps(p.to_dict()))
    assert d["has_audio"] is True and d["video"]["codec"] == "h264"


def test_probe_real_clips():
    p = probe(real("face_noface.mov"))
    assert p.audio_shorter_than_video
    assert any("shorter than the video" in w for w in p.warnings)
    assert p.audio.start_s == pytest.approx(2.43, abs=0.01)

    p = probe(real("noface_face.mov"))
    assert p.video.codec == "hevc"
    assert p.video.nominal_fps == pytest.approx(120)
    assert p.video.variable_frame_rate  # 169 frames in 6.4 s at a nominal 120 fps

    p = probe(real("single_face.mp4"))
    assert p.audio.codec.startswith("mp3")
    assert not p.audio_shorter_than_video

    p = probe(real("no_face.mp4"))
    assert not p.audio_shorter_than_video and p.video.rotation == 0


def test_probe_synthetic(synth):
    p = probe(synth["noaudio"])
    assert not p.has_audio and p.audio is None and p.video is not None
    assert p.to_dict()["has_audio"] is False

    p = probe(synth["vfr"])
    assert p.video.variable_frame_rate
    assert "spacing varies" in p.video.vfr_evidence
    assert not probe(synth["tone"]).video.variable_frame_rate

    p = probe(synth["rotated"])
    assert p.video.rotation == 90
    assert (p.video.width, p.video.height) == (96, 64)
    assert (p.video.display_width, p.video.display_height) == (64, 96)

    p = probe(synth["short_audio"])
    assert p.audio_shorter_than_video and p.audio.duration_s == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(
    "name, problem",
    [
        ("empty", "empty file (0 bytes)"),
        ("text", "not a readable media file"),
        ("cut_header", "corrupt or truncated header"),
    ],
)
def test_probe_bad_files(synth, name, problem):
    with pytest.raises(InputError) as exc:
        probe(synth[name])
    assert problem in str(exc.value)
    assert exc.value.path == str(synth[name])


def test_probe_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        probe(tmp_path / "nope.mp4")


# ----------------------------------------------------------------------------- audio


@pytest.mark.parametrize("name", ["single_face.mp4", "no_face.mp4", "WolfgangLanger_Pexels.mp4"])
def test_extract_audio_matches_probe(tmp_path, name):
    path = real(name)
    p = probe(path)
    out = tmp_path / "audio.wav"
    info = extract_audio_wav(path, out)
    assert abs(info.duration_s - p.audio.duration_s) < 0.1
    sr, ch, width, n = wav_params(out)
    assert (sr, ch, width) == (16000, 1, 2)
    assert n == info.samples
    assert info.warnings == []
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_extract_audio_silent_and_tone(tmp_path, synth):
    info = extract_audio_wav(synth["silent"], tmp_path / "s.wav")
    assert info.silent and info.peak == 0.0
    info = extract_audio_wav(synth["tone"], tmp_path / "t.wav")
    assert not info.silent
    assert info.peak == pytest.approx(0.5, abs=0.05)
    assert info.rms == pytest.approx(0.5 / np.sqrt(2), abs=0.03)
    # The real Pexels clip's track is digital silence.
    assert extract_audio_wav(real("WolfgangLanger_Pexels.mp4"), tmp_path / "w.wav").silent


def test_extract_audio_late_start_is_padded(tmp_path):
    """face_noface.mov's audio starts at 2.43 s: the WAV keeps media time (zeros before)."""
    path = real("face_noface.mov")
    out = tmp_path / "a.wav"
    info = extract_audio_wav(path, out)
    assert info.start_s == pytest.approx(2.43, abs=0.01)
    assert info.duration_s == pytest.approx(2.43 + 3.99, abs=0.1)
    with wave.open(str(out), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert not x[: int(2.4 * 16000)].any()
    assert x[int(2.5 * 16000) :].any()


def test_iter_audio_windows(synth):
    chunks = list(iter_audio(synth["tone"], sample_rate=8000, window_s=0.5))
    assert [round(t, 6) for t, _ in chunks] == [0.0, 0.5, 1.0, 1.5, 2.0][: len(chunks)]
    assert all(c.dtype == np.float32 and c.ndim == 1 for _, c in chunks)
    assert all(c.size == 4000 for _, c in chunks[:-1])
    assert 0 < chunks[-1][1].size <= 4000
    total = sum(c.size for _, c in chunks) / 8000
    assert total == pytest.approx(2.0, abs=0.1)


def test_iter_audio_no_track(synth):
    with pytest.raises(InputError, match="no audio track"):
        list(iter_audio(synth["noaudio"]))


# ----------------------------------------------------------------------------- frames


def test_frames_by_timestamp_high_fps_hevc():
    """noface_face.mov: HEVC at a nominal 120 fps; 5 fps sampling gives ~32 frames 0.2 s apart."""
    frames = list(iter_frames(real("noface_face.mov"), fps=5.0))
    assert 30 <= len(frames) <= 33
    ts = np.array([f.t for f in frames])
    assert ts[0] == pytest.approx(0.0, abs=0.05)
    assert np.all(np.diff(ts) > 0)
    assert np.allclose(np.diff(ts), 0.2, atol=0.05)
    for f in frames:
        assert f.image.shape == (540, 960, 3) and f.image.dtype == np.uint8
        assert f.target - 1e-3 <= f.t < f.target + 0.05


def test_frames_seek_window():
    path = real("WolfgangLanger_Pexels.mp4")
    step = 1001 / 24000
    frames = list(iter_frames(path, fps=5.0, start=10.1, end=12.0))
    assert [f.target for f in frames] == pytest.approx([10.2 + 0.2 * i for i in range(10)])
    for f in frames:
        assert f.target - 1e-3 <= f.t < f.target + step + 1e-3  # first frame at/after the target
        assert (f.t / step) == pytest.approx(round(f.t / step), abs=1e-3)  # a real frame time
    near = list(iter_frames(path, fps=5.0, start=10.1, end=12.0, mode="nearest"))
    assert len(near) == len(frames)
    assert all(abs(f.t - f.target) <= step / 2 + 1e-3 for f in near)


def test_frames_variable_frame_rate(synth):
    """Times come from the frames, not the index: 30 fps for 1 s, then 10 fps."""
    frames = list(iter_frames(synth["vfr"], fps=5.0))
    real_times = np.array(VFR_TIMES)
    ts = [f.t for f in frames]
    assert ts[-1] == pytest.approx(3.0, abs=1e-3)  # index/30 would end at 50/30 = 1.67 s
    for f in frames:
        assert np.min(np.abs(real_times - f.t)) < 2e-3
        assert f.target - 1e-3 <= f.t < f.target + 0.1 + 1e-3
    # Sampling faster than the video: every frame once, never repeated.
    dense = list(iter_frames(synth["vfr"], fps=50.0, start=1.05))
    assert [round(f.t, 2) for f in dense] == [round(t, 2) for t in VFR_TIMES if t >= 1.05]


def test_frames_rotation_applied(synth):
    frames = list(iter_frames(synth["rotated"], fps=5.0))
    img = frames[0].image
    assert img.shape == (96, 64, 3) and frames[0].rotation == 90
    # Stored red top-left, turned 90 degrees counter-clockwise: red at the bottom-left.
    assert img[-5, 5, 0] > 200 and img[-5, 5, 1] < 60
    assert img[5, 5, 0] < 60
    raw = next(iter_frames(synth["rotated"], fps=5.0, rotate=False)).image
    assert raw.shape == (64, 96, 3)


def test_truncated_data_keeps_what_decoded(tmp_path, truncated_real):
    p = probe(truncated_real)  # the header is intact
    assert p.duration_s == pytest.approx(19.69, abs=0.05)
    info = extract_audio_wav(truncated_real, tmp_path / "a.wav")
    assert 3.0 < info.duration_s < 10.0
    assert any("truncated or corrupt" in w for w in info.warnings)
    warnings: list[str] = []
    frames = list(iter_frames(truncated_real, fps=5.0, warnings=warnings))
    assert 10 < len(frames) < 60
    assert any("truncated or corrupt" in w for w in warnings)


# ----------------------------------------------------------------------------- ingest


def test_media_extensions():
    for ext in ("mp4", "mov", "mkv", "webm", "avi", "m4v", "m4a", "wav", "mp3", "flac", "ogg", "opus", "aac"):
        assert f".{ext}" in MEDIA_EXTENSIONS


def test_ingest_batch_with_bad_files(tmp_path, synth, truncated_real):
    corpus = Corpus.open(tmp_path / "corpus", create=True)
    seen = []
    inputs = [
        real("single_face.mp4"),
        real("face_noface.mov"),
        synth["noaudio"],
        synth["silent"],
        synth["empty"],
        synth["text"],
        synth["cut_header"],
        truncated_real,
    ]
    ids, summary = ingest_media(corpus, inputs, settings=MediaSettings(), on_progress=seen.append)
    assert len(seen) == len(inputs) == len(summary.outcomes)
    assert (summary.count("done"), summary.count("skipped"), summary.count("failed")) == (5, 0, 3)
    assert ids == ["single_face", "face_noface", "noaudio", "silent", "truncated"]
    assert corpus.session_ids() == sorted(ids)
    by = {o.item.split(" ")[0]: o for o in summary.outcomes}
    assert "empty file (0 bytes)" in by["empty"].reason
    assert "not a readable media file" in by["notes"].reason
    assert "truncated header" in by["cut_header"].reason
    assert "no audio track: transcript stages will skip" in by["noaudio"].reason
    assert "silent" in by["silent"].reason
    assert "shorter than the video" in by["face_noface"].reason
    assert "truncated or corrupt" in by["truncated"].reason
    for bad in ("empty", "notes", "cut_header"):
        assert not (corpus.sessions_dir / bad).exists()

    s = corpus.session("single_face")
    src = s.read_source()
    assert src["kind"] == "media" and src["origin"] == str(real("single_face.mp4"))
    assert src["probe"]["video"]["codec"] == "h264" and src["audio"]["file"] == "audio.wav"
    assert wav_params(s.path / "audio.wav")[:3] == (16000, 1, 2)
    assert abs(wav_params(s.path / "audio.wav")[3] / 16000 - src["probe"]["audio"]["duration_s"]) < 0.1
    utt = s.read_utterances()
    assert isinstance(utt, pd.DataFrame) and len(utt) == 0
    rec = s.stages.get("ingest_media")
    assert rec["status"] == "done" and "audio.wav" in rec["outputs"]
    assert rec["settings"]["settings"]["sample_rate"] == 16000 and "av" in rec["versions"]

    na = corpus.session("noaudio")
    assert not (na.path / "audio.wav").exists()
    assert na.read_source()["audio"] is None
    assert "no audio track: transcript stages will skip" in na.stages.get("ingest_media")["warnings"]


def test_ingest_resume_and_force(tmp_path, synth):
    corpus = Corpus.open(tmp_path / "c", create=True)
    files = [synth["tone"], synth["noaudio"]]
    _, s1 = ingest_media(corpus, files, settings=MediaSettings())
    assert s1.count("done") == 2
    ids, s2 = ingest_media(corpus, files, settings=MediaSettings())
    assert (s2.count("skipped"), s2.count("done")) == (2, 0) and ids == ["tone", "noaudio"]
    _, s3 = ingest_media(corpus, files, settings=MediaSettings(), force=True)
    assert s3.count("done") == 2
    # Frame rate does not change the media stage's outputs; the sample rate does.
    _, s4 = ingest_media(corpus, files, settings=MediaSettings(frame_rate=2.0))
    assert s4.count("skipped") == 2
    _, s5 = ingest_media(corpus, [synth["tone"]], settings=MediaSettings(sample_rate=8000))
    assert s5.count("done") == 1
    assert wav_params(corpus.session("tone").path / "audio.wav")[0] == 8000
    # A deleted output makes the stage stale.
    (corpus.session("tone").path / "audio.wav").unlink()
    _, s6 = ingest_media(corpus, [synth["tone"]], settings=MediaSettings(sample_rate=8000))
    assert s6.count("done") == 1


def test_ingest_folder_and_id_collision(tmp_path, synth):
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "session.mp4").write_bytes(synth["tone"].read_bytes())
    (a / "readme.md").write_text("not media")
    (b / "session.mp4").write_bytes(synth["noaudio"].read_bytes())
    corpus = Corpus.open(tmp_path / "c", create=True)
    ids, summary = ingest_media(corpus, [a, b], settings=MediaSettings())
    assert ids == ["session"]
    assert (summary.count("done"), summary.count("failed")) == (1, 1)
    assert "also comes from" in summary.failed[0].reason and str(a / "session.mp4") in summary.failed[0].reason
    # In a later batch the existing session is protected too.
    _, again = ingest_media(corpus, [b / "session.mp4"], settings=MediaSettings())
    assert again.count("failed") == 1 and "already exists" in again.failed[0].reason


def test_ingest_replaced_file_and_rerun_from_source(tmp_path, synth):
    from emoguide.pipeline.runner import run_one
    from emoguide.stages.ingest_media import IngestMediaSettings, IngestMediaStage

    corpus = Corpus.open(tmp_path / "c", create=True)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(synth["tone"].read_bytes())
    _, s1 = ingest_media(corpus, [clip])
    session = corpus.session("clip")
    assert s1.count("done") == 1 and (session.path / "audio.wav").exists()
    # The same path now holds a file with no audio track: the old audio.wav must not survive.
    clip.write_bytes(synth["noaudio"].read_bytes())
    _, s2 = ingest_media(corpus, [clip])
    assert s2.count("done") == 1, s2.outcomes
    assert not (session.path / "audio.wav").exists() and session.read_source()["audio"] is None
    _, s3 = ingest_media(corpus, [clip])
    assert s3.count("skipped") == 1
    # A stage run without payloads (`emoguide run ingest_media`) re-extracts from source.json.
    clip.write_bytes(synth["tone"].read_bytes())
    summary = run_one(corpus, IngestMediaStage(IngestMediaSettings(sample_rate=8000)))
    assert summary.count("done") == 1, summary.outcomes
    assert wav_params(session.path / "audio.wav")[0] == 8000
    assert session.read_source()["audio"]["sample_rate"] == 8000


def test_media_digest_samples_large_files(tmp_path, monkeypatch):
    f = tmp_path / "big.bin"
    f.write_bytes(bytes(range(256)) * 40_000)  # ~10 MB
    whole = media_digest(f)
    assert whole.startswith("sha256:")
    monkeypatch.setattr(ingest_mod, "FULL_HASH_MAX_BYTES", 1 << 20)
    d1 = media_digest(f)
    assert d1.startswith("sampled:") and d1 == media_digest(f)
    data = bytearray(f.read_bytes())
    data[10] ^= 0xFF  # a change in the header block is seen
    f.write_bytes(bytes(data))
    assert media_digest(f) != d1


# ----------------------------------------------------------------------------- URLs


def test_read_url_list(tmp_path):
    f = tmp_path / "list.urls"
    f.write_text(
        "# sessions to fetch\n\nhttps://example.org/a.mp4\n"
        "http://example.org/b  # trailing note\nhttps://example.org/a.mp4\n"
    )
    assert read_url_list(f) == ["https://example.org/a.mp4", "http://example.org/b"]
    assert looks_like_url_list(f)
    t = tmp_path / "list.txt"
    t.write_text("https://example.org/a.mp4\n")
    assert looks_like_url_list(t)
    t2 = tmp_path / "transcript.txt"
    t2.write_text("Therapist: hello\n")
    assert not looks_like_url_list(t2)
    bad = tmp_path / "bad.urls"
    bad.write_text("https://example.org/a.mp4\nftp://example.org/x\n")
    with pytest.raises(InputError) as exc:
        read_url_list(bad)
    assert exc.value.line == 2


def test_download_offline_fails_fast(tmp_path):
    pytest.importorskip("yt_dlp")
    for url in ("https://emoguide-test.invalid/session.mp4", "http://127.0.0.1:9/session.mp4"):
        t0 = time.perf_counter()
        with pytest.raises(DownloadError) as exc:
            download(url, tmp_path, retries=3)
        assert time.perf_counter() - t0 < 5.0
        assert url in str(exc.value) and exc.value.offline
        assert "cannot reach the host" in str(exc.value)


def test_ingest_url_list_offline_goes_on(tmp_path, synth):
    pytest.importorskip("yt_dlp")
    urls = tmp_path / "sessions.urls"
    urls.write_text(
        "https://emoguide-test.invalid/one.mp4\n# a comment\nhttp://127.0.0.1:9/two.mp4\n"
    )
    corpus = Corpus.open(tmp_path / "c", create=True)
    t0 = time.perf_counter()
    ids, summary = ingest_media(
        corpus,
        [urls, "https://emoguide-test.invalid/three.mp4", synth["tone"]],
        settings=MediaSettings(),
    )
    assert time.perf_counter() - t0 < 10.0
    assert ids == ["tone"]
    assert (summary.count("done"), summary.count("failed")) == (1, 3)
    reasons = [o.reason for o in summary.failed]
    for url, reason in zip(
        [
            "https://emoguide-test.invalid/one.mp4",
            "http://127.0.0.1:9/two.mp4",
            "https://emoguide-test.invalid/three.mp4",
        ],
        reasons,
    ):
        assert url in reason


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401 - keep test output clean
        pass


@pytest.fixture
def local_server(tmp_path, synth):
    root = tmp_path / "www"
    root.mkdir()
    (root / "talk.mp4").write_bytes(synth["tone"].read_bytes())
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_ingest_url_downloads_once(tmp_path, local_server):
    pytest.importorskip("yt_dlp")
    url = f"{local_server}/talk.mp4"
    corpus = Corpus.open(tmp_path / "c", create=True)
    ids, summary = ingest_media(corpus, [url], settings=MediaSettings())
    assert summary.count("done") == 1, summary.outcomes
    (sid,) = ids
    src = corpus.session(sid).read_source()
    assert src["url"] == url and src["origin"] == url
    assert Path(src["path"]).parent == corpus.root / "media"
    assert "licence" in src and "licence_note" in src
    assert (corpus.session(sid).path / "audio.wav").exists()
    index = json.loads((corpus.root / "media" / "downloads.json").read_text())
    assert url in index
    # Second run: the download is reused and the session is unchanged.
    ids2, again = ingest_media(corpus, [url], settings=MediaSettings())
    assert ids2 == ids and again.count("skipped") == 1
