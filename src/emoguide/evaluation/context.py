"""The plain context dialogue of a generated response, as raters and the judge see it.

Every condition's prompt shows the same context turns, but with different emotion annotations
(labels, values, "(emotional dissonance)" tags). For blinded evaluation the context must be the
same for all conditions, so it is rebuilt here from the utterance table: role and words only, no
emotion cue of any kind, and never the prompt text itself (which would reveal the condition).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import pandas as pd

from emoguide.corpus.schema import is_null

ROLE_TITLES = {"therapist": "Therapist", "patient": "Patient"}


@dataclass(frozen=True)
class ContextTurn:
    index: int
    role: str  # therapist | patient | unknown
    speaker_title: str  # "Therapist", "Patient" or "Speaker A"
    text: str
    start: float | None
    end: float | None
    is_target: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Context:
    session_id: str
    target_index: int
    turns: tuple[ContextTurn, ...]
    risk_flag: bool  # any patient turn of the context carries the safety screen's flag

    @property
    def clip_start(self) -> float | None:
        """First context utterance's start (seconds), the start of the rating clip."""
        starts = [t.start for t in self.turns if t.start is not None]
        return min(starts) if starts else None

    @property
    def clip_end(self) -> float | None:
        """The target utterance's end (seconds), the end of the rating clip."""
        target = [t for t in self.turns if t.is_target]
        if target and target[-1].end is not None:
            return target[-1].end
        ends = [t.end for t in self.turns if t.end is not None]
        return max(ends) if ends else None

    def as_text(self) -> str:
        """`Therapist: ...` lines, the form the judge prompt shows."""
        return "\n".join(f"{t.speaker_title}: {t.text}" for t in self.turns)


def parse_indices(value: Any) -> list[int]:
    """`context_indices` from generations.parquet (JSON list text, or a list)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return []
        value = json.loads(value)
    return [int(i) for i in value]


def _float(value: Any) -> float | None:
    return None if is_null(value) else float(value)


def build_context(
    utterances: pd.DataFrame, session_id: str, target_index: int, context_indices: Iterable[int]
) -> Context:
    """The plain dialogue of one context from a session's utterance table.

    Raises KeyError naming the missing utterance indices when the table does not hold them (the
    session was re-transcribed after generation).
    """
    indices = list(context_indices) or [int(target_index)]
    by_index = {int(r["index"]): r for r in utterances.astype(object).where(utterances.notna(), None).to_dict("records")}
    missing = [i for i in indices if i not in by_index]
    if missing:
        raise KeyError(f"session {session_id}: utterances {missing} of the context are not in utterances.parquet")
    turns = []
    risky = False
    for i in indices:
        row = by_index[i]
        role = str(row.get("role") or "unknown")
        title = ROLE_TITLES.get(role, f"Speaker {row.get('speaker') or '?'}")
        if role == "patient" and not is_null(row.get("risk_flag")) and bool(row.get("risk_flag")):
            risky = True
        turns.append(
            ContextTurn(
                index=i,
                role=role,
                speaker_title=title,
                text=" ".join(str(row.get("text") or "").split()),
                start=_float(row.get("start")),
                end=_float(row.get("end")),
                is_target=i == int(target_index),
            )
        )
    return Context(session_id=session_id, target_index=int(target_index), turns=tuple(turns), risk_flag=risky)


def corpus_contexts(corpus, generations: pd.DataFrame) -> dict[tuple[str, int], Context]:
    """One Context per (session_id, target_index) of a generations table, reading each session once."""
    out: dict[tuple[str, int], Context] = {}
    for session_id, rows in generations.groupby("session_id", sort=True):
        utts = corpus.session(str(session_id)).read_utterances()
        for _, row in rows.drop_duplicates(["target_index"]).iterrows():
            key = (str(session_id), int(row["target_index"]))
            ctx = build_context(utts, key[0], key[1], parse_indices(row.get("context_indices")))
            if bool(row.get("risk_flag", False)) and not ctx.risk_flag:
                ctx = Context(ctx.session_id, ctx.target_index, ctx.turns, True)
            out[key] = ctx
    return out
