"""The rating study's backend: config, plan, store (real SQLite), CLI (typer runner), export.

Clips are cut for real with PyAV from the demo video (tests/test_rating_clips.py checks the clip
files themselves).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emoguide.cli import app
from emoguide.evaluation.criteria import default_criteria
from emoguide.evaluation.rating import background as bg
from emoguide.evaluation.rating.config import StudyConfigError, load_study_config, load_study_criteria
from emoguide.evaluation.rating.plan import make_plan
from emoguide.evaluation.rating.store import FLAG_KINDS, RatingStore, StudyReplacedError
from emoguide.evaluation.schema import RATINGS_COLUMNS
from eval_fixtures import CONDITIONS, MODELS, eval_corpus

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, " ".join(res.output.split()), res.output


def neutral_text(sessions=2, pairs=3):
    """Responses that name no model, condition or session, each unique (so tests can map back)."""
    text = {}
    n = 0
    for s in range(sessions):
        for idx in range(2 * pairs):
            for m in MODELS:
                for c in CONDITIONS:
                    n += 1
                    text[(f"s{s + 1}", idx, m, c)] = {"technique": f"Technique number {n}", "response": f"Reply number {n}."}
    return text


# ----------------------------------------------------------------------------- config
def test_config_defaults_and_hash(tmp_path):
    cfg = load_study_config(None)
    assert [c.name for c in cfg.criteria] == ["applicability", "empathy", "comprehensiveness"]
    assert cfg.criteria[0].statement == default_criteria()[0].statement
    assert cfg.study.video == "original" and cfg.assignment.raters_per_item is None
    assert cfg.assignment.retest_fraction == 0.05 and cfg.groups.by == "degree"
    assert cfg.rater_ids() == ["r01", "r02", "r03"]
    assert load_study_config(None, raters=12).rater_ids()[-1] == "r12"
    assert cfg.config_hash() == load_study_config(None).config_hash() and len(cfg.config_hash()) == 64
    p = tmp_path / "study.toml"
    p.write_text(textwrap.dedent("""
        [study]
        title = "Pilot"
        video = "none"
        [raters]
        names = ["Dr. Ada Lovelace", "Bob"]
        [assignment]
        raters_per_item = 1
        quotas = { bob = 4 }
        [[criteria]]
        name = "warmth"
        title = "Warmth"
        statement = "The response is warm."
        scale_min = 0
        scale_max = 3
        anchors = { "0" = "cold", "3" = "warm" }
    """))
    custom = load_study_config(p)
    assert custom.rater_ids() == ["dr-ada-lovelace", "bob"]
    assert custom.rater_names()["dr-ada-lovelace"] == "Dr. Ada Lovelace"
    assert [c.name for c in custom.criteria] == ["warmth"] and custom.criteria[0].scale == [0, 1, 2, 3]
    assert custom.config_hash() != cfg.config_hash()


@pytest.mark.parametrize(
    "toml, expected",
    [
        ("[assignment]\nraters_per_item = 0", "study.toml: assignment.raters_per_item: must be >= 1"),
        ("[assignment]\nretest_fraction = 1.5", "study.toml: assignment.retest_fraction: must be <= 1"),
        ("[assignment]\nraters_per_itme = 2", "study.toml: assignment.raters_per_itme: unknown key"),
        ('[study]\nvideo = "sepia"', "study.toml: study.video: Input should be 'original', 'blurred' or 'none'"),
        ('[selection]\ntargets = ["s1-7"]', 'study.toml: selection.targets: \'s1-7\': write a target as "session_id:target_index"'),
        ("[raters]\ncount = 2\nnames = [\"a\"]", "study.toml: raters: give either count or names, not both"),
        ("[raters]\ncount = 2\n[assignment]\nquotas = { r09 = 3 }", "assignment.quotas names unknown raters ['r09']"),
        ('[[criteria]]\nname = "x"\ntitle = "X"\nstatement = "s"\nanchors = { "9" = "high" }', "study.toml: criteria.0: anchors [9] lie outside the scale 1-5"),
        ('[[criteria]]\nname = "Bad Name"\ntitle = "X"\nstatement = "s"', "study.toml: criteria.0.name: String should match pattern"),
    ],
)
def test_config_errors_name_the_key(tmp_path, toml, expected):
    p = tmp_path / "study.toml"
    p.write_text(toml)
    with pytest.raises(StudyConfigError) as err:
        load_study_config(p)
    assert expected.replace("study.toml", str(p)) in str(err.value)


def test_config_error_through_the_cli(tmp_path):
    c = eval_corpus(tmp_path, media=None)
    p = tmp_path / "study.toml"
    p.write_text("[assignment]\nraters_per_item = 0\n")
    code, text, _ = invoke("rate", "init", "--corpus", c.root, "--config", p)
    assert code == 2 and "assignment.raters_per_item: must be >= 1" in text
    assert not (Path(c.root) / "ratings.sqlite").exists()
    p.write_text('[selection]\nmodels = ["nope:model"]\n')
    code, text, _ = invoke("rate", "init", "--corpus", c.root, "--config", p)
    assert code == 2 and "selection.models: ['nope:model'] not among the rateable rows" in text


# ----------------------------------------------------------------------------- plan
def _contexts(n_contexts=12, per_context=8):
    return [(f"s{c // 4}", c % 4) for c in range(n_contexts) for _ in range(per_context)]


def _adjacent_same(order, contexts):
    return sum(1 for a, b in zip(order, order[1:]) if contexts[a[0]] == contexts[b[0]])


@pytest.mark.parametrize("seed", range(8))
def test_plan_never_puts_one_context_back_to_back(seed):
    contexts = _contexts()
    plan = make_plan(contexts, ["r01", "r02", "r03"], seed=seed, retest_fraction=0.1, retest_min_gap=10)
    assert plan.warnings == []
    for rp in plan.raters.values():
        assert len([1 for _, r in rp.order if not r]) == len(contexts)  # fully crossed
        assert _adjacent_same(rp.order, contexts) == 0  # retest copies included
        retests = [(p, i) for p, (i, r) in enumerate(rp.order) if r]
        assert len(retests) == round(0.1 * len(contexts)) == 10
        for p, i in retests:
            first = rp.order.index((i, False))
            assert p - first >= 10  # later, at least the gap after the first showing
        assert len({i for _, i in retests}) == len(retests)  # an item is retested once


def test_plan_k_raters_quotas_and_reproducibility():
    contexts = _contexts(10, 8)
    raters = [f"r{i:02d}" for i in range(1, 6)]
    plan = make_plan(contexts, raters, k=2, quotas={"r01": 5}, seed=3, retest_fraction=0.05)
    assert set(plan.raters_per_item.values()) == {2}  # every item exactly k raters
    items = {r: plan.items_of(r) for r in raters}
    assert len(items["r01"]) == 5  # the quota (below the fair share) is met exactly
    others = [len(items[r]) for r in raters[1:]]
    assert max(others) - min(others) <= 1 and sum(others) + 5 == 2 * len(contexts)  # balanced
    for r in raters:
        assert _adjacent_same(plan.raters[r].order, contexts) == 0
    again = make_plan(contexts, raters, k=2, quotas={"r01": 5}, seed=3, retest_fraction=0.05)
    assert {r: p.order for r, p in again.raters.items()} == {r: p.order for r, p in plan.raters.items()}
    other = make_plan(contexts, raters, k=2, quotas={"r01": 5}, seed=4, retest_fraction=0.05)
    assert {r: p.order for r, p in other.raters.items()} != {r: p.order for r, p in plan.raters.items()}


def test_plan_reports_what_it_cannot_do():
    one_context = [("s1", 3)] * 6
    plan = make_plan(one_context, ["a"], seed=0, retest_fraction=0.5, retest_min_gap=3)
    assert any("adjacent" in w for w in plan.warnings)
    plan = make_plan(_contexts(2, 2), ["a", "b"], k=5, seed=0)
    assert any("raters_per_item = 5" in w for w in plan.warnings)
    plan = make_plan(_contexts(4, 2), ["a", "b"], k=2, quotas={"a": 1, "b": 1}, seed=0)
    assert any("fewer than 2 raters" in w for w in plan.warnings)


# ----------------------------------------------------------------------------- background
def test_background_validation_and_groups(tmp_path):
    names = [f["name"] for f in bg.BACKGROUND_FIELDS]
    assert names == ["degree", "years_experience", "orientation", "cbt_training", "nonverbal_cues"]
    good = {"degree": "phd", "years_experience": "12", "orientation": "cbt", "cbt_training": "yes", "nonverbal_cues": "often"}
    assert bg.validate_background(good)["years_experience"] == 12
    for field, value, msg in [
        ("degree", "mba", "degree: must be one of"),
        ("years_experience", "71", "years_experience: must be between 0 and 70"),
        ("years_experience", "ten", "years_experience: must be a whole number"),
        ("orientation", "", "orientation: required"),
    ]:
        with pytest.raises(ValueError, match=field):
            bg.validate_background({**good, field: value})
        with pytest.raises(ValueError) as err:
            bg.validate_background({**good, field: value})
        assert msg in str(err.value)
    with pytest.raises(ValueError, match="unknown field"):
        bg.validate_background({**good, "model": "x"})
    assert bg.derive_group(bg.validate_background(good), "experience", 10) == ">=10y"
    assert bg.derive_group(None) is None
    f = tmp_path / "g.csv"
    f.write_text("rater_id,group\nr01,senior\nr02\n")
    with pytest.raises(Exception, match=r"g.csv, line 3"):
        bg.read_groups_file(f)


# ----------------------------------------------------------------------------- store helpers
def small_store(tmp_path, n_items=6, raters=("r01", "r02"), too_fast=10.0) -> RatingStore:
    """A study written straight through RatingStore.create (no corpus), every rater on every item."""
    crit = default_criteria()
    meta = {"study_id": "study-test", "title": "T", "instructions": "", "config_hash": "cfg123",
            "criteria": [c.model_dump(mode="json") for c in crit], "video_mode": "none",
            "too_fast_seconds": str(too_fast), "research_notice": "research only", "groups": {"by": "degree"}}
    ctxs = [{"context_id": f"ctx{k}", "turns": [{"speaker_title": "Patient", "text": f"t{k}", "is_target": True}],
             "risk_flag": k == 0, "media_kind": "none", "clip_name": None} for k in range(n_items)]
    items = [{"item_id": f"item{k}", "context_id": f"ctx{k}", "technique": "T", "response": "R", "session_id": "s1",
              "target_index": k, "model": "m", "condition": "base"} for k in range(n_items)]
    assign = [(r, k + 1, f"item{k}", False) for r in raters for k in range(n_items)]
    return RatingStore.create(tmp_path / "ratings.sqlite", meta, ctxs, items,
                              [{"rater_id": r, "name": r.upper()} for r in raters], assign)


def rate_all(store, rater, position, score):
    for c in store.study().criteria:
        store.save_score(rater, position, c.name, score)


def test_store_scores_notes_edits_and_permissions(tmp_path):
    st = small_store(tmp_path)
    assert st.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert st.connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert st.next_position("r01") == 1 and st.progress("r01") == (0, 6)
    s = st.save_score("r01", 1, "empathy", 4)
    assert s.scores == {"empathy": 4} and not s.complete and s.updated_at
    assert st.edits("r01") == []  # a first value is not an edit
    st.save_score("r01", 1, "empathy", 4)  # same value: nothing to log
    assert st.edits("r01") == []
    st.save_score("r01", 1, "empathy", 2)
    st.save_score("r01", 1, "empathy", None)  # cleared: logged too
    edits = st.edits("r01")
    assert [(e["field"], e["old"], e["new"], e["position"], e["item_id"]) for e in edits] == [
        ("empathy", "4", "2", 1, "item0"), ("empathy", "2", None, 1, "item0")]
    rate_all(st, "r01", 1, 3)
    assert st.rating_state("r01", 1).complete and st.progress("r01") == (1, 6) and st.next_position("r01") == 2
    st.save_note("r01", 1, "fine", ["harmful"])
    st2 = st.save_note("r01", 1, "fine, on reflection", ["not_a_reply", "harmful"])
    assert st2.flags == ["harmful", "not_a_reply"] and st2.comment == "fine, on reflection"
    assert [e["field"] for e in st.edits("r01")][-2:] == ["comment", "flags"]
    assert st.edits("r02") == []  # the log is per rater
    with pytest.raises(PermissionError):
        st.save_score("r02", 99, "empathy", 3)
    with pytest.raises(PermissionError):
        st.rating_state("nobody", 1)
    with pytest.raises(ValueError, match="off the scale"):
        st.save_score("r01", 2, "empathy", 6)
    with pytest.raises(ValueError, match="unknown criterion"):
        st.save_score("r01", 2, "warmth", 3)
    with pytest.raises(ValueError, match="unknown flag"):
        st.save_note("r01", 2, "", ["boring"])
    assert st.rating_state("r02", 1).scores == {}  # r01's ratings are r01's only
    assert FLAG_KINDS == RatingStore.FLAG_KINDS == ("harmful", "off_topic", "not_a_reply")
    st.log_view("r01", 1, 4.0, 0.5, 2, 1)
    st.log_view("r01", 1, 1.5, 0.25, 1, 1)
    assert st.view("r01", 1) == {"seconds": 5.5, "watched_fraction": 0.5, "seeks": 3, "plays": 2}
    with pytest.raises(ValueError):
        st.log_view("r01", 1, 1.0, 1.5, 0, 0)


def test_store_tokens_background_and_clip_lookup(tmp_path):
    st = small_store(tmp_path)
    tok = st.issue_token("r01")
    assert st.rater_for_token(tok) == "r01" and st.rater_for_token(tok + "x") is None and st.rater_for_token("") is None
    stored = st.connection().execute("SELECT token_hash FROM raters WHERE rater_id='r01'").fetchone()[0]
    assert tok not in stored and len(stored) == 64  # only the hash is kept
    new = st.issue_token("r01")
    assert st.rater_for_token(tok) is None and st.rater_for_token(new) == "r01"  # an old link stops working
    admin = st.issue_admin_token()
    assert st.is_admin_token(admin) and not st.is_admin_token(new) and not st.is_admin_token("")
    assert st.background("r01") is None
    with pytest.raises(ValueError, match="degree"):
        st.save_background("r01", {"degree": "wizard"})
    st.save_background("r01", {"degree": "master", "years_experience": 3, "orientation": "humanistic",
                               "cbt_training": "no", "nonverbal_cues": "sometimes"})
    info = {r.rater_id: r for r in st.raters()}
    assert info["r01"].group == "master" and info["r01"].has_background and info["r02"].group is None
    assert st.clip_file("../ratings.sqlite") is None and st.clip_file("nope.mp4") is None
    with pytest.raises(FileNotFoundError, match="emoguide rate init"):
        RatingStore.open(tmp_path / "elsewhere" / "ratings.sqlite")


def test_dashboard_progress_flags_and_hand_checked_alpha(tmp_path):
    st = small_store(tmp_path, n_items=6)
    # empathy on items 1-3: r01 = 1, 2, 3; r02 = 1, 2, 2. By hand (Krippendorff 2011, ordinal):
    # values n1=2, n2=3, n3=1 (n=6); coincidences o11=2, o22=2, o23=o32=1;
    # delta^2(c,k) = (sum_{g=c..k} n_g - (n_c+n_k)/2)^2: d12 = 2.5^2, d13 = 4.5^2, d23 = 2^2;
    # alpha = 1 - (n-1) * sum o*d / sum n_c n_k d = 1 - 5 * 8 / 180 = 7/9.
    for pos, (a, b) in enumerate([(1, 1), (2, 2), (3, 2)], start=1):
        st.save_score("r01", pos, "empathy", a)
        st.save_score("r02", pos, "empathy", b)
    d = st.dashboard()
    emp = next(a for a in d["agreement"] if a["criterion"] == "empathy")
    assert emp["n_items"] == 3 and emp["alpha_ordinal"] == pytest.approx(7 / 9, abs=1e-9)
    app_ = next(a for a in d["agreement"] if a["criterion"] == "applicability")
    assert app_ == {"criterion": "applicability", "alpha_ordinal": None, "n_items": 0}  # no overlap yet
    # r01: 5 complete items, the same score everywhere, 2 s each -> straight-lining and too fast
    for pos in range(1, 6):
        rate_all(st, "r01", pos, 4)
        st.log_view("r01", pos, 2.0, None, 0, 0)
    # r02: varied scores, 30 s each
    for pos in range(1, 6):
        for k, c in enumerate(st.study().criteria):
            st.save_score("r02", pos, c.name, 1 + (pos + k) % 5)
        st.log_view("r02", pos, 30.0, 1.0, 1, 1)
    rows = {r["rater_id"]: r for r in st.dashboard()["raters"]}
    assert rows["r01"]["done"] == 5 and rows["r01"]["total"] == 6 and rows["r01"]["missing"] == 1
    assert rows["r01"]["straight_lining"] and rows["r01"]["too_fast"]
    assert rows["r01"]["median_seconds_per_item"] == 2.0 and rows["r01"]["name"] == "R01"
    assert not rows["r02"]["straight_lining"] and not rows["r02"]["too_fast"]
    assert rows["r02"]["median_seconds_per_item"] == 30.0
    assert all(a["n_items"] == 5 and a["alpha_ordinal"] is not None for a in st.dashboard()["agreement"])


def test_concurrent_writers_lose_nothing(tmp_path):
    """The web app's thread pool: one connection per thread, BEGIN IMMEDIATE, busy_timeout."""
    import threading

    raters = tuple(f"r{i:02d}" for i in range(1, 9))
    st = small_store(tmp_path, n_items=10, raters=raters)
    errors = []

    def work(rater):
        try:
            for pos in range(1, 11):
                for c in ("applicability", "empathy", "comprehensiveness"):
                    st.save_score(rater, pos, c, 1 + (pos % 5))
                st.log_view(rater, pos, 1.0, 0.5, 1, 1)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    conn = st.connection()
    assert conn.execute("SELECT count(*) FROM ratings").fetchone()[0] == 8 * 10 * 3
    assert conn.execute("SELECT count(*) FROM views WHERE seconds = 1.0 AND plays = 1").fetchone()[0] == 80
    assert all(st.progress(r) == (10, 10) for r in raters)


