import pytest

from emoguide.config import TargetSettings
from emoguide.dissonance import compute_dissonance
from emoguide.errors import InputError
from emoguide.prompts.conditions import available_conditions, load_condition, select_conditions
from emoguide.prompts.render import render_session
from emoguide.prompts.targets import select_targets

from helpers import dialogue, utterances

BASE_INSTRUCTION = (
    "Imagine you are a mental health expert interacting with a patient. Based on the dialogue "
    "provided, please apply the most suitable intervention technique and specify its name. Then, "
    "continue the dialogue with a concise response."
)
EMO_INSTRUCTION = (
    "Imagine you are a mental health expert interacting with a patient. Based on the dialogue "
    "provided, please apply the most appropriate intervention technique and specify its name. "
    "Continue the dialogue with a concise response. For each patient utterance, emotion "
    "predictions from both speech and facial expressions are provided."
)
DISS_INSTRUCTION = (
    "Imagine you are a mental health expert interacting with a patient. Based on the dialogue "
    "provided, please apply the most suitable intervention technique and specify its name. You "
    "have also noticed emotional dissonance—when the patient’s vocal tone does not match their "
    "facial expression. Continue the dialogue with a concise response."
)
FORMAT = "Your response must be in the form: [Technique] [Your Response]"


def affect_table():
    return compute_dissonance(
        utterances(
            [
                {"role": "therapist", "text": "What brings you here?"},
                {"role": "patient", "text": "I'm fine, really.", "voice_valence": 0.5, "voice_arousal": 0.6,
                 "face_valence": -0.4, "face_arousal": 0.1, "voice_label": "happy", "face_label": "sad"},
                {"role": "therapist", "text": "How is sleep?"},
                {"role": "patient", "text": "Not   great.", "voice_valence": -0.2, "voice_arousal": 0.1,
                 "face_valence": -0.3, "face_arousal": 0.0, "voice_label": "sad", "face_label": "sad"},
            ]
        )
    )


def test_packaged_conditions_are_the_papers_four():
    conds = available_conditions()
    assert list(conds) == ["base", "continuous", "discrete", "dissonance"]
    assert conds["base"].requires == []
    assert conds["dissonance"].requires == ["dissonance"]


def test_templates_word_for_word():
    items = render_session(affect_table(), select_conditions("all"), TargetSettings(context_turns=4))
    by = {i.condition: i.prompt for i in items}
    assert by["base"] == (
        f"{BASE_INSTRUCTION}\n\nDialogue:\n\nTherapist: What brings you here?\nPatient: I'm fine, really.\n"
        f"Therapist: How is sleep?\nPatient: Not great.\n\n{FORMAT}\n"
    )
    assert by["discrete"].startswith(EMO_INSTRUCTION + "\n\nDialogue:\n")
    assert "Patient (speech: happy; face: sad): I'm fine, really." in by["discrete"]
    assert "Patient (speech: sad; face: sad): Not great." in by["discrete"]
    assert by["continuous"].startswith(EMO_INSTRUCTION)
    assert (
        "Patient (speech: valence +0.50, arousal +0.60; face: valence -0.40, arousal +0.10): I'm fine, really."
        in by["continuous"]
    )
    assert by["dissonance"].startswith(DISS_INSTRUCTION)
    # only the flagged utterance (|0.5 - -0.4| = 0.9 > 0.5) carries the tag
    assert "Patient (emotional dissonance): I'm fine, really." in by["dissonance"]
    assert "Patient: Not great." in by["dissonance"]
    assert "Therapist: How is sleep?" in by["dissonance"]
    for text in by.values():
        assert text.rstrip().endswith(FORMAT)


def test_missing_affect_is_reported_not_run_as_another_condition():
    items = render_session(dialogue(2), select_conditions("all"), TargetSettings(context_turns=4))
    status = {i.condition: i.status for i in items}
    assert status == {"base": "ok", "continuous": "missing_inputs", "discrete": "missing_inputs", "dissonance": "missing_inputs"}
    missing = [i for i in items if i.status != "ok"]
    assert all(i.prompt == "" for i in missing)
    assert "dissonance" in next(i for i in missing if i.condition == "dissonance").missing


def test_partial_affect_renders_na_and_records_coverage():
    t = affect_table()
    t.loc[3, ["voice_label", "face_label"]] = None
    items = render_session(t, select_conditions("discrete"), TargetSettings(context_turns=4))
    (item,) = items
    assert item.status == "ok"
    assert "Patient (speech: n/a; face: n/a): Not great." in item.prompt
    assert item.affect_coverage == pytest.approx(0.5)


def test_targets_windows_and_strategies():
    df = dialogue(4)  # T P T P T P T P, patient indices 1,3,5,7
    full = select_targets(df, TargetSettings(context_turns=4))
    assert [t.target_index for t in full] == [3, 5, 7]
    assert full[0].context_indices == [0, 1, 2, 3]
    loose = select_targets(df, TargetSettings(context_turns=4, require_full_window=False))
    assert [t.target_index for t in loose] == [1, 3, 5, 7]
    assert loose[0].context_indices == [0, 1]
    last = select_targets(df, TargetSettings(context_turns=2, strategy="last"))
    assert [t.target_index for t in last] == [7] and last[0].context_indices == [6, 7]
    t = affect_table()
    diss = select_targets(t, TargetSettings(context_turns=2, strategy="dissonant"))
    assert [x.target_index for x in diss] == [1]
    with pytest.raises(ValueError):
        select_targets(df, TargetSettings(strategy="nope"))


