"""`report.md` and `report.html`: every table and figure of `emoguide stats` in the paper's order,
each with a one-line reading computed from the numbers, then provenance, choices and what was
skipped. Rendered with Jinja2 (templates/report.md.j2, templates/report.html.j2); the HTML
environment autoescapes, so a rater id or model name cannot inject markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoguide import RESEARCH_NOTICE
from emoguide.corpus.atomic import write_text

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Section:
    key: str
    title: str
    readings: list[str] = field(default_factory=list)
    tables: list[tuple[str, dict]] = field(default_factory=list)  # (file name, {"columns", "rows"})
    figures: list[str] = field(default_factory=list)  # PNG file names (relative to the report)
    notes: list[str] = field(default_factory=list)


def fmt(value: Any, digits: int = 3, sci: bool = False) -> str:
    """Numbers for the report: null as an em dash; `sci`: small values (p-values) in scientific
    notation, else fixed decimals (an estimate of -5e-15 reads 0.000)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if sci and v != 0 and abs(v) < 10 ** -digits:
            return f"{v:.2e}"
        if v == 0:
            v = 0.0  # no "-0.000"
        return f"{v:.{digits}f}"
    return str(value)


P_COLUMNS = {"p", "p_adj", "p_holm"}


def _cell(column: str, value: Any, whole: bool) -> str:
    if whole and isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return fmt(value, sci=column in P_COLUMNS)


def _table(df: pd.DataFrame, max_rows: int = 60, whole_numbers: bool = False) -> dict:
    """Cells as text; `whole_numbers`: integer-valued floats without decimals (Table 1 counts)."""
    cols = list(df.columns)
    rows = [[_cell(c, v, whole_numbers) for c, v in zip(cols, row)] for row in df.head(max_rows).itertuples(index=False)]
    return {"columns": list(df.columns), "rows": rows, "more": max(len(df) - max_rows, 0)}


def _ci(lo: Any, hi: Any) -> str:
    return f"[{fmt(lo, 2)}, {fmt(hi, 2)}]"


def _excludes_zero(lo: float, hi: float) -> bool:
    return np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0)


# --------------------------------------------------------------------------- readings


def read_means(means: pd.DataFrame) -> list[str]:
    out = []
    for crit, g in means.groupby("criterion", sort=False):
        top, low = g.loc[g["mean"].idxmax()], g.loc[g["mean"].idxmin()]
        out.append(f"{crit}: highest mean {fmt(top['mean'], 2)} ({top['model']}, {top['condition']}), lowest "
                   f"{fmt(low['mean'], 2)} ({low['model']}, {low['condition']}).")
    return out


def read_improvement(imp: pd.DataFrame) -> list[str]:
    out = []
    for crit, g in imp.groupby("criterion", sort=False):
        sig = g[[_excludes_zero(a, b) for a, b in zip(g["ci_low"], g["ci_high"])]]
        best = g.loc[g["diff"].idxmax()]
        out.append(f"{crit}: largest change over base {fmt(best['diff'], 2)} {_ci(best['ci_low'], best['ci_high'])} "
                   f"({best['model']}, {best['condition']}); {len(sig)} of {len(g)} model x condition changes have a "
                   "95% CI that excludes 0 (unadjusted).")
    return out


def read_anova(anova: pd.DataFrame) -> list[str]:
    return [f"{r.criterion}: F({int(r.df_between)}, {int(r.df_within)}) = {fmt(r.F, 2)}, p = {fmt(r.p, sci=True)} "
            f"({int(r.n)} ratings taken as independent)." for r in anova.itertuples()]


def read_tukey(tukey: pd.DataFrame) -> list[str]:
    out = []
    for crit, g in tukey.groupby("criterion", sort=False):
        sig = g[g["p_adj"] < 0.05]
        pairs = ", ".join(f"{r.group2} - {r.group1} = {fmt(r.meandiff, 2)}" for r in sig.itertuples()) or "none"
        out.append(f"{crit}: {len(sig)} of {len(g)} pairs differ at adjusted p < 0.05 ({pairs}).")
    return out


def read_mixed(mixed: pd.DataFrame) -> list[str]:
    out = []
    for crit, g in mixed.groupby("criterion", sort=False):
        cond = g[g["term"].str.startswith("condition[")]
        parts = [f"{r.term[10:-1]} - base = {fmt(r.estimate, 2)} {_ci(r.ci_low, r.ci_high)}, Holm p = {fmt(r.p_holm, sci=True)}"
                 for r in cond.itertuples()]
        n_sig = int((cond["p_holm"] < 0.05).sum())
        out.append(f"{crit}: {n_sig} of {len(cond)} condition contrasts hold after Holm at 0.05 with rater and context "
                   f"as random effects; " + "; ".join(parts) + ".")
    return out


