"""Cut the rating clip of one context: H.264/AAC MP4 (or AAC .m4a for audio-only sessions).

The clip runs from the first context utterance's start to the target utterance's end. It is
re-encoded with PyAV (FFmpeg) rather than stream-copied so it starts exactly at the window (a
copy would start at the previous key frame) and so faces can be blurred frame by frame; the MP4
is written with `movflags=+faststart` (the index first) so a browser can play and seek it while
it streams. Files are written to a temporary name and renamed, so a crash leaves no half clip.

Blurring (study option video = "blurred") uses the project's face blur (emoguide.vision.blur):
boxes from the session's faces.parquet when it exists (the sampled times on either side of each
frame, so a moving face stays covered), otherwise a face detector run every DETECT_EVERY_S
seconds of the clip. With neither, the clip is refused (no unblurred face is ever written).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emoguide.errors import EmoguideError, InputError, MissingExtraError

DETECT_EVERY_S = 0.2
AUDIO_FRAME = 1024  # AAC frame size
TIME_EPS = 1e-6

#: (time in the media, RGB image) -> the image with faces blurred
Blurrer = Callable[[float, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    kind: str  # video | audio
    duration: float  # seconds written (last frame's end)
    frames: int
    video_codec: str | None
    audio_codec: str | None


def _av():
    from emoguide.errors import require

    return require("av", "media", "cutting rating clips")


def cut_clip(
    src: str | Path,
    dst: str | Path,
    start: float,
    end: float,
    kind: str = "video",
    blur: Blurrer | None = None,
    crf: int = 23,
    preset: str = "superfast",  # ~2x faster than veryfast at a modestly larger file
) -> ClipInfo:
    """Write the window [start, end] (seconds from the media start) of `src` to `dst`."""
    from emoguide.media.probe import media_origin, pick_audio_stream, pick_video_stream

    av = _av()
    src, dst = Path(src), Path(dst)
    if kind not in ("video", "audio"):
        raise ValueError(f"kind must be video or audio, got {kind!r}")
    if not src.is_file():
        raise InputError(src, "media file not found (moved or deleted?)")
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise ValueError(f"clip window {start}-{end}: the end must come after the start")
    start = max(0.0, float(start))
    try:
        inp = av.open(str(src), mode="r", metadata_errors="replace")
    except av.error.FFmpegError as err:
        raise InputError(src, f"cannot open media: {err}") from None
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    try:
        with inp:
            vin = pick_video_stream(inp) if kind == "video" else None
            ain = pick_audio_stream(inp)
            if kind == "video" and vin is None:
                raise InputError(src, "no video stream")
            if kind == "audio" and ain is None:
                raise InputError(src, "no audio stream")
            origin = media_origin(inp)
            dur = inp.duration / av.time_base if inp.duration else None
            if dur is not None and start >= dur:
                raise InputError(src, f"the clip starts at {start:.2f} s, after the end of the media ({dur:.2f} s)")
            info = _transcode(av, inp, vin, ain, tmp, start, end, origin, blur, crf, preset)
        os.replace(tmp, dst)
        return ClipInfo(dst, kind, *info)
    except av.error.FFmpegError as err:
        raise InputError(src, f"cannot cut the clip {start:.2f}-{end:.2f} s: {err}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _transcode(av, inp, vin, ain, tmp: Path, start, end, origin, blur, crf, preset):
    out = av.open(str(tmp), mode="w", format="mp4", container_options={"movflags": "+faststart"})
    with out:
        vout = aout = None
        if vin is not None:
            rate = vin.average_rate or vin.guessed_rate or Fraction(25)
            rate = Fraction(rate).limit_denominator(100000)
            vout = out.add_stream("libx264", rate=rate)
            vout.width = vin.codec_context.width - vin.codec_context.width % 2
            vout.height = vin.codec_context.height - vin.codec_context.height % 2
            vout.pix_fmt = "yuv420p"
            vout.options = {"crf": str(crf), "preset": preset}
            v_tb = Fraction(rate.denominator, rate.numerator)
            vout.codec_context.time_base = v_tb
        if ain is not None:
            a_rate = ain.codec_context.sample_rate or 48000
            layout = "mono" if _channels(ain) == 1 else "stereo"
            aout = out.add_stream("aac", rate=a_rate)
            aout.layout = layout
            a_planar = av.AudioResampler(format="fltp", layout=layout, rate=a_rate)
            fifo = av.AudioFifo()
        first = vin if vin is not None else ain
        if start > 0:
            ts = int((start + origin) / float(first.time_base))
            inp.seek(ts, stream=first, backward=True, any_frame=False)
        streams = [s for s in (vin, ain) if s is not None]
        done = {s.index: False for s in streams}
        n_frames = 0
        last_pts = -1
        v_end = 0.0
        a_samples = 0
        a_written = 0
        for packet in inp.demux(streams):
            if all(done.values()):
                break
            if packet.stream.index in done and done[packet.stream.index]:
                continue
            for frame in packet.decode():
                if frame.time is None:
                    continue
                t = float(frame.time) - origin
                if packet.stream is vin:
                    if t >= end - TIME_EPS:
                        done[vin.index] = True
                        break
                    if t < start - TIME_EPS:
                        continue
                    pts = round((t - start) / float(v_tb))
                    pts = max(pts, last_pts + 1)
                    last_pts = pts
                    if blur is not None:
                        image = blur(t, frame.to_ndarray(format="rgb24"))
                        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                    new = frame.reformat(width=vout.width, height=vout.height, format="yuv420p")
                    new.pts = pts
                    new.time_base = v_tb
                    for p in vout.encode(new):
                        out.mux(p)
                    n_frames += 1
                    v_end = (pts + 1) * float(v_tb)
                else:
                    if t >= end - TIME_EPS:
                        done[ain.index] = True
                        break
                    for planar in a_planar.resample(frame):
                        arr = planar.to_ndarray()
                        n = arr.shape[1]
                        rate = planar.sample_rate
                        lo = max(0, int(round((start - t) * rate)))
                        hi = min(n, int(round((end - t) * rate)))
                        if hi <= lo:
                            continue
                        part = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr[:, lo:hi]), format="fltp", layout=layout)
                        part.sample_rate = rate
                        part.pts = None
                        fifo.write(part)
                        a_samples += hi - lo
                        a_written = _drain(out, aout, fifo, a_written, final=False)
        if vout is not None:
            for p in vout.encode(None):
                out.mux(p)
        if aout is not None:
            a_written = _drain(out, aout, fifo, a_written, final=True)
            for p in aout.encode(None):
                out.mux(p)
    a_dur = a_samples / float(aout.codec_context.sample_rate) if aout is not None and a_samples else 0.0
    duration = v_end if vout is not None else a_dur
    if (vout is not None and n_frames == 0) or (vout is None and a_samples == 0):
        raise InputError(inp.name, f"nothing decoded in the window {start:.2f}-{end:.2f} s")
    return duration, n_frames, ("h264" if vout is not None else None), ("aac" if aout is not None else None)


def _channels(stream) -> int:
    ctx = stream.codec_context
    lay = getattr(ctx, "layout", None)
    n = getattr(lay, "nb_channels", None) or getattr(ctx, "channels", None)
    return int(n or 1)


def _drain(out, aout, fifo, written: int, final: bool) -> int:
    """Encode whole AAC frames from the fifo (and the remainder when `final`)."""
    rate = aout.codec_context.sample_rate
    while fifo.samples >= AUDIO_FRAME or (final and fifo.samples > 0):
        frame = fifo.read(min(AUDIO_FRAME, fifo.samples) if final else AUDIO_FRAME)
        if frame is None:
            break
        frame.pts = written
        frame.time_base = Fraction(1, rate)
        frame.sample_rate = rate
        written += frame.samples
        for p in aout.encode(frame):
            out.mux(p)
    return written


# ----------------------------------------------------------------------------- face blur
class FaceBlur:
    """Blurs the faces of a session's frames: faces.parquet boxes, or a detector's."""

    def __init__(self, faces=None, tolerance_s: float = 0.2, detector: Any = None):
        self.detector = detector
        self.tolerance_s = tolerance_s
        self._times = None
        self._boxes: dict[float, np.ndarray] = {}
        if faces is not None and len(faces):
            for t, rows in faces.groupby("t"):
                self._boxes[float(t)] = rows[["x1", "y1", "x2", "y2"]].to_numpy(dtype=float)
            self._times = np.array(sorted(self._boxes))
        if self._times is None and detector is None:
            raise EmoguideError("cannot blur faces: no faces.parquet and no face detector")
        self._last_detect: float | None = None
        self._detected: list = []
        self._previous: list = []

    def boxes(self, t: float, image: np.ndarray) -> list:
        out: list = []
        if self._times is not None:
            # the sampled times on either side of t (within the tolerance), so motion stays covered
            i = int(np.searchsorted(self._times, t))
            for j in (i - 1, i):
                if 0 <= j < len(self._times) and abs(self._times[j] - t) <= self.tolerance_s + TIME_EPS:
                    out.extend(self._boxes[float(self._times[j])].tolist())
        if self.detector is not None:
            if self._last_detect is None or t - self._last_detect >= DETECT_EVERY_S - TIME_EPS or t < self._last_detect:
                self._previous = self._detected
                self._detected = [d.box for d in self.detector.detect(image)]
                self._last_detect = t
            out.extend(self._detected)
            out.extend(self._previous)
        return out

    def __call__(self, t: float, image: np.ndarray) -> np.ndarray:
        return blur_faces(image, self.boxes(t, image))


def blur_faces(image: np.ndarray, boxes, work_side: int = 48) -> np.ndarray:
    """emoguide.vision.blur's anonymisation (grown box, ~6 blocks across, Gaussian), computed on
    the region scaled down to `work_side` pixels and scaled back up.

    Why not blur_boxes itself: its full-resolution Gaussian (sigma = 1/6 of the face) costs about
    a second per frame here, which is fine for a figure but not for every frame of every clip.
    The region is reduced to 6 blocks across either way, so working at 48 px loses nothing that
    the blur keeps, and it is ~50x faster.
    """
    from emoguide.vision.blur import DEFAULT_CELLS, DEFAULT_GROW, blur_region, grow_box
    from emoguide.vision.detect import resize_rgb

    out = np.array(image, copy=True)
    h, w = out.shape[:2]
    for box in boxes:
        x1, y1, x2, y2 = grow_box(box, DEFAULT_GROW, w, h)
        rw, rh = x2 - x1, y2 - y1
        if rw < 2 or rh < 2:
            continue
        region = np.ascontiguousarray(out[y1:y2, x1:x2])
        scale = min(1.0, work_side / max(rw, rh))
        if scale < 1.0:
            small = resize_rgb(region, max(2, round(rw * scale)), max(2, round(rh * scale)))
            out[y1:y2, x1:x2] = _upscale(blur_region(small, DEFAULT_CELLS), rw, rh)
        else:
            out[y1:y2, x1:x2] = blur_region(region, DEFAULT_CELLS)
    return out


def _upscale(small: np.ndarray, width: int, height: int) -> np.ndarray:
    try:
        import cv2

        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    except ImportError:  # pragma: no cover - the faces extra installs OpenCV
        from PIL import Image

        return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def face_boxes_for(session, cache: dict[str, Any] | None = None) -> FaceBlur:
    """The blurrer for a session: its faces.parquet when present, else the corpus's face detector."""
    cache = {} if cache is None else cache
    if session.id in cache:
        return cache[session.id]
    faces = None
    tolerance = 0.2
    if session.faces_path.exists():
        from emoguide.corpus.atomic import read_parquet

        faces = read_parquet(session.faces_path)
        rec = session.stages.get("faces") or {}
        fps = (rec.get("frames") or {}).get("fps") or (rec.get("settings") or {}).get("fps")
        try:
            tolerance = 1.0 / float(fps) if fps else tolerance
        except (TypeError, ValueError, ZeroDivisionError):
            pass
    detector = None
    if faces is None or not len(faces):
        detector = _default_detector(session)
    blur = FaceBlur(faces, tolerance_s=tolerance, detector=detector)
    cache[session.id] = blur
    return blur


def _default_detector(session):
    """The corpus's configured detector ([faces] in corpus.toml), else OpenCV's Haar cascade."""
    from emoguide.vision.faces_stage import FaceSettings

    tried = []
    try:
        settings = FaceSettings.model_validate(session.corpus.settings().faces or {})
        candidates = [lambda: settings.make_detector()]
    except Exception:  # noqa: BLE001 - a bad [faces] section: fall back to the cascade
        candidates = []
    from emoguide.vision.detect import get_detector

    candidates.append(lambda: get_detector("haar"))
    for make in candidates:
        try:
            return make().load()
        except (MissingExtraError, ImportError, OSError) as exc:
            tried.append(str(exc))
    raise EmoguideError("cannot blur faces: no faces.parquet and no face detector could load: " + "; ".join(tried))
