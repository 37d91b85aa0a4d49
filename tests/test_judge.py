"""The LLM judge (`emoguide judge`): scoring arithmetic, blinded prompts, frozen steps, the
completion cache with logprobs, and the stage end to end against a real llama.cpp server on
loopback (log-probabilities on) and in-process llama.cpp: distributions that sum to 1, expected
scores in [1, 5], the method on every row, a rerun with 0 model calls, and a killed server that
resumes with only the missing rows.

SmolLM2-135M is a plumbing model: these tests assert mechanics, never the quality of a score.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from emoguide.config import LLMSettings, ProviderSettings  # noqa: E402
from emoguide.errors import InputError  # noqa: E402
from emoguide.evaluation.context import corpus_contexts  # noqa: E402
from emoguide.evaluation.criteria import PAPER_CRITERIA, Criterion, default_criteria  # noqa: E402
from emoguide.evaluation.judge import steps as steps_mod  # noqa: E402
from emoguide.evaluation.judge.prompt import build_messages  # noqa: E402
from emoguide.evaluation.judge.run import (  # noqa: E402
    JudgeSettings,
    judge,
    judgments_path,
    read_judgments,
)
from emoguide.evaluation.judge.scoring import (  # noqa: E402
    ScoreError,
    from_logprobs,
    from_samples,
    parse_score,
)
from emoguide.evaluation.schema import JUDGMENTS_COLUMNS  # noqa: E402
from emoguide.llm import llamacpp, openai_compat  # noqa: E402
from emoguide.llm.base import Completion, chat_logprobs  # noqa: E402
from emoguide.llm.cache import CompletionCache, cache_key  # noqa: E402
from eval_fixtures import eval_corpus  # noqa: E402

JUDGE = "local:smollm2"
CONDS = ("base", "dissonance")
GEN_MODELS = ("llamacpp:alpha",)


def _tok(token, logprob, tops):
    return {"token": token, "logprob": logprob, "top_logprobs": tops}


def _quiet():
    from rich.console import Console

    buf = io.StringIO()
    return Console(file=buf, width=200), buf


RESPONSES = {
    "base": "That sounds hard. What has work been like for you lately?",
    "dissonance": "You say things are fine, yet you keep worrying. Can we look at that together?",
}


def small_corpus(tmp_path):
    """1 session, 2 contexts x 2 conditions x 1 model (+ an error row and an empty response);
    every response differs, so no two judge prompts are the same."""
    text = {("s1", ti, m, cond): {"response": f"{RESPONSES[cond]} ({ti})"}
            for ti in (3, 5) for m in GEN_MODELS for cond in CONDS}
    return eval_corpus(tmp_path, sessions=1, pairs=3, models=GEN_MODELS, conditions=CONDS, text=text)


def settings_for(base_url: str, **kw) -> LLMSettings:
    defaults = dict(timeout_s=120, max_retries=1, concurrency=2)
    defaults.update(kw)
    return LLMSettings(providers={"local": ProviderSettings(base_url=base_url)}, **defaults)


@pytest.fixture()
def count_calls(monkeypatch):
    """Every real model call, both backends (the cache answers without coming here)."""
    calls = []
    for cls in (openai_compat.OpenAICompatBackend, llamacpp.LlamaCppBackend):
        real = cls.complete

        def counting(self, *args, _real=real, **kwargs):
            calls.append((self.id, kwargs.get("logprobs")))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "complete", counting)
    return calls


# -- scoring ------------------------------------------------------------------------------------

def test_logprob_distribution_is_renormalised_over_the_scale():
    lp = [
        _tok("Score", math.log(0.9), {"Score": math.log(0.9)}),
        _tok(":", math.log(0.99), {":": math.log(0.99)}),
        # " 4" and "4" are one score; " five" is not a score token; 1 and 5 are below the top-k
        _tok(" 4", math.log(0.5), {" 4": math.log(0.5), " 3": math.log(0.2), "4": math.log(0.1),
                                   " five": math.log(0.05), "2": math.log(0.05)}),
    ]
    sc = from_logprobs(lp, [1, 2, 3, 4, 5], "Score: 4")
    assert sc.method == "logprobs" and sc.token_index == 2
    assert sc.probs[4] == pytest.approx(0.6 / 0.85) and sc.probs[3] == pytest.approx(0.2 / 0.85)
    assert sc.probs[2] == pytest.approx(0.05 / 0.85) and sc.probs[1] == 0.0 and sc.probs[5] == 0.0
    assert sum(sc.probs.values()) == pytest.approx(1.0)
    assert sc.expected == pytest.approx((2 * 0.05 + 3 * 0.2 + 4 * 0.6) / 0.85)
    assert sc.score == 4 and sc.mass == pytest.approx(0.85)
    assert json.loads(sc.probs_json()).keys() == {"1", "2", "3", "4", "5"}


def test_score_token_skips_longer_numbers_and_reports_missing_scores():
    lp = [_tok("1", -0.1, {"1": -0.1}), _tok("0", -0.1, {"0": -0.1}), _tok(" ", -0.1, {}),
          _tok("3", -0.2, {"3": -0.2, "2": -1.8})]
    sc = from_logprobs(lp, range(1, 6), "10 3")
    assert sc.token_index == 3 and sc.score == 3
    with pytest.raises(ScoreError) as err:
        from_logprobs([_tok("Good", -0.1, {"Good": -0.1})], range(1, 6), "Good")
    assert err.value.kind == "unparseable" and "Good" in err.value.message
    with pytest.raises(ScoreError) as err:
        from_logprobs(None, range(1, 6))
    assert err.value.kind == "no_logprobs"
    # no score written, but scores among the first token's alternatives: read there, and said so
    weak = [_tok("The", math.log(0.6), {"The": math.log(0.6), "1": math.log(0.05), "4": math.log(0.15)}),
            _tok(" response", -0.5, {" response": -0.5, " 3": -2.0})]
    sc = from_logprobs(weak, range(1, 6), "The response")
    assert sc.in_answer is False and sc.token_index == 0 and sc.score == 4
    assert sc.probs[4] == pytest.approx(0.75) and sc.mass == pytest.approx(0.2)
    assert from_logprobs(lp, range(1, 6)).in_answer is True


def test_samples_give_mean_sd_and_empirical_distribution():
    sc = from_samples(["4", "Score: 5", "4/5", "great", "10"], range(1, 6))
    assert sc.method == "sampling" and sc.n_samples == 3 and sc.n_unparseable == 2
    assert sc.expected == pytest.approx(13 / 3) and sc.sd == pytest.approx(math.sqrt(1 / 3))
    assert sc.probs == {1: 0.0, 2: 0.0, 3: 0.0, 4: pytest.approx(2 / 3), 5: pytest.approx(1 / 3)}
    assert sc.score == 4 and sc.samples == [4, 5, 4, None, None]
    assert parse_score("10", range(1, 6)) is None and parse_score("3.", range(1, 6)) == 3
    with pytest.raises(ScoreError):
        from_samples(["no idea", ""], range(1, 6))


def test_openai_sdk_logprobs_are_read_and_same_text_alternatives_summed():
    from openai.types.chat.chat_completion import ChoiceLogprobs

    block = ChoiceLogprobs.model_validate({"content": [{
        "token": "4", "logprob": math.log(0.5), "bytes": None,
        "top_logprobs": [
            {"token": "4", "logprob": math.log(0.5), "bytes": None},
            {"token": "3", "logprob": math.log(0.2), "bytes": None},
            {"token": "3", "logprob": math.log(0.1), "bytes": None},  # another id, same text
        ],
    }]})
    lp = chat_logprobs(block)
    assert lp[0]["token"] == "4"
    assert math.exp(lp[0]["top_logprobs"]["3"]) == pytest.approx(0.3)
    assert chat_logprobs(None) is None


# -- prompt -------------------------------------------------------------------------------------

def test_prompt_is_blinded_and_holds_the_evidence(tmp_path):
    c = small_corpus(tmp_path)
    gens = pd.read_parquet(c.generations_path)
    gens = gens[(gens.status == "ok") & (gens.response != "")]
    contexts = corpus_contexts(c, gens)
    texts = set()
    for g in gens.to_dict("records"):
        ctx = contexts[(g["session_id"], int(g["target_index"]))]
        for crit in default_criteria():
            msgs = build_messages(crit, steps_mod.DEFAULT_STEPS[crit.name], ctx, g["technique"], g["response"])
            text = msgs[0]["content"]
            texts.add(text)
            assert crit.statement in text and crit.description in text
            assert all(s in text for s in steps_mod.DEFAULT_STEPS[crit.name])
            assert "1 = poor" in text and "5 = exceptional" in text and "\n3\n" in text
            assert ctx.as_text() in text and g["response"] in text and g["technique"] in text
            assert text.rstrip().endswith(f"{crit.title}:")
            # never the generation prompt, the models, the condition or an emotion cue
            for leak in ("PROMPT", "llamacpp", "alpha", "broken", "dissonance", "discrete",
                         "continuous", "sad", "(base)"):
                assert leak not in text, leak
    assert len(texts) == 2 * 2 * 3  # contexts x conditions x criteria


# -- steps --------------------------------------------------------------------------------------

def test_packaged_steps_seed_a_frozen_versioned_file(tmp_path):
    c = small_corpus(tmp_path)
    crits = default_criteria()
    sf = steps_mod.ensure_steps(c.root, crits)  # no model asked: the hand-written default
    path = steps_mod.steps_path(c.root)
    assert sf.path == path and sf.version == 1 and path.exists()
    assert sf.hash == steps_mod.file_hash(path)
    assert sf.criteria["empathy"].steps == steps_mod.DEFAULT_STEPS["empathy"]
    assert sf.criteria["empathy"].source == steps_mod.PACKAGED_SOURCE
    again = steps_mod.ensure_steps(c.root, crits, generate=lambda m: pytest.fail("must not generate"))
    assert again.hash == sf.hash  # frozen: read back, not rewritten

    # a user's edit is honoured and shows in the hash
    text = path.read_text().replace("Assign a score from 1 (poor) to 5 (exceptional) for how completely",
                                    "Finally, score from 1 (poor) to 5 (exceptional) how completely")
    path.write_text(text)
    edited = steps_mod.ensure_steps(c.root, crits)
    assert edited.hash != sf.hash and edited.criteria["comprehensiveness"].steps[-1].startswith("Finally")

    # a criterion without steps: written by the steps model, and the file's version goes up
    extra = Criterion(name="safety", title="Safety", statement="The response is safe.")
    answers = iter(["Here are the steps:\n1. Read the excerpt.\n2) Check for risk.\n3. Score it."])
    grown = steps_mod.ensure_steps(c.root, crits + [extra], generate=lambda m: next(answers),
                                   generator_id="local:smollm2")
    assert grown.version == 2 and grown.criteria["safety"].steps == ["Read the excerpt.", "Check for risk.", "Score it."]
    assert grown.criteria["safety"].source.startswith("generated by local:smollm2")
    assert grown.criteria["comprehensiveness"].steps[-1].startswith("Finally")  # kept
    assert (path.parent / "steps.v1.toml").read_text() == text  # the old version is kept

    with pytest.raises(steps_mod.StepsError, match="no numbered"):
        steps_mod.parse_steps("I think a good response is empathetic.")
    with pytest.raises(steps_mod.StepsError, match="safety"):
        steps_mod.ensure_steps(tmp_path / "other", crits + [extra])  # no model to write them


def test_bad_steps_file_names_the_file_and_problem(tmp_path):
    bad = tmp_path / "steps.toml"
    bad.write_text("version = 1\n[criteria.empathy]\nsteps = []\n")
    with pytest.raises(InputError, match=r"steps.toml.*non-empty list"):
        steps_mod.load_steps(bad)
    bad.write_text("version = [\n")
    with pytest.raises(InputError, match="not valid TOML"):
        steps_mod.load_steps(bad)
    good = tmp_path / "mine.toml"
    good.write_text('[criteria.empathy]\nsteps = ["Only this."]\n')
    with pytest.raises(InputError, match="applicability"):
        steps_mod.ensure_steps(tmp_path, default_criteria(), steps_file=good)


# -- cache --------------------------------------------------------------------------------------

def test_cache_key_holds_logprobs_and_old_caches_still_hit(tmp_path):
    msgs = [{"role": "user", "content": "hi"}]
    plain = cache_key("local:m", msgs, 0.0, 8, 0)
    assert cache_key("local:m", msgs, 0.0, 8, 0, None) == plain
    assert cache_key("local:m", msgs, 0.0, 8, 0, 20) not in (plain, cache_key("local:m", msgs, 0.0, 8, 0, 5))

    # a cache file from before the logprobs column: read, migrated, written
    path = tmp_path / "llm.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE completions (key TEXT PRIMARY KEY, backend_id TEXT NOT NULL, text TEXT NOT NULL, "
                "finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL, "
                "created_at REAL NOT NULL)")
    con.execute("INSERT INTO completions VALUES (?, 'local:m', 'old', 'stop', 3, 1, 0.5, 1.0)", (plain,))
    con.commit()
    con.close()
    with CompletionCache(path) as cache:
        old, created = cache.get(plain)
        assert old.text == "old" and old.logprobs is None and created == 1.0
        lp = [_tok("4", -0.2, {"4": -0.2, "3": -1.9})]
        key = cache_key("local:m", msgs, 0.0, 8, 0, 20)
        assert cache.get(key) is None  # a plain completion never answers a logprob request
        cache.put(key, "local:m", Completion("4", "stop", 3, 1, 0.1, logprobs=lp))
        assert cache.get(key)[0].logprobs == lp


# -- the stage against a loopback server that gives no logprobs ---------------------------------

class NoLogprobsServer:
    """An OpenAI-compatible endpoint on loopback that ignores `logprobs` (as some providers do)
    and answers each request from `answer(payload)`; it records every request."""

    def __init__(self, answer):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                outer.requests.append(payload)
                text, delay = answer(payload)
                if delay:
                    import time

                    time.sleep(delay)
                body = json.dumps({
                    "id": "x", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 400, "completion_tokens": 1, "total_tokens": 401},
                }).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _answer(payload):
    """Score by the request's seed, so samples differ; "Empathy" prompts hang past the timeout."""
    text = payload["messages"][0]["content"]
    if text.rstrip().endswith("Comprehensiveness:"):
        return "I would rather not say.", 0  # unparseable
    if text.rstrip().endswith("Empathy:") and payload.get("seed") == 2:
        return "4", 3.0  # one sample past the timeout
    return str(2 + (payload.get("seed") or 0) % 3), 0


