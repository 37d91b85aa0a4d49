"""Affect labels: a CSV the user wrote, or labels decoded from RAVDESS / MEAD file names.

The CSV has one row per labelled item: a session column (``session``, ``session_id``, ``file``,
``file_name``, ``clip`` or ``name``: a session id or the media file's name, with or without
extension), optional ``start`` / ``end`` (seconds; without them the item is the whole session),
and a categorical ``label`` (``emotion``, ``category``) and/or dimensional ``valence`` /
``arousal`` (any scale: they are only correlated), and optionally ``arousal_group``
(high / low) where the high-vs-low split is not implied by the label.

Label words are normalised to one vocabulary (`canonical_label`): angry, calm, contempt, disgust,
fear, happy, neutral, sad, surprise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from emoguide.errors import InputError
from emoguide.transcripts.readers import normalise_name, read_table_text, read_text
from emoguide.transcripts.timecode import parse_time

SYNONYMS = {
    "anger": "angry", "angry": "angry", "mad": "angry",
    "calm": "calm",
    "contempt": "contempt", "contemptuous": "contempt",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "happily": "happy",
    "neutral": "neutral",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
}
#: The issue's RAVDESS convention: high = happy, angry, fearful; low = neutral, calm, sad.
AROUSAL_GROUP = {"happy": "high", "angry": "high", "fear": "high",
                 "neutral": "low", "calm": "low", "sad": "low"}
#: Valence groups for the separation figure (neutral, calm and surprise are left out).
VALENCE_GROUP = {"happy": "positive",
                 "angry": "negative", "disgust": "negative", "fear": "negative", "sad": "negative",
                 "contempt": "negative"}

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                    "06": "fear", "07": "disgust", "08": "surprise"}
_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_MEAD = re.compile(r"(?:^|[_/\-])(angry|contempt|disgusted|fear|happy|neutral|sad|surprised)[_/\-]+level[_\-]?(\d)",
                   re.IGNORECASE)

SESSION_ALIASES = ("session", "session_id", "file", "file_name", "filename", "clip", "name", "path", "video", "audio")
LABEL_ALIASES = ("label", "emotion", "category", "class")
LABEL_COLUMNS = ["session", "start", "end", "label", "valence", "arousal", "arousal_group", "intensity", "_line"]


def canonical_label(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip().casefold()
    if not text:
        return None
    return SYNONYMS.get(text, text)


def ravdess_label(stem: str) -> dict[str, Any] | None:
    """``03-01-05-02-01-01-03`` -> angry, strong intensity (None if not a RAVDESS name)."""
    m = _RAVDESS.match(stem)
    if not m or m.group(3) not in RAVDESS_EMOTIONS:
        return None
    return {"label": RAVDESS_EMOTIONS[m.group(3)], "intensity": {"01": "normal", "02": "strong"}.get(m.group(4))}


def mead_label(name: str) -> dict[str, Any] | None:
    """``M030_front_angry_level3_001`` or ``.../front/angry/level_3/001.mp4`` -> angry, level 3."""
    m = _MEAD.search(name)
    if not m:
        return None
    return {"label": canonical_label(m.group(1)), "intensity": f"level{m.group(2)}"}


def labels_from_names(sessions, scheme: str) -> tuple[pd.DataFrame, list[str]]:
    """One whole-session label per corpus session whose media file name decodes; the rest listed."""
    scheme = scheme.strip().lower()
    if scheme not in ("ravdess", "mead"):
        raise ValueError(f"--labels-from-names must be ravdess or mead, not {scheme!r}")
    rows, undecoded = [], []
    for s in sessions:
        src = s.read_source()
        name = src.get("file_name") or src.get("origin") or s.id
        stem = Path(str(name)).stem
        got = ravdess_label(stem) if scheme == "ravdess" else mead_label(str(src.get("origin") or name))
        if got is None:
            undecoded.append(s.id)
            continue
        rows.append({"session": s.id, "start": None, "end": None, "label": got["label"], "valence": None,
                     "arousal": None, "arousal_group": AROUSAL_GROUP.get(got["label"]),
                     "intensity": got.get("intensity"), "_line": None})
    return pd.DataFrame(rows, columns=LABEL_COLUMNS), undecoded


def read_labels(path: str | Path) -> pd.DataFrame:
    """The labels CSV/TSV (module docstring); `InputError` naming the file and line on problems."""
    path = Path(path)
    text = read_text(path)
    df, lines = read_table_text(text, path)
    cols = {normalise_name(c): c for c in df.columns}
    session_col = next((cols[a] for a in SESSION_ALIASES if a in cols), None)
    if session_col is None:
        raise InputError(path, f"no session column (one of: {', '.join(SESSION_ALIASES)}); found: {', '.join(map(str, df.columns))}", 1)
    label_col = next((cols[a] for a in LABEL_ALIASES if a in cols), None)
    if label_col is None and "valence" not in cols and "arousal" not in cols and "arousal_group" not in cols:
        raise InputError(path, "no label, valence or arousal column: nothing to compare the channels with", 1)
    rows = []
    for i, (_, r) in enumerate(df.iterrows()):
        line = lines[i]
        sess = str(r[session_col]).strip()
        if not sess:
            raise InputError(path, "empty session name", line)
        start = parse_time(r[cols["start"]], path=path, line=line) if "start" in cols else None
        end = parse_time(r[cols["end"]], path=path, line=line) if "end" in cols else None
        if (start is None) != (end is None):
            raise InputError(path, "give both start and end, or neither (the whole session)", line)
        if start is not None and end < start:
            raise InputError(path, f"end {end:g} is before start {start:g}", line)
        values: dict[str, Any] = {}
        for key in ("valence", "arousal"):
            raw = str(r[cols[key]]).strip() if key in cols else ""
            try:
                values[key] = float(raw) if raw else None
            except ValueError:
                raise InputError(path, f"{key} {raw!r} is not a number", line) from None
        label = canonical_label(r[label_col]) if label_col is not None else None
        group = None
        if "arousal_group" in cols and str(r[cols["arousal_group"]]).strip():
            group = str(r[cols["arousal_group"]]).strip().lower()
            if group not in ("high", "low"):
                raise InputError(path, f"arousal_group must be high or low, not {group!r}", line)
        elif label is not None:
            group = AROUSAL_GROUP.get(label)
        if label is None and group is None and values["valence"] is None and values["arousal"] is None:
            raise InputError(path, "row has no label, valence, arousal or arousal_group", line)
        rows.append({"session": sess, "start": start, "end": end, "label": label, **values,
                     "arousal_group": group, "intensity": None, "_line": line})
    if not rows:
        raise InputError(path, "no label rows", 1)
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)
