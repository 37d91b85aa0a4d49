"""Reference transcripts for `emoguide evaluate transcript`, all read into one shape.

A `Reference` is one session's ground truth: speaker turns (``speaker, start, end, text, role``;
text and role may be null), optional timed reference words, and flags saying what the reference can
support (``has_text``: WER; ``has_roles``: role accuracy; ``has_ends``: DER/JER and end boundaries).

Formats read here: RTTM (speaker turns, no words), STM (turns with words), CHAT ``.cha`` (CHILDES /
TalkBank: ``*CODE:`` tiers with ``\\x15start_end\\x15`` bullets in ms, roles from ``@Participants``
/ ``@ID``, word times from ``%wor``). The paper's table, SRT, WebVTT, JSON/JSONL and AnnoMI are
read with `emoguide.transcripts.readers.read_transcript_file` (the same readers as `ingest`), with
the original speaker names kept as the reference speakers.

Every problem raises `InputError` naming the file and, where known, the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from emoguide.corpus.layout import slugify
from emoguide.errors import InputError
from emoguide.transcripts.readers import DIRECTORY_EXTENSIONS, normalise_role, read_text, read_transcript_file

#: Extensions read by this module's own readers.
OWN_EXTENSIONS = {".rttm": "rttm", ".stm": "stm", ".cha": "chat"}
#: Extensions picked up when a reference directory is expanded.
REFERENCE_EXTENSIONS = tuple(OWN_EXTENSIONS) + tuple(DIRECTORY_EXTENSIONS)
TURN_COLUMNS = ["speaker", "start", "end", "text", "role"]


@dataclass
class Reference:
    """One session's reference (see the module docstring)."""

    name: str  # the session key: file stem, RTTM/STM file id, session column...
    path: Path
    fmt: str
    turns: pd.DataFrame  # speaker, start, end, text (nullable), role (nullable)
    words: pd.DataFrame | None = None  # start, end, text, speaker (CHAT %wor)
    has_text: bool = False
    has_roles: bool = False
    has_ends: bool = True
    aliases: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def keys(self) -> set[str]:
        """Names this reference answers to when sessions are matched (case-insensitive)."""
        return {match_key(k) for k in {self.name, *self.aliases} if k}


def match_key(name: str) -> str:
    return slugify(str(name)).casefold()