def test_no_silent_fallback_auto_records_sampling_and_errors_are_rows(tmp_path):
    c = small_corpus(tmp_path)
    console, _ = _quiet()
    with NoLogprobsServer(_answer) as server:
        llm = settings_for(server.base_url, timeout_s=1.0, max_retries=0, concurrency=3)
        # logprobs asked, none returned: an error row that says so, for every row
        df, summary = judge(c, ["local:nolp"], settings=JudgeSettings(method="logprobs"), llm_settings=llm,
                            console=console, progress=False, limit=1)
        assert len(df) == 6 and (df.status == "error").all() and (df.error_kind == "no_logprobs").all()
        assert df.reason.str.contains("returned none").all() and df.score.isna().all()
        assert all(r["logprobs"] is True and r["top_logprobs"] == 20 for r in server.requests)
        assert summary.count("failed") == 6

        # auto: logprobs tried once for this judge, then sampling, recorded on every row
        server.requests.clear()
        df, summary = judge(c, ["local:nolp"], settings=JudgeSettings(method="auto", samples=3),
                            llm_settings=llm, console=console, progress=False, limit=1)
        applic = df[df.criterion == "applicability"]
        assert (applic.status == "ok").all() and (applic.method == "sampling").all()
        assert (df.method_requested == "auto").all()
        assert applic.reason.str.startswith("auto: the backend returned no log-probabilities; sampled").all()
        for r in applic.itertuples():  # seeds 0, 1, 2 -> scores 2, 3, 4
            assert json.loads(r.raw_output) == ["2", "3", "4"] and r.n_samples == 3
            assert r.score_expected == pytest.approx(3.0) and r.score_sd == pytest.approx(1.0)
            assert json.loads(r.probs) == {"1": 0.0, "2": pytest.approx(1 / 3), "3": pytest.approx(1 / 3),
                                           "4": pytest.approx(1 / 3), "5": 0.0}
        sampled = [r for r in server.requests if not r.get("logprobs")]
        assert {r["temperature"] for r in sampled} == {1.0} and {r["seed"] for r in sampled} == {0, 1, 2}
        # a timeout and an unparseable answer are failed rows with their reason; the batch went on
        emp = df[df.criterion == "empathy"]
        assert (emp.error_kind == "timeout").all() and emp.reason.str.startswith("timeout: ").all()
        comp = df[df.criterion == "comprehensiveness"]
        assert (comp.error_kind == "unparseable").all() and comp.reason.str.contains("none of the 3").all()
        assert summary.count("done") == 2 and summary.count("failed") == 4
        meta = json.loads(judgments_path(c).with_suffix(".json").read_text())
        assert meta["judges"]["local:nolp"]["logprobs_unavailable"].startswith("the backend returned no")

        # rerun: the sampled scores come from the cache; only the failed rows ask again
        server.requests.clear()
        df2, summary2 = judge(c, ["local:nolp"], settings=JudgeSettings(method="auto", samples=3),
                              llm_settings=llm, console=console, progress=False, limit=1)
        assert df2[df2.criterion == "applicability"].cache_hit.all()
        assert summary2.count("skipped") == 2 + 2  # 2 cached + the 2 unusable generations
        asked = {r["messages"][0]["content"].rstrip().rsplit("\n", 1)[-1] for r in server.requests}
        assert asked <= {"Empathy:", "Comprehensiveness:"}


