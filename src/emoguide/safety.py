"""Acute-risk screen for patient utterances.

The default screen is `risk-v2` (emoguide.risk: lexical, semantic, classifier and context layers;
`SCREEN_ID`). This module keeps its lexical layer, `lexical-v1` (`LEXICAL_SCREEN_ID`), and the
table-level entry point `screen_utterances`, which runs either.

The lexical layer:
Categories `suicide`, `self_harm`, `harm_to_others`, each a list of regular expressions in the
packaged `safety_terms.toml`, matched case-insensitively on whole words. Mentions are flagged even
when negated ("I'm not suicidal"): the screen routes utterances to a human, so it errs toward
recall; a simple negation cue in the few words before a hit is recorded as " [negated]" on the
term so the reviewer sees it. This is not a clinical instrument (docs/safety.md).

Callers record the screen id with the results so a later change of the term list is visible.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from emoguide.corpus.schema import SAFETY_COLUMNS as SAFETY_DTYPES

LEXICAL_SCREEN_ID = "lexical-v1"
SCREEN_ID = "risk-v2"  # the default screen (emoguide.risk.screen.SCREEN_ID)
CATEGORIES: tuple[str, ...] = ("suicide", "self_harm", "harm_to_others")
NEGATED_MARK = " [negated]"

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})
_CLAUSE_BREAK_RE = re.compile(r"[.;:!?,\n()\u2014\u2013]|\s-\s|\bbut\b|\bthough\b|\bhowever\b", re.I)
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _top_level_bar(pattern: str) -> bool:
    """Does `pattern` hold an alternation `|` outside any group or character class?"""
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "]":
                i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return True
        i += 1
    return False


def first_char_alternation(alternatives: list[str]) -> str:
    """One alternation of `alternatives` (regular expressions), grouped by their first letter:
    `(?=a)(?:a...|a...)|(?=b)(?:b...)|...|<the rest>`. It matches exactly where the plain
    alternation matches (the same texts, the same leftmost start), but Python's `re` tries each
    position against a few dozen first letters instead of hundreds of alternatives: 4x faster
    on real talk for the gate's vocabulary. An alternative is grouped only when it starts with a
    literal ASCII letter that is not optional and it has no top-level `|`; the rest are kept as
    they are, at the end. Meant for a pattern compiled with re.IGNORECASE (the groups' keys are
    lower case)."""
    groups: dict[str, list[str]] = {}
    rest: list[str] = []
    for alt in alternatives:
        c = alt[:1]
        if c.isascii() and c.isalpha() and alt[1:2] not in ("?", "*", "{") and not _top_level_bar(alt):
            groups.setdefault(c.lower(), []).append(alt)
        else:
            rest.append(alt)
    return "|".join([f"(?={c})(?:{'|'.join(alts)})" for c, alts in groups.items()] + [f"(?:{a})" for a in rest])


@dataclass(frozen=True)
class Detection:
    """One hit: which category, the matched text as written, where, and whether a negation cue preceded it."""

    category: str
    term: str
    start: int
    end: int
    negated: bool = False

    @property
    def label(self) -> str:
        return self.term + (NEGATED_MARK if self.negated else "")


@dataclass
class RiskResult:
    """Result of screening one text.

    `flag` is True when any pattern matched (negated mentions included). `categories` lists the
    categories hit, in CATEGORIES order. `terms` lists the matched text as written, deduplicated, in
    order of appearance, with " [negated]" appended where a negation cue preceded the match.
    """

    flag: bool
    categories: list[str] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)

    @property
    def all_negated(self) -> bool:
        return bool(self.detections) and all(d.negated for d in self.detections)


class LexicalScreen:
    """A compiled term list. Build with `load_screen()`; use `screen(text)`."""

    def __init__(self, config: dict, source: str = "<dict>"):
        meta = config.get("meta", {})
        self.id: str = str(meta.get("id", LEXICAL_SCREEN_ID))
        self.source = source
        self.negation_window: int = int(meta.get("negation_window", 3))
        self.negation_cues: frozenset[str] = frozenset(
            str(c).lower().translate(_APOSTROPHES) for c in meta.get("negation_cues", [])
        )
        variables = {str(k): str(v) for k, v in config.get("vars", {}).items()}
        cats = config.get("categories", {})
        unknown = set(cats) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"{source}: unknown categories {sorted(unknown)}; expected {CATEGORIES}")
        self.patterns: dict[str, list[re.Pattern[str]]] = {}
        raw: dict[str, list[str]] = {}  # the patterns as written (variables filled in), for the shortcut
        for cat in CATEGORIES:
            compiled = []
            texts: list[str] = []
            for i, pat in enumerate(cats.get(cat, {}).get("patterns", [])):
                text = str(pat)
                for name, value in variables.items():
                    text = text.replace(f"<{name}>", value)
                try:
                    compiled.append(re.compile(rf"(?<!\w)(?:{text})(?!\w)", re.IGNORECASE))
                    texts.append(text)
                except re.error as exc:
                    raise ValueError(f"{source}: categories.{cat}.patterns[{i}] is not a valid regex: {exc}") from exc
            self.patterns[cat] = compiled
            raw[cat] = texts
        # one alternation per category answers "any hit?" in one pass; most utterances have none,
        # and then the patterns are not run one by one (same hits either way)
        self._any: dict[str, re.Pattern[str] | None] = {}
        for cat, compiled in self.patterns.items():
            try:
                self._any[cat] = re.compile(rf"(?<!\w)(?:{first_char_alternation(raw[cat])})(?!\w)", re.IGNORECASE) if compiled else None
            except re.error:  # e.g. a group name used twice: no shortcut for this category
                self._any[cat] = re.compile("")

    def _negated(self, norm: str, start: int) -> bool:
        before = norm[:start]
        breaks = list(_CLAUSE_BREAK_RE.finditer(before))
        if breaks:
            before = before[breaks[-1].end():]
        words = _WORD_RE.findall(before.lower())[-self.negation_window:] if self.negation_window > 0 else []
        return any(w in self.negation_cues or w.endswith("n't") for w in words)

    def screen(self, text: object) -> RiskResult:
        """Screen one text. None, NA and non-strings other than numbers give no flag."""
        if text is None or not isinstance(text, str):
            try:
                if text is None or pd.isna(text):
                    return RiskResult(False)
            except (TypeError, ValueError):
                pass
            text = str(text)
        norm = text.translate(_APOSTROPHES)  # same length: offsets stay valid for `text`
        hits: list[Detection] = []
        for cat in CATEGORIES:
            spans: list[tuple[int, int]] = []
            if cat in self._any and (self._any[cat] is None or self._any[cat].search(norm) is None):
                continue  # no pattern of this category matches anywhere
            for rx in self.patterns.get(cat, []):
                spans.extend(m.span() for m in rx.finditer(norm) if m.end() > m.start())
            # overlapping hits within a category are merged into one span
            spans.sort()
            kept: list[tuple[int, int]] = []
            for s, e in spans:
                if kept and s < kept[-1][1]:
                    kept[-1] = (kept[-1][0], max(kept[-1][1], e))
                else:
                    kept.append((s, e))
            hits.extend(Detection(cat, text[s:e], s, e, self._negated(norm, s)) for s, e in kept)
        hits.sort(key=lambda d: (d.start, CATEGORIES.index(d.category)))
        categories = [c for c in CATEGORIES if any(d.category == c for d in hits)]
        terms: list[str] = []
        seen: set[str] = set()
        for d in hits:
            key = d.label.lower()
            if key not in seen:
                seen.add(key)
                terms.append(d.label)
        return RiskResult(bool(hits), categories, terms, hits)


def load_screen(path: str | Path | None = None) -> LexicalScreen:
    """Load a term list: the packaged `safety_terms.toml` by default, or a TOML file at `path`."""
    if path is None:
        return _default_screen()
    p = Path(path)
    with p.open("rb") as fh:
        return LexicalScreen(tomllib.load(fh), str(p))


@lru_cache(maxsize=1)
def _default_screen() -> LexicalScreen:
    ref = resources.files("emoguide").joinpath("safety_terms.toml")
    screen = LexicalScreen(tomllib.loads(ref.read_text(encoding="utf-8")), "emoguide/safety_terms.toml")
    if screen.id != LEXICAL_SCREEN_ID:  # pragma: no cover - guards against editing one without the other
        raise RuntimeError(f"safety_terms.toml id {screen.id!r} != LEXICAL_SCREEN_ID {LEXICAL_SCREEN_ID!r}")
    return screen


def screen_text(text: str, screen: LexicalScreen | None = None) -> RiskResult:
    """Screen one utterance with the lexical layer alone: the packaged term list (or `screen`).
    For the default layered screen use `risk_screen().screen(text, previous)`."""
    return (screen or _default_screen()).screen(text)


@lru_cache(maxsize=1)
def risk_screen():
    """The default risk-v2 screen, built once per process (it loads the embedding model)."""
    from emoguide.risk import RiskScreen

    return RiskScreen()


def screen_utterances(
    df: pd.DataFrame,
    roles: Iterable[str] | str = ("patient",),
    screen=None,
    text_column: str = "text",
    role_column: str = "role",
    context: bool = True,
) -> pd.DataFrame:
    """Return a copy of `df` with the risk columns (corpus.schema.SAFETY_COLUMNS) filled in.

    `screen` is a risk-v2 `RiskScreen` (the default, `risk_screen()`) or a `LexicalScreen` (the
    lexical layer alone: flag on any hit, negated ones included; level and score null). Only rows
    whose role is in `roles` (case-insensitive) are screened: they get a boolean `risk_flag` and
    ""-for-nothing strings. Other rows get <NA> everywhere: "not screened", which is not the same
    as "screened, nothing found". With `context`, each screened row is read with the previous
    screened row of the same session (`session_id` column, in table order).
    """
    if isinstance(roles, str):
        roles = (roles,)
    wanted = {str(r).lower() for r in roles}
    for col in (text_column, role_column):
        if col not in df.columns:
            raise KeyError(f"screen_utterances needs a {col!r} column; got {list(df.columns)}")
    scr = screen if screen is not None else risk_screen()
    out = df.copy()
    role = out[role_column].astype("string").str.lower()
    mask = role.isin(list(wanted)).fillna(False).astype(bool)
    n = len(out)
    cols: dict[str, list[object]] = {c: [pd.NA] * n for c in
                                     ("risk_flag", "risk_categories", "risk_terms", "risk_level", "risk_score", "risk_evidence", "risk_screen")}
    texts = out[text_column].to_numpy(dtype=object)
    rows = np.flatnonzero(mask.to_numpy())
    if isinstance(scr, LexicalScreen):
        for i in rows:
            res = scr.screen(texts[i])
            cols["risk_flag"][i] = res.flag
            cols["risk_categories"][i] = ",".join(res.categories)
            cols["risk_terms"][i] = ",".join(res.terms)
            cols["risk_evidence"][i] = json.dumps([f"term: {t}" for t in res.terms], ensure_ascii=False)
            cols["risk_screen"][i] = scr.id
    else:
        sessions = out["session_id"].to_numpy(dtype=object) if "session_id" in out.columns else np.zeros(n, dtype=object)
        previous: list[str | None] = []
        last: dict[object, object] = {}
        for i in rows:
            key = sessions[i]
            previous.append(last.get(key) if context else None)
            if not _blank(texts[i]):
                last[key] = texts[i]
        readings = scr.screen_many([texts[i] for i in rows], previous)
        for i, r in zip(rows, readings):
            for k, v in r.to_dict().items():
                cols[k][i] = pd.NA if v is None else v
    for col, values in cols.items():
        if SAFETY_DTYPES[col] == "float64":
            values = [np.nan if v is pd.NA else v for v in values]
        out[col] = pd.array(values, dtype=SAFETY_DTYPES[col])
    return out


def _blank(text: object) -> bool:
    try:
        return text is None or bool(pd.isna(text)) or not str(text).strip()
    except (TypeError, ValueError):
        return False


__all__ = [
    "CATEGORIES",
    "LEXICAL_SCREEN_ID",
    "Detection",
    "LexicalScreen",
    "RiskResult",
    "SCREEN_ID",
    "load_screen",
    "risk_screen",
    "screen_text",
    "screen_utterances",
]