def test_a_replaced_study_refuses_writes(tmp_path):
    st = small_store(tmp_path)
    st.save_score("r01", 1, "empathy", 3)
    small_store(tmp_path)  # what `rate init --force` does: a new file renamed over the old one
    with pytest.raises(StudyReplacedError, match="restart the server"):
        st.save_score("r01", 1, "empathy", 4)
    assert RatingStore.open(tmp_path / "ratings.sqlite").rating_state("r01", 1).scores == {}


# ----------------------------------------------------------------------------- SIGKILL
WRITER = """
import sys
sys.path[:0] = {paths!r}
from emoguide.evaluation.rating.store import RatingStore
st = RatingStore.open({db!r})
crit = [c.name for c in st.study().criteria]
n = 0
while True:
    for rater in ("r01", "r02"):
        for pos in range(1, 7):
            for c in crit:
                n += 1
                score = 1 + n % 5
                st.save_score(rater, pos, c, score)
                print(f"ACK {{rater}} {{pos}} {{c}} {{score}}", flush=True)
"""


def test_sigkill_loses_no_acknowledged_rating(tmp_path):
    st = small_store(tmp_path)
    db = str(tmp_path / "ratings.sqlite")
    st.close()
    code = WRITER.format(paths=[str(REPO / "src")], db=db)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked: dict[tuple[str, int, str], int] = {}

    def ack(line: str) -> None:
        _, rater, pos, crit, score = line.split()
        acked[(rater, int(pos), crit)] = int(score)

    t0 = time.monotonic()
    n_acks = 0
    try:
        for line in proc.stdout:
            ack(line)
            n_acks += 1
            if n_acks >= 40 and time.monotonic() - t0 > 0.5:
                break
            assert time.monotonic() - t0 < 60
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-stream: the writer is in the middle of some save
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # what the writer printed before it died was acknowledged too (a cut-off last line was not)
    for line in proc.stdout.read().splitlines(keepends=True):
        if line.endswith("\n"):
            ack(line)
    back = RatingStore.open(db)
    got = {(r["rater_id"], r["position"], r["criterion"]): r["score"]
           for r in back.connection().execute("SELECT * FROM ratings")}
    assert set(acked) <= set(got)  # every acknowledged rating is there
    # ... with its last acknowledged value, except at most the one save that committed but
    # was killed before it could print its acknowledgement
    differ = [k for k, v in acked.items() if got[k] != v]
    assert len(differ) <= 1, differ
    assert back.connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert back.study().study_id == "study-test"


