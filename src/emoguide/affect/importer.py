"""Import per-utterance affect values from a CSV keyed by session and utterance.

Until the media stages run, this is how voice/face/text values reach the utterance table, so
every prompt condition can be exercised. The file has `session_id` and `index` (the utterance
index) plus any of the affect columns of the utterance table (`voice_valence`, `face_label`,
`face_probs` as JSON, ...). Values must be on [-1, 1] (use `scale="0-1"` to convert 0..1 values
with 2x-1, as for audeering's model). Empty cells stay null. `{c}_source` defaults to
`imported:<file name>` for every channel the file provides.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from emoguide.corpus.schema import AFFECT_COLUMNS, CHANNELS, VALUE_COLUMNS
from emoguide.errors import InputError

KEY_COLUMNS = ("session_id", "index")


def read_affect_csv(path: str | Path, scale: str = "-1-1") -> pd.DataFrame:
    path = Path(path)
    if scale not in ("-1-1", "0-1"):
        raise ValueError(f"scale must be '-1-1' or '0-1', not {scale!r}")
    try:
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        df = pd.read_csv(path, sep=sep, dtype={"session_id": "string"}, keep_default_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"cannot read as CSV: {exc}") from exc
    missing = [c for c in KEY_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(path, f"missing key column(s) {missing}; the header needs session_id and index", line=1)
    unknown = [c for c in df.columns if c not in KEY_COLUMNS and c not in AFFECT_COLUMNS]
    if unknown:
        raise InputError(
            path,
            f"unknown column(s) {unknown}; affect columns look like voice_valence, face_label, text_arousal",
            line=1,
        )
    idx = pd.to_numeric(df["index"], errors="coerce")
    bad = idx.isna() | (idx % 1 != 0)
    if bad.any():
        raise InputError(path, "index must be a whole number", line=int(np.flatnonzero(bad)[0]) + 2)
    df["index"] = idx.astype("int64")
    dup = df.duplicated(list(KEY_COLUMNS))
    if dup.any():
        raise InputError(path, "duplicate (session_id, index) row", line=int(np.flatnonzero(dup)[0]) + 2)
    for col in [c for c in df.columns if c in VALUE_COLUMNS]:
        vals = pd.to_numeric(df[col], errors="coerce")
        nonnum = vals.isna() & df[col].notna()
        if nonnum.any():
            raise InputError(path, f"{col} is not a number", line=int(np.flatnonzero(nonnum)[0]) + 2)
        if scale == "0-1":
            vals = 2 * vals - 1
        out = (vals < -1) | (vals > 1)
        if out.any():
            line = int(np.flatnonzero(out)[0]) + 2
            raise InputError(path, f"{col}={vals[out].iloc[0]:g} is outside [-1, 1] (scale={scale})", line=line)
        df[col] = vals.astype("float64")
    for col in [c for c in df.columns if c.endswith("_probs")]:
        for pos, text in enumerate(df[col]):
            if pd.isna(text):
                continue
            try:
                probs = json.loads(text)
                assert isinstance(probs, dict) and all(isinstance(v, (int, float)) for v in probs.values())
            except (ValueError, AssertionError) as exc:
                raise InputError(path, f"{col} must be a JSON object label->probability", line=pos + 2) from exc
    for ch in CHANNELS:
        provided = [c for c in df.columns if c.startswith(f"{ch}_") and not c.endswith("_source")]
        if provided and f"{ch}_source" not in df.columns:
            df[f"{ch}_source"] = f"imported:{path.name}"
    return df


def apply_affect(utterances: pd.DataFrame, affect: pd.DataFrame, path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Merge one session's affect rows onto its utterance table; return (table, warnings).

    Rows that name an utterance index the session does not have are an error; imported columns
    replace earlier values only where the file gives a value (an empty cell keeps what was there).
    """
    known = set(utterances["index"].astype(int))
    stray = sorted(set(affect["index"]) - known)
    if stray:
        raise InputError(path, f"session {utterances['session_id'].iloc[0]!r} has no utterance index {stray[:5]}")
    out = utterances.copy().set_index("index", drop=False)
    a = affect.set_index("index")
    for col in a.columns:
        if col == "session_id":
            continue
        vals = a[col]
        vals = vals[vals.notna()]
        if col not in out.columns:
            out[col] = pd.NA
        out[col] = out[col].astype(object)
        out.loc[vals.index, col] = vals.to_numpy(dtype=object)
    warnings = []
    patients = out[out["role"] == "patient"]
    uncovered = len(set(patients["index"]) - set(a.index))
    if uncovered:
        warnings.append(f"{uncovered} of {len(patients)} patient utterances have no affect row in {Path(path).name}")
    return out.reset_index(drop=True), warnings
