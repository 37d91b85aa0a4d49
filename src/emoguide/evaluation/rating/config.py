"""The rating study's definition: an optional `study.toml`, validated with pydantic.

Every key has a default, so `emoguide rate init` works without a file (the paper's design:
every rater rates every item on the paper's three criteria). A bad file gives one line per
problem naming the key, e.g. `study.toml: assignment.raters_per_item: must be >= 1`. The
sha256 of the effective config (canonical JSON) is the study's config_hash, stored with every
rating. See docs/rating-config.md for the reference.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emoguide.errors import InputError
from emoguide.evaluation.criteria import Criterion, default_criteria

RATER_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class StudyConfigError(InputError):
    """A bad study.toml: the message has one `file: key: problem` line per error."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.problems = problems
        super().__init__(path, "; ".join(problems))

    def __str__(self) -> str:
        return "\n".join(f"{self.path}: {p}" for p in self.problems)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudySection(_Section):
    title: str = Field("Rating study", min_length=1, description="shown at the top of every page")
    instructions: str = Field(
        "Read the dialogue (and watch the clip), then rate the intervention technique and the "
        "response on each statement.",
        description="shown to raters above the items",
    )
    video: Literal["original", "blurred", "none"] = Field(
        "original", description="clip shown beside the dialogue: original, faces blurred, or none"
    )
    too_fast_seconds: float = Field(
        10.0, ge=0, description="dashboard flag: a rater's median seconds per item below this"
    )


class SelectionSection(_Section):
    models: list[str] = Field(default_factory=list, description="only these models (empty: all)")
    conditions: list[str] = Field(default_factory=list, description="only these conditions (empty: all)")
    sessions: list[str] = Field(default_factory=list, description="only these sessions (empty: all)")
    targets: list[str] = Field(
        default_factory=list, description='only these contexts, as "session_id:target_index" (empty: all)'
    )
    sample_contexts: int | None = Field(
        None, ge=1, description="seeded random sample of this many contexts (all their rows go in)"
    )
    seed: int = Field(0, description="seed of the context sample")

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for t in value:
            sid, sep, idx = str(t).rpartition(":")
            if not sep or not sid or not idx.strip().lstrip("-").isdigit():
                raise ValueError(f'{t!r}: write a target as "session_id:target_index", e.g. "s1:7"')
        return value

    def target_keys(self) -> set[tuple[str, int]]:
        return {(t.rpartition(":")[0], int(t.rpartition(":")[2])) for t in self.targets}


class RatersSection(_Section):
    count: int | None = Field(None, ge=1, le=500, description="number of raters (ids r01, r02, ...)")
    names: list[str] = Field(default_factory=list, description="rater names (ids are their slugs); instead of count")

    @model_validator(mode="after")
    def _one(self) -> "RatersSection":
        if self.count is not None and self.names:
            raise ValueError("give either count or names, not both")
        ids = [rater_slug(n) for n in self.names]
        bad = [n for n, i in zip(self.names, ids) if not RATER_ID.match(i)]
        if bad:
            raise ValueError(f"names {bad}: a name must contain letters or digits")
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"names give the same rater id twice: {dup}")
        return self


class AssignmentSection(_Section):
    raters_per_item: int | None = Field(
        None, ge=1, description="k raters per item; empty: every rater rates every item (fully crossed)"
    )
    quotas: dict[str, int] = Field(
        default_factory=dict, description="rater_id = most items that rater gets (first showings)"
    )
    seed: int = Field(0, description="seed of who rates what and of each rater's order")
    retest_fraction: float = Field(
        0.05, ge=0.0, le=1.0, description="share of each rater's items shown a second time, later"
    )
    retest_min_gap: int = Field(10, ge=1, description="a retest copy comes at least this many positions after the first showing")

    @field_validator("quotas")
    @classmethod
    def _quotas(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in value.items() if int(v) < 0}
        if bad:
            raise ValueError(f"quotas must be >= 0, got {bad}")
        return value


class GroupsSection(_Section):
    by: Literal["degree", "orientation", "experience"] = Field(
        "degree", description="which background answer defines rater_group"
    )
    experience_cut: int = Field(10, ge=1, le=70, description='by = "experience": groups "<cut y" and ">=cut y"')


class StudyConfig(_Section):
    study: StudySection = Field(default_factory=StudySection)
    selection: SelectionSection = Field(default_factory=SelectionSection)
    raters: RatersSection = Field(default_factory=RatersSection)
    assignment: AssignmentSection = Field(default_factory=AssignmentSection)
    groups: GroupsSection = Field(default_factory=GroupsSection)
    criteria: list[Criterion] = Field(default_factory=default_criteria, min_length=1)

    @field_validator("criteria")
    @classmethod
    def _unique(cls, value: list[Criterion]) -> list[Criterion]:
        names = [c.name for c in value]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"criterion names must be unique, repeated: {dup}")
        return value

    @model_validator(mode="after")
    def _quota_raters(self) -> "StudyConfig":
        known = self.rater_ids()
        if known:
            unknown = sorted(set(self.assignment.quotas) - set(known))
            if unknown:
                raise ValueError(f"assignment.quotas names unknown raters {unknown}; raters are {known}")
        return self

    # -- derived
    def rater_ids(self, default_count: int | None = 3) -> list[str] | None:
        """Rater ids: slugs of the names, or r01..rNN for a count (default_count when none given)."""
        if self.raters.names:
            return [rater_slug(n) for n in self.raters.names]
        n = self.raters.count if self.raters.count is not None else default_count
        if n is None:
            return None
        width = max(2, len(str(n)))
        return [f"r{i:0{width}d}" for i in range(1, n + 1)]

    def rater_names(self) -> dict[str, str]:
        if self.raters.names:
            return {rater_slug(n): n for n in self.raters.names}
        return {r: r for r in self.rater_ids() or []}

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def config_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


def rater_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(name).strip().lower()).strip("-")[:40]


def _problem(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "greater_than_equal":
        msg = f"must be >= {ctx.get('ge')}"
    elif kind == "less_than_equal":
        msg = f"must be <= {ctx.get('le')}"
    elif kind == "greater_than":
        msg = f"must be > {ctx.get('gt')}"
    elif kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "required"
    else:
        msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def parse_study_config(data: dict[str, Any], source: str | Path = "study.toml") -> StudyConfig:
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise StudyConfigError(source, [_problem(e) for e in exc.errors()]) from None


def load_study_config(path: str | Path | None = None, raters: int | None = None) -> StudyConfig:
    """The study config from `path` (defaults when None); `raters` (the CLI's --raters) sets the count."""
    data: dict[str, Any] = {}
    source: str | Path = "study.toml"
    if path is not None:
        path = Path(path)
        source = path
        if not path.is_file():
            raise InputError(path, "study config not found")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise InputError(path, f"not valid TOML: {exc}") from None
    if raters is not None:
        section = dict(data.get("raters") or {})
        if section.get("names"):
            raise StudyConfigError(source, ["raters.names: --raters conflicts with the names in the config"])
        section["count"] = raters
        data = {**data, "raters": section}
    return parse_study_config(data, source)


def load_study_criteria(corpus_root: str | Path) -> list[Criterion] | None:
    """The criteria of the study in `corpus_root` (for the judge), or None when there is no study."""
    from emoguide.evaluation.rating.store import DB_NAME, RatingStore

    path = Path(corpus_root) / DB_NAME
    if not path.is_file():
        return None
    store = RatingStore.open(path)
    try:
        return store.study().criteria
    finally:
        store.close()
