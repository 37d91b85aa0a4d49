"""The judge: every ok generated response x judge model x criterion -> one row of
``<corpus>/judgments.parquet`` (``JUDGMENTS_COLUMNS`` first, then diagnostics). The corpus stage
`emoguide.stages.judge` wraps :func:`judge` for the runner and the `emoguide judge` verb.

Like ``emoguide generate`` (``emoguide.llm.generate``): each completion goes into the corpus's
SQLite completion cache the moment it arrives (keyed with the logprobs request, so a completion
without logprobs never answers one that needs them), the table is checkpointed atomically every
few rows and on the way out of an interrupted run, a rerun takes what it can from the cache (no
model call) or from an unchanged ok row, and a failed row (timeout, dead server, unparseable
answer) is recorded with its reason while the batch goes on, then retried next time.

Methods (``method`` on every row; ``method_requested`` says what was asked):

- ``logprobs``: one greedy call with top-k log-probabilities; a backend that returns none gives
  an error row saying so (kind ``no_logprobs``), never a silent switch to sampling;
- ``sampling``: n calls at temperature ~1 (seeds seed, seed+1, ...), mean and spread;
- ``auto``: logprobs where the backend returns them, else sampling, and the row says which
  (``method`` = ``sampling``, ``reason`` = why).

``reason`` holds the failure for failed rows, and for ok rows a note when there is one (the auto
switch, unparseable samples); the answer form is score-first, so there is no rationale to keep.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import pandas as pd

from emoguide.config import LLMSettings
from emoguide.corpus.atomic import read_parquet, write_parquet
from emoguide.evaluation.context import Context, corpus_contexts
from emoguide.evaluation.criteria import Criterion, criteria_hash, default_criteria
from emoguide.evaluation.judge.prompt import PROMPT_VERSION, build_messages, prompt_hash
from emoguide.evaluation.judge.scoring import Score, ScoreError, from_logprobs, from_samples
from emoguide.evaluation.judge.steps import StepsFile, ensure_steps
from emoguide.evaluation.schema import JUDGMENTS_COLUMNS
from emoguide.llm.base import BackendLoader, Completion, LLMBackend, LLMError
from emoguide.llm.cache import CompletionCache, cache_key
from emoguide.llm.registry import get_backend
from emoguide.summary import BatchSummary

METHOD_CHOICES = ("auto", "logprobs", "sampling")
JUDGMENTS_FILE = "judgments.parquet"
KEY = ["session_id", "target_index", "model", "condition", "judge_model", "criterion"]

EXTRA_COLUMNS = [
    "status",  # ok | error
    "error_kind",  # timeout, connection, no_logprobs, unparseable, missing_context, ...
    "method_requested",  # auto | logprobs | sampling
    "score_sd",  # sd of the distribution (logprobs) or of the samples (sampling)
    "probs_mass",  # raw probability on valid score tokens before renormalising (logprobs)
    "n_unparseable",  # samples without a score (sampling)
    "score_token_index",  # position of the score token in the answer (logprobs)
    "score_in_answer",  # logprobs: the answer wrote a score (False: read at the first token)
    "raw_output",  # the answer (logprobs) or a JSON list of the samples' answers (sampling)
    "cache_hit",  # True: no model call was made for this row
    "latency_s",  # model time for this row (summed over samples)
    "retries",
    "judge_endpoint",
    "temperature",
    "top_logprobs",
    "max_tokens",
    "seed",
    "settings_hash",
    "prompt_version",
    "steps_version",
]
COLUMNS = list(JUDGMENTS_COLUMNS) + EXTRA_COLUMNS

_STR = ["session_id", "model", "condition", "judge_model", "criterion", "method", "reason",
        "prompt_hash", "steps_hash", "created_at", "status", "error_kind", "method_requested",
        "raw_output", "judge_endpoint", "settings_hash", "prompt_version"]
_INT = ["score", "n_samples", "n_unparseable", "score_token_index", "top_logprobs", "max_tokens",
        "seed", "steps_version"]
_FLOAT = ["score_expected", "score_sd", "probs_mass", "latency_s", "temperature"]

CHECKPOINT_ROWS = 10
CHECKPOINT_SECONDS = 5.0

RowCallback = Callable[[dict[str, Any]], None]


@dataclass
class JudgeSettings:
    method: str = "auto"
    samples: int = 20  # G-Eval drew 20 at temperature 1 (docs/judge.md)
    sample_temperature: float = 1.0
    top_logprobs: int = 20  # OpenAI's maximum; the scale's 5 tokens are nearly always in it
    max_tokens: int = 10  # score-first: the score is the first token or close to it
    seed: int = 0  # sampling seeds seed..seed+n-1; also shuffles the work order
    steps_max_tokens: int = 400

    def __post_init__(self):
        if self.method not in METHOD_CHOICES:
            raise ValueError(f"method {self.method!r}: use one of {', '.join(METHOD_CHOICES)}")
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, not {self.samples}")

    def hash(self) -> str:
        d = asdict(self)
        d.pop("steps_max_tokens")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in order with stable dtypes; nulls stay nulls (no 0 or "" for a missing score)."""
    df = df.copy()
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    for col in _STR:
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    df["probs"] = df["probs"].astype(object).where(df["probs"].notna(), None)
    df["target_index"] = pd.to_numeric(df["target_index"]).astype("int64")
    for col in _INT:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in _FLOAT:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["retries"] = pd.to_numeric(df["retries"], errors="coerce").fillna(0).astype("int64")
    df["cache_hit"] = df["cache_hit"].astype(object).where(df["cache_hit"].notna(), False).astype(bool)
    df["score_in_answer"] = df["score_in_answer"].astype("boolean")  # nullable: None for sampling
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra]


