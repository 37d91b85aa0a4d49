"""Corpus-free helpers for media ingest (the `ingest_media` stage is `emoguide.stages.ingest_media`).

Which inputs are media (`MEDIA_EXTENSIONS`, `is_media_path`, `expand_media_paths`), where a
URL's download lives (`DownloadIndex`, `fetch_url`), a content digest that is cheap for huge
videos (`media_digest`), and one file's probe + audio extraction (`extract_media`) with the
`source.json` record it yields (`source_record`). None of this knows about a corpus: the stage
decides which file becomes which session and the runner writes the results (docs/media.md,
docs/architecture.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from emoguide.corpus.atomic import read_json, write_json
from emoguide.errors import InputError
from emoguide.files import file_key, walk_folder
from emoguide.media.decode import AudioInfo, extract_audio_wav
from emoguide.media.probe import MediaProbe, probe
from emoguide.media.urls import download, is_url, looks_like_url_list

INGEST_VERSION = "media-v1"

#: Ingest warns when more than this share of the decoded audio samples is at full scale
#: (|x| >= decode.CLIP_LEVEL). Clean speech recordings have essentially none (peaks sit well below
#: full scale); 0.1% is about one clipped sample in every 1000: audible distortion, and voice
#: features (loudness, jitter, shimmer) and ASR degrade on the clipped stretches.
CLIP_WARN_FRACTION = 0.001
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

    def to_dict(self) -> dict[str, Any]:
        """Plain (picklable, JSON-able) form, e.g. a stage task's payload."""
        return {"path": str(self.path), "url": self.url, "title": self.title, "uploader": self.uploader,
                "licence": self.licence, "download": self.download}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MediaSource":
        return cls(path=Path(d["path"]), url=d.get("url"), title=d.get("title"), uploader=d.get("uploader"),
                   licence=d.get("licence"), download=d.get("download"))


def expand_media_paths(paths_or_urls: Iterable[str | Path] | str | Path) -> list[str | Path]:
    """Inputs as given, folders expanded (recursively, hidden entries skipped) to their media
    files and `.urls` lists. URL strings are kept as strings; duplicates are kept once."""
    items = [paths_or_urls] if isinstance(paths_or_urls, (str, Path)) else list(paths_or_urls)
    out: dict[str, str | Path] = {}  # resolved path (or URL) -> the item as given first
    for item in items:
        if isinstance(item, str) and is_url(item):
            out.setdefault(item.strip(), item.strip())
            continue
        p = Path(item)
        if p.is_dir():
            for f in walk_folder(p, {*MEDIA_EXTENSIONS, *URL_LIST_EXTENSIONS}):
                out.setdefault(file_key(f), f)
        else:
            out.setdefault(file_key(p), p)
    return list(out.values())


def is_media_path(path: str | Path) -> bool:
    """What `emoguide ingest` should route here: media files, URL lists and URLs."""
    if isinstance(path, str) and is_url(path):
        return True
    p = Path(path)
    return p.suffix.lower() in MEDIA_EXTENSIONS or (p.is_file() and looks_like_url_list(p))


def same_file(a: str | None, b: Path) -> bool:
    """Whether path string `a` names the file `b` (after resolving links and `..`)."""
    if not a:
        return False
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:  # pragma: no cover
        return False


class DownloadIndex:
    """`<dir>/downloads.json`: URL -> download result, so a URL is fetched once."""

    def __init__(self, media_dir: str | Path):
        self.dir = Path(media_dir)
        self.index_path = self.dir / "downloads.json"

    def get(self, url: str) -> dict[str, Any] | None:
        rec = (read_json(self.index_path, default={}) or {}).get(url)
        if rec and Path(rec.get("path", "")).exists():
            return rec
        return None

    def put(self, url: str, rec: dict[str, Any]) -> None:
        data = read_json(self.index_path, default={}) or {}
        data[url] = rec
        write_json(self.index_path, data)


def fetch_url(url: str, index: DownloadIndex, retries: int = 3) -> MediaSource:
    """The media file of `url`: the earlier download if `index` has it, else downloaded now
    (into `index.dir`). Raises `DownloadError` (an `InputError`) naming the URL."""
    rec = index.get(url)
    if rec is None:
        rec = download(url, index.dir, retries=retries).to_dict()
        index.put(url, rec)
    return MediaSource(path=Path(rec["path"]), url=url, title=rec.get("title"), uploader=rec.get("uploader"),
                       licence=rec.get("licence"), download=rec)


