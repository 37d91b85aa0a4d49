"""Tests for emoguide.safety: the lexical layer (lexical-v1) and the table entry point.
risk-v2's own tests are in tests/test_risk_screen.py."""

from __future__ import annotations

import tomllib
from importlib import resources

import pandas as pd
import pytest

from emoguide import safety
from emoguide.corpus.schema import SAFETY_COLUMNS
from emoguide.safety import CATEGORIES, LEXICAL_SCREEN_ID, RiskResult, load_screen, screen_text, screen_utterances

LEX = load_screen()


def test_term_list_is_package_data_and_versioned():
    data = tomllib.loads(resources.files("emoguide").joinpath("safety_terms.toml").read_text("utf-8"))
    assert data["meta"]["id"] == LEXICAL_SCREEN_ID == "lexical-v1"
    assert set(data["categories"]) == set(CATEGORIES) == {"suicide", "self_harm", "harm_to_others"}
    assert all(data["categories"][c]["patterns"] for c in CATEGORIES)


@pytest.mark.parametrize(
    "text,term",
    [
        ("I want to kill myself.", "kill myself"),
        ("I've been thinking about killing myself a lot.", "killing myself"),
        ("Honestly I feel suicidal most nights.", "suicidal"),
        ("I thought about suicide last week.", "suicide"),
        ("I just want to end my life.", "end my life"),
        ("I want to die.", "want to die"),
        ("I wanna die", "wanna die"),
        ("I don't want to be alive anymore.", "don't want to be alive"),
        ("I don\u2019t want to be alive anymore.", "don\u2019t want to be alive"),
        ("Everyone would be better off without me.", "better off without me"),
        ("Sometimes I think I'd be better off dead.", "better off dead"),
        ("There's no reason to live.", "no reason to live"),
        ("I have nothing to live for.", "nothing to live for"),
        ("Life is not worth living.", "not worth living"),
        ("I wish I were dead.", "wish I were dead"),
        ("I'm going to take my own life.", "take my own life"),
        ("I've thought about how I'd hang myself.", "hang myself"),
        ("I KILL MYSELF in my dreams", "KILL MYSELF"),
    ],
)
def test_suicide_true_positives(text, term):
    r = screen_text(text)
    assert r.flag and "suicide" in r.categories
    assert term in r.terms


@pytest.mark.parametrize(
    "text,term",
    [
        ("I cut myself last night.", "cut myself"),
        ("I've been cutting myself again.", "been cutting myself"),  # overlapping hits merge
        ("I started cutting when I was fourteen.", "started cutting"),
        ("I took an overdose in March.", "overdose"),
        ("She overdosed twice.", "overdosed"),
        ("I burn myself with cigarettes.", "burn myself"),
        ("My self-harm got worse.", "self-harm"),
        ("I want to hurt myself.", "hurt myself"),
        ("I swallowed a handful of pills.", "swallowed a handful of pills"),
    ],
)
def test_self_harm_true_positives(text, term):
    r = screen_text(text)
    assert r.flag and "self_harm" in r.categories
    assert term in r.terms


@pytest.mark.parametrize(
    "text,term",
    [
        ("Sometimes I want to hurt someone.", "hurt someone"),
        ("I'm going to kill him.", "kill him"),
        ("I could kill her for what she did.", "kill her"),
        ("I think about killing them.", "killing them"),
        ("I want to hurt my boss.", "hurt my boss"),
        ("I've had homicidal thoughts.", "homicidal"),
        ("I wish he was dead.", "wish he was dead"),
    ],
)
def test_harm_to_others_true_positives(text, term):
    r = screen_text(text)
    assert r.flag and "harm_to_others" in r.categories
    assert term in r.terms


@pytest.mark.parametrize(
    "text,term",
    [
        ("I'm not suicidal.", "suicidal [negated]"),
        ("I would never hurt myself.", "hurt myself [negated]"),
        ("I don't want to die.", "want to die [negated]"),
        ("I've never thought about killing myself.", "killing myself [negated]"),
        ("I would not hurt anyone.", "hurt anyone [negated]"),
    ],
)
def test_negated_mentions_flagged_with_negation_recorded(text, term):
    r = screen_text(text)
    assert r.flag
    assert r.terms == [term]
    assert r.all_negated and all(d.negated for d in r.detections)


