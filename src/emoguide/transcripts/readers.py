"""Read transcript files into utterance tables.

Formats (detected from the extension, or given as ``fmt``):

- ``table``: the paper's transcript table, CSV or TSV (delimiter sniffed), with columns Speaker,
  Start Time, End Time, Utterance (names are case/space-insensitive, aliases accepted), an optional
  Role column and an optional session column (several sessions in one file);
- ``srt`` and ``vtt``: subtitles, speaker from ``Name: text``, ``[Name] text`` or ``<v Name>``;
- ``json`` and ``jsonl``: utterance objects, ``{"utterances": [...]}`` or WhisperX-style
  ``{"segments": [...]}``;
- ``annomi``: the AnnoMI CSV (detected from its header; see `emoguide.transcripts.annomi`).

Every reader ends in `build_transcript`, which gives all formats the same treatment: empty texts
dropped, times parsed to seconds, exact duplicate rows dropped (first copy kept, with a warning
naming the lines), rows sorted by start, missing ends filled from the next start,
speakers relabelled A, B, C... by first appearance (original name kept in ``speaker_name``) and
roles resolved (``roles`` mapping > explicit role > speaker name > unknown).

Malformed files raise `InputError` naming the file, the line (1-based, where known) and the problem.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from emoguide.corpus import schema
from emoguide.corpus.layout import slugify
from emoguide.errors import InputError
from emoguide.transcripts.timecode import format_hms, parse_time

READER_VERSION = "transcripts-2"  # 2: exact duplicate rows dropped (with a warning)

#: Extension -> format. ``.txt`` is read as a (tab- or comma-separated) table when named explicitly.
EXTENSIONS: dict[str, str] = {
    ".csv": "table",
    ".tsv": "table",
    ".tab": "table",
    ".txt": "table",
    ".srt": "srt",
    ".vtt": "vtt",
    ".webvtt": "vtt",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
#: Extensions picked up when a directory is expanded (``.txt`` is left out: too often notes).
DIRECTORY_EXTENSIONS = tuple(e for e in EXTENSIONS if e != ".txt")

FORMAT_ALIASES: dict[str, str] = {
    "table": "table",
    "paper": "table",
    "csv": "table",
    "tsv": "table",
    "txt": "table",
    "srt": "srt",
    "subrip": "srt",
    "vtt": "vtt",
    "webvtt": "vtt",
    "json": "json",
    "whisperx": "json",
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "annomi": "annomi",
}
FORMATS = ("table", "srt", "vtt", "json", "jsonl", "annomi")

# Column / key aliases, in priority order (normalised: lower case, non-alphanumerics -> "_").
ALIASES: dict[str, tuple[str, ...]] = {
    "speaker": (
        "speaker_name",
        "speaker",
        "speakername",
        "name",
        "interlocutor",
        "spk",
        "who",
        "participant",
        "talker",
        "speaker_label",
        "speaker_id",
    ),
    "start": (
        "start",
        "start_time",
        "starttime",
        "start_s",
        "start_sec",
        "start_secs",
        "start_seconds",
        "start_timestamp",
        "begin",
        "begin_time",
        "t_start",
        "from",
        "onset",
        "timestamp",
        "time",
    ),
    "end": (
        "end",
        "end_time",
        "endtime",
        "end_s",
        "end_sec",
        "end_secs",
        "end_seconds",
        "end_timestamp",
        "stop",
        "stop_time",
        "t_end",
        "to",
        "offset",
    ),
    "text": (
        "utterance",
        "text",
        "utterance_text",
        "transcript",
        "transcription",
        "content",
        "sentence",
        "caption",
    ),
    "role": ("role", "speaker_role"),
    "session": (
        "session_id",
        "session",
        "sessionid",
        "transcript_id",
        "conversation_id",
        "conversation",
        "dialogue_id",
        "dialog_id",
    ),
    "asr_confidence": ("asr_confidence", "confidence"),
    "index": ("index",),
}
_ALIAS_TO: dict[str, str] = {a: canon for canon, names in ALIASES.items() for a in names}

# Output columns built here; input columns of these names are never carried over as extras.
RESERVED = {"index", "start", "end", "speaker", "role", "text", "speaker_name", "session_id"}

THERAPIST_WORDS = frozenset(
    {
        "therapist",
        "psychotherapist",
        "counselor",
        "counsellor",
        "counseller",
        "interviewer",
        "doctor",
        "dr",
        "clinician",
        "psychologist",
        "psychiatrist",
        "physician",
        "practitioner",
        "provider",
    }
)
PATIENT_WORDS = frozenset({"patient", "client", "interviewee", "counselee", "counsellee"})


@dataclass
class ParsedTranscript:
    """One session read from a transcript file."""

    session_id: str
    utterances: pd.DataFrame
    source: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------- helpers


def normalise_name(name: Any) -> str:
    """A header or key as compared: lower case, runs of non-alphanumerics -> "_"."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def normalise_role(value: Any) -> str | None:
    """therapist / patient / unknown from a role value or synonym; None when empty or unrecognised."""
    if schema.is_null(value):
        return None
    text = str(value).strip().casefold()
    if not text:
        return None
    if text in ("unknown", "other", "?", "n/a", "na", "none"):
        return "unknown"
    words = set(re.findall(r"[a-z]+", text))
    is_t, is_p = bool(words & THERAPIST_WORDS), bool(words & PATIENT_WORDS)
    if is_t and not is_p:
        return "therapist"
    if is_p and not is_t:
        return "patient"
    return None


