"""The corpus directory (README, "The corpus"; docs/corpus.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from emoguide.config import Settings, load_settings, save_settings
from emoguide.corpus import schema
from emoguide.corpus.atomic import read_json, read_parquet, write_json, write_parquet
from emoguide.corpus.stages import StageLog, StageRun, file_digest

_SESSION_ID = re.compile(r"[^A-Za-z0-9._-]+")


def slugify(name: str) -> str:
    """A filesystem-safe session id from a file stem or title."""
    slug = _SESSION_ID.sub("-", name.strip()).strip("-._")
    return slug or "session"


class Session:
    def __init__(self, corpus: "Corpus", session_id: str):
        self.corpus = corpus
        self.id = session_id
        self.path = corpus.sessions_dir / session_id

    @property
    def source_path(self) -> Path:
        return self.path / "source.json"

    @property
    def utterances_path(self) -> Path:
        return self.path / "utterances.parquet"

    @property
    def faces_path(self) -> Path:
        return self.path / "faces.parquet"

    @property
    def stages(self) -> StageLog:
        return StageLog(self.path / "stages.json")

    def exists(self) -> bool:
        return self.utterances_path.exists()

    def read_source(self) -> dict[str, Any]:
        return read_json(self.source_path, default={}) or {}

    def write_source(self, source: dict[str, Any]) -> None:
        write_json(self.source_path, source)

    def read_utterances(self) -> pd.DataFrame:
        return schema.conform(read_parquet(self.utterances_path))

    def write_utterances(self, df: pd.DataFrame) -> None:
        df = schema.conform(df)
        df["session_id"] = self.id
        write_parquet(self.utterances_path, df)

    def stage(
        self,
        name: str,
        settings: Any,
        upstream: Iterable[str] = (),
        inputs: Iterable[str | Path] = (),
        outputs: Iterable[str | Path] | None = None,
    ) -> StageRun:
        """Prepare a stage run; see `StageRun.current` for resume."""
        log = self.stages
        return StageRun(
            log=log,
            name=name,
            settings=settings,
            upstream={u: log.fingerprint(u) for u in upstream},
            inputs={str(Path(p).name): file_digest(p) for p in inputs},
            outputs=[Path(p) for p in (outputs if outputs is not None else [self.utterances_path])],
        )


class Corpus:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def open(cls, root: str | Path, create: bool = False) -> "Corpus":
        corpus = cls(root)
        if not corpus.settings_path.exists():
            if not create:
                raise FileNotFoundError(
                    f"{corpus.root}: not an emoguide corpus (no corpus.toml); "
                    "create one with `emoguide ingest --corpus DIR FILES...`"
                )
            corpus.root.mkdir(parents=True, exist_ok=True)
            save_settings(corpus.settings_path, Settings())
        corpus.sessions_dir.mkdir(parents=True, exist_ok=True)
        return corpus

    @property
    def settings_path(self) -> Path:
        return self.root / "corpus.toml"

    @property
    def sessions_dir(self) -> Path:
        return self.root / "sessions"

    @property
    def generations_path(self) -> Path:
        return self.root / "generations.parquet"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def cache_path(self) -> Path:
        return self.root / "cache" / "llm.sqlite"

    @property
    def settings(self) -> Settings:
        return load_settings(self.settings_path)

    def save_settings(self, settings: Settings) -> None:
        save_settings(self.settings_path, settings)

    def session_ids(self) -> list[str]:
        if not self.sessions_dir.exists():
            return []
        return sorted(p.name for p in self.sessions_dir.iterdir() if (p / "utterances.parquet").exists())

    def session(self, session_id: str) -> Session:
        return Session(self, session_id)

    def sessions(self, only: Iterable[str] | None = None) -> list[Session]:
        ids = self.session_ids()
        if only:
            wanted = list(only)
            missing = [s for s in wanted if s not in ids]
            if missing:
                raise KeyError(f"{self.root}: no such session(s): {', '.join(missing)}")
            ids = wanted
        return [self.session(s) for s in ids]

    def utterances(self, only: Iterable[str] | None = None) -> pd.DataFrame:
        """All sessions' utterance tables, concatenated."""
        frames = [s.read_utterances() for s in self.sessions(only)]
        if not frames:
            return schema.empty_utterances()
        return schema.conform(pd.concat(frames, ignore_index=True))
