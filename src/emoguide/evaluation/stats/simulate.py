"""Simulated rating studies with a planted condition effect: size a study before paying experts,
and check that the analysis recovers what was planted (docs/power.md).

The generative model, per criterion, for rater r rating response i (context c, model m,
condition k):

    y = base_mean + effect[criterion][k] + model_effect[m] + group_shift * [r in the 2nd group]
        + u_r + v_c + w_i + e,
    u_r ~ N(0, rater_sd²)     rater leniency (the paper's groups: 3.20 vs 3.88)
    v_c ~ N(0, context_sd²)   context (video) difficulty, shared by all its responses
    w_i ~ N(0, response_sd²)  the quality of one generated response, shared by all its raters
    e   ~ N(0, noise_sd²)     the rater's momentary noise

`scale="likert"` (default) records round(y) clipped to 1..5, i.e. cut points 1.5, 2.5, 3.5, 4.5,
as raters answer. `scale="linear"` records y itself (not a Likert score; for checking the
analysis against the planted latent value exactly).

**The truth on the 1-5 scale.** A latent shift `d` does not move the mean 1-5 score by `d`:
rounding and clipping compress it near the ends of the scale. The analyses (ANOVA, Tukey, the
linear mixed model) estimate differences of mean *scores*, so coverage must be judged against the
true difference of expected scores. Because every random term is normal and additive, y is normal
with sd s = sqrt(rater_sd² + context_sd² + response_sd² + noise_sd²) around its fixed part mu, and

    E[score] = 1 + sum_{j=1..4} Phi((mu - (j + 0.5)) / s)

exactly (a score exceeds j exactly when y > j + 0.5). `true_contrasts` averages this over the
models and rater groups (equal weights, as in a balanced design) and reports
E[score | condition] - E[score | base]: the population-average contrast on the 1-5 scale, what a
mean difference in a balanced study estimates without bias. This is exact, not Monte Carlo
(tests check it against a large simulation). For `scale="linear"` the truth is the planted value.

**The judge.** With `judge_r`, a judge scores every response with a sample correlation of exactly
`judge_r` between its latent score and the mean expert score of the response (the residual is
orthogonalised in the sample), shifted by `judge_bias` (LLM judges overrate; CounselBench). Its
distribution over 1..5 is a discretised normal around that latent score (sd `judge_spread`), so
`score_expected` (what the statistics correlate) keeps the correlation up to the slight
compression at the scale's ends, and `score` is the most likely point.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from math import erf, sqrt
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from emoguide.evaluation.schema import JUDGMENTS_COLUMNS, RATINGS_COLUMNS, RESPONSE_KEY

PAPER_CONDITIONS = ("base", "discrete", "continuous", "dissonance")
PAPER_CRITERIA = ("applicability", "empathy", "comprehensiveness")
CUTS = (1.5, 2.5, 3.5, 4.5)
SCALE = (1, 5)
BASE = "base"

EffectSpec = float | Mapping[str, float | Mapping[str, float]]


@dataclass
class SimulatedStudy:
    ratings: pd.DataFrame  # RATINGS_COLUMNS
    judgments: pd.DataFrame | None  # JUDGMENTS_COLUMNS, when judge_r was given
    truth: pd.DataFrame  # criterion, condition, latent_effect, true_contrast
    params: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- effect specs


def resolve_effects(effect: EffectSpec, criteria: Sequence[str], conditions: Sequence[str]) -> dict[str, dict[str, float]]:
    """The latent shift of every non-base condition vs base, per criterion.

    `effect` is a number (every non-base condition, every criterion) or a mapping whose keys are
    a criterion, "*" (every criterion), and whose values are a number or {condition: shift}
    ("*" for every non-base condition). Unnamed criteria get 0. Base is always 0."""
    others = [c for c in conditions if c != BASE]
    out = {k: {c: 0.0 for c in conditions} for k in criteria}

    def apply(crit: str, value: float | Mapping[str, float]) -> None:
        targets = criteria if crit == "*" else [crit]
        for k in targets:
            if k not in out:
                raise ValueError(f"effect for unknown criterion {k!r} (criteria: {', '.join(criteria)})")
            if isinstance(value, Mapping):
                for cond, v in value.items():
                    conds = others if cond == "*" else [cond]
                    for c in conds:
                        if c not in out[k]:
                            raise ValueError(f"effect for unknown condition {c!r} (conditions: {', '.join(conditions)})")
                        if c == BASE:
                            raise ValueError("effects are shifts against base: base cannot have one")
                        out[k][c] = float(v)
            else:
                for c in others:
                    out[k][c] = float(value)

    if isinstance(effect, Mapping):
        for crit in sorted(effect, key=lambda x: x != "*"):  # "*" first, named keys override it
            apply(crit, effect[crit])
    else:
        apply("*", float(effect))
    return out


def parse_effects(specs: Sequence[str]) -> EffectSpec:
    """CLI effect specs: "0.4" (everything), "empathy=0.4" (one criterion, every condition),
    "empathy:dissonance=0.45", "*:dissonance=0.3"; later specs override earlier ones."""
    if not specs:
        return 0.0
    out: dict[str, dict[str, float]] = {}
    for spec in specs:
        spec = spec.strip()
        if "=" not in spec:
            try:
                value = float(spec)
            except ValueError:
                raise ValueError(f"--effect {spec!r}: a number or CRITERION[:CONDITION]=NUMBER") from None
            out.setdefault("*", {})["*"] = value
            continue
        key, _, value_text = spec.partition("=")
        try:
            value = float(value_text)
        except ValueError:
            raise ValueError(f"--effect {spec!r}: {value_text!r} is not a number") from None
        crit, _, cond = key.strip().partition(":")
        out.setdefault(crit.strip() or "*", {})[cond.strip() or "*"] = value
    return out


# --------------------------------------------------------------------------- truth on the 1-5 scale


def _phi(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(erf)(np.asarray(x, float) / sqrt(2.0)))


def expected_score(mu: float | np.ndarray, sd: float, cuts: Sequence[float] = CUTS) -> np.ndarray:
    """E[clip(round(y), 1, 5)] for y ~ N(mu, sd²): 1 + sum_j P(y > cut_j)."""
    mu = np.asarray(mu, float)
    return 1.0 + sum(_phi((mu - c) / sd) for c in cuts)


def true_contrasts(effects: dict[str, dict[str, float]], *, base_mean: float, total_sd: float,
                   model_shifts: Sequence[float] = (0.0,), group_shifts: Sequence[float] = (0.0,),
                   scale: str = "likert") -> pd.DataFrame:
    """criterion, condition, latent_effect, true_contrast (vs base, on the recorded scale)."""
    rows = []
    offsets = np.array([m + g for m in model_shifts for g in group_shifts], float)
    for crit, by_cond in effects.items():
        base = expected_score(base_mean + offsets, total_sd).mean() if scale == "likert" else None
        for cond, d in by_cond.items():
            if cond == BASE:
                continue
            if scale == "likert":
                truth = float(expected_score(base_mean + d + offsets, total_sd).mean() - base)
            else:
                truth = float(d)
            rows.append({"criterion": crit, "condition": cond, "latent_effect": float(d), "true_contrast": truth})
    return pd.DataFrame(rows, columns=["criterion", "condition", "latent_effect", "true_contrast"])


# --------------------------------------------------------------------------- the design


def _names(value: int | Sequence[str], default: Sequence[str], prefix: str) -> list[str]:
    if isinstance(value, (int, np.integer)):
        n = int(value)
        if n < 1:
            raise ValueError(f"{prefix}: need at least 1, got {n}")
        return [default[i] if i < len(default) else f"{prefix}{i + 1}" for i in range(n)]
    names = [str(v) for v in value]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{prefix}: names must be distinct and non-empty, got {names}")
    return names


def design_from_generations(generations: pd.DataFrame) -> pd.DataFrame:
    """The responses of a corpus's generations table that a study would rate: status ok with a
    non-empty response, one row per (session_id, target_index, model, condition)."""
    g = generations
    ok = (g["status"].astype(str) == "ok") & (g["response"].fillna("").astype(str).str.strip() != "")
    g = g.loc[ok, list(RESPONSE_KEY)].drop_duplicates(keep="last")
    if g.empty:
        raise ValueError("no rateable generations (status ok with a response)")
    return g.astype({"session_id": str, "target_index": "int64", "model": str, "condition": str}).reset_index(drop=True)


def synthetic_design(contexts: int, conditions: Sequence[str], models: Sequence[str],
                     contexts_per_session: int = 5) -> pd.DataFrame:
    """Every context has one response per model x condition (the paper's design)."""
    rows = []
    for j in range(int(contexts)):
        sid = f"sim-s{j // contexts_per_session + 1:03d}"
        target = 2 * (j % contexts_per_session) + 1
        for m in models:
            for c in conditions:
                rows.append({"session_id": sid, "target_index": target, "model": m, "condition": c})
    return pd.DataFrame(rows)


def _assign_raters(n_contexts: int, raters: int, per_context: int | None, rng: np.random.Generator) -> list[np.ndarray]:
    """Which raters rate each context: all of them, or `per_context` in a balanced rotation."""
    if per_context is None or per_context >= raters:
        return [np.arange(raters)] * n_contexts
    if per_context < 1:
        raise ValueError("raters_per_context must be at least 1")
    start = rng.integers(raters)
    return [np.sort((start + j * per_context + np.arange(per_context)) % raters) for j in range(n_contexts)]


def _config_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- simulate


def simulate_study(
    *,
    raters: int = 5,
    contexts: int = 100,
    conditions: int | Sequence[str] = 4,
    models: int | Sequence[str] = 1,
    criteria: int | Sequence[str] = PAPER_CRITERIA,
    effect: EffectSpec = 0.4,
    base_mean: float = 3.3,
    rater_sd: float = 0.4,
    context_sd: float = 0.4,
    response_sd: float = 0.6,
    noise_sd: float = 0.5,
    model_effects: Mapping[str, float] | None = None,
    group_shift: float = 0.0,
    groups: Sequence[str] = ("group1", "group2"),
    raters_per_context: int | None = None,
    scale: str = "likert",
    generations: pd.DataFrame | None = None,
    judge_r: float | None = None,
    judge_bias: float = 0.3,
    judge_spread: float = 0.6,
    judge_model: str | None = None,
    seed: int | np.random.SeedSequence | None = 0,
    study_id: str = "sim",
) -> SimulatedStudy:
    """Simulate one rating study (see the module docstring for the model and the truth).

    `generations` (a corpus's generations.parquet) replaces the synthetic design: its rateable
    rows give the contexts, models and conditions, and `contexts`/`conditions`/`models` are
    ignored. The first `len(groups)` - 1 cut points split raters into equal groups in order;
    raters of the last group get `group_shift`."""
    if scale not in ("likert", "linear"):
        raise ValueError("scale: 'likert' or 'linear'")
    if raters < 1:
        raise ValueError("raters: need at least 1")
    if judge_r is not None and not -1.0 <= judge_r <= 1.0:
        raise ValueError(f"judge_r must lie in [-1, 1], got {judge_r}")
    rng = np.random.default_rng(seed)
    crit_names = _names(criteria, PAPER_CRITERIA, "criterion")
    if generations is not None:
        design = design_from_generations(generations)
        cond_names = [c for c in PAPER_CONDITIONS if c in set(design["condition"])]
        cond_names += sorted(set(design["condition"]) - set(cond_names))
        model_names = sorted(set(design["model"]))
    else:
        cond_names = _names(conditions, PAPER_CONDITIONS, "cond")
        model_names = _names(models, [f"sim:model{i + 1}" for i in range(64)], "model")
        design = synthetic_design(contexts, cond_names, model_names)
    if BASE not in cond_names:
        raise ValueError(f"the design has no {BASE!r} condition to contrast against (conditions: {', '.join(cond_names)})")
    effects = resolve_effects(effect, crit_names, cond_names)
    mshift = {m: float((model_effects or {}).get(m, 0.0)) for m in model_names}

    ctx_keys = design[["session_id", "target_index"]].drop_duplicates().reset_index(drop=True)
    ctx_index = {(s, int(t)): j for j, (s, t) in enumerate(ctx_keys.itertuples(index=False))}
    design = design.assign(_ctx=[ctx_index[(s, int(t))] for s, t in zip(design["session_id"], design["target_index"])])
    n_resp, n_ctx = len(design), len(ctx_keys)
    rater_ids = [f"r{i + 1}" for i in range(raters)]
    n_groups = max(1, len(groups))
    group_of = [groups[min(n_groups - 1, i * n_groups // raters)] if groups else None for i in range(raters)]
    is_last_group = np.array([g == groups[-1] and n_groups > 1 for g in group_of]) if groups else np.zeros(raters, bool)
    assigned = _assign_raters(n_ctx, raters, raters_per_context, rng)

    # long index of (response, rater) pairs
    resp_idx, rater_idx = [], []
    for i, j in enumerate(design["_ctx"].to_numpy()):
        rs = assigned[j]
        resp_idx.append(np.full(len(rs), i))
        rater_idx.append(rs)
    resp_idx = np.concatenate(resp_idx)
    rater_idx = np.concatenate(rater_idx)
    n_pairs = len(resp_idx)
    cond_arr = design["condition"].to_numpy(object)[resp_idx]
    model_arr = design["model"].to_numpy(object)[resp_idx]
    ctx_arr = design["_ctx"].to_numpy()[resp_idx]
    fixed_common = base_mean + np.array([mshift[m] for m in model_arr]) + group_shift * is_last_group[rater_idx]

    item_ids = [f"sim-{i + 1:05d}" for i in range(n_resp)]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    params = {k: v for k, v in dict(
        raters=raters, contexts=n_ctx, conditions=cond_names, models=model_names, criteria=crit_names,
        effects=effects, base_mean=base_mean, rater_sd=rater_sd, context_sd=context_sd,
        response_sd=response_sd, noise_sd=noise_sd, model_effects=mshift, group_shift=group_shift,
        raters_per_context=raters_per_context, scale=scale, judge_r=judge_r, judge_bias=judge_bias,
        seed=seed if not isinstance(seed, np.random.SeedSequence) else str(seed.entropy),
    ).items()}
    chash = _config_hash(params)

    frames = []
    expert_means: dict[str, np.ndarray] = {}
    for crit in crit_names:
        u = rng.normal(0.0, rater_sd, raters)
        v = rng.normal(0.0, context_sd, n_ctx)
        w = rng.normal(0.0, response_sd, n_resp)
        e = rng.normal(0.0, noise_sd, n_pairs)
        eff = np.array([effects[crit][c] for c in cond_arr])
        y = fixed_common + eff + u[rater_idx] + v[ctx_arr] + w[resp_idx] + e
        score = np.clip(np.rint(y), *SCALE) if scale == "likert" else y
        frames.append(pd.DataFrame({
            "study_id": study_id,
            "rater_id": np.array(rater_ids, object)[rater_idx],
            "rater_group": np.array(group_of, object)[rater_idx],
            "item_id": np.array(item_ids, object)[resp_idx],
            "session_id": design["session_id"].to_numpy(object)[resp_idx],
            "target_index": design["target_index"].to_numpy("int64")[resp_idx],
            "model": model_arr,
            "condition": cond_arr,
            "criterion": crit,
            "score": score.astype(float),
        }))
        expert_means[crit] = np.bincount(resp_idx, weights=score, minlength=n_resp) / np.bincount(resp_idx, minlength=n_resp)
    ratings = pd.concat(frames, ignore_index=True)
    ratings["comment"] = pd.Series([None] * len(ratings), dtype="string")
    ratings["flagged"] = False
    ratings["seconds_on_item"] = np.nan  # not simulated: null, never 0
    ratings["watched_fraction"] = np.nan
    ratings["is_retest"] = False
    ratings["n_edits"] = 0
    ratings["created_at"] = now
    ratings["updated_at"] = now
    ratings["config_hash"] = chash
    if scale == "likert":
        ratings["score"] = ratings["score"].astype("int64")
    ratings = ratings[list(RATINGS_COLUMNS)]
    for col in ("study_id", "rater_id", "rater_group", "item_id", "session_id", "model", "condition", "criterion"):
        ratings[col] = ratings[col].astype("string")

    total_sd = float(np.sqrt(rater_sd**2 + context_sd**2 + response_sd**2 + noise_sd**2))
    gshifts = [group_shift if is_last_group[i] else 0.0 for i in range(raters)]  # finite raters: their mix
    truth = true_contrasts(effects, base_mean=base_mean, total_sd=total_sd, model_shifts=list(mshift.values()),
                           group_shifts=gshifts, scale=scale)
    judgments = None
    if judge_r is not None:
        judgments = simulate_judge(design, expert_means, judge_r, rng, bias=judge_bias, spread=judge_spread,
                                   judge_model=judge_model or f"sim:judge-r{judge_r:.2f}", created_at=now)
    return SimulatedStudy(ratings=ratings, judgments=judgments, truth=truth, params=params)


def simulate_ratings(**kwargs) -> pd.DataFrame:
    """The ratings table (RATINGS_COLUMNS) of `simulate_study(**kwargs)`."""
    return simulate_study(**kwargs).ratings


def simulate_judge(design: pd.DataFrame, expert_means: dict[str, np.ndarray], r: float, rng: np.random.Generator, *,
                   bias: float = 0.3, spread: float = 0.6, judge_model: str = "sim:judge",
                   created_at: str | None = None) -> pd.DataFrame:
    """A judge whose latent score correlates exactly `r` (in the sample) with the expert mean per
    response; its 1..5 distribution is a discretised normal around the latent score."""
    points = np.arange(SCALE[0], SCALE[1] + 1, dtype=float)
    created_at = created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    frames = []
    for crit, m in expert_means.items():
        sd = float(np.std(m))
        z = (m - m.mean()) / sd if sd > 0 else np.zeros_like(m)
        eps = rng.normal(size=len(m))
        if sd > 0:  # orthogonalise in the sample so corr(latent, m) is exactly r
            eps = eps - (eps @ z) / (z @ z) * z
        eps = (eps - eps.mean()) / (np.std(eps) or 1.0)
        latent = m.mean() + bias + (sd if sd > 0 else 1.0) * (r * z + np.sqrt(max(0.0, 1 - r * r)) * eps)
        logits = -((points[None, :] - latent[:, None]) ** 2) / (2 * spread**2)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        expected = p @ points
        frames.append(pd.DataFrame({
            "session_id": design["session_id"].astype(str).to_numpy(),
            "target_index": design["target_index"].astype("int64").to_numpy(),
            "model": design["model"].astype(str).to_numpy(),
            "condition": design["condition"].astype(str).to_numpy(),
            "judge_model": judge_model,
            "criterion": crit,
            "score": points[p.argmax(axis=1)].astype("int64"),
            "score_expected": expected,
            "probs": [json.dumps({str(int(k)): round(float(x), 6) for k, x in zip(points, row)}) for row in p],
            "method": "logprobs",
            "n_samples": pd.array([None] * len(m), dtype="Int64"),
            "reason": f"simulated judge (r={r:.2f} with the expert mean, bias {bias:+.2f})",
            "prompt_hash": "simulated",
            "steps_hash": "simulated",
            "created_at": created_at,
        }))
    return pd.concat(frames, ignore_index=True)[list(JUDGMENTS_COLUMNS)]


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """CSV or Parquet by extension, written atomically."""
    from emoguide.corpus.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix in (".parquet", ".pq"):
            df.to_parquet(tmp, index=False)
        elif suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            raise ValueError(f"{path}: write .csv or .parquet")
    return path
