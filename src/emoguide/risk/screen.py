"""risk-v2: the layered risk screen (docs/safety.md).

Layers, per utterance:

1. lexical: the lexical-v1 term list (emoguide.safety); its hits are features and evidence;
2. semantic: the utterance embedded with all-MiniLM-L6-v2 and compared with the bank of risk
   expressions and hard negatives (bank.toml); a long utterance is read unit by unit instead
   (`reading_units`: its sentences, a run-on cut at its commas), only the units that pass the gate;
3. classifier: a logistic regression over a handful of similarity and lexical features
   (model.json, fitted by emoguide.risk.fit on the fit part of tests/data/risk_dev.csv only);
   it gives `risk_score`, the flag is `score >= threshold`;
4. context: where a previous patient utterance is known and the pair can change the reading (the
   previous one carries some risk, or this one is a short flagged reply), the pair (the previous
   utterance's risk-bearing part, then this one's opening) is read together and that reading is
   kept when it adds risk the previous utterance alone did not carry;
5. optional LLM layer (emoguide.risk.llm): may raise a flag or a level, never clears one.

When the embedding model cannot be loaded the screen says why (`semantic_error`) and runs the
lexical layer alone; every such reading carries `risk_screen = "risk-v2@<version>/lexical-only"`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from emoguide.risk.bank import CATEGORIES, LEVELS, Bank, load_bank
from emoguide.risk.embed import Embedder, RiskModelError, cache_dir
from emoguide.risk.gate import RISK_VOCAB_RE, may_carry_risk, may_take_context

SCREEN_ID = "risk-v2"
FEATURES: tuple[str, ...] = (
    "max_pos", "top3_pos", "max_neg", "top3_neg", "knn_pos", "margin", "lex_hit", "lex_negated",
    "negation_cue", "past_cue", "other_subject", "log_words", "probe",
)
# Cheap linguistic cues the embeddings are known to be weak on (negation, tense, whose experience).
# Hand-written because no packaged parser gives these offline at this speed; the classifier weighs them.
_NEGATION_RE = re.compile(r"\b(?:not|never|no|none|nothing|n't|isn't|wasn't|don't|doesn't|didn't|won't|wouldn't|haven't|hasn't|can't|cannot)\b|n't\b", re.I)
_PAST_RE = re.compile(
    r"\b(?:used to|years? ago|months ago|long time ago|long ago|back then|at the time|in the past|as a (?:teen(?:ager)?|kid|child)"
    r"|when I was (?:a |at |in |younger|little|\d+|fifteen|sixteen|seventeen|eighteen|nineteen|twenty)|behind me|since then|anymore|any more"
    r"|got through|got over|recovered|clean for|free of|haven't (?:since|in))\b", re.I)
_OTHER_RE = re.compile(
    r"^\W*(?:my|our|his|her|their|a|the)\s+(?:\w+\s+)?(?:friend|brother|sister|mum|mom|mother|dad|father|son|daughter|husband|wife|partner|"
    r"boyfriend|girlfriend|cousin|aunt|uncle|grandmother|grandfather|gran|nan|neighbou?r|coworker|colleague|boss|flatmate|roommate|"
    r"teen(?:ager)?|kid|child|patient|ex|stepfather|stepdad|stepmother|man|woman|guy)s?\b|^\W*(?:he|she|they)\b", re.I)
LEXICAL_ONLY = "lexical-only"
KNN_K = 10
KNN_TEMPERATURE = 0.05

_SEGMENT_RE = re.compile(r"(?<=[.!?])\s+")
SEGMENT_MIN_WORDS = 16
LONG_MAX_UNITS = 32  # sentences (or clause pieces) of a long utterance read at most
CLAUSE_MAX_WORDS = 32  # pieces of a cut sentence: at most this many words
CLAUSE_CUT_ABOVE = 40  # a sentence of more words is cut at its commas and dashes
_WORD_RE = re.compile(r"[A-Za-z']+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})


_CLAUSE_RE = re.compile(r"(?<=[,;:])\s+|(?<=--)(?!-)\s*|(?<=[\u2014\u2013])\s*|(?<=\s-)\s+")  # after the mark: it stays with its clause


def reading_units(text: str, max_units: int = LONG_MAX_UNITS) -> list[str]:
    """What a long utterance is read as: its sentences, and a run-on sentence of more than
    CLAUSE_CUT_ABOVE words (transcribed speech often has no full stops) cut at its commas,
    semicolons and dashes into consecutive pieces of at most CLAUSE_MAX_WORDS words (a clause
    with no such mark stays whole). A short utterance (under SEGMENT_MIN_WORDS words) is one
    unit, so "I used to cut. Not anymore." is read as one statement; a unit needs 2 words, and
    an utterance that gives fewer than two units is read whole."""
    if len(_WORD_RE.findall(text)) < SEGMENT_MIN_WORDS:
        return [text]
    units: list[str] = []
    for sent in _SEGMENT_RE.split(text):
        sent = sent.strip()
        if len(_WORD_RE.findall(sent)) < 2:
            continue
        if len(sent.split()) <= CLAUSE_CUT_ABOVE:
            units.append(sent)
            continue
        piece: list[str] = []
        for clause in _CLAUSE_RE.split(sent):
            k = len(clause.split())
            if piece and len(" ".join(piece).split()) + k > CLAUSE_MAX_WORDS:
                units.append(" ".join(piece))
                piece = []
            if clause.strip():
                piece.append(clause.strip())
        if piece:
            units.append(" ".join(piece))
    units = [u for u in units if len(_WORD_RE.findall(u)) >= 2][:max_units]
    return units if len(units) > 1 else [text]


@dataclass
class RiskReading:
    """One utterance's reading; the fields map one to one onto the risk_* columns."""

    flag: bool
    level: str | None  # none / low / moderate / high; None when the semantic layer was unavailable
    categories: list[str]
    score: float | None
    evidence: list[str]
    screen: str
    terms: list[str] = field(default_factory=list)  # lexical terms, as risk_terms always held
    types: list[str] = field(default_factory=list)  # "suicide/plan", ... (the bank types behind the level)
    context_used: bool = False
    max_pos: float = 0.0
    gated: bool = False  # the first stage found no risk-relevant word: not embedded, score 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "risk_flag": self.flag,
            "risk_level": self.level,
            "risk_categories": ",".join(self.categories),
            "risk_score": None if self.score is None else round(float(self.score), 4),
            "risk_evidence": json.dumps(self.evidence, ensure_ascii=False),
            "risk_screen": self.screen,
            "risk_terms": ",".join(self.terms),
        }


