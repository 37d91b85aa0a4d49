"""Figures of the rating analysis: the paper's Figure 5 (mean rating per criterion x model x
condition, and the improvement over base), Figure 6 (pairwise kappa heatmaps) and a
Bland-Altman plot of the judge against the expert mean.

Each function writes `<base>.png` and `<base>.pdf` and returns both paths. Same house style as
`emoguide.evaluation.figures`: `matplotlib.figure.Figure` on the Agg canvas, no pyplot, atomic
writes. Missing values are left out of the drawing, never drawn as zeros.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emoguide.evaluation.figures import _new_figure, _save
from emoguide.evaluation.stats.load import condition_order

CONDITION_COLOURS = {"base": "tab:gray", "discrete": "tab:blue", "continuous": "tab:green", "dissonance": "tab:red"}


def _save_both(fig, base: str | Path) -> list[Path]:
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    return [_save(fig, base.with_suffix(".png")), _save(fig, base.with_suffix(".pdf"))]


def _colour(cond: str, k: int) -> str:
    return CONDITION_COLOURS.get(cond, f"C{(k + 4) % 10}")


def _short(name: str, width: int = 18) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def figure5(means: pd.DataFrame, improvement: pd.DataFrame, base: str | Path) -> list[Path]:
    """Top row: mean rating per model x condition (bars, 95% cluster-bootstrap CI), one panel per
    criterion. Bottom row: mean(condition) - mean(base) per model with 95% CIs."""
    crits = list(dict.fromkeys(means["criterion"]))
    if not crits:
        raise ValueError("no means to draw")
    fig = _new_figure((4.2 * len(crits), 6.4))
    axes = np.array(fig.subplots(2, len(crits), squeeze=False))
    conds = condition_order(means["condition"])
    for j, crit in enumerate(crits):
        ax = axes[0, j]
        cm = means[means["criterion"] == crit]
        models = sorted(cm["model"].unique())
        width = 0.8 / max(len(conds), 1)
        for k, cond in enumerate(conds):
            sel = cm[cm["condition"] == cond].set_index("model").reindex(models)
            x = np.arange(len(models)) + (k - (len(conds) - 1) / 2) * width
            y = sel["mean"].to_numpy(float)
            lo = np.clip(y - sel["ci_low"].to_numpy(float), 0, None)
            hi = np.clip(sel["ci_high"].to_numpy(float) - y, 0, None)
            err = np.vstack([np.nan_to_num(lo), np.nan_to_num(hi)])
            ax.bar(x, y, width, color=_colour(cond, k), label=cond, yerr=err, capsize=2, error_kw={"lw": 0.8})
        ax.set_xticks(np.arange(len(models)), [_short(m) for m in models], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(1, 5)
        ax.set_title(crit.capitalize())
        ax.set_ylabel("mean rating (1-5)" if j == 0 else "")
        ax2 = axes[1, j]
        ci = improvement[improvement["criterion"] == crit]
        icond = [c for c in conds if c in set(ci["condition"])]
        for k, cond in enumerate(icond):
            sel = ci[ci["condition"] == cond].set_index("model").reindex(models)
            x = np.arange(len(models)) + (k - (len(icond) - 1) / 2) * 0.2
            y = sel["diff"].to_numpy(float)
            err = np.vstack([np.nan_to_num(np.clip(y - sel["ci_low"].to_numpy(float), 0, None)),
                             np.nan_to_num(np.clip(sel["ci_high"].to_numpy(float) - y, 0, None))])
            ax2.errorbar(x, y, yerr=err, fmt="o", ms=4, capsize=2, color=_colour(cond, conds.index(cond)), label=cond)
        ax2.axhline(0, color="0.5", lw=0.8)
        ax2.set_xticks(np.arange(len(models)), [_short(m) for m in models], rotation=20, ha="right", fontsize=8)
        ax2.set_ylabel("improvement over base" if j == 0 else "")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=max(len(labels), 1), fontsize=8)
    fig.suptitle("Mean expert rating per model and condition (95% CIs, contexts resampled)", fontsize=10)
    return _save_both(fig, base)


def figure6(kappa: pd.DataFrame, base: str | Path) -> list[Path]:
    """Per criterion a rater x rater heatmap: unweighted kappa above the diagonal (the paper's
    Figure 6), quadratic-weighted kappa below it; blank where a pair shares too few responses."""
    crits = list(dict.fromkeys(kappa["criterion"]))
    if not crits:
        raise ValueError("no kappa values to draw")
    fig = _new_figure((3.6 * len(crits) + 1.0, 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(crits), squeeze=False)[0])
    image = None
    for ax, crit in zip(axes, crits):
        ck = kappa[kappa["criterion"] == crit]
        raters = sorted(set(ck["rater1"]) | set(ck["rater2"]))
        pos = {r: i for i, r in enumerate(raters)}
        mat = np.full((len(raters), len(raters)), np.nan)
        for _, row in ck.iterrows():
            i, j = pos[row["rater1"]], pos[row["rater2"]]
            mat[i, j] = row["kappa"]
            mat[j, i] = row["kappa_quadratic"]
        # aspect "auto": equal-aspect cells fight the constrained layout and clip titles and labels
        image = ax.imshow(np.ma.masked_invalid(mat), vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
        for i in range(len(raters)):
            for j in range(len(raters)):
                if np.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(raters)), [_short(r, 10) for r in raters], rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(raters)), [_short(r, 10) for r in raters], fontsize=7)
        ax.set_title(f"{crit.capitalize()}\nupper: kappa, lower: quadratic", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="Cohen's kappa")
    return _save_both(fig, base)


def bland_altman(pairs: pd.DataFrame, base: str | Path) -> list[Path]:
    """Judge - expert mean against their average, per criterion (columns) and judge (rows), with
    the mean difference (bias) and the 95% limits of agreement (bias +- 1.96 sd)."""
    if pairs.empty:
        raise ValueError("no judge-expert pairs to draw")
    crits = list(dict.fromkeys(pairs["criterion"]))
    judges = sorted(pairs["judge_model"].astype(str).unique())
    fig = _new_figure((3.8 * len(crits), 3.2 * len(judges)))
    axes = np.array(fig.subplots(len(judges), len(crits), squeeze=False))
    rng = np.random.default_rng(0)
    for i, judge in enumerate(judges):
        for j, crit in enumerate(crits):
            ax = axes[i, j]
            p = pairs[(pairs["criterion"] == crit) & (pairs["judge_model"] == judge)]
            avg = (p["value"].to_numpy(float) + p["expert_mean"].to_numpy(float)) / 2
            diff = p["value"].to_numpy(float) - p["expert_mean"].to_numpy(float)
            if len(diff):
                # small horizontal jitter: 1-5 scores stack on a lattice otherwise
                ax.scatter(avg + rng.uniform(-0.04, 0.04, len(avg)), diff, s=8, alpha=0.5, color="tab:blue")
                bias = float(np.mean(diff))
                sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else np.nan
                ax.axhline(bias, color="tab:red", lw=1, label=f"bias {bias:+.2f}")
                if np.isfinite(sd):
                    for s in (-1.96, 1.96):
                        ax.axhline(bias + s * sd, color="tab:red", lw=0.8, ls="--")
                ax.legend(fontsize=7, loc="upper right")
            ax.axhline(0, color="0.6", lw=0.6)
            ax.set_xlim(0.8, 5.2)
            ax.set_title(f"{crit.capitalize()} — {_short(judge, 24)}", fontsize=8)
            ax.set_xlabel("(judge + expert mean) / 2" if i == len(judges) - 1 else "")
            ax.set_ylabel("judge - expert mean" if j == 0 else "")
    return _save_both(fig, base)
