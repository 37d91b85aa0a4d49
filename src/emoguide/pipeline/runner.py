"""The one runner: plan resume from declared reads, hand tasks to an executor, commit in the parent.

For every (stage, session) the runner waits until the stages that write what it reads are
finished for that session, then decides in the parent whether it is current (same settings,
version, identity, upstream fingerprints and input digests, finished, outputs present). Current
tasks are skipped; the others go to the executor; each result is committed here, by the only
writer of the corpus, as soon as it arrives: artifacts first (atomic renames), then the
stages.json record. A run killed at any point therefore redoes only what has no record.

One error policy: any exception in one session's stage fails that task (recorded with its
reason); the session's later stages that read its outputs are skipped; other sessions go on.
Ctrl-C stops submitting, commits what has finished and returns with `interrupted` set.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from emoguide.config import settings_hash
from emoguide.corpus import Corpus, schema
from emoguide.corpus.atomic import read_parquet, write_json, write_parquet
from emoguide.corpus.stages import StageLog, package_versions
from emoguide.pipeline import registry
from emoguide.pipeline.events import Event, EventSink
from emoguide.pipeline.executors import Executor, SerialExecutor, Task, TaskOutcome, scratch_dir
from emoguide.pipeline.stage import FILES, GROUP_KEYS, SessionView, Stage
from emoguide.summary import BatchSummary

logger = logging.getLogger("emoguide")


@dataclass
class RunReport:
    summaries: list[BatchSummary] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: summed task seconds
    wall_s: float = 0.0
    interrupted: bool = False
    outcomes: list[TaskOutcome] = field(default_factory=list)
    corpus_results: dict[str, Any] = field(default_factory=dict)
    #: Damaged artifacts found and what was done about them (also logged as warnings).
    repairs: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(s.count("failed") for s in self.summaries)

    def summary(self, stage: str) -> BatchSummary | None:
        for s in self.summaries:
            if s.title == stage:
                return s
        return None


# --------------------------------------------------------------------------------------------
# fingerprints


def stage_settings_record(stage: Stage, identity: dict[str, Any]) -> dict[str, Any]:
    versions = package_versions(stage.packages) if stage.packages else {}
    return {
        "version": stage.version,
        "settings": stage.settings_for_hash(),
        "identity": identity,
        "packages": {p: versions.get(p) for p in stage.packages},
    }


def upstream_of(stage: Stage, log: StageLog, classes: list[type[Stage]]) -> dict[str, str | None]:
    recorded = log.load()
    out: dict[str, str | None] = {}
    for name in registry.upstream_writers(type(stage), classes):
        rec = recorded.get(name)
        # A writer with no record for this session (e.g. `utterances` for an imported transcript)
        # is not this session's upstream; one that has a record counts, done or not.
        if rec is not None:
            out[name] = log.fingerprint(name)
    return out


def fingerprint(settings_rec: dict[str, Any], stage: str, upstream: dict, inputs: dict) -> str:
    return settings_hash({"stage": stage, "settings": settings_hash(settings_rec), "upstream": upstream, "inputs": inputs})


#: Columns a whole table must have to count as present (its stage's shape).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "utterances": ("index", "start", "end", "speaker", "text"),
}


def parquet_shape(path: Path) -> tuple[int, set[str]]:
    """(rows, column names) from the footer of a parquet file; raises on a damaged file."""
    from emoguide.corpus.atomic import parquet_shape as _shape

    return _shape(path)


def check_file(path: Path) -> str | None:
    """Why the artifact at `path` cannot be trusted ("missing", unreadable, cut short), or None."""
    from emoguide.corpus.atomic import check_artifact

    return "missing" if not path.exists() else check_artifact(path)


def output_problem(stage: Stage, session_path: Path, rec: dict[str, Any] | None = None, *,
                   only: Iterable[str] | None = None, records: dict[str, dict[str, Any]] | None = None) -> str | None:
    """Why `stage`'s recorded outputs in this session are not current, or None when they are.

    "Current" means the declared outputs exist, are readable, have the stage's columns and, where
    the record says, the row count it committed (a file cut short, replaced or emptied by
    another writer makes the stage stale: the next run recomputes it).
    """
    listed = set((rec or {}).get("outputs") or ())
    shapes = (rec or {}).get("shapes") or {}
    wanted = set(only) if only is not None else None
    for art in stage.writes:
        if wanted is not None and art not in wanted:
            continue
        host, _, group = art.partition(":")
        if host not in FILES:
            continue
        if art in stage.optional and FILES[host] not in listed:
            continue
        p = session_path / FILES[host]
        if not p.exists():
            return f"{p.name} is missing"
        if p.suffix != ".parquet":
            bad = check_file(p)
            if bad:
                return f"{p.name} is {bad}"
            continue
        try:
            rows, names = parquet_shape(p)
        except Exception as exc:
            return f"{p.name} is unreadable ({type(exc).__name__}: {exc})"
        need = set(stage.columns.get(art, ())) if group else set(REQUIRED_COLUMNS.get(host, ()))
        if not need <= names:
            return f"{p.name} lacks the column(s) {', '.join(sorted(need - names))}"
        shape = shapes.get(p.name) or {}
        want = shape.get("rows")
        # A whole table's row count binds only its latest whole writer: an ingest stage's empty
        # placeholder utterance table is later replaced by the utterances stage's.
        if shape.get("whole") and records is not None and not _latest_whole_writer(records, rec, p.name):
            want = None
        if want is not None and rows != want:
            return f"{p.name} has {rows} rows; {stage.name} committed {want}"
    return None


def outputs_present(stage: Stage, session_path: Path, rec: dict[str, Any] | None = None) -> bool:
    return output_problem(stage, session_path, rec) is None


def _latest_whole_writer(records: dict[str, dict[str, Any]], rec: dict[str, Any] | None, name: str) -> bool:
    """Whether `rec` is the last record that wrote file `name` whole (by commit time)."""
    mine = (rec or {}).get("committed", 0.0)
    for other in records.values():
        if other is rec or other.get("status") != "done":
            continue
        if ((other.get("shapes") or {}).get(name) or {}).get("whole") and other.get("committed", 0.0) > mine:
            return False
    return True


def output_shapes(session_path: Path, stage: Stage, res: Any) -> dict[str, dict[str, Any]]:
    """{file name: {"rows": n, "whole": bool}} for the parquet files this commit wrote, whole
    or as a column group (recorded in stages.json; checked on resume)."""
    out: dict[str, dict[str, Any]] = {}
    written = list(res.tables) + list(res.files) if res is not None else []
    for art in written:
        host, _, group = art.partition(":")
        name = FILES.get(host)
        if not name or not name.endswith(".parquet"):
            continue
        p = session_path / name
        try:
            rows = parquet_shape(p)[0]
        except Exception:
            continue
        whole = not group or bool((out.get(name) or {}).get("whole"))
        out[name] = {"rows": rows, "whole": whole}
    return out


# --------------------------------------------------------------------------------------------
# commit (parent only)


class CommitError(ValueError):
    pass


def _merge_group(host_df: pd.DataFrame, art: str, frame: pd.DataFrame, cols: tuple[str, ...]) -> pd.DataFrame:
    host = art.split(":", 1)[0]
    key = list(GROUP_KEYS.get(host, ("index",)))
    extra = [c for c in frame.columns if c not in cols and c not in key]
    if extra:
        raise CommitError(f"{art}: the stage returned columns it does not declare: {extra}")
    out = host_df.drop(columns=[c for c in cols if c in host_df.columns])
    if key == ["row"]:  # positional: the group has one row per host row, in host order
        if len(frame) != len(out):
            raise CommitError(f"{art}: {len(frame)} rows for a table of {len(out)}")
        for c in cols:
            if c in frame.columns:
                out[c] = frame[c].to_numpy()
        return out
    missing_key = [k for k in key if k not in frame.columns]
    if missing_key:
        raise CommitError(f"{art}: the stage's frame lacks the key column(s) {missing_key}")
    if frame.duplicated(key).any():
        raise CommitError(f"{art}: duplicate keys in the stage's frame")
    return out.merge(frame[key + [c for c in cols if c in frame.columns]], on=key, how="left")


def commit(session_path: Path, session_id: str, stage: Stage, outcome: TaskOutcome) -> None:
    """Write a finished task's artifacts (atomically, one file at a time)."""
    res = outcome.result
    assert res is not None
    declared = set(stage.writes)
    for art in list(res.tables) + list(res.files):
        if art not in declared:
            raise CommitError(f"stage {stage.name} returned {art!r}, which it does not declare in `writes`")
    for art in stage.optional:  # not produced this time: an earlier run's file would be stale
        if art not in res.files and art not in res.tables and art in FILES:
            (session_path / FILES[art]).unlink(missing_ok=True)
    # Whole files first (media, then tables), then column groups merged into their hosts.
    for art, src in res.files.items():
        dst = session_path / FILES.get(art, art)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))
    groups: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for art, df in res.tables.items():
        host, _, group = art.partition(":")
        if group:
            groups.setdefault(host, []).append((art, df))
            continue
        if art == "source":
            write_json(session_path / FILES["source"], df)  # a dict, not a frame
        elif art == "utterances":
            out = schema.conform(df)
            out["session_id"] = session_id
            write_parquet(session_path / FILES["utterances"], out)
        else:
            write_parquet(session_path / FILES[art], df)
    for host, items in groups.items():
        path = session_path / FILES[host]
        if host == "utterances":
            df = schema.conform(read_parquet(path))
        else:
            df = read_parquet(path)
        for art, frame in items:
            df = _merge_group(df, art, frame, tuple(stage.columns[art]))
        if host == "utterances":
            df = schema.conform(df)
            df["session_id"] = session_id
        write_parquet(path, df)


