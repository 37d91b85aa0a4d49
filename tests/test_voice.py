"""Voice affect: backends (prosody, audeering with a tiny self-built model) and the voice stage."""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

from emoguide.affect.prosody import SOURCE_ID, ProsodicArousal, yin
from emoguide.affect.voice import (
    VoiceAffect,
    VoiceModelError,
    available_voice_backends,
    get_voice_affect,
    resample,
)
from emoguide.affect.voice_stage import WavReader
from emoguide.corpus import Corpus, schema
from emoguide.pipeline.runner import run_one
from emoguide.stages.voice import VoiceSettings, VoiceStage
from emoguide.speech.synth import read_wav, write_wav

SR = 16000


# --------------------------------------------------------------------------- synthetic speech


def voiced(
    dur: float,
    *,
    f0: float,
    amp: float,
    syl_rate: float,
    pitch_range_st: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """A harmonic 'voice' with syllable-like bursts: level `amp`, pitch `f0` Hz moving over
    +-`pitch_range_st` semitones, `syl_rate` syllables per second (raised-cosine envelopes)."""
    rng = np.random.default_rng(seed)
    n = int(dur * SR)
    t = np.arange(n) / SR
    phase0 = rng.uniform(0, 2 * np.pi)
    contour = pitch_range_st * (0.7 * np.sin(2 * np.pi * 0.9 * t + phase0) + 0.3 * np.sin(2 * np.pi * 2.3 * t))
    f = f0 * 2.0 ** (contour / 12.0)
    ph = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * ph) / k for k in range(1, 9))
    if syl_rate > 0:
        period = 1.0 / syl_rate
        pos = (t % period) / period
        env = np.where(pos < 0.6, np.sin(np.pi * pos / 0.6) ** 2, 0.0)  # 60% of each syllable sounds
    else:  # continuous voicing
        env = np.ones(n)
    jitter = 1.0 + 0.1 * rng.standard_normal(n).cumsum() / np.sqrt(n)
    y = amp * x * env * jitter / 2.0 + 3e-4 * rng.standard_normal(n)
    return y.astype(np.float32)


CALM = dict(f0=105.0, amp=0.04, syl_rate=2.5, pitch_range_st=0.3)
NEUTRAL = dict(f0=125.0, amp=0.12, syl_rate=3.5, pitch_range_st=1.5)
AROUSED = dict(f0=165.0, amp=0.45, syl_rate=5.5, pitch_range_st=4.0)


# --------------------------------------------------------------------------- registry / interface


def test_registry_and_estimate_shape():
    assert {"prosody", "audeering"} <= set(available_voice_backends())
    p = get_voice_affect("prosody")
    assert isinstance(p, VoiceAffect) and not p.loaded
    assert p.id == SOURCE_ID and "approx" in p.id and "valence unavailable" in p.id
    with pytest.raises(ValueError, match="unknown voice backend"):
        get_voice_affect("nope")
    with pytest.raises(ValueError, match="no model file"):
        get_voice_affect("prosody", model_path="/tmp/x")
    a = get_voice_affect("audeering", model_path="/nonexistent/dir")
    assert not a.loaded  # building costs nothing; loading is separate
    assert a.settings()["backend"] == "audeering"


def test_resample_keeps_a_tone():
    t = np.arange(22050) / 22050
    x = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    y = resample(x, 22050, SR)
    assert y.size == SR
    f0, _ = yin(y, SR)
    assert abs(np.nanmedian(f0) - 200) < 1


# --------------------------------------------------------------------------- prosody


@pytest.mark.parametrize("f0", [70.0, 110.0, 220.0, 400.0])
def test_yin_finds_f0(f0):
    x = voiced(1.0, f0=f0, amp=0.3, syl_rate=0.0)
    est, _ = yin(resample(x, SR, 8000), 8000, hop=80)
    assert abs(np.nanmedian(est) / f0 - 1) < 0.02


def test_features_follow_the_controls():
    p = ProsodicArousal()
    calm = p.extract(voiced(3.0, **CALM), SR)
    hot = p.extract(voiced(3.0, **AROUSED), SR)
    assert calm.usable and hot.usable
    assert hot.loudness_db > calm.loudness_db + 15  # 0.45 vs 0.04 -> ~21 dB
    assert hot.pitch_st > calm.pitch_st + 7  # 165 vs 105 Hz -> ~7.8 st
    assert hot.pitch_var_st > calm.pitch_var_st + 1
    assert hot.rate_syl_s > calm.rate_syl_s + 1.5
    assert 1.8 < calm.rate_syl_s < 3.2 and 4.5 < hot.rate_syl_s < 6.5