# ----------------------------------------------------------------------------- CLI end to end
@pytest.fixture(scope="module")
def built_study(tmp_path_factory):
    """One `rate init` (clips cut for real) per module; each test gets its own copy."""
    base = tmp_path_factory.mktemp("built")
    c = eval_corpus(base, text=neutral_text())
    code, text, raw = invoke("rate", "init", "--corpus", c.root, "--raters", 2)
    assert code == 0, raw
    return Path(c.root), text


@pytest.fixture()
def study(built_study, tmp_path):
    from emoguide.corpus import Corpus

    root, text = built_study
    shutil.copytree(root, tmp_path / "corpus")
    return Corpus.open(tmp_path / "corpus"), text


@pytest.mark.slow  # the module's study fixture cuts two real clips (~15 s once)
def test_init_builds_the_study(study):
    c, text = study
    # 2 sessions x 2 targets = 4 contexts; 2 models x 4 conditions each = 32 items; bad rows skipped
    assert "4 contexts, 32 items, 2 raters, 68 assignments (4 retests), clips: 2 video, 2 none" in text
    st = RatingStore.open(Path(c.root) / "ratings.sqlite")
    n_models = st.connection().execute("SELECT count(DISTINCT model) FROM unblinding").fetchone()[0]
    assert n_models == 2  # the error row and the empty response are not in
    assert load_study_criteria(c.root)[0].name == "applicability"
    assert load_study_criteria(Path(c.root) / "sessions") is None  # no study there
    gens = pd.read_parquet(c.generations_path)
    ctx_of = {i: (s, t) for i, s, t in st.connection().execute("SELECT item_id, session_id, target_index FROM unblinding")}
    for r in st.raters():
        a = st.assignments(r.rater_id)
        assert [x.position for x in a] == list(range(1, 35))
        assert len({x.item_id for x in a if not x.is_retest}) == 32 and sum(x.is_retest for x in a) == 2
        seq = [ctx_of[x.item_id] for x in a]
        assert all(p != q for p, q in zip(seq, seq[1:]))  # no context twice in a row, retests included
        for x in a:
            if x.is_retest:
                first = next(y.position for y in a if y.item_id == x.item_id and not y.is_retest)
                assert x.position - first >= 10
    # one clip per context that has media, all of the same context share it
    views = [st.item(i) for (i,) in st.connection().execute("SELECT item_id FROM items")]
    by_ctx = {}
    for v in views:
        by_ctx.setdefault(v.context_id, set()).add(v.clip_name)
    assert all(len(s) == 1 for s in by_ctx.values())
    clips = [next(iter(s)) for s in by_ctx.values() if next(iter(s))]
    assert len(clips) == 2 and all(st.clip_file(n).stat().st_size > 1000 for n in clips)
    risky = [v for v in views if v.risk_flag]
    assert risky and all("better off without me" in " ".join(t["text"] for t in v.turns) for v in risky)
    assert len(gens) == 34


