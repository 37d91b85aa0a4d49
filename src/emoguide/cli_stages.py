"""Stage verbs built from the registry: options come from each stage's settings model.

`emoguide <stage> --corpus DIR [SESSIONS...] [--<setting> VALUE ...] [--force] [--executor ...]`
runs one stage through the runner. A setting given on the command line is validated (the stage's
model, then the whole corpus.toml), then saved into the stage's corpus.toml section (as the
hand-written verbs do), so a later `emoguide run` uses it too; a wrong one is refused (exit 2)
with nothing written. The verb holds the corpus lock while it works (`hold_corpus`, `--wait`).
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

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


WaitOpt = Annotated[
    Optional[float],
    typer.Option("--wait", help="If another emoguide command is writing this corpus, wait up to this many seconds "
                 "for it (default: stop at once, exit 1, naming its pid; also EMOGUIDE_LOCK_WAIT)."),
]


def hold_corpus(c, command: str, wait: float | None = None) -> None:
    """Take the corpus lock for the rest of this CLI command (released when the command ends).

    One line at the start of a verb that writes the corpus: `hold_corpus(c, "roles")`. Another
    writer holding it: print one line naming its pid and exit 1 (`wait` seconds: wait first).
    """
    try:  # typer >= 0.22 vendors click as typer._click: its context stack, not click's, is current
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click.globals import get_current_context

    from emoguide.corpus.lock import CorpusLocked

    lock = c.lock(command=_command_text(command), wait=wait)
    try:
        lock.acquire()
    except CorpusLocked as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1)
    ctx = get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(lock.release)
    else:  # called outside a command: the caller keeps it until the process ends
        import atexit

        atexit.register(lock.release)


def _command_text(verb: str) -> str:
    import sys

    args = [a for a in sys.argv[1:]]
    return "emoguide " + (" ".join(args) if args else verb)


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


def section_of(stage: str) -> str:
    """The corpus.toml section a stage's settings live in ([transcribe] for asr, diarize and
    utterances; [media] for ingest_media; else the stage's name)."""
    from emoguide.config import SECTION_STAGES

    for section, stages in SECTION_STAGES.items():
        if stage in stages and section != stage:
            return section
    return stage


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
        desc += f" (corpus.toml: {section_of(name)}.{fname}; default {f.default!r})"
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
        inspect.Parameter("wait", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=WaitOpt),
    ]

    def command(**kw: Any) -> None:
        from emoguide.cli import _finish, _open
        from emoguide.config import SettingsError
        from emoguide.pipeline.events import RichProgress
        from emoguide.pipeline.runner import run_one

        c = _open(kw["corpus"])
        hold_corpus(c, name, kw.get("wait"))
        changes = {k: kw[k] for k in settable if kw.get(k) is not None}
        for k, (_, choices) in settable.items():
            if k in changes and choices and str(changes[k]) not in choices:
                raise typer.BadParameter(f"{changes[k]!r}: choose {', '.join(choices)}", param_hint="--" + k.replace("_", "-"))
        try:
            settings = c.settings
            section_name = section_of(name)
            section = getattr(settings, section_name, None)
            if changes:
                if isinstance(section, dict):
                    section.update(changes)
                    setattr(settings, section_name, section)
                elif isinstance(section, BaseModel):
                    for k, v in changes.items():
                        if k in type(section).model_fields:
                            setattr(section, k, v)
            # Validate first (the stage's own model, then the whole file), save after: a wrong
            # option is refused with nothing written.
            try:
                stage = cls.from_corpus_settings(settings)
                if changes:  # the command line wins, also for keys corpus.toml has no place for
                    stage.settings = cls.Settings.model_validate({**stage.settings.model_dump(), **changes})
            except SettingsError:
                raise
            except ValidationError as exc:
                e = exc.errors()[0]
                field = ".".join(str(x) for x in e.get("loc", ()))
                msg = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
                opt = f" (--{field.replace('_', '-')})" if field in changes else ""
                raise SettingsError(c.settings_path, f"{msg} (got {e.get('input')!r}){opt}",
                                    f"{section_name}.{field}") from None
            except ValueError as exc:
                raise SettingsError(c.settings_path, " ".join(str(exc).split()), section_name) from None
            if changes and section is not None:
                c.save_settings(settings)
        except SettingsError as exc:
            console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
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
