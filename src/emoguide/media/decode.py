"""Streamed decoding: audio in windows, frames sampled by timestamp.

Nothing here holds more than one window of audio (or one decoded frame plus the previous one) in
memory, so a 2-hour session costs the same memory as a 2-minute one.

Times are seconds from the start of the media (the container's first timestamp), taken from the
decoded frames' presentation times (`frame.time`), never from a frame index: real recordings
(phones, screen captures, variable-frame-rate exports) do not have evenly spaced frames.

Corrupt or truncated data part-way through a file does not raise: decoding stops (or skips the bad
packet), what decoded so far is kept, and a message is appended to the `warnings` list the caller
passes in (and handed to `on_warning` if given).
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from emoguide.corpus.atomic import atomic_path
from emoguide.errors import InputError
from emoguide.media.probe import (
    _av,
    _open,
    check_file,
    frame_rotation,
    media_origin,
    pick_audio_stream,
    pick_video_stream,
    stream_duration,
    stream_start,
)

# Decoding that ends this much before the header's duration is reported (truncated/corrupt data).
SHORT_DECODE_TOLERANCE_S = 1.0

# After this many undecodable packets in one stream we stop decoding it.
MAX_BAD_PACKETS = 20
# A frame whose time is within this of a target counts as "at" the target (float rounding).
TIME_EPS = 1e-3
# Peak level (dBFS) at or below which an audio track counts as silent.
SILENCE_DBFS = -60.0

WarningSink = Callable[[str], None]


class _Warner:
    def __init__(self, warnings: list[str] | None, on_warning: WarningSink | None):
        self.warnings = warnings
        self.on_warning = on_warning

    def __call__(self, message: str) -> None:
        if self.warnings is not None:
            self.warnings.append(message)
        if self.on_warning is not None:
            self.on_warning(message)


def _decode_packets(av, container, stream, warn: _Warner, path: Path) -> Iterator:
    """Decoded frames of one stream, in presentation order; bad data ends or skips, with a warning."""
    bad = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as err:
                bad += 1
                if bad == 1 or bad == MAX_BAD_PACKETS:
                    warn(
                        f"{path.name}: corrupt {stream.type} data at "
                        f"{_packet_time(packet):.2f} s skipped ({err})"
                        + ("; giving up on this stream" if bad >= MAX_BAD_PACKETS else "")
                    )
                if bad >= MAX_BAD_PACKETS:
                    return
                continue
            yield from frames
    except av.error.FFmpegError as err:
        warn(f"{path.name}: {stream.type} data ends early or is corrupt; kept what decoded ({err})")


def _packet_time(packet) -> float:
    try:
        return float(packet.pts * packet.time_base) if packet.pts is not None else float("nan")
    except Exception:  # noqa: BLE001
        return float("nan")


# ----------------------------------------------------------------------------- audio


def iter_audio(
    path: str | Path,
    sample_rate: int = 16000,
    window_s: float = 30.0,
    *,
    warnings: list[str] | None = None,
    on_warning: WarningSink | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield `(start_s, chunk)`: float32 mono samples at `sample_rate`, `window_s` seconds a chunk
    (the last one shorter). `start_s` is the chunk's first sample in media time; the first chunk
    starts where the audio track starts (which may be after 0, when the audio begins late).

    Raises `InputError` for an unusable file or one without an audio track.
    """
    av = _av()
    path = check_file(path)
    warn = _Warner(warnings, on_warning)
    window = max(1, int(round(window_s * sample_rate)))
    container = _open(path)
    try:
        stream = pick_audio_stream(container)
        if stream is None:
            raise InputError(path, "no audio track")
        stream.codec_context.thread_count = 1
        origin = media_origin(container)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        buf: list[np.ndarray] = []
        buffered = 0
        emitted = 0
        offset: float | None = None

        def take(frames) -> Iterator[tuple[float, np.ndarray]]:
            nonlocal buffered, emitted
            for out in frames:
                arr = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                if arr.size == 0:
                    continue
                buf.append(arr)
                buffered += arr.size
                while buffered >= window:
                    joined = np.concatenate(buf)
                    chunk, rest = joined[:window], joined[window:]
                    buf.clear()
                    if rest.size:
                        buf.append(rest)
                    buffered = rest.size
                    yield (offset or 0.0) + emitted / sample_rate, chunk
                    emitted += chunk.size

        for frame in _decode_packets(av, container, stream, warn, path):
            if offset is None:
                t = frame.time
                offset = max(0.0, (t if t is not None else 0.0) - origin)
            frame.pts = None  # the resampler keeps its own clock; we count samples ourselves
            yield from take(resampler.resample(frame))
        try:
            yield from take(resampler.resample(None))
        except av.error.FFmpegError:  # pragma: no cover - nothing left to flush
            pass
        if buffered:
            yield (offset or 0.0) + emitted / sample_rate, np.concatenate(buf)
            emitted += buffered
        expected = stream_duration(stream)
        got = emitted / sample_rate
        if expected and got < expected - SHORT_DECODE_TOLERANCE_S:
            warn(
                f"{path.name}: decoded only {got:.2f} s of {expected:.2f} s of audio: the file is "
                "truncated or corrupt; kept what decoded"
            )
    finally:
        container.close()


