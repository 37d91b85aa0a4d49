import math

import numpy as np
import pandas as pd
import pytest

from emoguide.dissonance import compute_dissonance
from emoguide.dissonance_variants import (
    Variant,
    channel_values,
    cohen_kappa,
    compute_dissonance_variant,
    dissonance_table,
    variant_agreement,
)

from helpers import utterances


def offset_table(n=12, offset=0.6, session_id="s1"):
    """Patient utterances where voice = face + offset on both dimensions, face varying."""
    face_v = np.linspace(-0.3, 0.3, n)
    face_a = np.cos(np.arange(n)) * 0.3
    rows = [
        {"role": "patient", "text": f"p{i}", "face_valence": fv, "voice_valence": fv + offset,
         "face_arousal": fa, "voice_arousal": fa + offset}
        for i, (fv, fa) in enumerate(zip(face_v, face_a))
    ]
    rows.insert(0, {"role": "therapist", "text": "t", "voice_valence": 0.9, "face_valence": -0.9})
    return utterances(rows, session_id)


def test_raw_variant_is_the_papers_eq1_exactly():
    t = offset_table()
    pd.testing.assert_frame_equal(compute_dissonance_variant(t), compute_dissonance(t))


def test_zscore_removes_a_constant_channel_offset():
    t = offset_table()
    raw = compute_dissonance_variant(t, "raw")
    z = compute_dissonance_variant(t, "zscore")
    patients = t["role"] == "patient"
    assert raw.loc[patients, "dissonance"].all()  # 0.6 > 0.5 everywhere
    assert not z.loc[patients, "dissonance"].any()  # z(voice) == z(face): score 0
    assert z.loc[patients, "dissonance_score"].max() == pytest.approx(0.0, abs=1e-9)
    assert pd.isna(z.loc[0, "dissonance"])  # therapist not scored
    assert z.loc[1, "dissonance_method"] == "eq1-zscore[session]:voice-face:T=2sd"


def test_zscore_by_hand():
    # face constant offset removed; voice has one outlier in valence
    rows = [{"role": "patient", "text": str(i), "voice_valence": v, "face_valence": f}
            for i, (v, f) in enumerate(zip([0, 0, 0, 0, 1.0], [0.1, 0.2, 0.3, 0.4, 0.5]))]
    t = utterances(rows)
    out = compute_dissonance_variant(t, "zscore", threshold=1.0)
    v = np.array([0, 0, 0, 0, 1.0])
    f = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    zv = (v - v.mean()) / v.std(ddof=1)
    zf = (f - f.mean()) / f.std(ddof=1)
    expect = np.abs(zv - zf)
    np.testing.assert_allclose(out["dissonance_score"].to_numpy(float), expect)
    assert list(out["dissonance"]) == [bool(x > 1.0) for x in expect]
    assert set(out["dissonance_compared"]) == {"valence"}  # no arousal on either channel


def test_zscore_scope_speaker_and_small_groups_are_null():
    a = offset_table(8, session_id="s1")
    # a second patient speaker C in the same session with two utterances only
    extra = a.iloc[[1, 2]].copy()
    extra["speaker"] = "C"
    t = pd.concat([a, extra], ignore_index=True)
    out = compute_dissonance_variant(t, "zscore", scope="speaker")
    assert out.loc[out["speaker"] == "C", "dissonance_score"].isna().all()
    assert out.loc[out["speaker"] == "C", "dissonance"].isna().all()
    assert any("min_n" in n for n in out.attrs["dissonance"]["notes"])
    assert out.loc[(out["speaker"] == "B") & (out["role"] == "patient"), "dissonance"].notna().all()


def test_percentile_flags_about_ten_percent():
    rng = np.random.default_rng(1)
    n = 100
    rows = [{"role": "patient", "text": str(i), "voice_valence": float(x), "face_valence": 0.0,
             "voice_arousal": float(y), "face_arousal": 0.0}
            for i, (x, y) in enumerate(zip(rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)))]
    t = utterances(rows)
    out = compute_dissonance_variant(t, "percentile", percentile=90)
    assert int(out["dissonance"].sum()) == 10
    t_used = out.attrs["dissonance"]["thresholds"]["s1"]
    scores = out["dissonance_score"].to_numpy(float)
    assert t_used == pytest.approx(np.percentile(scores, 90))
    assert out["dissonance_method"].iloc[0] == f"eq1-pct90[session]:voice-face:T={t_used:.4g}"
    # the scores are the raw Eq. 1 scores
    np.testing.assert_allclose(scores, compute_dissonance(t)["dissonance_score"].to_numpy(float))
    with pytest.raises(ValueError):
        compute_dissonance_variant(t, "percentile", threshold=0.3)


