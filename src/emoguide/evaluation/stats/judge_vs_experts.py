"""The judge against the experts (the paper's Table 3), with the human ceiling beside it.

Per criterion and judge model: the judge's score per response (its expected score where it
returned probabilities, else its score) against the mean expert score of that response; Pearson
r, Spearman rho, Kendall tau-b (ties), a 95% CI for r by resampling contexts, and the mean
difference judge - experts (leniency). The human ceiling: each expert against the mean of the
*other* experts on the responses they share, `judge_model = "expert:<rater_id>"`. A judge that
beats the ceiling is agreeing with the crowd more than the experts agree with each other, which
is worth a second look rather than a celebration.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from emoguide.errors import require
from emoguide.evaluation.stats.agreement import first_ratings
from emoguide.evaluation.stats.descriptive import DEFAULT_SEED, percentile_ci
from emoguide.evaluation.stats.load import criteria_in

JUDGE_COLUMNS = ("criterion", "judge_model", "pearson_r", "spearman_rho", "kendall_tau", "r_ci_low", "r_ci_high",
                 "n_items", "mean_diff")


def _corr(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    stats = require("scipy.stats", "stats")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return (np.nan, np.nan, np.nan)  # undefined: too few items or a constant series
    return (float(stats.pearsonr(x, y).statistic), float(stats.spearmanr(x, y).statistic),
            float(stats.kendalltau(x, y, variant="b").statistic))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(np.corrcoef(x, y)[0, 1])


def _row(criterion: str, name: str, pairs: pd.DataFrame, n_resamples: int, rng) -> dict:
    """pairs: columns x (judge or expert), y (reference mean), context."""
    x, y = pairs["x"].to_numpy(float), pairs["y"].to_numpy(float)
    r, rho, tau = _corr(x, y)
    lo = hi = np.nan
    codes, uniq = pd.factorize(pairs["context"])
    if np.isfinite(r) and len(uniq) > 1:
        members = [np.flatnonzero(codes == k) for k in range(len(uniq))]
        boots = []
        for _ in range(n_resamples):
            idx = np.concatenate([members[k] for k in rng.integers(0, len(uniq), len(uniq))])
            boots.append(_pearson(x[idx], y[idx]))
        lo, hi = percentile_ci(np.array(boots))
    return {"criterion": criterion, "judge_model": name, "pearson_r": r, "spearman_rho": rho, "kendall_tau": tau,
            "r_ci_low": lo, "r_ci_high": hi, "n_items": int(len(pairs)),
            "mean_diff": float(np.mean(x - y)) if len(pairs) else np.nan}


def expert_means(ratings: pd.DataFrame) -> pd.DataFrame:
    """Mean expert score per criterion x response (first ratings only): criterion, response,
    context, expert_mean, n_experts."""
    first = first_ratings(ratings)
    g = first.groupby(["criterion", "response"], observed=True)
    out = g.agg(context=("context", "first"), expert_mean=("score", "mean"), n_experts=("score", "size"))
    return out.reset_index()


def judge_pairs(ratings: pd.DataFrame, judgments: pd.DataFrame) -> pd.DataFrame:
    """Per criterion x judge_model x response: judge value and expert mean (the Bland-Altman data)."""
    em = expert_means(ratings)
    jm = judgments.groupby(["criterion", "judge_model", "response"], observed=True)["value"].mean().reset_index()
    out = jm.merge(em, on=["criterion", "response"], how="inner")
    order = {c: k for k, c in enumerate(criteria_in(ratings))}  # the paper's criterion order, not alphabetical
    return out.sort_values(["criterion", "judge_model"], key=lambda s: s.map(order) if s.name == "criterion" else s,
                           kind="stable").reset_index(drop=True)


def judge_vs_experts(ratings: pd.DataFrame, judgments: pd.DataFrame | None, n_resamples: int = 1000,
                     seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Rows per criterion: each judge model, then each expert against the others (the ceiling)."""
    rng = np.random.default_rng(seed)
    rows = []
    pairs = judge_pairs(ratings, judgments) if judgments is not None and len(judgments) else None
    first = first_ratings(ratings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant bootstrap draws give null r, counted out
        for crit in criteria_in(ratings):
            if pairs is not None:
                cp = pairs[pairs["criterion"] == crit]
                for judge in sorted(cp["judge_model"].astype(str).unique()):
                    jp = cp[cp["judge_model"] == judge]
                    rows.append(_row(crit, judge, pd.DataFrame({"x": jp["value"], "y": jp["expert_mean"],
                                                                "context": jp["context"]}), n_resamples, rng))
            cf = first[first["criterion"] == crit]
            m = cf.pivot(index="response", columns="rater_id", values="score")
            ctx = cf.drop_duplicates("response").set_index("response")["context"].reindex(m.index)
            if m.shape[1] < 2:
                continue
            for rater in sorted(m.columns, key=str):
                others = m.drop(columns=[rater])
                mask = m[rater].notna() & others.notna().any(axis=1)
                if mask.sum() < 3:
                    continue
                pe = pd.DataFrame({"x": m.loc[mask, rater], "y": others[mask].mean(axis=1), "context": ctx[mask]})
                rows.append(_row(crit, f"expert:{rater}", pe, n_resamples, rng))
    return pd.DataFrame(rows, columns=list(JUDGE_COLUMNS))