def test_cli_judge_sampling_with_study_criteria_fallback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from emoguide.cli import app

    c = small_corpus(tmp_path)
    with NoLogprobsServer(_answer) as server:
        monkeypatch.setenv("EMOGUIDE_LLAMACPP_SERVER_BASE_URL", server.base_url)
        args = ["judge", "--corpus", str(c.root), "-m", "llamacpp-server:nolp", "--method", "sampling",
                "--samples", "2", "--limit", "1", "--criteria-from-study", "--no-progress"]
        res = CliRunner().invoke(app, args, catch_exceptions=False)
        out = " ".join(res.output.split())
        assert "no rating study" in out and "paper's criteria" in out
        assert "llamacpp-server:nolp: 4 scores by sampling" in out
        assert res.exit_code == 1 and "unparseable" in out  # comprehensiveness: no score, exit 1
        assert len(server.requests) == 6 * 2 and not any(r.get("logprobs") for r in server.requests)
        df = read_judgments(judgments_path(c))
        assert len(df) == 6 and set(df.method) == {"sampling"}
        assert (df.steps_hash == steps_mod.file_hash(steps_mod.steps_path(c.root))).all()
    res = CliRunner().invoke(app, ["judge", "--corpus", str(c.root), "-m", "x:y", "--method", "nope"])
    assert res.exit_code == 2


