"""The utterance table: the unit everything hangs on (docs/corpus.md).

Columns are added stage by stage; `conform()` gives any table the full set in a fixed order, with
missing affect columns as null (never 0), so every stage and export sees the same shape.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

CHANNELS = ("voice", "face", "text")
ROLES = ("therapist", "patient", "unknown")

BASE_COLUMNS: dict[str, str] = {
    "session_id": "string",
    "index": "int64",
    "start": "float64",
    "end": "float64",
    "speaker": "string",
    "role": "string",
    "text": "string",
    "asr_confidence": "float64",
}


def channel_columns(channel: str) -> dict[str, str]:
    cols = {
        f"{channel}_valence": "float64",
        f"{channel}_arousal": "float64",
    }
    if channel in ("voice", "text"):
        cols[f"{channel}_dominance"] = "float64"
    if channel == "text":
        cols["text_sentiment"] = "float64"  # VADER compound, [-1, 1]
        cols["text_coverage"] = "float64"  # share of words found in the norms
    cols.update(
        {
            f"{channel}_label": "string",
            # JSON object text {label: probability}; JSON keeps the table loadable by any reader.
            f"{channel}_probs": "string",
            f"{channel}_n": "Int64",
            f"{channel}_source": "string",
        }
    )
    return cols


DISSONANCE_COLUMNS: dict[str, str] = {
    "dissonance_score": "float64",
    "dissonance": "boolean",
    "dissonance_dims": "string",  # comma-separated dimensions that exceeded T
    "dissonance_compared": "string",  # comma-separated dimensions both channels had
    "dissonance_method": "string",
}

SAFETY_COLUMNS: dict[str, str] = {
    "risk_flag": "boolean",
    "risk_categories": "string",
    "risk_terms": "string",
    # risk-v2 (docs/safety.md): none/low/moderate/high; null when the semantic layer was unavailable
    "risk_level": "string",
    "risk_score": "float64",  # the classifier's probability, [0, 1]; null when unavailable
    "risk_evidence": "string",  # JSON list of the matched bank entries, terms, context and LLM notes
    "risk_screen": "string",  # screen id@version (+ layers), e.g. "risk-v2@2.0.0"
}


def utterance_columns() -> dict[str, str]:
    cols = dict(BASE_COLUMNS)
    for c in CHANNELS:
        cols.update(channel_columns(c))
    cols.update(DISSONANCE_COLUMNS)
    cols.update(SAFETY_COLUMNS)
    return cols


UTTERANCE_COLUMNS = utterance_columns()
AFFECT_COLUMNS = [c for ch in CHANNELS for c in channel_columns(ch)]
VALUE_COLUMNS = [c for c in AFFECT_COLUMNS if c.rsplit("_", 1)[1] in ("valence", "arousal", "dominance")]


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Return `df` with every known column (missing ones null) in canonical order.

    Extra columns (e.g. AnnoMI labels) are kept after the known ones.
    """
    out = df.copy()
    for col, dtype in UTTERANCE_COLUMNS.items():
        if col not in out.columns:
            out[col] = pd.Series([None] * len(out), dtype=dtype, index=out.index)
        else:
            try:
                out[col] = out[col].astype(dtype)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"column {col!r} cannot be read as {dtype}: {exc}") from exc
    extra = [c for c in out.columns if c not in UTTERANCE_COLUMNS]
    out = out[list(UTTERANCE_COLUMNS) + extra]
    return out.reset_index(drop=True)


def empty_utterances() -> pd.DataFrame:
    return conform(pd.DataFrame({c: [] for c in BASE_COLUMNS}))


def fill_missing_ends(df: pd.DataFrame) -> pd.DataFrame:
    """An utterance whose end is unknown ends where the next begins (docs/corpus.md)."""
    out = df.sort_values(["start", "index"], kind="stable").reset_index(drop=True)
    nxt = out["start"].shift(-1)
    missing = out["end"].isna()
    out.loc[missing, "end"] = nxt[missing]
    # The last utterance of a session with no end: leave it equal to its start (zero length).
    still = out["end"].isna()
    out.loc[still, "end"] = out.loc[still, "start"]
    return out


def probs_to_json(probs: dict[str, float] | None) -> str | None:
    if probs is None:
        return None
    return json.dumps({str(k): float(v) for k, v in probs.items()}, sort_keys=True)


def probs_from_json(text: Any) -> dict[str, float] | None:
    if text is None or (isinstance(text, float) and np.isnan(text)) or text is pd.NA:
        return None
    return {str(k): float(v) for k, v in json.loads(text).items()}


def is_null(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
