"""Tests of the condition effect: the paper's analysis, the mixed model, an ordinal check.

* `paper_anova`, `paper_tukey` — what Section 5 of the paper did: every rating pooled as an
  independent observation, one-way ANOVA across conditions and Tukey's HSD (scipy). Reproduced
  for comparison; with many ratings per rater and per context the observations are not
  independent, so these p-values and intervals are too small (pseudoreplication).
* `mixed_contrasts` — the primary analysis: a linear mixed model
  `score ~ C(condition) (+ C(model))` with crossed random intercepts for rater and for context
  (statsmodels MixedLM: one all-data group plus variance components, because vc formulas are
  applied *within* groups; a `groups="context"` model would nest raters in contexts).
  Contrasts against the reference condition (base), Holm-adjusted across the condition contrasts.
* `mixed_group_effect` — the rater-group effect in the same model (group fixed, rater random).
* `ordinal_check` — a proportional-odds (cumulative logit) model, statsmodels OrderedModel,
  single-level, with standard errors clustered by context; it ignores the rater clustering
  (statsmodels has no ordinal mixed model), which its note says.

Term names in the output: `condition[<level>]` is level minus the reference condition,
`model[<name>]` is that model minus the reference model, `group[<name>]` likewise.
Fit warnings are never swallowed: each returned DataFrame carries `attrs["warnings"]` (list of
text) and the mixed models `attrs["converged"]` and `attrs["variance_components"]`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from emoguide.errors import require
from emoguide.evaluation.stats.load import condition_order, criterion_frame

ANOVA_COLUMNS = ("criterion", "df_between", "df_within", "F", "p", "n")
TUKEY_COLUMNS = ("criterion", "group1", "group2", "meandiff", "ci_low", "ci_high", "p_adj")
MIXED_COLUMNS = ("criterion", "term", "estimate", "se", "ci_low", "ci_high", "p", "p_holm")
ORDINAL_NOTE = (
    "ordinal check: proportional-odds (cumulative logit) model score ~ condition, statsmodels "
    "OrderedModel, no intercept (the thresholds take its place), single-level: it ignores the "
    "clustering by rater; standard errors are cluster-robust by context. Estimates are log-odds "
    "of a higher score against the reference condition."
)


def _samples(sub: pd.DataFrame) -> tuple[list[str], list[np.ndarray]]:
    levels = condition_order(sub["condition"])
    samples = [sub.loc[sub["condition"] == lv, "score"].to_numpy(float) for lv in levels]
    keep = [(lv, s) for lv, s in zip(levels, samples) if len(s)]
    return [k[0] for k in keep], [k[1] for k in keep]


def paper_anova(df: pd.DataFrame, criterion: str) -> dict[str, Any]:
    """One-way ANOVA of score across conditions, all ratings pooled (the paper's F(3, 6204))."""
    stats = require("scipy.stats", "stats")
    sub = criterion_frame(df, criterion)
    levels, samples = _samples(sub)
    if len(levels) < 2:
        raise ValueError(f"{criterion}: ANOVA needs at least 2 conditions (have: {', '.join(levels)})")
    n = int(sum(len(s) for s in samples))
    if n - len(levels) < 1:
        raise ValueError(f"{criterion}: ANOVA needs more ratings than conditions (n = {n})")
    res = stats.f_oneway(*samples)
    return {
        "criterion": criterion,
        "df_between": len(levels) - 1,
        "df_within": n - len(levels),
        "F": float(res.statistic),
        "p": float(res.pvalue),
        "n": n,
    }


def paper_tukey(df: pd.DataFrame, criterion: str, confidence_level: float = 0.95) -> pd.DataFrame:
    """Tukey's HSD (Tukey-Kramer for unequal n) between conditions, every pair once,
    meandiff = mean(group2) - mean(group1), group1 before group2 in the paper's condition order."""
    stats = require("scipy.stats", "stats")
    sub = criterion_frame(df, criterion)
    levels, samples = _samples(sub)
    if len(levels) < 2:
        raise ValueError(f"{criterion}: Tukey HSD needs at least 2 conditions (have: {', '.join(levels)})")
    res = stats.tukey_hsd(*samples)
    ci = res.confidence_interval(confidence_level=confidence_level)
    rows = []
    for i in range(len(levels)):
        for j in range(i + 1, len(levels)):
            # res.statistic[j, i] = mean(j) - mean(i), the difference group2 - group1.
            rows.append({
                "criterion": criterion, "group1": levels[i], "group2": levels[j],
                "meandiff": float(res.statistic[j, i]),
                "ci_low": float(ci.low[j, i]), "ci_high": float(ci.high[j, i]),
                "p_adj": float(res.pvalue[j, i]),
            })
    return pd.DataFrame(rows, columns=list(TUKEY_COLUMNS))


def _ordered_categorical(values: pd.Series, levels: list[str]) -> pd.Categorical:
    # A pandas Categorical fixes patsy's level order, so the first level is Treatment's reference
    # without quoting level names into the formula.
    return pd.Categorical(values.astype(str), categories=levels)


def _reference(levels: list[str], reference: str, what: str, notes: list[str]) -> list[str]:
    if reference in levels:
        return [reference] + [lv for lv in levels if lv != reference]
    notes.append(f"no {what} {reference!r} in the data: contrasts are against {levels[0]!r}")
    return levels


def fit_crossed(data: pd.DataFrame, formula: str, criterion: str = "") -> tuple[Any, list[str]]:
    """Fit `formula` with crossed random intercepts for `rater_id` and `context` (columns of
    `data`): one all-data group + variance components, REML. Returns (result, warnings).

    When `data` has a `response` column (context x model x condition) and some response was rated
    more than once, the response gets its own random intercept too (the response is nested in
    context x condition x model). Without it the ratings of one response count as independent
    evidence about its condition: in a simulation with several raters per response (5 raters x
    20 contexts x 4 conditions, 200 studies; tests/test_stats_sim.py) the 95% CI of a planted
    contrast covered the truth in only 70% of studies; with it, 96.5%."""
    require("statsmodels", "stats")
    import statsmodels.formula.api as smf

    vc = {"rater": "0 + C(rater_id)", "context": "0 + C(context)"}
    if "response" in data.columns and data["response"].duplicated().any():
        vc["response"] = "0 + C(response)"
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            model = smf.mixedlm(
                formula, data, groups=np.ones(len(data)), re_formula="0",
                vc_formula=vc,
                # sparse vc design: same estimates, about half the time on 6,000 ratings (the
                # single-group approach is slow, statsmodels issue #1946)
                use_sparse=True,
            )
            result = model.fit(reml=True, method=["lbfgs", "powell"])
        except (np.linalg.LinAlgError, ValueError, RuntimeError) as exc:  # RuntimeError: singular sparse factor
            raise ValueError(f"{criterion}: the mixed model could not be fitted ({exc})") from exc
    for w in record:
        msg = f"{w.category.__name__}: {w.message}"
        if msg not in caught:
            caught.append(msg)
    if not getattr(result, "converged", True):
        caught.append("the mixed model did not converge: treat its estimates with caution")
    return result, caught


def _variance_components(result) -> dict[str, float]:
    vc = {}
    names = getattr(result.model, "exog_vc", None)
    names = list(names.names) if names is not None else ["rater", "context", "response"][: len(np.atleast_1d(result.vcomp))]
    for name, value in zip(names, np.atleast_1d(result.vcomp)):
        vc[str(name)] = float(value)
    vc["residual"] = float(result.scale)
    return vc


def _terms(result, prefix_map: dict[str, str]) -> list[dict[str, Any]]:
    params, bse, pvals = result.fe_params, result.bse, result.pvalues
    ci = result.conf_int()
    rows = []
    for name in params.index:
        for token, label in prefix_map.items():
            if name.startswith(token + "[T."):
                level = name[len(token) + 3 : -1]
                rows.append({
                    "term": f"{label}[{level}]", "estimate": float(params[name]), "se": float(bse[name]),
                    "ci_low": float(ci.loc[name, 0]), "ci_high": float(ci.loc[name, 1]), "p": float(pvals[name]),
                })
    return rows


def _check_design(sub: pd.DataFrame, criterion: str) -> None:
    raters = sub["rater_id"].nunique()
    contexts = sub["context"].nunique()
    if raters < 2:
        raise ValueError(f"{criterion}: the mixed model needs at least 2 raters (have {raters}): "
                         "a rater variance cannot be estimated from one")
    if contexts < 2:
        raise ValueError(f"{criterion}: the mixed model needs at least 2 contexts (have {contexts})")
    if sub["score"].nunique() < 2:
        raise ValueError(f"{criterion}: every score is {sub['score'].iloc[0]:g}: there is no variation to model")


def mixed_contrasts(df: pd.DataFrame, criterion: str, with_model: bool = True, reference: str = "base") -> pd.DataFrame:
    """Condition contrasts against `reference` from `score ~ C(condition) (+ C(model))` with crossed
    random intercepts for rater and context (REML). Columns MIXED_COLUMNS; model terms have
    p_holm null (Holm runs across the condition contrasts only)."""
    sub = criterion_frame(df, criterion)
    levels = condition_order(sub["condition"])
    if len(levels) < 2:
        raise ValueError(f"{criterion}: the mixed model needs at least 2 conditions (have: {', '.join(levels)})")
    _check_design(sub, criterion)
    notes: list[str] = []
    levels = _reference(levels, reference, "condition", notes)
    data = pd.DataFrame({
        "score": sub["score"].to_numpy(float),
        "cond": _ordered_categorical(sub["condition"], levels),
        "rater_id": sub["rater_id"].astype(str).to_numpy(),
        "context": sub["context"].astype(str).to_numpy(),
        "response": sub["response"].astype(str).to_numpy(),
    })
    formula = "score ~ C(cond)"
    models = sorted(sub["model"].dropna().astype(str).unique())
    if with_model and len(models) > 1:
        data["mdl"] = _ordered_categorical(sub["model"], models)
        formula += " + C(mdl)"
    result, caught = fit_crossed(data, formula, criterion)
    rows = _terms(result, {"C(cond)": "condition", "C(mdl)": "model"})
    out = pd.DataFrame(rows, columns=["term", "estimate", "se", "ci_low", "ci_high", "p"])
    out.insert(0, "criterion", criterion)
    out["p_holm"] = np.nan
    cond = out["term"].str.startswith("condition[")
    if cond.any():
        out.loc[cond, "p_holm"] = holm(out.loc[cond, "p"].to_numpy(float))
    out = out[list(MIXED_COLUMNS)].reset_index(drop=True)
    out.attrs.update(
        warnings=notes + caught, converged=bool(getattr(result, "converged", True)),
        variance_components=_variance_components(result), formula=formula.replace("cond", "condition").replace("mdl", "model"),
        reference=levels[0], n=int(len(data)), n_raters=int(data["rater_id"].nunique()),
        n_contexts=int(data["context"].nunique()),
    )
    return out


def mixed_group_effect(df: pd.DataFrame, criterion: str, reference: str = "base") -> pd.DataFrame:
    """Rater-group effect: `score ~ C(condition) + C(rater_group)` with the same crossed random
    intercepts (a rater is nested in its group). Rows `group[<g>]` (g minus the first group) and
    the condition contrasts; with few raters per group this is descriptive (df ~ raters - groups)."""
    sub = criterion_frame(df, criterion)
    sub = sub[sub["rater_group"].notna() & (sub["rater_group"].astype(str).str.strip() != "")]
    groups = sorted(sub["rater_group"].astype(str).unique())
    if len(groups) < 2:
        raise ValueError(f"{criterion}: a group effect needs at least 2 rater groups (have: {', '.join(groups) or 'none'})")
    _check_design(sub, criterion)
    notes: list[str] = []
    levels = _reference(condition_order(sub["condition"]), reference, "condition", notes)
    data = pd.DataFrame({
        "score": sub["score"].to_numpy(float),
        "grp": _ordered_categorical(sub["rater_group"], groups),
        "rater_id": sub["rater_id"].astype(str).to_numpy(),
        "context": sub["context"].astype(str).to_numpy(),
        "response": sub["response"].astype(str).to_numpy(),
    })
    formula = "score ~ C(grp)"
    if len(levels) > 1:
        data["cond"] = _ordered_categorical(sub["condition"], levels)
        formula += " + C(cond)"
    result, caught = fit_crossed(data, formula, criterion)
    rows = _terms(result, {"C(grp)": "group", "C(cond)": "condition"})
    out = pd.DataFrame(rows, columns=["term", "estimate", "se", "ci_low", "ci_high", "p"])
    out.insert(0, "criterion", criterion)
    out["p_holm"] = np.nan
    grp = out["term"].str.startswith("group[")
    if grp.any():
        out.loc[grp, "p_holm"] = holm(out.loc[grp, "p"].to_numpy(float))
    out = out[list(MIXED_COLUMNS)].reset_index(drop=True)
    n_raters = int(data["rater_id"].nunique())
    note = (f"{criterion}: group effect from {n_raters} raters in {len(groups)} groups: its effective df is about "
            f"{max(n_raters - len(groups), 0)}, so read it as descriptive")
    out.attrs.update(note=note, warnings=notes + caught, converged=bool(getattr(result, "converged", True)),
                     variance_components=_variance_components(result), reference_group=groups[0])
    return out


def ordinal_check(df: pd.DataFrame, criterion: str, reference: str = "base") -> pd.DataFrame:
    """Proportional-odds model of score on condition (statsmodels OrderedModel, logit link, no
    intercept), standard errors clustered by context. Columns MIXED_COLUMNS (log-odds scale);
    `attrs["note"]` = ORDINAL_NOTE. Single-level: it does not model rater clustering."""
    require("statsmodels", "stats")
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    sub = criterion_frame(df, criterion)
    notes: list[str] = []
    levels = _reference(condition_order(sub["condition"]), reference, "condition", notes)
    if len(levels) < 2:
        raise ValueError(f"{criterion}: the ordinal model needs at least 2 conditions")
    scores = np.sort(sub["score"].unique())
    if len(scores) < 2:
        raise ValueError(f"{criterion}: every score is {scores[0]:g}: there is no variation to model")
    # Dummies by hand (reference dropped) instead of a formula: OrderedModel must not get an
    # intercept, and patsy's "0 + C(x)" would give a full-rank set that collides with the thresholds.
    cond = _ordered_categorical(sub["condition"], levels)
    exog = pd.get_dummies(cond, prefix="", prefix_sep="", dtype=float).iloc[:, 1:]
    exog.index = sub.index
    endog = pd.Series(pd.Categorical(sub["score"], categories=scores, ordered=True), index=sub.index)
    groups = pd.factorize(sub["context"])[0]
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = OrderedModel(endog, exog, distr="logit")
        try:
            result = model.fit(method="bfgs", disp=False, maxiter=500, cov_type="cluster", cov_kwds={"groups": groups})
            se_kind = "cluster-robust by context"
        except Exception as exc:  # noqa: BLE001 - fall back to model-based SEs, and say so
            caught.append(f"cluster-robust standard errors failed ({exc}); model-based ones used")
            try:
                result = model.fit(method="bfgs", disp=False, maxiter=500)
            except (np.linalg.LinAlgError, ValueError, RuntimeError) as exc2:
                raise ValueError(f"{criterion}: the ordinal model could not be fitted ({exc2})") from exc2
            se_kind = "model-based"
    for w in record:
        msg = f"{w.category.__name__}: {w.message}"
        if msg not in caught:
            caught.append(msg)
    if not result.mle_retvals.get("converged", True):
        caught.append("the ordinal model did not converge")
    params, bse, pvals = result.params, result.bse, result.pvalues
    ci = result.conf_int()
    rows = []
    for lv in exog.columns:
        rows.append({"criterion": criterion, "term": f"condition[{lv}]", "estimate": float(params[lv]),
                     "se": float(bse[lv]), "ci_low": float(ci.loc[lv, 0]), "ci_high": float(ci.loc[lv, 1]),
                     "p": float(pvals[lv])})
    out = pd.DataFrame(rows, columns=list(MIXED_COLUMNS[:-1]))
    out["p_holm"] = holm(out["p"].to_numpy(float)) if len(out) else []
    note = ORDINAL_NOTE if se_kind.startswith("cluster") else ORDINAL_NOTE.replace(
        "standard errors are cluster-robust by context", "standard errors are model-based")
    n_ctx = int(sub["context"].nunique())
    if se_kind.startswith("cluster") and n_ctx < 30:
        caught.append(f"only {n_ctx} contexts: cluster-robust standard errors are too small with few clusters")
    out.attrs.update(note=note, warnings=notes + caught, reference=levels[0], n_contexts=n_ctx)
    return out


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels multipletests, method "holm")."""
    p = np.asarray(pvalues, dtype=float)
    if not len(p):
        return p
    from statsmodels.stats.multitest import multipletests

    ok = ~np.isnan(p)
    out = np.full(len(p), np.nan)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out
