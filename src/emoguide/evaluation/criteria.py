"""Rating criteria: what experts (the rating app) and the LLM judge score, on which scale.

The defaults are the paper's three statements word for word (Figure 9, Appendix D), with the
descriptions of Section 5 ("Evaluation Framework") and the paper's scale, 1-5 Likert with
1 = poor and 5 = exceptional. The rating study and the judge both take their criteria from here
(or from a study config that replaces them), so raters and judge read the same statements.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, Field, field_validator, model_validator


class Criterion(BaseModel):
    """One rated statement and its ordinal scale."""

    name: str = Field(..., pattern=r"^[a-z][a-z0-9_]*$", description="short id, e.g. empathy")
    title: str = Field(..., min_length=1, description="shown as the criterion's heading")
    statement: str = Field(..., min_length=1, description="the statement the rater scores")
    description: str = Field("", description="longer definition (judge prompt, hover help)")
    scale_min: int = Field(1, description="lowest score")
    scale_max: int = Field(5, description="highest score")
    anchors: dict[int, str] = Field(
        default_factory=lambda: {1: "poor", 5: "exceptional"},
        description="label per score; need not cover every point",
    )

    @model_validator(mode="after")
    def _check_scale(self) -> "Criterion":
        if self.scale_max <= self.scale_min:
            raise ValueError(f"scale_max ({self.scale_max}) must exceed scale_min ({self.scale_min})")
        bad = [k for k in self.anchors if not self.scale_min <= int(k) <= self.scale_max]
        if bad:
            raise ValueError(f"anchors {bad} lie outside the scale {self.scale_min}-{self.scale_max}")
        return self

    @field_validator("anchors", mode="before")
    @classmethod
    def _int_keys(cls, value):
        # TOML keys are strings ("1" = "poor"); scores are ints.
        if isinstance(value, dict):
            return {int(k): v for k, v in value.items()}
        return value

    @property
    def scale(self) -> list[int]:
        return list(range(self.scale_min, self.scale_max + 1))


PAPER_CRITERIA: tuple[Criterion, ...] = (
    Criterion(
        name="applicability",
        title="Applicability",
        statement=(
            "The intervention technique is relevant and practical for the client's specific "
            "situation and therapeutic goals."
        ),
        description=(
            "Applicability: measures both relevance and practicality of the model-generated "
            "responses in addressing specific therapeutic scenarios. Highly applicable outputs "
            "align well with the needs of individuals seeking mental health support."
        ),
    ),
    Criterion(
        name="empathy",
        title="Empathy",
        statement=(
            "The intervention technique demonstrates understanding, compassion, and respect for "
            "the client's feelings and experiences."
        ),
        description=(
            "Empathy: evaluates the extent to which the responses convey understanding and "
            "emotional resonance. In therapeutic settings, it is essential that responses not only "
            "address clinical concerns but also reflect an empathetic tone that resonates with the "
            "individual's emotional state."
        ),
    ),
    Criterion(
        name="comprehensiveness",
        title="Comprehensiveness",
        statement=(
            "The intervention technique addresses the range of issues presented by the client, "
            "considering all significant aspects."
        ),
        description=(
            "Comprehensiveness: evaluates the breadth and depth of the response in addressing the "
            "patient's concern. A comprehensive response goes beyond surface-level acknowledgment "
            "to incorporate multiple facets of the issue or offer a more complete therapeutic "
            "perspective."
        ),
    ),
)


def default_criteria() -> list[Criterion]:
    return [c.model_copy(deep=True) for c in PAPER_CRITERIA]


def criteria_hash(criteria: list[Criterion]) -> str:
    blob = json.dumps([c.model_dump(mode="json") for c in criteria], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
