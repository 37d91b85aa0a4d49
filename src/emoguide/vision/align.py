"""Landmark-aligned face crops: the same crop for the expression model whichever detector found
the face (docs/face_emotion.md, "Aligned crops").

A detector's box is its own convention: MTCNN's box runs from the brows to the chin, BlazeFace's
from the forehead to below the mouth, Haar's is wider again. With a box crop the expression model
sees a differently framed face per detector, and the fer model (trained on FER2013's tight,
registered faces) answers differently (benchmarks/faces.py, section (c)). Both MTCNN and BlazeFace
also give the eyes and the mouth, so instead the face is warped by a similarity transform
(rotation, uniform scale, translation; least squares, Umeyama 1991) that puts the two eye centres
and the mouth centre on fixed positions of a template square, the 5-point alignment face models
use, here with 3 points the two detectors share:

- MTCNN (5 points: left eye, right eye, nose, mouth left, mouth right, as seen in the image):
  eyes = points 0 and 1, mouth = the midpoint of points 3 and 4;
- BlazeFace (6 points: the subject's right eye, left eye, nose tip, mouth centre, right and left
  ear tragion): eyes = points 0 and 1 (the subject's right eye is the image-left one), mouth =
  point 3.

The nose is left out: its projection moves with head yaw and pitch far more than the eye-mouth
triangle does, and the two detectors place it differently (MTCNN near the tip, BlazeFace on it).

The template (`FER2013_TEMPLATE`) follows the training data's convention, not the clips the
agreement is measured on: FER2013 faces are "automatically registered so that the face is more or
less centered and occupies about the same amount of space in each image" (Goodfellow et al.
2013), tight, with the eyes a little above 0.4 of the height. The template puts the eye line at
0.38 of the side and the eye centres 0.36 of the side apart, symmetric about the vertical centre
line; the mouth centre sits below the eye midpoint by 1.155 interocular distances, the ratio of
the standard 5-point face template (InsightFace/ArcFace's 112 x 112 reference points: eyes 35.24
px apart, mouth centre 40.69 px below the eye midpoint), so it lands at 0.796 of the side.

Rows without usable landmarks (Haar has none; a degenerate landmark set) keep the square box
crop, and the data says which one each row got (`crop_mode`: "aligned" or "box").
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from emoguide.errors import require

ALIGNED = "aligned"
BOX = "box"
CROP_MODES = (ALIGNED, BOX)

#: smallest / largest side (px) of an aligned crop before the backend resizes it: the warp samples
#: the source at about its own resolution (the backend's resize then antialiases, as for box crops)
MIN_SIDE, MAX_SIDE = 64, 512
#: eye centres closer than this (source pixels) are not a usable landmark set
MIN_EYE_DISTANCE_PX = 2.0

_ARCFACE_EYE_MOUTH_RATIO = (92.2848 - 51.5989) / (73.5318 - 38.2946)  # = 1.1546


@dataclass(frozen=True)
class AlignTemplate:
    """Target positions, as fractions of the crop side, of the image-left eye, the image-right
    eye and the mouth centre."""

    name: str
    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    mouth: tuple[float, float]

    def points(self, side: float = 1.0) -> np.ndarray:
        return np.array([self.left_eye, self.right_eye, self.mouth], dtype=np.float64) * float(side)

    @property
    def eye_distance(self) -> float:
        return float(math.dist(self.left_eye, self.right_eye))


def _fer2013_template() -> AlignTemplate:
    eye_y, eye_dist = 0.38, 0.36
    mouth_y = eye_y + _ARCFACE_EYE_MOUTH_RATIO * eye_dist
    return AlignTemplate(
        "fer2013-eyes-mouth-v1",
        (0.5 - eye_dist / 2, eye_y),
        (0.5 + eye_dist / 2, eye_y),
        (0.5, round(mouth_y, 4)),
    )


FER2013_TEMPLATE = _fer2013_template()
TEMPLATES: dict[str, AlignTemplate] = {FER2013_TEMPLATE.name: FER2013_TEMPLATE}


def template_named(name: str | None) -> AlignTemplate | None:
    """The template a crop spec's `align` names; None for "box" or no name."""
    if name is None or name == BOX:
        return None
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown face alignment template {name!r} (known: {', '.join(TEMPLATES)})") from None