def role_from_name(name: Any) -> str | None:
    """Infer a role from a speaker's name ("Therapist", "Dr. Smith", "Client 2"); None if silent."""
    role = normalise_role(name)
    return role if role in ("therapist", "patient") else None


def normalise_roles(roles: Mapping[str, str] | None) -> dict[str, str]:
    """Validate a user's ``{speaker letter or name: role}`` mapping (values may be synonyms)."""
    out: dict[str, str] = {}
    for key, value in (roles or {}).items():
        role = normalise_role(value)
        if role is None:
            raise ValueError(
                f"roles: {key!r} -> {value!r}: role must be therapist, patient or unknown"
            )
        out[str(key).strip()] = role
    return out


def speaker_letters(n: int) -> list[str]:
    """A, B, ..., Z, AA, AB, ... (spreadsheet-style)."""
    out = []
    for i in range(n):
        label = ""
        i += 1
        while i:
            i, r = divmod(i - 1, 26)
            label = chr(ord("A") + r) + label
        out.append(label)
    return out


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """The reader for `path`: `fmt` if given (aliases allowed), else from the extension."""
    if fmt:
        key = str(fmt).strip().lower().lstrip(".")
        if key not in FORMAT_ALIASES:
            raise InputError(
                path, f"unknown format {fmt!r} (use one of: {', '.join(sorted(FORMAT_ALIASES))})"
            )
        return FORMAT_ALIASES[key]
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise InputError(
            path,
            f"unknown transcript format {suffix or '(no extension)'!r} "
            f"(known: {', '.join(sorted(EXTENSIONS))}; or choose a reader with --format, fmt= in Python)",
        )
    return EXTENSIONS[suffix]


def read_text(path: str | Path) -> str:
    """The file's text (UTF-8, BOM stripped; UTF-16 with BOM); InputError on undecodable bytes."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, not a transcript file") from None
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            path,
            f"undecodable bytes at byte {exc.start} ({data[exc.start:exc.start + 4]!r}): "
            f"not {encoding.replace('-sig', '')} text; re-save the file as UTF-8",
            line,
        ) from None
    if not text.strip():
        raise InputError(path, "empty file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, max(0, offset)) + 1


def _is_blank(value: Any) -> bool:
    return schema.is_null(value) or (isinstance(value, str) and not value.strip())


def _map_columns(columns: Iterable[Any]) -> tuple[dict[str, Any], dict[Any, str], list[str]]:
    """Match input columns to canonical fields.

    Returns (canonical -> input column, extra input column -> output name, notes).
    """
    cols = list(columns)
    norm = {c: normalise_name(c) for c in cols}
    chosen: dict[str, Any] = {}
    for canon, names in ALIASES.items():
        for alias in names:
            hit = next((c for c in cols if norm[c] == alias), None)
            if hit is not None:
                chosen[canon] = hit
                break
    used = set(chosen.values())
    extras: dict[Any, str] = {}
    notes: list[str] = []
    for c in cols:
        if c in used:
            continue
        name = norm[c] or "column"
        if name in RESERVED or name in chosen or name in extras.values():
            if not (name == "speaker" and "speaker" in chosen):  # exported letters: not news
                notes.append(f"column {str(c)!r} ignored (duplicates {name!r})")
            continue
        extras[c] = name
    return chosen, extras, notes


def _records_to_raw(
    df: pd.DataFrame, lines: list[int | None], *, path: Path, what: str, header_line: int | None
) -> tuple[pd.DataFrame, list[str]]:
    """Rename a table's columns to canonical ones; check required ones; add ``_line``."""
    chosen, extras, notes = _map_columns(df.columns)
    if "text" not in chosen:
        raise InputError(
            path,
            f"missing required {what} 'Utterance' (or text / utterance_text); "
            f"found: {', '.join(map(str, df.columns)) or 'none'}",
            header_line,
        )
    if "start" not in chosen:
        raise InputError(
            path,
            f"missing required {what} 'Start Time' (or start / timestamp); "
            f"found: {', '.join(map(str, df.columns))}",
            header_line,
        )
    if "speaker" in chosen and df[chosen["speaker"]].map(_is_blank).all():
        # e.g. an exported table whose speaker_name column is empty: fall back to the next alias.
        other = [c for c in df.columns if normalise_name(c) in ALIASES["speaker"] and c != chosen["speaker"]]
        if other:
            chosen["speaker"] = other[0]
    raw = pd.DataFrame(index=df.index)
    for canon, col in chosen.items():
        if canon == "index":
            continue
        raw[canon] = df[col]
    for col, name in extras.items():
        raw[name] = df[col]
    raw["_line"] = lines
    return raw.reset_index(drop=True), notes


