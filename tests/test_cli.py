"""The CLI as a user drives it (typer's runner, real files, real corpus on disk)."""

import json

import pandas as pd
from typer.testing import CliRunner

from emoguide.cli import app
from emoguide.demo import demo_files

runner = CliRunner(env={"COLUMNS": "200"})  # wide enough that rich does not fold file paths


class Result:
    """Exit code and output with whitespace normalised (rich wraps long lines)."""

    def __init__(self, res):
        self.exit_code = res.exit_code
        self.output = " ".join(res.output.split())


def invoke(*args):
    return Result(runner.invoke(app, [str(a) for a in args], catch_exceptions=False))


def test_help_lists_every_verb():
    res = invoke("--help")
    assert res.exit_code == 0
    for verb in ("ingest", "affect", "dissonance", "prompts", "generate", "export", "demo", "status", "conditions"):
        assert verb in res.output
    res = invoke("generate", "--help")
    assert "provider:model" in res.output and "--condition" in res.output


def test_text_path_through_the_cli(tmp_path):
    transcript, affect = demo_files()
    bad = tmp_path / "broken.csv"
    bad.write_text("Speaker,Start Time,End Time,Utterance\nA,00:00:01,oops,Hello\n")
    corpus = tmp_path / "c"

    res = invoke("ingest", "--corpus", corpus, transcript, bad)
    assert res.exit_code == 1  # one file failed...
    assert "broken.csv" in res.output and "line 2" in res.output
    assert (corpus / "sessions" / "sample_session" / "utterances.parquet").exists()  # ...the other imported

    res = invoke("ingest", "--corpus", corpus, transcript)
    assert res.exit_code == 0 and "skipped" in res.output  # resume: unchanged

    assert invoke("affect", "--corpus", corpus, "--from-csv", affect).exit_code == 0
    res = invoke("dissonance", "--corpus", corpus)
    assert res.exit_code == 0
    df = pd.read_parquet(corpus / "sessions" / "sample_session" / "utterances.parquet")
    patient = df[df["role"] == "patient"]
    assert patient["dissonance"].notna().all() and df.loc[df["role"] == "therapist", "dissonance"].isna().all()
    assert patient["dissonance"].sum() >= 1

    saved = tmp_path / "prompts.jsonl"
    res = invoke("prompts", "--corpus", corpus, "--limit", 1, "--save", saved)
    assert res.exit_code == 0
    assert "Your response must be in the form: [Technique] [Your Response]" in res.output
    items = [json.loads(line) for line in saved.read_text().splitlines()]
    assert {i["condition"] for i in items} == {"base", "discrete", "continuous", "dissonance"}
    assert all(i["status"] == "ok" for i in items)
    diss = [i for i in items if i["condition"] == "dissonance"]
    assert any("(emotional dissonance)" in i["prompt"] for i in diss)

    res = invoke("dissonance", "--corpus", corpus, "--threshold", 0.95)
    assert res.exit_code == 0
    assert "threshold = 0.95" in (corpus / "corpus.toml").read_text()

    out = tmp_path / "flat.jsonl"
    res = invoke("export", "--corpus", corpus, "--out", out, "--transcripts", tmp_path / "tr", "--transcript-format", "vtt")
    assert res.exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and rows[1]["voice_source"] == "demo:hand-written-illustrative"
    assert (tmp_path / "tr" / "sample_session.vtt").read_text().startswith("WEBVTT")

    res = invoke("status", "--corpus", corpus)
    assert res.exit_code == 0 and "dissonance" in res.output and "affect_import" in res.output


def test_missing_corpus_is_a_clear_error(tmp_path):
    res = invoke("dissonance", "--corpus", tmp_path / "none")
    assert res.exit_code == 2 and "not an emoguide corpus" in res.output


def test_prompts_without_affect_report_missing_inputs(tmp_path):
    transcript, _ = demo_files()
    corpus = tmp_path / "c"
    assert invoke("ingest", "--corpus", corpus, transcript).exit_code == 0
    res = invoke("prompts", "--corpus", corpus, "--condition", "base,discrete", "--limit", 0)
    assert "missing_inputs" in res.output and "needs labels" in res.output
    assert "prompts:discrete" in res.output and "skipped" in res.output


