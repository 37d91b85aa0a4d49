"""Which utterances get an intervention, and the dialogue window shown for each."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from emoguide.config import TargetSettings

STRATEGIES = ("all", "last", "dissonant")


@dataclass
class Target:
    session_id: str
    target_index: int
    context_indices: list[int]  # `index` values of the utterances shown, in order


def select_targets(utterances: pd.DataFrame, settings: TargetSettings) -> list[Target]:
    """Targets for one session's utterance table.

    Default (`all`): each patient utterance that ends a window of the last K utterances. `last`:
    only the last such utterance of the session (one intervention per session, as the paper's
    examples). `dissonant`: only patient utterances flagged by the dissonance stage.
    """
    if settings.strategy not in STRATEGIES:
        raise ValueError(f"unknown target strategy {settings.strategy!r}; use one of {STRATEGIES}")
    df = utterances.sort_values(["start", "index"], kind="stable").reset_index(drop=True)
    k = settings.context_turns
    out: list[Target] = []
    for pos, row in df.iterrows():
        if pd.isna(row["role"]) or row["role"] != "patient":  # unknown roles (NA) are no target
            continue
        if settings.require_full_window and pos + 1 < k:
            continue
        if settings.strategy == "dissonant" and not (
            pd.notna(row.get("dissonance")) and bool(row["dissonance"])
        ):
            continue
        window = df.iloc[max(0, pos - k + 1) : pos + 1]
        out.append(
            Target(
                session_id=str(row["session_id"]),
                target_index=int(row["index"]),
                context_indices=[int(i) for i in window["index"]],
            )
        )
    if settings.strategy == "last" and out:
        out = out[-1:]
    return out