def test_percentile_per_session_vs_corpus():
    quiet = offset_table(20, offset=0.0, session_id="q")  # all scores 0... plus noise below
    loud = offset_table(20, offset=0.6, session_id="l")
    quiet.loc[quiet["role"] == "patient", "voice_valence"] += np.linspace(0, 0.1, 20)
    loud.loc[loud["role"] == "patient", "voice_valence"] += np.linspace(0, 0.1, 20)
    t = pd.concat([quiet, loud], ignore_index=True)
    per_session = compute_dissonance_variant(t, "percentile", percentile=90, scope="session")
    corpus = compute_dissonance_variant(t, "percentile", percentile=90, scope="corpus")
    by = per_session.groupby("session_id")["dissonance"].sum()
    assert by["q"] == 2 and by["l"] == 2
    assert corpus.loc[corpus["session_id"] == "q", "dissonance"].sum() == 0
    assert corpus["dissonance"].sum() == 4


def test_text_vs_nonverbal_by_hand():
    t = utterances(
        [
            # said positive, shown negative: text 0.8 vs nonverbal mean(-0.4, -0.2) = -0.3 -> 1.1
            {"role": "patient", "text": "a", "text_valence": 0.8, "voice_valence": -0.4, "face_valence": -0.2,
             "text_arousal": 0.0, "voice_arousal": 0.0, "face_arousal": 0.2},
            # face missing: nonverbal is null -> nothing to compare
            {"role": "patient", "text": "b", "text_valence": 0.8, "voice_valence": -0.4, "face_valence": None},
            # agreement
            {"role": "patient", "text": "c", "text_valence": 0.1, "voice_valence": 0.0, "face_valence": 0.2,
             "text_arousal": 0.1, "voice_arousal": 0.2, "face_arousal": 0.0},
        ]
    )
    np.testing.assert_allclose(channel_values(t, "nonverbal", "valence"), [-0.3, np.nan, 0.1])
    out = compute_dissonance_variant(t, "raw", channels=("text", "nonverbal"))
    assert out.loc[0, "dissonance_score"] == pytest.approx(1.1)
    assert bool(out.loc[0, "dissonance"]) and out.loc[0, "dissonance_dims"] == "valence"
    assert out.loc[0, "dissonance_compared"] == "valence,arousal"
    assert math.isnan(out.loc[1, "dissonance_score"]) and pd.isna(out.loc[1, "dissonance"])
    assert out.loc[2, "dissonance_score"] == pytest.approx(0.0) and not bool(out.loc[2, "dissonance"])
    assert out.loc[0, "dissonance_method"] == "eq1-raw:text-nonverbal:T=0.5"
    # text-voice directly, and "text-voice" as a string
    tv = compute_dissonance_variant(t, "raw", channels="text-voice")
    assert tv.loc[1, "dissonance_score"] == pytest.approx(1.2)


def test_sentiment_channel_is_valence_only():
    t = utterances([{"role": "patient", "text": "a", "voice_valence": -0.5, "voice_arousal": 0.9}])
    t["text_sentiment"] = 0.7
    out = compute_dissonance_variant(t, channels=("sentiment", "voice"))
    assert out.loc[0, "dissonance_compared"] == "valence"
    assert out.loc[0, "dissonance_score"] == pytest.approx(1.2)


def test_bad_arguments():
    t = offset_table()
    for kw in ({"method": "median"}, {"channels": ("voice", "voice")}, {"channels": ("voice", "smell")},
               {"method": "zscore", "scope": "planet"}):
        with pytest.raises(ValueError):
            compute_dissonance_variant(t, **kw)


def test_does_not_mutate_input_and_keeps_index():
    t = offset_table()
    t.index = t.index + 100
    before = t.copy()
    out = compute_dissonance_variant(t, "zscore")
    pd.testing.assert_frame_equal(t, before)
    assert list(out.index) == list(t.index)


def test_table_and_agreement():
    t = offset_table()
    tab = dissonance_table(t, ["raw:voice-face", "zscore:voice-face", {"method": "raw", "threshold": 0.7, "name": "strict"}],
                           scores=True)
    assert {"diss_raw_voice_face", "diss_zscore_voice_face", "strict", "score_raw_voice_face"} <= set(tab.columns)
    assert tab["diss_raw_voice_face"].dtype == "boolean"
    ag = variant_agreement(tab)
    shares = ag["shares"]
    assert shares.loc["diss_raw_voice_face", "share_flagged"] == 1.0
    assert shares.loc["diss_zscore_voice_face", "share_flagged"] == 0.0
    assert shares.loc["strict", "n_flagged"] == 0
    assert ag["agreement"].loc["diss_raw_voice_face", "diss_zscore_voice_face"] == 0.0
    assert ag["n_both"].loc["diss_raw_voice_face", "strict"] == 12
    with pytest.raises(ValueError):
        dissonance_table(t, ["raw:voice-face", {"method": "raw"}])


