"""`emoguide evaluate transcript|affect`: figures worked out by hand on tiny references, every
reference reader, the CLI end to end, and the shared real recordings (skipped where absent)."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from emoguide.cli import app
from emoguide.corpus import Corpus, schema
from emoguide.corpus.atomic import write_parquet
from emoguide.errors import InputError, MissingExtraError
from emoguide.evaluation.affect_eval.labels import labels_from_names, mead_label, ravdess_label, read_labels
from emoguide.evaluation.affect_eval.run import auc, evaluate_affect, macro_f1
from emoguide.evaluation.transcript import metrics as M
from emoguide.evaluation.transcript.references import (
    clean_chat_text,
    read_chat,
    read_reference_file,
    read_rttm,
    read_stm,
)
from emoguide.evaluation.transcript.run import evaluate_transcripts

from helpers import SHARED_DATA

REAL = SHARED_DATA / "real"
runner = CliRunner(env={"COLUMNS": "200"})


def turns(*rows) -> pd.DataFrame:
    """(speaker, start, end[, text[, role]]) tuples -> a turn table."""
    out = []
    for r in rows:
        r = list(r) + [None] * (5 - len(r))
        out.append(dict(zip(["speaker", "start", "end", "text", "role"], r)))
    return pd.DataFrame(out)


def words_at(*rows) -> pd.DataFrame:
    """(speaker, midpoint[, role]) -> 0.2 s words centred on the midpoint."""
    return pd.DataFrame([{"start": m - 0.1, "end": m + 0.1, "text": "w", "speaker": s,
                          "role": (r[0] if r else None)} for s, m, *r in rows])


# ------------------------------------------------------------------------ metrics by hand


def test_der_one_second_confusion_is_a_tenth():
    ref = turns(("A", 0, 5), ("B", 5, 10))
    hyp = turns(("x", 0, 6), ("y", 6, 10))  # 5..6 s is B's speech given to A's label
    d = M.diarization_errors(ref, hyp)
    assert d["der"] == pytest.approx(0.1)
    assert d["confusion_s"] == pytest.approx(1.0)
    assert d["missed_s"] == pytest.approx(0.0) and d["false_alarm_s"] == pytest.approx(0.0)
    assert d["scored_s"] == pytest.approx(10.0)
    # JER per reference speaker: A: 1 - 5/6, B: 1 - 4/5; mean of the two.
    assert d["jer"] == pytest.approx(((1 - 5 / 6) + (1 - 4 / 5)) / 2)


def test_der_collar_and_missed_false_alarm():
    ref = turns(("A", 0, 5), ("B", 5, 10))
    hyp = turns(("x", 0, 6), ("y", 6, 10))
    # pyannote collar 0.5: 0.25 s either side of the reference edges 0, 5 and 10 is not scored:
    # scored 10 - 0.25 - 0.5 - 0.25 = 9 s, confusion 5.25..6 = 0.75 s.
    d = M.diarization_errors(ref, hyp, collar=0.5)
    assert d["scored_s"] == pytest.approx(9.0)
    assert d["der"] == pytest.approx(0.75 / 9.0)
    # Hypothesis misses 0..1 and says speech at 10..11 (scored region reaches the hypothesis end).
    d = M.diarization_errors(ref, turns(("x", 1, 5), ("y", 5, 11)))
    assert d["missed_s"] == pytest.approx(1.0) and d["false_alarm_s"] == pytest.approx(1.0)
    assert d["der"] == pytest.approx(2.0 / 10.0)


def test_skip_overlap_leaves_overlap_out():
    ref = turns(("A", 0, 6), ("B", 4, 10))  # 4..6 overlapped
    hyp = turns(("x", 0, 5), ("y", 5, 10))
    d = M.diarization_errors(ref, hyp, skip_overlap=True)
    assert d["der"] == pytest.approx(0.0)
    assert d["scored_s"] == pytest.approx(8.0)
    d = M.diarization_errors(ref, hyp)  # 2 s overlap, hypothesis gives one speaker: 2 s missed
    assert d["missed_s"] == pytest.approx(2.0) and d["scored_s"] == pytest.approx(12.0)


def test_wer_by_hand_with_the_normalisation():
    ref = M.normalise_words("Hello, world! It\u2019s me.")
    hyp = M.normalise_words("hello WORD it's")
    assert ref == ["hello", "world", "it's", "me"]
    w = M.wer_counts(ref, hyp)
    assert (w["substitutions"], w["deletions"], w["insertions"]) == (1, 1, 0)
    assert w["wer"] == pytest.approx(0.5)
    assert M.normalise_words("well-known 'cause") == ["well", "known", "cause"]
    assert M.wer_counts([], ["a"])["wer"] is None  # no reference words: null, not 0
    assert M.wer_counts(["a", "b"], [])["wer"] == pytest.approx(1.0)


def test_attribution_optimal_mapping_by_hand():
    ref = turns(("A", 0, 5), ("B", 5, 10))
    # x talks 1, 2, 3, 4.5 (A's time) and 5.5 (B's); y 6, 7, 8 (B's): 7 of 8 right.
    hyp = words_at(("x", 1), ("x", 2), ("x", 3), ("x", 4.5), ("x", 5.5), ("y", 6), ("y", 7), ("y", 8))
    a = M.speaker_attribution(ref, hyp)
    assert a["speaker_map"] == {"x": "A", "y": "B"}
    assert a["attribution"] == pytest.approx(7 / 8)
    # A third hypothesis speaker has no reference partner: its words count as wrong.
    hyp3 = words_at(("x", 1), ("x", 2), ("y", 6), ("y", 7), ("z", 8))
    assert M.speaker_attribution(ref, hyp3)["attribution"] == pytest.approx(4 / 5)
    # A word in a gap goes to the nearest turn.
    gap = turns(("A", 0, 4), ("B", 6, 10))
    assert M.speaker_attribution(gap, words_at(("x", 1), ("x", 4.5), ("y", 8)))["attribution"] == pytest.approx(1.0)


def test_role_accuracy_and_boundaries_by_hand():
    ref = turns(("A", 0, 5, None, "therapist"), ("B", 5, 10, None, "patient"))
    hyp = words_at(("x", 1, "therapist"), ("x", 2, "therapist"), ("y", 6, "therapist"), ("y", 7, "patient"))
    assert M.role_accuracy(ref, hyp)["role_accuracy"] == pytest.approx(3 / 4)
    assert M.role_accuracy(turns(("A", 0, 5), ("B", 5, 10)), hyp)["role_accuracy"] is None
    # Boundaries 0, 5, 5, 10 (reference) vs 0, 6, 6, 10: 0 and 10 within 0.5 s -> P = R = 0.5.
    b = M.boundary_scores(ref, turns(("x", 0, 6), ("y", 6, 10)))
    assert (b["boundary_precision"], b["boundary_recall"]) == (0.5, 0.5)
    # One extra split at 2.0: 0, 2, 2, 5.3, 5.3, 10 against 0, 5, 5, 10 -> 4 matched of 6 / of 4.
    b = M.boundary_scores(ref, turns(("x", 0, 2), ("x", 2, 5.3), ("y", 5.3, 10)))
    assert b["boundary_precision"] == pytest.approx(4 / 6) and b["boundary_recall"] == pytest.approx(1.0)
    assert M.match_points([1.0, 1.2], [1.1], 0.5) == 1  # one-to-one


# ------------------------------------------------------------------------------------- readers


def test_rttm_reader_sessions_and_errors(tmp_path):
    p = tmp_path / "refs.rttm"
    p.write_text(
        "SPEAKER s1 1 0.00 5.00 <NA> <NA> spk1 <NA> <NA>\n"
        "SPKR-INFO s1 1 <NA> <NA> <NA> unknown spk1 <NA> <NA>\n"
        "SPEAKER s1 1 5.00 5.00 <NA> <NA> spk2 <NA> <NA>\n"
        "SPEAKER other 1 1.5 2.0 <NA> <NA> spk9 <NA> <NA>\n"
    )
    refs = {r.name: r for r in read_rttm(p)}
    assert set(refs) == {"s1", "other"}
    assert refs["s1"].turns[["speaker", "start", "end"]].values.tolist() == [["spk1", 0.0, 5.0], ["spk2", 5.0, 10.0]]
    assert not refs["s1"].has_text and refs["other"].turns["end"].tolist() == [3.5]
    bad = tmp_path / "bad.rttm"
    bad.write_text("SPEAKER s1 1 0.0 5.0 <NA> <NA> spk1 <NA> <NA>\nSPEAKER s1 1 zero 1 <NA> <NA> a <NA> <NA>\n")
    with pytest.raises(InputError, match=r"bad\.rttm, line 2: .*not numbers"):
        read_rttm(bad)
    empty = tmp_path / "e.rttm"
    empty.write_text("# nothing\n")
    with pytest.raises(InputError, match="no SPEAKER lines"):
        read_rttm(empty)


def test_stm_reader(tmp_path):
    p = tmp_path / "s.stm"
    p.write_text(
        ";; a comment\n"
        "dlg 1 Therapist 0.0 4.0 <o,f0,male> How are you today\n"
        "dlg 1 inter_segment_gap 4.0 5.0\n"
        "dlg 1 Client 5.0 9.5 Not so good\n"
        "dlg 1 Client 9.5 10.0 ignore_time_segment_in_scoring\n"
    )
    (ref,) = read_stm(p)
    assert ref.name == "dlg" and ref.has_text and ref.has_roles
    assert ref.turns["text"].tolist() == ["How are you today", "Not so good"]
    assert ref.turns["role"].tolist() == ["therapist", "patient"]
    bad = tmp_path / "b.stm"
    bad.write_text("dlg 1 A 3.0 2.0 words\n")
    with pytest.raises(InputError, match=r"b\.stm, line 1: end 2 is before begin 3"):
        read_stm(bad)


CHA = (
    "@UTF8\n@Begin\n@Languages:\teng\n@Participants:\tTHE Ann Therapist, PAT Bob Patient\n"
    "@ID:\teng|x|THE|||||Therapist|||\n@ID:\teng|x|PAT|||||Patient|||\n@Media:\tsession_7, audio\n"
    "*THE:\thow are you &-um feeling [/] feeling today ? \x150_2500\x15\n"
    "%wor:\thow \x150_300\x15 are \x15300_500\x15 you \x15500_800\x15 feeling \x151000_1500\x15 feeling \x151600_2000\x15"
    " today \x152000_2500\x15 ?\n"
    "*PAT:\tnot <so good> [//] (be)cause xxx\n\tthe weather . \x153000_5250\x15\n"
    "*PAT:\tan untimed line .\n@End\n"
)


def test_chat_reader_bullets_roles_words_and_cleaning(tmp_path):
    p = tmp_path / "talk.cha"
    p.write_text(CHA)
    (ref,) = read_chat(p)
    assert ref.name == "talk" and "session_7" in ref.aliases
    assert ref.turns[["speaker", "start", "end"]].values.tolist() == [["THE", 0.0, 2.5], ["PAT", 3.0, 5.25]]
    assert ref.turns["text"].tolist() == ["how are you feeling feeling today ?", "not so good because the weather ."]
    assert ref.turns["role"].tolist() == ["therapist", "patient"]
    assert ref.words is not None and ref.words["text"].tolist()[:3] == ["how", "are", "you"]
    assert ref.words["end"].iloc[-1] == pytest.approx(2.5)
    assert any("without time bullets" in w for w in ref.warnings)
    assert clean_chat_text("I want [: wanna] &=laughs 0is go@s +...") == "I want go"
    bad = tmp_path / "bad.cha"
    bad.write_text("@Begin\n*CHI:\tno bullets here .\n@End\n")
    with pytest.raises(InputError, match=r"bad\.cha: no timed utterances"):
        read_chat(bad)


def test_ingest_readers_table_srt_vtt_annomi(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("Speaker,Role,Start Time,End Time,Utterance\nDr Lee,therapist,00:00:00,00:00:04,Hi there\n"
                     "Sam,patient,00:00:05,00:00:09,Hello\n")
    (r,) = read_reference_file(table)
    assert r.fmt == "table" and r.has_roles and r.has_ends
    assert r.turns["speaker"].tolist() == ["Dr Lee", "Sam"]
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:02,500\nAnn: Hello there\n\n2\n00:00:03,000 --> 00:00:04,000\nBob: Hi\n")
    (r,) = read_reference_file(srt)
    assert r.turns[["speaker", "end"]].values.tolist() == [["Ann", 2.5], ["Bob", 4.0]] and not r.has_roles
    vtt = tmp_path / "v.vtt"
    vtt.write_text("WEBVTT\n\n00:00.000 --> 00:02.000\n<v Therapist>Hello\n\n00:02.500 --> 00:04.000\n<v Client>Hi\n")
    (r,) = read_reference_file(vtt)
    assert r.turns["role"].tolist() == ["therapist", "patient"]
    annomi = tmp_path / "annomi.csv"
    annomi.write_text(
        "mi_quality,transcript_id,video_title,video_url,topic,utterance_id,interlocutor,timestamp,utterance_text,annotator_id\n"
        "high,4,t,u,x,0,therapist,00:00:01,Hello,1\nhigh,4,t,u,x,1,client,00:00:05,Hi,1\n"
    )
    (r,) = read_reference_file(annomi)
    assert r.name == "annomi-004" and r.fmt == "annomi" and r.has_roles
    assert not r.has_ends  # AnnoMI has start times only: no DER/JER
    broken = tmp_path / "broken.srt"
    broken.write_text("1\n00:00:00,000 --> oops\nHello\n")
    with pytest.raises(InputError, match="broken.srt"):
        read_reference_file(broken)


# -------------------------------------------------------------------------------- corpus + CLI


def _corpus(tmp_path) -> Corpus:
    """Session `dlg`: two speakers over 10 s with a 1 s confusion; `solo` (no reference)."""
    c = Corpus.open(tmp_path / "c", create=True)
    utts = pd.DataFrame({
        "index": [0, 1], "start": [0.0, 6.0], "end": [6.0, 10.0], "speaker": ["A", "B"],
        "role": ["therapist", "patient"], "text": ["how are you today I am", "fine thanks"],
    })
    c.session("dlg").write_utterances(utts)
    # ASR words: "I am" (5.2..5.9) are B's words in the reference but inside A's utterance.
    w = pd.DataFrame({"start": [0.2, 1.0, 2.0, 3.0, 5.2, 5.6, 6.5, 8.0], "end": [0.8, 1.8, 2.8, 4.0, 5.5, 5.9, 7.5, 9.0],
                      "text": ["how", "are", "you", "today", "I", "am", "fine", "thanks"], "probability": [0.9] * 8})
    write_parquet(c.session("dlg").path / "words.parquet", w)
    c.session("solo").write_utterances(pd.DataFrame({"index": [0], "start": [0.0], "end": [1.0], "speaker": ["A"],
                                                     "role": ["unknown"], "text": ["hi"]}))
    return c


def _refs(tmp_path):
    d = tmp_path / "refs"
    d.mkdir()
    (d / "dlg.rttm").write_text("SPEAKER dlg 1 0 5 <NA> <NA> T <NA> <NA>\nSPEAKER dlg 1 5 5 <NA> <NA> P <NA> <NA>\n")
    (d / "nobody.rttm").write_text("SPEAKER nobody 1 0 5 <NA> <NA> T <NA> <NA>\n")
    stm = tmp_path / "dlg.stm"
    stm.write_text("dlg 1 therapist 0 5 how are you today\ndlg 1 patient 5 10 I am fine thanks\n")
    return d, stm


def test_evaluate_transcript_cli_end_to_end(tmp_path):
    c = _corpus(tmp_path)
    refs, stm = _refs(tmp_path)
    res = runner.invoke(app, ["evaluate", "transcript", "-c", str(c.root), "-r", str(refs)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "no session matches reference 'nobody'" in text and "sessions without a reference: solo" in text
    data = json.loads((c.root / "reports" / "evaluate" / "transcript.json").read_text())
    (row,) = data["sessions"]
    assert row["session_id"] == "dlg" and row["der"] == pytest.approx(0.1)
    assert row["confusion_s"] == pytest.approx(1.0)
    assert row["wer"] is None and row["role_accuracy"] is None  # an RTTM has no words, no roles: null
    assert row["attribution"] == pytest.approx(6 / 8)  # "I", "am" given to A
    # Boundaries 0, 6, 6, 10 vs 0, 5, 5, 10.
    assert row["boundary_precision"] == 0.5 and row["boundary_recall"] == 0.5
    assert data["unmatched_references"][0]["reference"] == "nobody"
    csv = pd.read_csv(c.root / "reports" / "evaluate" / "transcript.csv")
    assert csv["session_id"].tolist() == ["dlg", "ALL"] and pd.isna(csv.loc[0, "wer"])

    # STM has words and roles: WER, role accuracy.
    res = runner.invoke(app, ["evaluate", "transcript", "-c", str(c.root), "-r", str(stm), "--collar", "0.5"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    row = json.loads((c.root / "reports" / "evaluate" / "transcript_collar0.5.json").read_text())["sessions"][0]
    assert row["wer"] == pytest.approx(0.0)  # same words, in time order
    assert row["role_accuracy"] == pytest.approx(6 / 8)
    assert row["der"] == pytest.approx(0.75 / 9.0)


def test_evaluate_transcript_cli_errors(tmp_path):
    c = _corpus(tmp_path)
    bad = tmp_path / "bad.rttm"
    bad.write_text("SPEAKER dlg 1 x 5 <NA> <NA> T <NA> <NA>\n")
    res = runner.invoke(app, ["evaluate", "transcript", "-c", str(c.root), "-r", str(bad)])
    assert res.exit_code == 2 and "bad.rttm, line 1" in " ".join(res.output.split())
    other = tmp_path / "other.rttm"
    other.write_text("SPEAKER zzz 1 0 5 <NA> <NA> T <NA> <NA>\n")
    res = runner.invoke(app, ["evaluate", "transcript", "-c", str(c.root), "-r", str(other)])
    assert res.exit_code == 1 and "no reference matched" in " ".join(res.output.split())
    res = runner.invoke(app, ["evaluate", "transcript", "-c", str(tmp_path / "none"), "-r", str(other)])
    assert res.exit_code == 2
    res = runner.invoke(app, ["evaluate", "transcript", "-c", str(c.root), "-r", str(tmp_path / "missing.rttm")])
    assert res.exit_code == 2 and "missing.rttm" in res.output
    res = runner.invoke(app, ["evaluate", "transcript", "-c", str(c.root), "-r", str(other), "-s", "nope"])
    assert res.exit_code == 2 and "nope" in res.output
    refs, _ = _refs(tmp_path)
    res = runner.invoke(app, ["evaluate", "transcript", "-c", str(c.root), "-r", str(refs), "-s", "dlg"])
    assert res.exit_code == 0 and "sessions without a reference" not in res.output


def test_one_failing_session_does_not_end_the_batch(tmp_path):
    c = _corpus(tmp_path)
    c.session("solo").path.joinpath("words.parquet").write_bytes(b"PAR1 not a parquet file")
    refs, _ = _refs(tmp_path)
    (refs / "solo.rttm").write_text("SPEAKER solo 1 0 1 <NA> <NA> T <NA> <NA>\n")
    res = runner.invoke(app, ["evaluate", "transcript", "-c", str(c.root), "-r", str(refs)], catch_exceptions=False)
    assert res.exit_code == 1 and "failed: solo" in " ".join(res.output.split())
    data = json.loads((c.root / "reports" / "evaluate" / "transcript.json").read_text())
    assert [r["session_id"] for r in data["sessions"]] == ["dlg"] and data["failed"][0]["session_id"] == "solo"


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "jiwer", None)  # import jiwer -> ImportError
    with pytest.raises(MissingExtraError, match=r"emoguide\[evaluate\]"):
        M.wer_counts(["a"], ["a"])


def test_transcript_imported_session_spreads_words(tmp_path):
    """A session without words.parquet: words spread over their utterance (reported as such)."""
    c = Corpus.open(tmp_path / "c", create=True)
    c.session("t").write_utterances(pd.DataFrame({"index": [0, 1], "start": [0.0, 5.0], "end": [5.0, 10.0],
                                                  "speaker": ["A", "B"], "role": ["therapist", "patient"],
                                                  "text": ["one two three four five", "six seven"]}))
    ref = tmp_path / "t.rttm"
    ref.write_text("SPEAKER t 1 0 4 <NA> <NA> X <NA> <NA>\nSPEAKER t 1 4 6 <NA> <NA> Y <NA> <NA>\n")
    r = evaluate_transcripts(c, [ref])
    (row,) = r.rows
    assert row["word_times"] == "spread"
    # Words of A at 0.5, 1.5, 2.5, 3.5, 4.5 s: the last (4.5) is Y's time -> 6 of 7 right.
    assert row["attribution"] == pytest.approx(6 / 7)


# -------------------------------------------------------------------------------------- affect


def _affect_corpus(tmp_path) -> Corpus:
    c = Corpus.open(tmp_path / "c", create=True)
    rows = {  # session: (voice_arousal, face_label, face_valence)
        "03-01-01-01-01-01-03": (-0.5, "neutral", 0.0),   # neutral, low
        "03-01-02-01-01-01-03": (0.1, "happy", 0.6),      # calm, low (face "happy" is wrong)
        "03-01-03-01-01-01-03": (0.4, "happy", 0.8),      # happy, high
        "03-01-05-01-01-01-03": (-0.2, "angry", -0.5),    # angry, high
        "03-01-04-01-01-01-03": (None, "sad", -0.6),      # sad, low; no voice value
    }
    for sid, (va, fl, fv) in rows.items():
        probs = json.dumps({fl: 0.9, "neutral" if fl != "neutral" else "sad": 0.1})
        c.session(sid).write_utterances(pd.DataFrame({
            "index": [0], "start": [0.5], "end": [3.0], "speaker": ["A"], "role": ["patient"], "text": ["Kids are talking."],
            "voice_arousal": [va], "face_label": [fl], "face_probs": [probs], "face_valence": [fv], "face_arousal": [0.1],
        }))
        src = c.session(sid).read_source()
        src["file_name"] = sid + ".wav"
        c.session(sid).write_source(src)
    return c


def test_affect_metrics_by_hand(tmp_path):
    c = _affect_corpus(tmp_path)
    r = evaluate_affect(c, from_names="ravdess")
    face, voice = r.metrics
    assert face["n_items"] == 5 and face["n_covered"] == 5
    assert face["accuracy"] == pytest.approx(4 / 5)  # calm compared as neutral; face said happy
    # classes: angry, happy, neutral, sad; F1: 1, 2/3, 2/3, 1
    assert face["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3 + 1) / 4)
    # voice arousal: high {0.4, -0.2} vs low {-0.5, 0.1} (sad has no value): 3 of 4 pairs ordered.
    assert voice["n_covered"] == 4 and voice["arousal_auc"] == pytest.approx(3 / 4)
    assert voice["accuracy"] is None  # no categorical voice output: null, not 0
    # face valence: happy 0.8 vs angry -0.5, sad -0.6 -> AUC 1, separation 0.8 - (-0.55).
    assert face["valence_auc"] == pytest.approx(1.0)
    assert face["valence_separation"] == pytest.approx(0.8 + 0.55)
    assert auc([1.0], [1.0]) == 0.5 and auc([], [1.0]) is None
    assert macro_f1(["a", "b"], ["a", "a"]) == pytest.approx((2 / 3 + 0) / 2)


def test_affect_labels_csv_with_times_and_dimensions(tmp_path):
    c = Corpus.open(tmp_path / "c", create=True)
    c.session("talk").write_utterances(pd.DataFrame({
        "index": [0, 1, 2, 3], "start": [0.0, 3.0, 6.0, 9.0], "end": [2.0, 5.0, 8.0, 11.0], "speaker": ["A"] * 4,
        "role": ["patient"] * 4, "text": ["a", "b", "c", "d"],
        "voice_arousal": [-0.4, 0.2, 0.5, 0.0], "voice_valence": [0.1, 0.2, 0.3, 0.4],
    }))
    labels = tmp_path / "labels.csv"
    labels.write_text("session,start,end,label,arousal,valence\ntalk.wav,0,2.5,sad,1,2\ntalk,2.5,5.5,,3,1\n"
                      "talk,5.5,8.5,angry,5,4\ntalk,8.5,12,,2,3\nnot_here,0,1,happy,,\n")
    res = runner.invoke(app, ["evaluate", "affect", "-c", str(c.root), "--labels", str(labels)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    data = json.loads((c.root / "reports" / "evaluate" / "affect.json").read_text())
    voice = next(m for m in data["metrics"] if m["channel"] == "voice")
    assert voice["n_items"] == 4 and data["unmatched_labels"] == ["not_here"]
    assert voice["arousal_auc"] == pytest.approx(1.0)  # angry 0.5 > sad -0.4
    # arousal labels 1, 3, 5, 2 vs voice -0.4, 0.2, 0.5, 0.0: ranks identical -> Spearman 1.
    assert voice["arousal_spearman"] == pytest.approx(1.0)
    # valence ranks 2, 1, 4, 3 vs 1, 2, 3, 4: sum d^2 = 4, rho = 1 - 6 * 4 / (4 * 15) = 0.6.
    assert voice["valence_spearman"] == pytest.approx(0.6)
    assert (c.root / "reports" / "evaluate" / "affect.csv").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("session,start,end,label\ntalk,3,1,sad\n")
    res = runner.invoke(app, ["evaluate", "affect", "-c", str(c.root), "--labels", str(bad)])
    assert res.exit_code == 2 and "bad.csv, line 2" in " ".join(res.output.split())
    res = runner.invoke(app, ["evaluate", "affect", "-c", str(c.root)])
    assert res.exit_code == 2
    with pytest.raises(InputError, match="no session column"):
        (tmp_path / "x.csv").write_text("who,label\na,sad\n")
        read_labels(tmp_path / "x.csv")


def test_labels_from_names():
    assert ravdess_label("03-01-06-02-01-01-03") == {"label": "fear", "intensity": "strong"}
    assert ravdess_label("M030_front_angry_level3_001") is None
    assert mead_label("M030_front_disgusted_level3_001") == {"label": "disgust", "intensity": "level3"}
    assert mead_label("/data/M003/video/front/surprised/level_2/001.mp4") == {"label": "surprise", "intensity": "level2"}
    assert mead_label("03-01-06-02-01-01-03") is None


def test_affect_silent_video_falls_back_to_face_rows(tmp_path):
    c = Corpus.open(tmp_path / "c", create=True)
    s = c.session("M030_front_sad_level3_001")
    s.write_utterances(schema.empty_utterances())
    write_parquet(s.path / "faces.parquet", pd.DataFrame({
        "t": [0.0, 0.2, 0.4, 0.6], "track_id": [0, 0, 0, -1], "valence": [-0.4, -0.6, -0.5, 0.9],
        "arousal": [0.1, 0.1, 0.1, 0.9], "label": ["sad", "sad", "neutral", "happy"],
        "probs": [json.dumps({"sad": 0.7, "neutral": 0.3}), json.dumps({"sad": 0.6, "neutral": 0.4}),
                  json.dumps({"sad": 0.4, "neutral": 0.6}), json.dumps({"happy": 1.0})],
        "affect_source": ["fer"] * 4,
    }))
    (labels, undecoded) = labels_from_names(c.sessions(), "mead")
    assert labels["label"].tolist() == ["sad"] and not undecoded
    r = evaluate_affect(c, from_names="mead")
    item = r.items.iloc[0]
    assert item["face_from"] == "faces" and item["face_label"] == "sad"  # mean probs: sad 0.567
    assert item["face_valence"] == pytest.approx(-0.5)  # the unconfirmed row (-1) is left out
    assert r.metrics[0]["accuracy"] == 1.0


# ---------------------------------------------------------------------------- shared real data

needs_real = pytest.mark.skipif(not REAL.exists(), reason=f"shared real recordings absent ({REAL})")


@needs_real
def test_real_references_read():
    for p in sorted((REAL / "diarization").glob("*.rttm")):
        (ref,) = read_reference_file(p)
        assert ref.name == p.stem and len(ref.turns) >= 1 and ref.turns["end"].max() <= 30.5
    (cha,) = read_reference_file(REAL / "batchalign_test.cha")
    assert cha.has_text and cha.words is not None and cha.turns["speaker"].unique().tolist() == ["PAR0"]
    assert cha.turns["start"].iloc[0] == pytest.approx(0.125)
    assert "hello" in M.normalise_words(cha.turns["text"].iloc[0])


@needs_real
def test_real_rttm_against_itself_and_a_shift(tmp_path):
    """The reference as the hypothesis gives DER 0; moving every turn 0.5 s later gives a DER that
    pyannote's components must add up to."""
    rttm = REAL / "diarization" / "ami_dev00.rttm"
    (ref,) = read_rttm(rttm)
    assert M.diarization_errors(ref.turns, ref.turns)["der"] == pytest.approx(0.0)
    shifted = ref.turns.assign(start=ref.turns["start"] + 0.5, end=ref.turns["end"] + 0.5)
    d = M.diarization_errors(ref.turns, shifted)
    assert 0 < d["der"] < 0.3
    assert d["der"] == pytest.approx((d["missed_s"] + d["false_alarm_s"] + d["confusion_s"]) / d["scored_s"])


