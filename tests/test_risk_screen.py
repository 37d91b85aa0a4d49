"""risk-v2, the layered risk screen (emoguide.risk): categories and levels, hard negatives,
context, the development set's figures, the stage record, a broken model, and `emoguide screen`.

These use the real packaged all-MiniLM-L6-v2; one screen is built per module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emoguide import safety
from emoguide.corpus.schema import SAFETY_COLUMNS
from emoguide.risk import LEVELS, RiskModelError, RiskScreen, load_bank
from emoguide.risk.fit import evaluate, read_dev
from helpers import corpus_with, utterances

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DEV = Path(__file__).parent / "data" / "risk_dev.csv"
CONVERSATIONAL = Path(__file__).parent / "data" / "risk_conversational_negatives.csv"
pytestmark = pytest.mark.slow  # loads a real sentence-embedding model


@pytest.fixture(scope="module")
def screen() -> RiskScreen:
    s = RiskScreen(strict=True)
    assert not s.lexical_only and s.semantic_error is None
    return s


# statements written for these tests, not in the bank or the development set
@pytest.mark.parametrize(
    "text,category,level",
    [
        ("Honestly I'd be fine if I just never woke up again.", "suicide", "low"),  # wish to be dead
        ("These past weeks I keep having thoughts of killing myself.", "suicide", "low"),  # active thoughts
        ("I've been looking at how many of my tablets it would take.", "suicide", None),  # method
        ("I've made up my mind, I'm going to end my life.", "suicide", "high"),  # intent
        ("On Saturday, when the house is empty, I'm going to do it with the pills.", "suicide", "high"),  # plan
        ("I've written a goodbye note and left it in my desk.", "suicide", "high"),  # preparatory
        ("I cut my thighs again this week so nobody would see.", "self_harm", "moderate"),  # NSSI
        ("I get these thoughts of hurting my little boy and it terrifies me.", "harm_to_others", "low"),
        ("If he shows his face here again, I swear I'll hurt him badly.", "harm_to_others", None),  # threat
        ("I know where he'll be on Friday night and I'm taking a knife.", "harm_to_others", "high"),  # plan
    ],
)
def test_each_category_and_level_caught(screen, text, category, level):
    r = screen.screen(text)
    assert r.flag, (text, r)
    assert category in r.categories
    assert r.level in LEVELS[1:]
    if level is not None:
        assert r.level == level, (text, r.level, r.types)
    assert r.score is not None and 0 <= r.score <= 1
    assert any(e.startswith("bank ") for e in r.evidence)
    assert r.screen.startswith("risk-v2@")


@pytest.mark.parametrize(
    "text",
    [
        "I never thought about suicide, not even once.",  # the issue's false positive of lexical-v1
        "This commute is killing me.",
        "I'm dying to get out of this job.",
        "My uncle took his own life when I was small.",
        "I used to hurt myself as a teenager, but that stopped long ago.",
        "We talked about suicide prevention on my first-aid course.",
        "I'm knackered and grumpy, that's all.",
        "I went swimming with my daughter on Saturday.",
    ],
)
def test_hard_negatives_cleared(screen, text):
    r = screen.screen(text)
    assert not r.flag, (text, r.score, r.evidence)
    assert r.level == "none" and r.categories == []


def test_issue_examples_caught(screen):
    for text in (
        "I don't see the point in living anymore",
        "I have pills saved up in case it gets too bad",
        "I've written letters to my kids saying goodbye",
        "I looked up how high the bridge is",
        "Nobody would even notice if I was gone",
        "I'm going to make them pay, I know where she lives",
    ):
        assert screen.screen(text).flag, text


def test_context_changes_the_reading(screen):
    after_risk = screen.screen("I have a plan.", previous="I think about ending it.")
    after_garden = screen.screen("I have a plan.", previous="I want to redo the garden this spring.")
    assert after_risk.flag and after_risk.level == "high" and "suicide" in after_risk.categories
    assert after_risk.context_used and after_risk.evidence[0].startswith("context: read with")
    assert not after_garden.flag and not screen.screen("I have a plan.").flag
    # a short reply that means nothing alone reads as part of the disclosure before it
    for reply in ("Yes, tonight.", "I bought it yesterday."):
        assert not screen.screen(reply).flag
        assert not screen.screen(reply, previous="We're going to paint the kitchen.").flag
        r = screen.screen(reply, previous="Lately I keep thinking I'd be better off dead.")
        assert r.flag and r.context_used and r.level == "high", reply
    # an explicit statement is not cleared by an ordinary previous one
    explicit = screen.screen("I want to kill myself.", previous="We went to the shops.")
    assert explicit.flag and not explicit.context_used


def test_context_in_a_session_table(screen):
    df = utterances(
        [
            {"role": "patient", "text": "Lately I think about ending it."},
            {"role": "therapist", "text": "Can you tell me more?"},
            {"role": "patient", "text": "I have a plan."},
            {"role": "patient", "text": "Anyway, work has been fine."},
        ]
    )
    out = safety.screen_utterances(df, screen=screen)
    for col, dtype in SAFETY_COLUMNS.items():
        assert str(out[col].dtype) == dtype
    assert out["risk_flag"].tolist() == [True, pd.NA, True, False]
    assert out["risk_level"].tolist()[2] == "high"
    assert "context" in json.loads(out["risk_evidence"][2])[0]
    assert out["risk_screen"][0] == screen.id and out["risk_screen"][1] is pd.NA
    assert out["risk_score"].notna().tolist() == [True, False, True, True]
    # without context the short statement is read alone
    alone = safety.screen_utterances(df, screen=screen, context=False)
    assert not any("context" in e for e in json.loads(alone["risk_evidence"][2]))


def test_ordinary_conversation_mostly_unflagged(screen):
    """Spoken-style talk about drinking, medication, plans to change, exercise, idioms (written for
    emoguide; the test part, which the shipped classifier was not fitted on). Measured: 11 of 63
    flagged (17.5%); the bound leaves margin for a refit, not for a screen that flags this talk."""
    neg = pd.read_csv(CONVERSATIONAL, dtype=str, keep_default_na=False)
    assert len(neg) >= 150 and (neg["rule"].str.len() > 0).all()
    part = neg[neg["split"] == "test"]
    flags = [r.flag for r in screen.screen_many(list(part["text"]))]
    assert sum(flags) / len(flags) <= 0.30, [t for t, f in zip(part["text"], flags) if f]
    # backchannels never inherit a flag from the turn before
    for reply in ("Yeah.", "Okay.", "Yeah, I guess so.", "Mm, I don't know."):
        r = screen.screen(reply, previous="I think about ending it most nights.")
        assert not r.flag and not r.context_used, reply


def test_gate_skips_embedding_and_keeps_recall(screen):
    from emoguide.risk.gate import may_carry_risk, may_take_context

    assert not may_carry_risk("We went to the shops and bought bread.")
    assert may_carry_risk("I looked up how high the bridge is") and may_carry_risk("Nobody would even notice if I was gone")
    assert may_take_context("Yes, tonight.") and not may_take_context("Yeah.") and not may_take_context("Okay, I guess so.")
    before = len(screen.embedder._cache)
    r = screen.screen("We went to the shops and bought bread on Tuesday morning.")
    assert r.gated and not r.flag and r.score == 0.0 and r.level == "none"
    assert len(screen.embedder._cache) == before  # not embedded
    # the gate changes no reading of the development test part
    dev = read_dev(DEV)
    test = dev[dev["split"] == "test"].reset_index(drop=True)
    ungated = RiskScreen(strict=True, use_gate=False)
    with_gate, without = evaluate(screen, test), evaluate(ungated, test)
    assert with_gate["recall"] == without["recall"] and with_gate["per_category"] == without["per_category"]
    assert with_gate["fpr"] <= without["fpr"]


def test_development_set_is_complete():
    dev = read_dev(DEV)
    assert len(dev) >= 300 and int(dev["risk"].sum()) >= 120
    assert (dev["rule"].str.len() > 0).all()
    bank_texts = {t.lower() for t in load_bank().texts}
    assert not any(t.lower() in bank_texts for t in dev["text"])
    for split in ("fit", "test"):
        part = dev[dev["split"] == split]
        risky = part[part["risk"] == 1]
        assert set(risky["category"]) == {"suicide", "self_harm", "harm_to_others"}
        assert set(risky["level"]) == {"low", "moderate", "high"}
        assert {"wish_dead", "active_thoughts", "method", "intent", "plan", "preparatory", "nssi", "thoughts", "threat"} <= set(risky["type"])
        assert {"idiom", "negation", "other_person", "past_resolved", "clinical_media"} <= set(part["type"])
    fit_texts, test_texts = set(dev.loc[dev["split"] == "fit", "text"]), set(dev.loc[dev["split"] == "test", "text"])
    assert not (fit_texts & test_texts) - {"I have a plan."}


def test_targets_on_the_test_part(screen):
    dev = read_dev(DEV)
    r = evaluate(screen, dev[dev["split"] == "test"].reset_index(drop=True))
    assert r["recall"] >= 0.95, r["misses"]
    assert r["fpr"] <= 0.15, r["false_positives"]
    assert min(r["per_category"].values()) >= 0.9


def test_stage_records_columns_and_screen(tmp_path, screen):
    from emoguide.stages.safety import run_safety

    df = utterances(
        [
            {"role": "therapist", "text": "How have things been?"},
            {"role": "patient", "text": "I've been giving my things away to friends."},
            {"role": "patient", "text": "Work has been busy."},
        ]
    )
    corpus = corpus_with(tmp_path, {"s1": df})
    summary = run_safety(corpus, screen=screen)
    assert [r.status for r in summary.outcomes] == ["done"]
    stages = json.loads((corpus.session("s1").path / "stages.json").read_text())
    rec = stages["safety"]
    assert rec["backends"]["safety"] == screen.id
    assert rec["safety"]["layers"] == ["lexical", "gate", "semantic", "classifier", "context"]
    utt = corpus.session("s1").read_utterances()
    assert utt["risk_flag"].tolist() == [pd.NA, True, False]
    assert utt["risk_level"].tolist()[1] == "high"
    # unchanged screen: skipped
    again = run_safety(corpus, screen=screen)
    assert [r.status for r in again.outcomes] == ["skipped"]


def test_missing_model_falls_back_to_lexical(tmp_path):
    missing = tmp_path / "no-model"
    with pytest.raises(RiskModelError, match="no-model: no such model directory"):
        RiskScreen(model_path=missing, strict=True)
    s = RiskScreen(model_path=missing)
    assert s.lexical_only and "no such model directory" in s.semantic_error
    r = s.screen("I want to kill myself.")
    assert r.flag and r.categories == ["suicide"] and r.level is None and r.score is None
    assert r.screen.endswith("/lexical-only")
    out = safety.screen_utterances(utterances([{"role": "patient", "text": "I want to die."}]), screen=s)
    assert out["risk_screen"][0].endswith("/lexical-only") and out["risk_flag"][0]
    assert pd.isna(out["risk_level"][0]) and pd.isna(out["risk_score"][0])


def test_bad_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad-model"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RiskModelError, match="bad-model: cannot load the sentence-embedding model"):
        RiskScreen(model_path=bad, strict=True)
    s = RiskScreen(model_path=bad)
    assert s.lexical_only and s.screen("I want to die").flag


def test_bad_bank_and_classifier(tmp_path):
    p = tmp_path / "bank.toml"
    p.write_text('[positive.suicide.plan]\nlevel = "extreme"\nentries = ["x"]\n[negative.idiom]\nentries = ["y"]\n')
    with pytest.raises(ValueError, match="bank.toml.*level 'extreme'"):
        load_bank(p)
    p.write_text('[positive.money.plan]\nlevel = "low"\nentries = ["x"]\n')
    with pytest.raises(ValueError, match="not a category"):
        load_bank(p)
    c = tmp_path / "model.json"
    c.write_text('{"mean": []}')
    with pytest.raises(ValueError, match="model.json: classifier lacks"):
        RiskScreen(classifier=c, model_path=tmp_path / "none")


def _app():
    import typer

    from emoguide.cli_screen import register

    app = typer.Typer()
    register(app)

    @app.command("version")
    def _v() -> None:  # a second command, so `screen` stays a named subcommand
        pass

    return app


def test_cli_screen_text_and_file(tmp_path):
    runner = CliRunner()
    res = runner.invoke(_app(), ["screen", "--text", "I've been stockpiling my pills"])
    assert res.exit_code == 0, res.output
    assert "risk_flag: True" in res.output and "risk_level: high" in res.output and "risk-v2@" in res.output
    src = tmp_path / "statements.csv"
    pd.DataFrame({"id": [1, 2, 3], "utterance": ["My feet are killing me.", "I want to hurt myself again.", ""]}).to_csv(src, index=False)
    dest = tmp_path / "screened.jsonl"
    res = runner.invoke(_app(), ["screen", str(src), "--column", "utterance", "--out", str(dest)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in dest.read_text().splitlines()]
    assert [r["risk_flag"] for r in rows] == [False, True, False]
    assert rows[1]["risk_categories"] == "self_harm" and rows[1]["id"] == "2"  # read as written
    assert set(rows[0]) >= {"text", "risk_level", "risk_score", "risk_evidence", "risk_screen"}
    res = runner.invoke(_app(), ["screen", str(src), "--column", "nope"])
    assert res.exit_code == 2 and "nope" in res.output
    one = tmp_path / "one_column.csv"  # a one-column CSV: the delimiter sniffer once took a letter of "text" for it
    one.write_text("text\nI looked up how high the bridge is\nthis commute is killing me\n")
    res = runner.invoke(_app(), ["screen", str(one), "--out", str(tmp_path / "one.csv")])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "one.csv")["risk_flag"].tolist() == [True, False]


def test_cli_screen_transcript_and_missing_model(tmp_path, monkeypatch):
    runner = CliRunner()
    tr = tmp_path / "session.csv"
    tr.write_text(
        "Speaker,Role,Start Time,End Time,Utterance\n"
        "A,therapist,00:00:01,00:00:04,How are you?\n"
        "B,patient,00:00:05,00:00:08,I think about ending it.\n"
        "A,therapist,00:00:09,00:00:10,Go on.\n"
        "B,patient,00:00:11,00:00:13,Yes. Tonight.\n"
    )
    dest = tmp_path / "out.csv"
    res = runner.invoke(_app(), ["screen", str(tr), "--out", str(dest)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(dest)
    assert table["role"].tolist() == ["therapist", "patient", "therapist", "patient"]
    assert table["risk_flag"].isna().tolist() == [True, False, True, False]  # therapist rows not screened
    assert table["risk_flag"].tolist()[3] == True  # noqa: E712 - read with the previous patient utterance
    assert "context" in table["risk_evidence"][3]
    assert "2 of 2 screened statements flagged" in " ".join(res.output.split())
    res = runner.invoke(_app(), ["screen", "--text", "I want to die", "--model-dir", str(tmp_path / "gone")])
    assert res.exit_code == 0
    assert "semantic layer unavailable" in res.output and "lexical-only" in res.output


def test_long_utterances_are_read_unit_by_unit(screen):
    """A risk sentence deep in a long ordinary turn (the 6th sentence: the old reading looked at
    the first 4 and the diluted whole) and a risk clause in a run-on with no full stop are
    caught; the long turns themselves are not embedded whole, and a long ordinary turn is not
    flagged."""
    filler = ("We went to the shops on Saturday. The kids wanted pizza again. My mother phoned twice about the car. "
              "Work has been busy with the new system. The weather was nice for once. ")
    deep = filler + "I have pills saved up in case it gets too bad. Anyway, that's my week."
    runon = ("Yeah, so we had the whole family over, you know, my brother and his kids and my mum, and it was loud, "
             "and honestly, I keep thinking everyone would be better off without me, and then, uh, we cleared up and "
             "watched a film and went to bed and that was the weekend really.")  # risk-v2 2.0.0 read it whole: 0.014, missed
    ordinary = filler + "Next week we might go to the coast if the car is fixed."
    rs = screen.screen_many([deep, runon, ordinary])
    assert rs[0].flag and "suicide" in rs[0].categories and any(e.startswith("bank ") for e in rs[0].evidence)
    assert rs[1].flag and "suicide" in rs[1].categories
    assert not rs[2].flag
    for t in (deep, runon, ordinary):
        assert t not in screen.embedder._cache  # read by its units, never as a whole
    assert "I have pills saved up in case it gets too bad." in screen.embedder._cache


def test_long_reply_is_read_with_context_by_its_opening(screen):
    prev = "I think about ending it."
    reply = ("Yes. I have a plan now. I've thought about it a lot over the last few weeks, when the house is quiet, "
             "and there isn't really anything anyone could say about it that would change what I think.")
    r = screen.screen(reply, previous=prev)
    assert r.flag and r.context_used and r.level == "high", r
    assert not screen.screen(reply, previous="I want to redo the garden this spring.").context_used


def _linked_model(tmp_path: Path, broken_config: bool = False) -> Path:
    """A model directory of links to the packaged model's files (a cache key of its own)."""
    from emoguide.risk.embed import default_model_path

    src, dst = default_model_path(), tmp_path / "model"
    dst.mkdir()
    for p in src.iterdir():
        if broken_config and p.name == "config.json":
            (dst / p.name).write_text("{not json")
        else:
            (dst / p.name).symlink_to(p)
    return dst


