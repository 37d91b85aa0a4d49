"""Render prompt conditions for targets: the PromptItems that generation sends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from emoguide.config import TargetSettings
from emoguide.corpus.schema import is_null
from emoguide.prompts.conditions import REQUIREMENTS, Condition
from emoguide.prompts.items import PromptItem
from emoguide.prompts.targets import Target, select_targets

ROLE_TITLES = {"therapist": "Therapist", "patient": "Patient"}
CHANNEL_NAMES = {"voice": "speech", "face": "face", "text": "words"}


def _fmt(value: Any) -> str:
    return "n/a" if is_null(value) else f"{float(value):+.2f}"


@dataclass
class Turn:
    """What a template sees for one utterance of the context."""

    index: int
    speaker: str
    role: str
    role_title: str
    text: str
    is_patient: bool
    is_target: bool
    labels: str
    values: str
    dissonance: bool
    row: dict[str, Any]  # every column of the utterance, for user templates


def make_turn(row: dict[str, Any], target_index: int) -> Turn:
    role = row.get("role") or "unknown"
    title = ROLE_TITLES.get(role, f"Speaker {row.get('speaker') or '?'}")
    labels = "; ".join(
        f"{CHANNEL_NAMES[c]}: {'n/a' if is_null(row.get(f'{c}_label')) else row[f'{c}_label']}"
        for c in ("voice", "face")
    )
    values = "; ".join(
        f"{CHANNEL_NAMES[c]}: valence {_fmt(row.get(f'{c}_valence'))}, arousal {_fmt(row.get(f'{c}_arousal'))}"
        for c in ("voice", "face")
    )
    diss = row.get("dissonance")
    return Turn(
        index=int(row["index"]),
        speaker=str(row.get("speaker") or ""),
        role=role,
        role_title=title,
        text=" ".join(str(row.get("text") or "").split()),
        is_patient=role == "patient",
        is_target=int(row["index"]) == target_index,
        labels=labels,
        values=values,
        dissonance=bool(diss) if not is_null(diss) else False,
        row=row,
    )


def _has_requirement(row: dict[str, Any], requirement: str) -> bool:
    return any(not is_null(row.get(col)) for col in REQUIREMENTS[requirement])


def render_item(
    condition: Condition, target: Target, rows_by_index: dict[int, dict[str, Any]]
) -> PromptItem:
    rows = [rows_by_index[i] for i in target.context_indices]
    patient_rows = [r for r in rows if r.get("role") == "patient"]
    risky = [r for r in patient_rows if not is_null(r.get("risk_flag")) and bool(r["risk_flag"])]
    cats = sorted({c for r in risky for c in str(r.get("risk_categories") or "").split(",") if c})
    item = PromptItem(
        session_id=target.session_id,
        target_index=target.target_index,
        condition=condition.name,
        prompt="",
        context_indices=list(target.context_indices),
        template_hash=condition.hash,
        risk_flag=bool(risky),
        risk_categories=",".join(cats),
    )
    if condition.requires:
        with_inputs = [
            r for r in patient_rows if all(_has_requirement(r, req) for req in condition.requires)
        ]
        item.affect_coverage = len(with_inputs) / len(patient_rows) if patient_rows else None
        if not with_inputs:
            needed = sorted({c for req in condition.requires for c in REQUIREMENTS[req]})
            item.status = "missing_inputs"
            item.missing = (
                f"condition {condition.name!r} needs {', '.join(condition.requires)} "
                f"({' or '.join(needed)}) on the patient utterances; none in this context has them"
            )
            return item
    turns = [make_turn(r, target.target_index) for r in rows]
    item.prompt = condition.render(turns=turns, target=turns[-1], session_id=target.session_id)
    return item


def render_session(
    utterances: pd.DataFrame,
    conditions: list[Condition],
    target_settings: TargetSettings,
) -> list[PromptItem]:
    """PromptItems for one session: every target x every condition (missing inputs reported)."""
    targets = select_targets(utterances, target_settings)
    records = utterances.astype(object).where(utterances.notna(), None).to_dict("records")
    rows_by_index = {int(r["index"]): r for r in records}
    return [render_item(c, t, rows_by_index) for t in targets for c in conditions]
