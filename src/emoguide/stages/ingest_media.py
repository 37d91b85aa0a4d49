"""Stage `ingest_media`: one video or audio file becomes one session (docs/media.md).

Routing stays in the parent (`plan_media`): folders are expanded, URLs and `.urls` lists are
downloaded into `<corpus>/media/` (once: `downloads.json`), each file gets the session id of its
stem, and two inputs claiming one id, or a file that would overwrite a session made from another
source, fail with a reason. Each planned session is then a task (`run`) that probes the file and
extracts `audio.wav` (16-bit PCM mono at `sample_rate`) into scratch; the runner moves it into
place and writes `source.json` and, unless the session has one (an imported transcript, or
speech already transcribed), an empty utterance table so the session is listed.

`ingest_media(corpus, inputs, ...)` does both and returns `(session ids, BatchSummary)`: the CLI's
`ingest` verb calls it. A session whose file (by `media_digest`) and sample rate are unchanged is
skipped; `--force` (`force=True`) redoes it. Frame rate and decode window do not change the outputs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

from pydantic import BaseModel, Field

from emoguide.config import MediaSettings
from emoguide.corpus import schema
from emoguide.corpus.layout import slugify
from emoguide.errors import InputError
from emoguide.media.ingest import (
    AUDIO_NAME,
    INGEST_VERSION,
    DownloadIndex,
    MediaSource,
    expand_media_paths,
    extract_media,
    fetch_url,
    media_digest,
    pairing_warning,
    same_file,
    source_record,
)
from emoguide.media.urls import looks_like_url_list, read_url_list
from emoguide.pipeline.stage import NotApplicable, Resources, Result, SessionView, Stage
from emoguide.summary import BatchSummary, Outcome

NAME = "ingest_media"


class IngestMediaSettings(BaseModel):
    """Audio extraction (corpus.toml's [media] section; its other keys belong to other stages)."""

    sample_rate: int = Field(16000, description="audio sample rate for ASR/diarization/voice")
    window_s: float = Field(30.0, gt=0, description="seconds decoded at a time: memory stays flat")
    url_retries: int = Field(3, ge=0, description="download retries for URL sources")

    @classmethod
    def from_media(cls, media: MediaSettings | BaseModel | dict | None) -> "IngestMediaSettings":
        data = media.model_dump() if isinstance(media, BaseModel) else dict(media or {})
        return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})


def _media_payload(session: SessionView) -> dict[str, Any] | None:
    """The task's payload, or (rerun of an existing session) the same built from source.json."""
    if session.payload.get("path"):
        return session.payload
    src = session.source()
    if src.get("kind") == "media" and src.get("path"):
        return {"path": src["path"], "url": src.get("url"), "title": src.get("title"),
                "uploader": src.get("uploader"), "licence": src.get("licence"),
                "download": src.get("download"), "transcript": src.get("transcript")}
    return None


class IngestMediaStage(Stage[IngestMediaSettings]):
    name = NAME
    help = "Probe a video/audio file and extract its audio track to 16 kHz mono audio.wav."
    Settings = IngestMediaSettings
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ("source", "audio", "utterances")
    #: A file with no audio track has no audio.wav (see Stage.optional).
    optional: ClassVar[tuple[str, ...]] = ("audio",)
    version = 1
    scope = "source"
    resources = Resources(cpus=1, memory_mb=400)
    packages = ("av", "numpy")

    @classmethod
    def from_corpus_settings(cls, settings: Any) -> "IngestMediaStage":
        # corpus.toml keeps these keys in [media] (shared with the faces stage's frame_rate).
        return cls(IngestMediaSettings.from_media(getattr(settings, "media", None)))

    def settings_for_hash(self) -> Any:
        # The decode window only bounds memory; retries only affect downloads (in the parent).
        return {"sample_rate": self.settings.sample_rate, "ingest": INGEST_VERSION}

    def inputs(self, session: SessionView) -> list[Path]:
        p = _media_payload(session)
        return [Path(p["path"])] if p else []

    def input_digests(self, session: SessionView) -> dict[str, str]:
        """The inputs' digests by `media_digest` (sampled for files over 16 MB), so a resumed
        batch does not hash multi-GB videos whole. Used by the runner where it supports it."""
        return {p.name: media_digest(p) for p in self.inputs(session) if p.exists()}

    def run(self, session: SessionView) -> Result:
        payload = _media_payload(session)
        if payload is None:
            raise NotApplicable("not a media session (no media file in source.json)")
        source = MediaSource.from_dict(payload)
        s = self.settings
        wav = session.scratch / AUDIO_NAME
        got = extract_media(source.path, wav, s.sample_rate, s.window_s)  # InputError: nothing written
        res = Result()
        rec = source_record(session.id, source, got, digest=payload.get("digest"))
        if payload.get("transcript"):
            rec["transcript"] = payload["transcript"]
        res.tables["source"] = rec  # type: ignore[assignment]  # a dict -> source.json
        if got.audio is not None:
            res.files["audio"] = wav
        if not session.has("utterances"):
            res.tables["utterances"] = schema.empty_utterances()
        for w in got.warnings:
            res.warn(w)
        if payload.get("transcript"):  # a transcript imported first (video.csv, then video.mp4)
            starts = session.utterances()["start"] if session.has("utterances") else None
            if (w := pairing_warning(rec, payload["transcript"], starts)) is not None:
                res.warn(w)
        res.backends = {"decoder": "pyav", "ingest": INGEST_VERSION}
        res.extra = {"source_file": str(source.path), "audio": got.audio is not None}
        res.summary = got.describe()
        return res