# ------------------------------------------------------------------------------- common builder


def build_transcript(
    raw: pd.DataFrame,
    *,
    path: str | Path,
    fmt: str,
    session_id: str,
    roles: Mapping[str, str] | None = None,
    warnings: list[str] | None = None,
    source: dict[str, Any] | None = None,
    sort: bool = True,
) -> ParsedTranscript:
    """Turn canonical raw rows into a `ParsedTranscript`.

    `raw` has columns ``text``, ``start`` and optionally ``end``, ``speaker`` (original names),
    ``role`` (explicit), ``asr_confidence``, ``_line`` (1-based file line), ``_item`` (a label for
    errors where there is no line) and extra columns, which are kept as they are.
    """
    path = Path(path)
    warnings = list(warnings or [])
    roles_map = normalise_roles(roles)
    raw = raw.reset_index(drop=True)
    n_read = len(raw)
    lines = list(raw["_line"]) if "_line" in raw else [None] * n_read
    items = list(raw["_item"]) if "_item" in raw else [None] * n_read

    def where(i: int) -> tuple[int | None, str]:
        line = lines[i]
        line = None if schema.is_null(line) else int(line)
        prefix = "" if line is not None or items[i] is None else f"{items[i]}: "
        return line, prefix

    # Text: strip; empty ones are dropped with a warning.
    texts = ["" if _is_blank(t) else str(t).strip() for t in raw["text"]]
    keep = [i for i, t in enumerate(texts) if t]
    if len(keep) < n_read:
        dropped = [i for i in range(n_read) if not texts[i]]
        at = [str(int(lines[i])) for i in dropped if not schema.is_null(lines[i])]
        warnings.append(
            f"{len(dropped)} utterance(s) with empty text dropped"
            + (f" (line {', '.join(at[:10])}{', ...' if len(at) > 10 else ''})" if at else "")
        )
    if not keep:
        raise InputError(path, f"no utterances with text in session {session_id!r}" if n_read else "no utterances")

    # Times.
    starts: list[float] = []
    ends: list[float | None] = []
    has_end = "end" in raw
    raw_start = list(raw["start"])
    raw_end = list(raw["end"]) if has_end else [None] * n_read
    for i in keep:
        line, prefix = where(i)
        try:
            s = parse_time(raw_start[i], path=path, line=line)
            e = parse_time(raw_end[i], path=path, line=line)
        except InputError as exc:
            raise InputError(path, prefix + exc.problem, line) from None
        if s is None:
            raise InputError(path, f"{prefix}missing start time", line)
        if e is not None and e < s:
            raise InputError(
                path,
                f"{prefix}end time {raw_end[i]!s} ({e:g} s) is before start time "
                f"{raw_start[i]!s} ({s:g} s)",
                line,
            )
        starts.append(s)
        ends.append(e)

    rows = raw.iloc[keep].reset_index(drop=True)
    df = pd.DataFrame(
        {
            "start": pd.Series(starts, dtype="float64"),
            "end": pd.Series([float("nan") if e is None else e for e in ends], dtype="float64"),
            "text": [texts[i] for i in keep],
        }
    )
    df["_speaker"] = rows["speaker"].tolist() if "speaker" in rows else [None] * len(rows)
    df["_role"] = rows["role"].tolist() if "role" in rows else [None] * len(rows)
    if "asr_confidence" in rows:
        df["asr_confidence"] = pd.to_numeric(rows["asr_confidence"].replace("", None), errors="coerce")
    extra_cols = [
        c
        for c in rows.columns
        if not str(c).startswith("_")
        and c not in ("speaker", "role", "text", "start", "end", "asr_confidence", "session")
        and c not in RESERVED
    ]
    for c in extra_cols:
        df[c] = rows[c].tolist()
    df["_line"] = [lines[i] for i in keep]
    df["_item"] = [items[i] for i in keep]

    # Exact duplicates: a row equal to an earlier one in every column read (times, speaker, role,
    # text, extra columns) is a copy (one utterance cannot be said twice at the same time), so the
    # repeat is dropped, keeping the first, and the warning names the file and both rows. Rows that
    # differ in anything (an AnnoMI utterance id, an end time) are all kept.
    df = _drop_exact_duplicates(df, path, warnings)

    # Order.
    if sort and not df["start"].is_monotonic_increasing:
        back = int((df["start"].diff() < 0).sum())
        warnings.append(
            f"utterances were not in time order ({back} start(s) earlier than the previous one); "
            "sorted by start time"
        )
        df = df.sort_values("start", kind="stable").reset_index(drop=True)
    df.insert(0, "index", range(len(df)))

    # Speakers: original names, relabelled A, B, ... by first appearance.
    names = pd.Series(
        [None if _is_blank(s) else str(s).strip() for s in df["_speaker"]], dtype="object"
    )
    if names.isna().all():
        warnings.append("no speaker names in the transcript: all utterances given to speaker A (role unknown)")
    elif names.isna().any():
        k = int(names.isna().sum())
        warnings.append(
            f"{k} utterance(s) without a speaker name: given to the previous utterance's speaker"
        )
        names = names.ffill().bfill()
    keys = names.map(lambda s: None if s is None else s.casefold())
    letter_of: dict[Any, str] = {}
    display: dict[str, str | None] = {}
    order = [k for k in dict.fromkeys(keys.tolist())]
    for key, letter in zip(order, speaker_letters(len(order))):
        letter_of[key] = letter
    speakers = [letter_of[k] for k in keys]
    for letter, name in zip(speakers, names):
        display.setdefault(letter, name)
    df["speaker"] = speakers
    df["speaker_name"] = pd.Series(names.tolist(), dtype="object")

    # Roles: mapping > explicit role > name > unknown.
    explicit = []
    bad_roles: set[str] = set()
    for value in df["_role"]:
        role = normalise_role(value)
        if role is None and not _is_blank(value):
            bad_roles.add(str(value))
        explicit.append(role)
    if bad_roles:
        warnings.append(f"unrecognised role value(s) {sorted(bad_roles)} read as unknown")
    _warn_mixed_roles(path, speakers, explicit, display, list(df["_line"]), warnings)
    mapped_lower = {k.casefold(): v for k, v in roles_map.items()}
    speaker_role: dict[str, str] = {}
    for letter, name in display.items():
        if letter in roles_map:
            speaker_role[letter] = roles_map[letter]
            continue
        if name is not None and name.casefold() in mapped_lower:
            speaker_role[letter] = mapped_lower[name.casefold()]
            continue
        votes = Counter(r for s, r in zip(speakers, explicit) if s == letter and r and r != "unknown")
        if votes:
            speaker_role[letter] = votes.most_common(1)[0][0]
            continue
        speaker_role[letter] = role_from_name(name) or "unknown"
    overridden = {
        letter
        for letter, name in display.items()
        if letter in roles_map or (name is not None and name.casefold() in mapped_lower)
    }
    df["role"] = [
        speaker_role[s] if s in overridden or not r or r == "unknown" else r
        for s, r in zip(speakers, explicit)
    ]
    if set(df["role"]) == {"unknown"}:
        warnings.append(
            "no roles known (no Role column, no speaker named like therapist/patient): "
            "all roles 'unknown'; set them with --role A=therapist --role B=patient "
            "(Python: roles={'A': 'therapist', 'B': 'patient'}), or later with `emoguide roles SESSION --set A=therapist`"
        )

    # Ends: an utterance whose end is unknown ends where the next begins.
    n_missing_end = int(df["end"].isna().sum())
    if n_missing_end:
        df = schema.fill_missing_ends(df)

    lead = ["index", "start", "end", "speaker", "role", "text", "speaker_name"]
    if "asr_confidence" in df:
        lead.append("asr_confidence")
    rest = [c for c in df.columns if c not in lead and not str(c).startswith("_")]
    out = df[lead + rest].reset_index(drop=True)

    src = {
        "kind": "transcript",
        "origin": str(path),
        "path": str(path.resolve()),
        "format": fmt,
        "reader": READER_VERSION,
        "rows_read": n_read,
        "utterances": len(out),
        "speakers": {
            letter: {"name": display[letter], "role": speaker_role[letter]} for letter in display
        },
        "speaker_names": {letter: display[letter] for letter in display},
        "ends_from_next_start": n_missing_end,
        "duration": float(out["end"].max()) if len(out) else 0.0,
        "duration_hms": format_hms(float(out["end"].max())) if len(out) else "00:00:00",
    }
    if roles_map:
        src["roles_given"] = dict(roles_map)
    src.update(source or {})
    return ParsedTranscript(session_id=session_id, utterances=out, source=src, warnings=warnings)


