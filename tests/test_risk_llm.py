"""The optional LLM layer of risk-v2 against a real llama.cpp server (packaged SmolLM2), with a
JSON-schema-constrained answer; and its merge rule: it may raise, never clear."""

from __future__ import annotations

import json
import os

import pytest

from emoguide.config import LLMSettings, ProviderSettings
from emoguide.llm.registry import get_backend
from emoguide.risk.llm import ANSWER_SCHEMA, LLMLayer, parse_answer
from emoguide.risk.screen import RiskReading

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_parse_answer_checks_the_schema():
    assert parse_answer('{"category": "suicide", "level": "high", "evidence": "pills"}') == {
        "category": "suicide", "level": "high", "evidence": "pills"}
    for bad, msg in (
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"category": "suicide", "level": "high"}', "lacks 'evidence'"),
        ('{"category": "weather", "level": "high", "evidence": ""}', "category 'weather'"),
        ('{"category": "suicide", "level": "extreme", "evidence": ""}', "level 'extreme'"),
    ):
        with pytest.raises(ValueError, match=msg):
            parse_answer(bad)


class _Fixed:
    """A backend answering a fixed text: only the merge rule is under test here."""

    id = "fixed:answer"

    def __init__(self, text: str):
        self.text = text
        self.calls: list[dict] = []

    def complete(self, messages, **kw):
        from emoguide.llm.base import Completion

        self.calls.append({"messages": messages, **kw})
        return Completion(self.text, "stop", 1, 1, 0.0)


def _reading(flag: bool, level: str, cats: list[str]) -> RiskReading:
    return RiskReading(flag, level, cats, 0.9 if flag else 0.1, [], "risk-v2@2.0.0+llm:fixed:answer")


def test_llm_layer_raises_but_never_clears():
    says_none = LLMLayer(_Fixed('{"category": "none", "level": "none", "evidence": ""}'))
    kept = says_none.apply(["I want to die."], [None], [_reading(True, "low", ["suicide"])])[0]
    assert kept.flag and kept.level == "low" and kept.categories == ["suicide"]
    assert any(e.startswith("llm fixed:answer: none/none") for e in kept.evidence)
    says_high = LLMLayer(_Fixed('{"category": "harm_to_others", "level": "high", "evidence": "where she lives"}'))
    raised = says_high.apply(["x"], ["prev"], [_reading(True, "low", ["suicide"])])[0]
    assert raised.flag and raised.level == "high" and raised.categories == ["suicide", "harm_to_others"]
    call = says_high.backend.calls[0]
    assert call["response_format"] == {"type": "json_object", "schema": ANSWER_SCHEMA}
    assert "Previous patient utterance: prev" in call["messages"][1]["content"]
    broken = LLMLayer(_Fixed("I think so"))
    r = broken.apply(["x"], [None], [_reading(False, "none", [])])[0]
    assert not r.flag and "no usable answer" in r.evidence[0]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_llm_layer_against_real_llama_server(llama_server):
    settings = LLMSettings(providers={"local": ProviderSettings(base_url=llama_server.base_url)})
    backend = get_backend("local:smollm2", settings).load()
    layer = LLMLayer(backend, max_tokens=64, timeout=120)
    # the server constrains decoding to the schema: even a 135M model answers valid JSON
    raw = backend.complete(
        layer.messages("I've been saving up my pills.", None),
        temperature=0.0, max_tokens=64, seed=0, timeout=120,
        response_format={"type": "json_object", "schema": ANSWER_SCHEMA},
    )
    data = json.loads(raw.text)
    assert set(data) == {"category", "level", "evidence"}
    assert data["category"] in ANSWER_SCHEMA["properties"]["category"]["enum"]
    assert data["level"] in ANSWER_SCHEMA["properties"]["level"]["enum"]
    # through the screen: the LLM layer sits on top of the others and is named in risk_screen
    from emoguide.risk import RiskScreen

    screen = RiskScreen(llm=layer, strict=True)
    r = screen.screen("I've been saving up my pills.")
    assert r.flag and r.level == "high"  # the other layers' reading stands whatever SmolLM2 says
    assert r.screen.endswith("+llm:local:smollm2")
    assert any(e.startswith("llm local:smollm2:") for e in r.evidence)
