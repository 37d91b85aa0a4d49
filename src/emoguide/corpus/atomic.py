"""Atomic artifact writes: write to a temporary file beside the target, fsync, then rename.

A run killed mid-write leaves the previous artifact (or none), never a half-written one that a
later run would trust.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_parquet(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """Read a parquet file through one open handle.

    `pd.read_parquet(path)` opens the file more than once (footer, then pages); when the parent
    replaces it in between (another stage's column group committed while a worker reads), the
    pages of the new file are read against the footer of the old one: "Page was smaller than
    expected". One handle pins one inode, so a reader sees the old file or the new, whole.
    """
    with open(path, "rb") as fh:
        return pd.read_parquet(fh, **kwargs)


def write_table(path: str | Path, df: pd.DataFrame) -> None:
    """Write by extension: .parquet, .jsonl, .csv or .tsv."""
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif suffix == ".jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        elif suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif suffix == ".tsv":
            df.to_csv(tmp, index=False, sep="\t")
        else:
            raise ValueError(f"{path}: unknown table format {suffix!r} (use .parquet, .jsonl, .csv, .tsv)")


def read_json(path: str | Path, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def parquet_shape(path: str | Path) -> tuple[int, set[str]]:
    """(rows, column names) from the footer of a parquet file; raises on a damaged file."""
    import pyarrow.parquet as pq

    with open(path, "rb") as fh:
        meta = pq.ParquetFile(fh).metadata
        return meta.num_rows, set(meta.schema.to_arrow_schema().names)


def check_artifact(path: str | Path) -> str | None:
    """Why the artifact at `path` cannot be trusted (unreadable, cut short), or None (also when
    it does not exist).

    Parquet: the footer must parse (a file cut short has none); JSON must parse; WAV: the header
    must parse and the file must hold the samples its header announces; SQLite: `PRAGMA
    quick_check` must say ok. Cheap: no table is read whole.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        if path.suffix == ".parquet":
            parquet_shape(path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".wav":
            import wave

            with wave.open(str(path), "rb") as w:
                need = w.getnframes() * w.getsampwidth() * w.getnchannels()
            size = path.stat().st_size
            if size < need + 44:
                return f"cut short ({size} bytes; its header announces {need + 44})"
        elif path.suffix in (".sqlite", ".db"):
            import sqlite3

            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                got = con.execute("PRAGMA quick_check").fetchone()
            finally:
                con.close()
            if not got or got[0] != "ok":
                return f"damaged (sqlite quick_check: {got[0] if got else 'no answer'})"
    except Exception as exc:  # any reader error means: do not trust it
        return f"unreadable ({type(exc).__name__}: {exc})"
    return None


def quarantine(path: str | Path) -> Path:
    """Move a damaged file aside as `<name>.damaged-<UTC time>` (nothing is lost); return where."""
    from datetime import datetime, timezone

    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while dest.exists():
        dest = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
        n += 1
    os.replace(path, dest)
    return dest
