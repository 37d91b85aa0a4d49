"""The judge's prompt: one call per criterion (no halo across criteria), G-Eval layout.

It holds the plain context dialogue (`emoguide.evaluation.context`: role and words only), the
technique + response, then the criterion (statement and description, as the raters read them),
the anchored scale and the frozen evaluation steps. It never holds the generation prompt, the
model id or the condition, which would unblind the judge (docs/judge.md).

The answer form is score-first ("the score only"), so the score is the first token the judge
writes and its log-probabilities can be read there (the DeepEval #3000 lesson: with a rationale
first, the probabilities at the score token depend on the rationale sampled).
"""

from __future__ import annotations

import hashlib
import json

from emoguide.evaluation.context import Context
from emoguide.evaluation.criteria import Criterion

PROMPT_VERSION = "geval-score-first-1"


def scale_lines(criterion: Criterion) -> list[str]:
    """``1 = poor``, ``2``, ..., ``5 = exceptional``: every point, with its anchor when it has one."""
    return [
        f"{k} = {criterion.anchors[k]}" if k in criterion.anchors else f"{k}"
        for k in criterion.scale
    ]


def build_messages(
    criterion: Criterion,
    steps: list[str],
    context: Context,
    technique: str,
    response: str,
) -> list[dict[str, str]]:
    lo, hi = criterion.scale_min, criterion.scale_max
    steps_text = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    description = f"\n{criterion.description}" if criterion.description else ""
    # The evidence comes before the criterion: the three prompts of one response then share a
    # long prefix, which llama.cpp (server and in-process) and vLLM reuse instead of recomputing.
    text = (
        "You will be given a short excerpt of a psychotherapy session and an intervention proposed "
        "for the therapist's next turn: a therapeutic technique and the therapist's response. "
        "Your task is to rate the intervention on one criterion.\n\n"
        f"Session excerpt:\n\n{context.as_text()}\n\n"
        "Proposed intervention:\n\n"
        f"Technique: {' '.join(str(technique).split())}\n"
        f"Response: {' '.join(str(response).split())}\n\n"
        "Read these instructions carefully and refer to them while you rate.\n\n"
        f"Evaluation Criterion:\n\n{criterion.title}: {criterion.statement}{description}\n\n"
        f"Scale ({lo} to {hi}):\n" + "\n".join(scale_lines(criterion)) + "\n\n"
        f"Evaluation Steps:\n\n{steps_text}\n\n"
        f"Evaluation Form (score ONLY): reply with a single number from {lo} to {hi} and nothing "
        f"else.\n\n{criterion.title}:"
    )
    return [{"role": "user", "content": text}]


def prompt_hash(messages: list[dict[str, str]]) -> str:
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]