def _row_label(line: Any, item: Any, i: int) -> str:
    """How a warning points at a row: its file line, else its item label, else its position."""
    if not schema.is_null(line):
        return f"line {int(line)}"
    if item is not None and not schema.is_null(item):
        return str(item)
    return f"row {i + 1}"


def _drop_exact_duplicates(df: pd.DataFrame, path: Path, warnings: list[str]) -> pd.DataFrame:
    """`df` without rows that repeat an earlier row exactly; one warning naming the file and rows."""
    cols = [c for c in df.columns if c not in ("_line", "_item")]
    keys = df[cols].astype("string").fillna("\x00null").apply(tuple, axis=1)
    dup = keys.duplicated(keep="first")
    if not dup.any():
        return df
    first_of: dict[tuple, int] = {}
    pairs: list[str] = []
    for i, key in enumerate(keys):
        if key not in first_of:
            first_of[key] = i
        elif len(pairs) < 10:
            j = first_of[key]
            pairs.append(f"{_row_label(df['_line'].iloc[i], df['_item'].iloc[i], i)} repeats "
                         f"{_row_label(df['_line'].iloc[j], df['_item'].iloc[j], j)}")
    n = int(dup.sum())
    warnings.append(
        f"{path.name}: {n} exact duplicate row(s) dropped, the first copy kept ("
        + "; ".join(pairs) + ("; ..." if n > len(pairs) else "") + ")"
    )
    return df.loc[~dup].reset_index(drop=True)


