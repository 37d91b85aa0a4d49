"""`emoguide rate ...`: the expert rating study (init, plan, invite, serve, export, status)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

rate_app = typer.Typer(
    name="rate",
    help="The blinded expert rating study: init -> plan -> invite -> serve -> export.",
    no_args_is_help=True,
)

CorpusOpt = Annotated[Path, typer.Option("--corpus", "-c", help="Corpus directory (holds generations.parquet).")]


def _fail(msg: str, code: int = 2) -> None:
    console.print(f"[red]error:[/] {escape(msg)}", highlight=False)
    raise typer.Exit(code)


def _store(corpus: Path):
    from emoguide.evaluation.rating.store import DB_NAME, RatingStore

    try:
        return RatingStore.open(corpus / DB_NAME)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


@rate_app.command("init")
def init_cmd(
    corpus: CorpusOpt,
    raters: Annotated[Optional[int], typer.Option("--raters", min=1, help="Number of raters (ids r01, r02, ...).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="study.toml (see docs/rating-config.md).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a study that already holds ratings (kept as a backup).")] = False,
) -> None:
    """Create the study (ratings.sqlite, clips) from generations.parquet."""
    from rich.progress import BarColumn, Progress, TextColumn

    from emoguide.corpus import Corpus
    from emoguide.errors import EmoguideError
    from emoguide.evaluation.rating.config import load_study_config
    from emoguide.evaluation.rating.items import StudyExistsError, create_study

    try:
        c = Corpus.open(corpus)
    except FileNotFoundError as exc:
        _fail(str(exc))
    try:
        cfg = load_study_config(config, raters=raters)
    except EmoguideError as exc:
        _fail(str(exc))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=console, transient=True) as bar:
        task = bar.add_task("cutting clips", total=None)

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what)

        try:
            summary = create_study(c, cfg, force=force, progress=progress, config_source=config or "study.toml",
                                   warn=lambda m: console.print(f"[yellow]warning:[/] {escape(m)}", highlight=False))
        except StudyExistsError as exc:
            _fail(str(exc), code=1)
        except (EmoguideError, KeyError) as exc:
            _fail(str(exc))
    clips = ", ".join(f"{v} {k}" for k, v in summary.clips.items() if v)
    if summary.replaced:
        out.print(f"replaced the previous study (backup: {summary.replaced})")
    out.print(
        f"study {summary.study_id}: {summary.contexts} contexts, {summary.items} items, {summary.raters} raters, "
        f"{summary.assignments} assignments ({summary.retests} retests), clips: {clips or 'none'}",
        highlight=False,
    )
    out.print(f"config_hash {summary.config_hash}", highlight=False)
    out.print(f"next: emoguide rate plan --corpus {corpus}; emoguide rate invite --corpus {corpus}", highlight=False)


@rate_app.command("plan")
def plan_cmd(corpus: CorpusOpt) -> None:
    """Per-rater counts, pairwise overlap (items both raters rate) and the retest items."""
    from emoguide.evaluation.rating.plan import plan_report

    store = _store(corpus)
    rep = plan_report(store)
    raters = rep["raters"]
    t = Table(title=f"{rep['n_items']} items", title_justify="left", box=box.SIMPLE)
    for col in ("rater", "items", "retests", "positions"):
        t.add_column(col, justify="right" if col != "rater" else "left")
    for r in raters:
        c = rep["counts"][r]
        t.add_row(r, str(c["items"]), str(c["retests"]), str(c["positions"]))
    out.print(t)
    per_item = list(rep["raters_per_item"].values())
    if per_item:
        out.print(f"raters per item: min {min(per_item)}, max {max(per_item)}", highlight=False)
    o = Table(title="overlap (items both raters rate)", title_justify="left", box=box.SIMPLE)
    o.add_column("")
    for r in raters:
        o.add_column(r, justify="right")
    for a in raters:
        o.add_row(a, *[str(rep["overlap"][a][b]) for b in raters])
    out.print(o)
    if rep["retests"]:
        rt = Table(title="retest items", title_justify="left", box=box.SIMPLE)
        for col in ("rater", "item_id", "first position", "retest position"):
            rt.add_column(col)
        for x in rep["retests"]:
            rt.add_row(x["rater_id"], x["item_id"], str(x["first_position"]), str(x["position"]))
        out.print(rt)
    else:
        out.print("no retest items")
    store.close()


@rate_app.command("invite")
def invite_cmd(
    corpus: CorpusOpt,
    base_url: Annotated[str, typer.Option("--base-url", help="Where raters reach the server.")] = "http://127.0.0.1:8765",
    rater: Annotated[Optional[list[str]], typer.Option("--rater", help="Only this rater (repeatable).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Print the admin login link instead.")] = False,
) -> None:
    """Issue fresh invite links (old links stop working): `rater_id<TAB>url` per line."""
    store = _store(corpus)
    base = base_url.rstrip("/")
    if admin:
        token = store.issue_admin_token()
        typer.echo(f"admin\t{base}/admin/login/{token}")
        return
    known = [r.rater_id for r in store.raters()]
    chosen = rater or known
    unknown = [r for r in chosen if r not in known]
    if unknown:
        _fail(f"unknown rater(s) {unknown}; this study's raters are {known}")
    for r in chosen:
        token = store.issue_token(r)
        typer.echo(f"{r}\t{base}/r/{token}")
    store.close()


@rate_app.command("serve")
def serve_cmd(
    corpus: CorpusOpt,
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8765,
) -> None:
    """Run the rating web app."""
    _store(corpus).close()  # a clear error before the server starts when there is no study
    from emoguide.evaluation.rating import server

    try:
        server.serve(corpus, host, port)
    except FileNotFoundError as exc:  # htmx not fetched, or the study vanished
        _fail(str(exc))


@rate_app.command("export")
def export_cmd(
    corpus: CorpusOpt,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Output file, .csv or .parquet.")],
    wide: Annotated[bool, typer.Option("--wide", help="One rater x item matrix per criterion (FILE_<criterion>).")] = False,
    groups: Annotated[Optional[Path], typer.Option("--groups", help="CSV rater_id,group overriding the groups.")] = None,
) -> None:
    """Write the tidy ratings table (unblinded: model, condition, session, target joined here)."""
    from emoguide.errors import EmoguideError
    from emoguide.evaluation.rating.export import export

    _store(corpus).close()
    try:
        paths = export(corpus, out_file, wide=wide, groups_file=groups)
    except (EmoguideError, ValueError) as exc:
        _fail(str(exc))
    for p in paths:
        out.print(f"wrote {p}", highlight=False)


@rate_app.command("status")
def status_cmd(corpus: CorpusOpt) -> None:
    """The admin dashboard in the terminal: progress, quality flags, agreement."""
    store = _store(corpus)
    d = store.dashboard()
    t = Table(box=box.SIMPLE)
    for col in ("rater", "group", "done", "total", "missing", "s/item (median)", "same scores", "too fast"):
        t.add_column(col)
    for r in d["raters"]:
        med = r["median_seconds_per_item"]
        t.add_row(r["rater_id"], r["group"] or "-", str(r["done"]), str(r["total"]), str(r["missing"]),
                  "-" if med is None else f"{med:.1f}", "yes" if r["straight_lining"] else "", "yes" if r["too_fast"] else "")
    out.print(t)
    for a in d["agreement"]:
        alpha = "-" if a["alpha_ordinal"] is None else f"{a['alpha_ordinal']:.3f}"
        out.print(f"{a['criterion']}: Krippendorff alpha (ordinal) {alpha} on {a['n_items']} items", highlight=False)
    store.close()


def register(app: typer.Typer) -> None:
    """Add the `rate` group to the `emoguide` app."""
    app.add_typer(rate_app, name="rate")
