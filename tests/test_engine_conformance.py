"""The conformance suite: every registered session stage, on small real sessions, keeps the
engine's contract (docs/architecture.md):

- a second run does nothing (every session skipped, no artifact or record changes);
- `force` redoes it (a new run id for every session) and changes only what it declares;
- a stage that raises fails only that session, whose artifacts stay as they were;
- `serial` and `pool` give equal outputs.

The sessions are two 10 s clips of the bundled demo video (a real face, two synthetic voices), run
once through every media stage; each test works on a copy.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from helpers import need_media as _need_media

from emoguide.pipeline import registry
from emoguide.pipeline.executors import PoolExecutor, SerialExecutor
from emoguide.pipeline.runner import run_one, run_stages
from emoguide.pipeline.stage import FILES
from emoguide.pipeline.testing import allowed_keys, changed, cut_clips, frames_equal, snapshot

pytestmark = pytest.mark.slow

SESSION_STAGES = [n for n in registry.RUN_DEFAULT if registry.stage_class(n).scope == "session"]




@pytest.fixture(scope="module")
def base(tmp_path_factory):
    _need_media()
    from emoguide.corpus import Corpus
    from emoguide.stages.ingest_media import ingest_media

    root = tmp_path_factory.mktemp("conformance")
    clips = cut_clips(root / "clips", n=2, seconds=10.0, start=1.0)
    corpus = Corpus.open(root / "corpus", create=True)
    ids, summary = ingest_media(corpus, clips, settings=corpus.settings.media)
    assert summary.count("failed") == 0, summary.outcomes
    report = run_stages(corpus, SESSION_STAGES, ids)
    assert report.failed == 0, [(s.title, o.item, o.reason) for s in report.summaries for o in s.failed]
    return corpus


def _copy(base, dst):
    from emoguide.corpus import Corpus

    shutil.copytree(base.root, dst)
    return Corpus.open(dst)


def _stage(c, name):
    return registry.stage_class(name).from_corpus_settings(c.settings)


def test_ingest_resumes_and_forces(base, tmp_path):
    from emoguide.stages.ingest_media import ingest_media

    c = _copy(base, tmp_path / "c")
    before = snapshot(c.root)
    clips = sorted((base.root.parent / "clips").glob("*.mp4"))
    _, again = ingest_media(c, clips, settings=c.settings.media)
    assert again.count("skipped") == 2 and again.count("done") == 0
    assert changed(before, snapshot(c.root)) == set()


@pytest.mark.parametrize("name", SESSION_STAGES)
def test_second_run_does_nothing(base, tmp_path, name):
    c = _copy(base, tmp_path / "c")
    before = snapshot(c.root)
    s = run_one(c, _stage(c, name))
    assert s.count("done") == 0 and s.count("failed") == 0, s.outcomes
    assert changed(before, snapshot(c.root)) == set()


@pytest.mark.parametrize("name", SESSION_STAGES)
def test_force_redoes_and_changes_only_what_it_declares(base, tmp_path, name):
    c = _copy(base, tmp_path / "c")
    cls = registry.stage_class(name)
    before = snapshot(c.root)
    cols_before = {sid: set(c.session(sid).read_utterances().columns) for sid in c.session_ids()}
    s = run_one(c, _stage(c, name), force=True)
    assert s.count("failed") == 0, s.outcomes
    after = snapshot(c.root)
    diff = changed(before, after)
    for sid in c.session_ids():
        key = f"{sid}/stages.json@{name}"
        assert key in diff, f"{name} was not redone for {sid}"
    undeclared = sorted(k for k in diff if not allowed_keys(cls, k))
    assert undeclared == [], f"{name} changed what it does not declare: {undeclared}"
    declared_cols = {col for art in cls.writes if art.startswith("utterances") for col in cls.columns.get(art, ())}
    for sid in c.session_ids():
        new_cols = set(c.session(sid).read_utterances().columns) - cols_before[sid]
        if "utterances" not in cls.writes:
            assert new_cols <= declared_cols, f"{name} added undeclared columns {new_cols - declared_cols}"


@pytest.mark.parametrize("name", SESSION_STAGES)
def test_a_raising_stage_fails_only_its_session(base, tmp_path, name, monkeypatch):
    c = _copy(base, tmp_path / "c")
    cls = registry.stage_class(name)
    victim, other = c.session_ids()
    real = cls.run

    def run(self, session):
        if session.id == victim:
            raise IndexError(f"injected failure in {session.id}")
        return real(self, session)

    monkeypatch.setattr(cls, "run", run)
    before = snapshot(c.root)
    s = run_one(c, _stage(c, name), force=True, executor=SerialExecutor())
    failed = {o.item: o.reason for o in s.failed}
    assert list(failed) == [victim] and "IndexError: injected failure" in failed[victim]
    assert [o.status for o in s.outcomes if o.item == other] == ["done"]
    diff = changed(before, snapshot(c.root))
    # the victim's artifacts are untouched; only its record changed (now "failed")
    assert {k for k in diff if k.startswith(victim + "/")} == {f"{victim}/stages.json@{name}"}
    assert c.session(victim).stages.get(name)["status"] == "failed"


@pytest.mark.parametrize("name", SESSION_STAGES)
def test_serial_equals_pool(base, tmp_path, name):
    a = _copy(base, tmp_path / "a")
    b = _copy(base, tmp_path / "b")
    cls = registry.stage_class(name)
    sa = run_one(a, _stage(a, name), force=True, executor=SerialExecutor())
    sb = run_one(b, _stage(b, name), force=True, executor=PoolExecutor(2))
    assert sa.count("failed") == sb.count("failed") == 0, (sa.outcomes, sb.outcomes)
    for sid in a.session_ids():
        rec = b.session(sid).stages.get(name)
        assert rec["executor"] == "pool"
        for art in cls.writes:
            host, _, group = art.partition(":")
            if host not in FILES or not (a.session(sid).path / FILES[host]).exists():
                continue
            if not FILES[host].endswith(".parquet"):
                assert (a.session(sid).path / FILES[host]).read_bytes() == (b.session(sid).path / FILES[host]).read_bytes()
                continue
            x = pd.read_parquet(a.session(sid).path / FILES[host])
            y = pd.read_parquet(b.session(sid).path / FILES[host])
            cols = list(cls.columns[art]) if group else list(x.columns)
            frames_equal(x[cols], y[cols])
