"""The corpus lock: one writer at a time, real processes (docs/corpus.md, "One writer at a time")."""

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

from emoguide.corpus import Corpus
from emoguide.corpus.lock import LOCK_NAME, CorpusLock, CorpusLocked, read_holder
from emoguide.demo import demo_files

# The stages that do work on a transcript-only session; the others would only say "not applicable".
SKIP = ["--skip", "transcribe", "--skip", "faces", "--skip", "face_affect", "--skip", "voice", "--skip", "generate"]
ENV = {**os.environ, "COLUMNS": "200", "EMOGUIDE_LOCK_WAIT": "0"}


def _emoguide(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emoguide", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env or ENV)


def _ingested(tmp_path: Path) -> Path:
    root = tmp_path / "base"
    p = _emoguide("ingest", "--corpus", str(root), str(demo_files()[0]))
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    return root


def _artifacts(root: Path) -> dict:
    """What a run leaves, without what differs between two identical runs (times, run ids, pids;
    fingerprints hash upstream run ids)."""
    sdir = root / "sessions" / "sample_session"
    recs = json.loads((sdir / "stages.json").read_text())
    keep = {name: {k: rec.get(k) for k in ("status", "settings_hash", "inputs", "outputs", "shapes", "warnings", "not_applicable")}
            for name, rec in recs.items()}
    return {"utterances": pd.read_parquet(sdir / "utterances.parquet"), "records": keep}


def _same(a: dict, b: dict) -> None:
    pd.testing.assert_frame_equal(a["utterances"], b["utterances"])
    assert a["records"] == b["records"]


def test_two_runs_at_once_one_writer_same_result_as_one_run(tmp_path):
    base = _ingested(tmp_path)
    single = tmp_path / "single"
    shutil.copytree(base, single)
    p = _emoguide("run", "--corpus", str(single), *SKIP)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    reference = _artifacts(single)
    assert reference["utterances"]["text_valence"].notna().any()  # the run did real work

    refused = 0
    for rep in range(5):
        root = tmp_path / f"rep{rep}"
        shutil.copytree(base, root)
        env = ENV if rep < 4 else {**ENV, "EMOGUIDE_LOCK_WAIT": "300"}  # the last one waits
        a = _emoguide("run", "--corpus", str(root), *SKIP, env=env)
        b = _emoguide("run", "--corpus", str(root), *SKIP, env=env)
        out_a, _ = a.communicate(timeout=300)
        out_b, _ = b.communicate(timeout=300)
        for me, other, out in ((a, b, out_a), (b, a, out_b)):
            assert "Traceback" not in out, out
            if me.returncode == 1:  # refused at once, naming the writer
                assert rep < 4
                assert "in use by" in " ".join(out.split()) and f"pid {other.pid}" in out, out
                assert other.returncode == 0, out
                refused += 1
            else:
                assert me.returncode == 0, out
        if rep == 4:
            assert a.returncode == b.returncode == 0
        _same(_artifacts(root), reference)
        assert not (root / "sessions" / "sample_session" / ".scratch").exists()
    # Started together, the two overlap in (almost) every repetition: at least one refusal seen.
    assert refused >= 1


def test_a_held_lock_refuses_then_waits(tmp_path):
    root = _ingested(tmp_path)
    with CorpusLock(root, command="test holder"):
        assert read_holder(root / LOCK_NAME)["pid"] == os.getpid()
        p = _emoguide("roles", "--corpus", str(root))
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 1, out
        assert f"pid {os.getpid()}" in out and "test holder" in out and "Traceback" not in out
        # saving an option is a write too: refused, corpus.toml untouched
        before = (root / "corpus.toml").read_bytes()
        p = _emoguide("text_affect", "--corpus", str(root), "--no-lemmatise")
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 1 and f"pid {os.getpid()}" in out, out
    assert (root / "corpus.toml").read_bytes() == before

    # --wait: the second writer says whom it waits for and goes on once the lock is free
    holder = CorpusLock(root, command="test holder")
    holder.acquire()
    p = _emoguide("roles", "--corpus", str(root), env={**ENV, "EMOGUIDE_LOCK_WAIT": "120"})
    first = p.stdout.readline()  # blocks until the verb reaches the lock and says so
    assert first.startswith("waiting: the corpus") and f"in use by pid {os.getpid()}" in first, first
    time.sleep(1)
    assert p.poll() is None  # still waiting
    holder.release()
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, first + out
    assert "roles: 0 done, 1 skipped" in out


def test_a_killed_holder_leaves_no_lock(tmp_path):
    root = tmp_path / "c"
    Corpus.open(root, create=True)
    code = ("import sys, time; from emoguide.corpus.lock import CorpusLock; "
            "CorpusLock(sys.argv[1], command='doomed').acquire(); print('held', flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    with pytest.raises(CorpusLocked) as err:
        CorpusLock(root, wait=0).acquire()
    assert f"pid {p.pid}" in str(err.value) and "doomed" in str(err.value)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert read_holder(root / LOCK_NAME)["pid"] == p.pid  # its note is still there...
    with CorpusLock(root, command="next", wait=0):  # ...but the kernel released its lock
        info = read_holder(root / LOCK_NAME)
        assert info["pid"] == os.getpid() and info["command"] == "next"
    assert read_holder(root / LOCK_NAME) == {}  # released: no stale note


def test_lock_is_reentrant_in_one_process(tmp_path):
    root = tmp_path / "c"
    c = Corpus.open(root, create=True)
    with c.lock():
        with c.lock():
            settings = c.settings
            settings.dissonance.threshold = 0.4
            c.save_settings(settings)  # takes the lock again inside: no deadlock
        assert read_holder(root / LOCK_NAME)["pid"] == os.getpid()
    assert read_holder(root / LOCK_NAME) == {}
    assert Corpus.open(root).settings.dissonance.threshold == 0.4
