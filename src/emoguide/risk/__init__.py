"""risk-v2, the layered risk screen (lexical, semantic, classifier, context, optional LLM).

See emoguide.risk.screen and docs/safety.md. Heavy parts (sentence-transformers, torch) load only
when a RiskScreen is built.
"""

from emoguide.risk.bank import CATEGORIES, LEVELS, Bank, BankEntry, load_bank
from emoguide.risk.embed import RiskModelError
from emoguide.risk.screen import SCREEN_ID, RiskReading, RiskScreen

__all__ = ["CATEGORIES", "LEVELS", "SCREEN_ID", "Bank", "BankEntry", "RiskModelError", "RiskReading", "RiskScreen", "load_bank"]
