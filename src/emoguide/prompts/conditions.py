"""Prompt conditions as data: one TOML file per condition (name, description, requires, template).

The four packaged files are the paper's Appendix A. A user adds a condition by dropping another
`*.toml` file into a directory given as `templates_dir` (corpus.toml) or `--templates`; a user
file with a packaged name replaces the packaged one. Templates are Jinja2 (sandboxed, strict
undefined: a typo in a template is an error, not an empty string).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from emoguide.errors import InputError

PAPER_CONDITIONS = ("base", "discrete", "continuous", "dissonance")

# What each requirement needs on a patient utterance (any one column non-null counts as present).
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "labels": ("voice_label", "face_label"),
    "values": ("voice_valence", "voice_arousal", "face_valence", "face_arousal"),
    "dissonance": ("dissonance",),
    "text_affect": ("text_valence", "text_arousal"),
}

_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)


@dataclass
class Condition:
    name: str
    description: str
    requires: list[str]
    template: str
    path: str
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.hash = hashlib.sha256(self.template.encode()).hexdigest()[:12]
        self._compiled = _ENV.from_string(self.template)

    def render(self, **context) -> str:
        return self._compiled.render(**context).strip() + "\n"


def load_condition(path: str | Path) -> Condition:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text: {exc}") from exc
    for key in ("template",):
        if key not in data:
            raise InputError(path, f"missing key {key!r} (a condition file needs name, requires, template)")
    requires = list(data.get("requires", []))
    unknown = [r for r in requires if r not in REQUIREMENTS]
    if unknown:
        raise InputError(
            path, f"unknown requirement(s) {unknown}; known: {', '.join(sorted(REQUIREMENTS))}"
        )
    try:
        return Condition(
            name=str(data.get("name", path.stem)),
            description=str(data.get("description", "")),
            requires=requires,
            template=str(data["template"]),
            path=str(path),
        )
    except TemplateSyntaxError as exc:
        raise InputError(path, f"template syntax error: {exc.message}", line=exc.lineno) from exc


def packaged_dir() -> Path:
    return Path(str(resources.files("emoguide.prompts") / "templates"))


def available_conditions(extra_dir: str | Path | None = None) -> dict[str, Condition]:
    """All conditions by name: the packaged four, then the user's (which may override)."""
    out: dict[str, Condition] = {}
    dirs = [packaged_dir()] + ([Path(extra_dir)] if extra_dir else [])
    for d in dirs:
        if not d.is_dir():
            raise InputError(d, "templates directory does not exist")
        for f in sorted(d.glob("*.toml")):
            cond = load_condition(f)
            out[cond.name] = cond
    return out


def select_conditions(names: list[str] | str, extra_dir: str | Path | None = None) -> list[Condition]:
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    avail = available_conditions(extra_dir)
    if not names or names == ["all"]:
        return list(avail.values())
    missing = [n for n in names if n not in avail]
    if missing:
        raise KeyError(f"unknown condition(s) {missing}; available: {', '.join(avail)}")
    return [avail[n] for n in names]
