"""Shared test support for stages (lhotse-style): small real sessions and artifact snapshots.

Used by the project's conformance suite (tests/test_engine_conformance.py) and usable by anyone
adding a stage: build a tiny corpus, run the stage, and check the engine's contract (a second run
does nothing; `force` redoes it; a raising stage fails only its session; serial == pool; only the
declared artifacts change).
"""

from __future__ import annotations

import hashlib
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from emoguide.corpus.atomic import read_parquet
from emoguide.pipeline.stage import FILES


def demo_video() -> Path:
    return Path(str(resources.files("emoguide") / "data" / "demo" / "demo_session.mp4"))


def cut_clips(out_dir: str | Path, n: int = 2, seconds: float = 10.0, start: float = 0.0) -> list[Path]:
    """`n` clips of the bundled demo video, `seconds` long each (ffmpeg, stream copy is not
    frame-accurate, so the clips are re-encoded)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(n):
        dst = out_dir / f"clip{i}.mp4"
        t0 = start + i * seconds
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", f"{t0:.3f}", "-t", f"{seconds:.3f}",
             "-i", str(demo_video()), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(dst)],
            check=True,
        )
        clips.append(dst)
    return clips


def _digest(values: object) -> str:
    return hashlib.sha256(repr(values).encode()).hexdigest()[:16]


def column_digests(df: pd.DataFrame) -> dict[str, str]:
    out = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_float_dtype(s):
            vals = tuple(np.round(s.to_numpy(dtype=float, na_value=np.nan), 6).tolist())
        else:
            vals = tuple(s.astype(object).where(s.notna(), None).tolist())
        out[c] = _digest(vals)
    return out


def snapshot(corpus_root: str | Path) -> dict[str, str]:
    """Per session: a digest of every file artifact, and of every column of the parquet tables.

    Keys: "<session>/<artifact>" for files, "<session>/<artifact>#<column>" for table columns,
    "<session>/stages.json@<stage>" for each stage record's run id.
    """
    import json

    root = Path(corpus_root)
    out: dict[str, str] = {}
    for sdir in sorted((root / "sessions").iterdir()):
        if not sdir.is_dir():
            continue
        for art, name in FILES.items():
            p = sdir / name
            if not p.exists():
                continue
            if name.endswith(".parquet"):
                for c, d in column_digests(read_parquet(p)).items():
                    out[f"{sdir.name}/{art}#{c}"] = d
            elif art == "source":
                continue  # rewritten with the same content on every ingest
            else:
                out[f"{sdir.name}/{art}"] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        sj = sdir / "stages.json"
        if sj.exists():
            for stage, rec in (json.loads(sj.read_text()) or {}).items():
                out[f"{sdir.name}/stages.json@{stage}"] = str(rec.get("run_id"))
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    keys = set(before) | set(after)
    return {k for k in keys if before.get(k) != after.get(k)}


def allowed_keys(stage_cls, key: str) -> bool:
    """Whether snapshot key `key` is something `stage_cls` may change."""
    from emoguide.corpus.schema import BASE_COLUMNS

    _, _, rest = key.partition("/")
    if rest.startswith("stages.json@"):
        return rest.split("@", 1)[1] == stage_cls.name
    art, _, col = rest.partition("#")
    for w in stage_cls.writes:
        host, _, group = w.partition(":")
        if host != art:
            continue
        if not group:
            return True
        if col in stage_cls.columns.get(w, ()):
            return True
        if host == "utterances" and col == "session_id" and col in BASE_COLUMNS:
            return True
    return False


def frames_equal(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    """Assert two artifact tables are equal (floats within tolerance: thread counts differ)."""
    pd.testing.assert_frame_equal(
        a.reset_index(drop=True), b.reset_index(drop=True), check_exact=False, rtol=rtol, atol=atol,
        check_dtype=False,
    )