@dataclass
class AudioInfo:
    duration_s: float  # length of the WAV (includes leading silence padded for a late start)
    samples: int
    peak: float  # max |x| over the decoded audio, full scale = 1.0
    rms: float
    silent: bool  # peak at or below SILENCE_DBFS
    sample_rate: int = 16000
    start_s: float = 0.0  # where the audio track starts in media time (zeros before it)
    decoded_s: float = 0.0  # seconds actually decoded from the track
    warnings: list[str] = field(default_factory=list)

    @property
    def peak_dbfs(self) -> float:
        return 20 * math.log10(self.peak) if self.peak > 0 else float("-inf")

    def to_dict(self) -> dict:
        return {
            "duration_s": self.duration_s,
            "samples": self.samples,
            "peak": self.peak,
            "peak_dbfs": None if self.peak <= 0 else round(self.peak_dbfs, 2),
            "rms": self.rms,
            "silent": self.silent,
            "sample_rate": self.sample_rate,
            "start_s": self.start_s,
            "decoded_s": self.decoded_s,
        }


def extract_audio_wav(
    path: str | Path,
    out_wav: str | Path,
    sample_rate: int = 16000,
    window_s: float = 30.0,
    *,
    silence_dbfs: float = SILENCE_DBFS,
    on_warning: WarningSink | None = None,
) -> AudioInfo:
    """Decode the audio track to a 16-bit PCM mono WAV at `sample_rate`, window by window.

    Sample i of the WAV is media time i / sample_rate: a track that starts late is preceded by
    zeros. The file appears atomically (written beside the target, then renamed).
    """
    warnings: list[str] = []
    peak = 0.0
    sumsq = 0.0
    decoded = 0
    written = 0
    start_s: float | None = None
    with atomic_path(out_wav) as tmp:
        with wave.open(str(tmp), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            for t, chunk in iter_audio(
                path, sample_rate, window_s, warnings=warnings, on_warning=on_warning
            ):
                if start_s is None:
                    start_s = t
                    pad = int(round(t * sample_rate))
                    zeros = np.zeros(min(pad, 1 << 20), dtype=np.int16).tobytes()
                    while pad > 0:  # in blocks: a late start never costs memory
                        n = min(pad, 1 << 20)
                        wav.writeframes(zeros[: 2 * n])
                        pad -= n
                        written += n
                if chunk.size:
                    peak = max(peak, float(np.max(np.abs(chunk))))
                    sumsq += float(np.dot(chunk.astype(np.float64), chunk.astype(np.float64)))
                    decoded += chunk.size
                pcm = np.clip(chunk, -1.0, 1.0)
                pcm = np.round(pcm * 32767.0).astype("<i2")
                wav.writeframes(pcm.tobytes())
                written += pcm.size
    rms = math.sqrt(sumsq / decoded) if decoded else 0.0
    threshold = 10 ** (silence_dbfs / 20.0)
    silent = peak <= threshold
    if decoded == 0:
        warnings.append("the audio track decoded to no samples")
    return AudioInfo(
        duration_s=written / sample_rate,
        samples=written,
        peak=peak,
        rms=rms,
        silent=silent,
        sample_rate=sample_rate,
        start_s=start_s or 0.0,
        decoded_s=decoded / sample_rate,
        warnings=warnings,
    )


# ----------------------------------------------------------------------------- frames


@dataclass
class Frame:
    t: float  # presentation time, seconds from the start of the media
    image: np.ndarray  # RGB uint8, H x W x 3, display orientation (rotation applied)
    target: float  # the sampling time k / fps this frame was picked for
    rotation: int = 0  # degrees counter-clockwise that were applied


def iter_frames(
    path: str | Path,
    fps: float = 5.0,
    start: float | None = None,
    end: float | None = None,
    *,
    mode: str = "next",
    rotate: bool = True,
    threads: int = 1,
    warnings: list[str] | None = None,
    on_warning: WarningSink | None = None,
) -> Iterator[Frame]:
    """Sample frames at the times k / fps (k = 0, 1, ...; only those in [start, end]).

    For each target time the frame picked is the first decoded frame whose time is >= the target
    (`mode="next"`), or the one nearest to it (`mode="nearest"`, comparing the last frame before
    the target with the first at/after it). A frame is returned at most once: when the video has
    fewer frames per second than `fps`, each of its frames is returned once and the targets in
    between are not filled. Times come from `frame.time`, never from the frame index.

    With `start`, the decoder seeks to the key frame before `start` instead of decoding from 0.
    Decoding is single-threaded by default (`threads=1`: faster than FFmpeg's auto threading on
    small machines; several sessions run in parallel instead).
    """
    if fps <= 0:
        raise ValueError("fps must be > 0")
    if mode not in ("next", "nearest"):
        raise ValueError("mode must be 'next' or 'nearest'")
    av = _av()
    path = check_file(path)
    warn = _Warner(warnings, on_warning)
    container = _open(path)
    try:
        stream = pick_video_stream(container)
        if stream is None:
            raise InputError(path, "no video stream")
        ctx = stream.codec_context
        ctx.thread_count = max(0, int(threads))  # 0: FFmpeg picks
        if threads != 1:
            ctx.thread_type = "AUTO"
        origin = media_origin(container)
        lo = max(0.0, start or 0.0)
        k = max(0, math.ceil(lo * fps - 1e-9))
        target = k / fps
        if end is not None and target > end + TIME_EPS:
            return
        if lo > 0:
            ts = int((lo + origin) / float(stream.time_base))
            try:
                container.seek(ts, stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError as err:  # unseekable: decode from the start instead
                warn(f"{path.name}: could not seek to {lo:.2f} s ({err}); decoding from the start")

        def emit(t: float, frame, tgt: float) -> Frame:
            rot = frame_rotation(frame, stream) if rotate else 0
            img = frame.to_ndarray(format="rgb24")
            if rot:
                img = np.ascontiguousarray(np.rot90(img, k=rot // 90))
            return Frame(t=t, image=img, target=tgt, rotation=rot)

        prev = None  # (t, frame): the last frame before the current target, not yet returned
        last_t = -math.inf
        n_index = 0
        rate = float(stream.guessed_rate or stream.average_rate or 0) or 25.0
        finished = False
        for frame in _decode_packets(av, container, stream, warn, path):
            if frame.time is not None:
                t = frame.time - origin
            else:  # no timestamp at all: fall back to the frame count, and say so once
                if n_index == 0:
                    warn(f"{path.name}: frames carry no timestamps; times estimated from the frame count")
                t = n_index / rate
            n_index += 1
            if t <= last_t:
                continue  # duplicate / out-of-order timestamp: already past it
            while True:
                if t < target - TIME_EPS:
                    prev = (t, frame)
                    break
                chosen = (t, frame)
                used_current = True
                if (
                    mode == "nearest"
                    and prev is not None
                    and prev[0] > last_t
                    and (target - prev[0]) < (t - target)
                ):
                    chosen = prev
                    used_current = False
                yield emit(chosen[0], chosen[1], target)
                last_t = chosen[0]
                prev = None
                # Next target: after this one, and after the frame just returned (no repeats).
                k = max(k + 1, math.floor(last_t * fps + 1e-9) + 1)
                target = k / fps
                if end is not None and target > end + TIME_EPS:
                    finished = True
                    break
                if used_current:
                    break
            if finished:
                break
        duration = stream_duration(stream)
        if not finished and duration:
            v_end = stream_start(stream, origin) + duration
            seen = max(last_t, prev[0] if prev is not None else -math.inf)
            stop = v_end if end is None else min(end, v_end)
            if seen < stop - SHORT_DECODE_TOLERANCE_S:
                warn(
                    f"{path.name}: video decoded only to {max(seen, 0.0):.2f} s of {v_end:.2f} s: "
                    "the file is truncated or corrupt; kept what decoded"
                )
        if not finished and mode == "nearest" and prev is not None and prev[0] > last_t:
            # The stream ended between two targets: the last frame is the nearest to the next one
            # only if it is within half a sampling interval.
            if target - prev[0] <= 0.5 / fps and (end is None or target <= end + TIME_EPS):
                yield emit(prev[0], prev[1], target)
    finally:
        container.close()
