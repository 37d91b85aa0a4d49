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


@dataclass
class RunReport:
    summaries: list[BatchSummary] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: summed task seconds
    wall_s: float = 0.0
    interrupted: bool = False
    outcomes: list[TaskOutcome] = field(default_factory=list)
    corpus_results: dict[str, Any] = field(default_factory=dict)

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


def outputs_present(stage: Stage, session_path: Path, rec: dict[str, Any] | None = None) -> bool:
    listed = set((rec or {}).get("outputs") or ())
    for art in stage.writes:
        host, _, group = art.partition(":")
        if host not in FILES:
            continue
        if art in stage.optional and FILES[host] not in listed:
            continue
        p = session_path / FILES[host]
        if not p.exists():
            return False
        if group:
            try:
                import pyarrow.parquet as pq

                names = set(pq.read_schema(p).names)
            except Exception:
                return False
            if not set(stage.columns.get(art, ())) <= names:
                return False
    return True


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
    order = list(registry.STAGES)
    return sorted(out, key=lambda s: order.index(s.name) if s.name in order else len(order))


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
    """
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
    summaries = {s.name: BatchSummary(s.name) for s in built}
    report.summaries = [summaries[s.name] for s in built]
    identities = {s.name: s.identity() for s in session_stages}
    settings_recs = {s.name: stage_settings_record(s, identities[s.name]) for s in session_stages}
    in_run = {s.name for s in session_stages}
    deps = {s.name: [u for u in registry.upstream_writers(type(s), classes) if u in in_run] for s in session_stages}
    state: dict[tuple[str, str], str] = {}  # (stage, session) -> done | skipped | failed | blocked
    pending = [(s, sid) for s in session_stages for sid in ids]
    remaining = {s.name: len(ids) for s in session_stages}
    for s in session_stages:
        emit(Event("plan", s.name, total=len(ids)))
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
        if stage.name not in forced and rec and rec.get("status") == "done" and rec.get("fingerprint") == fp:
            # a not-applicable record (nothing to do, nothing written) stays current as it is
            if rec.get("not_applicable"):
                finish(stage, sid, "skipped", str(rec["not_applicable"]))
                return None
            if outputs_present(stage, path, rec):
                finish(stage, sid, "skipped", "unchanged")
                return None
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