def _warn_mixed_roles(path: Path, speakers: list[str], explicit: list[str | None],
                      display: Mapping[str, str | None], lines: list[Any], warnings: list[str]) -> None:
    """Warn when one speaker's Role column says therapist on some rows and patient on others (a
    speaker label reused for two people, or a mislabelled column). Each row keeps the role the
    file gives it (the `roles` stage keeps them too, at a confidence below 1)."""
    for letter, name in display.items():
        rows = [i for i, s in enumerate(speakers) if s == letter]
        got = Counter(explicit[i] for i in rows if explicit[i] in ("therapist", "patient"))
        if len(got) < 2:
            continue
        minority = min(got, key=lambda r: (got[r], r))
        at = [_row_label(lines[i], None, i) for i in rows if explicit[i] == minority]
        warnings.append(
            f"{path.name}: speaker {letter}"
            + (f" ({name})" if name and name != letter else "")
            + f" is 'therapist' on {got['therapist']} row(s) and 'patient' on {got['patient']} in the Role "
            f"column ({minority} at {', '.join(at[:8])}{', ...' if len(at) > 8 else ''}): each row keeps its "
            "own role; if one label holds two people, give them different Speaker names"
        )


def _split_sessions(
    raw: pd.DataFrame,
    *,
    path: Path,
    fmt: str,
    default_id: str,
    roles: Mapping[str, str] | None,
    warnings: list[str],
    source: dict[str, Any],
) -> list[ParsedTranscript]:
    """One ParsedTranscript per value of the ``session`` column (or one for the whole file)."""
    if "session" not in raw or raw["session"].map(_is_blank).all():
        raw = raw.drop(columns=["session"], errors="ignore")
        return [
            build_transcript(
                raw, path=path, fmt=fmt, session_id=default_id, roles=roles, warnings=warnings, source=source
            )
        ]
    blank = raw["session"].map(_is_blank)
    if blank.any():
        i = int(blank.idxmax())
        line = raw["_line"].iloc[i] if "_line" in raw else None
        line = None if schema.is_null(line) else int(line)
        item = raw["_item"].iloc[i] if "_item" in raw else None
        raise InputError(
            path,
            (f"{item}: " if line is None and item else "") + "missing session id (other rows have one)",
            line,
        )
    keys = raw["session"].map(lambda v: str(v).strip())
    out: list[ParsedTranscript] = []
    seen: dict[str, str] = {}
    for value, idx in keys.groupby(keys, sort=False).groups.items():
        sid = slugify(str(value))
        if sid in seen:
            raise InputError(
                path, f"sessions {seen[sid]!r} and {value!r} both map to the session id {sid!r}"
            )
        seen[sid] = str(value)
        part = raw.loc[idx].drop(columns=["session"])
        out.append(
            build_transcript(
                part,
                path=path,
                fmt=fmt,
                session_id=sid,
                roles=roles,
                warnings=list(warnings),
                source={**source, "session_in_file": str(value)},
            )
        )
    return out


# --------------------------------------------------------------------------------------- tables


