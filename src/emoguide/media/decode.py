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
from typing import Callable, Iterable, Iterator

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
# A sample at or above this |level| (full scale = 1.0) counts as clipped. Not exactly 1.0: a 16-bit
# source peaks at 32767/32768, and resampling to 16 kHz moves flat-topped samples a little.
CLIP_LEVEL = 0.999

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
    clipped: int = 0  # decoded samples at |x| >= CLIP_LEVEL
    warnings: list[str] = field(default_factory=list)

    @property
    def clipped_fraction(self) -> float:
        """Share of the decoded samples at full scale (|x| >= CLIP_LEVEL)."""
        decoded = int(round(self.decoded_s * self.sample_rate))
        return self.clipped / decoded if decoded else 0.0

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
            "clipped_fraction": round(self.clipped_fraction, 6),
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
    clipped = 0
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
                    clipped += int(np.count_nonzero(np.abs(chunk) >= CLIP_LEVEL))
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
        clipped=clipped,
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


# ----------------------------------------------------------------------------- sparse decoding
#
# The face path samples 5 of a video's ~24-30 frames a second. A codec must still decode every
# reference frame (later frames are predicted from it), but a non-reference frame (most B-frames)
# that no sample uses can be skipped: FFmpeg's `skip_frame = "NONREF"`, set packet by packet. Which
# packets are needed is decided from their presentation times, read in a demux-only first pass
# (cheap: no decoding), so the frames returned are exactly the ones a full decode would return.


def video_packet_times(path: str | Path) -> list[float] | None:
    """Presentation times (seconds from the start of the media) of every video packet, demuxed
    without decoding, sorted. None when some packet has no timestamp or demuxing fails (callers
    then decode everything)."""
    av = _av()
    path = check_file(path)
    container = _open(path)
    try:
        stream = pick_video_stream(container)
        if stream is None:
            return None
        origin = media_origin(container)
        tb = stream.time_base
        out: list[float] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                if packet.pts is None:
                    return None
                out.append(float(packet.pts * tb) - origin)
        except av.error.FFmpegError:
            return None
        out.sort()
        return out
    finally:
        container.close()


def _needed_for_targets(times: list[float], fps: float, start: float | None, end: float | None) -> set[float]:
    """Times (of `times`) that `iter_frames(mode="next")` can pick: the first frame at or after a
    target k / fps. Conservative: a frame is kept when a target lies in (previous frame, this frame]."""
    need: set[float] = set()
    lo = max(0.0, start or 0.0)
    prev = -math.inf
    for t in times:
        if t <= prev:  # duplicate timestamp: keep it when its twin is kept
            if prev in need:
                need.add(t)
            continue
        # Frame t serves target T = k / fps when no earlier frame did: prev < T - eps (prev was
        # too early) or prev was used for an earlier target (then T > prev). So: prev - eps < T <= t + eps.
        k_hi = math.floor((t + TIME_EPS) * fps + 1e-9)
        k_lo = math.floor((prev - TIME_EPS) * fps - 1e-9) + 1 if math.isfinite(prev) else 0
        k_lo = max(k_lo, math.ceil(lo * fps - 1e-9))
        if k_hi >= k_lo and (end is None or k_lo / fps <= end + TIME_EPS):
            need.add(t)
        prev = t
    return need


def _needed_for_times(times: list[float], wanted: list[float], tol: float) -> set[float]:
    """Frames matching a wanted time within `tol`; for a wanted time with no such frame, the
    frames on either side of it (what `frames_at` chooses between)."""
    import bisect

    need: set[float] = set()
    for w in wanted:
        i = bisect.bisect_left(times, w - tol)
        hit = False
        j = i
        while j < len(times) and times[j] <= w + tol:
            need.add(times[j])
            hit = True
            j += 1
        if not hit:
            if i > 0:
                need.add(times[i - 1])
            if i < len(times):
                need.add(times[i])
    return need


def _decode_skipping(av, container, stream, warn: _Warner, path: Path, origin: float,
                     needed: set[float] | None) -> Iterator:
    """`_decode_packets`, but packets whose presentation time is not in `needed` are decoded with
    `skip_frame = "NONREF"` (the decoder drops them when nothing refers to them)."""
    if needed is None:
        yield from _decode_packets(av, container, stream, warn, path)
        return
    ctx = stream.codec_context
    tb = stream.time_base
    keyed = {round(t, 6) for t in needed}
    bad = 0
    mode = ""
    try:
        for packet in container.demux(stream):
            want = packet.pts is None or packet.size == 0 or round(float(packet.pts * tb) - origin, 6) in keyed
            new_mode = "DEFAULT" if want else "NONREF"
            if new_mode != mode:
                ctx.skip_frame = new_mode
                mode = new_mode
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
    finally:
        try:
            ctx.skip_frame = "DEFAULT"
        except Exception:  # noqa: BLE001 - the context may already be closed
            pass