@dataclass
class _Row:
    """Features of one text (a whole utterance, a clause, or a context pair)."""

    x: np.ndarray
    prob: float
    type_scores: np.ndarray
    top_pos: list[tuple[int, float]]
    max_pos: float


class RiskScreen:
    """The risk-v2 screen. Heavy parts load once, on construction; `strict=True` raises
    RiskModelError instead of falling back to the lexical layer."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        bank: Bank | str | Path | None = None,
        classifier: dict | str | Path | None = None,
        lexical=None,
        llm=None,
        strict: bool = False,
        use_context: bool = True,
        batch_size: int = 64,
        use_gate: bool = True,
    ):
        from emoguide import safety

        self.lexical = lexical or safety.load_screen()
        self.bank = bank if isinstance(bank, Bank) else load_bank(bank)
        self.classifier = _load_classifier(classifier)
        self.version = self.bank.version
        self.use_context = use_context
        self.use_gate = use_gate  # False embeds every text (to show the gate changes no reading of the development set)
        self._lex_cache: dict[str, Any] = {}
        self.warnings: list[str] = []
        if self.classifier.get("bank_digest") not in (None, self.bank.digest):
            self.warnings.append(
                f"{self.bank.source}: the bank changed since the classifier was fitted; refit with python -m emoguide.risk.fit"
            )
        self.semantic_error: str | None = None
        self.embedder: Embedder | None = None
        try:
            self.embedder = Embedder(model_path, batch_size=batch_size)
            self._bank_emb = _bank_embeddings(self.bank, self.embedder)
        except RiskModelError as exc:
            if strict:
                raise
            self.semantic_error = str(exc)
            self.embedder = None
        if self.embedder is not None:
            pos = np.array([e.positive for e in self.bank.entries])
            self._pos_idx = np.flatnonzero(pos)
            self._neg_idx = np.flatnonzero(~pos)
            self._types = self.bank.types()
            keys = [f"{c}/{t}" for c, t, _ in self._types]
            entry_type = np.array([keys.index(self.bank.entries[i].key) for i in self._pos_idx])
            self._type_masks = [entry_type == k for k in range(len(keys))]
            self._type_cols = [np.flatnonzero(m) for m in self._type_masks]
        self.llm = None
        if llm is not None:
            from emoguide.risk.llm import LLMLayer

            self.llm = llm if isinstance(llm, LLMLayer) else LLMLayer(llm)

    # ------------------------------------------------------------------ identity

    @property
    def lexical_only(self) -> bool:
        return self.embedder is None

    @property
    def id(self) -> str:
        """What `risk_screen` holds: id@version, plus the layer set when it is not the default."""
        sid = f"{SCREEN_ID}@{self.version}"
        if self.lexical_only:
            return f"{sid}/{LEXICAL_ONLY}"
        if self.llm is not None:
            return f"{sid}+llm:{self.llm.backend_id}"
        return sid

    def info(self) -> dict[str, Any]:
        """What the safety stage records in stages.json."""
        return {
            "id": self.id,
            "layers": ["lexical"] + ([] if self.lexical_only else (["gate"] if self.use_gate else []) + ["semantic", "classifier"]
                                     + (["context"] if self.use_context else []))
            + (["llm"] if self.llm is not None else []),
            "lexical": self.lexical.id,
            "bank": f"{self.bank.source} ({len(self.bank.entries)} entries, sha256 {self.bank.digest[:12]})",
            "model": None if self.embedder is None else str(self.embedder.path),
            "threshold": self.classifier["threshold"],
            "semantic_error": self.semantic_error,
        }

    # ------------------------------------------------------------------ scoring

    def _lex(self, text: str):
        """The lexical layer's result, once per distinct text."""
        r = self._lex_cache.get(text)
        if r is None:
            if len(self._lex_cache) > 50_000:
                self._lex_cache.clear()
            r = self._lex_cache[text] = self.lexical.screen(text)
        return r

    def _features(self, texts: list[str]) -> list[_Row]:
        """Features of each text, with numpy over the whole batch (per-row numpy calls cost more
        than the classifier itself once the embeddings are batched)."""
        if not texts:
            return []
        emb = self.embedder.encode([t.translate(_APOSTROPHES) for t in texts])
        sims = emb @ self._bank_emb.T
        pos = sims[:, self._pos_idx]
        neg = sims[:, self._neg_idx]
        n_pos = pos.shape[1]
        probe = self.classifier.get("probe")
        probe_z = emb @ np.asarray(probe["coef"], dtype=np.float32) + float(probe["intercept"]) if probe else np.zeros(len(texts))
        # the five nearest positive entries, best first
        k5 = min(5, n_pos)
        top5 = np.argpartition(-pos, k5 - 1, axis=1)[:, :k5] if k5 < n_pos else np.tile(np.arange(n_pos), (len(texts), 1))
        top5 = np.take_along_axis(top5, np.argsort(-np.take_along_axis(pos, top5, 1), axis=1, kind="stable"), 1)
        ps = np.take_along_axis(pos, top5[:, :3], 1)
        ns = -np.sort(np.partition(-neg, 2, axis=1)[:, :3], axis=1)  # the three nearest negatives, best first
        allsim = np.concatenate([pos, neg], axis=1)
        top = np.argpartition(-allsim, KNN_K, axis=1)[:, :KNN_K]
        vals = np.take_along_axis(allsim, top, 1)
        w = np.exp((vals - vals.max(axis=1, keepdims=True)) / KNN_TEMPERATURE)
        knn = (w * (top < n_pos)).sum(axis=1) / w.sum(axis=1)
        X = np.zeros((len(texts), len(FEATURES)))
        X[:, 0], X[:, 1], X[:, 2], X[:, 3] = ps[:, 0], ps.mean(axis=1), ns[:, 0], ns.mean(axis=1)
        X[:, 4], X[:, 5], X[:, 12] = knn, ps[:, 0] - ns[:, 0], probe_z
        for i, text in enumerate(texts):
            lex = self._lex(text)
            lex_hit = float(any(not d.negated for d in lex.detections))
            X[i, 6:12] = (
                lex_hit, float(bool(lex.detections) and not lex_hit),
                float(bool(_NEGATION_RE.search(text))), float(bool(_PAST_RE.search(text))), float(bool(_OTHER_RE.search(text))),
                math.log1p(len(_WORD_RE.findall(text))),
            )
        probs = predict_proba(self.classifier, X)
        # per bank type: the mean of its two nearest entries
        type_scores = np.zeros((len(texts), len(self._type_cols)))
        for k, cols in enumerate(self._type_cols):
            sub = pos[:, cols]
            type_scores[:, k] = sub.max(axis=1) if len(cols) < 2 else (-np.partition(-sub, 1, axis=1)[:, :2]).mean(axis=1)
        best = np.take_along_axis(pos, top5, 1)
        return [
            _Row(X[i], float(probs[i]), type_scores[i], [(int(self._pos_idx[j]), float(v)) for j, v in zip(top5[i], best[i])], float(best[i, 0]))
            for i in range(len(texts))
        ]

    def _reading(self, text: str, rows: list[_Row], lex, own: _Row | None = None) -> RiskReading:
        """`own`: in a context reading, the current utterance alone; what kind of risk it is
        (its nearest bank types) counts beside the pair's ("I have a plan" is the plan)."""
        best = max(rows, key=lambda r: r.prob)
        type_scores = best.type_scores
        top_pos = best.top_pos if own is None else sorted(best.top_pos + own.top_pos, key=lambda e: -e[1])
        thr = float(self.classifier["threshold"])
        flag = best.prob >= thr
        # Lexical floor: an explicit risk term, not negated, in a statement with no cue that it is
        # past or someone else's, is flagged unless the semantic layer scores it far below the threshold.
        # A near-zero semantic score (clinical talk, negation after the term) still clears it.
        floor = float(self.classifier.get("lexical_floor", 0.5)) * thr
        if not flag and best.prob >= floor and any(not d.negated for d in lex.detections) and not (
            _PAST_RE.search(text) or _OTHER_RE.search(text)
        ):
            flag = True
        terms = [t for t in lex.terms]
        evidence: list[str] = []
        categories: list[str] = []
        types: list[str] = []
        level = "none"
        if flag:
            margin = float(self.classifier.get("category_margin", 0.04))
            top = float(type_scores.max())
            cat_best: dict[str, int] = {}
            for k, (cat, _typ, _lv) in enumerate(self._types):
                if cat not in cat_best or type_scores[k] > type_scores[cat_best[cat]]:
                    cat_best[cat] = k
            lex_cats = {d.category for d in lex.detections if not d.negated}
            for cat in CATEGORIES:
                k = cat_best.get(cat)
                if k is None:
                    continue
                if type_scores[k] >= top - margin or cat in lex_cats:
                    categories.append(cat)
                    c, t, lv = self._types[k]
                    types.append(f"{c}/{t}")
                    level = max(level, lv, key=LEVELS.index)
            if own is not None:
                # read with its context, the utterance is the kind of risk it is nearest to
                c, t, lv = self._types[int(np.argmax(own.type_scores))]
                if c not in categories:
                    categories = [x for x in CATEGORIES if x in categories or x == c]
                if f"{c}/{t}" not in types:
                    types.append(f"{c}/{t}")
                level = max(level, lv, key=LEVELS.index)
            seen_idx: set[int] = set()
            for idx, sim in top_pos[:4]:
                if idx in seen_idx:
                    continue
                seen_idx.add(idx)
                e = self.bank.entries[idx]
                if e.category in categories:
                    evidence.append(f"bank {e.key} ({sim:.2f}): {e.text}")
        evidence.extend(f"term: {t}" for t in terms)
        return RiskReading(flag, level, categories, best.prob, evidence, self.id, terms, types, max_pos=best.max_pos)

    def _lexical_reading(self, text: object) -> RiskReading:
        lex = self.lexical.screen(text)
        return RiskReading(lex.flag, None, list(lex.categories), None, [f"term: {t}" for t in lex.terms], self.id, list(lex.terms))

    def screen(self, text: object, previous: str | None = None) -> RiskReading:
        """Screen one utterance, optionally with the previous patient utterance."""
        return self.screen_many([text], [previous])[0]

    def screen_many(self, texts: list[object], previous: list[str | None] | None = None) -> list[RiskReading]:
        """Screen many utterances in one batch; `previous[i]` is the previous patient utterance of
        `texts[i]` (None where there is none or context is not wanted)."""
        previous = list(previous) if previous is not None else [None] * len(texts)
        if len(previous) != len(texts):
            raise ValueError(f"screen_many: {len(texts)} texts but {len(previous)} previous utterances")
        clean = [_text_or_none(t) for t in texts]
        prevs = [_text_or_none(p) if self.use_context else None for p in previous]
        if self.lexical_only:
            out = [self._lexical_reading(t) if t is not None else _empty(self.id, None) for t in clean]
        else:
            out = self._screen_semantic(clean, prevs)
        if self.llm is not None:
            out = self.llm.apply(clean, prevs, out)
        return out

    def _passes_gate(self, text: str) -> bool:
        """The cheap first stage (emoguide.risk.gate): worth embedding? Any lexical hit passes too."""
        return not self.use_gate or may_carry_risk(text) or bool(self._lex(text).detections)

    def _parts(self, text: str) -> list[str] | None:
        """What of a gate-passing utterance is embedded: the utterance itself when it is short; a
        long one unit by unit (`reading_units`: sentences, run-ons cut at clause marks), only
        the units that pass the gate. When none does, the whole is embedded if a risk word or
        term crosses the units' bounds, and nothing (None: gated) if the whole passed only by
        an intention and a time that sit in different units (plans-to-change talk, not a plan)."""
        units = reading_units(text)
        if len(units) == 1:
            return units
        keep = [x for x in units if self._passes_gate(x)]
        if keep:
            return keep
        return [text] if (RISK_VOCAB_RE.search(text.replace("\u2019", "'")) or self._lex(text).detections) else None

    def _gated(self, text: str) -> RiskReading:
        return RiskReading(False, "none", [], 0.0, [f"term: {t}" for t in self._lex(text).terms], self.id,
                           list(self._lex(text).terms), gated=True)

    def _screen_semantic(self, clean: list[str | None], prevs: list[str | None]) -> list[RiskReading]:
        # one batch of every distinct text and clause (utterances and their previous utterances)
        # that passes the gate; a long utterance's sentences are embedded only where they pass it
        unique: dict[str, list[str] | None] = {}
        for t in clean + prevs:
            if t is not None and t not in unique:
                if self._passes_gate(t):
                    unique[t] = self._parts(t)
                else:
                    unique[t] = None
        flat = sorted({x for segs in unique.values() if segs for x in segs})
        feats = dict(zip(flat, self._features(flat)))
        readings: dict[str, RiskReading] = {}
        for t, segs in unique.items():
            readings[t] = self._reading(t, [feats[x] for x in segs], self._lex(t)) if segs else self._gated(t)
        out = [readings[t] if t is not None else _empty(self.id, "none") for t in clean]
        # context: read the pair where either part comes near the threshold, and only where the
        # current utterance has content of its own (a backchannel never inherits a flag)
        gate = float(self.classifier.get("context_gate", 0.5)) * float(self.classifier["threshold"])
        pairs = {}
        for i, (t, p) in enumerate(zip(clean, prevs)):
            if t is None or p is None or p == t:
                continue
            own, before = readings[t], readings[p]
            if not (own.flag or (before.score or 0) >= gate) or not may_take_context(t):
                continue  # (the cheap test first: most previous utterances carry no risk at all)
            # the pair is read only where it can change the reading: the previous utterance carries
            # some risk (it may raise this one), or this one is flagged, short and ambiguous after
            # an ordinary one (it may clear it); a pair of two ordinary utterances is never embedded
            clears = own.flag and _ambiguous(t, own) and not before.flag
            if own.flag and own.level == "high" and not clears:
                continue  # already flagged at the top level: the pair could change nothing
            if (before.score or 0) >= gate or clears:
                pairs[i] = f"{_context_part(p, unique.get(p), feats)} {_opening(t)}"
        if pairs:
            joint = sorted(set(pairs.values()))
            jfeat = dict(zip(joint, self._features(joint)))
            # the current utterance alone ("what kind of risk is it") matters only where the pair
            # is flagged: a gated-out utterance is embedded for that, and only then
            thr = float(self.classifier["threshold"])
            alone = sorted({_opening(clean[i]) for i, pair in pairs.items() if unique.get(clean[i]) is None and jfeat[pair].prob >= thr})
            jfeat.update(zip(alone, self._features(alone)))
            delta = float(self.classifier.get("context_delta", 0.0))
            for i, pair in pairs.items():
                t, p = clean[i], prevs[i]
                own, before = out[i], readings[p]
                segs = unique.get(t)
                own_row = feats.get(t) or (max((feats[x] for x in segs), key=lambda f: f.prob) if segs else jfeat.get(_opening(t)))
                r = self._reading(pair, [jfeat[pair]], self._lex(t), own=own_row)
                adds = r.max_pos > before.max_pos + delta or LEVELS.index(r.level or "none") > LEVELS.index(before.level or "none")
                if r.flag and adds and (not own.flag or LEVELS.index(r.level or "none") > LEVELS.index(own.level or "none")):
                    # only where the pair changes the reading: a flag, or a higher level
                    r.score = max(r.score or 0.0, own.score or 0.0)
                    r.terms = own.terms
                    r.evidence.insert(0, f"context: read with the previous patient utterance: {p}")
                    r.context_used = True
                    out[i] = r
                elif own.flag and _ambiguous(t, own) and not before.flag and (before.score or 0) < gate and (r.score or 0) < (own.score or 0):
                    # a short statement with no risk word of its own ("I've got the pills ready.") after a
                    # clearly ordinary one ("My cough is really bad."), which reads less risky
                    # with it, is cleared; the evidence keeps what it would have been flagged for
                    out[i] = RiskReading(
                        False, "none", [], r.score,
                        [f"context: cleared, read with the previous patient utterance: {p}"] + own.evidence,
                        own.screen, own.terms, [], True, r.max_pos,
                    )
        return out


