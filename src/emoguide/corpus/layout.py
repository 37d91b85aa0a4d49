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
    """A filesystem-safe session id from a file stem or title.

    Unicode letters, digits and marks are kept (NFKC-normalised, so one name has one id however
    it was typed): `séance_日本語` stays `séance_日本語`, and `日本語` and `中文` stay distinct.
    Each run of other characters becomes one "-". A name with nothing left (`😀`) gets
    `session-<8 hex digits of its hash>`, stable and distinct per name; a very long one is cut
    to 180 UTF-8 bytes plus such a hash.
    """
    import hashlib
    import unicodedata

    text = unicodedata.normalize("NFKC", name).strip()
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    parts: list[str] = []
    for ch in text:
        if ch in "._-" or (ch.isascii() and ch.isalnum()) or (
            not ch.isascii() and unicodedata.category(ch)[0] in "LNM"
        ):
            parts.append(ch)
        elif not parts or parts[-1] != "\0":
            parts.append("\0")
    slug = "".join(parts).replace("\0", "-").strip("-._")
    if not slug:
        return f"session-{digest}" if text else "session"
    if len(slug.encode("utf-8")) > 180:
        slug = slug.encode("utf-8")[:180].decode("utf-8", "ignore").rstrip("-._") + f"-{digest}"
    return slug


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

    def n_utterances(self) -> int | None:
        """Rows of utterances.parquet from its footer (None when it is missing or damaged)."""
        from emoguide.corpus.atomic import parquet_shape

        try:
            return parquet_shape(self.utterances_path)[0]
        except Exception:
            return None

    def problems(self) -> list[str]:
        """Damaged artifacts of this session, one line each naming the file (None found: [])."""
        from emoguide.corpus.atomic import check_artifact

        out: list[str] = []
        log = self.stages
        log.load()
        if log.damaged:
            out.append(f"{log.damaged}; the next run moves it aside and recomputes this session's stages")
        for name in ("source.json", "utterances.parquet", "words.parquet", "diarization.parquet",
                     "faces.parquet", "audio.wav"):
            bad = check_artifact(self.path / name)
            if bad:
                out.append(f"{self.path / name}: {bad}; the next run recomputes the stages that wrote it")
        return out

    def read_source(self) -> dict[str, Any]:
        return read_json(self.source_path, default={}) or {}

    def write_source(self, source: dict[str, Any]) -> None:
        write_json(self.source_path, source)

    def read_utterances(self) -> pd.DataFrame:
        """The session's utterance table; a damaged file is an InputError naming it."""
        try:
            df = read_parquet(self.utterances_path)
        except FileNotFoundError:
            raise
        except Exception as exc:  # pyarrow's ArrowInvalid, OSError on a cut-short file, ...
            from emoguide.errors import InputError

            raise InputError(self.utterances_path, f"unreadable ({type(exc).__name__}: {exc})",
                             hint="`emoguide run` recomputes it (and `emoguide status` lists damaged files)") from None
        return schema.conform(df)

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
        """Validate `settings` (SettingsError, nothing written, when they are wrong), then edit
        corpus.toml in place under the corpus lock (comments and unknown keys stay)."""
        with self.lock():
            save_settings(self.settings_path, settings)

    def lock(self, command: str | None = None, wait: float | None = None):
        """The corpus lock (`with corpus.lock():`); see `emoguide.corpus.lock`."""
        from emoguide.corpus.lock import corpus_lock

        return corpus_lock(self.root, command=command, wait=wait)

    def problems(self) -> list[str]:
        """Damaged artifacts, one line each naming the file (for `status`; `run` repairs them)."""
        from emoguide.corpus.atomic import check_artifact

        out: list[str] = []
        for name, what in (("generations.parquet", "the next `emoguide generate` or `run` moves it aside and rebuilds it "
                                                   "(rows made before come back from the completion cache)"),
                           ("ratings.sqlite", "ratings are people's work and cannot be recomputed: restore it from a "
                                              "backup; `emoguide rate` will not use it as it is")):
            bad = check_artifact(self.root / name)
            if bad:
                out.append(f"{self.root / name}: {bad}; {what}")
        for s in self.sessions():
            out += s.problems()
        return out

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
