"""Agreement between raters, per criterion, on the responses that several raters scored.

* `kappa_table` — pairwise Cohen's kappa, unweighted (as the paper's Figure 6) and
  quadratic-weighted (the ordinal one), `sklearn.metrics.cohen_kappa_score` with the scale
  passed as `labels`, so unused categories still count.
* `agreement_table` — Krippendorff's alpha at the *ordinal* level (`krippendorff.alpha`; its
  default level is interval, and without `value_domain` unused categories are dropped, so both
  are passed), with a 95% CI from resampling contexts, and pingouin's ICC(2,1) and ICC(2,k)
  (two-way random, absolute agreement; pingouin >= 0.7 labels them ICC(A,1)/ICC(A,k), older
  releases ICC2/ICC2k) on the largest complete block of responses x raters.

Retest ratings (`is_retest`) are left out: each rater's first rating of a response counts.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import pandas as pd

from emoguide.errors import require
from emoguide.evaluation.stats.descriptive import DEFAULT_SEED, percentile_ci
from emoguide.evaluation.stats.load import criteria_in

KAPPA_COLUMNS = ("criterion", "rater1", "rater2", "kappa", "kappa_quadratic", "n")
AGREEMENT_COLUMNS = ("criterion", "alpha_ordinal", "alpha_ci_low", "alpha_ci_high", "icc2_1", "icc2_k",
                     "n_items", "n_raters")
ICC_LABELS = {"icc2_1": ("ICC(A,1)", "ICC2"), "icc2_k": ("ICC(A,k)", "ICC2k")}


def _truthy(series: pd.Series) -> pd.Series:
    if series.dtype == bool or str(series.dtype) == "boolean":
        return series.fillna(False).astype(bool)
    return series.astype("string").str.strip().str.lower().isin(["true", "1", "yes", "t"]).fillna(False)


def first_ratings(df: pd.DataFrame) -> pd.DataFrame:
    """One rating per criterion x rater x response: retests dropped, then the earliest row."""
    out = df
    if "is_retest" in out.columns:
        out = out[~_truthy(out["is_retest"])]
    if "created_at" in out.columns:
        out = out.sort_values("created_at", kind="stable")
    return out.drop_duplicates(["criterion", "rater_id", "response"], keep="first")


def score_matrix(df: pd.DataFrame, criterion: str) -> pd.DataFrame:
    """Responses x raters (NaN where a rater did not score a response), for one criterion."""
    sub = first_ratings(df[df["criterion"] == criterion])
    return sub.pivot(index="response", columns="rater_id", values="score")


def default_scale(df: pd.DataFrame) -> list[int]:
    """The paper's 1-5 scale, widened if the data hold scores outside it."""
    lo = min(1, int(np.floor(df["score"].min())))
    hi = max(5, int(np.ceil(df["score"].max())))
    return list(range(lo, hi + 1))


def cohen_kappa(y1: Sequence, y2: Sequence, scale: Sequence[int], weights: str | None = None) -> float:
    """Cohen's kappa over the given scale (null when undefined, e.g. both raters constant)."""
    require("sklearn", "stats", "pip install scikit-learn")
    from sklearn.metrics import cohen_kappa_score
    import warnings

    with warnings.catch_warnings():
        # 0/0 (both raters always give the same single score) is reported as null, not a warning.
        warnings.simplefilter("ignore")
        k = cohen_kappa_score(np.asarray(y1), np.asarray(y2), labels=list(scale), weights=weights)
    return float(k) if np.isfinite(k) else np.nan


def kappa_table(df: pd.DataFrame, scale: Sequence[int] | None = None, min_items: int = 2) -> pd.DataFrame:
    """Pairwise kappa per criterion, for every rater pair with at least `min_items` shared responses."""
    scale = list(scale) if scale is not None else default_scale(df)
    rows = []
    for crit in criteria_in(df):
        m = score_matrix(df, crit)
        for r1, r2 in itertools.combinations(sorted(m.columns, key=str), 2):
            both = m[[r1, r2]].dropna()
            if len(both) < min_items:
                continue
            y1, y2 = both[r1].round().astype(int), both[r2].round().astype(int)
            rows.append({"criterion": crit, "rater1": str(r1), "rater2": str(r2),
                         "kappa": cohen_kappa(y1, y2, scale), "kappa_quadratic": cohen_kappa(y1, y2, scale, "quadratic"),
                         "n": int(len(both))})
    return pd.DataFrame(rows, columns=list(KAPPA_COLUMNS))


def krippendorff_alpha(matrix: np.ndarray, scale: Sequence[int], level: str = "ordinal") -> float:
    """Alpha of a raters x units matrix (NaN = missing) at `level`, over the full `scale`."""
    kd = require("krippendorff", "stats")
    return float(kd.alpha(reliability_data=np.asarray(matrix, float), value_domain=list(scale),
                          level_of_measurement=level))