@pytest.mark.slow  # the module's study fixture cuts two real clips (~15 s once)
def test_blinding_item_views_and_clip_names(study):
    c, _ = study
    st = RatingStore.open(Path(c.root) / "ratings.sqlite")
    secrets_ = list(MODELS) + list(CONDITIONS) + ["llamacpp", "openai", "alpha", "beta", "s1", "s2", "PROMPT",
                                                 "dissonance", "sad"]
    ids = [i for (i,) in st.connection().execute("SELECT item_id FROM items")]
    opaque = re.compile(r"^[A-Za-z0-9_-]{16}$")  # secrets.token_urlsafe(12): random, derived from nothing
    long_secrets = [s for s in secrets_ if len(s) >= 8]  # a random id could hold "s1" by chance, not these
    for item_id in ids:
        v = st.item(item_id)
        assert set(v.__dataclass_fields__) == {"item_id", "context_id", "turns", "technique", "response",
                                              "risk_flag", "media_kind", "clip_name"}
        text = json.dumps({"turns": v.turns, "t": v.technique, "r": v.response, "kind": v.media_kind})
        for s in secrets_:
            assert s.lower() not in text.lower(), (s, text)
        assert opaque.match(v.item_id) and opaque.match(v.context_id)
        assert v.clip_name is None or re.match(r"^[A-Za-z0-9_-]{16}\.(mp4|m4a)$", v.clip_name)
        for s in long_secrets:
            assert s not in v.item_id + v.context_id + (v.clip_name or "")
        assert all(set(t) == {"speaker_title", "text", "is_target"} for t in v.turns)
    for f in (Path(c.root) / "rating" / "clips").iterdir():
        assert re.match(r"^[A-Za-z0-9_-]{16}\.(mp4|m4a)$", f.name)
    # the plain context is the same for every condition and model of a context
    same = {}
    for item_id in ids:
        v = st.item(item_id)
        same.setdefault(v.context_id, set()).add(json.dumps(v.turns))
    assert all(len(s) == 1 for s in same.values())
    # ids are random: a second study over the same rows draws new ones
    st.close()
    fast = Path(c.root).parent / "study.toml"
    fast.write_text('[study]\nvideo = "none"\n')  # no clips to cut this time
    code, _, raw = invoke("rate", "init", "--corpus", c.root, "--raters", 2, "--config", fast)  # no ratings yet: allowed
    assert code == 0, raw
    st2 = RatingStore.open(Path(c.root) / "ratings.sqlite")
    assert not set(ids) & {i for (i,) in st2.connection().execute("SELECT item_id FROM items")}