def test_negation_is_clause_bound_and_local():
    r = screen_text("I'm not sure, but I want to die.")
    assert r.terms == ["want to die"]
    r = screen_text("I'm not feeling suicidal, but sometimes I want to die.")
    assert r.terms == ["suicidal [negated]", "want to die"]
    assert not r.all_negated
    # "don't want to be alive" is itself the risk statement, not a negated mention
    assert screen_text("I don't want to be alive.").terms == ["don't want to be alive"]


@pytest.mark.parametrize(
    "text",
    [
        "I have a killer headache.",
        "My killer headache came back.",
        "I could kill for a coffee right now.",  # idiom: no person after "kill", so no hit (documented)
        "This job is killing me.",
        "I'm dying to see that movie.",
        "That joke killed me.",
        "I hurt her feelings and I feel awful.",
        "I've been cutting carbs.",
        "We're cutting back on spending.",
        "I had a panic attack at work.",
        "I'm dead tired.",
        "My grandmother died last year.",
        "It was a skills workshop on self-care.",
        "",
        "   ",
    ],
)
def test_clear_negatives(text):
    r = screen_text(text)
    assert r == RiskResult(False)
    assert not r.flag and r.categories == [] and r.terms == []


@pytest.mark.parametrize("value", [None, pd.NA, float("nan")])
def test_missing_text_is_not_flagged(value):
    assert not screen_text(value).flag


def test_whole_words_only():
    assert not screen_text("skillful myselfie").flag
    assert not screen_text("unkill myself2").flag


def test_several_categories_in_order():
    r = screen_text("I want to kill him and then kill myself, I already cut myself.")
    assert r.categories == ["suicide", "self_harm", "harm_to_others"]
    assert r.terms == ["kill him", "kill myself", "cut myself"]
    assert [d.category for d in r.detections] == ["harm_to_others", "suicide", "self_harm"]


def test_terms_keep_original_text_and_dedupe():
    r = screen_text("Suicidal. suicidal. SUICIDAL.")
    assert r.terms == ["Suicidal"]
    assert len(r.detections) == 3


def test_custom_term_file(tmp_path):
    p = tmp_path / "terms.toml"
    p.write_text(
        '[meta]\nid = "custom"\nnegation_cues = ["not"]\n'
        "[categories.suicide]\npatterns = ['''give\\s+up\\s+on\\s+life''']\n",
        encoding="utf-8",
    )
    scr = load_screen(p)
    assert scr.id == "custom"
    assert screen_text("I give up on life", screen=scr).terms == ["give up on life"]
    assert not screen_text("I want to kill myself", screen=scr).flag


def test_bad_term_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[categories.suicide]\npatterns = ['''(unclosed''']\n", encoding="utf-8")
    with pytest.raises(ValueError, match="categories.suicide.patterns"):
        load_screen(p)
    p.write_text("[categories.other]\npatterns = ['x']\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown categories"):
        load_screen(p)


def _df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "session_id": ["s1"] * 6,
            "index": range(6),
            "role": pd.array(["therapist", "patient", "patient", "unknown", "Patient", None], dtype="string"),
            "text": pd.array(
                [
                    "Have you had thoughts of killing yourself?",
                    "Sometimes I want to die.",
                    "Work was fine today.",
                    "I want to kill myself.",
                    "I'm not suicidal.",
                    "I want to die.",
                ],
                dtype="string",
            ),
        },
        index=[10, 11, 11, 12, 13, 14],  # duplicate labels must not confuse the screen
    )


def test_screen_utterances_patient_rows_only():
    df = _df()
    out = screen_utterances(df, screen=LEX)
    assert out is not df and "risk_flag" not in df.columns
    for col, dtype in SAFETY_COLUMNS.items():
        assert str(out[col].dtype) == dtype
    flags = out["risk_flag"].tolist()
    assert flags[0] is pd.NA  # therapist's screening question is not screened
    assert flags[1:3] == [True, False]
    assert flags[3] is pd.NA  # unknown role: not screened by default
    assert flags[4] is True  # role match is case-insensitive; negated mention still flagged
    assert flags[5] is pd.NA  # missing role
    assert out["risk_categories"].tolist()[1:3] == ["suicide", ""]
    assert out["risk_terms"].tolist()[1] == "want to die"
    assert out["risk_terms"].tolist()[4] == "suicidal [negated]"
    assert out["risk_categories"].isna().tolist() == [True, False, False, True, False, True]
    # what text_stages.run_safety counts
    assert int(out["risk_flag"].fillna(False).sum()) == 2
    # the lexical layer alone has no level or score: null, not "none"/0
    assert out["risk_level"].isna().all() and out["risk_score"].isna().all()
    assert out["risk_screen"].tolist()[1] == "lexical-v1"


