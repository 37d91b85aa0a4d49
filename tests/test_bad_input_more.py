"""More bad input (issue 14): inputs that used to give silently wrong results, and `--wait`.

Like tests/test_bad_input.py, each case asserts the exit code, that the message names the file (or
option) concerned, that no traceback is printed, and that nothing was lost. Media here is a WAV
written with numpy (no ffmpeg needed); decoding it needs PyAV, a core dependency.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_bad_input import TRANSCRIPT, assert_user_error, invoke, snapshot

ENV = {"EMOGUIDE_LOCK_WAIT": "0"}


def utterances(root: Path, sid: str) -> pd.DataFrame:
    return pd.read_parquet(root / "sessions" / sid / "utterances.parquet")


def record(root: Path, sid: str, stage: str) -> dict:
    return json.loads((root / "sessions" / sid / "stages.json").read_text())[stage]


def write_wav(path: Path, seconds: float, sr: int = 16000, clipped: float = 0.0, seed: int = 0) -> Path:
    """A speech-like tone (modulated 220 Hz at -10 dBFS, plus noise); `clipped`: that share of the
    samples set to full scale, in short bursts, as a hot microphone input would give."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t)) + 0.01 * rng.standard_normal(n)
    if clipped:
        burst = 40
        starts = rng.choice(n // burst, int(clipped * n / burst), replace=False) * burst
        for s in starts:
            x[s:s + burst] = np.where(rng.random(burst) < 0.5, 1.0, -1.0)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return path


# ----------------------------------------------------------- one speaker label, two roles

ALTERNATING = (
    "Speaker,Role,Start Time,End Time,Utterance\n"
    "A,therapist,0.0,2.0,How have you been this week?\n"
    "B,patient,2.0,4.0,Not great. I have been feeling low.\n"
    "A,patient,4.0,6.0,And I keep waking up at four.\n"
    "B,patient,6.0,8.0,Getting up is the hardest part.\n"
    "A,therapist,8.0,10.0,That sounds exhausting.\n"
    "A,patient,10.0,12.0,It is. I am fine though really.\n"
)


def test_alternating_role_column_keeps_each_rows_role(tmp_path):
    f = tmp_path / "mixed.csv"
    f.write_text(ALTERNATING)
    res = invoke("ingest", "--corpus", tmp_path / "c", f)
    assert res.exit_code == 0, res.raw
    assert "Traceback" not in res.raw
    # warned where it happens, naming the file, the speaker and the lines of the minority role
    assert "mixed.csv: speaker A is 'therapist' on 2 row(s) and 'patient' on 2" in res.output, res.raw
    assert "line 4" in res.output and "line 7" in res.output, res.raw
    df = utterances(tmp_path / "c", "mixed")
    file_roles = pd.read_csv(f)["Role"].tolist()
    assert df["role"].tolist() == file_roles  # no row takes another row's role
    rec = record(tmp_path / "c", "mixed", "roles")
    assert rec["status"] == "done"
    assert any("both roles" in w and "A: therapist on 2 row(s), patient on 2" in w for w in rec["warnings"]), rec
    # The result confidence is below 1 (was 1.0 with every A row 'patient').
    status = invoke("status", "--corpus", tmp_path / "c")
    assert "both roles" in status.output and "0.50" in status.output, status.raw


def test_override_still_wins_for_a_mixed_speaker(tmp_path):
    f = tmp_path / "mixed.csv"
    f.write_text(ALTERNATING)
    assert invoke("ingest", "--corpus", tmp_path / "c", f).exit_code == 0
    res = invoke("roles", "--corpus", tmp_path / "c", "mixed", "--set", "A=therapist")
    assert res.exit_code == 0, res.raw
    df = utterances(tmp_path / "c", "mixed")
    assert set(df.loc[df["speaker"] == "A", "role"]) == {"therapist"}
    assert set(df.loc[df["speaker"] == "B", "role"]) == {"patient"}
    assert (df["role_given"] == pd.read_csv(f)["Role"]).all()  # what the file said is kept
    assert not any("both roles" in w for w in record(tmp_path / "c", "mixed", "roles")["warnings"])  # settled


def test_consistent_roles_are_given_at_confidence_one_without_a_warning(tmp_path):
    f = tmp_path / "s1.csv"
    f.write_text(TRANSCRIPT)
    res = invoke("ingest", "--corpus", tmp_path / "c", f)
    assert res.exit_code == 0 and "both roles" not in res.output and "warning" not in res.output, res.raw
    rec = record(tmp_path / "c", "s1", "roles")
    assert rec["warnings"] == []
    df = utterances(tmp_path / "c", "s1")
    assert df["role"].tolist() == pd.read_csv(f)["Role"].tolist()


def test_given_roles_confidence_is_the_smallest_majority_share():
    from emoguide.speech.roles import apply_roles, given_roles

    spk = pd.Series(["A", "B", "A", "A", "B"])
    given = pd.Series(["therapist", "patient", "therapist", "patient", "patient"])
    a = given_roles(spk, given)
    assert a.roles == {"A": "therapist", "B": "patient"}
    assert a.confidence == pytest.approx(2 / 3, abs=1e-3)
    df = apply_roles(pd.DataFrame({"speaker": spk}), a, {}, per_row=given)
    assert df["role"].tolist() == given.tolist()
    df = apply_roles(pd.DataFrame({"speaker": spk}), a, {"A": "patient"}, per_row=given)
    assert df["role"].tolist() == ["patient"] * 5


# ----------------------------------------------------------- exact duplicate rows

def test_exact_duplicate_rows_are_reported_with_their_lines_and_dropped_once(tmp_path):
    lines = TRANSCRIPT.splitlines()
    # line 4 of the file repeated (as line 5); a near-duplicate (same text, other time) stays
    text = "\n".join(lines[:4] + [lines[3]] + lines[4:] + ["B,patient,12.0,14.0,Not great. I have been feeling low most days."]) + "\n"
    f = tmp_path / "dups.csv"
    f.write_text(text)
    res = invoke("ingest", "--corpus", tmp_path / "c", f)
    assert res.exit_code == 0, res.raw
    assert "dups.csv: 1 exact duplicate row(s) dropped, the first copy kept (line 5 repeats line 4)" in res.output, res.raw
    df = utterances(tmp_path / "c", "dups")
    assert len(df) == 7
    # nothing else lost: every distinct (start, text) of the file is there once
    src = pd.read_csv(f)
    assert sorted(zip(df["start"], df["text"])) == sorted(set(zip(src["Start Time"], src["Utterance"])))
    # ... and the prompts see the line once
    assert (df["text"] == "Getting up in the morning and going to work.").sum() == 1


def test_duplicates_in_subtitles_and_json_are_reported_too(tmp_path):
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:02,000\nA: Hello there.\n\n"
                   "2\n00:00:00,000 --> 00:00:02,000\nA: Hello there.\n\n"
                   "3\n00:00:02,000 --> 00:00:04,000\nB: Hi.\n\n")
    js = tmp_path / "items.json"
    js.write_text(json.dumps([{"speaker": "A", "start": 0, "end": 1, "text": "Hi"},
                              {"speaker": "B", "start": 1, "end": 2, "text": "Hello"},
                              {"speaker": "B", "start": 1, "end": 2, "text": "Hello"}]))
    res = invoke("ingest", "--corpus", tmp_path / "c", srt, js)
    assert res.exit_code == 0, res.raw
    assert "subs.srt: 1 exact duplicate row(s) dropped" in res.output, res.raw
    assert "items.json: 1 exact duplicate row(s) dropped" in res.output, res.raw
    assert len(utterances(tmp_path / "c", "subs")) == 2
    assert len(utterances(tmp_path / "c", "items")) == 2


