"""The rater background questionnaire (the paper's Figure 11) and the rater groups it defines.

The web app renders BACKGROUND_FIELDS as a form on a rater's first login; the store validates and
keeps the answers; the statistics compare rater groups derived from them (by degree by default,
or by orientation, or by years of experience with a cut), unless a `--groups FILE` overrides.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from emoguide.errors import InputError

BACKGROUND_FIELDS: list[dict[str, Any]] = [
    {
        "name": "degree",
        "label": "Highest degree",
        "kind": "choice",
        "choices": ["bachelor", "master", "phd", "other"],
        "required": True,
    },
    {
        "name": "years_experience",
        "label": "Years of clinical experience",
        "kind": "int",
        "choices": None,
        "required": True,
        "min": 0,
        "max": 70,
    },
    {
        "name": "orientation",
        "label": "Main therapeutic orientation",
        "kind": "choice",
        "choices": ["cbt", "psychodynamic", "humanistic", "integrative", "systemic", "other"],
        "required": True,
    },
    {
        "name": "cbt_training",
        "label": "Formal training in cognitive behavioural therapy",
        "kind": "choice",
        "choices": ["yes", "no"],
        "required": True,
    },
    {
        "name": "nonverbal_cues",
        "label": "How often do you use non-verbal cues (face, voice) in your clinical work?",
        "kind": "choice",
        "choices": ["never", "rarely", "sometimes", "often", "always"],
        "required": True,
    },
]

FIELD_NAMES = tuple(f["name"] for f in BACKGROUND_FIELDS)
GROUP_BY = ("degree", "orientation", "experience")


def validate_background(answers: dict[str, Any]) -> dict[str, Any]:
    """Check the questionnaire's answers; returns them normalised (years as int).

    Raises ValueError naming the field and what is wrong. Unknown fields are refused, so a form
    cannot smuggle arbitrary keys into the store.
    """
    if not isinstance(answers, dict):
        raise ValueError("background: answers must be a mapping of field name to value")
    unknown = sorted(set(answers) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"background: unknown field(s) {unknown}; expected {list(FIELD_NAMES)}")
    out: dict[str, Any] = {}
    for field in BACKGROUND_FIELDS:
        name = field["name"]
        raw = answers.get(name)
        value = raw.strip() if isinstance(raw, str) else raw
        if value is None or value == "":
            if field["required"]:
                raise ValueError(f"background: {name}: required")
            out[name] = None
            continue
        if field["kind"] == "int":
            try:
                number = int(str(value))
            except ValueError:
                raise ValueError(f"background: {name}: must be a whole number, got {raw!r}") from None
            if not field["min"] <= number <= field["max"]:
                raise ValueError(f"background: {name}: must be between {field['min']} and {field['max']}, got {number}")
            out[name] = number
        else:
            value = str(value).lower()
            if value not in field["choices"]:
                raise ValueError(f"background: {name}: must be one of {field['choices']}, got {raw!r}")
            out[name] = value
    return out


def derive_group(answers: dict[str, Any] | None, by: str = "degree", experience_cut: int = 10) -> str | None:
    """The rater group from background answers; None when the rater has not answered yet."""
    if not answers:
        return None
    if by == "degree":
        return answers.get("degree")
    if by == "orientation":
        return answers.get("orientation")
    if by == "experience":
        years = answers.get("years_experience")
        if years is None:
            return None
        return f">={experience_cut}y" if int(years) >= experience_cut else f"<{experience_cut}y"
    raise ValueError(f"groups.by: must be one of {list(GROUP_BY)}, got {by!r}")


def read_groups_file(path: str | Path) -> dict[str, str]:
    """A `rater_id,group` CSV (header optional) -> {rater_id: group}; errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "groups file not found")
    groups: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
                continue
            if lineno == 1 and [c.strip().lower() for c in row[:2]] == ["rater_id", "group"]:
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise InputError(path, f"expected two columns rater_id,group, got {row!r}", line=lineno)
            rid = row[0].strip()
            if rid in groups:
                raise InputError(path, f"rater {rid!r} listed twice", line=lineno)
            groups[rid] = row[1].strip()
    return groups
