"""Finding input files: the folder walk and file identity shared by media and transcript ingest."""

from __future__ import annotations

from pathlib import Path
from typing import Container, Iterator


def walk_folder(folder: Path, suffixes: Container[str]) -> Iterator[Path]:
    """Files under `folder` (recursively, sorted) whose lower-case suffix is in `suffixes`.

    Hidden files and folders are skipped, and so are FIFOs, sockets and devices (never read:
    opening a FIFO blocks until someone writes to it).
    """
    for f in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in f.relative_to(folder).parts):
            continue
        if f.is_file() and f.suffix.lower() in suffixes:
            yield f


def file_key(p: Path) -> str:
    """One key per file however it is spelled (relative, absolute, through a link)."""
    try:
        return str(p.resolve())
    except OSError:  # pragma: no cover
        return str(p)
