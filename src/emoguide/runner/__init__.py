"""Running stages over many sessions: outcomes and the end-of-batch summary."""

from emoguide.runner.summary import BatchSummary, Outcome

__all__ = ["BatchSummary", "Outcome"]
