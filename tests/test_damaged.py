"""A damaged artifact is that session's problem: named, set aside or recomputed, never fatal.

One test per artifact kind: stages.json, utterances.parquet, faces.parquet, generations.parquet,
ratings.sqlite. Each damages a real artifact the way a full disk or a killed copy does (cut short),
then checks that `status` names the file, the next run names it and heals it, and the result
equals an undamaged run's.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emoguide.cli import app
from emoguide.corpus import Corpus
from emoguide.demo import demo_files
from emoguide.pipeline.runner import run_stages
from emoguide.stages.ingest_transcript import ingest_transcripts

TEXT_STAGES = ["roles", "safety", "text_affect", "dissonance"]
SID = "sample_session"


def cut(path: Path, keep: float = 0.5) -> None:
    """Cut a file short, as a full disk or a killed copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def transcript_corpus(root: Path) -> Corpus:
    c = Corpus.open(root, create=True)
    ids, summary = ingest_transcripts(c, [demo_files()[0]])
    assert ids == [SID] and summary.count("failed") == 0
    report = run_stages(c, TEXT_STAGES)
    assert report.failed == 0
    return c


def utterances(c: Corpus) -> pd.DataFrame:
    return pd.read_parquet(c.sessions_dir / SID / "utterances.parquet")


def status_output(root: Path) -> tuple[int, str]:
    res = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["status", "--corpus", str(root)])
    return res.exit_code, " ".join(res.output.split())


@pytest.fixture
def reference(tmp_path_factory) -> pd.DataFrame:
    return utterances(transcript_corpus(tmp_path_factory.mktemp("ref") / "c"))


