"""Face crops kept by the `faces` stage so `face_affect` need not decode the video again.

While `faces_stage.track_video` has a frame decoded, `CropWriter.add` turns each detection into
what the face-emotion backend will need from it (`FaceEmotion.prepare_crop` of the crop
`align.model_crop` cuts: for the default `fer` backend, the 64 x 64 grey crop it feeds its model,
aligned on the eyes and mouth where the detector gave landmarks, else the box crop; `crop_mode`
per row says which) plus the 24 x 24 grey lower-half patch the
speaker assignment measures motion on (`speakers.lower_half_patch`), and streams them to a
parquet file, one row per faces.parquet row (`row` is the position in that table). The file's
schema metadata holds the crop spec (`FaceEmotion.crop_spec`: kind, size, margin, align); `face_affect`
uses the file only when its backend's spec is the same, so the predictions are exactly those of
the decoding path (`face_affect_stage.predict_faces`), which stays the reference and the
fallback.

About 4.7 kB per detection (a 10-minute single-face session at 5 fps: ~13 MB).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from emoguide.vision.align import template_named, model_crop
from emoguide.vision.speakers import lower_half_patch_u8

SPEC_KEY = b"emoguide.face_crops"
FLUSH_ROWS = 256
PATCH = 24  # speakers.lower_half_patch's default size


def _schema(meta: dict[str, Any]):
    import pyarrow as pa

    return pa.schema(
        [("row", pa.int64()), ("crop", pa.binary()), ("crop_shape", pa.string()), ("patch", pa.binary()),
         ("crop_mode", pa.string())],
        metadata={SPEC_KEY: json.dumps(meta, sort_keys=True).encode()},
    )


class CropWriter:
    """Streams prepared crops to `path` (parquet) in blocks of `FLUSH_ROWS`; `close()` finishes it.

    `prepare`: crop (RGB uint8, square: aligned on the template `spec["align"]` names where the
    landmarks allow, else `spec["margin"]` around the box; `"align": "box"` or no `align`: box
    crops only) -> uint8 array.
    """

    def __init__(self, path: str | Path, spec: dict[str, Any], prepare: Callable[[np.ndarray], np.ndarray]):
        self.path = Path(path)
        self.spec = dict(spec)
        self.margin = float(spec.get("margin", 0.0))
        self.prepare = prepare
        self.template = template_named(self.spec.get("align"))
        self.n = 0
        self._rows: list[int] = []
        self._crops: list[bytes] = []
        self._shapes: list[str] = []
        self._patches: list[bytes | None] = []
        self._modes: list[str] = []
        self._writer = None

    def add(
        self,
        row: int,
        image: np.ndarray,
        box: Sequence[float],
        landmarks: Any = None,
        detector: str | None = None,
    ) -> str:
        """One detection: `box` and `landmarks` as faces.parquet stores them (float32 box; the
        JSON text of the rounded landmarks, or None), in `image`'s pixels. Returns the crop mode."""
        box = [float(np.float32(v)) for v in box]
        crop, mode = model_crop(image, box, self.margin, self.template, landmarks, detector)
        arr = np.ascontiguousarray(self.prepare(crop), dtype=np.uint8)
        patch = lower_half_patch_u8(image, tuple(box), PATCH)
        self._rows.append(int(row))
        self._crops.append(arr.tobytes())
        self._shapes.append("x".join(str(d) for d in arr.shape))
        self._patches.append(None if patch is None else np.ascontiguousarray(patch).tobytes())
        self._modes.append(mode)
        self.n += 1
        if len(self._rows) >= FLUSH_ROWS:
            self._flush()
        return mode

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(str(self.path), _schema(self.spec))
        if not self._rows:
            return
        table = pa.table(
            {"row": self._rows, "crop": self._crops, "crop_shape": self._shapes, "patch": self._patches,
             "crop_mode": self._modes},
            schema=self._writer.schema,
        )
        self._writer.write_table(table)
        self._rows, self._crops, self._shapes, self._patches, self._modes = [], [], [], [], []

    def close(self) -> Path:
        """Finish the file (one row per `add`; `face_affect` checks that count against the faces
        table's length)."""
        self._flush()  # opens the file if nothing was flushed yet (an empty table is a valid file)
        self._writer.close()
        self._writer = None
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.path.unlink(missing_ok=True)


class FaceCrops:
    """A face_crops file read back: `spec`, and per faces row its prepared crop, patch and crop
    mode ("aligned" | "box")."""

    def __init__(
        self,
        spec: dict[str, Any],
        crops: dict[int, np.ndarray],
        patches: dict[int, np.ndarray | None],
        modes: dict[int, str] | None = None,
    ):
        self.spec = spec
        self.n = len(crops)
        self.crops = crops
        self.patches = patches
        self.modes = modes if modes is not None else {r: "box" for r in crops}

    def matches(self, spec: dict[str, Any] | None) -> bool:
        if spec is None:
            return False
        return dict(self.spec) == dict(spec)


def read_crops(path: str | Path) -> FaceCrops:
    """Read a face_crops parquet file (raises on a damaged one: callers then decode instead)."""
    import pyarrow.parquet as pq

    with open(path, "rb") as fh:
        table = pq.read_table(fh)
    meta = json.loads((table.schema.metadata or {}).get(SPEC_KEY, b"{}"))
    rows = table.column("row").to_pylist()
    crops_b = table.column("crop").to_pylist()
    shapes = table.column("crop_shape").to_pylist()
    patches_b = table.column("patch").to_pylist()
    modes_b = table.column("crop_mode").to_pylist() if "crop_mode" in table.column_names else ["box"] * len(rows)
    crops: dict[int, np.ndarray] = {}
    patches: dict[int, np.ndarray | None] = {}
    modes: dict[int, str] = {}
    for r, c, shp, p, m in zip(rows, crops_b, shapes, patches_b, modes_b):
        dims = tuple(int(d) for d in shp.split("x"))
        crops[int(r)] = np.frombuffer(c, dtype=np.uint8).reshape(dims)
        patches[int(r)] = None if p is None else np.frombuffer(p, dtype=np.uint8).reshape(PATCH, PATCH)
        modes[int(r)] = str(m or "box")
    return FaceCrops(meta, crops, patches, modes)