def test_prosodic_arousal_same_speaker_same_session():
    p = ProsodicArousal()
    clips, groups, kinds = [], [], []
    for k in range(3):
        for kind, ctl in (("calm", CALM), ("neutral", NEUTRAL), ("aroused", AROUSED)):
            clips.append(voiced(2.5 + 0.3 * k, seed=10 * k + len(clips), **ctl))
            groups.append("B")
            kinds.append(kind)
    est = p.predict_many(clips, SR, groups)
    by = {k: [e.arousal for e, kk in zip(est, kinds) if kk == k] for k in ("calm", "neutral", "aroused")}
    assert all(v is not None for vs in by.values() for v in vs)
    assert min(by["aroused"]) > max(by["neutral"]) and min(by["neutral"]) > max(by["calm"])
    assert min(by["aroused"]) > 0.3 and max(by["calm"]) < -0.3
    assert all(-1 <= e.arousal <= 1 for e in est)
    assert all(e.valence is None and e.dominance is None and e.label is None for e in est)
    assert all(e.n_windows > 0 for e in est)
    # the speaker's own baseline is 0: arousal averages near 0 over the session
    assert abs(np.mean([e.arousal for e in est])) < 0.3


def test_baseline_is_per_speaker():
    """A speaker who is always high and loud is not 'aroused' relative to themselves."""
    p = ProsodicArousal()
    clips = [voiced(2.0, seed=i, **NEUTRAL) for i in range(4)]
    loud_high = dict(NEUTRAL, f0=240.0, amp=0.4)
    clips += [voiced(2.0, seed=10 + i, **loud_high) for i in range(4)]
    groups = ["A"] * 4 + ["B"] * 4
    est = p.predict_many(clips, SR, groups)
    assert all(abs(e.arousal) < 0.5 for e in est)
    assert set(p.last_report()["baselines"]) == {"A", "B"}


def test_silent_short_and_no_baseline_are_null():
    p = ProsodicArousal()
    silent = np.zeros(SR, dtype=np.float32)
    hiss = (1e-4 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    short = voiced(0.2, **NEUTRAL)
    normal = [voiced(2.0, seed=i, **NEUTRAL) for i in range(3)]
    est = p.predict_many([silent, hiss, short, *normal], SR, ["A"] * 6)
    assert [e.reason for e in est[:3]] == ["silent", "silent", "too short"]
    assert all(e.empty and e.arousal is None for e in est[:3])
    assert all(e.arousal is not None for e in est[3:])
    # one usable utterance is no baseline: null, not 0
    lone = p.predict_many([voiced(2.0, **AROUSED)], SR, ["C"])[0]
    assert lone.arousal is None and lone.reason == "no speaker baseline"
    with pytest.raises(ValueError, match="baseline"):
        ProsodicArousal().predict(normal[0], SR)
    q = ProsodicArousal().set_baseline([p.extract(c, SR) for c in normal])
    assert q.predict(voiced(2.0, **AROUSED), SR).arousal > 0.3


def test_prosody_speed():
    p = ProsodicArousal()
    x = np.concatenate([voiced(10.0, seed=i, **NEUTRAL) for i in range(6)])
    t0 = time.perf_counter()
    p.extract(x, SR)
    per_minute = (time.perf_counter() - t0) / (x.size / SR / 60)
    assert per_minute < 5.0  # measured ~0.3 s per minute of audio on one CPU core


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_prosody_on_espeak_speech(tmp_path):
    text = "I have been thinking about what you said last week and I am not sure"

    def say(pitch: int, amp: int, speed: int, name: str) -> np.ndarray:
        out = tmp_path / f"{name}.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-p", str(pitch), "-a", str(amp), "-s", str(speed), "-w", str(out), text],
            check=True,
            capture_output=True,
        )
        x, sr = read_wav(out)
        return resample(x, sr, SR)

    calm = [say(25, 25, 120, f"c{i}") for i in range(2)]
    neutral = [say(50, 80, 160, "n")]
    hot = [say(80, 190, 220, f"h{i}") for i in range(2)]
    p = ProsodicArousal()
    est = p.predict_many(calm + neutral + hot, SR, ["A"] * 5)
    a = [e.arousal for e in est]
    assert all(v is not None for v in a)
    assert min(a[3:]) > a[2] > max(a[:2])
    assert all(e.valence is None for e in est)