@dataclass
class MediaExtraction:
    """What `extract_media` found: the probe, the audio summary (None: no audio track), warnings."""

    info: MediaProbe
    audio: AudioInfo | None
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for a batch summary: duration, video stream, audio."""
        info, audio = self.info, self.audio
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
        note = ", ".join(parts)
        if self.warnings:
            note += f"; {len(self.warnings)} warning(s): " + "; ".join(self.warnings)
        return note


def extract_media(file: str | Path, out_wav: str | Path, sample_rate: int = 16000,
                  window_s: float = 30.0) -> MediaExtraction:
    """Probe `file` and, when it has an audio track, write it to `out_wav` (16-bit PCM mono).

    Raises `InputError` naming the file when it is missing, empty or not readable media (nothing
    is written then). A truncated file keeps what decoded, with a warning.
    """
    file = Path(file)
    if not file.exists():
        raise InputError(file, "no such file")
    if file.is_dir():
        raise InputError(file, "is a directory")
    if not file.is_file():  # a FIFO would block the decoder forever
        raise InputError(file, "not a regular file (a FIFO, socket or device); copy it to a file first")
    info = probe(file)
    warnings = list(info.warnings)
    audio = None
    if info.has_audio:
        audio = extract_audio_wav(file, out_wav, sample_rate, window_s)
        warnings.extend(audio.warnings)  # includes "decoded only X of Y s" (truncated)
        if audio.clipped_fraction > CLIP_WARN_FRACTION:
            warnings.append(
                f"{file.name}: audio is clipped: {100 * audio.clipped_fraction:.2g}% of samples at full scale "
                f"(warns above {100 * CLIP_WARN_FRACTION:g}%); voice features and ASR are less reliable "
                "on distorted stretches; record with more headroom if you can"
            )
        if audio.silent:
            warnings.append(
                f"audio track is silent (peak {audio.peak:.2g}, at or below -60 dBFS): "
                "transcript and voice stages will find no speech"
            )
    else:
        warnings.append("no audio track: transcript stages will skip")
    return MediaExtraction(info, audio, warnings)


#: A paired transcript may run this far past the media's end before ingest warns (timestamps are
#: often rounded to the second, and a last utterance's end is often estimated).
PAIRING_TOLERANCE_S = 2.0


def media_end_s(media: dict[str, Any]) -> float | None:
    """Where a media session's signals end (seconds), from its source.json record: the longer of
    the extracted audio and the video stream, else the container's duration; None if unknown."""
    probe_rec = media.get("probe") or {}
    ends = [float(x) for x in ((media.get("audio") or {}).get("duration_s"),
                               (probe_rec.get("video") or {}).get("duration_s")) if x]
    if ends:
        return max(ends)
    d = probe_rec.get("duration_s")
    return float(d) if d else None


def pairing_warning(media: dict[str, Any], transcript: dict[str, Any], starts: Iterable[float] | None = None,
                    tolerance_s: float = PAIRING_TOLERANCE_S) -> str | None:
    """A warning when a paired transcript runs past the media's end by more than `tolerance_s`
    (the wrong transcript, or a cut-short recording): names both files and durations and says how
    many utterances start after the media ends (they can have no voice or face values)."""
    end = media_end_s(media)
    t_end = transcript.get("duration")
    if end is None or t_end is None or float(t_end) <= end + tolerance_s:
        return None
    media_name = media.get("file_name") or Path(str(media.get("path") or "media")).name
    t_name = Path(str(transcript.get("path") or transcript.get("origin") or "transcript")).name
    msg = (f"transcript {t_name} runs to {float(t_end):.1f} s but media {media_name} ends at {end:.1f} s")
    if starts is not None:
        starts = [float(x) for x in starts]
        after = sum(1 for x in starts if x >= end)
        msg += f": {after} of {len(starts)} utterances start after the media ends and will have no voice or face values"
    return msg + "; check that the two files belong together and that the media is complete"


def source_record(session_id: str, source: MediaSource, got: MediaExtraction,
                  digest: str | None = None) -> dict[str, Any]:
    """The session's `source.json` for a media file (see docs/media.md)."""
    file = source.path
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
        "session_id": session_id,
        "origin": source.origin,
        "path": str(file.resolve()),
        "file_name": file.name,
        "url": source.url,
        "title": source.title or file.stem,
        "uploader": source.uploader,
        "licence": source.licence,
        "licence_note": licence_note,
        "download": source.download,
        "digest": digest or media_digest(file),
        "probe": got.info.to_dict(),
        "audio": None if got.audio is None else {"file": AUDIO_NAME, **got.audio.to_dict()},
        "warnings": got.warnings,
    }
