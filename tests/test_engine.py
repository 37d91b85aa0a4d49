"""The engine's contract on dummy stages: resume, force, one error policy, commit rules, executors."""

from __future__ import annotations

import json

import pytest
from engine_stages import CountSettings, Slow, WordCount, WordSum
from helpers import corpus_with, dialogue

from emoguide.pipeline import registry
from emoguide.pipeline.executors import PoolExecutor, SerialExecutor
from emoguide.pipeline.runner import run_one, run_stages


def _corpus(tmp_path, n=3):
    return corpus_with(tmp_path, {f"s{i}": dialogue(2 + i, f"s{i}") for i in range(n)})


def _rec(c, sid, stage):
    return c.session(sid).stages.get(stage)


def test_second_run_skips_and_force_redoes(tmp_path):
    c = _corpus(tmp_path)
    first = run_one(c, WordCount())
    assert (first.count("done"), first.count("skipped")) == (3, 0)
    ids = {s: _rec(c, s, "wordcount")["run_id"] for s in c.session_ids()}
    again = run_one(c, WordCount())
    assert (again.count("done"), again.count("skipped")) == (0, 3)
    assert {s: _rec(c, s, "wordcount")["run_id"] for s in c.session_ids()} == ids
    forced = run_one(c, WordCount(), force=True)
    assert forced.count("done") == 3
    assert all(_rec(c, s, "wordcount")["run_id"] != ids[s] for s in ids)
    df = c.session("s1").read_utterances()
    assert df["n_words"].tolist() == [3.0, 3.0, 3.0, 3.0, 3.0, 3.0]  # "Therapist line 0?" = 3 words


def test_settings_change_reruns_and_downstream_follows(tmp_path):
    c = _corpus(tmp_path, 2)
    rep = run_stages(c, [WordCount(), WordSum()])
    assert [s.count("done") for s in rep.summaries] == [2, 2]
    rep = run_stages(c, [WordCount(), WordSum()])
    assert [s.count("skipped") for s in rep.summaries] == [2, 2]
    # new settings upstream: both stages redo; downstream's upstream is derived from `reads`
    rep = run_stages(c, [WordCount(CountSettings(factor=2.0)), WordSum()])
    assert [s.count("done") for s in rep.summaries] == [2, 2]
    assert c.session("s0").read_utterances()["cum_words"].iloc[-1] == 2 * 12
    assert "wordcount" in _rec(c, "s0", "wordsum")["upstream"]


def test_unrelated_stage_does_not_make_downstream_stale(tmp_path):
    c = _corpus(tmp_path, 2)
    run_stages(c, [WordCount(), WordSum()])
    run_one(c, Slow(), force=True)  # writes another column group of the same file
    rep = run_stages(c, [WordCount(), WordSum()])
    assert [s.count("skipped") for s in rep.summaries] == [2, 2]


def test_a_raising_stage_fails_only_its_session_and_blocks_its_downstream(tmp_path):
    c = _corpus(tmp_path)
    rep = run_stages(c, [WordCount(CountSettings(fail_on=["s1"])), WordSum()])
    wc, ws = rep.summaries
    assert (wc.count("done"), wc.count("failed")) == (2, 1)
    failed = wc.failed[0]
    assert failed.item == "s1" and "TypeError: boom in s1" in failed.reason
    rec = _rec(c, "s1", "wordcount")
    assert rec["status"] == "failed" and "boom in s1" in rec["error"] and "Traceback" in rec["traceback"]
    assert ws.count("done") == 2
    blocked = [o for o in ws.outcomes if o.item == "s1"][0]
    assert blocked.status == "skipped" and "wordcount failed" in blocked.reason
    # the rerun retries only the failed session
    rep = run_stages(c, [WordCount(), WordSum()])
    assert [s.count("done") for s in rep.summaries] == [1, 1]


def test_not_applicable_is_a_skip_with_reason(tmp_path):
    c = _corpus(tmp_path, 2)
    s = run_one(c, WordCount(CountSettings(skip_on=["s0"])))
    o = [o for o in s.outcomes if o.item == "s0"][0]
    assert o.status == "skipped" and o.reason == "nothing to count"


