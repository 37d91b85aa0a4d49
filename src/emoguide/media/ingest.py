"""Ingest media into a corpus (the media side of the ``ingest`` stage).

For each video or audio file (folders expanded; URLs and URL list files downloaded first into
``<corpus>/media/``) one session is made, ``sessions/<id>/`` with:

- ``source.json``: where it came from (path or URL; title, uploader and licence for URLs), the
  probe (duration, container, streams, frame rate and whether it varies, rotation), the audio
  summary, and the warnings;
- ``audio.wav``: the audio track as 16-bit PCM mono at ``MediaSettings.sample_rate`` (16 kHz),
  sample i at media time i / rate; absent when the file has no audio track;
- ``utterances.parquet``: an empty, conformed utterance table (unless one exists already, e.g.
  from an imported transcript), so the session is listed; the transcribe stage fills it;
- ``stages.json``: the ``media`` stage record (settings, input digest, versions, warnings).

Frames are not stored: the faces stage samples them by timestamp with `iter_frames`, streamed.

One bad file or URL never stops the batch: it is recorded as failed with a reason. A session
whose media file and settings are unchanged is skipped (``force=True`` redoes it).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from emoguide.config import MediaSettings
from emoguide.corpus import schema
from emoguide.corpus.atomic import read_json, write_json
from emoguide.corpus.layout import slugify
from emoguide.corpus.stages import package_versions
from emoguide.errors import InputError
from emoguide.media.decode import extract_audio_wav
from emoguide.media.probe import probe
from emoguide.media.urls import DownloadError, download, is_url, looks_like_url_list, read_url_list
from emoguide.runner.summary import BatchSummary, Outcome

STAGE = "media"
INGEST_VERSION = "media-v1"
AUDIO_NAME = "audio.wav"

MEDIA_EXTENSIONS = frozenset(
    {
        ".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v",
        ".m4a", ".wav", ".mp3", ".flac", ".ogg", ".opus", ".aac",
    }
)  # fmt: skip
URL_LIST_EXTENSIONS = frozenset({".urls"})

# Files up to this size are hashed whole; larger ones by size + sampled blocks (see media_digest).
FULL_HASH_MAX_BYTES = 16 << 20
DIGEST_BLOCK = 1 << 20

MEDIA_PACKAGES = ("emoguide", "numpy", "av", "yt-dlp")


def media_digest(path: str | Path) -> str:
    """A content digest that costs the same for a 100 MB and a 10 GB video.

    Files up to 16 MB are hashed whole. Larger ones hash their size plus three 1 MB blocks: the
    first (container header: codecs, durations, and for MP4s with the index up front the whole
    sample table), one in the middle, and the last (the MP4 index when it is at the end). Any
    re-encode, trim or re-mux changes the size or these blocks; an in-place edit of a few bytes
    elsewhere would not be seen, which for compressed media files does not happen in practice.

    The modification time is deliberately left out: copying a corpus with its media to another
    machine (or restoring a backup) changes mtimes, and that should not re-decode every session.
    """
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= FULL_HASH_MAX_BYTES:
            while block := fh.read(DIGEST_BLOCK):
                h.update(block)
            return "sha256:" + h.hexdigest()[:16]
        h.update(str(size).encode())
        for offset in (0, size // 2 - DIGEST_BLOCK // 2, size - DIGEST_BLOCK):
            fh.seek(offset)
            h.update(fh.read(DIGEST_BLOCK))
    return "sampled:" + h.hexdigest()[:16]


@dataclass
class MediaSource:
    """One media file to ingest, and where it came from."""

    path: Path
    url: str | None = None
    title: str | None = None
    uploader: str | None = None
    licence: str | None = None
    download: dict[str, Any] | None = None

    @property
    def origin(self) -> str:
        return self.url or str(self.path)


def expand_media_paths(paths_or_urls: Iterable[str | Path] | str | Path) -> list[str | Path]:
    """Inputs as given, folders expanded (recursively, hidden entries skipped) to their media
    files and `.urls` lists. URL strings are kept as strings; duplicates are kept once."""
    items = [paths_or_urls] if isinstance(paths_or_urls, (str, Path)) else list(paths_or_urls)
    out: dict[str | Path, None] = {}
    for item in items:
        if isinstance(item, str) and is_url(item):
            out.setdefault(item.strip(), None)
            continue
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                suffix = f.suffix.lower()
                if f.is_file() and (suffix in MEDIA_EXTENSIONS or suffix in URL_LIST_EXTENSIONS):
                    out.setdefault(f, None)
        else:
            out.setdefault(p, None)
    return list(out)


def is_media_path(path: str | Path) -> bool:
    """What `emoguide ingest` should route here: media files, URL lists and URLs."""
    if isinstance(path, str) and is_url(path):
        return True
    p = Path(path)
    return p.suffix.lower() in MEDIA_EXTENSIONS or (p.is_file() and looks_like_url_list(p))


def _same_file(a: str | None, b: Path) -> bool:
    if not a:
        return False
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:  # pragma: no cover
        return False


class _Downloads:
    """`<corpus>/media/downloads.json`: URL -> download result, so a URL is fetched once."""

    def __init__(self, media_dir: Path):
        self.dir = media_dir
        self.index_path = media_dir / "downloads.json"

    def get(self, url: str) -> dict[str, Any] | None:
        rec = (read_json(self.index_path, default={}) or {}).get(url)
        if rec and Path(rec.get("path", "")).exists():
            return rec
        return None

    def put(self, url: str, rec: dict[str, Any]) -> None:
        data = read_json(self.index_path, default={}) or {}
        data[url] = rec
        write_json(self.index_path, data)


def ingest_media(
    corpus,
    paths_or_urls: Iterable[str | Path] | str | Path,
    *,
    settings: MediaSettings | None = None,
    force: bool = False,
    on_progress: Callable[[Outcome], None] | None = None,
) -> tuple[list[str], BatchSummary]:
    """Ingest media files, folders, URL list files and http(s) URLs into `corpus`.

    Returns the ids of the sessions made or already current, and a `BatchSummary` with one
    outcome per file (done / skipped / failed, with the reason or the warnings).
    `on_progress` is called with each `Outcome` as it is recorded.
    """
    settings = settings or MediaSettings()
    summary = BatchSummary(title="ingest media")
    session_ids: list[str] = []
    claimed: dict[str, str] = {}  # session id -> origin, within this batch
    downloads = _Downloads(Path(corpus.root) / "media")

    def record(item: str, status, reason: str = "") -> None:
        outcome = summary.add(item, STAGE, status, reason)
        if on_progress is not None:
            on_progress(outcome)

    def fetch(url: str) -> MediaSource | None:
        rec = downloads.get(url)
        if rec is None:
            try:
                result = download(url, downloads.dir, retries=settings.url_retries)
            except InputError as err:
                record(url, "failed", str(err))
                return None
            except Exception as err:  # noqa: BLE001 - one bad URL never stops the batch
                record(url, "failed", f"{url}: download failed: {type(err).__name__}: {err}")
                return None
            rec = result.to_dict()
            downloads.put(url, rec)
        return MediaSource(
            path=Path(rec["path"]),
            url=url,
            title=rec.get("title"),
            uploader=rec.get("uploader"),
            licence=rec.get("licence"),
            download=rec,
        )

    for item in expand_media_paths(paths_or_urls):
        if isinstance(item, str):  # a URL
            source = fetch(item)
            if source is not None:
                _ingest_one(corpus, source, settings, force, claimed, session_ids, record)
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
                source = fetch(url)
                if source is not None:
                    _ingest_one(corpus, source, settings, force, claimed, session_ids, record)
            continue
        _ingest_one(corpus, MediaSource(path=path), settings, force, claimed, session_ids, record)
    return session_ids, summary


def _ingest_one(corpus, source: MediaSource, settings, force, claimed, session_ids, record) -> None:
    file = source.path
    sid = slugify(file.stem)
    item = f"{sid} ({source.url or file.name})"
    try:
        if not file.exists():
            raise InputError(file, "no such file")
        if file.is_dir():
            raise InputError(file, "is a directory")
        if sid in claimed and claimed[sid] != source.origin:
            record(
                item,
                "failed",
                f"session id {sid!r} also comes from {claimed[sid]} in this batch; rename one "
                "of the files so the ids differ",
            )
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
            record(
                item,
                "failed",
                f"session {sid!r} already exists, made from {previous or 'another source'}; "
                "not overwritten (rename the file, or pass force=True to replace it)",
            )
            return
        claimed[sid] = source.origin

        stage_settings = {"sample_rate": settings.sample_rate, "version": INGEST_VERSION}
        audio_path = session.path / AUDIO_NAME
        previous = session.stages.get(STAGE) or {}
        expect = [session.source_path, session.utterances_path]
        if AUDIO_NAME in (previous.get("outputs") or []):
            expect.append(audio_path)
        run = session.stage(STAGE, settings=stage_settings, outputs=expect)
        # Whole-file hashing of multi-GB videos on every run would dominate a resumed batch.
        run.inputs = {file.name: media_digest(file)}
        run.versions = package_versions(MEDIA_PACKAGES)
        if run.current and not force:
            session_ids.append(sid)
            record(item, "skipped", "unchanged")
            return

        info = probe(file)  # InputError for unusable files: nothing is written
        warnings = list(info.warnings)
        with run:
            session.path.mkdir(parents=True, exist_ok=True)
            audio = None
            if info.has_audio:
                audio = extract_audio_wav(
                    file, audio_path, settings.sample_rate, settings.window_s
                )
                warnings.extend(audio.warnings)  # includes "decoded only X of Y s" (truncated)
                if audio.silent:
                    warnings.append(
                        f"audio track is silent (peak {audio.peak:.2g}, at or below -60 dBFS): "
                        "transcript and voice stages will find no speech"
                    )
            else:
                if audio_path.exists():
                    os.remove(audio_path)  # a stale track from an earlier version of the file
                warnings.append("no audio track: transcript stages will skip")
            run.outputs = [session.source_path, session.utterances_path] + (
                [audio_path] if audio is not None else []
            )
            for w in warnings:
                run.warn(w)
            run.backends = {"decoder": "pyav", "ingest": INGEST_VERSION}
            run.extra = {"source_file": str(file)}
            record_ = _source_record(sid, source, file, info, audio, warnings)
            if transcript:
                record_["transcript"] = transcript
            session.write_source(record_)
            if not session.utterances_path.exists():
                session.write_utterances(schema.empty_utterances())
        session_ids.append(sid)
        note = _describe(info, audio)
        if warnings:
            note += f"; {len(warnings)} warning(s): " + "; ".join(warnings)
        record(item, "done", note)
    except InputError as err:
        record(item, "failed", str(err))
    except Exception as err:  # noqa: BLE001 - one bad file never stops the batch
        record(item, "failed", f"{file}: {type(err).__name__}: {err}")


def _same_origin(existing: dict[str, Any], source: MediaSource) -> bool:
    if source.url:
        return existing.get("url") == source.url
    return existing.get("kind") == "media" and _same_file(existing.get("path"), source.path)


def _source_record(sid, source: MediaSource, file: Path, info, audio, warnings) -> dict[str, Any]:
    if source.url:
        licence_note = (
            f"licence as stated by the source page: {source.licence}"
            if source.licence
            else "the source page states no licence: check the terms before sharing"
        )
    else:
        licence_note = "local file: record consent and licence for this recording yourself"
    return {
        "kind": "media",
        "session_id": sid,
        "origin": source.origin,
        "path": str(file.resolve()),
        "file_name": file.name,
        "url": source.url,
        "title": source.title or file.stem,
        "uploader": source.uploader,
        "licence": source.licence,
        "licence_note": licence_note,
        "download": source.download,
        "digest": media_digest(file),
        "probe": info.to_dict(),
        "audio": None if audio is None else {"file": AUDIO_NAME, **audio.to_dict()},
        "warnings": warnings,
    }


def _describe(info, audio) -> str:
    parts = [f"{info.duration_s:.1f} s" if info.duration_s else "duration unknown"]
    if info.video is not None:
        v = info.video
        fps = f"{v.avg_fps:.2f} fps" if v.avg_fps else "fps unknown"
        parts.append(
            f"{v.codec} {v.display_width}x{v.display_height} {fps}"
            + (" (variable)" if v.variable_frame_rate else "")
        )
    if info.audio is not None:
        parts.append(f"{info.audio.codec} audio -> {AUDIO_NAME}")
    return ", ".join(parts)