# --------------------------------------------------------------------------- audeering (tiny model)

try:
    import torch
    import transformers
except ImportError:  # the voice-model extra is not installed: the audeering tests skip
    torch = transformers = None

pytestmark_torch = pytest.mark.skipif(torch is None, reason="needs the voice-model extra (torch, transformers)")


def tiny_config(**kw):
    cfg = dict(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16, 16),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        final_dropout=0.1,
        num_labels=3,
        id2label={0: "arousal", 1: "dominance", 2: "valence"},
        label2id={"arousal": 0, "dominance": 1, "valence": 2},
        vocab_size=8,
    )
    cfg.update(kw)
    return transformers.Wav2Vec2Config(**cfg)


def save_tiny(path, bias=(0.8, 0.5, 0.2), zero_weights=True, **cfg):
    from emoguide.affect.audeering import model_classes

    torch.manual_seed(0)
    _, EmotionModel = model_classes()
    model = EmotionModel(tiny_config(**cfg)).eval()
    with torch.no_grad():
        if zero_weights:
            model.classifier.out_proj.weight.zero_()
        model.classifier.out_proj.bias.copy_(torch.tensor(bias))
    model.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(
        '{"do_normalize": true, "feature_size": 1, "padding_value": 0.0, "sampling_rate": 16000, '
        '"return_attention_mask": true, "feature_extractor_type": "Wav2Vec2FeatureExtractor"}'
    )
    return model


@pytestmark_torch
def test_audeering_state_dict_names_match_the_model_card(tmp_path):
    model = save_tiny(tmp_path / "m")
    keys = set(model.state_dict())
    assert {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias"} <= keys
    assert any(k.startswith("wav2vec2.feature_extractor.") for k in keys)
    assert any(k.startswith("wav2vec2.encoder.layers.1.") for k in keys)


@pytestmark_torch
def test_audeering_outputs_land_in_the_right_fields(tmp_path):
    from emoguide.affect.audeering import AudeeringVAD

    save_tiny(tmp_path / "m", bias=(0.8, 0.5, 0.2))  # arousal, dominance, valence on [0, 1]
    be = AudeeringVAD(tmp_path / "m", device="cpu")
    x = (0.1 * np.random.default_rng(1).standard_normal(2 * SR)).astype(np.float32)
    est = be.predict(x, SR)
    assert est.arousal == pytest.approx(0.6, abs=1e-5)  # 2 * 0.8 - 1
    assert est.dominance == pytest.approx(0.0, abs=1e-5)  # 2 * 0.5 - 1
    assert est.valence == pytest.approx(-0.6, abs=1e-5)  # 2 * 0.2 - 1
    assert est.label is None and est.n_windows == 1
    assert be.id.startswith("audeering-msp-dim(") and be.loaded
    assert {p.name for p in be.model_files()} >= {"config.json", "model.safetensors"}
    # outputs are clamped to [-1, 1]
    save_tiny(tmp_path / "big", bias=(1.7, -0.4, 0.5))
    big = AudeeringVAD(tmp_path / "big").predict(x, SR)
    assert (big.arousal, big.dominance, big.valence) == (1.0, -1.0, pytest.approx(0.0, abs=1e-5))


@pytestmark_torch
def test_audeering_loads_the_saved_weights_and_normalises(tmp_path):
    from emoguide.affect.audeering import AudeeringVAD, normalise

    model = save_tiny(tmp_path / "m", zero_weights=False)
    x = (0.05 * np.random.default_rng(2).standard_normal(SR) + 0.01).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(normalise(x))[None])[1][0].numpy()
    be = AudeeringVAD(tmp_path / "m").load()
    got = be.raw_outputs(x)[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    y = normalise(x * 3 + 0.5)
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.std()) - 1) < 1e-3
    est = be.predict(x, SR)
    assert est.arousal == pytest.approx(2 * ref[0] - 1, abs=1e-5)
    assert est.dominance == pytest.approx(2 * ref[1] - 1, abs=1e-5)
    assert est.valence == pytest.approx(2 * ref[2] - 1, abs=1e-5)


