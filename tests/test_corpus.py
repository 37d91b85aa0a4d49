import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from emoguide.corpus import Corpus, schema
from emoguide.corpus.atomic import read_parquet, write_json, write_parquet

from helpers import dialogue


def test_open_requires_corpus_unless_create(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an emoguide corpus"):
        Corpus.open(tmp_path / "nope")
    c = Corpus.open(tmp_path / "c", create=True)
    assert c.settings_path.exists()
    assert c.settings.dissonance.threshold == 0.5
    s = c.settings
    s.dissonance.threshold = 0.7
    c.save_settings(s)
    assert Corpus.open(tmp_path / "c").settings.dissonance.threshold == 0.7


def test_schema_round_trip_keeps_nulls_and_extra_columns(tmp_path):
    c = Corpus.open(tmp_path / "c", create=True)
    df = dialogue(2)
    df["annomi_label"] = ["a", "b", "c", "d"]
    df.loc[1, "voice_valence"] = 0.25
    c.session("s1").write_utterances(df)
    back = c.session("s1").read_utterances()
    assert list(back.columns[: len(schema.UTTERANCE_COLUMNS)]) == list(schema.UTTERANCE_COLUMNS)
    assert back["annomi_label"].tolist() == ["a", "b", "c", "d"]
    assert back.loc[1, "voice_valence"] == 0.25
    assert back["voice_valence"].isna().sum() == 3  # null, never 0
    assert back["face_arousal"].isna().all()
    assert c.session_ids() == ["s1"]


def test_fill_missing_ends():
    df = dialogue(2)
    df["end"] = [None, 9.0, None, None]
    out = schema.fill_missing_ends(df)
    assert out["end"].tolist() == [5.0, 9.0, 15.0, 15.0]


def test_atomic_write_killed_midway_keeps_old_artifact(tmp_path):
    """A writer killed while writing leaves the previous file intact and no half-written file."""
    target = tmp_path / "utterances.parquet"
    write_parquet(target, pd.DataFrame({"x": [1, 2, 3]}))
    script = textwrap.dedent(
        f"""
        import os, time, pandas as pd
        from emoguide.corpus import atomic
        real = pd.DataFrame.to_parquet
        def slow(self, path, **kw):
            with open(path, "wb") as fh:
                fh.write(b"PAR1 half written")
                fh.flush()
                print("writing", flush=True)
                time.sleep(30)
        pd.DataFrame.to_parquet = slow
        atomic.write_parquet({str(target)!r}, pd.DataFrame({{"x": [9]}}))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert pd.read_parquet(target)["x"].tolist() == [1, 2, 3]
    # the orphaned temp file is hidden and never mistaken for the artifact
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["utterances.parquet"]


def test_read_parquet_while_the_parent_replaces_the_file(tmp_path):
    """A worker reads utterances.parquet while the parent commits another stage's column group
    onto it (seen in a pool run: face_affect failed with "Page was smaller than expected").
    read_parquet must see the old file or the new one, never pages of one under the other's footer."""
    import threading

    import numpy as np

    target = tmp_path / "utterances.parquet"

    def frame(i):
        rng = np.random.default_rng(i)
        n = 1500 + (i % 5) * 400
        return pd.DataFrame({"a": rng.random(n), "t": rng.integers(0, 10**6, n).astype(str)})

    write_parquet(target, frame(0))
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            write_parquet(target, frame(i))

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    errors, sizes = [], set()
    try:
        for _ in range(400):
            try:
                sizes.add(len(read_parquet(target)))
            except Exception as e:  # noqa: BLE001 - counted, then asserted
                errors.append(repr(e))
    finally:
        stop.set()
        t.join()
    assert not errors, errors[:3]
    assert len(sizes) > 1  # the writer really replaced the file under the reader


def test_stage_resume_fingerprints(tmp_path):
    c = Corpus.open(tmp_path / "c", create=True)
    s = c.session("s1")
    s.write_utterances(dialogue(1))
    src = tmp_path / "in.txt"
    src.write_text("one")

    def ingest(force=False):
        run = s.stage("ingest", settings={"a": 1}, inputs=[src])
        if run.current and not force:
            return "skipped"
        with run:
            run.warn("hello")
        return "done"

    def downstream(settings):
        run = s.stage("dissonance", settings=settings, upstream=["ingest"])
        if run.current:
            return "skipped"
        with run:
            pass
        return "done"

    assert ingest() == "done"
    assert ingest() == "skipped"
    assert downstream({"T": 0.5}) == "done"
    assert downstream({"T": 0.5}) == "skipped"
    assert downstream({"T": 0.6}) == "done"  # settings changed
    src.write_text("two")
    assert ingest() == "done"  # input content changed
    assert downstream({"T": 0.6}) == "done"  # upstream changed
    assert ingest(force=True) == "done"
    assert downstream({"T": 0.6}) == "done"  # a forced upstream rerun makes downstream stale
    rec = s.stages.get("ingest")
    assert rec["warnings"] == ["hello"] and rec["status"] == "done"
    assert {"python", "pandas", "emoguide"} <= set(rec["versions"])
    assert rec["seconds"] >= 0 and "settings_hash" in rec


def test_failed_stage_is_recorded_and_not_current(tmp_path):
    c = Corpus.open(tmp_path / "c", create=True)
    s = c.session("s1")
    s.write_utterances(dialogue(1))
    run = s.stage("dissonance", settings={})
    with pytest.raises(RuntimeError):
        with run:
            raise RuntimeError("boom")
    rec = s.stages.get("dissonance")
    assert rec["status"] == "failed" and "boom" in rec["error"]
    assert not s.stage("dissonance", settings={}).current


def test_missing_output_makes_stage_stale(tmp_path):
    c = Corpus.open(tmp_path / "c", create=True)
    s = c.session("s1")
    s.write_utterances(dialogue(1))
    with s.stage("x", settings={}, outputs=[s.faces_path]):
        pass
    assert not s.stage("x", settings={}, outputs=[s.faces_path]).current
    write_json(s.faces_path, {})
    assert s.stage("x", settings={}, outputs=[s.faces_path]).current