def judgments_path(corpus) -> Any:
    return corpus.root / JUDGMENTS_FILE


def read_judgments(path) -> pd.DataFrame:
    try:
        return conform(read_parquet(path))
    except FileNotFoundError:
        return conform(pd.DataFrame({c: [] for c in COLUMNS}))


class CachedCaller:
    """backend.complete through the completion cache; counts nothing, decides nothing."""

    def __init__(self, cache: CompletionCache):
        self.cache = cache
        self._loader = BackendLoader()

    def ensure_loaded(self, backend: LLMBackend) -> None:
        self._loader.ensure_loaded(backend)

    def key(self, backend, messages, temperature, max_tokens, seed, logprobs) -> str:
        return cache_key(backend.id, messages, temperature, max_tokens, seed, logprobs)

    def lookup(self, key: str) -> tuple[Completion, float] | None:
        return self.cache.get(key)

    def call(
        self, backend, messages, *, temperature, max_tokens, seed, logprobs, timeout, force=False
    ) -> tuple[Completion, float, bool]:
        """(completion, created_at, cache_hit). A logprob request's answer is cached only when it
        came with logprobs, so a server fixed later is asked again."""
        key = self.key(backend, messages, temperature, max_tokens, seed, logprobs)
        if not force:
            hit = self.cache.get(key)
            if hit is not None:
                return hit[0], hit[1], True
        self.ensure_loaded(backend)
        completion = backend.complete(
            messages, temperature=temperature, max_tokens=max_tokens, seed=seed, timeout=timeout,
            logprobs=logprobs,
        )
        if logprobs is None or completion.logprobs is not None:
            created = self.cache.put(key, backend.id, completion)
        else:
            created = time.time()
        return completion, created, False


@dataclass
class Task:
    gen: dict[str, Any]
    context: Context | None
    context_error: str
    backend: LLMBackend
    criterion: Criterion


