"""The engine: the stage interface, the registry, the runner and its executors
(docs/architecture.md). Library code below (`media`, `speech`, `vision`, `affect`, `llm`, ...)
never imports this package; `emoguide.stages` adapts it."""

from emoguide.pipeline.stage import NotApplicable, Resources, Result, SessionView, Stage

__all__ = ["NotApplicable", "Resources", "Result", "SessionView", "Stage"]
