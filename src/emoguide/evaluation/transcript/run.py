"""Match reference sessions to corpus sessions and compute the transcript figures.

The hypothesis of a session is what the corpus holds: `utterances.parquet` (speaker, role, text and
times of each utterance) and, where the asr stage ran, `words.parquet` (word times; each word takes
the speaker and role of the utterance its midpoint falls in, or the nearest). A session imported
from a transcript has no word times: its utterance words are spread evenly over the utterance
(``word_times: "spread"`` in the report). When `diarization.parquet` exists, DER/JER of the raw
diarizer output are reported too (``diarizer_der``, ``diarizer_jer``), beside those of the
final utterance turns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from emoguide.corpus import Corpus
from emoguide.corpus.atomic import read_parquet, write_json
from emoguide.errors import MissingExtraError
from emoguide.evaluation.transcript import metrics as M
from emoguide.evaluation.transcript.references import Reference, expand_reference_paths, match_key, read_reference_file

BOUNDARY_TOLERANCE_S = 0.5
#: Per-session columns, in report order.
COLUMNS = [
    "session_id", "reference", "format", "word_times",
    "wer", "ref_words", "substitutions", "deletions", "insertions",
    "der", "jer", "scored_s", "missed_s", "false_alarm_s", "confusion_s",
    "diarizer_der", "diarizer_jer",
    "attribution", "attribution_words", "role_accuracy", "role_words",
    "boundary_precision", "boundary_recall", "boundaries_matched", "boundaries_ref", "boundaries_hyp",
    "ref_speakers", "hyp_speakers",
]


@dataclass
class TranscriptEvaluation:
    rows: list[dict[str, Any]]
    overall: dict[str, Any]
    unmatched_references: list[dict[str, str]]
    sessions_without_reference: list[str]
    failed: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    csv_path: Path | None = None
    json_path: Path | None = None


# ----------------------------------------------------------------------------- the hypothesis


def session_keys(session) -> set[str]:
    src = session.read_source()
    names = {session.id, src.get("session_id"), src.get("title")}
    for k in ("file_name", "origin", "path"):
        v = src.get(k)
        if v and not str(v).startswith(("http://", "https://")):
            names.add(Path(str(v)).stem)
    return {match_key(n) for n in names if n}


def _spread_words(utts: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for u in utts.itertuples(index=False):
        words = M.normalise_words(u.text)
        if not words or pd.isna(u.start) or pd.isna(u.end):
            continue
        step = (float(u.end) - float(u.start)) / len(words)
        for k, w in enumerate(words):
            rows.append({"start": u.start + k * step, "end": u.start + (k + 1) * step, "text": w,
                         "speaker": u.speaker, "role": u.role})
    return pd.DataFrame(rows, columns=["start", "end", "text", "speaker", "role"])


def hypothesis_words(session, utts: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Timed words with the speaker and role of their utterance; and how their times were got."""
    path = session.path / "words.parquet"
    if not path.exists() or len(utts) == 0:
        return _spread_words(utts), "spread"
    words = read_parquet(path)
    if len(words) == 0:
        return pd.DataFrame(columns=["start", "end", "text", "speaker", "role"]), "asr"
    mids = (words["start"].to_numpy(float) + words["end"].to_numpy(float)) / 2
    us, ue = utts["start"].to_numpy(float), utts["end"].to_numpy(float)
    dist = np.maximum(us[None, :] - mids[:, None], 0) + np.maximum(mids[:, None] - ue[None, :], 0)
    k = np.argmin(dist, axis=1)
    out = pd.DataFrame({
        "start": words["start"].astype(float), "end": words["end"].astype(float),
        "text": words["text"].astype(str),
        "speaker": utts["speaker"].astype(object).to_numpy()[k],
        "role": utts["role"].astype(object).to_numpy()[k],
    })
    return out, "asr"


def _valid_turns(df: pd.DataFrame) -> pd.DataFrame:
    ok = df["start"].notna() & df["end"].notna() & df["speaker"].notna()
    return df[ok]


# ------------------------------------------------------------------------------ per session


