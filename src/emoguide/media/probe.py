"""What a media file holds: container, duration, video and audio streams, and what looks wrong.

`probe(path)` opens the file with PyAV (FFmpeg), reads the stream headers, demuxes a bounded number
of packets (to measure frame-time spacing, for variable-frame-rate detection) and decodes the
first video and audio frame (to learn the display rotation and to prove the codecs decode). It
never decodes the whole file, so it costs about the same for a 2-minute and a 2-hour video.

A file that cannot be used at all (missing, 0 bytes, not media, a corrupt or truncated header, no
audio or video stream, a codec FFmpeg cannot decode) raises `InputError(path, problem)`. Softer
problems (audio shorter than video, an unknown duration) are listed in `MediaProbe.warnings`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from emoguide.errors import InputError, require

# How much shorter the audio track may be than the video before we warn (seconds).
AUDIO_SHORTER_TOLERANCE_S = 0.5
# Packets demuxed to measure frame spacing: enough for ~10-20 s of video, cheap (no decoding).
VFR_SAMPLE_PACKETS = 600
# Relative spread of frame intervals (p95 - p5, over the median) above which a rate is variable.
VFR_SPREAD = 0.10
# Relative disagreement between the average and the nominal ("real") frame rate that means VFR.
VFR_RATE_MISMATCH = 0.05
# Stop the probe's packet scan after this many packets of any stream.
MAX_PROBE_PACKETS = 5000


def _av():
    return require("av", "media", "PyAV decodes video and audio")


@dataclass
class VideoStreamInfo:
    codec: str
    width: int  # coded (stored) size
    height: int
    display_width: int  # size after the display rotation is applied
    display_height: int
    avg_fps: float | None  # frames / duration, as the container reports it
    nominal_fps: float | None  # FFmpeg's guess of the real (base) rate, r_frame_rate
    variable_frame_rate: bool
    vfr_evidence: str  # why we think the rate is (or is not) variable
    frame_interval_s: dict[str, float] | None  # min / median / max spacing of sampled frame times
    rotation: int  # degrees counter-clockwise to turn the stored image for display (0/90/180/270)
    n_frames: int | None  # from the container header; None when unknown
    duration_s: float | None
    start_s: float  # first presentation time, relative to the media start
    pix_fmt: str | None = None


@dataclass
class AudioStreamInfo:
    codec: str
    sample_rate: int
    channels: int
    layout: str | None
    duration_s: float | None
    start_s: float


@dataclass
class MediaProbe:
    path: str
    format: str  # FFmpeg demuxer name(s), e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    format_long: str | None
    size_bytes: int
    duration_s: float | None
    start_time_s: float  # the container's first timestamp; times elsewhere are relative to it
    video: VideoStreamInfo | None
    audio: AudioStreamInfo | None
    n_video_streams: int
    n_audio_streams: int
    audio_shorter_than_video: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    @property
    def has_video(self) -> bool:
        return self.video is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["has_audio"] = self.has_audio
        d["has_video"] = self.has_video
        return d


# ----------------------------------------------------------------------------- helpers


def _rate(value) -> float | None:
    if value is None:
        return None
    try:
        f = float(Fraction(value)) if not isinstance(value, float) else value
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if f > 0 and math.isfinite(f) else None


def _tag_duration(stream) -> float | None:
    """Matroska/WebM keep per-stream durations as a tag: DURATION=00:00:06.400000000."""
    for key, value in (stream.metadata or {}).items():
        if key.upper().startswith("DURATION"):
            m = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*", str(value))
            if m:
                return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return None


def stream_duration(stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        d = float(stream.duration * stream.time_base)
        if d > 0:
            return d
    return _tag_duration(stream)


def stream_start(stream, origin: float) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return max(0.0, float(stream.start_time * stream.time_base) - origin)


def media_origin(container) -> float:
    """The container's start time in seconds (>= 0): 'seconds from the start of the media' are
    frame/sample times minus this. Negative starts (audio priming) are treated as 0."""
    av = _av()
    st = container.start_time
    if st is None:
        return 0.0
    return max(0.0, st / av.time_base)


def is_attached_picture(stream) -> bool:
    """Cover art in audio files shows up as a one-frame video stream; it is not video."""
    try:
        disp = stream.disposition
        av = _av()
        return bool(disp & av.stream.Disposition.attached_pic)
    except Exception:  # noqa: BLE001 - older PyAV without Disposition
        return False


def pick_video_stream(container):
    for s in container.streams.video:
        if not is_attached_picture(s):
            return s
    return None


def pick_audio_stream(container):
    streams = list(container.streams.audio)
    return streams[0] if streams else None


def metadata_rotation(stream) -> int | None:
    """Old-style 'rotate' tag (clockwise degrees) as counter-clockwise degrees, or None."""
    value = (stream.metadata or {}).get("rotate")
    if value is None:
        return None
    try:
        return (-int(float(value))) % 360
    except ValueError:
        return None


def frame_rotation(frame, stream=None) -> int:
    """Counter-clockwise display rotation (0/90/180/270) of a decoded frame.

    PyAV >= 14 exposes the display matrix as `VideoFrame.rotation`; older versions (or files
    with only the legacy tag) fall back to the stream's 'rotate' metadata.
    """
    rot = getattr(frame, "rotation", None)
    if rot is None or rot == 0:
        meta = metadata_rotation(stream) if stream is not None else None
        if meta is not None and rot in (None, 0):
            rot = meta
    rot = int(round((rot or 0) / 90.0)) * 90 % 360
    return rot


def _open(path: Path):
    av = _av()
    try:
        return av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.FFmpegError as err:
        raise InputError(
            path,
            "not a readable media file: unrecognised format, or a corrupt or truncated header "
            f"(FFmpeg: {getattr(err, 'strerror', None) or err})",
        ) from err
    except (UnicodeDecodeError, ValueError) as err:  # pragma: no cover - odd metadata
        raise InputError(path, f"not a readable media file ({type(err).__name__}: {err})") from err


def check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory, not a media file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    return path


def _vfr(stream, pts: list[int], avg_fps: float | None, nominal_fps: float | None):
    """Decide whether the frame rate is variable from sampled packet times and the two rates."""
    interval = None
    reasons = []
    variable = False
    tb = float(stream.time_base) if stream.time_base is not None else 0.0
    if len(pts) >= 3 and tb > 0:
        times = sorted(set(pts))
        deltas = sorted((b - a) * tb for a, b in zip(times, times[1:]))
        if deltas:
            n = len(deltas)
            med = deltas[n // 2]
            p5 = deltas[int(0.05 * (n - 1))]
            p95 = deltas[int(math.ceil(0.95 * (n - 1)))]
            interval = {"min": deltas[0], "median": med, "max": deltas[-1], "n": n}
            # Timestamps are quantised to the time base: allow two ticks of jitter.
            if med > 0 and (p95 - p5) > max(VFR_SPREAD * med, 2 * tb):
                variable = True
                reasons.append(
                    f"frame spacing varies: 5th-95th percentile {p5 * 1000:.1f}-{p95 * 1000:.1f} ms "
                    f"(median {med * 1000:.1f} ms) over {n + 1} frames"
                )
    if avg_fps and nominal_fps and abs(avg_fps - nominal_fps) / nominal_fps > VFR_RATE_MISMATCH:
        variable = True
        reasons.append(f"average rate {avg_fps:.3f} fps differs from nominal {nominal_fps:.3f} fps")
    if not reasons:
        reasons.append(
            "constant: frame spacing and average/nominal rates agree"
            if interval
            else "unknown: too few frames to measure; assumed constant"
        )
    return variable, "; ".join(reasons), interval


# ----------------------------------------------------------------------------- probe


def probe(path: str | Path) -> MediaProbe:
    """Describe a media file (see the module docstring); raise `InputError` if it is unusable."""
    av = _av()
    path = check_file(path)
    size = path.stat().st_size
    container = _open(path)
    try:
        return _probe_open(av, path, size, container)
    finally:
        container.close()


def _probe_open(av, path: Path, size: int, container) -> MediaProbe:
    warnings: list[str] = []
    vstream = pick_video_stream(container)
    astream = pick_audio_stream(container)
    n_video = sum(1 for s in container.streams.video if not is_attached_picture(s))
    n_audio = len(container.streams.audio)
    if vstream is None and astream is None:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise InputError(path, f"no audio or video stream (streams found: {', '.join(kinds)})")

    for s, kind in ((vstream, "video"), (astream, "audio")):
        if s is None:
            continue
        try:
            ctx = s.codec_context
            ok = ctx is not None and ctx.codec is not None
        except Exception:  # noqa: BLE001 - PyAV raises for codecs it cannot open
            ok = False
        if not ok:
            raise InputError(
                path, f"unsupported {kind} codec: FFmpeg has no decoder for stream #{s.index}"
            )
        ctx.thread_count = 1

    origin = media_origin(container)
    fmt = container.format

    # One bounded pass: collect video packet times; decode the first video and audio frame.
    pts: list[int] = []
    first_video = None
    first_audio = None
    decode_errors: dict[str, str] = {}
    wanted = [s for s in (vstream, astream) if s is not None]
    n_packets = 0
    try:
        for packet in container.demux(*wanted):
            n_packets += 1
            s = packet.stream
            if vstream is not None and s.index == vstream.index:
                if packet.pts is not None and len(pts) < VFR_SAMPLE_PACKETS:
                    pts.append(packet.pts)
                if first_video is None and "video" not in decode_errors:
                    try:
                        for frame in packet.decode():
                            first_video = frame
                            break
                    except av.error.FFmpegError as err:
                        decode_errors["video"] = str(err)
            elif astream is not None and s.index == astream.index:
                if first_audio is None and "audio" not in decode_errors and packet.size:
                    try:
                        for frame in packet.decode():
                            first_audio = frame
                            break
                    except av.error.FFmpegError as err:
                        decode_errors["audio"] = str(err)
            done_video = vstream is None or (
                (first_video is not None or "video" in decode_errors) and len(pts) >= VFR_SAMPLE_PACKETS
            )
            done_audio = astream is None or first_audio is not None or "audio" in decode_errors
            if (done_video and done_audio) or n_packets >= MAX_PROBE_PACKETS:
                break
    except av.error.FFmpegError as err:
        warnings.append(f"data ends or is corrupt after {n_packets} packets: {err}")
    if vstream is not None and first_video is None:
        # Flush: some decoders hold frames back until the end of a short stream.
        try:
            for frame in vstream.codec_context.decode(None):
                first_video = frame
                break
        except av.error.FFmpegError:
            pass

    video = None
    if vstream is not None:
        if first_video is None:
            why = decode_errors.get("video", "no frame could be decoded")
            raise InputError(
                path, f"video stream ({vstream.codec_context.name}) cannot be decoded: {why}"
            )
        ctx = vstream.codec_context
        avg_fps = _rate(vstream.average_rate)
        nominal_fps = _rate(vstream.guessed_rate) or _rate(vstream.base_rate)
        variable, evidence, interval = _vfr(vstream, pts, avg_fps, nominal_fps)
        rotation = frame_rotation(first_video, vstream)
        width = ctx.width or first_video.width
        height = ctx.height or first_video.height
        swap = rotation in (90, 270)
        video = VideoStreamInfo(
            codec=ctx.name,
            width=width,
            height=height,
            display_width=height if swap else width,
            display_height=width if swap else height,
            avg_fps=avg_fps,
            nominal_fps=nominal_fps,
            variable_frame_rate=variable,
            vfr_evidence=evidence,
            frame_interval_s=interval,
            rotation=rotation,
            n_frames=vstream.frames or None,
            duration_s=stream_duration(vstream),
            start_s=stream_start(vstream, origin),
            pix_fmt=getattr(ctx, "pix_fmt", None),
        )
    audio = None
    if astream is not None:
        if first_audio is None and "audio" in decode_errors:
            raise InputError(
                path,
                f"audio stream ({astream.codec_context.name}) cannot be decoded: "
                f"{decode_errors['audio']}",
            )
        actx = astream.codec_context
        layout = getattr(actx, "layout", None)
        channels = getattr(layout, "nb_channels", None) or getattr(actx, "channels", 0) or 0
        audio = AudioStreamInfo(
            codec=actx.name,
            sample_rate=int(actx.sample_rate or 0),
            channels=int(channels),
            layout=getattr(layout, "name", None),
            duration_s=stream_duration(astream),
            start_s=stream_start(astream, origin),
        )
        if first_audio is None:
            warnings.append("audio stream has no decodable samples")

    duration = container.duration / av.time_base if container.duration else None
    if duration is None:
        candidates = [x.duration_s for x in (video, audio) if x is not None and x.duration_s]
        duration = max(candidates) if candidates else None
    if duration is None:
        warnings.append("duration unknown (the container does not say)")
    # Streams without their own duration (e.g. some raw/ADTS files) take the container's.
    if video is not None and video.duration_s is None:
        video.duration_s = duration
    if audio is not None and audio.duration_s is None:
        audio.duration_s = duration

    shorter = False
    if video is not None and audio is not None and video.duration_s and audio.duration_s:
        if audio.duration_s < video.duration_s - AUDIO_SHORTER_TOLERANCE_S:
            shorter = True
            a0, a1 = audio.start_s, audio.start_s + audio.duration_s
            v0, v1 = video.start_s, video.start_s + video.duration_s
            warnings.append(
                f"audio track ({audio.duration_s:.2f} s, {a0:.2f}-{a1:.2f} s) is shorter than the "
                f"video ({video.duration_s:.2f} s, {v0:.2f}-{v1:.2f} s): part of the video has no sound"
            )
    if n_audio > 1:
        warnings.append(f"{n_audio} audio streams: using the first (stream #{astream.index})")
    if n_video > 1:
        warnings.append(f"{n_video} video streams: using the first (stream #{vstream.index})")

    return MediaProbe(
        path=str(path),
        format=fmt.name,
        format_long=getattr(fmt, "long_name", None),
        size_bytes=size,
        duration_s=duration,
        start_time_s=origin,
        video=video,
        audio=audio,
        n_video_streams=n_video,
        n_audio_streams=n_audio,
        audio_shorter_than_video=shorter,
        warnings=warnings,
    )
