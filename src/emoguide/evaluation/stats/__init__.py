"""`emoguide stats`: the paper's analysis of the rating study, reproduced, and the analysis such
data need (a mixed model with crossed rater and context effects), agreement, judge vs experts,
figures and a report.

Modules: `load` (ratings and judgments tables, validated), `models` (paper ANOVA/Tukey, mixed
model, ordinal check), `descriptive` (means, improvement over base, rater groups), `agreement`
(kappa, Krippendorff's alpha, ICC), `judge_vs_experts`, `figures`, `report`, `run` (all of it).
`dataset`, `simulate` and `power` cover Table 1, the dataset figures and study sizing.
Heavy libraries (scipy, statsmodels, pingouin, krippendorff, scikit-learn, matplotlib: the
"stats" extra) are imported inside the functions that use them.
"""

from __future__ import annotations

__all__ = ["run_stats"]


def run_stats(*args, **kwargs):
    """See `emoguide.evaluation.stats.run.run_stats` (imported lazily)."""
    from emoguide.evaluation.stats.run import run_stats as _run

    return _run(*args, **kwargs)
