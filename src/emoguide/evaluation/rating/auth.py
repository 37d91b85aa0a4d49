"""Web sessions, CSRF tokens and the failed-login slowdown of the rating app.

Everything lives in the study's own SQLite file (tables `web_sessions`, `web_login_failures`,
created here with CREATE TABLE IF NOT EXISTS), so sessions survive a server restart and a rater
can resume on any device that opened the invite link.

- A session id is 32 random bytes; only its sha256 is stored, so a copy of ratings.sqlite does not
  hand out live sessions. The cookie is HttpOnly, SameSite=Strict, Path=/.
- Each session has its own CSRF token (random, sent back by htmx in the X-CSRF-Token header or by
  forms in a `csrf_token` field); SameSite=Strict already stops cross-site POSTs in current
  browsers, the token covers older ones and same-site attackers.
- Failed logins (a wrong or guessed invite token) are counted per client address; the answer to
  the next attempt from that client is delayed exponentially (base * 2**(failures-1), capped),
  and attempts from one client are serialised, so parallel guessing gains nothing. Invite tokens
  carry 256 bits, so this is defence in depth, not the only protection.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Callable

SESSION_COOKIE = "emoguide_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_TTL_S = 30 * 24 * 3600  # a study runs for weeks; a rater should not have to re-open the link daily
#: seen-at is refreshed at most this often, so reading pages does not write on every request
TOUCH_EVERY_S = 300

SCHEMA = """
CREATE TABLE IF NOT EXISTS web_sessions (
    session_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('rater', 'admin')),
    rater_id TEXT,
    token_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS web_login_failures (
    client TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_at REAL NOT NULL
);
"""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class WebSession:
    kind: str  # "rater" | "admin"
    rater_id: str | None
    csrf: str
    session_hash: str
    token_hash: str  # sha256 of the invite token that opened it: a new invite ends the session

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode("utf-8"), self.csrf.encode("utf-8"))


class _Tables:
    def __init__(self, connection: Callable[[], sqlite3.Connection]):
        self._connection = connection
        conn = connection()
        conn.executescript(SCHEMA)

    def _write(self, sql: str, args: tuple) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(sql, args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class SessionStore(_Tables):
    """Web sessions in the study file. `connection` returns this thread's (autocommit) connection."""

    def __init__(
        self,
        connection: Callable[[], sqlite3.Connection],
        ttl_s: float = SESSION_TTL_S,
        current_token_hash: Callable[[str, str | None], str | None] | None = None,
    ):
        """current_token_hash(kind, rater_id): the hash of the invite token valid now (None: none);
        a session opened with an older token is ended, so re-inviting a rater whose link leaked
        also signs out every browser that used the old link."""
        super().__init__(connection)
        self.ttl_s = ttl_s
        self.current_token_hash = current_token_hash

    def create(self, kind: str, rater_id: str | None, token: str) -> tuple[str, WebSession]:
        """A new session opened with invite `token`; returns the raw id (for the cookie, never
        stored) and the session."""
        if kind not in ("rater", "admin"):
            raise ValueError(f"session kind must be rater or admin, got {kind!r}")
        raw = secrets.token_urlsafe(32)
        session = WebSession(kind, rater_id, secrets.token_urlsafe(32), _digest(raw), _digest(token))
        now = time.time()
        self._write(
            "INSERT INTO web_sessions(session_hash, kind, rater_id, token_hash, csrf, created_at, seen_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (session.session_hash, kind, rater_id, session.token_hash, session.csrf, now, now),
        )
        return raw, session

    def get(self, raw: str | None) -> WebSession | None:
        if not raw or len(raw) > 200:
            return None
        digest = _digest(raw)
        row = self._connection().execute(
            "SELECT kind, rater_id, csrf, seen_at, token_hash FROM web_sessions WHERE session_hash = ?", (digest,)
        ).fetchone()
        if row is None:
            return None
        session = WebSession(row[0], row[1], row[2], digest, row[4])
        now = time.time()
        if now - float(row[3]) > self.ttl_s:
            self.delete_hash(digest)
            return None
        if self.current_token_hash is not None:
            current = self.current_token_hash(session.kind, session.rater_id)
            if current is None or not hmac.compare_digest(current, session.token_hash):
                self.delete_hash(digest)
                return None
        if now - float(row[3]) > TOUCH_EVERY_S:
            self._write("UPDATE web_sessions SET seen_at = ? WHERE session_hash = ?", (now, digest))
        return session

    def delete_hash(self, session_hash: str) -> None:
        self._write("DELETE FROM web_sessions WHERE session_hash = ?", (session_hash,))


class LoginThrottle(_Tables):
    """Counts failed logins per client and says how long to hold that client's next answer."""

    def __init__(
        self,
        connection: Callable[[], sqlite3.Connection],
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        forget_after_s: float = 3600.0,
    ):
        super().__init__(connection)
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.forget_after_s = forget_after_s

    def failures(self, client: str) -> int:
        row = self._connection().execute(
            "SELECT failures, last_at FROM web_login_failures WHERE client = ?", (client,)
        ).fetchone()
        if row is None or time.time() - float(row[1]) > self.forget_after_s:
            return 0
        return int(row[0])

    def delay_for(self, client: str) -> float:
        """Seconds to wait before answering this client's next login attempt (0 when it never failed)."""
        n = self.failures(client)
        if n <= 0:
            return 0.0
        return min(self.max_delay_s, self.base_delay_s * 2 ** (n - 1))

    def record_failure(self, client: str) -> int:
        n = self.failures(client) + 1
        self._write(
            "INSERT INTO web_login_failures(client, failures, last_at) VALUES (?,?,?) "
            "ON CONFLICT(client) DO UPDATE SET failures = excluded.failures, last_at = excluded.last_at",
            (client, n, time.time()),
        )
        return n

    def clear(self, client: str) -> None:
        self._write("DELETE FROM web_login_failures WHERE client = ?", (client,))
