"""Tests for emoguide.llm.parse: the forms real models write (paper Figs. 7, 12, 13; App. F) and flags."""

from __future__ import annotations

import pytest

from emoguide.llm.parse import FLAGS, ParsedOutput, is_explanation, parse_output

# -- real outputs from the paper -------------------------------------------------------------
# Figure 7: "Name: response" on one line.
FIG7 = [
    (
        "Cognitive Restructuring: It's normal to worry about what others think, but it's important to "
        "remember that people have different perspectives and not everyone may share the same opinion as "
        "those who might think you're weird. Try focusing on the positive aspects of your work relationships "
        "and remember that everyone makes mistakes. It's how we learn and grow from them that matters. "
        "Additionally, try reminding yourself that not everyone's opinions matter and that it's okay to be different.",
        "Cognitive Restructuring",
        "It's normal to worry about what others think",
    ),
    (
        "Reframing Technique: I understand that you're concerned about people at work not wanting to be friends "
        "with you if they perceive you as weird. However, let's try to look at this situation from a different "
        "perspective. It's important to remember that everyone has quirks and unique qualities that make them who "
        "they are. What makes you, you is what makes you valuable and interesting, rather than focusing on the "
        "potential negative consequences, let's focus on the positive aspects of being yourself at work. Let's "
        "explore ways to embrace your individuality and connect with your colleagues based on your genuine "
        "qualities. Would you be open to brainstorming some ideas?",
        "Reframing Technique",
        "I understand that you're concerned",
    ),
    (
        "Reframing Technique: Ah, I see. So, it's not about saying something stupid itself, but about the fear of "
        "being rejected or not being liked by your colleagues. Can you tell me more about what that would mean to "
        "you if that happened? What would be the impact on your daily life and relationships at work?",
        "Reframing Technique",
        "Ah, I see. So, it's not about",
    ),
    (
        "Active Listening: I sense that you're getting a bit emotional when talking about this. It sounds like "
        "there's a deep-seated fear of being rejected or not being liked by others. Can you help me understand "
        "what's driving this fear? What would it mean to you if people at work didn't want to be friends with you?",
        "Active Listening",
        "I sense that you're getting a bit emotional",
    ),
    (
        "Cognitive Behavioral Therapy (CBT) - specifically, Socratic questioning: And if they didn't want to be "
        "friends with you, what impact would that have on you?",
        "Cognitive Behavioral Therapy (CBT) - specifically, Socratic questioning",
        "And if they didn't want to be friends with you, what impact would that have on you?",
    ),
    (
        "Emotional Awareness and Validation: I sense some discomfort when you mention your colleagues not wanting "
        "to be friends. Can you tell me what feelings come up when you think about that situation?",
        "Emotional Awareness and Validation",
        "I sense some discomfort when you mention",
    ),
]

# Figure 12: bold "Technique:" line, reply on the next line.
FIG12 = [
    (
        "**Technique: Cognitive Behavioral Therapy (CBT) - specifically, Socratic questioning.**\n"
        "And if they didn't want to be friends with you, what impact would that have on you?",
        "Cognitive Behavioral Therapy (CBT) - specifically, Socratic questioning",
        "And if they didn't want to be friends with you, what impact would that have on you?",
    ),
    (
        "**Technique: Cognitive-behavioral therapy (CBT)**\n"
        "Okay, so it sounds like you're really struggling with these negative beliefs about yourself. Can you "
        "tell me more about where those beliefs come from?",
        "Cognitive-behavioral therapy (CBT)",
        "Okay, so it sounds like you're really struggling",
    ),
    (
        "**Technique: Emotional Awareness and Validation.**\n"
        "I sense some discomfort when you mention your colleagues not wanting to be friends. Can you tell me what "
        "feelings come up when you think about that situation?",
        "Emotional Awareness and Validation",
        "I sense some discomfort",
    ),
    (
        "**Technique: Cognitive Restructuring**\n"
        "I understand that you're worried about what your coworkers might think of you, but is it really likely "
        "that they would judge you so harshly? And even if they did, would that really be the end of the world? "
        "It's important to remember that everyone has their own quirks and imperfections, and it's okay to make "
        "mistakes. It's how we learn and grow.",
        "Cognitive Restructuring",
        "I understand that you're worried about what your coworkers might think of you",
    ),
]
VIDEO_LLAMA = (
    "The video appears to be a professional video with good lighting and quality. The technique used for this "
    "video could be the Stutter Step technique or possibly even the Anderson Counseling technique."
)
VIDEO_LLAVA = (
    "Based on the video, the best intervention technique for the patient would be to provide them with a "
    "comfortable and supportive environment, such as a red chair, to help them feel at ease."
)