def evaluate_session(session, ref: Reference, *, collar: float, skip_overlap: bool) -> dict[str, Any]:
    utts = session.read_utterances()
    utts = utts.sort_values(["start", "index"], kind="stable").reset_index(drop=True)
    hyp_turns = _valid_turns(utts[["speaker", "start", "end", "role", "text"]])
    words, word_times = hypothesis_words(session, hyp_turns)
    row: dict[str, Any] = {"session_id": session.id, "reference": str(ref.path), "format": ref.fmt,
                           "word_times": word_times}

    # WER: the reference's words (in time order) against the utterance texts.
    if ref.has_text:
        ref_words = [w for t in ref.turns["text"] for w in M.normalise_words(t)]
        hyp_words = [w for t in utts["text"] for w in M.normalise_words(t)]
        row.update(M.wer_counts(ref_words, hyp_words))
    else:
        row.update({"wer": None, "ref_words": None, "substitutions": None, "deletions": None, "insertions": None})

    if ref.has_ends:
        row.update(M.diarization_errors(ref.turns, hyp_turns, collar=collar, skip_overlap=skip_overlap, uri=session.id))
        dpath = session.path / "diarization.parquet"
        if dpath.exists():
            d = M.diarization_errors(ref.turns, read_parquet(dpath), collar=collar, skip_overlap=skip_overlap, uri=session.id)
            row.update({"diarizer_der": d["der"], "diarizer_jer": d["jer"]})
    att = M.speaker_attribution(ref.turns, words, skip_overlap=skip_overlap)
    row.update({"attribution": att["attribution"], "attribution_words": att["attribution_words"]})
    row["speaker_map"] = att["speaker_map"]
    if ref.has_roles:
        row.update(M.role_accuracy(ref.turns, words))
    row.update(M.boundary_scores(ref.turns, hyp_turns, tolerance=BOUNDARY_TOLERANCE_S, ends=ref.has_ends))
    row["ref_speakers"] = int(ref.turns["speaker"].nunique())
    row["hyp_speakers"] = int(hyp_turns["speaker"].nunique())
    for c in COLUMNS:
        row.setdefault(c, None)
    return row


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def overall_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled over sessions: errors over reference units (words, scored seconds, boundaries)."""
    def total(key: str, where: str | None = None) -> float:
        return float(sum(r[key] for r in rows if r.get(key) is not None and (where is None or r.get(where) is not None)))

    out: dict[str, Any] = {c: None for c in COLUMNS}
    out.update({"session_id": "ALL", "reference": f"{len(rows)} session(s)"})
    wer_rows = [r for r in rows if r.get("wer") is not None]
    if wer_rows:
        errs = sum(r["substitutions"] + r["deletions"] + r["insertions"] for r in wer_rows)
        out.update({"wer": _ratio(errs, sum(r["ref_words"] for r in wer_rows)),
                    "ref_words": int(sum(r["ref_words"] for r in wer_rows)),
                    **{k: int(sum(r[k] for r in wer_rows)) for k in ("substitutions", "deletions", "insertions")}})
    der_rows = [r for r in rows if r.get("der") is not None]
    if der_rows:
        scored = sum(r["scored_s"] for r in der_rows)
        comp = {k: float(sum(r[k] for r in der_rows)) for k in ("missed_s", "false_alarm_s", "confusion_s")}
        out.update({"der": _ratio(sum(comp.values()), scored), "scored_s": scored, **comp})
        # JER is a mean over reference speakers per file; pooled here as the scored-time-weighted mean.
        out["jer"] = _ratio(sum(r["jer"] * r["scored_s"] for r in der_rows), scored)
    dd = [r for r in rows if r.get("diarizer_der") is not None and r.get("scored_s")]
    if dd:
        w = sum(r["scored_s"] for r in dd)
        out["diarizer_der"] = _ratio(sum(r["diarizer_der"] * r["scored_s"] for r in dd), w)
        out["diarizer_jer"] = _ratio(sum(r["diarizer_jer"] * r["scored_s"] for r in dd), w)
    for key, n in (("attribution", "attribution_words"), ("role_accuracy", "role_words")):
        rs = [r for r in rows if r.get(key) is not None]
        if rs:
            words = sum(r[n] for r in rs)
            out[key] = _ratio(sum(r[key] * r[n] for r in rs), words)
            out[n] = int(words)
    m, nr, nh = total("boundaries_matched"), total("boundaries_ref"), total("boundaries_hyp")
    out.update({"boundaries_matched": int(m), "boundaries_ref": int(nr), "boundaries_hyp": int(nh),
                "boundary_precision": _ratio(m, nh), "boundary_recall": _ratio(m, nr)})
    return out


# --------------------------------------------------------------------------------------- run


def load_references(paths: Iterable[str | Path]) -> tuple[list[Reference], list[str]]:
    """Every reference session in `paths`; a bad file raises `InputError` naming it."""
    refs: list[Reference] = []
    warnings: list[str] = []
    for p in expand_reference_paths(paths):
        for ref in read_reference_file(p):
            refs.append(ref)
            warnings.extend(f"{p}: {w}" for w in ref.warnings)
    return refs, warnings


def evaluate_transcripts(
    corpus: Corpus,
    reference_paths: Iterable[str | Path],
    *,
    collar: float = 0.0,
    skip_overlap: bool = False,
    sessions: Iterable[str] | None = None,
    out_dir: Path | None = None,
) -> TranscriptEvaluation:
    """Evaluate every corpus session that has a reference; write CSV + JSON (see docs/evaluate.md)."""
    if collar < 0:
        raise ValueError("collar must be >= 0")
    refs, warnings = load_references(reference_paths)
    only = list(sessions or [])
    corpus_sessions = corpus.sessions(only or None)
    by_key: dict[str, list] = {}
    for s in corpus_sessions:
        for k in session_keys(s):
            by_key.setdefault(k, []).append(s)
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    unmatched: list[dict[str, str]] = []
    matched_ids: set[str] = set()
    for ref in refs:
        hits = {s.id: s for k in ref.keys() for s in by_key.get(k, [])}
        if not hits:
            unmatched.append({"reference": ref.name, "file": str(ref.path)})
            continue
        if len(hits) > 1:
            warnings.append(f"{ref.path}: reference {ref.name!r} matches several sessions "
                            f"({', '.join(sorted(hits))}); each is evaluated against it")
        for sid, session in sorted(hits.items()):
            if sid in matched_ids:
                warnings.append(f"session {sid}: a second reference ({ref.path}, {ref.name!r}) also matches; "
                                "evaluated again against it")
            matched_ids.add(sid)
            try:
                rows.append(evaluate_session(session, ref, collar=collar, skip_overlap=skip_overlap))
            except MissingExtraError:
                raise
            except Exception as exc:  # one session's failure never ends the batch
                failed.append({"session_id": sid, "reference": str(ref.path), "error": f"{type(exc).__name__}: {exc}"})
    without = sorted(s.id for s in corpus_sessions if s.id not in matched_ids)
    result = TranscriptEvaluation(
        rows=rows,
        overall=overall_row(rows) if rows else {},
        unmatched_references=unmatched,
        sessions_without_reference=without,
        failed=failed,
        warnings=warnings,
        settings={"collar": collar, "skip_overlap": skip_overlap, "boundary_tolerance_s": BOUNDARY_TOLERANCE_S,
                  "collar_convention": "pyannote.metrics: total width centred on each reference boundary",
                  "wer_normalisation": "NFKC, casefold, hyphens/dashes/underscores/slashes -> space, "
                  "characters other than letters, digits, apostrophes removed, edge apostrophes stripped",
                  "sessions": only or "all"},
    )
    write_report(corpus, result, out_dir)
    return result


def _clean(v: Any) -> Any:
    if v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (np.floating,)):
        return _clean(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def report_stem(collar: float, skip_overlap: bool) -> str:
    """``transcript``, plus ``_collar<c>`` / ``_skip-overlap`` for other settings, so runs with
    different scoring sit side by side instead of overwriting each other."""
    stem = "transcript"
    if collar:
        stem += f"_collar{collar:g}"
    if skip_overlap:
        stem += "_skip-overlap"
    return stem


def write_report(corpus: Corpus, result: TranscriptEvaluation, out_dir: Path | None = None) -> None:
    out_dir = Path(out_dir) if out_dir else corpus.reports_dir / "evaluate"
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([*result.rows, *([result.overall] if result.overall else [])], columns=COLUMNS)
    stem = report_stem(result.settings.get("collar", 0.0), bool(result.settings.get("skip_overlap")))
    result.csv_path = out_dir / f"{stem}.csv"
    table.to_csv(result.csv_path, index=False)
    result.json_path = out_dir / f"{stem}.json"
    write_json(result.json_path, {
        "settings": result.settings,
        "sessions": [{k: _clean(v) for k, v in r.items()} for r in result.rows],
        "overall": {k: _clean(v) for k, v in result.overall.items()},
        "unmatched_references": result.unmatched_references,
        "sessions_without_reference": result.sessions_without_reference,
        "failed": result.failed,
        "warnings": result.warnings,
    })
