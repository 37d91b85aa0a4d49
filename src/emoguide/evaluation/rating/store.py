"""The rating study's store: one SQLite file, `<corpus>/ratings.sqlite`, in WAL mode.

Durability: every write is one `BEGIN IMMEDIATE` transaction committed (with `synchronous=FULL`)
before the method returns, so a rating the web app acknowledged survives a SIGKILL of the server.
Blinding: what a rater may see (items, contexts, clips) lives in tables without model, condition
or session; the key back to them is the `unblinding` table, which only the CLI's export reads
(`export.ratings_table`), never a method the web app calls.

Tables: meta (study settings), private (CLI only: the config), contexts, items, unblinding, raters, backgrounds, assignments,
ratings (one row per rater x position x criterion), notes (comment + flags per position), views
(time on item, watched fraction, seeks, plays), edits (every change of an existing value).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import statistics
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from emoguide.evaluation.criteria import Criterion
from emoguide.evaluation.rating.background import derive_group, validate_background

SCHEMA_VERSION = 1
DB_NAME = "ratings.sqlite"
CLIPS_DIR = Path("rating") / "clips"
FLAG_KINDS: tuple[str, ...] = ("harmful", "off_topic", "not_a_reply")
#: a rater with at least this many complete items is checked for straight-lining
STRAIGHT_LINING_MIN_ITEMS = 5

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contexts (
    context_id TEXT PRIMARY KEY,
    turns_json TEXT NOT NULL,
    risk_flag INTEGER NOT NULL,
    media_kind TEXT NOT NULL CHECK (media_kind IN ('video', 'audio', 'none')),
    clip_name TEXT UNIQUE
);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    context_id TEXT NOT NULL REFERENCES contexts(context_id),
    technique TEXT NOT NULL,
    response TEXT NOT NULL
);
-- the key back to model/condition/session, and the study config (whose selection may name
-- models and conditions): read by the CLI (export, plan) only, never by the web app
CREATE TABLE IF NOT EXISTS private (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS unblinding (
    item_id TEXT PRIMARY KEY REFERENCES items(item_id),
    session_id TEXT NOT NULL,
    target_index INTEGER NOT NULL,
    model TEXT NOT NULL,
    condition TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS raters (
    rater_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT,
    token_issued_at TEXT
);
CREATE TABLE IF NOT EXISTS backgrounds (
    rater_id TEXT PRIMARY KEY REFERENCES raters(rater_id),
    answers_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    rater_id TEXT NOT NULL REFERENCES raters(rater_id),
    position INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES items(item_id),
    is_retest INTEGER NOT NULL,
    PRIMARY KEY (rater_id, position)
);
CREATE TABLE IF NOT EXISTS ratings (
    rater_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    criterion TEXT NOT NULL,
    score INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    PRIMARY KEY (rater_id, position, criterion),
    FOREIGN KEY (rater_id, position) REFERENCES assignments(rater_id, position)
);
CREATE TABLE IF NOT EXISTS notes (
    rater_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    comment TEXT NOT NULL,
    flags_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    PRIMARY KEY (rater_id, position),
    FOREIGN KEY (rater_id, position) REFERENCES assignments(rater_id, position)
);
CREATE TABLE IF NOT EXISTS views (
    rater_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    seconds REAL NOT NULL,
    watched_fraction REAL,
    seeks INTEGER NOT NULL,
    plays INTEGER NOT NULL,
    first_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (rater_id, position),
    FOREIGN KEY (rater_id, position) REFERENCES assignments(rater_id, position)
);
CREATE TABLE IF NOT EXISTS edits (
    edit_id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    field TEXT NOT NULL,
    old TEXT,
    new TEXT,
    at TEXT NOT NULL,
    FOREIGN KEY (rater_id, position) REFERENCES assignments(rater_id, position)
);
CREATE INDEX IF NOT EXISTS edits_by_rater ON edits(rater_id, position);
CREATE INDEX IF NOT EXISTS assignments_by_item ON assignments(item_id);
"""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def opaque_id(nbytes: int = 12) -> str:
    """A random id (items, contexts, clips): never derived from model, condition or session."""
    return secrets.token_urlsafe(nbytes)