def test_cut_short_stages_json_is_moved_aside_and_the_session_recomputed(tmp_path, reference):
    c = transcript_corpus(tmp_path / "c")
    other = tmp_path / "c" / "sessions" / "second"  # a second, healthy session stays as it is
    shutil.copytree(c.sessions_dir / SID, other)
    records = other / "stages.json"
    records.write_text(records.read_text().replace(SID, "second"))
    log = c.sessions_dir / SID / "stages.json"
    cut(log)
    damaged_bytes = log.read_bytes()

    code, out = status_output(c.root)
    assert code == 0 and "Traceback" not in out
    assert f"{log}: damaged" in out and "second" in out  # names the file; the other session is listed

    # the CLI run says so in words, then heals
    env = {**os.environ, "COLUMNS": "250"}
    p = subprocess.run([sys.executable, "-m", "emoguide", "run", "--corpus", str(c.root), "--skip", "transcribe",
                        "--skip", "faces", "--skip", "face_affect", "--skip", "voice", "--skip", "generate"],
                       capture_output=True, text=True, env=env, timeout=600)
    text = " ".join((p.stdout + p.stderr).split())
    assert p.returncode == 0, text
    assert f"warning: {log}: damaged" in text and "moved aside to stages.json.damaged-" in text
    assert "Traceback" not in text
    aside = list(log.parent.glob("stages.json.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged_bytes  # nothing lost
    recs = json.loads(log.read_text())
    assert all(recs[s]["status"] == "done" for s in TEXT_STAGES)
    pd.testing.assert_frame_equal(utterances(c), reference)
    # the healthy session was not recomputed
    assert json.loads(records.read_text())["roles"]["run_id"] == json.loads(
        (other / "stages.json").read_text())["roles"]["run_id"]
    code, out = status_output(c.root)
    assert code == 0 and "damaged" not in out


def test_cut_short_utterances_parquet_is_rebuilt_from_the_transcript(tmp_path, reference):
    c = transcript_corpus(tmp_path / "c")
    table = c.sessions_dir / SID / "utterances.parquet"
    cut(table)

    code, out = status_output(c.root)
    assert code == 0 and "Traceback" not in out
    assert f"{table}: unreadable" in out

    report = run_stages(c, TEXT_STAGES)  # what `emoguide run` runs on a transcript session
    assert report.failed == 0, [o.reason for s in report.summaries for o in s.outcomes]
    assert any(str(table.parent) in r and "utterances.parquet is unreadable" in r and "ingest_transcript" in r
               for r in report.repairs), report.repairs
    ingest = report.summary("ingest_transcript")
    assert ingest is not None and ingest.count("done") == 1  # rebuilt from the transcript file
    assert all(report.summary(s).count("done") == 1 for s in TEXT_STAGES)
    pd.testing.assert_frame_equal(utterances(c), reference)
    again = run_stages(c, TEXT_STAGES)  # healed: nothing left to do
    assert not again.repairs and all(s.count("done") == 0 for s in again.summaries)


def test_a_table_with_rows_missing_or_a_column_group_lost_is_recomputed(tmp_path, reference):
    """"Current" is the recorded shape, not just a file: fewer rows, or a stage's columns gone."""
    c = transcript_corpus(tmp_path / "c")
    table = c.sessions_dir / SID / "utterances.parquet"
    df = pd.read_parquet(table)
    df.head(5).to_parquet(table, index=False)  # a valid file with 5 of the 12 rows
    report = run_stages(c, TEXT_STAGES)
    assert report.failed == 0
    assert any("utterances.parquet has 5 rows; ingest_transcript committed 12" in r for r in report.repairs), report.repairs
    pd.testing.assert_frame_equal(utterances(c), reference)

    df = pd.read_parquet(table)
    df.drop(columns=["text_valence"]).to_parquet(table, index=False)  # another writer dropped text_affect's group
    report = run_stages(c, TEXT_STAGES)
    assert any("lacks the column(s) text_valence" in r and "recomputing text_affect" in r for r in report.repairs)
    assert report.summary("text_affect").count("done") == 1
    pd.testing.assert_frame_equal(utterances(c), reference)


def test_cut_short_faces_parquet_is_recomputed(tmp_path):
    from helpers import need_media

    need_media()
    pytest.importorskip("ai_edge_litert")
    from emoguide.pipeline.testing import cut_clips
    from emoguide.stages.ingest_media import ingest_media

    clip = cut_clips(tmp_path / "clips", n=1, seconds=4.0)[0]
    c = Corpus.open(tmp_path / "c", create=True)
    _, summary = ingest_media(c, [clip])
    assert summary.count("failed") == 0
    sid = c.session_ids()[0]
    first = run_stages(c, ["faces", "face_affect"])
    assert first.failed == 0, [o.reason for s in first.summaries for o in s.outcomes]
    faces = c.sessions_dir / sid / "faces.parquet"
    ref_faces, ref_utts = pd.read_parquet(faces), pd.read_parquet(c.sessions_dir / sid / "utterances.parquet")
    assert len(ref_faces) > 0
    cut(faces)

    code, out = status_output(c.root)
    assert code == 0 and f"{faces}: unreadable" in out

    report = run_stages(c, ["faces", "face_affect"])
    assert report.failed == 0
    assert any("faces.parquet is unreadable" in r and "recomputing faces" in r for r in report.repairs), report.repairs
    assert report.summary("faces").count("done") == 1 and report.summary("face_affect").count("done") == 1
    pd.testing.assert_frame_equal(pd.read_parquet(faces), ref_faces)
    pd.testing.assert_frame_equal(pd.read_parquet(c.sessions_dir / sid / "utterances.parquet"), ref_utts)


def test_cut_short_generations_parquet_is_set_aside_and_rebuilt(tmp_path):
    pytest.importorskip("llama_cpp")
    from emoguide.stages.generate import GenerateSettings, GenerateStage

    c = transcript_corpus(tmp_path / "c")

    def generate():
        settings = c.settings
        settings.llm.max_tokens = 8
        stage = GenerateStage(GenerateSettings.from_corpus(settings, models=["llamacpp:smollm2"],
                                                           conditions="base", limit=1))
        import io

        from rich.console import Console

        stage.console = Console(file=io.StringIO())
        return run_stages(c, [stage])

    first = generate()
    ref = pd.read_parquet(c.generations_path)
    assert len(ref) == 1 and (ref["status"] == "ok").all(), ref[["status", "error"]]
    cut(c.generations_path)
    damaged = c.generations_path.read_bytes()

    code, out = status_output(c.root)
    assert code == 0 and f"{c.generations_path}: unreadable" in out

    report = generate()
    assert any("generations.parquet: unreadable" in r and "moved aside to generations.parquet.damaged-" in r
               for r in report.repairs), report.repairs
    aside = list(c.root.glob("generations.parquet.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged
    got = pd.read_parquet(c.generations_path)
    cols = ["session_id", "target_index", "condition", "model", "status", "technique", "response"]
    pd.testing.assert_frame_equal(got[cols], ref[cols])
    assert first.failed == 0 and report.failed == 0


def test_damaged_ratings_sqlite_is_reported_and_left_alone(tmp_path):
    """Ratings are people's work: nothing recomputes them, so status names the file and says what
    to do, and a run neither fails nor touches it."""
    c = transcript_corpus(tmp_path / "c")
    db = c.root / "ratings.sqlite"
    con = sqlite3.connect(db)
    con.execute("create table ratings (id integer primary key, rater text, score integer)")
    con.executemany("insert into ratings (rater, score) values (?, ?)", [(f"r{i}", i % 5) for i in range(3000)])
    con.commit()
    con.close()
    code, out = status_output(c.root)
    assert "ratings.sqlite" not in out  # a healthy study is not mentioned
    cut(db, 0.4)
    damaged = db.read_bytes()

    code, out = status_output(c.root)
    assert code == 0 and f"{db}:" in out and "restore it from a backup" in out

    report = run_stages(c, TEXT_STAGES)
    assert report.failed == 0 and db.read_bytes() == damaged


def test_a_failed_rebuild_of_damaged_audio_is_retried_until_the_source_is_restored(tmp_path):
    """audio.wav cut short and its source file damaged too: every run retries ingest_media, so the
    session fails for its real cause (the media), the stage that reads audio is not run on the
    damaged file, and once the user restores the source the next run heals the session."""
    from emoguide.pipeline.testing import cut_clips
    from emoguide.stages.diarize import DiarizeSettings, DiarizeStage
    from emoguide.stages.ingest_media import ingest_media

    clip = cut_clips(tmp_path / "media", n=1, seconds=4.0)[0]
    good = clip.read_bytes()
    c = Corpus.open(tmp_path / "c", create=True)
    ids, summary = ingest_media(c, [clip])
    assert summary.count("failed") == 0
    sid = ids[0]
    audio = c.sessions_dir / sid / "audio.wav"
    one_speaker = DiarizeStage(DiarizeSettings(diarizer="none"))  # reads audio.wav, loads no model

    cut(audio, 0.02)
    clip.write_bytes(b"\x00" * 4096)
    for attempt in range(2):  # the second run must not read the damaged audio.wav either
        report = run_stages(c, [one_speaker])
        ingest = report.summary("ingest_media")
        assert ingest is not None and ingest.count("failed") == 1, (attempt, report.repairs)
        assert report.summary("diarize").count("done") == 0
        assert report.summary("diarize").count("failed") == 0  # blocked by its cause, not failed on it
        rec = json.loads((c.sessions_dir / sid / "stages.json").read_text())
        assert rec["ingest_media"]["status"] == "failed" and clip.name in rec["ingest_media"]["error"], rec
        assert "diarize" not in rec or rec["diarize"]["status"] != "done"
    assert any("ingest_media failed last time" in r for r in report.repairs), report.repairs

    clip.write_bytes(good)  # the user restores the source
    report = run_stages(c, [one_speaker])
    assert report.failed == 0, report.summaries
    rec = json.loads((c.sessions_dir / sid / "stages.json").read_text())
    assert rec["ingest_media"]["status"] == "done" and rec["diarize"]["status"] == "done"
    assert audio.read_bytes()[:4] == b"RIFF" and audio.stat().st_size > 4 * 16000  # rebuilt whole
    again = run_stages(c, [one_speaker])  # and then nothing is left to do
    assert again.summary("ingest_media") is None and again.summary("diarize").count("done") == 0