def iter_frames_sparse(
    path: str | Path,
    fps: float = 5.0,
    start: float | None = None,
    end: float | None = None,
    *,
    warnings: list[str] | None = None,
    on_warning: WarningSink | None = None,
) -> Iterator[Frame]:
    """The frames `iter_frames(path, fps, start, end)` returns (mode "next", rotation applied,
    one decoding thread), with the same times and pixels, decoding less: non-reference frames that
    no sampling target uses are skipped. Files whose packets lack timestamps are decoded fully."""
    if fps <= 0:
        raise ValueError("fps must be > 0")
    times = video_packet_times(path)
    needed = _needed_for_targets(times, fps, start, end) if times else None
    av = _av()
    path = check_file(path)
    warn = _Warner(warnings, on_warning)
    container = _open(path)
    try:
        stream = pick_video_stream(container)
        if stream is None:
            raise InputError(path, "no video stream")
        stream.codec_context.thread_count = 1
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
            except av.error.FFmpegError as err:
                warn(f"{path.name}: could not seek to {lo:.2f} s ({err}); decoding from the start")

        def emit(t: float, frame, tgt: float) -> Frame:
            rot = frame_rotation(frame, stream)
            img = frame.to_ndarray(format="rgb24")
            if rot:
                img = np.ascontiguousarray(np.rot90(img, k=rot // 90))
            return Frame(t=t, image=img, target=tgt, rotation=rot)

        last_t = -math.inf
        seen = -math.inf
        n_index = 0
        rate = float(stream.guessed_rate or stream.average_rate or 0) or 25.0
        finished = False
        for frame in _decode_skipping(av, container, stream, warn, path, origin, needed):
            if frame.time is not None:
                t = frame.time - origin
            else:
                if n_index == 0:
                    warn(f"{path.name}: frames carry no timestamps; times estimated from the frame count")
                t = n_index / rate
            n_index += 1
            seen = max(seen, t)
            if t <= last_t or t < target - TIME_EPS:
                continue
            yield emit(t, frame, target)
            last_t = t
            k = max(k + 1, math.floor(last_t * fps + 1e-9) + 1)
            target = k / fps
            if end is not None and target > end + TIME_EPS:
                finished = True
                break
        duration = stream_duration(stream)
        if not finished and duration:
            v_end = stream_start(stream, origin) + duration
            if times:
                seen = max(seen, times[-1]) if seen > -math.inf else seen
            stop = v_end if end is None else min(end, v_end)
            if seen < stop - SHORT_DECODE_TOLERANCE_S:
                warn(
                    f"{path.name}: video decoded only to {max(seen, 0.0):.2f} s of {v_end:.2f} s: "
                    "the file is truncated or corrupt; kept what decoded"
                )
    finally:
        container.close()


def frames_at(
    path: str | Path,
    times: Iterable[float],
    *,
    tol: float = 1e-3,
    max_offset: float = 0.25,
    warnings: list[str] | None = None,
    on_warning: WarningSink | None = None,
) -> Iterator[tuple[float, float, np.ndarray]]:
    """Yield (wanted_time, frame_time, RGB image) for each wanted time, in increasing order.

    The frame whose presentation time equals the wanted time (within `tol`) is used; otherwise the
    nearer of the frames just before and after it, when within `max_offset`. Times are seconds from
    the start of the media, as `iter_frames` reports them; rotation is applied the same way.
    Decoding is sequential from a seek before the first wanted time, one frame in memory; frames
    that are not wanted and that no other frame refers to are not decoded.
    """
    wanted = sorted({round(float(t), 6) for t in times})
    if not wanted:
        return
    av = _av()
    path = check_file(path)
    all_times = video_packet_times(path)
    needed = _needed_for_times(all_times, wanted, tol) if all_times else None
    warn = _Warner(warnings, on_warning)
    container = _open(path)
    try:
        stream = pick_video_stream(container)
        if stream is None:
            raise InputError(path, "no video stream")
        stream.codec_context.thread_count = 1
        origin = media_origin(container)
        first = wanted[0]
        if first > 1.0:
            try:
                ts = int((first - 1.0 + origin) / float(stream.time_base))
                container.seek(ts, stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError as err:
                warn(f"{path.name}: could not seek to {first:.2f} s ({err}); decoding from the start")
        rate = float(stream.guessed_rate or stream.average_rate or 0) or 25.0
        cache: dict[int, np.ndarray] = {}

        def image(fr) -> np.ndarray:
            key = id(fr)
            if key not in cache:
                cache.clear()
                img = fr.to_ndarray(format="rgb24")
                rot = frame_rotation(fr, stream)
                if rot:
                    img = np.ascontiguousarray(np.rot90(img, k=rot // 90))
                cache[key] = img
            return cache[key]

        i = 0
        prev = None  # (t, frame)
        n = 0
        for frame in _decode_skipping(av, container, stream, warn, path, origin, needed):
            t = (frame.time - origin) if frame.time is not None else n / rate
            n += 1
            while i < len(wanted) and t >= wanted[i] - tol:
                w = wanted[i]
                chosen = (t, frame)
                if abs(t - w) > tol and prev is not None and abs(prev[0] - w) < abs(t - w):
                    chosen = prev
                if abs(chosen[0] - w) <= max_offset:
                    yield w, chosen[0], image(chosen[1])
                i += 1
            if i >= len(wanted):
                break
            prev = (t, frame)
        while i < len(wanted) and prev is not None:  # stream ended: the last frame, if near
            if abs(prev[0] - wanted[i]) <= max_offset:
                yield wanted[i], prev[0], image(prev[1])
            i += 1
    finally:
        container.close()
