"""Face tracking: a SORT-style tracker (Bewley et al. 2016) with re-identification and shot cuts.

Written for emoguide (not derived from the SORT reference code). Per sampled frame:

1. **Shot cut?** `ShotCutDetector` compares the frame's hue/saturation/value histogram with the
   previous frame's. On a cut, every live track's motion model is dropped (its Kalman state is
   no longer trusted: the camera moved), but its identity stays: such a track is *unanchored* and
   can be matched again by appearance alone.
2. **Predict** every live track's box with a constant-velocity Kalman filter on
   ``(cx, cy, s, r)`` (centre, area, aspect ratio w/h) plus the rates of cx, cy and s. Time steps are
   the real gaps between sampled frames in seconds, so the filter behaves the same at 5 or 30 fps
   and across dropped frames.
3. **Associate** detections to anchored tracks by IoU with the Hungarian method
   (``scipy.optimize.linear_sum_assignment``, pairs below ``iou_threshold`` rejected); then the
   leftovers by appearance: unanchored tracks by appearance alone, anchored tracks that lost IoU
   overlap (fast motion at low fps) by appearance plus a distance gate.
4. **Birth and death**: an unmatched detection starts a tentative track; it is confirmed after
   ``min_hits`` consecutive hits (it is dropped at its first miss before that). A confirmed track
   that has not been matched for more than ``max_age_s`` seconds ends.
5. **Re-identification**: an ended track goes to a pool for ``reid_max_gap_s`` seconds. When a
   new track is confirmed it takes the id of the best-matching pooled track, if the appearance
   similarity is at least ``reid_threshold``, or at least ``reid_weak_threshold`` and the face came
   back near where it left (within ``reid_position_s`` seconds, no cut since, centre within
   ``reid_max_shift`` box sizes, similar size). A person who looks away, leaves the frame or is
   cut away from and comes back keeps one id.

**Appearance descriptor** (`appearance`): three parts, each unit-normalised,

- *context*: a hue x saturation x value histogram (12 x 4 x 4 bins) of the head-and-shoulders
  region (the box widened by 0.6 of its width each side, 0.3 of its height up, 1.2 down): hair,
  clothing, and the background behind the person, which in a session recorded from fixed cameras
  is what tells the therapist from the patient most reliably;
- *face colour*: a hue x saturation histogram (12 x 4) of the face box widened by 10%;
- *thumbnail*: a 12 x 12 grey thumbnail of the box, rank-equalised and mean-removed (coarse face
  layout; robust to exposure, but not to large head turns, hence its small weight).

Histograms are square-rooted, so a dot product of two is their Bhattacharyya coefficient.
Similarity = ``0.65 * context + 0.20 * face + 0.15 * max(thumb, 0)``, in [0, 1]. On the test
clips the same person over 20 s of head turns stays >= 0.8, different people in different
recordings score ~0.5; people side by side in one picture share context and score up to ~0.9
(they are never confused by re-id because a live track's id is never handed out). It is cheap
(2-4 ms per face, numpy only) and needs no model weights; it is not a face-recognition
embedding, and two people dressed alike in the same light will look alike to it.
A track's descriptor is a running mean over its detections (weight ``appearance_momentum``).

Ids are integers from 0, stable within one run over one video. A detection on a tentative track
that is never confirmed gets id -1; a tentative track that is confirmed later gets its earlier
detections labelled too (`FaceTracker.resolve`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from pydantic import BaseModel, Field

from emoguide.vision.detect import Box, Detection


class TrackerParams(BaseModel):
    """Tunable thresholds of the tracker (defaults chosen on the clips in ../shared/data/media)."""

    iou_threshold: float = Field(0.25, ge=0.0, le=1.0, description="lowest IoU for a match")
    min_hits: int = Field(3, ge=1, description="consecutive hits before a track is confirmed")
    max_age_s: float = Field(1.0, ge=0.0, description="seconds unmatched before a track ends")
    reid_max_gap_s: float = Field(30.0, ge=0.0, description="ended tracks can be re-identified this long")
    reid_threshold: float = Field(0.8, ge=0.0, le=1.0, description="appearance similarity for re-id")
    reid_weak_threshold: float = Field(
        0.6, ge=0.0, le=1.0, description="similarity for re-id when position also matches"
    )
    reid_position_s: float = Field(5.0, ge=0.0, description="position counts for re-id within this gap")
    reid_max_shift: float = Field(1.5, ge=0.0, description="position gate, in box sizes")
    appearance_threshold: float = Field(
        0.75, ge=0.0, le=1.0, description="similarity to match a live track without IoU overlap"
    )
    appearance_momentum: float = Field(0.9, ge=0.0, lt=1.0, description="running-mean weight")
    cut_threshold: float = Field(
        0.55, ge=0.0, le=1.0, description="Bhattacharyya distance of frame histograms that is a cut"
    )
    detect_cuts: bool = True


# ----------------------------------------------------------------------------- geometry


def iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(boxes_a: Sequence[Box], boxes_b: Sequence[Box]) -> np.ndarray:
    if not len(boxes_a) or not len(boxes_b):
        return np.zeros((len(boxes_a), len(boxes_b)))
    a = np.asarray(boxes_a, dtype=float)[:, None, :]
    b = np.asarray(boxes_b, dtype=float)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def box_to_z(box: Box) -> np.ndarray:
    """(x1, y1, x2, y2) -> (cx, cy, s = area, r = w / h)."""
    w = max(box[2] - box[0], 1e-3)
    h = max(box[3] - box[1], 1e-3)
    return np.array([box[0] + w / 2.0, box[1] + h / 2.0, w * h, w / h])


def z_to_box(z: np.ndarray) -> Box:
    s = max(float(z[2]), 1e-6)
    r = max(float(z[3]), 1e-3)
    w = math.sqrt(s * r)
    h = s / w
    return (float(z[0] - w / 2), float(z[1] - h / 2), float(z[0] + w / 2), float(z[1] + h / 2))


def _assign(cost: np.ndarray, max_cost: float) -> list[tuple[int, int]]:
    """Hungarian assignment; pairs costing more than max_cost are dropped."""
    if cost.size == 0:
        return []
    if cost.shape == (1, 1):  # the common one-face case needs no solver
        return [(0, 0)] if cost[0, 0] <= max_cost else []
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] <= max_cost]


# ----------------------------------------------------------------------------- Kalman filter


class BoxKalman:
    """Constant-velocity Kalman filter on (cx, cy, s, r) with velocities of cx, cy, s.

    State x = [cx, cy, s, r, vcx, vcy, vs] (velocities per second). Noise scales with the face's
    size (a 40 px face jitters less in pixels than a 400 px one), so one set of constants works at
    any resolution. Plain numpy: the filter is 7-dimensional and time steps vary, which is simpler
    to write out than to bend a general library to.
    """

    # measurement noise: std of cx, cy as a fraction of the box side; of s as a fraction of s
    MEAS_POS = 0.05
    MEAS_AREA = 0.10
    MEAS_RATIO = 0.05
    # process noise per sqrt(second): how fast the velocity may change
    PROC_VEL = 1.0  # box sides per second, per sqrt(s)
    PROC_AREA_VEL = 1.0  # fractions of s per second, per sqrt(s)
    PROC_RATIO = 0.05

    def __init__(self, box: Box):
        z = box_to_z(box)
        self.x = np.zeros(7)
        self.x[:4] = z
        side = math.sqrt(z[2])
        self.P = np.diag(
            [
                (self.MEAS_POS * side) ** 2,
                (self.MEAS_POS * side) ** 2,
                (self.MEAS_AREA * z[2]) ** 2,
                (self.MEAS_RATIO * z[3]) ** 2,
                (2.0 * side) ** 2,  # unknown velocity at birth: up to ~2 box sides a second
                (2.0 * side) ** 2,
                (1.0 * z[2]) ** 2,
            ]
        )
        self.H = np.zeros((4, 7))
        self.H[0, 0] = self.H[1, 1] = self.H[2, 2] = self.H[3, 3] = 1.0

    def predict(self, dt: float) -> Box:
        dt = max(0.0, float(dt))
        if dt > 0:
            F = np.eye(7)
            F[0, 4] = F[1, 5] = F[2, 6] = dt
            if self.x[2] + self.x[6] * dt <= 0:  # the area may not shrink through zero
                self.x[6] = 0.0
            side = math.sqrt(max(self.x[2], 1.0))
            qv = (self.PROC_VEL * side) ** 2 * dt
            qa = (self.PROC_AREA_VEL * self.x[2]) ** 2 * dt
            qr = (self.PROC_RATIO * self.x[3]) ** 2 * dt
            # velocity random walk, integrated into position
            Q = np.zeros((7, 7))
            for p, v, q in ((0, 4, qv), (1, 5, qv), (2, 6, qa)):
                Q[p, p] = q * dt * dt / 3.0
                Q[p, v] = Q[v, p] = q * dt / 2.0
                Q[v, v] = q
            Q[3, 3] = qr
            self.x = F @ self.x
            self.P = F @ self.P @ F.T + Q
        return self.box

    def update(self, box: Box) -> None:
        z = box_to_z(box)
        side = math.sqrt(z[2])
        R = np.diag(
            [
                (self.MEAS_POS * side) ** 2,
                (self.MEAS_POS * side) ** 2,
                (self.MEAS_AREA * z[2]) ** 2,
                (self.MEAS_RATIO * z[3]) ** 2,
            ]
        )
        y = z - self.H @ self.x
        S = self.H @ self.P @ self.H.T + R
        K = self.P @ self.H.T @ np.linalg.inv(S)
        self.x = self.x + K @ y
        self.P = (np.eye(7) - K @ self.H) @ self.P
        self.x[2] = max(self.x[2], 1.0)
        self.x[3] = max(self.x[3], 1e-2)

    @property
    def box(self) -> Box:
        return z_to_box(self.x[:4])


# ----------------------------------------------------------------------------- appearance

FACE_BINS = (12, 4)  # hue x saturation, face box widened by 20%
CONTEXT_BINS = (12, 4, 4)  # hue x saturation x value, head-and-shoulders region
THUMB = 12  # grey thumbnail side
WEIGHTS = (0.65, 0.20, 0.15)  # context, face colour, thumbnail
_N_FACE = FACE_BINS[0] * FACE_BINS[1]
_N_CTX = CONTEXT_BINS[0] * CONTEXT_BINS[1] * CONTEXT_BINS[2]


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """H in [0, 1), S, V in [0, 1]; numpy only."""
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    # the same numbers as x.max(-1) / x.min(-1), without numpy's slow reduction over a size-3 axis
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    d = mx - mn
    s = np.where(mx > 0, d / np.maximum(mx, 1e-6), 0.0)
    dd = np.maximum(d, 1e-6)
    h = np.where(
        mx == r, ((g - b) / dd) % 6.0, np.where(mx == g, (b - r) / dd + 2.0, (r - g) / dd + 4.0)
    )
    h = np.where(d > 0, h / 6.0, 0.0)
    return np.stack([h, s, mx], -1)


def _crop(image: np.ndarray, box: Box, left=0.0, top=0.0, right=0.0, bottom=0.0) -> np.ndarray:
    """The box grown by the given fractions of its width (left/right) and height (top/bottom)."""
    h, w = image.shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    x1 = int(max(0, math.floor(box[0] - left * bw)))
    y1 = int(max(0, math.floor(box[1] - top * bh)))
    x2 = int(min(w, math.ceil(box[2] + right * bw)))
    y2 = int(min(h, math.ceil(box[3] + bottom * bh)))
    return image[y1:y2, x1:x2]


def _shrink(img: np.ndarray, size: int) -> np.ndarray:
    """Block-average `img` (H x W [x C]) to at most size x size (never enlarges), numpy only."""
    step = max(1, min(img.shape[:2]) // (2 * size))
    if step > 1:  # pixel-skip big crops first: block means of 2+ samples a side are plenty here
        img = img[::step, ::step]
    h, w = img.shape[:2]
    ny, nx = min(size, h), min(size, w)
    ys = np.linspace(0, h, ny + 1).astype(int)
    xs = np.linspace(0, w, nx + 1).astype(int)
    ii = _integral(img)
    y1, y2 = ys[:-1], ys[1:]
    x1, x2 = xs[:-1], xs[1:]
    s = ii[np.ix_(y2, x2)] - ii[np.ix_(y1, x2)] - ii[np.ix_(y2, x1)] + ii[np.ix_(y1, x1)]
    area = (y2 - y1)[:, None] * (x2 - x1)[None, :]
    return s / np.maximum(area, 1)[(...,) + (None,) * (img.ndim - 2)]


# Below this many (pixels x 255), every partial sum of a uint8 image is an integer < 2 ** 24, so
# float32 cumulative sums are exact and an integer integral image gives the same numbers.
_EXACT_F32 = 2**24


def _integral(img: np.ndarray) -> np.ndarray:
    """Zero-padded integral image of `img` as float32: ``cumsum(0).cumsum(1)`` in float32.

    For a uint8 image small enough that float32 sums are exact, OpenCV's integer `cv2.integral`
    computes the same values several times faster; otherwise (or without OpenCV) the float32
    cumulative sums themselves."""
    if img.dtype == np.uint8 and img.shape[0] * img.shape[1] * 255 < _EXACT_F32 and img.ndim in (2, 3):
        try:
            import cv2
        except ImportError:  # pragma: no cover - the faces extra installs OpenCV
            cv2 = None
        if cv2 is not None and (img.ndim == 2 or img.shape[2] <= 4):
            ii = cv2.integral(np.ascontiguousarray(img), sdepth=cv2.CV_32S)
            if img.ndim == 3 and ii.ndim == 2:  # a one-channel image comes back 2-D
                ii = ii[:, :, None]
            return ii.astype(np.float32)
    f = img.astype(np.float32)
    return np.pad(f.cumsum(0).cumsum(1), ((1, 0), (1, 0)) + ((0, 0),) * (f.ndim - 2))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _colour_hist(region: np.ndarray, bins: tuple[int, ...]) -> np.ndarray:
    hsv = _rgb_to_hsv(_shrink(region, 48)).reshape(-1, 3)[:, : len(bins)]
    index = np.zeros(len(hsv), dtype=np.int64)
    for k, n in enumerate(bins):
        index = index * n + np.minimum((hsv[:, k] * n).astype(np.int64), n - 1)
    hist = np.bincount(index, minlength=int(np.prod(bins))).astype(np.float64)
    # square root: the dot product of two unit vectors is then the Bhattacharyya coefficient
    return _unit(np.sqrt(hist.ravel() / max(hist.sum(), 1.0)))


def appearance(image: np.ndarray, box: Box) -> np.ndarray | None:
    """The re-id descriptor of one face (see the module docstring); None for a degenerate crop."""
    face = _crop(image, box, 0.1, 0.1, 0.1, 0.1)
    tight = _crop(image, box)
    if min(tight.shape[:2]) < 4:
        return None
    context = _crop(image, box, left=0.6, top=0.3, right=0.6, bottom=1.2)
    thumb = (_shrink(tight, THUMB) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).ravel()
    # rank-equalised: exposure and contrast changes between shots barely change it
    thumb = np.argsort(np.argsort(thumb)).astype(np.float32)
    thumb = _unit(thumb - thumb.mean())
    return np.concatenate(
        [_colour_hist(context, CONTEXT_BINS), _colour_hist(face, FACE_BINS), thumb]
    ).astype(np.float32)


def similarity(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Appearance similarity in [0, 1] of two descriptors (0 when either is missing)."""
    if a is None or b is None:
        return 0.0
    cuts = (0, _N_CTX, _N_CTX + _N_FACE, len(a))
    total = 0.0
    for w, lo, hi in zip(WEIGHTS, cuts[:-1], cuts[1:]):
        total += w * max(0.0, float(_unit(a[lo:hi]) @ _unit(b[lo:hi])))
    return total