@pytestmark_torch
def test_audeering_loads_an_old_style_pytorch_checkpoint(tmp_path):
    """The published checkpoint is a pytorch_model.bin with weight-norm names weight_g/weight_v."""
    from safetensors.torch import load_file

    from emoguide.affect.audeering import AudeeringVAD, normalise

    d = tmp_path / "m"
    model = save_tiny(d, zero_weights=False)
    sd = load_file(d / "model.safetensors")
    old = {
        k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v"): v
        for k, v in sd.items()
    }
    assert any(k.endswith("pos_conv_embed.conv.weight_g") for k in old)
    (d / "model.safetensors").unlink()
    torch.save(old, d / "pytorch_model.bin")
    x = (0.05 * np.random.default_rng(4).standard_normal(SR)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(normalise(x))[None])[1][0].numpy()
    np.testing.assert_allclose(AudeeringVAD(d).load().raw_outputs(x)[0], ref, atol=1e-5)
    # a checkpoint missing encoder weights is refused, not run with random ones
    del old[next(k for k in old if k.startswith("wav2vec2.encoder.layers.0.attention.q_proj.weight"))]
    torch.save(old, d / "pytorch_model.bin")
    with pytest.raises(VoiceModelError, match="weights missing"):
        AudeeringVAD(d).load()


@pytestmark_torch
def test_audeering_windows_long_utterances(tmp_path):
    from emoguide.affect.audeering import AudeeringVAD, window_starts

    assert window_starts(100, 200, 50) == [0]
    assert window_starts(1000, 400, 300) == [0, 300, 600]
    assert window_starts(1000, 400, 350) == [0, 350, 600]
    save_tiny(tmp_path / "m")
    be = AudeeringVAD(tmp_path / "m", window_s=1.0, hop_s=0.75)
    x = (0.1 * np.random.default_rng(3).standard_normal(int(3.2 * SR))).astype(np.float32)
    est = be.predict(x, SR)
    assert est.n_windows == 4  # starts 0, 0.75, 1.5, 2.2 (end-aligned)
    assert est.arousal == pytest.approx(0.6, abs=1e-5)
    # other sample rates are resampled
    assert be.predict(resample(x, SR, 22050), 22050).n_windows == 4
    assert be.predict(np.zeros(SR, np.float32), SR).reason == "silent"


