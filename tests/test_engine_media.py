"""The engine on real media: SIGKILL during `emoguide run --executor pool`, then a rerun; and a
local Ray instance giving the same results as serial."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import need_media as _need_media

from emoguide.pipeline.testing import cut_clips, frames_equal

pytestmark = pytest.mark.slow

MEDIA = ["asr", "diarize", "utterances", "roles", "safety", "faces", "face_affect", "voice", "text_affect", "dissonance"]
EMOGUIDE = [sys.executable, "-m", "emoguide"]




def _records(corpus: Path) -> dict[tuple[str, str], dict]:
    out = {}
    for sj in (corpus / "sessions").glob("*/stages.json"):
        try:
            data = json.loads(sj.read_text())
        except (OSError, ValueError):
            continue
        for stage, rec in data.items():
            out[(sj.parent.name, stage)] = rec
    return out


def _done(recs):
    return {k: v["run_id"] for k, v in recs.items() if v.get("status") == "done" and k[1] in MEDIA}


def test_sigkill_during_pool_run_then_rerun(tmp_path):
    _need_media()
    clips = cut_clips(tmp_path / "clips", n=3, seconds=8.0, start=0.5)
    corpus = tmp_path / "corpus"
    subprocess.run(EMOGUIDE + ["ingest", "--corpus", str(corpus), *map(str, clips)], check=True,
                   capture_output=True)
    cmd = EMOGUIDE + ["run", "--corpus", str(corpus), "--skip", "generate", "--executor", "pool", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    total = 3 * len(MEDIA)
    try:
        while time.time() < deadline:
            n = len(_done(_records(corpus)))
            if n >= 8:
                break
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before it could be killed")
            time.sleep(0.2)
        else:
            pytest.fail("no progress within 10 minutes")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its pool workers, mid-work
        proc.wait()
    before = _done(_records(corpus))
    assert 8 <= len(before) < total, "killed too late to test anything"
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = _records(corpus)
    done_after = _done(after)
    assert len(done_after) == total, sorted(set((s, m) for s in ("clip0", "clip1", "clip2") for m in MEDIA) - set(done_after))
    # no session that had finished a stage was recomputed
    assert {k: done_after[k] for k in before} == before
    # every output is complete
    for sdir in (corpus / "sessions").iterdir():
        utt = pd.read_parquet(sdir / "utterances.parquet")
        assert len(utt) > 0 and utt["text"].notna().all()
        assert utt["role"].isin(["therapist", "patient", "unknown"]).all()
        for col in ("voice_arousal", "text_valence", "face_valence", "risk_flag", "dissonance"):
            assert col in utt.columns
        assert (sdir / "faces.parquet").exists()
        assert not (sdir / ".scratch").exists() or not any((sdir / ".scratch").iterdir())


def test_ray_equals_serial(tmp_path):
    """Three sessions through the media stages on a local Ray (2 CPUs) and serially.

    Whisper (CTranslate2, int8) is not bit-stable across processes on these cut clips: the same
    audio gave "saying the wrong thing" in one process and "To save the wrong thing" in another.
    So ASR and diarization run on Ray and must succeed, and everything from the utterance table on
    is compared on the same words and speaker segments: equal to serial.
    """
    _need_media()
    pytest.importorskip("ray", reason="the ray extra is not installed")
    import ray

    from emoguide.corpus import Corpus
    from emoguide.pipeline.executors import RayExecutor, SerialExecutor
    from emoguide.pipeline.runner import run_stages
    from emoguide.stages.ingest_media import ingest_media

    def fails(rep):
        return [(x.title, o.item, o.reason) for x in rep.summaries for o in x.failed]

    clips = cut_clips(tmp_path / "clips", n=3, seconds=8.0, start=2.0)
    base = Corpus.open(tmp_path / "base", create=True)
    ids, s = ingest_media(base, clips, settings=base.settings.media)
    assert s.count("failed") == 0
    fresh = tmp_path / "fresh"
    shutil.copytree(base.root, fresh)
    rep = run_stages(base, MEDIA[:2], ids, executor=SerialExecutor())
    assert rep.failed == 0, fails(rep)
    shutil.copytree(base.root, tmp_path / "ray")
    a, b = base, Corpus.open(tmp_path / "ray")
    rest = MEDIA[2:]
    rep = run_stages(a, rest, ids, executor=SerialExecutor())
    assert rep.failed == 0, fails(rep)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ex = RayExecutor(2)
        rep = run_stages(b, rest, ids, executor=ex)
        assert rep.failed == 0, fails(rep)
        asr = run_stages(Corpus.open(fresh), MEDIA[:2], ids, executor=RayExecutor(2))
        assert asr.failed == 0 and all(s.count("done") == 3 for s in asr.summaries), fails(asr)
    finally:
        ray.shutdown()
    recs = _records(b.root)
    assert {r["executor"] for k, r in recs.items() if k[1] in rest} == {"ray"}
    assert all(r["worker_pid"] != os.getpid() for k, r in recs.items() if k[1] in rest)
    for sid in ids:
        assert len(pd.read_parquet(fresh / "sessions" / sid / "words.parquet")) > 0
        x, y = a.session(sid).read_utterances(), b.session(sid).read_utterances()
        frames_equal(x.drop(columns=["session_id"]), y.drop(columns=["session_id"]))
        frames_equal(pd.read_parquet(a.session(sid).faces_path), pd.read_parquet(b.session(sid).faces_path))
