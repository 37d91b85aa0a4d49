"""Dummy stages for the engine tests (a module, so spawned pool workers can import them)."""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import BaseModel, Field

from emoguide.pipeline.stage import NotApplicable, Resources, Result, SessionView, Stage


class CountSettings(BaseModel):
    factor: float = Field(1.0, description="multiplies the word count")
    fail_on: list[str] = Field(default_factory=list, description="session ids whose run raises TypeError")
    crash_on: list[str] = Field(default_factory=list, description="session ids whose worker process dies")
    skip_on: list[str] = Field(default_factory=list, description="session ids with nothing to do")
    undeclared: bool = Field(False, description="also return a column it does not declare")


class WordCount(Stage[CountSettings]):
    """Words per utterance (a stand-in for text_affect)."""

    name = "wordcount"
    Settings = CountSettings
    reads = ("utterances",)
    writes = ("utterances:wordcount",)
    columns: ClassVar = {"utterances:wordcount": ("n_words",)}
    resources = Resources(cpus=1)

    def settings_for_hash(self):
        # the test controls decide nothing about a successful output
        return self.settings.model_dump(mode="json", include={"factor"})

    def setup(self) -> None:
        self.loaded_in = os.getpid()

    def run(self, session: SessionView) -> Result:
        s = self.settings
        if session.id in s.fail_on:
            raise TypeError(f"boom in {session.id}")
        if session.id in s.crash_on:
            os._exit(3)
        if session.id in s.skip_on:
            raise NotApplicable("nothing to count")
        df = session.utterances()
        out = df[["index"]].copy()
        out["n_words"] = df["text"].fillna("").str.split().str.len() * s.factor
        if s.undeclared:
            out["role"] = "patient"
        res = Result(tables={"utterances:wordcount": out})
        res.extra["setup_pid"] = self.loaded_in
        return res


class SumSettings(BaseModel):
    pass


class WordSum(Stage[SumSettings]):
    """Reads WordCount's column: its downstream."""

    name = "wordsum"
    Settings = SumSettings
    reads = ("utterances", "utterances:wordcount")
    writes = ("utterances:wordsum",)
    columns: ClassVar = {"utterances:wordsum": ("cum_words",)}

    def run(self, session: SessionView) -> Result:
        df = session.utterances()
        if "n_words" not in df.columns or df["n_words"].isna().all():
            raise NotApplicable("no word counts")
        out = df[["index"]].copy()
        out["cum_words"] = df["n_words"].cumsum()
        return Result(tables={"utterances:wordsum": out})


class Slow(Stage[SumSettings]):
    """Sleeps, so a test can interrupt a run midway."""

    name = "slow"
    Settings = SumSettings
    reads = ("utterances",)
    writes = ("utterances:slow",)
    columns: ClassVar = {"utterances:slow": ("slow_done",)}

    def run(self, session: SessionView) -> Result:
        import time

        time.sleep(float(os.environ.get("EMOGUIDE_TEST_SLOW_S", "0.5")))
        df = session.utterances()
        out = df[["index"]].copy()
        out["slow_done"] = True
        return Result(tables={"utterances:slow": out})
