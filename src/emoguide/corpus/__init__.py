"""Corpus layout, artifacts, schema and resume bookkeeping."""

from emoguide.corpus.layout import Corpus, Session, slugify

__all__ = ["Corpus", "Session", "slugify"]
