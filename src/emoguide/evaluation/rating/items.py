"""What goes into a study: the selected generation rows, their blinded contexts, items and clips.

`create_study` is `emoguide rate init`: select rows (status ok, a non-empty response, the
config's models/conditions/sessions/targets, an optional seeded sample of contexts), rebuild
every context's plain dialogue (emoguide.evaluation.context: no emotion labels, never the
prompt), cut one clip per context, make the plan, and write ratings.sqlite in one go.

Every id a rater's page can see (item_id, context_id, clip file name) is drawn at random here;
the way back to (session, target, model, condition) is written only to the store's unblinding
table.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from emoguide.corpus.atomic import read_parquet
from emoguide.errors import InputError
from emoguide.evaluation.rating.config import StudyConfig, StudyConfigError
from emoguide.evaluation.rating.store import CLIPS_DIR, DB_NAME, RatingStore, now_iso, opaque_id

Progress = Callable[[int, int, str], None]


class StudyExistsError(Exception):
    """ratings.sqlite already holds ratings and --force was not given."""


@dataclass
class InitSummary:
    study_id: str
    contexts: int
    items: int
    raters: int
    assignments: int
    retests: int
    clips: dict[str, int]
    config_hash: str
    warnings: list[str] = field(default_factory=list)
    replaced: str | None = None  # what happened to an older study (backup path)


def select_rows(
    gens: pd.DataFrame, cfg: StudyConfig, source: Path | str = "generations.parquet", config_source: Path | str = "study.toml"
) -> pd.DataFrame:
    """The rows to rate: ok, with a response, within the selection, optionally a context sample.

    A selection value that matches no rateable row is an error naming the config key.
    """
    need = {"session_id", "target_index", "model", "condition", "status", "technique", "response"}
    missing = sorted(need - set(gens.columns))
    if missing:
        raise InputError(source, f"missing column(s) {missing}")
    sel = cfg.selection
    rows = gens[(gens["status"].astype(str) == "ok")]
    rows = rows[rows["response"].fillna("").astype(str).str.strip() != ""]
    for key, col in (("models", "model"), ("conditions", "condition"), ("sessions", "session_id")):
        wanted = getattr(sel, key)
        if not wanted:
            continue
        have = set(rows[col].astype(str))
        unknown = [w for w in wanted if w not in have]
        if unknown:
            raise StudyConfigError(
                config_source, [f"selection.{key}: {unknown} not among the rateable rows (have {sorted(have)})"]
            )
        rows = rows[rows[col].astype(str).isin(wanted)]
    if sel.targets:
        keys = sel.target_keys()
        have = set(zip(rows["session_id"].astype(str), rows["target_index"].astype(int)))
        unknown = sorted(keys - have)
        if unknown:
            raise StudyConfigError(
                config_source, [f"selection.targets: {[f'{s}:{t}' for s, t in unknown]} not among the rateable rows"]
            )
        mask = [k in keys for k in zip(rows["session_id"].astype(str), rows["target_index"].astype(int))]
        rows = rows[mask]
    rows = rows.sort_values(["session_id", "target_index", "model", "condition"], kind="stable").reset_index(drop=True)
    if sel.sample_contexts is not None:
        contexts = sorted(set(zip(rows["session_id"].astype(str), rows["target_index"].astype(int))))
        if sel.sample_contexts < len(contexts):
            keep = set(random.Random(f"{sel.seed}:contexts").sample(contexts, sel.sample_contexts))
            mask = [k in keep for k in zip(rows["session_id"].astype(str), rows["target_index"].astype(int))]
            rows = rows[mask].reset_index(drop=True)
    dup = rows.duplicated(["session_id", "target_index", "model", "condition"])
    if dup.any():
        first = rows[dup].iloc[0]
        raise InputError(
            source,
            f"{int(dup.sum())} duplicate row(s), e.g. {first['session_id']}:{first['target_index']} "
            f"{first['model']} {first['condition']}",
        )
    return rows


def _existing_ratings(path: Path) -> int:
    store = RatingStore.open(path)
    try:
        conn = store.connection()
        n = conn.execute("SELECT count(*) FROM ratings WHERE score IS NOT NULL").fetchone()[0]
        n += conn.execute("SELECT count(*) FROM notes").fetchone()[0]
        return int(n)
    finally:
        store.close()


def media_kind_of(session) -> tuple[str, Path | None]:
    """("video"|"audio"|"none", media path) from a session's source.json."""
    src = session.read_source() or {}
    if src.get("kind", "media") != "media":
        return "none", None
    p = src.get("path") or src.get("origin")
    if not p:
        return "none", None
    probe = src.get("probe") or {}
    if probe:
        has_video = probe.get("has_video", probe.get("video") is not None)
    else:  # no probe recorded: look at the file (a broken file is reported when the clip is cut)
        has_video = True
        try:
            import av

            from emoguide.media.probe import pick_video_stream

            with av.open(str(p)) as c:
                has_video = pick_video_stream(c) is not None
        except Exception:  # noqa: BLE001
            pass
    return ("video" if has_video else "audio"), Path(p)


