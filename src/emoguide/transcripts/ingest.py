"""Corpus-free helpers for transcript import (the `ingest_transcript` stage is
`emoguide.stages.ingest_transcript`): which files a folder holds, and whether two paths are one
file. Reading a file is `emoguide.transcripts.readers.read_transcript_file`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from emoguide.files import file_key, walk_folder
from emoguide.transcripts.readers import DIRECTORY_EXTENSIONS


def expand_paths(paths: Iterable[str | Path] | str | Path) -> list[Path]:
    """Files as given, directories expanded (recursively) to their transcript files, in order.

    Hidden files and directories are skipped; a file named twice (however spelled) is kept once.
    """
    out: dict[str, Path] = {}  # resolved path -> the path as given first
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        p = Path(p)
        if p.is_dir():
            for f in walk_folder(p, DIRECTORY_EXTENSIONS):
                out.setdefault(file_key(f), f)
        else:
            out.setdefault(file_key(p), p)
    return list(out.values())


def same_file(a: str | Path | None, b: Path) -> bool:
    """Whether path `a` names the file `b` (after resolving links and `..`)."""
    if not a:
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:  # pragma: no cover
        return False