# --------------------------------------------------------------------------------------------
# the run


def resolve(names: Iterable[str | Stage], settings=None) -> list[Stage]:
    """Stage names (or built stages) -> built stages in registry order."""
    out: list[Stage] = []
    for n in names:
        if isinstance(n, Stage):
            out.append(n)
            continue
        cls = registry.stage_class(n)
        out.append(cls.from_corpus_settings(settings) if settings is not None and hasattr(cls, "from_corpus_settings") else cls())
    return sorted(out, key=_order)


def _order(stage: Stage) -> int:
    order = list(registry.STAGES)
    return order.index(stage.name) if stage.name in order else len(order)


def run_stages(
    corpus: Corpus,
    stages: Iterable[str | Stage],
    sessions: Iterable[str] | None = None,
    *,
    executor: Executor | None = None,
    force: bool | Iterable[str] = False,
    on_event: EventSink | None = None,
    payloads: dict[str, dict[str, Any]] | None = None,
) -> RunReport:
    """Run `stages` over `sessions` (default: all) of `corpus`; see the module docstring.

    `force`: True redoes every task; a set of stage names redoes those. `payloads` gives
    per-session inputs (ingest: which file becomes which session).

    Holds the corpus lock (`emoguide.corpus.lock`) for the whole run: a second writer on the
    same corpus stops with `CorpusLocked` naming this process (or waits, `EMOGUIDE_LOCK_WAIT`).
    """
    from emoguide.corpus.lock import corpus_lock

    with corpus_lock(corpus.root):
        return _run_stages(corpus, stages, sessions, executor=executor, force=force, on_event=on_event,
                           payloads=payloads)


