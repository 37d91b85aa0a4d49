"""The curated bank of risk expressions and hard negatives (bank.toml) as flat arrays."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

CATEGORIES: tuple[str, ...] = ("suicide", "self_harm", "harm_to_others")
LEVELS: tuple[str, ...] = ("none", "low", "moderate", "high")
NEGATIVE_TYPES: tuple[str, ...] = ("idiom", "negation", "other_person", "past_resolved", "clinical_media", "ordinary", "short_reply")


@dataclass(frozen=True)
class BankEntry:
    text: str
    positive: bool
    category: str  # "" for hard negatives
    type: str  # C-SSRS-style type ("wish_dead", ...) or negative type ("idiom", ...)
    level: str  # "none" for hard negatives

    @property
    def key(self) -> str:
        return f"{self.category}/{self.type}" if self.positive else f"negative/{self.type}"


@dataclass(frozen=True)
class Bank:
    id: str
    version: str
    entries: tuple[BankEntry, ...]
    source: str

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.entries]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for e in self.entries:
            h.update(f"{int(e.positive)}|{e.key}|{e.level}|{e.text}\n".encode())
        return h.hexdigest()

    def types(self) -> list[tuple[str, str, str]]:
        """(category, type, level) of every positive type, in bank order."""
        seen: dict[tuple[str, str], str] = {}
        for e in self.entries:
            if e.positive:
                seen.setdefault((e.category, e.type), e.level)
        return [(c, t, lv) for (c, t), lv in seen.items()]


def parse_bank(config: dict, source: str = "<dict>") -> Bank:
    """Validate and flatten a bank TOML document; errors name `source` and the table."""
    meta = config.get("meta", {})
    entries: list[BankEntry] = []
    for cat, types in config.get("positive", {}).items():
        if cat not in CATEGORIES:
            raise ValueError(f"{source}: [positive.{cat}] is not a category; expected one of {CATEGORIES}")
        for typ, table in types.items():
            level = table.get("level")
            if level not in LEVELS[1:]:
                raise ValueError(f"{source}: [positive.{cat}.{typ}] level {level!r} not in {LEVELS[1:]}")
            texts = table.get("entries") or []
            if not texts:
                raise ValueError(f"{source}: [positive.{cat}.{typ}] has no entries")
            entries.extend(BankEntry(str(t), True, cat, typ, level) for t in texts)
    for typ, table in config.get("negative", {}).items():
        texts = table.get("entries") or []
        if not texts:
            raise ValueError(f"{source}: [negative.{typ}] has no entries")
        entries.extend(BankEntry(str(t), False, "", typ, "none") for t in texts)
    if not any(e.positive for e in entries) or all(e.positive for e in entries):
        raise ValueError(f"{source}: a bank needs both [positive.*] and [negative.*] entries")
    return Bank(str(meta.get("id", "risk-v2")), str(meta.get("version", "0")), tuple(entries), source)


def load_bank(path: str | Path | None = None) -> Bank:
    """The packaged bank (emoguide/risk/bank.toml) or a TOML file at `path`."""
    if path is None:
        return _packaged_bank()
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return parse_bank(tomllib.load(fh), str(p))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: not valid TOML: {exc}") from exc


@lru_cache(maxsize=1)
def _packaged_bank() -> Bank:
    ref = resources.files("emoguide.risk").joinpath("bank.toml")
    return parse_bank(tomllib.loads(ref.read_text(encoding="utf-8")), "emoguide/risk/bank.toml")