def sniff_delimiter(text: str, path: str | Path | None = None) -> str:
    """Tab, comma, semicolon or pipe: the one the header line uses most (quotes ignored)."""
    header = next((ln for ln in text.split("\n") if ln.strip()), "")
    header = re.sub(r'"[^"]*"', "", header)
    counts = {d: header.count(d) for d in ("\t", ",", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best]:
        return best
    if path is not None and Path(path).suffix.lower() in (".tsv", ".tab", ".txt"):
        return "\t"
    try:
        return csv.Sniffer().sniff(text[:4096], delimiters="\t,;|").delimiter
    except csv.Error:
        return ","


def _record_lines(text: str, delimiter: str) -> list[int]:
    """1-based starting line of each non-empty CSV record (header first)."""
    out = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    prev = 0
    try:
        for rec in reader:
            if rec and any(f != "" for f in rec):
                out.append(prev + 1)
            prev = reader.line_num
    except csv.Error:
        pass
    return out


def read_table_text(text: str, path: Path, delimiter: str | None = None) -> tuple[pd.DataFrame, list[int | None]]:
    """Parse CSV/TSV text with pandas (all values as strings); return it and each row's file line."""
    delimiter = delimiter or sniff_delimiter(text, path)
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=True,
        )
    except pd.errors.EmptyDataError:
        raise InputError(path, "empty file") from None
    except pd.errors.ParserError as exc:
        msg = str(exc)
        m = re.search(r"line (\d+)", msg)
        line = int(m.group(1)) if m else None
        if m and "Expected" in msg:
            m2 = re.search(r"Expected (\d+) fields in line \d+, saw (\d+)", msg)
            msg = (
                f"expected {m2.group(1)} fields, found {m2.group(2)} "
                f"(delimiter {delimiter!r}; quote fields that contain it)"
                if m2
                else msg
            )
        raise InputError(path, f"malformed table: {msg}", line) from None
    rec_lines = _record_lines(text, delimiter)
    if len(rec_lines) == len(df) + 1:
        lines: list[int | None] = rec_lines[1:]
    else:
        lines = list(range(2, len(df) + 2))
    return df, lines


def is_annomi_header(columns: Iterable[Any]) -> bool:
    cols = {normalise_name(c) for c in columns}
    return {"transcript_id", "utterance_id", "interlocutor", "utterance_text"} <= cols


def _read_table(path: Path, text: str, roles, fmt_label: str) -> list[ParsedTranscript]:
    delimiter = sniff_delimiter(text, path)
    df, lines = read_table_text(text, path, delimiter)
    if is_annomi_header(df.columns):
        from emoguide.transcripts.annomi import annomi_from_frame

        return annomi_from_frame(df, lines, path=path, roles=roles)
    if df.empty:
        raise InputError(path, "no utterances (the table has a header but no rows)", 1)
    raw, notes = _records_to_raw(df, lines, path=path, what="column", header_line=1)
    source = {
        "delimiter": {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}[delimiter],
        "columns": [str(c) for c in df.columns],
    }
    return _split_sessions(
        raw,
        path=path,
        fmt=fmt_label,
        default_id=slugify(path.stem),
        roles=roles,
        warnings=notes,
        source=source,
    )


# ------------------------------------------------------------------------------ subtitles (cues)

_SOUND_TAGS = frozenset(
    {
        "laughs",
        "laughter",
        "laughing",
        "music",
        "applause",
        "inaudible",
        "crosstalk",
        "silence",
        "noise",
        "pause",
        "sighs",
        "sigh",
        "coughs",
        "cough",
        "crying",
        "cries",
        "unintelligible",
        "background noise",
    }
)
_BRACKET = re.compile(r"^\[([^\[\]\n]{1,40})\]\s*(.*)$", re.DOTALL)
_COLON = re.compile(r"^(?:-\s*)?([^\s:\[\]<>\d][^:\n<>]{0,39}?)\s*:\s+(.*)$", re.DOTALL)
_ROLE_SUFFIX = re.compile(r"^(.*?)\s*\((therapist|patient|unknown)\)$", re.IGNORECASE)
_TAG = re.compile(r"</?(?:i|b|u|font)(?:\s[^>]*)?>", re.IGNORECASE)  # SRT formatting tags


def split_role_suffix(name: str) -> tuple[str, str | None]:
    """``"A (patient)"`` -> ``("A", "patient")``; other names unchanged with role None."""
    m = _ROLE_SUFFIX.match(name.strip())
    if m and m.group(1):
        return m.group(1).strip(), m.group(2).lower()
    return name.strip(), None


def split_speaker(text: str) -> tuple[str | None, str | None, str]:
    """Speaker name, role (from a ``(role)`` suffix) and the rest, from a cue's text.

    Recognises ``Name: text`` (at most 4 words before the colon) and ``[Name] text``.
    """
    text = text.strip()
    m = _BRACKET.match(text)
    if m and m.group(1).strip().casefold() not in _SOUND_TAGS:
        name, role = split_role_suffix(m.group(1))
        return name, role, m.group(2).strip()
    m = _COLON.match(text)
    if m and len(m.group(1).split()) <= 4:
        name, role = split_role_suffix(m.group(1))
        return name, role, m.group(2).strip()
    return None, None, text