#: Ingest stages that can redo a session from what source.json records (affect_import cannot:
#: its rows come from the CSV handed over by the command).
REBUILDABLE_SOURCES = ("ingest_transcript", "ingest_media")


def _heal_stages(corpus: Corpus, ids: list[str], built: list[Stage], classes: list[type[Stage]],
                 settings: Any) -> dict[str, tuple[Stage, set[str], dict[str, str]]]:
    """Stages not in this run whose recorded outputs, read by a stage of this run, are damaged.

    E.g. a transcript session's cut-short utterances.parquet: `ingest_transcript` wrote it and
    `emoguide run` does not run ingest, so it is added for that session only (with the settings
    it was recorded with) and the file is rebuilt from the transcript before the stages that
    read it. Returns name -> (stage, session ids, {session id: the problem}).
    """
    in_run = {s.name for s in built}
    read = {a for s in built for a in s.reads} | {a.partition(":")[0] for s in built for a in s.reads}
    rebuilders = {a: [s.name for s in built if a in s.writes] for s in built for a in s.writes if ":" not in a}

    cache: dict[str, dict[str, dict[str, Any]]] = {}

    def records_of(sid: str) -> dict[str, dict[str, Any]]:
        if sid not in cache:
            cache[sid] = StageLog(corpus.sessions_dir / sid / "stages.json").load()
        return cache[sid]

    def rebuilt_here(art: str, sid: str) -> bool:
        """A stage of this run writes `art` whole for this session (it has done so before)."""
        for name in rebuilders.get(art, ()):
            r = records_of(sid).get(name)
            if r and not r.get("not_applicable"):
                return True
        return False

    out: dict[str, tuple[Stage, set[str], dict[str, str]]] = {}
    for cls in classes:
        if cls.name in in_run or not (cls.scope == "session" or cls.name in REBUILDABLE_SOURCES):
            continue
        read_arts = [a for a in cls.writes if a in read or a.partition(":")[0] in read]
        if not read_arts:
            continue
        for sid in ids:
            records = records_of(sid)
            rec = records.get(cls.name)
            if not rec or rec.get("not_applicable"):
                continue
            if rec.get("status") == "failed" and cls.name in REBUILDABLE_SOURCES and rec.get("error"):
                # An ingest that failed (e.g. while rebuilding a damaged audio.wav from a source
                # that is damaged too) is retried, so the session fails for its real cause, and
                # heals once the user restores the source, instead of a later stage reading
                # whatever the failed ingest left behind.
                problem = f"{cls.name} failed last time ({rec['error']})"
            elif rec.get("status") != "done":
                continue
            else:
                problem = None

            def owns(art: str) -> bool:
                """A whole table: this stage wrote what is there (the latest whole writer)."""
                if ":" in art or art not in FILES or not FILES[art].endswith(".parquet"):
                    return True
                shape = (rec.get("shapes") or {}).get(FILES[art]) or {}
                return bool(shape.get("whole")) and _latest_whole_writer(records, rec, FILES[art])

            if problem is None:
                arts = [a for a in read_arts if not rebuilt_here(a, sid) and owns(a)]
                if not arts:
                    continue
                probe = cls.__new__(cls)  # only its class attributes are used by output_problem
                problem = output_problem(probe, corpus.sessions_dir / sid, rec, only=arts, records=records)
                if problem is None:
                    continue
            if cls.name not in out:
                recorded = (rec.get("settings") or {}).get("settings")
                try:
                    stage = cls(cls.Settings.model_validate(recorded)) if isinstance(recorded, dict) else None
                except Exception:
                    stage = None
                if stage is None:
                    stage = cls.from_corpus_settings(settings) if hasattr(cls, "from_corpus_settings") else cls()
                out[cls.name] = (stage, set(), {})
            out[cls.name][1].add(sid)
            out[cls.name][2][sid] = problem
    return out


