"""Table 1, Figures 3 and 10 and the provenance notes on a small corpus whose numbers are worked
out by hand below (issue 9: "table1.csv ... the paper's Table 1 for the user's corpus")."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from emoguide.corpus import Corpus, schema
from emoguide.evaluation.stats import dataset

PROSODY = "prosody-arousal-v1(approx; valence unavailable)"


def _utts(sid: str, rows: list[tuple]) -> pd.DataFrame:
    """rows: (start, end, speaker, role, text, extra-dict)."""
    out = []
    for i, (start, end, speaker, role, text, extra) in enumerate(rows):
        out.append({"session_id": sid, "index": i, "start": start, "end": end, "speaker": speaker,
                    "role": role, "text": text, **extra})
    return schema.conform(pd.DataFrame(out))


def _affect(sent, vv, va, fv, fa, voice_source="audeering:test", face_source="fer:test"):
    d = {"text_sentiment": sent, "voice_valence": vv, "voice_arousal": va, "face_valence": fv, "face_arousal": fa}
    d = {k: v for k, v in d.items() if v is not None}
    if vv is not None or va is not None:
        d["voice_source"] = voice_source
    if fv is not None or fa is not None:
        d["face_source"] = face_source
    return d


@pytest.fixture()
def small_corpus(tmp_path) -> Corpus:
    c = Corpus.open(tmp_path / "c", create=True)
    # Session a: a video, probe says 90 s (its utterances end at 40 s: the probe must win).
    # Speakers A A B A B -> 4 turns (the two A's at the start are one turn).
    a = _utts("a", [
        (0.0, 5.0, "A", "therapist", "Hello, how are you today?", _affect(0.3, None, None, None, None)),
        (5.0, 9.0, "A", "therapist", "Don't rush.", _affect(0.1, None, None, None, None)),
        (10.0, 20.0, "B", "patient", "I'm tired, don't know. 42 days!", _affect(-0.4, 0.2, 0.6, -0.5, -0.1)),
        (20.0, 30.0, "A", "therapist", "Tired? Tell me more.", _affect(0.0, None, None, None, None)),
        (30.0, 40.0, "B", "patient", "I don\u2019t sleep.", _affect(-0.2, 0.1, 0.2, 0.0, 0.3)),
    ])
    sa = c.session("a")
    sa.write_utterances(a)
    sa.write_source({"kind": "media", "session_id": "a", "path": "/x/a.mp4", "probe": {"duration_s": 90.0}})
    # Session b: a transcript; the last end is 150 s (2.5 min). Speakers A B C -> 3 turns, 3 speakers.
    b = _utts("b", [
        (0.0, 10.0, "A", "therapist", "Welcome back.", _affect(0.5, None, None, None, None)),
        (10.0, 100.0, "B", "patient", "Hello again", _affect(0.2, 0.3, -0.2, 0.4, 0.0)),
        (100.0, 150.0, "C", "unknown", "hello", {}),
    ])
    sb = c.session("b")
    sb.write_utterances(b)
    sb.write_source({"kind": "transcript", "session_id": "b", "path": "/x/b.csv"})
    with sb.stage("transcribe", settings={"asr": "tiny.en"}) as run:
        run.backends["asr"] = "faster-whisper:tiny.en"
    return c


def test_table1_values_by_hand(small_corpus):
    t = dataset.table1(small_corpus)
    assert list(t.columns) == ["statistic", "value"]
    assert list(t["statistic"]) == list(dataset.TABLE1_DEFINITIONS)
    v = dict(zip(t["statistic"], t["value"]))
    assert v["videos"] == 2
    assert v["sessions_with_media"] == 1
    assert v["hours"] == pytest.approx((90 + 150) / 3600)
    assert v["mean_minutes"] == pytest.approx((1.5 + 2.5) / 2)
    assert v["median_minutes"] == pytest.approx(2.0)
    assert v["mean_turns"] == pytest.approx((4 + 3) / 2)
    assert v["mean_utterances"] == pytest.approx(4.0)
    # words, case-folded, apostrophes inside words kept (don’t is don't), numbers dropped:
    words = {"hello", "how", "are", "you", "today", "don't", "rush", "i'm", "tired", "know", "days", "tell", "me",
             "more", "i", "sleep", "welcome", "back", "again"}
    assert v["vocabulary_size"] == len(words) == 19
    assert v["speakers"] == pytest.approx(2.5)  # median of 2 and 3
    assert (v["speakers_min"], v["speakers_max"]) == (2, 3)
    assert (v["durations_from_probe"], v["durations_from_utterances"]) == (1, 1)


def test_table1_null_not_zero_without_durations(tmp_path):
    c = Corpus.open(tmp_path / "c", create=True)
    df = _utts("x", [(float("nan"), float("nan"), None, "patient", "words here", {})])
    c.session("x").write_utterances(df)
    v = dict(zip(*dataset.table1(c).T.values))
    assert v["videos"] == 1
    assert math.isnan(v["hours"]) and math.isnan(v["mean_minutes"])
    assert math.isnan(v["speakers"])  # no speaker labels: unknown, not 0
    assert v["vocabulary_size"] == 2


def test_figures_written_png_and_pdf(small_corpus, tmp_path):
    skipped: list[str] = []
    paths = dataset.corpus_figures(small_corpus, tmp_path / "figs", skipped)
    names = sorted(p.name for p in paths)
    expected = sorted(f"{stem}{ext}" for stem in dataset.FIGURE_NAMES.values() for ext in (".png", ".pdf"))
    assert names == expected, skipped
    assert skipped == []
    for p in paths:
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else head.startswith(b"%PDF")
        assert p.stat().st_size > 2000


def test_prosody_corpus_skips_fig10_with_a_note(tmp_path):
    c = Corpus.open(tmp_path / "c", create=True)
    rows = []
    for k in range(6):
        rows.append((k * 10.0, k * 10 + 4.0, "A", "therapist", "How was it?", {}))
        rows.append((k * 10 + 5.0, k * 10 + 9.0, "B", "patient", "It was fine.",
                     _affect(None, None, 0.1 * k, -0.2, 0.05 * k, voice_source=PROSODY)))
    df = _utts("p", rows)
    df["dissonance_compared"] = pd.Series(["arousal" if r == "patient" else None for r in df["role"]], dtype="string")
    df["dissonance_method"] = pd.Series(["raw T=0.5" if r == "patient" else None for r in df["role"]], dtype="string")
    c.session("p").write_utterances(df)
    skipped: list[str] = []
    paths = dataset.corpus_figures(c, tmp_path / "figs", skipped)
    stems = {p.stem for p in paths}
    # duration and the face-only V-A plane are drawable; sentiment (no text affect) and Fig. 10 are not
    assert stems == {"fig3_duration_histogram", "fig3_voice_face_valence_arousal"}
    assert any(s.startswith("fig10_abs_difference skipped") and "voice valence unavailable" in s for s in skipped)
    assert any(s.startswith("fig3_sentiment_by_role skipped") and "text_sentiment" in s for s in skipped)
    notes = dataset.notes(c)
    assert f"voice valence unavailable ({PROSODY}): dissonance compared arousal only" in notes
    assert any(n.startswith("dissonance compared dimensions: arousal (6 of 6)") for n in notes)
    assert any("0 session(s) from the media probe" in n and "1 from the last utterance" in n for n in notes)


def test_notes_name_sources_and_stage_backends(small_corpus):
    notes = dataset.notes(small_corpus)
    assert "durations: 1 session(s) from the media probe (source.json), 1 from the last utterance's end (no media)" in notes
    assert any(n.startswith("voice values from: audeering:test (3 of 8)") for n in notes)
    assert any(n.startswith("transcribe backends: asr=faster-whisper:tiny.en") for n in notes)
    assert not any("voice valence unavailable" in n for n in notes)