class _Run:
    def __init__(self, settings: JudgeSettings, llm: LLMSettings, caller: CachedCaller,
                 steps: StepsFile, existing: dict, force: bool):
        self.s = settings
        self.llm = llm
        self.caller = caller
        self.steps = steps
        self.existing = existing
        self.force = force
        self.settings_hash = settings.hash()
        #: auto mode: judges found not to return logprobs, with why (decided once per judge)
        self.no_logprobs: dict[str, str] = {}
        self._lock = threading.Lock()

    def base_row(self, t: Task, messages) -> dict[str, Any]:
        g = t.gen
        return {
            "session_id": g["session_id"],
            "target_index": int(g["target_index"]),
            "model": g["model"],
            "condition": g["condition"],
            "judge_model": t.backend.id,
            "criterion": t.criterion.name,
            "score": None,
            "score_expected": None,
            "probs": None,
            "method": None,
            "n_samples": None,
            "reason": "",
            "prompt_hash": prompt_hash(messages) if messages else None,
            "steps_hash": self.steps.hash,
            "created_at": _iso(time.time()),
            "status": "ok",
            "error_kind": "",
            "method_requested": self.s.method,
            "score_sd": None,
            "probs_mass": None,
            "n_unparseable": None,
            "score_token_index": None,
            "score_in_answer": None,
            "raw_output": None,
            "cache_hit": False,
            "latency_s": None,
            "retries": 0,
            "judge_endpoint": t.backend.endpoint,
            "temperature": None,
            "top_logprobs": None,
            "max_tokens": self.s.max_tokens,
            "seed": self.s.seed,
            "settings_hash": self.settings_hash,
            "prompt_version": PROMPT_VERSION,
            "steps_version": self.steps.version,
        }

    @staticmethod
    def fail(row: dict[str, Any], kind: str, message: str, retries: int = 0) -> dict[str, Any]:
        row.update(status="error", error_kind=kind, reason=f"{kind}: {message}", retries=retries,
                   score=None, score_expected=None, probs=None)
        return row

    @staticmethod
    def fill(row: dict[str, Any], sc: Score) -> dict[str, Any]:
        row.update(
            score=sc.score, score_expected=sc.expected, probs=sc.probs_json(), method=sc.method,
            n_samples=sc.n_samples, score_sd=sc.sd, probs_mass=sc.mass,
            n_unparseable=sc.n_unparseable if sc.method == "sampling" else None,
            score_token_index=sc.token_index, score_in_answer=sc.in_answer,
        )
        if sc.in_answer is False:
            row["reason"] = (f"no score in the answer: read at the first token (mass "
                             f"{sc.mass:.3g} on scores)")
        return row

    def reusable(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """An ok row already in judgments.parquet for the same prompt, steps and settings."""
        old = self.existing.get(tuple(row[k] for k in KEY))
        if not old or old.get("status") != "ok":
            return None
        if (old.get("prompt_hash"), old.get("steps_hash"), old.get("settings_hash")) != (
            row["prompt_hash"], row["steps_hash"], row["settings_hash"]
        ):
            return None
        kept = {c: old.get(c) for c in COLUMNS}
        kept["cache_hit"] = True
        return kept

    # -- methods ------------------------------------------------------------------------------
    def _logprobs(self, t: Task, messages, row) -> dict[str, Any]:
        k = self.s.top_logprobs
        completion, created, hit = self.caller.call(
            t.backend, messages, temperature=0.0, max_tokens=self.s.max_tokens, seed=self.s.seed,
            logprobs=k, timeout=self.llm.timeout_s, force=self.force,
        )
        row.update(raw_output=completion.text, cache_hit=hit, created_at=_iso(created),
                   latency_s=completion.latency_s, retries=0 if hit else completion.retries,
                   temperature=0.0, top_logprobs=k, method="logprobs")
        if completion.logprobs is None:
            raise ScoreError(
                "no_logprobs",
                f"logprobs were requested but {t.backend.id} @ {t.backend.endpoint} returned none; "
                "use --method sampling (or auto)",
            )
        return self.fill(row, from_logprobs(completion.logprobs, t.criterion.scale, completion.text))

    def _sampling(self, t: Task, messages, row) -> dict[str, Any]:
        texts, created, latency, retries, hits = [], [], 0.0, 0, 0
        temp = float(self.s.sample_temperature)
        for i in range(self.s.samples):
            completion, made, hit = self.caller.call(
                t.backend, messages, temperature=temp, max_tokens=self.s.max_tokens,
                seed=self.s.seed + i, logprobs=None, timeout=self.llm.timeout_s, force=self.force,
            )
            texts.append(completion.text)
            created.append(made)
            latency += completion.latency_s or 0.0
            retries += 0 if hit else completion.retries
            hits += hit
        row.update(raw_output=json.dumps(texts, ensure_ascii=False), cache_hit=hits == len(texts),
                   created_at=_iso(max(created)), latency_s=latency, retries=retries,
                   temperature=temp, top_logprobs=None, method="sampling")
        sc = from_samples(texts, t.criterion.scale)
        self.fill(row, sc)
        if sc.n_unparseable:
            row["reason"] = f"{sc.n_unparseable} of {len(texts)} samples had no score"
        return row

    def _first_key(self, t: Task, messages, method: str) -> str:
        if method == "sampling":
            return self.caller.key(t.backend, messages, float(self.s.sample_temperature),
                                   self.s.max_tokens, self.s.seed, None)
        return self.caller.key(t.backend, messages, 0.0, self.s.max_tokens, self.s.seed,
                               self.s.top_logprobs)

    def run_one(self, t: Task) -> dict[str, Any]:
        if t.context is None:
            return self.fail(self.base_row(t, None), "missing_context", t.context_error)
        messages = build_messages(
            t.criterion, self.steps.steps_for(t.criterion.name), t.context,
            t.gen.get("technique") or "", t.gen.get("response") or "",
        )
        row = self.base_row(t, messages)
        try:
            method = self.s.method
            if method == "auto" and t.backend.id in self.no_logprobs:
                method = "sampling"
            if not self.force and self.caller.lookup(self._first_key(t, messages, method)) is None:
                kept = self.reusable(row)
                if kept is not None:
                    return kept
            if method == "sampling":
                out = self._sampling(t, messages, row)
                if self.s.method == "auto":
                    note = f"auto: {self.no_logprobs[t.backend.id]}; sampled"
                    out["reason"] = f"{note}; {out['reason']}" if out["reason"] else note
                return out
            try:
                return self._logprobs(t, messages, row)
            except (ScoreError, LLMError) as exc:
                why = self._unsupported(exc)
                if self.s.method != "auto" or why is None:
                    raise
                with self._lock:
                    self.no_logprobs.setdefault(t.backend.id, why)
                row = self.base_row(t, messages)
                out = self._sampling(t, messages, row)
                note = f"auto: {why}; sampled"
                out["reason"] = f"{note}; {out['reason']}" if out["reason"] else note
                return out
        except ScoreError as exc:
            return self.fail(row, exc.kind, exc.message)
        except LLMError as exc:
            return self.fail(row, exc.kind, exc.message, exc.retries)
        except Exception as exc:  # noqa: BLE001 - one bad row never stops the batch
            return self.fail(row, "internal", f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _unsupported(exc: Exception) -> str | None:
        """Why a backend cannot do logprobs, when that is what the failure says; else None."""
        if isinstance(exc, ScoreError) and exc.kind == "no_logprobs":
            return "the backend returned no log-probabilities"
        if isinstance(exc, LLMError) and exc.kind == "bad_request" and "logprob" in exc.message.lower():
            return f"the backend refused logprobs ({exc.message[:120]})"
        return None


class StudyCriteriaError(ValueError):
    """The corpus has a rating study whose criteria cannot be read."""


def study_criteria(corpus_root) -> tuple[list[Criterion] | None, str]:
    """The rating study's criteria when the corpus has a study, so judge and raters read the same
    statements; else (None, why: the paper's criteria are judged). A study that exists but cannot
    be read raises StudyCriteriaError naming the file."""
    from pathlib import Path

    root = Path(corpus_root)
    if not (root / "ratings.sqlite").exists():
        return None, f"no rating study in {root} (ratings.sqlite): judging the paper's criteria"
    try:
        from emoguide.evaluation.rating.config import load_study_criteria
    except ImportError as exc:
        return None, f"the rating study's criteria cannot be read here ({exc}): judging the paper's criteria"
    try:
        criteria = load_study_criteria(root)
    except Exception as exc:  # noqa: BLE001 - a study that exists but cannot be read is an error
        raise StudyCriteriaError(f"reading the rating study's criteria from {root / 'ratings.sqlite'}: {exc}") from exc
    if not criteria:
        return None, "the rating study names no criteria: judging the paper's criteria"
    return list(criteria), f"criteria from the rating study: {', '.join(c.name for c in criteria)}"


def _progress(console, enabled: bool):
    from emoguide.llm.generate import _progress as progress_bar

    return progress_bar(console, enabled)


def _label(row: dict[str, Any]) -> str:
    return (f"{row['session_id']}#{row['target_index']}/{row['condition']}/{row['model']} "
            f"<- {row['judge_model']} [{row['criterion']}]")


def judge(
    corpus,
    models: Iterable[str],
    *,
    criteria: list[Criterion] | None = None,
    settings: JudgeSettings | None = None,
    llm_settings: LLMSettings | None = None,
    steps_file=None,
    regenerate_steps: bool = False,
    steps_model: str | None = None,
    force: bool = False,
    limit: int = 0,
    console=None,
    progress: bool = True,
    on_row: RowCallback | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, BatchSummary]:
    """Judge every ok generation (with a response) x judge model x criterion into judgments.parquet.

    Returns this call's rows and a summary: fresh judgments ``done``, cached or kept ones and
    generations without a response ``skipped``, failures ``failed`` with their reason.
    ``on_plan`` is called once with the number of rows to judge, ``on_row`` in the calling
    thread with each finished row (the corpus stage ``emoguide.stages.judge`` turns both into
    progress events).
    """
    from rich.console import Console
    from rich.markup import escape

    from emoguide.llm.generate import read_generations

    settings = settings or JudgeSettings()
    llm = llm_settings or corpus.settings.llm
    console = console or Console(stderr=True)
    criteria = list(criteria) if criteria else default_criteria()
    backends: dict[str, LLMBackend] = {}
    for spec in models:
        backend = get_backend(spec, llm)
        backends.setdefault(backend.id, backend)
    if not backends:
        raise ValueError("name at least one judge model (-m provider:model)")
    if settings.method != "sampling":
        for backend in backends.values():
            if hasattr(backend, "logits_all"):  # in-process llama.cpp: load once, with logits
                backend.logits_all = True

    if not corpus.generations_path.exists():
        raise FileNotFoundError(f"{corpus.generations_path} does not exist: run `emoguide generate` first")
    summary = BatchSummary(title="judge")
    gens = read_generations(corpus.generations_path)
    usable = (gens["status"] == "ok") & (gens["response"].fillna("").str.strip() != "")
    for g in gens[~usable].to_dict("records"):
        why = "no response" if g["status"] == "ok" else f"generation {g['status']}"
        summary.add(f"{g['session_id']}#{g['target_index']}/{g['condition']}/{g['model']}", "judge", "skipped", why)
    gens = gens[usable].sort_values(["session_id", "target_index", "model", "condition"], kind="stable")
    if limit:
        keep = gens[["session_id", "target_index"]].drop_duplicates().head(int(limit))
        gens = gens.merge(keep, on=["session_id", "target_index"])

    cache = CompletionCache(corpus.cache_path)
    caller = CachedCaller(cache)
    steps = _steps(corpus, criteria, backends, caller, llm, settings, steps_file, regenerate_steps,
                   steps_model, console)

    contexts: dict[tuple[str, int], Context] = {}
    context_errors: dict[str, str] = {}
    for sid, rows in gens.groupby("session_id", sort=True):
        try:
            contexts.update(corpus_contexts(corpus, rows))
        except (KeyError, FileNotFoundError, OSError, ValueError) as exc:
            context_errors[str(sid)] = f"session {sid}: context unavailable: {exc}"

    # Responses in a shuffled, seeded order (docs/judge.md; the seed goes into
    # judgments.json); each response's criteria stay together, so their prompts, which share
    # the evidence as a prefix, follow each other and the server's prefix cache serves them.
    records = gens.to_dict("records")
    random.Random(settings.seed).shuffle(records)
    tasks: list[Task] = []
    for g in records:
        ctx = contexts.get((g["session_id"], int(g["target_index"])))
        err = context_errors.get(g["session_id"], "context unavailable")
        for backend in backends.values():
            for c in criteria:
                tasks.append(Task(g, ctx, err, backend, c))

    for backend in backends.values():
        if backend.is_remote and tasks:
            console.print(
                f"[bold yellow]NOTE:[/] session text will be sent to {escape(backend.endpoint)} "
                f"({escape(backend.id)}) for judging", highlight=False,
            )

    path = judgments_path(corpus)
    existing_df = read_judgments(path)
    existing = {tuple(r[k] for k in KEY): r for r in existing_df.to_dict("records")}
    run = _Run(settings, llm, caller, steps, existing, force)
    done_rows: dict[tuple, dict[str, Any]] = {}
    state = {"dirty": False, "since": 0, "last": time.monotonic()}

    def checkpoint() -> None:
        if not state["dirty"]:
            return
        new = conform(pd.DataFrame(list(done_rows.values()), columns=COLUMNS))
        new_keys = set(done_rows)
        keep = existing_df[[k not in new_keys for k in zip(*(existing_df[c] for c in KEY))]] \
            if len(existing_df) else existing_df
        merged = pd.concat([keep, new], ignore_index=True) if len(keep) else new
        merged = conform(merged).sort_values(KEY, kind="stable").reset_index(drop=True)
        write_parquet(path, merged)
        state.update(dirty=False, since=0, last=time.monotonic())

    def record(row: dict[str, Any]) -> None:
        done_rows[tuple(row[k] for k in KEY)] = row
        state["dirty"] = True
        state["since"] += 1
        if row["status"] == "ok":
            if row["cache_hit"]:
                summary.add(_label(row), "judge", "skipped", "cached")
            else:
                summary.add(_label(row), "judge", "done", row.get("reason") or "")
        else:
            summary.add(_label(row), "judge", "failed", row["reason"])

    if on_plan:
        on_plan(len(tasks))
    executor = ThreadPoolExecutor(max_workers=max(1, int(llm.concurrency)), thread_name_prefix="emoguide-judge")
    try:
        with _progress(console, progress) as bar:
            task_id = bar.add_task("judge", total=len(tasks))
            futures = [executor.submit(run.run_one, t) for t in tasks]
            for future in as_completed(futures):
                row = future.result()
                record(row)
                bar.advance(task_id)
                if on_row:
                    on_row(row)
                if state["since"] >= CHECKPOINT_ROWS or time.monotonic() - state["last"] >= CHECKPOINT_SECONDS:
                    checkpoint()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        checkpoint()

    executor.shutdown(wait=True)
    cache.close()
    _write_meta(corpus, backends, settings, llm, steps, criteria, done_rows.values(), run.no_logprobs)
    for backend in backends.values():
        backend.close()
    rows = sorted(done_rows.values(), key=lambda r: tuple(r[k] for k in KEY))
    return conform(pd.DataFrame(rows, columns=COLUMNS)), summary


def _steps(corpus, criteria, backends, caller: CachedCaller, llm: LLMSettings, settings: JudgeSettings,
           steps_file, regenerate: bool, steps_model: str | None, console) -> StepsFile:
    """The frozen steps; a model is built (and asked) only when steps must be written."""
    if steps_model:
        gen_backend = get_backend(steps_model, llm)
        gen_backend = backends.get(gen_backend.id, gen_backend)
    else:
        gen_backend = next(iter(backends.values()))

    def generate(messages: list[dict[str, str]]) -> str:
        completion, _, _ = caller.call(
            gen_backend, messages, temperature=0.0, max_tokens=settings.steps_max_tokens,
            seed=settings.seed, logprobs=None, timeout=llm.timeout_s, force=regenerate,
        )
        return completion.text

    try:
        return ensure_steps(
            corpus.root, criteria, steps_file=steps_file, regenerate=regenerate, generate=generate,
            generator_id=gen_backend.id, use_packaged=steps_model is None,
            log=lambda msg: console.print(msg, highlight=False, markup=False),
        )
    except LLMError as exc:
        from emoguide.evaluation.judge.steps import StepsError

        raise StepsError(f"writing evaluation steps with {gen_backend.id}: {exc}") from exc


def _write_meta(corpus, backends, settings: JudgeSettings, llm: LLMSettings, steps: StepsFile,
                criteria: list[Criterion], rows, no_logprobs: dict[str, str]) -> None:
    """``judgments.json`` beside the table: judges, settings, steps file, criteria, methods used."""
    from emoguide.corpus.atomic import read_json, write_json
    from emoguide.corpus.stages import package_versions

    meta_path = judgments_path(corpus).with_suffix(".json")
    meta = read_json(meta_path, default={}) or {}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    judges = dict(meta.get("judges", {}))
    methods: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.get("method"):
            m = methods.setdefault(r["judge_model"], {})
            m[r["method"]] = m.get(r["method"], 0) + 1
    for backend in backends.values():
        judges[backend.id] = {
            **backend.info(),
            "last_run": now,
            "methods_used_last_run": methods.get(backend.id, {}),
            "logprobs_unavailable": no_logprobs.get(backend.id),
        }
    meta.update(
        judges=judges,
        settings={**asdict(settings), "settings_hash": settings.hash(),
                  "shuffle_seed": settings.seed},
        llm_settings=llm.model_dump(mode="json", exclude={"providers"}),
        steps={
            "path": str(steps.path),
            "version": steps.version,
            "sha256_16": steps.hash,
            "sources": {name: c.source for name, c in steps.criteria.items()},
        },
        criteria=[c.model_dump(mode="json") for c in criteria],
        criteria_hash=criteria_hash(criteria),
        prompt_version=PROMPT_VERSION,
        blinded="the judge prompt holds the plain context dialogue, technique and response only: "
                "never the generation prompt, the model or the condition",
        versions=package_versions(("emoguide", "llama-cpp-python", "openai", "pandas", "pyarrow")),
        last_run=now,
    )
    write_json(meta_path, meta)