@needs_real
@pytest.mark.slow
def test_real_ami_dev00_ingest_transcribe_evaluate(tmp_path):
    """ami_dev00.wav through real `emoguide ingest` + `transcribe`, evaluated against its RTTM."""
    from helpers import need_media

    need_media()
    wav = REAL / "diarization" / "ami_dev00.wav"
    corpus = tmp_path / "c"
    res = runner.invoke(app, ["ingest", "-c", str(corpus), str(wav)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["transcribe", "-c", str(corpus)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", "transcript", "-c", str(corpus), "-r", str(wav.with_suffix(".rttm"))],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (row,) = json.loads((corpus / "reports" / "evaluate" / "transcript.json").read_text())["sessions"]
    assert row["session_id"] == "ami_dev00" and row["wer"] is None
    assert row["der"] is not None and 0 <= row["der"] < 0.6  # measured 0.17 (no collar) on this machine
    assert row["attribution"] is not None and row["attribution"] > 0.7
    assert row["der"] == pytest.approx((row["missed_s"] + row["false_alarm_s"] + row["confusion_s"]) / row["scored_s"])


@needs_real
def test_real_file_names_decode_to_their_labels():
    ravdess = sorted((REAL / "ravdess_speech").glob("*.wav"))
    got = [ravdess_label(p.stem)["label"] for p in ravdess]
    assert len(got) == 12 and sorted(set(got)) == ["angry", "calm", "fear", "happy", "neutral", "sad"]
    assert all(got.count(x) == 2 for x in set(got))  # two actors each
    mead = {p.name: mead_label(p.stem)["label"] for p in (REAL / "mead_faces").glob("*.mp4")}
    assert mead["M030_front_disgusted_level3_001.mp4"] == "disgust" and len(set(mead.values())) == 8