def _timing_lines(text: str) -> list[int]:
    return [i for i, ln in enumerate(text.split("\n"), 1) if "-->" in ln]


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Blank-line separated blocks with their 1-based first line."""
    out: list[tuple[int, list[str]]] = []
    cur: list[str] = []
    start = 0
    for i, ln in enumerate(text.split("\n"), 1):
        if ln.strip():
            if not cur:
                start = i
            cur.append(ln)
        elif cur:
            out.append((start, cur))
            cur = []
    if cur:
        out.append((start, cur))
    return out


_TIMING = re.compile(r"^\s*(\S+)\s+-->\s+(\S+)")


def _check_cue_blocks(text: str, path: Path, kind: str) -> list[int]:
    """Validate each cue block's timing line; return the timing lines' numbers in order."""
    timing: list[int] = []
    blocks = _blocks(text)
    if kind == "vtt":
        if not blocks or not blocks[0][1][0].lstrip().startswith("WEBVTT"):
            raise InputError(path, "not a WebVTT file: the first line must be 'WEBVTT'", 1)
        blocks = blocks[1:]
    for first, lines in blocks:
        head = lines[0].strip()
        if kind == "vtt" and head.split(" ", 1)[0] in ("NOTE", "STYLE", "REGION"):
            continue
        pos = next((j for j, ln in enumerate(lines[:2]) if "-->" in ln), None)
        if pos is None:
            if kind == "srt" and timing:
                # srt allows a blank line inside a cue's text; it belongs to the previous cue.
                continue
            raise InputError(
                path, f"bad {kind.upper()} block: no 'start --> end' timing line in {head[:60]!r}", first
            )
        if kind == "srt" and pos == 1 and not head.isdigit():
            raise InputError(path, f"bad SRT block: expected a cue number, found {head[:60]!r}", first)
        line_no = first + pos
        m = _TIMING.match(lines[pos])
        if not m:
            raise InputError(path, f"bad {kind.upper()} timing line {lines[pos].strip()!r}", line_no)
        s = parse_time(m.group(1), path=path, line=line_no)
        e = parse_time(m.group(2), path=path, line=line_no)
        if s is not None and e is not None and e < s:
            raise InputError(path, f"end time {m.group(2)} is before start time {m.group(1)}", line_no)
        timing.append(line_no)
    return timing


def _cues_to_raw(
    cues: list[tuple[Any, Any, str, str | None]], lines: list[int | None], *, vtt: bool = False
) -> pd.DataFrame:
    """(start, end, text, voice) per cue -> canonical raw rows."""
    rows = []
    for (start, end, text, voice), line in zip(cues, lines):
        if vtt:  # webvtt-py has removed the cue tags; character references remain
            text = html.unescape(text)
            voice = html.unescape(voice) if voice else voice
        else:
            text = _TAG.sub("", text)
        text = " ".join(part.strip() for part in text.split("\n") if part.strip())
        role = None
        if voice:
            name, role = split_role_suffix(voice)
        else:
            name, role, text = split_speaker(text)
        rows.append({"start": start, "end": end, "text": text, "speaker": name, "role": role, "_line": line})
    return pd.DataFrame(rows, columns=["start", "end", "text", "speaker", "role", "_line"])


def _read_srt(path: Path, text: str, roles) -> list[ParsedTranscript]:
    import srt

    timing = _check_cue_blocks(text, path, "srt")
    try:
        subs = list(srt.parse(text))
    except srt.SRTParseError as exc:
        offset = exc.expected_start
        while offset < len(text) and text[offset] in "\n \t":
            offset += 1
        snippet = exc.unmatched_content.strip().split("\n")[0][:60]
        raise InputError(path, f"bad SRT block {snippet!r}", _line_of(text, offset)) from None
    except (srt.TimestampParseError, ValueError) as exc:
        raise InputError(path, f"bad SRT timestamp: {exc}") from None
    if not subs:
        raise InputError(path, "no subtitle cues found")
    lines = timing if len(timing) == len(subs) else [None] * len(subs)
    cues = [(s.start.total_seconds(), s.end.total_seconds(), s.content, None) for s in subs]
    raw = _cues_to_raw(cues, lines)
    return [
        build_transcript(raw, path=path, fmt="srt", session_id=slugify(path.stem), roles=roles)
    ]


def _read_vtt(path: Path, text: str, roles) -> list[ParsedTranscript]:
    import webvtt
    from webvtt.errors import MalformedCaptionError, MalformedFileError

    timing = _check_cue_blocks(text, path, "vtt")
    try:
        captions = list(webvtt.from_string(text))
    except (MalformedFileError, MalformedCaptionError) as exc:
        raise InputError(path, f"bad WebVTT file: {exc}") from None
    if not captions:
        raise InputError(path, "no cues found")
    if len(timing) != len(captions):
        raise InputError(
            path, f"bad WebVTT file: {len(timing)} cue timing lines but {len(captions)} cues could be read"
        )
    cues = []
    for cap, line in zip(captions, timing):
        start = parse_time(cap.start, path=path, line=line)
        end = parse_time(cap.end, path=path, line=line)
        cues.append((start, end, cap.text, getattr(cap, "voice", None)))
    raw = _cues_to_raw(cues, timing, vtt=True)
    return [build_transcript(raw, path=path, fmt="vtt", session_id=slugify(path.stem), roles=roles)]


# ----------------------------------------------------------------------------------------- JSON


def _objects_to_raw(
    items: list[Any], lines: list[int | None], *, path: Path, labels: list[str]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Utterance objects -> canonical raw rows. Nested values (e.g. WhisperX ``words``) dropped."""
    for obj, line, label in zip(items, lines, labels):
        if not isinstance(obj, dict):
            raise InputError(
                path, ("" if line else f"{label}: ") + f"expected an utterance object, found {type(obj).__name__}", line
            )
    keys: dict[str, None] = {}
    for obj in items:
        keys.update(dict.fromkeys(obj))
    nested = sorted(k for k in keys if any(isinstance(o.get(k), (list, dict)) for o in items))
    flat = [{k: v for k, v in o.items() if k not in nested} for o in items]
    df = pd.DataFrame.from_records(flat, columns=[k for k in keys if k not in nested])
    df = df.astype(object).where(df.notna(), None)
    raw, notes = _records_to_raw(df, lines, path=path, what="key", header_line=None)
    raw["_item"] = labels
    return raw, nested, notes


