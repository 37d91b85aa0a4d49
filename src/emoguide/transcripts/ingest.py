"""Import transcript files into a corpus (the transcript side of the ``ingest`` stage).

Each file is read with `read_transcript_file`; each session it holds becomes
``sessions/<id>/source.json`` and ``sessions/<id>/utterances.parquet``. A file that fails is
recorded in the batch summary and the batch goes on. A session whose file and settings are
unchanged is skipped (``force=True`` redoes it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Mapping

from emoguide.errors import InputError
from emoguide.runner.summary import BatchSummary, Outcome
from emoguide.transcripts.readers import (
    DIRECTORY_EXTENSIONS,
    READER_VERSION,
    normalise_roles,
    read_transcript_file,
)

STAGE = "ingest"


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, directories expanded (recursively) to their transcript files, in order.

    Hidden files and directories are skipped; duplicates are kept once.
    """
    out: dict[Path, None] = {}
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if f.is_file() and f.suffix.lower() in DIRECTORY_EXTENSIONS:
                    out.setdefault(f, None)
        else:
            out.setdefault(p, None)
    return list(out)


def _same_file(a: str | None, b: Path) -> bool:
    if not a:
        return False
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:  # pragma: no cover
        return False


def ingest_transcripts(
    corpus,
    paths: Iterable[str | Path],
    *,
    roles: Mapping[str, str] | None = None,
    fmt: str | None = None,
    force: bool = False,
    on_progress: Callable[[Outcome], None] | None = None,
) -> tuple[list[str], BatchSummary]:
    """Import transcript files (or directories of them) into `corpus`.

    Returns the ids of all sessions the files hold (imported or already current) and a
    `BatchSummary` with one outcome per session (done / skipped) or per failed file / session.
    `on_progress` is called with each `Outcome` as it is recorded.
    """
    roles_map = normalise_roles(roles) or None
    summary = BatchSummary(title="ingest transcripts")
    settings = {"roles": roles_map, "fmt": fmt, "reader": READER_VERSION}
    session_ids: list[str] = []
    claimed: dict[str, Path] = {}  # session id -> file it came from in this batch

    def record(item: str, status, reason: str = "") -> None:
        outcome = summary.add(item, STAGE, status, reason)
        if on_progress is not None:
            on_progress(outcome)

    files = expand_paths(paths)
    for file in files:
        try:
            parsed_list = read_transcript_file(file, fmt=fmt, roles=roles_map)
        except InputError as err:
            record(str(file), "failed", str(err))
            continue
        except Exception as err:  # noqa: BLE001 - one bad file never stops the batch
            record(str(file), "failed", f"{file}: {type(err).__name__}: {err}")
            continue
        for parsed in parsed_list:
            sid = parsed.session_id
            item = f"{sid} ({file.name})"
            if sid in claimed and not _same_file(str(claimed[sid]), file):
                record(
                    item,
                    "failed",
                    f"session id {sid!r} also comes from {claimed[sid]} in this batch; "
                    "rename one of the files (or its session column) so the ids differ",
                )
                continue
            session = corpus.session(sid)
            try:
                existing = session.read_source() if session.source_path.exists() else {}
                previous = existing.get("path") or existing.get("origin") or "another source"
                # A media session of the same id (video.mp4 + video.csv) takes the transcript:
                # the pair is one session, with the transcript recorded under "transcript".
                pairs_media = existing.get("kind") == "media"
                earlier = existing.get("transcript", {}).get("path") if pairs_media else existing.get("path")
                if existing and not pairs_media and not _same_file(earlier, file) and not force:
                    record(
                        item,
                        "failed",
                        f"session {sid!r} already exists, imported from {previous}; not overwritten "
                        "(rename the file, or pass force=True to replace it)",
                    )
                    continue
                claimed[sid] = file
                run = session.stage(
                    STAGE,
                    settings=settings,
                    inputs=[file],
                    outputs=[session.utterances_path, session.source_path],
                )
                if run.current and not force:
                    session_ids.append(sid)
                    record(item, "skipped", "unchanged")
                    continue
                with run:
                    run.backends = {"reader": READER_VERSION, "format": parsed.source.get("format")}
                    run.extra = {"source_file": str(file)}
                    for w in parsed.warnings:
                        run.warn(w)
                    session.path.mkdir(parents=True, exist_ok=True)
                    if pairs_media:
                        session.write_source({**existing, "transcript": parsed.source})
                    else:
                        session.write_source(parsed.source)
                    session.write_utterances(parsed.utterances)
                session_ids.append(sid)
                note = f"{len(parsed.utterances)} utterances"
                if parsed.warnings:
                    note += f"; {len(parsed.warnings)} warning(s): " + "; ".join(parsed.warnings)
                record(item, "done", note)
            except Exception as err:  # noqa: BLE001
                record(item, "failed", f"{file}: {type(err).__name__}: {err}")
    return session_ids, summary
