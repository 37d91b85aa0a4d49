"""Executors map a stage's `run` over sessions; they never write into the corpus.

- `serial`: in this process (the default for one session, and for debugging).
- `pool`: a spawn process pool; each worker caps its numeric libraries' threads so N workers never
  oversubscribe the cores, and keeps the stages it has set up (models load once per worker).
- `ray`: N Ray actors that set up each stage once (GPU stages get their own, reserving GPUs); `address` joins an
  existing cluster (the corpus must be on storage every node sees).

Every executor returns `concurrent.futures.Future`s whose result is a `TaskOutcome`; an exception
raised by the stage is caught in the worker and returned, so it fails only its own task.
"""

from __future__ import annotations

import os
import time
import traceback
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emoguide.pipeline.stage import NotApplicable, Result, SessionView, Stage
from emoguide.threads import apply_torch, available_cpus, cap_threads


@dataclass
class Task:
    stage: Stage
    corpus_root: str
    session_id: str
    scratch: str
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.stage.name, self.session_id)


@dataclass
class TaskOutcome:
    stage: str
    session_id: str
    status: str  # "done" | "skipped" | "failed"
    result: Result | None = None
    reason: str = ""
    error: str = ""  # formatted traceback for failures
    seconds: float = 0.0
    pid: int = 0
    peak_rss_mb: float | None = None


def _peak_rss_mb() -> float | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:  # pragma: no cover - not POSIX
        return None


# Stages set up in this process, by (name, settings hash); a worker keeps a few so a run that
# alternates stages does not reload models for every task.
_READY: dict[tuple[str, str], Stage] = {}
_KEEP = 8  # every default stage: reloading a model per task would cost more than its memory


def _ready(stage: Stage) -> Stage:
    from emoguide.config import settings_hash

    key = (stage.name, settings_hash(stage.settings_for_hash()))
    got = _READY.get(key)
    if got is None:
        stage.setup()
        apply_torch()
        while len(_READY) >= _KEEP:
            _READY.pop(next(iter(_READY)))
        _READY[key] = got = stage
    return got


def execute(task: Task) -> TaskOutcome:
    """Run one task here; every exception becomes a failed outcome (never raised)."""
    t0 = time.perf_counter()
    try:
        stage = _ready(task.stage)
        view = SessionView(task.corpus_root, task.session_id, scratch=task.scratch, payload=task.payload)
        result = stage.run(view)
        if not isinstance(result, Result):
            raise TypeError(f"stage {stage.name}.run returned {type(result).__name__}, not a Result")
        status, reason = "done", result.summary or "; ".join(result.warnings)
        err = ""
    except NotApplicable as exc:
        result, status, reason, err = None, "skipped", str(exc), ""
    except Exception as exc:  # one session's failure, whatever it is (issue: one error policy)
        result, status = None, "failed"
        reason = f"{type(exc).__name__}: {exc}"
        err = traceback.format_exc(limit=8)
    return TaskOutcome(task.stage.name, task.session_id, status, result, reason, err,
                       time.perf_counter() - t0, os.getpid(), _peak_rss_mb())


class Executor:
    name = "base"
    workers = 1

    @property
    def capacity(self) -> int:
        """Tasks the runner keeps in flight (a pool queues a few more than it runs)."""
        return max(1, self.workers) * 2

    def submit(self, task: Task) -> Future:  # pragma: no cover - abstract
        raise NotImplementedError

    def stage_finished(self, stage: str) -> None:
        """No more tasks of `stage` in this run: release what holds its models."""

    def shutdown(self, cancel: bool = False) -> None:
        pass


class SerialExecutor(Executor):
    name = "serial"

    def submit(self, task: Task) -> Future:
        fut: Future = Future()
        fut.set_result(execute(task))
        return fut

    def shutdown(self, cancel: bool = False) -> None:
        _READY.clear()