def _read_json(path: Path, text: str, roles) -> list[ParsedTranscript]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"bad JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    default_id = slugify(path.stem)
    meta: dict[str, Any] = {}
    if isinstance(obj, dict) and isinstance(obj.get("sessions"), list):
        out: list[ParsedTranscript] = []
        for k, sess in enumerate(obj["sessions"]):
            if not isinstance(sess, dict) or not isinstance(sess.get("utterances"), list):
                raise InputError(path, f"sessions[{k}]: expected an object with an 'utterances' list")
            sid = sess.get("session_id") or sess.get("session") or f"{default_id}-{k}"
            items = sess["utterances"]
            out.extend(
                _json_items(items, path, roles, default_id=slugify(str(sid)), prefix=f"sessions[{k}].utterances")
            )
        return out
    if isinstance(obj, list):
        items, prefix = obj, "item"
    elif isinstance(obj, dict):
        for key in ("utterances", "segments"):
            if isinstance(obj.get(key), list):
                items, prefix = obj[key], key
                break
        else:
            raise InputError(
                path,
                "no utterances: expected a list of utterance objects, {'utterances': [...]} "
                "or {'segments': [...]}",
            )
        meta = {k: v for k, v in obj.items() if k not in ("utterances", "segments") and not isinstance(v, (list, dict))}
        sid = meta.pop("session_id", None) or meta.pop("session", None)
        if sid:
            default_id = slugify(str(sid))
    else:
        raise InputError(path, f"expected a JSON list or object, found {type(obj).__name__}")
    return _json_items(items, path, roles, default_id=default_id, prefix=prefix, meta=meta)


def _json_items(items, path, roles, *, default_id, prefix, meta=None, lines=None) -> list[ParsedTranscript]:
    if not items:
        raise InputError(path, "no utterances")
    labels = [f"{prefix}[{i}]" for i in range(len(items))]
    lines = lines or [None] * len(items)
    raw, nested, notes = _objects_to_raw(items, lines, path=path, labels=labels)
    source: dict[str, Any] = {}
    if nested:
        source["dropped_keys"] = nested
    if meta:
        source["metadata"] = meta
    fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "json"
    return _split_sessions(
        raw, path=path, fmt=fmt, default_id=default_id, roles=roles, warnings=notes, source=source
    )


def _read_jsonl(path: Path, text: str, roles) -> list[ParsedTranscript]:
    items, lines = [], []
    for i, ln in enumerate(text.split("\n"), 1):
        if not ln.strip():
            continue
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"bad JSON: {exc.msg} (column {exc.colno})", i) from None
        if not isinstance(obj, dict):
            raise InputError(path, f"expected an utterance object, found {type(obj).__name__}", i)
        items.append(obj)
        lines.append(i)
    return _json_items(items, path, roles, default_id=slugify(path.stem), prefix="line", lines=lines)


# ------------------------------------------------------------------------------------ entry point


def read_transcript_file(
    path: str | Path, *, fmt: str | None = None, roles: Mapping[str, str] | None = None
) -> list[ParsedTranscript]:
    """Read one transcript file into one or more sessions (see the module docstring)."""
    path = Path(path)
    kind = detect_format(path, fmt)
    normalise_roles(roles)  # fail early on a bad mapping
    text = read_text(path)
    if kind == "table":
        return _read_table(path, text, roles, fmt_label="table")
    if kind == "annomi":
        from emoguide.transcripts.annomi import read_annomi

        return read_annomi(path, roles=roles, text=text)
    if kind == "srt":
        return _read_srt(path, text, roles)
    if kind == "vtt":
        return _read_vtt(path, text, roles)
    if kind == "json":
        return _read_json(path, text, roles)
    if kind == "jsonl":
        return _read_jsonl(path, text, roles)
    raise InputError(path, f"unknown format {kind!r}")  # pragma: no cover