# Figure 13: "Technique: X", blank line, reply (sometimes quoted; one with a trailing colon).
FIG13 = [
    (
        "Technique: Trauma-focused Cognitive Behavioral Therapy (TF-CBT)\n\n"
        "I'm sorry to hear what you've been through. It must have been very difficult. It's important to "
        "understand that what happened was not your fault. You were a child and you deserve to be cared for and "
        "loved. Let's work on understanding how these significant experiences have shaped your emotions and "
        "behavior, and as we progress, we'll focus on how to cope and heal.",
        "Trauma-focused Cognitive Behavioral Therapy (TF-CBT)",
        "I'm sorry to hear what you've been through.",
    ),
    (
        "Technique: Reflective listening\n\n"
        "\"It sounds like you're saying that your father abused you when you were a child, and that it's had a "
        "profound impact on your life. You're worried that he might hurt someone else, and you're struggling to "
        "come to terms with what happened to you. Is that right?\"",
        "Reflective listening",
        "It sounds like you're saying that your father abused you",
    ),
    (
        "Technique: Psychoeducation\n\n"
        "It sounds like you've been through a lot of difficult experiences with your grandfather. It's "
        "understandable that these memories are painful for you. Let's explore how these experiences have "
        "affected you and how we can work through them together.",
        "Psychoeducation",
        "It sounds like you've been through a lot",
    ),
    (
        "Technique: Emotion Dissonance:\n\n"
        "\"I notice that you seem to be struggling with conflicting emotions when you talk about your father's "
        "abuse. It's understandable that you would feel upset and scared, but it's also clear that you feel a "
        "sense of empathy for your father and his own struggles. It's important to recognize that these feelings "
        "are valid and can coexist, even if they may seem contradictory. Can you tell me more about what you're "
        "feeling and how you're making sense of these complex emotions?\"",
        "Emotion Dissonance",
        "I notice that you seem to be struggling",
    ),
]

# Appendix F: explanations instead of replies.
APP_F = [
    "Clarification: This encourages the patient to elaborate on their feelings and provides valuable insight "
    "into their emotional state.",
    "Clarification: This response seeks to gently clarify the patient's statements, particularly the "
    "juxtaposition of 'phone' with deeply personal needs.",
]


@pytest.mark.parametrize("raw,technique,response_start", FIG7 + FIG12 + FIG13)
def test_paper_outputs_parse_clean(raw, technique, response_start):
    out = parse_output(raw)
    assert out.technique == technique
    assert out.response is not None and out.response.startswith(response_start)
    assert out.flags == []
    assert out.ok
    assert out.raw == raw


def test_response_is_whitespace_normalised_and_quotes_stripped():
    raw, _, _ = FIG13[1]
    out = parse_output(raw)
    assert not out.response.startswith('"') and not out.response.endswith('"')
    assert out.response.endswith("Is that right?")
    assert "  " not in out.response and "\n" not in out.response


def test_response_otherwise_verbatim():
    raw, _, _ = FIG7[1]
    out = parse_output(raw)
    assert out.response == raw.split(": ", 1)[1]


@pytest.mark.parametrize("raw", APP_F)
def test_appendix_f_explanations_flagged(raw):
    out = parse_output(raw)
    assert out.technique == "Clarification"
    assert out.response.startswith("This ")
    assert "explanation_not_reply" in out.flags
    assert not out.ok