def read_ordinal(ordinal: pd.DataFrame, mixed: pd.DataFrame) -> list[str]:
    out = []
    for crit, g in ordinal.groupby("criterion", sort=False):
        m = mixed[mixed["criterion"] == crit].set_index("term")["estimate"]
        same = [np.sign(r.estimate) == np.sign(m.get(r.term, np.nan)) for r in g.itertuples()]
        out.append(f"{crit}: the ordinal model's contrasts have the mixed model's sign in {sum(same)} of {len(g)} cases; "
                   f"{int((g['p_holm'] < 0.05).sum())} hold after Holm.")
    return out


def read_kappa(kappa: pd.DataFrame) -> list[str]:
    return [f"{crit}: median pairwise kappa {fmt(g['kappa'].median(), 2)} unweighted (the paper's), "
            f"{fmt(g['kappa_quadratic'].median(), 2)} quadratic-weighted, over {len(g)} rater pairs."
            for crit, g in kappa.groupby("criterion", sort=False)]


def read_agreement(agr: pd.DataFrame) -> list[str]:
    return [f"{r.criterion}: ordinal alpha {fmt(r.alpha_ordinal, 2)} {_ci(r.alpha_ci_low, r.alpha_ci_high)} on "
            f"{int(r.n_items)} responses; ICC(2,1) {fmt(r.icc2_1, 2)} (one rater), ICC(2,k) {fmt(r.icc2_k, 2)} (the "
            "panel mean)." for r in agr.itertuples()]


def read_groups(groups: pd.DataFrame, gm: pd.DataFrame) -> list[str]:
    out = []
    for crit, g in groups.groupby("criterion", sort=False):
        out.append(f"{crit}: " + ", ".join(f"{r.group} {fmt(r.mean, 2)} (n = {int(r.n)})" for r in g.itertuples()) + ".")
    for r in gm[gm["term"].str.startswith("group[")].itertuples() if len(gm) else []:
        out.append(f"{r.criterion}: mixed-model group effect {r.term} = {fmt(r.estimate, 2)} {_ci(r.ci_low, r.ci_high)} "
                   "(with few raters per group this is descriptive).")
    return out


def read_judge(jve: pd.DataFrame) -> list[str]:
    out = []
    for crit, g in jve.groupby("criterion", sort=False):
        experts = g[g["judge_model"].str.startswith("expert:")]
        judges = g[~g["judge_model"].str.startswith("expert:")]
        ceiling = experts["pearson_r"].median()
        for r in judges.itertuples():
            out.append(f"{crit}: {r.judge_model} r = {fmt(r.pearson_r, 2)} {_ci(r.r_ci_low, r.r_ci_high)}, rho = "
                       f"{fmt(r.spearman_rho, 2)}, bias {fmt(r.mean_diff, 2)} on {int(r.n_items)} responses; human "
                       f"ceiling (median expert vs the others) r = {fmt(ceiling, 2)}.")
        if judges.empty:
            out.append(f"{crit}: human ceiling (median expert vs the others) r = {fmt(ceiling, 2)}.")
    return out


# --------------------------------------------------------------------------- sections


