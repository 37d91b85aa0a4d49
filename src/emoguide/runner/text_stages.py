"""The text path's per-session stages: affect import, safety screen, dissonance, prompts.

Each function walks the chosen sessions, skips those whose stage is current (unless `force`),
records the outcome in stages.json, and never lets one session's failure stop the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from emoguide.config import DissonanceSettings, TargetSettings
from emoguide.corpus import Corpus, Session
from emoguide.errors import EmoguideError
from emoguide.prompts.conditions import Condition
from emoguide.prompts.items import PromptItem
from emoguide.runner.summary import BatchSummary

# Stages whose output the dissonance stage reads (media stages add "voice"/"face" later).
AFFECT_STAGES = ("ingest", "utterances", "roles", "affect_import", "voice", "face_affect", "text_affect")


def _per_session(
    corpus: Corpus,
    stage: str,
    sessions: Iterable[str] | None,
    settings,
    upstream: Iterable[str],
    work: Callable[[Session, object], pd.DataFrame],
    force: bool,
    summary: BatchSummary,
    inputs: Iterable[Path] = (),
) -> None:
    for session in corpus.sessions(sessions):
        run = session.stage(stage, settings=settings, upstream=upstream, inputs=inputs)
        if run.current and not force:
            summary.add(session.id, stage, "skipped", "unchanged")
            continue
        try:
            with run:
                df = work(session, run)
                session.write_utterances(df)
        except (EmoguideError, ValueError, KeyError, OSError) as exc:
            summary.add(session.id, stage, "failed", str(exc))
            continue
        summary.add(session.id, stage, "done", "; ".join(run.warnings))


def run_safety(
    corpus: Corpus, sessions: Iterable[str] | None = None, force: bool = False, screen=None
) -> BatchSummary:
    """Flag patient utterances with signs of acute risk: the risk-v2 screen by default, or
    `screen` (a RiskScreen or a lexical-only LexicalScreen); see docs/safety.md."""
    from emoguide import safety

    summary = BatchSummary("safety screen")
    scr = screen if screen is not None else safety.risk_screen()
    info = scr.info() if hasattr(scr, "info") else {"id": scr.id, "layers": ["lexical"]}

    def work(session: Session, run) -> pd.DataFrame:
        run.backends["safety"] = info["id"]
        run.extra["safety"] = info
        if info.get("semantic_error"):
            run.warn(f"semantic layer unavailable, lexical layer only: {info['semantic_error']}")
        df = safety.screen_utterances(session.read_utterances(), screen=scr)
        n = int(df["risk_flag"].fillna(False).sum())
        if n:
            levels = df.loc[df["risk_flag"].fillna(False).astype(bool), "risk_level"].dropna().value_counts()
            detail = ", ".join(f"{int(levels[lv])} {lv}" for lv in ("high", "moderate", "low") if lv in levels)
            run.warn(f"{n} patient utterance(s) flagged for acute-risk review" + (f" ({detail})" if detail else ""))
        return df

    _per_session(corpus, "safety", sessions, {"screen": info["id"]}, ["ingest", "utterances", "roles"], work, force, summary)
    return summary


def import_affect(
    corpus: Corpus, path: str | Path, scale: str = "-1-1", force: bool = False
) -> BatchSummary:
    """Merge an affect CSV (session_id, index, affect columns) into the sessions it names."""
    from emoguide.affect.importer import apply_affect, read_affect_csv

    summary = BatchSummary("affect import")
    path = Path(path)
    try:
        table = read_affect_csv(path, scale=scale)
    except EmoguideError as exc:
        summary.add(str(path), "affect_import", "failed", str(exc))
        return summary
    known = set(corpus.session_ids())
    for sid in sorted(set(table["session_id"]) - known):
        summary.add(sid, "affect_import", "failed", f"{path.name}: no such session in {corpus.root}")
    present = sorted(set(table["session_id"]) & known)

    def work(session: Session, run) -> pd.DataFrame:
        run.backends["affect"] = f"imported:{path.name}"
        rows = table[table["session_id"] == session.id]
        df, warnings = apply_affect(session.read_utterances(), rows, path)
        for w in warnings:
            run.warn(w)
        return df

    if present:
        _per_session(
            corpus, "affect_import", present, {"scale": scale}, ["ingest", "utterances"], work, force, summary, inputs=[path]
        )
    return summary


def run_dissonance(
    corpus: Corpus,
    settings: DissonanceSettings,
    sessions: Iterable[str] | None = None,
    force: bool = False,
) -> BatchSummary:
    """Eq. 1 per session: the paper's raw form by default, or a calibrated variant."""
    from emoguide.dissonance import compute_dissonance
    from emoguide.dissonance_variants import compute_dissonance_variant

    summary = BatchSummary("dissonance")

    def variant(df: pd.DataFrame) -> pd.DataFrame:
        threshold = settings.zscore_threshold if settings.method == "zscore" else settings.threshold
        return compute_dissonance_variant(
            df,
            method=settings.method,
            channels=tuple(settings.channels),
            threshold=None if settings.method == "percentile" else threshold,
            percentile=settings.percentile,
            scope=settings.scope,
            roles=tuple(settings.roles),
            dimensions=tuple(settings.dimensions),
            min_n=settings.min_n,
        )

    corpus_wide = None
    if settings.scope == "corpus" and not settings.is_paper_default:
        # Standardising / percentiles over the whole corpus need every session at once.
        corpus_wide = variant(corpus.utterances(sessions))

    def work(session: Session, run) -> pd.DataFrame:
        df = session.read_utterances()
        if corpus_wide is not None:
            cols = ["dissonance_score", "dissonance", "dissonance_dims", "dissonance_compared", "dissonance_method"]
            mine = corpus_wide[corpus_wide["session_id"] == session.id].set_index("index")[cols]
            df = df.drop(columns=cols).merge(mine, left_on="index", right_index=True, how="left")
        elif settings.is_paper_default:
            df = compute_dissonance(df, settings)
        else:
            df = variant(df)
        patients = df["role"] == "patient"
        scored = int(df.loc[patients, "dissonance_score"].notna().sum())
        flagged = int(df["dissonance"].fillna(False).sum())
        run.extra["counts"] = {"patient": int(patients.sum()), "scored": scored, "flagged": flagged}
        if not patients.any():
            run.warn("no patient utterances (roles unknown?)")
        elif scored == 0:
            a, b = settings.channels
            run.warn(f"no patient utterance has both {a} and {b} values: dissonance is null")
        return df

    _per_session(corpus, "dissonance", sessions, settings, AFFECT_STAGES, work, force, summary)
    return summary


