"""Power and coverage by simulation: how likely a study of a given size is to detect a planted
condition effect, with the mixed model (the primary analysis) and with the paper's ANOVA and
Tukey HSD, and how often each one's 95% CI covers the true contrast (docs/power.md).

Every simulated study is drawn by `simulate.simulate_study` (one criterion) and analysed as
`emoguide stats` does: `models.paper_anova`; Tukey's HSD by `tukey_pair`, the interval
`models.paper_tukey` gives, with the studentized-range quantile computed once per design (scipy
takes about a second per `tukey_hsd` call); and the mixed model, `models.mixed_contrasts` or the
equivalent, faster `fast_mixed_contrasts` (see `power(mixed=...)`). Studies run in a
process pool (2 workers at most: the fits are CPU-bound and the machine is shared); each has its
own seed from `numpy.random.SeedSequence(seed).spawn(n_sims)`, so results do not depend on the
number of workers.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from emoguide.evaluation.stats.simulate import BASE, simulate_study

MAX_WORKERS = 2

#: One row per method in `PowerResult.table`.
METHODS = {
    "mixed": "mixed model, Holm-adjusted p (primary)",
    "mixed_unadjusted": "mixed model, unadjusted p",
    "anova": "paper: one-way ANOVA F (omnibus)",
    "tukey": "paper: Tukey HSD, base vs target",
    "pooled_t": "pooled t on the ANOVA's MSE (no adjustment)",
}


@dataclass
class PowerResult:
    table: pd.DataFrame  # method, detects, detects_se, covers, covers_se, mean_estimate, mean_ci_width, n_ok
    sims: pd.DataFrame  # one row per simulated study
    settings: dict[str, Any] = field(default_factory=dict)
    true_contrast: float = float("nan")

    def format(self) -> str:
        s = self.settings
        head = (f"{s['raters']} raters x {s['contexts']} contexts x {s['conditions']} conditions x {s['models']} model(s), "
                f"latent effect {s['effect']:+g} on {s['target']} vs base ({s['criterion']}), "
                f"true contrast on the 1-5 scale {self.true_contrast:+.3f}; {s['n_sims']} studies, alpha {s['alpha']:g}")
        cost = s.get("cost")
        lines = [head]
        if s.get("mixed") and s.get("with_mixed", True):
            lines.append("mixed model: " + {"stats": "models.mixed_contrasts (what `emoguide stats` reports)",
                                            "fast": "power.fast_mixed_contrasts (raters fixed, per-context blocks)"}.get(s["mixed"], s["mixed"]))
        if cost is not None:
            lines.append(f"expert cost at ${s['cost_per_video']:g} per rater-video: ${cost:,.0f}")
        lines.append(f"{'method':<46} {'detects':>8} {'+-':>5} {'CI covers':>9} {'+-':>5} {'mean est':>8} {'CI width':>8} {'n ok':>5}")
        for r in self.table.itertuples():
            cov = "-" if pd.isna(r.covers) else f"{r.covers:.3f}"
            cov_se = "-" if pd.isna(r.covers_se) else f"{r.covers_se:.3f}"
            est = "-" if pd.isna(r.mean_estimate) else f"{r.mean_estimate:+.3f}"
            wid = "-" if pd.isna(r.mean_ci_width) else f"{r.mean_ci_width:.3f}"
            lines.append(f"{METHODS.get(r.method, r.method):<46} {r.detects:>8.3f} {r.detects_se:>5.3f} {cov:>9} {cov_se:>5} "
                         f"{est:>8} {wid:>8} {r.n_ok:>5}")
        fit = self.sims["mixed_seconds"].dropna()
        if len(fit):
            lines.append(f"mixed-model fit: median {fit.median():.2f} s per study (max {fit.max():.2f} s); "
                         f"failed fits {int(self.sims['mixed_error'].notna().sum())}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- the fast mixed model


def fast_mixed_contrasts(df: pd.DataFrame, criterion: str, with_model: bool = True, reference: str = BASE) -> pd.DataFrame:
    """The condition contrasts of a linear mixed model that statsmodels fits per context instead of
    over one all-data group: `score ~ C(condition) (+ C(model)) + C(rater)` with a random
    intercept per context and a variance component per response within its context.

    Why: the crossed form (one group, rater/context/response variance components) costs one dense
    solve over all ratings per iteration; `benchmarks/stats_power.py` measures it. Here raters are
    fixed effects, so the model splits into independent context blocks. When every context's
    responses are rated by the same raters (the paper's design, and the simulator's by default)
    rater effects cancel within a context and the condition estimates and standard errors equal
    the crossed model's (tests/test_stats_sim.py checks this); with incomplete designs they are
    close but not identical. Columns as `models.mixed_contrasts` (MIXED_COLUMNS)."""
    import warnings

    import statsmodels.formula.api as smf

    from emoguide.evaluation.stats.load import condition_order, criterion_frame
    from emoguide.evaluation.stats.models import MIXED_COLUMNS, holm

    sub = criterion_frame(df, criterion)
    levels = condition_order(sub["condition"])
    levels = [reference] + [c for c in levels if c != reference] if reference in levels else levels
    data = pd.DataFrame({
        "score": sub["score"].to_numpy(float),
        "cond": pd.Categorical(sub["condition"].astype(str), categories=levels),
        "rater": sub["rater_id"].astype(str).to_numpy(),
        "context": sub["context"].astype(str).to_numpy(),
        "response": sub["response"].astype(str).to_numpy(),
    })
    formula = "score ~ C(cond)"
    models = sorted(sub["model"].dropna().astype(str).unique())
    if with_model and len(models) > 1:
        data["mdl"] = pd.Categorical(sub["model"].astype(str), categories=models)
        formula += " + C(mdl)"
    if data["rater"].nunique() > 1:
        formula += " + C(rater)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings are visible in `converged`
        fit = smf.mixedlm(formula, data, groups="context", re_formula="1",
                          vc_formula={"response": "0 + C(response)"}).fit(reml=True, method=["lbfgs"])
    ci = fit.conf_int()
    rows = []
    for name in fit.fe_params.index:
        for token, label in (("C(cond)", "condition"), ("C(mdl)", "model")):
            if name.startswith(token + "[T."):
                rows.append({"criterion": criterion, "term": f"{label}[{name[len(token) + 3:-1]}]",
                             "estimate": float(fit.fe_params[name]), "se": float(fit.bse[name]),
                             "ci_low": float(ci.loc[name, 0]), "ci_high": float(ci.loc[name, 1]),
                             "p": float(fit.pvalues[name]), "p_holm": np.nan})
    out = pd.DataFrame(rows, columns=list(MIXED_COLUMNS))
    cond = out["term"].str.startswith("condition[")
    if cond.any():
        out.loc[cond, "p_holm"] = holm(out.loc[cond, "p"].to_numpy(float))
    out.attrs["converged"] = bool(getattr(fit, "converged", True))
    return out


# --------------------------------------------------------------------------- one study


def _find_tukey(tukey: pd.DataFrame, target: str) -> tuple[float, float, float, float]:
    """(target - base difference, ci_low, ci_high, p_adj) from a tukey table, whatever the order."""
    t = tukey
    row = t[(t["group1"] == BASE) & (t["group2"] == target)]
    if len(row):
        r = row.iloc[0]
        return float(r.meandiff), float(r.ci_low), float(r.ci_high), float(r.p_adj)
    row = t[(t["group1"] == target) & (t["group2"] == BASE)]
    if len(row):
        r = row.iloc[0]
        return -float(r.meandiff), -float(r.ci_high), -float(r.ci_low), float(r.p_adj)
    raise KeyError(f"no base/{target} pair in the Tukey table")


def _find_term(mixed: pd.DataFrame, target: str) -> pd.Series:
    """The mixed model's contrast row for `target` vs base (its `term` names the condition)."""
    terms = mixed["term"].astype(str)
    hit = mixed[terms.str.contains(target, regex=False) & ~terms.str.contains("model", case=False, regex=False)]
    if len(hit) != 1:
        raise KeyError(f"cannot find one {target}-vs-base term among {list(terms)}")
    return hit.iloc[0]