def test_corrupt_cached_export_is_rebuilt(tmp_path, monkeypatch):
    """A damaged ONNX export in the cache (truncated, overwritten) is exported again from the
    packaged model (needs torch; about 10 s) and the screen runs on the rebuilt file."""
    from emoguide.risk.embed import onnx_cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = _linked_model(tmp_path)
    target = onnx_cache_path(model)
    assert str(target).startswith(str(tmp_path))
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x08\x07 this is not an onnx model")
    s = RiskScreen(model_path=model, strict=True)
    assert target.stat().st_size > 10_000_000  # the real export replaced the damaged file
    assert s.screen("I want to kill myself.").flag and not s.screen("We went to the shops.").flag


def test_corrupt_cached_export_that_cannot_be_rebuilt_is_a_clear_error(tmp_path, monkeypatch):
    from emoguide.risk.embed import onnx_cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = _linked_model(tmp_path, broken_config=True)  # the export needs the config: it fails too
    target = onnx_cache_path(model)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    with pytest.raises(RiskModelError, match="cannot load the exported model") as info:
        RiskScreen(model_path=model, strict=True)
    assert str(target) in str(info.value) and "exporting it again failed" in str(info.value)
    s = RiskScreen(model_path=model)
    assert s.lexical_only and str(target) in s.semantic_error
    r = s.screen("I want to kill myself.")
    assert r.flag and r.score is None and r.screen.endswith("/lexical-only")
