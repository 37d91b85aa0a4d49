"""Means per criterion x model x condition, the improvement over base, rater groups.

Confidence intervals come from a cluster bootstrap over contexts (the paper's "videos"): whole
contexts are drawn with replacement, with all their ratings, so that ratings of the same context
are not treated as independent. This is hand-written because `scipy.stats.bootstrap` resamples
observations, not clusters (it has no cluster option). The bootstrap is done with multinomial
weights on per-context sums and counts, which is exact and fast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emoguide.evaluation.stats.load import condition_order, criteria_in

MEANS_COLUMNS = ("criterion", "model", "condition", "n", "mean", "sd", "ci_low", "ci_high")
IMPROVEMENT_COLUMNS = ("criterion", "model", "condition", "n_contexts", "diff", "ci_low", "ci_high")
GROUPS_COLUMNS = ("criterion", "group", "n", "mean", "sd")

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 20241201


def cluster_weights(n_clusters: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n_clusters) counts: how often each cluster is drawn in each resample."""
    if n_clusters == 0:
        return np.zeros((n_resamples, 0))
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_resamples).astype(float)


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return (np.nan, np.nan)
    a = (1 - level) / 2
    return float(np.quantile(v, a)), float(np.quantile(v, 1 - a))


def _context_sums(sub: pd.DataFrame, contexts: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    g = sub.groupby("context", observed=True)["score"]
    sums = g.sum().reindex(contexts, fill_value=0.0).to_numpy(float)
    counts = g.count().reindex(contexts, fill_value=0).to_numpy(float)
    return sums, counts


def _boot_means(sums: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    num, den = weights @ sums, weights @ counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def means_table(df: pd.DataFrame, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Mean rating per criterion x model x condition with a 95% cluster-bootstrap CI (contexts)."""
    rng = np.random.default_rng(seed)
    rows = []
    for crit in criteria_in(df):
        cdf = df[df["criterion"] == crit]
        for model in sorted(cdf["model"].dropna().astype(str).unique()):
            mdf = cdf[cdf["model"] == model]
            contexts = pd.Index(sorted(mdf["context"].unique()))
            weights = cluster_weights(len(contexts), n_resamples, rng)
            for cond in condition_order(mdf["condition"]):
                sub = mdf[mdf["condition"] == cond]
                x = sub["score"].to_numpy(float)
                sums, counts = _context_sums(sub, contexts)
                lo, hi = percentile_ci(_boot_means(sums, counts, weights)) if sub["context"].nunique() > 1 else (np.nan, np.nan)
                rows.append({"criterion": crit, "model": model, "condition": cond, "n": int(len(x)),
                             "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else np.nan,
                             "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=list(MEANS_COLUMNS))


def improvement_table(df: pd.DataFrame, reference: str = "base", n_resamples: int = DEFAULT_RESAMPLES,
                      seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Per criterion x model: mean(condition) - mean(reference) with a 95% CI from resampling
    contexts jointly for both conditions (so the pairing by context is kept)."""
    rng = np.random.default_rng(seed + 1)
    rows = []
    for crit in criteria_in(df):
        cdf = df[df["criterion"] == crit]
        for model in sorted(cdf["model"].dropna().astype(str).unique()):
            mdf = cdf[cdf["model"] == model]
            if reference not in set(mdf["condition"]):
                continue
            base = mdf[mdf["condition"] == reference]
            for cond in condition_order(mdf["condition"]):
                if cond == reference:
                    continue
                sub = mdf[mdf["condition"] == cond]
                # Contexts rated in both conditions: the difference is within context.
                shared = pd.Index(sorted(set(sub["context"]) & set(base["context"])))
                if not len(shared):
                    continue
                s_c, n_c = _context_sums(sub[sub["context"].isin(shared)], shared)
                s_b, n_b = _context_sums(base[base["context"].isin(shared)], shared)
                diff = s_c.sum() / n_c.sum() - s_b.sum() / n_b.sum()
                lo = hi = np.nan
                if len(shared) > 1:
                    w = cluster_weights(len(shared), n_resamples, rng)
                    lo, hi = percentile_ci(_boot_means(s_c, n_c, w) - _boot_means(s_b, n_b, w))
                rows.append({"criterion": crit, "model": model, "condition": cond, "n_contexts": int(len(shared)),
                             "diff": float(diff), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=list(IMPROVEMENT_COLUMNS))


def groups_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean rating per criterion x rater group (the paper's 3.20 vs 3.88); no group: "(none)"."""
    rows = []
    group = df["rater_group"].astype("string").fillna("(none)").replace("", "(none)")
    for crit in criteria_in(df):
        mask = df["criterion"] == crit
        for g in sorted(group[mask].unique()):
            x = df.loc[mask & (group == g), "score"].to_numpy(float)
            rows.append({"criterion": crit, "group": str(g), "n": int(len(x)), "mean": float(x.mean()),
                         "sd": float(x.std(ddof=1)) if len(x) > 1 else np.nan})
    return pd.DataFrame(rows, columns=list(GROUPS_COLUMNS))


def rater_means(df: pd.DataFrame, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Per criterion x rater: group, n, mean and a context-bootstrap CI (rater leniency)."""
    rng = np.random.default_rng(seed + 2)
    rows = []
    for crit in criteria_in(df):
        cdf = df[df["criterion"] == crit]
        for rater in sorted(cdf["rater_id"].astype(str).unique()):
            sub = cdf[cdf["rater_id"] == rater]
            contexts = pd.Index(sorted(sub["context"].unique()))
            sums, counts = _context_sums(sub, contexts)
            lo, hi = percentile_ci(_boot_means(sums, counts, cluster_weights(len(contexts), n_resamples, rng))) \
                if len(contexts) > 1 else (np.nan, np.nan)
            grp = sub["rater_group"].dropna()
            rows.append({"criterion": crit, "rater_id": rater, "group": str(grp.iloc[0]) if len(grp) else None,
                         "n": int(len(sub)), "mean": float(sub["score"].mean()), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["criterion", "rater_id", "group", "n", "mean", "ci_low", "ci_high"])
