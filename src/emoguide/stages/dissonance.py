"""Stage `dissonance`: paper Eq. 1 per patient utterance, or a calibrated variant (docs/dissonance.md).

Reads the utterance rows and the role, voice, face and text column groups; writes the
`dissonance*` columns. The paper's raw form (voice vs face, T = 0.5) is the default.

Scope. Every variant is per session except `scope = "corpus"` (standardising or taking
percentiles over all sessions), which needs every session's values at once. That variant makes
the stage corpus-scope (`self.scope == "corpus"`, decided by the settings; the class attribute
stays "session"): the runner calls `run_corpus` in the parent after all per-session stages, and
it computes over the run's sessions together and commits each session's columns. Its
fingerprint covers every session's upstream, so a change in any session recomputes all of them
(they share the reference distribution); with nothing changed, it does nothing.

Values imported with `emoguide affect --from-csv` (not a registry stage) are an upstream too: the
imported file named in a session's `affect_import` record is one of this stage's inputs.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from emoguide.config import DissonanceSettings
from emoguide.corpus.schema import DISSONANCE_COLUMNS
from emoguide.pipeline.stage import Resources, Result, SessionView, Stage

GROUP = "utterances:dissonance"


class DissonanceStage(Stage[DissonanceSettings]):
    name = "dissonance"
    help = "Emotional dissonance on patient utterances: paper Eq. 1 (voice vs face, T = 0.5) or a calibrated variant."
    Settings = DissonanceSettings
    reads = ("utterances", "utterances:role", "utterances:voice", "utterances:face", "utterances:text")
    writes = (GROUP,)
    columns: ClassVar = {GROUP: tuple(DISSONANCE_COLUMNS)}
    version = 1
    resources = Resources(cpus=1, memory_mb=300)

    def __init__(self, settings: DissonanceSettings | None = None):
        super().__init__(settings)
        s = self.settings
        # An instance attribute, read by the runner: corpus scope needs all sessions at once.
        self.scope = "corpus" if (s.scope == "corpus" and not s.is_paper_default) else "session"

    # ------------------------------------------------------------------ the computation

    def compute(self, df: pd.DataFrame) -> pd.DataFrame:
        """The dissonance columns for `df` (one session, or all of them for corpus scope)."""
        from emoguide.dissonance import compute_dissonance
        from emoguide.dissonance_variants import compute_dissonance_variant

        s = self.settings
        if s.is_paper_default:
            return compute_dissonance(df, s)
        threshold = s.zscore_threshold if s.method == "zscore" else s.threshold
        return compute_dissonance_variant(
            df,
            method=s.method,
            channels=tuple(s.channels),
            threshold=None if s.method == "percentile" else threshold,
            percentile=s.percentile,
            scope=s.scope,
            roles=tuple(s.roles),
            dimensions=tuple(s.dimensions),
            min_n=s.min_n,
        )

    def _result(self, df: pd.DataFrame) -> Result:
        """One session's result from its rows with the dissonance columns filled."""
        res = Result()
        patients = df["role"] == "patient"
        scored = int(df.loc[patients, "dissonance_score"].notna().sum())
        flagged = int(df["dissonance"].fillna(False).sum())
        res.extra["counts"] = {"patient": int(patients.sum()), "scored": scored, "flagged": flagged}
        if not patients.any():
            res.warn("no patient utterances (roles unknown?)")
        elif scored == 0:
            a, b = self.settings.channels
            res.warn(f"no patient utterance has both {a} and {b} values: dissonance is null")
        res.tables[GROUP] = df[["index", *self.columns[GROUP]]].reset_index(drop=True)
        return res

    # ------------------------------------------------------------------ per session

    def inputs(self, session: SessionView) -> list[Path]:
        rec = session.record("affect_import")
        path = rec.get("imported_from") if rec.get("status") == "done" else None
        return [Path(path)] if path else []

    def run(self, session: SessionView) -> Result:
        if self.scope == "corpus":
            raise RuntimeError("dissonance with scope corpus runs over all sessions at once (run_corpus)")
        return self._result(self.compute(session.utterances()))

    # ------------------------------------------------------------------ corpus scope

    def run_corpus(self, corpus, sessions: list[str], *, force: bool, on_event=None):
        """Compute over `sessions` together; commit each one's columns and stages.json record."""
        from emoguide.config import settings_hash
        from emoguide.corpus.stages import StageLog, file_digest, package_versions
        from emoguide.pipeline import registry
        from emoguide.pipeline.executors import TaskOutcome
        from emoguide.pipeline.runner import commit, fingerprint, outputs_present, stage_settings_record, upstream_of
        from emoguide.summary import BatchSummary

        summary = BatchSummary(self.name)
        classes = [registry.stage_class(n) for n in registry.available()]
        settings_rec = stage_settings_record(self, self.identity())
        ids = list(sessions)
        per: dict[str, dict[str, Any]] = {}
        for sid in ids:
            view = SessionView(corpus.root, sid)
            log = StageLog(view.path / "stages.json")
            per[sid] = {
                "upstream": upstream_of(self, log, classes),
                "inputs": {Path(p).name: file_digest(p) for p in self.inputs(view) if Path(p).exists()},
            }
        fp = fingerprint(settings_rec, self.name, {sid: per[sid]["upstream"] for sid in ids},
                         {"sessions": ids, "inputs": {sid: per[sid]["inputs"] for sid in ids}})
        if not force and ids and all(
            (rec := StageLog(corpus.sessions_dir / sid / "stages.json").get(self.name))
            and rec.get("status") == "done" and rec.get("fingerprint") == fp
            and outputs_present(self, corpus.sessions_dir / sid)
            for sid in ids
        ):
            for sid in ids:
                summary.add(sid, self.name, "skipped", "unchanged")
            return summary

        t0 = time.perf_counter()
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        frames, used = [], []
        for sid in ids:
            try:
                df = SessionView(corpus.root, sid).utterances()
            except Exception as exc:  # this session fails; the others form the reference set
                summary.add(sid, self.name, "failed", f"{type(exc).__name__}: {exc}")
                continue
            df["session_id"] = sid
            frames.append(df)
            used.append(sid)
        if not frames:
            return summary
        table = pd.concat(frames, ignore_index=True)
        computed = self.compute(table)
        seconds = (time.perf_counter() - t0) / max(1, len(used))
        for sid in used:
            mine = computed[computed["session_id"] == sid]
            res = self._result(mine)
            res.extra["reference_sessions"] = len(used)
            outcome = TaskOutcome(self.name, sid, "done", res, "; ".join(res.warnings), seconds=seconds)
            path = corpus.sessions_dir / sid
            try:
                commit(path, sid, self, outcome)
            except Exception as exc:
                outcome = TaskOutcome(self.name, sid, "failed", res, f"commit: {type(exc).__name__}: {exc}")
            rec: dict[str, Any] = {
                "status": outcome.status,
                "run_id": uuid.uuid4().hex[:12],
                "fingerprint": fp,
                "upstream": per[sid]["upstream"],
                "inputs": per[sid]["inputs"],
                "settings_hash": settings_hash(settings_rec),
                "settings": settings_rec,
                "outputs": ["utterances.parquet"],
                "backends": {},
                "versions": package_versions(("emoguide",)),
                "started": started,
                "seconds": round(seconds, 4),
                "warnings": res.warnings,
                "executor": "parent (corpus scope)",
                **res.extra,
            }
            if outcome.status == "failed":
                rec["error"] = outcome.reason
            StageLog(path / "stages.json").put(self.name, rec)
            summary.add(sid, self.name, outcome.status, outcome.reason)
        return summary
