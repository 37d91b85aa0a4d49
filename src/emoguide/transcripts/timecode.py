"""Timestamps: parse what transcripts contain into seconds, and format seconds back.

Inside emoguide, times are seconds (float) from the start of the media (docs/corpus.md).
Transcripts carry them as ``hh:mm:ss`` (the paper's layout), ``hh:mm:ss.mmm`` (WebVTT),
``hh:mm:ss,mmm`` (SRT), ``mm:ss`` or plain seconds.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from emoguide.errors import InputError

_CLOCK = re.compile(
    r"^(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+(?:[.,]\d*)?)$"
)
_SECONDS = re.compile(r"^(?P<s>\d+(?:[.,]\d*)?|[.,]\d+)\s*(?:s|sec|secs|seconds)?$", re.IGNORECASE)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover
        pass
    return False


def parse_time(value: Any, *, path: str | Path | None = None, line: int | None = None) -> float | None:
    """Seconds from a timestamp.

    Accepts ``hh:mm:ss``, ``hh:mm:ss.mmm``, ``hh:mm:ss,mmm``, ``mm:ss(.mmm)``, plain seconds
    (``"12.5"``, ``"12,5"``, ``"12.5s"``) and numbers. Empty, None and NaN give None. Anything else
    (including negative times and minutes/seconds fields of 60 or more) raises `InputError` naming
    `path` and `line`.
    """
    if _is_missing(value):
        return None
    where = path if path is not None else "<input>"
    if isinstance(value, bool):
        raise InputError(where, f"unparseable time {value!r}", line)
    if isinstance(value, (int, float)):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise InputError(where, f"unparseable time {value!r} (must be a finite, non-negative number)", line)
        return seconds
    if hasattr(value, "total_seconds"):  # datetime.timedelta, pandas.Timedelta
        seconds = float(value.total_seconds())
        if seconds < 0:
            raise InputError(where, f"negative time {value!r}", line)
        return seconds
    text = str(value).strip()
    if not text or text.lower() in ("nan", "none", "null", "n/a", "na"):
        return None
    m = _SECONDS.match(text)
    if m:
        return float(m.group("s").replace(",", "."))
    m = _CLOCK.match(text)
    if m:
        hours = int(m.group("h")) if m.group("h") is not None else 0
        minutes = int(m.group("m"))
        seconds = float(m.group("s").replace(",", "."))
        if seconds >= 60 or (m.group("h") is not None and minutes >= 60):
            raise InputError(
                where, f"unparseable time {text!r} (minutes and seconds must be below 60)", line
            )
        return hours * 3600 + minutes * 60 + seconds
    raise InputError(
        where,
        f"unparseable time {text!r} (expected hh:mm:ss, hh:mm:ss.mmm, mm:ss or seconds)",
        line,
    )


def _check(seconds: float) -> float:
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format time {seconds!r}: must be a finite, non-negative number")
    return seconds


def format_hms(seconds: float | None, *, millis: bool = False) -> str:
    """``hh:mm:ss`` (the paper's transcript layout), rounded to the nearest second.

    With ``millis=True``: ``hh:mm:ss.mmm``. None/NaN give an empty string.
    """
    if _is_missing(seconds):
        return ""
    seconds = _check(seconds)
    if millis:
        return format_timestamp(seconds, sep=".")
    total = int(math.floor(seconds + 0.5))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def format_timestamp(seconds: float, *, sep: str = ".") -> str:
    """``hh:mm:ss.mmm`` (WebVTT, ``sep="."``) or ``hh:mm:ss,mmm`` (SRT, ``sep=","``)."""
    seconds = _check(seconds)
    total_ms = int(math.floor(seconds * 1000 + 0.5))
    h, rest = divmod(total_ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def format_srt_time(seconds: float) -> str:
    return format_timestamp(seconds, sep=",")


def format_vtt_time(seconds: float) -> str:
    return format_timestamp(seconds, sep=".")
