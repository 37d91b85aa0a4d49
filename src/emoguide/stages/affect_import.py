"""`emoguide affect --from-csv`: merge per-utterance affect values from a CSV into the sessions it
names (emoguide.affect.importer). A verb, not a registry stage, but it runs through the runner
like one, so resume, errors and stages.json work the same way.

The file is read and checked once, in the parent; each session gets its own rows as its task's
payload. Imported values go into the voice/face/text column groups the file provides (only where
the file has a value: an empty cell keeps what was there). Those groups belong to the voice,
face_affect and text_affect stages; like ingest, an import is an outside source of them, so the
stage has scope "source", the one exception to "one writer per column group". The dissonance
stage takes the imported file as an input (through this stage's record), so a new import reruns it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from emoguide.corpus.schema import CHANNELS, channel_columns
from emoguide.pipeline.stage import NotApplicable, Resources, Result, SessionView, Stage

NAME = "affect_import"


class AffectImportSettings(BaseModel):
    path: str = Field(..., description="the CSV/TSV: session_id, index and affect columns (voice_valence, face_label, ...)")
    scale: str = Field("-1-1", description="value scale in the file: -1-1, or 0-1 (converted with 2x-1)")


class AffectImportStage(Stage[AffectImportSettings]):
    name = NAME
    help = "Import per-utterance affect values from a CSV keyed by session_id and index."
    Settings = AffectImportSettings
    reads = ("utterances",)
    writes = tuple(f"utterances:{ch}" for ch in CHANNELS)
    columns: ClassVar = {f"utterances:{ch}": tuple(channel_columns(ch)) for ch in CHANNELS}
    version = 1
    scope = "source"
    resources = Resources(cpus=1, memory_mb=200)

    def settings_for_hash(self) -> Any:
        return {"scale": self.settings.scale}  # the file enters through its digest (inputs)

    def inputs(self, session: SessionView) -> list[Path]:
        return [Path(self.settings.path)]

    def run(self, session: SessionView) -> Result:
        import pandas as pd

        from emoguide.affect.importer import apply_affect
        from emoguide.corpus import schema

        rows = session.payload.get("rows")
        if rows is None:
            raise NotApplicable(f"{Path(self.settings.path).name} has no rows for this session")
        path = Path(self.settings.path)
        affect = pd.DataFrame.from_records(rows)
        df, warnings = apply_affect(session.utterances(), affect, path)
        df = schema.conform(df)
        res = Result()
        res.backends["affect"] = f"imported:{path.name}"
        res.extra["imported_from"] = str(path.resolve())
        for w in warnings:
            res.warn(w)
        provided = [ch for ch in CHANNELS if any(str(c).startswith(f"{ch}_") for c in affect.columns)]
        res.extra["channels"] = provided
        for ch in provided:
            group = f"utterances:{ch}"
            res.tables[group] = df[["index", *self.columns[group]]]
        return res


def import_affect(
    corpus,
    path: str | Path,
    scale: str = "-1-1",
    force: bool = False,
    *,
    executor=None,
    on_event=None,
):
    """Merge an affect CSV (session_id, index, affect columns) into the sessions it names; returns
    a BatchSummary. A file that cannot be read fails as a whole; sessions it names that the corpus
    lacks fail one by one; the others import."""
    from emoguide.affect.importer import read_affect_csv
    from emoguide.errors import EmoguideError
    from emoguide.pipeline.runner import run_one
    from emoguide.summary import BatchSummary

    path = Path(path)
    try:
        table = read_affect_csv(path, scale=scale)
    except EmoguideError as exc:
        summary = BatchSummary(NAME)
        summary.add(str(path), NAME, "failed", str(exc))
        return summary
    known = set(corpus.session_ids())
    named = set(table["session_id"].astype(str))
    present = sorted(named & known)
    payloads: dict[str, dict[str, Any]] = {}
    for sid in present:
        mine = table[table["session_id"].astype(str) == sid]
        payloads[sid] = {"rows": mine.to_dict("records")}
    stage = AffectImportStage(AffectImportSettings(path=str(path), scale=scale))
    if payloads:
        summary = run_one(corpus, stage, force=force, executor=executor, on_event=on_event, payloads=payloads)
    else:
        summary = BatchSummary(NAME)
    for sid in sorted(named - known):
        summary.add(sid, NAME, "failed", f"{path.name}: no such session in {corpus.root}")
    return summary
