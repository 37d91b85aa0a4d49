"""The optional LLM layer of risk-v2: a capable model reads each statement (with the previous
patient utterance) and answers in a JSON-schema-constrained form: category, level, evidence.

Off by default and never the only layer: it may raise a flag, add a category or raise a level,
never clear what the other layers found. A failed or unparseable answer changes nothing and is
recorded in the evidence.
"""

from __future__ import annotations

import json
from typing import Any

from emoguide.risk.bank import CATEGORIES, LEVELS

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["none", *CATEGORIES]},
        "level": {"type": "string", "enum": list(LEVELS)},
        "evidence": {"type": "string"},
    },
    "required": ["category", "level", "evidence"],
    "additionalProperties": False,
}

SYSTEM_PROMPT = (
    "You screen statements a patient made in a psychotherapy session for acute risk, for a human "
    "reviewer. Categories: suicide (wish to be dead, thoughts of killing oneself, method, intent, "
    "plan, preparatory acts or attempts), self_harm (non-suicidal self-injury), harm_to_others "
    "(thoughts, threats or plans to harm another person), or none. Idioms ('this job is killing "
    "me'), denials, other people's experiences, past resolved events and clinical or media talk "
    "are none. Levels: low = wish to be dead, non-specific thoughts, thoughts of harming others; "
    "moderate = a method considered, self-injury, threats; high = intent, a plan, preparatory acts "
    "or a recent attempt, plans to harm others. Answer only with JSON: category, level, and "
    "evidence (the words of the statement that carry the risk, or an empty string)."
)


class LLMLayer:
    """Wraps an LLM backend (emoguide.llm.registry.get_backend spec or a backend object)."""

    def __init__(self, backend, max_tokens: int = 96, timeout: float | None = None):
        if isinstance(backend, str):
            from emoguide.llm.registry import get_backend

            backend = get_backend(backend)
        self.backend = backend
        self.max_tokens = max_tokens
        self.timeout = timeout

    @property
    def backend_id(self) -> str:
        return self.backend.id

    def messages(self, text: str, previous: str | None) -> list[dict[str, str]]:
        user = (f"Previous patient utterance: {previous}\n" if previous else "") + f"Statement: {text}"
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def ask(self, text: str, previous: str | None = None) -> dict[str, Any]:
        """One answer: {"category", "level", "evidence"}; raises ValueError on an answer outside the schema."""
        from emoguide.llm.base import LLMError

        try:
            c = self.backend.complete(
                self.messages(text, previous),
                temperature=0.0,
                max_tokens=self.max_tokens,
                seed=0,
                timeout=self.timeout,
                response_format={"type": "json_object", "schema": ANSWER_SCHEMA},
            )
        except LLMError as exc:
            raise ValueError(f"LLM layer ({self.backend_id}) failed: {exc}") from exc
        return parse_answer(c.text)

    def apply(self, texts: list[str | None], previous: list[str | None], readings: list) -> list:
        for i, (t, p) in enumerate(zip(texts, previous)):
            if t is None:
                continue
            r = readings[i]
            try:
                ans = self.ask(t, p)
            except ValueError as exc:
                r.evidence.append(f"llm {self.backend_id}: no usable answer ({exc})")
                continue
            cat, level = ans["category"], ans["level"]
            r.evidence.append(f"llm {self.backend_id}: {cat}/{level}: {ans['evidence']}".rstrip(": "))
            if cat != "none" and level != "none":
                r.flag = True
                if cat not in r.categories:
                    r.categories = [c for c in CATEGORIES if c in r.categories or c == cat]
                if r.level is not None and LEVELS.index(level) > LEVELS.index(r.level):
                    r.level = level
                elif r.level is None:
                    r.level = level
            r.screen = r.screen if "+llm:" in r.screen else f"{r.screen}+llm:{self.backend_id}"
        return readings


def parse_answer(text: str) -> dict[str, Any]:
    """Validate an answer against ANSWER_SCHEMA (by hand: three fields; jsonschema is not a dependency)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"answer is not JSON: {text[:80]!r}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"answer is not a JSON object: {text[:80]!r}")
    for key in ("category", "level", "evidence"):
        if key not in data:
            raise ValueError(f"answer lacks {key!r}: {text[:80]!r}")
    if data["category"] not in ANSWER_SCHEMA["properties"]["category"]["enum"]:
        raise ValueError(f"answer category {data['category']!r} is not one of {ANSWER_SCHEMA['properties']['category']['enum']}")
    if data["level"] not in LEVELS:
        raise ValueError(f"answer level {data['level']!r} is not one of {list(LEVELS)}")
    return {"category": data["category"], "level": data["level"], "evidence": str(data["evidence"])}