class StudyReplacedError(RuntimeError):
    """The study file was replaced under an open store; nothing was written."""


@dataclass(frozen=True)
class StudyInfo:
    study_id: str
    title: str
    instructions: str
    config_hash: str
    criteria: list[Criterion]
    video_mode: str
    too_fast_seconds: float
    research_notice: str


@dataclass(frozen=True)
class RaterInfo:
    rater_id: str
    name: str
    group: str | None
    has_background: bool


@dataclass(frozen=True)
class Assignment:
    position: int
    item_id: str
    is_retest: bool


@dataclass(frozen=True)
class ItemView:
    """What a rater's page may show about an item: nothing that identifies model, condition or session."""

    item_id: str
    context_id: str
    turns: list[dict[str, Any]]  # {speaker_title, text, is_target}
    technique: str
    response: str
    risk_flag: bool
    media_kind: str  # video | audio | none
    clip_name: str | None


@dataclass
class RatingState:
    scores: dict[str, int] = field(default_factory=dict)
    comment: str = ""
    flags: list[str] = field(default_factory=list)
    updated_at: str | None = None
    complete: bool = False


class RatingStore:
    """A study in `<corpus>/ratings.sqlite`; safe to share between threads (one connection each)."""

    FLAG_KINDS = FLAG_KINDS

    def __init__(self, path: Path):
        self.path = Path(path)
        self.corpus_root = self.path.parent
        self._local = threading.local()
        self._study: StudyInfo | None = None
        self._meta_cache: dict[str, str] | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path) -> "RatingStore":
        """Open an existing study; `path` is the sqlite file or the corpus directory holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / DB_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no rating study here; create one with `emoguide rate init --corpus {path.parent}`"
            )
        store = cls(path)
        version = store._meta().get("schema_version")
        if version is None:
            raise FileNotFoundError(f"{path}: not a rating study (no meta table); run `emoguide rate init`")
        if int(version) != SCHEMA_VERSION:
            raise ValueError(f"{path}: study schema version {version}, this emoguide reads {SCHEMA_VERSION}")
        return store

    @classmethod
    def create(
        cls,
        path: str | Path,
        meta: dict[str, Any],
        contexts: list[dict[str, Any]],
        items: list[dict[str, Any]],
        raters: list[dict[str, Any]],
        assignments: list[tuple[str, int, str, bool]],
        private: dict[str, str] | None = None,
    ) -> "RatingStore":
        """Write a new study atomically: built in a temporary file, then renamed over `path`.

        contexts: {context_id, turns, risk_flag, media_kind, clip_name}; items: {item_id,
        context_id, technique, response, session_id, target_index, model, condition};
        raters: {rater_id, name}; assignments: (rater_id, position, item_id, is_retest);
        private: CLI-only key/values (the config JSON).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        for p in (tmp, Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
            p.unlink(missing_ok=True)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            rows = {**{k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()},
                    "schema_version": str(SCHEMA_VERSION)}
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", sorted(rows.items()))
            conn.executemany("INSERT INTO private(key, value) VALUES (?, ?)", sorted((private or {}).items()))
            conn.executemany(
                "INSERT INTO contexts(context_id, turns_json, risk_flag, media_kind, clip_name) VALUES (?,?,?,?,?)",
                [(c["context_id"], json.dumps(c["turns"], ensure_ascii=False), int(bool(c["risk_flag"])),
                  c["media_kind"], c.get("clip_name")) for c in contexts],
            )
            conn.executemany(
                "INSERT INTO items(item_id, context_id, technique, response) VALUES (?,?,?,?)",
                [(i["item_id"], i["context_id"], i["technique"], i["response"]) for i in items],
            )
            conn.executemany(
                "INSERT INTO unblinding(item_id, session_id, target_index, model, condition) VALUES (?,?,?,?,?)",
                [(i["item_id"], i["session_id"], int(i["target_index"]), i["model"], i["condition"]) for i in items],
            )
            conn.executemany(
                "INSERT INTO raters(rater_id, name) VALUES (?, ?)", [(r["rater_id"], r["name"]) for r in raters]
            )
            conn.executemany(
                "INSERT INTO assignments(rater_id, position, item_id, is_retest) VALUES (?,?,?,?)",
                [(r, int(p), i, int(bool(t))) for r, p, i, t in assignments],
            )
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        os.replace(tmp, path)
        for suffix in ("-wal", "-shm"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
        return cls.open(path)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode; writes use explicit BEGIN IMMEDIATE)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            self._local.inode = os.stat(self.path).st_ino
        return conn

    def close(self) -> None:
        """Close this thread's connection (other threads' close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed before the caller's method returns."""
        conn = self.connection()
        # `rate init --force` renames a new file over this one: a connection opened before would
        # write to the old, unlinked file, and those ratings would be lost. Refuse instead.
        try:
            same = os.stat(self.path).st_ino == self._local.inode
        except FileNotFoundError:
            same = False
        if not same:
            raise StudyReplacedError(
                f"{self.path} was replaced or removed (`emoguide rate init --force`?) after this process opened "
                "it; restart the server"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ------------------------------------------------------------------ study
    def _meta(self) -> dict[str, str]:
        if self._meta_cache is None:
            try:
                rows = self.connection().execute("SELECT key, value FROM meta").fetchall()
            except sqlite3.DatabaseError:
                return {}
            self._meta_cache = {r["key"]: r["value"] for r in rows}
        return self._meta_cache

    def meta(self, key: str, default: Any = None) -> Any:
        """A meta value decoded from JSON where it is JSON (config, groups rule ...)."""
        value = self._meta().get(key)
        if value is None:
            return default
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value

    def study(self) -> StudyInfo:
        if self._study is None:
            m = self._meta()
            self._study = StudyInfo(
                study_id=m["study_id"],
                title=m.get("title", "Rating study"),
                instructions=m.get("instructions", ""),
                config_hash=m["config_hash"],
                criteria=[Criterion.model_validate(c) for c in json.loads(m["criteria"])],
                video_mode=m.get("video_mode", "original"),
                too_fast_seconds=float(m.get("too_fast_seconds", "10")),
                research_notice=m.get("research_notice", ""),
            )
        return self._study

    def _criteria(self) -> dict[str, Criterion]:
        return {c.name: c for c in self.study().criteria}

    # ------------------------------------------------------------------ raters and tokens
    def _group_rule(self) -> tuple[str, int]:
        rule = self.meta("groups", {}) or {}
        return str(rule.get("by", "degree")), int(rule.get("experience_cut", 10))

    def rater_group(self, rater_id: str) -> str | None:
        by, cut = self._group_rule()
        return derive_group(self.background(rater_id), by=by, experience_cut=cut)

    def raters(self) -> list[RaterInfo]:
        rows = self.connection().execute(
            "SELECT r.rater_id, r.name, b.answers_json FROM raters r "
            "LEFT JOIN backgrounds b USING (rater_id) ORDER BY r.rater_id"
        ).fetchall()
        by, cut = self._group_rule()
        out = []
        for r in rows:
            answers = json.loads(r["answers_json"]) if r["answers_json"] else None
            out.append(RaterInfo(r["rater_id"], r["name"], derive_group(answers, by, cut), answers is not None))
        return out

    def issue_token(self, rater_id: str) -> str:
        """A fresh invite token for a rater; only its sha256 is stored, so older links stop working."""
        token = new_token()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE raters SET token_hash = ?, token_issued_at = ? WHERE rater_id = ?",
                (token_hash(token), now_iso(), rater_id),
            )
            if cur.rowcount != 1:
                raise KeyError(f"no rater {rater_id!r} in this study")
        return token

    def issue_admin_token(self) -> str:
        token = new_token()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('admin_token_hash', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (token_hash(token),),
            )
        self._meta_cache = None
        return token

    def rater_for_token(self, token: str) -> str | None:
        if not token:
            return None
        digest = token_hash(token)
        found = None
        # compare against every stored hash (constant time each) rather than a WHERE lookup
        for row in self.connection().execute("SELECT rater_id, token_hash FROM raters WHERE token_hash IS NOT NULL"):
            if hmac.compare_digest(row["token_hash"], digest):
                found = row["rater_id"]
        return found

    def is_admin_token(self, token: str) -> bool:
        if not token:
            return False
        row = self.connection().execute("SELECT value FROM meta WHERE key = 'admin_token_hash'").fetchone()
        return row is not None and hmac.compare_digest(row["value"], token_hash(token))

    # ------------------------------------------------------------------ background
    def background(self, rater_id: str) -> dict | None:
        row = self.connection().execute(
            "SELECT answers_json FROM backgrounds WHERE rater_id = ?", (rater_id,)
        ).fetchone()
        return json.loads(row["answers_json"]) if row else None

    def save_background(self, rater_id: str, answers: dict) -> None:
        clean = validate_background(answers)
        ts = now_iso()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM raters WHERE rater_id = ?", (rater_id,)).fetchone() is None:
                raise PermissionError(f"no rater {rater_id!r} in this study")
            conn.execute(
                "INSERT INTO backgrounds(rater_id, answers_json, created_at, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT(rater_id) DO UPDATE SET answers_json = excluded.answers_json, "
                "updated_at = excluded.updated_at",
                (rater_id, json.dumps(clean, sort_keys=True), ts, ts),
            )

    # ------------------------------------------------------------------ work
    def assignments(self, rater_id: str) -> list[Assignment]:
        rows = self.connection().execute(
            "SELECT position, item_id, is_retest FROM assignments WHERE rater_id = ? ORDER BY position",
            (rater_id,),
        ).fetchall()
        return [Assignment(int(r["position"]), r["item_id"], bool(r["is_retest"])) for r in rows]

    def assignment(self, rater_id: str, position: int) -> Assignment:
        """This rater's assignment at `position`; PermissionError when it is not theirs."""
        row = self.connection().execute(
            "SELECT position, item_id, is_retest FROM assignments WHERE rater_id = ? AND position = ?",
            (rater_id, int(position)),
        ).fetchone()
        if row is None:
            raise PermissionError(f"position {position} is not assigned to rater {rater_id!r}")
        return Assignment(int(row["position"]), row["item_id"], bool(row["is_retest"]))

    def item(self, item_id: str) -> ItemView:
        row = self.connection().execute(
            "SELECT i.item_id, i.context_id, i.technique, i.response, c.turns_json, c.risk_flag, "
            "c.media_kind, c.clip_name FROM items i JOIN contexts c USING (context_id) WHERE i.item_id = ?",
            (item_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no item {item_id!r} in this study")
        return ItemView(
            item_id=row["item_id"],
            context_id=row["context_id"],
            turns=json.loads(row["turns_json"]),
            technique=row["technique"],
            response=row["response"],
            risk_flag=bool(row["risk_flag"]),
            media_kind=row["media_kind"],
            clip_name=row["clip_name"],
        )

    def _state(self, conn: sqlite3.Connection, rater_id: str, position: int) -> RatingState:
        crit = self._criteria()
        scores: dict[str, int] = {}
        stamps: list[str] = []
        for r in conn.execute(
            "SELECT criterion, score, updated_at FROM ratings WHERE rater_id = ? AND position = ?",
            (rater_id, position),
        ):
            stamps.append(r["updated_at"])
            if r["score"] is not None and r["criterion"] in crit:
                scores[r["criterion"]] = int(r["score"])
        note = conn.execute(
            "SELECT comment, flags_json, updated_at FROM notes WHERE rater_id = ? AND position = ?",
            (rater_id, position),
        ).fetchone()
        comment, flags = "", []
        if note is not None:
            comment, flags = note["comment"], json.loads(note["flags_json"])
            stamps.append(note["updated_at"])
        return RatingState(
            scores=scores,
            comment=comment,
            flags=flags,
            updated_at=max(stamps) if stamps else None,
            complete=all(name in scores for name in crit),
        )

    def rating_state(self, rater_id: str, position: int) -> RatingState:
        self.assignment(rater_id, position)
        return self._state(self.connection(), rater_id, int(position))

    def save_score(self, rater_id: str, position: int, criterion: str, score: int | None) -> RatingState:
        """Set (or clear, with None) one criterion's score; a change of an existing value is logged."""
        crit = self._criteria().get(criterion)
        if crit is None:
            raise ValueError(f"unknown criterion {criterion!r}; this study rates {list(self._criteria())}")
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, int):
                try:
                    as_int = int(str(score))
                except ValueError:
                    raise ValueError(f"{criterion}: score must be a whole number, got {score!r}") from None
                score = as_int
            if score not in crit.scale:
                raise ValueError(f"{criterion}: score {score} is off the scale {crit.scale_min}-{crit.scale_max}")
        position = int(position)
        config_hash = self.study().config_hash
        with self._write() as conn:
            self._check_assigned(conn, rater_id, position)
            ts = now_iso()
            row = conn.execute(
                "SELECT score FROM ratings WHERE rater_id = ? AND position = ? AND criterion = ?",
                (rater_id, position, criterion),
            ).fetchone()
            if row is None:
                if score is not None:
                    conn.execute(
                        "INSERT INTO ratings(rater_id, position, criterion, score, created_at, updated_at, config_hash)"
                        " VALUES (?,?,?,?,?,?,?)",
                        (rater_id, position, criterion, score, ts, ts, config_hash),
                    )
            elif row["score"] != score:
                conn.execute(
                    "UPDATE ratings SET score = ?, updated_at = ?, config_hash = ? "
                    "WHERE rater_id = ? AND position = ? AND criterion = ?",
                    (score, ts, config_hash, rater_id, position, criterion),
                )
                if row["score"] is not None:
                    self._log_edit(conn, rater_id, position, criterion, row["score"], score, ts)
            return self._state(conn, rater_id, position)

    def save_note(self, rater_id: str, position: int, comment: str, flags: list[str]) -> RatingState:
        """Set the comment and flags of one position; changes of existing values are logged."""
        comment = "" if comment is None else str(comment)
        flags = list(dict.fromkeys(flags or []))
        bad = [f for f in flags if f not in FLAG_KINDS]
        if bad:
            raise ValueError(f"unknown flag(s) {bad}; flags are {list(FLAG_KINDS)}")
        flags = [f for f in FLAG_KINDS if f in flags]  # canonical order
        position = int(position)
        config_hash = self.study().config_hash
        with self._write() as conn:
            self._check_assigned(conn, rater_id, position)
            ts = now_iso()
            row = conn.execute(
                "SELECT comment, flags_json FROM notes WHERE rater_id = ? AND position = ?", (rater_id, position)
            ).fetchone()
            if row is None:
                if comment or flags:
                    conn.execute(
                        "INSERT INTO notes(rater_id, position, comment, flags_json, created_at, updated_at, config_hash)"
                        " VALUES (?,?,?,?,?,?,?)",
                        (rater_id, position, comment, json.dumps(flags), ts, ts, config_hash),
                    )
            else:
                old_flags = json.loads(row["flags_json"])
                if row["comment"] != comment or old_flags != flags:
                    conn.execute(
                        "UPDATE notes SET comment = ?, flags_json = ?, updated_at = ?, config_hash = ? "
                        "WHERE rater_id = ? AND position = ?",
                        (comment, json.dumps(flags), ts, config_hash, rater_id, position),
                    )
                    if row["comment"] != comment and row["comment"]:
                        self._log_edit(conn, rater_id, position, "comment", row["comment"], comment, ts)
                    if old_flags != flags and old_flags:
                        self._log_edit(conn, rater_id, position, "flags", json.dumps(old_flags), json.dumps(flags), ts)
            return self._state(conn, rater_id, position)

    @staticmethod
    def _check_assigned(conn: sqlite3.Connection, rater_id: str, position: int) -> None:
        if conn.execute(
            "SELECT 1 FROM assignments WHERE rater_id = ? AND position = ?", (rater_id, position)
        ).fetchone() is None:
            raise PermissionError(f"position {position} is not assigned to rater {rater_id!r}")

    @staticmethod
    def _log_edit(conn, rater_id: str, position: int, field_name: str, old: Any, new: Any, ts: str) -> None:
        conn.execute(
            "INSERT INTO edits(rater_id, position, field, old, new, at) VALUES (?,?,?,?,?,?)",
            (rater_id, position, field_name, None if old is None else str(old), None if new is None else str(new), ts),
        )

    def log_view(
        self, rater_id: str, position: int, seconds: float, watched_fraction: float | None, seeks: int, plays: int
    ) -> None:
        """Accumulate viewing: seconds and seeks/plays add up, the watched fraction keeps its maximum."""
        seconds = float(seconds)
        if not (seconds >= 0 and seconds < 86400):
            raise ValueError(f"seconds must be between 0 and 86400, got {seconds}")
        if watched_fraction is not None:
            watched_fraction = float(watched_fraction)
            if not 0.0 <= watched_fraction <= 1.0:
                raise ValueError(f"watched_fraction must be between 0 and 1, got {watched_fraction}")
        seeks, plays = int(seeks), int(plays)
        if seeks < 0 or plays < 0:
            raise ValueError("seeks and plays must be >= 0")
        position = int(position)
        with self._write() as conn:
            self._check_assigned(conn, rater_id, position)
            ts = now_iso()
            conn.execute(
                "INSERT INTO views(rater_id, position, seconds, watched_fraction, seeks, plays, first_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(rater_id, position) DO UPDATE SET "
                "seconds = seconds + excluded.seconds, "
                "watched_fraction = CASE WHEN excluded.watched_fraction IS NULL THEN watched_fraction "
                "  WHEN watched_fraction IS NULL THEN excluded.watched_fraction "
                "  ELSE max(watched_fraction, excluded.watched_fraction) END, "
                "seeks = seeks + excluded.seeks, plays = plays + excluded.plays, updated_at = excluded.updated_at",
                (rater_id, position, seconds, watched_fraction, seeks, plays, ts, ts),
            )

    def view(self, rater_id: str, position: int) -> dict | None:
        row = self.connection().execute(
            "SELECT seconds, watched_fraction, seeks, plays FROM views WHERE rater_id = ? AND position = ?",
            (rater_id, int(position)),
        ).fetchone()
        return dict(row) if row else None

    def edits(self, rater_id: str) -> list[dict]:
        rows = self.connection().execute(
            "SELECT e.edit_id, e.position, a.item_id, e.field, e.old, e.new, e.at FROM edits e "
            "JOIN assignments a ON a.rater_id = e.rater_id AND a.position = e.position "
            "WHERE e.rater_id = ? ORDER BY e.edit_id",
            (rater_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    def _complete_positions(self, rater_id: str | None = None) -> dict[tuple[str, int], dict[str, int]]:
        """{(rater_id, position): {criterion: score}} for positions with every criterion scored."""
        names = list(self._criteria())
        sql = "SELECT rater_id, position, criterion, score FROM ratings WHERE score IS NOT NULL"
        args: tuple = ()
        if rater_id is not None:
            sql += " AND rater_id = ?"
            args = (rater_id,)
        got: dict[tuple[str, int], dict[str, int]] = {}
        for r in self.connection().execute(sql, args):
            if r["criterion"] in names:
                got.setdefault((r["rater_id"], int(r["position"])), {})[r["criterion"]] = int(r["score"])
        return {k: v for k, v in got.items() if len(v) == len(names)}

    def progress(self, rater_id: str) -> tuple[int, int]:
        total = self.connection().execute(
            "SELECT count(*) FROM assignments WHERE rater_id = ?", (rater_id,)
        ).fetchone()[0]
        return len(self._complete_positions(rater_id)), int(total)

    def next_position(self, rater_id: str) -> int | None:
        done = {p for (_, p) in self._complete_positions(rater_id)}
        for a in self.assignments(rater_id):
            if a.position not in done:
                return a.position
        return None

    # ------------------------------------------------------------------ clips
    def clip_file(self, clip_name: str) -> Path | None:
        """The clip's file, only for names this study recorded (no path from the request is ever joined)."""
        if not clip_name:
            return None
        row = self.connection().execute(
            "SELECT clip_name FROM contexts WHERE clip_name = ?", (clip_name,)
        ).fetchone()
        if row is None:
            return None
        clips = (self.corpus_root / CLIPS_DIR).resolve()
        path = (clips / row["clip_name"]).resolve()
        if path.parent != clips or not path.is_file():
            return None
        return path

    # ------------------------------------------------------------------ dashboard
    def dashboard(self) -> dict:
        """Progress and quality flags per rater, agreement per criterion (see agreement.py).

        straight_lining: a rater with >= STRAIGHT_LINING_MIN_ITEMS complete items whose scores have
        zero variance within every criterion (this includes "the same score on every criterion of
        every item"). too_fast: the rater's median seconds per complete item is below the study's
        too_fast_seconds. Both stay False until there is data to judge.
        """
        from emoguide.evaluation.rating.agreement import agreement_by_criterion, is_straight_lining

        study = self.study()
        conn = self.connection()
        complete = self._complete_positions()
        seconds = {
            (r["rater_id"], int(r["position"])): float(r["seconds"])
            for r in conn.execute("SELECT rater_id, position, seconds FROM views")
        }
        totals = {r[0]: int(r[1]) for r in conn.execute("SELECT rater_id, count(*) FROM assignments GROUP BY rater_id")}
        raters = []
        for info in self.raters():
            mine = {p: s for (rid, p), s in complete.items() if rid == info.rater_id}
            secs = [seconds[(info.rater_id, p)] for p in mine if seconds.get((info.rater_id, p))]
            median = statistics.median(secs) if secs else None
            total = totals.get(info.rater_id, 0)
            raters.append({
                "rater_id": info.rater_id,
                "name": info.name,
                "group": info.group,
                "has_background": info.has_background,
                "done": len(mine),
                "total": total,
                "missing": total - len(mine),
                "median_seconds_per_item": median,
                "straight_lining": is_straight_lining(list(mine.values()), STRAIGHT_LINING_MIN_ITEMS),
                "too_fast": median is not None and median < study.too_fast_seconds,
            })
        # every score of a first showing (retest copies measure intra-rater reliability, not agreement)
        scores = [
            (r["rater_id"], r["item_id"], r["criterion"], int(r["score"]))
            for r in conn.execute(
                "SELECT a.rater_id, a.item_id, s.criterion, s.score FROM ratings s JOIN assignments a "
                "ON a.rater_id = s.rater_id AND a.position = s.position "
                "WHERE a.is_retest = 0 AND s.score IS NOT NULL"
            )
        ]
        return {"raters": raters, "agreement": agreement_by_criterion(scores, study.criteria)}
