from dataclasses import dataclass

import pandas as pd
import pytest

from emoguide.pipeline.runner import run_one
from emoguide.speech.roles import heuristic_roles, llm_roles, read_overrides, set_overrides
from emoguide.stages.roles import RolesStage, RolesStageSettings

from helpers import SHARED_DATA, corpus_with

ANNOMI = SHARED_DATA / "annomi" / "AnnoMI-full.csv"


def asr_like(rows, session_id="s1"):
    """An ASR-made table: speakers A/B, roles unknown."""
    return pd.DataFrame(
        [
            {"session_id": session_id, "index": i, "start": i * 5.0, "end": i * 5.0 + 4, "speaker": spk, "role": "unknown", "text": t}
            for i, (spk, t) in enumerate(rows)
        ]
    )


DIALOGUE = [
    ("A", "Hi, thanks for coming. What brings you in today?"),
    ("B", "I've been really stressed at work and I can't sleep."),
    ("A", "It sounds like work has been weighing on you. How long has that been going on?"),
    ("B", "Maybe three months. My boss keeps piling things on me and I feel like I'm drowning."),
    ("A", "Can you tell me more about what a typical evening looks like for you?"),
    ("B", "I get home late, I eat something, and then I lie awake thinking about my inbox."),
]


def test_heuristic_finds_the_therapist_either_way_round():
    a = heuristic_roles(asr_like(DIALOGUE))
    assert a.roles == {"A": "therapist", "B": "patient"} and a.confidence > 0.8
    swapped = [("B" if s == "A" else "A", t) for s, t in DIALOGUE]
    b = heuristic_roles(asr_like(swapped))
    assert b.roles == {"B": "therapist", "A": "patient"}


def test_one_speaker_is_unknown_with_zero_confidence():
    a = heuristic_roles(asr_like([("A", "I just want to talk."), ("A", "I feel tired.")]))
    assert a.roles == {"A": "unknown"} and a.confidence == 0.0


@pytest.mark.skipif(not ANNOMI.exists(), reason="../shared/data/annomi absent (a user's clone)")
def test_heuristic_role_accuracy_on_annomi():
    from emoguide.transcripts.annomi import read_annomi

    sessions = read_annomi(ANNOMI)
    correct = 0
    for s in sessions:
        truth = dict(zip(s.utterances["speaker"], s.utterances["role"]))
        hidden = s.utterances.assign(role="unknown")
        got = heuristic_roles(hidden).roles
        correct += all(got[k] == v for k, v in truth.items())
    accuracy = correct / len(sessions)
    print(f"heuristic role accuracy on AnnoMI: {accuracy:.3f} ({correct}/{len(sessions)})")
    assert accuracy >= 0.9


@dataclass
class Reply:
    text: str


class ScriptedBackend:
    """Answers with a fixed text: exercises how llm_roles reads answers (the real-server path is
    covered in test_generate's llama.cpp server tests)."""

    id = "scripted:test"

    def __init__(self, text):
        self.text = text

    def complete(self, messages, **params):
        assert "therapist" in messages[0]["content"] and "B:" in messages[0]["content"]
        return Reply(self.text)


def test_llm_roles_parses_json_and_falls_back_with_reason():
    df = asr_like(DIALOGUE)
    ok = llm_roles(df, ScriptedBackend('Sure: {"A": "therapist", "B": "client"}'))
    assert ok.roles == {"A": "therapist", "B": "patient"} and ok.method == "llm:scripted:test"
    assert ok.confidence > 0.9  # agrees with the heuristic
    bad = llm_roles(df, ScriptedBackend("I think A is the doctor."))
    assert bad.method == "heuristic" and "not JSON" in bad.reason and bad.roles["A"] == "therapist"
    odd = llm_roles(df, ScriptedBackend('{"A": "patient", "B": "patient"}'))
    assert odd.method == "heuristic" and "inconsistent" in odd.reason