#: detector name -> (image-left eye index, image-right eye index, mouth point indices to average)
LAYOUTS: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "mtcnn": (0, 1, (3, 4)),
    "blazeface": (0, 1, (3,)),
}
#: the same by landmark count, for rows whose detector is not named (5: MTCNN's, 6: BlazeFace's)
_BY_COUNT = {5: LAYOUTS["mtcnn"], 6: LAYOUTS["blazeface"]}


def parse_landmarks(value: Any) -> list[tuple[float, float]] | None:
    """Landmarks as faces.parquet stores them (JSON text of [[x, y], ...]) or as a list; None when
    absent or unreadable."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        import pandas as pd

        if pd.isna(value) is True:
            return None
    except (ImportError, TypeError, ValueError):
        pass
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    try:
        pts = [(float(p[0]), float(p[1])) for p in value]
    except (TypeError, ValueError, IndexError):
        return None
    return pts or None


def align_points(landmarks: Sequence[Sequence[float]] | None, detector: str | None = None) -> np.ndarray | None:
    """The (image-left eye, image-right eye, mouth centre) 3 x 2 array of a detector's landmarks, or
    None when there are none or they cannot be aligned on (unknown layout, non-finite, eyes closer
    than `MIN_EYE_DISTANCE_PX`, mouth on the eye line)."""
    if landmarks is None:
        return None
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        return None
    layout = LAYOUTS.get(str(detector).split("-")[0]) if detector else None
    if layout is None or max(layout[0], layout[1], *layout[2]) >= len(pts):
        layout = _BY_COUNT.get(len(pts))
    if layout is None:
        return None
    le, re_, mouth = layout
    out = np.stack([pts[le], pts[re_], pts[list(mouth)].mean(axis=0)])
    if not np.isfinite(out).all():
        return None
    eye_vec = out[1] - out[0]
    d = float(np.hypot(*eye_vec))
    if d < MIN_EYE_DISTANCE_PX:
        return None
    # the mouth must lie off the eye line (a triangle), by at least a quarter eye distance
    cross = eye_vec[0] * (out[2] - out[0])[1] - eye_vec[1] * (out[2] - out[0])[0]
    if abs(cross) / d < 0.25 * d:
        return None
    return out


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity (rotation, uniform scale, translation; no reflection) mapping `src`
    points onto `dst` points in the least-squares sense (Umeyama 1991). Exact when one exists."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = float((s0**2).sum()) / len(src)
    cov = d0.T @ s0 / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(2)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[1, 1] = -1.0
    R = U @ D @ Vt
    scale = float(np.trace(np.diag(S) @ D)) / var_s
    t = mu_d - scale * R @ mu_s
    return np.hstack([scale * R, t[:, None]])


def crop_side(points: np.ndarray, template: AlignTemplate) -> int:
    """Side (px) of the aligned crop: about the source's own resolution over the template square
    (eye distance / template eye distance), within [MIN_SIDE, MAX_SIDE]."""
    d = float(np.hypot(*(points[1] - points[0])))
    return int(min(MAX_SIDE, max(MIN_SIDE, round(d / template.eye_distance))))


def aligned_crop(
    image: np.ndarray, points: np.ndarray, template: AlignTemplate = FER2013_TEMPLATE, side: int | None = None
) -> np.ndarray:
    """The face warped onto `template` (square, `side` px; None: `crop_side`), from the 3 x 2
    `align_points` output; outside the frame filled by edge replication, as `crop_face` does."""
    cv2 = require("cv2", "faces", "OpenCV warps the aligned face crops (pip install 'opencv-python-headless<5')")
    side = crop_side(points, template) if side is None else int(side)
    M = similarity(points, template.points(side))
    out = cv2.warpAffine(
        np.ascontiguousarray(image), M, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.ascontiguousarray(out)


def model_crop(
    image: np.ndarray,
    box: Sequence[float],
    margin: float,
    template: AlignTemplate | None,
    landmarks: Any = None,
    detector: str | None = None,
) -> tuple[np.ndarray, str]:
    """The crop a face-emotion backend gets for one detection, and its mode: the `template`-aligned
    crop when `template` is given and the landmarks allow it ("aligned"), else the square box
    crop with `margin` ("box": Haar rows, rows without landmarks, `crop_mode = "box"`)."""
    from emoguide.vision.emotion import crop_face

    if template is not None:
        pts = align_points(parse_landmarks(landmarks) if not isinstance(landmarks, np.ndarray) else landmarks,
                           detector)
        if pts is not None:
            return aligned_crop(image, pts, template), ALIGNED
    return crop_face(image, box, margin), BOX


def scale_landmarks(landmarks: Any, sx: float, sy: float) -> list[tuple[float, float]] | None:
    """Landmarks rescaled with the box (a video decoded at another size than it was detected at)."""
    pts = parse_landmarks(landmarks)
    if pts is None:
        return None
    return [(x * sx, y * sy) for x, y in pts]


# --------------------------------------------------------------------------- one landmark model


#: intra-op torch threads of O-Net's forward (`OnetLandmarks.threads`): a batch is a few 48 x 48
#: faces, too little work to split, and it runs beside the decoder and the detector
ONET_THREADS = 1


class OnetLandmarks:
    """The landmarks aligned crops are cut from, by one model whichever detector found the face:
    MTCNN's last stage (O-Net, facenet-pytorch's weights, shipped in its wheel) run on the
    detector's box.

    Each detector's own eye and mouth points follow its own convention (BlazeFace's eye keypoints
    sit lower on the face than MTCNN's, and jitter more), so aligning on them still leaves the
    expression model a detector-dependent crop. O-Net regresses the five MTCNN points (and a
    refined box) from a square 48 x 48 view of a face box, exactly as the last stage of MTCNN does
    on R-Net's box. It is run `passes` times (default 2): the first pass brings any detector's box
    to MTCNN's own box convention (O-Net's box regression), the second reads the landmarks from
    that box. Both the paper's path (MTCNN boxes) and the fast one (BlazeFace boxes) go through
    it, so their crops meet at the same fixed point.

    Cost: `refine` takes every box of several frames (the faces stage gives it one detector batch,
    in the detector's worker thread) and runs ONE forward per pass over all of them, on `threads`
    torch threads (default `ONET_THREADS` = 1, set for the calling thread only while it runs and
    restored after: with OpenMP, torch's thread count is per calling thread), with the net and its
    input in channels-last order (NCHW's ceil-mode max-pooling alone took half of the forward);
    the 48 x 48 inputs are area-averaged in numpy (`area_resize`). About 3-4 ms per
    face for both passes on one core of the loaded 2-core build machine. The first version (one
    call per frame on the main thread, torch's default 2 OpenMP threads, NCHW) cost ~40 ms per
    face there and ~130 ms beside a BlazeFace worker and the decoder: two OpenMP threads per tiny
    call contend for 2 cores with the detector's, the decoder's and other processes' threads.

    Preprocessing as facenet-pytorch's `detect_face` stage 3: the box made square about its
    centre (`rerec`), truncated to ints and clipped to the frame (`pad`), the patch resized with
    area interpolation to 48 x 48, (x - 127.5) / 128; landmarks = box origin + O-Net's fractions
    of the box side (+1 px, as there).
    """

    def __init__(self, passes: int = 2, threads: int | None = ONET_THREADS):
        self.passes = max(1, int(passes))
        self.threads = None if threads is None else max(1, int(threads))
        self._net = None
        #: seconds spent in `refine` (all calls; the faces stage reports it)
        self.seconds = 0.0
        self.faces = 0

    def load(self) -> "OnetLandmarks":
        if self._net is None:
            import sys

            from emoguide.vision.detect import import_facenet_mtcnn

            import_facenet_mtcnn()  # imports facenet_pytorch (stand-ins for torchvision/requests if needed)
            import torch

            ONet = sys.modules["facenet_pytorch.models.mtcnn"].ONet
            self._torch = torch
            self._net = ONet(pretrained=True).eval().to(memory_format=torch.channels_last)
            for p in self._net.parameters():
                p.requires_grad_(False)
        return self

    def info(self) -> dict[str, Any]:
        return {"model": "facenet-pytorch O-Net (MTCNN stage 3)", "passes": self.passes, "threads": self.threads}

    def __call__(self, image: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[list[tuple[float, float]] | None]:
        """Five landmarks (MTCNN's layout) per box, in `image`'s pixels; None where the box has no
        pixels inside the frame."""
        return self.refine([image], [boxes])[0]

    def refine(
        self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[Sequence[float]]]
    ) -> list[list[list[tuple[float, float]] | None]]:
        """`__call__` for several frames at once: `boxes[i]` are boxes in `images[i]`; per frame,
        per box, the five points or None. Every box of every frame goes through one batched
        forward per pass."""
        self.load()
        torch = self._torch
        t0 = time.perf_counter()
        items = [(i, np.asarray(b, dtype=np.float64)[:4].copy()) for i, bs in enumerate(boxes) for b in bs]
        out: list[list[tuple[float, float]] | None] = [None] * len(items)
        if items:
            prev = torch.get_num_threads()
            if self.threads and self.threads != prev:
                torch.set_num_threads(self.threads)
            try:
                with torch.inference_mode():
                    self._refine(images, items, out)
            finally:
                if self.threads and self.threads != prev:
                    torch.set_num_threads(prev)
        self.seconds += time.perf_counter() - t0
        self.faces += len(items)
        res: list[list[list[tuple[float, float]] | None]] = [[] for _ in images]
        for (i, _), pts in zip(items, out):
            res[i].append(pts)
        return res

    def _refine(self, images, items, out) -> None:
        torch = self._torch
        cur: list[np.ndarray | None] = [b for _, b in items]
        for _ in range(self.passes):
            views, keep, spans = [], [], []
            for k, b in enumerate(cur):
                if b is None:
                    continue
                image = images[items[k][0]]
                h, w = image.shape[:2]
                bw, bh = b[2] - b[0], b[3] - b[1]
                side = max(bw, bh)
                x1, y1 = b[0] + bw * 0.5 - side * 0.5, b[1] + bh * 0.5 - side * 0.5
                x, y, ex, ey = int(x1), int(y1), int(x1 + side), int(y1 + side)  # trunc, as pad()
                x, y, ex, ey = max(x, 1), max(y, 1), min(ex, w), min(ey, h)
                if not (ey > y - 1 and ex > x - 1) or ey - (y - 1) < 2 or ex - (x - 1) < 2:
                    cur[k] = None
                    out[k] = None
                    continue
                views.append(area_resize(image[y - 1 : ey, x - 1 : ex], ONET_SIDE))
                keep.append(k)
                spans.append((x, y, ex, ey))
            if not views:
                break
            # N x 48 x 48 x 3 viewed as N x 3 x 48 x 48 in channels-last order, as the net is kept:
            # its pooling and convolutions run ~2x faster so than on NCHW
            batch = torch.from_numpy((np.stack(views) - np.float32(127.5)) * np.float32(0.0078125)).permute(0, 3, 1, 2)
            reg, pts, _prob = self._net(batch)
            reg, pts = reg.numpy().astype(np.float64), pts.numpy().astype(np.float64)
            for j, k in enumerate(keep):
                x, y, ex, ey = spans[j]
                wi, hi = ex - x + 1, ey - y + 1
                out[k] = [(float(wi * pts[j, i] + x - 1), float(hi * pts[j, 5 + i] + y - 1)) for i in range(5)]
                # bbreg: the refined box the next pass reads from
                cur[k] = np.array([x + reg[j, 0] * wi, y + reg[j, 1] * hi, ex + reg[j, 2] * wi, ey + reg[j, 3] * hi])


#: O-Net's input side (px)
ONET_SIDE = 48


def area_resize(patch: np.ndarray, side: int) -> np.ndarray:
    """`patch` (H x W x C uint8) resized to side x side x C float32 by area averaging, the values
    of torch's `interpolate(mode="area")` (adaptive average pooling: output cell i averages input
    rows floor(i H / side) to ceil((i + 1) H / side), likewise columns), which facenet-pytorch
    feeds O-Net (to float rounding: <= 2e-5 here), from an integral image (exact integer sums).
    About as fast as torch's per-patch call (~0.35 ms for a 150 px patch), but it gives the
    H x W x C array the channels-last batch is stacked from, with no torch call per face."""
    cv2 = require("cv2", "faces", "OpenCV resizes the O-Net inputs (pip install 'opencv-python-headless<5')")
    h, w = patch.shape[:2]
    ii = cv2.integral(np.ascontiguousarray(patch), sdepth=cv2.CV_32S)  # (H + 1) x (W + 1) x C sums
    if ii.ndim == 2:
        ii = ii[:, :, None]
    a = np.arange(side)
    rs, re_ = (a * h) // side, ((a + 1) * h + side - 1) // side
    cs, ce = (a * w) // side, ((a + 1) * w + side - 1) // side
    sums = ii[re_][:, ce] - ii[rs][:, ce] - ii[re_][:, cs] + ii[rs][:, cs]
    counts = ((re_ - rs)[:, None] * (ce - cs)[None, :]).astype(np.float32)
    return sums.astype(np.float32) / counts[:, :, None]
