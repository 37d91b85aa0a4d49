"""Moved to `emoguide.summary` (kept so older imports keep working)."""

from emoguide.summary import BatchSummary, Outcome, Status

__all__ = ["BatchSummary", "Outcome", "Status"]