def create_study(
    corpus,
    cfg: StudyConfig,
    force: bool = False,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    config_source: Path | str = "study.toml",
) -> InitSummary:
    """Build `<corpus>/ratings.sqlite` (see the module docstring)."""
    from emoguide import RESEARCH_NOTICE, __version__
    from emoguide.evaluation.context import corpus_contexts
    from emoguide.evaluation.rating import clips as clipmod
    from emoguide.evaluation.rating.plan import make_plan

    warnings: list[str] = []

    def _warn(msg: str) -> None:
        warnings.append(msg)
        if warn:
            warn(msg)

    root = Path(corpus.root)
    db = root / DB_NAME
    replaced = None
    if db.exists():
        try:
            n = _existing_ratings(db)
        except Exception:  # noqa: BLE001 - an unreadable old file counts as holding ratings
            n = -1
        if n != 0 and not force:
            what = f"{n} rating(s)" if n > 0 else "data that cannot be read"
            raise StudyExistsError(
                f"{db} already holds a study with {what}; `--force` replaces it (the old file is kept as a backup)"
            )
    gens_path = corpus.generations_path
    if not Path(gens_path).is_file():
        raise InputError(gens_path, "not found: run `emoguide generate` first")
    gens = read_parquet(gens_path)
    rows = select_rows(gens, cfg, gens_path, config_source)
    if rows.empty:
        raise InputError(gens_path, "no rows to rate (none with status ok and a response within the selection)")
    contexts = corpus_contexts(corpus, rows)
    keys = sorted(contexts)

    # -- clips, one per context
    clips_dir = root / CLIPS_DIR
    clips_dir.mkdir(parents=True, exist_ok=True)
    ctx_rows = []
    clip_counts = {"video": 0, "audio": 0, "none": 0}
    blur_boxes_cache: dict[str, Any] = {}
    for n, key in enumerate(keys, start=1):
        ctx = contexts[key]
        if progress:
            progress(n - 1, len(keys), f"clip {n}/{len(keys)}")
        kind, media = media_kind_of(corpus.session(key[0]))
        clip_name = None
        if cfg.study.video == "none" or ctx.clip_start is None or ctx.clip_end is None:
            kind = "none"
        if kind != "none" and media is not None:
            ext = ".mp4" if kind == "video" else ".m4a"
            name = opaque_id(12) + ext
            try:
                blur = None
                if kind == "video" and cfg.study.video == "blurred":
                    blur = clipmod.face_boxes_for(corpus.session(key[0]), blur_boxes_cache)
                clipmod.cut_clip(media, clips_dir / name, ctx.clip_start, ctx.clip_end, kind=kind, blur=blur)
                clip_name = name
            except Exception as exc:  # noqa: BLE001 - one bad file must not abort the study
                _warn(f"{media}: no clip for a context of session {key[0]} ({type(exc).__name__}: {exc}); "
                      "it is shown without media")
                (clips_dir / name).unlink(missing_ok=True)
                kind = "none"
        else:
            kind = "none"
        clip_counts[kind] += 1
        ctx_rows.append({
            "context_id": opaque_id(12),
            "turns": [{"speaker_title": t.speaker_title, "text": t.text, "is_target": t.is_target} for t in ctx.turns],
            "risk_flag": ctx.risk_flag,
            "media_kind": kind,
            "clip_name": clip_name,
        })
    if progress:
        progress(len(keys), len(keys), "clips done")
    ctx_id = {key: row["context_id"] for key, row in zip(keys, ctx_rows)}

    # -- items and the plan (over item indices, so it is reproducible; ids are random)
    items = []
    for rec in rows.to_dict("records"):
        key = (str(rec["session_id"]), int(rec["target_index"]))
        items.append({
            "item_id": opaque_id(12),
            "context_id": ctx_id[key],
            "technique": str(rec.get("technique") or ""),
            "response": str(rec.get("response") or ""),
            "session_id": key[0],
            "target_index": key[1],
            "model": str(rec["model"]),
            "condition": str(rec["condition"]),
        })
    rater_ids = cfg.rater_ids()
    a = cfg.assignment
    plan = make_plan(
        [(i["session_id"], i["target_index"]) for i in items], rater_ids, k=a.raters_per_item, quotas=a.quotas,
        seed=a.seed, retest_fraction=a.retest_fraction, retest_min_gap=a.retest_min_gap,
    )
    for w in plan.warnings:
        _warn(w)
    assignments = []
    for r, rp in plan.raters.items():
        for pos, (i, retest) in enumerate(rp.order, start=1):
            assignments.append((r, pos, items[i]["item_id"], retest))

    study_id = datetime.now(timezone.utc).strftime("study-%Y%m%d-%H%M%S-") + opaque_id(3)
    meta = {
        "study_id": study_id,
        "title": cfg.study.title,
        "instructions": cfg.study.instructions,
        "config_hash": cfg.config_hash(),
        "criteria": [c.model_dump(mode="json") for c in cfg.criteria],
        "video_mode": cfg.study.video,
        "too_fast_seconds": str(cfg.study.too_fast_seconds),
        "research_notice": RESEARCH_NOTICE,
        "groups": cfg.groups.model_dump(mode="json"),
        "created_at": now_iso(),
        "app_version": __version__,
    }
    names = cfg.rater_names()
    if db.exists():
        backup = db.with_name(f"ratings.{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.sqlite.bak")
        _checkpoint(db)
        shutil.copy2(db, backup)
        replaced = str(backup)
    store = RatingStore.create(
        db, meta, ctx_rows, items, [{"rater_id": r, "name": names.get(r, r)} for r in rater_ids], assignments,
        private={"config": cfg.canonical_json()},
    )
    store.close()
    # clips of an older study are no longer reachable: remove them
    keep = {c["clip_name"] for c in ctx_rows if c["clip_name"]}
    for f in clips_dir.iterdir():
        if f.is_file() and f.name not in keep:
            f.unlink()
    return InitSummary(
        study_id=study_id, contexts=len(keys), items=len(items), raters=len(rater_ids),
        assignments=len(assignments), retests=sum(1 for x in assignments if x[3]), clips=clip_counts,
        config_hash=meta["config_hash"], warnings=warnings, replaced=replaced,
    )


def _checkpoint(db: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
