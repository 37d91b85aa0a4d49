"""Stage `safety`: flag patient utterances with signs of acute risk (docs/safety.md).

Reads the utterance rows (text) and the `role` column group; writes the risk columns
(`corpus.schema.SAFETY_COLUMNS`). The screen is the layered risk-v2 screen by default
(`emoguide.safety.risk_screen()`, built once per worker in `setup()`) or the lexical layer alone.
The screen's `info()` (id, layers, bank, model, threshold) is recorded in stages.json; when the
semantic layer cannot load, the stage warns and screens with the lexical layer.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from emoguide.corpus.schema import SAFETY_COLUMNS
from emoguide.pipeline.stage import Resources, Result, SessionView, Stage


class SafetySettings(BaseModel):
    """`[safety]` in corpus.toml."""

    screen: Literal["risk-v2", "lexical"] = Field(
        "risk-v2", description="risk-v2 (lexical, semantic, classifier, context) | lexical (the term list alone)"
    )


class SafetyStage(Stage[SafetySettings]):
    name = "safety"
    help = "Flag patient utterances with signs of acute risk for review (risk-v2 screen)."
    Settings = SafetySettings
    reads = ("utterances", "utterances:role")
    writes = ("utterances:risk",)
    columns: ClassVar = {"utterances:risk": tuple(SAFETY_COLUMNS)}
    version = 2  # 2: context pairs read only where they can change a reading (issue 12 speed work)
    resources = Resources(cpus=1, memory_mb=800)
    packages = ("onnxruntime", "tokenizers", "sentence-transformers", "torch")  # onnx backend by default; torch as fallback

    def __init__(self, settings: SafetySettings | None = None):
        super().__init__(settings)
        self.screen: Any = None  # built in setup(), or attached by `with_screen`
        self._attached = False

    @classmethod
    def with_screen(cls, screen: Any) -> "SafetyStage":
        """A stage that uses an already built screen (a `RiskScreen` or `LexicalScreen`), e.g. in
        tests and benchmarks. The screen's id enters the fingerprint. It pickles with the stage,
        so use it with the serial executor."""
        stage = cls()
        stage.screen = screen
        stage._attached = True
        return stage

    @staticmethod
    def _info(screen: Any) -> dict[str, Any]:
        return screen.info() if hasattr(screen, "info") else {"id": screen.id, "layers": ["lexical"]}

    def settings_for_hash(self) -> Any:
        out = self.settings.model_dump(mode="json")
        if self._attached:
            out["attached_screen"] = self._info(self.screen)["id"]
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if not self._attached:  # a screen built by setup() is rebuilt in the worker
            state["screen"] = None
        return state

    def setup(self) -> None:
        if self.screen is not None:
            return
        from emoguide import safety

        self.screen = safety.risk_screen() if self.settings.screen == "risk-v2" else safety.load_screen()

    def run(self, session: SessionView) -> Result:
        from emoguide import safety

        if self.screen is None:
            self.setup()
        info = self._info(self.screen)
        res = Result()
        res.backends["safety"] = info["id"]
        res.extra["safety"] = info
        if info.get("semantic_error"):
            res.warn(f"semantic layer unavailable, lexical layer only: {info['semantic_error']}")
        df = safety.screen_utterances(session.utterances(), screen=self.screen)
        flags = df["risk_flag"].fillna(False).astype(bool)
        n = int(flags.sum())
        if n:
            levels = df.loc[flags, "risk_level"].dropna().value_counts()
            detail = ", ".join(f"{int(levels[lv])} {lv}" for lv in ("high", "moderate", "low") if lv in levels)
            res.warn(f"{n} patient utterance(s) flagged for acute-risk review" + (f" ({detail})" if detail else ""))
        res.tables["utterances:risk"] = df[["index", *self.columns["utterances:risk"]]]
        return res


def run_safety(corpus, sessions=None, force: bool = False, screen: Any = None, *, executor=None, on_event=None):
    """The safety stage over `sessions` of `corpus` through the runner (a BatchSummary): with the
    default screen, or an already built `screen` (serial executor). For tests and benchmarks;
    the CLI runs the registered stage."""
    from emoguide.pipeline.runner import run_one

    stage = SafetyStage.with_screen(screen) if screen is not None else SafetyStage.from_corpus_settings(corpus.settings)
    return run_one(corpus, stage, sessions, force=force, executor=executor, on_event=on_event)
