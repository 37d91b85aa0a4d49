"""Per-utterance affect: voice, face and text channels (import from files for now)."""
