"""Vision: face detection, tracking with re-identification, facial emotion, speaker assignment
(the library code of the `faces` and `face_affect` stages in `emoguide.stages`), and frame export
with faces blurred (see docs/faces.md).

Detector backends are optional (the `faces` extra) and imported in their `load()`. Submodules are
imported on use, so `import emoguide.vision` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detection": "emoguide.vision.detect",
    "FaceDetector": "emoguide.vision.detect",
    "available_detectors": "emoguide.vision.detect",
    "get_detector": "emoguide.vision.detect",
    "register": "emoguide.vision.detect",
    "FaceTracker": "emoguide.vision.track",
    "TrackerParams": "emoguide.vision.track",
    "ShotCutDetector": "emoguide.vision.track",
    "FaceSettings": "emoguide.vision.faces_stage",
    "track_video": "emoguide.vision.faces_stage",
    "export_frame": "emoguide.vision.frames",
    "blur_boxes": "emoguide.vision.blur",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'emoguide.vision' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