def _run_stages(
    corpus: Corpus,
    stages: Iterable[str | Stage],
    sessions: Iterable[str] | None = None,
    *,
    executor: Executor | None = None,
    force: bool | Iterable[str] = False,
    on_event: EventSink | None = None,
    payloads: dict[str, dict[str, Any]] | None = None,
) -> RunReport:
    t_start = time.perf_counter()
    built = resolve(stages, corpus.settings)
    classes = [registry.stage_class(n) for n in registry.available()]
    for st in built:
        if type(st) not in classes:
            classes.append(type(st))
    registry.check(classes)
    forced = set(s.name for s in built) if force is True else set(force or ())
    executor = executor or SerialExecutor()
    emit = on_event or (lambda ev: None)
    report = RunReport()
    session_stages = [s for s in built if s.scope != "corpus"]
    corpus_stages = [s for s in built if s.scope == "corpus"]
    if payloads is not None:
        ids = list(payloads)
    else:
        ids = [s.id for s in corpus.sessions(sessions)]
    # A damaged stages.json is that session's problem only: moved aside, its stages rerun.
    for sid in ids:
        msg = StageLog(corpus.sessions_dir / sid / "stages.json").quarantine()
        if msg:
            report.repairs.append(msg)
            logger.warning("warning: %s", msg)
    heal = _heal_stages(corpus, ids, session_stages, classes, corpus.settings) if payloads is None else {}
    for name, (stage, sids, problems) in heal.items():
        for sid in sorted(sids):
            msg = f"{corpus.sessions_dir / sid}: {problems[sid]}; rerunning {name} for it"
            report.repairs.append(msg)
            logger.warning("warning: %s", msg)
    heal_stages = [h[0] for h in heal.values()]
    session_stages = sorted(heal_stages + session_stages, key=_order)
    summaries = {s.name: BatchSummary(s.name) for s in heal_stages + built}
    report.summaries = [summaries[s.name] for s in sorted(heal_stages + built, key=_order)]
    identities = {s.name: s.identity() for s in session_stages}
    settings_recs = {s.name: stage_settings_record(s, identities[s.name]) for s in session_stages}
    in_run = {s.name for s in session_stages}
    deps = {s.name: [u for u in registry.upstream_writers(type(s), classes) if u in in_run] for s in session_stages}
    state: dict[tuple[str, str], str] = {}  # (stage, session) -> done | skipped | failed | blocked
    task_ids = {s.name: [sid for sid in ids if s.name not in heal or sid in heal[s.name][1]] for s in session_stages}
    for name, (_, sids, _) in heal.items():
        for sid in ids:
            if sid not in sids:
                state[(name, sid)] = "done"  # not part of this run for that session: nothing to wait for
    pending = [(s, sid) for s in session_stages for sid in task_ids[s.name]]
    remaining = {s.name: len(task_ids[s.name]) for s in session_stages}
    for s in session_stages:
        emit(Event("plan", s.name, total=len(task_ids[s.name])))
    running: dict[Future, tuple[Stage, str, dict[str, Any]]] = {}
    capacity = executor.capacity

    def finish(stage: Stage, sid: str, status: str, reason: str, seconds: float = 0.0) -> None:
        state[(stage.name, sid)] = status
        summaries[stage.name].add(sid, stage.name, "skipped" if status == "blocked" else status, reason)
        report.seconds[stage.name] = report.seconds.get(stage.name, 0.0) + seconds
        emit(Event(status, stage.name, sid, reason, seconds))
        remaining[stage.name] -= 1
        if remaining[stage.name] == 0:
            executor.stage_finished(stage.name)
            emit(Event("stage_end", stage.name))

    def plan(stage: Stage, sid: str) -> dict[str, Any] | None:
        """Return the record skeleton to run with, or None after recording a skip."""
        path = corpus.sessions_dir / sid
        log = StageLog(path / "stages.json")
        view = SessionView(corpus.root, sid, payload=(payloads or {}).get(sid))
        upstream = upstream_of(stage, log, classes)
        inputs = stage.input_digests(view)
        fp = fingerprint(settings_recs[stage.name], stage.name, upstream, inputs)
        rec = log.get(stage.name)
        # a stage added to heal this session's damaged outputs always runs
        if stage.name not in forced and stage.name not in heal and rec and rec.get("status") == "done" \
                and rec.get("fingerprint") == fp:
            # a not-applicable record (nothing to do, nothing written) stays current as it is
            if rec.get("not_applicable"):
                finish(stage, sid, "skipped", str(rec["not_applicable"]))
                return None
            problem = output_problem(stage, path, rec, records=log.load())
            if problem is None:
                finish(stage, sid, "skipped", "unchanged")
                return None
            msg = f"{path}: {problem}; recomputing {stage.name}"
            report.repairs.append(msg)
            logger.warning("warning: %s", msg)
        return {"fingerprint": fp, "upstream": upstream, "inputs": inputs}

    def record(stage: Stage, sid: str, skeleton: dict[str, Any], outcome: TaskOutcome, started: str) -> None:
        path = corpus.sessions_dir / sid
        res = outcome.result
        rec: dict[str, Any] = {
            "status": outcome.status if outcome.status != "skipped" else "done",
            "run_id": uuid.uuid4().hex[:12],
            **skeleton,
            "settings_hash": settings_hash(settings_recs[stage.name]),
            "settings": settings_recs[stage.name],
            "outputs": [FILES.get(a.partition(":")[0], a) for a in stage.writes
                        if a not in stage.optional or (res is not None and (a in res.files or a in res.tables))],
            "backends": res.backends if res else {},
            "versions": package_versions(("emoguide",) + tuple(stage.packages)),
            "started": started,
            "seconds": round(outcome.seconds, 4),
            "warnings": res.warnings if res else [],
            "executor": executor.name,
            "worker_pid": outcome.pid,
        }
        if res:
            rec.update(res.extra)
        if outcome.status == "done":
            rec["shapes"] = output_shapes(path, stage, res)
            rec["committed"] = time.time()
        if outcome.status == "skipped":
            rec["not_applicable"] = outcome.reason
        if outcome.status == "failed":
            rec["error"] = outcome.reason
            rec["traceback"] = outcome.error
        StageLog(path / "stages.json").put(stage.name, rec)

    def ready(stage: Stage, sid: str) -> str | None:
        """"ok" when every in-run upstream finished for sid, "blocked:<stage>" when one failed."""
        for d in deps[stage.name]:
            st = state.get((d, sid))
            if st is None:
                return None
            if st in ("failed", "blocked"):
                return f"blocked:{d}"
        return "ok"

    try:
        while pending or running:
            progressed = False
            for item in list(pending):
                if len(running) >= capacity:
                    break
                stage, sid = item
                r = ready(stage, sid)
                if r is None:
                    continue
                pending.remove(item)
                progressed = True
                if r.startswith("blocked:"):
                    finish(stage, sid, "blocked", f"not run: {r.split(':', 1)[1]} failed for this session")
                    continue
                try:
                    skeleton = plan(stage, sid)
                except Exception as exc:  # e.g. an unreadable stages.json or input
                    finish(stage, sid, "failed", f"{type(exc).__name__}: {exc}")
                    continue
                if skeleton is None:
                    continue
                skeleton["_started"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                run_id = uuid.uuid4().hex[:8]
                task = Task(stage, str(corpus.root), sid, scratch_dir(corpus.root, sid, stage.name, run_id),
                            (payloads or {}).get(sid, {}))
                emit(Event("submit", stage.name, sid))
                fut = executor.submit(task)
                running[fut] = (stage, sid, skeleton)
            if not running:
                if not progressed and pending:  # cannot happen with a consistent registry
                    for stage, sid in pending:
                        finish(stage, sid, "failed", "internal: upstream never finished")
                    pending.clear()
                continue
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                stage, sid, skeleton = running.pop(fut)
                _settle(corpus, stage, sid, skeleton, fut, record, finish, report, executor)
    except KeyboardInterrupt:
        report.interrupted = True
        emit(Event("interrupted", ""))
        # Commit what already finished; drop the rest (their records stay as they were).
        for fut, (stage, sid, skeleton) in list(running.items()):
            if fut.done():
                _settle(corpus, stage, sid, skeleton, fut, record, finish, report, executor)
        executor.shutdown(cancel=True)
        report.wall_s = time.perf_counter() - t_start
        return report
    finally:
        for sid in ids:
            shutil.rmtree(corpus.sessions_dir / sid / ".scratch", ignore_errors=True)

    for stage in corpus_stages:
        t0 = time.perf_counter()
        _heal_corpus_artifacts(corpus, stage, report)
        emit(Event("plan", stage.name, total=1))
        try:
            got = stage.run_corpus(corpus, ids, force=stage.name in forced, on_event=emit)
        except KeyboardInterrupt:
            report.interrupted = True
            break
        except Exception as exc:  # the corpus stage fails; the run still ends with its summary
            summaries[stage.name].add("corpus", stage.name, "failed", f"{type(exc).__name__}: {exc}")
            got = None
        report.seconds[stage.name] = time.perf_counter() - t0
        if got is not None:
            value, subs = got if isinstance(got, tuple) else (None, got)
            report.corpus_results[stage.name] = value
            for s in subs if isinstance(subs, list) else [subs]:
                if s is None:
                    continue
                summaries[stage.name].extend(s)
        emit(Event("stage_end", stage.name))
    if corpus_stages or not report.interrupted:
        executor.shutdown()
    report.wall_s = time.perf_counter() - t_start
    return report


#: Corpus-level artifacts by the artifact name a corpus stage declares in `writes`.
CORPUS_FILES: dict[str, str] = {"generations": "generations.parquet"}


def _heal_corpus_artifacts(corpus: Corpus, stage: Stage, report: RunReport) -> None:
    """A damaged corpus-level table the stage writes (generations.parquet cut short) is moved
    aside as `<name>.damaged-<time>`; the stage then rebuilds it (generation: rows already made
    come back from the completion cache). Never raises: the stage reports what it cannot do."""
    from emoguide.corpus.atomic import check_artifact, quarantine

    for art in stage.writes:
        name = CORPUS_FILES.get(art)
        if not name:
            continue
        path = corpus.root / name
        bad = check_artifact(path)
        if not bad:
            continue
        try:
            dest = quarantine(path)
        except OSError as exc:
            msg = f"{path}: {bad}; could not move it aside ({exc})"
        else:
            msg = f"{path}: {bad}; moved aside to {dest.name}; {stage.name} rebuilds it"
        report.repairs.append(msg)
        logger.warning("warning: %s", msg)


def _settle(corpus, stage, sid, skeleton, fut, record, finish, report, executor) -> None:
    try:
        outcome: TaskOutcome = fut.result()
    except Exception as exc:  # the worker died (segfault, killed, out of memory) or Ray failed
        outcome = TaskOutcome(stage.name, sid, "failed", None, f"worker lost: {type(exc).__name__}: {exc}")
        restart = getattr(executor, "restart", None)
        if restart is not None and _is_broken_pool(exc):
            restart()
    started = skeleton.pop("_started", "")
    if outcome.status == "done":
        try:
            commit(corpus.sessions_dir / sid, sid, stage, outcome)
        except Exception as exc:
            outcome = TaskOutcome(stage.name, sid, "failed", outcome.result, f"commit: {type(exc).__name__}: {exc}",
                                  seconds=outcome.seconds, pid=outcome.pid)
    report.outcomes.append(outcome)
    record(stage, sid, skeleton, outcome, started)
    finish(stage, sid, outcome.status, outcome.reason, outcome.seconds)


def _is_broken_pool(exc: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(exc, BrokenProcessPool)


def run_one(
    corpus: Corpus,
    stage: str | Stage,
    sessions: Iterable[str] | None = None,
    *,
    force: bool = False,
    executor: Executor | None = None,
    on_event: EventSink | None = None,
    payloads: dict[str, dict[str, Any]] | None = None,
) -> BatchSummary:
    """One stage over a corpus; returns its summary (the stage verbs and tests use this)."""
    report = run_stages(corpus, [stage], sessions, executor=executor, force=force, on_event=on_event, payloads=payloads)
    if report.interrupted:
        raise KeyboardInterrupt
    return report.summaries[0]