def test_appendix_f_without_label():
    out = parse_output("This response seeks to gently clarify the patient's statements.")
    assert out.flags == ["missing_technique", "explanation_not_reply"]


@pytest.mark.parametrize("raw", [VIDEO_LLAMA, VIDEO_LLAVA])
def test_figure12_descriptive_outputs(raw):
    out = parse_output(raw)
    assert out.technique is None
    assert "missing_technique" in out.flags
    assert "explanation_not_reply" in out.flags


# -- the other forms ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw,technique,response",
    [
        ("[Reflective Listening] It sounds like you're overwhelmed.", "Reflective Listening",
         "It sounds like you're overwhelmed."),
        ("[Reflective Listening]\nIt sounds like you're overwhelmed.", "Reflective Listening",
         "It sounds like you're overwhelmed."),
        ("[Reflective Listening] [It sounds like you're overwhelmed.]", "Reflective Listening",
         "It sounds like you're overwhelmed."),
        ("[Technique: Validation] That sounds so hard.", "Validation", "That sounds so hard."),
        ("**Technique: Cognitive Restructuring**\nI understand how hard this is.", "Cognitive Restructuring",
         "I understand how hard this is."),
        ("**Technique:** Cognitive Restructuring\n\nI understand how hard this is.", "Cognitive Restructuring",
         "I understand how hard this is."),
        ("Technique: Psychoeducation\n\nIt sounds like panic.", "Psychoeducation", "It sounds like panic."),
        ("### Technique: Psychoeducation\nIt sounds like panic.", "Psychoeducation", "It sounds like panic."),
        ("Technique 1: Unconditional Positive Regard\nI want you to know that I accept you as you are.",
         "Unconditional Positive Regard", "I want you to know that I accept you as you are."),
        ("Technique: Active Listening\nResponse: It sounds like you're exhausted.", "Active Listening",
         "It sounds like you're exhausted."),
        ("Technique: Active Listening Response: It sounds like you're exhausted.", "Active Listening",
         "It sounds like you're exhausted."),
        ("[Technique]: Validation [Your Response]: That sounds really hard.", "Validation",
         "That sounds really hard."),
        ("[Technique]: Validation\n[Your Response]: That sounds really hard.", "Validation",
         "That sounds really hard."),
        ("Technique: Reflective listening. It sounds like you're torn.", "Reflective listening",
         "It sounds like you're torn."),
        ("Technique:\nReflective listening\nResponse:\nIt sounds like you're torn.", "Reflective listening",
         "It sounds like you're torn."),
        ("1. **Reflective Listening**: It sounds like you feel alone.", "Reflective Listening",
         "It sounds like you feel alone."),
        ("**Reflective Listening**\n\n*It sounds like you feel alone.*", "Reflective Listening",
         "It sounds like you feel alone."),
        ("Reflective listening\n\nIt sounds like you're torn.", "Reflective listening", "It sounds like you're torn."),
        ("Sure! Here is my response:\n[Validation] \"That sounds really painful.\"", "Validation",
         "That sounds really painful."),
        ("Sure! Here is my response: [Validation] That sounds really painful.", "Validation",
         "That sounds really painful."),
        ("Certainly!\n\nTechnique: Validation\nThat sounds really painful.", "Validation",
         "That sounds really painful."),
        ("Here's a response in the requested format:\n\n**Technique:** Validation\n**Response:** That hurts.",
         "Validation", "That hurts."),
        ("## Technique: Validation\n\nTherapist: \"That must be hard for you.\"", "Validation",
         "That must be hard for you."),
        ("Technique: Validation\nTherapist: \u201cThat must be hard for you.\u201d", "Validation",
         "That must be hard for you."),
        ("Technique: Validation\n> That must be hard for you.", "Validation", "That must be hard for you."),
        ("It sounds like you're torn.\n\nTechnique: Reflective listening", "Reflective listening",
         "It sounds like you're torn."),
        ("Technique: Validation\nIt\u2019s hard for you.", "Validation", "It\u2019s hard for you."),
    ],
)
def test_forms(raw, technique, response):
    out = parse_output(raw)
    assert (out.technique, out.response) == (technique, response), out
    assert out.flags == [], out.flags