def _turns(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=TURN_COLUMNS)
    df = df.astype({"speaker": "object", "start": "float64", "end": "float64"})
    return df.sort_values(["start", "end"], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------------ RTTM


def read_rttm(path: str | Path) -> list[Reference]:
    """NIST RTTM: ``SPEAKER <file> <chnl> <tbeg> <tdur> <ortho> <stype> <name> <conf> <slat>``.

    One `Reference` per file id; other record types (SPKR-INFO, LEXEME, ...) are ignored.
    """
    path = Path(path)
    text = read_text(path)
    by_uri: dict[str, list[dict]] = {}
    for i, line in enumerate(text.split("\n"), 1):
        parts = line.split()
        if not parts or parts[0].startswith(("#", ";")):
            continue
        if parts[0] != "SPEAKER":
            continue
        if len(parts) < 8:
            raise InputError(path, f"RTTM SPEAKER line needs at least 8 fields, found {len(parts)}", i)
        try:
            start, dur = float(parts[3]), float(parts[4])
        except ValueError:
            raise InputError(path, f"RTTM onset/duration {parts[3]!r} {parts[4]!r} are not numbers", i) from None
        if start < 0 or dur < 0:
            raise InputError(path, f"negative onset or duration ({parts[3]}, {parts[4]})", i)
        by_uri.setdefault(parts[1], []).append(
            {"speaker": parts[7], "start": start, "end": start + dur, "text": None, "role": None}
        )
    if not by_uri:
        raise InputError(path, "no SPEAKER lines: not an RTTM file with speaker turns")
    out = []
    for uri, rows in by_uri.items():
        aliases = {path.stem} if len(by_uri) == 1 else set()
        out.append(Reference(name=uri, path=path, fmt="rttm", turns=_turns(rows), aliases=aliases))
    return out


# ------------------------------------------------------------------------------------------- STM

_STM_LABEL = re.compile(r"^<[^>]*>$")


def read_stm(path: str | Path) -> list[Reference]:
    """NIST STM: ``<file> <channel> <speaker> <begin> <end> [<label>] transcript``.

    ``;;`` lines are comments; segments of speaker ``inter_segment_gap`` / ``excluded_region`` and
    ones whose transcript is ``ignore_time_segment_in_scoring`` are left out.
    """
    path = Path(path)
    text = read_text(path)
    by_file: dict[str, list[dict]] = {}
    for i, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip().startswith(";;"):
            continue
        parts = line.split()
        if len(parts) < 5:
            raise InputError(path, f"STM line needs at least 5 fields (file channel speaker begin end), found {len(parts)}", i)
        try:
            start, end = float(parts[3]), float(parts[4])
        except ValueError:
            raise InputError(path, f"STM begin/end {parts[3]!r} {parts[4]!r} are not numbers", i) from None
        if end < start:
            raise InputError(path, f"end {end:g} is before begin {start:g}", i)
        rest = parts[5:]
        if rest and _STM_LABEL.match(rest[0]):
            rest = rest[1:]
        words = " ".join(rest)
        speaker = parts[2]
        if speaker.lower() in ("inter_segment_gap", "excluded_region") or words.strip().lower() == "ignore_time_segment_in_scoring":
            continue
        by_file.setdefault(parts[0], []).append(
            {"speaker": speaker, "start": start, "end": end, "text": words, "role": normalise_role(speaker)}
        )
    if not by_file:
        raise InputError(path, "no scored segments in the STM file")
    out = []
    for fid, rows in by_file.items():
        turns = _turns(rows)
        aliases = {path.stem} if len(by_file) == 1 else set()
        roles = set(turns["role"].dropna()) & {"therapist", "patient"}
        out.append(Reference(name=fid, path=path, fmt="stm", turns=turns, has_text=True,
                             has_roles=bool(roles), aliases=aliases))
    return out


# ------------------------------------------------------------------------------------------ CHAT

_BULLET = re.compile(r"\x15(\d+)_(\d+)\x15")
_CHAT_ANNOT = re.compile(r"\[[^\]]*\]")  # [/], [//], [: target], [*], [+ bch], [=! laughs] ...


def clean_chat_text(text: str) -> str:
    """The spoken words of a CHAT main tier, for WER.

    Removed: time bullets, bracketed codes (``[/]``, ``[: target]``, ``[*]`` ...), fillers and
    fragments (``&-um``, ``&+fr``), events (``&=laughs``), unintelligible ``xxx yyy www``, omitted
    words (``0is``), pauses ``(.)``, terminators and linkers (``+...``, ``+/.``, ``+"``), angle
    brackets (their words kept: a retraced ``<I want> [/] I want`` was said twice), form markers
    (``word@s`` -> ``word``) and shortenings' parentheses (``(be)cause`` -> ``because``).
    """
    text = _BULLET.sub(" ", text)
    text = _CHAT_ANNOT.sub(" ", text)
    text = text.replace("<", " ").replace(">", " ")
    out = []
    for tok in text.split():
        if tok.startswith("&") or tok.startswith("+") or tok.startswith("0"):
            continue
        if tok.lower() in ("xxx", "yyy", "www", "xx", "yy") or re.fullmatch(r"\(\.+\)|\(\d+(?:\.\d*)?\)", tok):
            continue
        tok = re.sub(r"@[\w:]*$", "", tok)
        tok = tok.replace("(", "").replace(")", "").replace("_", " ")
        if tok:
            out.append(tok)
    return " ".join(out)


def _chat_roles(headers: list[tuple[int, str, str]]) -> dict[str, str | None]:
    """Speaker code -> role word, from ``@Participants`` (CODE [Name] Role, ...) and ``@ID``."""
    roles: dict[str, str | None] = {}
    for _, key, value in headers:
        if key == "participants":
            for part in value.split(","):
                bits = part.split()
                if bits:
                    roles[bits[0]] = bits[-1] if len(bits) > 1 else None
        elif key == "id":
            f = value.split("|")
            if len(f) >= 8 and f[2].strip():
                roles[f[2].strip()] = f[7].strip() or roles.get(f[2].strip())
    return roles


def read_chat(path: str | Path) -> list[Reference]:
    """A CHAT transcript: utterance times from the main tiers' bullets, words from ``%wor``."""
    path = Path(path)
    text = read_text(path)
    # Join continuation lines (a tab at the start continues the previous tier).
    tiers: list[tuple[int, str]] = []
    for i, line in enumerate(text.split("\n"), 1):
        if line.startswith("\t") and tiers:
            n, prev = tiers[-1]
            tiers[-1] = (n, prev + " " + line.strip())
        elif line.strip():
            tiers.append((i, line))
    headers: list[tuple[int, str, str]] = []
    rows: list[dict] = []
    word_rows: list[dict] = []
    untimed = 0
    media = None
    for line_no, tier in tiers:
        if tier.startswith("@"):
            key, _, value = tier[1:].partition(":")
            headers.append((line_no, key.strip().lower(), value.strip()))
            if key.strip().lower() == "media":
                media = value.split(",")[0].strip()
            continue
        if tier.startswith("*"):
            code, sep, body = tier[1:].partition(":")
            if not sep or not code.strip():
                raise InputError(path, f"bad CHAT main tier {tier[:40]!r}: expected '*CODE:<tab>text'", line_no)
            bullets = _BULLET.findall(body)
            if not bullets:
                untimed += 1
                continue
            start, end = int(bullets[0][0]) / 1000.0, int(bullets[-1][1]) / 1000.0
            if end < start:
                raise InputError(path, f"time bullet end {end:g} s is before start {start:g} s", line_no)
            rows.append({"speaker": code.strip(), "start": start, "end": end,
                         "text": clean_chat_text(body), "role": None, "_line": line_no})
            continue
        if tier.startswith("%wor:") and rows:
            body = tier[5:]
            for m in re.finditer(r"(\S+)\s*\x15(\d+)_(\d+)\x15", body):
                w = clean_chat_text(m.group(1))
                if w:
                    word_rows.append({"start": int(m.group(2)) / 1000.0, "end": int(m.group(3)) / 1000.0,
                                      "text": w, "speaker": rows[-1]["speaker"]})
    if not any(k in ("begin", "participants") for _, k, _ in headers) and not rows:
        raise InputError(path, "not a CHAT file (no @Begin / @Participants header, no *SPEAKER: tiers)")
    if not rows:
        raise InputError(path, f"no timed utterances: none of the {untimed} main tier(s) has a \\x15start_end\\x15 bullet")
    role_words = _chat_roles(headers)
    for r in rows:
        word = role_words.get(r["speaker"])
        r["role"] = normalise_role(word) if word else None
        r["role"] = r["role"] if r["role"] in ("therapist", "patient") else None
    turns = _turns([{k: v for k, v in r.items() if k != "_line"} for r in rows])
    warnings = [f"{untimed} main tier(s) without time bullets left out"] if untimed else []
    words = pd.DataFrame(word_rows, columns=["start", "end", "text", "speaker"]) if word_rows else None
    aliases = {media} if media else set()
    return [Reference(name=path.stem, path=path, fmt="chat", turns=turns, words=words, has_text=True,
                      has_roles=turns["role"].notna().any(), aliases=aliases, warnings=warnings)]


# ------------------------------------------------------------------------- the ingest readers


def read_with_ingest_readers(path: str | Path) -> list[Reference]:
    """Table, SRT, WebVTT, JSON/JSONL, AnnoMI via `emoguide.transcripts.readers`."""
    path = Path(path)
    parsed = read_transcript_file(path)
    out = []
    for p in parsed:
        u = p.utterances
        names = u["speaker_name"].where(u["speaker_name"].notna(), u["speaker"]).astype(str)
        roles = u["role"].astype(object).where(u["role"].isin(["therapist", "patient"]), None)
        turns = _turns(
            [
                {"speaker": n, "start": float(s), "end": float(e), "text": str(t), "role": r}
                for n, s, e, t, r in zip(names, u["start"], u["end"], u["text"], roles)
            ]
        )
        n_inferred = int(p.source.get("ends_from_next_start") or 0)
        warnings = list(p.warnings)
        if 0 < n_inferred < len(u):
            warnings.append(f"{n_inferred} reference end time(s) missing: taken from the next start")
        aliases = {path.stem} if len(parsed) == 1 else set()
        if p.source.get("transcript_id") is not None:
            aliases.add(str(p.source["transcript_id"]))
        out.append(
            Reference(
                name=p.session_id,
                path=path,
                fmt=str(p.source.get("format") or "table"),
                turns=turns,
                has_text=True,
                has_roles=bool(turns["role"].notna().any()),
                has_ends=n_inferred < len(u),
                aliases=aliases,
                warnings=warnings,
            )
        )
    return out


def read_reference_file(path: str | Path) -> list[Reference]:
    """One reference file -> its sessions (format from the extension)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such reference file")
    kind = OWN_EXTENSIONS.get(path.suffix.lower())
    if kind == "rttm":
        return read_rttm(path)
    if kind == "stm":
        return read_stm(path)
    if kind == "chat":
        return read_chat(path)
    return read_with_ingest_readers(path)


def expand_reference_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; directories -> their reference files (sorted, not recursive)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in REFERENCE_EXTENSIONS)
            if not found:
                raise InputError(p, f"no reference files in this folder (looked for {', '.join(REFERENCE_EXTENSIONS)})")
            out.extend(found)
        elif not p.exists():
            raise InputError(p, "no such reference file or folder")
        else:
            out.append(p)
    return out
