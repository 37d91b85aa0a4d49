"""`stages.json` bookkeeping and resume.

Each stage of a session records a *fingerprint*: a hash of its own settings, the fingerprints of
the stages it reads from, and the content digests of the external files it reads. A stage is
current when its recorded fingerprint equals the one computed now, it finished without error, and
its outputs exist. Hashing upstream fingerprints (not the bytes of shared artifacts such as
`utterances.parquet`, which later stages add columns to) keeps a later stage's write from making an
earlier stage look stale.
"""

from __future__ import annotations

import hashlib
import platform
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from emoguide.config import settings_hash
from emoguide.corpus.atomic import read_json, write_json

BASE_PACKAGES = ("emoguide", "pandas", "pyarrow", "numpy")


def package_versions(names: tuple[str, ...] | list[str] = BASE_PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


class StageLog:
    """The per-session `stages.json` file.

    A damaged file (cut short, not JSON, not an object) never breaks the corpus: `load()` reads it
    as empty, so every stage of that session is stale, and says why in `damaged`; the first write
    (`put`, `drop` or `quarantine`) moves it aside to `stages.json.damaged-<UTC time>` first, so
    nothing is lost.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        #: Why the file on disk could not be read (None when it could, or there is none).
        self.damaged: str | None = None

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            data = read_json(self.path, default={}) or {}
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                raise ValueError("not an object of stage records")
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            self.damaged = f"{self.path}: damaged ({type(exc).__name__}: {exc})"
            return {}
        self.damaged = None
        return data

    def quarantine(self) -> str | None:
        """Move a damaged file aside; return a message naming both files (None if it was fine)."""
        if not self.path.exists():
            return None
        self.load()
        if self.damaged is None:
            return None
        from emoguide.corpus.atomic import quarantine

        dest = quarantine(self.path)
        msg = f"{self.damaged}; moved aside to {dest.name}: this session's stages are recomputed"
        self.damaged = None
        return msg

    def get(self, stage: str) -> dict[str, Any] | None:
        return self.load().get(stage)

    def fingerprint(self, stage: str) -> str | None:
        """What downstream stages hash: the fingerprint plus the id of the run that wrote it, so a
        forced rerun of an upstream stage (which may rewrite a shared artifact) makes its
        downstream stages stale even when its own inputs did not change."""
        rec = self.get(stage)
        if rec and rec.get("status") == "done":
            return f"{rec.get('fingerprint')}@{rec.get('run_id', '')}"
        return None

    def put(self, stage: str, record: dict[str, Any]) -> None:
        data = self.load()
        if self.damaged:
            self.quarantine()
        data[stage] = record
        write_json(self.path, data)

    def drop(self, stage: str) -> None:
        data = self.load()
        if self.damaged:
            self.quarantine()
            return
        if stage in data:
            del data[stage]
            write_json(self.path, data)


@dataclass
class StageRun:
    """One attempt at one stage of one session. Use `current` to decide, then `with run:`."""

    log: StageLog
    name: str
    settings: Any
    upstream: dict[str, str | None]
    inputs: dict[str, str]
    outputs: list[Path]
    warnings: list[str] = field(default_factory=list)
    backends: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=package_versions)
    _t0: float = 0.0

    @property
    def fingerprint(self) -> str:
        return settings_hash(
            {
                "stage": self.name,
                "settings": settings_hash(self.settings),
                "upstream": self.upstream,
                "inputs": self.inputs,
            }
        )

    @property
    def current(self) -> bool:
        rec = self.log.get(self.name)
        if not rec or rec.get("status") != "done" or rec.get("fingerprint") != self.fingerprint:
            return False
        return all(Path(p).exists() for p in self.outputs)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def __enter__(self) -> "StageRun":
        self._t0 = time.perf_counter()
        self._started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        record = {
            "status": "done" if exc is None else "failed",
            "run_id": uuid.uuid4().hex[:12],
            "fingerprint": self.fingerprint,
            "settings_hash": settings_hash(self.settings),
            "settings": self.settings.model_dump(mode="json")
            if hasattr(self.settings, "model_dump")
            else self.settings,
            "upstream": self.upstream,
            "inputs": self.inputs,
            "outputs": [str(Path(p).name) for p in self.outputs],
            "backends": self.backends,
            "versions": self.versions,
            "started": self._started,
            "seconds": round(time.perf_counter() - self._t0, 4),
            "warnings": self.warnings,
            **self.extra,
        }
        if exc is not None:
            record["error"] = f"{type(exc).__name__}: {exc}"
        self.log.put(self.name, record)
        return False  # never swallow the exception: the caller decides how a batch goes on
