"""The record that leaves the prompts stage and enters generation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PromptItem:
    """One rendered prompt: a target utterance of a session under one condition.

    `status` is "ok" when `prompt` is ready to send, or "missing_inputs" when the condition's
    affect inputs are absent for this target (then `prompt` is empty and `missing` says what);
    such items are reported and written as rows, never silently run as another condition.
    """

    session_id: str
    target_index: int  # `index` of the target (patient) utterance in utterances.parquet
    condition: str
    prompt: str
    context_indices: list[int] = field(default_factory=list)
    template_hash: str = ""
    status: str = "ok"
    missing: str = ""
    risk_flag: bool = False
    risk_categories: str = ""
    affect_coverage: float | None = None  # share of patient turns in the context with the inputs

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.session_id, self.target_index, self.condition)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