@lru_cache(maxsize=64)
def _tukey_q(k: int, dfw: int, level: float) -> float:
    from scipy import stats

    return float(stats.studentized_range.ppf(level, k, dfw))


def tukey_pair(df: pd.DataFrame, target: str, alpha: float = 0.05, level: float = 0.95) -> tuple[float, float, float, bool]:
    """Tukey-Kramer HSD for base vs target: (target - base, ci_low, ci_high at `level`, detected
    at `alpha`).

    The same interval as `models.paper_tukey` (scipy.stats.tukey_hsd), but the studentized-range
    quantile is computed once per design (k groups, df) instead of per study, and detection is
    "the simultaneous (1 - alpha) CI excludes 0", which is p_adj < alpha without integrating the
    studentized range for a p-value: scipy needs about a second per `tukey_hsd` call, which
    would dominate a power run. tests/test_stats_sim.py checks both against paper_tukey."""
    groups = {c: g["score"].to_numpy(float) for c, g in df.groupby("condition")}
    n = sum(len(g) for g in groups.values())
    k = len(groups)
    dfw = n - k
    mse = sum(float(((g - g.mean()) ** 2).sum()) for g in groups.values()) / dfw
    a, b = groups[BASE], groups[target]
    diff = float(b.mean() - a.mean())
    se = math.sqrt(mse * (1 / len(a) + 1 / len(b))) / math.sqrt(2.0)
    half = _tukey_q(k, dfw, level) * se
    return diff, diff - half, diff + half, bool(abs(diff) > _tukey_q(k, dfw, 1.0 - alpha) * se)