def test_variant_names_and_parse():
    assert Variant.parse("percentile95:text-nonverbal").column == "diss_pct95_text_nonverbal"
    assert Variant.parse("raw:voice-face:T=0.3").column == "diss_raw_T0.3_voice_face"
    assert Variant.parse("zscore:voice-face:scope=speaker").column == "diss_zscore_speaker_voice_face"
    assert Variant.parse("zscore").column == "diss_zscore_voice_face"


def test_cohen_kappa_matches_sklearn_and_by_hand():
    x = [1, 1, 0, 0, 1, 0, 1, 1]
    y = [1, 0, 0, 0, 1, 1, 1, 1]
    # po = 6/8; pe = (5/8*5/8) + (3/8*3/8) = 34/64
    assert cohen_kappa(x, y) == pytest.approx((6 / 8 - 34 / 64) / (1 - 34 / 64))
    assert math.isnan(cohen_kappa([True] * 3, [True] * 3))
    sk = pytest.importorskip("sklearn.metrics")
    assert cohen_kappa(x, y) == pytest.approx(sk.cohen_kappa_score(x, y))


def test_corpus_scope_stage_computes_over_all_sessions_and_resumes(tmp_path):
    """scope=corpus: the stage runs once over every session (in the parent, after the per-session
    stages); its values equal the variant over the concatenated table; a change in one session
    recomputes all (they share the reference distribution)."""
    from emoguide.config import DissonanceSettings
    from emoguide.pipeline.runner import run_one, run_stages
    from emoguide.stages.dissonance import DissonanceStage

    from helpers import corpus_with

    quiet = offset_table(20, offset=0.0, session_id="q")
    loud = offset_table(20, offset=0.6, session_id="l")
    quiet.loc[quiet["role"] == "patient", "voice_valence"] += np.linspace(0, 0.1, 20)
    loud.loc[loud["role"] == "patient", "voice_valence"] += np.linspace(0, 0.1, 20)
    c = corpus_with(tmp_path, {"q": quiet, "l": loud})
    ds = DissonanceSettings(method="percentile", percentile=90, scope="corpus")
    stage = DissonanceStage(ds)
    assert stage.scope == "corpus" and DissonanceStage.scope == "session"
    assert DissonanceStage(DissonanceSettings(scope="corpus")).scope == "session"  # the paper's raw form ignores scope
    s = run_one(c, stage)
    assert {o.item: o.status for o in s.outcomes} == {"l": "done", "q": "done"}, s.outcomes
    expect = compute_dissonance_variant(c.utterances(), "percentile", percentile=90, scope="corpus")
    got = c.utterances()
    pd.testing.assert_series_equal(got["dissonance"], expect["dissonance"])
    assert got.loc[got["session_id"] == "q", "dissonance"].sum() == 0 and got["dissonance"].sum() == 4
    rec = c.session("q").stages.get("dissonance")
    assert rec["status"] == "done" and rec["reference_sessions"] == 2
    assert rec["fingerprint"] == c.session("l").stages.get("dissonance")["fingerprint"]
    # nothing changed: nothing done; forced: all redone
    assert run_one(c, DissonanceStage(ds)).count("skipped") == 2
    assert run_one(c, DissonanceStage(ds), force=True).count("done") == 2
    # one session's upstream changes (its roles) -> every session is recomputed
    assert run_one(c, "roles", ["q"]).count("done") == 1
    assert run_one(c, DissonanceStage(ds)).count("done") == 2  # l did not change, but its reference did
    report = run_stages(c, ["roles", DissonanceStage(ds)])  # dissonance waits for every roles task
    assert {o.item: o.status for o in report.summary("roles").outcomes} == {"q": "skipped", "l": "done"}
    assert report.summary("dissonance").count("done") == 2
    assert "roles" in c.session("q").stages.get("dissonance")["upstream"]
    # a per-session variant takes its records over again
    per = run_one(c, DissonanceStage(DissonanceSettings(method="percentile", percentile=90, scope="session")))
    assert per.count("done") == 2
    by = c.utterances().groupby("session_id")["dissonance"].sum()
    assert by["q"] == 2 and by["l"] == 2
