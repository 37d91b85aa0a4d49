"""The tidy ratings table: one row per rater x assigned position x criterion, unblinded.

This is the only place the unblinding table is joined in (model, condition, session_id,
target_index); it is called by the CLI (`emoguide rate export`) and the statistics, never by the
web app. RATINGS_COLUMNS (evaluation/schema.py) come first, then provenance columns.

Unrated assignments are KEPT, with a null score (and null created_at/updated_at/config_hash), so
the table shows what is missing; the statistics drop rows whose score is null. A retest copy is
its own row with is_retest = True (same item_id as the first showing).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from emoguide.errors import InputError
from emoguide.evaluation.rating.background import read_groups_file
from emoguide.evaluation.rating.store import DB_NAME, RatingStore
from emoguide.evaluation.schema import RATINGS_COLUMNS

EXTRA_COLUMNS: tuple[str, ...] = (
    "position",
    "flags",  # ";"-joined flag kinds, "" when none
    "media_kind",
    "seeks",
    "plays",
    "app_version",
    "video_mode",
)


def ratings_table(corpus_root: str | Path, groups_file: str | Path | None = None) -> pd.DataFrame:
    """The study's ratings with the unblinding joined; `groups_file` (rater_id,group) overrides groups."""
    root = Path(corpus_root)
    store = RatingStore.open(root / DB_NAME)
    try:
        return _table(store, groups_file)
    finally:
        store.close()


def _table(store: RatingStore, groups_file: str | Path | None) -> pd.DataFrame:
    study = store.study()
    conn = store.connection()
    raters = store.raters()
    groups = {r.rater_id: r.group for r in raters}
    if groups_file is not None:
        override = read_groups_file(groups_file)
        unknown = sorted(set(override) - set(groups))
        if unknown:
            raise InputError(groups_file, f"rater id(s) {unknown} are not in this study (raters: {sorted(groups)})")
        groups.update(override)
    crit_names = [c.name for c in study.criteria]
    base = pd.read_sql_query(
        "SELECT a.rater_id, a.position, a.item_id, a.is_retest, u.session_id, u.target_index, u.model, "
        "u.condition, c.media_kind, n.comment, n.flags_json, v.seconds, v.watched_fraction, v.seeks, v.plays "
        "FROM assignments a JOIN items i ON i.item_id = a.item_id "
        "JOIN unblinding u ON u.item_id = a.item_id JOIN contexts c ON c.context_id = i.context_id "
        "LEFT JOIN notes n ON n.rater_id = a.rater_id AND n.position = a.position "
        "LEFT JOIN views v ON v.rater_id = a.rater_id AND v.position = a.position "
        "ORDER BY a.rater_id, a.position",
        conn,
    )
    crit = pd.DataFrame({"criterion": crit_names, "_order": range(len(crit_names))})
    rows = base.merge(crit, how="cross")
    scores = pd.read_sql_query(
        "SELECT rater_id, position, criterion, score, created_at, updated_at, config_hash FROM ratings", conn
    )
    edits = pd.read_sql_query(
        "SELECT rater_id, position, field AS criterion, count(*) AS n_edits FROM edits GROUP BY rater_id, position, field",
        conn,
    )
    key = ["rater_id", "position", "criterion"]
    rows = rows.merge(scores, on=key, how="left").merge(edits, on=key, how="left")
    rows = rows.sort_values(["rater_id", "position", "_order"], kind="stable").reset_index(drop=True)
    flags = rows["flags_json"].map(lambda s: json.loads(s) if isinstance(s, str) else [])
    out = pd.DataFrame({
        "study_id": study.study_id,
        "rater_id": rows["rater_id"].astype(str),
        "rater_group": rows["rater_id"].map(groups).astype(object),
        "item_id": rows["item_id"].astype(str),
        "session_id": rows["session_id"].astype(str),
        "target_index": rows["target_index"].astype("int64"),
        "model": rows["model"].astype(str),
        "condition": rows["condition"].astype(str),
        "criterion": rows["criterion"].astype(str),
        "score": pd.to_numeric(rows["score"], errors="coerce").astype("Int64"),
        "comment": rows["comment"].astype(object).where(rows["comment"].notna(), None),
        "flagged": flags.map(bool).astype(bool),
        "seconds_on_item": pd.to_numeric(rows["seconds"], errors="coerce").astype("float64"),
        "watched_fraction": pd.to_numeric(rows["watched_fraction"], errors="coerce").astype("float64"),
        "is_retest": rows["is_retest"].astype(bool),
        "n_edits": pd.to_numeric(rows["n_edits"], errors="coerce").fillna(0).astype("int64"),
        "created_at": rows["created_at"].astype(object).where(rows["created_at"].notna(), None),
        "updated_at": rows["updated_at"].astype(object).where(rows["updated_at"].notna(), None),
        "config_hash": rows["config_hash"].astype(object).where(rows["config_hash"].notna(), None),
        "position": rows["position"].astype("int64"),
        "flags": flags.map(lambda f: ";".join(f)),
        "media_kind": rows["media_kind"].astype(str),
        "seeks": pd.to_numeric(rows["seeks"], errors="coerce").astype("Int64"),
        "plays": pd.to_numeric(rows["plays"], errors="coerce").astype("Int64"),
        "app_version": store.meta("app_version"),
        "video_mode": study.video_mode,
    })
    assert tuple(out.columns[: len(RATINGS_COLUMNS)]) == RATINGS_COLUMNS
    return out


def wide_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One rater x item score matrix per criterion (first showings only; retests are left out)."""
    first = table[~table["is_retest"]]
    out = {}
    for crit, rows in first.groupby("criterion", sort=False):
        m = rows.pivot(index="rater_id", columns="item_id", values="score")
        m.columns.name = None
        out[str(crit)] = m.reset_index()
    return out


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write .csv or .parquet atomically (the suffix decides)."""
    from emoguide.corpus.atomic import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: use a .csv or .parquet file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return path


def export(corpus_root: str | Path, out: str | Path, wide: bool = False, groups_file: str | Path | None = None) -> list[Path]:
    """`emoguide rate export`: the long table to `out`, or with `wide` one file per criterion."""
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"{out}: use a .csv or .parquet file name")
    table = ratings_table(corpus_root, groups_file)
    if not wide:
        return [write_table(table, out)]
    return [
        write_table(m, out.with_name(f"{out.stem}_{crit}{out.suffix}")) for crit, m in wide_tables(table).items()
    ]