def test_faces_and_frames_verbs_on_a_real_clip(tmp_path):
    import pytest

    from helpers import SHARED_DATA

    clip = SHARED_DATA / "media" / "single_face.mp4"
    if not clip.exists():
        pytest.skip("../shared/data/media absent (a user's clone)")
    pytest.importorskip("av")
    pytest.importorskip("mediapipe")
    corpus = tmp_path / "c"
    assert invoke("ingest", "--corpus", corpus, clip).exit_code == 0
    res = invoke("faces", "--corpus", corpus, "--fps", 4)
    assert res.exit_code == 0, res.output
    faces = pd.read_parquet(corpus / "sessions" / "single_face" / "faces.parquet")
    assert (faces["track_id"] >= 0).any()
    assert "fps = 4.0" in (corpus / "corpus.toml").read_text()
    res = invoke("frames", "--corpus", corpus, "single_face", "--at", 1.0, "--out", tmp_path / "fr")
    assert res.exit_code == 0, res.output
    (png,) = (tmp_path / "fr").glob("*.png")
    assert png.stat().st_size > 1000


def test_video_and_transcript_of_the_same_name_pair_into_one_session(tmp_path):
    import pytest

    from helpers import SHARED_DATA

    clip = SHARED_DATA / "media" / "single_face.mp4"
    if not clip.exists():
        pytest.skip("../shared/data/media absent (a user's clone)")
    pytest.importorskip("av")
    transcript = tmp_path / "single_face.csv"
    transcript.write_text(
        "Speaker,Role,Start Time,End Time,Utterance\n"
        "A,therapist,0.0,1.0,How are you?\nB,patient,1.0,2.4,I'm okay I guess.\n"
    )
    corpus = tmp_path / "c"
    res = invoke("ingest", "--corpus", corpus, clip, transcript)
    assert res.exit_code == 0, res.output
    session = corpus / "sessions" / "single_face"
    source = json.loads((session / "source.json").read_text())
    assert source["kind"] == "media" and source["transcript"]["path"].endswith("single_face.csv")
    df = pd.read_parquet(session / "utterances.parquet")
    assert df["text"].tolist() == ["How are you?", "I'm okay I guess."]
    assert (session / "audio.wav").exists()
    # rerun: both unchanged; the other order pairs too
    res = invoke("ingest", "--corpus", corpus, clip, transcript)
    assert res.exit_code == 0 and "1 done" not in res.output  # nothing redone
    corpus2 = tmp_path / "c2"
    assert invoke("ingest", "--corpus", corpus2, transcript).exit_code == 0
    res = invoke("ingest", "--corpus", corpus2, clip)
    assert res.exit_code == 0, res.output
    source = json.loads((corpus2 / "sessions" / "single_face" / "source.json").read_text())
    assert source["kind"] == "media" and source["transcript"]["path"].endswith("single_face.csv")
    assert len(pd.read_parquet(corpus2 / "sessions" / "single_face" / "utterances.parquet")) == 2


def test_stage_verbs_are_built_from_the_registry(tmp_path):
    """`emoguide text_affect`: options from the settings model, saved to corpus.toml, any executor."""
    transcript, _ = demo_files()
    corpus = tmp_path / "c"
    assert invoke("ingest", "--corpus", corpus, transcript).exit_code == 0
    res = invoke("text_affect", "--help")
    assert res.exit_code == 0 and "--lemmatise" in res.output and "--norms-path" in res.output
    assert "--executor" in res.output and "Reads: utterances" in res.output
    res = invoke("text_affect", "--corpus", corpus, "--no-lemmatise", "--executor", "pool", "--workers", "2")
    assert res.exit_code == 0, res.output
    assert "text_affect: 1 done" in res.output
    assert "lemmatise = false" in (corpus / "corpus.toml").read_text()
    rec = json.loads((corpus / "sessions" / "sample_session" / "stages.json").read_text())["text_affect"]
    assert rec["executor"] == "pool" and rec["settings"]["settings"]["lemmatise"] is False
    res = invoke("text_affect", "--corpus", corpus)
    assert res.exit_code == 0 and "text_affect: 0 done, 1 skipped" in res.output
    res = invoke("text_affect", "--corpus", corpus, "--executor", "threads")
    assert res.exit_code == 2 and "serial, pool or ray" in res.output
