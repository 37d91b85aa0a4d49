"""Read the ratings (the `emoguide rate export` table) and the judge's scores, validated.

Only the columns of `emoguide.evaluation.schema` are relied on, so a ratings table made by another
tool can be analysed once it has RATINGS_COLUMNS. Bad input raises `InputError` naming the file
and what is wrong; rows without a score are dropped (and counted in `df.attrs["notes"]`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emoguide.errors import InputError
from emoguide.evaluation.schema import CONTEXT_KEY, JUDGMENTS_COLUMNS, RATINGS_COLUMNS, RESPONSE_KEY

#: Columns the analyses need; the rest of RATINGS_COLUMNS is carried along when present.
REQUIRED_RATINGS: tuple[str, ...] = RATINGS_COLUMNS
REQUIRED_JUDGMENTS: tuple[str, ...] = JUDGMENTS_COLUMNS

CONDITION_ORDER: tuple[str, ...] = ("base", "discrete", "continuous", "dissonance")


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file (by extension), or InputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt"):
            # ids stay text: "007" must not become 7, "s1" and 1 must not mix.
            return pd.read_csv(path, dtype={"rater_id": "string", "session_id": "string", "item_id": "string",
                                            "rater_group": "string", "model": "string", "condition": "string",
                                            "criterion": "string", "judge_model": "string"})
        if suffix == ".tsv":
            return pd.read_csv(path, sep="\t", dtype={"rater_id": "string", "session_id": "string"})
    except Exception as exc:  # noqa: BLE001 - any parser error becomes a message naming the file
        raise InputError(path, f"cannot read the table: {exc}") from exc
    raise InputError(path, f"unknown table format {suffix!r}: use .csv or .parquet")


def _check_columns(df: pd.DataFrame, required: tuple[str, ...], source: str | Path, what: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(source, f"not a {what} table: missing column(s) {', '.join(missing)}")


def _normalise(df: pd.DataFrame, source: str | Path, score_cols: tuple[str, ...]) -> pd.DataFrame:
    df = df.copy()
    for col in ("session_id", "model", "condition", "criterion"):
        df[col] = df[col].astype("string")
    bad_target = pd.to_numeric(df["target_index"], errors="coerce")
    if bad_target.isna().any():
        raise InputError(source, f"target_index is not an integer in {int(bad_target.isna().sum())} row(s)")
    df["target_index"] = bad_target.astype("int64")
    for col in score_cols:
        if col in df.columns:
            raw = df[col]
            num = pd.to_numeric(raw, errors="coerce")
            junk = num.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
            if junk.any():
                first = raw[junk].iloc[0]
                raise InputError(source, f"{col} is not a number in {int(junk.sum())} row(s) (e.g. {first!r})")
            df[col] = num.astype("float64")
    df["context"] = context_ids(df)
    df["response"] = response_ids(df)
    return df


def context_ids(df: pd.DataFrame) -> pd.Series:
    """One id per context (the paper's "video" unit): session_id + target_index."""
    return df[list(CONTEXT_KEY)].astype(str).agg("#".join, axis=1).astype("string")


def response_ids(df: pd.DataFrame) -> pd.Series:
    """One id per generated response: context + model + condition."""
    return df[list(RESPONSE_KEY)].astype(str).agg("#".join, axis=1).astype("string")


def prepare_ratings(df: pd.DataFrame, source: str | Path = "<ratings>") -> pd.DataFrame:
    """Validate and normalise a ratings table: ids as text, score numeric, null scores dropped,
    plus `context` and `response` id columns. `attrs["notes"]` says what was dropped."""
    _check_columns(df, REQUIRED_RATINGS, source, "ratings")
    df = _normalise(df, source, ("score",))
    df["rater_id"] = df["rater_id"].astype("string")
    df["rater_group"] = df["rater_group"].astype("string")
    notes = []
    n_null = int(df["score"].isna().sum())
    if n_null:
        notes.append(f"{n_null} rating row(s) without a score dropped")
    df = df[df["score"].notna()].reset_index(drop=True)
    df.attrs["notes"] = notes
    df.attrs["source"] = str(source)
    return df


def prepare_judgments(df: pd.DataFrame, source: str | Path = "<judgments>") -> pd.DataFrame:
    """Validate and normalise a judgments table; `value` = score_expected where known, else score."""
    _check_columns(df, REQUIRED_JUDGMENTS, source, "judgments")
    df = _normalise(df, source, ("score", "score_expected"))
    df["judge_model"] = df["judge_model"].astype("string")
    df["value"] = df["score_expected"].where(df["score_expected"].notna(), df["score"])
    notes = []
    if "status" in df.columns:  # `emoguide judge` keeps error rows (status "error") beside the scores
        bad = df["status"].astype("string").fillna("ok") != "ok"
        if bad.any():
            notes.append(f"{int(bad.sum())} judgment row(s) with status other than ok left out")
        df = df[~bad]
    n_null = int(df["value"].isna().sum())
    if n_null:
        notes.append(f"{n_null} judgment row(s) without a score dropped")
    df = df[df["value"].notna()].reset_index(drop=True)
    df.attrs["notes"] = notes
    df.attrs["source"] = str(source)
    return df


def load_ratings(corpus_root: str | Path | None = None, ratings: str | Path | None = None) -> pd.DataFrame:
    """Ratings from a file (`--ratings`) or from the corpus's rating study (`rate export`'s table)."""
    if ratings is not None:
        return prepare_ratings(read_table(ratings), ratings)
    if corpus_root is None:
        raise ValueError("give a corpus or a ratings file")
    try:  # the rating study's export; imported lazily so that stats runs without the web app's extras
        from emoguide.evaluation.rating.export import ratings_table
        from emoguide.evaluation.rating.store import DB_NAME
    except ImportError as exc:
        raise InputError(corpus_root, f"cannot read the rating study ({exc}); pass --ratings FILE") from exc
    db = Path(corpus_root) / DB_NAME
    if not db.exists():
        raise InputError(db, "no rating study in this corpus (run `emoguide rate`), or pass --ratings FILE")
    return prepare_ratings(ratings_table(Path(corpus_root)), db)


def default_judgments_path(corpus_root: str | Path) -> Path:
    return Path(corpus_root) / "judgments.parquet"


def load_judgments(corpus_root: str | Path | None = None, judgments: str | Path | None = None) -> pd.DataFrame | None:
    """Judge scores from `--judgments` or the corpus's judgments.parquet; None when there are none."""
    if judgments is not None:
        return prepare_judgments(read_table(judgments), judgments)
    if corpus_root is not None:
        path = default_judgments_path(corpus_root)
        if path.exists():
            return prepare_judgments(read_table(path), path)
    return None


def condition_order(values) -> list[str]:
    """The paper's order (base, discrete, continuous, dissonance), then any others sorted."""
    present = [str(v) for v in pd.unique(pd.Series(list(values)).dropna())]
    known = [c for c in CONDITION_ORDER if c in present]
    return known + sorted(c for c in present if c not in CONDITION_ORDER)


def criterion_frame(df: pd.DataFrame, criterion: str) -> pd.DataFrame:
    """The rows of one criterion with a numeric score (raises ValueError when there are none)."""
    sub = df[df["criterion"].astype("string") == criterion]
    sub = sub[pd.to_numeric(sub["score"], errors="coerce").notna()].copy()
    if sub.empty:
        have = sorted(df["criterion"].dropna().astype(str).unique())
        raise ValueError(f"no ratings for criterion {criterion!r} (have: {', '.join(have) or 'none'})")
    sub["score"] = sub["score"].astype("float64")
    if "context" not in sub.columns:
        sub["context"] = context_ids(sub)
    if "response" not in sub.columns:
        sub["response"] = response_ids(sub)
    return sub


def criteria_in(df: pd.DataFrame) -> list[str]:
    """Criteria in the paper's order when they are the paper's, else in order of appearance."""
    from emoguide.evaluation.criteria import PAPER_CRITERIA

    present = [str(c) for c in pd.unique(df["criterion"].dropna())]
    paper = [c.name for c in PAPER_CRITERIA if c.name in present]
    return paper + [c for c in present if c not in paper]
