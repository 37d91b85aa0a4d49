"""AnnoMI (Wu et al., 2022/2023): 133 expert-annotated motivational-interviewing transcripts.

The CSV has one row per (utterance, annotator): rows that share ``transcript_id`` and
``utterance_id`` describe the same utterance. Here each utterance becomes ONE row, its expert labels
kept as ``annomi_<label>`` columns holding the majority label across annotators (ties: the label
seen first in the file), plus ``annomi_n_annotators`` and ``annomi_utterance_id``. "n/a" labels
(not applicable, e.g. a therapist label on a client utterance) become null.

AnnoMI has start timestamps only; an utterance ends where the next begins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from emoguide.errors import InputError
from emoguide.transcripts.readers import (
    ParsedTranscript,
    build_transcript,
    normalise_name,
    read_table_text,
    read_text,
)

#: Per-transcript metadata columns: they go into ``source``, not into the utterance rows.
META_COLUMNS = ("mi_quality", "topic", "video_title", "video_url")
KEY_COLUMNS = ("transcript_id", "utterance_id")
UTTERANCE_COLUMNS = ("interlocutor", "timestamp", "utterance_text", "annotator_id")
INTERLOCUTOR_ROLES = {"therapist": "therapist", "client": "patient"}
LICENCE = (
    "AnnoMI (github.com/uccollab/AnnoMI); cite Wu et al., ICASSP 2022 and Future Internet "
    "15(3):110, 2023. Transcripts of publicly available MI demonstration videos."
)


def session_id_for(transcript_id: Any) -> str:
    return f"annomi-{int(transcript_id):03d}"


def _majority(df: pd.DataFrame, col: str) -> pd.Series:
    """Per (transcript_id, utterance_id): the most frequent value of `col`; ties -> first seen."""
    keys = list(KEY_COLUMNS)
    grouped = df.groupby(keys + [col], sort=False)["_pos"]
    stats = pd.DataFrame({"n": grouped.size(), "first": grouped.min()}).reset_index()
    stats = stats.sort_values(["n", "first"], ascending=[False, True], kind="stable")
    best = stats.drop_duplicates(keys, keep="first").set_index(keys)[col]
    return best


def annomi_from_frame(
    df: pd.DataFrame,
    lines: list[int | None] | None,
    *,
    path: str | Path,
    roles: Mapping[str, str] | None = None,
) -> list[ParsedTranscript]:
    """AnnoMI rows (all values as strings, as read by `read_table_text`) -> one session each."""
    path = Path(path)
    df = df.rename(columns={c: normalise_name(c) for c in df.columns}).copy()
    missing = [c for c in KEY_COLUMNS + ("interlocutor", "timestamp", "utterance_text") if c not in df]
    if missing:
        raise InputError(path, f"AnnoMI file without column(s) {', '.join(missing)}", 1)
    df["_line"] = lines if lines is not None else list(range(2, len(df) + 2))
    df["_pos"] = range(len(df))
    if df.empty:
        raise InputError(path, "no utterances (the table has a header but no rows)", 1)
    for col in KEY_COLUMNS:
        nums = pd.to_numeric(df[col].str.strip(), errors="coerce")
        bad = nums.isna() | (nums % 1 != 0)
        if bad.any():
            i = int(bad.to_numpy().argmax())
            raise InputError(path, f"{col} {df[col].iloc[i]!r} is not a whole number", df["_line"].iloc[i])
        df[col] = nums.astype("int64")

    label_cols = [
        c
        for c in df.columns
        if c not in META_COLUMNS + KEY_COLUMNS + UTTERANCE_COLUMNS and not c.startswith("_")
    ]
    keys = list(KEY_COLUMNS)
    base = df.drop_duplicates(keys, keep="first").set_index(keys)
    grouped = df.groupby(keys, sort=False)
    if "annotator_id" in df:
        n_ann = grouped["annotator_id"].nunique()
    else:
        n_ann = grouped.size()
    utt = pd.DataFrame(
        {
            "text": base["utterance_text"],
            "start": base["timestamp"],
            "speaker": base["interlocutor"].str.strip(),
            "role": base["interlocutor"].str.strip().str.lower().map(INTERLOCUTOR_ROLES),
            "_line": base["_line"],
            "annomi_utterance_id": base.index.get_level_values("utterance_id"),
        },
        index=base.index,
    )
    for col in label_cols:
        values = _majority(df, col).reindex(base.index)
        values = values.where(~values.fillna("n/a").str.strip().str.lower().isin(["n/a", ""]), None)
        if col.endswith("_exists"):
            flags = values.str.strip().str.lower().map({"true": True, "false": False})
            utt[f"annomi_{col}"] = flags.astype("boolean")
        else:
            utt[f"annomi_{col}"] = values.astype(object)
    utt["annomi_n_annotators"] = n_ann.reindex(base.index).astype("int64")

    meta = base[[c for c in META_COLUMNS if c in base]].groupby(level="transcript_id", sort=False).first()
    utt = utt.reset_index()
    utt = utt.sort_values(["transcript_id", "utterance_id"], kind="stable")
    rows_read = df.groupby("transcript_id", sort=False).size()

    out: list[ParsedTranscript] = []
    for tid, part in utt.groupby("transcript_id", sort=True):
        info = meta.loc[tid].to_dict() if tid in meta.index else {}
        source: dict[str, Any] = {
            "dataset": "AnnoMI",
            "transcript_id": int(tid),
            "transcript_file": str(path),
            "origin": info.get("video_url") or str(path),
            "licence": LICENCE,
            "annotation_rows": int(rows_read.loc[tid]),
            "label_columns": [f"annomi_{c}" for c in label_cols],
            "label_aggregation": "majority across annotators, ties -> first in file; 'n/a' -> null",
            **{k: info.get(k) for k in META_COLUMNS if k in info},
        }
        parsed = build_transcript(
            part.drop(columns=["transcript_id", "utterance_id"]),
            path=path,
            fmt="annomi",
            session_id=session_id_for(tid),
            roles=roles,
            warnings=_interlocutor_warnings(part["speaker"]),  # this session's rows only
            source=source,
        )
        parsed.source["rows_read"] = int(rows_read.loc[tid])
        out.append(parsed)
    return out


def _interlocutor_warnings(speakers: pd.Series) -> list[str]:
    unknown = sorted(set(speakers.astype(str).str.strip().str.lower()) - set(INTERLOCUTOR_ROLES))
    return [f"unknown interlocutor value(s) {unknown}: role from the name or unknown"] if unknown else []


def read_annomi(
    path: str | Path, *, roles: Mapping[str, str] | None = None, text: str | None = None
) -> list[ParsedTranscript]:
    """Read ``AnnoMI-full.csv`` (or ``AnnoMI-simple.csv``): one `ParsedTranscript` per transcript."""
    path = Path(path)
    text = read_text(path) if text is None else text
    df, lines = read_table_text(text, path, ",")
    return annomi_from_frame(df, lines, path=path, roles=roles)
