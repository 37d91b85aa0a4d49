"""Bad and unusual input through the CLI, as a new user would give it (issue 14).

Every case asserts the exit code (2: usage error, nothing done; 1: failed work; 0: done, maybe
with a notice), that the message names the file or option concerned, that no Python traceback is
printed, and that nothing already done was lost: the corpus's files have the same checksums before
and after a command that failed. Transcript-only corpora keep this fast; the few media cases make
a 3 s clip with ffmpeg (skipped, with the reason, where ffmpeg is absent).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from emoguide.cli import app, explain
from emoguide.errors import EmoguideError, SessionNotFound, UsageError

runner = CliRunner(env={"COLUMNS": "200"})  # wide enough that rich does not fold file paths

TRANSCRIPT = (
    "Speaker,Role,Start Time,End Time,Utterance\n"
    "A,therapist,0.0,2.0,How have you been this week?\n"
    "B,patient,2.0,4.0,Not great. I have been feeling low most days.\n"
    "A,therapist,4.0,6.0,What has been the hardest part?\n"
    "B,patient,6.0,8.0,Getting up in the morning and going to work.\n"
    "A,therapist,8.0,10.0,That sounds exhausting.\n"
    "B,patient,10.0,12.0,It is. I am fine though really.\n"
)

ANNOMI_HEADER = (
    "mi_quality,transcript_id,video_title,video_url,topic,utterance_id,interlocutor,timestamp,"
    "utterance_text,annotator_id,therapist_input_exists,therapist_input_subtype,reflection_exists,"
    "reflection_subtype,question_exists,question_subtype,main_therapist_behaviour,client_talk_type\n"
)


class Result:
    """Exit code and output with whitespace normalised (rich wraps long lines)."""

    def __init__(self, res):
        self.exit_code = res.exit_code
        self.raw = res.output
        self.output = " ".join(res.output.split())
        self.exception = res.exception


def invoke(*args, env: dict | None = None, catch: bool = False) -> Result:
    return Result(runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=catch))


def snapshot(root: Path) -> dict[str, str]:
    """Checksum of every file under the corpus (the lock file aside: it is the lock's business)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and "lock" not in p.name:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_user_error(res: Result, code: int, *needles: str) -> None:
    assert res.exit_code == code, res.raw
    for n in needles:
        assert n in res.output, (n, res.raw)
    assert "Traceback" not in res.raw, res.raw
    assert "internal error" not in res.output, res.raw


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A transcript-only corpus with one session `s1`, built once per module."""
    d = tmp_path_factory.mktemp("tpl")
    (d / "s1.csv").write_text(TRANSCRIPT)
    res = invoke("ingest", "--corpus", d / "c", d / "s1.csv")
    assert res.exit_code == 0, res.raw
    return d / "c"


@pytest.fixture
def corpus(template, tmp_path) -> Path:
    dst = tmp_path / "c"
    shutil.copytree(template, dst)
    return dst


def run_unchanged(corpus: Path, *args, code: int = 2, needles=()) -> Result:
    """Run a failing command; assert the error and that no corpus file changed."""
    before = snapshot(corpus)
    res = invoke(*args)
    assert_user_error(res, code, *needles)
    assert snapshot(corpus) == before, "a failed command changed the corpus"
    return res


# ------------------------------------------------------------------ unknown session (every verb)

SESSION_VERBS = [
    ("transcribe", "--session"),
    ("affect", "--session"),
    ("dissonance", "--session"),
    ("prompts", "--session"),
    ("generate", "--session"),
    ("run", "--session"),
    ("export", "--session"),
    ("roles", None),
    ("faces", None),
    ("voice", None),
    ("text_affect", None),
    ("safety", None),
    ("asr", None),
    ("diarize", None),
    ("utterances", None),
    ("face_affect", None),
]


@pytest.mark.parametrize("verb,option", SESSION_VERBS, ids=[v for v, _ in SESSION_VERBS])
def test_unknown_session_is_a_usage_error_in_every_verb(corpus, verb, option):
    args = [verb, "--corpus", corpus] + ([option, "nosuch"] if option else ["nosuch"])
    if verb == "export":
        args += ["--out", corpus.parent / "x.csv"]
    res = run_unchanged(corpus, *args, needles=("no such session 'nosuch'", "s1"))
    assert "KeyError" not in res.output
    if verb == "export":
        assert not (corpus.parent / "x.csv").exists()


def test_unknown_session_suggests_the_close_one(corpus):
    res = run_unchanged(corpus, "prompts", "--corpus", corpus, "--session", "s2", needles=("no such session 's2'",))
    res = run_unchanged(corpus, "dissonance", "--corpus", corpus, "--session", "S1", needles=("did you mean s1",))


def test_frames_unknown_session(corpus):
    run_unchanged(corpus, "frames", "--corpus", corpus, "nosuch", "--at", 1, needles=("SESSION_ID", "no such session 'nosuch'"))


def test_unknown_session_with_a_setting_saves_nothing(corpus):
    run_unchanged(corpus, "dissonance", "--corpus", corpus, "--threshold", 0.4, "--session", "nosuch",
                  needles=("no such session",))
    assert "threshold = 0.4" not in (corpus / "corpus.toml").read_text()


def test_overrides_for_an_unknown_session_write_nothing(corpus):
    run_unchanged(corpus, "roles", "--corpus", corpus, "nosuch", "--set", "A=therapist", needles=("no such session",))
    assert not (corpus / "sessions" / "nosuch").exists()
    run_unchanged(corpus, "faces", "--corpus", corpus, "nosuch", "--set-speaker", "1=A", needles=("no such session",))
    assert not (corpus / "sessions" / "nosuch").exists()


def test_unknown_session_in_an_empty_corpus(tmp_path):
    (tmp_path / "a.csv").write_text(TRANSCRIPT)
    c = tmp_path / "c"
    assert invoke("ingest", "--corpus", c, tmp_path / "nothing.csv").exit_code == 1
    res = invoke("prompts", "--corpus", c, "--session", "x")
    assert_user_error(res, 2, "no such session 'x'", "no sessions yet", "emoguide ingest")


# ------------------------------------------------------------------ models / providers

@pytest.mark.parametrize("args", [
    ["generate", "-m", "foo:bar"],
    ["generate", "-m", "llamacpp:smollm2", "-m", "foo:bar"],
    ["run", "-m", "foo:bar"],
    ["roles", "--method", "llm", "-m", "foo:bar"],
    ["judge", "-m", "foo:bar"],
    ["generate", "-m", "nocolon"],
], ids=["generate", "generate-second", "run", "roles", "judge", "no-colon"])
def test_unknown_model_provider_is_a_usage_error(corpus, args):
    verb, rest = args[0], args[1:]
    res = run_unchanged(corpus, verb, "--corpus", corpus, *rest, needles=("--model",))
    assert "UnknownProviderError" not in res.output
    if "nocolon" not in args:
        assert "unknown LLM provider 'foo'" in res.output


def test_provider_hint_keeps_its_brackets(corpus):
    """rich markup must not swallow [llm.providers.NAME]."""
    res = run_unchanged(corpus, "generate", "--corpus", corpus, "-m", "foo:bar")
    assert "[llm.providers.NAME]" in res.output


# ------------------------------------------------------------------ corpus path

@pytest.mark.parametrize("args", [
    ["ingest", "FILE"], ["status"], ["run"], ["dissonance"], ["export", "--out", "x.csv"], ["prompts"], ["voice"],
], ids=["ingest", "status", "run", "dissonance", "export", "prompts", "stage-verb"])
def test_corpus_path_that_is_a_file(tmp_path, args):
    f = tmp_path / "notafolder"
    f.write_text("hello")
    (tmp_path / "s1.csv").write_text(TRANSCRIPT)
    args = [tmp_path / "s1.csv" if a == "FILE" else a for a in args]
    res = invoke(args[0], "--corpus", f, *args[1:])
    assert_user_error(res, 2, "--corpus", str(f), "is a file, not a folder")
    assert f.read_text() == "hello"


def test_folder_that_is_not_a_corpus(tmp_path):
    res = invoke("dissonance", "--corpus", tmp_path / "none")
    assert_user_error(res, 2, "not an emoguide corpus", "emoguide ingest")


# ------------------------------------------------------------------ corpus.toml

BAD_TOML = [
    ("[dissonance\nthreshold = 0.4\n", "line"),
    ("threshold = = 1\n", "line 1"),
    ("[dissonance]\nthreshold = 0.4\n[dissonance]\nthreshold = 0.5\n", "line"),
    ('title = "unterminated\n', "line 1"),
]


@pytest.mark.parametrize("text,where", BAD_TOML, ids=["bracket", "double-equals", "twice", "string"])
@pytest.mark.parametrize("verb", ["dissonance", "prompts", "run", "text_affect", "export"])
def test_invalid_toml_names_the_file_and_line(corpus, text, where, verb):
    (corpus / "corpus.toml").write_text(text)
    extra = ["--out", corpus.parent / "x.csv"] if verb == "export" else []
    res = run_unchanged(corpus, verb, "--corpus", corpus, *extra, needles=("corpus.toml", where))
    assert "TOMLDecodeError" not in res.output
    assert (corpus / "corpus.toml").read_text() == text


WRONG_TYPES = [
    ('[dissonance]\nthreshold = "high"\n', "threshold", "high"),
    ('[targets]\ncontext_turns = "four"\n', "context_turns", "four"),
    ("[llm]\nmax_tokens = -5\n", "max_tokens", "-5"),
    ('[roles]\nmethod = 3\n', "method", "3"),
]


@pytest.mark.parametrize("text,key,value", WRONG_TYPES, ids=["threshold", "context", "max_tokens", "roles"])
def test_wrong_type_in_corpus_toml_names_the_file_and_key(corpus, text, key, value):
    (corpus / "corpus.toml").write_text(text)
    res = run_unchanged(corpus, "prompts", "--corpus", corpus, needles=("corpus.toml", key, value))
    assert "ValidationError" not in res.output and "pydantic" not in res.output


def test_status_still_lists_sessions_when_corpus_toml_is_invalid(corpus):
    (corpus / "corpus.toml").write_text("[dissonance\n")
    res = invoke("status", "--corpus", corpus)
    assert res.exit_code == 0, res.raw
    assert "corpus.toml" in res.output and "s1" in res.output and "Traceback" not in res.raw


# ------------------------------------------------------------------ prompts / generate options

@pytest.mark.parametrize("args,needles", [
    (["prompts", "--condition", "nosuchcond"], ("--condition", "nosuchcond", "base")),
    (["generate", "--condition", "nosuchcond"], ("--condition", "nosuchcond")),
    (["prompts", "-k", "0"], ("--context-turns", "0")),
    (["prompts", "-k", "-3"], ("--context-turns", "-3")),
    (["generate", "-k", "0"], ("--context-turns",)),
    (["prompts", "--targets", "bogus"], ("--targets", "bogus")),
    (["prompts", "--limit", "-1"], ("--limit",)),
    (["prompts", "--templates", "/nonexistent/templates"], ("--templates", "/nonexistent/templates")),
    (["generate", "--limit", "-1"], ("--limit",)),
    (["generate", "--max-tokens", "0"], ("--max-tokens",)),
    (["generate", "--concurrency", "0"], ("--concurrency",)),
    (["generate", "--temperature", "-1"], ("--temperature",)),
    (["generate", "--timeout", "0"], ("--timeout",)),
    (["generate", "--retries", "-1"], ("--retries",)),
], ids=lambda v: "_".join(v) if isinstance(v, list) else None)
def test_prompt_and_generation_options(corpus, args, needles):
    res = run_unchanged(corpus, args[0], "--corpus", corpus, *args[1:], needles=needles)
    assert "IndexError" not in res.output and "KeyError" not in res.output
    assert not (corpus / "generations.parquet").exists()


def test_prompts_for_a_target_that_does_not_exist_say_so(corpus):
    res = invoke("prompts", "--corpus", corpus, "--target", 999, "--limit", 0)
    assert "Traceback" not in res.raw and "no target has utterance index 999" in res.output


# ------------------------------------------------------------------ export

@pytest.mark.parametrize("args,needles", [
    (["--out", "out.xlsx"], ("--out", "out.xlsx", ".parquet")),
    (["--out", "noext"], ("--out",)),
    (["--generations", "g.xlsx"], ("--generations", "g.xlsx")),
    (["--transcripts", "tr", "--transcript-format", "docx"], ("--transcript-format", "docx", "srt")),
    (["--generations", "g.csv"], ("--generations", "generations.parquet", "emoguide generate")),
    ([], ("--out",)),
], ids=["xlsx", "noext", "gen-xlsx", "docx", "no-generations", "nothing"])
def test_export_options(corpus, tmp_path, args, needles):
    args = [tmp_path / a if a in ("out.xlsx", "noext", "g.xlsx", "g.csv", "tr") else a for a in args]
    run_unchanged(corpus, "export", "--corpus", corpus, *args, needles=needles)
    for name in ("out.xlsx", "noext", "g.xlsx", "g.csv", "tr"):
        assert not (tmp_path / name).exists()


def test_export_into_a_folder_or_onto_a_file(corpus, tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    run_unchanged(corpus, "export", "--corpus", corpus, "--out", d, needles=("--out",))
    f = tmp_path / "afile"
    f.write_text("x")
    run_unchanged(corpus, "export", "--corpus", corpus, "--transcripts", f, needles=("--transcripts", "is a file"))
    assert f.read_text() == "x"


def test_exports_follow_the_umask_corpus_files_stay_private(corpus, tmp_path):
    old = os.umask(0o022)
    try:
        res = invoke("export", "--corpus", corpus, "--out", tmp_path / "flat.csv", "--transcripts", tmp_path / "tr")
        assert res.exit_code == 0, res.raw
        res = invoke("prompts", "--corpus", corpus, "--save", tmp_path / "p.jsonl", "--condition", "base")
        assert res.exit_code == 0, res.raw
    finally:
        os.umask(old)
    assert (tmp_path / "flat.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "p.jsonl").stat().st_mode & 0o777 == 0o644
    (tr,) = (tmp_path / "tr").iterdir()
    assert tr.stat().st_mode & 0o777 == 0o644
    # the corpus's own session table is not readable by others
    assert (corpus / "sessions" / "s1" / "utterances.parquet").stat().st_mode & 0o077 == 0


# ------------------------------------------------------------------ roles

@pytest.mark.parametrize("args,needles", [
    (["s1", "--set", "A=doctor"], ("--set", "doctor", "therapist, patient or unknown")),
    (["s1", "--set", "A"], ("--set", "SPEAKER=ROLE")),
    (["s1", "--set", "=therapist"], ("--set",)),
    (["s1", "--set", "Z=therapist"], ("--set", "no speaker 'Z'", "A, B")),
    (["--set", "A=therapist"], ("--set", "name the session")),
    (["--method", "magic"], ("--method", "magic", "heuristic or llm")),
    (["-m", "openai:gpt-4o"], ("--model", "--method llm")),
], ids=["doctor", "no-equals", "no-speaker", "unknown-speaker", "no-session", "magic", "model-without-llm"])
def test_roles_options(corpus, args, needles):
    res = run_unchanged(corpus, "roles", "--corpus", corpus, *args, needles=needles)
    assert "--role " not in res.output.replace("--role A", "")  # it names --set, not ingest's --role


def test_roles_set_works_after_all_that(corpus):
    res = invoke("roles", "--corpus", corpus, "s1", "--set", "A=patient", "--set", "B=therapist")
    assert res.exit_code == 0, res.raw
    df = pd.read_parquet(corpus / "sessions" / "s1" / "utterances.parquet")
    assert set(df.loc[df["speaker"] == "A", "role"]) == {"patient"}


# ------------------------------------------------------------------ dissonance / faces / transcribe / affect

@pytest.mark.parametrize("args,needles", [
    (["dissonance", "--channels", "voice,smell"], ("--channels", "smell")),
    (["dissonance", "--channels", "voice"], ("--channels",)),
    (["dissonance", "--method", "magic"], ("--method", "magic")),
    (["dissonance", "--threshold", "-1"], ("--threshold", "-1")),
    (["dissonance", "--percentile", "150"], ("--percentile", "150")),
    (["dissonance", "--scope", "planet"], ("--scope", "planet")),
    (["faces", "--detector", "yolo"], ("--detector", "yolo", "blazeface")),
    (["faces", "--emotion", "magic"], ("--emotion", "magic", "fer")),
    (["faces", "--emotion-model", "/nonexistent.onnx"], ("--emotion-model", "/nonexistent.onnx")),
    (["run", "--skip", "nosuchstage"], ("nosuchstage",)),
    (["run", "--executor", "threads"], ("--executor",)),
    (["dissonance", "--threshold", "0.4", "--method", "magic"], ("--method", "magic")),
    (["faces", "s1", "--set-speaker", "x=A"], ("--set-speaker", "TRACK=SPEAKER")),
    (["faces", "--set-speaker", "1=A"], ("--set-speaker", "name the session")),
    (["faces", "--fps", "-1"], ("fps",)),
    (["transcribe", "--asr-model", "/nonexistent"], ("--asr-model", "/nonexistent")),
    (["transcribe", "--num-speakers", "0"], ("--num-speakers",)),
    (["transcribe", "--max-pause", "0"], ("--max-pause",)),
    (["affect", "--voice", "magic"], ("--voice", "magic", "prosody")),
    (["affect", "--voice-model", "/nonexistent"], ("--voice-model", "/nonexistent")),
    (["affect", "--from-csv", "/nonexistent.csv"], ("--from-csv", "/nonexistent.csv")),
    (["affect", "--scale", "0-100"], ("--scale", "0-100")),
    (["text_affect", "--executor", "threads"], ("--executor", "serial, pool or ray")),
], ids=lambda v: "_".join(v) if isinstance(v, list) else None)
def test_invalid_options_are_refused_before_anything_is_saved(corpus, args, needles):
    """Validate first, save after: corpus.toml and every artifact stay as they were."""
    run_unchanged(corpus, args[0], "--corpus", corpus, *args[1:], needles=needles)


def test_a_valid_option_is_still_saved(corpus):
    res = invoke("dissonance", "--corpus", corpus, "--threshold", 0.4)
    assert res.exit_code == 0, res.raw
    assert "threshold = 0.4" in (corpus / "corpus.toml").read_text()


# ------------------------------------------------------------------ transcript-only sessions

def test_frames_on_a_transcript_only_session(corpus):
    run_unchanged(corpus, "frames", "--corpus", corpus, "s1", "--at", 1,
                  needles=("no video in this session (it came from a transcript)",))


def test_voice_on_a_transcript_only_session_says_why(corpus):
    res = invoke("voice", "--corpus", corpus)
    assert res.exit_code == 0, res.raw
    assert "no audio in this session (it came from a transcript)" in res.output
    assert "run ingest first" not in res.output
    rec = json.loads((corpus / "sessions" / "s1" / "stages.json").read_text())["voice"]
    assert rec["not_applicable"] == "no audio in this session (it came from a transcript)"


# ------------------------------------------------------------------ ingest inputs

def test_missing_file_and_folder(tmp_path):
    (tmp_path / "s1.csv").write_text(TRANSCRIPT)
    res = invoke("ingest", "--corpus", tmp_path / "c", tmp_path / "nosuch.csv", tmp_path / "nodir", tmp_path / "s1.csv")
    assert_user_error(res, 1, "nosuch.csv: no such file or folder", "nodir: no such file or folder")
    assert "unknown transcript format" not in res.output
    assert (tmp_path / "c" / "sessions" / "s1" / "utterances.parquet").exists()  # the good one imported


@pytest.mark.parametrize("name", ["photo.jpg", "notes.docx", "data.xlsx", "README"])
def test_not_a_media_or_transcript_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"\xff\xd8\xff\xe0 not text")
    res = invoke("ingest", "--corpus", tmp_path / "c", tmp_path / name)
    assert_user_error(res, 1, name, "not a media or transcript file", "--format")
    assert "unknown transcript format" not in res.output


def test_empty_folder_is_a_failed_input_with_a_notice(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".s1.csv").write_text(TRANSCRIPT)
    res = invoke("ingest", "--corpus", tmp_path / "c", tmp_path / "empty", tmp_path / "hidden")
    assert_user_error(res, 1, "empty: folder holds no media or transcript files", "hidden: folder holds no")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["x.mp4", "x.csv"])
def test_fifo_is_refused_and_never_read(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    res = invoke("ingest", "--corpus", tmp_path / "c", fifo)
    assert_user_error(res, 1, name, "FIFO")


@pytest.mark.timeout(60)
def test_fifo_inside_a_folder_is_left_out(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    os.mkfifo(d / "pipe.mp4")
    (d / "s1.csv").write_text(TRANSCRIPT)
    res = invoke("ingest", "--corpus", tmp_path / "c", d)
    assert res.exit_code == 0, res.raw
    assert (tmp_path / "c" / "sessions" / "s1" / "utterances.parquet").exists()


def test_same_file_twice_is_imported_once_with_a_notice(tmp_path, monkeypatch):
    f = tmp_path / "s1.csv"
    f.write_text(TRANSCRIPT)
    monkeypatch.chdir(tmp_path)
    res = invoke("ingest", "--corpus", tmp_path / "c", f, "s1.csv", f"./{f.name}", tmp_path)
    assert res.exit_code == 0, res.raw
    assert "given twice" in res.output and "imported once" in res.output
    assert "rename one" not in res.output
    assert [p.name for p in (tmp_path / "c" / "sessions").iterdir()] == ["s1"]


def test_two_files_with_one_id_still_fail_with_a_reason(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "s1.csv").write_text(TRANSCRIPT)
    (tmp_path / "b" / "s1.csv").write_text(TRANSCRIPT.replace("hardest", "worst"))
    res = invoke("ingest", "--corpus", tmp_path / "c", tmp_path / "a" / "s1.csv", tmp_path / "b" / "s1.csv")
    assert_user_error(res, 1, "also comes from", "rename one")


def test_existing_session_from_another_file_says_force(corpus, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "s1.csv").write_text(TRANSCRIPT.replace("hardest", "worst"))
    res = run_unchanged(corpus, "ingest", "--corpus", corpus, other / "s1.csv", code=1,
                        needles=("already exists", "--force"))
    assert "force=True" not in res.output


@pytest.mark.parametrize("args,needles", [
    (["--format", "docx"], ("--format", "docx", "table")),
    (["--role", "A=doctor"], ("--role", "doctor")),
    (["--role", "A"], ("--role", "SPEAKER=ROLE")),
], ids=["format", "role-value", "role-form"])
def test_ingest_options(corpus, tmp_path, args, needles):
    (tmp_path / "s2.csv").write_text(TRANSCRIPT)
    run_unchanged(corpus, "ingest", "--corpus", corpus, tmp_path / "s2.csv", *args, needles=needles)


def test_format_option_reads_an_unknown_extension(tmp_path):
    (tmp_path / "s1.transcript").write_text(TRANSCRIPT)
    res = invoke("ingest", "--corpus", tmp_path / "c", tmp_path / "s1.transcript", "--format", "table")
    assert res.exit_code == 0, res.raw


# ------------------------------------------------------------------ session ids

def test_unicode_names_keep_their_letters_and_never_collide(tmp_path):
    names = ["日本語.csv", "中文.csv", "séance_日本語_😀.csv", "😀.csv", "😁.csv", "Ｆｕｌｌ.csv"]
    for n in names:
        (tmp_path / n).write_text(TRANSCRIPT)
    res = invoke("ingest", "--corpus", tmp_path / "c", *[tmp_path / n for n in names])
    assert res.exit_code == 0, res.raw
    ids = sorted(p.name for p in (tmp_path / "c" / "sessions").iterdir())
    assert len(ids) == len(names) == len(set(ids))
    assert {"日本語", "中文", "séance_日本語", "Full"} <= set(ids)  # NFKC: full-width letters -> ASCII
    assert sum(i.startswith("session-") for i in ids) == 2
    # stable: the same names give the same ids on a rerun
    res = invoke("ingest", "--corpus", tmp_path / "c", *[tmp_path / n for n in names])
    assert res.exit_code == 0 and sorted(p.name for p in (tmp_path / "c" / "sessions").iterdir()) == ids


# ------------------------------------------------------------------ warnings where they happen

def test_ingest_prints_its_warnings_compactly(tmp_path):
    bad = tmp_path / "messy.csv"
    bad.write_text(
        "Speaker,Role,Start Time,End Time,Utterance\n"
        "A,therapist,4.0,6.0,Later line first?\n"
        "B,patient,0.0,2.0,Earlier line.\n"
        "A,therapist,6.0,8.0,\n"
        "B,patient,8.0,10.0,Last one.\n"
    )
    res = invoke("ingest", "--corpus", tmp_path / "c", bad)
    assert res.exit_code == 0, res.raw
    lines = [ln for ln in res.raw.splitlines() if ln.startswith("warning: messy")]
    assert any("not in time order" in ln for ln in lines), res.raw
    assert any("empty text dropped" in ln and "line 4" in ln for ln in lines), res.raw
    # a rerun that changes nothing repeats nothing
    res = invoke("ingest", "--corpus", tmp_path / "c", bad)
    assert res.exit_code == 0 and "warning: messy" not in res.raw


def _annomi_row(tid: int, uid: int, who: str, text: str) -> str:
    return (f'high,{tid},"Video {tid}",https://example.org/v{tid},smoking,{uid},{who},00:00:{10 + uid:02d},'
            f'"{text}",1,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a\n')


def test_annomi_warning_is_attached_to_its_own_session_only(tmp_path):
    rows = [_annomi_row(0, 0, "therapist", "How are you?"), _annomi_row(0, 1, "client", "Fine.")]
    rows += [_annomi_row(1, 0, "therapist", "Hello."), _annomi_row(1, 1, "narrator", "Meanwhile."),
             _annomi_row(1, 2, "client", "Hi.")]
    f = tmp_path / "AnnoMI-mini.csv"
    f.write_text(ANNOMI_HEADER + "".join(rows))
    res = invoke("ingest", "--corpus", tmp_path / "c", f)
    assert res.exit_code == 0, res.raw

    def warnings(sid):
        rec = json.loads((tmp_path / "c" / "sessions" / sid / "stages.json").read_text())["ingest_transcript"]
        return rec["warnings"]

    assert any("narrator" in w for w in warnings("annomi-001"))
    assert not any("interlocutor" in w for w in warnings("annomi-000"))
    assert "warning: annomi-001" in res.output and "warning: annomi-000: unknown interlocutor" not in res.output


# ------------------------------------------------------------------ the policy itself

def test_debug_option_and_environment_show_the_traceback(corpus):
    res = invoke("--debug", "prompts", "--corpus", corpus, "--session", "nosuch", catch=True)
    assert isinstance(res.exception, KeyError)  # raised, not turned into a message
    res = invoke("prompts", "--corpus", corpus, "--session", "nosuch", env={"EMOGUIDE_DEBUG": "1"}, catch=True)
    assert isinstance(res.exception, KeyError)
    res = invoke("prompts", "--corpus", corpus, "--session", "nosuch", env={"EMOGUIDE_DEBUG": "0"})
    assert_user_error(res, 2, "no such session")


def test_unknown_verb_and_option_are_usage_errors(corpus):
    assert_user_error(invoke("nosuchverb"), 2, "nosuchverb")
    assert_user_error(invoke("prompts", "--corpus", corpus, "--nosuch"), 2, "--nosuch")
    assert_user_error(invoke("prompts", "--corpus", corpus, "-k", "many"), 2, "--context-turns", "valid integer")


def test_explain_maps_each_kind_to_a_code_and_lines(tmp_path):
    import tomllib

    from pydantic import BaseModel

    assert explain(UsageError("bad", option="--x")) == (2, ["--x: bad"])
    assert explain(EmoguideError("failed", hint="do this")) == (1, ["failed", "do this"])
    code, lines = explain(KeyError(f"{tmp_path}: no such session(s): a, b"), tmp_path)
    assert code == 2 and "'a', 'b'" in lines[0]
    try:
        tomllib.loads("x = = 1")
    except tomllib.TOMLDecodeError as exc:
        code, lines = explain(exc, tmp_path)
    assert code == 2 and str(tmp_path / "corpus.toml") in lines[0] and "line 1" in lines[0]

    class M(BaseModel):
        n: int

    try:
        M.model_validate({"n": "x"})
    except Exception as exc:  # noqa: BLE001
        code, lines = explain(exc, tmp_path)
    assert code == 2 and "corpus.toml" in lines[0] and "n:" in lines[0] and "'x'" in lines[0]
    code, lines = explain(FileNotFoundError(2, "No such file or directory", "/x/y"))
    assert code == 1 and lines == ["/x/y: no such file or folder"]
    code, lines = explain(RuntimeError("boom"))
    assert code == 1 and "internal error: RuntimeError: boom" in lines[0] and "--debug" in lines[1]


def test_session_not_found_is_a_key_error_with_a_plain_message():
    err = SessionNotFound(["x"], corpus="c", available=["x1", "y"])
    assert isinstance(err, KeyError) and isinstance(err, UsageError) and err.exit_code == 2
    assert str(err) == "no such session 'x' in corpus c" and "x1" in err.hint


# ------------------------------------------------------------------ media cases (a 3 s clip)

@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (scripts/setup.sh installs it)")
    pytest.importorskip("av")
    d = tmp_path_factory.mktemp("clip")
    path = d / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-f", "lavfi",
         "-i", "sine=frequency=440:sample_rate=16000", "-t", "3", "-c:v", "mpeg4", "-c:a", "aac", str(path)],
        check=True, timeout=60,
    )
    return path


@pytest.fixture(scope="module")
def media_template(clip, tmp_path_factory) -> Path:
    c = tmp_path_factory.mktemp("mtpl") / "c"
    res = invoke("ingest", "--corpus", c, clip)
    assert res.exit_code == 0, res.raw
    return c


@pytest.fixture
def media_corpus(media_template, tmp_path) -> Path:
    dst = tmp_path / "c"
    shutil.copytree(media_template, dst)
    return dst


@pytest.mark.parametrize("at,needles", [
    ("999", ("--at", "999 s is outside the video", "0 to 3")),
    ("-5", ("--at", "-5 s is outside the video")),
    ("3.5", ("--at", "3.5 s")),
], ids=["past-end", "negative", "just-past"])
def test_frames_time_outside_the_video(media_corpus, tmp_path, at, needles):
    run_unchanged(media_corpus, "frames", "--corpus", media_corpus, "clip", "--at", at, "--out", tmp_path / "fr",
                  needles=needles)
    assert not (tmp_path / "fr").exists()


def test_frames_unknown_image_format(media_corpus, tmp_path):
    run_unchanged(media_corpus, "frames", "--corpus", media_corpus, "clip", "--at", 1, "--format", "gif",
                  "--out", tmp_path / "fr", needles=("--format", "gif", "png or jpg"))


def test_frames_when_the_video_is_gone(media_corpus, tmp_path, clip):
    moved = tmp_path / "moved.mp4"
    src = json.loads((media_corpus / "sessions" / "clip" / "source.json").read_text())
    src["path"] = str(tmp_path / "gone.mp4")
    (media_corpus / "sessions" / "clip" / "source.json").write_text(json.dumps(src))
    run_unchanged(media_corpus, "frames", "--corpus", media_corpus, "clip", "--at", 1, needles=("gone.mp4", "moved or deleted"))
    assert not moved.exists()


def test_same_clip_twice_in_one_command(media_corpus, clip, monkeypatch):
    monkeypatch.chdir(clip.parent)
    before = snapshot(media_corpus)
    res = invoke("ingest", "--corpus", media_corpus, clip, "clip.mp4", "./clip.mp4")
    assert res.exit_code == 0, res.raw
    assert "given twice" in res.output and "rename one" not in res.output
    assert snapshot(media_corpus) == before  # unchanged: nothing redone


def test_truncated_media_warns_where_it_happens(clip, tmp_path):
    cut = tmp_path / "cut.mp4"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    res = invoke("ingest", "--corpus", tmp_path / "c", cut)
    assert "Traceback" not in res.raw
    if res.exit_code == 0:
        assert "warning: cut:" in res.output, res.raw
    else:  # too damaged to decode at all: a failed input naming the file
        assert_user_error(res, 1, "cut.mp4")


# ------------------------------------------------------------------ what a user hits next

def test_ingest_into_a_corpus_with_invalid_settings_changes_nothing(corpus, tmp_path):
    (corpus / "corpus.toml").write_text("[media\n")
    (tmp_path / "s2.csv").write_text(TRANSCRIPT)
    run_unchanged(corpus, "ingest", "--corpus", corpus, tmp_path / "s2.csv", needles=("corpus.toml", "line 1"))
    assert not (corpus / "sessions" / "s2").exists()


def test_export_where_nothing_can_be_written(corpus):
    res = run_unchanged(corpus, "export", "--corpus", corpus, "--out", "/proc/emoguide-nosuch/x.csv", code=1,
                        needles=("/proc/emoguide-nosuch",))
    assert "OSError" not in res.output and "Errno" not in res.output


def test_unicode_session_ids_work_as_options(tmp_path):
    (tmp_path / "日本語.csv").write_text(TRANSCRIPT)
    c = tmp_path / "c"
    assert invoke("ingest", "--corpus", c, tmp_path / "日本語.csv").exit_code == 0
    res = invoke("export", "--corpus", c, "--session", "日本語", "--out", tmp_path / "x.jsonl")
    assert res.exit_code == 0, res.raw
    assert json.loads((tmp_path / "x.jsonl").read_text().splitlines()[0])["session_id"] == "日本語"
    assert_user_error(invoke("export", "--corpus", c, "--session", "中文", "--out", tmp_path / "y.jsonl"), 2,
                      "no such session '中文'", "日本語")


def test_affect_from_a_malformed_csv_names_the_file(corpus, tmp_path):
    bad = tmp_path / "values.csv"
    bad.write_text("no,such,columns\n1,2,3\n")
    res = invoke("affect", "--corpus", corpus, "--from-csv", bad)
    assert res.exit_code in (1, 2), res.raw
    assert "values.csv" in res.output and "Traceback" not in res.raw


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "EMOGUIDE_DEBUG"])
def test_the_real_entry_point_follows_the_policy(corpus, debug):
    import sys

    env = {**os.environ, "COLUMNS": "200", "EMOGUIDE_DEBUG": "1" if debug else "0"}
    proc = subprocess.run([sys.executable, "-m", "emoguide", "prompts", "--corpus", str(corpus), "--session", "nosuch"],
                          capture_output=True, text=True, env=env, timeout=120)
    if debug:
        assert proc.returncode == 1 and "Traceback" in proc.stderr and "nosuch" in proc.stderr
    else:
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and "no such session 'nosuch'" in proc.stderr
        assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) <= 2
