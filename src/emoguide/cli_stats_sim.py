"""CLI verbs for the evaluation half (placeholder until implemented)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's verbs to the `emoguide` app."""
