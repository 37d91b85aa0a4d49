from dataclasses import dataclass

import pandas as pd
import pytest

from emoguide.config import RolesSettings
from emoguide.speech.roles import heuristic_roles, llm_roles, read_overrides
from emoguide.runner.roles_stage import run_roles

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
    s = run_roles(c, RolesSettings())
    assert s.count("done") == 2
    asr = c.session("asr").read_utterances()
    assert dict(zip(asr["speaker"], asr["role"])) == {"A": "therapist", "B": "patient"}
    g = c.session("given").read_utterances()
    assert dict(zip(g["speaker"], g["role"])) == {"A": "patient", "B": "therapist"}
    assert run_roles(c, RolesSettings()).count("skipped") == 2

    from typer.testing import CliRunner
    from emoguide.cli import app

    res = CliRunner().invoke(app, ["roles", "--corpus", str(c.root), "asr", "--set", "A=patient", "--set", "B=therapist"])
    assert res.exit_code == 0, res.output
    assert read_overrides(c.session("asr").path) == {"A": "patient", "B": "therapist"}
    asr = c.session("asr").read_utterances()
    assert dict(zip(asr["speaker"], asr["role"])) == {"A": "patient", "B": "therapist"}
    run_roles(c, RolesSettings(), force=True)  # a forced rerun re-infers, then the override wins again
    asr = c.session("asr").read_utterances()
    assert dict(zip(asr["speaker"], asr["role"])) == {"A": "patient", "B": "therapist"}
    rec = c.session("asr").stages.get("roles")
    assert rec["roles"]["overrides"] == {"A": "patient", "B": "therapist"} and rec["backends"]["roles"] == "heuristic"
