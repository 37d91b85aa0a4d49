"""Inter-rater agreement (Krippendorff's alpha, ordinal) and rater quality checks for the dashboard.

Alpha comes from the `krippendorff` package (the reference implementation by its author's
group), not hand-written: it handles missing values and the ordinal distance metric.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from emoguide.errors import require
from emoguide.evaluation.criteria import Criterion


def reliability_matrix(scores: Iterable[tuple[str, str, int]]) -> tuple[list[str], list[str], list[list[float]]]:
    """(rater, item, score) triples -> raters, items (with >= 2 raters), raters x items with nan."""
    by_item: dict[str, dict[str, int]] = {}
    for rater, item, score in scores:
        by_item.setdefault(item, {})[rater] = score
    items = sorted(i for i, r in by_item.items() if len(r) >= 2)
    raters = sorted({r for i in items for r in by_item[i]})
    matrix = [[float(by_item[i].get(r, math.nan)) for i in items] for r in raters]
    return raters, items, matrix


def alpha_ordinal(matrix: Sequence[Sequence[float]], scale: Sequence[int]) -> float | None:
    """Krippendorff's alpha, ordinal; None when undefined (no overlap, or no variation at all)."""
    if not matrix or not matrix[0]:
        return None
    krippendorff = require("krippendorff", "rating", "Krippendorff's alpha on the dashboard")
    np = require("numpy", "rating")
    data = np.asarray(matrix, dtype=float)
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    if not pairable.any():
        return None
    values = data[~np.isnan(data)]
    if len(np.unique(values)) < 2:
        return None  # no variation: expected disagreement is 0, alpha is 0/0
    try:
        value = krippendorff.alpha(
            reliability_data=data, value_domain=list(scale), level_of_measurement="ordinal"
        )
    except (ValueError, ZeroDivisionError):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def agreement_by_criterion(
    scores: Iterable[tuple[str, str, str, int]], criteria: list[Criterion]
) -> list[dict]:
    """(rater, item, criterion, score) -> [{criterion, alpha_ordinal, n_items}] in criteria order."""
    per: dict[str, list[tuple[str, str, int]]] = {c.name: [] for c in criteria}
    for rater, item, crit, score in scores:
        if crit in per:
            per[crit].append((rater, item, score))
    out = []
    for c in criteria:
        _, items, matrix = reliability_matrix(per[c.name])
        out.append({
            "criterion": c.name,
            "alpha_ordinal": alpha_ordinal(matrix, c.scale) if items else None,
            "n_items": len(items),
        })
    return out


def is_straight_lining(items: list[dict[str, int]], min_items: int = 5) -> bool:
    """True when a rater's complete items (each {criterion: score}) show no variance per criterion.

    Needs at least `min_items` complete items; every criterion taking one single value across all
    items counts (which includes the same score on every criterion of every item).
    """
    if len(items) < min_items:
        return False
    names = set().union(*items)
    return all(len({i[n] for i in items if n in i}) == 1 for n in names)
