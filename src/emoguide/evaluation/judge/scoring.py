"""A judge score as a distribution: from token log-probabilities, or from n samples.

Log-probabilities (G-Eval's probability-weighted score): at the position of the score token, the
probabilities of the tokens "1".."5" (whitespace-insensitive, so "4" and " 4" are one score) are
kept and renormalised to sum to 1; the expected score is sum(k * p_k) and the score is the most
likely k. The score token is the first generated token that is a score; when the answer holds
none (a weak model writes "The therapist's response is..."), the first token's alternatives are
read instead, since the score-first form puts the score there, and the row says so
(``score_in_answer`` False, and ``mass`` shows how little of the probability was on scores). Scores outside the returned top-k alternatives get probability 0: their mass is
unknown but below the smallest alternative shown. How much of the model's probability fell on
valid scores at all (``mass``) is kept too, since a judge putting 5% of its mass on scores is
not saying much.

Sampling: n answers at temperature about 1, each parsed for its score; mean, standard deviation
and the empirical distribution are kept.

Hand-written rather than taken from DeepEval or promptfoo: their G-Eval scorers fall back to a
parsed integer when logprobs are missing (DeepEval #1029), which is exactly the silent fallback
this module must not have, and pulling either in for twenty lines of arithmetic is not worth it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Sequence

from emoguide.llm.base import TokenLogprob

METHODS = ("logprobs", "sampling")


class ScoreError(Exception):
    """The answer holds no score (``kind`` says why, for the row's error_kind)."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        self.message = message
        super().__init__(f"{kind}: {message}")


@dataclass
class Score:
    method: str  # logprobs | sampling
    score: int  # most likely (logprobs) or most frequent (sampling) score
    expected: float  # sum k p_k (logprobs) or the sample mean (sampling)
    probs: dict[int, float]  # every scale point, summing to 1
    sd: float | None = None  # spread: sd of the distribution (logprobs) or of the samples
    n_samples: int | None = None  # parsed samples (sampling); None for logprobs
    n_unparseable: int = 0  # samples without a score (sampling)
    mass: float | None = None  # raw probability on valid score tokens (logprobs)
    token_index: int | None = None  # position of the score token in the answer (logprobs)
    in_answer: bool | None = None  # the answer itself wrote a score (logprobs); see from_logprobs
    samples: list[int | None] = field(default_factory=list)

    def probs_json(self) -> str:
        return json.dumps({str(k): round(float(v), 6) for k, v in sorted(self.probs.items())})


def _as_score(token: str, scale: Sequence[int]) -> int | None:
    text = token.strip()
    if text.isdigit() and len(text) == len(str(int(text))) and int(text) in scale:
        return int(text)
    return None


def score_token_index(logprobs: list[TokenLogprob], scale: Sequence[int]) -> int | None:
    """Index of the first generated token that is a score on the scale (not a digit of a longer
    number such as "10"), or None."""
    for i, entry in enumerate(logprobs):
        if _as_score(entry["token"], scale) is None:
            continue
        nxt = logprobs[i + 1]["token"] if i + 1 < len(logprobs) else ""
        prev = logprobs[i - 1]["token"] if i > 0 else ""
        if (nxt[:1].isdigit()) or (prev[-1:].isdigit() and not entry["token"][:1].isspace()):
            continue  # part of a longer number
        return i
    return None


def from_logprobs(logprobs: list[TokenLogprob] | None, scale: Sequence[int], text: str = "") -> Score:
    """The renormalised distribution over the scale at the score token."""
    scale = list(scale)
    if max(scale) > 9 or min(scale) < 0:
        raise ScoreError("config", f"scale {scale[0]}-{scale[-1]}: logprobs need single-digit scores; use --method sampling")
    if logprobs is None:
        raise ScoreError("no_logprobs", "the backend returned no log-probabilities")
    idx = score_token_index(logprobs, scale)
    in_answer = idx is not None
    if idx is None and logprobs and any(_as_score(t, scale) is not None for t in logprobs[0]["top_logprobs"]):
        # The answer holds no score, but the score-first form puts the score at the first
        # token, and scores are among its alternatives: read them there (G-Eval's reading of
        # the score position), and say so on the row (in_answer False, a small mass).
        idx = 0
    if idx is None:
        short = " ".join(text.split())[:120]
        raise ScoreError(
            "unparseable",
            f"no score token {scale[0]}-{scale[-1]} in the answer {short!r}, nor among the first "
            "token's alternatives",
        )
    entry = logprobs[idx]
    logp: dict[int, float] = {}
    alternatives = dict(entry["top_logprobs"])
    alternatives.setdefault(entry["token"], entry["logprob"])  # the chosen one is always there
    for token, lp in alternatives.items():
        k = _as_score(token, scale)
        if k is None or lp is None or math.isnan(lp):
            continue
        logp[k] = lp if k not in logp else _logaddexp(logp[k], lp)
    top = max(logp.values())
    raw = {k: math.exp(v - top) for k, v in logp.items()}
    total = sum(raw.values())
    probs = {k: raw.get(k, 0.0) / total for k in scale}
    mass = math.exp(top) * total
    expected = sum(k * p for k, p in probs.items())
    var = sum(p * (k - expected) ** 2 for k, p in probs.items())
    best = max(scale, key=lambda k: (probs[k], -abs(k - expected)))
    return Score(
        method="logprobs",
        score=best,
        expected=expected,
        probs=probs,
        sd=math.sqrt(max(var, 0.0)),
        mass=min(1.0, mass),
        token_index=idx,
        in_answer=in_answer,
    )


_NUMBER = re.compile(r"(?<![\d.])(\d+)(?![\d])")


def parse_score(text: str, scale: Sequence[int]) -> int | None:
    """The first number in the answer when it lies on the scale, else None (strict: "10" on a
    1-5 scale, or no number at all, is unparseable rather than clipped)."""
    m = _NUMBER.search(text or "")
    if not m:
        return None
    value = int(m.group(1))
    return value if value in scale else None


def from_samples(texts: list[str], scale: Sequence[int]) -> Score:
    """Mean, sd and empirical distribution of the parsed samples."""
    scale = list(scale)
    parsed = [parse_score(t, scale) for t in texts]
    scores = [s for s in parsed if s is not None]
    if not scores:
        example = " ".join((texts[0] if texts else "").split())[:120]
        raise ScoreError(
            "unparseable", f"none of the {len(texts)} samples holds a score {scale[0]}-{scale[-1]} (e.g. {example!r})"
        )
    n = len(scores)
    mean = sum(scores) / n
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1)) if n > 1 else None
    probs = {k: scores.count(k) / n for k in scale}
    best = max(scale, key=lambda k: (probs[k], -abs(k - mean), -k))
    return Score(
        method="sampling",
        score=best,
        expected=mean,
        probs=probs,
        sd=sd,
        n_samples=n,
        n_unparseable=len(texts) - n,
        samples=parsed,
    )


def _logaddexp(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))
