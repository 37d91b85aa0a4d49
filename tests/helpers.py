"""Small builders shared by tests (no fixtures with hidden behaviour)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emoguide.corpus import Corpus, schema

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def utterances(rows: list[dict], session_id: str = "s1") -> pd.DataFrame:
    """A conformed utterance table from short dicts (role/text required)."""
    full = []
    for i, r in enumerate(rows):
        full.append(
            {
                "session_id": session_id,
                "index": i,
                "start": float(i * 5),
                "end": float(i * 5 + 4),
                "speaker": "A" if r.get("role") == "therapist" else "B",
                **r,
            }
        )
    return schema.conform(pd.DataFrame(full))


def dialogue(n_pairs: int = 3, session_id: str = "s1") -> pd.DataFrame:
    rows = []
    for k in range(n_pairs):
        rows.append({"role": "therapist", "text": f"Therapist line {k}?"})
        rows.append({"role": "patient", "text": f"Patient line {k}."})
    return utterances(rows, session_id)


def corpus_with(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> Corpus:
    c = Corpus.open(tmp_path / "corpus", create=True)
    for sid, df in tables.items():
        s = c.session(sid)
        df = df.copy()
        df["session_id"] = sid
        s.write_utterances(df)
        with s.stage("ingest", settings={"test": True}):
            pass
    return c