def _value_counts(m: pd.DataFrame, scale: Sequence[int]) -> np.ndarray:
    """Units x values counts (what krippendorff.alpha accepts as `value_counts`)."""
    vals = m.to_numpy(float)
    return np.stack([(vals == v).sum(axis=1) for v in scale], axis=1).astype(float)


def alpha_with_ci(m: pd.DataFrame, contexts: pd.Series, scale: Sequence[int], n_resamples: int = 1000,
                  seed: int = DEFAULT_SEED) -> tuple[float, float, float]:
    """Ordinal alpha of a responses x raters matrix, 95% CI by resampling contexts (whole
    contexts, with all their responses, drawn with replacement)."""
    kd = require("krippendorff", "stats")
    counts = _value_counts(m, scale)
    pairable = counts.sum(axis=1) >= 2
    counts, ctx = counts[pairable], contexts.to_numpy()[pairable]
    if not len(counts):
        return (np.nan, np.nan, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):  # no variation at all: alpha is null
        est = float(kd.alpha(value_counts=counts, value_domain=list(scale), level_of_measurement="ordinal"))
    codes, uniq = pd.factorize(ctx)
    if len(uniq) < 2:
        return (est, np.nan, np.nan)
    members = [np.flatnonzero(codes == k) for k in range(len(uniq))]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_resamples):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(uniq), len(uniq))])
        sample = counts[idx]
        if (sample.sum(axis=0) > 0).sum() < 2:  # one value only: alpha undefined
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            boots.append(kd.alpha(value_counts=sample, value_domain=list(scale), level_of_measurement="ordinal"))
    lo, hi = percentile_ci(np.array(boots))
    return est, lo, hi


def complete_block(m: pd.DataFrame, min_items: int = 3) -> pd.DataFrame:
    """The largest complete responses x raters block: most raters first, then most responses,
    among the rater sets that occur in the data (an overlap design assigns items to rater sets)."""
    rated = m.notna()
    best: tuple[int, int, tuple] | None = None
    for key in {tuple(r) for r in rated.to_numpy()}:
        raters = tuple(c for c, on in zip(m.columns, key) if on)
        if len(raters) < 2:
            continue
        n_items = int(rated[list(raters)].all(axis=1).sum())
        if n_items < min_items:
            continue
        cand = (len(raters), n_items, raters)
        if best is None or cand[:2] > best[:2]:
            best = cand
    if best is None:
        return m.iloc[0:0, 0:0]
    raters = list(best[2])
    return m.loc[rated[raters].all(axis=1), raters]


def icc(block: pd.DataFrame) -> dict[str, float]:
    """ICC(2,1) and ICC(2,k) of a complete responses x raters block (pingouin.intraclass_corr)."""
    pg = require("pingouin", "stats")
    long = block.rename_axis("target").reset_index().melt(id_vars="target", var_name="rater", value_name="score")
    import warnings

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # constant ratings: ICC is null (0/0)
        table = pg.intraclass_corr(data=long, targets="target", raters="rater", ratings="score", nan_policy="raise")
    by_type = table.set_index("Type")["ICC"]
    out = {}
    for key, labels in ICC_LABELS.items():
        label = next((lb for lb in labels if lb in by_type.index), None)
        if label is None:
            raise RuntimeError(f"pingouin.intraclass_corr has none of the rows {labels} (has {list(by_type.index)})")
        out[key] = float(by_type[label])
    return out


def agreement_table(df: pd.DataFrame, scale: Sequence[int] | None = None, n_resamples: int = 1000,
                    seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Per criterion: ordinal alpha (+ CI), ICC(2,1), ICC(2,k); `attrs["notes"]` says the ICC block."""
    scale = list(scale) if scale is not None else default_scale(df)
    ctx_of = df.drop_duplicates("response").set_index("response")["context"]
    rows, notes = [], []
    for crit in criteria_in(df):
        m = score_matrix(df, crit)
        pairable = m.notna().sum(axis=1) >= 2
        if not pairable.any():
            notes.append(f"{crit}: no response was scored by two raters: agreement not computed")
            continue
        alpha, lo, hi = alpha_with_ci(m, ctx_of.reindex(m.index), scale, n_resamples, seed)
        block = complete_block(m)
        icc_vals = {"icc2_1": np.nan, "icc2_k": np.nan}
        if block.size:
            try:
                icc_vals = icc(block)
                notes.append(f"{crit}: ICC on a complete block of {block.shape[0]} responses x {block.shape[1]} raters"
                             + ("" if block.shape[1] == m.shape[1] else f" (of {m.shape[1]} raters)"))
            except (ValueError, AssertionError) as exc:
                notes.append(f"{crit}: ICC not computed ({exc})")
        else:
            notes.append(f"{crit}: no complete block of >= 3 responses x >= 2 raters: ICC not computed")
        rows.append({"criterion": crit, "alpha_ordinal": alpha, "alpha_ci_low": lo, "alpha_ci_high": hi,
                     **icc_vals, "n_items": int(pairable.sum()), "n_raters": int(m.shape[1])})
    out = pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))
    out.attrs["notes"] = notes
    return out