def build_prompts(
    corpus: Corpus,
    conditions: list[Condition],
    target_settings: TargetSettings,
    sessions: Iterable[str] | None = None,
) -> tuple[list[PromptItem], BatchSummary]:
    """Render every condition for every target; report conditions whose inputs are missing."""
    from emoguide.prompts.render import render_session

    summary = BatchSummary("prompts")
    items: list[PromptItem] = []
    for session in corpus.sessions(sessions):
        try:
            df = session.read_utterances()
            got = render_session(df, conditions, target_settings)
        except (EmoguideError, ValueError, KeyError, OSError) as exc:
            summary.add(session.id, "prompts", "failed", str(exc))
            continue
        if not (df["role"] == "patient").any():
            summary.add(session.id, "prompts", "skipped", "no patient utterances: set roles first")
            continue
        if not got:
            summary.add(
                session.id,
                "prompts",
                "skipped",
                f"no target: no patient utterance ends a window of {target_settings.context_turns} turns "
                f"(strategy {target_settings.strategy})",
            )
            continue
        for cond in conditions:
            mine = [i for i in got if i.condition == cond.name]
            missing = [i for i in mine if i.status == "missing_inputs"]
            if missing and len(missing) == len(mine):
                summary.add(session.id, f"prompts:{cond.name}", "skipped", missing[0].missing)
            elif missing:
                summary.add(
                    session.id,
                    f"prompts:{cond.name}",
                    "done",
                    f"{len(mine) - len(missing)} rendered, {len(missing)} targets lack inputs",
                )
            else:
                summary.add(session.id, f"prompts:{cond.name}", "done", f"{len(mine)} rendered")
        items.extend(got)
    return items, summary
