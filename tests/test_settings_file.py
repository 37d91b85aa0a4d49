"""corpus.toml as a user writes it: kept as written, typos reported, wrong values refused first.

Through the CLI (typer's runner: the same error policy as the console script) on a real corpus.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from emoguide.cli import app
from emoguide.config import SettingsError, load_settings, save_settings, unknown_keys
from emoguide.corpus import Corpus
from emoguide.demo import demo_files

runner = CliRunner(env={"COLUMNS": "250"})

USER_TOML = """\
# Our corpus: the paper's settings, K = 4.   <- a comment that must survive
templates_dir = "templates"   # lab templates

[dissonance]
threshold = 0.5  # the paper's T
treshold = 0.3

[lab]   # not emoguide's: our own bookkeeping
owner = "ana"
reviewed = 2026-01-05

[llm.providers.labbox]
base_url = "http://10.0.0.5:8000/v1"  # the GPU box
"""


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, " ".join(res.output.split())


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    root = tmp_path / "c"
    code, out = invoke("ingest", "--corpus", root, demo_files()[0])
    assert code == 0, out
    return Corpus.open(root)


def test_saving_one_option_keeps_comments_unknown_sections_and_reports_typos(corpus, capsys):
    toml = corpus.settings_path
    toml.write_text(USER_TOML)
    code, out = invoke("dissonance", "--corpus", corpus.root, "--threshold", "0.4")
    assert code == 0, out
    text = toml.read_text()
    # only the changed value was rewritten; everything else is the user's, byte for byte
    assert text == USER_TOML.replace("threshold = 0.5  # the paper's T", "threshold = 0.4  # the paper's T")
    assert load_settings(toml).dissonance.threshold == 0.4
    # the typo is reported with the file, the key and the nearest valid key
    warned = " ".join((out + capsys.readouterr().err).split())
    assert f"{toml}: unknown key 'dissonance.treshold' is ignored (did you mean 'dissonance.threshold'?)" in warned
    assert "unknown key 'lab'" in warned


def test_unknown_keys_with_suggestions():
    got = dict(unknown_keys({
        "dissonance": {"treshold": 1, "threshold": 1}, "trancribe": {}, "faces": {"detektor": "mtcnn"},
        "llm": {"providers": {"x": {"base_url": "u", "api_key": "K"}}, "temprature": 0.1},
        "transcribe": {"max_pause_s": 1.0, "num_speaker": 2},
    }))
    assert got["dissonance.treshold"] == "dissonance.threshold"
    assert got["trancribe"] == "transcribe"
    assert got["faces.detektor"] == "faces.detector"  # [faces] is checked against the faces stage's model
    assert got["llm.temprature"] == "llm.temperature"
    assert got["llm.providers.x.api_key"] == "llm.providers.x.api_key_env"
    assert got["transcribe.num_speaker"] == "transcribe.num_speakers"
    assert "transcribe.max_pause_s" not in got and "dissonance.threshold" not in got


def test_invalid_toml_is_one_line_naming_the_file(corpus):
    toml = corpus.settings_path
    toml.write_text("[dissonance]\nthreshold = = 0.4\n")
    for verb in (("dissonance",), ("run", "--skip", "generate"), ("text_affect",)):
        code, out = invoke(*verb, "--corpus", corpus.root)
        assert code == 2, (verb, out)
        assert str(toml) in out and "TOML" in out and "Traceback" not in out, (verb, out)
    with pytest.raises(SettingsError) as err:
        load_settings(toml)
    assert str(toml) in str(err.value) and "line 2" in str(err.value)


@pytest.mark.parametrize("body, key", [
    ('[dissonance]\nthreshold = "high"\n', "dissonance.threshold"),
    ("[llm]\nmax_tokens = 0\n", "llm.max_tokens"),
    ('[roles]\nmethod = "magic"\n', "roles.method"),
    ('[dissonance]\nchannels = ["voice", "smell"]\n', "dissonance.channels"),
    ('[faces]\nfps = "fast"\n', "faces.fps"),
])
def test_a_wrong_value_in_the_file_names_the_key(corpus, body, key):
    toml = corpus.settings_path
    toml.write_text(body)
    with pytest.raises(SettingsError) as err:
        load_settings(toml)
    assert str(err.value).startswith(f"{toml}: {key}: "), str(err.value)
    assert err.value.exit_code == 2
    code, out = invoke("dissonance", "--corpus", corpus.root)
    assert code == 2 and str(toml) in out and key in out and "Traceback" not in out, out


@pytest.mark.parametrize("args, words", [
    (("faces", "--detector", "yolo"), ("yolo",)),
    (("dissonance", "--channels", "voice,smell"), ("smell",)),
    (("transcribe", "--asr-model", "/nonexistent"), ("/nonexistent",)),
    (("roles", "--method", "llm", "-m", "foo:bar"), ("foo",)),
    (("roles", "--method", "magic"), ("magic",)),
    (("roles", "--method", "llm"), ("model",)),  # llm needs a model: refused, not a silent heuristic
    (("utterances", "--max-pause-s", "-1"), ("max_pause_s",)),  # a verb built from the registry
    (("asr", "--asr-model", "/nonexistent"), ("/nonexistent",)),
])
def test_invalid_options_are_refused_before_anything_is_saved(corpus, args, words):
    toml = corpus.settings_path
    toml.write_text(USER_TOML)
    before = toml.read_bytes()
    stages_before = (corpus.sessions_dir / "sample_session" / "stages.json").read_bytes()
    code, out = invoke(args[0], "--corpus", corpus.root, *args[1:])
    assert code == 2, out
    assert "Traceback" not in out and all(w in out for w in words), out
    assert toml.read_bytes() == before  # nothing saved...
    assert (corpus.sessions_dir / "sample_session" / "stages.json").read_bytes() == stages_before  # ...or run
    code, out = invoke("dissonance", "--corpus", corpus.root)  # and the next command still works
    assert code == 0, out


def test_save_settings_validates_assignments_first(tmp_path):
    path = tmp_path / "corpus.toml"
    path.write_text(USER_TOML)
    settings = load_settings(path)
    settings.roles.method = "magic"  # pydantic does not check assignments: save does
    with pytest.raises(SettingsError) as err:
        save_settings(path, settings)
    assert "roles.method" in str(err.value) and str(path) in str(err.value)
    assert path.read_text() == USER_TOML
    settings = load_settings(path)
    settings.roles.method, settings.roles.llm_model = "llm", "labbox:qwen"  # a provider the file defines
    save_settings(path, settings)
    assert load_settings(path).roles.llm_model == "labbox:qwen"
    assert "[lab]" in path.read_text() and "# the GPU box" in path.read_text()


def test_removing_a_value_removes_only_emoguides_key(tmp_path):
    path = tmp_path / "corpus.toml"
    path.write_text(USER_TOML)
    settings = load_settings(path)
    settings.templates_dir = None
    save_settings(path, settings)
    text = path.read_text()
    assert "templates_dir" not in text and "treshold = 0.3" in text and 'owner = "ana"' in text
    assert text.startswith("# Our corpus")


def test_a_new_corpus_toml_lists_every_setting(tmp_path):
    c = Corpus.open(tmp_path / "c", create=True)
    text = c.settings_path.read_text()
    assert "[dissonance]" in text and "threshold = 0.5" in text and 'asr_model = "tiny.en"' in text
    assert load_settings(c.settings_path) == type(load_settings(c.settings_path))()


@pytest.mark.parametrize("args, words", [
    (("--limit", "-1"), ("limit",)),
    (("--max-tokens", "0"), ("max-tokens",)),
    (("--concurrency", "0"), ("concurrency",)),
])
def test_generate_refuses_impossible_numbers(corpus, args, words):
    before = corpus.settings_path.read_bytes()
    code, out = invoke("generate", "--corpus", corpus.root, "-m", "openai:gpt-4o", *args)
    assert code == 2, out
    assert "Traceback" not in out and all(w in out for w in words), out
    assert corpus.settings_path.read_bytes() == before
    assert not corpus.generations_path.exists()
