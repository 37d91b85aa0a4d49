"""`emoguide stats simulate` and `emoguide stats power`: simulated rating studies for sizing a
study before paying experts (docs/power.md). `cli_stats.py` calls `register(stats_app)`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console(stderr=True)
out = Console()

EffectOpt = Annotated[
    Optional[list[str]],
    typer.Option("--effect", help="Latent shift vs base: 0.4 (every condition and criterion), empathy=0.4, "
                                  "empathy:dissonance=0.45 (repeatable; later ones win)."),
]


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    console.print(f"[red]error:[/] {escape(str(message))}")
    raise typer.Exit(code)


def register(stats_app: typer.Typer) -> None:
    """Add `simulate` and `power` to the `emoguide stats` group."""

    @stats_app.command("simulate")
    def simulate(
        corpus: Annotated[Optional[Path], typer.Option("--corpus", "-c", help="Rate this corpus's generations (its session_id/target_index/model/condition rows).")] = None,
        out_file: Annotated[Optional[Path], typer.Option("--out", help="Ratings table (.csv or .parquet; default: the corpus's reports/stats/simulated_ratings.csv, else simulated_ratings.csv).")] = None,
        judgments_out: Annotated[Optional[Path], typer.Option("--judgments-out", help="Also write a simulated judge's table here (JUDGMENTS_COLUMNS).")] = None,
        effect: EffectOpt = None,
        raters: Annotated[int, typer.Option(help="Number of raters.")] = 5,
        contexts: Annotated[int, typer.Option(help="Contexts (videos) without --corpus.")] = 100,
        conditions: Annotated[int, typer.Option(help="Conditions without --corpus (base, discrete, continuous, dissonance, ...).")] = 4,
        models: Annotated[int, typer.Option(help="Models without --corpus.")] = 1,
        raters_per_context: Annotated[Optional[int], typer.Option(help="Each context rated by this many raters (default: all).")] = None,
        judge_r: Annotated[Optional[float], typer.Option("--judge-r", help="The simulated judge's correlation with the mean expert score (default 0.3 with --judgments-out).")] = None,
        rater_sd: Annotated[float, typer.Option(help="Rater leniency sd (latent 1-5 units).")] = 0.4,
        context_sd: Annotated[float, typer.Option(help="Context difficulty sd.")] = 0.4,
        response_sd: Annotated[float, typer.Option(help="Response quality sd (shared by a response's raters).")] = 0.6,
        noise_sd: Annotated[float, typer.Option(help="Rating noise sd.")] = 0.5,
        base_mean: Annotated[float, typer.Option(help="Latent mean of base.")] = 3.3,
        group_shift: Annotated[float, typer.Option(help="Shift of the second rater group (paper: about -0.7).")] = 0.0,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    ) -> None:
        """Write a ratings table (the `rate export` format) for a simulated study with a planted condition effect, rater leniency, context difficulty and noise; optionally a simulated judge."""
        from emoguide.evaluation.stats.simulate import parse_effects, simulate_study, write_table

        try:
            eff = parse_effects(effect or ["0.4"])
        except ValueError as exc:
            _fail(str(exc))
        generations = None
        default_out = Path("simulated_ratings.csv")
        if corpus is not None:
            from emoguide.corpus import Corpus
            from emoguide.llm.generate import read_generations

            try:
                c = Corpus.open(corpus)
            except FileNotFoundError as exc:
                _fail(str(exc))
            if not c.generations_path.exists():
                _fail(f"{c.generations_path}: no generations; run `emoguide generate` first")
            generations = read_generations(c.generations_path)
            default_out = c.reports_dir / "stats" / "simulated_ratings.csv"
        if judgments_out is not None and judge_r is None:
            judge_r = 0.3
        try:
            study = simulate_study(
                raters=raters, contexts=contexts, conditions=conditions, models=models, effect=eff,
                raters_per_context=raters_per_context, rater_sd=rater_sd, context_sd=context_sd,
                response_sd=response_sd, noise_sd=noise_sd, base_mean=base_mean, group_shift=group_shift,
                generations=generations, judge_r=judge_r, seed=seed,
            )
        except ValueError as exc:
            _fail(str(exc))
        path = write_table(study.ratings, out_file or default_out)
        r = study.ratings
        out.print(f"{len(r)} ratings: {r['rater_id'].nunique()} raters x {r['item_id'].nunique()} responses "
                  f"({r[['session_id', 'target_index']].drop_duplicates().shape[0]} contexts) x "
                  f"{r['criterion'].nunique()} criteria -> {path}", markup=False, highlight=False, soft_wrap=True)
        for t in study.truth.itertuples():
            if t.latent_effect:
                out.print(f"  planted {t.criterion}:{t.condition} latent {t.latent_effect:+.3f} = "
                          f"{t.true_contrast:+.3f} on the 1-5 scale", markup=False, highlight=False, soft_wrap=True)
        if judgments_out is not None and study.judgments is not None:
            jpath = write_table(study.judgments, judgments_out)
            out.print(f"{len(study.judgments)} judgments (simulated judge, r={judge_r:g}) -> {jpath}", markup=False, highlight=False, soft_wrap=True)

    @stats_app.command("power")
    def power_cmd(
        effect: Annotated[float, typer.Option(help="Latent shift of each non-base condition vs base (1-5 units).")] = 0.4,
        raters: Annotated[int, typer.Option(help="Number of raters.")] = 5,
        contexts: Annotated[int, typer.Option(help="Contexts (videos).")] = 100,
        conditions: Annotated[int, typer.Option(help="Conditions including base.")] = 4,
        models: Annotated[int, typer.Option(help="Models.")] = 1,
        sims: Annotated[int, typer.Option("--sims", help="Simulated studies.")] = 200,
        alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
        target: Annotated[Optional[str], typer.Option(help="The contrast of interest vs base (default: the last condition, dissonance).")] = None,
        only_target: Annotated[bool, typer.Option("--only-target", help="Plant the effect on the target condition only (default: every non-base condition).")] = False,
        raters_per_context: Annotated[Optional[int], typer.Option(help="Each context rated by this many raters (default: all).")] = None,
        rater_sd: Annotated[float, typer.Option(help="Rater leniency sd.")] = 0.4,
        context_sd: Annotated[float, typer.Option(help="Context difficulty sd.")] = 0.4,
        response_sd: Annotated[float, typer.Option(help="Response quality sd.")] = 0.6,
        noise_sd: Annotated[float, typer.Option(help="Rating noise sd.")] = 0.5,
        cost_per_video: Annotated[float, typer.Option(help="Expert fee per rater per video (paper: $7).")] = 7.0,
        workers: Annotated[int, typer.Option(help="Processes (at most 2).")] = 2,
        mixed: Annotated[str, typer.Option(help="fast: the contrasts with raters fixed, fitted per context (equal to the crossed model for complete designs; seconds); stats: the crossed model `emoguide stats` reports (slow on large studies).")] = "fast",
        no_mixed: Annotated[bool, typer.Option("--no-mixed", help="Skip the mixed model (the paper's analysis only).")] = False,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write the per-study results here.")] = None,
    ) -> None:
        """Estimate by simulation the chance that the mixed model and the paper's ANOVA/Tukey detect an effect, and how often their 95% CIs cover it."""
        from emoguide.evaluation.stats.power import power

        try:
            res = power(effect=effect, raters=raters, contexts=contexts, conditions=conditions, models=models,
                        n_sims=sims, alpha=alpha, seed=seed, target=target,
                        effect_on="target" if only_target else "all", workers=workers, with_mixed=not no_mixed, mixed=mixed,
                        cost_per_video=cost_per_video, raters_per_context=raters_per_context, rater_sd=rater_sd,
                        context_sd=context_sd, response_sd=response_sd, noise_sd=noise_sd)
        except ValueError as exc:
            _fail(str(exc))
        out.print(res.format(), markup=False, highlight=False, soft_wrap=True)
        if csv is not None:
            from emoguide.evaluation.stats.simulate import write_table

            out.print(f"per-study results -> {write_table(res.sims, csv)}", markup=False, highlight=False, soft_wrap=True)