def test_roles_stage_infers_keeps_given_and_overrides_survive_reruns(tmp_path):
    given = asr_like([("A", "Hello."), ("B", "Hi.")], "given")
    given["role"] = ["patient", "therapist"]  # unusual, but given by the file: kept
    c = corpus_with(tmp_path, {"asr": asr_like(DIALOGUE, "asr"), "given": given})
    s = run_one(c, "roles")
    assert s.count("done") == 2, s.outcomes
    reasons = {o.item: o.reason for o in s.outcomes}
    assert reasons["asr"].startswith("A=therapist, B=patient (heuristic, conf")
    asr = c.session("asr").read_utterances()
    assert dict(zip(asr["speaker"], asr["role"])) == {"A": "therapist", "B": "patient"}
    assert asr["role_given"].eq("unknown").all()  # what the transcript said, kept apart
    g = c.session("given").read_utterances()
    assert dict(zip(g["speaker"], g["role"])) == {"A": "patient", "B": "therapist"}
    assert c.session("given").stages.get("roles")["backends"]["roles"] == "given"
    assert run_one(c, "roles").count("skipped") == 2

    # an override (what `emoguide roles --set` writes) is an input: only that session reruns
    set_overrides(c.session("asr").path, {"A": "patient", "B": "therapist"})
    again = run_one(c, "roles")
    assert {o.item: o.status for o in again.outcomes} == {"asr": "done", "given": "skipped"}
    assert read_overrides(c.session("asr").path) == {"A": "patient", "B": "therapist"}
    asr = c.session("asr").read_utterances()
    assert dict(zip(asr["speaker"], asr["role"])) == {"A": "patient", "B": "therapist"}
    run_one(c, "roles", force=True)  # a forced rerun re-infers from role_given, then the override wins again
    asr = c.session("asr").read_utterances()
    assert dict(zip(asr["speaker"], asr["role"])) == {"A": "patient", "B": "therapist"}
    rec = c.session("asr").stages.get("roles")
    assert rec["roles"]["overrides"] == {"A": "patient", "B": "therapist"} and rec["backends"]["roles"] == "heuristic"
    assert rec["roles"]["roles"] == {"A": "therapist", "B": "patient"}  # the inference, before overrides
    assert "roles.json" in rec["inputs"]


def test_roles_stage_llm_pass_and_a_failed_load(tmp_path):
    c = corpus_with(tmp_path, {"s1": asr_like(DIALOGUE, "s1"), "s2": asr_like(DIALOGUE, "s2")})
    stage = RolesStage(RolesStageSettings(method="llm", llm_model="scripted:test"))
    stage._backend = ScriptedBackend('{"A": "therapist", "B": "client"}')  # serial executor: kept as is
    s = run_one(c, stage, ["s1"])
    assert s.count("done") == 1, s.outcomes
    rec = c.session("s1").stages.get("roles")
    assert rec["backends"]["roles"] == "llm:scripted:test" and rec["settings"]["settings"]["llm_model"] == "scripted:test"
    df = c.session("s1").read_utterances()
    assert dict(zip(df["speaker"], df["role"])) == {"A": "therapist", "B": "patient"}
    # a backend that cannot be built fails each session that needs it, with the reason; none stops the batch
    bad = run_one(c, RolesStage(RolesStageSettings(method="llm", llm_model="nosuchprovider:m")), force=True)
    assert bad.count("failed") == 2, bad.outcomes
    assert all("nosuchprovider" in o.reason for o in bad.outcomes)
    # the heuristic ignores [llm]: changing it does not rerun a heuristic session
    from emoguide.config import LLMSettings

    run_one(c, "roles", force=True)
    h = RolesStage(RolesStageSettings(llm=LLMSettings(seed=7)))
    assert run_one(c, h).count("skipped") == 2


def test_an_override_reruns_the_stages_that_read_roles_only(tmp_path):
    """safety and dissonance read the role group; text_affect reads only the rows' words."""
    from emoguide.pipeline.runner import run_stages
    from emoguide.stages.safety import SafetySettings, SafetyStage

    rows = DIALOGUE + [("B", "Honestly I want to die some nights.")]
    c = corpus_with(tmp_path, {"s1": asr_like(rows, "s1")})
    lexical = SafetyStage(SafetySettings(screen="lexical"))
    first = run_stages(c, ["roles", lexical, "dissonance"])
    assert first.failed == 0, [s.outcomes for s in first.summaries]
    df = c.session("s1").read_utterances()
    assert df["risk_flag"].tolist() == [pd.NA, False, pd.NA, False, pd.NA, False, True]  # patients only
    assert df.loc[6, "risk_terms"] == "want to die"
    rec = c.session("s1").stages.get("safety")
    assert rec["backends"]["safety"] == "lexical-v1" and "roles" in rec["upstream"]
    assert any("1 patient utterance(s) flagged" in w for w in rec["warnings"])
    again = run_stages(c, ["roles", SafetyStage(SafetySettings(screen="lexical")), "dissonance"])
    assert all(s.count("skipped") == 1 for s in again.summaries)
    set_overrides(c.session("s1").path, {"A": "patient", "B": "therapist"})  # the patient is now A
    redo = run_stages(c, ["roles", SafetyStage(SafetySettings(screen="lexical")), "dissonance"])
    assert all(s.count("done") == 1 for s in redo.summaries)
    df = c.session("s1").read_utterances()
    assert df["risk_flag"].tolist() == [False, pd.NA, False, pd.NA, False, pd.NA, pd.NA]