def pooled_t(df: pd.DataFrame, target: str, level: float = 0.95) -> tuple[float, float, float, float]:
    """Difference target - base with the one-way ANOVA's pooled MSE and t on its df, no
    adjustment (what treating every rating as independent gives for one planned contrast)."""
    from scipy import stats

    groups = {c: g["score"].to_numpy(float) for c, g in df.groupby("condition")}
    n = sum(len(g) for g in groups.values())
    k = len(groups)
    sse = sum(float(((g - g.mean()) ** 2).sum()) for g in groups.values())
    dfw = n - k
    mse = sse / dfw
    a, b = groups[BASE], groups[target]
    diff = float(b.mean() - a.mean())
    se = math.sqrt(mse * (1 / len(a) + 1 / len(b)))
    q = float(stats.t.ppf(0.5 + level / 2, dfw))
    p = float(2 * stats.t.sf(abs(diff) / se, dfw)) if se > 0 else float("nan")
    return diff, diff - q * se, diff + q * se, p


def one_study(args: tuple[dict[str, Any], np.random.SeedSequence]) -> dict[str, Any]:
    """Simulate and analyse one study; a failed mixed-model fit is recorded in `mixed_error`, not raised."""
    from emoguide.evaluation.stats.models import mixed_contrasts, paper_anova

    sim_kwargs, seed = args
    alpha = sim_kwargs.pop("_alpha", 0.05)
    target = sim_kwargs.pop("_target")
    with_mixed = sim_kwargs.pop("_with_mixed")
    mixed_fn = sim_kwargs.pop("_mixed_fn", None)
    mixed_fn = {None: mixed_contrasts, "stats": mixed_contrasts, "fast": fast_mixed_contrasts}.get(mixed_fn, mixed_fn) \
        if isinstance(mixed_fn, (str, type(None))) else mixed_fn
    study = simulate_study(seed=seed, **sim_kwargs)
    crit = study.params["criteria"][0]
    df = study.ratings
    truth = float(study.truth.set_index(["criterion", "condition"]).loc[(crit, target), "true_contrast"])
    out: dict[str, Any] = {"truth": truth, "n_ratings": len(df)}
    an = paper_anova(df, crit)
    out["anova_p"] = float(an["p"])
    # detection stored as 0/1 in tukey_p's place: 0 (< alpha) when the simultaneous CI excludes 0
    out["tukey_est"], out["tukey_lo"], out["tukey_hi"], detected = tukey_pair(df, target, alpha)
    out["tukey_p"] = 0.0 if detected else 1.0
    out["pooled_est"], out["pooled_lo"], out["pooled_hi"], out["pooled_p"] = pooled_t(df, target)
    out["mixed_seconds"] = np.nan
    out["mixed_error"] = None
    if with_mixed:
        t0 = time.perf_counter()
        try:
            row = _find_term(mixed_fn(df, crit, with_model=len(study.params["models"]) > 1), target)
            out["mixed_est"], out["mixed_lo"], out["mixed_hi"] = float(row.estimate), float(row.ci_low), float(row.ci_high)
            out["mixed_p"], out["mixed_p_holm"] = float(row.p), float(row.p_holm)
        except Exception as exc:  # noqa: BLE001 - a non-converging fit is a result of the study, counted
            out["mixed_error"] = f"{type(exc).__name__}: {exc}"[:200]
        out["mixed_seconds"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------- many studies


def _share(x: pd.Series) -> tuple[float, float, int]:
    x = x.dropna().astype(float)
    n = len(x)
    if not n:
        return float("nan"), float("nan"), 0
    p = float(x.mean())
    return p, math.sqrt(p * (1 - p) / n), n


def summarise(sims: pd.DataFrame, alpha: float) -> pd.DataFrame:
    rows = []
    specs = [
        ("mixed", "mixed", "mixed_p_holm"),
        ("mixed_unadjusted", "mixed", "mixed_p"),
        ("anova", None, "anova_p"),
        ("tukey", "tukey", "tukey_p"),
        ("pooled_t", "pooled", "pooled_p"),
    ]
    for method, ci, pcol in specs:
        if pcol not in sims.columns:
            continue
        det, det_se, n_ok = _share(sims[pcol].where(sims[pcol].isna(), sims[pcol] < alpha))
        cov = cov_se = est = width = float("nan")
        if ci is not None and f"{ci}_lo" in sims.columns:
            ok = sims[f"{ci}_lo"].notna()
            covered = (sims.loc[ok, f"{ci}_lo"] <= sims.loc[ok, "truth"]) & (sims.loc[ok, "truth"] <= sims.loc[ok, f"{ci}_hi"])
            cov, cov_se, _ = _share(covered)
            est = float(sims.loc[ok, f"{ci}_est"].mean())
            width = float((sims.loc[ok, f"{ci}_hi"] - sims.loc[ok, f"{ci}_lo"]).mean())
        rows.append({"method": method, "detects": det, "detects_se": det_se, "covers": cov, "covers_se": cov_se,
                     "mean_estimate": est, "mean_ci_width": width, "n_ok": n_ok})
    return pd.DataFrame(rows)


def power(
    effect: float = 0.4,
    raters: int = 5,
    contexts: int = 100,
    conditions: int | Sequence[str] = 4,
    models: int | Sequence[str] = 1,
    n_sims: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    target: str | None = None,
    criterion: str = "empathy",
    effect_on: str = "all",
    workers: int = MAX_WORKERS,
    with_mixed: bool = True,
    mixed: str | Callable[..., pd.DataFrame] = "fast",
    cost_per_video: float | None = 7.0,
    **sim_kwargs: Any,
) -> PowerResult:
    """Simulate `n_sims` studies and report, per method, the share that detect the effect at
    `alpha` (power; with effect 0, the false-positive rate) and the share whose 95% CI covers the
    true contrast on the 1-5 scale.

    `effect` is the latent shift of every non-base condition vs base (`effect_on="all"`, what the
    paper found) or of `target` alone (`effect_on="target"`); `target` defaults to the last
    non-base condition (dissonance). Other keyword arguments go to `simulate_study` (rater_sd,
    context_sd, response_sd, noise_sd, raters_per_context, base_mean, scale, ...). The cost line
    counts `cost_per_video` per rater per context rated (the paper paid $7 a video). `mixed`:
    "fast" (default) fits `fast_mixed_contrasts` (equivalent for complete designs, much faster on
    large studies); "stats" fits `models.mixed_contrasts`, the model `emoguide stats` reports;
    or a module-level function with the same signature and columns."""
    if isinstance(mixed, str) and mixed not in ("stats", "fast"):
        raise ValueError("mixed: 'stats', 'fast' or a function")
    if n_sims < 1:
        raise ValueError("n_sims: at least 1")
    from emoguide.evaluation.stats.simulate import PAPER_CONDITIONS, _names

    cond_names = _names(conditions, PAPER_CONDITIONS, "cond")
    if BASE not in cond_names or len(cond_names) < 2:
        raise ValueError("power needs base and at least one other condition")
    target = target or [c for c in cond_names if c != BASE][-1]
    if target not in cond_names or target == BASE:
        raise ValueError(f"target {target!r} must be a non-base condition of {cond_names}")
    if effect_on == "all":
        eff: Any = {criterion: float(effect)}
    elif effect_on == "target":
        eff = {criterion: {target: float(effect)}}
    else:
        raise ValueError("effect_on: 'all' or 'target'")
    kwargs = dict(raters=raters, contexts=contexts, conditions=cond_names, models=models, criteria=[criterion],
                  effect=eff, **sim_kwargs)
    seeds = np.random.SeedSequence(seed).spawn(n_sims)
    jobs = [({**kwargs, "_target": target, "_with_mixed": with_mixed, "_mixed_fn": mixed, "_alpha": alpha}, s)
            for s in seeds]
    workers = max(1, min(int(workers), MAX_WORKERS, os.cpu_count() or 1, n_sims))
    t0 = time.perf_counter()
    if workers == 1:
        results = [one_study(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one_study, jobs, chunksize=max(1, n_sims // (4 * workers))))
    sims = pd.DataFrame(results)
    per = raters if not sim_kwargs.get("raters_per_context") else min(raters, int(sim_kwargs["raters_per_context"]))
    settings = {"effect": float(effect), "raters": raters, "contexts": contexts, "conditions": len(cond_names),
                "models": models if isinstance(models, int) else len(models), "n_sims": n_sims, "alpha": alpha,
                "seed": seed, "target": target, "criterion": criterion, "effect_on": effect_on,
                "workers": workers, "with_mixed": with_mixed, "mixed": mixed if isinstance(mixed, str) else getattr(mixed, "__name__", "custom"),
                "seconds": time.perf_counter() - t0,
                "cost_per_video": cost_per_video,
                "cost": None if cost_per_video is None else float(cost_per_video) * per * contexts,
                **{k: v for k, v in sim_kwargs.items()}}
    return PowerResult(table=summarise(sims, alpha), sims=sims, settings=settings,
                       true_contrast=float(sims["truth"].iloc[0]))