def test_annomi_utterances_with_equal_text_and_time_are_not_duplicates(tmp_path):
    from test_bad_input import ANNOMI_HEADER, _annomi_row

    rows = [_annomi_row(1, 0, "therapist", "How are you?"), _annomi_row(1, 1, "client", "Mm-hmm."),
            _annomi_row(1, 2, "client", "Mm-hmm.")]
    f = tmp_path / "annomi.csv"
    f.write_text(ANNOMI_HEADER + "".join(rows))
    res = invoke("ingest", "--corpus", tmp_path / "c", f)
    assert res.exit_code == 0, res.raw
    assert "duplicate" not in res.output, res.raw
    sid = next(p.name for p in (tmp_path / "c" / "sessions").iterdir())
    assert len(utterances(tmp_path / "c", sid)) == 3


# ----------------------------------------------------------- a transcript longer than its media

def _long_transcript(path: Path, starts: list[float], end: float) -> Path:
    rows = ["Speaker,Role,Start Time,End Time,Utterance"]
    for i, s in enumerate(starts):
        e = starts[i + 1] if i + 1 < len(starts) else end
        rows.append(f"{'AB'[i % 2]},{('therapist', 'patient')[i % 2]},{s},{e},Utterance number {i}.")
    path.write_text("\n".join(rows) + "\n")
    return path