def test_judge_stage_through_the_runner_events_and_failures(tmp_path):
    """The corpus stage: settings from corpus.toml [llm], one event per judged row, the paper's
    criteria without a study, and a stage that cannot start fails alone with its reason."""
    from emoguide.config import save_settings
    from emoguide.pipeline.runner import run_stages
    from emoguide.stages.judge import JudgeStage, JudgeStageSettings

    c = small_corpus(tmp_path)
    with NoLogprobsServer(_answer) as server:
        settings = c.settings
        settings.llm = settings_for(server.base_url, timeout_s=1.0, max_retries=0, concurrency=2)
        save_settings(c.settings_path, settings)
        stage = JudgeStage.from_corpus_settings(c.settings)
        assert stage.settings.llm.providers["local"].base_url == server.base_url
        stage.settings.models = ["local:nolp"]
        stage.settings.method = "sampling"
        stage.settings.samples = 2
        stage.settings.limit = 1
        stage.console, buf = _quiet()
        events = []
        report = run_stages(c, [stage], on_event=events.append)
        df = report.corpus_results["judge"]
        assert "no rating study" in buf.getvalue()
        assert len(df) == 6 and set(df.criterion) == {c_.name for c_ in default_criteria()}
        assert (df[df.criterion == "applicability"].status == "ok").all()
        assert (df[df.criterion == "comprehensiveness"].error_kind == "unparseable").all()
        assert len(server.requests) == 6 * 2
        rows = [e for e in events if e.stage == "judge" and e.kind in ("done", "skipped", "failed")]
        assert [e.total for e in events if e.kind == "plan" and e.stage == "judge"][-1] == 6
        assert len(rows) == 6 and sum(e.kind == "failed" for e in rows) == int((df.status == "error").sum())
        assert all("<- local:nolp [" in e.session for e in rows)
        summary = report.summary("judge")
        assert summary.count("failed") == int((df.status == "error").sum())
        assert summary.count("skipped") >= 2  # the two unusable generations

    # no judge model, then no generations: the stage fails with the reason, the run returns
    report = run_stages(c, [JudgeStage(JudgeStageSettings())])
    assert "judge" not in report.corpus_results
    assert "at least one judge model" in report.summary("judge").failed[0].reason
    c.generations_path.unlink()
    report = run_stages(c, [JudgeStage(JudgeStageSettings(models=["local:nolp"], llm=settings_for("http://127.0.0.1:9/v1")))])
    reason = report.summary("judge").failed[0].reason
    assert "generations.parquet does not exist" in reason