# --------------------------------------------------------------------------------------------
# routing (in the parent)


@dataclass
class MediaPlan:
    """What `plan_media` decided: a payload per session to run, and the batch's slots in input
    order (an `Outcome` decided here, or the session id whose task will decide it)."""

    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    slots: list[Outcome | str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # session id -> "id (file or URL)"
    new: set[str] = field(default_factory=set)  # ids with no session directory before


def _same_origin(existing: dict[str, Any], source: MediaSource) -> bool:
    if source.url:
        return existing.get("url") == source.url
    return existing.get("kind") == "media" and same_file(existing.get("path"), source.path)


def plan_media(
    corpus,
    paths_or_urls: Iterable[str | Path] | str | Path,
    *,
    settings: IngestMediaSettings | MediaSettings | None = None,
    force: bool = False,
    on_progress: Callable[[Outcome], None] | None = None,
) -> MediaPlan:
    """Decide which input becomes which session (see the module docstring); downloads URLs.

    Failures decided here (a download, a missing file, an id claimed twice, a session from
    another source) are outcomes in `slots`, reported to `on_progress` at once.
    """
    s = settings if isinstance(settings, IngestMediaSettings) else IngestMediaSettings.from_media(settings)
    plan = MediaPlan()
    claimed: dict[str, str] = {}  # session id -> origin, within this batch
    downloads = DownloadIndex(Path(corpus.root) / "media")

    def record(item: str, status, reason: str = "") -> None:
        out = Outcome(item, NAME, status, reason)
        plan.slots.append(out)
        if on_progress is not None:
            on_progress(out)

    def fetch(url: str) -> MediaSource | None:
        try:
            return fetch_url(url, downloads, retries=s.url_retries)
        except InputError as err:
            record(url, "failed", str(err))
        except Exception as err:  # noqa: BLE001 - one bad URL never stops the batch
            record(url, "failed", f"{url}: download failed: {type(err).__name__}: {err}")
        return None

    def add(source: MediaSource) -> None:
        file = source.path
        sid = slugify(file.stem)
        item = f"{sid} ({source.url or file.name})"
        try:
            if not file.exists():
                raise InputError(file, "no such file")
            if file.is_dir():
                raise InputError(file, "is a directory")
            if not file.is_file():  # a FIFO named x.mp4 would block the decoder forever
                raise InputError(file, "not a regular file (a FIFO, socket or device); copy it to a file first")
            if sid in claimed:
                if claimed[sid] != source.origin and not (not source.url and same_file(claimed[sid], file)):
                    record(item, "failed", f"session id {sid!r} also comes from {claimed[sid]} in this batch; "
                           "rename one of the files so their names differ")
                else:
                    record(item, "skipped", "given twice in this command; imported once")
                return
            session = corpus.session(sid)
            existing = session.read_source() if session.source_path.exists() else {}
            # A transcript session of the same id (video.csv imported before video.mp4) pairs with
            # the media: its utterance table is kept and its source recorded under "transcript".
            transcript = existing.get("transcript") if existing.get("kind") == "media" else (
                existing if existing.get("format") else None
            )
            if existing and not force and not transcript and not _same_origin(existing, source):
                previous = existing.get("url") or existing.get("path") or existing.get("origin")
                record(item, "failed", f"session {sid!r} already exists, made from {previous or 'another source'}; "
                       "not overwritten (rename the file, or rerun with --force to replace it)")
                return
        except InputError as err:
            record(item, "failed", str(err))
            return
        except Exception as err:  # noqa: BLE001 - e.g. an unreadable source.json
            record(item, "failed", f"{file}: {type(err).__name__}: {err}")
            return
        claimed[sid] = source.origin
        if not session.path.exists():
            plan.new.add(sid)
        plan.payloads[sid] = {**source.to_dict(), "transcript": transcript}
        plan.labels[sid] = item
        plan.slots.append(sid)

    for item in expand_media_paths(paths_or_urls):
        if isinstance(item, str):  # a URL
            if (source := fetch(item)) is not None:
                add(source)
            continue
        path = Path(item)
        if path.is_file() and looks_like_url_list(path):
            try:
                urls = read_url_list(path)
            except InputError as err:
                record(str(path), "failed", str(err))
                continue
            if not urls:
                record(str(path), "skipped", "URL list holds no URLs")
            for url in urls:
                if (source := fetch(url)) is not None:
                    add(source)
            continue
        add(MediaSource(path=path))
    return plan


def run_planned(
    corpus,
    stage: Stage,
    payloads: dict[str, dict[str, Any]],
    slots: list[Outcome | str],
    labels: dict[str, str],
    new: set[str],
    *,
    title: str,
    force: bool = False,
    executor=None,
    on_progress: Callable[[Outcome], None] | None = None,
    on_event=None,
) -> tuple[list[str], BatchSummary]:
    """Run an ingest stage over planned sessions; the batch summary in input order.

    Shared by `ingest_media` and `ingest_transcripts`. A session that did not exist before and
    failed leaves no directory behind (the runner's failure record would be all it held).
    """
    from emoguide.pipeline.runner import run_stages

    got: dict[str, Outcome] = {}

    def events(ev) -> None:
        if ev.kind in ("done", "skipped", "failed") and ev.session in payloads:
            reason = ev.reason
            if reason.startswith("InputError: "):  # the message names the file and the problem
                reason = reason[len("InputError: "):]
            out = Outcome(labels.get(ev.session, ev.session), stage.name, ev.kind, reason)
            got[ev.session] = out
            if on_progress is not None:
                on_progress(out)
        if on_event is not None:
            on_event(ev)

    report = None
    if payloads:
        report = run_stages(corpus, [stage], executor=executor, force=force, on_event=events, payloads=payloads)
    summary = BatchSummary(title=title)
    ids: list[str] = []
    for slot in slots:
        if isinstance(slot, Outcome):
            summary.outcomes.append(slot)
            continue
        out = got.get(slot) or Outcome(labels.get(slot, slot), stage.name, "failed", "not run (interrupted)")
        summary.outcomes.append(out)
        if out.status in ("done", "skipped") and slot not in ids:
            ids.append(slot)
        elif out.status == "failed" and slot in new:
            _remove_if_only_records(corpus.sessions_dir / slot)
    if report is not None and report.interrupted:
        raise KeyboardInterrupt
    return ids, summary


def _remove_if_only_records(path: Path) -> None:
    if path.is_dir() and all(p.name in ("stages.json", ".scratch") for p in path.iterdir()):
        shutil.rmtree(path, ignore_errors=True)


def _drop_stale_audio(corpus, ids: Iterable[str]) -> None:
    """A file replaced by one without an audio track: its old audio.wav would be stale.

    (The runner cannot delete an artifact a Result does not return; this is the parent's job.)
    """
    for sid in ids:
        session = corpus.session(sid)
        wav = session.path / AUDIO_NAME
        if wav.exists() and session.source_path.exists() and session.read_source().get("audio") is None:
            wav.unlink()


def ingest_media(
    corpus,
    paths_or_urls: Iterable[str | Path] | str | Path,
    *,
    settings: IngestMediaSettings | MediaSettings | None = None,
    force: bool = False,
    on_progress: Callable[[Outcome], None] | None = None,
    executor=None,
    on_event=None,
) -> tuple[list[str], BatchSummary]:
    """Ingest media files, folders, URL list files and http(s) URLs into `corpus`.

    Returns the ids of the sessions made or already current (input order), and a `BatchSummary`
    with one outcome per input (done / skipped / failed, with the reason or the warnings).
    `on_progress` gets each `Outcome` as it is decided; `executor` (default serial) runs the
    probing and extraction, e.g. `PoolExecutor(2)`; `on_event` gets the runner's events.
    """
    s = settings if isinstance(settings, IngestMediaSettings) else IngestMediaSettings.from_media(settings)
    plan = plan_media(corpus, paths_or_urls, settings=s, force=force, on_progress=on_progress)
    ids, summary = run_planned(
        corpus, IngestMediaStage(s), plan.payloads, plan.slots, plan.labels, plan.new, title="ingest media",
        force=force, executor=executor, on_progress=on_progress, on_event=on_event,
    )
    _drop_stale_audio(corpus, [o for o in plan.payloads if o in ids])
    return ids, summary
