"""Stage verbs built from the registry: options come from each stage's settings model.

`emoguide <stage> --corpus DIR [SESSIONS...] [--<setting> VALUE ...] [--force] [--executor ...]`
runs one stage through the runner. A setting given on the command line is saved into the stage's
corpus.toml section (as the hand-written verbs do), so a later `emoguide run` uses it too.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, get_args, get_origin

import typer
from rich.console import Console

console = Console(stderr=True)

ExecutorOpt = Annotated[
    str, typer.Option("--executor", help="serial (in this process), pool (a process per worker) or ray.")
]
WorkersOpt = Annotated[
    Optional[int], typer.Option("--workers", "-j", help="Parallel workers for pool/ray (default: one per core).")
]
RayAddressOpt = Annotated[
    Optional[str], typer.Option("--ray-address", help="Join this Ray cluster (e.g. ray://head:10001); default: a local Ray.")
]


def make_executor(executor: str, workers: int | None, ray_address: str | None):
    from emoguide.pipeline.executors import make_executor as _make

    if executor not in ("serial", "pool", "ray"):
        raise typer.BadParameter(f"{executor!r}: use serial, pool or ray", param_hint="--executor")
    if ray_address and executor != "ray":
        raise typer.BadParameter("--ray-address needs --executor ray", param_hint="--ray-address")
    try:
        return _make(executor, workers, address=ray_address)
    except RuntimeError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)


def _simple(annotation: Any) -> tuple[type, list[str] | None] | None:
    """(click-able python type, choices) for a settings field, or None when it is not a simple
    scalar (lists and nested models stay in corpus.toml)."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None
        return _simple(args[0])
    if origin is Literal:
        choices = [str(a) for a in get_args(annotation)]
        return str, choices
    if annotation in (str, int, float, bool):
        return annotation, None
    if annotation is Path:
        return str, None
    return None


def stage_command(name: str):
    """A typer command function for stage `name`, its signature built from the settings model."""
    from emoguide.pipeline import registry

    cls = registry.stage_class(name)
    fields = cls.Settings.model_fields
    params = [
        inspect.Parameter("corpus", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
            Path, typer.Option("--corpus", "-c", help="Corpus directory (holds corpus.toml).")]),
        inspect.Parameter("sessions", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Optional[list[str]], typer.Argument(help="Session ids (default: all).")]),
    ]
    settable: dict[str, tuple[type, list[str] | None]] = {}
    for fname, f in fields.items():
        got = _simple(f.annotation)
        if got is None:
            continue
        typ, choices = got
        settable[fname] = got
        desc = (f.description or fname).rstrip(".")
        if choices:
            desc += f" ({', '.join(choices)})"
        desc += f" (corpus.toml: {name}.{fname}; default {f.default!r})"
        flag = "--" + fname.replace("_", "-")
        decl = (f"{flag}/--no-{fname.replace('_', '-')}",) if typ is bool else (flag,)
        params.append(inspect.Parameter(
            fname, inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[Optional[typ], typer.Option(*decl, help=desc)],
        ))
    params += [
        inspect.Parameter("force", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
            bool, typer.Option("--force", help="Redo work even if inputs and settings are unchanged.")]),
        inspect.Parameter("executor", inspect.Parameter.KEYWORD_ONLY, default="serial", annotation=ExecutorOpt),
        inspect.Parameter("workers", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=WorkersOpt),
        inspect.Parameter("ray_address", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RayAddressOpt),
    ]

    def command(**kw: Any) -> None:
        from emoguide.cli import _finish, _open
        from emoguide.pipeline.events import RichProgress
        from emoguide.pipeline.runner import run_one

        c = _open(kw["corpus"])
        changes = {k: kw[k] for k in settable if kw.get(k) is not None}
        for k, (_, choices) in settable.items():
            if k in changes and choices and str(changes[k]) not in choices:
                raise typer.BadParameter(f"{changes[k]!r}: choose {', '.join(choices)}", param_hint="--" + k.replace("_", "-"))
        settings = c.settings
        if changes:
            section = getattr(settings, name, None)
            if isinstance(section, dict):
                section.update(changes)
                setattr(settings, name, section)
            elif section is not None:
                for k, v in changes.items():
                    setattr(section, k, v)
            c.save_settings(settings)
            settings = c.settings
        try:
            stage = cls.from_corpus_settings(settings)
        except ValueError as exc:
            console.print(f"[red]error:[/] {c.settings_path} [{name}]: {exc}")
            raise typer.Exit(2)
        bar = RichProgress(console, title=name)
        ex = make_executor(kw["executor"], kw["workers"], kw["ray_address"])
        try:
            summary = run_one(c, stage, kw["sessions"], force=kw["force"], executor=ex, on_event=bar)
        except KeyboardInterrupt:
            bar.stop()
            console.print("[yellow]interrupted:[/] finished sessions were kept; rerun to go on")
            raise typer.Exit(130)
        finally:
            bar.stop()
        _finish(summary)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = name
    command.__doc__ = (cls.help or (cls.__doc__ or name).strip().splitlines()[0]) + (
        f"\n\nReads: {', '.join(cls.reads) or '-'}. Writes: {', '.join(cls.writes) or '-'}."
    )
    return command


#: Stages with a hand-written verb in cli.py (extra options: overrides, figures, ...).
HAND_WRITTEN = {"ingest_media", "ingest_transcript", "roles", "faces", "dissonance", "prompts", "generate", "judge"}


def register(app: typer.Typer) -> None:
    from emoguide.pipeline import registry

    for name in registry.available():
        cls = registry.stage_class(name)
        if name in HAND_WRITTEN or cls.scope != "session":
            continue
        app.command(name=name, help=None)(stage_command(name))
