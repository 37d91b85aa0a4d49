"""AnnoMI import: one session per transcript, annotator rows collapsed, labels kept."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from emoguide.corpus import Corpus
from emoguide.stages.ingest_transcript import ingest_transcripts
from emoguide.transcripts.readers import read_transcript_file

ANNOMI = Path(__file__).parents[1].parent / "shared/data/annomi/AnnoMI-full.csv"

pytestmark = pytest.mark.skipif(
    not ANNOMI.exists(), reason=f"AnnoMI not available at {ANNOMI} (../shared/data/annomi/)"
)

LABELS = [
    "therapist_input_exists",
    "therapist_input_subtype",
    "reflection_exists",
    "reflection_subtype",
    "question_exists",
    "question_subtype",
    "main_therapist_behaviour",
    "client_talk_type",
]


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return pd.read_csv(ANNOMI, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def parsed():
    return {p.session_id: p for p in read_transcript_file(ANNOMI)}


def test_sessions_and_counts(parsed, raw):
    assert len(parsed) == 133
    assert len(parsed) == raw["transcript_id"].nunique()
    n_unique = len(raw.drop_duplicates(["transcript_id", "utterance_id"]))
    assert n_unique == 9699
    assert sum(len(p.utterances) for p in parsed.values()) == n_unique
    assert set(parsed) == {f"annomi-{int(t):03d}" for t in raw["transcript_id"].unique()}


def test_roles_times_and_columns(parsed):
    for sid, p in parsed.items():
        df = p.utterances
        assert set(df["role"]) <= {"therapist", "patient"}, sid
        assert df["start"].notna().all(), sid
        assert df["start"].is_monotonic_increasing, sid
        assert (df["end"] >= df["start"]).all(), sid
        assert list(df["index"]) == list(range(len(df)))
        assert set(df["speaker"]) <= {"A", "B"}
        for label in LABELS:
            assert f"annomi_{label}" in df.columns
        assert (df["annomi_n_annotators"] >= 1).all()
        assert p.source["format"] == "annomi"
        assert p.source["origin"] == p.source["video_url"] and p.source["origin"].startswith("https://")
        assert p.source["mi_quality"] in ("high", "low")
        assert p.source["topic"] and p.source["video_title"]


def test_known_utterance(parsed):
    p = parsed["annomi-000"]
    df = p.utterances
    first = df.iloc[0]
    assert first["text"].startswith("Thanks for filling it out. We give this form to everyone")
    assert first["role"] == "therapist" and first["speaker"] == "A" and first["speaker_name"] == "therapist"
    assert first["start"] == 13.0 and first["end"] == 24.0  # end = next utterance's start
    assert first["annomi_question_subtype"] == "open"
    assert bool(first["annomi_question_exists"]) is True
    assert bool(first["annomi_reflection_exists"]) is False
    assert first["annomi_main_therapist_behaviour"] == "question"
    assert pd.isna(first["annomi_client_talk_type"])  # "n/a" -> null
    second = df.iloc[1]
    assert (second["text"], second["role"], second["start"]) == ("Sure.", "patient", 24.0)
    assert second["annomi_client_talk_type"] == "neutral"
    assert p.source["video_url"] == "https://www.youtube.com/watch?v=PaSKcfTmFEk"
    assert p.source["mi_quality"] == "high"


def test_majority_labels_match_annotators(parsed, raw):
    """Utterances labelled by several annotators: majority label, ties -> first seen."""
    multi = raw[raw["transcript_id"] == "109"]
    df = parsed["annomi-109"].utterances.set_index("annomi_utterance_id")
    checked = 0
    for uid, rows in multi.groupby("utterance_id", sort=False):
        assert df.loc[int(uid), "annomi_n_annotators"] == rows["annotator_id"].nunique()
        for label in LABELS:
            counts = Counter(rows[label])
            top = max(counts.values())
            expected = next(v for v in rows[label] if counts[v] == top)
            got = df.loc[int(uid), f"annomi_{label}"]
            if label.endswith("_exists") and expected in ("True", "False"):
                expected = expected == "True"  # *_exists labels are read as booleans
            if expected == "n/a":
                assert pd.isna(got)
            else:
                assert got == expected, (uid, label)
            checked += 1
    assert checked > 100
    assert (df["annomi_n_annotators"] > 1).any()


def test_ingest_annomi_subset(tmp_path, raw):
    """Ingest a three-transcript slice: ids, roles and labels survive the parquet round trip."""
    subset = raw[raw["transcript_id"].isin(["0", "1", "109"])]
    path = tmp_path / "annomi-slice.csv"
    subset.to_csv(path, index=False)
    corpus = Corpus.open(tmp_path / "corpus", create=True)
    ids, summary = ingest_transcripts(corpus, [path])
    assert sorted(ids) == ["annomi-000", "annomi-001", "annomi-109"]
    assert summary.count("done") == 3
    df = corpus.session("annomi-109").read_utterances()
    assert set(df["role"]) == {"therapist", "patient"}
    assert "annomi_main_therapist_behaviour" in df.columns
    assert len(df) == subset[subset["transcript_id"] == "109"]["utterance_id"].nunique()
    source = corpus.session("annomi-000").read_source()
    assert source["origin"] == "https://www.youtube.com/watch?v=PaSKcfTmFEk"
    _, again = ingest_transcripts(corpus, [path])
    assert again.count("skipped") == 3
