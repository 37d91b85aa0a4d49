import pandas as pd
import pytest

from emoguide.affect.importer import read_affect_csv
from emoguide.errors import InputError
from emoguide.pipeline.runner import run_one
from emoguide.stages.affect_import import import_affect

from helpers import corpus_with, dialogue


def write(tmp_path, text, name="affect.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_import_merges_values_labels_probs_and_source(tmp_path):
    c = corpus_with(tmp_path, {"s1": dialogue(2), "s2": dialogue(2)})
    p = write(
        tmp_path,
        "session_id,index,voice_valence,voice_arousal,face_valence,face_arousal,face_label,face_probs\n"
        's1,1,0.5,0.2,-0.3,0.1,sad,"{""sad"": 0.7, ""neutral"": 0.3}"\n'
        "s1,3,,0.4,0.1,,,\n",
    )
    summary = import_affect(c, p)
    assert summary.count("done") == 1 and summary.count("failed") == 0
    df = c.session("s1").read_utterances()
    assert df.loc[1, "voice_valence"] == 0.5 and df.loc[1, "face_label"] == "sad"
    assert df.loc[1, "face_probs"] == '{"sad": 0.7, "neutral": 0.3}'
    assert pd.isna(df.loc[3, "voice_valence"]) and df.loc[3, "voice_arousal"] == 0.4  # empty stays null
    assert df.loc[1, "voice_source"] == "imported:affect.csv"
    assert pd.isna(df.loc[0, "voice_source"])  # no row for utterance 0: nothing claimed
    assert c.session("s2").read_utterances()["voice_valence"].isna().all()
    assert df["text_source"].isna().all()  # the file has no text columns: that group is untouched
    rec = c.session("s1").stages.get("affect_import")
    assert rec["backends"]["affect"] == "imported:affect.csv" and "affect.csv" in rec["inputs"]
    # rerun: unchanged -> skipped; then dissonance sees the values
    assert import_affect(c, p).count("skipped") == 1
    assert run_one(c, "dissonance").count("done") == 2
    d = c.session("s1").read_utterances()
    assert bool(d.loc[1, "dissonance"]) is True  # |0.5 - -0.3| = 0.8
    # utterance 3: voice has only arousal, face only valence -> no shared dimension -> null
    assert pd.isna(d.loc[3, "dissonance"]) and pd.isna(d.loc[3, "dissonance_score"])
    assert run_one(c, "dissonance").count("skipped") == 2
    # a new import (changed file) reruns the import and, through it, dissonance; s2 is not in the file
    p.write_text("session_id,index,voice_valence,face_valence\ns1,1,0.1,0.0\n")
    assert import_affect(c, p).count("done") == 1
    d = c.session("s1").read_utterances()
    assert d.loc[1, "voice_valence"] == 0.1 and d.loc[3, "voice_arousal"] == 0.4  # earlier values kept
    again = run_one(c, "dissonance")
    assert {o.item: o.status for o in again.outcomes} == {"s1": "done", "s2": "skipped"}
    assert bool(c.session("s1").read_utterances().loc[1, "dissonance"]) is False  # |0.1 - 0.0|, |0.2 - 0.1|


def test_scale_0_1_is_converted(tmp_path):
    p = write(tmp_path, "session_id,index,voice_arousal\ns1,1,0.75\n")
    df = read_affect_csv(p, scale="0-1")
    assert df.loc[0, "voice_arousal"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "text,match,line",
    [
        ("index,voice_valence\n1,0.2\n", "missing key column", 1),
        ("session_id,index,voice_happiness\ns1,1,0.2\n", "unknown column", 1),
        ("session_id,index,voice_valence\ns1,1,0.2\ns1,2,1.7\n", "outside", 3),
        ("session_id,index,voice_valence\ns1,1,abc\n", "not a number", 2),
        ("session_id,index,voice_valence\ns1,x,0.1\n", "whole number", 2),
        ("session_id,index,voice_valence\ns1,1,0.1\ns1,1,0.2\n", "duplicate", 3),
        ('session_id,index,face_probs\ns1,1,"not json"\n', "JSON object", 2),
    ],
)
def test_bad_affect_files_name_file_line_and_problem(tmp_path, text, match, line):
    p = write(tmp_path, text)
    with pytest.raises(InputError, match=match) as exc:
        read_affect_csv(p)
    assert exc.value.line == line
    assert exc.value.path.endswith("affect.csv")


def test_unknown_session_and_stray_index_fail_but_others_import(tmp_path):
    c = corpus_with(tmp_path, {"s1": dialogue(2), "s2": dialogue(1)})
    p = write(tmp_path, "session_id,index,voice_valence\ns1,1,0.1\ns2,40,0.3\nghost,1,0.2\n")
    summary = import_affect(c, p)
    status = {(o.item, o.status) for o in summary.outcomes}
    assert ("s1", "done") in status and ("s2", "failed") in status and ("ghost", "failed") in status
    assert c.session("s1").read_utterances().loc[1, "voice_valence"] == 0.1
    reason = next(o.reason for o in summary.outcomes if o.item == "s2")
    assert "no utterance index [40]" in reason