def test_your_response_only():
    out = parse_output("Your Response: That sounds hard.")
    assert out.technique is None and out.response == "That sounds hard."
    assert out.flags == ["missing_technique"]


@pytest.mark.parametrize(
    "raw",
    [
        "It sounds like two things are true: you love him and you are angry.",
        "Okay, so it sounds like you're really struggling.",
        "I can't help but notice you seem tense today.",
        "Hi Sarah\nI'm glad you came back.",
    ],
)
def test_plain_reply_not_mistaken_for_a_technique(raw):
    out = parse_output(raw)
    assert out.technique is None
    assert out.response == " ".join(raw.split())
    assert out.flags == ["missing_technique"]


# -- flags --------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["", "   ", "\n\t \n"])
def test_empty(raw):
    out = parse_output(raw)
    assert out.flags == ["empty"]
    assert out.technique is None and out.response is None and out.raw == raw


@pytest.mark.parametrize(
    "raw",
    [
        "I'm sorry, but I can't help with that.",
        "I\u2019m sorry, but I can\u2019t assist with this request.",
        "As an AI language model, I cannot provide therapy or counseling. Please reach out to a licensed professional.",
        "I'm not a licensed therapist, so I can't continue this role-play.",
        "I cannot provide mental health treatment.",
    ],
)
def test_refusal(raw):
    out = parse_output(raw)
    assert "refusal" in out.flags
    assert not out.ok


@pytest.mark.parametrize(
    "raw",
    [
        "[Validation] I'm sorry to hear that. That sounds so painful.",
        "[Validation] I can't imagine how hard that was for you.",
        "[Reflection] I can't help but notice you light up when you talk about her.",
    ],
)
def test_not_refusal(raw):
    assert parse_output(raw).flags == []


def test_missing_technique_and_response():
    assert parse_output("It sounds like you're exhausted.").flags == ["missing_technique"]
    out = parse_output("Technique: Validation")
    assert out.technique == "Validation" and out.response is None
    assert out.flags == ["missing_response"]


@pytest.mark.parametrize(
    "raw",
    [
        "[Technique] [Your Response]",
        "**[Technique] [Your Response]**",
        "Your response must be in the form: [Technique] [Your Response]",
    ],
)
def test_placeholder_template_echo(raw):
    out = parse_output(raw)
    assert "placeholder" in out.flags
    assert out.technique is None or out.response is None


def test_placeholder_partial():
    out = parse_output("[Technique] It sounds like you're torn.")
    assert out.technique is None and out.response == "It sounds like you're torn."
    assert out.flags == ["placeholder", "missing_technique"]
    out = parse_output("[Reflective Listening] [Your Response]")
    assert out.technique == "Reflective Listening" and out.response is None
    assert out.flags == ["placeholder", "missing_response"]


@pytest.mark.parametrize(
    "raw",
    [
        "Technique 1: Validation\nThat sounds hard for you.\n\nTechnique 2: Reframing\nWhat if you saw it differently?",
        "[Validation] That sounds hard for you.\n\n[Reframing] What if you saw it differently?",
        "Option 1:\n[Validation] That sounds hard for you.\nOption 2:\n[Reframing] What if you saw it differently?",
        "1. Validation: That sounds hard for you.\n2. Reframing: What if you saw it differently?",
        "Technique: Validation\nResponse: That sounds hard for you.\n\nTechnique: Reframing\n"
        "Response: What if you saw it differently?",
    ],
)
def test_multiple_responses_keeps_first(raw):
    out = parse_output(raw)
    assert out.technique == "Validation"
    assert out.response == "That sounds hard for you."
    assert out.flags == ["multiple_responses"]
    assert out.ok  # the first pair is usable


