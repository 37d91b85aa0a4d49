"""Transcript import/export: formats, malformed inputs, ingest with resume, export round trips."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from emoguide.corpus import Corpus
from emoguide.errors import InputError
from emoguide.stages.ingest_transcript import ingest_transcripts
from emoguide.transcripts.readers import read_transcript_file, speaker_letters, split_speaker
from emoguide.transcripts.timecode import format_hms, format_timestamp, parse_time
from emoguide.transcripts.writers import (
    export_corpus,
    export_transcripts,
    write_paper_transcript,
    write_srt,
    write_vtt,
)

# The paper's Figure 12 transcript (Appendix H), tab-separated as in the paper's text.
FIGURE_12 = (
    "Speaker\tStart Time\tEnd Time\tUtterance\n"
    "A\t00:00:29\t00:00:37\tYou. Okay, so you said that when you're at work, you really worry that "
    "you're going to say something stupid.\n"
    "B\t00:00:38\t00:00:41\tYeah, that's something that's always on my mind.\n"
    "A\t00:00:41\t00:00:45\tWhat would be so bad about that if you did say something stupid at.\n"
    "B\t00:00:45\t00:00:49\tWork because people would think I was weird.\n"
    "A\t00:00:49\t00:00:53\tThen what would be so bad? If people at work thought you were weird?\n"
    "B\t00:00:54\t00:00:56\tThey wouldn't want to be friends with me.\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def sample_df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "index": [0, 1, 2, 3],
            "start": [0.0, 4.25, 9.5, 15.125],
            "end": [4.0, 9.0, 15.0, 20.75],
            "speaker": ["A", "B", "A", "B"],
            "role": ["therapist", "patient", "therapist", "patient"],
            "text": [
                "How have you been since last week?",
                "Honestly, not great. I <think> it's work & home.",
                "Tell me more about work.",
                "It's just: a lot, you know?",
            ],
        }
    )


# ------------------------------------------------------------------------------------ timecodes


@pytest.mark.parametrize(
    "value, expected",
    [
        ("00:00:29", 29.0),
        ("01:02:03", 3723.0),
        ("00:00:01.500", 1.5),
        ("00:00:01,250", 1.25),
        ("02:03", 123.0),
        ("02:03.5", 123.5),
        ("12.5", 12.5),
        ("7", 7.0),
        (" 3.0s ", 3.0),
        (12, 12.0),
        (4.75, 4.75),
        ("", None),
        (None, None),
        (float("nan"), None),
        (pd.NA, None),
    ],
)
def test_parse_time(value, expected):
    assert parse_time(value) == expected


@pytest.mark.parametrize("value", ["abc", "1:2:3:4", "00:61:00", "00:00:75", "-3", -1.0, "12:ab"])
def test_parse_time_rejects(value, tmp_path):
    with pytest.raises(InputError) as exc:
        parse_time(value, path=tmp_path / "x.csv", line=7)
    assert exc.value.line == 7
    assert exc.value.path.endswith("x.csv")


def test_format_times():
    assert format_hms(29) == "00:00:29"
    assert format_hms(3723.4) == "01:02:03"
    assert format_hms(59.6) == "00:01:00"
    assert format_hms(None) == ""
    assert format_hms(1.5, millis=True) == "00:00:01.500"
    assert format_timestamp(3661.0049, sep=",") == "01:01:01,005"
    for t in (0.0, 1.001, 59.999, 3600.5):
        assert parse_time(format_timestamp(t)) == pytest.approx(t, abs=1e-3)


def test_speaker_helpers():
    assert speaker_letters(3) == ["A", "B", "C"]
    assert speaker_letters(28)[-2:] == ["AA", "AB"]
    assert split_speaker("Therapist: How are you?") == ("Therapist", None, "How are you?")
    assert split_speaker("[Dr Smith] Hello") == ("Dr Smith", None, "Hello")
    assert split_speaker("[laughs] yes") == (None, None, "[laughs] yes")
    assert split_speaker("B (patient): fine") == ("B", "patient", "fine")
    assert split_speaker("At 10:30 we met") == (None, None, "At 10:30 we met")
    assert split_speaker("no speaker here") == (None, None, "no speaker here")


# ---------------------------------------------------------------------------------- paper table


def test_figure_12_table(tmp_path):
    p = write(tmp_path, "figure12.tsv", FIGURE_12)
    (parsed,) = read_transcript_file(p)
    df = parsed.utterances
    assert parsed.session_id == "figure12"
    assert list(df["index"]) == list(range(6))
    assert list(df["start"]) == [29.0, 38.0, 41.0, 45.0, 49.0, 54.0]
    assert list(df["end"]) == [37.0, 41.0, 45.0, 49.0, 53.0, 56.0]
    assert list(df["speaker"]) == ["A", "B", "A", "B", "A", "B"]
    assert set(df["role"]) == {"unknown"}
    assert df["text"].iloc[5] == "They wouldn't want to be friends with me."
    assert parsed.source["format"] == "table"
    assert parsed.source["delimiter"] == "tab"
    assert parsed.source["rows_read"] == 6
    assert any("roles" in w for w in parsed.warnings)
    # The same table saved as .txt (as pasted from the paper) and with a roles mapping.
    p2 = write(tmp_path, "figure12.txt", FIGURE_12)
    (parsed2,) = read_transcript_file(p2, roles={"A": "therapist", "B": "client"})
    assert list(parsed2.utterances["role"][:2]) == ["therapist", "patient"]


def test_csv_aliases_roles_names_and_extras(tmp_path):
    text = (
        "speaker,START,end_time,utterance_text,Topic Code\n"
        "Dr. Lee,0:05,0:09,Hello there.,intro\n"
        "Sam,10,14.5,Hi.,intro\n"
        '"Dr. Lee",15,,"Thanks, Sam — let\'s begin.",main\n'
        "Sam,20,25,,main\n"
    )
    p = write(tmp_path, "Session 1.csv", text)
    (parsed,) = read_transcript_file(p)
    df = parsed.utterances
    assert parsed.session_id == "Session-1"
    assert list(df["speaker"]) == ["A", "B", "A"]
    assert list(df["speaker_name"]) == ["Dr. Lee", "Sam", "Dr. Lee"]
    assert list(df["role"]) == ["therapist", "unknown", "therapist"]
    assert df["text"].iloc[2] == "Thanks, Sam — let's begin."
    assert list(df["start"]) == [5.0, 10.0, 15.0]
    # The empty utterance (line 5) is dropped, the missing end comes from... nothing after it.
    assert df["end"].iloc[2] == 15.0
    assert any("empty text dropped" in w and "5" in w for w in parsed.warnings)
    assert list(df["topic_code"]) == ["intro", "intro", "main"]
    # Role mapping by original name overrides inference.
    (parsed,) = read_transcript_file(p, roles={"Sam": "patient", "Dr. Lee": "unknown"})
    assert list(parsed.utterances["role"]) == ["unknown", "patient", "unknown"]


def test_role_column_and_unsorted_and_missing_end(tmp_path):
    text = (
        "Speaker;Start Time;End Time;Utterance;Role\n"
        "Jo;00:00:10;;Second.;patient\n"
        "Kim;00:00:01;00:00:05;First.;therapist\n"
        "Jo;00:00:20;00:00:25;Third.;\n"
    )
    (parsed,) = read_transcript_file(write(tmp_path, "semi.csv", text))
    df = parsed.utterances
    assert list(df["text"]) == ["First.", "Second.", "Third."]
    assert list(df["speaker"]) == ["A", "B", "B"]  # relabelled in time order
    assert list(df["role"]) == ["therapist", "patient", "patient"]
    assert df["end"].iloc[1] == 20.0  # unknown end -> next start
    assert any("sorted" in w for w in parsed.warnings)


def test_several_sessions_in_one_table(tmp_path):
    text = (
        "session_id,speaker,start,end,text\n"
        "s1,Therapist,0,2,a\n"
        "s2,Client,0,3,b\n"
        "s1,Client,2,4,c\n"
        "s2,Therapist,3,5,d\n"
    )
    parsed = read_transcript_file(write(tmp_path, "multi.csv", text))
    assert [p.session_id for p in parsed] == ["s1", "s2"]
    assert list(parsed[0].utterances["text"]) == ["a", "c"]
    assert list(parsed[1].utterances["role"]) == ["patient", "therapist"]
    assert list(parsed[1].utterances["speaker"]) == ["A", "B"]


# ---------------------------------------------------------------------------------- SRT / WebVTT


def test_srt_speakers(tmp_path):
    text = (
        "1\n00:00:01,000 --> 00:00:03,500\nTherapist: How are you\ntoday?\n\n"
        "2\n00:00:04,000 --> 00:00:06,000\n[Client] Not so good.\n\n"
        "3\n00:00:06,100 --> 00:00:07,000\n<i>I mean...</i>\n"
    )
    (parsed,) = read_transcript_file(write(tmp_path, "s.srt", text))
    df = parsed.utterances
    assert list(df["start"]) == [1.0, 4.0, 6.1]
    assert list(df["end"]) == [3.5, 6.0, 7.0]
    assert list(df["text"]) == ["How are you today?", "Not so good.", "I mean..."]
    assert list(df["speaker"]) == ["A", "B", "B"]  # the unnamed cue continues the previous speaker
    assert list(df["role"]) == ["therapist", "patient", "patient"]
    assert any("without a speaker" in w for w in parsed.warnings)


def test_srt_without_speakers(tmp_path):
    text = "1\n00:00:01,000 --> 00:00:02,000\nhello\n\n2\n00:00:02,000 --> 00:00:03,000\nworld\n"
    (parsed,) = read_transcript_file(write(tmp_path, "plain.srt", text))
    assert set(parsed.utterances["speaker"]) == {"A"}
    assert set(parsed.utterances["role"]) == {"unknown"}
    assert any("speaker A" in w for w in parsed.warnings)


def test_vtt_voice_tags(tmp_path):
    text = (
        "WEBVTT\n\nNOTE a comment\n\n"
        "intro\n00:00:00.500 --> 00:00:02.250\n<v Interviewer>What brings you here?</v>\n\n"
        "00:01.000 --> 00:02.000\n<v.loud Patient>I can't sleep.\n\n"
        "00:00:05.000 --> 00:00:06.000\nInterviewer: Since when?\n"
    )
    (parsed,) = read_transcript_file(write(tmp_path, "v.vtt", text))
    df = parsed.utterances
    assert list(df["start"]) == [0.5, 1.0, 5.0]
    assert list(df["end"]) == [2.25, 2.0, 6.0]
    assert list(df["speaker_name"]) == ["Interviewer", "Patient", "Interviewer"]
    assert list(df["role"]) == ["therapist", "patient", "therapist"]
    assert df["text"].iloc[1] == "I can't sleep."


# ------------------------------------------------------------------------------------ JSON / JSONL


def test_json_shapes(tmp_path):
    rows = [
        {"speaker": "Counsellor", "start": 0, "end": 1.5, "text": "Hi", "confidence": 0.9},
        {"speaker": "Client", "start": "00:00:02", "end": "00:00:03", "text": "Hello", "confidence": 0.8},
    ]
    (a,) = read_transcript_file(write(tmp_path, "list.json", json.dumps(rows)))
    assert list(a.utterances["role"]) == ["therapist", "patient"]
    assert list(a.utterances["asr_confidence"]) == [0.9, 0.8]
    (b,) = read_transcript_file(
        write(tmp_path, "wrapped.json", json.dumps({"session_id": "my session", "utterances": rows}))
    )
    assert b.session_id == "my-session"
    assert list(b.utterances["start"]) == [0.0, 2.0]
    whisperx = {
        "segments": [
            {"start": 0.0, "end": 2.0, "text": " Hello.", "speaker": "SPEAKER_00", "words": [{"w": "Hello"}]},
            {"start": 2.5, "end": 4.0, "text": " Hi.", "speaker": "SPEAKER_01", "words": []},
        ],
        "language": "en",
    }
    (c,) = read_transcript_file(write(tmp_path, "wx.json", json.dumps(whisperx)))
    assert list(c.utterances["text"]) == ["Hello.", "Hi."]
    assert list(c.utterances["speaker"]) == ["A", "B"]
    assert list(c.utterances["speaker_name"]) == ["SPEAKER_00", "SPEAKER_01"]
    assert c.source["dropped_keys"] == ["words"]
    assert c.source["metadata"] == {"language": "en"}


def test_jsonl_with_sessions(tmp_path):
    lines = [
        {"session_id": "x", "speaker": "therapist", "start": 0, "end": 1, "text": "a"},
        {"session_id": "y", "speaker": "patient", "start": 0, "end": 1, "text": "b"},
        {"session_id": "x", "speaker": "patient", "start": 1, "end": 2, "text": "c"},
    ]
    p = write(tmp_path, "u.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    parsed = read_transcript_file(p)
    assert [x.session_id for x in parsed] == ["x", "y"]
    assert list(parsed[0].utterances["role"]) == ["therapist", "patient"]


# ------------------------------------------------------------------------------------ malformed


@pytest.mark.parametrize(
    "name, text, line, words",
    [
        ("nocol.csv", "Speaker,Start Time,End Time\nA,0,1\n", 1, "Utterance"),
        ("nostart.csv", "Speaker,Utterance\nA,hi\n", 1, "Start"),
        ("badtime.csv", "Speaker,Start Time,End Time,Utterance\nA,0,1,x\nB,00:0x:01,5,y\n", 3, "unparseable time"),
        ("backwards.tsv", "Speaker\tStart Time\tEnd Time\tUtterance\nA\t0\t1\tx\nB\t00:00:09\t00:00:05\ty\n", 3, "before start"),
        (
            "quoted.csv",
            'Speaker,Start Time,End Time,Utterance\nA,0,1,"multi\nline"\nB,x,2,y\n',
            4,
            "unparseable time",
        ),
        ("fields.csv", "Speaker,Start Time,End Time,Utterance\nA,0,1,x\nB,1,2,y,extra,more\n", 3, "fields"),
        ("empty.csv", "  \n\n", None, "empty file"),
        ("header.csv", "Speaker,Start Time,End Time,Utterance\n", 1, "no utterances"),
        ("bad.json", '[{"speaker": "A", "start": 0,\n "text": "x"},\n {oops}]', 3, "bad JSON"),
        ("bad.jsonl", '{"speaker": "A", "start": 0, "text": "x"}\n\n{"speaker": "B", "start": 1 "text": "y"}\n', 3, "bad JSON"),
        ("shape.json", '{"foo": 1}', None, "no utterances"),
        ("time.json", '[{"speaker": "A", "start": "soon", "text": "x"}]', None, "item[0]: unparseable"),
        (
            "bad.srt",
            "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:0x,000 -> 00:00:03,000\nbad\n",
            5,
            "bad SRT",
        ),
        ("nohead.vtt", "00:00:01.000 --> 00:00:02.000\nhi\n", 1, "WEBVTT"),
        (
            "badcue.vtt",
            "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhi\n\n00:00:0x.000 --> 00:00:03.000\nbad\n",
            6,
            "unparseable time",
        ),
        ("notes.docx", "whatever", None, "unknown transcript format"),
    ],
)
def test_malformed_inputs(tmp_path, name, text, line, words):
    p = write(tmp_path, name, text)
    with pytest.raises(InputError) as exc:
        read_transcript_file(p)
    err = exc.value
    assert err.path == str(p)
    assert err.line == line, str(err)
    assert words.lower() in err.problem.lower(), str(err)
    assert str(p) in str(err)


def test_undecodable_bytes(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes(b"Speaker,Start Time,End Time,Utterance\nA,0,1,caf\xe9 \xff\n")
    with pytest.raises(InputError) as exc:
        read_transcript_file(p)
    assert exc.value.line == 2 and "undecodable" in exc.value.problem


def test_bad_roles_mapping(tmp_path):
    p = write(tmp_path, "f.tsv", FIGURE_12)
    with pytest.raises(ValueError):
        read_transcript_file(p, roles={"A": "boss"})


# ---------------------------------------------------------------------------------------- ingest


def test_ingest_batch_with_a_bad_file_and_resume(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write(src, "fig12.tsv", FIGURE_12)
    write(src, "broken.csv", "Speaker,Start Time,End Time,Utterance\nA,0,1,x\nB,nope,2,y\n")
    write(src, "talk.srt", "1\n00:00:01,000 --> 00:00:02,000\nTherapist: hi\n\n2\n00:00:02,000 --> 00:00:04,000\nPatient: hello\n")
    write(src, "readme.md", "not a transcript")
    corpus = Corpus.open(tmp_path / "corpus", create=True)
    seen = []
    ids, summary = ingest_transcripts(corpus, [src], on_progress=seen.append)
    assert sorted(ids) == ["fig12", "talk"]
    assert summary.count("done") == 2 and summary.count("failed") == 1
    (failed,) = summary.failed
    assert "broken.csv" in failed.item and "line 3" in failed.reason
    assert len(seen) == 3
    assert corpus.session_ids() == ["fig12", "talk"]
    df = corpus.session("fig12").read_utterances()
    assert list(df["start"]) == [29.0, 38.0, 41.0, 45.0, 49.0, 54.0]
    assert set(df["session_id"]) == {"fig12"}
    assert "voice_valence" in df.columns and df["voice_valence"].isna().all()
    source = corpus.session("talk").read_source()
    assert source["format"] == "srt" and source["speakers"]["B"]["role"] == "patient"
    rec = corpus.session("fig12").stages.get("ingest_transcript")
    assert rec["status"] == "done" and any("roles" in w for w in rec["warnings"])

    # Resume: nothing changed -> skipped.
    ids2, s2 = ingest_transcripts(corpus, [src])
    assert sorted(ids2) == ["fig12", "talk"]
    assert s2.count("skipped") == 2 and s2.count("done") == 0 and s2.count("failed") == 1
    # force -> redone.
    _, s3 = ingest_transcripts(corpus, [src / "fig12.tsv"], force=True)
    assert s3.count("done") == 1
    # A changed file -> redone; other settings (roles) -> redone.
    write(src, "fig12.tsv", FIGURE_12.replace("00:00:29", "00:00:30"))
    _, s4 = ingest_transcripts(corpus, [src / "fig12.tsv", src / "talk.srt"])
    assert [o.status for o in s4.outcomes] == ["done", "skipped"]
    assert corpus.session("fig12").read_utterances()["start"].iloc[0] == 30.0
    _, s5 = ingest_transcripts(corpus, [src / "fig12.tsv"], roles={"A": "therapist", "B": "patient"})
    assert s5.count("done") == 1
    assert list(corpus.session("fig12").read_utterances()["role"][:2]) == ["therapist", "patient"]


def test_ingest_transcript_stage_rerun_from_source(tmp_path):
    """`emoguide run ingest_transcript` (no payloads) reads the file named in source.json again."""
    from emoguide.pipeline.runner import run_one

    corpus = Corpus.open(tmp_path / "corpus", create=True)
    p = write(tmp_path, "fig12.tsv", FIGURE_12)
    ingest_transcripts(corpus, [p])
    assert run_one(corpus, "ingest_transcript").count("skipped") == 1
    write(tmp_path, "fig12.tsv", FIGURE_12.replace("00:00:29", "00:00:31"))
    summary = run_one(corpus, "ingest_transcript")
    assert summary.count("done") == 1, summary.outcomes
    assert corpus.session("fig12").read_utterances()["start"].iloc[0] == 31.0
    # A file that no longer holds the session fails that session, naming the file.
    other = FIGURE_12.replace("Speaker\t", "Session\tSpeaker\t", 1)
    write(tmp_path, "fig12.tsv", other.replace("\nA\t", "\nother\tA\t").replace("\nB\t", "\nother\tB\t"))
    failed = run_one(corpus, "ingest_transcript").failed
    assert len(failed) == 1 and "fig12.tsv" in failed[0].reason and "holds no session 'fig12'" in failed[0].reason


def test_ingest_session_id_collision(tmp_path):
    corpus = Corpus.open(tmp_path / "corpus", create=True)
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write(a, "s1.tsv", FIGURE_12)
    write(b, "s1.csv", "Speaker,Start,Utterance\nA,0,other file\n")
    ids, summary = ingest_transcripts(corpus, [a / "s1.tsv", b / "s1.csv"])
    assert ids == ["s1"]
    assert [o.status for o in summary.outcomes] == ["done", "failed"]
    assert "s1.tsv" in summary.failed[0].reason
    # In a later batch too, another file may not overwrite the session.
    _, s2 = ingest_transcripts(corpus, [b / "s1.csv"])
    assert s2.count("failed") == 1 and "already exists" in s2.failed[0].reason
    assert corpus.session("s1").read_utterances()["start"].iloc[0] == 29.0
    # Re-ingesting the original file is fine.
    _, s3 = ingest_transcripts(corpus, [a / "s1.tsv"])
    assert s3.count("skipped") == 1


# ---------------------------------------------------------------------------------------- export


@pytest.mark.parametrize("ext", ["csv", "tsv", "srt", "vtt"])
def test_writer_round_trip(tmp_path, ext):
    df = sample_df()
    path = tmp_path / f"out.{ext}"
    if ext in ("csv", "tsv"):
        write_paper_transcript(df, path, millis=True)
    elif ext == "srt":
        write_srt(df, path)
    else:
        write_vtt(df, path)
    (parsed,) = read_transcript_file(path)
    back = parsed.utterances
    assert list(back["text"]) == list(df["text"])
    assert list(back["speaker"]) == list(df["speaker"])
    assert list(back["role"]) == list(df["role"])
    assert back["start"].tolist() == pytest.approx(df["start"].tolist(), abs=1e-3)
    assert back["end"].tolist() == pytest.approx(df["end"].tolist(), abs=1e-3)


def test_paper_layout_written(tmp_path):
    path = write_paper_transcript(sample_df(), tmp_path / "t.tsv")
    lines = path.read_text().splitlines()
    assert lines[0] == "Speaker\tStart Time\tEnd Time\tUtterance\tRole"
    assert lines[1].startswith("A\t00:00:00\t00:00:04\tHow have you been")
    assert "00:00:15\t00:00:21" in lines[4]  # 15.125 -> 15, 20.75 -> 21
    vtt = write_vtt(sample_df(), tmp_path / "t.vtt").read_text()
    assert "<v B (patient)>Honestly, not great. I &lt;think&gt; it's work &amp; home." in vtt


def test_export_corpus_and_transcripts_round_trip(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write(src, "fig12.tsv", FIGURE_12)
    write(
        src,
        "two.csv",
        "Speaker,Start Time,End Time,Utterance\nTherapist,0.5,2.25,Hello.\nClient,3,4.75,\"Hi, there.\"\n",
    )
    corpus = Corpus.open(tmp_path / "corpus", create=True)
    ids, _ = ingest_transcripts(corpus, [src], roles={"A": "therapist", "B": "patient"})
    original = corpus.utterances()

    for ext in ("parquet", "jsonl", "csv"):
        flat = export_corpus(corpus, tmp_path / f"flat.{ext}")
        assert flat.exists()
        if ext == "parquet":
            assert len(pd.read_parquet(flat)) == len(original)
            continue
        parsed = {p.session_id: p.utterances for p in read_transcript_file(flat)}
        assert sorted(parsed) == sorted(ids)
        for sid in ids:
            a = original[original["session_id"] == sid]
            b = parsed[sid]
            assert list(b["text"]) == list(a["text"])
            assert list(b["speaker"]) == list(a["speaker"])
            assert list(b["role"]) == list(a["role"])
            assert b["start"].tolist() == pytest.approx(a["start"].tolist())
            assert b["end"].tolist() == pytest.approx(a["end"].tolist())

    only = export_corpus(corpus, tmp_path / "only.csv", sessions=["two"])
    assert set(pd.read_csv(only)["session_id"]) == {"two"}

    for fmt in ("csv", "tsv", "srt", "vtt"):
        paths = export_transcripts(corpus, tmp_path / f"out-{fmt}", fmt=fmt, millis=True)
        assert sorted(p.name for p in paths) == sorted(f"{s}.{fmt}" for s in ids)
        corpus2 = Corpus.open(tmp_path / f"re-{fmt}", create=True)
        ids2, summary = ingest_transcripts(corpus2, [tmp_path / f"out-{fmt}"])
        assert summary.count("failed") == 0, summary.failed
        assert sorted(ids2) == sorted(ids)
        back = corpus2.utterances()
        for col in ("session_id", "speaker", "role", "text"):
            assert back[col].tolist() == original[col].tolist(), (fmt, col)
        assert back["start"].tolist() == pytest.approx(original["start"].tolist(), abs=1e-3)
        assert back["end"].tolist() == pytest.approx(original["end"].tolist(), abs=1e-3)

    with pytest.raises(ValueError):
        export_transcripts(corpus, tmp_path / "x", fmt="docx")
    assert math.isfinite(original["start"].max())


def test_ingest_does_not_overwrite_a_session_from_another_source(tmp_path):
    corpus = Corpus.open(tmp_path / "corpus", create=True)
    session = corpus.session("interview")
    session.write_source({"path": str(tmp_path / "elsewhere" / "interview.csv"), "format": "table"})
    write(tmp_path, "interview.tsv", FIGURE_12)
    ids, summary = ingest_transcripts(corpus, [tmp_path / "interview.tsv"])
    assert ids == [] and summary.count("failed") == 1
    assert "elsewhere" in summary.failed[0].reason
    ids, summary = ingest_transcripts(corpus, [tmp_path / "interview.tsv"], force=True)
    assert ids == ["interview"] and summary.count("done") == 1


def test_transcript_pairs_with_a_media_session_of_the_same_id(tmp_path):
    corpus = Corpus.open(tmp_path / "corpus", create=True)
    session = corpus.session("interview")
    session.write_source({"origin": "videos/interview.mp4", "kind": "media", "path": "videos/interview.mp4"})
    write(tmp_path, "interview.tsv", FIGURE_12)
    ids, summary = ingest_transcripts(corpus, [tmp_path / "interview.tsv"])
    assert ids == ["interview"] and summary.count("done") == 1
    source = session.read_source()
    assert source["kind"] == "media" and source["origin"] == "videos/interview.mp4"
    assert source["transcript"]["path"].endswith("interview.tsv")
    ids, summary = ingest_transcripts(corpus, [tmp_path / "interview.tsv"])
    assert summary.count("skipped") == 1