@pytest.mark.slow  # the module's study fixture cuts two real clips (~15 s once)
def test_plan_and_invite_cli(study):
    c, _ = study
    code, text, raw = invoke("rate", "plan", "--corpus", c.root)
    assert code == 0, raw
    assert "32 items" in text and "raters per item: min 2, max 2" in text
    assert "overlap (items both raters rate)" in text and "retest items" in text
    assert "r01 32 2 34" in text and "r02 32 2 34" in text
    code, _, raw = invoke("rate", "invite", "--corpus", c.root, "--base-url", "http://127.0.0.1:9000/")
    lines = raw.strip().splitlines()
    assert code == 0 and [ln.split("\t")[0] for ln in lines] == ["r01", "r02"]
    st = RatingStore.open(Path(c.root) / "ratings.sqlite")
    url = lines[0].split("\t")[1]
    assert url.startswith("http://127.0.0.1:9000/r/")
    assert st.rater_for_token(url.rsplit("/", 1)[1]) == "r01"
    code, _, raw = invoke("rate", "invite", "--corpus", c.root, "--rater", "r02")
    assert code == 0 and raw.startswith("r02\thttp://127.0.0.1:8765/r/")
    assert st.rater_for_token(url.rsplit("/", 1)[1]) == "r01"  # r01's link is untouched
    code, _, raw = invoke("rate", "invite", "--corpus", c.root, "--admin")
    assert code == 0 and raw.startswith("admin\thttp://127.0.0.1:8765/admin/login/")
    assert st.is_admin_token(raw.strip().rsplit("/", 1)[1])
    code, text, _ = invoke("rate", "invite", "--corpus", c.root, "--rater", "r99")
    assert code == 2 and "unknown rater" in text


