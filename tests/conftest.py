"""CI strictness: with EMOGUIDE_STRICT_SKIPS=1 (set by .ci/run, where ../shared/data and every
extra are present) a skipped test fails, so a broken install can never pass as "skipped"."""

import os

import pytest

STRICT = os.environ.get("EMOGUIDE_STRICT_SKIPS") == "1"


def _strict(report) -> None:
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under EMOGUIDE_STRICT_SKIPS=1 (CI has every extra and ../shared): {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _strict(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _strict(outcome.get_result())


@pytest.fixture(scope="module")
def llama_server():
    """A real `llama_cpp.server` on loopback serving the packaged SmolLM2 (tests/llm_server.py);
    skips with the reason when llama-cpp-python[server] or the model is not installed."""
    from llm_server import LlamaServer, server_available

    reason = server_available()
    if reason:
        pytest.skip(reason)
    with LlamaServer() as server:
        yield server
