"""The generate stage against a real llama.cpp server (and in-process), end to end.

Rows, cache, resume after a killed server, Ctrl-C, the remote-endpoint notice.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from emoguide.config import LLMSettings, ProviderSettings  # noqa: E402
from emoguide.corpus import Corpus  # noqa: E402
from emoguide.llm import openai_compat  # noqa: E402
from emoguide.llm.generate import COLUMNS, generate, read_generations  # noqa: E402
from emoguide.prompts.items import PromptItem  # noqa: E402

MODEL = "local:smollm2"

LINES = [
    "I keep telling everyone I'm fine, but I haven't slept properly in weeks.",
    "My sister called again and I just let it ring.",
    "Work is okay I guess. It's just a lot.",
    "Sometimes I think nobody would notice if I stopped showing up.",
    "I laughed at the party but I wanted to leave the whole time.",
    "My dad never said he was proud of me, not once.",
    "I don't know why I'm even here, honestly.",
    "It's stupid, but the dog is the only one I talk to.",
]


def _prompt(line: str) -> str:
    return (
        "You are a therapist. Read the dialogue and give one short reply.\n"
        "Answer in the form [Technique] [Your Response].\n\n"
        "Therapist: How has your week been?\n"
        f"Patient: {line}\n"
    )


def make_items(n: int = 8, with_missing: bool = True) -> list[PromptItem]:
    items = [
        PromptItem(
            session_id="s1" if i < 4 else "s2",
            target_index=2 * i + 1,
            condition="base",
            prompt=_prompt(LINES[i % len(LINES)]),
            context_indices=[2 * i, 2 * i + 1],
            template_hash="tpl0",
            risk_flag=(i == 3),
            risk_categories="suicide" if i == 3 else "",
        )
        for i in range(n)
    ]
    if with_missing:
        items.append(
            PromptItem(
                session_id="s1", target_index=1, condition="dissonance", prompt="",
                status="missing_inputs", missing="face_valence, face_arousal",
            )
        )
    return items


def settings_for(base_url: str, **kw) -> LLMSettings:
    defaults = dict(max_tokens=48, temperature=0.0, seed=0, timeout_s=60, max_retries=1, concurrency=2)
    defaults.update(kw)
    return LLMSettings(providers={"local": ProviderSettings(base_url=base_url)}, **defaults)


@pytest.fixture()
def corpus(tmp_path) -> Corpus:
    return Corpus.open(tmp_path / "corpus", create=True)


@pytest.fixture()
def count_calls(monkeypatch):
    calls = []
    real = openai_compat.OpenAICompatBackend.complete

    def counting(self, *args, **kwargs):
        calls.append(self.id)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(openai_compat.OpenAICompatBackend, "complete", counting)
    return calls


def _quiet():
    from rich.console import Console

    buf = io.StringIO()
    return Console(file=buf, width=200), buf


def _require_server():
    from llm_server import server_available

    reason = server_available()
    if reason:
        pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_generate_rows_then_cached_rerun(llama_server, corpus, count_calls):
    items = make_items()
    console, buf = _quiet()
    settings = settings_for(llama_server.base_url)
    df, summary = generate(corpus, items, [MODEL], settings=settings, console=console, progress=False)

    assert list(df.columns) == COLUMNS
    assert len(df) == 9
    ok = df[df.status == "ok"]
    assert len(ok) == 8 and len(count_calls) == 8
    assert (ok.prompt_tokens > 10).all() and (ok.completion_tokens > 0).all()
    assert (ok.completion_tokens <= 48).all() and (ok.latency_s > 0).all()
    assert (ok.raw_output.str.len() > 0).all()
    assert set(ok.finish_reason) <= {"stop", "length"}
    assert (ok.backend_endpoint == llama_server.base_url).all()
    assert df.research_use_only.all() and not df.cache_hit.any()
    assert (df.model == MODEL).all()
    assert df.loc[df.target_index == 7, "risk_flag"].item() is True
    assert df.loc[df.target_index == 7, "risk_categories"].item() == "suicide"
    assert ok.context_indices.iloc[0] == "[0, 1]"
    missing = df[df.status == "missing_inputs"]
    assert len(missing) == 1 and missing.prompt.item() == "" and "face_valence" in missing.error.item()
    assert summary.count("done") == 8 and summary.count("skipped") == 1 and summary.count("failed") == 0
    assert "NOTE" not in buf.getvalue()  # loopback: nothing leaves the machine

    on_disk = read_generations(corpus.generations_path)
    assert len(on_disk) == 9
    pd.testing.assert_frame_equal(
        on_disk.sort_values(["session_id", "target_index", "condition"]).reset_index(drop=True),
        df.sort_values(["session_id", "target_index", "condition"]).reset_index(drop=True),
    )

    # Rerun: all from the cache, with the server address pointing at nothing at all.
    from llm_server import free_port

    count_calls.clear()
    dead = settings_for(f"http://127.0.0.1:{free_port()}/v1")
    df2, summary2 = generate(corpus, items, [MODEL], settings=dead, console=console, progress=False)
    assert count_calls == []
    ok2 = df2[df2.status == "ok"]
    assert len(ok2) == 8 and ok2.cache_hit.all()
    assert summary2.count("done") == 0 and summary2.count("failed") == 0
    assert sum(o.reason == "cached" for o in summary2.outcomes) == 8
    assert list(ok2.raw_output) == list(ok.raw_output)
    assert list(ok2.completion_tokens) == list(ok.completion_tokens)

    # Cache deleted: ok rows already in generations.parquet with the same prompt are kept.
    for suffix in ("", "-wal", "-shm"):
        Path(str(corpus.cache_path) + suffix).unlink(missing_ok=True)
    df_kept, summary_kept = generate(corpus, items, [MODEL], settings=dead, console=console,
                                     progress=False)
    assert count_calls == [] and (df_kept[df_kept.status == "ok"].cache_hit).all()
    assert list(df_kept[df_kept.status == "ok"].raw_output) == list(ok.raw_output)
    assert summary_kept.count("failed") == 0

    # force: regenerate regardless of the cache (one item keeps it quick)
    df3, _ = generate(corpus, items[:1], [MODEL], settings=settings, force=True, console=console,
                      progress=False)
    assert len(count_calls) == 1 and not df3.cache_hit.any()
    assert df3.raw_output.item() == ok.raw_output.iloc[0]  # temperature 0, same seed
    assert len(read_generations(corpus.generations_path)) == 9  # merged, not replaced


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_server_then_resume(corpus, count_calls):
    _require_server()
    from llm_server import LlamaServer

    items = make_items(with_missing=False)
    console, _ = _quiet()
    with LlamaServer() as server:
        # the timeout only matters for a hung request; a dead server fails at once
        settings = settings_for(server.base_url, concurrency=1, timeout_s=120, max_retries=1)
        seen = []

        def kill_after_three(row):
            seen.append(row)
            if len(seen) == 3:
                server.kill()

        df, summary = generate(
            corpus, items, [MODEL], settings=settings, console=console, progress=False,
            on_row=kill_after_three,
        )
        ok = df[df.status == "ok"]
        failed = df[df.status == "error"]
        assert len(df) == 8
        assert len(ok) >= 3 and len(failed) >= 1, df[["status", "error"]]
        assert set(failed.error_kind) == {"connection"}, failed.error.tolist()
        assert (failed.retries == 1).all(), failed[["retries", "error"]]
        assert all(e.startswith("connection: ") for e in failed.error)
        assert summary.count("failed") == len(failed)
        assert all(o.reason.startswith("connection") for o in summary.failed)

        on_disk = read_generations(corpus.generations_path)
        assert len(on_disk) == 8
        disk_ok = on_disk[on_disk.status == "ok"]
        assert sorted(disk_ok.target_index) == sorted(ok.target_index)
        assert set(disk_ok.raw_output) == set(ok.raw_output)

        server.start()  # same port
        count_calls.clear()
        df2, summary2 = generate(corpus, items, [MODEL], settings=settings, console=console,
                                 progress=False)
        assert (df2.status == "ok").all(), df2[["status", "error"]]
        assert df2.cache_hit.sum() == len(ok), (df2.cache_hit.tolist(), ok.target_index.tolist())
        # exactly the missing rows were generated
        assert len(count_calls) == len(failed), (count_calls, failed.target_index.tolist())
        assert sorted(df2[~df2.cache_hit].target_index) == sorted(failed.target_index)
        assert summary2.count("done") == len(failed) and summary2.count("failed") == 0
        on_disk = read_generations(corpus.generations_path)
        assert len(on_disk) == 8 and (on_disk.status == "ok").all()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ctrl_c_keeps_finished_rows(llama_server, corpus):
    items = make_items(with_missing=False)
    console, _ = _quiet()
    settings = settings_for(llama_server.base_url, concurrency=1, seed=11)
    seen = []

    def interrupt(row):
        seen.append(row)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(corpus, items, [MODEL], settings=settings, console=console, progress=False,
                 on_row=interrupt)
    on_disk = read_generations(corpus.generations_path)
    assert len(on_disk) == 2 and (on_disk.status == "ok").all()
    df, summary = generate(corpus, items, [MODEL], settings=settings, console=console, progress=False)
    assert (df.status == "ok").all() and df.cache_hit.sum() >= 2
    assert len(read_generations(corpus.generations_path)) == 8


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_generate_in_process_smollm2(corpus):
    _require_server()
    items = make_items(n=2, with_missing=False)
    console, buf = _quiet()
    settings = LLMSettings(max_tokens=32, n_threads=2, n_ctx=1024, concurrency=2)
    df, summary = generate(corpus, items, ["smollm2"], settings=settings, console=console, progress=True)
    assert (df.status == "ok").all(), df.error.tolist()
    assert (df.model == "llamacpp:smollm2").all() and (df.backend_endpoint == "in-process").all()
    assert (df.completion_tokens > 0).all()
    assert summary.count("done") == 2
    assert "NOTE" not in buf.getvalue()


def test_remote_notice_and_error_rows(corpus):
    """A non-private address gets the notice before anything is sent; failures become rows."""
    console, buf = _quiet()
    # .invalid never resolves (RFC 2606), so the request fails without leaving the machine.
    settings = LLMSettings(
        providers={"faraway": ProviderSettings(base_url="http://llm.emoguide-test.invalid/v1")},
        timeout_s=2, max_retries=0, max_tokens=8,
    )
    items = make_items(n=1)
    df, summary = generate(corpus, items, ["faraway:big-model"], settings=settings, console=console,
                           progress=False)
    out = buf.getvalue()
    assert "NOTE: session text will be sent to http://llm.emoguide-test.invalid/v1 (faraway:big-model)" in out
    row = df[df.status == "error"].iloc[0]
    assert row.error_kind in ("timeout", "connection")
    assert summary.count("failed") == 1 and summary.count("skipped") == 1
    assert len(read_generations(corpus.generations_path)) == 2


def test_missing_api_key_is_an_error_row(corpus, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("EMOGUIDE_OPENAI_API_KEY", raising=False)
    console, buf = _quiet()
    df, summary = generate(corpus, make_items(n=2, with_missing=False), ["openai:gpt-4o"],
                           settings=LLMSettings(), console=console, progress=False)
    assert (df.status == "error").all() and (df.error_kind == "config").all()
    assert "OPENAI_API_KEY" in df.error.iloc[0]
    assert "NOTE: session text will be sent to https://api.openai.com/v1 (openai:gpt-4o)" in buf.getvalue()


# -- the corpus stage (emoguide.stages.generate) through the runner ---------------------------------

def _stage_corpus(tmp_path, llm: dict | None = None) -> Corpus:
    """Two sessions of 3 therapist/patient pairs; corpus.toml: K=2 and the given [llm] keys."""
    from emoguide.config import save_settings
    from helpers import corpus_with, dialogue

    tables = {}
    for sid in ("s1", "s2"):
        df = dialogue(3, sid)
        df["text"] = df["text"] + f" ({sid})"  # no two prompts alike: each row is its own call
        tables[sid] = df
    c = corpus_with(tmp_path, tables)
    settings = c.settings
    settings.targets.context_turns = 2
    for k, v in (llm or {}).items():
        setattr(settings.llm, k, v)
    save_settings(c.settings_path, settings)
    return c


def test_generate_stage_renders_prompts_and_records_rows(tmp_path, monkeypatch):
    """No key for openai: every row an error row (nothing sent), one event per row, the prompts
    rendered from the corpus with corpus.toml's [targets] and [llm]."""
    from emoguide.pipeline.runner import run_stages
    from emoguide.stages.generate import GenerateStage

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("EMOGUIDE_OPENAI_API_KEY", raising=False)
    c = _stage_corpus(tmp_path, {"max_tokens": 7})
    stage = GenerateStage.from_corpus_settings(c.settings)
    stage.settings.models = ["openai:gpt-4o"]
    stage.settings.conditions = ["base", "dissonance"]
    stage.settings.limit = 2
    stage.console, buf = _quiet()
    events = []
    report = run_stages(c, [stage], on_event=events.append)
    df = report.corpus_results["generate"]
    # limit 2: the first two targets (s1 #1, s1 #3), each under both conditions
    assert sorted(zip(df.session_id, df.target_index, df.condition)) == [
        ("s1", 1, "base"), ("s1", 1, "dissonance"), ("s1", 3, "base"), ("s1", 3, "dissonance")]
    base = df[df.condition == "base"]
    assert (base.status == "error").all() and (base.error_kind == "config").all()
    assert (base.max_tokens == 7).all()
    assert base.prompt.str.contains("Patient: Patient line 0. (s1)", regex=False).any()
    miss = df[df.condition == "dissonance"]
    assert (miss.status == "missing_inputs").all() and (miss.prompt == "").all()
    assert "NOTE: session text will be sent to https://api.openai.com/v1" in buf.getvalue()
    summary = report.summary("generate")
    assert summary.count("failed") == 2  # the two base rows
    assert {o.stage for o in summary.outcomes} >= {"prompts:base", "prompts:dissonance", "generate"}
    plans = [e.total for e in events if e.kind == "plan" and e.stage == "generate"]
    assert plans[-1] == 4
    rows = [e for e in events if e.stage == "generate" and e.kind in ("done", "skipped", "failed")]
    assert sorted(e.kind for e in rows) == ["failed", "failed", "skipped", "skipped"]
    assert all("#" in e.session and "openai:gpt-4o" in e.session for e in rows)
    assert len(read_generations(c.generations_path)) == 4