AMBIGUOUS_MAX_WORDS = 6
OPENING_MAX_WORDS = 24
CONTEXT_MAX_WORDS = 40  # of the previous utterance read with the current one: its end, so the pair is never cut before the current one


def _context_part(previous: str, segs: list[str] | None, feats: dict[str, _Row]) -> str:
    """What of the previous utterance is read with the current one: the part that carries its
    risk (the highest-scoring of the previous utterance and its sentences), at most its last
    CONTEXT_MAX_WORDS words. A long previous turn would otherwise fill the pair and be cut off by
    the tokenizer before the current utterance."""
    part = previous
    if segs and segs != [previous]:
        part = max(segs, key=lambda x: feats[x].prob if x in feats else -1.0)
    ws = part.split()
    return part if len(ws) <= CONTEXT_MAX_WORDS else " ".join(ws[-CONTEXT_MAX_WORDS:])


def _opening(text: str) -> str:
    """What of the current utterance is read with the previous one: all of it when it is short;
    of a long one (SEGMENT_MIN_WORDS words, several sentences), its opening sentences up to
    OPENING_MAX_WORDS words (at least the first sentence, cut there). The opening is what answers
    the turn before ("Yes. I have been thinking about it."); its later sentences are read alone."""
    if len(_WORD_RE.findall(text)) < SEGMENT_MIN_WORDS or OPENING_MAX_WORDS <= 0:
        return text
    sentences = [p.strip() for p in _SEGMENT_RE.split(text) if p and p.strip()]
    if len(sentences) <= 1:
        return text
    out: list[str] = []
    n = 0
    for sent in sentences:
        k = len(sent.split())
        if out and n + k > OPENING_MAX_WORDS:
            break
        out.append(sent)
        n += k
    ws = " ".join(out).split()
    return " ".join(ws[:OPENING_MAX_WORDS])