@pytestmark_torch
def test_audeering_generic_labels_use_the_published_order(tmp_path):
    from emoguide.affect.audeering import AudeeringVAD

    save_tiny(tmp_path / "m", bias=(0.9, 0.5, 0.1), id2label={0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, label2id=None)
    est = AudeeringVAD(tmp_path / "m").predict(np.random.default_rng(0).standard_normal(SR).astype(np.float32), SR)
    assert est.arousal == pytest.approx(0.8, abs=1e-5) and est.valence == pytest.approx(-0.8, abs=1e-5)


@pytestmark_torch
def test_audeering_missing_weights_fail_clearly(tmp_path):
    from emoguide.affect.audeering import DEFAULT_MODEL, AudeeringVAD

    t0 = time.perf_counter()
    with pytest.raises(VoiceModelError, match="--voice-model"):
        AudeeringVAD(DEFAULT_MODEL).load()  # hub name, offline and not cached: never downloads
    assert time.perf_counter() - t0 < 30
    with pytest.raises(VoiceModelError, match="no such model directory"):
        AudeeringVAD(tmp_path / "absent").load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(VoiceModelError, match="no config.json"):
        AudeeringVAD(tmp_path / "empty").load()
    # a plain wav2vec2 checkpoint has no regression head
    transformers.Wav2Vec2Model(tiny_config()).save_pretrained(tmp_path / "base")
    with pytest.raises(VoiceModelError, match="regression head"):
        AudeeringVAD(tmp_path / "base").load()


# --------------------------------------------------------------------------- stage


def build_corpus(tmp_path):
    """Session s1: speaker B calm / neutral / aroused x3, speaker A neutral x3, a silent and a short
    utterance. Session s2 has utterances but no audio; s3 has audio but no utterances."""
    corpus = Corpus.open(tmp_path / "corpus", create=True)
    plan = []
    for k in range(3):
        plan += [("B", CALM), ("A", NEUTRAL), ("B", NEUTRAL), ("B", AROUSED)]
    plan += [("A", None), ("B", "short")]
    audio, rows, t = [], [], 0.0
    for i, (sp, ctl) in enumerate(plan):
        dur = 0.2 if ctl == "short" else 2.0
        if ctl is None:
            seg = np.zeros(int(dur * SR), np.float32)
        elif ctl == "short":
            seg = voiced(dur, seed=i, **NEUTRAL)
        else:
            seg = voiced(dur, seed=i, **ctl)
        gap = np.zeros(int(0.5 * SR), np.float32)
        rows.append({"index": i, "start": t, "end": t + dur, "speaker": sp, "role": "patient" if sp == "B" else "therapist", "text": f"u{i}"})
        audio += [seg, gap]
        t += dur + 0.5
    s1 = corpus.session("s1")
    s1.path.mkdir(parents=True)
    write_wav(s1.path / "audio.wav", np.concatenate(audio))
    s1.write_utterances(pd.DataFrame(rows))
    s2 = corpus.session("s2")
    s2.path.mkdir(parents=True)
    s2.write_utterances(pd.DataFrame(rows[:2]))
    s3 = corpus.session("s3")
    s3.path.mkdir(parents=True)
    write_wav(s3.path / "audio.wav", np.concatenate(audio[:2]))
    s3.write_utterances(schema.empty_utterances())
    return corpus, plan


def test_wav_reader_segments(tmp_path):
    x = np.linspace(-0.5, 0.5, SR * 2).astype(np.float32)
    write_wav(tmp_path / "a.wav", x)
    with WavReader(tmp_path / "a.wav") as r:
        assert r.sr == SR and r.duration == pytest.approx(2.0)
        seg = r.segment(0.5, 1.0)
        assert seg.size == SR // 2
        np.testing.assert_allclose(seg, x[SR // 2 : SR], atol=1e-4)
        assert r.segment(1.9, 5.0).size == int(0.1 * SR)
        assert r.segment(3.0, 4.0).size == 0


def test_voice_stage_end_to_end_and_resume(tmp_path):
    corpus, plan = build_corpus(tmp_path)
    seen = []
    summary = run_one(corpus, "voice", on_event=seen.append)
    status = {o.item: (o.status, o.reason) for o in summary.outcomes}
    assert status["s1"][0] == "done", status
    assert status["s1"][1].startswith(f"{len(plan) - 2}/{len(plan)} utterances with voice values")
    assert status["s2"] == ("skipped", "no audio.wav (run ingest first)")
    assert status["s3"] == ("skipped", "no utterances")
    assert {(e.kind, e.session) for e in seen if e.session} >= {("done", "s1"), ("skipped", "s2"), ("skipped", "s3")}

    df = corpus.session("s1").read_utterances()
    assert list(df.columns[: len(schema.UTTERANCE_COLUMNS)]) == list(schema.UTTERANCE_COLUMNS)
    assert df["voice_source"].eq(SOURCE_ID).all()
    assert df["voice_valence"].isna().all() and df["voice_dominance"].isna().all()
    assert df["voice_label"].isna().all()
    kinds = ["silent" if c is None else "short" if c == "short" else {id(CALM): "calm", id(NEUTRAL): "neutral", id(AROUSED): "aroused"}[id(c)] for _, c in plan]
    df["kind"] = kinds
    a = df.groupby(["speaker", "kind"])["voice_arousal"]
    assert a.min()[("B", "aroused")] > a.max()[("B", "neutral")] > a.min()[("B", "neutral")] > a.max()[("B", "calm")]
    null = df[df["kind"].isin(["silent", "short"])]
    assert null["voice_arousal"].isna().all() and null["voice_n"].isna().all()
    ok = df[~df["kind"].isin(["silent", "short"])]
    assert ok["voice_arousal"].notna().all() and (ok["voice_n"] > 0).all()
    assert ok["voice_arousal"].between(-1, 1).all()
    assert df["text"].tolist() == [f"u{i}" for i in range(len(plan))]  # other columns untouched

    rec = corpus.session("s1").stages.get("voice")
    assert rec["status"] == "done"
    assert rec["null_reasons"] == {"silent": 1, "too short": 1}
    assert rec["n_with_values"] == len(ok)
    assert rec["backends"]["voice"]["id"] == SOURCE_ID
    assert "audio.wav" in rec["inputs"]
    assert set(rec["baselines"]) == {"A", "B"}

    again = run_one(corpus, "voice", ["s1"])
    assert [(o.status, o.reason) for o in again.outcomes] == [("skipped", "unchanged")]
    forced = run_one(corpus, "voice", ["s1"], force=True)
    assert forced.outcomes[0].status == "done"
    first_run = corpus.session("s1").stages.get("voice")["run_id"]

    # voice does not read roles: setting roles (and overriding them) never reruns the voice model,
    # while dissonance, which reads them, does rerun
    from emoguide.speech.roles import set_overrides

    assert run_one(corpus, "roles", ["s1"]).count("done") == 1
    assert run_one(corpus, "dissonance", ["s1"]).count("done") == 1
    set_overrides(corpus.session("s1").path, {"A": "patient", "B": "therapist"})
    assert run_one(corpus, "roles", ["s1"]).count("done") == 1
    assert run_one(corpus, "voice", ["s1"]).count("skipped") == 1
    assert corpus.session("s1").stages.get("voice")["run_id"] == first_run
    assert run_one(corpus, "dissonance", ["s1"]).count("done") == 1
    assert "roles" in corpus.session("s1").stages.get("dissonance")["upstream"]
    assert "roles" not in corpus.session("s1").stages.get("voice")["upstream"]
    # new audio makes the stage stale
    s1 = corpus.session("s1")
    x, _ = read_wav(s1.path / "audio.wav")
    write_wav(s1.path / "audio.wav", x * 0.5)
    assert run_one(corpus, "voice", ["s1"]).outcomes[0].status == "done"
    # changed settings make it stale too
    short = run_one(corpus, VoiceStage(VoiceSettings(min_duration_s=0.1)), ["s1"])
    assert short.outcomes[0].status == "done"
    assert corpus.session("s1").stages.get("voice")["settings"]["settings"]["min_duration_s"] == 0.1


def test_voice_settings_defaults_and_errors():
    from emoguide.affect.voice import SILENCE_DBFS
    from emoguide.affect.voice_stage import MIN_DURATION_S
    from emoguide.config import Settings

    assert VoiceSettings().silence_dbfs == SILENCE_DBFS and VoiceSettings().min_duration_s == MIN_DURATION_S
    st = VoiceStage.from_corpus_settings(Settings(voice={"backend": "audeering", "model_path": "/m"}))
    assert st.settings.backend == "audeering" and st.settings.model_path == "/m"
    assert "torch" in st.packages and VoiceStage().packages == ("numpy",)
    with pytest.raises(Exception, match="modle_path"):
        VoiceStage.from_corpus_settings(Settings(voice={"modle_path": "/m"}))  # a typo is named


def test_voice_stage_unknown_backend_fails_every_session_with_audio(tmp_path):
    corpus, _ = build_corpus(tmp_path)
    s = run_one(corpus, VoiceStage(VoiceSettings(backend="nosuch")))
    st = {o.item: o.status for o in s.outcomes}
    assert st == {"s1": "failed", "s2": "skipped", "s3": "skipped"}
    assert "unknown voice backend 'nosuch'" in next(o.reason for o in s.outcomes if o.item == "s1")
    none = run_one(corpus, VoiceStage(VoiceSettings(backend="none")))
    assert none.count("skipped") == 3


@pytestmark_torch
def test_voice_stage_with_tiny_audeering_model(tmp_path):
    corpus, _ = build_corpus(tmp_path)
    save_tiny(tmp_path / "m", bias=(0.8, 0.5, 0.2))
    stage = VoiceStage(VoiceSettings(backend="audeering", model_path=str(tmp_path / "m"), device="cpu"))
    summary = run_one(corpus, stage, ["s1"])
    assert summary.outcomes[0].status == "done", summary.outcomes
    df = corpus.session("s1").read_utterances()
    ok = df[df["voice_n"].notna()]
    assert len(ok) == len(df) - 2
    assert np.allclose(ok["voice_arousal"], 0.6, atol=1e-5)
    assert np.allclose(ok["voice_valence"], -0.6, atol=1e-5)
    assert np.allclose(ok["voice_dominance"], 0.0, atol=1e-5)
    rec = corpus.session("s1").stages.get("voice")
    assert "config.json" in rec["settings"]["identity"]["models"]  # model digests enter the fingerprint
    assert rec["backends"]["voice"]["licence"] == "CC BY-NC-SA 4.0"
    # a broken model fails every session that needs it, once loaded or not, and the batch goes on
    bad = run_one(corpus, VoiceStage(VoiceSettings(backend="audeering", model_path=str(tmp_path / "absent"))), force=True)
    st = {o.item: o.status for o in bad.outcomes}
    assert st == {"s1": "failed", "s2": "skipped", "s3": "skipped"}
    assert "VoiceModelError" in next(o.reason for o in bad.outcomes if o.item == "s1")
