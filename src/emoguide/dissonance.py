"""Emotional dissonance (paper, Eq. 1) as a pure function over the utterance table.

    D = 1{ max(|V_a - V_b|, |A_a - A_b|) > T },  T = 0.5, channels a = voice, b = face

Null-aware: the max runs over the dimensions that *both* channels have for that utterance, and the
row records which (`dissonance_compared`). With no shared dimension the score and flag are null,
never 0/False. Only utterances of the given roles (default: patient) are scored; others stay null.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emoguide.config import DissonanceSettings

METHOD_RAW = "eq1-raw"


def compute_dissonance(
    utterances: pd.DataFrame, settings: DissonanceSettings | None = None
) -> pd.DataFrame:
    """Return a copy of `utterances` with the dissonance columns filled (paper's raw Eq. 1)."""
    s = settings or DissonanceSettings()
    a, b = s.channels
    df = utterances.copy()
    in_roles = df["role"].isin(list(s.roles)).fillna(False).to_numpy(dtype=bool)

    diffs = {}
    for dim in s.dimensions:
        ca, cb = f"{a}_{dim}", f"{b}_{dim}"
        if ca not in df.columns or cb not in df.columns:
            continue
        va = pd.to_numeric(df[ca], errors="coerce").to_numpy(dtype=float)
        vb = pd.to_numeric(df[cb], errors="coerce").to_numpy(dtype=float)
        diffs[dim] = np.abs(va - vb)  # NaN where either channel is missing

    n = len(df)
    scores = np.full(n, np.nan)
    flags: list[object] = [pd.NA] * n
    exceeded: list[object] = [pd.NA] * n
    compared: list[object] = [pd.NA] * n
    for i in range(n):
        if not in_roles[i]:
            continue
        have = {d: v[i] for d, v in diffs.items() if not np.isnan(v[i])}
        if not have:
            continue
        scores[i] = max(have.values())
        flags[i] = bool(scores[i] > s.threshold)
        exceeded[i] = ",".join(d for d, v in have.items() if v > s.threshold)
        compared[i] = ",".join(have)

    df["dissonance_score"] = pd.Series(scores, index=df.index, dtype="float64")
    df["dissonance"] = pd.Series(flags, index=df.index, dtype="boolean")
    df["dissonance_dims"] = pd.Series(exceeded, index=df.index, dtype="string")
    df["dissonance_compared"] = pd.Series(compared, index=df.index, dtype="string")
    df["dissonance_method"] = pd.Series(
        [f"{METHOD_RAW}:{a}-{b}:T={s.threshold:g}" if in_roles[i] and not np.isnan(scores[i]) else pd.NA for i in range(n)],
        index=df.index,
        dtype="string",
    )
    return df
