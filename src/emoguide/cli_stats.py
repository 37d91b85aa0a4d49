"""`emoguide stats`: the rating study's analysis (tables, figures, report), plus the simulation
and power verbs that `emoguide.cli_stats_sim` adds as subcommands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the `stats` group (its callback runs the analysis when no subcommand is given)."""
    stats_app = typer.Typer(
        help="Statistics of the rating study: the paper's ANOVA/Tukey/kappa reproduced, the mixed model "
        "with crossed rater and context effects, agreement, judge vs experts, figures and a report. "
        "Subcommands simulate studies and estimate power.",
        invoke_without_command=True,
        no_args_is_help=False,
    )

    @stats_app.callback(invoke_without_command=True)
    def stats(
        ctx: typer.Context,
        corpus: Annotated[Optional[Path], typer.Option("--corpus", "-c", help="Corpus directory (ratings from its rating study, judgments.parquet, Table 1).")] = None,
        ratings: Annotated[Optional[Path], typer.Option("--ratings", help="Ratings table (CSV/Parquet) in the `emoguide rate export` format.")] = None,
        judgments: Annotated[Optional[Path], typer.Option("--judgments", help="Judge scores (judgments.parquet or CSV); default <corpus>/judgments.parquet.")] = None,
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default <corpus>/reports/stats/).")] = None,
        resamples: Annotated[int, typer.Option("--resamples", min=100, help="Bootstrap resamples of contexts.")] = 2000,
        seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 20241201,
    ) -> None:
        """Write every table (CSV), figure (PNG + PDF) and report.md/report.html."""
        if ctx.invoked_subcommand is not None:
            return
        from rich.markup import escape

        if corpus is None and ratings is None:
            console.print("[red]error:[/] give --corpus DIR or --ratings FILE")
            raise typer.Exit(2)
        if corpus is None and out is None:
            console.print("[red]error:[/] give --out DIR when there is no --corpus")
            raise typer.Exit(2)
        if corpus is not None and not (corpus / "corpus.toml").exists():
            console.print(f"[red]error:[/] {escape(str(corpus))}: not an emoguide corpus (no corpus.toml)")
            raise typer.Exit(2)
        from emoguide.errors import EmoguideError
        from emoguide.evaluation.stats.run import run_stats

        try:
            result = run_stats(corpus, ratings, judgments, out, n_resamples=resamples, seed=seed)
        except (EmoguideError, ValueError, FileNotFoundError) as exc:
            console.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2)
        console.print(f"wrote {len(result.tables)} tables and {sum(len(v) for v in result.figures.values())} figure files "
                      f"to {result.out_dir}")
        for line in result.skipped:
            console.print(f"[yellow]skipped:[/] {escape(str(line))}")
        console.print(f"report: {result.report_md} and {result.report_html}")

    from emoguide import cli_stats_sim

    cli_stats_sim.register(stats_app)
    app.add_typer(stats_app, name="stats")