STARTS_87 = [0.0, 8.0, 16.0, 24.0, 33.0, 40.0, 48.0, 56.0, 64.0, 72.0, 78.0, 82.0]  # 8 start after 32 s


@pytest.mark.parametrize("order", ["one command", "transcript first", "media first"])
def test_transcript_running_past_the_media_end_warns_naming_both(tmp_path, order):
    wav = write_wav(tmp_path / "talk.wav", 32.0)
    csv = _long_transcript(tmp_path / "talk.csv", STARTS_87, 87.0)
    root = tmp_path / "c"
    if order == "one command":
        outs = [invoke("ingest", "--corpus", root, wav, csv)]
    else:
        first, second = (csv, wav) if order == "transcript first" else (wav, csv)
        outs = [invoke("ingest", "--corpus", root, first), invoke("ingest", "--corpus", root, second)]
    for r in outs:
        assert r.exit_code == 0 and "Traceback" not in r.raw, r.raw
    text = " ".join(r.output for r in outs)
    assert "transcript talk.csv runs to 87.0 s but media talk.wav ends at 32.0 s" in text, text
    assert "8 of 12 utterances start after the media ends" in text, text
    # nothing lost: the pair is one session holding every utterance and the audio
    assert len(utterances(root, "talk")) == 12
    assert (root / "sessions" / "talk" / "audio.wav").exists()
    assert json.loads((root / "sessions" / "talk" / "source.json").read_text())["kind"] == "media"


def test_transcript_within_the_tolerance_of_the_media_end_is_quiet(tmp_path):
    wav = write_wav(tmp_path / "talk.wav", 32.0)
    csv = _long_transcript(tmp_path / "talk.csv", [0.0, 8.0, 16.0, 24.0], 33.0)  # 1 s past: rounding
    res = invoke("ingest", "--corpus", tmp_path / "c", wav, csv)
    assert res.exit_code == 0, res.raw
    assert "runs to" not in res.output, res.raw


def test_pairing_warning_uses_the_longer_of_audio_and_video():
    from emoguide.media.ingest import media_end_s, pairing_warning

    media = {"file_name": "v.mp4", "audio": {"duration_s": 30.0}, "probe": {"duration_s": 60.0, "video": {"duration_s": 60.0}}}
    assert media_end_s(media) == 60.0
    assert pairing_warning(media, {"path": "/x/v.csv", "duration": 61.5}) is None
    w = pairing_warning(media, {"path": "/x/v.csv", "duration": 70.0}, [0.0, 59.0, 61.0, 65.0])
    assert w is not None and "v.csv" in w and "v.mp4" in w and "2 of 4 utterances" in w
    assert pairing_warning({"probe": {}}, {"duration": 99.0}) is None  # unknown media length: no guess


# ----------------------------------------------------------- clipped audio

