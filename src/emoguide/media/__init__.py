"""Media: probe video/audio files, decode audio and frames streamed, download URL sources,
and ingest them into a corpus (see docs/media.md).

PyAV (`av`) and yt-dlp are optional dependencies (the `media` extra), imported when used.
"""

from emoguide.media.decode import AudioInfo, Frame, extract_audio_wav, iter_audio, iter_frames
from emoguide.media.ingest import (
    MEDIA_EXTENSIONS,
    expand_media_paths,
    ingest_media,
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
    "VideoStreamInfo",
    "download",
    "expand_media_paths",
    "extract_audio_wav",
    "ingest_media",
    "is_media_path",
    "is_url",
    "iter_audio",
    "iter_frames",
    "looks_like_url_list",
    "media_digest",
    "probe",
    "read_url_list",
]
