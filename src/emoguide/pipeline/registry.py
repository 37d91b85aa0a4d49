"""The stage registry: every stage in data-flow order, and who writes what.

Stage modules are imported on first use, so listing the registry (for `--help`) stays cheap; a
stage module imports its heavy libraries only in `setup()` / `run()`.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

from emoguide.pipeline.stage import Stage

#: name -> "module:Class", in data-flow order (the runner's default order).
STAGES: dict[str, str] = {
    "ingest_media": "emoguide.stages.ingest_media:IngestMediaStage",
    "ingest_transcript": "emoguide.stages.ingest_transcript:IngestTranscriptStage",
    "asr": "emoguide.stages.asr:ASRStage",
    "diarize": "emoguide.stages.diarize:DiarizeStage",
    "utterances": "emoguide.stages.utterances:UtterancesStage",
    "roles": "emoguide.stages.roles:RolesStage",
    "safety": "emoguide.stages.safety:SafetyStage",
    "faces": "emoguide.stages.faces:FacesStage",
    "face_affect": "emoguide.stages.face_affect:FaceAffectStage",
    "voice": "emoguide.stages.voice:VoiceStage",
    "text_affect": "emoguide.stages.text_affect:TextAffectStage",
    "dissonance": "emoguide.stages.dissonance:DissonanceStage",
    "prompts": "emoguide.stages.prompts:PromptsStage",
    "generate": "emoguide.stages.generate:GenerateStage",
    "judge": "emoguide.stages.judge:JudgeStage",
}

#: What `emoguide run` runs by default (ingest is its own verb; the judge is opt-in).
RUN_DEFAULT = ("asr", "diarize", "utterances", "roles", "safety", "faces", "face_affect", "voice",
               "text_affect", "dissonance", "generate")

#: Verbs that run several stages.
GROUPS: dict[str, tuple[str, ...]] = {"transcribe": ("asr", "diarize", "utterances")}


class RegistryError(ValueError):
    pass


def available() -> list[str]:
    """Registered stages whose module exists (a stage may be missing while being built)."""
    out = []
    for name in STAGES:
        try:
            stage_class(name)
        except ModuleNotFoundError:
            continue
        out.append(name)
    return out


@lru_cache(maxsize=None)
def stage_class(name: str) -> type[Stage]:
    try:
        target = STAGES[name]
    except KeyError:
        raise RegistryError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}") from None
    module, _, cls = target.partition(":")
    obj = getattr(importlib.import_module(module), cls)
    if obj.name != name:
        raise RegistryError(f"{target} declares name {obj.name!r}, registered as {name!r}")
    return obj


def writers(classes: list[type[Stage]] | None = None) -> dict[str, list[str]]:
    """artifact or column group -> the stages that write it.

    Exactly one per-session or corpus stage writes each artifact. Ingest ("source" scope) stages
    create sessions and are the one exception: a session's base utterance table comes either from
    an imported transcript (`ingest_transcript`) or from speech (`utterances`), never both.
    """
    classes = classes if classes is not None else [stage_class(n) for n in available()]
    out: dict[str, list[str]] = {}
    for cls in classes:
        for art in cls.writes:
            out.setdefault(art, []).append(cls.name)
    return out


def check(classes: list[type[Stage]] | None = None) -> None:
    """Raise RegistryError unless every artifact has exactly one non-ingest writer and every
    column group names its columns."""
    classes = classes if classes is not None else [stage_class(n) for n in available()]
    by_name = {c.name: c for c in classes}
    for art, names in writers(classes).items():
        own = [n for n in names if by_name[n].scope != "source"]
        if len(own) > 1:
            raise RegistryError(f"{art!r} is written by {', '.join(own)}: exactly one stage may write it")
    for cls in classes:
        for art in cls.writes:
            if ":" in art and not cls.columns.get(art):
                raise RegistryError(f"stage {cls.name} writes column group {art!r} but names no columns for it")


def upstream_writers(cls: type[Stage], classes: list[type[Stage]] | None = None) -> list[str]:
    """The stages that write what `cls` reads (its upstream, derived from `reads`)."""
    w = writers(classes)
    out: list[str] = []
    for art in cls.reads:
        for name in w.get(art, []):
            if name != cls.name and name not in out:
                out.append(name)
    return out
