"""Export one frame of a session as an image, faces blurred by default.

    export_frame(corpus, "session-1", 12.5, "fig/frame.png")             # blurred, boxes drawn
    export_frame(corpus, "session-1", 12.5, "frame.jpg", blur=False)    # explicit opt-out

The frame decoded is the one whose presentation time is nearest `at_seconds`. Faces to blur are the
union of (a) the boxes in `faces.parquet` at the nearest sampled time (within one sampling
interval) and (b) a fresh detection on the exported frame itself (BlazeFace by default), so a face
the stage missed, or a frame between two sampled ones, is still covered. If neither source is
available (no faces.parquet and no detector installed) the export refuses rather than write an
unblurred face. Boxes are labelled with the track id, and the speaker and role when
faces.parquet has `speaker` / `role` columns (added by the speaker-assignment stage).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from emoguide.corpus.atomic import atomic_path
from emoguide.errors import EmoguideError, InputError, MissingExtraError
from emoguide.vision.blur import blur_boxes
from emoguide.vision.detect import FaceDetector, get_detector

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]  # fmt: skip
UNTRACKED = (200, 200, 200)
DEFAULT_TOLERANCE_S = 0.2


def read_frame(path: str | Path, at_seconds: float):
    """The decoded `Frame` nearest `at_seconds` (media time). Raises InputError past the end."""
    from emoguide.media.decode import iter_frames

    if at_seconds < 0 or not math.isfinite(at_seconds):
        raise ValueError("at_seconds must be a finite time >= 0")
    # Targets are k / fps: at 1000 fps the first target is `at_seconds` rounded up to 1 ms, and
    # mode="nearest" picks the decoded frame closest to it (the one before or the one after).
    for frame in iter_frames(path, fps=1000.0, start=at_seconds, mode="nearest"):
        return frame
    raise InputError(path, f"no frame at {at_seconds:.3f} s (past the end of the video?)")


def rows_near(faces: pd.DataFrame, t: float, tolerance_s: float) -> pd.DataFrame:
    """The rows of the sampled time nearest `t`, if within `tolerance_s`; else an empty frame."""
    if faces is None or faces.empty:
        return faces.iloc[0:0] if faces is not None else pd.DataFrame()
    times = faces["t"].to_numpy(dtype=float)
    i = int(np.argmin(np.abs(times - t)))
    if abs(times[i] - t) > tolerance_s + 1e-6:
        return faces.iloc[0:0]
    return faces[np.isclose(times, times[i], atol=1e-9)]


def _label(row: pd.Series) -> str:
    tid = int(row["track_id"]) if "track_id" in row and pd.notna(row["track_id"]) else -1
    parts = [f"#{tid}" if tid >= 0 else "untracked"]
    for col in ("speaker", "role"):
        if col in row and pd.notna(row[col]) and str(row[col]) not in ("", "unknown"):
            parts.append(str(row[col]))
    return " ".join(parts)


def render_frame(
    image: np.ndarray,
    faces: pd.DataFrame | None = None,
    *,
    blur: bool = True,
    boxes: bool = True,
    extra_boxes: Sequence[Sequence[float]] = (),
    blur_only: Sequence[Sequence[float]] = (),
) -> np.ndarray:
    """Draw (and by default blur) faces on a copy of `image` (RGB uint8).

    `faces`: rows with x1, y1, x2, y2 (and optionally track_id, speaker, role) for this frame;
    `extra_boxes`: more face boxes to blur (e.g. a fresh detection), drawn thin and unlabelled;
    `blur_only`: boxes blurred but not drawn.
    """
    faces = faces if faces is not None else pd.DataFrame(columns=["x1", "y1", "x2", "y2"])
    table_boxes = faces[["x1", "y1", "x2", "y2"]].to_numpy(dtype=float).tolist() if len(faces) else []
    out = np.array(image, copy=True)
    if blur:
        more = [list(b)[:4] for b in list(extra_boxes) + list(blur_only)]
        out = blur_boxes(out, list(table_boxes) + more)
    if not boxes:
        return out
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    h, w = out.shape[:2]
    width = max(2, round(min(h, w) / 200))
    size = max(12, round(min(h, w) / 30))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        font = ImageFont.load_default()
    for b in extra_boxes:
        draw.rectangle([float(v) for v in list(b)[:4]], outline=UNTRACKED, width=max(1, width // 2))
    for _, row in faces.iterrows():
        tid = int(row["track_id"]) if "track_id" in row and pd.notna(row["track_id"]) else -1
        colour = PALETTE[tid % len(PALETTE)] if tid >= 0 else UNTRACKED
        x1, y1, x2, y2 = (float(row[c]) for c in ("x1", "y1", "x2", "y2"))
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        text = _label(row)
        tb = draw.textbbox((0, 0), text, font=font)
        tw, th = tb[2] - tb[0], tb[3] - tb[1]
        ty = y1 - th - 2 * width if y1 - th - 2 * width >= 0 else y2 + width
        draw.rectangle([x1, ty, x1 + tw + 2 * width, ty + th + 2 * width], fill=colour)
        draw.text((x1 + width - tb[0], ty + width - tb[1]), text, fill=(0, 0, 0), font=font)
    return np.asarray(pil)


def write_image(path: str | Path, image: np.ndarray, quality: int = 92) -> Path:
    """Write RGB uint8 as PNG or JPEG (by extension), atomically."""
    from PIL import Image

    path = Path(path)
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format {path.suffix!r} (use .png, .jpg or .jpeg)")
    kwargs: dict[str, Any] = {"quality": quality} if fmt == "JPEG" else {}
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=fmt, **kwargs)
    return path


def _sampling_interval(session) -> float:
    rec = session.stages.get("faces") or {}
    fps = (rec.get("frames") or {}).get("fps") or (rec.get("settings") or {}).get("fps")
    try:
        return 1.0 / float(fps) if fps else DEFAULT_TOLERANCE_S
    except (TypeError, ValueError, ZeroDivisionError):
        return DEFAULT_TOLERANCE_S


def export_frame(
    corpus,
    session_id: str,
    at_seconds: float,
    out_path: str | Path,
    *,
    blur: bool = True,
    boxes: bool = True,
    detector: str | FaceDetector | None = "blazeface",
) -> Path:
    """Write the frame of `session_id` nearest `at_seconds` to `out_path` (.png/.jpg/.jpeg).

    Every face is blurred unless `blur=False` is passed. `boxes` draws face boxes and labels
    (track id, and speaker/role when known). `detector` finds faces on this exact frame too
    (name, loaded detector, or None to rely on faces.parquet only).
    """
    from emoguide.vision.faces_stage import read_faces, session_video

    out_path = Path(out_path)
    if out_path.suffix.lower() not in IMAGE_FORMATS:
        raise ValueError(f"{out_path}: unknown image format (use .png, .jpg or .jpeg)")
    session = corpus.session(session_id)
    video, why = session_video(session)
    if video is None:
        raise EmoguideError(f"session {session_id!r}: {why}")
    if not video.exists():
        raise InputError(video, "media file not found (moved or deleted?)")
    frame = read_frame(video, float(at_seconds))
    has_table = session.faces_path.exists()
    faces = rows_near(read_faces(session), frame.t, _sampling_interval(session)) if has_table else None

    fresh: list[tuple[float, float, float, float]] = []
    if detector is not None and (blur or not has_table):
        try:
            det = get_detector(detector) if isinstance(detector, str) else detector
            fresh = [d.box for d in det.load().detect(frame.image)]
        except MissingExtraError:
            if blur and not has_table:
                raise EmoguideError(
                    f"session {session_id!r}: cannot find the faces to blur: no faces.parquet "
                    "(run `emoguide faces`) and no face detector installed (pip install "
                    "'emoguide[faces]'); pass blur=False to export without blurring"
                ) from None
    elif blur and not has_table:
        raise EmoguideError(
            f"session {session_id!r}: no faces.parquet and no detector: cannot blur faces; run the "
            "faces stage, pass a detector, or pass blur=False explicitly"
        )
    # fresh boxes that duplicate a table box are not drawn twice (they are blurred either way)
    extra = fresh
    if faces is not None and len(faces) and fresh:
        from emoguide.vision.track import iou

        table = faces[["x1", "y1", "x2", "y2"]].to_numpy(dtype=float)
        extra = [b for b in fresh if all(iou(tuple(b), tuple(r)) < 0.3 for r in table)]
    # the duplicates are blurred too: fresh boxes are measured on this exact frame
    dupes = [b for b in fresh if b not in extra]
    image = render_frame(frame.image, faces, blur=blur, boxes=boxes, extra_boxes=extra, blur_only=dupes)
    return write_image(out_path, image)
