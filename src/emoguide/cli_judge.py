"""`emoguide judge`: the G-Eval LLM judge, the corpus stage `emoguide.stages.judge` run by the one runner."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add `judge` to the `emoguide` app."""

    @app.command("judge")
    def judge_cmd(
        corpus: Annotated[Path, typer.Option("--corpus", "-c", help="Corpus directory (holds corpus.toml).")],
        model: Annotated[
            list[str],
            typer.Option(
                "--model", "-m",
                help="Judge model, provider:model, repeatable (a panel): openai:gpt-4o, "
                "llamacpp-server:NAME, vllm:NAME, llamacpp:smollm2 (in-process), ...",
            ),
        ],
        method: Annotated[
            str,
            typer.Option(help="logprobs: score distribution from token log-probabilities (an error row "
                         "where the backend gives none); sampling: n samples; auto: logprobs where "
                         "available, else sampling, recorded per row."),
        ] = "auto",
        samples: Annotated[int, typer.Option(help="Samples per score for --method sampling (temperature 1).")] = 20,
        criteria_from_study: Annotated[
            bool, typer.Option("--criteria-from-study/--paper-criteria", help="Judge the rating study's criteria when the corpus has a study (ratings.sqlite), so judge and raters read the same statements; --paper-criteria: always the paper's three.")
        ] = True,
        steps: Annotated[
            Optional[Path], typer.Option("--steps", help="Evaluation steps file (TOML) to use instead of <corpus>/judge/steps.toml.")
        ] = None,
        regenerate_steps: Annotated[
            bool, typer.Option("--regenerate-steps", help="Have the steps model write new evaluation steps (a new version of judge/steps.toml).")
        ] = False,
        steps_model: Annotated[
            Optional[str], typer.Option("--steps-model", help="Model that writes missing steps (default: the first -m; without it the paper's criteria use the packaged hand-written steps).")
        ] = None,
        concurrency: Annotated[Optional[int], typer.Option(help="Requests in flight at once.")] = None,
        timeout: Annotated[Optional[float], typer.Option(help="Seconds per request before it counts as failed.")] = None,
        seed: Annotated[int, typer.Option(help="Seed for sampling and for the shuffled work order.")] = 0,
        force: Annotated[bool, typer.Option("--force", help="Rejudge rows already done (the model is asked again).")] = False,
        limit: Annotated[int, typer.Option(help="Only the first N contexts (0: all); for trying things out.")] = 0,
        no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    ) -> None:
        """Score every generated response on the study's criteria with an LLM judge (G-Eval).

        One call per response x judge x criterion, blinded (the judge sees the context dialogue,
        technique and response, never the model or the condition), scored as a distribution.
        Cached and resumable like `generate`; writes judgments.parquet and judgments.json.
        """
        from rich.markup import escape

        from emoguide.cli import _check_models, _finish, _open, console, out
        from emoguide.evaluation.judge.run import METHOD_CHOICES, StudyCriteriaError, study_criteria
        from emoguide.pipeline.events import RichProgress
        from emoguide.pipeline.runner import run_stages
        from emoguide.stages.judge import JudgeStage, JudgeStageSettings

        if method not in METHOD_CHOICES:
            raise typer.BadParameter(f"{method!r}: use {', '.join(METHOD_CHOICES)}", param_hint="--method")
        if samples < 1:
            raise typer.BadParameter("must be at least 1", param_hint="--samples")
        c = _open(corpus)
        if criteria_from_study:  # a study that cannot be read is a usage error (exit 2), before any call
            try:
                study_criteria(c.root)
            except StudyCriteriaError as exc:
                console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
                raise typer.Exit(2)
        llm = c.settings.llm.model_copy(deep=True)
        _check_models(list(model) + ([steps_model] if steps_model else []), llm)
        if concurrency is not None:
            llm.concurrency = concurrency
        if timeout is not None:
            llm.timeout_s = timeout
        stage = JudgeStage(JudgeStageSettings(
            models=list(model), method=method, samples=samples, seed=seed,
            criteria_from_study=criteria_from_study, steps=str(steps) if steps else None,
            regenerate_steps=regenerate_steps, steps_model=steps_model, limit=limit, llm=llm,
        ))
        stage.console = console
        bar = None if no_progress else RichProgress(console, title="judge")
        try:
            report = run_stages(c, [stage], force=force, on_event=bar)
        finally:
            if bar is not None:
                bar.stop()
        summary = report.summary("judge")
        if report.interrupted:  # Ctrl-C: what was judged is checkpointed; a rerun goes on from there
            console.print("interrupted: the judged rows are saved; run again to go on", highlight=False)
            raise typer.Exit(130)
        df = report.corpus_results.get("judge")
        if df is None:  # the stage raised (no generations, unknown provider, bad steps file...)
            reason = summary.failed[0].reason if summary is not None and summary.failed else "judge failed"
            console.print(f"[red]error:[/] {escape(reason)}", highlight=False)
            raise typer.Exit(2)
        ok = df[df["status"] == "ok"]
        by = ok.groupby(["judge_model", "method"]).size()
        for (judge_model, used), n in by.items():
            out.print(f"{judge_model}: {n} scores by {used}", highlight=False)
        out.print(f"judgments: {c.root / 'judgments.parquet'} ({len(df)} rows this run)", highlight=False)
        _finish(summary)
