"""Error types that name the file, line and problem, so a batch can report and go on."""

from __future__ import annotations

from pathlib import Path


class EmoguideError(Exception):
    """Base class for errors a user can act on."""


class InputError(EmoguideError):
    """A bad input file: names the file, the line (when known) and what is wrong."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class MissingExtraError(EmoguideError):
    """An optional dependency is not installed; names the extra that provides it."""

    def __init__(self, package: str, extra: str, hint: str = ""):
        msg = (
            f"{package} is not installed. Install it with: pip install 'emoguide[{extra}]'"
            + (f" ({hint})" if hint else "")
        )
        super().__init__(msg)


def require(module: str, extra: str, hint: str = ""):
    """Import an optional module lazily, or raise MissingExtraError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingExtraError(module, extra, hint) from exc
