"""The stage interface (docs/architecture.md).

A stage is a small class, one module each under `emoguide.stages`, that declares what it is and
does one session's work. Everything else (which sessions, resume, errors, progress, writing,
parallelism) belongs to the runner (`emoguide.pipeline.runner`).

A stage instance holds only its settings, so it pickles to a worker process or a Ray actor;
`setup()` loads models there, once per worker; `run()` reads through a `SessionView` and returns a
`Result` that the parent commits. A stage never writes into the corpus itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import pandas as pd
from pydantic import BaseModel

from emoguide.corpus.atomic import read_parquet
from emoguide.corpus import schema

S = TypeVar("S", bound=BaseModel)

#: Files a stage may read or write, by artifact name, relative to the session directory.
FILES: dict[str, str] = {
    "source": "source.json",
    "audio": "audio.wav",
    "words": "words.parquet",
    "diarization": "diarization.parquet",
    "utterances": "utterances.parquet",
    "faces": "faces.parquet",
    "face_crops": "face_crops.parquet",
}

#: The key column a column group is merged on, per host artifact.
GROUP_KEYS: dict[str, tuple[str, ...]] = {
    "utterances": ("index",),
    "faces": ("row",),
}


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs: the pool caps threads to `cpus`, Ray sizes actors by it."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_mb: int = 500


class NotApplicable(Exception):
    """Raised by `run()` when the stage has nothing to do for this session (recorded as skipped,
    with the message as the reason, e.g. "transcript imported: no ASR")."""


@dataclass
class Result:
    """What one session's stage run produced; the parent commits it.

    - `tables`: artifact name -> a whole table (`"words"`, `"faces"`, `"utterances"`), or a column
      group `"utterances:role"` -> a frame of the host's key column(s) plus the group's columns.
    - `files`: artifact name -> a finished file the worker wrote into `SessionView.scratch`
      (large media such as `audio.wav`); the parent moves it into place.
    - `backends`, `warnings`, `extra`: recorded in stages.json.
    """

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    backends: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    summary: str = ""  # one line for the batch summary (defaults to the warnings)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


class SessionView:
    """Read-only access to one session's artifacts, usable in any process that sees the corpus.

    Reads go straight to the files the parent committed (atomic renames, so never half-written).
    """

    def __init__(self, corpus_root: str | Path, session_id: str, scratch: str | Path | None = None,
                 payload: dict[str, Any] | None = None):
        self.corpus_root = Path(corpus_root)
        #: Per-session inputs the parent handed over (ingest: which file becomes this session).
        self.payload: dict[str, Any] = payload or {}
        self.id = session_id
        self.path = self.corpus_root / "sessions" / session_id
        self._scratch = Path(scratch) if scratch else None

    # --- paths -----------------------------------------------------------------------------
    def file(self, artifact: str) -> Path:
        """The path of a file artifact (it may not exist yet)."""
        if artifact == "video":
            p = self.video_path()
            if p is None:
                raise KeyError(f"{self.path}: the session has no video")
            return p
        return self.path / FILES[artifact]

    def has(self, artifact: str) -> bool:
        if artifact == "video":
            p = self.video_path()
            return p is not None and p.exists()
        return self.file(artifact).exists()

    def video_path(self) -> Path | None:
        src = self.source()
        if src.get("kind", "media") != "media" or not (src.get("path") or src.get("origin")):
            return None
        return Path(src.get("path") or src.get("origin"))

    @property
    def scratch(self) -> Path:
        """A private directory for files this run produces (`Result.files`)."""
        if self._scratch is None:
            raise RuntimeError("this SessionView has no scratch directory")
        self._scratch.mkdir(parents=True, exist_ok=True)
        return self._scratch

    # --- reads -----------------------------------------------------------------------------
    def source(self) -> dict[str, Any]:
        p = self.path / FILES["source"]
        if not p.exists():
            return {}
        return json.loads(p.read_text(encoding="utf-8")) or {}

    def utterances(self) -> pd.DataFrame:
        return schema.conform(read_parquet(self.path / FILES["utterances"]))

    def table(self, artifact: str) -> pd.DataFrame:
        if artifact == "utterances":
            return self.utterances()
        return read_parquet(self.file(artifact))

    def record(self, stage: str) -> dict[str, Any]:
        """This session's stages.json entry for `stage` (e.g. to reuse earlier predictions)."""
        p = self.path / "stages.json"
        if not p.exists():
            return {}
        return (json.loads(p.read_text(encoding="utf-8")) or {}).get(stage) or {}


class Stage(Generic[S]):
    """Base class of every stage; see the module docstring and docs/architecture.md."""

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    #: Written file artifacts a run may legitimately not produce (media with no audio track):
    #: checked on resume only when the record lists them; removed when a new run returns none.
    optional: ClassVar[tuple[str, ...]] = ()
    #: The columns of each written column group, e.g. {"utterances:role": ("role", "role_given")}.
    columns: ClassVar[dict[str, tuple[str, ...]]] = {}
    version: ClassVar[int] = 1
    scope: ClassVar[str] = "session"  # or "corpus": a barrier after every session stage
    resources: ClassVar[Resources] = Resources()
    #: Package names whose versions enter the fingerprint (their upgrade may change outputs).
    packages: ClassVar[tuple[str, ...]] = ()
    #: One line for `--help`.
    help: ClassVar[str] = ""

    def __init__(self, settings: S | None = None):
        self.settings: S = settings if settings is not None else self.Settings()  # type: ignore[assignment]

    @classmethod
    def from_corpus_settings(cls, settings: Any) -> "Stage":
        """The stage as corpus.toml configures it: the section named after the stage."""
        section = getattr(settings, cls.name, None) if settings is not None else None
        if isinstance(section, BaseModel):
            section = section.model_dump()
        return cls(cls.Settings.model_validate(section or {}))

    # --- in the parent ----------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What, besides settings, version and upstream, decides the outputs (e.g. model files'
        digests). Computed in the parent, hashed into the fingerprint."""
        return {}

    def inputs(self, session: SessionView) -> list[Path]:
        """External files this session's run reads (their content digests enter the fingerprint)."""
        return []

    def input_digests(self, session: SessionView) -> dict[str, str]:
        """Digests of `inputs(session)` by file name (override for a cheaper digest of huge files)."""
        from emoguide.corpus.stages import file_digest

        return {Path(p).name: file_digest(p) for p in self.inputs(session) if Path(p).exists()}

    def settings_for_hash(self) -> Any:
        """Settings as hashed; override to leave out what does not change outputs (threads...)."""
        return self.settings.model_dump(mode="json")

    # --- in the worker ----------------------------------------------------------------------
    def setup(self) -> None:
        """Load models; called once per worker process (or actor) before the first `run`."""

    def run(self, session: SessionView) -> Result:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- corpus scope ------------------------------------------------------------------------
    def run_corpus(self, corpus, sessions: list[str], *, force: bool, on_event) -> Any:  # pragma: no cover
        """Corpus-scope stages (prompts, generate, the judge) do their whole job here, in the
        parent, and return a BatchSummary (or a list of them)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<stage {self.name}>"