# -- the stage, against real llama.cpp -----------------------------------------------------------

def _require_server():
    from llm_server import server_available

    reason = server_available()
    if reason:
        pytest.skip(reason)


def _check_rows(df, judge_model, method="logprobs", n=12):
    assert list(df.columns[: len(JUDGMENTS_COLUMNS)]) == list(JUDGMENTS_COLUMNS)
    assert len(df) == n and (df.judge_model == judge_model).all()
    assert set(df.model) == set(GEN_MODELS) and set(df.condition) == set(CONDS)
    assert set(df.criterion) == {c.name for c in PAPER_CRITERIA}
    ok = df[df.status == "ok"]
    failed = df[df.status != "ok"]
    assert len(ok) >= n // 2, df[["criterion", "raw_output", "reason"]]
    for r in ok.itertuples():
        probs = json.loads(r.probs)
        assert set(probs) == {"1", "2", "3", "4", "5"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert 1.0 <= r.score_expected <= 5.0
        assert r.score == int(max(probs, key=probs.get))
        assert r.method == method
    if method == "logprobs":
        assert ok.n_samples.isna().all() and (ok.top_logprobs == 20).all()
        assert ((ok.probs_mass > 0) & (ok.probs_mass <= 1)).all()
    # a failed row says why and holds no score (null, not 0)
    assert failed.score.isna().all() and (failed.reason.str.len() > 0).all()
    assert set(failed.error_kind) <= {"unparseable"}, failed[["error_kind", "reason"]]
    return ok, failed


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_judge_on_llama_server_then_cached_rerun(llama_server, tmp_path, count_calls):
    c = small_corpus(tmp_path)
    console, buf = _quiet()
    llm = settings_for(llama_server.base_url)
    df, summary = judge(c, [JUDGE], settings=JudgeSettings(method="logprobs"), llm_settings=llm,
                        console=console, progress=False)
    ok, failed = _check_rows(df, JUDGE)
    assert len(count_calls) == 12 and all(k == 20 for _, k in count_calls)
    assert not df.cache_hit.any()
    steps_file = steps_mod.steps_path(c.root)
    assert (df.steps_hash == steps_mod.file_hash(steps_file)).all()
    assert df.groupby(["condition", "criterion"]).prompt_hash.nunique().eq(2).all()  # per context
    assert summary.count("done") == len(ok) and summary.count("failed") == len(failed)
    assert summary.count("skipped") == 2  # the error row and the empty response, never judged
    assert "NOTE" not in buf.getvalue()  # loopback: nothing leaves the machine

    on_disk = read_judgments(judgments_path(c))
    assert len(on_disk) == 12
    meta = json.loads(judgments_path(c).with_suffix(".json").read_text())
    assert meta["steps"]["sha256_16"] == df.steps_hash.iloc[0]
    assert meta["judges"][JUDGE]["methods_used_last_run"] == {"logprobs": len(ok) + len(failed)}

    # Rerun with the server address pointing at nothing: all from the cache, 0 model calls.
    from llm_server import free_port

    count_calls.clear()
    dead = settings_for(f"http://127.0.0.1:{free_port()}/v1")
    df2, summary2 = judge(c, [JUDGE], settings=JudgeSettings(method="logprobs"), llm_settings=dead,
                          console=console, progress=False)
    assert count_calls == []
    assert df2.cache_hit.all() and summary2.count("done") == 0
    pd.testing.assert_series_equal(df2.probs, df.probs)
    assert list(df2.status) == list(df.status)

    # Cache deleted: ok rows already in judgments.parquet with the same prompt and steps are kept.
    for suffix in ("", "-wal", "-shm"):
        Path(str(c.cache_path) + suffix).unlink(missing_ok=True)
    df3, _ = judge(c, [JUDGE], settings=JudgeSettings(method="logprobs"), llm_settings=dead,
                   console=console, progress=False)
    assert count_calls == []
    assert list(df3[df3.status == "ok"].score) == list(ok.score)

    # auto on a server that gives logprobs: logprobs, recorded as asked-for auto
    df4, _ = judge(c, [JUDGE], settings=JudgeSettings(method="auto"), llm_settings=llm,
                   console=console, progress=False, limit=1)
    assert (df4[df4.status == "ok"].method == "logprobs").all() and (df4.method_requested == "auto").all()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_killed_server_then_resume_only_missing_rows(tmp_path, count_calls):
    _require_server()
    from llm_server import LlamaServer

    c = small_corpus(tmp_path)
    console, _ = _quiet()
    with LlamaServer(n_ctx=1024) as server:
        llm = settings_for(server.base_url, concurrency=1, max_retries=1)
        seen = []

        def kill_after_three(row):
            seen.append(row)
            if len(seen) == 3:
                server.kill()

        # one context: 2 conditions x 3 criteria = 6 rows, the server killed after the third
        df, summary = judge(c, [JUDGE], settings=JudgeSettings(method="logprobs"), llm_settings=llm,
                            console=console, progress=False, on_row=kill_after_three, limit=1)
        dead = df[df.error_kind == "connection"]
        assert len(df) == 6 and len(dead) >= 1, df[["status", "reason"]]
        assert all(r.startswith("connection: ") for r in dead.reason) and (dead.retries == 1).all()
        assert dead.score.isna().all() and dead.probs.isna().all()
        judged = df[df.error_kind != "connection"]
        assert len(judged) >= 3
        on_disk = read_judgments(judgments_path(c))
        assert len(on_disk) == 6 and (on_disk.error_kind == "connection").sum() == len(dead)

        server.start()  # same port
        count_calls.clear()
        df2, summary2 = judge(c, [JUDGE], settings=JudgeSettings(method="logprobs"), llm_settings=llm,
                              console=console, progress=False, limit=1)
        assert not (df2.error_kind == "connection").any(), df2[["status", "reason"]]
        # exactly the missing rows were judged; the rest came from the cache
        assert len(count_calls) == len(dead), (count_calls, len(dead))
        fresh = df2[~df2.cache_hit]
        key = ["target_index", "condition", "criterion"]
        assert sorted(map(tuple, fresh[key].values)) == sorted(map(tuple, dead[key].values))
        assert df2.cache_hit.sum() == len(judged)
        assert summary2.count("done") + summary2.count("failed") == len(dead)
        _check_rows(df2, JUDGE, n=6)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_judge_in_process_llamacpp_logprobs_sampling_and_cli(tmp_path, count_calls):
    _require_server()
    from typer.testing import CliRunner

    from emoguide.cli import app

    c = small_corpus(tmp_path)
    console, _ = _quiet()
    llm = LLMSettings(n_threads=2, n_ctx=1024, concurrency=2)
    df, summary = judge(c, ["smollm2"], settings=JudgeSettings(method="logprobs"), llm_settings=llm,
                        console=console, progress=False, limit=1)
    ok, _ = _check_rows(df, "llamacpp:smollm2", n=6)
    assert (df.judge_endpoint == "in-process").all() and len(count_calls) == 6

    # sampling: n calls per score at temperature 1, seeds 0..n-1; mean and spread kept
    empathy = [c_ for c_ in default_criteria() if c_.name == "empathy"]
    count_calls.clear()
    ds, _ = judge(c, ["smollm2"], criteria=empathy, settings=JudgeSettings(method="sampling", samples=4),
                  llm_settings=llm, console=console, progress=False, limit=1)
    assert len(ds) == 2 and len(count_calls) == 8 and all(k is None for _, k in count_calls)
    for r in ds.itertuples():
        if r.status == "ok":
            assert r.method == "sampling" and r.temperature == 1.0
            assert r.n_samples + r.n_unparseable == 4 and len(json.loads(r.raw_output)) == 4
            assert sum(json.loads(r.probs).values()) == pytest.approx(1.0)
            assert 1 <= r.score_expected <= 5
        else:
            assert r.error_kind == "unparseable"
    both = read_judgments(judgments_path(c))
    assert len(both) == 6  # the sampling rows replaced the logprob rows of the same keys

    # the CLI: same rows, served from the cache (0 calls), exit 0
    count_calls.clear()
    res = CliRunner().invoke(app, ["judge", "--corpus", str(c.root), "-m", "smollm2", "--method", "logprobs",
                                   "--limit", "1", "--no-progress"], catch_exceptions=False)
    out = " ".join(res.output.split())
    assert res.exit_code in (0, 1), out  # 1 only when SmolLM2 gave an unparseable answer
    assert count_calls == [] and "llamacpp:smollm2:" in out and "by logprobs" in out


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_steps_written_by_a_real_model(tmp_path):
    _require_server()
    c = small_corpus(tmp_path)
    console, buf = _quiet()
    llm = LLMSettings(n_threads=2, n_ctx=1024)
    from emoguide.evaluation.judge.run import CachedCaller
    from emoguide.llm.registry import get_backend

    backend = get_backend("smollm2", llm)
    with CompletionCache(c.cache_path) as cache:
        caller = CachedCaller(cache)

        def generate(messages):
            # 150 tokens hold 3-6 short steps; a generous timeout for a loaded CI machine
            return caller.call(backend, messages, temperature=0.0, max_tokens=150, seed=0,
                               logprobs=None, timeout=900)[0].text

        crit = [x for x in default_criteria() if x.name == "empathy"]
        try:
            sf = steps_mod.ensure_steps(c.root, crit, regenerate=True, generate=generate,
                                        generator_id=backend.id)
        except steps_mod.StepsError as exc:  # SmolLM2 may write prose: then it says so, clearly
            assert "empathy" in str(exc) and "smollm2" in str(exc)
            return
        finally:
            backend.close()
    assert sf.version == 1 and sf.criteria["empathy"].source.startswith("generated by llamacpp:smollm2")
    assert 1 <= len(sf.criteria["empathy"].steps) <= steps_mod.MAX_STEPS
    assert steps_mod.load_steps(steps_mod.steps_path(c.root)).hash == sf.hash
