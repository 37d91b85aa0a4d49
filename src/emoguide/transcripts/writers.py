"""Write utterance tables back out: the paper's transcript layout, SRT, WebVTT, flat corpus tables.

All writes are atomic (`emoguide.corpus.atomic`): a killed export leaves the previous file or none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from emoguide.corpus import schema
from emoguide.corpus.atomic import atomic_path, write_table, write_text
from emoguide.transcripts.timecode import format_hms, format_srt_time, format_vtt_time

TRANSCRIPT_FORMATS = ("csv", "tsv", "srt", "vtt")
RESEARCH_NOTE = "emoguide export: research use only; session data is sensitive."


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("start", "speaker", "text") if c not in df]
    if missing:
        raise ValueError(f"utterance table lacks column(s) {', '.join(missing)}")
    keys = ["start", "index"] if "index" in df else ["start"]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def _text(value) -> str:
    return "" if schema.is_null(value) else " ".join(str(value).split())


def _role(row) -> str:
    role = row.get("role")
    return "unknown" if schema.is_null(role) or not str(role) else str(role)


def _end(row) -> float:
    end = row.get("end")
    return float(row["start"]) if schema.is_null(end) else float(end)


def paper_table(df: pd.DataFrame, *, millis: bool = False) -> pd.DataFrame:
    """The paper's layout: Speaker, Start Time, End Time, Utterance (hh:mm:ss), then Role."""
    df = _ordered(df)
    return pd.DataFrame(
        {
            "Speaker": [_text(s) for s in df["speaker"]],
            "Start Time": [format_hms(t, millis=millis) for t in df["start"]],
            "End Time": [
                format_hms(t, millis=millis) if not schema.is_null(t) else ""
                for t in (df["end"] if "end" in df else [None] * len(df))
            ],
            "Utterance": [_text(t) for t in df["text"]],
            "Role": [_role(r) for _, r in df.iterrows()],
        }
    )


def write_paper_transcript(df: pd.DataFrame, path: str | Path, *, millis: bool = False) -> Path:
    """Write the paper's transcript table; TSV for ``.tsv``/``.txt``/``.tab``, else CSV.

    Times are ``hh:mm:ss`` as in the paper (rounded to the second); ``millis=True`` keeps
    milliseconds (``hh:mm:ss.mmm``), which the readers accept too.
    """
    path = Path(path)
    table = paper_table(df, millis=millis)
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt", ".tab") else ","
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, sep=sep)
    return path


def _cue_rows(df: pd.DataFrame):
    df = _ordered(df)
    for _, row in df.iterrows():
        yield float(row["start"]), _end(row), _text(row["speaker"]), _role(row), _text(row["text"])


def write_srt(df: pd.DataFrame, path: str | Path) -> Path:
    """SubRip: one cue per utterance, text ``A (patient): ...``."""
    blocks = []
    for i, (start, end, speaker, role, text) in enumerate(_cue_rows(df), 1):
        blocks.append(
            f"{i}\n{format_srt_time(start)} --> {format_srt_time(end)}\n{speaker} ({role}): {text}\n"
        )
    write_text(path, "\n".join(blocks))
    return Path(path)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_vtt(df: pd.DataFrame, path: str | Path) -> Path:
    """WebVTT: one cue per utterance, speaker and role as a voice tag ``<v A (patient)>``."""
    parts = ["WEBVTT", "", f"NOTE {RESEARCH_NOTE}", ""]
    for start, end, speaker, role, text in _cue_rows(df):
        parts.append(f"{format_vtt_time(start)} --> {format_vtt_time(end)}")
        parts.append(f"<v {_vtt_escape(speaker)} ({role})>{_vtt_escape(text)}")
        parts.append("")
    write_text(path, "\n".join(parts))
    return Path(path)


def export_corpus(corpus, out_path: str | Path, sessions: Iterable[str] | None = None) -> Path:
    """All (or the named) sessions' utterances as one flat table: .parquet, .jsonl, .csv or .tsv."""
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in (".parquet", ".jsonl", ".csv", ".tsv"):
        raise ValueError(f"{out_path}: unknown table format {suffix!r} (use .parquet, .jsonl, .csv, .tsv)")
    df = corpus.utterances(list(sessions) if sessions else None)
    write_table(out_path, df)
    return out_path


def export_transcripts(
    corpus,
    out_dir: str | Path,
    fmt: str = "csv",
    sessions: Iterable[str] | None = None,
    *,
    millis: bool = False,
) -> list[Path]:
    """One transcript file per session, ``<out_dir>/<session_id>.<fmt>``; returns the paths."""
    fmt = fmt.lower().lstrip(".")
    if fmt not in TRANSCRIPT_FORMATS:
        raise ValueError(f"unknown transcript format {fmt!r} (use one of: {', '.join(TRANSCRIPT_FORMATS)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for session in corpus.sessions(list(sessions) if sessions else None):
        df = session.read_utterances()
        path = out_dir / f"{session.id}.{fmt}"
        if fmt in ("csv", "tsv"):
            write_paper_transcript(df, path, millis=millis)
        elif fmt == "srt":
            write_srt(df, path)
        else:
            write_vtt(df, path)
        written.append(path)
    return written