def test_clipped_recording_warns_and_keeps_its_whole_length(tmp_path):
    wav = write_wav(tmp_path / "hot.wav", 10.0, clipped=0.05)
    res = invoke("ingest", "--corpus", tmp_path / "c", wav)
    assert res.exit_code == 0, res.raw
    assert "hot.wav: audio is clipped: 5% of samples at full scale" in res.output, res.raw
    src = json.loads((tmp_path / "c" / "sessions" / "hot" / "source.json").read_text())
    assert src["audio"]["clipped_fraction"] == pytest.approx(0.05, abs=0.002)
    assert any("clipped" in w for w in src["warnings"])
    # ingest loses no tail: audio.wav is as long as the recording (the lost last utterance of the
    # issue is not an ingest loss)
    with wave.open(str(tmp_path / "c" / "sessions" / "hot" / "audio.wav")) as w:
        assert w.getnframes() == 160000


def test_clean_and_barely_clipped_recordings_do_not_warn(tmp_path):
    clean = write_wav(tmp_path / "clean.wav", 5.0)
    few = write_wav(tmp_path / "few.wav", 5.0, clipped=0.0005)  # 0.05%: under the 0.1% threshold
    res = invoke("ingest", "--corpus", tmp_path / "c", clean, few)
    assert res.exit_code == 0, res.raw
    assert "audio is clipped" not in res.output, res.raw
    src = json.loads((tmp_path / "c" / "sessions" / "few" / "source.json").read_text())
    assert 0 < src["audio"]["clipped_fraction"] < 0.001


def test_clipping_is_measured_after_resampling_from_44k(tmp_path):
    """A hard-clipped 44.1 kHz stereo file (a loud voice into a hot input) is caught too."""
    from emoguide.media.ingest import extract_media

    sr, n = 44100, 44100 * 4
    t = np.arange(n) / sr
    x = np.clip(1.2 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t)), -1, 1)
    pcm = np.repeat((x * 32767).astype("<i2")[:, None], 2, axis=1)
    path = tmp_path / "hard.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    got = extract_media(path, tmp_path / "out.wav")
    assert got.audio.clipped_fraction > 0.01
    assert any("audio is clipped" in w for w in got.warnings)


# ----------------------------------------------------------- --wait on the hand-written verbs

