"""The corpus lock: one writer at a time (docs/corpus.md, "One writer at a time").

Every command that writes the corpus (`run`, the stage verbs, `ingest`, `roles --set`, a saved
option) holds an exclusive `flock` on `<corpus>/.emoguide.lock` while it works. A second writer
does not wait by default: it stops at once with a message naming the holder (pid, command, start
time). With `wait` seconds (`--wait` on the stage verbs, or `EMOGUIDE_LOCK_WAIT=SECONDS` for every
command) it says whom it waits for and waits that long before giving up.

Why flock: the kernel releases the lock when its holder exits, however it exits (SIGKILL, a
crash, a reboot), so a lock left by a dead process never blocks anyone; the holder's pid and
command in the file are only for the message, and every new holder rewrites them. The file itself
is never deleted: removing it while another process waits on it would let two processes hold
"the" lock on two different inodes.

The lock is re-entrant within a process (the CLI takes it for a whole verb, and `run_stages`,
`Corpus.save_settings` take it again inside), and it is per process, not per thread. Read-only
commands (`status`, `export`, `prompts`) do not take it. On a cluster (`--executor ray`) only the
parent takes it; workers never write. flock on NFS is emulated with POSIX locks by Linux (>= 2.6.12).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from emoguide.errors import EmoguideError

LOCK_NAME = ".emoguide.lock"
WAIT_ENV = "EMOGUIDE_LOCK_WAIT"


class CorpusLocked(EmoguideError):
    """Another process holds the corpus lock (exit code 1: the work was not done; rerun later)."""

    exit_code = 1

    def __init__(self, path: str | Path, holder: dict[str, Any] | None, waited: float = 0.0):
        self.path = str(path)
        self.holder = holder or {}
        self.waited = waited
        who = describe_holder(self.holder)
        after = f" after waiting {waited:.0f} s" if waited else ""
        super().__init__(
            f"{Path(path).parent}: the corpus is in use by {who}{after}; "
            f"rerun when it has finished, or wait for it with --wait SECONDS (or {WAIT_ENV}=SECONDS)"
        )


def describe_holder(holder: dict[str, Any]) -> str:
    pid = holder.get("pid")
    if not pid:
        return "another process (pid unknown)"
    out = f"pid {pid}"
    if holder.get("host") and holder.get("host") != socket.gethostname():
        out += f" on {holder['host']}"
    if holder.get("command"):
        out += f" ({holder['command']}"
        out += f", since {holder['started']})" if holder.get("started") else ")"
    return out


def read_holder(path: str | Path) -> dict[str, Any]:
    """The pid/command/start recorded by the current holder ({} when none or unreadable)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def default_wait() -> float:
    try:
        return max(0.0, float(os.environ.get(WAIT_ENV, "0") or 0))
    except ValueError:
        return 0.0


def _command_line() -> str:
    argv = list(sys.argv)
    if argv:
        argv[0] = Path(argv[0]).name
        if argv[0] in ("__main__.py", "-m"):
            argv[0] = "emoguide"
    text = " ".join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


# realpath of the lock file -> [fd, depth]
_held: dict[str, list[int]] = {}
_guard = threading.RLock()


def _stderr_notice(message: str) -> None:
    print(f"waiting: {message}", file=sys.stderr, flush=True)


class CorpusLock:
    """`with CorpusLock(root):` holds the corpus lock (re-entrant in this process)."""

    def __init__(self, root: str | Path, command: str | None = None, wait: float | None = None,
                 on_wait: Callable[[str], None] | None = None, poll_s: float = 0.1):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.command = command
        self.wait = default_wait() if wait is None else max(0.0, float(wait))
        self.on_wait = on_wait or _stderr_notice
        self.poll_s = poll_s
        self._key = ""
        self._acquired = False

    @property
    def held(self) -> bool:
        return self._acquired

    def acquire(self) -> "CorpusLock":
        if self._acquired:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        self._key = os.path.realpath(self.path)
        with _guard:
            if self._key in _held:
                _held[self._key][1] += 1
                self._acquired = True
                return self
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            t0 = time.monotonic()
            told = False
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        waited = time.monotonic() - t0
                        holder = read_holder(self.path)
                        if not holder.get("pid") and waited < 0.3:
                            # the holder has the lock but may not yet have written who it is
                            time.sleep(0.05)
                            continue
                        if waited >= self.wait:
                            raise CorpusLocked(self.path, holder, waited if self.wait > 0 else 0.0) from None
                        if not told:
                            self.on_wait(f"the corpus {self.root} is in use by {describe_holder(holder)}; "
                                         f"waiting up to {self.wait:.0f} s")
                            told = True
                        time.sleep(self.poll_s)
            except BaseException:
                os.close(fd)
                raise
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": self.command or _command_line(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            data = (json.dumps(info) + "\n").encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            _held[self._key] = [fd, 1]
            self._acquired = True
        return self

    def release(self) -> None:
        if not self._acquired:
            return
        self._acquired = False
        with _guard:
            entry = _held.get(self._key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            fd = entry[0]
            del _held[self._key]
            try:
                os.ftruncate(fd, 0)  # no stale holder info for the next reader
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "CorpusLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def corpus_lock(root: str | Path, command: str | None = None, wait: float | None = None,
                on_wait: Callable[[str], None] | None = None) -> CorpusLock:
    """A `CorpusLock` for the corpus at `root` (use as `with corpus_lock(root):`)."""
    return CorpusLock(root, command=command, wait=wait, on_wait=on_wait)


def held_here(root: str | Path) -> bool:
    """Whether this process holds the lock of the corpus at `root`."""
    with _guard:
        return os.path.realpath(Path(root) / LOCK_NAME) in _held
