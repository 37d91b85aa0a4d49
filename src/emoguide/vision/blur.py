"""Face anonymisation for exported frames and figures.

`blur_boxes` makes every given region unrecognisable: the region (grown by `grow` of its size on
every side, to take in hair, ears and chin) is first reduced to about `cells` blocks across
(area averaging: the detail is gone, not hidden), scaled back, then Gaussian-blurred with a sigma
of 1/`cells` of the region so no block edges remain. The result keeps only the rough colour of the
face; it does not depend on the image resolution.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from emoguide.vision.detect import resize_rgb

DEFAULT_GROW = 0.15
DEFAULT_CELLS = 6


def _gaussian(region: np.ndarray, sigma: float) -> np.ndarray:
    try:
        import cv2

        return cv2.GaussianBlur(region, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    except ImportError:  # pragma: no cover - the faces extra installs OpenCV
        from PIL import Image, ImageFilter

        return np.asarray(Image.fromarray(region).filter(ImageFilter.GaussianBlur(radius=sigma)))


def _upscale(small: np.ndarray, width: int, height: int) -> np.ndarray:
    try:
        import cv2

        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    except ImportError:  # pragma: no cover
        from PIL import Image

        return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def grow_box(box: Sequence[float], grow: float, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    gw, gh = (x2 - x1) * grow, (y2 - y1) * grow
    return (
        max(0, int(np.floor(x1 - gw))),
        max(0, int(np.floor(y1 - gh))),
        min(width, int(np.ceil(x2 + gw))),
        min(height, int(np.ceil(y2 + gh))),
    )


def blur_region(region: np.ndarray, cells: int = DEFAULT_CELLS) -> np.ndarray:
    h, w = region.shape[:2]
    if h < 2 or w < 2:
        return region
    side = max(h, w)
    sw = max(1, round(cells * w / side))
    sh = max(1, round(cells * h / side))
    small = resize_rgb(np.ascontiguousarray(region), sw, sh)
    out = _upscale(small, w, h)
    return _gaussian(out, max(1.0, side / cells))


def blur_boxes(
    image: np.ndarray,
    boxes: Iterable[Sequence[float]],
    *,
    grow: float = DEFAULT_GROW,
    cells: int = DEFAULT_CELLS,
) -> np.ndarray:
    """A copy of `image` (RGB uint8) with every box `(x1, y1, x2, y2)` anonymised."""
    out = np.array(image, copy=True)
    h, w = out.shape[:2]
    for box in boxes:
        x1, y1, x2, y2 = grow_box(box, grow, w, h)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        out[y1:y2, x1:x2] = blur_region(out[y1:y2, x1:x2], cells)
    return out


def high_frequency_energy(image: np.ndarray, box: Sequence[float] | None = None) -> float:
    """Mean squared Laplacian of the grey image (inside `box` if given): a sharpness measure used
    to check that blurring removed the detail."""
    grey = np.asarray(image, dtype=np.float64)
    if grey.ndim == 3:
        grey = grey @ np.array([0.299, 0.587, 0.114])
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        grey = grey[max(0, y1) : y2, max(0, x1) : x2]
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    lap = (
        -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    )
    return float(np.mean(lap**2))