def test_screen_utterances_other_roles():
    out = screen_utterances(_df(), roles=("patient", "unknown"), screen=LEX)
    assert out["risk_flag"].tolist()[3] is True
    out = screen_utterances(_df(), roles="therapist", screen=LEX)
    assert out["risk_flag"].tolist()[0] is True
    assert out["risk_flag"].isna().sum() == 5


def test_screen_utterances_overwrites_existing_columns_and_handles_empty():
    df = _df()
    df["risk_flag"] = pd.array([True] * 6, dtype="boolean")
    out = screen_utterances(df, screen=LEX)
    assert out["risk_flag"].tolist()[0] is pd.NA
    empty = screen_utterances(df.iloc[0:0], screen=LEX)
    assert set(SAFETY_COLUMNS) <= set(empty.columns) and len(empty) == 0


def test_screen_utterances_needs_columns():
    with pytest.raises(KeyError, match="role"):
        screen_utterances(pd.DataFrame({"text": ["x"]}), screen=LEX)


def test_module_constants():
    # risk-v2 is the default screen since issue 12; lexical-v1 is its lexical layer
    assert safety.SCREEN_ID == "risk-v2"
    assert safety.LEXICAL_SCREEN_ID == "lexical-v1"
    assert safety.CATEGORIES == ("suicide", "self_harm", "harm_to_others")


@pytest.mark.parametrize(
    "text,flagged",
    [
        # documented false positives (accepted for recall)
        ("I could kill him for eating my lunch", True),
        ("I cut myself cooking", True),
        ("he hurt my sister", True),
        # documented non-matches
        ("my mom will kill me", False),
        # documented misses: indirect statements
        ("I won't be a problem much longer", False),
        ("I just want it all to stop", False),
    ],
)
def test_documented_behaviour(text, flagged):
    assert screen_text(text).flag is flagged


def test_any_hit_shortcut_gives_the_same_hits_as_the_patterns_one_by_one():
    """The per-category alternation only skips texts no pattern matches: results are unchanged."""
    import pathlib

    texts = pd.read_csv(pathlib.Path(__file__).parent / "data" / "risk_dev.csv", dtype=str, keep_default_na=False)["text"]
    config = tomllib.loads(resources.files("emoguide").joinpath("safety_terms.toml").read_text("utf-8"))
    slow = safety.LexicalScreen(config, "safety_terms.toml")  # its own instance: load_screen() is shared
    slow._any = {}  # no shortcut: every pattern is run
    for t in list(texts) + ["I want to kill myself.", "I'm not suicidal", "nothing here", ""]:
        a, b = LEX.screen(t), slow.screen(t)
        assert (a.flag, a.categories, a.terms, a.detections) == (b.flag, b.categories, b.terms, b.detections), t


def test_plan_batches_covers_every_text_and_pads_less_than_fixed_batches():
    from emoguide.risk.embed import plan_batches

    def cost(lengths, batches, overhead=4):
        return sum(max(lengths[a:b]) * (b - a) + overhead for a, b in batches)

    lengths = sorted([3, 5, 5, 6, 9, 12, 12, 13, 40, 41, 90, 128, 128] * 7)
    batches = plan_batches(lengths, 32)
    assert batches[0][0] == 0 and batches[-1][1] == len(lengths)
    assert all(a < b and b - a <= 32 for a, b in batches)
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(batches, batches[1:]))
    fixed = [(i, min(i + 32, len(lengths))) for i in range(0, len(lengths), 32)]
    assert cost(lengths, batches) < 0.8 * cost(lengths, fixed)
    assert cost([10] * 100, plan_batches([10] * 100, 32)) == 10 * 100 + 4 * 4  # equal lengths: the fewest batches
    assert plan_batches([], 32) == []


def _corpus_texts() -> list[str]:
    """Statements of the repo's own data (development set, conversational negatives, bank)."""
    import pathlib

    from emoguide.risk.bank import load_bank

    data = pathlib.Path(__file__).parent / "data"
    dev = pd.read_csv(data / "risk_dev.csv", dtype=str, keep_default_na=False)
    neg = pd.read_csv(data / "risk_conversational_negatives.csv", dtype=str, keep_default_na=False)
    return list(dev["text"]) + [c for c in dev["context"] if c] + list(neg["text"]) + load_bank().texts