def _ambiguous(text: str, reading: RiskReading) -> bool:
    """Short and without a risk term of its own: its meaning depends on what came before."""
    return len(_WORD_RE.findall(text)) <= AMBIGUOUS_MAX_WORDS and not any(not t.endswith("[negated]") for t in reading.terms)


def _text_or_none(text: object) -> str | None:
    if text is None:
        return None
    try:
        import pandas as pd

        if pd.isna(text):
            return None
    except (TypeError, ValueError):
        pass
    s = str(text)
    return s if s.strip() else None


def _empty(screen_id: str, level: str | None) -> RiskReading:
    return RiskReading(False, level, [], None if level is None else 0.0, [], screen_id)


def _load_classifier(classifier: dict | str | Path | None) -> dict:
    if isinstance(classifier, dict):
        data, source = classifier, "<dict>"
    else:
        if classifier is None:
            text, source = resources.files("emoguide.risk").joinpath("model.json").read_text("utf-8"), "emoguide/risk/model.json"
        else:
            source = str(classifier)
            text = Path(classifier).read_text("utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not valid JSON: {exc}") from exc
    kind = data.get("kind", "logistic")
    need = ("mean", "scale", "coef", "intercept", "threshold") if kind == "logistic" else ("trees", "baseline", "threshold")
    missing = [k for k in need if k not in data]
    if kind not in ("logistic", "gbm") or missing:
        raise ValueError(f"{source}: classifier lacks {missing}" if missing else f"{source}: classifier kind {kind!r} is not logistic or gbm")
    if list(data.get("features", FEATURES)) != list(FEATURES) or (kind == "logistic" and len(data["coef"]) != len(FEATURES)):
        raise ValueError(f"{source}: classifier features {data.get('features')} do not match {list(FEATURES)}; refit with python -m emoguide.risk.fit")
    probe = data.get("probe")
    if probe is not None and len(probe.get("coef", [])) != 384:
        raise ValueError(f"{source}: probe.coef must hold 384 weights (one per embedding dimension)")
    if kind == "gbm":
        data = dict(data)
        data["_trees"] = [
            tuple(np.asarray(t[k], dtype=dt) for k, dt in (("feature", np.int64), ("threshold", np.float64), ("left", np.int64),
                                                            ("right", np.int64), ("leaf", bool), ("value", np.float64)))
            for t in data["trees"]
        ]
    return data