def test_generate_stage_without_models_fails_the_stage_not_the_run(tmp_path):
    from emoguide.pipeline.runner import run_stages
    from emoguide.stages.generate import GenerateSettings, GenerateStage

    c = _stage_corpus(tmp_path)
    # "prompts" by name: built from corpus.toml (K=2: 3 targets a session)
    report = run_stages(c, ["prompts", GenerateStage(GenerateSettings(models=[]))])
    assert len(report.corpus_results["prompts"]) == 6 * 4  # 3 targets x 2 sessions x 4 conditions
    assert "generate" not in report.corpus_results
    failed = report.summary("generate").failed
    assert len(failed) == 1 and "at least one model" in failed[0].reason
    assert not c.generations_path.exists()


def test_generate_settings_accept_the_cli_forms():
    from emoguide.stages.generate import GenerateSettings

    s = GenerateSettings.model_validate({"models": "llamacpp:smollm2, openai:gpt-4o", "conditions": "base,discrete"})
    assert s.models == ["llamacpp:smollm2", "openai:gpt-4o"] and s.conditions == ["base", "discrete"]
    assert GenerateSettings().conditions == ["base", "discrete", "continuous", "dissonance"]
    assert "provider:model" in GenerateSettings.model_fields["models"].description
    with pytest.raises(Exception):
        GenerateSettings(limit=-1)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_generate_stage_real_server_then_cached_then_forced(llama_server, tmp_path, count_calls):
    from emoguide.pipeline.runner import run_one, run_stages
    from emoguide.stages.generate import GenerateStage

    c = _stage_corpus(tmp_path)
    stage = GenerateStage.from_corpus_settings(c.settings)
    stage.settings.models = [MODEL]
    stage.settings.conditions = ["base"]
    stage.settings.llm = settings_for(llama_server.base_url, max_tokens=24)
    stage.console, _ = _quiet()
    events = []
    report = run_stages(c, [stage], on_event=events.append)
    df = report.corpus_results["generate"]
    assert len(df) == 6 and (df.status == "ok").all(), df.error.tolist()
    assert len(count_calls) == 6 and (df.completion_tokens > 0).all()
    assert sum(e.kind == "done" and e.stage == "generate" for e in events) == 6
    assert all(e.seconds > 0 for e in events if e.kind == "done" and e.stage == "generate")
    # rerun: every row from the cache, no call
    count_calls.clear()
    summary = run_one(c, stage)
    assert count_calls == [] and sum(o.reason == "cached" for o in summary.outcomes) == 6
    # --force: asked again, same answers at temperature 0
    summary = run_one(c, stage, force=True)
    assert len(count_calls) == 6 and sum(o.stage == "generate" and o.status == "done" for o in summary.outcomes) == 6
    again = read_generations(c.generations_path)
    assert sorted(again.raw_output) == sorted(df.raw_output)


# -- llama.cpp thread caps ----------------------------------------------------------------------------

def test_llamacpp_threads_follow_the_worker_cap(monkeypatch):
    from emoguide.llm.llamacpp import LlamaCppBackend

    monkeypatch.delenv("EMOGUIDE_THREADS", raising=False)
    assert LlamaCppBackend("smollm2", n_threads=3).threads() == (3, None)
    monkeypatch.setenv("EMOGUIDE_THREADS", "2")
    assert LlamaCppBackend("smollm2").threads() == (2, 2)
    assert LlamaCppBackend("smollm2", n_threads=8).threads() == (2, 2)  # never above the cap
    assert LlamaCppBackend("smollm2", n_threads=1).threads() == (1, 1)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_llamacpp_loads_with_the_capped_threads(monkeypatch):
    _require_server()
    from emoguide.llm.llamacpp import LlamaCppBackend

    monkeypatch.setenv("EMOGUIDE_THREADS", "1")
    backend = LlamaCppBackend("smollm2", n_ctx=512).load()
    try:
        assert backend._llm.n_threads == 1 and backend._llm.n_threads_batch == 1
        assert backend.info()["n_threads"] == 1 and backend.info()["n_threads_batch"] == 1
    finally:
        backend.close()