def test_first_char_alternation_matches_where_the_plain_alternation_does():
    """The grouped alternation (the gate's vocabulary, the lexical shortcut) must find a match in
    exactly the texts the plain one does, at the same start, including alternatives that cannot
    be grouped by a first letter (a top-level `|`, an optional first letter, a leading group or
    escape)."""
    import re

    from emoguide.risk import gate
    from emoguide.safety import first_char_alternation

    tricky = [r"kill(?:ing)?\s+him|stab", r"s?he\s+hurts", r"(?:i'?m|i\s+am)\s+done", r"\bod\b", r"\w*gun", r"[a-c]at\b",
              r"a\|b", r"x*ray", r"K(?=nife)\w+"]
    texts = _corpus_texts() + ["she hurts", "he hurts", "I'm done", "an od", "a shotgun", "cat bat", "a|b", "ray", "Knife",
                               "stab", "killing him", "KILL HIM", ""]
    for alts in (tricky, gate._VOCAB, gate._CUES):
        plain = re.compile(r"\b(?:" + "|".join(alts) + ")", re.I)
        grouped = re.compile(r"\b(?:" + first_char_alternation(alts) + ")", re.I)
        for t in texts:
            a, b = plain.search(t), grouped.search(t)
            assert (a is None) == (b is None) and (a is None or a.start() == b.start()), (t, a, b)
    assert gate.RISK_VOCAB_RE.pattern != r"\b(?:" + "|".join(gate._VOCAB) + ")"  # the grouped form is the one in use


def test_gate_words_narrowed_on_real_talk_keep_every_risk_statement():
    """Four gate words were narrowed on the AnnoMI fit part ("harmony", "heart attack", "high
    school", "around" alone); every risk statement of the bank and of the development fit part
    (read alone) still passes the gate."""
    import pathlib

    from emoguide.risk.bank import load_bank
    from emoguide.risk.gate import may_carry_risk

    for benign in ("We sang in harmony at church.", "My dad had a heart attack last year.", "I stopped in high school.",
                   "I try not to smoke around him."):
        assert not may_carry_risk(benign), benign
    for risky in ("I want to harm myself.", "I could attack him when he gets home.", "Somewhere high enough to jump.",
                  "I won't be around much longer.", "They'd be happier without me around."):
        assert may_carry_risk(risky), risky
    dev = pd.read_csv(pathlib.Path(__file__).parent / "data" / "risk_dev.csv", dtype=str, keep_default_na=False)
    alone = (dev["split"] == "fit") & (dev["risk"] == "1") & (dev["context"] == "")  # context rows carry no risk word alone, by design
    risk = list(dev[alone]["text"]) + [e.text for e in load_bank().entries if e.positive]
    assert len(risk) > 250
    assert [t for t in risk if not may_carry_risk(t)] == []


def test_reading_units_of_long_utterances():
    from emoguide.risk.screen import CLAUSE_MAX_WORDS, reading_units

    short = "I used to cut. Not anymore."
    assert reading_units(short) == [short]  # a short utterance is one statement
    long = ("We talked about the garden and the kids and the school run this morning. "
            "I have pills saved up in case it gets too bad. Anyway, the weather has been nice.")
    assert reading_units(long) == [
        "We talked about the garden and the kids and the school run this morning.",
        "I have pills saved up in case it gets too bad.", "Anyway, the weather has been nice."]
    one = "well you know I have been going to the gym and eating better and sleeping more and all of that is good for me I think"
    assert reading_units(one) == [one]  # one long sentence with no clause marks stays whole
    runon = ("Yeah, that'd be okay, you know, I'm not so certain I'm even gonna take the medicine cause, you know, he mentioned "
             "muscle weakness, uh, and then my wife said, well, you should ask him about it, and I did -- he said it is rare, "
             "so I guess I'll try it for a month and see how it goes.")
    units = reading_units(runon)
    assert len(units) > 1 and all(len(u.split()) <= CLAUSE_MAX_WORDS for u in units)
    assert " ".join(units).split() == runon.split()  # consecutive pieces: nothing lost, nothing reordered