def test_truncated():
    raw, technique, _ = FIG7[0]
    out = parse_output(raw[:120], finish_reason="length")
    assert out.technique == technique
    assert out.flags == ["truncated"]
    assert parse_output(raw, finish_reason="stop").flags == []
    assert parse_output(raw, None).flags == []
    assert parse_output("", "length").flags == ["empty", "truncated"]


def test_several_flags():
    out = parse_output("This response seeks to gently clarify the patient's statements", finish_reason="length")
    assert out.flags == ["missing_technique", "explanation_not_reply", "truncated"]


@pytest.mark.parametrize(
    "text",
    [
        "It sounds like you're exhausted, and this approach helps you notice it.",
        "I wonder what it was like for you when she left.",
        "Let's take a moment to breathe together.",
        "That must have been terrifying.",
        "The question is what matters most to you now.",
    ],
)
def test_normal_replies_are_not_explanations(text):
    assert not is_explanation(text)
    assert "explanation_not_reply" not in parse_output(f"[Validation] {text}").flags


def test_explanation_leading_a_reply_is_flagged():
    out = parse_output("[Validation] This response validates the patient's feelings. \"It sounds like you're hurting.\"")
    assert "explanation_not_reply" in out.flags


def test_flags_are_known_and_ordered():
    for raw in [*(c[0] for c in FIG7 + FIG12 + FIG13), *APP_F, VIDEO_LLAMA, "", "[Technique] [Your Response]"]:
        out = parse_output(raw, "length")
        assert set(out.flags) <= set(FLAGS)
        assert out.flags == [f for f in FLAGS if f in out.flags]


def test_non_string_input_does_not_raise():
    assert parse_output(None).flags == ["empty"]  # type: ignore[arg-type]
    assert isinstance(parse_output(123), ParsedOutput)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    ["[", "]", "[]", "[[]]", ":", "**", "*", "\"", "\"\"", "Technique:", "Technique: :", "[Technique]:",
     "Response:", "Therapist:", "1.", "```", "```\n```", "> ", "#", "\u200b", "Option 1:", "Option 1:\nOption 2:",
     "a" * 20000, "Technique: " + "x " * 5000, "[" * 500 + "]" * 500, "\"" * 301],
)
def test_odd_inputs_do_not_raise(raw):
    out = parse_output(raw)
    assert out.raw == raw
    assert "parse_error" not in out.flags
    for part in (out.technique, out.response):
        assert part is None or (part == part.strip() and part)


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    st = None

if st is not None:
    _tokens = st.sampled_from(
        ["[", "]", "Technique", "Technique:", "Technique 1:", "[Technique]", "[Your Response]", "Response:",
         "Your Response:", "Therapist:", "**", "*", "_", "#", "1.", "2)", "\"", "\u201c", "\u201d", "'", ":", "\n",
         "\n\n", " ", "Option 2:", "Sure! Here is my response:", "you", "the patient", "This response helps",
         "As an AI", "I'm sorry, but I can't", "Reflective Listening", "It sounds like", ".", "?", "```", "-"]
    )
    _structured = st.lists(st.one_of(_tokens, st.text(max_size=12)), max_size=30).map("".join)

    @settings(max_examples=300, deadline=None)
    @given(raw=st.one_of(st.text(), _structured),
           finish=st.one_of(st.none(), st.sampled_from(["length", "stop", "", "LENGTH"]), st.text(max_size=5)))
    def test_never_raises(raw, finish):
        out = parse_output(raw, finish)
        assert isinstance(out, ParsedOutput)
        assert out.raw == raw
        assert "parse_error" not in out.flags
        assert set(out.flags) <= set(FLAGS) and len(out.flags) == len(set(out.flags))
        for part in (out.technique, out.response):
            assert part is None or (isinstance(part, str) and part and part == part.strip())
        if not raw.strip():
            assert out.flags[0] == "empty"
