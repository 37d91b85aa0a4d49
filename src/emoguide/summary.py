"""Done / skipped / failed bookkeeping for a batch, so one bad session never stops the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Status = Literal["done", "skipped", "failed"]


@dataclass
class Outcome:
    item: str  # session id, file name, or row key
    stage: str
    status: Status
    reason: str = ""


@dataclass
class BatchSummary:
    title: str = "summary"
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, item: str, stage: str, status: Status, reason: str = "") -> Outcome:
        out = Outcome(item, stage, status, reason)
        self.outcomes.append(out)
        return out

    def extend(self, other: "BatchSummary") -> None:
        self.outcomes.extend(other.outcomes)

    def count(self, status: Status) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def line(self) -> str:
        return (
            f"{self.title}: {self.count('done')} done, {self.count('skipped')} skipped, "
            f"{self.count('failed')} failed"
        )

    def print(self, console=None, show_done: bool = False) -> None:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = console or Console(stderr=True)
        rows = [o for o in self.outcomes if show_done or o.status != "done"]
        if rows:
            table = Table(title=self.title, show_lines=False)
            for col in ("item", "stage", "status", "reason"):
                table.add_column(col, overflow="fold")
            style = {"done": "green", "skipped": "yellow", "failed": "red"}
            for o in rows:
                # Text: reasons hold [llm.providers.NAME] and paths, which are not rich markup
                table.add_row(Text(o.item), Text(o.stage), Text(o.status, style=style[o.status]), Text(o.reason))
            console.print(table)
        console.print(self.line(), markup=False, highlight=False)
