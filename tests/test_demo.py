"""`emoguide demo` end to end, as the README's first command runs it (real SmolLM2 in-process)."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from emoguide.cli import app

pytest.importorskip("llama_cpp", reason="the llm extra (llama-cpp-python) is not installed")


@pytest.mark.slow
def test_demo_runs_the_text_path_and_reruns_from_cache(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out)], catch_exceptions=False)
    text = " ".join(res.output.split())
    assert res.exit_code == 0, text
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
    assert gen.loc[gen["condition"] == "dissonance", "prompt"].str.contains("(emotional dissonance)", regex=False).any()

    again = CliRunner().invoke(app, ["demo", "--out", str(out)], catch_exceptions=False)
    assert again.exit_code == 0
    gen2 = pd.read_parquet(out / "generations.parquet")
    assert len(gen2) == 20
    pd.testing.assert_series_equal(gen2["raw_output"], gen["raw_output"])