# ----------------------------------------------------------------------------- shot cuts


class ShotCutDetector:
    """A shot cut is a frame whose HSV histogram (8 x 4 x 4 bins, on a 64 px-wide thumbnail) is
    farther than `threshold` (Bhattacharyya distance, 0 = same, 1 = disjoint) from the previous
    sampled frame's. At 5 fps a fast pan can also trip it; that only costs a re-match by
    appearance, never an identity."""

    def __init__(self, threshold: float = 0.55):
        self.threshold = threshold
        self._prev: np.ndarray | None = None
        self.last_distance = 0.0

    @staticmethod
    def signature(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        step = max(1, w // 64)
        small = image[::step, ::step]
        hsv = _rgb_to_hsv(small).reshape(-1, 3)
        # np.histogramdd(hsv, bins=(8, 4, 4), range=[(0, 1)] * 3), as a bincount (same counts:
        # the bin edges k / n are exact in binary, and 1.0 falls in the last bin)
        index = np.zeros(len(hsv), dtype=np.int64)
        for k, n in enumerate((8, 4, 4)):
            index = index * n + np.clip((hsv[:, k] * n).astype(np.int64), 0, n - 1)
        hist = np.bincount(index, minlength=128).astype(np.float64)
        return hist / max(hist.sum(), 1.0)

    def __call__(self, image: np.ndarray) -> bool:
        sig = self.signature(image)
        prev, self._prev = self._prev, sig
        if prev is None:
            self.last_distance = 0.0
            return False
        bc = float(np.sum(np.sqrt(prev * sig)))
        self.last_distance = math.sqrt(max(0.0, 1.0 - bc))
        return self.last_distance > self.threshold

    def reset(self) -> None:
        self._prev = None


# ----------------------------------------------------------------------------- tracks


@dataclass
class Track:
    key: int  # internal, unique per track object (tentative tracks too)
    kf: BoxKalman
    first_t: float
    last_t: float  # time of the last matched detection
    last_box: Box
    hits: int = 1
    confirmed: bool = False
    track_id: int = -1  # public id once confirmed (re-used on re-identification)
    anchored: bool = True  # False after a shot cut until matched again
    embedding: np.ndarray | None = None
    reidentified: bool = False
    epoch: int = 0  # the shot index of the last matched detection

    def add_embedding(self, emb: np.ndarray | None, momentum: float) -> None:
        if emb is None:
            return
        if self.embedding is None:
            self.embedding = emb.copy()
        else:
            self.embedding = momentum * self.embedding + (1 - momentum) * emb


@dataclass
class LostTrack:
    track_id: int
    last_t: float
    last_box: Box
    embedding: np.ndarray | None
    cut_epoch: int  # the shot index it ended in


@dataclass
class Assignment:
    """Which track a detection was given, in `FaceTracker.update`'s output order."""

    detection: Detection
    key: int  # internal track key: use `FaceTracker.resolve(key)` at the end for the final id
    track_id: int  # the public id now (-1 while the track is tentative)
    similarity: float | None = None  # appearance similarity used for this match, if any


@dataclass
class TrackerStats:
    frames: int = 0
    cuts: list[float] = field(default_factory=list)
    reidentified: int = 0
    confirmed: int = 0


class FaceTracker:
    """SORT-style multi-face tracker with re-identification; see the module docstring.

    ``update(t, detections, image)`` takes the detections of the frame at time ``t`` (seconds,
    increasing) and the RGB frame (for appearance and cut detection; may be None, then only
    motion/IoU is used) and returns one `Assignment` per detection.
    """

    def __init__(self, params: TrackerParams | None = None, **overrides):
        p = params or TrackerParams()
        if overrides:
            p = p.model_copy(update=overrides)
        self.p = p
        self.cuts = ShotCutDetector(p.cut_threshold)
        self.tracks: list[Track] = []
        self.lost: list[LostTrack] = []
        self.stats = TrackerStats()
        self._next_key = 0
        self._next_id = 0
        self._key_to_id: dict[int, int] = {}
        self._t: float | None = None
        self._epoch = 0

    # -- public
    def resolve(self, key: int) -> int:
        """The final public id of the track with internal `key` (-1: never confirmed)."""
        return self._key_to_id.get(key, -1)

    def update(
        self, t: float, detections: Sequence[Detection], image: np.ndarray | None = None
    ) -> list[Assignment]:
        p = self.p
        t = float(t)
        dt = 0.0 if self._t is None else max(0.0, t - self._t)
        self._t = t
        self.stats.frames += 1

        cut = bool(image is not None and p.detect_cuts and self.cuts(image))
        if cut:
            self.stats.cuts.append(t)
            self._epoch += 1
            for tr in self.tracks:
                tr.anchored = False
            # tentative tracks cannot be re-matched by appearance reliably: drop them
            self.tracks = [tr for tr in self.tracks if tr.confirmed]

        for tr in self.tracks:
            if tr.anchored:
                tr.kf.predict(dt)

        embs = [appearance(image, d.box) if image is not None else None for d in detections]
        det_boxes = [d.box for d in detections]
        matched: dict[int, tuple[Track, float | None]] = {}  # det index -> (track, similarity)

        # 1. IoU with anchored tracks
        anchored = [tr for tr in self.tracks if tr.anchored]
        if anchored and detections:
            m = iou_matrix([tr.kf.box for tr in anchored], det_boxes)
            for r, c in _assign(1.0 - m, 1.0 - p.iou_threshold):
                if m[r, c] >= p.iou_threshold:
                    matched[c] = (anchored[r], None)

        # 2. appearance for the rest (unanchored: anywhere; anchored: near the prediction)
        used = {id(tr) for tr, _ in matched.values()}
        rest_tracks = [tr for tr in self.tracks if id(tr) not in used and tr.confirmed]
        rest_dets = [i for i in range(len(detections)) if i not in matched]
        if rest_tracks and rest_dets and image is not None:
            cost = np.full((len(rest_tracks), len(rest_dets)), 2.0)
            sims = np.zeros_like(cost)
            for a, tr in enumerate(rest_tracks):
                for b, i in enumerate(rest_dets):
                    sim = similarity(tr.embedding, embs[i])
                    sims[a, b] = sim
                    if sim < p.appearance_threshold:
                        continue
                    if tr.anchored and not self._near(tr.kf.box, det_boxes[i], p.reid_max_shift):
                        continue
                    cost[a, b] = 1.0 - sim
            for a, b in _assign(cost, 1.0):
                matched[rest_dets[b]] = (rest_tracks[a], float(sims[a, b]))

        # 3. update matched tracks
        for i, (tr, _) in matched.items():
            if not tr.anchored:
                tr.kf = BoxKalman(det_boxes[i])
                tr.anchored = True
            else:
                tr.kf.update(det_boxes[i])
            tr.hits += 1
            tr.last_t = t
            tr.last_box = det_boxes[i]
            tr.epoch = self._epoch
            tr.add_embedding(embs[i], p.appearance_momentum)

        # 4. tentative tracks that missed die; confirmed tracks past max_age end
        survivors = []
        for tr in self.tracks:
            missed = tr.last_t < t
            if not tr.confirmed and missed:
                continue
            if tr.confirmed and t - tr.last_t > p.max_age_s:
                self._end(tr)
                continue
            survivors.append(tr)
        self.tracks = survivors

        # 5. births
        for i in range(len(detections)):
            if i in matched:
                continue
            tr = Track(
                key=self._new_key(),
                kf=BoxKalman(det_boxes[i]),
                first_t=t,
                last_t=t,
                last_box=det_boxes[i],
                epoch=self._epoch,
            )
            tr.add_embedding(embs[i], 0.0)
            self.tracks.append(tr)
            matched[i] = (tr, None)

        # 6. confirmations (with re-identification against ended tracks)
        for tr in self.tracks:
            if not tr.confirmed and tr.hits >= p.min_hits:
                self._confirm(tr, t)

        self._expire_lost(t)
        return [
            Assignment(d, matched[i][0].key, matched[i][0].track_id, matched[i][1])
            for i, d in enumerate(detections)
        ]

    def finish(self) -> None:
        """End every live track (at the end of a video)."""
        for tr in self.tracks:
            if tr.confirmed:
                self._end(tr)
        self.tracks = []

    @property
    def n_ids(self) -> int:
        return self._next_id

    # -- internals
    def _new_key(self) -> int:
        self._next_key += 1
        return self._next_key

    @staticmethod
    def _near(a: Box, b: Box, max_shift: float) -> bool:
        za, zb = box_to_z(a), box_to_z(b)
        size = math.sqrt(max(za[2], zb[2]))
        if math.hypot(za[0] - zb[0], za[1] - zb[1]) > max_shift * size:
            return False
        ratio = za[2] / max(zb[2], 1e-6)
        return 0.5 <= ratio <= 2.0

    def _confirm(self, tr: Track, t: float) -> None:
        p = self.p
        live_ids = {x.track_id for x in self.tracks if x.confirmed}
        best, best_sim = None, -1.0
        for lost in self.lost:
            if lost.track_id in live_ids or t - lost.last_t > p.reid_max_gap_s:
                continue
            sim = similarity(lost.embedding, tr.embedding)
            ok = sim >= p.reid_threshold
            if (
                not ok
                and sim >= p.reid_weak_threshold
                and lost.cut_epoch == self._epoch
                and t - lost.last_t <= p.reid_position_s
                and self._near(lost.last_box, tr.last_box, p.reid_max_shift)
            ):
                ok = True
            if ok and sim > best_sim:
                best, best_sim = lost, sim
        if best is not None:
            self.lost.remove(best)
            tr.track_id = best.track_id
            tr.reidentified = True
            if tr.embedding is not None and best.embedding is not None:
                tr.embedding = 0.5 * (tr.embedding + best.embedding)
            self.stats.reidentified += 1
        else:
            tr.track_id = self._next_id
            self._next_id += 1
        tr.confirmed = True
        self.stats.confirmed += 1
        self._key_to_id[tr.key] = tr.track_id

    def _end(self, tr: Track) -> None:
        self.lost.append(LostTrack(tr.track_id, tr.last_t, tr.last_box, tr.embedding, tr.epoch))

    def _expire_lost(self, t: float) -> None:
        self.lost = [x for x in self.lost if t - x.last_t <= self.p.reid_max_gap_s]
