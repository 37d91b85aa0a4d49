"""Column contracts between the rating study, the judge and the statistics.

`emoguide rate export` writes RATINGS_COLUMNS first (then any extra columns); `emoguide judge`
writes JUDGMENTS_COLUMNS; `emoguide stats` reads both and nothing else, so a ratings table from
another tool can be analysed once it has these columns.
"""

from __future__ import annotations

RATINGS_COLUMNS: tuple[str, ...] = (
    "study_id",
    "rater_id",
    "rater_group",
    "item_id",
    "session_id",
    "target_index",
    "model",
    "condition",
    "criterion",
    "score",
    "comment",
    "flagged",
    "seconds_on_item",
    "watched_fraction",
    "is_retest",
    "n_edits",
    "created_at",
    "updated_at",
    "config_hash",
)

JUDGMENTS_COLUMNS: tuple[str, ...] = (
    "session_id",
    "target_index",
    "model",
    "condition",
    "judge_model",
    "criterion",
    "score",
    "score_expected",
    "probs",  # JSON text {"1": p1, ..., "5": p5} (logprobs) or the empirical distribution (sampling)
    "method",  # "logprobs" | "sampling"
    "n_samples",
    "reason",
    "prompt_hash",
    "steps_hash",
    "created_at",
)

#: What identifies one generated response (a "response" in the statistics).
RESPONSE_KEY: tuple[str, ...] = ("session_id", "target_index", "model", "condition")
#: What identifies one context (a "video" in the paper): all conditions and models share it.
CONTEXT_KEY: tuple[str, ...] = ("session_id", "target_index")
