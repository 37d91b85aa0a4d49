"""URL sources: URL list files and downloads with yt-dlp.

Downloads fail fast when the machine is offline or the host cannot be reached: yt-dlp reports a
DNS or connection failure within a fraction of a second, and retrying that would only make a
batch of URLs wait. Only errors that can pass (HTTP 5xx/429, timeouts, a dropped connection) are
retried, with a short backoff.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from emoguide.errors import InputError, require

URL_RE = re.compile(r"^https?://\S+$", re.IGNORECASE)

# Messages that mean "this machine cannot reach the host": retrying will not help.
_UNREACHABLE = re.compile(
    r"name or service not known|temporary failure in name resolution|nodename nor servname|"
    r"no address associated|getaddrinfo failed|failed to resolve|name resolution|"
    r"connection refused|network is unreachable|no route to host|host is unreachable|"
    r"errno -[235]\b|errno 11[013]\b|errno 101\b|errno 113\b",
    re.IGNORECASE,
)
# Messages that may pass on a second try.
_TRANSIENT = re.compile(
    r"http error 5\d\d|http error 429|timed out|timeout|connection reset|incompleteread|"
    r"remote end closed|connection aborted|temporarily unavailable",
    re.IGNORECASE,
)

# yt-dlp format choice: one file with audio and video (no ffmpeg merge needed), at most 720p,
# which is plenty for face and voice models and keeps downloads small.
DEFAULT_FORMAT = "best[height<=720][acodec!=none][vcodec!=none]/best[acodec!=none]/best"


class DownloadError(InputError):
    """A URL that could not be downloaded; `offline` is True for DNS/connection failures."""

    def __init__(self, url: str, problem: str, offline: bool = False):
        self.url = url
        self.offline = offline
        super().__init__(url, problem)


@dataclass
class DownloadResult:
    path: Path
    title: str | None
    uploader: str | None
    url: str
    licence: str | None
    id: str | None = None
    webpage_url: str | None = None
    duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def is_url(text: str) -> bool:
    return bool(URL_RE.match(str(text).strip()))


def read_url_list(path: str | Path) -> list[str]:
    """URLs from a text file: one per line; blank lines and `#` comments (whole-line, or after
    whitespace at the end of a line) are ignored; duplicates are kept once, in order. A line that
    is not an http(s) URL raises `InputError` naming the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise InputError(path, "no such file") from err
    except UnicodeDecodeError as err:
        raise InputError(path, "not a text file (URL lists are UTF-8 text, one URL a line)") from err
    urls: dict[str, None] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if not is_url(line):
            raise InputError(path, f"not an http(s) URL: {line[:80]!r}", line=n)
        urls.setdefault(line, None)
    return list(urls)


def looks_like_url_list(path: str | Path, max_bytes: int = 1 << 20) -> bool:
    """A .urls file, or a small text file whose non-comment lines are all http(s) URLs."""
    path = Path(path)
    if path.suffix.lower() == ".urls":
        return True
    if path.suffix.lower() != ".txt":
        return False
    try:
        if path.stat().st_size > max_bytes:
            return False
        lines = [
            re.sub(r"(^|\s)#.*$", "", line).strip()
            for line in path.read_text(encoding="utf-8-sig").splitlines()
        ]
    except (OSError, UnicodeDecodeError):
        return False
    lines = [x for x in lines if x]
    return bool(lines) and all(is_url(x) for x in lines)


class _Log:
    """Collect yt-dlp's messages instead of printing them."""

    def __init__(self):
        self.messages: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.messages.append(msg)

    def error(self, msg: str) -> None:
        self.messages.append(msg)


def _clean(msg: str) -> str:
    msg = re.sub(r"\x1b\[[0-9;]*m", "", str(msg))
    return re.sub(r"^ERROR:\s*", "", msg).strip()


def classify(message: str) -> str:
    """'offline' (cannot reach the host), 'transient' (may pass), or 'permanent'."""
    if _UNREACHABLE.search(message):
        return "offline"
    if _TRANSIENT.search(message):
        return "transient"
    return "permanent"


def download(
    url: str,
    out_dir: str | Path,
    retries: int = 3,
    *,
    fmt: str = DEFAULT_FORMAT,
    socket_timeout: float = 20.0,
    backoff_s: float = 1.0,
    max_backoff_s: float = 8.0,
) -> DownloadResult:
    """Download one URL into `out_dir` with yt-dlp; return the file and its metadata.

    The file is named `<title>-<id>.<ext>` (restricted to safe characters). Raises
    `DownloadError` (an `InputError`) naming the URL: at once when the host cannot be reached
    (offline, DNS, refused), after `retries` more tries with backoff for transient errors.
    """
    yt_dlp = require("yt_dlp", "media", "yt-dlp downloads URL sources")
    url = str(url).strip()
    if not is_url(url):
        raise DownloadError(url, "not an http(s) URL")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        log = _Log()
        opts = {
            "outtmpl": str(out_dir / "%(title).80B-%(id)s.%(ext)s"),
            "restrictfilenames": True,
            "format": fmt,
            "noplaylist": True,
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "logger": log,
            "retries": 0,
            "fragment_retries": 0,
            "extractor_retries": 0,
            "socket_timeout": socket_timeout,
            "overwrites": False,
            "continuedl": True,
        }
        try:
            with yt_dlp.YoutubeDL(opts) as ydl:
                info = ydl.extract_info(url, download=True)
                if info is None:
                    raise DownloadError(url, "yt-dlp returned no information for this URL")
                if info.get("_type") == "playlist":
                    raise DownloadError(
                        url, "is a playlist; list its videos' URLs one per line in a .urls file"
                    )
                path = None
                for req in info.get("requested_downloads") or []:
                    if req.get("filepath"):
                        path = Path(req["filepath"])
                if path is None:
                    path = Path(ydl.prepare_filename(info))
        except yt_dlp.utils.DownloadError as err:
            msg = _clean(str(err))
            kind = classify(msg + " " + " ".join(log.messages))
            if kind == "offline":
                raise DownloadError(
                    url,
                    f"download failed: cannot reach the host (offline, DNS or connection "
                    f"failure; not retried): {msg}",
                    offline=True,
                ) from err
            if kind == "transient" and attempt < retries:
                attempt += 1
                time.sleep(min(max_backoff_s, backoff_s * 2 ** (attempt - 1)))
                continue
            tries = f" after {attempt + 1} tries" if attempt else ""
            raise DownloadError(url, f"download failed{tries}: {msg}") from err
        if not path.exists():
            raise DownloadError(url, f"yt-dlp reported success but {path} does not exist")
        return DownloadResult(
            path=path,
            title=info.get("title"),
            uploader=info.get("uploader") or info.get("channel"),
            url=url,
            licence=info.get("license"),
            id=info.get("id"),
            webpage_url=info.get("webpage_url"),
            duration_s=info.get("duration"),
        )