def test_undeclared_columns_are_refused(tmp_path):
    c = _corpus(tmp_path, 1)
    before = c.session("s0").read_utterances()
    s = run_one(c, WordCount(CountSettings(undeclared=True)))
    assert s.count("failed") == 1 and "does not declare" in s.failed[0].reason
    after = c.session("s0").read_utterances()
    assert "n_words" not in after.columns and after["role"].tolist() == before["role"].tolist()


def test_registry_refuses_two_writers():
    class Twin(WordCount):
        name = "twin"

    with pytest.raises(registry.RegistryError, match="exactly one stage"):
        registry.check([WordCount, Twin])


def test_registry_classes_match_their_names():
    names = registry.available()
    assert "text_affect" in names
    for n in names:
        assert registry.stage_class(n).name == n
    registry.check()


def test_pool_equals_serial_and_loads_once_per_worker(tmp_path):
    a = _corpus(tmp_path / "a", 4)
    b = _corpus(tmp_path / "b", 4)
    run_stages(a, [WordCount(), WordSum()], executor=SerialExecutor())
    rep = run_stages(b, [WordCount(), WordSum()], executor=PoolExecutor(2))
    assert rep.failed == 0
    for sid in a.session_ids():
        x = a.session(sid).read_utterances().drop(columns=[])
        y = b.session(sid).read_utterances()
        assert x[["index", "n_words", "cum_words"]].equals(y[["index", "n_words", "cum_words"]])
    pids = {_rec(b, s, "wordcount")["worker_pid"] for s in b.session_ids()}
    setup_pids = {_rec(b, s, "wordcount")["setup_pid"] for s in b.session_ids()}
    assert pids == setup_pids and 1 <= len(pids) <= 2


def test_a_dying_worker_fails_only_its_task(tmp_path):
    c = _corpus(tmp_path, 4)
    s = run_one(c, WordCount(CountSettings(crash_on=["s2"])), executor=PoolExecutor(2))
    assert s.count("failed") >= 1
    assert any(o.item == "s2" and "worker lost" in o.reason for o in s.failed)
    # rerun: everything finishes (the pool restarted; the crash setting is gone)
    s = run_one(c, WordCount(), executor=PoolExecutor(2))
    assert s.count("failed") == 0
    assert all(_rec(c, sid, "wordcount")["status"] == "done" for sid in c.session_ids())


def test_ctrl_c_commits_what_is_done(tmp_path, monkeypatch):
    c = _corpus(tmp_path, 4)
    calls = {"n": 0}
    import emoguide.pipeline.runner as R

    real = R.commit

    def commit_then_interrupt(*a, **k):
        real(*a, **k)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(R, "commit", commit_then_interrupt)
    rep = run_stages(c, [WordCount()])
    assert rep.interrupted
    monkeypatch.setattr(R, "commit", real)
    recorded = [s for s in c.session_ids() if _rec(c, s, "wordcount")]
    # the task whose commit was interrupted has its artifact but no record: it is redone
    assert len(recorded) == 1
    s = run_one(c, WordCount())
    assert (s.count("skipped"), s.count("done")) == (1, 3)


def test_stages_json_records_executor_and_fingerprint_inputs(tmp_path):
    c = _corpus(tmp_path, 1)
    run_one(c, WordCount())
    rec = json.loads((c.session("s0").path / "stages.json").read_text())["wordcount"]
    assert rec["executor"] == "serial" and rec["status"] == "done"
    assert rec["settings"]["version"] == 1 and rec["settings"]["settings"]["factor"] == 1.0


def test_a_not_applicable_record_stays_current_and_keeps_downstream_current(tmp_path):
    c = _corpus(tmp_path, 2)
    st = [WordCount(CountSettings(skip_on=["s0"])), WordSum()]
    run_stages(c, st)
    ids = {k: _rec(c, "s0", k)["run_id"] for k in ("wordcount", "wordsum")}
    rep = run_stages(c, st)
    assert [o.reason for o in rep.summaries[0].outcomes if o.item == "s0"] == ["nothing to count"]
    assert {k: _rec(c, "s0", k)["run_id"] for k in ("wordcount", "wordsum")} == ids
