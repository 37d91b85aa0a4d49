"""Corpus settings (`corpus.toml`): defaults, load, save.

Each stage hashes only its own section, so changing the LLM temperature does not invalidate the
imported transcripts.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, Field


class TargetSettings(BaseModel):
    """Which utterances get an intervention, and how much dialogue the prompt shows."""

    context_turns: int = Field(4, ge=1, description="K: turns shown, ending at the target")
    strategy: str = Field(
        "all",
        description="all: every patient utterance that ends a window of K turns; "
        "last: the last such utterance of each session; dissonant: only flagged ones",
    )
    require_full_window: bool = Field(
        True, description="skip patient utterances with fewer than K turns before them (inclusive)"
    )
    merge_consecutive: bool = Field(
        True, description="join consecutive utterances of one speaker into one turn in the context"
    )


class DissonanceSettings(BaseModel):
    threshold: float = Field(0.5, ge=0.0, description="T in Eq. 1 (paper: 0.5)")
    channels: tuple[str, str] = ("voice", "face")
    dimensions: tuple[str, ...] = ("valence", "arousal")
    roles: tuple[str, ...] = ("patient",)


class ProviderSettings(BaseModel):
    base_url: str
    api_key_env: str | None = None


class LLMSettings(BaseModel):
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int = 0
    timeout_s: float = 120.0
    max_retries: int = 3
    concurrency: int = 2
    n_ctx: int = 2048
    n_threads: int | None = None
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)


class Settings(BaseModel):
    targets: TargetSettings = Field(default_factory=TargetSettings)
    dissonance: DissonanceSettings = Field(default_factory=DissonanceSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    templates_dir: str | None = Field(
        None, description="extra prompt-condition templates (*.toml), besides the packaged four"
    )


def load_settings(path: str | Path) -> Settings:
    path = Path(path)
    if not path.exists():
        return Settings()
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    return Settings.model_validate(data)


def save_settings(path: str | Path, settings: Settings) -> None:
    from emoguide.corpus.atomic import write_text

    data = settings.model_dump(mode="json", exclude_none=True)
    write_text(path, tomli_w.dumps(data))


def settings_hash(obj: Any) -> str:
    """Stable short hash of settings (pydantic model, dict, list, scalar)."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
