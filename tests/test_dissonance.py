import math

import pandas as pd
import pytest

from emoguide.config import DissonanceSettings
from emoguide.dissonance import compute_dissonance

from helpers import utterances


def table():
    return utterances(
        [
            {"role": "therapist", "text": "t", "voice_valence": 0.9, "face_valence": -0.9, "voice_arousal": 0.0, "face_arousal": 0.0},
            {"role": "patient", "text": "p1", "voice_valence": 0.6, "face_valence": 0.0, "voice_arousal": 0.1, "face_arousal": 0.2},
            {"role": "patient", "text": "p2", "voice_valence": 0.1, "face_valence": 0.2, "voice_arousal": 0.3, "face_arousal": 0.5},
            {"role": "patient", "text": "p3", "voice_valence": None, "face_valence": 0.3, "voice_arousal": 0.2, "face_arousal": 0.9},
            {"role": "patient", "text": "p4", "voice_valence": None, "face_valence": None, "voice_arousal": 0.2, "face_arousal": None},
            {"role": "patient", "text": "p5", "voice_valence": 0.0, "face_valence": 0.5, "voice_arousal": None, "face_arousal": None},
        ]
    )


def test_eq1_max_over_dimensions_and_threshold():
    d = compute_dissonance(table())
    # p1: |0.6-0.0| = 0.6 > 0.5 on valence only
    assert d.loc[1, "dissonance_score"] == pytest.approx(0.6)
    assert bool(d.loc[1, "dissonance"]) is True
    assert d.loc[1, "dissonance_dims"] == "valence"
    assert d.loc[1, "dissonance_compared"] == "valence,arousal"
    # p2: max(0.1, 0.2) = 0.2 -> not dissonant, and no dims exceeded
    assert d.loc[2, "dissonance_score"] == pytest.approx(0.2)
    assert bool(d.loc[2, "dissonance"]) is False
    assert d.loc[2, "dissonance_dims"] == ""


def test_null_aware_uses_only_shared_dimensions():
    d = compute_dissonance(table())
    # p3: valence missing on voice -> arousal only: |0.2-0.9| = 0.7
    assert d.loc[3, "dissonance_compared"] == "arousal"
    assert d.loc[3, "dissonance_score"] == pytest.approx(0.7)
    assert bool(d.loc[3, "dissonance"]) is True
    # p4: no dimension both channels have -> null, not 0 / False
    assert math.isnan(d.loc[4, "dissonance_score"])
    assert pd.isna(d.loc[4, "dissonance"])
    assert pd.isna(d.loc[4, "dissonance_compared"])
    # p5: exactly 0.5 is not > T
    assert d.loc[5, "dissonance_score"] == pytest.approx(0.5)
    assert bool(d.loc[5, "dissonance"]) is False


def test_only_patient_rows_scored_and_threshold_configurable():
    d = compute_dissonance(table())
    assert pd.isna(d.loc[0, "dissonance"])  # therapist: 1.8 apart but not scored
    d2 = compute_dissonance(table(), DissonanceSettings(threshold=0.1))
    assert bool(d2.loc[2, "dissonance"]) is True
    assert d2.loc[2, "dissonance_dims"] == "arousal"  # 0.2 > 0.1; valence 0.1 is not > 0.1
    assert d2.loc[2, "dissonance_method"] == "eq1-raw:voice-face:T=0.1"


def test_does_not_mutate_input():
    t = table()
    before = t.copy()
    compute_dissonance(t)
    pd.testing.assert_frame_equal(t, before)


def test_stage_writes_only_the_dissonance_columns_and_resumes(tmp_path):
    from emoguide.pipeline.runner import run_one
    from emoguide.stages.dissonance import DissonanceStage

    from helpers import corpus_with

    c = corpus_with(tmp_path, {"s1": table(), "s2": utterances([{"role": "therapist", "text": "only me"}], "s2")})
    before = c.session("s1").read_utterances()
    s = run_one(c, "dissonance")
    assert s.count("done") == 2, s.outcomes
    d = c.session("s1").read_utterances()
    expect = compute_dissonance(before)
    cols = ["dissonance_score", "dissonance", "dissonance_dims", "dissonance_compared", "dissonance_method"]
    pd.testing.assert_frame_equal(d[cols], expect[cols])
    others = [c_ for c_ in before.columns if c_ not in cols]
    pd.testing.assert_frame_equal(d[others], before[others])
    rec = c.session("s1").stages.get("dissonance")
    assert rec["counts"] == {"patient": 5, "scored": 4, "flagged": 2}
    assert any("no patient utterances" in w for w in c.session("s2").stages.get("dissonance")["warnings"])
    assert run_one(c, "dissonance").count("skipped") == 2
    # different settings (from corpus.toml's [dissonance]) recompute
    settings = c.settings
    settings.dissonance.threshold = 0.1
    st = DissonanceStage.from_corpus_settings(settings)
    assert st.scope == "session" and run_one(c, st).count("done") == 2
    assert c.session("s1").read_utterances().loc[2, "dissonance_method"] == "eq1-raw:voice-face:T=0.1"