def predict_proba(classifier: dict, X: np.ndarray) -> np.ndarray:
    """The classifier's probability of risk for feature rows `X` (n x len(FEATURES)): a logistic
    regression, or gradient-boosted trees (sklearn HistGradientBoosting, stored as node arrays)."""
    if X.shape[0] == 0:
        return np.zeros(0)
    if classifier.get("kind", "logistic") == "logistic":
        mean, scale, coef = (np.asarray(classifier[k], dtype=np.float64) for k in ("mean", "scale", "coef"))
        z = ((X - mean) / scale) @ coef + float(classifier["intercept"])
    else:
        z = np.full(X.shape[0], float(classifier["baseline"]))
        rows = np.arange(X.shape[0])
        for feature, threshold, left, right, leaf, value in classifier["_trees"]:
            node = np.zeros(X.shape[0], dtype=np.int64)
            while True:
                inner = ~leaf[node]
                if not inner.any():
                    break
                f = feature[node]
                go_left = X[rows, f] <= threshold[node]
                node = np.where(inner, np.where(go_left, left[node], right[node]), node)
            z += value[node]
    return 1.0 / (1.0 + np.exp(-z))


def _bank_embeddings(bank: Bank, embedder: Embedder) -> np.ndarray:
    """Bank embeddings: shipped with the package for the packaged bank and model (so the first
    screen is fast), cached under ~/.cache/emoguide/risk otherwise."""
    key = hashlib.sha256(f"{bank.digest}|{embedder.identity}".encode()).hexdigest()
    shipped = resources.files("emoguide.risk").joinpath("bank_embeddings.npz")
    try:
        with shipped.open("rb") as fh:
            z = np.load(fh)
            if str(z["key"]) == key:
                return z["emb"].astype(np.float32)
    except (FileNotFoundError, KeyError, ValueError, OSError):
        pass
    cached = cache_dir() / f"{key[:24]}.npy"
    if cached.is_file():
        try:
            return np.load(cached).astype(np.float32)
        except (ValueError, OSError):
            pass
    emb = embedder.encode(bank.texts).astype(np.float16).astype(np.float32)  # as shipped and cached: float16
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npy")
        np.save(tmp, emb.astype(np.float16))
        os.replace(tmp, cached)
    except OSError:
        pass
    return emb


def write_shipped_embeddings(bank: Bank, embedder: Embedder, path: Path) -> None:
    """Write bank_embeddings.npz for the package (emoguide.risk.fit does this)."""
    key = hashlib.sha256(f"{bank.digest}|{embedder.identity}".encode()).hexdigest()
    np.savez_compressed(path, emb=embedder.encode(bank.texts).astype(np.float16), key=np.array(key))