def _init_worker(threads: int) -> None:
    cap_threads(threads)
    # A worker ignores Ctrl-C: the parent decides what to commit and stops the pool.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class PoolExecutor(Executor):
    """A spawn process pool. `threads` per worker defaults to cores // workers (at least 1)."""

    name = "pool"

    def __init__(self, workers: int | None = None, threads: int | None = None):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.workers = max(1, workers or available_cpus())
        self.threads = threads or max(1, available_cpus() // self.workers)
        self._ctx = mp.get_context("spawn")
        self._make = lambda: ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self._ctx, initializer=_init_worker, initargs=(self.threads,)
        )
        self._pool = self._make()

    def submit(self, task: Task) -> Future:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self._pool.submit(execute, task)
        except BrokenProcessPool:
            self.restart()
            return self._pool.submit(execute, task)

    def restart(self) -> None:
        """After a worker died (segfault, out of memory): a fresh pool for the remaining tasks."""
        try:
            self._pool.shutdown(wait=False, cancel_futures=True)
        except Exception:
            pass
        self._pool = self._make()

    def shutdown(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


class RayExecutor(Executor):
    """Stage actors on a Ray cluster (local by default). Needs the `ray` extra."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise RuntimeError("the ray executor needs Ray: pip install 'emoguide[ray]'") from exc
        self.ray = ray
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        if not ray.is_initialized():
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus or available_cpus(), include_dashboard=False, log_to_driver=False)
        self._owns = True
        total = float(ray.cluster_resources().get("CPU", available_cpus()))
        self.workers = max(1, workers or int(total))
        self.total_cpus = total
        self._actors: dict[str, list[Any]] = {}
        self._next: dict[str, int] = {}
        self._busy: dict[str, list[int]] = {}

        @ray.remote
        class StageActor:
            """A worker process on the cluster; it sets up each stage it meets once and keeps
            the last few (like a pool worker), so light stages cost no process start."""

            def __init__(self, threads: int):
                cap_threads(threads)

            def run(self, task: Task) -> TaskOutcome:
                return execute(task)

        self._actor_cls = StageActor

    @property
    def capacity(self) -> int:
        return self.workers  # actors reserve no CPU: the runner is what bounds parallelism

    def _key(self, stage: Stage) -> str:
        # CPU stages share one set of actors; a GPU stage gets its own, placed on GPU nodes.
        return f"gpu:{stage.name}" if stage.resources.gpus else "cpu"

    def _actors_for(self, stage: Stage) -> list[Any]:
        key = self._key(stage)
        got = self._actors.get(key)
        if got is None:
            # Actors reserve no CPU: with reservations, actors kept for one stage could hold every
            # CPU while a session still waits on another stage -- a deadlock. The runner keeps at
            # most `workers` tasks in flight (`capacity`), so the CPUs are never oversubscribed;
            # each actor caps its threads at its share of the cluster. GPUs are reserved.
            threads = max(1, int(self.total_cpus // self.workers))
            opts: dict[str, Any] = {"num_cpus": 0}
            if stage.resources.gpus:
                opts["num_gpus"] = stage.resources.gpus
            got = [self._actor_cls.options(**opts).remote(threads) for _ in range(self.workers)]
            self._actors[key] = got
        return got

    def submit(self, task: Task) -> Future:
        actors = self._actors_for(task.stage)
        key = self._key(task.stage)
        busy = self._busy.setdefault(key, [0] * len(actors))
        i = min(range(len(actors)), key=lambda k: busy[k])  # the least busy actor
        busy[i] += 1
        fut = actors[i].run.remote(task).future()

        def done(_f, name=key, k=i):
            b = self._busy.get(name)
            if b is not None:
                b[k] -= 1

        fut.add_done_callback(done)
        return fut

    def stage_finished(self, stage: str) -> None:
        key = f"gpu:{stage}"  # a GPU stage's actors go when it is done; CPU actors stay for the run
        self._busy.pop(key, None)
        for actor in self._actors.pop(key, []):
            self.ray.kill(actor)

    def shutdown(self, cancel: bool = False) -> None:
        for key in list(self._actors):
            self._busy.pop(key, None)
            for actor in self._actors.pop(key, []):
                self.ray.kill(actor)


def make_executor(name: str = "serial", workers: int | None = None, address: str | None = None) -> Executor:
    if name == "serial":
        return SerialExecutor()
    if name == "pool":
        return PoolExecutor(workers)
    if name == "ray":
        return RayExecutor(workers, address=address)
    raise ValueError(f"unknown executor {name!r}: choose serial, pool or ray")


def scratch_dir(corpus_root: str | Path, session_id: str, stage: str, run_id: str) -> str:
    return str(Path(corpus_root) / "sessions" / session_id / ".scratch" / f"{stage}-{run_id}")