@pytest.mark.slow  # the module's study fixture cuts two real clips (~15 s once)
def test_export_columns_values_and_refusal(study, tmp_path):
    c, _ = study
    root = Path(c.root)
    st = RatingStore.open(root / "ratings.sqlite")
    gens = pd.read_parquet(c.generations_path)
    by_response = {r["response"]: r for r in gens.to_dict("records")}
    a = st.assignments("r01")
    rate_all(st, "r01", a[0].position, 5)
    st.save_score("r01", a[1].position, "empathy", 2)
    st.save_score("r01", a[1].position, "empathy", 3)  # one edit
    st.save_note("r01", a[1].position, "too long", ["off_topic"])
    st.log_view("r01", a[0].position, 12.5, 0.8, 2, 1)
    st.save_background("r02", {"degree": "phd", "years_experience": 20, "orientation": "cbt",
                               "cbt_training": "yes", "nonverbal_cues": "always"})
    out = tmp_path / "ratings.csv"
    code, text, raw = invoke("rate", "export", "--corpus", root, "--out", out)
    assert code == 0, raw
    df = pd.read_csv(out)
    assert tuple(df.columns[: len(RATINGS_COLUMNS)]) == RATINGS_COLUMNS
    assert {"position", "flags", "seeks", "plays", "app_version"} <= set(df.columns)
    assert len(df) == (34 + 34) * 3  # every assignment x criterion; unrated ones with a null score
    assert df["score"].notna().sum() == 4
    first = df[(df.rater_id == "r01") & (df.position == a[0].position)]
    truth = by_response[st.item(a[0].item_id).response]
    assert set(first["model"]) == {truth["model"]} and set(first["condition"]) == {truth["condition"]}
    assert set(first["session_id"]) == {truth["session_id"]} and set(first["target_index"]) == {truth["target_index"]}
    assert list(first["score"]) == [5, 5, 5] and set(first["seconds_on_item"]) == {12.5}
    assert set(first["watched_fraction"]) == {0.8} and set(first["config_hash"]) == {st.study().config_hash}
    second = df[(df.rater_id == "r01") & (df.position == a[1].position)].set_index("criterion")
    assert second.loc["empathy", "score"] == 3 and second.loc["empathy", "n_edits"] == 1
    assert second.loc["applicability", "n_edits"] == 0 and math.isnan(second.loc["applicability", "score"])
    assert bool(second.loc["empathy", "flagged"]) and second.loc["empathy", "flags"] == "off_topic"
    assert second.loc["empathy", "comment"] == "too long"
    assert set(df[df.rater_id == "r02"]["rater_group"]) == {"phd"}
    assert df[df.rater_id == "r01"]["rater_group"].isna().all()
    assert df["is_retest"].sum() == 4 * 3
    assert set(df["study_id"]) == {st.study().study_id}
    # --groups overrides; parquet keeps dtypes
    groups = tmp_path / "groups.csv"
    groups.write_text("rater_id,group\nr01,novice\n")
    pq = tmp_path / "ratings.parquet"
    code, _, raw = invoke("rate", "export", "--corpus", root, "--out", pq, "--groups", groups)
    assert code == 0, raw
    dp = pd.read_parquet(pq)
    assert set(dp[dp.rater_id == "r01"]["rater_group"]) == {"novice"} and set(dp[dp.rater_id == "r02"]["rater_group"]) == {"phd"}
    assert str(dp["score"].dtype) == "Int64"
    # --wide: one rater x item matrix per criterion
    code, _, raw = invoke("rate", "export", "--corpus", root, "--out", tmp_path / "wide.csv", "--wide")
    assert code == 0, raw
    for crit in ("applicability", "empathy", "comprehensiveness"):
        w = pd.read_csv(tmp_path / f"wide_{crit}.csv")
        assert list(w["rater_id"]) == ["r01", "r02"] and w.shape == (2, 33)
    w = pd.read_csv(tmp_path / "wide_empathy.csv").set_index("rater_id")
    assert w.loc["r01", a[1].item_id] == 3
    # a study with ratings is not replaced without --force
    code, text, _ = invoke("rate", "init", "--corpus", root, "--raters", 2)
    assert code == 1 and "already holds a study with" in text and "--force" in text
    assert RatingStore.open(root / "ratings.sqlite").study().study_id == st.study().study_id
    fast = tmp_path / "study.toml"
    fast.write_text('[study]\nvideo = "none"\n')
    code, text, raw = invoke("rate", "init", "--corpus", root, "--raters", 3, "--force", "--config", fast)
    assert code == 0 and "replaced the previous study (backup:" in text, raw
    assert len(list(root.glob("ratings.*.sqlite.bak"))) == 1
    assert len(RatingStore.open(root / "ratings.sqlite").raters()) == 3


