"""The one progress protocol: the runner emits `Event`s, the parent renders them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    kind: str  # "plan" | "submit" | "done" | "skipped" | "failed" | "stage_end" | "interrupted"
    stage: str
    session: str = ""
    reason: str = ""
    seconds: float = 0.0
    total: int = 0  # for "plan": how many tasks this stage has


EventSink = Callable[[Event], None]


class RichProgress:
    """A rich progress bar per stage, fed by events (`emoguide run` and the stage verbs)."""

    def __init__(self, console=None, title: str = "run"):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn(f"[bold]{title}[/] {{task.description:<12}}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=self.console, transient=False,
        )
        self.tasks: dict[str, int] = {}
        self.started = False

    def __call__(self, ev: Event) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        if ev.kind == "plan":
            if ev.stage in self.tasks:  # a corpus stage announcing its real size
                self.progress.update(self.tasks[ev.stage], total=ev.total, completed=0)
            else:
                self.tasks[ev.stage] = self.progress.add_task(ev.stage, total=ev.total)
        elif ev.kind in ("done", "skipped", "failed") and ev.stage in self.tasks:
            self.progress.advance(self.tasks[ev.stage])
            if ev.kind == "failed":
                from rich.markup import escape

                self.progress.console.print(f"  [red]failed[/] {escape(f'{ev.stage} {ev.session}: {ev.reason}')}", highlight=False)

    def stop(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False
