"""`run_stats`: every analysis of `emoguide stats`, its tables (CSV), figures (PNG + PDF) and report.

What the data cannot support is skipped with the reason in the report (`StatsResult.skipped`),
never a crash: no judgments -> no judge table; one rater -> no agreement and no mixed model;
no overlap -> no kappa. Skipped tables are still written, header only, so that scripts reading
`reports/stats/` find every file with its columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from emoguide.corpus.atomic import write_json, write_table
from emoguide.evaluation.stats import agreement, descriptive, judge_vs_experts, models
from emoguide.evaluation.stats.load import condition_order, criteria_in, load_judgments, load_ratings

#: Every table `emoguide stats` writes, with its columns in order.
TABLES: dict[str, tuple[str, ...]] = {
    "table1": ("statistic", "value"),
    "means": descriptive.MEANS_COLUMNS,
    "improvement": descriptive.IMPROVEMENT_COLUMNS,
    "anova": models.ANOVA_COLUMNS,
    "tukey": models.TUKEY_COLUMNS,
    "mixed": models.MIXED_COLUMNS,
    "ordinal": models.MIXED_COLUMNS,
    "variance": ("criterion", "component", "variance"),
    "kappa": agreement.KAPPA_COLUMNS,
    "agreement": agreement.AGREEMENT_COLUMNS,
    "groups": descriptive.GROUPS_COLUMNS,
    "groups_mixed": models.MIXED_COLUMNS,
    "rater_means": ("criterion", "rater_id", "group", "n", "mean", "ci_low", "ci_high"),
    "judge_vs_experts": judge_vs_experts.JUDGE_COLUMNS,
}


@dataclass
class StatsResult:
    out_dir: Path
    inputs: dict[str, Any]
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # choices and provenance
    dataset_notes: list[str] = field(default_factory=list)
    fit_warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report_md: Path | None = None
    report_html: Path | None = None

    @property
    def files(self) -> list[Path]:
        out = list(self.tables.values()) + [p for ps in self.figures.values() for p in ps]
        return out + [p for p in (self.report_md, self.report_html) if p is not None]


def _empty(name: str) -> pd.DataFrame:
    return pd.DataFrame(columns=list(TABLES[name]))


def _per_criterion(result: StatsResult, name: str, crits: list[str], fn) -> pd.DataFrame:
    """Run fn(criterion) per criterion; a ValueError skips that criterion with its reason."""
    frames = []
    for crit in crits:
        try:
            out = fn(crit)
        except ValueError as exc:
            result.skipped.append(f"{name} ({crit}): {exc}")
            continue
        if isinstance(out, dict):
            out = pd.DataFrame([out])
        for w in out.attrs.get("warnings", []):
            result.fit_warnings.append(f"{name} ({crit}): {w}")
        frames.append(out)
    if not frames:
        return _empty(name)
    merged = pd.concat(frames, ignore_index=True)
    merged.attrs["per_criterion"] = {f["criterion"].iloc[0]: dict(f.attrs) for f in frames if len(f)}
    merged.attrs["notes"] = list(dict.fromkeys(f.attrs["note"] for f in frames if f.attrs.get("note")))
    return merged


def _variance(mixed_attrs: dict[str, dict]) -> pd.DataFrame:
    rows = [{"criterion": crit, "component": comp, "variance": val}
            for crit, attrs in mixed_attrs.items() for comp, val in attrs.get("variance_components", {}).items()]
    return pd.DataFrame(rows, columns=list(TABLES["variance"]))


def _dataset(result: StatsResult, corpus_root: Path | None) -> None:
    """Table 1, Figures 3 and 10 and their notes, from the dataset module (when it is there)."""
    if corpus_root is None:
        result.skipped.append("Table 1 and Figures 3/10: no corpus given (--ratings only)")
        result.frames["table1"] = _empty("table1")
        return
    try:
        from emoguide.evaluation.stats import dataset
    except ImportError as exc:
        result.skipped.append(f"Table 1 and Figures 3/10: emoguide.evaluation.stats.dataset is missing ({exc})")
        result.frames["table1"] = _empty("table1")
        return
    from emoguide.corpus import Corpus

    corpus = Corpus.open(corpus_root)
    result.frames["table1"] = dataset.table1(corpus)
    skipped: list[str] = []
    written = dataset.corpus_figures(corpus, result.out_dir, skipped)
    for path in written:
        result.figures.setdefault(Path(path).stem, []).append(Path(path))
    result.dataset_notes = list(dataset.notes(corpus))
    result.skipped.extend(s for s in skipped if s not in result.dataset_notes)


def _provenance(corpus_root: Path | None, judgments: pd.DataFrame | None) -> list[str]:
    """Which models wrote the responses (generations.json) and how the judge scored."""
    notes = []
    if corpus_root is not None:
        meta_path = Path(corpus_root) / "generations.json"
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                notes.append(f"{meta_path}: unreadable ({exc})")
            else:
                for mid, info in sorted((meta.get("models") or {}).items()):
                    desc = ", ".join(f"{k}={v}" for k, v in sorted(info.items()) if k not in ("last_run",)
                                     and not isinstance(v, (dict, list)))
                    notes.append(f"generator {mid}: {desc}" if desc else f"generator {mid}")
        else:
            notes.append("generations.json not found: the generators are known by id only")
    if corpus_root is not None and judgments is not None:
        jmeta_path = Path(corpus_root) / "judgments.json"
        if jmeta_path.exists():
            try:
                jmeta = json.loads(jmeta_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                notes.append(f"{jmeta_path}: unreadable ({exc})")
            else:
                for jid, info in sorted((jmeta.get("judges") or {}).items()):
                    desc = ", ".join(f"{k}={v}" for k, v in sorted(info.items())
                                     if k not in ("last_run",) and v is not None and not isinstance(v, (dict, list)))
                    notes.append(f"judge backend {jid}: {desc}" if desc else f"judge backend {jid}")
                steps = jmeta.get("steps") or {}
                if steps:
                    notes.append("judge evaluation steps: " + ", ".join(f"{k}={v}" for k, v in sorted(steps.items())
                                                                        if not isinstance(v, (dict, list))))
    if judgments is not None and len(judgments):
        for judge, g in judgments.groupby("judge_model", observed=True):
            methods = ", ".join(f"{m} ({n})" for m, n in g["method"].astype(str).value_counts().items())
            steps = ", ".join(sorted(g["steps_hash"].dropna().astype(str).unique())) or "unknown"
            notes.append(f"judge {judge}: scoring method {methods}; evaluation steps hash {steps}; "
                         "the judge's value is its expected score where it returned probabilities, else its score")
    return notes


def run_stats(corpus_root: str | Path | None = None, ratings: str | Path | None = None,
              judgments: str | Path | None = None, out_dir: str | Path | None = None, *,
              n_resamples: int = descriptive.DEFAULT_RESAMPLES, seed: int = descriptive.DEFAULT_SEED,
              report: bool = True) -> StatsResult:
    """Run every analysis and write tables, figures and the report into `out_dir`
    (default `<corpus>/reports/stats/`)."""
    corpus_root = Path(corpus_root) if corpus_root is not None else None
    if out_dir is None:
        if corpus_root is None:
            raise ValueError("give --out when there is no corpus")
        out_dir = corpus_root / "reports" / "stats"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ratings_df = load_ratings(corpus_root, ratings)
    judgments_df = load_judgments(corpus_root, judgments)
    result = StatsResult(out_dir, inputs={
        "corpus": str(corpus_root) if corpus_root else None,
        "ratings": str(ratings) if ratings else ratings_df.attrs.get("source"),
        "judgments": (str(judgments) if judgments else (judgments_df.attrs.get("source") if judgments_df is not None else None)),
        "n_ratings": int(len(ratings_df)), "n_raters": int(ratings_df["rater_id"].nunique()),
        "n_contexts": int(ratings_df["context"].nunique()), "n_responses": int(ratings_df["response"].nunique()),
        "criteria": criteria_in(ratings_df), "models": sorted(ratings_df["model"].dropna().astype(str).unique()),
        "conditions": condition_order(ratings_df["condition"]),
        "n_resamples": n_resamples, "seed": seed,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    result.notes.extend(ratings_df.attrs.get("notes", []))
    if judgments_df is not None:
        result.notes.extend(judgments_df.attrs.get("notes", []))
    if ratings_df.empty:
        raise ValueError(f"{result.inputs['ratings']}: no ratings with a score")
    crits = criteria_in(ratings_df)
    F = result.frames
    result.notes.extend(_provenance(corpus_root, judgments_df))

    _dataset(result, corpus_root)

    F["means"] = descriptive.means_table(ratings_df, n_resamples, seed)
    F["improvement"] = descriptive.improvement_table(ratings_df, n_resamples=n_resamples, seed=seed)
    if F["improvement"].empty:
        result.skipped.append("improvement over base: no condition 'base' shares contexts with another condition")
    F["anova"] = _per_criterion(result, "anova", crits, lambda c: models.paper_anova(ratings_df, c))
    F["tukey"] = _per_criterion(result, "tukey", crits, lambda c: models.paper_tukey(ratings_df, c))
    F["mixed"] = _per_criterion(result, "mixed", crits, lambda c: models.mixed_contrasts(ratings_df, c))
    F["variance"] = _variance(F["mixed"].attrs.get("per_criterion", {}))
    F["ordinal"] = _per_criterion(result, "ordinal", crits, lambda c: models.ordinal_check(ratings_df, c))
    F["kappa"] = agreement.kappa_table(ratings_df)
    if F["kappa"].empty:
        result.skipped.append("kappa: no pair of raters shares 2 or more responses")
    F["agreement"] = agreement.agreement_table(ratings_df, n_resamples=min(n_resamples, 1000), seed=seed)
    F["groups"] = descriptive.groups_table(ratings_df)
    F["rater_means"] = descriptive.rater_means(ratings_df, n_resamples, seed)
    F["groups_mixed"] = _per_criterion(result, "groups_mixed", crits, lambda c: models.mixed_group_effect(ratings_df, c))
    if judgments_df is None:
        result.skipped.append("judge vs experts: no judgments (run `emoguide judge`, or pass --judgments)")
    F["judge_vs_experts"] = judge_vs_experts.judge_vs_experts(ratings_df, judgments_df, min(n_resamples, 1000), seed)
    pairs = judge_vs_experts.judge_pairs(ratings_df, judgments_df) if judgments_df is not None else None
    if judgments_df is not None and (pairs is None or pairs.empty):
        result.skipped.append("judge vs experts: no judged response was also rated by an expert")
    result.notes.append(f"confidence intervals of means, differences, alpha and r: percentile cluster bootstrap over "
                        f"contexts ({n_resamples} resamples for means, {min(n_resamples, 1000)} for alpha and r; seed {seed})")
    result.notes.append("agreement and the human ceiling use each rater's first rating of a response (retests left out)")

    for name, cols in TABLES.items():
        frame = F.get(name, _empty(name))
        frame = frame.reindex(columns=list(cols))
        path = out_dir / f"{name}.csv"
        write_table(path, frame)
        result.tables[name] = path

    _figures(result, pairs)
    write_json(out_dir / "stats.json", {"inputs": result.inputs, "notes": result.notes, "skipped": result.skipped,
                                         "fit_warnings": result.fit_warnings, "dataset_notes": result.dataset_notes,
                                         "tables": {k: str(v) for k, v in result.tables.items()},
                                         "figures": {k: [str(p) for p in v] for k, v in result.figures.items()}})
    if report:
        from emoguide.evaluation.stats.report import write_report

        result.report_md, result.report_html = write_report(result)
    return result


def _figures(result: StatsResult, pairs: pd.DataFrame | None) -> None:
    from emoguide.evaluation.stats import figures

    F, out = result.frames, result.out_dir
    jobs = [
        ("fig5_ratings", lambda: figures.figure5(F["means"], F["improvement"], out / "fig5_ratings"), not F["means"].empty),
        ("fig6_kappa", lambda: figures.figure6(F["kappa"], out / "fig6_kappa"), not F["kappa"].empty),
        ("bland_altman", lambda: figures.bland_altman(pairs, out / "bland_altman"), pairs is not None and not pairs.empty),
    ]
    for name, job, possible in jobs:
        if not possible:
            result.skipped.append(f"{name}: nothing to draw (see the table above)")
            continue
        result.figures[name] = job()

