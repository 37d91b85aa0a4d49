"""Media: probe video/audio files, decode audio and frames streamed, download URL sources (see
docs/media.md). Ingesting them into a corpus is the `ingest_media` stage
(`emoguide.stages.ingest_media`).

PyAV (`av`) and yt-dlp are optional dependencies (the `media` extra), imported when used.
"""

from emoguide.media.decode import AudioInfo, Frame, extract_audio_wav, iter_audio, iter_frames
from emoguide.media.ingest import (
    MEDIA_EXTENSIONS,
    MediaSource,
    expand_media_paths,
    extract_media,
    is_media_path,
    media_digest,
)
from emoguide.media.probe import AudioStreamInfo, MediaProbe, VideoStreamInfo, probe
from emoguide.media.urls import (
    DownloadError,
    DownloadResult,
    download,
    is_url,
    looks_like_url_list,
    read_url_list,
)

__all__ = [
    "MEDIA_EXTENSIONS",
    "AudioInfo",
    "AudioStreamInfo",
    "DownloadError",
    "DownloadResult",
    "Frame",
    "MediaProbe",
    "MediaSource",
    "VideoStreamInfo",
    "download",
    "expand_media_paths",
    "extract_audio_wav",
    "extract_media",
    "is_media_path",
    "is_url",
    "iter_audio",
    "iter_frames",
    "looks_like_url_list",
    "media_digest",
    "probe",
    "read_url_list",
]