def test_selection_sampling_k_and_status(tmp_path):
    c = eval_corpus(tmp_path, media=None, sessions=3, pairs=4)
    p = tmp_path / "study.toml"
    p.write_text(textwrap.dedent("""
        [selection]
        conditions = ["base", "dissonance"]
        sample_contexts = 4
        seed = 7
        [raters]
        count = 4
        [assignment]
        raters_per_item = 2
        retest_fraction = 0
    """))
    code, text, raw = invoke("rate", "init", "--corpus", c.root, "--config", p)
    assert code == 0, raw
    assert "4 contexts, 16 items, 4 raters, 32 assignments (0 retests), clips: 4 none" in text
    st = RatingStore.open(Path(c.root) / "ratings.sqlite")
    conds = {r[0] for r in st.connection().execute("SELECT condition FROM unblinding")}
    assert conds == {"base", "dissonance"}
    per_ctx = st.connection().execute(
        "SELECT count(*) FROM unblinding GROUP BY session_id, target_index").fetchall()
    assert {n for (n,) in per_ctx} == {4}  # a sampled context brings all its model x condition rows
    first = sorted(tuple(r) for r in st.connection().execute("SELECT session_id, target_index FROM unblinding"))
    st.close()
    code, _, _ = invoke("rate", "init", "--corpus", c.root, "--config", p)
    st = RatingStore.open(Path(c.root) / "ratings.sqlite")
    assert sorted(tuple(r) for r in st.connection().execute("SELECT session_id, target_index FROM unblinding")) == first
    code, text, raw = invoke("rate", "status", "--corpus", c.root)
    assert code == 0 and "Krippendorff alpha (ordinal) - on 0 items" in text, raw


def test_missing_media_falls_back_to_no_clip(tmp_path):
    c = eval_corpus(tmp_path, text=neutral_text())
    src = c.session("s1").read_source()
    c.session("s1").write_source({**src, "path": str(tmp_path / "gone.mp4")})
    code, text, raw = invoke("rate", "init", "--corpus", c.root)
    assert code == 0, raw
    assert "gone.mp4" in text and "warning" in text
    assert "clips: 4 none" in text
