"""The expert rating study (issue 8): blinded Likert ratings of generated interventions.

Backend: config (study.toml), plan (who rates what, in which order), items and clips (what raters
see), store (ratings.sqlite), export (the tidy table, unblinded by the CLI only), agreement
(Krippendorff's alpha). The web app (app.py, server.py) reads and writes through the store only.
Nothing heavy is imported here.
"""

from __future__ import annotations

from emoguide.evaluation.rating.store import DB_NAME, FLAG_KINDS, RatingStore

__all__ = ["DB_NAME", "FLAG_KINDS", "RatingStore"]