def build_sections(result) -> list[Section]:
    F = result.frames
    png = lambda name: [p.name for p in result.figures.get(name, []) if p.suffix == ".png"]  # noqa: E731
    S: list[Section] = []

    sec = Section("dataset", "1. The corpus (paper Table 1, Figures 3 and 10)")
    if len(F.get("table1", [])):
        sec.tables.append(("table1.csv", _table(F["table1"], whole_numbers=True)))
        sec.readings.append("Table 1 for this corpus; each statistic is defined in the dataset notes below.")
        try:
            from emoguide.evaluation.stats.dataset import TABLE1_DEFINITIONS

            sec.notes += [f"{k}: {v}" for k, v in TABLE1_DEFINITIONS.items() if k in set(F["table1"]["statistic"])]
        except ImportError:
            pass
    for stem in sorted(result.figures):
        if stem.startswith(("fig3", "fig10")):
            sec.figures += png(stem)
    sec.notes += result.dataset_notes
    S.append(sec)

    inp = result.inputs
    sec = Section("ratings", "2. The ratings (paper Figure 5)")
    sec.readings.append(f"{inp['n_ratings']} ratings by {inp['n_raters']} rater(s) of {inp['n_responses']} responses in "
                        f"{inp['n_contexts']} contexts; criteria {', '.join(inp['criteria'])}; models "
                        f"{', '.join(inp['models'])}; conditions {', '.join(inp['conditions'])}.")
    sec.readings += read_means(F["means"])
    sec.tables.append(("means.csv", _table(F["means"])))
    if len(F["improvement"]):
        sec.readings += read_improvement(F["improvement"])
        sec.tables.append(("improvement.csv", _table(F["improvement"])))
    sec.figures += png("fig5_ratings")
    S.append(sec)

    sec = Section("paper", "3. The paper's analysis: one-way ANOVA and Tukey HSD")
    sec.notes.append("Reproduced for comparison: every rating is treated as an independent observation, which "
                     "ratings by the same rater and of the same context are not (pseudoreplication), so these "
                     "p-values and intervals are too optimistic; section 4 is the analysis to read.")
    if len(F["anova"]):
        sec.readings += read_anova(F["anova"])
        sec.tables.append(("anova.csv", _table(F["anova"])))
    if len(F["tukey"]):
        sec.readings += read_tukey(F["tukey"])
        sec.tables.append(("tukey.csv", _table(F["tukey"])))
    S.append(sec)

    sec = Section("mixed", "4. The primary analysis: mixed model with crossed rater and context effects")
    sec.notes.append("score ~ condition + model, random intercepts for rater and for context (crossed), REML, "
                     "statsmodels MixedLM with one all-data group and variance components; contrasts against base, "
                     "Holm-adjusted across the condition contrasts of a criterion; Wald 95% CIs.")
    if len(F["mixed"]):
        sec.readings += read_mixed(F["mixed"])
        sec.tables.append(("mixed.csv", _table(F["mixed"])))
        sec.tables.append(("variance.csv", _table(F["variance"])))
    if len(F["ordinal"]):
        sec.readings += read_ordinal(F["ordinal"], F["mixed"])
        sec.tables.append(("ordinal.csv", _table(F["ordinal"])))
        sec.notes += list(F["ordinal"].attrs.get("notes", []))
    sec.notes += [w for w in result.fit_warnings if w.startswith(("mixed", "ordinal"))]
    S.append(sec)

    sec = Section("agreement", "5. Agreement between raters (paper Figure 6)")
    if len(F["kappa"]):
        sec.readings += read_kappa(F["kappa"])
        sec.tables.append(("kappa.csv", _table(F["kappa"])))
    if len(F["agreement"]):
        sec.readings += read_agreement(F["agreement"])
        sec.tables.append(("agreement.csv", _table(F["agreement"])))
    sec.figures += png("fig6_kappa")
    sec.notes += list(F["agreement"].attrs.get("notes", []))
    S.append(sec)

    sec = Section("groups", "6. Rater groups")
    sec.readings += read_groups(F["groups"], F["groups_mixed"])
    sec.tables.append(("groups.csv", _table(F["groups"])))
    if len(F["groups_mixed"]):
        sec.tables.append(("groups_mixed.csv", _table(F["groups_mixed"])))
    sec.tables.append(("rater_means.csv", _table(F["rater_means"])))
    sec.notes += list(F["groups_mixed"].attrs.get("notes", []))
    sec.notes += [w for w in result.fit_warnings if w.startswith("groups_mixed")]
    S.append(sec)

    sec = Section("judge", "7. The judge against the experts (paper Table 3)")
    if len(F["judge_vs_experts"]):
        sec.readings += read_judge(F["judge_vs_experts"])
        sec.tables.append(("judge_vs_experts.csv", _table(F["judge_vs_experts"])))
    sec.figures += png("bland_altman")
    S.append(sec)
    return S


def context(result) -> dict[str, Any]:
    return {
        "title": "emoguide stats: the rating study",
        "notice": RESEARCH_NOTICE,
        "inputs": result.inputs,
        "sections": build_sections(result),
        "choices": result.notes,
        "skipped": result.skipped,
    }


def write_report(result) -> tuple[Path, Path]:
    """Render report.md and report.html into the result's out_dir."""
    import jinja2

    ctx = context(result)
    md_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False,
                                trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    md_env.filters["cell"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    html_env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                  trim_blocks=True, lstrip_blocks=True)
    md_path, html_path = result.out_dir / "report.md", result.out_dir / "report.html"
    write_text(md_path, md_env.get_template("report.md.j2").render(**ctx))
    write_text(html_path, html_env.get_template("report.html.j2").render(**ctx))
    return md_path, html_path
