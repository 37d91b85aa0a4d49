"""Error types that name the file, line and problem, so a batch can report and go on.

The CLI's one error policy (docs/cli.md): an `EmoguideError` is printed as one or two lines (what is
wrong, with which file or option, and what to do), never as a traceback; the process exits with the
error's `exit_code`: 2 for a usage error (nothing was done: a bad option value, an unknown session,
an invalid corpus.toml), 1 for work that failed. `--debug` (or EMOGUIDE_DEBUG=1) shows the traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


class EmoguideError(Exception):
    """Base class for errors a user can act on.

    `hint` is the optional second line (what to do); `exit_code` is the CLI's exit status.
    """

    exit_code = 1

    def __init__(self, *args: object, hint: str | None = None):
        super().__init__(*args)
        self.hint = hint


class InputError(EmoguideError):
    """A bad input file: names the file, the line (when known) and what is wrong."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None, hint: str | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}", hint=hint)


class UsageError(EmoguideError):
    """The command was given something it cannot use (an option value, a session id, a path of the
    wrong kind); nothing was done. Names the option when there is one."""

    exit_code = 2

    def __init__(self, problem: str, option: str | None = None, hint: str | None = None):
        self.option = option
        self.problem = problem
        super().__init__(f"{option}: {problem}" if option else problem, hint=hint)


class SettingsFileError(InputError):
    """corpus.toml (or another settings file) cannot be used: names the file, the line when the
    TOML is malformed, or the key whose value is wrong. A usage error: nothing was done."""

    exit_code = 2


class SessionNotFound(UsageError, KeyError):
    """Session ids that the corpus does not hold (a KeyError too, for callers that catch that)."""

    def __init__(self, missing: Iterable[str], corpus: str | Path | None = None,
                 available: Iterable[str] = (), option: str | None = None):
        import difflib

        self.missing = list(missing)
        self.available = sorted(available)
        where = f" in corpus {corpus}" if corpus is not None else ""
        names = ", ".join(repr(m) for m in self.missing)
        problem = f"no such session{'s' if len(self.missing) > 1 else ''} {names}{where}"
        close = [c for m in self.missing for c in self.available if c.casefold() == m.casefold()]
        close += [c for m in self.missing for c in difflib.get_close_matches(m, self.available, n=2)]
        if close:
            hint = f"did you mean {', '.join(dict.fromkeys(close))}?"
        elif self.available:
            shown = ", ".join(self.available[:8]) + (f", ... ({len(self.available)} in all)" if len(self.available) > 8 else "")
            hint = f"its sessions: {shown}"
        else:
            hint = "the corpus has no sessions yet: import some with `emoguide ingest`"
        if corpus is not None:
            hint += f" (`emoguide status --corpus {corpus}` lists them)"
        UsageError.__init__(self, problem, option=option, hint=hint)

    def __str__(self) -> str:  # KeyError's would quote the message
        return Exception.__str__(self)


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
