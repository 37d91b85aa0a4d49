"""Running stages over many sessions: outcomes and the end-of-batch summary."""

from emoguide.summary import BatchSummary, Outcome

__all__ = ["BatchSummary", "Outcome"]
