"""`emoguide judge`: the G-Eval LLM judge (emoguide.evaluation.judge)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def _study_criteria(corpus_root: Path, console):
    """The rating study's criteria when the corpus has a study, else None (with a message)."""
    if not (corpus_root / "ratings.sqlite").exists():
        console.print(f"no rating study in {corpus_root} (ratings.sqlite): judging the paper's criteria")
        return None
    try:
        from emoguide.evaluation.rating.config import load_study_criteria
    except ImportError as exc:
        console.print(f"the rating study's criteria cannot be read here ({exc}): judging the paper's criteria")
        return None
    try:
        criteria = load_study_criteria(corpus_root)
    except Exception as exc:  # noqa: BLE001 - a study that exists but cannot be read is an error
        console.print(f"[red]error:[/] reading the rating study's criteria from {corpus_root}: {exc}")
        raise typer.Exit(2)
    if not criteria:
        console.print("the rating study names no criteria: judging the paper's criteria")
        return None
    console.print(f"criteria from the rating study: {', '.join(c.name for c in criteria)}")
    return list(criteria)


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
        from emoguide.cli import _finish, _open, console, out
        from emoguide.errors import EmoguideError
        from emoguide.evaluation.judge.run import METHOD_CHOICES, JudgeSettings, judge

        if method not in METHOD_CHOICES:
            raise typer.BadParameter(f"{method!r}: use {', '.join(METHOD_CHOICES)}", param_hint="--method")
        if samples < 1:
            raise typer.BadParameter("must be at least 1", param_hint="--samples")
        c = _open(corpus)
        llm = c.settings.llm.model_copy(deep=True)
        if concurrency is not None:
            llm.concurrency = concurrency
        if timeout is not None:
            llm.timeout_s = timeout
        criteria = _study_criteria(c.root, console) if criteria_from_study else None
        try:
            df, summary = judge(
                c, list(model), criteria=criteria,
                settings=JudgeSettings(method=method, samples=samples, seed=seed),
                llm_settings=llm, steps_file=steps, regenerate_steps=regenerate_steps,
                steps_model=steps_model, force=force, limit=limit, console=console,
                progress=not no_progress,
            )
        except (EmoguideError, FileNotFoundError, ValueError) as exc:
            console.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2)
        ok = df[df["status"] == "ok"]
        by = ok.groupby(["judge_model", "method"]).size()
        for (judge_model, used), n in by.items():
            out.print(f"{judge_model}: {n} scores by {used}", highlight=False)
        out.print(f"judgments: {c.root / 'judgments.parquet'} ({len(df)} rows this run)", highlight=False)
        _finish(summary)
