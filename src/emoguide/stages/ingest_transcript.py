"""Stage `ingest_transcript`: a transcript file's sessions become corpus sessions (docs/parsing.md).

Routing stays in the parent (`plan_transcripts`): folders are expanded, each file is read with
`read_transcript_file` (session ids come from the file's content: one AnnoMI CSV holds 133
sessions), and a session id claimed by two files, or a session made from another source, fails
with a reason. Each planned session is then a task (`run`) that returns `utterances.parquet` and
`source.json`; a media session of the same id (video.mp4 + video.csv) keeps its source, with the
transcript's recorded under "transcript".

The parent reads each file once and hands every session its parsed table in the payload: reading
it again per session in the workers would cost one whole-file parse per session. A payload-less
rerun (`emoguide run ingest_transcript` on existing sessions) reads the file named in source.json.

`ingest_transcripts(corpus, paths, ...)` does both and returns `(session ids, BatchSummary)`: the
CLI's `ingest` verb calls it. A session whose file and settings are unchanged is skipped;
`--force` (`force=True`) redoes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping

from pydantic import BaseModel, Field, field_validator

from emoguide.corpus import schema
from emoguide.errors import InputError
from emoguide.pipeline.stage import NotApplicable, Resources, Result, SessionView, Stage
from emoguide.summary import BatchSummary, Outcome
from emoguide.transcripts.ingest import expand_paths, same_file
from emoguide.transcripts.readers import READER_VERSION, normalise_roles, read_transcript_file

NAME = "ingest_transcript"


class IngestTranscriptSettings(BaseModel):
    """How transcript files are read."""

    roles: dict[str, str] | None = Field(
        None, description="speaker letter or name -> therapist | patient | unknown (overrides the file)"
    )
    fmt: str | None = Field(None, description="force a format (table, srt, vtt, json, jsonl, annomi); None: detect")

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: Mapping[str, str] | None) -> dict[str, str] | None:
        return normalise_roles(v) or None


def _transcript_path(session: SessionView) -> Path | None:
    if session.payload.get("path"):
        return Path(session.payload["path"])
    src = session.source()
    if src.get("kind") == "media":
        p = (src.get("transcript") or {}).get("path")
    else:
        p = src.get("path") if src.get("format") else None
    return Path(p) if p else None


class IngestTranscriptStage(Stage[IngestTranscriptSettings]):
    name = NAME
    help = "Import a transcript (paper table CSV/TSV, SRT, WebVTT, JSON/JSONL, AnnoMI) as a session."
    Settings = IngestTranscriptSettings
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("source", "utterances")
    version = 1
    scope = "source"
    resources = Resources(cpus=1, memory_mb=300)
    packages = ("pandas",)

    def identity(self) -> dict[str, Any]:
        return {"reader": READER_VERSION}

    def inputs(self, session: SessionView) -> list[Path]:
        p = _transcript_path(session)
        return [p] if p else []

    def run(self, session: SessionView) -> Result:
        p = dict(session.payload)
        if "utterances" not in p:  # a rerun of an existing session: read its file again
            path = _transcript_path(session)
            if path is None:
                raise NotApplicable("not a transcript session (no transcript file in source.json)")
            parsed = {t.session_id: t for t in read_transcript_file(path, fmt=self.settings.fmt, roles=self.settings.roles)}
            if session.id not in parsed:
                raise InputError(path, f"holds no session {session.id!r} (it holds {', '.join(parsed) or 'none'})")
            t = parsed[session.id]
            existing = session.source()
            p = {"path": str(path), "utterances": t.utterances, "source": t.source, "warnings": t.warnings,
                 "pair_with": existing if existing.get("kind") == "media" else None}
        utterances = schema.conform(p["utterances"])
        src = p["source"]
        res = Result()
        res.tables["source"] = {**p["pair_with"], "transcript": src} if p.get("pair_with") else src  # type: ignore[assignment]
        res.tables["utterances"] = utterances
        for w in p.get("warnings") or []:
            res.warn(w)
        if p.get("pair_with"):  # video.mp4 + video.csv: does the transcript fit in the media?
            from emoguide.media.ingest import pairing_warning

            if (w := pairing_warning(p["pair_with"], src, utterances["start"])) is not None:
                res.warn(w)
        res.backends = {"reader": READER_VERSION, "format": src.get("format")}
        res.extra = {"source_file": str(p["path"])}
        note = f"{len(utterances)} utterances"
        if res.warnings:
            note += f"; {len(res.warnings)} warning(s): " + "; ".join(res.warnings)
        res.summary = note
        return res


# --------------------------------------------------------------------------------------------
# routing (in the parent)


def plan_transcripts(
    corpus,
    paths: Iterable[str | Path] | str | Path,
    *,
    settings: IngestTranscriptSettings | None = None,
    force: bool = False,
    on_progress: Callable[[Outcome], None] | None = None,
):
    """Read the files and decide which session each of their sessions becomes.

    Returns a `MediaPlan`-shaped plan (payloads, slots in input order, labels, new ids); failures
    decided here (an unreadable file, an id claimed twice, a session from another source) are
    outcomes in its slots, reported to `on_progress` at once.
    """
    from emoguide.stages.ingest_media import MediaPlan

    s = settings or IngestTranscriptSettings()
    plan = MediaPlan()
    claimed: dict[str, Path] = {}  # session id -> file it came from in this batch
    claimed_from: dict[str, list] = {}  # session id -> the parse of that file (twice in one file vs file twice)

    def record(item: str, status, reason: str = "") -> None:
        out = Outcome(item, NAME, status, reason)
        plan.slots.append(out)
        if on_progress is not None:
            on_progress(out)

    for file in expand_paths(paths):
        try:
            parsed_list = read_transcript_file(file, fmt=s.fmt, roles=s.roles)
        except InputError as err:
            record(str(file), "failed", str(err))
            continue
        except Exception as err:  # noqa: BLE001 - one bad file never stops the batch
            record(str(file), "failed", f"{file}: {type(err).__name__}: {err}")
            continue
        for parsed in parsed_list:
            sid = parsed.session_id
            item = f"{sid} ({file.name})"
            if sid in claimed:
                if not same_file(claimed[sid], file):
                    record(item, "failed", f"session id {sid!r} also comes from {claimed[sid]} in this batch; "
                           "rename one of the files (or its session column) so the ids differ")
                elif claimed_from.get(sid) is not parsed_list:
                    record(item, "skipped", "given twice in this command; imported once")
                else:
                    record(item, "failed", f"session id {sid!r} occurs twice in {file}")
                continue
            session = corpus.session(sid)
            try:
                existing = session.read_source() if session.source_path.exists() else {}
            except Exception as err:  # noqa: BLE001
                record(item, "failed", f"{session.source_path}: {type(err).__name__}: {err}")
                continue
            previous = existing.get("path") or existing.get("origin") or "another source"
            # A media session of the same id (video.mp4 + video.csv) takes the transcript: the pair
            # is one session, with the transcript recorded under "transcript".
            pairs_media = existing.get("kind") == "media"
            earlier = (existing.get("transcript") or {}).get("path") if pairs_media else existing.get("path")
            if existing and not pairs_media and not same_file(earlier, file) and not force:
                record(item, "failed", f"session {sid!r} already exists, imported from {previous}; not overwritten "
                       "(rename the file, or rerun with --force to replace it)")
                continue
            claimed[sid] = file
            claimed_from[sid] = parsed_list
            if not session.path.exists():
                plan.new.add(sid)
            plan.payloads[sid] = {
                "path": str(file),
                "utterances": parsed.utterances,
                "source": parsed.source,
                "warnings": list(parsed.warnings),
                "pair_with": existing if pairs_media else None,
            }
            plan.labels[sid] = item
            plan.slots.append(sid)
    return plan


def ingest_transcripts(
    corpus,
    paths: Iterable[str | Path] | str | Path,
    *,
    roles: Mapping[str, str] | None = None,
    fmt: str | None = None,
    force: bool = False,
    on_progress: Callable[[Outcome], None] | None = None,
    executor=None,
    on_event=None,
) -> tuple[list[str], BatchSummary]:
    """Import transcript files (or directories of them) into `corpus`.

    Returns the ids of all sessions the files hold (imported or already current) and a
    `BatchSummary` with one outcome per session (done / skipped) or per failed file / session.
    `on_progress` gets each `Outcome` as it is decided. A bad `roles` mapping raises ValueError.
    """
    from emoguide.stages.ingest_media import run_planned

    settings = IngestTranscriptSettings(roles=dict(roles) if roles else None, fmt=fmt)
    plan = plan_transcripts(corpus, paths, settings=settings, force=force, on_progress=on_progress)
    return run_planned(
        corpus, IngestTranscriptStage(settings), plan.payloads, plan.slots, plan.labels, plan.new,
        title="ingest transcripts", force=force, executor=executor, on_progress=on_progress, on_event=on_event,
    )