def test_risk_flag_travels_to_items():
    t = affect_table()
    t["risk_flag"] = t["risk_flag"].astype(object)
    t.loc[1, "risk_flag"] = True
    t.loc[1, "risk_categories"] = "suicide"
    items = render_session(t, select_conditions("base"), TargetSettings(context_turns=4))
    assert items[0].risk_flag is True and items[0].risk_categories == "suicide"
    items = render_session(t, select_conditions("base"), TargetSettings(context_turns=2))
    by_target = {i.target_index: i.risk_flag for i in items}
    assert by_target == {1: True, 3: False}  # index 1 is outside target 3's 2-turn window


def test_user_condition_file(tmp_path):
    (tmp_path / "text_only.toml").write_text(
        'name = "words"\nrequires = ["text_affect"]\ndescription = "mine"\n'
        'template = """Say something.\n{% for t in turns %}{{ t.role_title }} [{{ t.row.text_valence }}]: {{ t.text }}\n{% endfor %}"""\n'
    )
    conds = available_conditions(tmp_path)
    assert "words" in conds and len(conds) == 5
    t = affect_table()
    t["text_valence"] = 0.25
    item = render_session(t, [conds["words"]], TargetSettings(context_turns=2))[-1]
    assert "Patient [0.25]: Not great." in item.prompt


def test_bad_condition_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('requires = ["telepathy"]\ntemplate = "x"\n')
    with pytest.raises(InputError, match="bad.toml.*telepathy"):
        load_condition(bad)
    bad.write_text('template = "{% for x in %}"\n')
    with pytest.raises(InputError, match="template syntax error"):
        load_condition(bad)
    bad.write_text('template = "{{ nosuchthing }}"\n')
    cond = load_condition(bad)
    with pytest.raises(Exception, match="nosuchthing"):
        cond.render(turns=[])
    with pytest.raises(KeyError, match="unknown condition"):
        select_conditions("base,telepathy")


# -- the corpus stage ------------------------------------------------------------------------------

def _corpus_for_prompts(tmp_path):
    from helpers import corpus_with

    no_roles = dialogue(2, "c_noroles")
    no_roles["role"] = None
    c = corpus_with(tmp_path, {"a_affect": affect_table(), "b_plain": dialogue(3, "b_plain"), "c_noroles": no_roles})
    (c.sessions_dir / "d_broken").mkdir()
    (c.sessions_dir / "d_broken" / "utterances.parquet").write_bytes(b"not a parquet file")
    return c


def test_prompts_stage_renders_every_session_and_fails_only_the_broken_one(tmp_path):
    from emoguide.pipeline.runner import run_stages
    from emoguide.stages.prompts import PromptsSettings, PromptsStage

    c = _corpus_for_prompts(tmp_path)
    events = []
    stage = PromptsStage(PromptsSettings(conditions="base,dissonance", targets=TargetSettings(context_turns=2)))
    report = run_stages(c, [stage], on_event=events.append)
    items = report.corpus_results["prompts"]
    # the same items as rendering each table directly, sessions in order
    expected = []
    for sid in ("a_affect", "b_plain"):
        expected += render_session(c.session(sid).read_utterances(), select_conditions("base,dissonance"),
                                   TargetSettings(context_turns=2))
    assert [i.to_dict() for i in items] == [i.to_dict() for i in expected]
    assert {i.session_id for i in items} == {"a_affect", "b_plain"}
    plain = [i for i in items if i.session_id == "b_plain"]
    assert {i.status for i in plain if i.condition == "dissonance"} == {"missing_inputs"}
    assert all(i.status == "ok" for i in plain if i.condition == "base")
    summary = report.summary("prompts")
    by = {(o.item, o.stage): o for o in summary.outcomes}
    assert by[("d_broken", "prompts")].status == "failed" and "parquet" in by[("d_broken", "prompts")].reason.lower()
    assert by[("c_noroles", "prompts")].status == "skipped" and "roles" in by[("c_noroles", "prompts")].reason
    assert by[("b_plain", "prompts:dissonance")].status == "skipped"
    assert by[("a_affect", "prompts:dissonance")].status == "done"
    assert summary.count("failed") == 1
    kinds = [(e.kind, e.session) for e in events if e.stage == "prompts"]
    assert ("plan", "") in kinds and ("failed", "d_broken") in kinds and ("skipped", "c_noroles") in kinds
    assert [e.total for e in events if e.kind == "plan"][-1] == 4


def test_prompts_stage_reads_targets_and_templates_from_corpus_toml(tmp_path):
    from emoguide.config import save_settings
    from emoguide.pipeline.runner import run_stages
    from emoguide.stages.prompts import PromptsStage

    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "mine.toml").write_text('name = "mine"\nrequires = []\ntemplate = "Reply to {{ target.text }}"\n')
    c = _corpus_for_prompts(tmp_path)
    settings = c.settings
    settings.targets.context_turns = 2
    settings.targets.strategy = "last"
    settings.templates_dir = str(tmp_path / "tpl")
    save_settings(c.settings_path, settings)
    stage = PromptsStage.from_corpus_settings(c.settings)
    assert stage.settings.targets.strategy == "last" and stage.settings.templates_dir == str(tmp_path / "tpl")
    stage.settings.conditions = ["mine"]
    items = run_stages(c, [stage], sessions=["b_plain"]).corpus_results["prompts"]
    assert [(i.target_index, i.prompt) for i in items] == [(5, "Reply to Patient line 2.\n")]


def test_unknown_roles_are_no_targets():
    from emoguide.corpus import schema

    df = dialogue(3)
    df["role"] = df["role"].astype(object)
    df.loc[3, "role"] = None  # one patient utterance whose role is unknown: <NA> once conformed
    got = select_targets(schema.conform(df), TargetSettings(context_turns=2))
    assert [t.target_index for t in got] == [1, 5]