def _hold(root: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the corpus lock for `seconds` (prints `held` once it has it)."""
    code = ("import sys, time; from emoguide.corpus.lock import CorpusLock; "
            f"l = CorpusLock({str(root)!r}, command='emoguide test-holder'); l.acquire(); "
            f"print('held', flush=True); time.sleep({seconds}); l.release()")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.fixture
def held_corpus(tmp_path):
    f = tmp_path / "s1.csv"
    f.write_text(TRANSCRIPT)
    root = tmp_path / "c"
    assert invoke("ingest", "--corpus", root, f).exit_code == 0
    return root, f


WAIT_VERBS = [
    ["ingest", "{f}", "--force"], ["transcribe"], ["faces"], ["roles"], ["affect"], ["dissonance"],
    ["generate", "-m", "echo:x"], ["run"],
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args", WAIT_VERBS, ids=[a[0] for a in WAIT_VERBS])
def test_wait_gives_up_naming_the_holder_and_changes_nothing(held_corpus, args, monkeypatch):
    root, f = held_corpus
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    holder = _hold(root, 30)
    try:
        before = snapshot(root)
        argv = [a.format(f=f) for a in args]
        t0 = time.monotonic()
        res = invoke(argv[0], "--corpus", root, *argv[1:], "--wait", "0.5")
        waited = time.monotonic() - t0
        assert_user_error(res, 1, f"in use by pid {holder.pid}", "emoguide test-holder", "after waiting")
        assert waited >= 0.5
        assert snapshot(root) == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.timeout(120)
def test_wait_long_enough_goes_on_when_the_holder_finishes(held_corpus, monkeypatch):
    root, f = held_corpus
    monkeypatch.setenv("EMOGUIDE_LOCK_WAIT", "0")
    # Held for 4 s, not 1: under load the in-process CLI can take over a second to reach the
    # lock, and a holder already gone makes it never say whom it waited for (a flake seen in CI).
    holder = _hold(root, 4.0)
    try:
        res = invoke("roles", "--corpus", root, "s1", "--set", "A=therapist", "--wait", "30")
        assert res.exit_code == 0, res.raw
        assert f"in use by pid {holder.pid}" in res.output  # it said whom it waited for
        assert json.loads((root / "sessions" / "s1" / "roles.json").read_text())["overrides"] == {"A": "therapist"}
    finally:
        holder.wait(timeout=30)


@pytest.mark.timeout(120)
def test_without_wait_a_second_writer_stops_at_once(held_corpus, monkeypatch):
    root, f = held_corpus
    monkeypatch.setenv("EMOGUIDE_LOCK_WAIT", "0")
    holder = _hold(root, 30)
    try:
        t0 = time.monotonic()
        res = invoke("dissonance", "--corpus", root, "--threshold", "0.4")
        assert time.monotonic() - t0 < 10
        assert_user_error(res, 1, f"in use by pid {holder.pid}", "--wait SECONDS")
        assert "threshold = 0.4" not in (root / "corpus.toml").read_text()  # nothing saved
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------- settings errors: one line, file and key

@pytest.mark.parametrize("section,text,key", [
    ("dissonance", 'threshold = "high"', "dissonance.threshold"),
    ("roles", 'method = "llm"', "roles.llm_model"),
    ("faces", 'detector = "yolo"', "faces.detector"),
])
def test_settings_errors_print_one_line_with_the_file_and_key(held_corpus, section, text, key):
    root, _ = held_corpus
    toml = root / "corpus.toml"
    body = toml.read_text()
    head = f"[{section}]\n"
    assert head in body
    # replace the key's line in its section (a second assignment would be a TOML syntax error)
    name = text.split(" = ")[0]
    lines = body.splitlines()
    i = lines.index(f"[{section}]")
    j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith(f"{name} =")), None)
    if j is None or any(lines[k].startswith("[") for k in range(i + 1, j)):
        lines.insert(i + 1, text)
    else:
        lines[j] = text
    toml.write_text("\n".join(lines) + "\n")
    before = snapshot(root)
    res = invoke("run", "--corpus", root)
    assert_user_error(res, 2, str(toml), key)
    errors = [ln for ln in res.raw.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and str(toml) in errors[0] and key in errors[0], res.raw
    assert snapshot(root) == before


def test_settings_error_is_a_settings_file_error_with_exit_code_2(tmp_path):
    from emoguide.cli import explain
    from emoguide.config import SettingsError
    from emoguide.errors import InputError, SettingsFileError

    err = SettingsError(tmp_path / "corpus.toml", "must be > 0", "dissonance.threshold")
    assert isinstance(err, SettingsFileError) and isinstance(err, InputError) and isinstance(err, ValueError)
    code, lines = explain(err)
    assert code == 2
    assert lines[0] == f"{tmp_path / 'corpus.toml'}: dissonance.threshold: must be > 0"


def test_transcript_only_session_is_told_it_has_no_video_not_to_run_faces(tmp_path):
    """face_affect on a session that came from a transcript: the reason says so in the user's
    words, not "no faces.parquet (run the faces stage first)"."""
    from emoguide.corpus import Corpus
    from emoguide.pipeline.stage import NotApplicable, SessionView
    from emoguide.stages.face_affect import FaceAffectStage

    f = tmp_path / "talk.csv"
    f.write_text(TRANSCRIPT)
    res = invoke("ingest", "--corpus", tmp_path / "c", f)
    assert res.exit_code == 0, res.raw
    c = Corpus.open(tmp_path / "c")
    (sid,) = c.session_ids()
    with pytest.raises(NotApplicable) as err:
        FaceAffectStage().run(SessionView(c.root, sid))
    assert "no video in this session" in str(err.value) and "transcript" in str(err.value)
    assert "faces.parquet" not in str(err.value)
